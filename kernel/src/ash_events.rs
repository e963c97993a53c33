//! What a handler run asks of its owner's environment (wake it, raise its packet-arrival
//! upcall with an argument), queued until the kernel can act on it: the pure bookkeeping of
//! `net::ash_host`, here so host tests check that an upcall's argument reaches the owner.
//!
//! A handler's `Upcall` call carries `r1`: the owner's packet-arrival entry is entered with a
//! frame of kind `FRAME_ASH_UPCALL` naming the handler (`error_code`) and that argument
//! (`fault_address`), once per call, when the owner next runs (a `net_wait` it was blocked in
//! also returns, as for a wake). The queues are bounded: what does not fit is dropped and
//! counted, never allowed to grow kernel memory without limit.
use alloc::collections::VecDeque;
use alloc::vec::Vec;

/// An upcall a handler raised: which handler (its id as `ash_bind` returned it) and the
/// argument it passed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HandlerUpcall {
    pub handler: u32,
    pub argument: u64,
}

/// Requests of one poll's handler runs, for owners of type `Owner`, in the order made.
#[derive(Debug)]
pub struct Requests<Owner> {
    wakes: Vec<Owner>,
    upcalls: Vec<(Owner, HandlerUpcall)>,
    /// Most of each kind kept; further ones are dropped and counted.
    capacity: usize,
    dropped: u64,
}

impl<Owner: Copy> Requests<Owner> {
    /// Empty, keeping at most `capacity` wakes and `capacity` upcalls.
    pub const fn new(capacity: usize) -> Self {
        Requests {
            wakes: Vec::new(),
            upcalls: Vec::new(),
            capacity,
            dropped: 0,
        }
    }

    /// A handler of `owner`'s asked to wake it.
    pub fn wake(&mut self, owner: Owner) {
        if self.wakes.len() < self.capacity {
            self.wakes.push(owner);
        } else {
            self.dropped += 1;
        }
    }

    /// Handler `handler` of `owner`'s raised its packet-arrival upcall with `argument`.
    pub fn upcall(&mut self, owner: Owner, handler: u32, argument: u64) {
        if self.upcalls.len() < self.capacity {
            self.upcalls
                .push((owner, HandlerUpcall { handler, argument }));
        } else {
            self.dropped += 1;
        }
    }

    /// The wakes asked for since the last call, oldest first.
    pub fn take_wakes(&mut self) -> impl Iterator<Item = Owner> + '_ {
        self.wakes.drain(..)
    }

    /// The upcalls raised since the last call, oldest first.
    pub fn take_upcalls(&mut self) -> impl Iterator<Item = (Owner, HandlerUpcall)> + '_ {
        self.upcalls.drain(..)
    }

    /// Requests dropped because the queue was full, since the last call.
    pub fn take_dropped(&mut self) -> u64 {
        core::mem::take(&mut self.dropped)
    }
}

/// Handler upcalls most kept for one environment until it runs.
pub const UPCALLS_DUE_MAX: usize = 16;

/// One environment's handler upcalls not yet delivered, oldest first.
#[derive(Debug, Default)]
pub struct UpcallsDue {
    due: VecDeque<HandlerUpcall>,
    dropped: u64,
}

impl UpcallsDue {
    pub const fn new() -> Self {
        UpcallsDue {
            due: VecDeque::new(),
            dropped: 0,
        }
    }

    /// Queues `upcall`; false (and counted) if [`UPCALLS_DUE_MAX`] are already waiting.
    pub fn raise(&mut self, upcall: HandlerUpcall) -> bool {
        if self.due.len() >= UPCALLS_DUE_MAX {
            self.dropped += 1;
            return false;
        }
        self.due.push_back(upcall);
        true
    }

    /// The oldest upcall due, if any.
    pub fn take_oldest(&mut self) -> Option<HandlerUpcall> {
        self.due.pop_front()
    }

    /// Upcalls dropped because [`UPCALLS_DUE_MAX`] were waiting.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ash::builder::{Builder, R1};
    use ash::ir::{Call, Mem, Width};
    use ash::{Actions, Context, Verdict};

    /// A host whose wakes and upcalls go to the kernel's queues, as `net::ash_host` does.
    struct Host<'a> {
        owner: u32,
        handler: u32,
        requests: &'a mut Requests<u32>,
    }

    impl Actions for Host<'_> {
        fn region(&mut self, _: u8, _: u32, _: u32, _: &mut dyn FnMut(&mut [u8])) -> bool {
            false
        }
        fn fetch_add(&mut self, _: u8, _: u32, _: u64) -> Option<u64> {
            None
        }
        fn compare_swap(&mut self, _: u8, _: u32, _: u64, _: u64) -> Option<u64> {
            None
        }
        fn transmit(&mut self, _: &[u8]) -> bool {
            false
        }
        fn wake(&mut self) {
            self.requests.wake(self.owner);
        }
        fn upcall(&mut self, argument: u64) {
            self.requests.upcall(self.owner, self.handler, argument);
        }
    }

    /// A handler that raises the upcall with the frame's bytes 42..50 (a UDP payload's first
    /// eight) as its argument.
    fn raising_payload() -> ash::Handler {
        let mut b = Builder::new();
        let short = b.label();
        b.if_len_less(50, short)
            .load(R1, Width::B8, Mem::packet(42))
            .call(Call::Upcall)
            .exit(Verdict::Consume)
            .bind(short)
            .exit(Verdict::Drop);
        b.finish()
            .unwrap()
            .verify(&Context::default())
            .expect("verifies")
    }

    #[test]
    fn a_handlers_upcall_argument_reaches_its_owner() {
        let handler = raising_payload();
        let mut requests = Requests::new(4);
        let mut frame = [0u8; 60];
        frame[42..50].copy_from_slice(&0x1122_3344_5566_7788u64.to_be_bytes());
        let mut machine = ash::Machine::new();
        let run = ash::run(
            &handler,
            &frame,
            &mut machine,
            &mut Host {
                owner: 3,
                handler: 9,
                requests: &mut requests,
            },
        );
        assert_eq!(run.outcome, ash::Outcome::Exit(Verdict::Consume));
        let raised: Vec<_> = requests.take_upcalls().collect();
        assert_eq!(
            raised,
            [(
                3,
                HandlerUpcall {
                    handler: 9,
                    argument: 0x1122_3344_5566_7788
                }
            )]
        );
        assert_eq!(requests.take_wakes().count(), 0, "an upcall is not a wake");
        let mut due = UpcallsDue::new();
        assert!(due.raise(raised[0].1));
        assert_eq!(
            due.take_oldest().map(|upcall| upcall.argument),
            Some(0x1122_3344_5566_7788)
        );
        assert_eq!(due.take_oldest(), None);
    }

    #[test]
    fn full_queues_drop_and_count() {
        let mut requests = Requests::new(2);
        for argument in 0..5 {
            requests.upcall(1u32, 1, argument);
            requests.wake(1u32);
        }
        assert_eq!(requests.take_dropped(), 6);
        assert_eq!(requests.take_dropped(), 0, "counted once");
        let kept: Vec<u64> = requests.take_upcalls().map(|(_, u)| u.argument).collect();
        assert_eq!(kept, [0, 1], "the oldest are kept");
        assert_eq!(requests.take_wakes().count(), 2);
        let mut due = UpcallsDue::new();
        for argument in 0..UPCALLS_DUE_MAX as u64 + 3 {
            due.raise(HandlerUpcall {
                handler: 1,
                argument,
            });
        }
        assert_eq!(due.dropped(), 3);
        assert_eq!(due.take_oldest().map(|upcall| upcall.argument), Some(0));
    }
}
