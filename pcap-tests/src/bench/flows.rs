//! Filter sets for the benchmark: the flows a trace actually carries, most popular first, then
//! flows that never occur to reach large filter counts.
//!
//! A flow filter names `(vlan, family, transport, source address, destination port)` (see
//! [`Flow::expression`]); two flows with the same key would be the same filter, so keys are
//! kept distinct, which also makes the filters disjoint: a packet matches at most one.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;

use etherparse::{LaxNetSlice, LaxSlicedPacket, TransportSlice};
use rand::SeedableRng;
use rand::rngs::StdRng;

use crate::synth::{Flow, SynthConfig, Transport, random_flows};
use crate::trace::TracePacket;

/// What distinguishes one flow filter from another.
pub type FlowKey = (Option<u16>, IpAddr, Transport, u16);

/// The key a flow's filter selects on.
pub fn key(flow: &Flow) -> FlowKey {
    (flow.vlan, flow.src, flow.transport, flow.dst_port)
}

/// The flow of a frame as a flow filter sees it: Ethernet, at most one 802.1Q tag, IPv4 (not a
/// later fragment) or IPv6 without extension headers, TCP or UDP. `None` for anything else.
/// Parsed laxly: a capture snapped short of the IP length still names its flow, as it does to
/// a filter, which reads only the headers.
pub fn flow_of(data: &[u8]) -> Option<Flow> {
    // A flow filter looks for the tag only in the outer Ethernet type.
    let outer_type = u16::from_be_bytes([*data.get(12)?, *data.get(13)?]);
    let sliced = LaxSlicedPacket::from_ethernet(data).ok()?;
    let vlan = match outer_type {
        0x8100 | 0x88a8 | 0x9100 => {
            let tci = u16::from_be_bytes([*data.get(14)?, *data.get(15)?]);
            // Double tags: the filter's `ip`/`ip6` test reads the inner tag's type and fails.
            let inner = u16::from_be_bytes([*data.get(16)?, *data.get(17)?]);
            if matches!(inner, 0x8100 | 0x88a8 | 0x9100) {
                return None;
            }
            Some(tci & 0x0fff)
        }
        _ => None,
    };
    let (src, dst) = match sliced.net.as_ref()? {
        LaxNetSlice::Ipv4(ip) => {
            let header = ip.header();
            if header.fragments_offset().value() != 0 {
                return None;
            }
            (
                IpAddr::V4(header.source_addr()),
                IpAddr::V4(header.destination_addr()),
            )
        }
        LaxNetSlice::Ipv6(ip) => {
            if !ip.extensions().is_empty() {
                return None;
            }
            let header = ip.header();
            (
                IpAddr::V6(header.source_addr()),
                IpAddr::V6(header.destination_addr()),
            )
        }
        _ => return None,
    };
    let (transport, src_port, dst_port) = match sliced.transport.as_ref()? {
        TransportSlice::Tcp(tcp) => (Transport::Tcp, tcp.source_port(), tcp.destination_port()),
        TransportSlice::Udp(udp) => (Transport::Udp, udp.source_port(), udp.destination_port()),
        _ => return None,
    };
    Some(Flow {
        src,
        dst,
        transport,
        src_port,
        dst_port,
        vlan,
    })
}

/// The distinct flow keys of `packets`, most packets first (ties: first seen first).
pub fn flows_by_popularity(packets: &[TracePacket]) -> Vec<Flow> {
    let mut counts: HashMap<FlowKey, (usize, usize, Flow)> = HashMap::new();
    for (index, packet) in packets.iter().enumerate() {
        if let Some(flow) = flow_of(&packet.data) {
            counts.entry(key(&flow)).or_insert((0, index, flow)).0 += 1;
        }
    }
    let mut ranked: Vec<(usize, usize, Flow)> = counts.into_values().collect();
    ranked.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    ranked.into_iter().map(|(_, _, flow)| flow).collect()
}

/// `count` flows whose keys are not in `avoid`, shaped like synthetic traffic (a mix of IPv4
/// and IPv6, TCP and UDP, some tagged), from a fixed seed.
pub fn absent_flows(avoid: &HashSet<FlowKey>, count: usize, seed: u64) -> Vec<Flow> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut seen = avoid.clone();
    let mut out = Vec::with_capacity(count);
    while out.len() < count {
        let config = SynthConfig {
            flows: (count - out.len()).max(64),
            ..SynthConfig::default()
        };
        for flow in random_flows(&mut rng, &config) {
            if out.len() < count && seen.insert(key(&flow)) {
                out.push(flow);
            }
        }
    }
    out
}

/// The benchmark's flows: the trace's own, most popular first, then absent ones up to
/// `total`; the set of K filters is always the first K. Also returns `spare` more absent flows
/// (for bind-cost measurements: filters not yet in any set).
#[derive(Clone, Debug)]
pub struct FilterFlows {
    /// Flows in filter order.
    pub flows: Vec<Flow>,
    /// How many of them occur in the trace (a prefix of `flows`).
    pub occurring: usize,
    /// Flows in no set, to insert and remove.
    pub spare: Vec<Flow>,
}

/// Draws [`FilterFlows`] for a trace whose flows, by popularity, are `popular`.
pub fn draw(popular: &[Flow], total: usize, spare: usize, seed: u64) -> FilterFlows {
    let mut flows: Vec<Flow> = Vec::with_capacity(total);
    let mut keys = HashSet::new();
    for flow in popular {
        if flows.len() == total {
            break;
        }
        if keys.insert(key(flow)) {
            flows.push(*flow);
        }
    }
    let occurring = flows.len();
    // Avoid every flow of the trace, not only those drawn.
    for flow in popular {
        keys.insert(key(flow));
    }
    let extra = absent_flows(&keys, total - occurring + spare, seed);
    let (fill, spare_flows) = extra.split_at(total - occurring);
    flows.extend_from_slice(fill);
    FilterFlows {
        flows,
        occurring,
        spare: spare_flows.to_vec(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synth::{SynthConfig, generate};

    fn small_trace() -> crate::synth::SynthTrace {
        generate(&SynthConfig {
            packets: 3_000,
            flows: 200,
            ..SynthConfig::default()
        })
    }

    #[test]
    fn packets_give_back_their_generator_flows() {
        let trace = small_trace();
        let generator: HashSet<FlowKey> = trace.flows.iter().map(key).collect();
        let derived = flows_by_popularity(&trace.packets);
        assert!(!derived.is_empty());
        for flow in &derived {
            assert!(generator.contains(&key(flow)), "{flow:?} not generated");
        }
        // The most popular generator flow (Zipf rank 1) is the most frequent in the trace.
        assert_eq!(key(&derived[0]), key(&trace.flows[0]));
    }

    /// Fails with strict parsing, which refuses a frame shorter than its IP length.
    #[test]
    fn a_snapped_capture_names_the_same_flows() {
        let whole = small_trace();
        let snapped = generate(&SynthConfig {
            packets: 3_000,
            flows: 200,
            snaplen: Some(crate::bench::run::SYNTH_SNAPLEN),
            ..SynthConfig::default()
        });
        let mut cut = 0;
        for (w, s) in whole.packets.iter().zip(&snapped.packets) {
            assert_eq!(flow_of(&w.data), flow_of(&s.data));
            cut += usize::from(s.data.len() < w.data.len() && flow_of(&s.data).is_some());
        }
        assert!(cut > 100, "only {cut} snapped packets carry a flow");
        assert_eq!(
            flows_by_popularity(&whole.packets),
            flows_by_popularity(&snapped.packets)
        );
    }

    #[test]
    fn popularity_order_is_by_packet_count() {
        let trace = small_trace();
        let derived = flows_by_popularity(&trace.packets);
        let mut counts: HashMap<FlowKey, usize> = HashMap::new();
        for p in &trace.packets {
            if let Some(f) = flow_of(&p.data) {
                *counts.entry(key(&f)).or_default() += 1;
            }
        }
        let series: Vec<usize> = derived.iter().map(|f| counts[&key(f)]).collect();
        assert!(series.windows(2).all(|w| w[0] >= w[1]));
        assert_eq!(series.iter().sum::<usize>(), counts.values().sum::<usize>());
    }

    #[test]
    fn drawing_extends_with_absent_distinct_flows() {
        let trace = small_trace();
        let popular = flows_by_popularity(&trace.packets);
        let drawn = draw(&popular, 1_000, 10, 7);
        assert_eq!(drawn.flows.len(), 1_000);
        assert_eq!(drawn.occurring, popular.len());
        assert_eq!(drawn.spare.len(), 10);
        assert_eq!(drawn.flows[..popular.len()], popular[..]);
        let mut keys = HashSet::new();
        for flow in drawn.flows.iter().chain(&drawn.spare) {
            assert!(keys.insert(key(flow)), "duplicate key {flow:?}");
        }
        // No extension flow has a packet in the trace.
        let present: HashSet<FlowKey> = popular.iter().map(key).collect();
        for flow in drawn.flows[drawn.occurring..].iter().chain(&drawn.spare) {
            assert!(!present.contains(&key(flow)));
        }
        // Fewer filters than flows: the most popular prefix.
        let few = draw(&popular, 5, 3, 7);
        assert_eq!(few.flows, popular[..5]);
        assert_eq!(few.occurring, 5);
        // Same seed, same draw.
        assert_eq!(draw(&popular, 1_000, 10, 7).flows, drawn.flows);
    }
}
