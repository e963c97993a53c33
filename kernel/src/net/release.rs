//! An environment's end: its handlers and filters go, and what they did is logged.
use super::{NET, Net};
use crate::env::EnvId;
use alloc::string::String;
use exo_abi::net::{AshCounter, Counter};

/// An environment ended: its bindings go (before its pages are freed), and the counters are
/// logged if it had any.
pub fn release(owner: EnvId) {
    let mut net = NET.lock();
    super::arp_answers::forget(owner);
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
