//! Scenario: transmit faster than the NIC drains. `net_transmit` returns once a frame is
//! queued, not once it is sent, so an app in a tight loop can fill the device's transmit
//! queue. A flooder does that for a bounded time; every call must be `Ok` or the queue-full
//! `WouldBlock`, never anything else. Meanwhile the parent (its victim) sends frames of its
//! own, one per turn: each must be queued at the first attempt, since the flooder may hold
//! only its share of the transmit buffers. At the end the kernel's counters must balance
//! with what both saw: every call counted once, every `Ok` a transmitted frame, every
//! `WouldBlock` a `tx_queue_full`. After each `WouldBlock` the flooder sends a spoofed frame,
//! which must be `Denied` (and counted refused) though its share is (most likely) full: the
//! kernel checks a frame it cannot queue as it checks one it can.
//!
//! Before the flood the parent makes refused calls of every kind, each more times than the
//! NIC has transmit buffers: a piece that crosses into an unmapped page, a piece of 2^64 - 1
//! bytes, more pieces than allowed, a frame over `FRAME_MAX_BYTES`, one too long for a
//! transmit buffer, one with a spoofed source, and one both (refused as spoofed: a frame the
//! kernel cannot queue is checked all the same). Each must be refused with its own error and
//! counted as it should be, and must leave no transmit buffer held: the kernel reserves a
//! buffer before it copies and checks a frame, and one refusal that kept its reservation would,
//! that many times over, leave the parent no share to send its frames from.
#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(target_os = "none")]
extern crate alloc;

#[cfg(target_os = "none")]
libnet::entry!(app::main);

#[cfg(target_os = "none")]
mod app {
    use libnet::abi::Error;
    use libnet::abi::Syscall;
    use libnet::abi::cap::CapHandle;
    use libnet::abi::cap::Rights;
    use libnet::abi::net::{Counter, FRAME_MAX_BYTES};
    use libnet::abi::syscall::{ANY_FRAME, NET_TRANSMIT_MAX_PIECES};
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
    const BALANCED: [Counter; 4] = [
        Counter::TransmitCalls,
        Counter::TxFrames,
        Counter::TxQueueFull,
        Counter::TxRefused,
    ];

    /// Times each refused call is made: more than the NIC has transmit buffers (128).
    const REFUSED_ROUNDS: u64 = 200;
    /// A page mapped for the refusals (zeroed), with nothing mapped after it.
    const PAGE: u64 = 0x0000_7000_0000_0000;
    const PAGE_BYTES: u64 = 4096;

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
        let spoofed = spoofed(&frame);
        let mut outcomes = Outcomes::default();
        // After each queue-full refusal, a spoofed frame: with the flooder's share (most
        // likely) still full, it must still be refused by the check (`Denied`, counted as
        // refused), not answered `WouldBlock` as though it could have been sent.
        let (mut spoofed_denied, mut spoofed_other) = (0u64, 0u64);
        let end = sys::ticks() + FLOOD_TICKS;
        while sys::ticks() < end && outcomes.calls() < FLOOD_CALLS_MAX {
            let result = net::try_transmit(&[&frame]);
            outcomes.count(result);
            if result == Err(Error::WouldBlock) {
                match net::try_transmit(&[&spoofed]) {
                    Err(Error::Denied) => spoofed_denied += 1,
                    _ => spoofed_other += 1,
                }
            }
        }
        println!(
            "txflood flooder: {} calls: {} queued, {} queue full, {} other errors",
            outcomes.calls(),
            outcomes.queued,
            outcomes.queue_full,
            outcomes.other
        );
        println!(
            "txflood flooder: spoofed frames after a full queue: {spoofed_denied} denied, {spoofed_other} otherwise"
        );
        // Whether the queue fills at all depends on how fast the host drains it: the
        // deterministic form of this is the parent's spoofed frame too long for a buffer.
        u8::from(outcomes.other != 0 || spoofed_other != 0)
    }

    /// `frame` from a source address that is not the host's.
    fn spoofed(frame: &[u8]) -> [u8; 14 + 20 + 8 + PAYLOAD_BYTES] {
        let mut spoofed = [0u8; 14 + 20 + 8 + PAYLOAD_BYTES];
        spoofed.copy_from_slice(frame);
        spoofed[26] ^= 1;
        spoofed
    }

    /// `net_transmit` of a raw gather list (`count` may be more than the list holds).
    fn transmit_raw(gather: &[[u64; 2]], count: u64) -> Result<u64, Error> {
        sys::syscall5(
            Syscall::NetTransmit,
            [gather.as_ptr() as u64, count, 0, 0, 0],
        )
    }

    /// The refused calls (see the module comment), `REFUSED_ROUNDS` times each; `frame` is a
    /// frame the parent may send. True if every one got its own error, only the spoofed
    /// ones counted as refused by the check, nothing sent, no queue full.
    fn refusals(frame: &[u8]) -> bool {
        let Ok(page) = sys::page_alloc(ANY_FRAME) else {
            println!("txflood: no page for the refusals");
            return false;
        };
        if sys::page_map(page, PAGE, Rights::READ.union(Rights::WRITE)).is_err() {
            println!("txflood: could not map the refusals' page");
            return false;
        }
        let spoofed = spoofed(frame);
        let pointer = frame.as_ptr() as u64;
        let length = frame.len() as u64;
        // `frame` padded with the (zeroed) page: a frame of any length up to a page more that
        // the check would pass.
        let padded = |total: u64| [[pointer, length], [PAGE, total - length]];
        let (over, too_long) = (padded(FRAME_MAX_BYTES + 1), padded(FRAME_MAX_BYTES));
        let spoofed_too_long = [
            [spoofed.as_ptr() as u64, length],
            [PAGE, FRAME_MAX_BYTES - length],
        ];
        let many = [[pointer, 1]; NET_TRANSMIT_MAX_PIECES as usize + 1];
        let cases: [(&str, &[[u64; 2]], Error); 7] = [
            (
                "a piece crossing into an unmapped page",
                &[[pointer, 14], [PAGE + PAGE_BYTES - 8, 16]],
                Error::BadAddress,
            ),
            (
                "a piece of 2^64 - 1 bytes",
                &[[pointer, 14], [pointer, u64::MAX]],
                Error::InvalidArgument,
            ),
            ("more pieces than allowed", &many, Error::InvalidArgument),
            (
                "a frame over FRAME_MAX_BYTES",
                &over,
                Error::InvalidArgument,
            ),
            (
                "a frame too long for a transmit buffer",
                &too_long,
                Error::InvalidArgument,
            ),
            (
                "a spoofed source",
                &[[spoofed.as_ptr() as u64, spoofed.len() as u64]],
                Error::Denied,
            ),
            // It cannot be queued either way, but it is refused as spoofed, as it would be if
            // it fitted: a frame that cannot be queued is checked all the same.
            (
                "a spoofed source too long for a transmit buffer",
                &spoofed_too_long,
                Error::Denied,
            ),
        ];
        let before = net::counter(Counter::TxRefused as u64);
        let balanced_before = counters();
        let mut ok = true;
        for (what, gather, expected) in cases {
            let mut wrong = None;
            for _ in 0..REFUSED_ROUNDS {
                let result = transmit_raw(gather, gather.len() as u64);
                if result != Err(expected) {
                    wrong = Some(result);
                }
            }
            if let Some(result) = wrong {
                println!("txflood: {what}: {result:?}, not {expected:?}");
                ok = false;
            }
        }
        let refused =
            net::counter(Counter::TxRefused as u64).map(|after| after - before.unwrap_or(0));
        let now = counters();
        let [calls, frames, queue_full, _] =
            [0, 1, 2, 3].map(|index| now[index] - balanced_before[index]);
        let counted = refused == Ok(2 * REFUSED_ROUNDS)
            && calls == cases.len() as u64 * REFUSED_ROUNDS
            && frames == 0
            && queue_full == 0;
        let _ = sys::page_unmap(PAGE);
        println!(
            "txflood: {REFUSED_ROUNDS} of each refused call: each its own error {ok}, counted as refused {refused:?}, {calls} calls, {frames} sent, {queue_full} queue full"
        );
        ok && counted
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
        let refusals_ok = refusals(&frame);
        // Every buffer the refusals touched is free again: the share sends at once.
        let after_refusals = net::try_transmit(&[&frame]);
        println!(
            "txflood: after the refusals a frame queues at once: {after_refusals:?}; refusals as they should be: {refusals_ok}"
        );
        if !refusals_ok || after_refusals.is_err() {
            return 1;
        }
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
        let [calls, frames, queue_full, refused] =
            [0, 1, 2, 3].map(|index| after[index] - before[index]);
        // Every call either side made is counted once; the flooder's are the calls the
        // victim did not make, and its queue-full refusals those the victim did not see. Its
        // spoofed frames are the refused ones, each counted refused and not queue full.
        let flooder_calls = calls - victim.calls();
        let flooder_queue_full = queue_full - victim.queue_full;
        let balanced = frames + queue_full + refused == calls
            && victim.other == 0
            && status == Ok(EnvStatus::Exited(0));
        println!(
            "txflood: flooder {flooder_calls} calls, {flooder_queue_full} queue full, status {status:?}; victim {} queued, {} queue full, {} other, sent while the flooder ran: {during}",
            victim.queued, victim.queue_full, victim.other
        );
        println!(
            "txflood: kernel counted {calls} calls, {frames} frames, {queue_full} queue full, {refused} refused: balanced {balanced}"
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
