//! The time from a frame's arrival to the next frame queued on the NIC: how long a request
//! waits inside the machine for its reply, measured at the same two points whoever answers it
//! (a handler in the kernel, or an app through its ring and `net_transmit`). Under
//! `-icount shift=0` the difference of two time stamps is a count of guest instructions.
#![forbid(unsafe_code)]
use super::counters::Counters;
use super::physical;
use exo_abi::net::Counter;

/// When the last frame arrived (time stamp, timer tick), if no frame has been queued since.
#[derive(Debug, Default)]
pub struct ArrivalClock {
    last: Option<(u64, u64)>,
}

impl ArrivalClock {
    pub const fn new() -> Self {
        ArrivalClock { last: None }
    }

    /// A frame was taken from the NIC.
    pub fn arrived(&mut self) {
        self.last = Some((physical::tsc(), crate::arch::timer::ticks()));
    }

    /// A frame was queued on the NIC: the first since an arrival adds one pair to the
    /// counters (later ones answer nothing that arrived), unless a timer tick came in
    /// between, which is counted apart (its pairs and their cycles).
    pub fn sent(&mut self, counters: &mut Counters) {
        if let Some((at, tick)) = self.last.take() {
            let cycles = physical::tsc().wrapping_sub(at);
            if crate::arch::timer::ticks() != tick {
                counters[Counter::ArrivalToSendTicked as usize] += 1;
                counters[Counter::ArrivalToSendTickedCycles as usize] += cycles;
                return;
            }
            counters[Counter::ArrivalToSendCycles as usize] += cycles;
            counters[Counter::ArrivalToSendFrames as usize] += 1;
        }
    }
}
