//! GENEVE: the header test, and the primitives written after `geneve`, which libpcap reads in
//! the inner frame at offsets it computes from the packet (the options length, and whether the
//! protocol type is an Ethernet frame), here shifts of the base.

use super::CompileError;
use super::ast::{Encap, Link};
use super::cond::{Cond, Lit, Path};
use super::lexer::Span;
use super::lower::{eq, first_fragment, ipv4_header_length, linktype};
use super::protocols as p;
use crate::ir::{CmpOp, Field, Shift, Width};

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
