//! The expression step's program: arithmetic over packet fields and a bounded loop, as a short
//! accumulator machine (BPF's A and X registers and scratch words), verified to terminate.
//!
//! A [`Program`] computes one 32-bit value from the packet, relative to the current base; an
//! [`crate::ir::Eval`] step compares it with a constant. It is what the front end lowers
//! arithmetic between packet fields to (`ip[2:2] - ((ip[0]&0xf)<<2) - ((tcp[12]&0xf0)>>2)`)
//! and `protochain`'s walk along a header chain. Jumps go forward, except [`Insn::Back`], and a
//! run may take back edges at most [`Program::back_edges`] times: one more fails it. So a run
//! executes at most `len * (1 + back_edges)` instructions, which [`Program::verify`] bounds by
//! [`MAX_PROGRAM_COST`]. A load past the captured bytes, a division by a zero X and an
//! exhausted loop budget fail the run, and the step with it, as a failed load fails an atom.

use alloc::vec::Vec;
use core::fmt;

use crate::ir::{CmpOp, MAX_OFFSET, Packet, Width};

/// Most instructions one program may hold.
pub const MAX_PROGRAM_INSNS: usize = 64;
/// Most back edges one run may take.
pub const MAX_BACK_EDGES: u8 = 64;
/// Most instructions a run may execute: `len * (1 + back_edges)`.
pub const MAX_PROGRAM_COST: usize = 4096;
/// Scratch words (`M[0..16]`, as in BPF); each run starts with them zero.
pub const SCRATCH_SLOTS: u8 = 16;

/// 32-bit unsigned arithmetic, wrapping; a shift by 32 bits or more gives 0 (as libpcap's
/// bpf_filter computes it); division and remainder by zero fail the run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AluOp {
    /// `+`
    Add,
    /// `-`
    Sub,
    /// `*`
    Mul,
    /// `/`
    Div,
    /// `%`
    Mod,
    /// `&`
    And,
    /// `|`
    Or,
    /// `^`
    Xor,
    /// `<<`
    Shl,
    /// `>>`
    Shr,
}

impl AluOp {
    /// `a op b`, `None` for a division or remainder by zero.
    pub const fn apply(self, a: u32, b: u32) -> Option<u32> {
        Some(match self {
            AluOp::Add => a.wrapping_add(b),
            AluOp::Sub => a.wrapping_sub(b),
            AluOp::Mul => a.wrapping_mul(b),
            AluOp::Div => match a.checked_div(b) {
                Some(q) => q,
                None => return None,
            },
            AluOp::Mod => match a.checked_rem(b) {
                Some(r) => r,
                None => return None,
            },
            AluOp::And => a & b,
            AluOp::Or => a | b,
            AluOp::Xor => a ^ b,
            AluOp::Shl => match a.checked_shl(b) {
                Some(v) => v,
                None => 0,
            },
            AluOp::Shr => match a.checked_shr(b) {
                Some(v) => v,
                None => 0,
            },
        })
    }
}

/// One instruction. `A` is the accumulator (the program's result when it ends), `X` the index
/// register; both start at zero. Jump distances count instructions after the jump, so `0`
/// continues with the next one; a jump may land just past the last instruction (the end).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Insn {
    /// `A = width bytes at base + offset`.
    Load {
        /// Bytes past the base.
        offset: u16,
        /// How many bytes.
        width: Width,
    },
    /// `A = width bytes at base + X + offset`.
    LoadIndexed {
        /// Bytes past `base + X`.
        offset: u16,
        /// How many bytes.
        width: Width,
    },
    /// `A = k`.
    Const(u32),
    /// `A = ` the wire length.
    WireLen,
    /// `X = A`.
    SetX,
    /// `A = X`.
    GetX,
    /// `M[slot] = A`.
    Store(u8),
    /// `A = M[slot]`.
    Recall(u8),
    /// `A = A op k`.
    AluConst(AluOp, u32),
    /// `A = A op X`.
    AluX(AluOp),
    /// `A = -A` (wrapping).
    Neg,
    /// `A = 1` when `A op X` holds, else `0`.
    CompareX(CmpOp),
    /// Skips `if_true` instructions when `A op value` holds, `if_false` when not.
    Jump {
        /// The comparison, unsigned.
        op: CmpOp,
        /// Compared with `A`.
        value: u32,
        /// Instructions skipped when it holds.
        if_true: u8,
        /// Instructions skipped when it does not.
        if_false: u8,
    },
    /// Skips this many instructions.
    Ahead(u8),
    /// Continues at the instruction this many before this one (0: this one again), spending
    /// one back edge of the run's budget; with none left, the run fails.
    Back(u8),
}

/// A verified-on-use program: instructions and the run's back-edge budget.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Program {
    /// The instructions, run from the first.
    pub insns: Vec<Insn>,
    /// Most back edges one run may take.
    pub back_edges: u8,
}

/// What is wrong with a program, and at which instruction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProgramError {
    /// No instructions, or more than [`MAX_PROGRAM_INSNS`].
    Length(usize),
    /// A back-edge budget over [`MAX_BACK_EDGES`], or a worst-case run longer than
    /// [`MAX_PROGRAM_COST`] instructions.
    Cost(usize),
    /// A load past [`MAX_OFFSET`].
    Offset(usize),
    /// A jump past the end, or a back edge before the start.
    Target(usize),
    /// A scratch slot outside `0..SCRATCH_SLOTS`.
    Slot(usize),
    /// A constant division or remainder by zero, or a constant shift of 32 bits or more.
    Constant(usize),
}

impl fmt::Display for ProgramError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            ProgramError::Length(n) => write!(
                f,
                "program has {n} instructions; 1 to {MAX_PROGRAM_INSNS} are allowed"
            ),
            ProgramError::Cost(n) => write!(
                f,
                "program may run {n} instructions (at most {MAX_BACK_EDGES} back edges and {MAX_PROGRAM_COST} instructions)"
            ),
            ProgramError::Offset(i) => {
                write!(f, "instruction {i}: offset past {MAX_OFFSET}")
            }
            ProgramError::Target(i) => write!(f, "instruction {i}: jump outside the program"),
            ProgramError::Slot(i) => write!(
                f,
                "instruction {i}: scratch slot outside 0..{SCRATCH_SLOTS}"
            ),
            ProgramError::Constant(i) => write!(
                f,
                "instruction {i}: division by zero or a shift of 32 bits or more"
            ),
        }
    }
}

impl Program {
    /// Checks what every engine relies on: length, targets, offsets, slots, constants, and
    /// the bound on the instructions a run can execute.
    pub fn verify(&self) -> Result<(), ProgramError> {
        let len = self.insns.len();
        if len == 0 || len > MAX_PROGRAM_INSNS {
            return Err(ProgramError::Length(len));
        }
        let cost = len * (1 + usize::from(self.back_edges));
        if self.back_edges > MAX_BACK_EDGES || cost > MAX_PROGRAM_COST {
            return Err(ProgramError::Cost(cost));
        }
        for (i, insn) in self.insns.iter().enumerate() {
            let ahead = |n: u8| i + 1 + usize::from(n) <= len;
            let ok = match *insn {
                Insn::Load { offset, .. } | Insn::LoadIndexed { offset, .. } => {
                    if offset > MAX_OFFSET {
                        return Err(ProgramError::Offset(i));
                    }
                    true
                }
                Insn::Store(slot) | Insn::Recall(slot) => {
                    if slot >= SCRATCH_SLOTS {
                        return Err(ProgramError::Slot(i));
                    }
                    true
                }
                Insn::AluConst(AluOp::Div | AluOp::Mod, 0) => {
                    return Err(ProgramError::Constant(i));
                }
                Insn::AluConst(AluOp::Shl | AluOp::Shr, k) if k >= 32 => {
                    return Err(ProgramError::Constant(i));
                }
                Insn::Jump {
                    if_true, if_false, ..
                } => ahead(if_true) && ahead(if_false),
                Insn::Ahead(n) => ahead(n),
                Insn::Back(n) => usize::from(n) <= i,
                _ => true,
            };
            if !ok {
                return Err(ProgramError::Target(i));
            }
        }
        Ok(())
    }

    /// Whether some instruction reads the wire length.
    pub fn reads_wire_len(&self) -> bool {
        self.insns.iter().any(|i| matches!(i, Insn::WireLen))
    }

    /// Scratch slots the program touches: one past the highest.
    pub fn scratch_used(&self) -> u8 {
        self.insns
            .iter()
            .filter_map(|i| match *i {
                Insn::Store(s) | Insn::Recall(s) => Some(s + 1),
                _ => None,
            })
            .max()
            .unwrap_or(0)
    }

    /// Runs a verified program with the base at `base`: the value of `A` at the end, or
    /// `None` when the run fails.
    pub fn run(&self, packet: &Packet<'_>, base: u32) -> Option<u32> {
        let mut a: u32 = 0;
        let mut x: u32 = 0;
        let mut scratch = [0u32; SCRATCH_SLOTS as usize];
        let mut budget = self.back_edges;
        let mut pc = 0usize;
        let at = |offset: u64| -> Option<u32> { u32::try_from(offset).ok() };
        while let Some(insn) = self.insns.get(pc) {
            pc += 1;
            match *insn {
                Insn::Load { offset, width } => {
                    a = packet.load(at(u64::from(base) + u64::from(offset))?, width)?;
                }
                Insn::LoadIndexed { offset, width } => {
                    let address = u64::from(base) + u64::from(x) + u64::from(offset);
                    a = packet.load(at(address)?, width)?;
                }
                Insn::Const(k) => a = k,
                Insn::WireLen => a = packet.wire_len,
                Insn::SetX => x = a,
                Insn::GetX => a = x,
                Insn::Store(slot) => scratch[usize::from(slot)] = a,
                Insn::Recall(slot) => a = scratch[usize::from(slot)],
                Insn::AluConst(op, k) => a = op.apply(a, k)?,
                Insn::AluX(op) => a = op.apply(a, x)?,
                Insn::Neg => a = a.wrapping_neg(),
                Insn::CompareX(op) => a = u32::from(op.holds(a, x)),
                Insn::Jump {
                    op,
                    value,
                    if_true,
                    if_false,
                } => {
                    pc += usize::from(if op.holds(a, value) {
                        if_true
                    } else {
                        if_false
                    });
                }
                Insn::Ahead(n) => pc += usize::from(n),
                Insn::Back(n) => {
                    budget = budget.checked_sub(1)?;
                    pc = pc - 1 - usize::from(n);
                }
            }
        }
        Some(a)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    #[test]
    fn verification_bounds_the_run() {
        let p = |insns: Vec<Insn>, back_edges| Program { insns, back_edges };
        assert_eq!(p(vec![], 0).verify(), Err(ProgramError::Length(0)));
        assert_eq!(
            p(vec![Insn::Ahead(1)], 0).verify(),
            Err(ProgramError::Target(0))
        );
        assert_eq!(p(vec![Insn::Ahead(0)], 0).verify(), Ok(()));
        assert_eq!(
            p(vec![Insn::Const(1), Insn::Back(2)], 1).verify(),
            Err(ProgramError::Target(1))
        );
        assert_eq!(
            p(vec![Insn::AluConst(AluOp::Mod, 0)], 0).verify(),
            Err(ProgramError::Constant(0))
        );
        assert_eq!(
            p(vec![Insn::AluConst(AluOp::Shl, 32)], 0).verify(),
            Err(ProgramError::Constant(0))
        );
        assert_eq!(
            p(vec![Insn::Store(SCRATCH_SLOTS)], 0).verify(),
            Err(ProgramError::Slot(0))
        );
        assert_eq!(
            p(vec![Insn::Const(0); 64], 64).verify(),
            Err(ProgramError::Cost(64 * 65))
        );
    }

    #[test]
    fn a_loop_runs_until_its_budget_is_spent() {
        // A = 0; loop: A += 1; if A == 5 end; back.
        let counting = |back_edges| Program {
            insns: vec![
                Insn::Const(0),
                Insn::AluConst(AluOp::Add, 1),
                Insn::Jump {
                    op: CmpOp::Eq,
                    value: 5,
                    if_true: 1,
                    if_false: 0,
                },
                Insn::Back(2),
            ],
            back_edges,
        };
        let packet = Packet::whole(&[]);
        assert_eq!(counting(4).verify(), Ok(()));
        assert_eq!(counting(4).run(&packet, 0), Some(5));
        assert_eq!(counting(3).run(&packet, 0), None);
    }

    #[test]
    fn loads_division_and_shifts_fail_or_wrap_like_bpf() {
        let data = [0x12, 0x34, 0x56, 0x78, 0x02];
        let packet = Packet::whole(&data);
        let run = |insns: Vec<Insn>| {
            Program {
                insns,
                back_edges: 0,
            }
            .run(&packet, 0)
        };
        let load = |offset, width| Insn::Load { offset, width };
        assert_eq!(run(vec![load(1, Width::B2)]), Some(0x3456));
        assert_eq!(run(vec![load(2, Width::B4)]), None);
        // X = pkt[4] = 2; A = pkt[X + 1] = 0x56.
        let indexed = Insn::LoadIndexed {
            offset: 1,
            width: Width::B1,
        };
        assert_eq!(
            run(vec![load(4, Width::B1), Insn::SetX, indexed]),
            Some(0x78)
        );
        assert_eq!(run(vec![Insn::AluX(AluOp::Div)]), None);
        assert_eq!(
            run(vec![
                Insn::Const(33),
                Insn::SetX,
                Insn::Const(1),
                Insn::AluX(AluOp::Shl)
            ]),
            Some(0)
        );
        assert_eq!(
            run(vec![
                Insn::Const(7),
                Insn::Store(3),
                Insn::Const(0),
                Insn::Recall(3),
                Insn::Neg
            ]),
            Some(7u32.wrapping_neg())
        );
    }
}
