//! The time from a frame's arrival to the next frame queued on the NIC: how long a request
//! waits inside the machine for its reply, measured at the same two points whoever answers it
//! (a handler in the kernel, or an app through its ring and `net_transmit`). Under
//! `-icount shift=0` the difference of two time stamps is a count of guest instructions.
#![forbid(unsafe_code)]
use super::{Counters, physical};
use exo_abi::net::Counter;

/// When the last frame arrived, if no frame has been queued since.
#[derive(Debug, Default)]
pub struct ArrivalClock {
    last: Option<u64>,
}

impl ArrivalClock {
    pub const fn new() -> Self {
        ArrivalClock { last: None }
    }

    /// A frame was taken from the NIC.
    pub fn arrived(&mut self) {
        self.last = Some(physical::tsc());
    }

    /// A frame was queued on the NIC: the first since an arrival adds one pair to the
    /// counters (later ones answer nothing that arrived).
    pub fn sent(&mut self, counters: &mut Counters) {
        if let Some(at) = self.last.take() {
            counters[Counter::ArrivalToSendCycles as usize] += physical::tsc().wrapping_sub(at);
            counters[Counter::ArrivalToSendFrames as usize] += 1;
        }
    }
}
