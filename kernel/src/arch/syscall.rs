//! The `syscall` entry: MSR setup and the stub that switches to the kernel stack, saves the
//! user's registers into a [`SyscallFrame`] and returns with `sysretq`.
//!
//! What each call does is decided in one place, `crate::syscall::dispatch`.
use super::{gdt, percpu::PerCpu};
use core::arch::naked_asm;
use core::mem::offset_of;
use x86_64::{
    VirtAddr,
    registers::{
        model_specific::{Efer, EferFlags, LStar, SFMask, Star},
        rflags::RFlags,
    },
};

/// The user's registers at `syscall`, lowest address first. `rcx` holds the user RIP and `r11`
/// the user RFLAGS (the instruction put them there); `rax` carries the result back.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct SyscallFrame {
    pub r15: u64,
    pub r14: u64,
    pub r13: u64,
    pub r12: u64,
    pub r11: u64,
    pub r10: u64,
    pub r9: u64,
    pub r8: u64,
    pub rbp: u64,
    pub rdi: u64,
    pub rsi: u64,
    pub rdx: u64,
    pub rcx: u64,
    pub rbx: u64,
    pub rax: u64,
    pub user_rsp: u64,
}

/// Enables `syscall`/`sysret` and points them at the entry stub.
pub fn init() {
    let selectors = gdt::selectors();
    Star::write(
        selectors.user_code,
        selectors.user_data,
        selectors.kernel_code,
        selectors.kernel_data,
    )
    .expect("GDT order is kernel code, kernel data, user data, user code");
    LStar::write(VirtAddr::new(syscall_entry as *const () as u64));
    // Entered with interrupts off and the direction flag clear, whatever user code had.
    SFMask::write(
        RFlags::INTERRUPT_FLAG
            | RFlags::TRAP_FLAG
            | RFlags::DIRECTION_FLAG
            | RFlags::ALIGNMENT_CHECK
            | RFlags::NESTED_TASK,
    );
    // SAFETY: setting SCE only enables the syscall instruction, whose target was just set.
    unsafe { Efer::update(|flags| flags.insert(EferFlags::SYSTEM_CALL_EXTENSIONS)) };
}

#[unsafe(naked)]
extern "C" fn syscall_entry() {
    naked_asm!(
        "swapgs",
        "mov gs:[{user_rsp}], rsp",
        "mov rsp, gs:[{stack_top}]",
        "push qword ptr gs:[{user_rsp}]",
        "push rax",
        "push rbx",
        "push rcx",
        "push rdx",
        "push rsi",
        "push rdi",
        "push rbp",
        "push r8",
        "push r9",
        "push r10",
        "push r11",
        "push r12",
        "push r13",
        "push r14",
        "push r15",
        // 16 quadwords below an aligned stack top: RSP is 16-byte aligned at the call.
        "mov rdi, rsp",
        "cld",
        "call {dispatch}",
        "pop r15",
        "pop r14",
        "pop r13",
        "pop r12",
        "pop r11",
        "pop r10",
        "pop r9",
        "pop r8",
        "pop rbp",
        "pop rdi",
        "pop rsi",
        "pop rdx",
        "pop rcx",
        "pop rbx",
        "pop rax",
        "swapgs",
        "mov rsp, [rsp]",
        "sysretq",
        user_rsp = const offset_of!(PerCpu, user_rsp),
        stack_top = const offset_of!(PerCpu, entry_stack_top),
        dispatch = sym syscall_dispatch,
    )
}

extern "C" fn syscall_dispatch(frame: &mut SyscallFrame) {
    crate::syscall::dispatch(frame);
    // sysretq with a non-canonical RCX faults in ring 0 on Intel CPUs, on the user's stack.
    // Nothing sets RCX to a user-chosen value yet, but upcalls will: refuse here, once.
    if VirtAddr::try_new(frame.rcx).is_err() {
        crate::env::on_bad_return_address(frame.rcx);
    }
}
