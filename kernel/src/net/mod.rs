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
//!
//! The modules, by concern: [`filters`] (bind, unbind), [`shared`] (the merged demux),
//! [`ring`] (rings and monitor code), [`receive`] (poll, demux, handler runs), [`handlers`]
//! (`ash_bind`), [`transmit`], [`counters`], [`interrupt`], [`boot_args`], [`release`].
#![deny(unsafe_code)]
mod arp_answers;
mod arrival;
mod ash_host;
mod boot_args;
mod counters;
#[allow(unsafe_code)]
mod device;
mod filters;
mod handlers;
mod interrupt;
#[allow(unsafe_code)]
pub mod jit;
pub mod jit_exhaustion;
#[allow(unsafe_code)]
mod physical;
mod receive;
mod release;
mod ring;
mod ring_counters;
mod shared;
mod transmit;
pub mod unbind_failure;

pub use boot_args::{boot_app, boot_argument};
pub use counters::{count, counter, received};
pub use filters::{
    attach_capability, binding_capability, capability_removed, code_bytes_of, filter_bind,
    filters_of, unbind,
};
pub use handlers::{
    ash_attach_capability, ash_bind, ash_capability_removed, ash_counter, ash_frames_revoked,
    ash_pinned, ash_unbind, handlers_of,
};
pub use interrupt::{acknowledge_interrupt, irq};
pub use receive::{Backlog, Event, POLL_BUDGET, poll};
pub use release::release;
pub use ring_counters::counter_of_ring;
pub use transmit::{ipv4, mac, transmit};

use crate::env::EnvId;
use alloc::boxed::Box;
use alloc::string::String;
use alloc::vec::Vec;
use core::sync::atomic::Ordering;
use exo_abi::net::Counter;
use handlers::BoundHandler;
use ring::Ring;
use shared::Shared;
use spin::Mutex;

/// The network path's state: one lock, taken by every entry point of this module.
struct Net {
    /// Boxed: the driver's queues are large, and system calls run on the fixed entry stack.
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
    net.arguments = boot_args::parse(arguments);
    if nic.is_none() {
        log!("net: no virtio-net device");
    }
    let irq = nic.as_ref().and_then(device::Nic::irq);
    net.nic = nic.map(Box::new);
    drop(net);
    // Unmasked last, with the lock free: the handler takes it.
    if let Some(irq) = irq {
        interrupt::IRQ.store(irq, Ordering::Relaxed);
        crate::arch::timer::unmask(irq);
    }
}

/// Whether there is a NIC.
pub fn has_nic() -> bool {
    NET.lock().nic.is_some()
}
