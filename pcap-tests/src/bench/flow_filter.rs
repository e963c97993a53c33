//! A flow's pcap-filter expression as dpf filters: compiled by dpf's own front end, exactly as a
//! user binding `Flow::expression()` would get them, so the benchmark measures what users run.
//!
//! [`Flow::expression`] is `[vlan V and] ip|ip6 and tcp|udp and src host A and dst port P`; the
//! front end gives libpcap's verdicts (three tag types for `vlan`, the first-fragment rule and
//! the header-length shift for IPv4, the fixed 40-byte header for IPv6).

use dpf::{Filter, FilterId};

use crate::synth::Flow;

/// The conjunctive filters (one, or three for a tagged flow) that select `flow`'s packets,
/// all owned by `id`.
pub fn dpf_filters(flow: &Flow, id: FilterId) -> Vec<Filter> {
    let expression = flow.expression();
    dpf::frontend::compile(&expression, id).unwrap_or_else(|e| {
        panic!("the front end compiles every flow expression, but refused {expression:?}: {e}")
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synth::{SynthConfig, generate};
    use dpf::Packet;
    use dpf::ir::reference_matches;

    /// On synthetic traffic, each flow's filter matches exactly the packets of that flow that
    /// carry ports (not later fragments).
    #[test]
    fn filters_select_their_flow() {
        let trace = generate(&SynthConfig {
            packets: 4_000,
            flows: 120,
            ..SynthConfig::default()
        });
        let filters: Vec<Vec<Filter>> = trace
            .flows
            .iter()
            .enumerate()
            .map(|(i, f)| dpf_filters(f, FilterId(i as u32)))
            .collect();
        let mut matched = 0;
        for packet in &trace.packets {
            let p = Packet::whole(&packet.data);
            let expected = super::super::flows::flow_of(&packet.data).map(|flow| {
                trace
                    .flows
                    .iter()
                    .position(|g| super::super::flows::key(g) == super::super::flows::key(&flow))
                    .expect("generated flow")
            });
            let hits: Vec<usize> = filters
                .iter()
                .enumerate()
                .filter(|(_, set)| set.iter().any(|f| reference_matches(f, &p)))
                .map(|(i, _)| i)
                .collect();
            assert_eq!(hits, expected.into_iter().collect::<Vec<_>>());
            matched += usize::from(!hits.is_empty());
        }
        assert!(matched > 3_000);
    }
}
