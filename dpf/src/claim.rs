//! What a verified filter claims: the local transport port every packet it matches is sent to.
//!
//! The kernel's overlap rule rests on this. A filter is a conjunction, so any atom it holds is a
//! property of every packet it matches. When its atoms pin, at the places Ethernet puts them,
//! the ethertype (IPv4 or IPv6), the IP protocol (TCP or UDP) and the transport destination
//! port (full masks, equality, the IPv4 port read after exactly the header-length shift), every
//! packet it matches carries that protocol and port, and two filters claiming different
//! `(protocol, port)` pairs can never match the same packet. VLAN tags (802.1Q, 802.1ad, and
//! stacks of them, as `vlan` compiles) move all of those places by 4 bytes per tag: a filter
//! claims through `k` tags only if it pins a tag protocol identifier at each of the `k` tag
//! positions, so every packet it matches really has its headers there. Anything else (no port,
//! a source port, a partial mask, a range, an ethertype at a tagged position without the tags
//! before it) claims nothing specific: it is a monitor filter.
//!
//! Ports are owned per transport protocol across both IP versions: apps share the host's IPv4
//! and IPv6 addresses, so `ip6 and tcp dst port 443` and `tcp dst port 443` claim one port.

use crate::ir::{Atom, CmpOp, Field, Filter, Shift, Step, Width};
use alloc::vec::Vec;

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
// What a VLAN tag is, and how many a claim looks through, come from `vlan`, which the
// kernel's transmit check also uses: what a claim looks through on receive is what the check
// looks through on send.
use crate::vlan::{MAX_TAGS, TAG_BYTES};

/// IPv4's header-length shift, from the start of the frame, behind `tags` VLAN tags.
const fn ipv4_header_length(tags: u16) -> Shift {
    Shift {
        offset: 14 + TAG_BYTES * tags,
        width: Width::B1,
        mask: 0x0f,
        shift: 2,
    }
}

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

/// The pins of a filter: those taken from the frame's start, and those taken after its first
/// shift (pins after a second shift are relative to a base this module does not follow).
struct Pins {
    at_start: Vec<(u16, Width, u32)>,
    first_shift: Option<Shift>,
    after_first_shift: Vec<(u16, Width, u32)>,
}

impl Pins {
    fn of(filter: &Filter) -> Pins {
        let mut pins = Pins {
            at_start: Vec::new(),
            first_shift: None,
            after_first_shift: Vec::new(),
        };
        let mut shifts = 0;
        for step in filter.steps() {
            match step {
                Step::Shift(shift) => {
                    shifts += 1;
                    pins.first_shift = pins.first_shift.or(Some(*shift));
                }
                // An expression narrows what the filter matches; it pins nothing.
                Step::Eval(_) => {}
                Step::Test(atom) => {
                    let Some(pin) = pinned(atom) else { continue };
                    match shifts {
                        0 => pins.at_start.push(pin),
                        1 => pins.after_first_shift.push(pin),
                        _ => {}
                    }
                }
            }
        }
        pins
    }

    /// The first value pinned at `offset` with `width` (a filter pinning two different values
    /// at one place matches nothing, so which one is taken does not matter).
    fn value(pins: &[(u16, Width, u32)], offset: u16, width: Width) -> Option<u32> {
        pins.iter()
            .find(|(at, pinned_width, _)| *at == offset && *pinned_width == width)
            .map(|(_, _, value)| *value)
    }
}

/// Whether `filter` takes only unfragmented IPv4 packets and first fragments (fragment offset
/// zero, before its first shift), as pcap-filter's `tcp dst port` and the like compile. Later
/// fragments carry no transport header, so the bytes where the port would be are payload: a
/// filter without this atom would take other flows' fragments whose payload happens to look
/// like its port, and claims nothing.
fn first_fragment_only(filter: &Filter, moved: u16) -> bool {
    const FRAGMENT_OFFSET: u32 = 0x1fff;
    filter
        .steps()
        .iter()
        .take_while(|step| !matches!(step, Step::Shift(_)))
        .any(|step| match step {
            Step::Test(atom) => {
                atom.field
                    == Field::Packet {
                        offset: 20 + moved,
                        width: Width::B2,
                    }
                    && atom.op == CmpOp::Eq
                    && atom.mask & FRAGMENT_OFFSET == FRAGMENT_OFFSET
                    && atom.value & FRAGMENT_OFFSET == 0
            }
            Step::Shift(_) | Step::Eval(_) => false,
        })
}

/// The port `filter` claims; `None` when it claims nothing specific (a monitor filter).
pub fn claim(filter: &Filter) -> Option<PortClaim> {
    let pins = Pins::of(filter);
    let start = |offset, width| Pins::value(&pins.at_start, offset, width);
    // Tags the filter requires: a tag protocol identifier pinned at each tag position.
    let mut tags = 0;
    while tags < MAX_TAGS
        && start(12 + TAG_BYTES * tags, Width::B2)
            .is_some_and(|tpid| u16::try_from(tpid).is_ok_and(crate::vlan::is_tag))
    {
        tags += 1;
    }
    let moved = TAG_BYTES * tags;
    let (ip, protocol, port) = match start(12 + moved, Width::B2)? {
        ETHERTYPE_IPV4 => {
            if pins.first_shift? != ipv4_header_length(tags) || !first_fragment_only(filter, moved)
            {
                return None;
            }
            let port = Pins::value(&pins.after_first_shift, 16 + moved, Width::B2)?;
            (IpVersion::V4, start(23 + moved, Width::B1)?, port)
        }
        ETHERTYPE_IPV6 => (
            IpVersion::V6,
            start(20 + moved, Width::B1)?,
            start(56 + moved, Width::B2)?,
        ),
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
    use crate::{Step, UnverifiedFilter};
    use alloc::vec::Vec;

    /// `ip[6:2] & 0x1fff = 0` behind `tags` VLAN tags: first fragments only.
    fn first_fragment(tags: u16) -> Step {
        Step::Test(crate::ir::Atom {
            field: Field::Packet {
                offset: 20 + TAG_BYTES * tags,
                width: Width::B2,
            },
            mask: 0x1fff,
            op: CmpOp::Eq,
            value: 0,
        })
    }

    fn filter(steps: Vec<Step>) -> Filter {
        UnverifiedFilter {
            id: FilterId(1),
            steps,
        }
        .verify()
        .unwrap()
    }

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
            "vlan and udp src port 53",
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
        let ethertype = Step::eq(12, Width::B2, ETHERTYPE_IPV4);
        let protocol = Step::eq(23, Width::B1, 6);
        let fragment = first_fragment(0);
        let header_length = Step::Shift(ipv4_header_length(0));
        let destination = Step::eq(16, Width::B2, 80);
        assert_eq!(
            claim(&filter(alloc::vec![
                ethertype.clone(),
                protocol.clone(),
                fragment.clone(),
                header_length.clone(),
                destination.clone()
            ])),
            port(IpVersion::V4, Transport::Tcp, 80)
        );
        // Without the first-fragment atom, later fragments' payload would pass for the port.
        assert_eq!(
            claim(&filter(alloc::vec![
                ethertype.clone(),
                protocol.clone(),
                header_length.clone(),
                destination.clone()
            ])),
            None
        );
        // Nor with the atom read after the shift (somewhere in the transport header).
        assert_eq!(
            claim(&filter(alloc::vec![
                ethertype.clone(),
                protocol.clone(),
                header_length.clone(),
                fragment.clone(),
                destination.clone()
            ])),
            None
        );
        // Without the header-length shift, offset 16 is inside the IPv4 header.
        assert_eq!(
            claim(&filter(alloc::vec![
                ethertype.clone(),
                protocol.clone(),
                fragment.clone(),
                destination.clone()
            ])),
            None
        );
        // Two shifts: the base is somewhere else.
        assert_eq!(
            claim(&filter(alloc::vec![
                ethertype.clone(),
                protocol.clone(),
                fragment.clone(),
                header_length.clone(),
                header_length.clone(),
                destination.clone()
            ])),
            None
        );
        // A partial mask pins only some bits.
        let mut partial = destination.clone();
        if let Step::Test(atom) = &mut partial {
            atom.mask = 0xff00;
            atom.value = 80 << 8;
        }
        assert_eq!(
            claim(&filter(alloc::vec![
                ethertype.clone(),
                protocol.clone(),
                fragment.clone(),
                header_length.clone(),
                partial.clone()
            ])),
            None
        );
        // Not TCP or UDP.
        assert_eq!(
            claim(&filter(alloc::vec![
                ethertype.clone(),
                Step::eq(23, Width::B1, 132),
                header_length.clone(),
                destination.clone()
            ])),
            None
        );
    }

    #[test]
    fn vlan_tagged_filters_claim_their_port() {
        use IpVersion::*;
        use Transport::*;
        for expression in [
            "vlan and tcp dst port 80",
            "vlan 100 and tcp dst port 80",
            "vlan and vlan and tcp dst port 80",
            "vlan 100 and vlan 200 and ip and tcp dst port 80",
        ] {
            let claims = claims(expression);
            assert!(!claims.is_empty());
            for claim in &claims {
                assert!(
                    *claim == port(V4, Tcp, 80) || *claim == port(V6, Tcp, 80),
                    "{expression:?}: {claims:?}"
                );
            }
        }
        assert!(claims("vlan and udp dst port 53").contains(&port(V6, Udp, 53)));
    }

    #[test]
    fn a_tagged_port_counts_only_behind_its_tags() {
        let tag = Step::eq(12, Width::B2, 0x8100);
        let ethertype = Step::eq(16, Width::B2, ETHERTYPE_IPV4);
        let protocol = Step::eq(27, Width::B1, 17);
        let fragment = first_fragment(1);
        let header_length = Step::Shift(ipv4_header_length(1));
        let destination = Step::eq(20, Width::B2, 53);
        assert_eq!(
            claim(&filter(alloc::vec![
                tag.clone(),
                ethertype.clone(),
                protocol.clone(),
                fragment.clone(),
                header_length.clone(),
                destination.clone()
            ])),
            port(IpVersion::V4, Transport::Udp, 53)
        );
        // Without the tag pinned, offset 16 of an untagged IPv4 frame is its total length:
        // such a filter says nothing about where the port is.
        assert_eq!(
            claim(&filter(alloc::vec![
                ethertype.clone(),
                protocol.clone(),
                fragment.clone(),
                header_length.clone(),
                destination.clone()
            ])),
            None
        );
        // Something else than a tag protocol identifier at the tag's place.
        assert_eq!(
            claim(&filter(alloc::vec![
                Step::eq(12, Width::B2, 0x0800),
                ethertype.clone(),
                protocol.clone(),
                fragment.clone(),
                header_length.clone(),
                destination.clone()
            ])),
            None
        );
        // The protocol or the header length read where an untagged frame has them.
        assert_eq!(
            claim(&filter(alloc::vec![
                tag.clone(),
                ethertype.clone(),
                Step::eq(23, Width::B1, 17),
                header_length.clone(),
                destination.clone()
            ])),
            None
        );
        assert_eq!(
            claim(&filter(alloc::vec![
                tag.clone(),
                ethertype.clone(),
                protocol.clone(),
                Step::Shift(ipv4_header_length(0)),
                destination.clone()
            ])),
            None
        );
        // IPv6 behind two tags.
        let v6 = filter(alloc::vec![
            tag.clone(),
            Step::eq(16, Width::B2, 0x88a8),
            Step::eq(20, Width::B2, ETHERTYPE_IPV6),
            Step::eq(28, Width::B1, 6),
            Step::eq(64, Width::B2, 443),
        ]);
        assert_eq!(claim(&v6), port(IpVersion::V6, Transport::Tcp, 443));
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
