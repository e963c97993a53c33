//! The practical floor at every K: a hand-written Rust classifier that parses the headers once
//! and makes one `hashbrown` lookup on the flow tuple, for the same flows and with the same
//! verdicts as libpcap's programs for [`Flow::expression`] (the bytes read are those
//! [`super::native::NativeFlow`] reads for one flow).

use std::net::IpAddr;

use hashbrown::HashMap;

use super::Demux;
use crate::bench::packets::{PacketArena, PacketSpan};
use crate::synth::Flow;

/// What a flow filter selects on, as read from a packet: the tag (`NO_TAG` for none), the IP
/// protocol, the source address (IPv4 in the first four bytes, family in `v6`) and the
/// destination port.
/// [`super::rte_acl`] classifies the same tuple.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Tuple {
    pub(crate) vlan: u16,
    pub(crate) v6: bool,
    pub(crate) protocol: u8,
    pub(crate) dst_port: u16,
    pub(crate) source: [u8; 16],
}

/// A tag value no 12-bit VLAN id takes.
pub(crate) const NO_TAG: u16 = u16::MAX;

#[inline(always)]
fn u16_at(data: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes(data.get(at..at + 2)?.try_into().ok()?))
}

impl Tuple {
    pub(crate) fn of_flow(flow: &Flow) -> Tuple {
        let (v6, source) = match flow.src {
            IpAddr::V4(a) => {
                let mut s = [0; 16];
                s[..4].copy_from_slice(&a.octets());
                (false, s)
            }
            IpAddr::V6(a) => (true, a.octets()),
        };
        Tuple {
            vlan: flow.vlan.unwrap_or(NO_TAG),
            v6,
            protocol: flow.transport.protocol_number(),
            dst_port: flow.dst_port,
            source,
        }
    }

    /// The tuple a flow filter would see in `data`, or `None` where no flow filter can match
    /// (not IP after at most one tag, a later fragment, cut short).
    #[inline]
    pub(crate) fn of_packet(data: &[u8]) -> Option<Tuple> {
        let mut l3 = 14;
        let mut vlan = NO_TAG;
        if matches!(u16_at(data, 12)?, 0x8100 | 0x88a8 | 0x9100) {
            vlan = u16_at(data, 14)? & 0x0fff;
            l3 = 18;
        }
        let mut source = [0; 16];
        match u16_at(data, l3 - 2)? {
            0x0800 => {
                let header = data.get(l3..l3 + 16)?;
                if u16::from_be_bytes([header[6], header[7]]) & 0x1fff != 0 {
                    return None;
                }
                source[..4].copy_from_slice(&header[12..16]);
                let ports = l3 + 4 * usize::from(header[0] & 0x0f);
                Some(Tuple {
                    vlan,
                    v6: false,
                    protocol: header[9],
                    dst_port: u16_at(data, ports + 2)?,
                    source,
                })
            }
            0x86dd => {
                let header = data.get(l3..l3 + 44)?;
                source.copy_from_slice(&header[8..24]);
                Some(Tuple {
                    vlan,
                    v6: true,
                    protocol: header[6],
                    dst_port: u16::from_be_bytes([header[42], header[43]]),
                    source,
                })
            }
            _ => None,
        }
    }
}

/// K flows in one hash map from tuple to filter index.
#[derive(Debug)]
pub struct NativeHash {
    flows: HashMap<Tuple, u32>,
}

impl NativeHash {
    /// Classifies into `flows`, flow `i` being filter `i` (the first of equal tuples wins).
    pub fn new(flows: &[Flow]) -> NativeHash {
        let mut map = HashMap::with_capacity(flows.len());
        for (i, flow) in flows.iter().enumerate() {
            map.entry(Tuple::of_flow(flow)).or_insert(i as u32);
        }
        NativeHash { flows: map }
    }
}

impl Demux for NativeHash {
    #[inline]
    fn classify(&mut self, arena: &PacketArena, span: PacketSpan) -> Option<u32> {
        let tuple = Tuple::of_packet(arena.data(span))?;
        self.flows.get(&tuple).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::engines::dpf_engines::merged_trie;
    use crate::bench::flow_filter::dpf_filters;
    use crate::synth::{SynthConfig, generate};
    use dpf::{FilterId, interp};

    /// The same verdict as dpf's interpreter over the flows' filters, on every packet and on
    /// every packet cut at every length up to its headers.
    #[test]
    fn agrees_with_dpf_on_whole_and_cut_packets() {
        let trace = generate(&SynthConfig {
            packets: 2_000,
            flows: 300,
            ..SynthConfig::default()
        });
        let flows = &trace.flows[..200];
        let filters: Vec<_> = flows
            .iter()
            .enumerate()
            .map(|(i, f)| dpf_filters(f, FilterId(i as u32)))
            .collect();
        let trie = merged_trie(&filters).unwrap();
        let native = NativeHash::new(flows);
        let mut matched = 0;
        for packet in &trace.packets {
            for cut in (0..packet.data.len().min(80)).chain([packet.data.len()]) {
                let data = &packet.data[..cut];
                let want = interp::classify(&trie, &dpf::Packet::whole(data)).map(|FilterId(i)| i);
                let got = Tuple::of_packet(data).and_then(|t| native.flows.get(&t).copied());
                assert_eq!(got, want, "cut at {cut}");
                matched += usize::from(got.is_some() && cut == packet.data.len());
            }
        }
        assert!(matched > 500, "{matched}");
    }
}
