//! The floor: one flow filter written by hand in Rust, with the same verdicts as libpcap's
//! program for [`Flow::expression`] (see [`crate::bench::flow_filter`]).

use std::net::IpAddr;

use super::Demux;
use crate::bench::packets::{PacketArena, PacketSpan};
use crate::synth::Flow;

/// A hand-written matcher for one flow.
#[derive(Clone, Copy, Debug)]
pub struct NativeFlow {
    vlan: Option<u16>,
    source: IpAddr,
    protocol: u8,
    dst_port: u16,
}

#[inline(always)]
fn u16_at(data: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes(data.get(at..at + 2)?.try_into().ok()?))
}

impl NativeFlow {
    /// Matches `flow`'s packets.
    pub fn new(flow: &Flow) -> NativeFlow {
        NativeFlow {
            vlan: flow.vlan,
            source: flow.src,
            protocol: flow.transport.protocol_number(),
            dst_port: flow.dst_port,
        }
    }

    /// Whether `data` belongs to the flow.
    #[inline]
    pub fn matches(&self, data: &[u8]) -> Option<()> {
        let mut l3 = 14;
        if let Some(vlan) = self.vlan {
            if !matches!(u16_at(data, 12)?, 0x8100 | 0x88a8 | 0x9100) {
                return None;
            }
            (u16_at(data, 14)? & 0x0fff == vlan).then_some(())?;
            l3 = 18;
        }
        let ether_type = u16_at(data, l3 - 2)?;
        match self.source {
            IpAddr::V4(source) => {
                (ether_type == 0x0800).then_some(())?;
                // Only the bytes libpcap's program loads: it reads no further than the source address
                // before the ports (a malformed header length may put them inside the header).
                let header = data.get(l3..l3 + 16)?;
                (header[9] == self.protocol).then_some(())?;
                (header[12..16] == source.octets()).then_some(())?;
                (u16::from_be_bytes([header[6], header[7]]) & 0x1fff == 0).then_some(())?;
                let ports = l3 + 4 * usize::from(header[0] & 0x0f);
                (u16_at(data, ports + 2)? == self.dst_port).then_some(())
            }
            IpAddr::V6(source) => {
                (ether_type == 0x86dd).then_some(())?;
                let header = data.get(l3..l3 + 44)?;
                (header[6] == self.protocol).then_some(())?;
                (header[8..24] == source.octets()).then_some(())?;
                (u16::from_be_bytes([header[42], header[43]]) == self.dst_port).then_some(())
            }
        }
    }
}

impl Demux for NativeFlow {
    #[inline]
    fn classify(&mut self, arena: &PacketArena, span: PacketSpan) -> Option<u32> {
        self.matches(arena.data(span)).map(|()| 0)
    }
}
