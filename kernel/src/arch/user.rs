//! Crossing into ring 3 and back: `enter_user` runs an environment until the kernel calls
//! `resume_kernel` (on exit or a fatal fault), which returns from `enter_user`.
//!
//! This is a one-shot context switch, enough for running apps one after another; a scheduler
//! will replace it with saved per-environment contexts.
use super::{gdt, percpu::PerCpu};
use core::arch::naked_asm;
use core::mem::offset_of;

/// RFLAGS user code starts with: interrupts enabled (bit 9) and the reserved bit 1.
const USER_RFLAGS: u64 = 0x202;

/// Starts user code at `entry` with stack pointer `stack_top` in the active address space;
/// returns when `resume_kernel` is called.
///
/// # Safety
/// The active page table must map `entry` as user-executable and the stack as user-writable
/// memory of this environment only, and `gdt::init`, `percpu::init` and `syscall::init` must
/// have run, so every way back into the kernel lands on a valid stack.
pub unsafe fn enter_user(entry: u64, stack_top: u64) {
    let selectors = gdt::selectors();
    // SAFETY: the caller guarantees the mappings; the selectors are the ring-3 segments of
    // the loaded GDT.
    unsafe {
        enter_user_stub(
            entry,
            stack_top,
            u64::from(selectors.user_code.0),
            u64::from(selectors.user_data.0),
        );
    }
}

#[unsafe(naked)]
unsafe extern "C" fn enter_user_stub(entry: u64, stack_top: u64, code: u64, data: u64) {
    naked_asm!(
        "cli",
        // Callee-saved registers of this call; resume_kernel pops them.
        "push rbx",
        "push rbp",
        "push r12",
        "push r13",
        "push r14",
        "push r15",
        "mov gs:[{resume_rsp}], rsp",
        // iretq frame: SS, RSP, RFLAGS, CS, RIP.
        "push rcx",
        "push rsi",
        "push {rflags}",
        "push rdx",
        "push rdi",
        // Nothing of the kernel's register state leaks into user space.
        "xor eax, eax",
        "xor ebx, ebx",
        "xor ecx, ecx",
        "xor edx, edx",
        "xor esi, esi",
        "xor edi, edi",
        "xor ebp, ebp",
        "xor r8d, r8d",
        "xor r9d, r9d",
        "xor r10d, r10d",
        "xor r11d, r11d",
        "xor r12d, r12d",
        "xor r13d, r13d",
        "xor r14d, r14d",
        "xor r15d, r15d",
        "swapgs",
        "iretq",
        resume_rsp = const offset_of!(PerCpu, resume_rsp),
        rflags = const USER_RFLAGS,
    )
}

/// Abandons the current entry stack and returns from the pending `enter_user` call.
///
/// # Safety
/// An `enter_user` call must be pending on this CPU (its saved frame intact), and the caller
/// must hold no lock or other state that expects to be released on this stack.
pub unsafe fn resume_kernel() -> ! {
    // SAFETY: forwarded from the caller.
    unsafe { resume_kernel_stub() }
}

#[unsafe(naked)]
unsafe extern "C" fn resume_kernel_stub() -> ! {
    naked_asm!(
        "mov rsp, gs:[{resume_rsp}]",
        "pop r15",
        "pop r14",
        "pop r13",
        "pop r12",
        "pop rbp",
        "pop rbx",
        "ret",
        resume_rsp = const offset_of!(PerCpu, resume_rsp),
    )
}
