//! The network path: virtio-net receive, DPF demultiplexing into app packet rings, counters,
//! and the network system calls.
//!
//! Demux: every port-claiming filter of every environment is merged into one live
//! [`dpf::jit::Demux`], whose generated code the kernel maps read+execute ([`jit`]): one call
//! classifies a frame and names the winning filter (longest match), hence its ring. A bind or
//! unbind that only adds or removes a key of a templated hash table is a patch of a few table
//! bytes; anything else generates the code anew. Monitor filters (they get copies) keep one
//! compiled trie per ring, run after the shared code; every monitor ring whose filters match
//! gets a copy. Debug builds check each verdict against dpf's interpreter. Ownership keeps ordinary filters apart: a filter
//! that claims a local port ([`dpf::claim`]) may be bound only if no other environment holds a
//! filter claiming that port (else `AddressInUse`), and the claim is the environment's until
//! the filter is unbound or the environment ends; it is also what lets the environment transmit
//! from that port. A filter that claims nothing specific is a monitor filter: it gets copies
//! and needs a monitor capability (`Object::NetMonitor`, right `MONITOR`). Each binding
//! lives by a capability (`Object::FilterBinding`) the system-call layer makes at bind time:
//! when that capability goes (deleted, revoked with its parent, its holder ended), the
//! capability layer calls [`capability_removed`] and the filter is unbound.
//!
//! Receive: [`poll`] takes at most [`POLL_BUDGET`] frames; the scheduler calls it from the
//! NIC's interrupt (taken in ring 3 or while idle), every timer tick and every `net_wait`, and
//! wakes the environments whose rings got frames (see `sched`).
//!
//! Code is swapped only in system calls, which run with interrupts off on the one CPU, and
//! frames are classified only in [`poll`], called from system calls, from interrupts of ring 3
//! and from the idle loop, never in the middle of another system call: so no frame is ever
//! being classified while old code is freed. That is the whole of the "atomic swap" argument
//! today.
#![deny(unsafe_code)]
mod arrival;
mod ash_host;
#[allow(unsafe_code)]
mod device;
#[allow(unsafe_code)]
pub mod jit;
#[allow(unsafe_code)]
mod physical;

use crate::env::{EnvId, Environment};
use crate::usermem::UserSlice;
use alloc::boxed::Box;
use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU8, Ordering};
use dpf::claim::PortClaim;
use dpf::jit::Demux;
use dpf::trie::{FilterHandle, Score, Trie};
use dpf::{FilterId, Packet};
use exo_abi::Error;
use exo_abi::cap::CapHandle;
use exo_abi::net::{self as abi, AshCounter, Counter};
use exo_kernel::elf::Access;
use spin::Mutex;

/// One ring and the filters that feed it.
struct Ring {
    owner: EnvId,
    address: u64,
    /// Physical address of each slot (one frame each).
    slots: Vec<u64>,
    next: usize,
    /// The ring's monitor filters (port-claiming ones are in [`Shared`]).
    trie: Trie,
    /// The monitor trie's generated code; `None` while the trie is empty.
    code: Option<jit::KernelCode>,
    /// Filters bound to this ring.
    filters: Vec<Bound>,
    /// Copies delivered to this ring.
    delivered: u64,
    /// Copies delivered since the last poll reported them (see [`poll`]).
    fresh: u64,
    /// Whether the frame being demultiplexed matched (scratch between the two passes).
    matched: bool,
    /// The monitor trie's winning score for that frame (0: none).
    winner: u64,
}

/// One bound filter.
struct Bound {
    id: u32,
    /// The port it claims (`None`: a monitor filter).
    claim: Option<PortClaim>,
    /// The capability `filter_bind` made for it (`NONE` until the system-call layer attached
    /// it, within the same call): the binding lasts as long as this capability.
    capability: CapHandle,
    /// Bytes every frame this filter wins is known to hold (its loads before the first shift
    /// succeeded): what a handler bound to it is verified for.
    proven_len: u16,
}

/// One bound handler (`ash_bind`).
struct BoundHandler {
    id: u32,
    /// The filter it runs for.
    filter: u32,
    owner: EnvId,
    handler: ash::Handler,
    /// Physical address of each page of each region, pinned while bound: loader-mapped pages
    /// live as long as the owner (whose handlers go before its pages); a `page_map`ped one
    /// cannot be unmapped or reprotected while pinned, and revoking it unbinds the handler
    /// first ([`ash_frames_revoked`]).
    regions: Vec<Vec<u64>>,
    /// The owner's virtual addresses of those pages.
    pinned: Vec<u64>,
    /// Boxed: the reply buffer is 1.5 KiB.
    machine: Box<ash::Machine>,
    /// The handler compiled (`ash::jit`), which is what runs.
    code: jit::HandlerCode,
    counters: [u64; AshCounter::ALL.len()],
    /// The capability `ash_bind` made (`NONE` until attached in the same call).
    capability: CapHandle,
}

impl BoundHandler {
    fn disabled(&self) -> bool {
        self.counters[AshCounter::Disabled as usize] != 0
    }
}

/// Bytes every frame `filter` matches holds: the furthest end of a load before its first
/// shift (every load checks `offset + width <= length`, and a failed load fails the filter).
fn proven_length(filter: &dpf::Filter) -> u16 {
    let mut proven = 0u32;
    for step in filter.steps() {
        match step {
            dpf::ir::Step::Test(atom) => {
                if let dpf::ir::Field::Packet { offset, width } = atom.field {
                    proven = proven.max(u32::from(offset) + u32::from(width.bytes()));
                }
            }
            // An expression step does not move the base: the tests after it still read
            // from the frame's start. What it loads itself proves nothing here.
            dpf::ir::Step::Eval(_) => {}
            dpf::ir::Step::Shift(_) => break,
        }
    }
    u16::try_from(proven).unwrap_or(u16::MAX)
}

/// Every port-claiming filter, merged, and its code.
struct Shared {
    demux: Demux,
    /// The demux's code as mapped; `None` while no filter is bound.
    code: Option<jit::KernelCode>,
    /// The mapped code is not the demux's (an install failed): install afresh at the next
    /// change, never patch.
    stale: bool,
    /// Each bound filter's trie handle and ring (owner, ring address).
    filters: BTreeMap<u32, (FilterHandle, EnvId, u64)>,
}

impl Shared {
    /// Brings the mapped code up to the demux's: copies the patched table bytes, or maps the
    /// code generated anew (dropping the old: one CPU, interrupts off, see the module doc).
    /// Counts which it was.
    fn sync(&mut self, counters: &mut Counters) -> Result<(), Error> {
        let patches = self.demux.take_patches().filter(|_| !self.stale);
        if let (Some(patches), Some(code)) = (&patches, self.code.as_mut()) {
            let compiled = self.demux.compiled().code();
            let written = patches
                .iter()
                .try_for_each(|&(start, end)| code.write_data(start, &compiled[start..end]));
            if written.is_ok() {
                if !patches.is_empty() {
                    bump(counters, Counter::DemuxPatched);
                }
                return Ok(());
            }
        }
        bump(counters, Counter::DemuxRegenerated);
        self.stale = true;
        self.code = if self.demux.trie().is_empty() {
            None
        } else {
            Some(install(self.demux.compiled())?)
        };
        self.stale = false;
        Ok(())
    }

    /// The ring (owner, address) of the filter `score` names, if it is still bound.
    fn ring_of(&self, score: u64) -> Option<(EnvId, u64)> {
        let FilterId(id) = Score(score).id()?;
        self.filters
            .get(&id)
            .map(|&(_, owner, address)| (owner, address))
    }

    /// Unbinds filter `id`; then the code must be synced.
    fn remove(&mut self, id: u32) -> bool {
        let Some((handle, _, _)) = self.filters.remove(&id) else {
            return false;
        };
        if self.demux.remove(handle).is_err() {
            // The trie and the code disagree now: the filter is gone from `filters`, so a
            // frame it still matches reaches no ring; the next change installs afresh.
            self.stale = true;
        }
        true
    }
}

/// Maps `compiled`, with the errors a system call reports.
fn install(compiled: &dpf::jit::CompiledTrie) -> Result<jit::KernelCode, Error> {
    jit::KernelCode::install(compiled).map_err(|error| match error {
        jit::InstallError::OutOfMemory => Error::OutOfMemory,
        jit::InstallError::BadLayout => Error::InvalidArgument,
    })
}

struct Net {
    /// Boxed: the driver's queues are large, and system calls run on a 64 KiB stack.
    nic: Option<Box<device::Nic>>,
    /// Created at the first bind of a port-claiming filter.
    shared: Option<Shared>,
    rings: Vec<Ring>,
    next_filter: u32,
    counters: [u64; Counter::ALL.len()],
    /// `arg=` words: for the boot app at this 1-based position (`arg=K:HEX`), or every app.
    arguments: Vec<(Option<usize>, String)>,
    /// Boot apps' environments and their 1-based positions on the command line.
    boot_apps: Vec<(EnvId, usize)>,
    /// The host's IPv4 address, which apps share (the command line's `ipv4=`).
    ipv4: [u8; 4],
    handlers: Vec<BoundHandler>,
    next_handler: u32,
    outbox: ash_host::Outbox,
    arrival: arrival::ArrivalClock,
}

static NET: Mutex<Net> = Mutex::new(Net {
    nic: None,
    shared: None,
    rings: Vec::new(),
    next_filter: 1,
    counters: [0; Counter::ALL.len()],
    arguments: Vec::new(),
    boot_apps: Vec::new(),
    ipv4: exo_kernel::cmdline::DEFAULT_IPV4,
    handlers: Vec::new(),
    next_handler: 1,
    outbox: ash_host::Outbox {
        replies: Vec::new(),
        requests: exo_kernel::ash_events::Requests::new(ash_host::OUTBOX_MAX_REQUESTS),
        disabled: Vec::new(),
    },
    arrival: arrival::ArrivalClock::new(),
});

/// Boot: records the apps' arguments and the host's IPv4 address, and probes the NIC.
pub fn init(arguments: &[&str], ipv4: [u8; 4]) {
    let nic = device::probe();
    let mut net = NET.lock();
    net.ipv4 = ipv4;
    net.arguments = arguments
        .iter()
        .map(|word| match word.split_once(':') {
            Some((position, hex)) => (position.parse().ok(), String::from(hex)),
            None => (None, String::from(*word)),
        })
        .collect();
    if nic.is_none() {
        log!("net: no virtio-net device");
    }
    let irq = nic.as_ref().and_then(device::Nic::irq);
    net.nic = nic.map(Box::new);
    drop(net);
    // Unmasked last, with the lock free: the handler takes it.
    if let Some(irq) = irq {
        IRQ.store(irq, Ordering::Relaxed);
        crate::arch::timer::unmask(irq);
    }
}

fn bump(counters: &mut Counters, counter: Counter) {
    counters[counter as usize] += 1;
}

type Counters = [u64; Counter::ALL.len()];

/// What a handler run needs besides the frame and the rings.
struct HandlerContext<'a> {
    handlers: &'a mut [BoundHandler],
    outbox: &'a mut ash_host::Outbox,
    mac: [u8; 6],
    ipv4: [u8; 4],
}

/// Runs the enabled handler bound to filter `filter`, if any; whether the frame still goes to
/// the filter's ring (no handler, a disabled one, or the verdict `Deliver`).
fn run_handler(
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
fn demux(
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
    if shared_delivers
        && let Some((owner, address)) = shared.and_then(|shared| shared.ring_of(winner))
        && let Some(ring) = rings
            .iter_mut()
            .find(|ring| ring.owner == owner && ring.address == address)
    {
        ring.matched = true;
    }
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
    let mut taken = 0;
    while taken < POLL_BUDGET
        && nic.receive(|frame| {
            arrival.arrived();
            bump(counters, Counter::RxFrames);
            demux(shared.as_ref(), rings, counters, &mut context, frame);
        })
    {
        taken += 1;
        // Replies go out after the frame that asked for them (the NIC is busy receiving
        // inside the callback).
        for reply in context.outbox.replies.drain(..) {
            if nic.send(&reply) {
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
    backlog
}

/// The IRQ the NIC interrupts on, for the trap dispatcher (which must not take the lock to
/// find out); [`NO_IRQ`] when there is none.
static IRQ: AtomicU8 = AtomicU8::new(NO_IRQ);
const NO_IRQ: u8 = u8::MAX;

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

/// Whether there is a NIC.
pub fn has_nic() -> bool {
    NET.lock().nic.is_some()
}

/// Frames taken from the NIC so far (the `rx_frames` counter).
pub fn received() -> u64 {
    NET.lock().counters[Counter::RxFrames as usize]
}

/// Counts one event of the scheduler's side of the network path (`net_wait`).
pub fn count(counter: Counter) {
    bump(&mut NET.lock().counters, counter);
}

/// What `filter_bind` bound.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BindOutcome {
    /// The filter id.
    pub id: u32,
    /// Whether it is a monitor filter (claims no port; bound on a monitor capability).
    pub monitor: bool,
}

/// `filter_bind(filter, length, ring, ring_length, monitor_cap)` from `env`; `monitor` says
/// whether the capability passed is a live monitor capability of `env`'s. The caller attaches
/// the binding's capability ([`attach_capability`]) or, if it cannot make one, unbinds
/// ([`unbind`]).
pub fn filter_bind(
    env: &Environment,
    filter: UserSlice,
    ring: UserSlice,
    monitor: bool,
) -> Result<BindOutcome, Error> {
    if filter.length_bytes() > abi::FILTER_MAX_BYTES {
        return Err(Error::InvalidArgument);
    }
    let slot_count =
        abi::ring_slots(ring.address(), ring.length_bytes()).ok_or(Error::InvalidArgument)?;
    let mut bytes = Vec::new();
    crate::usermem::read_chunks(env, filter, |chunk| bytes.extend_from_slice(chunk))?;
    env.mappings
        .check(ring.address(), ring.length_bytes(), Access::READ_WRITE)?;
    // Only pages the loader mapped, which live as long as the environment: a `page_map`ped
    // page can be unmapped or revoked while bound, and the kernel would write a freed frame.
    let slots = (0..slot_count)
        .map(|index| {
            let address = abi::slot_address(ring.address(), index);
            if env.bindings.contains_key(&address) {
                return Err(Error::InvalidArgument);
            }
            env.space
                .user_physical_address(address)
                .ok_or(Error::BadAddress)
        })
        .collect::<Result<Vec<u64>, Error>>()?;
    let owner = env.id;
    let mut unverified = dpf::wire::decode(&bytes).map_err(|_| Error::InvalidArgument)?;
    let mut net = NET.lock();
    let id = net.next_filter;
    unverified.id = FilterId(id);
    let filter = unverified.verify().map_err(|_| Error::InvalidArgument)?;
    let claim = dpf::claim::claim(&filter);
    let proven_len = proven_length(&filter);
    match &claim {
        None if !monitor => return Err(Error::Denied),
        None => {}
        Some(claim) => {
            let taken = net
                .rings
                .iter()
                .filter(|ring| ring.owner != owner)
                .flat_map(|ring| ring.filters.iter())
                .any(|bound| bound.claim.is_some_and(|other| other.overlaps(claim)));
            if taken {
                return Err(Error::AddressInUse);
            }
        }
    }
    if net.nic.is_none() {
        return Err(Error::InvalidArgument);
    }
    let index = match net
        .rings
        .iter()
        .position(|r| r.owner == owner && r.address == ring.address())
    {
        Some(index) if net.rings[index].slots.len() == slots.len() => index,
        Some(_) => return Err(Error::InvalidArgument),
        None => {
            net.rings.push(Ring {
                owner,
                address: ring.address(),
                slots,
                next: 0,
                trie: Trie::new(),
                code: None,
                matched: false,
                winner: 0,
                filters: Vec::new(),
                delivered: 0,
                fresh: 0,
            });
            net.rings.len() - 1
        }
    };
    let Net {
        shared,
        rings,
        counters,
        ..
    } = &mut *net;
    let target = &mut rings[index];
    let installed = if claim.is_some() {
        bind_shared(shared, counters, filter, (id, owner, target.address))
    } else {
        let mut trie = target.trie.clone();
        trie.insert(filter)
            .map_err(|_| Error::InvalidArgument)
            .and_then(|_| swap_in(target, trie))
    };
    if let Err(error) = installed {
        if target.filters.is_empty() {
            rings.remove(index);
        }
        return Err(error);
    }
    let monitor = claim.is_none();
    target.filters.push(Bound {
        id,
        claim,
        capability: CapHandle::NONE,
        proven_len,
    });
    net.next_filter += 1;
    Ok(BindOutcome { id, monitor })
}

/// Merges a port-claiming `filter` into the shared demux (made at the first such bind) for
/// ring `(owner, address)` as filter `id`, and brings the mapped code up to date; on failure
/// nothing is bound.
fn bind_shared(
    shared: &mut Option<Shared>,
    counters: &mut Counters,
    filter: dpf::Filter,
    (id, owner, address): (u32, EnvId, u64),
) -> Result<(), Error> {
    if shared.is_none() {
        *shared = Some(Shared {
            demux: Demux::new().map_err(|_| Error::OutOfMemory)?,
            code: None,
            stale: false,
            filters: BTreeMap::new(),
        });
    }
    let Some(shared) = shared.as_mut() else {
        return Err(Error::OutOfMemory);
    };
    let (handle, _) = shared
        .demux
        .insert(filter)
        .map_err(|_| Error::InvalidArgument)?;
    if let Err(error) = shared.sync(counters) {
        // The mapped code is still the old one, for the filters bound before: take the new
        // filter out of the demux again (the next change installs afresh).
        let _ = shared.demux.remove(handle);
        shared.stale = true;
        return Err(error);
    }
    shared.filters.insert(id, (handle, owner, address));
    Ok(())
}

/// Records the capability made for binding `id` (see [`filter_bind`]).
pub fn attach_capability(id: u32, capability: CapHandle) {
    let mut net = NET.lock();
    if let Some(bound) = net
        .rings
        .iter_mut()
        .flat_map(|ring| ring.filters.iter_mut())
        .find(|bound| bound.id == id)
    {
        bound.capability = capability;
    }
}

/// The capability binding `id` lives by, and who holds it (the environment that bound it).
pub fn binding_capability(id: u32) -> Option<(CapHandle, EnvId)> {
    let net = NET.lock();
    net.rings.iter().find_map(|ring| {
        ring.filters
            .iter()
            .find(|bound| bound.id == id)
            .map(|bound| (bound.capability, ring.owner))
    })
}

/// A capability naming binding `id` was removed: if it is the one the binding lives by, the
/// filter is unbound (its port claim goes with it).
pub fn capability_removed(id: u32, handle: CapHandle) {
    if binding_capability(id).is_some_and(|(capability, _)| capability == handle) {
        unbind(id);
    }
}

/// Compiles `trie` (monitor filters) and makes it and its code the ring's; nothing changes if that fails. The
/// old code is dropped (unmapped and freed) here, in a system call with interrupts off on the
/// one CPU, so no frame is being classified by it.
fn swap_in(ring: &mut Ring, trie: Trie) -> Result<(), Error> {
    let code = if trie.is_empty() {
        None
    } else {
        let compiled = dpf::jit::compile(&trie).map_err(|_| Error::InvalidArgument)?;
        Some(
            jit::KernelCode::install(&compiled).map_err(|error| match error {
                jit::InstallError::OutOfMemory => Error::OutOfMemory,
                jit::InstallError::BadLayout => Error::InvalidArgument,
            })?,
        )
    };
    ring.trie = trie;
    ring.code = code;
    Ok(())
}

/// Removes binding `id`, whoever made it (the capability checks are the caller's: see
/// [`capability_removed`]). Frames already in the ring stay there. Does nothing for an id
/// that is not bound.
pub fn unbind(id: u32) {
    let mut net = NET.lock();
    net.handlers.retain(|bound| bound.filter != id);
    let Some(index) = net
        .rings
        .iter()
        .position(|ring| ring.filters.iter().any(|bound| bound.id == id))
    else {
        return;
    };
    let Net {
        shared,
        rings,
        counters,
        ..
    } = &mut *net;
    if let Some(shared) = shared.as_mut()
        && shared.remove(id)
    {
        if let Err(error) = shared.sync(counters) {
            // The old code stays mapped; the filter is out of `filters`, so the frames it
            // still matches reach no ring. The next change installs afresh.
            log!("net: unbinding filter {id}: could not update the shared demux code: {error:?}");
        }
        let ring = &mut rings[index];
        ring.filters.retain(|bound| bound.id != id);
        if ring.filters.is_empty() {
            rings.remove(index);
        }
        return;
    }
    let ring = &mut net.rings[index];
    let handle = ring
        .trie
        .filters()
        .find(|(_, filter)| filter.id().0 == id)
        .map(|(handle, _)| handle);
    let mut trie = ring.trie.clone();
    // Removing a filter the trie holds and compiling what is left fails only without memory
    // for the code; then the whole ring goes (every filter on it stops, and their claims with
    // them) rather than keep delivering for a filter that is no longer bound.
    let swapped =
        handle.is_some_and(|handle| trie.remove(handle).is_ok() && swap_in(ring, trie).is_ok());
    if !swapped {
        log!(
            "net: unbinding filter {id}: could not regenerate the ring's code; ring {:#x} unbound",
            ring.address
        );
        let removed = net.rings.remove(index);
        // Its port-claiming filters live in the shared demux: they go with the ring, or their
        // ports would stay claimed by filters that reach nothing.
        let Net {
            shared, counters, ..
        } = &mut *net;
        if let Some(shared) = shared.as_mut() {
            let mut changed = false;
            for bound in &removed.filters {
                changed |= shared.remove(bound.id);
            }
            if changed && let Err(error) = shared.sync(counters) {
                log!(
                    "net: unbinding ring {:#x}: could not update the shared demux code: {error:?}",
                    removed.address
                );
            }
        }
        return;
    }
    ring.filters.retain(|bound| bound.id != id);
    if ring.filters.is_empty() {
        net.rings.remove(index);
    }
}

/// The `(IP protocol, port)` pairs `owner`'s filters claim: the source ports the transmit
/// check lets it (and its handlers) send from.
fn owned_ports(rings: &[Ring], owner: EnvId) -> Vec<(u8, u16)> {
    rings
        .iter()
        .filter(|ring| ring.owner == owner)
        .flat_map(|ring| ring.filters.iter())
        .filter_map(|bound| {
            bound
                .claim
                .map(|claim| (claim.transport.protocol(), claim.port))
        })
        .collect()
}

/// How many handlers `owner` has bound (its quota's `Handlers`).
pub fn handlers_of(owner: EnvId) -> u64 {
    NET.lock()
        .handlers
        .iter()
        .filter(|bound| bound.owner == owner)
        .count() as u64
}

/// How many filters `owner` has bound (its quota's `Filters`).
pub fn filters_of(owner: EnvId) -> u64 {
    NET.lock()
        .rings
        .iter()
        .filter(|ring| ring.owner == owner)
        .map(|ring| ring.filters.len() as u64)
        .sum()
}

/// `net_transmit(gather, count, raw)` from `env`; `raw`: it holds the raw-transmit right.
pub fn transmit(
    env: &Environment,
    gather: u64,
    pieces_count: u64,
    raw: bool,
) -> Result<u64, Error> {
    if pieces_count == 0 || pieces_count > exo_abi::syscall::NET_TRANSMIT_MAX_PIECES {
        return Err(Error::InvalidArgument);
    }
    let frame = {
        let mut pieces = Vec::new();
        crate::usermem::read_chunks(env, UserSlice::new(gather, pieces_count * 16), |chunk| {
            pieces.extend_from_slice(chunk)
        })?;
        let mut frame = Vec::new();
        for piece in pieces.chunks_exact(16) {
            let address = u64::from_le_bytes(piece[..8].try_into().expect("8 bytes"));
            let length = u64::from_le_bytes(piece[8..].try_into().expect("8 bytes"));
            // A user length: summed with overflow checked, or 2^64 - 1 wraps to a small one.
            if (frame.len() as u64)
                .checked_add(length)
                .is_none_or(|total| total > abi::FRAME_MAX_BYTES)
            {
                return Err(Error::InvalidArgument);
            }
            crate::usermem::read_chunks(env, UserSlice::new(address, length), |chunk| {
                frame.extend_from_slice(chunk)
            })?;
        }
        frame
    };
    let mut net = NET.lock();
    let Net {
        nic,
        counters,
        rings,
        ipv4,
        arrival,
        ..
    } = &mut *net;
    let nic = nic.as_mut().ok_or(Error::InvalidArgument)?;
    let ports = owned_ports(rings, env.id);
    let sender = exo_kernel::tx_check::SenderIdentity {
        mac: nic.mac(),
        ipv4: *ipv4,
        ports: &ports,
    };
    if let Err(refusal) = exo_kernel::tx_check::check(
        &frame,
        &sender,
        if raw {
            exo_kernel::tx_check::Privilege::Raw
        } else {
            exo_kernel::tx_check::Privilege::App
        },
    ) {
        bump(counters, Counter::TxRefused);
        log!("net: transmit refused: {refusal:?}");
        return Err(Error::Denied);
    }
    if !nic.send(&frame) {
        return Err(Error::InvalidArgument);
    }
    arrival.sent(counters);
    bump(counters, Counter::TxFrames);
    Ok(frame.len() as u64)
}

/// `net_mac()`.
pub fn mac() -> Result<u64, Error> {
    let net = NET.lock();
    let mac = net.nic.as_ref().ok_or(Error::InvalidArgument)?.mac();
    let mut bytes = [0u8; 8];
    bytes[..6].copy_from_slice(&mac);
    Ok(u64::from_le_bytes(bytes))
}

/// `net_ipv4()`.
pub fn ipv4() -> Result<u64, Error> {
    let net = NET.lock();
    net.nic.as_ref().ok_or(Error::InvalidArgument)?;
    Ok(u64::from(u32::from_le_bytes(net.ipv4)))
}

/// Boot: the app at 1-based command-line `position` runs as `id` (it gets the `arg=K:` words
/// with K = `position`).
pub fn boot_app(position: usize, id: EnvId) {
    NET.lock().boot_apps.push((id, position));
}

/// `net_counter(index)`.
pub fn counter(index: u64) -> Result<u64, Error> {
    let counter = Counter::from_index(index).ok_or(Error::InvalidArgument)?;
    Ok(NET.lock().counters[counter as usize])
}

/// `boot_argument(index, buffer, length)` into `env`.
pub fn boot_argument(env: &mut Environment, index: u64, buffer: UserSlice) -> Result<u64, Error> {
    let mut decoded = [0u8; 1024];
    let length = {
        let net = NET.lock();
        let position = net
            .boot_apps
            .iter()
            .find(|(id, _)| *id == env.id)
            .map(|(_, position)| *position);
        let (_, word) = net
            .arguments
            .iter()
            .filter(|(only, _)| only.is_none() || *only == position)
            .nth(usize::try_from(index).map_err(|_| Error::InvalidArgument)?)
            .ok_or(Error::NotFound)?;
        abi::hex_decode(word.as_bytes(), &mut decoded).ok_or(Error::InvalidArgument)?
    };
    if (length as u64) > buffer.length_bytes() {
        return Err(Error::InvalidArgument);
    }
    crate::usermem::write_bytes(env, buffer.address(), &decoded[..length])?;
    Ok(length as u64)
}

/// An environment ended: its bindings go (before its pages are freed), and the counters are
/// logged if it had any.
pub fn release(owner: EnvId) {
    let mut net = NET.lock();
    for bound in net.handlers.iter().filter(|bound| bound.owner == owner) {
        let counters = &bound.counters;
        log!(
            "net: env {owner} handler {}: runs={} aborts={} bytes_copied={} replies_sent={} replies_refused={} disabled={}",
            bound.id,
            counters[AshCounter::Runs as usize],
            counters[AshCounter::Aborts as usize],
            counters[AshCounter::BytesCopied as usize],
            counters[AshCounter::RepliesSent as usize],
            counters[AshCounter::RepliesRefused as usize],
            counters[AshCounter::Disabled as usize],
        );
    }
    net.handlers.retain(|bound| bound.owner != owner);
    let before = net.rings.len();
    let Net {
        shared,
        rings,
        counters,
        ..
    } = &mut *net;
    if let Some(shared) = shared.as_mut() {
        let mut removed = false;
        for bound in rings
            .iter()
            .filter(|ring| ring.owner == owner)
            .flat_map(|ring| ring.filters.iter())
        {
            removed |= shared.remove(bound.id);
        }
        if removed && let Err(error) = shared.sync(counters) {
            log!("net: env {owner} ended: could not update the shared demux code: {error:?}");
        }
    }
    for ring in net.rings.iter().filter(|ring| ring.owner == owner) {
        log!(
            "net: env {owner} ring {:#x}: {} filters, {} frames delivered",
            ring.address,
            ring.filters.len(),
            ring.delivered
        );
    }
    net.rings.retain(|ring| ring.owner != owner);
    if net.rings.len() != before {
        let mut line = String::from("net counters:");
        for counter in Counter::ALL {
            line.push_str(&alloc::format!(
                " {}={}",
                counter.name(),
                net.counters[counter as usize]
            ));
        }
        log!("{line}");
    }
}

/// `ash_bind(binding, handler, regions)` from `env`, for filter `filter` (the caller checked
/// the binding capability). The caller attaches the handler's capability
/// ([`ash_attach_capability`]) or, if it cannot make one, unbinds ([`ash_unbind`]).
pub fn ash_bind(
    env: &Environment,
    filter: u32,
    handler: UserSlice,
    regions: UserSlice,
) -> Result<u32, Error> {
    if handler.length_bytes() > abi::ASH_HANDLER_MAX_BYTES
        || regions.length_bytes() > 8 * ash::ir::MAX_REGIONS as u64
    {
        return Err(Error::InvalidArgument);
    }
    let mut bytes = Vec::new();
    crate::usermem::read_chunks(env, handler, |chunk| bytes.extend_from_slice(chunk))?;
    let mut region_bytes = Vec::new();
    crate::usermem::read_chunks(env, regions, |chunk| region_bytes.extend_from_slice(chunk))?;
    let unverified = ash::wire::decode(&bytes).map_err(|error| {
        log!(
            "net: ash_bind by env {}: undecodable handler: {error:?}",
            env.id
        );
        Error::InvalidArgument
    })?;
    let proven_len = {
        let net = NET.lock();
        let ring = net
            .rings
            .iter()
            .find(|ring| ring.filters.iter().any(|bound| bound.id == filter))
            .ok_or(Error::InvalidCapability)?;
        if ring.owner != env.id {
            return Err(Error::Denied);
        }
        if net.handlers.iter().any(|bound| bound.filter == filter) {
            return Err(Error::AddressInUse);
        }
        // Within the environment's quota (checked by the caller) and never more than this.
        if net
            .handlers
            .iter()
            .filter(|bound| bound.owner == env.id)
            .count()
            >= abi::ASH_MAX_HANDLERS
        {
            return Err(Error::Exhausted);
        }
        ring.filters
            .iter()
            .find(|bound| bound.id == filter)
            .map_or(0, |bound| bound.proven_len)
    };
    let context = ash::Context {
        min_packet_len: proven_len,
        ..ash::Context::default()
    };
    let handler = unverified.verify(&context).map_err(|error| {
        log!("net: ash_bind by env {}: {error}", env.id);
        Error::InvalidArgument
    })?;
    if region_bytes.len() != 8 * handler.regions().len() {
        return Err(Error::InvalidArgument);
    }
    let mut pinned = Vec::with_capacity(handler.regions().len());
    let mut pinned_pages = Vec::new();
    for (declared, address) in handler.regions().iter().zip(region_bytes.chunks_exact(8)) {
        let mut word = [0u8; 8];
        word.copy_from_slice(address);
        let address = u64::from_le_bytes(word);
        let pages = u64::from(declared.len).div_ceil(exo_abi::layout::PAGE_SIZE_BYTES);
        if !address.is_multiple_of(exo_abi::layout::PAGE_SIZE_BYTES) {
            return Err(Error::InvalidArgument);
        }
        let length = pages * exo_abi::layout::PAGE_SIZE_BYTES;
        env.mappings.check(address, length, Access::READ_WRITE)?;
        let frames = (0..pages)
            .map(|page| {
                let page_address = address + page * exo_abi::layout::PAGE_SIZE_BYTES;
                pinned_pages.push(page_address);
                env.space
                    .user_physical_address(page_address)
                    .ok_or(Error::BadAddress)
            })
            .collect::<Result<Vec<u64>, Error>>()?;
        pinned.push(frames);
    }
    let compiled = ash::jit::compile(&handler).map_err(|error| {
        log!("net: ash_bind by env {}: compiling: {error}", env.id);
        Error::InvalidArgument
    })?;
    let code = jit::HandlerCode::install(&compiled).map_err(|error| match error {
        jit::InstallError::OutOfMemory => Error::OutOfMemory,
        jit::InstallError::BadLayout => Error::InvalidArgument,
    })?;
    let mut net = NET.lock();
    // Checked again under the lock held to the end (nothing else runs meanwhile, but keep the
    // invariants local).
    if net.handlers.iter().any(|bound| bound.filter == filter) {
        return Err(Error::AddressInUse);
    }
    let id = net.next_handler;
    net.next_handler += 1;
    log!(
        "net: env {} bound handler {id} to filter {filter} ({} instructions, cost {}, packets >= {} bytes, {} bytes of code)",
        env.id,
        handler.code().len(),
        handler.cost(),
        proven_len,
        compiled.code().len()
    );
    net.handlers.push(BoundHandler {
        id,
        filter,
        owner: env.id,
        handler,
        regions: pinned,
        pinned: pinned_pages,
        machine: Box::new(ash::Machine::new()),
        code,
        counters: [0; AshCounter::ALL.len()],
        capability: CapHandle::NONE,
    });
    Ok(id)
}

/// Whether page `address` of `owner` is a region page of one of its handlers (then it may be
/// neither unmapped nor reprotected).
pub fn ash_pinned(owner: EnvId, address: u64) -> bool {
    NET.lock()
        .handlers
        .iter()
        .any(|bound| bound.owner == owner && bound.pinned.contains(&address))
}

/// The `(holder, frame)` pairs in `frames` are being taken from their holders (capabilities
/// revoked, deleted or repossessed): every handler of a holder with a region page among its
/// frames is unbound first. Returns (owner, handler id) of each, for the caller to tell the
/// owners.
pub fn ash_frames_revoked(frames: &[(EnvId, u64)]) -> Vec<(EnvId, u32)> {
    let mut net = NET.lock();
    let mut unbound = Vec::new();
    net.handlers.retain(|bound| {
        let hit = bound.regions.iter().flatten().any(|&page| {
            let frame = page & !(exo_abi::layout::PAGE_SIZE_BYTES - 1);
            frames.contains(&(bound.owner, frame))
        });
        if hit {
            unbound.push((bound.owner, bound.id));
        }
        !hit
    });
    for (owner, id) in &unbound {
        log!("net: handler {id} of env {owner} unbound: a region page was revoked");
    }
    unbound
}

/// Records the capability made for handler `id` (see [`ash_bind`]).
pub fn ash_attach_capability(id: u32, capability: CapHandle) {
    let mut net = NET.lock();
    if let Some(bound) = net.handlers.iter_mut().find(|bound| bound.id == id) {
        bound.capability = capability;
    }
}

/// Removes handler `id` (nothing if it is not bound).
pub fn ash_unbind(id: u32) {
    NET.lock().handlers.retain(|bound| bound.id != id);
}

/// A capability naming handler `id` was removed: if it is the one the handler lives by, the
/// handler is unbound.
pub fn ash_capability_removed(id: u32, handle: CapHandle) {
    let mut net = NET.lock();
    net.handlers
        .retain(|bound| bound.id != id || bound.capability != handle);
}

/// `ash_counter` of handler `id`.
pub fn ash_counter(id: u32, index: u64) -> Result<u64, Error> {
    let counter = AshCounter::from_index(index).ok_or(Error::InvalidArgument)?;
    let net = NET.lock();
    let bound = net
        .handlers
        .iter()
        .find(|bound| bound.id == id)
        .ok_or(Error::InvalidCapability)?;
    Ok(bound.counters[counter as usize])
}
