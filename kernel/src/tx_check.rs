//! The transmit check: a frame an app sends must carry the sender's own source MAC, IPv4
//! address and (for TCP and UDP) a source port it owns. A small checked parser, no trust in
//! any length field.

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

/// Why a frame was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TxRefusal {
    /// Shorter than an Ethernet header, or a header field points past the end.
    Malformed,
    /// Source MAC is not the NIC's.
    SourceMac,
    /// Source IPv4 address (or ARP sender address) is not the host's; or IPv6, which the host
    /// has no address for yet.
    SourceAddress,
    /// TCP/UDP source port the sender does not own, or a fragment (whose ports cannot be
    /// checked).
    SourcePort,
}

const ETHERTYPE_VLAN: u16 = 0x8100;
const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_ARP: u16 = 0x0806;
const ETHERTYPE_IPV6: u16 = 0x86dd;
const PROTOCOL_TCP: u8 = 6;
const PROTOCOL_UDP: u8 = 17;

fn be16(frame: &[u8], at: usize) -> Result<u16, TxRefusal> {
    let bytes = frame.get(at..at + 2).ok_or(TxRefusal::Malformed)?;
    Ok(u16::from_be_bytes([bytes[0], bytes[1]]))
}

/// Checks `frame` against `sender`.
pub fn check(frame: &[u8], sender: &SenderIdentity<'_>) -> Result<(), TxRefusal> {
    if frame.len() < 14 {
        return Err(TxRefusal::Malformed);
    }
    if frame[6..12] != sender.mac {
        return Err(TxRefusal::SourceMac);
    }
    let mut at = 12;
    let mut ethertype = be16(frame, at)?;
    while ethertype == ETHERTYPE_VLAN {
        at += 4;
        ethertype = be16(frame, at)?;
    }
    let payload = frame.get(at + 2..).ok_or(TxRefusal::Malformed)?;
    match ethertype {
        ETHERTYPE_IPV4 => {
            let header = payload.get(..20).ok_or(TxRefusal::Malformed)?;
            if header[0] >> 4 != 4 {
                return Err(TxRefusal::Malformed);
            }
            let header_bytes = usize::from(header[0] & 0x0f) * 4;
            if header_bytes < 20 {
                return Err(TxRefusal::Malformed);
            }
            if header[12..16] != sender.ipv4 {
                return Err(TxRefusal::SourceAddress);
            }
            let protocol = header[9];
            if protocol == PROTOCOL_TCP || protocol == PROTOCOL_UDP {
                let fragment = u16::from_be_bytes([header[6], header[7]]);
                if fragment & 0x3fff != 0 {
                    return Err(TxRefusal::SourcePort);
                }
                let port = be16(payload, header_bytes)?;
                if !sender.ports.contains(&(protocol, port)) {
                    return Err(TxRefusal::SourcePort);
                }
            }
            Ok(())
        }
        ETHERTYPE_ARP => {
            let arp = payload.get(..28).ok_or(TxRefusal::Malformed)?;
            if arp[8..14] != sender.mac {
                return Err(TxRefusal::SourceMac);
            }
            if arp[14..18] != sender.ipv4 {
                return Err(TxRefusal::SourceAddress);
            }
            Ok(())
        }
        ETHERTYPE_IPV6 => Err(TxRefusal::SourceAddress),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;

    const MAC: [u8; 6] = [0x52, 0x54, 0, 0x12, 0x34, 0x56];
    const IP: [u8; 4] = [10, 0, 2, 15];

    fn udp(source_mac: [u8; 6], source_ip: [u8; 4], source_port: u16) -> Vec<u8> {
        let mut frame = Vec::new();
        frame.extend_from_slice(&[0xff; 6]);
        frame.extend_from_slice(&source_mac);
        frame.extend_from_slice(&ETHERTYPE_IPV4.to_be_bytes());
        frame.extend_from_slice(&[0x45, 0, 0, 28, 0, 0, 0x40, 0, 64, PROTOCOL_UDP, 0, 0]);
        frame.extend_from_slice(&source_ip);
        frame.extend_from_slice(&[10, 0, 2, 2]);
        frame.extend_from_slice(&source_port.to_be_bytes());
        frame.extend_from_slice(&[0, 53, 0, 8, 0, 0]);
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
        assert_eq!(check(&udp(MAC, IP, 5000), &sender(&ports)), Ok(()));
    }

    #[test]
    fn spoofing_is_refused() {
        let ports = [(PROTOCOL_UDP, 5000)];
        let sender = sender(&ports);
        let mut other_mac = MAC;
        other_mac[5] ^= 1;
        assert_eq!(
            check(&udp(other_mac, IP, 5000), &sender),
            Err(TxRefusal::SourceMac)
        );
        assert_eq!(
            check(&udp(MAC, [10, 0, 2, 16], 5000), &sender),
            Err(TxRefusal::SourceAddress)
        );
        assert_eq!(
            check(&udp(MAC, IP, 5001), &sender),
            Err(TxRefusal::SourcePort)
        );
        let mut tcp_same_port = udp(MAC, IP, 5000);
        tcp_same_port[23] = PROTOCOL_TCP;
        assert_eq!(check(&tcp_same_port, &sender), Err(TxRefusal::SourcePort));
        let mut fragment = udp(MAC, IP, 5000);
        fragment[21] = 1;
        assert_eq!(check(&fragment, &sender), Err(TxRefusal::SourcePort));
    }

    #[test]
    fn truncated_frames_are_malformed_not_panics() {
        let frame = udp(MAC, IP, 5000);
        // Up to the end of the source port, every prefix lacks something the check reads.
        for length in 0..14 + 20 + 2 {
            let verdict = check(&frame[..length], &sender(&[(PROTOCOL_UDP, 5000)]));
            assert!(verdict.is_err(), "prefix of {length} passed");
        }
        let mut vlan_loop = Vec::new();
        vlan_loop.extend_from_slice(&[0xff; 6]);
        vlan_loop.extend_from_slice(&MAC);
        for _ in 0..10 {
            vlan_loop.extend_from_slice(&[0x81, 0, 0, 1]);
        }
        assert_eq!(check(&vlan_loop, &sender(&[])), Err(TxRefusal::Malformed));
    }

    #[test]
    fn non_ip_frames_need_only_the_mac() {
        let mut frame = Vec::new();
        frame.extend_from_slice(&[0xff; 6]);
        frame.extend_from_slice(&MAC);
        frame.extend_from_slice(&[0x88, 0xb5, 1, 2, 3]);
        assert_eq!(check(&frame, &sender(&[])), Ok(()));
    }
}
