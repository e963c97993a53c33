//! The first jump into ring 3. Every later return to user mode goes through the common exit
//! of the system-call and trap paths (`syscall::return_to_user`), with whatever context the
//! scheduler left in the frame; the kernel keeps no stack of its own between entries.
use super::{syscall::return_to_user, trap::TrapFrame};
use core::arch::naked_asm;

/// Enters ring 3 with the registers in `frame`, abandoning the current (boot) stack. Called
/// once, after `gdt::init`, `percpu::init` and `syscall::init` (so every way back into the
/// kernel lands on a valid stack) with the environment's page table active.
pub fn enter_first(frame: &TrapFrame) -> ! {
    assert_eq!(frame.cs, super::gdt::USER_CODE_SELECTOR, "a ring-3 context");
    assert_eq!(frame.ss, super::gdt::USER_DATA_SELECTOR, "a ring-3 context");
    assert!(
        exo_abi::layout::range_is_user(frame.rip, 1),
        "a user-half entry"
    );
    assert_eq!(frame.rflags & !0xcd5, 0x202, "only arithmetic flags and IF");
    // SAFETY: the frame holds ring-3 selectors, a canonical user-half rip and flags with
    // IOPL 0, so the exit can only land in user mode; it is copied into registers before the
    // stub leaves the boot stack behind, and the entry paths were initialised first.
    unsafe { enter_first_stub(frame) }
}

/// Loads RSP with `frame` and leaves through the common exit.
// SAFETY: called only by `enter_first`, with interrupts about to be disabled here and the
// frame it checked in RDI (the C ABI's first argument); `return_to_user` pops from RSP, so
// pointing RSP at the frame is what it expects. The boot stack is abandoned: nothing returns
// to it, and the frame's fields are popped into registers before anything reuses its memory.
#[unsafe(naked)]
unsafe extern "C" fn enter_first_stub(frame: &TrapFrame) -> ! {
    naked_asm!(
        "cli",
        "mov rsp, rdi",
        "jmp {return_to_user}",
        return_to_user = sym return_to_user,
    )
}
