//! The Linux system calls the benchmark makes, issued directly with `syscall` (no libc in the
//! timed paths, so Linux pays for its kernel and nothing else).
#![allow(unsafe_code)]

use std::io;

pub const SYS_READ: u64 = 0;
pub const SYS_WRITE: u64 = 1;
pub const SYS_CLOSE: u64 = 3;
pub const SYS_MMAP: u64 = 9;
pub const SYS_MPROTECT: u64 = 10;
pub const SYS_RT_SIGACTION: u64 = 13;
pub const SYS_RT_SIGRETURN: u64 = 15;
pub const SYS_GETPID: u64 = 39;
pub const SYS_FORK: u64 = 57;
pub const SYS_EXIT_GROUP: u64 = 231;
pub const SYS_WAIT4: u64 = 61;
pub const SYS_REBOOT: u64 = 169;
pub const SYS_IOPERM: u64 = 173;
pub const SYS_EVENTFD2: u64 = 290;
pub const SYS_PIPE2: u64 = 293;

pub const PROT_NONE: u64 = 0;
pub const PROT_READ_WRITE: u64 = 0x1 | 0x2;
const MAP_PRIVATE_ANONYMOUS: u64 = 0x02 | 0x20;

pub const SIGILL: u64 = 4;
pub const SIGSEGV: u64 = 11;
const SA_SIGINFO: u64 = 0x4;
const SA_RESTORER: u64 = 0x0400_0000;

/// One system call with up to four arguments; returns the raw result (negative errno on
/// failure).
///
/// # Safety
/// The call must not break memory safety (e.g. unmap memory in use, write through a bad
/// pointer): the wrappers below argue it for theirs.
#[inline(always)]
pub unsafe fn syscall4(number: u64, a0: u64, a1: u64, a2: u64, a3: u64) -> i64 {
    let result: i64;
    // SAFETY: Linux preserves every register but rax, rcx and r11; memory effects are the
    // caller's promise.
    unsafe {
        core::arch::asm!(
            "syscall",
            inlateout("rax") number as i64 => result,
            in("rdi") a0,
            in("rsi") a1,
            in("rdx") a2,
            in("r10") a3,
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack),
        );
    }
    result
}

fn check(result: i64) -> io::Result<u64> {
    if (-4095..0).contains(&result) {
        Err(io::Error::from_raw_os_error(-result as i32))
    } else {
        Ok(result as u64)
    }
}

/// Outcome of [`fork`].
#[derive(Debug, PartialEq, Eq)]
pub enum Fork {
    Child,
    Parent { child: u64 },
}

/// `fork()`. Call only while single-threaded, with stdout flushed.
pub fn fork() -> io::Result<Fork> {
    // SAFETY: the process has one thread, so the child's copy of memory is consistent.
    let pid = check(unsafe { syscall4(SYS_FORK, 0, 0, 0, 0) })?;
    Ok(if pid == 0 {
        Fork::Child
    } else {
        Fork::Parent { child: pid }
    })
}

/// Waits for `pid` (-1: any child); returns (pid, wait status).
pub fn wait(pid: i64) -> io::Result<(u64, i32)> {
    let mut status = 0i32;
    // SAFETY: the kernel writes one int to `status`, which lives until the call returns.
    let child = check(unsafe { syscall4(SYS_WAIT4, pid as u64, (&raw mut status) as u64, 0, 0) })?;
    Ok((child, status))
}

/// Ends the process (all threads) without running destructors.
pub fn exit(status: u8) -> ! {
    // SAFETY: exit_group never returns and touches no memory of ours.
    unsafe {
        syscall4(SYS_EXIT_GROUP, u64::from(status), 0, 0, 0);
    }
    unreachable!("exit_group returned")
}

/// A pipe: (read end, write end).
pub fn pipe() -> io::Result<(u64, u64)> {
    let mut fds = [0i32; 2];
    // SAFETY: the kernel writes two ints into `fds`.
    check(unsafe { syscall4(SYS_PIPE2, (&raw mut fds) as u64, 0, 0, 0) })?;
    Ok((fds[0] as u64, fds[1] as u64))
}

/// An eventfd counter starting at zero (blocking reads).
pub fn eventfd() -> io::Result<u64> {
    // SAFETY: creates a descriptor; touches no memory.
    check(unsafe { syscall4(SYS_EVENTFD2, 0, 0, 0, 0) })
}

pub fn close(fd: u64) {
    // SAFETY: closing a descriptor touches no memory. Errors leave nothing to undo.
    unsafe {
        syscall4(SYS_CLOSE, fd, 0, 0, 0);
    }
}

/// `read` into `buffer`; returns the byte count (0 at end of file).
#[inline(always)]
pub fn read(fd: u64, buffer: &mut [u8]) -> io::Result<u64> {
    // SAFETY: the kernel writes at most buffer.len() bytes into the exclusive buffer.
    check(unsafe {
        syscall4(
            SYS_READ,
            fd,
            buffer.as_mut_ptr() as u64,
            buffer.len() as u64,
            0,
        )
    })
}

/// `write` from `buffer`; returns the byte count.
#[inline(always)]
pub fn write(fd: u64, buffer: &[u8]) -> io::Result<u64> {
    // SAFETY: the kernel reads buffer.len() bytes.
    check(unsafe {
        syscall4(
            SYS_WRITE,
            fd,
            buffer.as_ptr() as u64,
            buffer.len() as u64,
            0,
        )
    })
}

/// Maps `length_bytes` of fresh zeroed private memory, readable and writable.
pub fn map_anonymous(length_bytes: u64) -> io::Result<u64> {
    let result: i64;
    // SAFETY: a fresh anonymous mapping at an address the kernel picks overlaps nothing.
    unsafe {
        core::arch::asm!(
            "syscall",
            inlateout("rax") SYS_MMAP as i64 => result,
            in("rdi") 0u64,
            in("rsi") length_bytes,
            in("rdx") PROT_READ_WRITE,
            in("r10") MAP_PRIVATE_ANONYMOUS,
            in("r8") -1i64,
            in("r9") 0u64,
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack),
        );
    }
    check(result)
}

/// `mprotect` on pages of a mapping this program made for the benchmark and only ever
/// accesses through [`bench_common::loops`] (whose faults the handler resolves).
pub fn mprotect(address: u64, length_bytes: u64, protection: u64) -> io::Result<()> {
    // SAFETY: see above: no Rust reference points into the region.
    check(unsafe { syscall4(SYS_MPROTECT, address, length_bytes, protection, 0) }).map(|_| ())
}

/// The kernel's `struct sigaction` on x86_64.
#[repr(C)]
struct KernelSigaction {
    handler: u64,
    flags: u64,
    restorer: u64,
    mask: u64,
}

/// Saved user context a `SA_SIGINFO` handler receives (`ucontext_t`), up to what we use.
#[repr(C)]
pub struct UserContext {
    flags: u64,
    link: u64,
    stack: [u64; 3],
    /// `uc_mcontext.gregs`: r8..r15, rdi, rsi, rbp, rbx, rdx, rax, rcx, rsp, rip, ...
    registers: [u64; 23],
}

impl UserContext {
    const RIP: usize = 16;

    pub fn instruction_pointer(&self) -> u64 {
        self.registers[Self::RIP]
    }

    pub fn set_instruction_pointer(&mut self, address: u64) {
        self.registers[Self::RIP] = address;
    }
}

/// The `siginfo_t` head: the faulting address of SIGSEGV/SIGILL is at offset 16.
#[repr(C)]
pub struct SignalInfo {
    signal: i32,
    errno: i32,
    code: i32,
    padding: i32,
    pub address: u64,
}

/// A `SA_SIGINFO` handler.
pub type Handler = extern "C" fn(i32, &SignalInfo, &mut UserContext);

std::arch::global_asm!(
    ".pushsection .text.linux_init_restorer, \"ax\"",
    ".global linux_init_restorer",
    "linux_init_restorer:",
    "    mov eax, 15", // rt_sigreturn
    "    syscall",
    "    ud2",
    ".popsection",
);

unsafe extern "C" {
    fn linux_init_restorer();
}

/// Installs `handler` for `signal` (SA_SIGINFO, with our rt_sigreturn trampoline, the way
/// libc does it).
pub fn set_handler(signal: u64, handler: Handler) -> io::Result<()> {
    debug_assert_eq!(SYS_RT_SIGRETURN, 15, "the restorer hard-codes it");
    let action = KernelSigaction {
        handler: handler as usize as u64,
        flags: SA_SIGINFO | SA_RESTORER,
        restorer: linux_init_restorer as *const () as u64,
        mask: 0,
    };
    // SAFETY: the kernel reads the struct; the handler and restorer are valid code for the
    // process's lifetime.
    check(unsafe {
        syscall4(
            SYS_RT_SIGACTION,
            signal,
            (&raw const action) as u64,
            0,
            8, // sizeof(sigset_t) the kernel expects
        )
    })
    .map(|_| ())
}

/// Allows this process (PID 1, root) to use I/O ports `first..first + count`.
pub fn ioperm(first: u64, count: u64) -> io::Result<()> {
    // SAFETY: changes the I/O bitmap only.
    check(unsafe { syscall4(SYS_IOPERM, first, count, 1, 0) }).map(|_| ())
}

/// Writes a 32-bit value to an I/O port.
///
/// # Safety
/// The port must be one [`ioperm`] allowed and writing it must be harmless to this program
/// (QEMU's debug-exit device stops the machine).
pub unsafe fn outl(port: u16, value: u32) {
    // SAFETY: the caller's promise.
    unsafe {
        core::arch::asm!("out dx, eax", in("dx") port, in("eax") value, options(nostack, nomem));
    }
}

/// `reboot(LINUX_REBOOT_CMD_POWER_OFF)`: the fallback when the debug-exit device is absent.
pub fn power_off() -> io::Result<()> {
    const MAGIC1: u64 = 0xfee1_dead;
    const MAGIC2: u64 = 0x2812_1969;
    const POWER_OFF: u64 = 0x4321_fedc;
    // SAFETY: stops the machine (if we are PID 1 with the capability); no memory is touched.
    check(unsafe { syscall4(SYS_REBOOT, MAGIC1, MAGIC2, POWER_OFF, 0) }).map(|_| ())
}
