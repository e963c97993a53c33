//! The filter language every engine shares: conjunctions of atoms over packet fields, with shifts
//! that move the base, as an untrusted description and as a verified filter.
//!
//! An [`UnverifiedFilter`] is what an application (or the pcap-filter front end) hands in; only
//! [`UnverifiedFilter::verify`] turns it into a [`Filter`], which the trie, the interpreter and
//! the JIT accept. Everything they rely on (widths, offsets, shift bounds, step counts) is checked
//! there once, so the engines never have to.

use alloc::boxed::Box;
use alloc::vec::Vec;
use core::fmt;

use crate::program::{Program, ProgramError};

/// Most steps (atoms and shifts) one conjunctive filter may hold.
pub const MAX_STEPS: usize = 64;
/// Most shifts one filter may hold.
pub const MAX_SHIFTS: usize = 8;
/// Largest byte offset of a load relative to the current base.
pub const MAX_OFFSET: u16 = 4096;
/// Largest amount one shift may move the base by, in bytes.
pub const MAX_SHIFT_BYTES: u32 = 4096;

/// Who a filter belongs to: the demultiplexer's verdict. A pcap-filter disjunction becomes several
/// conjunctive filters sharing one id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FilterId(pub u32);

/// How many bytes a load reads, big-endian (network order).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u8)]
pub enum Width {
    /// One byte.
    B1 = 1,
    /// Two bytes, big-endian.
    B2 = 2,
    /// Four bytes, big-endian.
    B4 = 4,
}

impl Width {
    /// Size in bytes.
    pub const fn bytes(self) -> u16 {
        self as u16
    }

    /// Largest value a load of this width can produce.
    pub const fn max_value(self) -> u32 {
        match self {
            Width::B1 => 0xff,
            Width::B2 => 0xffff,
            Width::B4 => 0xffff_ffff,
        }
    }

    /// Width from a byte count, as the untrusted encodings carry it.
    pub const fn from_bytes(bytes: u8) -> Option<Width> {
        match bytes {
            1 => Some(Width::B1),
            2 => Some(Width::B2),
            4 => Some(Width::B4),
            _ => None,
        }
    }
}

/// What an atom reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Field {
    /// `width` bytes at `base + offset` of the captured bytes. A load with
    /// `base + offset + width > captured length` fails, and so does the filter.
    Packet {
        /// Bytes past the current base.
        offset: u16,
        /// How many bytes.
        width: Width,
    },
    /// The packet's length on the wire (pcap `len`), which may exceed the captured bytes.
    WireLen,
    /// Captured bytes at and after the current base (0 when the base lies past the end). Lets a
    /// front end say "this load would fail" without loading.
    CapturedFromBase,
}

/// Unsigned comparison of `field & mask` against the atom's value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum CmpOp {
    /// `==`
    Eq,
    /// `!=`
    Ne,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
}

impl CmpOp {
    /// Applies the comparison.
    pub const fn holds(self, left: u32, right: u32) -> bool {
        match self {
            CmpOp::Eq => left == right,
            CmpOp::Ne => left != right,
            CmpOp::Lt => left < right,
            CmpOp::Le => left <= right,
            CmpOp::Gt => left > right,
            CmpOp::Ge => left >= right,
        }
    }

    /// The comparison that holds exactly when this one does not.
    pub const fn negate(self) -> CmpOp {
        match self {
            CmpOp::Eq => CmpOp::Ne,
            CmpOp::Ne => CmpOp::Eq,
            CmpOp::Lt => CmpOp::Ge,
            CmpOp::Le => CmpOp::Gt,
            CmpOp::Gt => CmpOp::Le,
            CmpOp::Ge => CmpOp::Lt,
        }
    }
}

/// `(field & mask) op value`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Atom {
    /// What is read.
    pub field: Field,
    /// Bits kept before comparing; must fit the field's width.
    pub mask: u32,
    /// How the masked value is compared.
    pub op: CmpOp,
    /// The constant compared against.
    pub value: u32,
}

/// Moves the base forward by a value read from the packet: `base += shift(load & mask)`, where
/// a positive `shift` shifts left by that many bits and a negative one right. IPv4's header
/// length is `{offset: 0, width: B1, mask: 0x0f, shift: 2}`; TCP's data offset is
/// `{offset: 12, width: B1, mask: 0xf0, shift: -2}`. A load that fails fails the filter.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Shift {
    /// Bytes past the current base.
    pub offset: u16,
    /// How many bytes.
    pub width: Width,
    /// Bits kept before shifting.
    pub mask: u32,
    /// Bits to shift the masked value: left when positive, right when negative.
    pub shift: i8,
}

impl Shift {
    /// How far this shift moves the base for a loaded value.
    pub const fn amount(&self, loaded: u32) -> u32 {
        let masked = loaded & self.mask;
        if self.shift >= 0 {
            masked << self.shift as u32
        } else {
            masked >> (-(self.shift as i32)) as u32
        }
    }

    /// The largest move this shift can make; verification bounds it by [`MAX_SHIFT_BYTES`].
    pub const fn max_amount(&self) -> u64 {
        let masked = (self.mask & self.width.max_value()) as u64;
        if self.shift >= 0 {
            masked << self.shift as u32
        } else {
            masked >> (-(self.shift as i32)) as u32
        }
    }
}

/// The expression step: `(program's result & mask) op value`, where the program runs at the
/// current base. A failed run fails the step, as a failed load fails an atom.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Eval {
    /// What computes the value.
    pub program: Program,
    /// Bits kept before comparing.
    pub mask: u32,
    /// How the masked value is compared.
    pub op: CmpOp,
    /// The constant compared against.
    pub value: u32,
}

impl Eval {
    /// Whether a run's result satisfies the comparison.
    pub const fn holds(&self, result: u32) -> bool {
        self.op.holds(result & self.mask, self.value)
    }
}

/// One step of a conjunctive filter, taken in order.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Step {
    /// The packet must satisfy the atom.
    Test(Atom),
    /// Move the base.
    Shift(Shift),
    /// The packet must satisfy the expression (it counts as one atom).
    Eval(Box<Eval>),
}

impl Step {
    /// `pkt[base + offset : width] == value`, the whole field compared: the commonest step.
    pub fn eq(offset: u16, width: Width, value: u32) -> Step {
        Step::Test(Atom {
            field: Field::Packet { offset, width },
            mask: width.max_value(),
            op: CmpOp::Eq,
            value,
        })
    }
}

/// A filter as it arrives: nothing about it is trusted yet.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct UnverifiedFilter {
    /// Claimed owner.
    pub id: FilterId,
    /// Steps, all of which must pass for the filter to match.
    pub steps: Vec<Step>,
}

/// A filter that passed verification. Only [`UnverifiedFilter::verify`] makes one.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Filter {
    id: FilterId,
    steps: Vec<Step>,
}

/// What was wrong with a filter, and at which step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VerifyError {
    /// A filter with no steps would match everything; a monitor must say so explicitly.
    Empty,
    /// More than [`MAX_STEPS`] steps.
    TooManySteps {
        /// How many were given.
        count: usize,
    },
    /// More than [`MAX_SHIFTS`] shifts.
    TooManyShifts {
        /// Index of the first shift over the limit.
        step: usize,
    },
    /// A load past [`MAX_OFFSET`].
    OffsetTooLarge {
        /// Index of the step.
        step: usize,
        /// The offset given.
        offset: u16,
    },
    /// A mask with bits outside the load's width.
    MaskTooWide {
        /// Index of the step.
        step: usize,
        /// The mask given.
        mask: u32,
    },
    /// A value that `field & mask` can never equal (so the atom could never be meant).
    ValueOutsideMask {
        /// Index of the step.
        step: usize,
        /// The value given.
        value: u32,
    },
    /// A shift whose amount is outside -31..=31 bits or can move the base too far.
    ShiftOutOfRange {
        /// Index of the step.
        step: usize,
    },
    /// An expression step whose program is malformed or may run too long.
    Program {
        /// Index of the step.
        step: usize,
        /// What is wrong with the program.
        error: ProgramError,
    },
}

impl fmt::Display for VerifyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            VerifyError::Empty => write!(f, "filter has no steps"),
            VerifyError::TooManySteps { count } => {
                write!(
                    f,
                    "filter has {count} steps; at most {MAX_STEPS} are allowed"
                )
            }
            VerifyError::TooManyShifts { step } => {
                write!(f, "step {step}: more than {MAX_SHIFTS} shifts")
            }
            VerifyError::OffsetTooLarge { step, offset } => {
                write!(f, "step {step}: offset {offset} is past {MAX_OFFSET}")
            }
            VerifyError::MaskTooWide { step, mask } => {
                write!(f, "step {step}: mask {mask:#x} is wider than the load")
            }
            VerifyError::ValueOutsideMask { step, value } => write!(
                f,
                "step {step}: value {value:#x} has bits outside the mask, the atom can never hold"
            ),
            VerifyError::ShiftOutOfRange { step } => write!(
                f,
                "step {step}: shift must be within -31..=31 bits and move the base at most {MAX_SHIFT_BYTES} bytes"
            ),
            VerifyError::Program { step, error } => write!(f, "step {step}: {error}"),
        }
    }
}

impl UnverifiedFilter {
    /// Checks everything the engines rely on and returns a [`Filter`], or says what is wrong
    /// and where.
    pub fn verify(self) -> Result<Filter, VerifyError> {
        if self.steps.is_empty() {
            return Err(VerifyError::Empty);
        }
        if self.steps.len() > MAX_STEPS {
            return Err(VerifyError::TooManySteps {
                count: self.steps.len(),
            });
        }
        let mut shifts = 0;
        for (step, s) in self.steps.iter().enumerate() {
            match s {
                Step::Eval(eval) => {
                    eval.program
                        .verify()
                        .map_err(|error| VerifyError::Program { step, error })?;
                    if matches!(eval.op, CmpOp::Eq) && eval.value & !eval.mask != 0 {
                        return Err(VerifyError::ValueOutsideMask {
                            step,
                            value: eval.value,
                        });
                    }
                }
                &Step::Test(atom) => {
                    let field_max = match atom.field {
                        Field::Packet { offset, width } => {
                            if offset > MAX_OFFSET {
                                return Err(VerifyError::OffsetTooLarge { step, offset });
                            }
                            width.max_value()
                        }
                        Field::WireLen | Field::CapturedFromBase => u32::MAX,
                    };
                    if atom.mask & !field_max != 0 {
                        return Err(VerifyError::MaskTooWide {
                            step,
                            mask: atom.mask,
                        });
                    }
                    // Only equality is refused: `(x & m) == v` with bits of `v` outside `m`
                    // can never hold, which is a description error, not a filter.
                    if matches!(atom.op, CmpOp::Eq) && atom.value & !atom.mask != 0 {
                        return Err(VerifyError::ValueOutsideMask {
                            step,
                            value: atom.value,
                        });
                    }
                }
                &Step::Shift(shift) => {
                    shifts += 1;
                    if shifts > MAX_SHIFTS {
                        return Err(VerifyError::TooManyShifts { step });
                    }
                    if shift.offset > MAX_OFFSET {
                        return Err(VerifyError::OffsetTooLarge {
                            step,
                            offset: shift.offset,
                        });
                    }
                    if shift.mask & !shift.width.max_value() != 0 {
                        return Err(VerifyError::MaskTooWide {
                            step,
                            mask: shift.mask,
                        });
                    }
                    if !(-31..=31).contains(&shift.shift)
                        || shift.max_amount() > MAX_SHIFT_BYTES as u64
                    {
                        return Err(VerifyError::ShiftOutOfRange { step });
                    }
                }
            }
        }
        Ok(Filter {
            id: self.id,
            steps: self.steps,
        })
    }
}

impl Filter {
    /// The owner this filter reports when it matches.
    pub fn id(&self) -> FilterId {
        self.id
    }

    /// The verified steps.
    pub fn steps(&self) -> &[Step] {
        &self.steps
    }

    /// Number of atoms: how "long" a match through this filter is when several filters match.
    pub fn atom_count(&self) -> usize {
        self.steps
            .iter()
            .filter(|s| matches!(s, Step::Test(_) | Step::Eval(_)))
            .count()
    }

    /// Back to an untrusted description, e.g. to encode it for a system call.
    pub fn into_unverified(self) -> UnverifiedFilter {
        UnverifiedFilter {
            id: self.id,
            steps: self.steps,
        }
    }
}

/// A packet as the engines see it: the captured bytes and the length it had on the wire.
#[derive(Clone, Copy, Debug)]
pub struct Packet<'a> {
    /// Captured bytes, starting at the Ethernet header.
    pub data: &'a [u8],
    /// Length on the wire; at least `data.len()` for a well-formed capture, but engines never
    /// rely on that.
    pub wire_len: u32,
}

impl<'a> Packet<'a> {
    /// A packet captured whole.
    pub fn whole(data: &'a [u8]) -> Packet<'a> {
        Packet {
            data,
            wire_len: data.len() as u32,
        }
    }

    /// Big-endian load of `width` bytes at `at`, or `None` past the captured bytes.
    pub fn load(&self, at: u32, width: Width) -> Option<u32> {
        let start = at as usize;
        let end = start.checked_add(width.bytes() as usize)?;
        let bytes = self.data.get(start..end)?;
        Some(bytes.iter().fold(0u32, |acc, &b| (acc << 8) | b as u32))
    }
}

/// The straightforward reference: one filter, step by step, no merging, no cleverness. The
/// interpreter and the JIT are tested against this.
pub fn reference_matches(filter: &Filter, packet: &Packet<'_>) -> bool {
    let mut base: u32 = 0;
    for step in filter.steps() {
        match step {
            Step::Eval(eval) => match eval.program.run(packet, base) {
                Some(result) if eval.holds(result) => {}
                _ => return false,
            },
            &Step::Test(atom) => {
                let loaded = match atom.field {
                    Field::Packet { offset, width } => {
                        match packet.load(base + offset as u32, width) {
                            Some(v) => v,
                            None => return false,
                        }
                    }
                    Field::WireLen => packet.wire_len,
                    Field::CapturedFromBase => (packet.data.len() as u32).saturating_sub(base),
                };
                if !atom.op.holds(loaded & atom.mask, atom.value) {
                    return false;
                }
            }
            &Step::Shift(shift) => {
                let Some(loaded) = packet.load(base + shift.offset as u32, shift.width) else {
                    return false;
                };
                base += shift.amount(loaded);
            }
        }
    }
    true
}

/// The reference demultiplexer over a set of filters: the longest match (most atoms) wins; among
/// equally long matches the lowest id, then the earliest in `filters`.
pub fn reference_classify(filters: &[Filter], packet: &Packet<'_>) -> Option<FilterId> {
    let mut best: Option<(usize, FilterId)> = None;
    for filter in filters {
        if reference_matches(filter, packet) {
            let candidate = (filter.atom_count(), filter.id());
            best = match best {
                None => Some(candidate),
                Some(b) if candidate.0 > b.0 || (candidate.0 == b.0 && candidate.1 < b.1) => {
                    Some(candidate)
                }
                keep => keep,
            };
        }
    }
    best.map(|(_, id)| id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    fn atom(offset: u16, width: Width, mask: u32, op: CmpOp, value: u32) -> Step {
        Step::Test(Atom {
            field: Field::Packet { offset, width },
            mask,
            op,
            value,
        })
    }

    #[test]
    fn verification_names_the_step() {
        let f = UnverifiedFilter {
            id: FilterId(1),
            steps: vec![
                atom(12, Width::B2, 0xffff, CmpOp::Eq, 0x0800),
                atom(23, Width::B1, 0x1ff, CmpOp::Eq, 6),
            ],
        };
        assert_eq!(
            f.verify(),
            Err(VerifyError::MaskTooWide {
                step: 1,
                mask: 0x1ff
            })
        );
        let f = UnverifiedFilter {
            id: FilterId(1),
            steps: vec![atom(12, Width::B1, 0x0f, CmpOp::Eq, 0x10)],
        };
        assert!(matches!(
            f.verify(),
            Err(VerifyError::ValueOutsideMask { step: 0, .. })
        ));
        let f = UnverifiedFilter {
            id: FilterId(1),
            steps: vec![Step::Shift(Shift {
                offset: 14,
                width: Width::B4,
                mask: 0xffff_ffff,
                shift: 0,
            })],
        };
        assert_eq!(f.verify(), Err(VerifyError::ShiftOutOfRange { step: 0 }));
    }

    #[test]
    fn ihl_shift_moves_to_tcp_ports() {
        // Ethernet + IPv4 with 4 bytes of options + TCP dst port 80.
        let mut p = vec![0u8; 14 + 24 + 20];
        p[12] = 0x08;
        p[14] = 0x46;
        p[14 + 9] = 6;
        p[14 + 24 + 2] = 0;
        p[14 + 24 + 3] = 80;
        let f = UnverifiedFilter {
            id: FilterId(7),
            steps: vec![
                atom(12, Width::B2, 0xffff, CmpOp::Eq, 0x0800),
                atom(23, Width::B1, 0xff, CmpOp::Eq, 6),
                Step::Shift(Shift {
                    offset: 14,
                    width: Width::B1,
                    mask: 0x0f,
                    shift: 2,
                }),
                atom(14 + 2, Width::B2, 0xffff, CmpOp::Eq, 80),
            ],
        }
        .verify()
        .unwrap();
        assert!(reference_matches(&f, &Packet::whole(&p)));
        assert!(!reference_matches(
            &f,
            &Packet::whole(&p[..p.len() - 1 - 16])
        ));
    }
}
