//! The handler language: a small register machine over the packet, a scratch area, a reply
//! buffer and the regions of application memory a handler declares, as an untrusted program.
//!
//! An [`UnverifiedHandler`] is what an application (or the [`crate::builder`]) hands in; only
//! [`crate::verify()`] turns it into a [`crate::Handler`], which the interpreter accepts. Register
//! numbers, call numbers and region indices are kept raw here, so that a hostile program reaches
//! the verifier intact and is refused there with the instruction and the rule it breaks.

use alloc::vec::Vec;

/// Registers a handler has: `r0` to `r11`, 64 bits each.
pub const REGISTER_COUNT: u8 = 12;
/// Bytes of scratch memory every run starts with, zeroed.
pub const SCRATCH_BYTES: u32 = 256;
/// Bytes of the reply buffer a run may build a frame in (an untagged Ethernet frame with a
/// 1500-byte payload, plus a VLAN tag).
pub const REPLY_BYTES: u32 = 1518;
/// Longest frame a handler can be given; accesses at or past it can never succeed.
pub const MAX_FRAME_BYTES: u32 = 1518;
/// Most instructions one handler may hold.
pub const MAX_INSTRUCTIONS: usize = 1024;
/// Most application regions one handler may declare.
pub const MAX_REGIONS: usize = 8;
/// Largest application region, in bytes.
pub const MAX_REGION_BYTES: u32 = 1 << 20;
/// Most iterations one loop may run.
pub const MAX_LOOP_ITERATIONS: u16 = 4096;
/// Deepest nesting of loops.
pub const MAX_LOOP_DEPTH: usize = 4;
/// Most replies one run may send.
pub const MAX_REPLIES_PER_RUN: u32 = 4;

/// A register name as the program gives it (checked against [`REGISTER_COUNT`] by the verifier).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Reg(pub u8);

/// At entry `r0` holds the captured length of the packet; every other register is unwritten.
pub const LENGTH_REGISTER: Reg = Reg(0);

/// A value operand: a register or a constant.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Operand {
    /// The register's value.
    Reg(Reg),
    /// A constant.
    Imm(u64),
}

impl From<Reg> for Operand {
    fn from(reg: Reg) -> Operand {
        Operand::Reg(reg)
    }
}

impl From<u64> for Operand {
    fn from(value: u64) -> Operand {
        Operand::Imm(value)
    }
}

/// Arithmetic and logic, `dst = dst op src`, wrapping on 64 bits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum AluOp {
    /// Wrapping addition.
    Add = 0,
    /// Wrapping subtraction.
    Sub = 1,
    /// Wrapping multiplication.
    Mul = 2,
    /// Unsigned division; the verifier proves the divisor non-zero.
    Div = 3,
    /// Unsigned remainder; the verifier proves the divisor non-zero.
    Mod = 4,
    /// Bitwise and.
    And = 5,
    /// Bitwise or.
    Or = 6,
    /// Bitwise exclusive or.
    Xor = 7,
    /// Left shift by `src & 63`.
    Shl = 8,
    /// Logical right shift by `src & 63`.
    Shr = 9,
    /// Ones'-complement addition of the Internet checksum: `dst + src` folded to 16 bits with
    /// end-around carry (both sides may be any 64-bit partial sums).
    OnesAdd = 10,
}

impl AluOp {
    /// Every operation, in encoding order.
    pub const ALL: [AluOp; 11] = [
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
        AluOp::OnesAdd,
    ];
}

/// Branch conditions, unsigned.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Cond {
    /// `a == b`.
    Eq = 0,
    /// `a != b`.
    Ne = 1,
    /// `a < b`.
    Lt = 2,
    /// `a <= b`.
    Le = 3,
    /// `a > b`.
    Gt = 4,
    /// `a >= b`.
    Ge = 5,
    /// `a & b != 0`.
    AnyBits = 6,
}

impl Cond {
    /// Every condition, in encoding order.
    pub const ALL: [Cond; 7] = [
        Cond::Eq,
        Cond::Ne,
        Cond::Lt,
        Cond::Le,
        Cond::Gt,
        Cond::Ge,
        Cond::AnyBits,
    ];

    /// Whether the condition holds.
    pub const fn holds(self, a: u64, b: u64) -> bool {
        match self {
            Cond::Eq => a == b,
            Cond::Ne => a != b,
            Cond::Lt => a < b,
            Cond::Le => a <= b,
            Cond::Gt => a > b,
            Cond::Ge => a >= b,
            Cond::AnyBits => a & b != 0,
        }
    }
}

/// How many bytes a load or store moves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Width {
    /// One byte.
    B1 = 1,
    /// Two bytes.
    B2 = 2,
    /// Four bytes.
    B4 = 4,
    /// Eight bytes.
    B8 = 8,
}

impl Width {
    /// Size in bytes.
    pub const fn bytes(self) -> u32 {
        self as u32
    }

    /// Width from a byte count.
    pub const fn from_bytes(bytes: u8) -> Option<Width> {
        match bytes {
            1 => Some(Width::B1),
            2 => Some(Width::B2),
            4 => Some(Width::B4),
            8 => Some(Width::B8),
            _ => None,
        }
    }
}

/// Byte order of a multi-byte load or store.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ByteOrder {
    /// Network order, for packet fields.
    Big,
    /// The machine's order, for words the application reads itself.
    Little,
}

/// Which memory an access names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Space {
    /// The received frame, read only, as long as its captured length.
    Packet,
    /// [`SCRATCH_BYTES`] of per-run memory, zeroed at entry.
    Scratch,
    /// The [`REPLY_BYTES`] reply buffer ([`Call::ReplyBegin`] fills it from the packet).
    Reply,
    /// Application region `n` of those the handler declares.
    Region(u8),
}

/// How an access is kept inside its space.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Check {
    /// The verifier proves it: no base register, and `offset + width` within the space (for
    /// the packet: within the length the guarding filter or an [`Insn::IfLenLess`] proves).
    Proven,
    /// Checked at run time: an access outside its space aborts the run.
    Runtime,
}

/// A memory operand: `base + offset` in `space`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Mem {
    /// The memory named.
    pub space: Space,
    /// A register added to `offset`, if any.
    pub base: Option<Reg>,
    /// Constant byte offset.
    pub offset: u16,
    /// How the access is bounded.
    pub check: Check,
}

/// Verdicts, what happens to the packet once the handler exits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Verdict {
    /// The handler dealt with it; nothing reaches the ring.
    Consume = 0,
    /// Also copy it into the filter's ring, as without a handler.
    Deliver = 1,
    /// Drop it (counted).
    Drop = 2,
}

/// Address swaps [`Call::ReplyBegin`] applies to the copy of the packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct Swap(pub u8);

impl Swap {
    /// No swap: the reply starts as an exact copy.
    pub const NONE: Swap = Swap(0);
    /// Ethernet destination and source.
    pub const ETHERNET: Swap = Swap(1);
    /// IPv4 source and destination (an untagged IPv4 frame is required).
    pub const IPV4: Swap = Swap(2);
    /// TCP or UDP source and destination ports, after the IPv4 header (implies an IPv4 frame).
    pub const PORTS: Swap = Swap(4);
    /// Every bit a swap may use.
    pub const ALL: Swap = Swap(7);

    /// Whether every flag of `other` is set.
    pub const fn contains(self, other: Swap) -> bool {
        self.0 & other.0 == other.0
    }

    /// Both sets of flags.
    pub const fn union(self, other: Swap) -> Swap {
        Swap(self.0 | other.0)
    }
}

/// The actions, invoked with arguments in `r1`.. and a result in `r0` (other registers keep
/// their values). Carried raw in [`Insn::Call`] and resolved by the verifier.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Call {
    /// Message vectoring: copy `r3` packet bytes from `r2` into region `region` at `r1`;
    /// `r0` = bytes copied. Both ranges checked at run time.
    Copy {
        /// Destination region (needs write).
        region: u8,
    },
    /// [`Call::Copy`] with the Internet checksum computed in the same pass: `r0` = the
    /// 16-bit ones'-complement sum of the copied bytes (not complemented).
    CopyChecksum {
        /// Destination region (needs write).
        region: u8,
    },
    /// `r0` = ones'-complement sum of `r2` packet bytes from `r1` (checked).
    Checksum,
    /// Fill the reply buffer with the packet, applying `swap`; the reply's length becomes the
    /// packet's. A packet too short for the swaps asked aborts the run.
    ReplyBegin {
        /// Which addresses to swap.
        swap: Swap,
    },
    /// RFC 1624 incremental update of the 16-bit checksum at reply offset `r1` for one 16-bit
    /// word changed from `r2` to `r3`.
    ChecksumUpdate,
    /// Send the first `r1` bytes of the reply through the transmit check; `r0` = 0 when sent,
    /// 1 when the check refused it.
    Send,
    /// Add `r2` to the little-endian 8-byte word at `r1` in region `region` (8-aligned,
    /// checked); `r0` = the new value.
    AtomicAdd {
        /// The region (needs read and write).
        region: u8,
    },
    /// If the word at `r1` equals `r2`, replace it with `r3`; `r0` = the word's old value.
    CompareSwap {
        /// The region (needs read and write).
        region: u8,
    },
    /// Wake the owner if it waits for packets.
    Wake,
    /// Raise the owner's packet-arrival upcall with `r1` as its argument.
    Upcall,
}

/// A call as a program gives it: a function number and a region byte, unchecked.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RawCall {
    /// Function number (see [`RawCall::resolve`]).
    pub function: u8,
    /// Region index or swap flags, depending on the function.
    pub argument: u8,
}

impl RawCall {
    /// Function numbers, in encoding order.
    const COPY: u8 = 0;
    const COPY_CHECKSUM: u8 = 1;
    const CHECKSUM: u8 = 2;
    const REPLY_BEGIN: u8 = 3;
    const CHECKSUM_UPDATE: u8 = 4;
    const SEND: u8 = 5;
    const ATOMIC_ADD: u8 = 6;
    const COMPARE_SWAP: u8 = 7;
    const WAKE: u8 = 8;
    const UPCALL: u8 = 9;

    /// The call this names, if any (a function with no argument needs a zero argument byte).
    pub fn resolve(self) -> Option<Call> {
        let argument = self.argument;
        let no_argument = |call| (argument == 0).then_some(call);
        match self.function {
            Self::COPY => Some(Call::Copy { region: argument }),
            Self::COPY_CHECKSUM => Some(Call::CopyChecksum { region: argument }),
            Self::CHECKSUM => no_argument(Call::Checksum),
            Self::REPLY_BEGIN => (argument & !Swap::ALL.0 == 0).then_some(Call::ReplyBegin {
                swap: Swap(argument),
            }),
            Self::CHECKSUM_UPDATE => no_argument(Call::ChecksumUpdate),
            Self::SEND => no_argument(Call::Send),
            Self::ATOMIC_ADD => Some(Call::AtomicAdd { region: argument }),
            Self::COMPARE_SWAP => Some(Call::CompareSwap { region: argument }),
            Self::WAKE => no_argument(Call::Wake),
            Self::UPCALL => no_argument(Call::Upcall),
            _ => None,
        }
    }
}

impl From<Call> for RawCall {
    fn from(call: Call) -> RawCall {
        let (function, argument) = match call {
            Call::Copy { region } => (Self::COPY, region),
            Call::CopyChecksum { region } => (Self::COPY_CHECKSUM, region),
            Call::Checksum => (Self::CHECKSUM, 0),
            Call::ReplyBegin { swap } => (Self::REPLY_BEGIN, swap.0),
            Call::ChecksumUpdate => (Self::CHECKSUM_UPDATE, 0),
            Call::Send => (Self::SEND, 0),
            Call::AtomicAdd { region } => (Self::ATOMIC_ADD, region),
            Call::CompareSwap { region } => (Self::COMPARE_SWAP, region),
            Call::Wake => (Self::WAKE, 0),
            Call::Upcall => (Self::UPCALL, 0),
        };
        RawCall { function, argument }
    }
}

/// How many times a loop body runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LoopCount {
    /// A constant number of iterations.
    Times(u16),
    /// `min(reg, bound)` iterations; without a bound the loop is unbounded and refused.
    Reg {
        /// Register holding the requested count.
        reg: Reg,
        /// Static upper bound.
        bound: Option<u16>,
    },
}

/// One instruction. Jump targets are absolute instruction indices.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Insn {
    /// `dst = src`.
    Mov {
        /// Written register.
        dst: Reg,
        /// Value.
        src: Operand,
    },
    /// `dst = dst op src`.
    Alu {
        /// Operation.
        op: AluOp,
        /// Read and written register.
        dst: Reg,
        /// Second operand.
        src: Operand,
    },
    /// `dst = load(mem)`, zero-extended.
    Load {
        /// Written register.
        dst: Reg,
        /// Bytes loaded.
        width: Width,
        /// Byte order.
        order: ByteOrder,
        /// Where.
        mem: Mem,
    },
    /// `store(mem) = src`, truncated to `width`.
    Store {
        /// Value stored.
        src: Operand,
        /// Bytes stored.
        width: Width,
        /// Byte order.
        order: ByteOrder,
        /// Where.
        mem: Mem,
    },
    /// Continue at `target`.
    Jump {
        /// Absolute index, after this instruction.
        target: u16,
    },
    /// Continue at `target` when `cond(a, b)` holds.
    Branch {
        /// Condition.
        cond: Cond,
        /// Left operand.
        a: Reg,
        /// Right operand.
        b: Operand,
        /// Absolute index, after this instruction.
        target: u16,
    },
    /// Continue at `target` when the captured packet is shorter than `length` bytes; past this
    /// instruction the packet is known to hold at least `length` bytes.
    IfLenLess {
        /// Bytes required.
        length: u16,
        /// Absolute index, after this instruction.
        target: u16,
    },
    /// Run the next `body` instructions `count` times, then continue after them.
    Loop {
        /// Iterations.
        count: LoopCount,
        /// Instructions in the body (at least one).
        body: u16,
    },
    /// Invoke an action.
    Call(RawCall),
    /// End the run with a verdict.
    Exit(Verdict),
}

/// Access rights a handler declares on one of its regions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Rights(pub u8);

impl Rights {
    /// Loads.
    pub const READ: Rights = Rights(1);
    /// Stores and copies into it.
    pub const WRITE: Rights = Rights(2);
    /// Both.
    pub const READ_WRITE: Rights = Rights(3);

    /// Whether every right of `other` is held.
    pub const fn contains(self, other: Rights) -> bool {
        self.0 & other.0 == other.0
    }
}

/// A region of application memory the handler will be given at bind time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RegionDecl {
    /// Size in bytes.
    pub len: u32,
    /// What the handler may do with it.
    pub rights: Rights,
}

/// A handler as handed in, not yet verified.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct UnverifiedHandler {
    /// The regions it declares, indexed by [`Space::Region`].
    pub regions: Vec<RegionDecl>,
    /// The program; execution starts at index 0.
    pub code: Vec<Insn>,
}
