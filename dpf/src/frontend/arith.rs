//! Arithmetic a single masked field cannot say (two packet fields, `+`, `-`, `|`, `^`, `%` and
//! `*` by any number), lowered to an expression step's program the way libpcap builds BPF for it.
//!
//! libpcap evaluates a relation `a op b` as its protocol checks (those of `a`, then those of
//! `b`; gen_relation), then one block that computes both sides and compares. Within `a` and
//! `b`, gen_arth keeps only the left operand's checks: in `ip[2:2] - (tcp[12] >> 2)` the `tcp`
//! checks are dropped and `tcp[12]` is read at the IPv4 header's end whatever the protocol. A
//! load inside the block that fails rejects the packet, like any load; so does a division by
//! zero. The program here computes the same values in the same order: left operands are kept
//! in scratch words while the right one is computed, as libpcap keeps them in its registers.

use alloc::format;
use alloc::vec::Vec;

use super::CompileError;
use super::ast::{Arith, ArithOp, Link, LoadBase};
use super::cond::{Cond, Lit};
use super::lexer::Span;
use super::lower::{eq, first_fragment, linktype};
use super::protocols as p;
use crate::ir::{CmpOp, MAX_OFFSET, Width};
use crate::program::{AluOp, Insn, MAX_PROGRAM_INSNS, Program, SCRATCH_SLOTS};

/// `left op right` as protocol checks and one expression step.
pub fn relation(left: &Arith, op: CmpOp, right: &Arith, span: Span) -> Result<Cond, CompileError> {
    let mut code = Code {
        insns: Vec::new(),
        span,
    };
    let (checks, mask, op, value) = match (left, right) {
        (_, Arith::Num(k)) => (code.value(left, 0)?, u32::MAX, op, *k),
        (Arith::Num(k), _) => (code.value(right, 0)?, u32::MAX, mirror(op), *k),
        _ => {
            let left_checks = code.value(left, 0)?;
            code.push(Insn::Store(0))?;
            let right_checks = code.value(right, 1)?;
            code.push(Insn::SetX)?;
            code.push(Insn::Recall(0))?;
            code.push(Insn::CompareX(op))?;
            (left_checks.and(right_checks), u32::MAX, CmpOp::Eq, 1)
        }
    };
    let program = Program {
        insns: code.insns,
        back_edges: 0,
    };
    Ok(checks.and(Cond::Lit(Lit::program(program, mask, op, value))))
}

/// `c op x` is `x mirror(op) c`.
fn mirror(op: CmpOp) -> CmpOp {
    match op {
        CmpOp::Lt => CmpOp::Gt,
        CmpOp::Le => CmpOp::Ge,
        CmpOp::Gt => CmpOp::Lt,
        CmpOp::Ge => CmpOp::Le,
        other => other,
    }
}

fn alu(op: ArithOp) -> AluOp {
    match op {
        ArithOp::Add => AluOp::Add,
        ArithOp::Sub => AluOp::Sub,
        ArithOp::Mul => AluOp::Mul,
        ArithOp::Div => AluOp::Div,
        ArithOp::Mod => AluOp::Mod,
        ArithOp::And => AluOp::And,
        ArithOp::Or => AluOp::Or,
        ArithOp::Xor => AluOp::Xor,
        ArithOp::Shl => AluOp::Shl,
        ArithOp::Shr => AluOp::Shr,
    }
}

struct Code {
    insns: Vec<Insn>,
    span: Span,
}

impl Code {
    fn push(&mut self, insn: Insn) -> Result<(), CompileError> {
        if self.insns.len() >= MAX_PROGRAM_INSNS {
            return Err(CompileError::new(
                self.span.start,
                self.span.end,
                format!(
                    "expression too complex: its arithmetic needs more than {MAX_PROGRAM_INSNS} instructions"
                ),
            ));
        }
        self.insns.push(insn);
        Ok(())
    }

    /// Code leaving `arith` in A (X and scratch words from `depth` on may change); returns the
    /// protocol checks libpcap keeps for it.
    fn value(&mut self, arith: &Arith, depth: u8) -> Result<Cond, CompileError> {
        if depth >= SCRATCH_SLOTS {
            return Err(CompileError::new(
                self.span.start,
                self.span.end,
                "expression too complex: its arithmetic nests too deeply",
            ));
        }
        match arith {
            Arith::Num(k) => {
                self.push(Insn::Const(*k))?;
                Ok(Cond::True)
            }
            Arith::Len => {
                self.push(Insn::WireLen)?;
                Ok(Cond::True)
            }
            Arith::Neg(inner, _) => {
                let checks = self.value(inner, depth)?;
                self.push(Insn::Neg)?;
                Ok(checks)
            }
            Arith::Binary(op, a, b, span) => {
                let checks = self.value(a, depth)?;
                let op = alu(*op);
                if let Arith::Num(k) = **b {
                    let error = |m: &str| Err(CompileError::new(span.start, span.end, m));
                    match op {
                        AluOp::Div if k == 0 => return error("division by zero"),
                        AluOp::Mod if k == 0 => return error("modulus by zero"),
                        AluOp::Shl | AluOp::Shr if k > 31 => {
                            return error("shift by more than 31 bits");
                        }
                        _ => {}
                    }
                    self.push(Insn::AluConst(op, k))?;
                    return Ok(checks);
                }
                // gen_arth: only the left operand's checks survive.
                self.push(Insn::Store(depth))?;
                self.value(b, depth + 1)?;
                self.push(Insn::SetX)?;
                self.push(Insn::Recall(depth))?;
                self.push(Insn::AluX(op))?;
                Ok(checks)
            }
            Arith::Load {
                base,
                link,
                index,
                size,
                span,
            } => self.load(*base, *link, index, *size, *span, depth),
        }
    }

    /// gen_load: `base[index:size]`, with the checks libpcap puts before it.
    fn load(
        &mut self,
        base: LoadBase,
        link: Link,
        index: &Arith,
        size: Width,
        span: Span,
        depth: u8,
    ) -> Result<Cond, CompileError> {
        let start = match base {
            LoadBase::Link => 0,
            LoadBase::Icmp6 => link.payload + 40,
            _ => link.payload,
        };
        let constant = match *index {
            Arith::Num(k) => Some(k),
            _ => None,
        };
        let index_checks = match constant {
            Some(_) => Cond::True,
            None => self.value(index, depth)?,
        };
        let transport = matches!(base, LoadBase::Transport(_));
        match constant {
            Some(k) => {
                if transport {
                    self.header_length_to_x(link)?;
                }
                let offset = u32::from(start) + k;
                if offset > u32::from(MAX_OFFSET) {
                    return Err(CompileError::new(
                        span.start,
                        span.end,
                        format!(
                            "unsupported: offset {offset} is past dpf's limit of {MAX_OFFSET} bytes"
                        ),
                    ));
                }
                self.push(if transport {
                    Insn::LoadIndexed {
                        offset: offset as u16,
                        width: size,
                    }
                } else {
                    Insn::Load {
                        offset: offset as u16,
                        width: size,
                    }
                })?;
            }
            None => {
                if transport {
                    // X = IPv4 header length; A = index + X.
                    self.push(Insn::Store(depth))?;
                    self.header_length_to_x(link)?;
                    self.push(Insn::Recall(depth))?;
                    self.push(Insn::AluX(AluOp::Add))?;
                }
                self.push(Insn::SetX)?;
                self.push(Insn::LoadIndexed {
                    offset: start,
                    width: size,
                })?;
            }
        }
        let sp = span;
        Ok(match base {
            LoadBase::Link => index_checks,
            LoadBase::Ip => index_checks.and(linktype(link, p::ETHERTYPE_IP, sp)?),
            LoadBase::Ip6 => index_checks.and(linktype(link, p::ETHERTYPE_IPV6, sp)?),
            LoadBase::Arp => index_checks.and(linktype(link, p::ETHERTYPE_ARP, sp)?),
            LoadBase::Rarp => index_checks.and(linktype(link, p::ETHERTYPE_REVARP, sp)?),
            LoadBase::Transport(proto) => {
                linktype(link, p::ETHERTYPE_IP, sp)?.and(index_checks).and(
                    linktype(link, p::ETHERTYPE_IP, sp)?
                        .and(eq(link.payload + 9, Width::B1, u32::from(proto)))
                        .and(first_fragment(link)),
                )
            }
            LoadBase::Icmp6 => index_checks
                .and(linktype(link, p::ETHERTYPE_IPV6, sp)?)
                .and(eq(
                    link.payload + 6,
                    Width::B1,
                    u32::from(p::IPPROTO_ICMPV6),
                )),
        })
    }

    /// `X = 4 * (ip[0] & 0xf)` (BPF's `ldxb 4*([14]&0xf)`); A changes.
    fn header_length_to_x(&mut self, link: Link) -> Result<(), CompileError> {
        self.push(Insn::Load {
            offset: link.payload,
            width: Width::B1,
        })?;
        self.push(Insn::AluConst(AluOp::And, 0x0f))?;
        self.push(Insn::AluConst(AluOp::Shl, 2))?;
        self.push(Insn::SetX)
    }
}
