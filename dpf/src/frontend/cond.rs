//! The boolean tree primitives lower to: tests on packet fields, each under the chain of
//! shifts that places its base, combined in the order libpcap evaluates them.
//!
//! Order matters because BPF stops at the first load past the captured bytes and rejects the
//! packet, even inside an `or`: `Cond` keeps the left-to-right order so normalisation can
//! reproduce that (see `normalize`).

use alloc::boxed::Box;
use alloc::vec::Vec;

use crate::ir::{Atom, CmpOp, Field, Shift, Width};
use crate::program::Program;

/// The shifts, in order, that move the base before a test is made. Empty: the frame start.
pub type Path = Vec<Shift>;

/// One test: an atom evaluated after the path's shifts, or an expression step.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Lit {
    /// Shifts applied first.
    pub path: Path,
    /// The test at the resulting base. For an expression its mask, op and value compare the
    /// program's result, and its field is [`Field::WireLen`], which loads nothing, as the
    /// program's own loads are not a field's.
    pub atom: Atom,
    /// The program whose result the atom tests (an [`crate::ir::Eval`] step), if any.
    pub program: Option<Program>,
}

impl Lit {
    /// Packet bytes at `offset` under `path`, masked and compared.
    pub fn packet(path: Path, offset: u16, width: Width, mask: u32, op: CmpOp, value: u32) -> Lit {
        Lit {
            path,
            atom: Atom {
                field: Field::Packet { offset, width },
                mask,
                op,
                value,
            },
            program: None,
        }
    }

    /// `(program's result & mask) op value`, at the frame start.
    pub fn program(program: Program, mask: u32, op: CmpOp, value: u32) -> Lit {
        Lit {
            path: Path::new(),
            atom: Atom {
                field: Field::WireLen,
                mask,
                op,
                value,
            },
            program: Some(program),
        }
    }

    /// "At least `bytes` bytes are captured from the base `path` reaches": what any load ending
    /// there needs.
    pub fn captured_at_least(path: Path, bytes: u32) -> Lit {
        Lit {
            path,
            atom: Atom {
                field: Field::CapturedFromBase,
                mask: u32::MAX,
                op: CmpOp::Ge,
                value: bytes,
            },
            program: None,
        }
    }

    /// The same load, the opposite comparison: holds exactly when the load succeeds and this
    /// literal does not hold.
    pub fn negate(&self) -> Lit {
        Lit {
            path: self.path.clone(),
            atom: Atom {
                op: self.atom.op.negate(),
                ..self.atom
            },
            program: self.program.clone(),
        }
    }

    /// What must be captured for this literal's load to succeed, or `None` when it loads
    /// nothing from the packet (the wire length), beyond the path's own shifts.
    pub fn bounds(&self) -> Option<Lit> {
        if self.program.is_some() {
            // "The program completes": a comparison of no bits that always holds.
            return Some(Lit {
                atom: Atom {
                    mask: 0,
                    op: CmpOp::Eq,
                    value: 0,
                    ..self.atom
                },
                ..self.clone()
            });
        }
        match self.atom.field {
            Field::Packet { offset, width } => Some(Lit::captured_at_least(
                self.path.clone(),
                u32::from(offset) + u32::from(width.bytes()),
            )),
            Field::CapturedFromBase => Some(self.clone()),
            Field::WireLen => None,
        }
    }
}

/// A filter condition in evaluation order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Cond {
    /// Holds without looking at the packet.
    True,
    /// Never holds, without looking at the packet.
    False,
    /// The literal holds (its loads succeed and the comparison is true).
    Lit(Lit),
    /// The loads behind this bounds literal succeed; the comparison made with them is always
    /// true (`ip[0] & 0 = 0`). Aborts like any load when they do not.
    Defined(Lit),
    /// Left, then right if left held.
    And(Box<Cond>, Box<Cond>),
    /// Left, then right if left did not hold.
    Or(Box<Cond>, Box<Cond>),
    /// Negation (an aborted evaluation stays aborted).
    Not(Box<Cond>),
}

impl Cond {
    /// `self and other`, evaluated in that order.
    pub fn and(self, other: Cond) -> Cond {
        match (self, other) {
            (Cond::True, c) | (c, Cond::True) => c,
            (a, b) => Cond::And(Box::new(a), Box::new(b)),
        }
    }

    /// `self or other`, evaluated in that order.
    pub fn or(self, other: Cond) -> Cond {
        match (self, other) {
            (Cond::False, c) | (c, Cond::False) => c,
            (a, b) => Cond::Or(Box::new(a), Box::new(b)),
        }
    }

    /// `not self`.
    #[allow(clippy::should_implement_trait)]
    pub fn not(self) -> Cond {
        match self {
            Cond::True => Cond::False,
            Cond::False => Cond::True,
            Cond::Not(inner) => *inner,
            c => Cond::Not(Box::new(c)),
        }
    }
}
