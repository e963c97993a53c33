//! The builder: how handlers are written in Rust, with labels for forward branches and
//! closures for loop bodies, so nobody counts instruction indices by hand.
#![forbid(unsafe_code)]

use alloc::vec::Vec;

use crate::ir::{
    AluOp, ByteOrder, Call, Check, Cond, Insn, LoopCount, Mem, Operand, RawCall, Reg, RegionDecl,
    Rights, Space, Swap, UnverifiedHandler, Verdict, Width,
};

/// `r0`: the packet length at entry, and every call's result.
pub const R0: Reg = Reg(0);
/// `r1`: first call argument.
pub const R1: Reg = Reg(1);
/// `r2`: second call argument.
pub const R2: Reg = Reg(2);
/// `r3`: third call argument.
pub const R3: Reg = Reg(3);
/// `r4`.
pub const R4: Reg = Reg(4);
/// `r5`.
pub const R5: Reg = Reg(5);
/// `r6`.
pub const R6: Reg = Reg(6);
/// `r7`.
pub const R7: Reg = Reg(7);
/// `r8`.
pub const R8: Reg = Reg(8);
/// `r9`.
pub const R9: Reg = Reg(9);
/// `r10`.
pub const R10: Reg = Reg(10);
/// `r11`.
pub const R11: Reg = Reg(11);

impl Mem {
    /// Packet bytes at a constant offset the verifier must prove captured.
    pub const fn packet(offset: u16) -> Mem {
        Mem {
            space: Space::Packet,
            base: None,
            offset,
            check: Check::Proven,
        }
    }

    /// Packet bytes at `base + offset`, checked at run time.
    pub const fn packet_at(base: Reg, offset: u16) -> Mem {
        Mem {
            space: Space::Packet,
            base: Some(base),
            offset,
            check: Check::Runtime,
        }
    }

    /// Scratch bytes at a constant offset.
    pub const fn scratch(offset: u16) -> Mem {
        Mem {
            space: Space::Scratch,
            base: None,
            offset,
            check: Check::Proven,
        }
    }

    /// Reply-buffer bytes at a constant offset.
    pub const fn reply(offset: u16) -> Mem {
        Mem {
            space: Space::Reply,
            base: None,
            offset,
            check: Check::Proven,
        }
    }

    /// Reply-buffer bytes at `base + offset`, checked at run time.
    pub const fn reply_at(base: Reg, offset: u16) -> Mem {
        Mem {
            space: Space::Reply,
            base: Some(base),
            offset,
            check: Check::Runtime,
        }
    }

    /// Bytes of region `region` at a constant offset.
    pub const fn region(region: u8, offset: u16) -> Mem {
        Mem {
            space: Space::Region(region),
            base: None,
            offset,
            check: Check::Proven,
        }
    }

    /// Bytes of region `region` at `base + offset`, checked at run time.
    pub const fn region_at(region: u8, base: Reg, offset: u16) -> Mem {
        Mem {
            space: Space::Region(region),
            base: Some(base),
            offset,
            check: Check::Runtime,
        }
    }
}

/// A place in the program a branch can go to, bound later with [`Builder::bind`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Label(usize);

/// Why a builder could not produce a program.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BuildError {
    /// A label was used but never bound.
    UnboundLabel,
    /// A label was bound twice.
    BoundTwice,
    /// More instructions than an index can name.
    TooLong,
}

/// Builds an [`UnverifiedHandler`].
#[derive(Debug, Default)]
pub struct Builder {
    regions: Vec<RegionDecl>,
    code: Vec<Insn>,
    labels: Vec<Option<usize>>,
    /// (instruction index, label) of every branch still to patch.
    fixups: Vec<(usize, Label)>,
    error: Option<BuildError>,
}

impl Builder {
    /// An empty program.
    pub fn new() -> Builder {
        Builder::default()
    }

    /// Declares a region of `len` bytes with `rights`; its index for [`Mem::region`] and calls.
    pub fn region(&mut self, len: u32, rights: Rights) -> u8 {
        self.regions.push(RegionDecl { len, rights });
        (self.regions.len() - 1) as u8
    }

    /// A new unbound label.
    pub fn label(&mut self) -> Label {
        self.labels.push(None);
        Label(self.labels.len() - 1)
    }

    /// Binds `label` to the next instruction.
    pub fn bind(&mut self, label: Label) -> &mut Builder {
        if self.labels[label.0].is_some() {
            self.error.get_or_insert(BuildError::BoundTwice);
        }
        self.labels[label.0] = Some(self.code.len());
        self
    }

    /// Appends any instruction.
    pub fn insn(&mut self, insn: Insn) -> &mut Builder {
        self.code.push(insn);
        self
    }

    /// `dst = src`.
    pub fn mov(&mut self, dst: Reg, src: impl Into<Operand>) -> &mut Builder {
        self.insn(Insn::Mov {
            dst,
            src: src.into(),
        })
    }

    /// `dst = dst op src`.
    pub fn alu(&mut self, op: AluOp, dst: Reg, src: impl Into<Operand>) -> &mut Builder {
        self.insn(Insn::Alu {
            op,
            dst,
            src: src.into(),
        })
    }

    /// Big-endian load.
    pub fn load(&mut self, dst: Reg, width: Width, mem: Mem) -> &mut Builder {
        self.insn(Insn::Load {
            dst,
            width,
            order: ByteOrder::Big,
            mem,
        })
    }

    /// Little-endian load (application words).
    pub fn load_le(&mut self, dst: Reg, width: Width, mem: Mem) -> &mut Builder {
        self.insn(Insn::Load {
            dst,
            width,
            order: ByteOrder::Little,
            mem,
        })
    }

    /// Big-endian store.
    pub fn store(&mut self, src: impl Into<Operand>, width: Width, mem: Mem) -> &mut Builder {
        self.insn(Insn::Store {
            src: src.into(),
            width,
            order: ByteOrder::Big,
            mem,
        })
    }

    /// Little-endian store (application words).
    pub fn store_le(&mut self, src: impl Into<Operand>, width: Width, mem: Mem) -> &mut Builder {
        self.insn(Insn::Store {
            src: src.into(),
            width,
            order: ByteOrder::Little,
            mem,
        })
    }

    fn branch_to(&mut self, insn: Insn, label: Label) -> &mut Builder {
        self.fixups.push((self.code.len(), label));
        self.insn(insn)
    }

    /// Continue at `label`.
    pub fn jump(&mut self, label: Label) -> &mut Builder {
        self.branch_to(Insn::Jump { target: 0 }, label)
    }

    /// Continue at `label` when `cond(a, b)`.
    pub fn branch(
        &mut self,
        cond: Cond,
        a: Reg,
        b: impl Into<Operand>,
        label: Label,
    ) -> &mut Builder {
        self.branch_to(
            Insn::Branch {
                cond,
                a,
                b: b.into(),
                target: 0,
            },
            label,
        )
    }

    /// Continue at `label` when the packet holds fewer than `length` bytes.
    pub fn if_len_less(&mut self, length: u16, label: Label) -> &mut Builder {
        self.branch_to(Insn::IfLenLess { length, target: 0 }, label)
    }

    /// Continue at `label` unless the packet's field at `offset` equals `value` (a proven
    /// load into `scratch_reg`).
    pub fn expect(
        &mut self,
        scratch_reg: Reg,
        width: Width,
        offset: u16,
        value: u64,
        label: Label,
    ) -> &mut Builder {
        self.load(scratch_reg, width, Mem::packet(offset)).branch(
            Cond::Ne,
            scratch_reg,
            value,
            label,
        )
    }

    /// A loop whose body `body` writes, run `count` times.
    pub fn repeat(&mut self, count: LoopCount, body: impl FnOnce(&mut Builder)) -> &mut Builder {
        let at = self.code.len();
        self.insn(Insn::Loop { count, body: 0 });
        body(self);
        let body_len = self.code.len() - at - 1;
        match u16::try_from(body_len) {
            Ok(body_len) => {
                self.code[at] = Insn::Loop {
                    count,
                    body: body_len,
                }
            }
            Err(_) => {
                self.error.get_or_insert(BuildError::TooLong);
            }
        }
        self
    }

    /// Invokes an action.
    pub fn call(&mut self, call: Call) -> &mut Builder {
        self.insn(Insn::Call(RawCall::from(call)))
    }

    /// [`Call::ReplyBegin`].
    pub fn reply_begin(&mut self, swap: Swap) -> &mut Builder {
        self.call(Call::ReplyBegin { swap })
    }

    /// Ends the run.
    pub fn exit(&mut self, verdict: Verdict) -> &mut Builder {
        self.insn(Insn::Exit(verdict))
    }

    /// The program, with every label resolved.
    pub fn finish(self) -> Result<UnverifiedHandler, BuildError> {
        if let Some(error) = self.error {
            return Err(error);
        }
        let mut code = self.code;
        for (at, label) in self.fixups {
            let target = self.labels[label.0].ok_or(BuildError::UnboundLabel)?;
            let target = u16::try_from(target).map_err(|_| BuildError::TooLong)?;
            match &mut code[at] {
                Insn::Jump { target: t }
                | Insn::Branch { target: t, .. }
                | Insn::IfLenLess { target: t, .. } => *t = target,
                _ => return Err(BuildError::UnboundLabel),
            }
        }
        Ok(UnverifiedHandler {
            regions: self.regions,
            code,
        })
    }
}
