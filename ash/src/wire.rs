//! The wire encoding of a handler, for passing it across the system-call boundary.
//!
//! Untrusted bytes become an [`UnverifiedHandler`] only through [`decode`], which checks the
//! layout and accepts only the one canonical encoding of each instruction (every unused byte
//! zero); what the program means is the verifier's business.
//!
//! Layout (little-endian): `b"ASH\x01"`, a region count byte, a zero byte, a `u16` instruction
//! count; per region a `u32` length, a rights byte and three zero bytes; per instruction 16
//! bytes `[opcode, a, b, c, d, e, x: u16, imm: u64]`:
//!
//! | opcode | instruction | fields |
//! |---|---|---|
//! | 1 | mov | a dst, b operand kind (0 register, 1 constant), c source register, imm constant |
//! | 2 | alu | as mov, d operation |
//! | 3 | load | a dst, b access byte, c space, d region, e base register, x offset |
//! | 4 | store | a source register, b access byte, c space, d region, e base, x offset, imm constant |
//! | 5 | jump | x target |
//! | 6 | branch | a left register, b operand kind, c right register, d condition, x target, imm constant |
//! | 7 | if-length-less | x target, imm length |
//! | 8 | loop | a count kind (0 constant, 1 register), b register, c has bound, x body, imm count or bound |
//! | 9 | call | a function, b argument |
//! | 10 | exit | a verdict |
//!
//! Access byte: bits 0-3 width (1, 2, 4, 8), bit 4 little-endian, bit 5 checked at run time,
//! bit 6 constant source (stores), bit 7 has a base register. Space: 0 packet, 1 scratch,
//! 2 reply, 3 region `d`.
use alloc::vec::Vec;

use crate::ir::{
    AluOp, ByteOrder, Check, Cond, Insn, LoopCount, MAX_INSTRUCTIONS, MAX_REGIONS, Mem, Operand,
    RawCall, Reg, RegionDecl, Rights, Space, UnverifiedHandler, Verdict, Width,
};

/// The first four bytes of every encoded handler.
pub const MAGIC: [u8; 4] = *b"ASH\x01";
/// Bytes per encoded instruction.
pub const INSTRUCTION_BYTES: usize = 16;
const HEADER_BYTES: usize = 8;
const REGION_BYTES: usize = 8;

/// Why bytes are not an encoded handler.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WireError {
    /// The bytes ended inside the header, a region or an instruction.
    Truncated,
    /// The first bytes are not [`MAGIC`], or the header's zero byte is not zero.
    BadHeader,
    /// More than [`MAX_REGIONS`] regions.
    TooManyRegions,
    /// More than [`MAX_INSTRUCTIONS`] instructions.
    TooManyInstructions,
    /// Region `n` has a rights byte no encoding uses or a non-zero padding byte.
    BadRegion(usize),
    /// Instruction `n` has an opcode no encoding uses.
    BadOpcode(usize),
    /// Instruction `n` is not the canonical encoding of any instruction (a field out of range
    /// or an unused byte not zero).
    NonCanonical(usize),
    /// Bytes left over after the last instruction.
    TrailingBytes,
}

const ACCESS_LITTLE: u8 = 1 << 4;
const ACCESS_RUNTIME: u8 = 1 << 5;
const ACCESS_CONSTANT: u8 = 1 << 6;
const ACCESS_BASE: u8 = 1 << 7;

fn operand_fields(operand: Operand) -> (u8, u8, u64) {
    match operand {
        Operand::Reg(reg) => (0, reg.0, 0),
        Operand::Imm(value) => (1, 0, value),
    }
}

fn access_fields(width: Width, order: ByteOrder, mem: Mem) -> (u8, u8, u8, u8) {
    let mut access = width.bytes() as u8;
    if order == ByteOrder::Little {
        access |= ACCESS_LITTLE;
    }
    if mem.check == Check::Runtime {
        access |= ACCESS_RUNTIME;
    }
    let base = match mem.base {
        Some(reg) => {
            access |= ACCESS_BASE;
            reg.0
        }
        None => 0,
    };
    let (space, region) = match mem.space {
        Space::Packet => (0, 0),
        Space::Scratch => (1, 0),
        Space::Reply => (2, 0),
        Space::Region(region) => (3, region),
    };
    (access, space, region, base)
}

/// Encodes one instruction.
pub fn encode_insn(insn: &Insn) -> [u8; INSTRUCTION_BYTES] {
    // [opcode, a, b, c, d, e], x, imm
    let (head, x, imm): ([u8; 6], u16, u64) = match *insn {
        Insn::Mov { dst, src } => {
            let (kind, reg, imm) = operand_fields(src);
            ([1, dst.0, kind, reg, 0, 0], 0, imm)
        }
        Insn::Alu { op, dst, src } => {
            let (kind, reg, imm) = operand_fields(src);
            ([2, dst.0, kind, reg, op as u8, 0], 0, imm)
        }
        Insn::Load {
            dst,
            width,
            order,
            mem,
        } => {
            let (access, space, region, base) = access_fields(width, order, mem);
            ([3, dst.0, access, space, region, base], mem.offset, 0)
        }
        Insn::Store {
            src,
            width,
            order,
            mem,
        } => {
            let (mut access, space, region, base) = access_fields(width, order, mem);
            let (reg, imm) = match src {
                Operand::Reg(reg) => (reg.0, 0),
                Operand::Imm(value) => {
                    access |= ACCESS_CONSTANT;
                    (0, value)
                }
            };
            ([4, reg, access, space, region, base], mem.offset, imm)
        }
        Insn::Jump { target } => ([5, 0, 0, 0, 0, 0], target, 0),
        Insn::Branch { cond, a, b, target } => {
            let (kind, reg, imm) = operand_fields(b);
            ([6, a.0, kind, reg, cond as u8, 0], target, imm)
        }
        Insn::IfLenLess { length, target } => ([7, 0, 0, 0, 0, 0], target, u64::from(length)),
        Insn::Loop { count, body } => match count {
            LoopCount::Times(times) => ([8, 0, 0, 0, 0, 0], body, u64::from(times)),
            LoopCount::Reg { reg, bound } => (
                [8, 1, reg.0, u8::from(bound.is_some()), 0, 0],
                body,
                u64::from(bound.unwrap_or(0)),
            ),
        },
        Insn::Call(call) => ([9, call.function, call.argument, 0, 0, 0], 0, 0),
        Insn::Exit(verdict) => ([10, verdict as u8, 0, 0, 0, 0], 0, 0),
    };
    let mut out = [0u8; INSTRUCTION_BYTES];
    out[..6].copy_from_slice(&head);
    out[6..8].copy_from_slice(&x.to_le_bytes());
    out[8..].copy_from_slice(&imm.to_le_bytes());
    out
}

/// Encodes a handler, verified or not (tests send malformed ones).
pub fn encode(handler: &UnverifiedHandler) -> Vec<u8> {
    let mut out = Vec::with_capacity(
        HEADER_BYTES
            + REGION_BYTES * handler.regions.len()
            + INSTRUCTION_BYTES * handler.code.len(),
    );
    out.extend_from_slice(&MAGIC);
    out.push(handler.regions.len() as u8);
    out.push(0);
    out.extend_from_slice(&(handler.code.len() as u16).to_le_bytes());
    for region in &handler.regions {
        out.extend_from_slice(&region.len.to_le_bytes());
        out.extend_from_slice(&[region.rights.0, 0, 0, 0]);
    }
    for insn in &handler.code {
        out.extend_from_slice(&encode_insn(insn));
    }
    out
}

fn operand(kind: u8, reg: u8, imm: u64) -> Option<Operand> {
    match kind {
        0 => Some(Operand::Reg(Reg(reg))),
        1 => Some(Operand::Imm(imm)),
        _ => None,
    }
}

fn access(
    access: u8,
    space: u8,
    region: u8,
    base: u8,
    offset: u16,
) -> Option<(Width, ByteOrder, Mem)> {
    let width = Width::from_bytes(access & 0x0f)?;
    let order = if access & ACCESS_LITTLE != 0 {
        ByteOrder::Little
    } else {
        ByteOrder::Big
    };
    let check = if access & ACCESS_RUNTIME != 0 {
        Check::Runtime
    } else {
        Check::Proven
    };
    let base = (access & ACCESS_BASE != 0).then_some(Reg(base));
    let space = match space {
        0 => Space::Packet,
        1 => Space::Scratch,
        2 => Space::Reply,
        3 => Space::Region(region),
        _ => return None,
    };
    Some((
        width,
        order,
        Mem {
            space,
            base,
            offset,
            check,
        },
    ))
}

/// Decodes one instruction (the first pass: fields into their types; canonicality is
/// checked by re-encoding).
fn decode_fields(bytes: &[u8; INSTRUCTION_BYTES]) -> Result<Option<Insn>, ()> {
    let [op, a, b, c, d, e] = [bytes[0], bytes[1], bytes[2], bytes[3], bytes[4], bytes[5]];
    let x = u16::from_le_bytes([bytes[6], bytes[7]]);
    let mut imm_bytes = [0u8; 8];
    imm_bytes.copy_from_slice(&bytes[8..]);
    let imm = u64::from_le_bytes(imm_bytes);
    let imm16 = u16::try_from(imm).ok();
    let insn = match op {
        1 => operand(b, c, imm).map(|src| Insn::Mov { dst: Reg(a), src }),
        2 => match (operand(b, c, imm), AluOp::ALL.get(usize::from(d))) {
            (Some(src), Some(&op)) => Some(Insn::Alu {
                op,
                dst: Reg(a),
                src,
            }),
            _ => None,
        },
        3 => access(b, c, d, e, x).map(|(width, order, mem)| Insn::Load {
            dst: Reg(a),
            width,
            order,
            mem,
        }),
        4 => access(b, c, d, e, x).map(|(width, order, mem)| Insn::Store {
            src: if b & ACCESS_CONSTANT != 0 {
                Operand::Imm(imm)
            } else {
                Operand::Reg(Reg(a))
            },
            width,
            order,
            mem,
        }),
        5 => Some(Insn::Jump { target: x }),
        6 => match (operand(b, c, imm), Cond::ALL.get(usize::from(d))) {
            (Some(operand), Some(&cond)) => Some(Insn::Branch {
                cond,
                a: Reg(a),
                b: operand,
                target: x,
            }),
            _ => None,
        },
        7 => imm16.map(|length| Insn::IfLenLess { length, target: x }),
        8 => match (a, c, imm16) {
            (0, _, Some(times)) => Some(Insn::Loop {
                count: LoopCount::Times(times),
                body: x,
            }),
            (1, 0, Some(_)) => Some(Insn::Loop {
                count: LoopCount::Reg {
                    reg: Reg(b),
                    bound: None,
                },
                body: x,
            }),
            (1, 1, Some(bound)) => Some(Insn::Loop {
                count: LoopCount::Reg {
                    reg: Reg(b),
                    bound: Some(bound),
                },
                body: x,
            }),
            _ => None,
        },
        9 => Some(Insn::Call(RawCall {
            function: a,
            argument: b,
        })),
        10 => match a {
            0 => Some(Insn::Exit(Verdict::Consume)),
            1 => Some(Insn::Exit(Verdict::Deliver)),
            2 => Some(Insn::Exit(Verdict::Drop)),
            _ => None,
        },
        _ => return Err(()),
    };
    Ok(insn)
}

/// Decodes untrusted bytes; accepts only canonical encodings, trusts nothing else (verify
/// next).
pub fn decode(bytes: &[u8]) -> Result<UnverifiedHandler, WireError> {
    let header = bytes.get(..HEADER_BYTES).ok_or(WireError::Truncated)?;
    if header[..4] != MAGIC || header[5] != 0 {
        return Err(WireError::BadHeader);
    }
    let region_count = usize::from(header[4]);
    let insn_count = usize::from(u16::from_le_bytes([header[6], header[7]]));
    if region_count > MAX_REGIONS {
        return Err(WireError::TooManyRegions);
    }
    if insn_count > MAX_INSTRUCTIONS {
        return Err(WireError::TooManyInstructions);
    }
    let regions_end = HEADER_BYTES + REGION_BYTES * region_count;
    let end = regions_end + INSTRUCTION_BYTES * insn_count;
    let body = bytes.get(HEADER_BYTES..end).ok_or(WireError::Truncated)?;
    if bytes.len() > end {
        return Err(WireError::TrailingBytes);
    }
    let (region_bytes, code_bytes) = body.split_at(REGION_BYTES * region_count);
    let mut regions = Vec::with_capacity(region_count);
    for (index, chunk) in region_bytes.chunks_exact(REGION_BYTES).enumerate() {
        let rights = chunk[4];
        if rights == 0 || rights & !Rights::READ_WRITE.0 != 0 || chunk[5..] != [0, 0, 0] {
            return Err(WireError::BadRegion(index));
        }
        regions.push(RegionDecl {
            len: u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]),
            rights: Rights(rights),
        });
    }
    let mut code = Vec::with_capacity(insn_count);
    for (index, chunk) in code_bytes.chunks_exact(INSTRUCTION_BYTES).enumerate() {
        let mut fixed = [0u8; INSTRUCTION_BYTES];
        fixed.copy_from_slice(chunk);
        let insn = decode_fields(&fixed)
            .map_err(|()| WireError::BadOpcode(index))?
            .ok_or(WireError::NonCanonical(index))?;
        if encode_insn(&insn) != fixed {
            return Err(WireError::NonCanonical(index));
        }
        code.push(insn);
    }
    Ok(UnverifiedHandler { regions, code })
}
