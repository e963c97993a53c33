//! Receive: frames from the NIC, classified by the filters' code, copied into rings; handlers
//! run first for the filters they are bound to.
use super::counters::{Counters, bump};
use super::device::Sender;
use super::handlers::BoundHandler;
use super::ring::Ring;
use super::shared::Shared;
use super::{NET, Net, arp_answers, ash_host, physical};
use crate::env::EnvId;
use dpf::trie::Score;
use dpf::{FilterId, Packet};
use exo_abi::net::{self as abi, AshCounter, Counter};

/// What a handler run needs besides the frame and the rings.
pub(super) struct HandlerContext<'a> {
    pub(super) handlers: &'a mut [BoundHandler],
    pub(super) outbox: &'a mut ash_host::Outbox,
    pub(super) mac: [u8; 6],
    ipv4: [u8; 4],
}

/// Runs the enabled handler bound to filter `filter`, if any; whether the frame still goes to
/// the filter's ring (no handler, a disabled one, or the verdict `Deliver`).
pub(super) fn run_handler(
    context: &mut HandlerContext<'_>,
    filter: u32,
    rings: &[Ring],
    counters: &mut Counters,
    frame: &[u8],
) -> bool {
    let Some(bound) = context
        .handlers
        .iter_mut()
        .find(|bound| bound.filter == filter && !bound.disabled())
    else {
        return true;
    };
    // A handler on a monitor filter (bound with the monitor right: a system service such as
    // the ICMP echo responder) sends with the system's privilege.
    let system = rings
        .iter()
        .flat_map(|ring| ring.filters.iter())
        .any(|bound_filter| bound_filter.id == filter && bound_filter.claim.is_none());
    let mut host = ash_host::Host {
        regions: &bound.regions,
        owner: bound.owner,
        handler: bound.id,
        privilege: if system {
            exo_kernel::tx_check::Privilege::System
        } else {
            exo_kernel::tx_check::Privilege::App
        },
        rings,
        mac: context.mac,
        ipv4: context.ipv4,
        outbox: context.outbox,
    };
    let start = physical::tsc();
    let run = bound
        .code
        .run(&bound.handler, frame, &mut bound.machine, &mut host);
    let own = &mut bound.counters;
    own[AshCounter::Cycles as usize] += physical::tsc().wrapping_sub(start);
    own[AshCounter::Runs as usize] += 1;
    own[AshCounter::BytesCopied as usize] += run.bytes_copied;
    own[AshCounter::RepliesSent as usize] += u64::from(run.replies_sent);
    own[AshCounter::RepliesRefused as usize] += u64::from(run.replies_refused);
    bump(counters, Counter::AshRuns);
    counters[Counter::AshRepliesRefused as usize] += u64::from(run.replies_refused);
    counters[Counter::TxRefused as usize] += u64::from(run.replies_refused);
    match run.outcome {
        ash::Outcome::Exit(ash::Verdict::Deliver) => true,
        ash::Outcome::Exit(ash::Verdict::Consume) => {
            bump(counters, Counter::AshConsumed);
            false
        }
        ash::Outcome::Exit(ash::Verdict::Drop) => {
            bump(counters, Counter::AshDropped);
            false
        }
        ash::Outcome::Abort { index, reason } => {
            bump(counters, Counter::AshAborts);
            own[AshCounter::Aborts as usize] += 1;
            if own[AshCounter::Aborts as usize] >= abi::ASH_ABORT_LIMIT {
                own[AshCounter::Disabled as usize] = 1;
                bump(counters, Counter::AshDisabled);
                log!(
                    "net: handler {} of env {} disabled after {} aborts (last at instruction {index}: {reason:?})",
                    bound.id,
                    bound.owner,
                    abi::ASH_ABORT_LIMIT
                );
                // The owner is told: its net_wait returns, and it gets the upcall naming the
                // handler.
                context.outbox.requests.wake(bound.owner);
                context.outbox.disabled.push((
                    bound.owner,
                    bound.id,
                    own[AshCounter::Aborts as usize],
                ));
            }
            false
        }
    }
}

/// Demultiplexes one frame: to the ring of the port-claiming filter that wins, and to every
/// ring whose monitor filters match; a handler bound to a winning filter runs first and
/// decides whether that ring gets its copy.
pub(super) fn demux(
    shared: Option<&Shared>,
    rings: &mut [Ring],
    counters: &mut Counters,
    context: &mut HandlerContext<'_>,
    frame: &[u8],
) {
    let length = frame.len() as u64;
    if !(abi::FRAME_MIN_BYTES..=abi::FRAME_MAX_BYTES).contains(&length) {
        bump(counters, Counter::Malformed);
        return;
    }
    // Classify first (timed: the demux cost), then deliver the copies (not timed).
    let start = physical::tsc();
    let winner = shared
        .and_then(|shared| Some(shared.code.as_ref()?.classify(frame)))
        .unwrap_or(0);
    for ring in rings.iter_mut() {
        ring.winner = ring.code.as_ref().map_or(0, |code| code.classify(frame));
        ring.matched = ring.winner != 0;
    }
    let cycles = physical::tsc().wrapping_sub(start);
    counters[Counter::DemuxCycles as usize] += cycles;
    let packet = Packet::whole(frame);
    if let Some(shared) = shared.filter(|shared| !shared.stale) {
        debug_assert_eq!(
            Score(winner).id(),
            dpf::interp::classify(shared.demux.trie(), &packet),
            "the shared JIT and the interpreter disagree"
        );
    }
    for ring in rings.iter() {
        debug_assert_eq!(
            ring.matched,
            dpf::interp::classify(&ring.trie, &packet).is_some(),
            "a monitor ring's JIT and the interpreter disagree"
        );
    }
    // The rings the frame reached, counted before handlers decide (a monitor match, or the
    // ring of the shared winner; once per ring): what a check outside the kernel reproduces
    // by running each ring's filters over the same frames.
    let shared_ring =
        shared
            .and_then(|shared| shared.ring_of(winner))
            .and_then(|(owner, address)| {
                rings
                    .iter()
                    .position(|ring| ring.owner == owner && ring.address == address)
            });
    for (index, ring) in rings.iter_mut().enumerate() {
        if ring.matched || shared_ring == Some(index) {
            ring.won += 1;
            bump(counters, Counter::Matched);
        }
    }
    // Handlers run before any ring copy: the monitors' first, then the shared winner's.
    if !context.handlers.is_empty() {
        for index in 0..rings.len() {
            if let Some(FilterId(id)) = Score(rings[index].winner).id()
                && rings[index].matched
                && !run_handler(context, id, rings, counters, frame)
            {
                rings[index].matched = false;
            }
        }
    }
    let shared_delivers = match Score(winner).id() {
        Some(FilterId(id)) if !context.handlers.is_empty() => {
            run_handler(context, id, rings, counters, frame)
        }
        _ => true,
    };
    if shared_delivers && let Some(index) = shared_ring {
        rings[index].matched = true;
    }
    arp_answers::mark_askers(frame, context.mac, context.ipv4, rings, counters);
    let mut matched = 0u64;
    let mut full = 0u64;
    for ring in rings.iter_mut() {
        if !ring.matched {
            continue;
        }
        matched += 1;
        let slot = ring.slots[ring.next];
        if physical::load_owner(slot) != 0 {
            full += 1;
            ring.full += 1;
            continue;
        }
        physical::write(slot + abi::RING_SLOT_HEADER_BYTES, frame);
        physical::write(slot + 4, &(length as u32).to_le_bytes());
        physical::store_owner(slot, length as u32);
        ring.next = (ring.next + 1) % ring.slots.len();
        ring.delivered += 1;
        ring.fresh += 1;
    }
    bump(counters, Counter::DemuxFrames);
    counters[Counter::RingFull as usize] += full;
    counters[Counter::Delivered as usize] += matched - full;
    if matched == 0 && winner == 0 && rings.iter().all(|ring| ring.winner == 0) {
        bump(counters, Counter::NoMatch);
    }
}

/// Frames one poll takes from the NIC at most (NAPI's budget): an interrupt, a timer tick or
/// a `net_wait` classifies this many and lets the environments run; frames left over are
/// taken by the next poll, and the device does not interrupt again until one has emptied the
/// queue (see `device`).
pub const POLL_BUDGET: usize = 64;

/// Whether frames were left in the NIC after a poll.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backlog {
    /// The receive queue is empty: the next frame interrupts.
    Empty,
    /// The budget ran out first: receive goes on by polling.
    Pending,
}

/// What [`poll`] reports to the scheduler about an environment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// Copies delivered to its rings (a handler's wake or upcall counts one).
    Delivered(u64),
    /// Its handler `id` was disabled after `aborts` aborted runs.
    HandlerDisabled { id: u32, aborts: u64 },
    /// One of its handlers raised its packet-arrival upcall (which also wakes it).
    HandlerUpcall(exo_kernel::ash_events::HandlerUpcall),
}

/// Takes up to [`POLL_BUDGET`] frames from the NIC and demultiplexes them; then reports, per
/// ring that got copies, its owner and how many, and every handler disabled (`report`, called
/// with the lock held: it must not call back into this module).
pub fn poll(mut report: impl FnMut(EnvId, Event)) -> Backlog {
    let mut net = NET.lock();
    let Net {
        nic,
        shared,
        rings,
        counters,
        handlers,
        outbox,
        ipv4,
        arrival,
        ..
    } = &mut *net;
    let Some(nic) = nic.as_mut() else {
        return Backlog::Empty;
    };
    let mut context = HandlerContext {
        handlers,
        outbox,
        mac: nic.mac(),
        ipv4: *ipv4,
    };
    // The poll is timed whole, and each frame's demux call less its classification is the
    // delivery cost (the profile's layers; `Counter::RxPollCycles`).
    let poll_start = physical::tsc();
    nic.take_back_sent();
    let mut taken = 0;
    while taken < POLL_BUDGET
        && nic.receive(|frame| {
            arrival.arrived();
            bump(counters, Counter::RxFrames);
            let (start, classified) = (physical::tsc(), counters[Counter::DemuxCycles as usize]);
            demux(shared.as_ref(), rings, counters, &mut context, frame);
            let classify = counters[Counter::DemuxCycles as usize] - classified;
            counters[Counter::DeliveryCycles as usize] +=
                physical::tsc().wrapping_sub(start).saturating_sub(classify);
        })
    {
        taken += 1;
        // Replies go out after the frame that asked for them (the NIC is busy receiving
        // inside the callback).
        for reply in context.outbox.replies.drain(..) {
            if nic.send(&reply, Sender::Kernel).is_ok() {
                arrival.sent(counters);
                bump(counters, Counter::TxFrames);
                bump(counters, Counter::AshReplies);
            } else {
                bump(counters, Counter::AshRepliesDropped);
            }
        }
    }
    for owner in context.outbox.requests.take_wakes() {
        report(owner, Event::Delivered(1));
    }
    for (owner, upcall) in context.outbox.requests.take_upcalls() {
        report(owner, Event::HandlerUpcall(upcall));
    }
    counters[Counter::AshRequestsDropped as usize] += context.outbox.requests.take_dropped();
    for (owner, id, aborts) in context.outbox.disabled.drain(..) {
        report(owner, Event::HandlerDisabled { id, aborts });
    }
    let backlog = if taken == POLL_BUDGET && nic.has_received() {
        bump(counters, Counter::PollsOverBudget);
        Backlog::Pending
    } else {
        Backlog::Empty
    };
    for ring in rings.iter_mut().filter(|ring| ring.fresh > 0) {
        report(
            ring.owner,
            Event::Delivered(core::mem::take(&mut ring.fresh)),
        );
    }
    counters[Counter::RxPollCycles as usize] += physical::tsc().wrapping_sub(poll_start);
    backlog
}
