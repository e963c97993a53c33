//! A compact wire encoding of one filter, for passing it across the system-call boundary.
//!
//! Untrusted bytes become an [`UnverifiedFilter`] only through [`decode`], which checks every
//! byte; verification ([`UnverifiedFilter::verify`]) is still the caller's next step.
//!
//! Layout (little-endian): `u32` id, `u16` step count, then per step a tag byte and fields:
//! - `0` test: field tag (`0` packet, `1` wire length, `2` captured-from-base), for packet a
//!   `u16` offset and a width byte (1, 2 or 4); then `u32` mask, op byte (0..=5: eq ne lt le
//!   gt ge), `u32` value.
//! - `1` shift: `u16` offset, width byte, `u32` mask, `i8` shift.
//! - `2` expression: `u32` mask, op byte, `u32` value, back-edge budget byte, instruction
//!   count byte, then per instruction a tag byte (the order of [`Insn`]'s variants, 0..=14)
//!   and its operands: offsets `u16` then a width byte, constants `u32`, slots and jump
//!   distances a byte, ALU operators a byte (the order of [`AluOp`]'s variants), comparisons
//!   an op byte.
//!
//! Nothing may follow the last step.
use alloc::vec::Vec;

use alloc::boxed::Box;

use crate::ir::{Atom, CmpOp, Eval, Field, Filter, FilterId, Shift, Step, UnverifiedFilter, Width};
use crate::program::{AluOp, Insn, MAX_PROGRAM_INSNS, Program};

const ALU_OPS: [AluOp; 10] = [
    AluOp::Add,
    AluOp::Sub,
    AluOp::Mul,
    AluOp::Div,
    AluOp::Mod,
    AluOp::And,
    AluOp::Or,
    AluOp::Xor,
    AluOp::Shl,
    AluOp::Shr,
];
const CMP_OPS: [CmpOp; 6] = [
    CmpOp::Eq,
    CmpOp::Ne,
    CmpOp::Lt,
    CmpOp::Le,
    CmpOp::Gt,
    CmpOp::Ge,
];

/// Most steps a decoded filter may have (bounds the kernel's work per bind).
pub const MAX_STEPS: usize = 256;

/// Why bytes are not an encoded filter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WireError {
    /// The bytes ended inside a field.
    Truncated,
    /// A tag, width or operator byte no encoding uses, at this offset.
    BadByte(usize),
    /// More than [`MAX_STEPS`] steps.
    TooManySteps,
    /// Bytes left over after the last step.
    TrailingBytes,
}

fn width_byte(width: Width) -> u8 {
    width.bytes() as u8
}

fn op_byte(op: CmpOp) -> u8 {
    CMP_OPS
        .iter()
        .position(|&o| o == op)
        .expect("every op listed") as u8
}

fn alu_byte(op: AluOp) -> u8 {
    ALU_OPS
        .iter()
        .position(|&o| o == op)
        .expect("every op listed") as u8
}

fn encode_insn(out: &mut Vec<u8>, insn: &Insn) {
    match *insn {
        Insn::Load { offset, width } | Insn::LoadIndexed { offset, width } => {
            out.push(if matches!(insn, Insn::Load { .. }) {
                0
            } else {
                1
            });
            out.extend_from_slice(&offset.to_le_bytes());
            out.push(width_byte(width));
        }
        Insn::Const(k) => {
            out.push(2);
            out.extend_from_slice(&k.to_le_bytes());
        }
        Insn::WireLen => out.push(3),
        Insn::SetX => out.push(4),
        Insn::GetX => out.push(5),
        Insn::Store(slot) => out.extend_from_slice(&[6, slot]),
        Insn::Recall(slot) => out.extend_from_slice(&[7, slot]),
        Insn::AluConst(op, k) => {
            out.extend_from_slice(&[8, alu_byte(op)]);
            out.extend_from_slice(&k.to_le_bytes());
        }
        Insn::AluX(op) => out.extend_from_slice(&[9, alu_byte(op)]),
        Insn::Neg => out.push(10),
        Insn::CompareX(op) => out.extend_from_slice(&[11, op_byte(op)]),
        Insn::Jump {
            op,
            value,
            if_true,
            if_false,
        } => {
            out.extend_from_slice(&[12, op_byte(op)]);
            out.extend_from_slice(&value.to_le_bytes());
            out.extend_from_slice(&[if_true, if_false]);
        }
        Insn::Ahead(n) => out.extend_from_slice(&[13, n]),
        Insn::Back(n) => out.extend_from_slice(&[14, n]),
    }
}

/// Encodes a (verified) filter.
pub fn encode(filter: &Filter) -> Vec<u8> {
    encode_unverified(&filter.clone().into_unverified())
}

/// Encodes any filter, verified or not (tests use this to send malformed filters).
pub fn encode_unverified(filter: &UnverifiedFilter) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&filter.id.0.to_le_bytes());
    out.extend_from_slice(&(filter.steps.len() as u16).to_le_bytes());
    for step in &filter.steps {
        match step {
            Step::Test(atom) => {
                out.push(0);
                match atom.field {
                    Field::Packet { offset, width } => {
                        out.push(0);
                        out.extend_from_slice(&offset.to_le_bytes());
                        out.push(width_byte(width));
                    }
                    Field::WireLen => out.push(1),
                    Field::CapturedFromBase => out.push(2),
                }
                out.extend_from_slice(&atom.mask.to_le_bytes());
                out.push(op_byte(atom.op));
                out.extend_from_slice(&atom.value.to_le_bytes());
            }
            Step::Shift(shift) => {
                out.push(1);
                out.extend_from_slice(&shift.offset.to_le_bytes());
                out.push(width_byte(shift.width));
                out.extend_from_slice(&shift.mask.to_le_bytes());
                out.push(shift.shift as u8);
            }
            Step::Eval(eval) => {
                out.push(2);
                out.extend_from_slice(&eval.mask.to_le_bytes());
                out.push(op_byte(eval.op));
                out.extend_from_slice(&eval.value.to_le_bytes());
                out.push(eval.program.back_edges);
                out.push(eval.program.insns.len().min(u8::MAX as usize) as u8);
                for insn in &eval.program.insns {
                    encode_insn(&mut out, insn);
                }
            }
        }
    }
    out
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> Result<[u8; N], WireError> {
        let end = self.at.checked_add(N).ok_or(WireError::Truncated)?;
        let chunk = self.bytes.get(self.at..end).ok_or(WireError::Truncated)?;
        self.at = end;
        Ok(chunk.try_into().expect("N bytes"))
    }
    fn u8(&mut self) -> Result<u8, WireError> {
        Ok(self.take::<1>()?[0])
    }
    fn u16(&mut self) -> Result<u16, WireError> {
        Ok(u16::from_le_bytes(self.take()?))
    }
    fn u32(&mut self) -> Result<u32, WireError> {
        Ok(u32::from_le_bytes(self.take()?))
    }
    fn op(&mut self) -> Result<CmpOp, WireError> {
        let at = self.at;
        CMP_OPS
            .get(usize::from(self.u8()?))
            .copied()
            .ok_or(WireError::BadByte(at))
    }
    fn alu(&mut self) -> Result<AluOp, WireError> {
        let at = self.at;
        ALU_OPS
            .get(usize::from(self.u8()?))
            .copied()
            .ok_or(WireError::BadByte(at))
    }
    fn insn(&mut self) -> Result<Insn, WireError> {
        let at = self.at;
        Ok(match self.u8()? {
            0 => Insn::Load {
                offset: self.u16()?,
                width: self.width()?,
            },
            1 => Insn::LoadIndexed {
                offset: self.u16()?,
                width: self.width()?,
            },
            2 => Insn::Const(self.u32()?),
            3 => Insn::WireLen,
            4 => Insn::SetX,
            5 => Insn::GetX,
            6 => Insn::Store(self.u8()?),
            7 => Insn::Recall(self.u8()?),
            8 => Insn::AluConst(self.alu()?, self.u32()?),
            9 => Insn::AluX(self.alu()?),
            10 => Insn::Neg,
            11 => Insn::CompareX(self.op()?),
            12 => Insn::Jump {
                op: self.op()?,
                value: self.u32()?,
                if_true: self.u8()?,
                if_false: self.u8()?,
            },
            13 => Insn::Ahead(self.u8()?),
            14 => Insn::Back(self.u8()?),
            _ => return Err(WireError::BadByte(at)),
        })
    }
    fn width(&mut self) -> Result<Width, WireError> {
        let at = self.at;
        match self.u8()? {
            1 => Ok(Width::B1),
            2 => Ok(Width::B2),
            4 => Ok(Width::B4),
            _ => Err(WireError::BadByte(at)),
        }
    }
}

/// Decodes untrusted bytes; checks every tag and length, trusts nothing else (verify next).
pub fn decode(bytes: &[u8]) -> Result<UnverifiedFilter, WireError> {
    let mut reader = Reader { bytes, at: 0 };
    let id = FilterId(reader.u32()?);
    let count = usize::from(reader.u16()?);
    if count > MAX_STEPS {
        return Err(WireError::TooManySteps);
    }
    let mut steps = Vec::with_capacity(count);
    for _ in 0..count {
        let at = reader.at;
        match reader.u8()? {
            0 => {
                let field_at = reader.at;
                let field = match reader.u8()? {
                    0 => {
                        let offset = reader.u16()?;
                        let width = reader.width()?;
                        Field::Packet { offset, width }
                    }
                    1 => Field::WireLen,
                    2 => Field::CapturedFromBase,
                    _ => return Err(WireError::BadByte(field_at)),
                };
                let mask = reader.u32()?;
                let op = reader.op()?;
                let value = reader.u32()?;
                steps.push(Step::Test(Atom {
                    field,
                    mask,
                    op,
                    value,
                }));
            }
            1 => {
                let offset = reader.u16()?;
                let width = reader.width()?;
                let mask = reader.u32()?;
                let shift = reader.u8()? as i8;
                steps.push(Step::Shift(Shift {
                    offset,
                    width,
                    mask,
                    shift,
                }));
            }
            2 => {
                let mask = reader.u32()?;
                let op = reader.op()?;
                let value = reader.u32()?;
                let back_edges = reader.u8()?;
                let count_at = reader.at;
                let count = usize::from(reader.u8()?);
                if count > MAX_PROGRAM_INSNS {
                    return Err(WireError::BadByte(count_at));
                }
                let insns = (0..count)
                    .map(|_| reader.insn())
                    .collect::<Result<Vec<_>, _>>()?;
                steps.push(Step::Eval(Box::new(Eval {
                    program: Program { insns, back_edges },
                    mask,
                    op,
                    value,
                })));
            }
            _ => return Err(WireError::BadByte(at)),
        }
    }
    if reader.at != bytes.len() {
        return Err(WireError::TrailingBytes);
    }
    Ok(UnverifiedFilter { id, steps })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frontend;

    #[test]
    fn front_end_filters_round_trip() {
        for expr in [
            "tcp dst port 80",
            "ip and udp and src net 10.0.0.0/8",
            "vlan and ip6",
            "ip[9] = 6 and greater 100",
            "tcp port 22 or udp port 53",
            "ip[2:2] - ((ip[0]&0xf)<<2) - ((tcp[12]&0xf0)>>2) != 0",
            "ip6 protochain 6",
            "tcp[13] % 3 = 2 and len / 2 > ip[8] ^ ip[9]",
        ] {
            for filter in frontend::compile(expr, FilterId(7)).unwrap() {
                let bytes = encode(&filter);
                let decoded = decode(&bytes).unwrap();
                assert_eq!(decoded.clone().verify().unwrap(), filter, "{expr}");
            }
        }
    }

    #[test]
    fn every_truncation_and_extension_is_refused() {
        let filter = frontend::compile("tcp dst port 80", FilterId(1)).unwrap();
        let bytes = encode(&filter[0]);
        for length in 0..bytes.len() {
            assert!(decode(&bytes[..length]).is_err(), "prefix of {length}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert_eq!(decode(&longer), Err(WireError::TrailingBytes));
    }

    #[test]
    fn bad_tags_are_refused() {
        let mut bytes = Vec::new();
        bytes.extend_from_slice(&1u32.to_le_bytes());
        bytes.extend_from_slice(&1u16.to_le_bytes());
        bytes.push(9);
        assert_eq!(decode(&bytes), Err(WireError::BadByte(6)));
        let mut many = Vec::new();
        many.extend_from_slice(&1u32.to_le_bytes());
        many.extend_from_slice(&u16::MAX.to_le_bytes());
        assert_eq!(decode(&many), Err(WireError::TooManySteps));
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        let mut state = 0x1234_5678u32;
        for _ in 0..20_000 {
            let mut bytes = Vec::new();
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            let length = (state % 64) as usize;
            for _ in 0..length {
                state ^= state << 13;
                state ^= state >> 17;
                state ^= state << 5;
                bytes.push(state as u8);
            }
            if let Ok(filter) = decode(&bytes) {
                let _ = filter.verify();
            }
        }
    }
}
