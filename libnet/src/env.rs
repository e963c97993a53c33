//! What the kernel told this environment at start: capabilities to its parent and itself,
//! and the argument its parent passed to `spawn`.
use core::sync::atomic::{AtomicU64, Ordering};
use exo_abi::cap::CapHandle;

static PARENT: AtomicU64 = AtomicU64::new(0);
static OWN: AtomicU64 = AtomicU64::new(0);
static ARGUMENT: AtomicU64 = AtomicU64::new(0);

/// Called once by `_start`.
pub fn init(parent: u64, own: u64, argument: u64) {
    PARENT.store(parent, Ordering::Relaxed);
    OWN.store(own, Ordering::Relaxed);
    ARGUMENT.store(argument, Ordering::Relaxed);
}

/// A capability to the parent (`CALL | YIELD`), `CapHandle::NONE` for boot apps.
pub fn parent() -> CapHandle {
    CapHandle(PARENT.load(Ordering::Relaxed))
}

/// A capability to this environment (all rights).
pub fn own() -> CapHandle {
    CapHandle(OWN.load(Ordering::Relaxed))
}

/// The parent's `spawn` argument (0 for boot apps).
pub fn argument() -> u64 {
    ARGUMENT.load(Ordering::Relaxed)
}
