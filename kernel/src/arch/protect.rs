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
use x86_64::registers::model_specific::Msr;

/// IA32_MCG_CAP: the number of error-reporting banks in its low byte.
const MCG_CAP: u32 = 0x179;
/// IA32_MCG_STATUS: whether the interrupted context can go on (RIPV), and so on.
const MCG_STATUS: u32 = 0x17a;
/// IA32_MC0_STATUS; bank `i`'s is 4 registers further per bank.
const MC0_STATUS: u32 = 0x401;
/// MCi_STATUS.VAL: the bank holds an error.
const STATUS_VALID: u64 = 1 << 63;

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
    // Machine checks are delivered (to their IST handler) instead of shutting the machine
    // down, wherever the CPU has them and their banks (CPUID.1:EDX.MCE and MCA).
    let basic = __cpuid_count(1, 0).edx;
    if basic & (1 << 7) != 0 && basic & (1 << 14) != 0 {
        flags |= Cr4Flags::MACHINE_CHECK_EXCEPTION;
    }
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
    // instructions UMIP restricts to ring 0 from ring 3 paths; a machine check goes to its
    // handler on its own IST stack (CR4.MCE).
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

/// In a machine-check handler: IA32_MCG_STATUS, and the first bank holding a valid error
/// (its index and MCi_STATUS).
pub fn machine_check_status() -> (u64, Option<(u32, u64)>) {
    // SAFETY: a machine check was delivered, so the CPU has MCA and these MSRs (CPUID.1:EDX
    // MCE and MCA, which `init` checked before enabling CR4.MCE); reading them changes nothing.
    unsafe {
        let banks = (Msr::new(MCG_CAP).read() & 0xff) as u32;
        let global = Msr::new(MCG_STATUS).read();
        let bank = (0..banks).find_map(|index| {
            let status = Msr::new(MC0_STATUS + 4 * index).read();
            (status & STATUS_VALID != 0).then_some((index, status))
        });
        (global, bank)
    }
}
