//! Per-CPU data reached through GS: what the entry stubs need before any Rust runs.
//!
//! Invariant: while a CPU runs kernel code its GS base points at its `PerCpu`; while it runs
//! user code the kernel's GS base waits in `IA32_KERNEL_GS_BASE` (entries do `swapgs`).
use core::sync::atomic::{AtomicU64, Ordering};
use x86_64::{
    VirtAddr,
    registers::model_specific::{GsBase, KernelGsBase},
};

/// Fields the assembly stubs address by offset (`core::mem::offset_of!`).
#[repr(C)]
#[derive(Debug)]
pub struct PerCpu {
    /// RSP loaded on `syscall` entry (the same stack as TSS.RSP0).
    pub entry_stack_top: AtomicU64,
    /// Scratch: the user RSP while the syscall stub switches stacks.
    pub user_rsp: AtomicU64,
}

/// The boot CPU's data (the only CPU for now).
pub static BOOT_CPU: PerCpu = PerCpu {
    entry_stack_top: AtomicU64::new(0),
    user_rsp: AtomicU64::new(0),
};

/// Points GS at the boot CPU's data and records the entry stack.
pub fn init(entry_stack_top: VirtAddr) {
    BOOT_CPU
        .entry_stack_top
        .store(entry_stack_top.as_u64(), Ordering::Relaxed);
    GsBase::write(VirtAddr::from_ptr(&BOOT_CPU));
    KernelGsBase::write(VirtAddr::zero());
}
