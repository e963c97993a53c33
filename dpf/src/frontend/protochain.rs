//! `protochain`: the walk along IPv6 extension headers and AH that gen_protochain compiles to a
//! BPF loop, as an expression step with a bounded loop.
//!
//! libpcap's loop (`tcpdump -d 'ip6 protochain 6'`): A is the next-header value, X the offset
//! of the header it names from the network header. While A is not the protocol sought and not
//! 59 (no next header): hop-by-hop (0), destination options (60), routing (43) and fragment (44)
//! headers take A from the header's first byte and add `8 * (byte 1 + 1)` to X; AH (51) takes
//! A likewise but sets X to `4 * (byte 1 + 2)`, not adding the old X (libpcap 1.10 does so,
//! and the verdicts follow it); anything else ends the walk. Then A is compared with the
//! protocol. IPv4 starts after the header length with AH as the only header walked.
//!
//! libpcap's loop has no bound: it ends when a load runs past the packet (or never, for an AH
//! that points back at itself). Here a walk gets [`WALK_BACK_EDGES`] headers and then fails,
//! as a load past the packet would: a packet with more headers than that matches where tcpdump
//! might still find the protocol.

use alloc::vec;

use super::CompileError;
use super::ast::{Link, ProtoLayer};
use super::cond::{Cond, Lit};
use super::lexer::Span;
use super::lower::linktype;
use super::protocols as p;
use crate::ir::{CmpOp, Width};
use crate::program::{AluOp, Insn, MAX_BACK_EDGES, Program};

/// Headers one walk may step over.
pub const WALK_BACK_EDGES: u8 = MAX_BACK_EDGES;

/// gen_protochain for one layer, or IPv4 then IPv6.
pub fn protochain(
    link: Link,
    layer: ProtoLayer,
    value: u32,
    span: Span,
) -> Result<Cond, CompileError> {
    let v4 = || -> Result<Cond, CompileError> {
        Ok(linktype(link, p::ETHERTYPE_IP, span)?.and(walk(ipv4(link, value), value)))
    };
    let v6 = || -> Result<Cond, CompileError> {
        Ok(linktype(link, p::ETHERTYPE_IPV6, span)?.and(walk(ipv6(link, value), value)))
    };
    Ok(match layer {
        ProtoLayer::Ip => v4()?,
        ProtoLayer::Ip6 => v6()?,
        ProtoLayer::Both => v4()?.or(v6()?),
    })
}

fn walk(program: Program, value: u32) -> Cond {
    Cond::Lit(Lit::program(program, u32::MAX, CmpOp::Eq, value))
}

fn is(value: u32, if_true: u8, if_false: u8) -> Insn {
    Insn::Jump {
        op: CmpOp::Eq,
        value,
        if_true,
        if_false,
    }
}

fn byte_at_x(offset: u16) -> Insn {
    Insn::LoadIndexed {
        offset,
        width: Width::B1,
    }
}

/// AH: A = its next header, X = 4 * (its length byte + 2); then back to the loop's head,
/// `back` instructions before the last one.
fn ah(payload: u16, back: u8) -> [Insn; 11] {
    [
        byte_at_x(payload),
        Insn::Store(0),
        Insn::GetX,
        Insn::AluConst(AluOp::Add, 1),
        Insn::SetX,
        byte_at_x(payload),
        Insn::AluConst(AluOp::Add, 2),
        Insn::AluConst(AluOp::Mul, 4),
        Insn::SetX,
        Insn::Recall(0),
        Insn::Back(back),
    ]
}

fn ipv4(link: Link, value: u32) -> Program {
    let payload = link.payload;
    let mut insns = vec![
        Insn::Load {
            offset: payload,
            width: Width::B1,
        },
        Insn::AluConst(AluOp::And, 0x0f),
        Insn::AluConst(AluOp::Shl, 2),
        Insn::SetX,
        Insn::Load {
            offset: payload + 9,
            width: Width::B1,
        },
        // 5: the loop's head; the end is 5 + 3 + 11 = 19.
        is(value, 13, 0),
        is(59, 12, 0),
        is(u32::from(p::IPPROTO_AH), 0, 11),
    ];
    // The back edge is at 18 and returns to 5.
    insns.extend(ah(payload, 13));
    Program {
        insns,
        back_edges: WALK_BACK_EDGES,
    }
}

fn ipv6(link: Link, value: u32) -> Program {
    let payload = link.payload;
    let mut insns = vec![
        Insn::Const(40),
        Insn::SetX,
        Insn::Load {
            offset: payload + 6,
            width: Width::B1,
        },
        // 3: the loop's head. Extension headers at 9, AH's test at 18, the end at 30.
        is(value, 26, 0),
        is(59, 25, 0),
        is(0, 3, 0),
        is(60, 2, 0),
        is(43, 1, 0),
        is(44, 0, 9),
        // 9: hop-by-hop, destination options, routing, fragment.
        byte_at_x(payload),
        Insn::Store(0),
        byte_at_x(payload + 1),
        Insn::AluConst(AluOp::Add, 1),
        Insn::AluConst(AluOp::Mul, 8),
        Insn::AluX(AluOp::Add),
        Insn::SetX,
        Insn::Recall(0),
        // 17: back to 3.
        Insn::Back(14),
        // 18: AH, or the end.
        is(u32::from(p::IPPROTO_AH), 0, 11),
    ];
    // The back edge is at 29 and returns to 3.
    insns.extend(ah(payload, 26));
    Program {
        insns,
        back_edges: WALK_BACK_EDGES,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::Packet;
    use alloc::vec::Vec;

    fn frame(ethertype: u16, network: &[u8]) -> Vec<u8> {
        let mut f = vec![0u8; 12];
        f.extend_from_slice(&ethertype.to_be_bytes());
        f.extend_from_slice(network);
        f
    }

    #[test]
    fn the_walk_steps_over_extension_headers_and_ah() {
        for program in [ipv4(Link::ETHERNET, 6), ipv6(Link::ETHERNET, 6)] {
            program.verify().unwrap();
        }
        // IPv6, hop-by-hop (8 bytes), routing (16 bytes), then TCP.
        let mut ip6 = vec![0u8; 40];
        ip6[6] = 0;
        ip6.extend_from_slice(&[43, 0, 0, 0, 0, 0, 0, 0]);
        ip6.extend_from_slice(&[6, 1]);
        ip6.extend_from_slice(&[0; 14]);
        let packet = frame(0x86dd, &ip6);
        let run = |program: &Program, data: &[u8]| program.run(&Packet::whole(data), 0);
        assert_eq!(run(&ipv6(Link::ETHERNET, 6), &packet), Some(6));
        // Looking for UDP, the walk ends at TCP.
        assert_eq!(run(&ipv6(Link::ETHERNET, 17), &packet), Some(6));
        // Cut inside the routing header: its length byte is missing.
        assert_eq!(run(&ipv6(Link::ETHERNET, 17), &packet[..14 + 48]), None);
        // IPv4 with AH whose next header is UDP: X becomes 4 * (len + 2) from the start of
        // the IPv4 header, as in libpcap; with len 3 that is 20, AH again: a cycle, cut by the
        // budget.
        let mut ip4 = vec![0u8; 20];
        ip4[0] = 0x45;
        ip4[9] = 51;
        ip4.extend_from_slice(&[51, 3, 0, 0]);
        let packet = frame(0x0800, &ip4);
        assert_eq!(run(&ipv4(Link::ETHERNET, 6), &packet), None);
        ip4[20] = 17;
        let packet = frame(0x0800, &ip4);
        assert_eq!(run(&ipv4(Link::ETHERNET, 6), &packet), Some(17));
    }
}
