//! The transmit check: what an app may send without a raw-transmit capability. An allow list,
//! not a deny list: a frame passes only if it is one of
//! - ARP for Ethernet/IPv4 with the NIC's MAC and the host's IPv4 address as sender;
//! - IPv4 from the host's address carrying TCP or UDP (unfragmented) from a port the sender
//!   owns;
//! - an ICMPv4 error (unreachable, time exceeded, parameter problem) from the host's address
//!   about a TCP or UDP packet sent to one of the sender's ports (its quoted header says so);
//!
//! always with the NIC's source MAC, after looking through the VLAN tags dpf's claims look
//! through. A handler the system bound (on a monitor filter) may also answer ICMP echo from
//! the host's address. Everything else (other ethertypes, other IP protocols, fragments, IPv6,
//! for which the host has no address yet) needs the raw-transmit right.
//!
//! The headers are read with etherparse's no_std slices (which check every length against the
//! frame before a field is read), the VLAN tags with `dpf::vlan`, the parser dpf's claims
//! share, so what a claim looks through on receive is exactly what this check looks through
//! on send.

/// The `(IP protocol, port)` pairs a sender owns, asked one pair at a time: the kernel
/// answers from its bound filters where they are, without collecting them per frame.
pub trait PortOwner {
    /// Whether the sender owns `port` of IP protocol `protocol`.
    fn owns(&self, protocol: u8, port: u16) -> bool;
}

/// A list of the pairs (tests, and anything that has one at hand).
impl PortOwner for [(u8, u16)] {
    fn owns(&self, protocol: u8, port: u16) -> bool {
        self.contains(&(protocol, port))
    }
}

/// Who the sender is allowed to be.
#[derive(Clone, Copy, Debug)]
pub struct SenderIdentity<'a, P: PortOwner + ?Sized> {
    /// The NIC's MAC (apps share it).
    pub mac: [u8; 6],
    /// The host's IPv4 address (apps share it).
    pub ipv4: [u8; 4],
    /// The ports the sender owns.
    pub ports: &'a P,
}

/// What the sender may send beyond the allow list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Privilege {
    /// An app, or a handler it bound on its own filters: the allow list only.
    App,
    /// A handler bound on a monitor filter (a system service): also ICMP echo.
    System,
    /// The raw-transmit right: anything from the NIC's MAC.
    Raw,
}

/// Why a frame was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TxRefusal {
    /// Shorter than its headers, a header field points past the end, or more VLAN tags than
    /// a claim looks through.
    Malformed,
    /// Source MAC is not the NIC's.
    SourceMac,
    /// Source IPv4 address (or ARP sender address) is not the host's.
    SourceAddress,
    /// TCP/UDP source port the sender does not own, a fragment (whose ports cannot be
    /// checked), or an ICMP error about a port it does not own.
    SourcePort,
    /// Not on the allow list: needs the raw-transmit right.
    NotAllowed,
}

use etherparse::{
    ArpHardwareId, ArpPacketSlice, EtherType, Ethernet2HeaderSlice, Icmpv4Slice, IpNumber,
    Ipv4HeaderSlice,
};

const ETHERTYPE_IPV4: u16 = EtherType::IPV4.0;
const ETHERTYPE_ARP: u16 = EtherType::ARP.0;
const PROTOCOL_ICMP: u8 = IpNumber::ICMP.0;
const PROTOCOL_TCP: u8 = IpNumber::TCP.0;
const PROTOCOL_UDP: u8 = IpNumber::UDP.0;
/// ICMPv4 types that are errors about a packet (RFC 792): destination unreachable, time
/// exceeded, parameter problem.
const ICMP_ERRORS: [u8; 3] = [3, 11, 12];
/// ICMPv4 echo reply and echo request.
const ICMP_ECHO: [u8; 2] = [0, 8];

/// Where TCP and UDP headers (both start with the two ports) hold the source port and the
/// destination port.
const SOURCE_PORT_AT: usize = 0;
const DESTINATION_PORT_AT: usize = 2;

/// The port at `at` of a TCP or UDP header. Only the port is read: how the rest of the header
/// looks is the receiver's business, not the sender's identity (and an ICMP error quotes only
/// the first 8 bytes of it).
fn port(transport: &[u8], at: usize) -> Result<u16, TxRefusal> {
    match transport.get(at..at + 2) {
        Some(&[high, low]) => Ok(u16::from_be_bytes([high, low])),
        _ => Err(TxRefusal::Malformed),
    }
}

/// An IPv4 header (etherparse checks the version, the header length and that the slice holds
/// it) and what follows it up to the end of the frame.
fn ipv4(packet: &[u8]) -> Result<(Ipv4HeaderSlice<'_>, &[u8]), TxRefusal> {
    let header = Ipv4HeaderSlice::from_slice(packet).map_err(|_| TxRefusal::Malformed)?;
    let payload = &packet[header.slice().len()..];
    Ok((header, payload))
}

/// Checks `frame` from `sender` with `privilege`.
pub fn check<P: PortOwner + ?Sized>(
    frame: &[u8],
    sender: &SenderIdentity<'_, P>,
    privilege: Privilege,
) -> Result<(), TxRefusal> {
    let ethernet = Ethernet2HeaderSlice::from_slice(frame).map_err(|_| TxRefusal::Malformed)?;
    if ethernet.source() != sender.mac {
        return Err(TxRefusal::SourceMac);
    }
    if privilege == Privilege::Raw {
        return Ok(());
    }
    // The tags claims look through, with the one parser they share.
    let untagged = dpf::vlan::untag(frame).map_err(|_| TxRefusal::Malformed)?;
    match untagged.ethertype {
        ETHERTYPE_IPV4 => check_ipv4(untagged.payload, sender, privilege),
        ETHERTYPE_ARP => {
            let arp =
                ArpPacketSlice::from_slice(untagged.payload).map_err(|_| TxRefusal::Malformed)?;
            // Ethernet hardware, IPv4 protocol, 6- and 4-byte addresses.
            if arp.hw_addr_type() != ArpHardwareId::ETHERNET
                || arp.proto_addr_type() != EtherType::IPV4
                || arp.hw_addr_size() != 6
                || arp.proto_addr_size() != 4
            {
                return Err(TxRefusal::NotAllowed);
            }
            if arp.sender_hw_addr() != sender.mac {
                return Err(TxRefusal::SourceMac);
            }
            if arp.sender_protocol_addr() != sender.ipv4 {
                return Err(TxRefusal::SourceAddress);
            }
            Ok(())
        }
        _ => Err(TxRefusal::NotAllowed),
    }
}

fn check_ipv4<P: PortOwner + ?Sized>(
    packet: &[u8],
    sender: &SenderIdentity<'_, P>,
    privilege: Privilege,
) -> Result<(), TxRefusal> {
    let (ip, payload) = ipv4(packet)?;
    if ip.source() != sender.ipv4 {
        return Err(TxRefusal::SourceAddress);
    }
    let protocol = ip.protocol().0;
    match protocol {
        PROTOCOL_TCP | PROTOCOL_UDP => {
            if ip.is_fragmenting_payload() {
                return Err(TxRefusal::SourcePort);
            }
            if !sender.ports.owns(protocol, port(payload, SOURCE_PORT_AT)?) {
                return Err(TxRefusal::SourcePort);
            }
            Ok(())
        }
        PROTOCOL_ICMP => {
            if ip.is_fragmenting_payload() {
                return Err(TxRefusal::NotAllowed);
            }
            let icmp = Icmpv4Slice::from_slice(payload).map_err(|_| TxRefusal::Malformed)?;
            let kind = icmp.type_u8();
            if privilege == Privilege::System && ICMP_ECHO.contains(&kind) {
                return Ok(());
            }
            if !ICMP_ERRORS.contains(&kind) {
                return Err(TxRefusal::NotAllowed);
            }
            // The quoted packet (after the 8-byte ICMP header) was sent to the host, to one of
            // the sender's ports: the error is about the sender's own flow.
            let (quoted, quoted_payload) = ipv4(&payload[8..])?;
            if quoted.destination() != sender.ipv4 {
                return Err(TxRefusal::SourceAddress);
            }
            let quoted_protocol = quoted.protocol().0;
            if !matches!(quoted_protocol, PROTOCOL_TCP | PROTOCOL_UDP)
                || quoted.is_fragmenting_payload()
            {
                return Err(TxRefusal::NotAllowed);
            }
            let quoted_port = port(quoted_payload, DESTINATION_PORT_AT)?;
            if !sender.ports.owns(quoted_protocol, quoted_port) {
                return Err(TxRefusal::SourcePort);
            }
            Ok(())
        }
        _ => Err(TxRefusal::NotAllowed),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;

    const MAC: [u8; 6] = [0x52, 0x54, 0, 0x12, 0x34, 0x56];
    const IP: [u8; 4] = [10, 0, 2, 15];
    const PEER: [u8; 4] = [10, 0, 2, 2];

    fn ipv4_header(protocol: u8, source: [u8; 4], destination: [u8; 4]) -> Vec<u8> {
        let mut header = alloc::vec![0x45, 0, 0, 28, 0, 0, 0x40, 0, 64, protocol, 0, 0];
        header.extend_from_slice(&source);
        header.extend_from_slice(&destination);
        header
    }

    fn ethernet(source_mac: [u8; 6], tags: &[u16], ethertype: u16) -> Vec<u8> {
        let mut frame = Vec::new();
        frame.extend_from_slice(&[0xff; 6]);
        frame.extend_from_slice(&source_mac);
        for &tag in tags {
            frame.extend_from_slice(&tag.to_be_bytes());
            frame.extend_from_slice(&[0, 1]);
        }
        frame.extend_from_slice(&ethertype.to_be_bytes());
        frame
    }

    fn udp_tagged(tags: &[u16], source_ip: [u8; 4], source_port: u16) -> Vec<u8> {
        let mut frame = ethernet(MAC, tags, ETHERTYPE_IPV4);
        frame.extend(ipv4_header(PROTOCOL_UDP, source_ip, PEER));
        frame.extend_from_slice(&source_port.to_be_bytes());
        frame.extend_from_slice(&[0, 53, 0, 8, 0, 0]);
        frame
    }

    fn udp(source_mac: [u8; 6], source_ip: [u8; 4], source_port: u16) -> Vec<u8> {
        let mut frame = udp_tagged(&[], source_ip, source_port);
        frame[6..12].copy_from_slice(&source_mac);
        frame
    }

    /// An ICMP error of `kind` quoting a UDP packet from the peer to `IP:port`.
    fn icmp_error(kind: u8, quoted_destination: [u8; 4], port: u16) -> Vec<u8> {
        let mut frame = ethernet(MAC, &[], ETHERTYPE_IPV4);
        frame.extend(ipv4_header(PROTOCOL_ICMP, IP, PEER));
        frame.extend_from_slice(&[kind, 3, 0, 0, 0, 0, 0, 0]);
        frame.extend(ipv4_header(PROTOCOL_UDP, PEER, quoted_destination));
        frame.extend_from_slice(&[0x30, 0x39]);
        frame.extend_from_slice(&port.to_be_bytes());
        frame.extend_from_slice(&[0, 8, 0, 0]);
        frame
    }

    fn sender(ports: &[(u8, u16)]) -> SenderIdentity<'_, [(u8, u16)]> {
        SenderIdentity {
            mac: MAC,
            ipv4: IP,
            ports,
        }
    }

    #[test]
    fn own_addresses_and_port_pass() {
        let ports = [(PROTOCOL_UDP, 5000)];
        assert_eq!(
            check(&udp(MAC, IP, 5000), &sender(&ports), Privilege::App),
            Ok(())
        );
        for tags in [&[0x8100][..], &[0x88a8, 0x8100], &[0x9100]] {
            assert_eq!(
                check(&udp_tagged(tags, IP, 5000), &sender(&ports), Privilege::App),
                Ok(())
            );
        }
    }

    #[test]
    fn spoofing_is_refused() {
        let ports = [(PROTOCOL_UDP, 5000)];
        let sender = sender(&ports);
        let mut other_mac = MAC;
        other_mac[5] ^= 1;
        assert_eq!(
            check(&udp(other_mac, IP, 5000), &sender, Privilege::App),
            Err(TxRefusal::SourceMac)
        );
        assert_eq!(
            check(&udp(other_mac, IP, 5000), &sender, Privilege::Raw),
            Err(TxRefusal::SourceMac),
            "raw transmit still sends from the NIC's MAC"
        );
        assert_eq!(
            check(&udp(MAC, [10, 0, 2, 16], 5000), &sender, Privilege::App),
            Err(TxRefusal::SourceAddress)
        );
        assert_eq!(
            check(&udp(MAC, IP, 5001), &sender, Privilege::App),
            Err(TxRefusal::SourcePort)
        );
        let mut tcp_same_port = udp(MAC, IP, 5000);
        tcp_same_port[23] = PROTOCOL_TCP;
        assert_eq!(
            check(&tcp_same_port, &sender, Privilege::App),
            Err(TxRefusal::SourcePort)
        );
        let mut fragment = udp(MAC, IP, 5000);
        fragment[21] = 1;
        assert_eq!(
            check(&fragment, &sender, Privilege::App),
            Err(TxRefusal::SourcePort)
        );
    }

    /// Every tag a claim looks through hides nothing from the check: a spoofed source behind
    /// 802.1ad or the old QinQ tag is refused like an untagged one.
    #[test]
    fn spoofing_behind_any_tag_is_refused() {
        let ports = [(PROTOCOL_UDP, 5000)];
        for tag in [0x8100, 0x88a8, 0x9100] {
            assert_eq!(
                check(
                    &udp_tagged(&[tag], [1, 2, 3, 4], 5000),
                    &sender(&ports),
                    Privilege::App
                ),
                Err(TxRefusal::SourceAddress),
                "tag {tag:#x}"
            );
            assert_eq!(
                check(&udp_tagged(&[tag], IP, 9), &sender(&ports), Privilege::App),
                Err(TxRefusal::SourcePort),
                "tag {tag:#x}"
            );
        }
    }

    #[test]
    fn only_the_allow_list_passes_without_the_raw_right() {
        let ports = [(PROTOCOL_UDP, 5000)];
        let sender = sender(&ports);
        // Other ethertypes: experimental, IPv6, anything.
        for ethertype in [0x88b5, 0x86dd, 0x1234, 0x8847] {
            let mut frame = ethernet(MAC, &[], ethertype);
            frame.extend_from_slice(&[0; 40]);
            assert_eq!(
                check(&frame, &sender, Privilege::App),
                Err(TxRefusal::NotAllowed),
                "{ethertype:#x}"
            );
            assert_eq!(
                check(&frame, &sender, Privilege::Raw),
                Ok(()),
                "{ethertype:#x} raw"
            );
        }
        // Other IP protocols from the host's own address: GRE, IP-in-IP, ICMP echo.
        for protocol in [47, 4, 41] {
            let mut frame = udp(MAC, IP, 5000);
            frame[23] = protocol;
            assert_eq!(
                check(&frame, &sender, Privilege::App),
                Err(TxRefusal::NotAllowed)
            );
        }
        let mut echo = icmp_error(3, IP, 5000);
        echo[34] = 8;
        assert_eq!(
            check(&echo, &sender, Privilege::App),
            Err(TxRefusal::NotAllowed)
        );
        // A system handler (the ICMP echo responder) may answer, from the host's address only.
        echo[34] = 0;
        assert_eq!(check(&echo, &sender, Privilege::System), Ok(()));
        echo[14 + 15] ^= 1;
        assert_eq!(
            check(&echo, &sender, Privilege::System),
            Err(TxRefusal::SourceAddress)
        );
    }

    #[test]
    fn icmp_errors_only_about_the_senders_own_ports() {
        let ports = [(PROTOCOL_UDP, 5000)];
        let sender = sender(&ports);
        for kind in ICMP_ERRORS {
            assert_eq!(
                check(&icmp_error(kind, IP, 5000), &sender, Privilege::App),
                Ok(())
            );
        }
        assert_eq!(
            check(&icmp_error(3, IP, 5001), &sender, Privilege::App),
            Err(TxRefusal::SourcePort)
        );
        assert_eq!(
            check(
                &icmp_error(3, [10, 0, 2, 99], 5000),
                &sender,
                Privilege::App
            ),
            Err(TxRefusal::SourceAddress)
        );
        let mut quoting_icmp = icmp_error(3, IP, 5000);
        quoting_icmp[14 + 20 + 8 + 9] = PROTOCOL_ICMP;
        assert_eq!(
            check(&quoting_icmp, &sender, Privilege::App),
            Err(TxRefusal::NotAllowed)
        );
        let whole = icmp_error(3, IP, 5000);
        for length in 14 + 20..whole.len() - 4 {
            assert!(
                check(&whole[..length], &sender, Privilege::App).is_err(),
                "{length}"
            );
        }
    }

    #[test]
    fn arp_needs_the_hosts_own_addresses() {
        let mut frame = ethernet(MAC, &[], ETHERTYPE_ARP);
        frame.extend_from_slice(&[0, 1, 8, 0, 6, 4, 0, 2]);
        frame.extend_from_slice(&MAC);
        frame.extend_from_slice(&IP);
        frame.extend_from_slice(&[0; 6]);
        frame.extend_from_slice(&PEER);
        assert_eq!(check(&frame, &sender(&[]), Privilege::App), Ok(()));
        let mut spoofed = frame.clone();
        spoofed[14 + 14..14 + 18].copy_from_slice(&PEER);
        assert_eq!(
            check(&spoofed, &sender(&[]), Privilege::App),
            Err(TxRefusal::SourceAddress)
        );
        let mut other_hardware = frame.clone();
        other_hardware[15] = 6;
        assert_eq!(
            check(&other_hardware, &sender(&[]), Privilege::App),
            Err(TxRefusal::NotAllowed)
        );
    }

    #[test]
    fn truncated_frames_are_malformed_not_panics() {
        let frame = udp(MAC, IP, 5000);
        // Up to the end of the source port, every prefix lacks something the check reads.
        for length in 0..14 + 20 + 2 {
            let verdict = check(
                &frame[..length],
                &sender(&[(PROTOCOL_UDP, 5000)]),
                Privilege::App,
            );
            assert!(verdict.is_err(), "prefix of {length} passed");
        }
        let mut vlan_loop = ethernet(MAC, &[0x8100; 10], 0x8100);
        vlan_loop.truncate(vlan_loop.len() - 2);
        assert_eq!(
            check(&vlan_loop, &sender(&[]), Privilege::App),
            Err(TxRefusal::Malformed)
        );
        let too_many_tags = udp_tagged(&[0x8100; 9], IP, 5000);
        assert_eq!(
            check(
                &too_many_tags,
                &sender(&[(PROTOCOL_UDP, 5000)]),
                Privilege::App
            ),
            Err(TxRefusal::Malformed)
        );
    }

    /// Every stack of up to three tags from the three identifiers, and the longest stack
    /// claims look through: the check looks through each (an own port passes, a spoofed
    /// source does not), and one tag more, or a stack cut anywhere, is malformed.
    #[test]
    fn every_tag_stack_is_looked_through_and_cut_ones_are_malformed() {
        let ports = [(PROTOCOL_UDP, 5000)];
        let identifiers = dpf::vlan::TAG_PROTOCOL_IDENTIFIERS;
        let mut stacks: Vec<Vec<u16>> = alloc::vec![Vec::new()];
        for _ in 0..3 {
            let longer: Vec<Vec<u16>> = stacks
                .iter()
                .filter(|stack| stack.len() == stacks.last().map_or(0, Vec::len))
                .flat_map(|stack| {
                    identifiers.iter().map(move |&tag| {
                        let mut longer = stack.clone();
                        longer.push(tag);
                        longer
                    })
                })
                .collect();
            stacks.extend(longer);
        }
        assert_eq!(stacks.len(), 1 + 3 + 9 + 27);
        stacks.push(alloc::vec![0x8100; dpf::vlan::MAX_TAGS as usize]);
        for stack in &stacks {
            let frame = udp_tagged(stack, IP, 5000);
            assert_eq!(
                check(&frame, &sender(&ports), Privilege::App),
                Ok(()),
                "{stack:x?}"
            );
            assert_eq!(
                check(
                    &udp_tagged(stack, PEER, 5000),
                    &sender(&ports),
                    Privilege::App
                ),
                Err(TxRefusal::SourceAddress),
                "{stack:x?}"
            );
            // Cut inside the tags or the ethertype after them.
            for length in 12..14 + 4 * stack.len() {
                assert_eq!(
                    check(&frame[..length], &sender(&ports), Privilege::App),
                    Err(TxRefusal::Malformed),
                    "{stack:x?} cut at {length}"
                );
            }
        }
        let one_more = alloc::vec![0x88a8; dpf::vlan::MAX_TAGS as usize + 1];
        assert_eq!(
            check(
                &udp_tagged(&one_more, IP, 5000),
                &sender(&ports),
                Privilege::App
            ),
            Err(TxRefusal::Malformed)
        );
    }

    /// etherparse (which libnet's tests and the capture tools parse frames with) and
    /// `dpf::vlan` (which claims and this check use) take exactly the same ethertypes for a
    /// VLAN tag: for each of the 65,536, etherparse looks through a tag iff dpf does.
    #[test]
    fn etherparse_and_dpf_agree_on_what_is_a_tag() {
        for ethertype in 0..=u16::MAX {
            let mut frame = ethernet(MAC, &[], ethertype);
            frame.extend_from_slice(&[0, 7]);
            frame.extend_from_slice(&ETHERTYPE_IPV4.to_be_bytes());
            frame.extend(ipv4_header(PROTOCOL_UDP, IP, PEER));
            frame.extend_from_slice(&[0x13, 0x88, 0, 53, 0, 8, 0, 0]);
            let sliced = etherparse::LaxSlicedPacket::from_ethernet(&frame).unwrap();
            let etherparse_tag = matches!(
                sliced.link_exts.first(),
                Some(etherparse::LaxLinkExtSlice::Vlan(_))
            );
            assert_eq!(
                etherparse_tag,
                dpf::vlan::is_tag(ethertype),
                "{ethertype:#06x}"
            );
        }
    }

    /// Frames shorter than an Ethernet header are malformed whatever the privilege; one that
    /// ends right after its ethertype is malformed unless the raw right sends it as it is.
    #[test]
    fn runts_are_malformed() {
        let ports = [(PROTOCOL_UDP, 5000)];
        for length in 0..14 {
            let runt = &udp(MAC, IP, 5000)[..length];
            for privilege in [Privilege::App, Privilege::System, Privilege::Raw] {
                assert_eq!(
                    check(runt, &sender(&ports), privilege),
                    Err(TxRefusal::Malformed),
                    "{length} bytes, {privilege:?}"
                );
            }
        }
        for ethertype in [ETHERTYPE_IPV4, ETHERTYPE_ARP] {
            let bare = ethernet(MAC, &[], ethertype);
            assert_eq!(
                check(&bare, &sender(&ports), Privilege::App),
                Err(TxRefusal::Malformed)
            );
            assert_eq!(check(&bare, &sender(&ports), Privilege::Raw), Ok(()));
        }
    }

    /// IPv6, however its extension headers are arranged, is not on the allow list (the host has
    /// no IPv6 address): hop-by-hop, routing, fragment and destination-option chains, a chain
    /// cut short, one that loops back to hop-by-hop, and an extension length past the frame
    /// are all refused without the raw right, behind tags too, and none is read past its end.
    #[test]
    fn ipv6_with_any_extension_chain_needs_the_raw_right() {
        const ETHERTYPE_IPV6: u16 = 0x86dd;
        let ports = [(PROTOCOL_UDP, 5000), (PROTOCOL_TCP, 5000)];
        let ipv6 = |next: u8, extensions: &[u8], tags: &[u16]| {
            let mut frame = ethernet(MAC, tags, ETHERTYPE_IPV6);
            let payload = (extensions.len() + 8) as u16;
            frame.extend_from_slice(&[0x60, 0, 0, 0]);
            frame.extend_from_slice(&payload.to_be_bytes());
            frame.extend_from_slice(&[next, 64]);
            frame.extend_from_slice(&[0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x15]);
            frame.extend_from_slice(&[0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x02]);
            frame.extend_from_slice(extensions);
            frame.extend_from_slice(&[0x13, 0x88, 0, 53, 0, 8, 0, 0]);
            frame
        };
        // (first next header, extension bytes): each extension is next header, length (in
        // 8-byte units after the first 8), then its body.
        let chains: [(u8, Vec<u8>); 7] = [
            (PROTOCOL_UDP, Vec::new()),
            (0, alloc::vec![PROTOCOL_UDP, 0, 1, 4, 0, 0, 0, 0]),
            (43, alloc::vec![PROTOCOL_TCP, 0, 0, 0, 0, 0, 0, 0]),
            (44, alloc::vec![PROTOCOL_UDP, 0, 0, 1, 0, 0, 0, 1]),
            (
                60,
                alloc::vec![0, 0, 0, 0, 0, 0, 0, 0, PROTOCOL_UDP, 0, 0, 0, 0, 0, 0, 0],
            ),
            (
                0,
                alloc::vec![0, 0, 1, 4, 0, 0, 0, 0, 0, 0, 1, 4, 0, 0, 0, 0],
            ),
            (0, alloc::vec![PROTOCOL_UDP, 200, 1, 4, 0, 0, 0, 0]),
        ];
        for (next, extensions) in &chains {
            for tags in [&[][..], &[0x8100], &[0x88a8, 0x8100]] {
                let frame = ipv6(*next, extensions, tags);
                for length in [
                    frame.len(),
                    14 + 4 * tags.len() + 20,
                    14 + 4 * tags.len() + 41,
                ] {
                    let verdict = check(&frame[..length], &sender(&ports), Privilege::App);
                    assert_eq!(
                        verdict,
                        Err(TxRefusal::NotAllowed),
                        "next {next}, {extensions:?}, tags {tags:x?}, {length} bytes"
                    );
                    assert_eq!(
                        check(&frame[..length], &sender(&ports), Privilege::Raw),
                        Ok(())
                    );
                }
            }
        }
    }

    /// What etherparse could look through but the allow list does not: an IPv4 packet
    /// behind an IP authentication header (etherparse's lax IP slice skips it), behind MACsec,
    /// or behind an 802.1ah I-tag is refused, as are IPv4 headers that are not ones.
    #[test]
    fn wrappers_and_broken_ipv4_headers_are_refused() {
        let ports = [(PROTOCOL_UDP, 5000)];
        let mut authenticated = udp(MAC, IP, 5000);
        authenticated[23] = 51;
        assert_eq!(
            check(&authenticated, &sender(&ports), Privilege::App),
            Err(TxRefusal::NotAllowed)
        );
        for wrapper in [0x88e5, 0x88e7] {
            let inner = udp(MAC, IP, 5000);
            let mut frame = ethernet(MAC, &[], wrapper);
            frame.extend_from_slice(&[0; 8]);
            frame.extend_from_slice(&inner[12..]);
            assert_eq!(
                check(&frame, &sender(&ports), Privilege::App),
                Err(TxRefusal::NotAllowed),
                "{wrapper:#x}"
            );
        }
        // Version 6 in an IPv4 frame, a header length under 20 bytes, one past the frame.
        for (at, byte) in [(14, 0x65), (14, 0x44), (14, 0x40), (14, 0x4f)] {
            let mut frame = udp(MAC, IP, 5000);
            frame[at] = byte;
            assert_eq!(
                check(&frame, &sender(&ports), Privilege::App),
                Err(TxRefusal::Malformed),
                "{byte:#x}"
            );
        }
        // An ICMP fragment, echo or error, is not read into: refused.
        for kind in [0, 3] {
            let mut fragment = icmp_error(kind, IP, 5000);
            fragment[20] = 0x20;
            assert_eq!(
                check(&fragment, &sender(&ports), Privilege::System),
                Err(TxRefusal::NotAllowed),
                "type {kind}"
            );
        }
        // Options are fine: the port is read after them.
        let mut with_options = udp(MAC, IP, 5000);
        with_options[14] = 0x46;
        with_options.splice(34..34, [1, 1, 1, 0]);
        assert_eq!(
            check(&with_options, &sender(&ports), Privilege::App),
            Ok(())
        );
    }
}
