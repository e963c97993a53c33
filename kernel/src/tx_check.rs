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
//! for which the host has no address yet) needs the raw-transmit right. A small checked parser
//! that trusts no length field.

/// Who the sender is allowed to be.
#[derive(Clone, Copy, Debug)]
pub struct SenderIdentity<'a> {
    /// The NIC's MAC (apps share it).
    pub mac: [u8; 6],
    /// The host's IPv4 address (apps share it).
    pub ipv4: [u8; 4],
    /// `(IP protocol, port)` pairs the sender owns.
    pub ports: &'a [(u8, u16)],
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

const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_ARP: u16 = 0x0806;
const PROTOCOL_ICMP: u8 = 1;
const PROTOCOL_TCP: u8 = 6;
const PROTOCOL_UDP: u8 = 17;
/// ICMPv4 types that are errors about a packet (RFC 792): destination unreachable, time
/// exceeded, parameter problem.
const ICMP_ERRORS: [u8; 3] = [3, 11, 12];
/// ICMPv4 echo reply and echo request.
const ICMP_ECHO: [u8; 2] = [0, 8];

fn be16(frame: &[u8], at: usize) -> Result<u16, TxRefusal> {
    let bytes = frame
        .get(at..at.checked_add(2).ok_or(TxRefusal::Malformed)?)
        .ok_or(TxRefusal::Malformed)?;
    Ok(u16::from_be_bytes([bytes[0], bytes[1]]))
}

/// The ethertype after the VLAN tags dpf's claims look through, and the payload after it.
fn ethertype_and_payload(frame: &[u8]) -> Result<(u16, &[u8]), TxRefusal> {
    let mut at = 12;
    let mut ethertype = be16(frame, at)?;
    let mut tags = 0;
    while dpf::claim::TAG_PROTOCOL_IDENTIFIERS.contains(&u32::from(ethertype)) {
        tags += 1;
        if tags > dpf::claim::MAX_TAGS {
            return Err(TxRefusal::Malformed);
        }
        at += 4;
        ethertype = be16(frame, at)?;
    }
    let payload = frame.get(at + 2..).ok_or(TxRefusal::Malformed)?;
    Ok((ethertype, payload))
}

/// An IPv4 header's protocol, whether it is a fragment, and what follows it.
struct Ipv4<'a> {
    source: &'a [u8],
    destination: &'a [u8],
    protocol: u8,
    fragment: bool,
    payload: &'a [u8],
}

fn ipv4(packet: &[u8]) -> Result<Ipv4<'_>, TxRefusal> {
    let header = packet.get(..20).ok_or(TxRefusal::Malformed)?;
    if header[0] >> 4 != 4 {
        return Err(TxRefusal::Malformed);
    }
    let header_bytes = usize::from(header[0] & 0x0f) * 4;
    if header_bytes < 20 {
        return Err(TxRefusal::Malformed);
    }
    let fragment_field = u16::from_be_bytes([header[6], header[7]]);
    Ok(Ipv4 {
        source: &header[12..16],
        destination: &header[16..20],
        protocol: header[9],
        fragment: fragment_field & 0x3fff != 0,
        payload: packet.get(header_bytes..).ok_or(TxRefusal::Malformed)?,
    })
}

/// Checks `frame` from `sender` with `privilege`.
pub fn check(
    frame: &[u8],
    sender: &SenderIdentity<'_>,
    privilege: Privilege,
) -> Result<(), TxRefusal> {
    if frame.len() < 14 {
        return Err(TxRefusal::Malformed);
    }
    if frame[6..12] != sender.mac {
        return Err(TxRefusal::SourceMac);
    }
    if privilege == Privilege::Raw {
        return Ok(());
    }
    let (ethertype, payload) = ethertype_and_payload(frame)?;
    match ethertype {
        ETHERTYPE_IPV4 => check_ipv4(payload, sender, privilege),
        ETHERTYPE_ARP => {
            let arp = payload.get(..28).ok_or(TxRefusal::Malformed)?;
            // Ethernet hardware (1), IPv4 protocol, 6- and 4-byte addresses.
            if arp[..6] != [0, 1, 8, 0, 6, 4] {
                return Err(TxRefusal::NotAllowed);
            }
            if arp[8..14] != sender.mac {
                return Err(TxRefusal::SourceMac);
            }
            if arp[14..18] != sender.ipv4 {
                return Err(TxRefusal::SourceAddress);
            }
            Ok(())
        }
        _ => Err(TxRefusal::NotAllowed),
    }
}

fn check_ipv4(
    packet: &[u8],
    sender: &SenderIdentity<'_>,
    privilege: Privilege,
) -> Result<(), TxRefusal> {
    let ip = ipv4(packet)?;
    if ip.source != sender.ipv4 {
        return Err(TxRefusal::SourceAddress);
    }
    match ip.protocol {
        PROTOCOL_TCP | PROTOCOL_UDP => {
            if ip.fragment {
                return Err(TxRefusal::SourcePort);
            }
            let port = be16(ip.payload, 0)?;
            if !sender.ports.contains(&(ip.protocol, port)) {
                return Err(TxRefusal::SourcePort);
            }
            Ok(())
        }
        PROTOCOL_ICMP => {
            if ip.fragment {
                return Err(TxRefusal::NotAllowed);
            }
            let kind = *ip.payload.first().ok_or(TxRefusal::Malformed)?;
            if privilege == Privilege::System && ICMP_ECHO.contains(&kind) {
                return Ok(());
            }
            if !ICMP_ERRORS.contains(&kind) {
                return Err(TxRefusal::NotAllowed);
            }
            // The quoted packet (after the 8-byte ICMP header) was sent to the host, to one of
            // the sender's ports: the error is about the sender's own flow.
            let quoted = ipv4(ip.payload.get(8..).ok_or(TxRefusal::Malformed)?)?;
            if quoted.destination != sender.ipv4 {
                return Err(TxRefusal::SourceAddress);
            }
            if !matches!(quoted.protocol, PROTOCOL_TCP | PROTOCOL_UDP) || quoted.fragment {
                return Err(TxRefusal::NotAllowed);
            }
            let port = be16(quoted.payload, 2)?;
            if !sender.ports.contains(&(quoted.protocol, port)) {
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

    fn sender(ports: &[(u8, u16)]) -> SenderIdentity<'_> {
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
}
