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
    /// The running environment's exception upcall entry, for the trap fast path (0: none,
    /// every exception takes the slow path). See [`publish_exception_entry`].
    pub exception_entry: AtomicU64,
    /// Lowest address an upcall frame may start at on the fast path (see
    /// [`set_exception_frame_range`]).
    pub exception_frame_min: AtomicU64,
    /// Highest address an upcall frame may start at on the fast path (its last byte is
    /// `exception_frame_max + UPCALL_FRAME_BYTES - 1`).
    pub exception_frame_max: AtomicU64,
}

/// The boot CPU's data (the only CPU for now).
pub static BOOT_CPU: PerCpu = PerCpu {
    entry_stack_top: AtomicU64::new(0),
    user_rsp: AtomicU64::new(0),
    exception_entry: AtomicU64::new(0),
    exception_frame_min: AtomicU64::new(0),
    exception_frame_max: AtomicU64::new(0),
};

/// Sets the range the trap fast path may write upcall frames in: anywhere in
/// `[writable_start, writable_end)`. The caller guarantees that this range is mapped
/// user-writable in every environment's address space for the environment's whole life
/// (checked by the fast path on every exception: the frame must lie entirely inside).
pub fn set_exception_frame_range(writable_start: u64, writable_end: u64) {
    let frame_bytes = exo_abi::upcall::UPCALL_FRAME_BYTES;
    let (min, max) = if writable_end.saturating_sub(writable_start) >= frame_bytes {
        (writable_start, writable_end - frame_bytes)
    } else {
        // An empty range (min > max): no frame passes the check.
        (u64::MAX, 0)
    };
    BOOT_CPU.exception_frame_min.store(min, Ordering::Relaxed);
    BOOT_CPU.exception_frame_max.store(max, Ordering::Relaxed);
}

/// Publishes the running environment's exception upcall entry to the trap fast path (0: no
/// entry, every exception takes the slow path). The scheduler calls this on every change of
/// the running environment or of its entry.
pub fn publish_exception_entry(entry: u64) {
    BOOT_CPU.exception_entry.store(entry, Ordering::Relaxed);
}

/// Points GS at the boot CPU's data and records the entry stack.
pub fn init(entry_stack_top: VirtAddr) {
    BOOT_CPU
        .entry_stack_top
        .store(entry_stack_top.as_u64(), Ordering::Relaxed);
    GsBase::write(VirtAddr::from_ptr(&BOOT_CPU));
    KernelGsBase::write(VirtAddr::zero());
}
