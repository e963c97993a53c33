//! A seeded generator of realistic traffic for demux benchmarks: many flows with Zipf popularity,
//! IPv4 and IPv6, TCP and UDP, a minority VLAN-tagged, some IPv4 options and fragments.
//!
//! The same seed gives the same trace byte for byte, so benchmark runs compare like with like.
//! The flows are returned beside the packets so filter sets can be drawn that the trace hits.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Zipf};

use crate::trace::TracePacket;

/// Transport protocol of a flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Transport {
    /// TCP, IP protocol 6.
    Tcp,
    /// UDP, IP protocol 17.
    Udp,
}

impl Transport {
    /// The IP protocol number.
    pub fn protocol_number(self) -> u8 {
        match self {
            Transport::Tcp => 6,
            Transport::Udp => 17,
        }
    }

    /// The pcap-filter keyword.
    pub fn keyword(self) -> &'static str {
        match self {
            Transport::Tcp => "tcp",
            Transport::Udp => "udp",
        }
    }
}

/// One conversation direction: what a flow filter names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Flow {
    /// Source address (IPv4 or IPv6).
    pub src: IpAddr,
    /// Destination address, same family as `src`.
    pub dst: IpAddr,
    /// TCP or UDP.
    pub transport: Transport,
    /// Source port.
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
    /// 802.1Q tag, if the flow is VLAN-tagged.
    pub vlan: Option<u16>,
}

impl Flow {
    /// The pcap-filter expression that selects exactly this flow's packets (first fragments and
    /// unfragmented ones: later fragments carry no ports).
    pub fn expression(&self) -> String {
        let family = match self.src {
            IpAddr::V4(_) => "ip",
            IpAddr::V6(_) => "ip6",
        };
        let vlan = match self.vlan {
            Some(id) => format!("vlan {id} and "),
            None => String::new(),
        };
        format!(
            "{vlan}{family} and {} and src host {} and dst port {}",
            self.transport.keyword(),
            self.src,
            self.dst_port
        )
    }
}

/// Shape of a synthetic trace.
#[derive(Clone, Debug)]
pub struct SynthConfig {
    /// RNG seed: the same seed gives the same trace.
    pub seed: u64,
    /// Packets to generate.
    pub packets: usize,
    /// Distinct flows.
    pub flows: usize,
    /// Zipf exponent of flow popularity (1.0 is the classic web-traffic shape).
    pub zipf_exponent: f64,
    /// Fraction of flows over IPv6.
    pub ipv6_fraction: f64,
    /// Fraction of flows over UDP.
    pub udp_fraction: f64,
    /// Fraction of flows that are VLAN-tagged.
    pub vlan_fraction: f64,
    /// Fraction of IPv4 packets carrying IP options.
    pub ip_options_fraction: f64,
    /// Fraction of IPv4 packets that are non-first fragments.
    pub fragment_fraction: f64,
    /// Bytes of each packet kept, as a capture with `tcpdump -s` keeps them (the wire length
    /// stays the whole packet's); `None` keeps whole packets.
    pub snaplen: Option<usize>,
}

impl Default for SynthConfig {
    fn default() -> Self {
        SynthConfig {
            seed: 0x5eed_d9f1,
            packets: 100_000,
            flows: 4_096,
            zipf_exponent: 1.0,
            ipv6_fraction: 0.25,
            udp_fraction: 0.3,
            vlan_fraction: 0.08,
            ip_options_fraction: 0.03,
            fragment_fraction: 0.02,
            snaplen: None,
        }
    }
}

/// A generated trace and the flows it was drawn from, most popular first.
#[derive(Clone, Debug)]
pub struct SynthTrace {
    /// The packets, in order, with increasing timestamps.
    pub packets: Vec<TracePacket>,
    /// The flows; `flows[0]` is the most popular.
    pub flows: Vec<Flow>,
}

const WELL_KNOWN_PORTS: [u16; 10] = [80, 443, 53, 22, 25, 123, 8080, 3306, 5432, 6379];

/// Draws `config.flows` distinct flows.
pub fn random_flows(rng: &mut StdRng, config: &SynthConfig) -> Vec<Flow> {
    let mut seen = std::collections::HashSet::new();
    let mut flows = Vec::with_capacity(config.flows);
    while flows.len() < config.flows {
        let v6 = rng.random_bool(config.ipv6_fraction);
        let (src, dst) = if v6 {
            (
                IpAddr::V6(Ipv6Addr::new(
                    0x2001,
                    0xdb8,
                    rng.random_range(0..16),
                    0,
                    0,
                    0,
                    rng.random(),
                    rng.random(),
                )),
                IpAddr::V6(Ipv6Addr::new(
                    0x2001,
                    0xdb8,
                    0xff,
                    0,
                    0,
                    0,
                    0,
                    rng.random_range(1..64),
                )),
            )
        } else {
            (
                IpAddr::V4(Ipv4Addr::new(10, rng.random(), rng.random(), rng.random())),
                IpAddr::V4(Ipv4Addr::new(192, 168, 1, rng.random_range(1..64))),
            )
        };
        let transport = if rng.random_bool(config.udp_fraction) {
            Transport::Udp
        } else {
            Transport::Tcp
        };
        let dst_port = if rng.random_bool(0.5) {
            WELL_KNOWN_PORTS[rng.random_range(0..WELL_KNOWN_PORTS.len())]
        } else {
            rng.random_range(1024..=65535)
        };
        let vlan = rng
            .random_bool(config.vlan_fraction)
            .then(|| rng.random_range(1..4095));
        let flow = Flow {
            src,
            dst,
            transport,
            src_port: rng.random_range(1024..=65535),
            dst_port,
            vlan,
        };
        if seen.insert((flow.src, flow.transport, flow.dst_port, flow.vlan)) {
            flows.push(flow);
        }
    }
    flows
}

/// Generates a trace from `config`.
pub fn generate(config: &SynthConfig) -> SynthTrace {
    let mut rng = StdRng::seed_from_u64(config.seed);
    let flows = random_flows(&mut rng, config);
    let popularity = Zipf::new(flows.len() as f64, config.zipf_exponent)
        .expect("a positive flow count and exponent make a valid Zipf distribution");
    let mut packets = Vec::with_capacity(config.packets);
    let mut ts_nsec: u64 = 1_700_000_000 * 1_000_000_000;
    for _ in 0..config.packets {
        let flow = &flows[popularity.sample(&mut rng) as usize - 1];
        let payload_len = match rng.random_range(0..10) {
            0..=3 => 0,
            4..=6 => rng.random_range(1..200),
            _ => rng.random_range(200..1400),
        };
        let shape = PacketShape {
            ip_options: flow.src.is_ipv4() && rng.random_bool(config.ip_options_fraction),
            later_fragment: flow.src.is_ipv4() && rng.random_bool(config.fragment_fraction),
            payload_len,
        };
        let mut data = build_packet(flow, &shape, rng.random());
        let wire_len = data.len() as u32;
        if let Some(snaplen) = config.snaplen {
            data.truncate(snaplen);
        }
        ts_nsec += rng.random_range(1_000..50_000);
        packets.push(TracePacket {
            wire_len,
            data,
            ts_sec: (ts_nsec / 1_000_000_000) as u32,
            ts_nsec: (ts_nsec % 1_000_000_000) as u32,
        });
    }
    SynthTrace { packets, flows }
}

/// The per-packet variations within a flow.
#[derive(Clone, Copy, Debug)]
struct PacketShape {
    ip_options: bool,
    later_fragment: bool,
    payload_len: usize,
}

const SRC_MAC: [u8; 6] = [0x02, 0x00, 0x00, 0x00, 0x00, 0x01];
const DST_MAC: [u8; 6] = [0x02, 0x00, 0x00, 0x00, 0x00, 0x02];

fn build_packet(flow: &Flow, shape: &PacketShape, ident: u16) -> Vec<u8> {
    let mut frame = Vec::with_capacity(64 + shape.payload_len);
    frame.extend_from_slice(&DST_MAC);
    frame.extend_from_slice(&SRC_MAC);
    if let Some(id) = flow.vlan {
        frame.extend_from_slice(&0x8100u16.to_be_bytes());
        frame.extend_from_slice(&(id & 0x0fff).to_be_bytes());
    }
    let transport = transport_segment(flow, shape.payload_len);
    match (flow.src, flow.dst) {
        (IpAddr::V4(src), IpAddr::V4(dst)) => {
            frame.extend_from_slice(&0x0800u16.to_be_bytes());
            let options: &[u8] = if shape.ip_options {
                // Record-route with room for one address, padded to a 4-byte boundary.
                &[7, 7, 4, 0, 0, 0, 0, 1]
            } else {
                &[]
            };
            let ihl = (20 + options.len()) / 4;
            let mut header = vec![0u8; 20];
            header[0] = 0x40 | ihl as u8;
            let total = (ihl * 4 + transport.len()) as u16;
            header[2..4].copy_from_slice(&total.to_be_bytes());
            header[4..6].copy_from_slice(&ident.to_be_bytes());
            if shape.later_fragment {
                // Offset 185 * 8 = 1480 bytes, more fragments: the transport header is elsewhere.
                header[6..8].copy_from_slice(&(0x2000u16 | 185).to_be_bytes());
            }
            header[8] = 64;
            header[9] = flow.transport.protocol_number();
            header[12..16].copy_from_slice(&src.octets());
            header[16..20].copy_from_slice(&dst.octets());
            header.extend_from_slice(options);
            let sum = internet_checksum(&header, 0);
            header[10..12].copy_from_slice(&sum.to_be_bytes());
            frame.extend_from_slice(&header);
            let mut segment = transport;
            let pseudo = pseudo_sum(
                &src.octets(),
                &dst.octets(),
                flow.transport.protocol_number(),
                segment.len(),
            );
            fill_transport_checksum(flow.transport, &mut segment, pseudo);
            frame.extend_from_slice(&segment);
        }
        (IpAddr::V6(src), IpAddr::V6(dst)) => {
            frame.extend_from_slice(&0x86ddu16.to_be_bytes());
            let mut header = vec![0u8; 40];
            header[0] = 0x60;
            header[4..6].copy_from_slice(&(transport.len() as u16).to_be_bytes());
            header[6] = flow.transport.protocol_number();
            header[7] = 64;
            header[8..24].copy_from_slice(&src.octets());
            header[24..40].copy_from_slice(&dst.octets());
            frame.extend_from_slice(&header);
            let mut segment = transport;
            let pseudo = pseudo_sum(
                &src.octets(),
                &dst.octets(),
                flow.transport.protocol_number(),
                segment.len(),
            );
            fill_transport_checksum(flow.transport, &mut segment, pseudo);
            frame.extend_from_slice(&segment);
        }
        _ => unreachable!("random_flows draws both addresses from one family"),
    }
    frame
}

fn transport_segment(flow: &Flow, payload_len: usize) -> Vec<u8> {
    let mut segment = match flow.transport {
        Transport::Tcp => {
            let mut h = vec![0u8; 20];
            h[12] = 5 << 4;
            h[13] = 0x18; // PSH|ACK: mid-connection data
            h[14..16].copy_from_slice(&64240u16.to_be_bytes());
            h
        }
        Transport::Udp => {
            let mut h = vec![0u8; 8];
            h[4..6].copy_from_slice(&((8 + payload_len) as u16).to_be_bytes());
            h
        }
    };
    segment[0..2].copy_from_slice(&flow.src_port.to_be_bytes());
    segment[2..4].copy_from_slice(&flow.dst_port.to_be_bytes());
    segment.extend((0..payload_len).map(|i| (i as u8).wrapping_mul(31)));
    segment
}

fn fill_transport_checksum(transport: Transport, segment: &mut [u8], pseudo: u32) {
    let at = match transport {
        Transport::Tcp => 16,
        Transport::Udp => 6,
    };
    let mut sum = internet_checksum(segment, pseudo);
    if transport == Transport::Udp && sum == 0 {
        sum = 0xffff;
    }
    segment[at..at + 2].copy_from_slice(&sum.to_be_bytes());
}

fn pseudo_sum(src: &[u8], dst: &[u8], protocol: u8, length: usize) -> u32 {
    let words = |b: &[u8]| {
        b.chunks(2)
            .map(|c| u32::from(u16::from_be_bytes([c[0], c[1]])))
            .sum::<u32>()
    };
    words(src) + words(dst) + u32::from(protocol) + length as u32
}

/// RFC 1071 one's-complement sum of `bytes`, starting from `initial`, folded and inverted.
pub fn internet_checksum(bytes: &[u8], initial: u32) -> u16 {
    let mut sum = u64::from(initial);
    for chunk in bytes.chunks(2) {
        let word = match chunk {
            [a, b] => u16::from_be_bytes([*a, *b]),
            [a] => u16::from_be_bytes([*a, 0]),
            _ => unreachable!(),
        };
        sum += u64::from(word);
    }
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::{NetSlice, SlicedPacket, TransportSlice};

    #[test]
    fn same_seed_same_trace() {
        let config = SynthConfig {
            packets: 500,
            flows: 50,
            ..SynthConfig::default()
        };
        let a = generate(&config);
        let b = generate(&config);
        assert_eq!(a.packets, b.packets);
        let c = generate(&SynthConfig { seed: 1, ..config });
        assert_ne!(a.packets, c.packets);
    }

    #[test]
    fn snaplen_keeps_each_packets_first_bytes_and_its_wire_length() {
        let config = SynthConfig {
            packets: 2_000,
            flows: 200,
            ..SynthConfig::default()
        };
        let whole = generate(&config);
        let snapped = generate(&SynthConfig {
            snaplen: Some(128),
            ..config
        });
        let mut cut = 0;
        for (w, s) in whole.packets.iter().zip(&snapped.packets) {
            assert_eq!(s.wire_len as usize, w.data.len());
            assert_eq!(s.wire_len, w.wire_len);
            assert_eq!(s.data[..], w.data[..w.data.len().min(128)]);
            cut += usize::from(w.data.len() > 128);
        }
        assert_eq!(whole.packets.len(), snapped.packets.len());
        assert!(cut > 0, "some packets are longer than the snap length");
    }

    #[test]
    fn packets_parse_and_mix_as_configured() {
        let config = SynthConfig {
            packets: 5_000,
            flows: 500,
            ..SynthConfig::default()
        };
        let trace = generate(&config);
        let (mut v6, mut vlan, mut udp, mut fragments, mut options) = (0, 0, 0, 0, 0);
        for packet in &trace.packets {
            let sliced = SlicedPacket::from_ethernet(&packet.data).expect("well-formed frame");
            vlan += usize::from(sliced.vlan().is_some());
            match sliced.net.expect("every frame carries IP") {
                NetSlice::Ipv4(ip) => {
                    let header = ip.header();
                    assert_eq!(
                        header.to_header().calc_header_checksum(),
                        header.header_checksum()
                    );
                    options += usize::from(header.ihl() > 5);
                    fragments += usize::from(header.is_fragmenting_payload());
                }
                NetSlice::Ipv6(_) => v6 += 1,
                NetSlice::Arp(_) => panic!("no ARP in synthetic traffic"),
            }
            udp += usize::from(matches!(sliced.transport, Some(TransportSlice::Udp(_))));
        }
        let n = trace.packets.len();
        assert!(v6 > n / 10 && v6 < n / 2, "ipv6 {v6} of {n}");
        assert!(vlan > 0 && vlan < n / 4, "vlan {vlan} of {n}");
        assert!(udp > n / 10 && udp < n / 2, "udp {udp} of {n}");
        assert!(
            fragments > 0 && options > 0,
            "fragments {fragments}, options {options}"
        );
        // Zipf: the most popular flow carries far more than its uniform share.
        let top = trace.flows[0];
        let top_count = trace
            .packets
            .iter()
            .filter(|p| build_matches_flow(p, &top))
            .count();
        assert!(
            top_count > 10 * n / config.flows,
            "top flow has {top_count} packets"
        );
    }

    fn build_matches_flow(packet: &TracePacket, flow: &Flow) -> bool {
        let Ok(sliced) = SlicedPacket::from_ethernet(&packet.data) else {
            return false;
        };
        let src_matches = match (&sliced.net, flow.src) {
            (Some(NetSlice::Ipv4(ip)), IpAddr::V4(a)) => ip.header().source_addr() == a,
            (Some(NetSlice::Ipv6(ip)), IpAddr::V6(a)) => ip.header().source_addr() == a,
            _ => false,
        };
        let port_matches = match &sliced.transport {
            Some(TransportSlice::Tcp(t)) => t.destination_port() == flow.dst_port,
            Some(TransportSlice::Udp(u)) => u.destination_port() == flow.dst_port,
            _ => false,
        };
        src_matches && port_matches
    }
}
