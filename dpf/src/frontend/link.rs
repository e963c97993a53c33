//! Link-layer encapsulations the way libpcap 1.10 tests them on Ethernet: 802.2 LLC and the
//! protocols behind it (STP, ISO, IPX, AppleTalk's SNAP), DECnet addresses, MPLS label stacks
//! and PPPoE, and what a protocol check means once `mpls` or `pppoes` moved the payload (GENEVE
//! is `geneve`'s).
//!
//! `tcpdump -d EXPR` shows each; the comments name libpcap's generators.

use super::CompileError;
use super::ast::{Encap, Link, LlcKind};
use super::cond::Cond;
use super::lexer::Span;
use super::lower::{cmp, eq, linktype};
use super::protocols as p;
use crate::ir::{CmpOp, Width};

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
        Encap::Mpls { .. } => Some(match value {
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
    // gen_llc reads the link layer's own fields, which `mpls` does not move.
    let link = match link.encap {
        Encap::Mpls {
            ethernet_linktype,
            ethernet_payload,
        } => Link {
            linktype: ethernet_linktype,
            payload: ethernet_payload,
            encap: Encap::Ethernet,
        },
        _ => link,
    };
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

/// gen_mpls: the MPLS type (or, below another label, that label not being the bottom of the
/// stack), then the label.
pub fn mpls(link: Link, label: Option<u32>, span: Span) -> Result<Cond, CompileError> {
    let outer = match link.encap {
        Encap::Mpls { .. } => cmp(link.linktype + 2, Width::B1, 0x01, CmpOp::Eq, 0),
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
