//! Retransmissions seen at the device, in both directions. smoltcp does not say when it sends
//! a segment again (nor when it drops one a peer sent twice), but the sequence numbers do: a
//! segment carrying sequence space (data, SYN or FIN) that starts before the highest sequence
//! number already carried on its connection is a retransmission. Sent ones mean this stack
//! lost something to a timeout (smoltcp's minimum RTO is 1 s); received ones mean the peer
//! did (a frame this stack dropped, or an ACK too late).
use alloc::vec::Vec;
use smoltcp::wire::{EthernetFrame, EthernetProtocol, IpProtocol, Ipv4Packet, TcpPacket};

/// Connections remembered per direction; the one heard from least recently goes first.
const FLOWS: usize = 64;

/// A connection seen from this host: the remote address and port, and the local port.
type FlowKey = ([u8; 4], u16, u16);

/// One TCP segment's place in its connection's sequence space.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment {
    key: FlowKey,
    seq: u32,
    /// Sequence numbers it occupies (payload, plus one each for SYN and FIN).
    length: u32,
    syn: bool,
}

/// The TCP segment in an Ethernet frame, if it is one; `outgoing` says which end is remote.
pub fn segment(frame: &[u8], outgoing: bool) -> Option<Segment> {
    let ethernet = EthernetFrame::new_checked(frame).ok()?;
    if ethernet.ethertype() != EthernetProtocol::Ipv4 {
        return None;
    }
    let ip = Ipv4Packet::new_checked(ethernet.payload()).ok()?;
    if ip.next_header() != IpProtocol::Tcp || ip.frag_offset() != 0 || ip.more_frags() {
        return None;
    }
    let tcp = TcpPacket::new_checked(ip.payload()).ok()?;
    let key = if outgoing {
        (ip.dst_addr().octets(), tcp.dst_port(), tcp.src_port())
    } else {
        (ip.src_addr().octets(), tcp.src_port(), tcp.dst_port())
    };
    if tcp.rst() {
        return None;
    }
    Some(Segment {
        key,
        seq: tcp.seq_number().0 as u32,
        length: tcp.payload().len() as u32 + u32::from(tcp.syn()) + u32::from(tcp.fin()),
        syn: tcp.syn(),
    })
}

/// One direction's connections: where each began (its SYN) and the highest sequence number
/// carried so far.
#[derive(Debug, Default)]
pub struct Watch {
    flows: Vec<(FlowKey, u32, u32)>,
}

impl Watch {
    /// Records `segment`; whether it is a retransmission.
    pub fn record(&mut self, segment: Segment) -> bool {
        if segment.length == 0 {
            return false;
        }
        let end = segment.seq.wrapping_add(segment.length);
        let position = self.flows.iter().position(|flow| flow.0 == segment.key);
        let Some(position) = position.filter(|&position| {
            // A SYN with another initial sequence number begins a new connection.
            !segment.syn || self.flows[position].1 == segment.seq
        }) else {
            if let Some(position) = position {
                self.flows.remove(position);
            } else if self.flows.len() == FLOWS {
                self.flows.remove(0);
            }
            self.flows.push((segment.key, segment.seq, end));
            return false;
        };
        let mut flow = self.flows.remove(position);
        let again = before(segment.seq, flow.2);
        if before(flow.2, end) {
            flow.2 = end;
        }
        self.flows.push(flow);
        again
    }
}

/// Whether `a` comes before `b` in sequence space (RFC 1982 arithmetic on 32 bits).
fn before(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) < 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seq: u32, length: u32, syn: bool) -> Segment {
        Segment {
            key: ([10, 0, 2, 2], 40000, 80),
            seq,
            length,
            syn,
        }
    }

    #[test]
    fn new_data_is_not_a_retransmission_and_old_data_is() {
        let mut watch = Watch::default();
        assert!(!watch.record(at(100, 1, true)));
        assert!(!watch.record(at(101, 1000, false)));
        assert!(!watch.record(at(1101, 1000, false)));
        // Pure ACKs carry no sequence space.
        assert!(!watch.record(at(2101, 0, false)));
        assert!(watch.record(at(1101, 1000, false)));
        // Partly old, partly new: still sent again.
        assert!(watch.record(at(1601, 1000, false)));
        assert!(!watch.record(at(2601, 10, false)));
        // The SYN sent again (a handshake that timed out).
        assert!(watch.record(at(100, 1, true)));
    }

    #[test]
    fn sequence_numbers_wrap() {
        let mut watch = Watch::default();
        assert!(!watch.record(at(u32::MAX - 10, 1, true)));
        assert!(!watch.record(at(u32::MAX - 9, 100, false)));
        assert!(!watch.record(at(90, 100, false)));
        assert!(watch.record(at(u32::MAX - 9, 100, false)));
    }

    #[test]
    fn a_new_connection_on_the_same_ports_starts_afresh() {
        let mut watch = Watch::default();
        assert!(!watch.record(at(5000, 1, true)));
        assert!(!watch.record(at(5001, 500, false)));
        assert!(!watch.record(at(100, 1, true)));
        assert!(!watch.record(at(101, 10, false)));
    }

    #[test]
    fn the_table_is_bounded() {
        let mut watch = Watch::default();
        for port in 0..1000u16 {
            let mut segment = at(1, 1, true);
            segment.key.1 = port;
            assert!(!watch.record(segment));
        }
        assert_eq!(watch.flows.len(), FLOWS);
    }
}
