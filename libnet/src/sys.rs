//! System calls: the raw `syscall` instruction and safe wrappers over it.
//!
//! The wrappers are safe even when they pass addresses, because the kernel treats every
//! pointer as an allegation and checks it against this environment's mappings.
use exo_abi::{Error, Syscall, error::decode_result};

#[allow(unsafe_code)]
fn syscall2(call: Syscall, argument0: u64, argument1: u64) -> u64 {
    let result: u64;
    // SAFETY: the kernel preserves every register but rax (result), rcx and r11 (clobbered
    // by the instruction), and never touches the user stack; it may read memory the
    // arguments name, which the default (memory-clobbering) asm options account for.
    unsafe {
        core::arch::asm!(
            "syscall",
            inlateout("rax") call.number() => result,
            in("rdi") argument0,
            in("rsi") argument1,
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack),
        );
    }
    result
}

/// Ends this environment with `status` (0 = success).
pub fn exit(status: u8) -> ! {
    syscall2(Syscall::Exit, u64::from(status), 0);
    // The kernel never returns from exit; spin rather than claim otherwise.
    loop {
        core::hint::spin_loop();
    }
}

/// Writes `bytes` to the console; returns how many were written (at most
/// `exo_abi::syscall::CONSOLE_WRITE_MAX_BYTES`).
pub fn console_write(bytes: &[u8]) -> Result<usize, Error> {
    console_write_at(bytes.as_ptr() as u64, bytes.len() as u64)
}

/// `console_write` with an arbitrary address and length, for testing that the kernel refuses
/// memory this environment does not have.
pub fn console_write_at(address: u64, length_bytes: u64) -> Result<usize, Error> {
    decode_result(syscall2(Syscall::ConsoleWrite, address, length_bytes)).map(|n| n as usize)
}

/// Issues a system call by raw number, for testing the kernel's refusal of unknown calls.
pub fn raw_call(number: u64) -> Result<u64, Error> {
    match Syscall::from_number(number) {
        // Known numbers go through their wrappers; only unknown ones are sent raw.
        Some(_) => Err(Error::InvalidArgument),
        None => decode_result(raw_unknown(number)),
    }
}

#[allow(unsafe_code)]
fn raw_unknown(number: u64) -> u64 {
    let result: u64;
    // SAFETY: as in syscall2; an unknown number makes the kernel return an error and
    // change nothing.
    unsafe {
        core::arch::asm!(
            "syscall",
            inlateout("rax") number => result,
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack),
        );
    }
    result
}
