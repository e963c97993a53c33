//! One line per packet in the style of `tcpdump -q -tttt`-less default output, so a tcpdump user
//! reads the `dpf` CLI's output without learning a new format.

use std::fmt::Write as _;

use etherparse::{
    ArpOperation, EtherType, Icmpv4Type, Icmpv6Type, LinkSlice, NetSlice, SlicedPacket,
    TransportSlice,
};

/// Formats a timestamp as tcpdump prints it by default: `HH:MM:SS.uuuuuu` in UTC.
pub fn timestamp(ts_sec: u32, ts_nsec: u32) -> String {
    let day_secs = ts_sec % 86_400;
    format!(
        "{:02}:{:02}:{:02}.{:06}",
        day_secs / 3600,
        (day_secs / 60) % 60,
        day_secs % 60,
        ts_nsec / 1000
    )
}

/// A one-line summary of an Ethernet frame in the style of `tcpdump -q -n`, e.g.
/// `IP 10.0.0.1.4000 > 10.0.0.2.80: tcp 120` (VLAN tags, as there, are not shown). Frames it cannot parse are still described
/// (never an error): `ethertype 0x1234, length 60` or `truncated frame, length 10`.
pub fn summary(data: &[u8], wire_len: u32) -> String {
    let sliced = match SlicedPacket::from_ethernet(data) {
        Ok(sliced) => sliced,
        Err(_) => return lenient_summary(data, wire_len),
    };
    let mut line = String::new();
    match &sliced.net {
        Some(NetSlice::Ipv4(ip)) => {
            let header = ip.header();
            let (src, dst) = (header.source_addr(), header.destination_addr());
            let fragment =
                header.is_fragmenting_payload() && header.fragments_offset().value() != 0;
            line.push_str("IP ");
            line.push_str(&transport_summary(
                &src.to_string(),
                &dst.to_string(),
                if fragment {
                    None
                } else {
                    sliced.transport.as_ref()
                },
                header.protocol().0,
                ip.payload().payload.len(),
            ));
        }
        Some(NetSlice::Ipv6(ip)) => {
            let header = ip.header();
            line.push_str("IP6 ");
            line.push_str(&transport_summary(
                &header.source_addr().to_string(),
                &header.destination_addr().to_string(),
                sliced.transport.as_ref(),
                ip.payload().ip_number.0,
                ip.payload().payload.len(),
            ));
        }
        Some(NetSlice::Arp(arp)) => {
            let spa = arp.sender_protocol_addr();
            let tpa = arp.target_protocol_addr();
            let dotted = |b: &[u8]| {
                b.iter()
                    .map(|x| x.to_string())
                    .collect::<Vec<_>>()
                    .join(".")
            };
            match arp.operation() {
                ArpOperation::REQUEST => {
                    let _ = write!(
                        line,
                        "ARP, Request who-has {} tell {}",
                        dotted(tpa),
                        dotted(spa)
                    );
                }
                ArpOperation::REPLY => {
                    let _ = write!(
                        line,
                        "ARP, Reply {} is-at {}",
                        dotted(spa),
                        mac(arp.sender_hw_addr())
                    );
                }
                other => {
                    let _ = write!(line, "ARP, op {}", other.0);
                }
            }
        }
        None => {
            let ether_type = match &sliced.link {
                Some(LinkSlice::Ethernet2(eth)) => eth.ether_type(),
                _ => EtherType(0),
            };
            let _ = write!(line, "ethertype {:#06x}", ether_type.0);
        }
    }
    // tcpdump -q prints the frame length only where no protocol length was printed.
    match &sliced.net {
        Some(NetSlice::Ipv4(_) | NetSlice::Ipv6(_)) => {}
        Some(NetSlice::Arp(arp)) => {
            let arp_len = 8 + 2 * (arp.sender_hw_addr().len() + arp.sender_protocol_addr().len());
            let _ = write!(line, ", length {arp_len}");
        }
        None => {
            let _ = write!(line, ", length {wire_len}");
        }
    }
    line
}

fn transport_summary(
    src: &str,
    dst: &str,
    transport: Option<&TransportSlice<'_>>,
    protocol: u8,
    payload_len: usize,
) -> String {
    match transport {
        Some(TransportSlice::Tcp(tcp)) => format!(
            "{src}.{} > {dst}.{}: tcp {}",
            tcp.source_port(),
            tcp.destination_port(),
            tcp.payload().len()
        ),
        Some(TransportSlice::Udp(udp)) => format!(
            "{src}.{} > {dst}.{}: UDP, length {}",
            udp.source_port(),
            udp.destination_port(),
            udp.payload().len()
        ),
        Some(TransportSlice::Icmpv4(icmp)) => {
            let what = match icmp.icmp_type() {
                Icmpv4Type::EchoRequest(e) => {
                    format!("ICMP echo request, id {}, seq {}", e.id, e.seq)
                }
                Icmpv4Type::EchoReply(e) => format!("ICMP echo reply, id {}, seq {}", e.id, e.seq),
                Icmpv4Type::DestinationUnreachable(_) => "ICMP unreachable".to_string(),
                Icmpv4Type::TimeExceeded(_) => "ICMP time exceeded in-transit".to_string(),
                _ => format!("ICMP type {}", icmp.type_u8()),
            };
            format!("{src} > {dst}: {what}, length {payload_len}")
        }
        Some(TransportSlice::Icmpv6(icmp)) => {
            let what = match icmp.icmp_type() {
                Icmpv6Type::EchoRequest(e) => {
                    format!("ICMP6, echo request, id {}, seq {}", e.id, e.seq)
                }
                Icmpv6Type::EchoReply(e) => {
                    format!("ICMP6, echo reply, id {}, seq {}", e.id, e.seq)
                }
                _ => format!("ICMP6, type {}", icmp.type_u8()),
            };
            format!("{src} > {dst}: {what}, length {payload_len}")
        }
        Some(TransportSlice::Igmp(_)) => format!("{src} > {dst}: igmp {payload_len}"),
        None => format!("{src} > {dst}: ip-proto-{protocol}"),
    }
}

fn mac(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

fn lenient_summary(data: &[u8], wire_len: u32) -> String {
    if data.len() < 14 {
        return format!(
            "truncated frame, captured {} of length {wire_len}",
            data.len()
        );
    }
    let ether_type = u16::from_be_bytes([data[12], data[13]]);
    format!(
        "{} > {}, ethertype {ether_type:#06x} (malformed or truncated), length {wire_len}",
        mac(&data[6..12]),
        mac(&data[0..6])
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synth::{SynthConfig, generate};

    #[test]
    fn timestamps_print_like_tcpdump() {
        assert_eq!(timestamp(86_400 + 3_723, 4_005_000), "01:02:03.004005");
    }

    #[test]
    fn every_synthetic_packet_gets_a_line() {
        let trace = generate(&SynthConfig {
            packets: 300,
            flows: 30,
            ..SynthConfig::default()
        });
        for p in &trace.packets {
            let line = summary(&p.data, p.wire_len);
            assert!(line.starts_with("IP"), "{line}");
            assert!(
                line.contains(": tcp ")
                    || line.contains(": UDP, length ")
                    || line.contains("ip-proto-"),
                "{line}"
            );
        }
        assert!(summary(&[1, 2, 3], 3).starts_with("truncated frame"));
    }
}
