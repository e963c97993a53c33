//! A flow's pcap-filter expression as dpf filters, with the verdicts libpcap gives it.
//!
//! [`Flow::expression`] is `[vlan V and] ip|ip6 and tcp|udp and src host A and dst port P`.
//! libpcap 1.10 compiles it (for an Ethernet link, no kernel VLAN offload) to:
//! - `vlan V`: outer type 0x8100, 0x88a8 or 0x9100, then `(tci & 0x0fff) == V`; everything
//!   after moves 4 bytes on. Three tag types make three conjunctions with one id.
//! - IPv4: type 0x0800, protocol, source address, fragment offset 0 (later fragments carry no
//!   ports), then the port after the header length (`4 * (ihl)`).
//! - IPv6: type 0x86dd, next header, the four words of the source, then the port at the fixed
//!   offset after the 40-byte header (no extension headers are followed).

use std::net::IpAddr;

use dpf::{Atom, CmpOp, Field, Filter, FilterId, Shift, Step, UnverifiedFilter, Width};

use crate::synth::Flow;

const VLAN_TAG_TYPES: [u32; 3] = [0x8100, 0x88a8, 0x9100];

fn test(offset: u16, width: Width, mask: u32, value: u32) -> Step {
    Step::Test(Atom {
        field: Field::Packet { offset, width },
        mask,
        op: CmpOp::Eq,
        value,
    })
}

fn equals(offset: u16, width: Width, value: u32) -> Step {
    test(offset, width, width.max_value(), value)
}

/// The steps after the link layer, which starts `l2` bytes into the frame.
fn network_steps(flow: &Flow, l2: u16) -> Vec<Step> {
    let protocol = u32::from(flow.transport.protocol_number());
    let port = u32::from(flow.dst_port);
    let mut steps = Vec::new();
    match flow.src {
        IpAddr::V4(src) => {
            steps.push(equals(l2 - 2, Width::B2, 0x0800));
            steps.push(equals(l2 + 9, Width::B1, protocol));
            steps.push(equals(l2 + 12, Width::B4, u32::from(src)));
            steps.push(test(l2 + 6, Width::B2, 0x1fff, 0));
            steps.push(Step::Shift(Shift {
                offset: l2,
                width: Width::B1,
                mask: 0x0f,
                shift: 2,
            }));
            steps.push(equals(l2 + 2, Width::B2, port));
        }
        IpAddr::V6(src) => {
            steps.push(equals(l2 - 2, Width::B2, 0x86dd));
            steps.push(equals(l2 + 6, Width::B1, protocol));
            for (i, word) in src.octets().chunks(4).enumerate() {
                let value = u32::from_be_bytes([word[0], word[1], word[2], word[3]]);
                steps.push(equals(l2 + 8 + 4 * i as u16, Width::B4, value));
            }
            steps.push(equals(l2 + 40 + 2, Width::B2, port));
        }
    }
    steps
}

/// The conjunctive filters (one, or three for a tagged flow) that select `flow`'s packets,
/// all owned by `id`.
pub fn dpf_filters(flow: &Flow, id: FilterId) -> Vec<Filter> {
    let conjunctions: Vec<Vec<Step>> = match flow.vlan {
        None => vec![network_steps(flow, 14)],
        Some(vlan) => VLAN_TAG_TYPES
            .iter()
            .map(|&tag_type| {
                let mut steps = vec![
                    equals(12, Width::B2, tag_type),
                    test(14, Width::B2, 0x0fff, u32::from(vlan & 0x0fff)),
                ];
                steps.extend(network_steps(flow, 18));
                steps
            })
            .collect(),
    };
    conjunctions
        .into_iter()
        .map(|steps| {
            UnverifiedFilter { id, steps }
                .verify()
                .expect("flow filters use small offsets and full masks")
        })
        .collect()
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
