//! The NIC's interrupt line: which one it is, and acknowledging it at the device.
use super::counters::bump;
use super::{NET, Net};
use core::sync::atomic::{AtomicU8, Ordering};
use exo_abi::net::Counter;

/// The IRQ the NIC interrupts on, for the trap dispatcher (which must not take the lock to
/// find out); [`NO_IRQ`] when there is none.
pub(super) static IRQ: AtomicU8 = AtomicU8::new(NO_IRQ);
pub(super) const NO_IRQ: u8 = u8::MAX;

/// The PIC input the NIC interrupts on, if any.
pub fn irq() -> Option<u8> {
    let irq = IRQ.load(Ordering::Relaxed);
    (irq != NO_IRQ).then_some(irq)
}

/// The NIC interrupted: acknowledges it at the device (the frames are taken by [`poll`]).
pub fn acknowledge_interrupt() {
    let mut net = NET.lock();
    let Net { nic, counters, .. } = &mut *net;
    if let Some(nic) = nic.as_mut() {
        nic.acknowledge_interrupt();
        bump(counters, Counter::Interrupts);
    }
}
