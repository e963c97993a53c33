//! What a verified filter claims: the local transport port every packet it matches is sent to.
//!
//! The kernel's overlap rule rests on this. A filter is a conjunction, so any atom it holds is a
//! property of every packet it matches. When its atoms pin, at the places untagged Ethernet puts
//! them, the ethertype (IPv4 or IPv6), the IP protocol (TCP or UDP) and the transport destination
//! port (full masks, equality, the IPv4 port read after exactly the header-length shift), every
//! packet it matches carries that protocol and port, and two filters claiming different
//! `(protocol, port)` pairs can never match the same packet. Anything else (no port, a source
//! port, a VLAN tag, a partial mask, a range) claims nothing specific: it is a monitor filter.
//!
//! Ports are owned per transport protocol across both IP versions: apps share the host's IPv4
//! and IPv6 addresses, so `ip6 and tcp dst port 443` and `tcp dst port 443` claim one port.

use crate::ir::{Atom, CmpOp, Field, Filter, Shift, Step, Width};

/// The transport protocols whose ports can be owned.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u8)]
pub enum Transport {
    /// IP protocol 6.
    Tcp = 6,
    /// IP protocol 17.
    Udp = 17,
}

impl Transport {
    /// From an IP protocol number.
    pub const fn from_protocol(protocol: u8) -> Option<Transport> {
        match protocol {
            6 => Some(Transport::Tcp),
            17 => Some(Transport::Udp),
            _ => None,
        }
    }

    /// The IP protocol number.
    pub const fn protocol(self) -> u8 {
        self as u8
    }
}

/// Which IP version a claiming filter is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum IpVersion {
    /// Ethertype 0x0800.
    V4,
    /// Ethertype 0x86dd.
    V6,
}

/// A local port a filter claims.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PortClaim {
    /// The IP version the filter is for.
    pub ip: IpVersion,
    /// TCP or UDP.
    pub transport: Transport,
    /// The transport destination port: the local port.
    pub port: u16,
}

impl PortClaim {
    /// Whether both claims take packets for the same local port (whatever the IP version).
    pub fn overlaps(&self, other: &PortClaim) -> bool {
        self.transport == other.transport && self.port == other.port
    }
}

const ETHERTYPE_IPV4: u32 = 0x0800;
const ETHERTYPE_IPV6: u32 = 0x86dd;
/// IPv4's header-length shift, from the start of the frame.
const IPV4_HEADER_LENGTH: Shift = Shift {
    offset: 14,
    width: Width::B1,
    mask: 0x0f,
    shift: 2,
};

/// Where (after how many shifts) and what an equality atom pins.
fn pinned(atom: &Atom) -> Option<(u16, Width, u32)> {
    match atom.field {
        Field::Packet { offset, width }
            if atom.op == CmpOp::Eq && atom.mask & width.max_value() == width.max_value() =>
        {
            Some((offset, width, atom.value))
        }
        _ => None,
    }
}

/// The port `filter` claims; `None` when it claims nothing specific (a monitor filter).
pub fn claim(filter: &Filter) -> Option<PortClaim> {
    let mut ethertype = None;
    let (mut v4_protocol, mut v6_protocol) = (None, None);
    let (mut v4_port, mut v6_port) = (None, None);
    // `Some(true)` while the only shift taken is IPv4's header length; `Some(false)` at the
    // frame's start; `None` after any other shift sequence.
    let mut after_header_length = Some(false);
    for step in filter.steps() {
        let atom = match step {
            Step::Shift(shift) => {
                after_header_length = match after_header_length {
                    Some(false) if *shift == IPV4_HEADER_LENGTH => Some(true),
                    _ => None,
                };
                continue;
            }
            Step::Test(atom) => atom,
        };
        let Some((offset, width, value)) = pinned(atom) else {
            continue;
        };
        match (after_header_length, offset, width) {
            (Some(false), 12, Width::B2) => ethertype = ethertype.or(Some(value)),
            (Some(false), 23, Width::B1) => v4_protocol = v4_protocol.or(Some(value)),
            (Some(false), 20, Width::B1) => v6_protocol = v6_protocol.or(Some(value)),
            (Some(false), 56, Width::B2) => v6_port = v6_port.or(Some(value)),
            (Some(true), 16, Width::B2) => v4_port = v4_port.or(Some(value)),
            _ => {}
        }
    }
    let (ip, protocol, port) = match ethertype? {
        ETHERTYPE_IPV4 => (IpVersion::V4, v4_protocol?, v4_port?),
        ETHERTYPE_IPV6 => (IpVersion::V6, v6_protocol?, v6_port?),
        _ => return None,
    };
    Some(PortClaim {
        ip,
        transport: Transport::from_protocol(u8::try_from(protocol).ok()?)?,
        port: u16::try_from(port).ok()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::FilterId;
    use alloc::vec::Vec;

    fn claims(expression: &str) -> Vec<Option<PortClaim>> {
        crate::frontend::compile(expression, FilterId(1))
            .unwrap()
            .iter()
            .map(claim)
            .collect()
    }

    fn port(ip: IpVersion, transport: Transport, port: u16) -> Option<PortClaim> {
        Some(PortClaim {
            ip,
            transport,
            port,
        })
    }

    #[test]
    fn destination_ports_are_claimed() {
        use IpVersion::*;
        use Transport::*;
        assert_eq!(claims("ip and tcp and dst port 80"), [port(V4, Tcp, 80)]);
        assert_eq!(claims("ip6 and tcp and dst port 443"), [port(V6, Tcp, 443)]);
        assert_eq!(
            claims("udp dst port 53"),
            [port(V6, Udp, 53), port(V4, Udp, 53)]
        );
        // Narrower filters on an owned port still claim it.
        assert_eq!(
            claims("ip and udp dst port 53 and src host 10.0.0.1 and len > 60"),
            [port(V4, Udp, 53)]
        );
    }

    #[test]
    fn anything_else_claims_nothing() {
        for expression in [
            "tcp",
            "ip",
            "udp src port 53",
            "tcp dst portrange 80-90",
            "vlan and tcp dst port 80",
            "ip[23] = 6 and tcp[2:2] & 0xff = 80",
            "arp",
        ] {
            let claims = claims(expression);
            assert!(
                claims.iter().all(Option::is_none),
                "{expression:?}: {claims:?}"
            );
        }
        // `port 80` is a disjunction: its destination-port conjunctions claim, the source-port
        // ones do not (so binding it needs the monitor right).
        let claims = claims("tcp port 80");
        assert!(claims.iter().any(Option::is_some) && claims.iter().any(Option::is_none));
    }

    #[test]
    fn a_port_atom_counts_only_where_the_port_is() {
        use crate::{Atom, Step, UnverifiedFilter};
        let eq = |offset, width, value| {
            Step::Test(Atom {
                field: Field::Packet { offset, width },
                mask: width.max_value(),
                op: CmpOp::Eq,
                value,
            })
        };
        let filter = |steps: Vec<Step>| {
            UnverifiedFilter {
                id: FilterId(1),
                steps,
            }
            .verify()
            .unwrap()
        };
        let ethertype = eq(12, Width::B2, ETHERTYPE_IPV4);
        let protocol = eq(23, Width::B1, 6);
        let header_length = Step::Shift(IPV4_HEADER_LENGTH);
        let destination = eq(16, Width::B2, 80);
        assert_eq!(
            claim(&filter(alloc::vec![
                ethertype,
                protocol,
                header_length,
                destination
            ])),
            port(IpVersion::V4, Transport::Tcp, 80)
        );
        // Without the header-length shift, offset 16 is inside the IPv4 header.
        assert_eq!(
            claim(&filter(alloc::vec![ethertype, protocol, destination])),
            None
        );
        // Two shifts: the base is somewhere else.
        assert_eq!(
            claim(&filter(alloc::vec![
                ethertype,
                protocol,
                header_length,
                header_length,
                destination
            ])),
            None
        );
        // A partial mask pins only some bits.
        let mut partial = destination;
        if let Step::Test(atom) = &mut partial {
            atom.mask = 0xff00;
            atom.value = 80 << 8;
        }
        assert_eq!(
            claim(&filter(alloc::vec![
                ethertype,
                protocol,
                header_length,
                partial
            ])),
            None
        );
        // Not TCP or UDP.
        assert_eq!(
            claim(&filter(alloc::vec![
                ethertype,
                eq(23, Width::B1, 132),
                header_length,
                destination
            ])),
            None
        );
    }

    #[test]
    fn ports_overlap_across_ip_versions() {
        let v4 = port(IpVersion::V4, Transport::Tcp, 80).unwrap();
        let v6 = port(IpVersion::V6, Transport::Tcp, 80).unwrap();
        assert!(v4.overlaps(&v6));
        assert!(!v4.overlaps(&port(IpVersion::V4, Transport::Udp, 80).unwrap()));
        assert!(!v4.overlaps(&port(IpVersion::V4, Transport::Tcp, 81).unwrap()));
    }
}
