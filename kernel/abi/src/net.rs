//! The network path's shared layouts: packet rings, kernel counters, limits.
//!
//! The calls themselves are documented next to their numbers in [`crate::syscall`].
//!
//! A packet ring is memory the app owns and has mapped read+write: a whole number of
//! [`RING_SLOT_BYTES`]-sized slots, page-aligned. Each slot starts with an 8-byte header:
//! the owner word (`u32`, little-endian) then the frame's length on the wire (`u32`). An owner
//! word of 0 means *empty* (the kernel may fill the slot); the kernel copies the frame after the
//! header, then stores its captured length in the owner word last. The app reads the frame and clears the owner word to give the slot back.
//! The kernel fills slots in order and never skips one: if the next slot is still owned by the
//! app, the frame is dropped and counted as `ring_full`.

/// Bytes of one ring slot (header plus frame).
pub const RING_SLOT_BYTES: u64 = 4096;
/// Bytes of a slot's header: owner word (captured length, 0 = empty) and wire length.
pub const RING_SLOT_HEADER_BYTES: u64 = 8;
/// Largest frame a slot holds, and the largest frame the kernel accepts from the NIC.
pub const FRAME_MAX_BYTES: u64 = RING_SLOT_BYTES - RING_SLOT_HEADER_BYTES;
/// Shortest frame the kernel demultiplexes: an Ethernet header. Shorter ones are `malformed`.
pub const FRAME_MIN_BYTES: u64 = 14;
/// Most slots in one ring.
pub const RING_MAX_SLOTS: u64 = 256;
/// Largest encoded filter `filter_bind` reads.
pub const FILTER_MAX_BYTES: u64 = 4096;

/// Where slot `index` of a ring starting at `ring` begins.
pub const fn slot_address(ring: u64, index: u64) -> u64 {
    ring + index * RING_SLOT_BYTES
}

/// Checks a ring an app offers: page-aligned, a whole number of slots, 1..=[`RING_MAX_SLOTS`].
/// Returns the slot count. (Whether the app has it mapped writable is the kernel's check.)
pub const fn ring_slots(address: u64, length_bytes: u64) -> Option<u64> {
    if !address.is_multiple_of(RING_SLOT_BYTES) || !length_bytes.is_multiple_of(RING_SLOT_BYTES) {
        return None;
    }
    let slots = length_bytes / RING_SLOT_BYTES;
    if slots == 0 || slots > RING_MAX_SLOTS {
        None
    } else {
        Some(slots)
    }
}

/// Longest encoded handler `ash_bind` takes (the longest program, 16 bytes an instruction,
/// plus its header and regions).
pub const ASH_HANDLER_MAX_BYTES: u64 = 8 + 8 * 8 + 16 * 1024;
/// Handlers one environment may have bound at once.
pub const ASH_MAX_HANDLERS: usize = 8;
/// Aborted runs after which a handler is disabled.
pub const ASH_ABORT_LIMIT: u64 = 4;

/// A handler's own counters, read with `ash_counter(handler_cap, index)`.
#[repr(u64)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AshCounter {
    /// Runs.
    Runs = 0,
    /// Runs aborted by a failed runtime check.
    Aborts = 1,
    /// Bytes copied into the owner's regions.
    BytesCopied = 2,
    /// Replies sent.
    RepliesSent = 3,
    /// Replies the transmit check refused.
    RepliesRefused = 4,
    /// 1 once the handler is disabled (after [`ASH_ABORT_LIMIT`] aborts), else 0.
    Disabled = 5,
    /// TSC cycles spent running it (under `-icount shift=0`, guest instructions).
    Cycles = 6,
}

impl AshCounter {
    /// Every counter, in index order.
    pub const ALL: [AshCounter; 7] = [
        AshCounter::Runs,
        AshCounter::Aborts,
        AshCounter::BytesCopied,
        AshCounter::RepliesSent,
        AshCounter::RepliesRefused,
        AshCounter::Disabled,
        AshCounter::Cycles,
    ];

    /// The counter at `index`.
    pub const fn from_index(index: u64) -> Option<AshCounter> {
        if index < AshCounter::ALL.len() as u64 {
            Some(AshCounter::ALL[index as usize])
        } else {
            None
        }
    }
}

/// The kernel's network counters, read one at a time with `net_counter(index)`.
#[repr(u64)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Counter {
    /// Frames taken from the NIC.
    RxFrames = 0,
    /// Copies written into app rings (one frame can reach several monitors).
    Delivered = 1,
    /// Frames no bound filter matched.
    NoMatch = 2,
    /// Copies dropped because the target ring's next slot was still owned by the app.
    RingFull = 3,
    /// Frames shorter than an Ethernet header or longer than [`FRAME_MAX_BYTES`].
    Malformed = 4,
    /// Transmit requests refused by the transmit check.
    TxRefused = 5,
    /// Frames transmitted.
    TxFrames = 6,
    /// Frames the demux classified (the denominator of the next two).
    DemuxFrames = 7,
    /// TSC cycles spent classifying (the shared demux code and every monitor ring's; not the copies into
    /// rings), summed over `DemuxFrames` frames. Under `-icount shift=0` a cycle is one
    /// guest instruction.
    DemuxCycles = 8,
    /// NIC interrupts taken.
    Interrupts = 9,
    /// Polls that used up their budget with frames still waiting: receive went on by polling
    /// (the NIC does not interrupt again until the kernel has caught up).
    PollsOverBudget = 10,
    /// `net_wait` calls that blocked.
    WaitsBlocked = 11,
    /// Blocked `net_wait`s ended by frames (for the caller's rings, or any with
    /// `rx_frames_seen`).
    WaitsWoken = 12,
    /// Blocked `net_wait`s ended by their timeout.
    WaitsTimedOut = 13,
    /// Binds and unbinds of port-claiming filters that changed only a table entry of the
    /// shared demux code (no new code).
    DemuxPatched = 14,
    /// Binds and unbinds of port-claiming filters that generated the shared demux code anew.
    DemuxRegenerated = 15,
    /// Handler runs (every frame a filter with an enabled handler won).
    AshRuns = 16,
    /// Handler runs aborted by a failed runtime check (the frame is dropped).
    AshAborts = 17,
    /// Frames handlers consumed (no ring copy).
    AshConsumed = 18,
    /// Frames handlers dropped.
    AshDropped = 19,
    /// Replies handlers sent.
    AshReplies = 20,
    /// Handler replies the transmit check refused.
    AshRepliesRefused = 21,
    /// Handlers disabled after too many aborts.
    AshDisabled = 22,
    /// Handler replies the transmit check let through but the NIC's transmit queue had no
    /// room for.
    AshRepliesDropped = 23,
    /// ARP replies to the host's addresses copied to an app that had asked about their sender
    /// (its request allowed by the transmit check in the last 3 s; see `NetTransmit`), one per
    /// app that asked.
    ArpAnswersToAskers = 24,
    /// ARP requests apps sent whose question the kernel had no room to remember (only when
    /// more environments than can exist at once would ask: each holds at most 4).
    ArpQuestionsUnrecorded = 25,
    /// TSC cycles from a frame's arrival (taken from the NIC) to the next frame queued on the
    /// NIC, summed over `ArrivalToSendFrames` such pairs (a send with no arrival since the
    /// last pair is not counted). With one request in flight at a time this is the reply's
    /// latency inside the machine, measured at the same two points whether a handler or an
    /// app answers; under `-icount shift=0` a cycle is one guest instruction.
    ArrivalToSendCycles = 26,
    /// Arrival-to-send pairs counted in `ArrivalToSendCycles`.
    ArrivalToSendFrames = 27,
    /// Wake-ups and upcalls handlers asked for that were dropped: one poll's queue, or the
    /// owner's queue of undelivered handler upcalls, was full.
    AshRequestsDropped = 28,
    /// Arrival-to-send pairs left out of `ArrivalToSendCycles` because a timer tick came in
    /// between (its handling, and whatever it scheduled, is not the reply's cost).
    ArrivalToSendTicked = 29,
    /// Frames a ring's filters won (one of its monitor filters matched, or the shared demux's
    /// winner is one of its filters), counted before any handler decides: every frame that
    /// reached the ring or its handler, whatever became of it. Kept per ring (`net_counter(index,
    /// ring)`), so that a check outside the kernel can run the ring's filters over the same
    /// frames and demand the same count; machine-wide, the sum over rings.
    Matched = 30,
    /// TSC cycles in the receive poll (taking frames from the NIC, classifying, handlers,
    /// copies into rings, the handlers' replies; empty polls too), the profile's "virtio
    /// driver and delivery" layer with `DemuxCycles` and `DeliveryCycles` inside it. Under
    /// `-icount shift=0` a cycle is one guest instruction.
    RxPollCycles = 31,
    /// TSC cycles from a frame's classification to the end of its demultiplexing: the
    /// handlers run on it and its copies into rings.
    DeliveryCycles = 32,
    /// TSC cycles in `net_transmit` calls (gathering the frame from the app, the transmit
    /// check, queueing it on the NIC), refused ones included; not the system-call entry and
    /// exit.
    TransmitCycles = 33,
    /// `net_transmit` calls counted in `TransmitCycles`.
    TransmitCalls = 34,
    /// `net_transmit` calls refused with `WouldBlock`: the NIC had not yet sent enough of
    /// what it was given (every transmit buffer on the device, or the caller's share of them).
    TxQueueFull = 35,
    /// TSC cycles of the arrival-to-send pairs left out of `ArrivalToSendCycles` because a
    /// timer tick came in between (`ArrivalToSendTicked` of them): with them, the latency of
    /// every reply inside the machine, including the time other environments ran before the
    /// one answering got the processor. Under `-icount shift=0` a cycle is one guest
    /// instruction, so a reply waiting behind spinning environments waits their instructions.
    ArrivalToSendTickedCycles = 36,
}

impl Counter {
    /// Every counter, in index order.
    pub const ALL: [Counter; 37] = [
        Counter::RxFrames,
        Counter::Delivered,
        Counter::NoMatch,
        Counter::RingFull,
        Counter::Malformed,
        Counter::TxRefused,
        Counter::TxFrames,
        Counter::DemuxFrames,
        Counter::DemuxCycles,
        Counter::Interrupts,
        Counter::PollsOverBudget,
        Counter::WaitsBlocked,
        Counter::WaitsWoken,
        Counter::WaitsTimedOut,
        Counter::DemuxPatched,
        Counter::DemuxRegenerated,
        Counter::AshRuns,
        Counter::AshAborts,
        Counter::AshConsumed,
        Counter::AshDropped,
        Counter::AshReplies,
        Counter::AshRepliesRefused,
        Counter::AshDisabled,
        Counter::AshRepliesDropped,
        Counter::ArpAnswersToAskers,
        Counter::ArpQuestionsUnrecorded,
        Counter::ArrivalToSendCycles,
        Counter::ArrivalToSendFrames,
        Counter::AshRequestsDropped,
        Counter::ArrivalToSendTicked,
        Counter::Matched,
        Counter::RxPollCycles,
        Counter::DeliveryCycles,
        Counter::TransmitCycles,
        Counter::TransmitCalls,
        Counter::TxQueueFull,
        Counter::ArrivalToSendTickedCycles,
    ];

    /// The name xtask prints and writes to JSON.
    pub const fn name(self) -> &'static str {
        match self {
            Counter::RxFrames => "rx_frames",
            Counter::Delivered => "delivered",
            Counter::NoMatch => "no_match",
            Counter::RingFull => "ring_full",
            Counter::Malformed => "malformed",
            Counter::TxRefused => "tx_refused",
            Counter::TxFrames => "tx_frames",
            Counter::DemuxFrames => "demux_frames",
            Counter::DemuxCycles => "demux_cycles",
            Counter::Interrupts => "interrupts",
            Counter::PollsOverBudget => "polls_over_budget",
            Counter::WaitsBlocked => "waits_blocked",
            Counter::WaitsWoken => "waits_woken",
            Counter::WaitsTimedOut => "waits_timed_out",
            Counter::DemuxPatched => "demux_patched",
            Counter::DemuxRegenerated => "demux_regenerated",
            Counter::AshRuns => "ash_runs",
            Counter::AshAborts => "ash_aborts",
            Counter::AshConsumed => "ash_consumed",
            Counter::AshDropped => "ash_dropped",
            Counter::AshReplies => "ash_replies",
            Counter::AshRepliesRefused => "ash_replies_refused",
            Counter::AshDisabled => "ash_disabled",
            Counter::AshRepliesDropped => "ash_replies_dropped",
            Counter::ArpAnswersToAskers => "arp_answers_to_askers",
            Counter::ArpQuestionsUnrecorded => "arp_questions_unrecorded",
            Counter::ArrivalToSendCycles => "arrival_to_send_cycles",
            Counter::ArrivalToSendFrames => "arrival_to_send_frames",
            Counter::AshRequestsDropped => "ash_requests_dropped",
            Counter::ArrivalToSendTicked => "arrival_to_send_ticked",
            Counter::Matched => "matched",
            Counter::RxPollCycles => "rx_poll_cycles",
            Counter::DeliveryCycles => "delivery_cycles",
            Counter::TransmitCycles => "transmit_cycles",
            Counter::TransmitCalls => "transmit_calls",
            Counter::TxQueueFull => "tx_queue_full",
            Counter::ArrivalToSendTickedCycles => "arrival_to_send_ticked_cycles",
        }
    }

    /// The counter with index `index`, if any.
    pub const fn from_index(index: u64) -> Option<Counter> {
        if index < Counter::ALL.len() as u64 {
            Some(Counter::ALL[index as usize])
        } else {
            None
        }
    }
}

/// Decodes the lowercase hex xtask uses to pass an argument (a filter expression, which has
/// spaces) through the whitespace-separated kernel command line. `None` on odd length or a
/// non-hex digit. Writes into `out` and returns the length, or `None` if `out` is too short.
pub fn hex_decode(hex: &[u8], out: &mut [u8]) -> Option<usize> {
    if !hex.len().is_multiple_of(2) || out.len() < hex.len() / 2 {
        return None;
    }
    let digit = |byte: u8| match byte {
        b'0'..=b'9' => Some(byte - b'0'),
        b'a'..=b'f' => Some(byte - b'a' + 10),
        _ => None,
    };
    for (index, pair) in hex.chunks_exact(2).enumerate() {
        out[index] = digit(pair[0])? << 4 | digit(pair[1])?;
    }
    Some(hex.len() / 2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_layout() {
        assert_eq!(ring_slots(0x1000, 4 * RING_SLOT_BYTES), Some(4));
        assert_eq!(ring_slots(0x1001, 4 * RING_SLOT_BYTES), None);
        assert_eq!(ring_slots(0x1000, 100), None);
        assert_eq!(ring_slots(0x1000, 0), None);
        assert_eq!(ring_slots(0, (RING_MAX_SLOTS + 1) * RING_SLOT_BYTES), None);
        assert_eq!(slot_address(0x10000, 3), 0x10000 + 3 * 4096);
        const {
            assert!(
                FRAME_MAX_BYTES >= 1518,
                "a VLAN-tagged full-size frame fits a slot"
            )
        };
    }

    #[test]
    fn counters_are_indexed_in_order() {
        for (index, counter) in Counter::ALL.iter().enumerate() {
            assert_eq!(Counter::from_index(index as u64), Some(*counter));
        }
        assert_eq!(Counter::from_index(Counter::ALL.len() as u64), None);
    }

    #[test]
    fn hex_round_trip() {
        let mut out = [0u8; 16];
        let n = hex_decode(b"7463702070", &mut out).unwrap();
        assert_eq!(&out[..n], b"tcp p");
        assert_eq!(hex_decode(b"7", &mut out), None);
        assert_eq!(hex_decode(b"zz", &mut out), None);
        assert_eq!(hex_decode(b"414141", &mut out[..1]), None);
    }
}
