//! The CPU's own protection of the kernel from user memory, wherever the CPU has it: SMEP
//! (ring 0 never executes a user page), SMAP (ring 0 touches user pages only where it says so:
//! the exception fast path, the one place that writes a user stack directly, sets RFLAGS.AC
//! around its stores) and UMIP (`sgdt`, `sidt`, `sldt`, `smsw` and `str` fault in ring 3, so
//! apps cannot read where the kernel's tables are). Everything else the kernel reads or writes
//! of an app goes through the identity map of the app's frames, never its virtual addresses.
//!
//! One of the kernel's named `unsafe` modules: CR4.
use core::arch::x86_64::__cpuid_count;
use x86_64::registers::control::{Cr4, Cr4Flags};

/// Which of the protections this CPU has (and `init` turned on).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Protections {
    pub smep: bool,
    pub smap: bool,
    pub umip: bool,
}

/// Reads CPUID leaf 7 and sets CR4.SMEP, CR4.SMAP and CR4.UMIP for what the CPU has.
pub fn init() -> Protections {
    // Leaf 7 is defined only where the maximum leaf reaches it (checked before use).
    let (max_leaf, features) = (__cpuid_count(0, 0).eax, __cpuid_count(7, 0));
    if max_leaf < 7 {
        return Protections::default();
    }
    let has = Protections {
        smep: features.ebx & (1 << 7) != 0,
        smap: features.ebx & (1 << 20) != 0,
        umip: features.ecx & (1 << 2) != 0,
    };
    let mut flags = Cr4Flags::empty();
    if has.smep {
        flags |= Cr4Flags::SUPERVISOR_MODE_EXECUTION_PROTECTION;
    }
    if has.smap {
        flags |= Cr4Flags::SUPERVISOR_MODE_ACCESS_PREVENTION;
    }
    if has.umip {
        flags |= Cr4Flags::USER_MODE_INSTRUCTION_PREVENTION;
    }
    // SAFETY: the kernel executes no user page (SMEP), touches user pages directly only in
    // the exception fast path, which sets RFLAGS.AC for it (SMAP), and uses none of the
    // instructions UMIP restricts to ring 0 from ring 3 paths.
    unsafe { Cr4::update(|cr4| cr4.insert(flags)) };
    has
}

/// Reads the user page at `address` from ring 0 without `stac`: with SMAP on it faults, and
/// the fault handler reports it and panics (`test=smap`). Does not return where SMAP is on.
pub fn read_user_without_stac(address: u64) {
    // SAFETY: none is needed for the memory (the page is a fresh zeroed frame mapped for this
    // test, read into a discarded register), and with SMAP on the read faults before it
    // completes; the fault handler panics, so control never comes back here.
    unsafe {
        core::arch::asm!(
            "mov rax, qword ptr [{address}]",
            address = in(reg) address,
            out("rax") _,
            options(nostack, readonly)
        )
    };
}

/// Calls the user page at `address` from ring 0: with SMEP on the fetch faults, and the fault
/// handler reports it and panics (`test=smep`). Does not return where SMEP is on.
pub fn call_user_page(address: u64) {
    // SAFETY: with SMEP on the first fetch faults and the handler panics. Without SMEP the
    // page holds one `ret` (written by the caller) and the call comes straight back, every
    // register but the scratch ones the asm names as clobbered untouched.
    unsafe {
        core::arch::asm!(
            "call {address}",
            address = in(reg) address,
            clobber_abi("sysv64"),
        )
    };
}
