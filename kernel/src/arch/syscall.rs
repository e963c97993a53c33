//! The `syscall` entry: MSR setup and the stub that switches to the kernel stack, saves the
//! user's registers into a [`SyscallFrame`] and returns with `sysretq`.
//!
//! What each call does is decided in one place, `crate::syscall::dispatch`.
use super::{gdt, percpu::PerCpu, trap::TrapFrame};
use core::arch::naked_asm;
use core::mem::offset_of;
use x86_64::{
    VirtAddr,
    registers::{
        model_specific::{Efer, EferFlags, LStar, SFMask, Star},
        rflags::RFlags,
    },
};

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

/// Vector number recorded in the frame of a `syscall` entry (no CPU vector uses it).
pub const SYSCALL_VECTOR: u64 = 0x100;

/// The `syscall` entry. `null` returns at once; every other call builds the same
/// [`TrapFrame`] an interrupt from ring 3 would (with `rcx` = `rip` and `r11` = `rflags`), so
/// the scheduler can save, switch and restore contexts whichever way they entered, and leaves
/// through [`return_to_user`].
// SAFETY: reached only through LSTAR from `syscall` in ring 3 (the kernel never executes
// `syscall`), with IF, TF, DF, AC and NT masked by SFMASK, so nothing interrupts it before it
// is on the kernel stack. The null path touches only RAX (a user register it may clobber) and
// returns with `sysretq` only to a canonical RCX. Every other path swaps to the kernel's GS
// (user GS is live on entry), saves the user RSP in the per-CPU block and switches to the
// entry stack named there (set by `percpu::init` before `init` ran), then pushes exactly the
// [`TrapFrame`] layout a const assertion in `trap` checks, 16-byte aligned for the call.
// `syscall_dispatch` gets a pointer to that frame, valid for its whole call.
#[unsafe(naked)]
extern "C" fn syscall_entry() {
    naked_asm!(
        // The null system call: the cost of the boundary itself, no state touched. Only to a
        // canonical user RCX (bits 47..63 clear): `sysretq` to any other faults in ring 0.
        // The last user page is never mapped, so this always holds; the slow path, which
        // would `iretq`, is the fallback.
        "cmp rax, {null}",
        "jne 2f",
        "mov rax, rcx",
        "shr rax, 47",
        "jnz 1f",
        "sysretq", // rax is 0: the null call's result
        "1:",
        "mov eax, {null}",
        "2:",
        "swapgs",
        "mov gs:[{user_rsp}], rsp",
        "mov rsp, gs:[{stack_top}]",
        "push {user_ss}",
        "push qword ptr gs:[{user_rsp}]",
        "push r11",
        "push {user_cs}",
        "push rcx",
        "push 0",
        "push {vector}",
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
        // 22 quadwords below an aligned stack top: RSP is 16-byte aligned at the call.
        "mov rdi, rsp",
        "cld",
        "call {dispatch}",
        "jmp {return_to_user}",
        null = const exo_abi::Syscall::Null as u64,
        user_rsp = const offset_of!(PerCpu, user_rsp),
        stack_top = const offset_of!(PerCpu, entry_stack_top),
        user_ss = const gdt::USER_DATA_SELECTOR,
        user_cs = const gdt::USER_CODE_SELECTOR,
        vector = const SYSCALL_VECTOR,
        dispatch = sym syscall_dispatch,
        return_to_user = sym return_to_user,
    )
}

/// Restores the [`TrapFrame`] at RSP into ring 3. When the frame is one `sysretq` can
/// reproduce exactly (`rcx` = `rip`, `r11` = `rflags`: every frame saved at a system call, and
/// every entry the kernel builds) and its `rip` is canonical it uses `sysretq`, otherwise
/// `iretq`. A non-canonical `rip` would make `sysretq` fault in ring 0 with the user's stack
/// (CVE-2012-0217); `iretq` raises its #GP before leaving the kernel's stack. The scheduler
/// never puts one in a frame: entries named by user code are checked to lie in the user half,
/// and the last user page is never mapped, so no `syscall` can return past it.
// SAFETY: jumped to (never called) with RSP at a [`TrapFrame`] on the kernel stack, from the
// syscall and trap entries after dispatch and from `user::enter_first`, always with
// interrupts off and the kernel's GS loaded. The frame's CS and SS are the user selectors
// (the scheduler builds and checks every frame it installs), so `iretq` lands in ring 3;
// `sysretq` is taken only when it reproduces the frame exactly (RCX = rip, canonical, R11 =
// rflags), and `swapgs` runs on both exits, restoring the user's GS base.
#[unsafe(naked)]
pub extern "C" fn return_to_user() -> ! {
    naked_asm!(
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
        "add rsp, 16",
        "cmp rcx, [rsp]",
        "jne 3f",
        // rip's bits 47..63 (bytes 5..7 of the saved rip) must be clear; flags only.
        "test byte ptr [rsp + 5], 0x80",
        "jnz 3f",
        "cmp word ptr [rsp + 6], 0",
        "jne 3f",
        "cmp r11, [rsp + 16]",
        "jne 3f",
        "swapgs",
        "mov rsp, [rsp + 24]",
        "sysretq",
        "3:",
        "swapgs",
        "iretq",
    )
}

extern "C" fn syscall_dispatch(frame: &mut TrapFrame) {
    crate::syscall::dispatch(frame);
}
