//! Link-layer encapsulations the way libpcap 1.10 tests them on Ethernet: 802.2 LLC and the
//! protocols behind it (STP, ISO, IPX, AppleTalk's SNAP), DECnet addresses, MPLS label stacks,
//! PPPoE and GENEVE, and what a protocol check means once `mpls`, `pppoes` or `geneve` moved
//! the payload.
//!
//! `tcpdump -d EXPR` shows each; the comments name libpcap's generators.

use super::CompileError;
use super::ast::{Encap, Link, LlcKind};
use super::cond::{Cond, Lit, Path};
use super::lexer::Span;
use super::lower::{cmp, eq, first_fragment, ipv4_header_length, linktype};
use super::protocols as p;
use crate::ir::{CmpOp, Field, Shift, Width};

/// The type check inside an encapsulation: gen_mpls_linktype under a label stack, the PPP
/// protocol number (ethertype_to_ppptype) inside a PPPoE session. `None` on plain Ethernet.
pub fn encapsulated_linktype(
    link: Link,
    value: u16,
    span: Span,
) -> Option<Result<Cond, CompileError>> {
    match link.encap {
        // Primitives inside GENEVE are lowered on an Ethernet link, then moved (`inside_geneve`).
        Encap::Ethernet | Encap::Geneve { .. } => None,
        Encap::Mpls => Some(match value {
            // The previous label is the bottom of the stack, and the IP version nibble.
            p::ETHERTYPE_IP | p::ETHERTYPE_IPV6 => {
                let version = if value == p::ETHERTYPE_IP { 0x40 } else { 0x60 };
                Ok(
                    cmp(link.linktype + 2, Width::B1, 0x01, CmpOp::Eq, 1).and(cmp(
                        link.payload,
                        Width::B1,
                        0xf0,
                        CmpOp::Eq,
                        version,
                    )),
                )
            }
            _ => Err(CompileError::new(
                span.start,
                span.end,
                "unsupported protocol over mpls",
            )),
        }),
        Encap::Pppoes => {
            let ppp = match value {
                p::ETHERTYPE_IP => 0x0021,
                p::ETHERTYPE_IPV6 => 0x0057,
                p::ETHERTYPE_DN => 0x0027,
                p::ETHERTYPE_ATALK => 0x0029,
                p::LLCSAP_ISONS => 0x0023,
                p::LLCSAP_8021D => 0x0201,
                p::LLCSAP_IPX => 0x002b,
                0x0600 => 0x0025,
                other => other,
            };
            Some(Ok(eq(link.linktype, Width::B2, u32::from(ppp))))
        }
    }
}

/// An 802.3 frame: the type/length field is a length (gen_cmp_gt negated).
fn is_8023(link: Link) -> Cond {
    cmp(
        link.linktype,
        Width::B2,
        0xffff,
        CmpOp::Gt,
        u32::from(p::ETHERMTU),
    )
    .not()
}

/// gen_snap: the 8-byte 802.2 SNAP header, its last four bytes first (gen_bcmp).
fn snap(link: Link, organization: u32, protocol: u16) -> Cond {
    eq(
        link.payload + 4,
        Width::B4,
        (organization & 0xffff) << 16 | u32::from(protocol),
    )
    .and(eq(
        link.payload,
        Width::B4,
        0xaaaa_0300 | (organization >> 16 & 0xff),
    ))
}

/// gen_ether_linktype for IPX: Ethernet II, or an 802.3 frame with SNAP, the IPX SAP or raw
/// 802.3 (0xffff), in that order.
pub fn ipx(link: Link) -> Cond {
    let encapsulated = snap(link, 0, p::ETHERTYPE_IPX)
        .or(eq(link.payload, Width::B1, u32::from(p::LLCSAP_IPX)))
        .or(eq(link.payload, Width::B2, 0xffff));
    eq(link.linktype, Width::B2, u32::from(p::ETHERTYPE_IPX)).or(is_8023(link).and(encapsulated))
}

/// gen_ether_linktype for AppleTalk and AARP: Ethernet II, or 802.3 with SNAP (Apple's
/// organization code for AppleTalk, 0 for AARP).
pub fn appletalk(link: Link, value: u16) -> Cond {
    let organization = if value == p::ETHERTYPE_ATALK {
        0x08_0007
    } else {
        0
    };
    eq(link.linktype, Width::B2, u32::from(value)).or(is_8023(link).and(snap(
        link,
        organization,
        value,
    )))
}

/// gen_llc and its frame kinds: an 802.3 frame that is not raw 802.3 (DSAP and SSAP 0xff),
/// then the control byte.
pub fn llc(link: Link, kind: LlcKind) -> Cond {
    let base = is_8023(link).and(eq(link.payload, Width::B2, 0xffff).not());
    let control = |mask, value| cmp(link.payload + 2, Width::B1, mask, CmpOp::Eq, value);
    match kind {
        LlcKind::Any => base,
        LlcKind::Information => base.and(control(0x01, 0)),
        LlcKind::Supervisory => base.and(control(0x03, 0x01)),
        LlcKind::Unnumbered => base.and(control(0x03, 0x03)),
        LlcKind::SupervisoryCommand(c) => base.and(control(0x0f, u32::from(c))),
        LlcKind::UnnumberedCommand(c) => base.and(control(0xef, u32::from(c))),
    }
}

/// gen_proto for Q_ISO / Q_ISIS: the ISO SAP, the NLPID after the 3-byte 802.2 header, and
/// for IS-IS PDU classes the PDU type four bytes further.
pub fn iso(link: Link, nlpid: u8, pdus: &[u8], span: Span) -> Result<Cond, CompileError> {
    if link.encap != Encap::Ethernet {
        return Err(CompileError::new(
            span.start,
            span.end,
            "dpf follows ISO protocols only directly on Ethernet (or VLAN)",
        ));
    }
    let proto = || -> Result<Cond, CompileError> {
        Ok(linktype(link, p::LLCSAP_ISONS, span)?.and(eq(
            link.payload + 3,
            Width::B1,
            u32::from(nlpid),
        )))
    };
    if pdus.is_empty() {
        return proto();
    }
    let mut any = Cond::False;
    for &pdu in pdus {
        any = any.or(proto()?.and(eq(link.payload + 7, Width::B1, u32::from(pdu))));
    }
    Ok(any)
}

/// gen_dnhostop for one direction: the four routing-header layouts (short and long, with and
/// without a pad byte) in the order libpcap tries them; the address is little-endian.
fn decnet_address(link: Link, short: u16, long: u16, addr: u16) -> Cond {
    let at = |offset| {
        eq(
            link.payload + offset,
            Width::B2,
            u32::from(addr.swap_bytes()),
        )
    };
    let flags1 = |value| cmp(link.payload + 2, Width::B1, 0x07, CmpOp::Eq, value);
    let flags2 = |value| cmp(link.payload + 2, Width::B2, 0xff07, CmpOp::Eq, value);
    let short_pad0 = flags1(0x02).and(at(2 + short));
    let short_pad1 = flags2(0x8102).and(at(3 + short));
    let long_pad0 = flags1(0x06).and(at(2 + long));
    let long_pad1 = flags2(0x8106).and(at(3 + long));
    short_pad0.or(short_pad1).or(long_pad0).or(long_pad1)
}

/// gen_dnhostop: the DECnet type, then source and/or destination.
pub fn decnet_host(
    link: Link,
    dir: super::ast::Direction,
    addr: u16,
    span: Span,
) -> Result<Cond, CompileError> {
    use super::ast::Direction;
    let src = || decnet_address(link, 3, 15, addr);
    let dst = || decnet_address(link, 1, 7, addr);
    let one = |address: Cond| -> Result<Cond, CompileError> {
        Ok(linktype(link, p::ETHERTYPE_DN, span)?.and(address))
    };
    Ok(match dir {
        Direction::Src => one(src())?,
        Direction::Dst => one(dst())?,
        Direction::SrcOrDst => one(src().or(dst()))?,
        Direction::SrcAndDst => one(src().and(dst()))?,
    })
}

/// Where the frame inside GENEVE is, for one outer IP version and one kind of payload.
struct GeneveContext {
    /// Shifts to the base the GENEVE header's offsets are relative to.
    outer_path: Path,
    /// Those and the options-length shift: the base the inner frame is relative to.
    inner_path: Path,
    /// The inner frame's start from the inner base.
    inner_start: u16,
    /// Whether the payload is an Ethernet frame; if not, its protocol is the GENEVE protocol
    /// type, at `protocol_field` from the outer base, and the payload starts at `inner_start`.
    ethernet: bool,
    protocol_field: u16,
}

impl GeneveContext {
    /// `lit`, lowered for an Ethernet frame at offset 0, moved to this context.
    fn relocate(&self, lit: &Lit) -> Lit {
        let ethertype = lit.path.is_empty()
            && lit.program.is_none()
            && lit.atom.field
                == (Field::Packet {
                    offset: 12,
                    width: Width::B2,
                });
        if !self.ethernet && ethertype {
            let mut moved = lit.clone();
            moved.path = self.outer_path.clone();
            moved.atom.field = Field::Packet {
                offset: self.protocol_field,
                width: Width::B2,
            };
            return moved;
        }
        // Without an inner Ethernet header, the network header is where byte 14 was.
        let delta = if self.ethernet {
            self.inner_start
        } else {
            self.inner_start - 14
        };
        let mut moved = lit.clone();
        moved.path = self.inner_path.clone();
        moved.path.extend(lit.path.iter().map(|shift| Shift {
            offset: shift.offset + delta,
            ..*shift
        }));
        match &mut moved.atom.field {
            Field::Packet { offset, .. } => *offset += delta,
            Field::CapturedFromBase => moved.atom.value += u32::from(delta),
            Field::WireLen => {}
        }
        moved
    }

    fn relocate_cond(&self, cond: &Cond) -> Cond {
        match cond {
            Cond::True => Cond::True,
            Cond::False => Cond::False,
            Cond::Lit(lit) => Cond::Lit(self.relocate(lit)),
            Cond::Defined(lit) => Cond::Defined(self.relocate(lit)),
            Cond::And(a, b) => self.relocate_cond(a).and(self.relocate_cond(b)),
            Cond::Or(a, b) => self.relocate_cond(a).or(self.relocate_cond(b)),
            Cond::Not(a) => self.relocate_cond(a).not(),
        }
    }
}

/// A primitive written after `geneve`, lowered as if on an Ethernet frame at offset 0 (`inner`),
/// moved to where gen_geneve's computed offsets put it: the inner Ethernet frame after the
/// GENEVE header and its options when the protocol type is 0x6558, else the payload there with
/// the protocol type as its Ethernet type; over IPv4 (after the header length) and IPv6.
///
/// The contexts exclude each other, and are tested as a decision (IP version, then protocol
/// type) so the normal form stays small.
pub fn inside_geneve(inner: &Cond, outer: Link, span: Span) -> Result<Cond, CompileError> {
    let mut any = Cond::False;
    for ipv6 in [false, true] {
        let (ip, outer_path, header) = if ipv6 {
            (
                linktype(outer, p::ETHERTYPE_IPV6, span)?,
                Path::new(),
                outer.payload + 40 + 8,
            )
        } else {
            (
                linktype(outer, p::ETHERTYPE_IP, span)?,
                alloc::vec![ipv4_header_length(outer)],
                outer.payload + 8,
            )
        };
        let options = Shift {
            offset: header,
            width: Width::B1,
            mask: 0x3f,
            shift: 2,
        };
        let mut inner_path = outer_path.clone();
        inner_path.push(options);
        let mut kinds = Cond::False;
        for ethernet in [true, false] {
            let protocol = Lit::packet(
                outer_path.clone(),
                header + 2,
                Width::B2,
                0xffff,
                if ethernet { CmpOp::Eq } else { CmpOp::Ne },
                0x6558,
            );
            let context = GeneveContext {
                outer_path: outer_path.clone(),
                inner_path: inner_path.clone(),
                inner_start: header + 8,
                ethernet,
                protocol_field: header + 2,
            };
            kinds = kinds.or(Cond::Lit(protocol).and(context.relocate_cond(inner)));
        }
        any = any.or(ip.and(kinds));
    }
    Ok(any)
}

/// gen_mpls: the MPLS type (or, below another label, that label not being the bottom of the
/// stack), then the label.
pub fn mpls(link: Link, label: Option<u32>, span: Span) -> Result<Cond, CompileError> {
    let outer = match link.encap {
        Encap::Mpls => cmp(link.linktype + 2, Width::B1, 0x01, CmpOp::Eq, 0),
        _ => linktype(link, p::ETHERTYPE_MPLS, span)?,
    };
    Ok(match label {
        Some(label) => outer.and(cmp(
            link.payload,
            Width::B4,
            0xffff_f000,
            CmpOp::Eq,
            label << 12,
        )),
        None => outer,
    })
}

/// gen_pppoes: the session type, then the session id (the low half of the header's first
/// word).
pub fn pppoes(link: Link, session: Option<u16>, span: Span) -> Result<Cond, CompileError> {
    let session_type = linktype(link, p::ETHERTYPE_PPPOES, span)?;
    Ok(match session {
        Some(id) => session_type.and(cmp(
            link.payload,
            Width::B4,
            0xffff,
            CmpOp::Eq,
            u32::from(id),
        )),
        None => session_type,
    })
}

/// gen_geneve over IPv4 then IPv6: UDP to port 6081, a version 0 header, the VNI; and the
/// loads libpcap then makes to find the inner frame (the options length and the protocol
/// type, bytes 0 to 3 of the header), which reject a frame cut before them.
pub fn geneve(link: Link, vni: Option<u32>, span: Span) -> Result<Cond, CompileError> {
    if link.encap != Encap::Ethernet {
        return Err(CompileError::new(
            span.start,
            span.end,
            "dpf follows 'geneve' only directly on Ethernet (or VLAN)",
        ));
    }
    let header = |path: &Path, udp: u16| -> Cond {
        let at = |offset, width, mask, value| {
            Cond::Lit(Lit::packet(
                path.clone(),
                offset,
                width,
                mask,
                CmpOp::Eq,
                value,
            ))
        };
        let port = at(udp + 2, Width::B2, 0xffff, u32::from(p::GENEVE_PORT));
        let version = at(udp + 8, Width::B1, 0xc0, 0);
        let vni = match vni {
            Some(vni) => at(udp + 12, Width::B4, 0xffff_ff00, vni << 8),
            None => Cond::True,
        };
        let inner = Cond::Defined(Lit::captured_at_least(path.clone(), u32::from(udp) + 8 + 4));
        port.and(version).and(vni).and(inner)
    };
    let udp = u32::from(p::IPPROTO_UDP);
    let v4_path: Path = alloc::vec![ipv4_header_length(link)];
    let v4 = linktype(link, p::ETHERTYPE_IP, span)?
        .and(eq(link.payload + 9, Width::B1, udp))
        .and(first_fragment(link))
        .and(header(&v4_path, link.payload));
    let v6 = linktype(link, p::ETHERTYPE_IPV6, span)?
        .and(eq(link.payload + 6, Width::B1, udp))
        .and(header(&Path::new(), link.payload + 40));
    Ok(v4.or(v6))
}
