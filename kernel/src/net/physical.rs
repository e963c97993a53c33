//! Writes into user frames the kernel resolved earlier (packet rings, copied-out arguments)
//! through the identity map, and the TSC. The net path's only `unsafe` besides the device.
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

/// Copies `bytes` to identity-mapped physical address `physical`.
///
/// The caller passes an address inside one user frame it resolved from the current owner's
/// page table, checked writable by that owner, with `bytes` not crossing the frame's end;
/// the owner's frames live until its bindings are released (before its address space drops).
pub fn write(physical: u64, bytes: &[u8]) {
    assert!(
        physical % 4096 + bytes.len() as u64 <= 4096,
        "write stays in one frame"
    );
    // SAFETY: per the contract above the destination is a live user frame of RAM, identity
    // mapped writable for the kernel, and a kernel slice cannot overlap it.
    unsafe { core::ptr::copy_nonoverlapping(bytes.as_ptr(), physical as *mut u8, bytes.len()) };
}

/// The owner word at `physical` (4-byte aligned, in a live ring frame, as for [`write`]).
fn owner_word<'a>(physical: u64) -> &'a AtomicU32 {
    assert!(physical.is_multiple_of(4));
    // SAFETY: an aligned u32 in a live, identity-mapped user frame; the app accesses it
    // atomically too (the ring protocol), and AtomicU32 has the layout of u32.
    unsafe { &*(physical as *const AtomicU32) }
}

/// Reads a slot's owner word (0 = empty).
pub fn load_owner(physical: u64) -> u32 {
    owner_word(physical).load(Ordering::Acquire)
}

/// Publishes a slot: the frame's bytes were written before this store.
pub fn store_owner(physical: u64, length: u32) {
    owner_word(physical).store(length, Ordering::Release);
}

/// Calls `f` with the `length` bytes at identity-mapped physical address `physical`, for a
/// handler's region access (see `net::ash_host`).
///
/// The caller passes a range inside one user frame it resolved from the handler owner's page
/// table at bind time, checked read+write for that owner, which lives until the handler is
/// unbound (loader-mapped pages only: they are freed with the environment, whose handlers go
/// first).
pub fn with_bytes<R>(physical: u64, length: usize, f: impl FnOnce(&mut [u8]) -> R) -> R {
    assert!(
        physical % 4096 + length as u64 <= 4096,
        "a region piece stays in one frame"
    );
    // SAFETY: per the contract above the range is live RAM in one user frame, identity
    // mapped writable for the kernel. Nothing else references it while `f` runs: the kernel
    // runs handlers with interrupts off on the one CPU, so the owner is not running, and no
    // kernel object lives in user frames.
    let bytes = unsafe { core::slice::from_raw_parts_mut(physical as *mut u8, length) };
    f(bytes)
}

/// The 8-byte word at `physical` (8-aligned, in a live region frame, as for [`with_bytes`]),
/// for a handler's atomic add and compare-and-swap.
pub fn word<'a>(physical: u64) -> &'a AtomicU64 {
    assert!(physical.is_multiple_of(8));
    // SAFETY: an aligned u64 in a live, identity-mapped user frame (see `with_bytes`); the
    // app accesses it as it likes, and AtomicU64 has the layout of u64.
    unsafe { &*(physical as *const AtomicU64) }
}

/// The time-stamp counter.
pub fn tsc() -> u64 {
    // SAFETY: rdtsc only reads a counter; CR4.TSD is clear, and we run in ring 0 anyway.
    unsafe { core::arch::x86_64::_rdtsc() }
}
