//! `test=monitor-unbind-fails`: a monitor unbind whose regenerated code cannot be installed
//! (no frame left) takes the whole ring down, and with it the ring's port-claiming filters in
//! the shared demux: no port stays claimed by a filter that reaches nothing. Apps cannot make
//! the kernel run out of frames (their quotas leave it a quarter), so the kernel builds the
//! ring itself, before any app runs, and drains the allocator.
#![forbid(unsafe_code)]

use super::filters::unbind;
use super::ring::{BoundFilter, Ring, owned_ports, swap_in};
use super::shared::bind_shared;
use super::{NET, Net};
use crate::env::EnvId;
use crate::mm::frames;
use alloc::vec::Vec;
use dpf::trie::Trie;
use exo_abi::KernelExit;
use exo_abi::cap::CapHandle;

/// The environment the test's ring is for (none runs: it is only a name).
const OWNER: EnvId = 1;
/// The ring's user address (nothing is delivered: the scenario has no NIC).
const RING_ADDRESS: u64 = 0x0000_5000_0000_0000;
/// Its monitors (two, so the trie left after one goes still needs code) and its claims.
const MONITORS: [&str; 2] = ["arp", "ip6"];
const CLAIMS: [&str; 2] = ["ip and udp dst port 7", "ip and tcp dst port 80"];

fn compiled(expression: &str, id: u32) -> dpf::Filter {
    dpf::frontend::compile(expression, dpf::FilterId(id))
        .ok()
        .and_then(|filters| filters.into_iter().next())
        .expect("the test's expressions compile to one filter each")
}

fn bound(id: u32, filter: &dpf::Filter) -> BoundFilter {
    BoundFilter {
        id,
        claim: dpf::claim::claim(filter),
        capability: CapHandle::NONE,
        proven_len: 0,
        code_bytes: 0,
    }
}

/// Binds the ring: monitors in its own trie, claims in the shared demux.
fn bind_ring(net: &mut Net) -> u32 {
    let mut ring = Ring::new(OWNER, RING_ADDRESS, Vec::new());
    let mut trie = Trie::new();
    let first_monitor = net.next_filter;
    for expression in MONITORS {
        let id = net.next_filter;
        net.next_filter += 1;
        let filter = compiled(expression, id);
        ring.filters.push(bound(id, &filter));
        trie.insert(filter).expect("distinct monitors");
    }
    swap_in(&mut ring, trie).expect("code for the monitors, frames still free");
    for expression in CLAIMS {
        let id = net.next_filter;
        net.next_filter += 1;
        let filter = compiled(expression, id);
        let claim = bound(id, &filter);
        assert!(claim.claim.is_some(), "{expression} claims a port");
        bind_shared(
            &mut net.shared,
            &mut net.counters,
            filter,
            (id, OWNER, RING_ADDRESS),
        )
        .expect("the claim binds, frames still free");
        ring.filters.push(claim);
    }
    net.rings.push(ring);
    first_monitor
}

/// Runs the self-test and stops the machine: `Exited(0)` when the failed unbind left no
/// claim behind; a panic says what stayed.
pub fn self_test() -> ! {
    let monitor = bind_ring(&mut NET.lock());
    log!(
        "self-test: test=monitor-unbind-fails, ring {RING_ADDRESS:#x}: monitors {MONITORS:?}, claims {CLAIMS:?}; unbinding monitor {monitor} with no frame free"
    );
    let mut held = Vec::with_capacity(frames::free_count() as usize);
    while let Some(frame) = frames::allocate() {
        held.push(frame);
    }
    unbind(monitor);
    held.into_iter().for_each(frames::free);
    let net = NET.lock();
    let rings = net.rings.iter().filter(|ring| ring.owner == OWNER).count();
    let ports: Vec<_> = owned_ports(&net.rings, OWNER).collect();
    let (shared_filters, shared_trie) = net.shared.as_ref().map_or((0, 0), |shared| {
        (shared.filters.len(), shared.demux.trie().len())
    });
    if rings != 0 || !ports.is_empty() || shared_filters != 0 || shared_trie != 0 {
        panic!(
            "self-test: after the failed unbind: {rings} rings, ports {ports:?} owned, {shared_filters} claims bound, {shared_trie} in the shared trie"
        );
    }
    log!(
        "self-test: monitor-unbind-fails: the ring went, and with it its {} claims: 0 rings, no port owned, 0 filters in the shared demux",
        CLAIMS.len()
    );
    drop(net);
    crate::arch::exit_qemu(KernelExit::Exited(0))
}
