//! System calls: the raw `syscall` instruction and safe wrappers over it, one per call of
//! `exo_abi::Syscall` (whose documentation is the contract).
//!
//! The wrappers are safe even when they pass addresses, because the kernel treats every
//! pointer as an allegation and checks it against this environment's mappings.
use exo_abi::cap::{CapHandle, Rights};
use exo_abi::quota::{Limits, QuotaField, Resource};
use exo_abi::upcall::{EnvQuery, EnvStatus, RepossessedPage, UpcallKind};
use exo_abi::{Error, Syscall, error::decode_result};

/// A system call with up to five arguments (`rdi`, `rsi`, `rdx`, `r10`, `r8`).
#[allow(unsafe_code)]
#[inline(always)]
pub fn syscall5(call: Syscall, arguments: [u64; 5]) -> Result<u64, Error> {
    let result: u64;
    // SAFETY: the kernel preserves every register but rax (result), rcx and r11 (clobbered
    // by the instruction), and never touches the user stack; it may read or write memory the
    // arguments name, which the default (memory-clobbering) asm options account for.
    unsafe {
        core::arch::asm!(
            "syscall",
            inlateout("rax") call.number() => result,
            in("rdi") arguments[0],
            in("rsi") arguments[1],
            in("rdx") arguments[2],
            in("r10") arguments[3],
            in("r8") arguments[4],
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack),
        );
    }
    decode_result(result)
}

/// Ends this environment with `status` (0 = success).
pub fn exit(status: u8) -> ! {
    let _ = syscall5(Syscall::Exit, [u64::from(status), 0, 0, 0, 0]);
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
    syscall5(Syscall::ConsoleWrite, [address, length_bytes, 0, 0, 0]).map(|n| n as usize)
}

/// Issues a system call by raw number with raw arguments, for testing the kernel's refusal of
/// unknown calls and bad arguments. Calls that switch context (exit, yield, PCT) are refused
/// here.
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
    // SAFETY: as in syscall5; an unknown number makes the kernel return an error and
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

/// The null system call: into the kernel and straight back.
#[allow(unsafe_code)]
#[inline(always)]
pub fn null() {
    // SAFETY: `null` changes nothing but rax, rcx and r11.
    unsafe {
        core::arch::asm!(
            "syscall",
            inlateout("rax") Syscall::Null.number() => _,
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack, nomem),
        );
    }
}

/// This environment's id, through the kernel's full dispatch path.
pub fn self_id() -> u64 {
    syscall5(Syscall::SelfId, [0; 5]).unwrap_or(0)
}

/// The time-stamp counter. Under `-icount shift=0` it advances one per guest instruction
/// while the vCPU runs (and with the virtual clock while it halts), which is what
/// [`crate::profile`] sums.
#[allow(unsafe_code)]
pub fn tsc() -> u64 {
    // SAFETY: rdtsc only reads the counter into edx:eax; user mode may (CR4.TSD is clear).
    unsafe { core::arch::x86_64::_rdtsc() }
}

/// Timer ticks since boot.
pub fn ticks() -> u64 {
    syscall5(Syscall::Ticks, [0; 5]).unwrap_or(0)
}

/// Registers (or with 0, removes) an upcall entry; `stack` only for `Pct`.
pub fn set_upcall(kind: UpcallKind, entry: u64, stack: u64) -> Result<(), Error> {
    syscall5(Syscall::SetUpcall, [kind as u64, entry, stack, 0, 0]).map(drop)
}

/// `set_upcall` with a raw kind number, for testing.
pub fn set_upcall_raw(kind: u64, entry: u64, stack: u64) -> Result<(), Error> {
    syscall5(Syscall::SetUpcall, [kind, entry, stack, 0, 0]).map(drop)
}

/// Gives up the rest of the slice (round robin).
pub fn yield_now() {
    let _ = syscall5(Syscall::Yield, [0; 5]);
}

/// Donates the rest of the slice to the environment `env` names (right `YIELD`).
pub fn yield_to(env: CapHandle) -> Result<(), Error> {
    syscall5(Syscall::Yield, [env.raw(), 0, 0, 0, 0]).map(drop)
}

/// Creates a child from the boot-pack app `name`, passing it `argument`.
pub fn spawn(name: &str, argument: u64) -> Result<CapHandle, Error> {
    spawn_at(name.as_ptr() as u64, name.len() as u64, argument)
}

/// `spawn` with a raw name pointer, for testing.
pub fn spawn_at(pointer: u64, length: u64, argument: u64) -> Result<CapHandle, Error> {
    syscall5(Syscall::Spawn, [pointer, length, argument, 0, 0]).map(CapHandle)
}

/// Spawns `name` with these quota `limits`, carved out of this environment's own
/// (`spawn` gives half of what is left of each by default).
pub fn spawn_with(name: &str, argument: u64, limits: &Limits) -> Result<CapHandle, Error> {
    let bytes = limits.encode();
    syscall5(
        Syscall::Spawn,
        [
            name.as_ptr() as u64,
            name.len() as u64,
            argument,
            bytes.as_ptr() as u64,
            0,
        ],
    )
    .map(CapHandle)
}

/// An environment's quota for one resource: its limit, use, or reservation for its children.
/// `env` [`CapHandle::NONE`] is this environment.
pub fn env_quota(env: CapHandle, resource: Resource, field: QuotaField) -> Result<u64, Error> {
    syscall5(
        Syscall::EnvQuota,
        [env.raw(), resource as u64, field as u64, 0, 0],
    )
}

/// One figure of the kernel's own resources (heap, free frames, its tables, generated code).
pub fn kernel_usage(gauge: exo_abi::usage::Gauge) -> Result<u64, Error> {
    syscall5(Syscall::KernelUsage, [gauge as u64, 0, 0, 0, 0])
}

/// Raw `kernel_usage`, for refusal tests.
pub fn kernel_usage_raw(gauge: u64) -> Result<u64, Error> {
    syscall5(Syscall::KernelUsage, [gauge, 0, 0, 0, 0])
}

/// Raw `env_info`.
pub fn env_info(env: CapHandle, query: EnvQuery) -> Result<u64, Error> {
    syscall5(Syscall::EnvInfo, [env.raw(), query as u64, 0, 0, 0])
}

/// The status of an environment this one controls.
pub fn env_status(env: CapHandle) -> Result<EnvStatus, Error> {
    env_info(env, EnvQuery::Status)
        .and_then(|value| EnvStatus::decode(value).ok_or(Error::Unrecognized))
}

/// Yields until the environment has ended; returns how it ended.
pub fn wait(env: CapHandle) -> Result<EnvStatus, Error> {
    loop {
        match env_status(env)? {
            EnvStatus::Running => yield_now(),
            status => return Ok(status),
        }
    }
}

/// Ends an environment (right `CONTROL`).
pub fn env_destroy(env: CapHandle) -> Result<(), Error> {
    syscall5(Syscall::EnvDestroy, [env.raw(), 0, 0, 0, 0]).map(drop)
}

/// A fresh zeroed page (`physical_address` = `exo_abi::syscall::ANY_FRAME` for any frame).
pub fn page_alloc(physical_address: u64) -> Result<CapHandle, Error> {
    syscall5(Syscall::PageAlloc, [physical_address, 0, 0, 0, 0]).map(CapHandle)
}

/// Maps a page at `address` with `access` (`READ`/`WRITE`/`EXECUTE` bits).
pub fn page_map(page: CapHandle, address: u64, access: Rights) -> Result<(), Error> {
    page_map_raw(page.raw(), address, access.bits())
}

/// `page_map` with raw values, for testing.
pub fn page_map_raw(page: u64, address: u64, access: u64) -> Result<(), Error> {
    syscall5(Syscall::PageMap, [page, address, access, 0, 0]).map(drop)
}

/// Removes a `page_map` mapping.
pub fn page_unmap(address: u64) -> Result<(), Error> {
    syscall5(Syscall::PageUnmap, [address, 0, 0, 0, 0]).map(drop)
}

/// Changes the access of a `page_map` mapping (the `mprotect` of exo).
pub fn page_protect(address: u64, access: Rights) -> Result<(), Error> {
    syscall5(Syscall::PageProtect, [address, access.bits(), 0, 0, 0]).map(drop)
}

/// Changes the access of `pages` consecutive `page_map` mappings from `address` in one call.
pub fn page_protect_range(address: u64, pages: u64, access: Rights) -> Result<(), Error> {
    syscall5(
        Syscall::PageProtectRange,
        [address, pages, access.bits(), 0, 0],
    )
    .map(drop)
}

/// Derives a capability with `rights` for the environment `to` names; returns the handle
/// the receiver knows it by.
pub fn cap_grant(cap: CapHandle, to: CapHandle, rights: Rights) -> Result<CapHandle, Error> {
    syscall5(
        Syscall::CapGrant,
        [cap.raw(), to.raw(), rights.bits(), 0, 0],
    )
    .map(CapHandle)
}

/// Invalidates everything derived from `cap`; returns how many capabilities went.
pub fn cap_revoke(cap: CapHandle) -> Result<u64, Error> {
    syscall5(Syscall::CapRevoke, [cap.raw(), 0, 0, 0, 0])
}

/// Deletes `cap` and everything derived from it (frees a page this environment allocated).
pub fn cap_delete(cap: CapHandle) -> Result<u64, Error> {
    syscall5(Syscall::CapDelete, [cap.raw(), 0, 0, 0, 0])
}

/// The rights of a capability this environment holds.
pub fn cap_rights(cap: CapHandle) -> Result<Rights, Error> {
    syscall5(Syscall::CapRights, [cap.raw(), 0, 0, 0, 0]).map(Rights::from_bits_retain)
}

/// Takes one more time slice.
pub fn slice_acquire() -> Result<u64, Error> {
    syscall5(Syscall::SliceAcquire, [0; 5])
}

/// Asks `env` for `count` pages back within `deadline_ticks` (right `CONTROL`).
pub fn request_pages(env: CapHandle, count: u64, deadline_ticks: u64) -> Result<(), Error> {
    syscall5(
        Syscall::RequestPages,
        [env.raw(), count, deadline_ticks, 0, 0],
    )
    .map(drop)
}

/// Moves entries of the repossession vector into `buffer`; returns how many.
pub fn repossessed(buffer: &mut [RepossessedPage]) -> Result<usize, Error> {
    syscall5(
        Syscall::Repossessed,
        [buffer.as_mut_ptr() as u64, buffer.len() as u64, 0, 0, 0],
    )
    .map(|count| count as usize)
}

/// `repossessed` with a raw buffer, for testing.
pub fn repossessed_at(pointer: u64, capacity: u64) -> Result<usize, Error> {
    syscall5(Syscall::Repossessed, [pointer, capacity, 0, 0, 0]).map(|count| count as usize)
}

/// Synchronous protected control transfer: runs `env`'s PCT entry with `arguments` in
/// registers; returns the five values it passed to `pct_return`.
#[allow(unsafe_code)]
#[inline(always)]
pub fn pct_call(env: CapHandle, arguments: [u64; 5]) -> Result<[u64; 5], Error> {
    let status: u64;
    let mut results = arguments;
    let r0: u64;
    // SAFETY: the kernel restores this environment's registers on return, except rax, rcx,
    // r11 and the five result registers declared here; memory is not touched by the callee
    // (another address space), but the default options assume it may be.
    unsafe {
        core::arch::asm!(
            "syscall",
            inlateout("rax") Syscall::PctCall.number() => status,
            inlateout("rdi") env.raw() => r0,
            inlateout("rsi") results[0] => results[1],
            inlateout("rdx") results[1] => results[2],
            inlateout("r10") results[2] => results[3],
            inlateout("r8") results[3] => results[4],
            in("r9") results[4],
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack),
        );
    }
    decode_result(status)?;
    results[0] = r0;
    Ok(results)
}

/// Asynchronous protected control transfer: enters `env`'s PCT entry and donates the rest of
/// the slice; returns when this environment runs again.
pub fn pct_send(env: CapHandle, arguments: [u64; 5]) -> Result<(), Error> {
    pct_send_raw(env.raw(), arguments)
}

#[allow(unsafe_code)]
fn pct_send_raw(env: u64, arguments: [u64; 5]) -> Result<(), Error> {
    let status: u64;
    // SAFETY: as `pct_call`, but the kernel restores every register except rax, rcx, r11.
    unsafe {
        core::arch::asm!(
            "syscall",
            inlateout("rax") Syscall::PctSend.number() => status,
            in("rdi") env,
            in("rsi") arguments[0],
            in("rdx") arguments[1],
            in("r10") arguments[2],
            in("r8") arguments[3],
            in("r9") arguments[4],
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack),
        );
    }
    decode_result(status).map(drop)
}

/// Ends the current PCT activation with five results. Returns only on error (not in an
/// activation).
pub fn pct_return(results: [u64; 5]) -> Error {
    match syscall5(Syscall::PctReturn, results) {
        Err(error) => error,
        Ok(_) => Error::Unrecognized,
    }
}

/// Gives up this context and waits for PCT calls. Returns only on error.
pub fn pct_wait() -> Error {
    match syscall5(Syscall::PctWait, [0; 5]) {
        Err(error) => error,
        Ok(_) => Error::Unrecognized,
    }
}
