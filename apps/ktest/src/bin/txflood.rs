//! Scenario: transmit faster than the NIC drains. `net_transmit` returns once a frame is
//! queued, not once it is sent, so an app in a tight loop can fill the device's transmit
//! queue. A flooder does that for a bounded time; every call must be `Ok` or the queue-full
//! `WouldBlock`, never anything else. Meanwhile the parent (its victim) sends frames of its
//! own, one per turn: each must be queued at the first attempt, since the flooder may hold
//! only its share of the transmit buffers. At the end the kernel's counters must balance
//! with what both saw: every call counted once, every `Ok` a transmitted frame, every
//! `WouldBlock` a `tx_queue_full`.
#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(target_os = "none")]
extern crate alloc;

#[cfg(target_os = "none")]
libnet::entry!(app::main);

#[cfg(target_os = "none")]
mod app {
    use libnet::abi::Error;
    use libnet::abi::cap::CapHandle;
    use libnet::abi::net::Counter;
    use libnet::abi::upcall::EnvStatus;
    use libnet::net::{self, FilterBinding, Ring};
    use libnet::{println, sys};

    /// The child's argument: flood.
    const FLOODER: u64 = 1;
    /// Ticks (10 ms) the flooder sends for, and the calls it makes at most.
    const FLOOD_TICKS: u64 = 300;
    const FLOOD_CALLS_MAX: u64 = 2_000_000;
    /// Frames the victim sends during the flood, one per turn.
    const VICTIM_FRAMES: u64 = 100;
    /// Yields the victim waits through at most for the flooder to start, then to end.
    const PATIENCE: u64 = 1_000_000;
    /// The source ports each owns (through a bound filter).
    const FLOODER_PORT: u16 = 8301;
    const VICTIM_PORT: u16 = 8302;
    /// UDP payload bytes of every frame: near a full Ethernet frame, so the device has work.
    const PAYLOAD_BYTES: usize = 1400;
    /// The counters the balance is checked on.
    const BALANCED: [Counter; 3] = [
        Counter::TransmitCalls,
        Counter::TxFrames,
        Counter::TxQueueFull,
    ];

    static RING: Ring<2> = Ring::new();

    /// Binds `ip and udp dst port PORT`, which makes the port this app's to send from.
    fn bind(port: u16) -> Result<FilterBinding, Error> {
        let expression = alloc::format!("ip and udp dst port {port}");
        let filters = dpf::frontend::compile(&expression, dpf::FilterId(0))
            .map_err(|_| Error::InvalidArgument)?;
        let filter = filters.first().ok_or(Error::InvalidArgument)?;
        let (address, bytes) = RING.region();
        net::filter_bind(&dpf::wire::encode(filter), address, bytes, CapHandle::NONE)
    }

    /// A UDP datagram from the host's address and `port` to a MAC nobody in the namespace has
    /// (the host's tap drops it: no replies come back).
    fn frame(port: u16) -> [u8; 14 + 20 + 8 + PAYLOAD_BYTES] {
        let mut frame = [0u8; 14 + 20 + 8 + PAYLOAD_BYTES];
        let mac = net::mac().unwrap_or_default();
        let ipv4 = net::ipv4().unwrap_or_default();
        frame[..6].copy_from_slice(&[0x02, 0, 0, 0, 0, 0x01]);
        frame[6..12].copy_from_slice(&mac);
        frame[12..14].copy_from_slice(&[0x08, 0x00]);
        let ip_bytes = (20 + 8 + PAYLOAD_BYTES) as u16;
        frame[14..16].copy_from_slice(&[0x45, 0]);
        frame[16..18].copy_from_slice(&ip_bytes.to_be_bytes());
        frame[18..26].copy_from_slice(&[0, 0, 0x40, 0, 64, 17, 0, 0]);
        frame[26..30].copy_from_slice(&ipv4);
        frame[30..34].copy_from_slice(&[10, 0, 2, 2]);
        frame[34..36].copy_from_slice(&port.to_be_bytes());
        frame[36..38].copy_from_slice(&9u16.to_be_bytes());
        frame[38..40].copy_from_slice(&(8 + PAYLOAD_BYTES as u16).to_be_bytes());
        frame
    }

    /// What one side's calls returned.
    #[derive(Clone, Copy, Debug, Default)]
    struct Outcomes {
        queued: u64,
        queue_full: u64,
        other: u64,
    }

    impl Outcomes {
        fn count(&mut self, result: Result<u64, Error>) {
            match result {
                Ok(_) => self.queued += 1,
                Err(Error::WouldBlock) => self.queue_full += 1,
                Err(_) => self.other += 1,
            }
        }

        fn calls(&self) -> u64 {
            self.queued + self.queue_full + self.other
        }
    }

    /// The flooder: `try_transmit` in a loop until the time or the call bound is up. It prints
    /// its outcomes and exits 0 only if every call was `Ok` or `WouldBlock`; the parent
    /// derives its figures from the kernel's counters less its own.
    fn flood() -> u8 {
        let Ok(_binding) = bind(FLOODER_PORT) else {
            println!("txflood flooder: could not bind its port");
            return 1;
        };
        let frame = frame(FLOODER_PORT);
        let mut outcomes = Outcomes::default();
        let end = sys::ticks() + FLOOD_TICKS;
        while sys::ticks() < end && outcomes.calls() < FLOOD_CALLS_MAX {
            outcomes.count(net::try_transmit(&[&frame]));
        }
        println!(
            "txflood flooder: {} calls: {} queued, {} queue full, {} other errors",
            outcomes.calls(),
            outcomes.queued,
            outcomes.queue_full,
            outcomes.other
        );
        u8::from(outcomes.other != 0)
    }

    fn counters() -> [u64; BALANCED.len()] {
        BALANCED.map(|counter| net::counter(counter as u64).unwrap_or(u64::MAX))
    }

    pub fn main() -> u8 {
        if libnet::env::argument() == FLOODER {
            return flood();
        }
        let Ok(_binding) = bind(VICTIM_PORT) else {
            println!("txflood: could not bind the victim's port");
            return 1;
        };
        let frame = frame(VICTIM_PORT);
        let before = counters();
        let Ok(flooder) = sys::spawn("txflood", FLOODER) else {
            println!("txflood: could not spawn the flooder");
            return 1;
        };
        // Wait until the flooder's calls show in the kernel's count.
        let mut waited = 0;
        while waited < PATIENCE && counters()[0] == before[0] {
            sys::yield_now();
            waited += 1;
        }
        let mut victim = Outcomes::default();
        for _ in 0..VICTIM_FRAMES {
            victim.count(net::try_transmit(&[&frame]));
            sys::yield_now();
        }
        let during = sys::env_status(flooder) == Ok(EnvStatus::Running);
        let status = sys::wait(flooder);
        let after = counters();
        let [calls, frames, queue_full] = [0, 1, 2].map(|index| after[index] - before[index]);
        // Every call either side made is counted once; the flooder's are the calls the
        // victim did not make, and its queue-full refusals those the victim did not see.
        let flooder_calls = calls - victim.calls();
        let flooder_queue_full = queue_full - victim.queue_full;
        let balanced =
            frames + queue_full == calls && victim.other == 0 && status == Ok(EnvStatus::Exited(0));
        println!(
            "txflood: flooder {flooder_calls} calls, {flooder_queue_full} queue full, status {status:?}; victim {} queued, {} queue full, {} other, sent while the flooder ran: {during}",
            victim.queued, victim.queue_full, victim.other
        );
        println!(
            "txflood: kernel counted {calls} calls, {frames} frames, {queue_full} queue full: balanced {balanced}"
        );
        let ok = balanced && during && victim.queued == VICTIM_FRAMES;
        println!(
            "txflood: every call Ok or WouldBlock, counters balance, the victim's frames all queued at once: {ok}"
        );
        u8::from(!ok)
    }
}

#[cfg(not(target_os = "none"))]
fn main() {}
