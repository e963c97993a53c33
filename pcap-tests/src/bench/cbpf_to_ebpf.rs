//! Classic BPF (what `pcap_compile` emits) translated to eBPF that rbpf and DPDK's rte_bpf run.
//!
//! The eBPF program takes one argument, a pointer to a *packet record*:
//!
//! ```text
//! offset 0: captured length, u32 little-endian
//! offset 4: length on the wire, u32 little-endian
//! offset 8: the captured bytes
//! ```
//!
//! and returns what the classic program returns (non-zero = accept). Every packet load is
//! checked against the captured length first, as libpcap's `bpf_filter` does, so the program is
//! safe to run on a JIT that checks nothing (rbpf's). Loads read the record directly with
//! constant offsets (or the index register plus a constant), which DPDK's verifier can bound
//! statically; no `LD_ABS`/`LD_IND`, which rbpf and DPDK give different meanings.
//!
//! Registers: `r6` the record, `r0` the accumulator A, `r7` the index X, `r8` the captured
//! length, `r2`/`r3` temporaries. A and X always hold zero-extended 32-bit values, so 64-bit
//! unsigned compares give classic BPF's 32-bit verdicts. The scratch memory `M[0..16]` lives on
//! the eBPF stack, zeroed on entry for every slot the program reads.

use std::fmt;

/// A classic BPF instruction, laid out as `struct bpf_insn` in `<pcap/bpf.h>`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(C)]
pub struct CbpfInsn {
    /// Opcode.
    pub code: u16,
    /// Jump offset when the condition holds.
    pub jt: u8,
    /// Jump offset when it does not.
    pub jf: u8,
    /// Constant operand.
    pub k: u32,
}

impl CbpfInsn {
    /// An instruction from its fields.
    pub const fn new(code: u16, jt: u8, jf: u8, k: u32) -> CbpfInsn {
        CbpfInsn { code, jt, jf, k }
    }
}

/// Classic BPF opcode fields (`<pcap/bpf.h>`).
pub mod cbpf {
    /// Instruction classes.
    pub const LD: u16 = 0x00;
    pub const LDX: u16 = 0x01;
    pub const ST: u16 = 0x02;
    pub const STX: u16 = 0x03;
    pub const ALU: u16 = 0x04;
    pub const JMP: u16 = 0x05;
    pub const RET: u16 = 0x06;
    pub const MISC: u16 = 0x07;
    /// Load sizes.
    pub const W: u16 = 0x00;
    pub const H: u16 = 0x08;
    pub const B: u16 = 0x10;
    /// Load modes.
    pub const IMM: u16 = 0x00;
    pub const ABS: u16 = 0x20;
    pub const IND: u16 = 0x40;
    pub const MEM: u16 = 0x60;
    pub const LEN: u16 = 0x80;
    pub const MSH: u16 = 0xa0;
    /// ALU operations.
    pub const ADD: u16 = 0x00;
    pub const SUB: u16 = 0x10;
    pub const MUL: u16 = 0x20;
    pub const DIV: u16 = 0x30;
    pub const OR: u16 = 0x40;
    pub const AND: u16 = 0x50;
    pub const LSH: u16 = 0x60;
    pub const RSH: u16 = 0x70;
    pub const NEG: u16 = 0x80;
    pub const MOD: u16 = 0x90;
    pub const XOR: u16 = 0xa0;
    /// Jumps.
    pub const JA: u16 = 0x00;
    pub const JEQ: u16 = 0x10;
    pub const JGT: u16 = 0x20;
    pub const JGE: u16 = 0x30;
    pub const JSET: u16 = 0x40;
    /// Operand source: the constant or X.
    pub const K: u16 = 0x00;
    pub const X: u16 = 0x08;
    /// Return value source (K and X as above).
    pub const A: u16 = 0x10;
    /// Misc operations.
    pub const TAX: u16 = 0x00;
    pub const TXA: u16 = 0x80;
    /// Scratch memory words.
    pub const MEMWORDS: u32 = 16;
}

/// Why a classic program was not translated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConvertError {
    /// The program is empty or longer than classic BPF allows (4096 instructions).
    BadLength(usize),
    /// An opcode this translator (or classic BPF) does not know.
    UnknownOpcode {
        /// Index of the instruction.
        pc: usize,
        /// Its opcode.
        code: u16,
    },
    /// A jump past the end of the program.
    JumpOutOfRange {
        /// Index of the jump.
        pc: usize,
    },
    /// A scratch memory index outside `0..16`.
    BadMemoryIndex {
        /// Index of the instruction.
        pc: usize,
    },
    /// The last instruction is not a return, so control could run off the end.
    NoFinalReturn,
    /// The translation needs a jump longer than eBPF's 16-bit offsets.
    TooLong,
}

impl fmt::Display for ConvertError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            ConvertError::BadLength(n) => write!(f, "classic program of {n} instructions"),
            ConvertError::UnknownOpcode { pc, code } => {
                write!(f, "instruction {pc}: unknown opcode {code:#06x}")
            }
            ConvertError::JumpOutOfRange { pc } => write!(f, "instruction {pc}: jump past the end"),
            ConvertError::BadMemoryIndex { pc } => {
                write!(f, "instruction {pc}: scratch memory index out of range")
            }
            ConvertError::NoFinalReturn => write!(f, "the program does not end with a return"),
            ConvertError::TooLong => write!(f, "translation exceeds eBPF jump range"),
        }
    }
}

impl std::error::Error for ConvertError {}

/// One eBPF instruction (8 bytes once encoded).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EbpfInsn {
    /// Opcode.
    pub code: u8,
    /// Destination register.
    pub dst: u8,
    /// Source register.
    pub src: u8,
    /// Signed offset (memory displacement or jump distance).
    pub off: i16,
    /// Signed immediate.
    pub imm: i32,
}

impl EbpfInsn {
    /// The wire encoding: opcode, `src << 4 | dst`, offset and immediate little-endian.
    pub fn encode(&self) -> [u8; 8] {
        let off = self.off.to_le_bytes();
        let imm = self.imm.to_le_bytes();
        [
            self.code,
            (self.src << 4) | (self.dst & 0x0f),
            off[0],
            off[1],
            imm[0],
            imm[1],
            imm[2],
            imm[3],
        ]
    }
}

/// eBPF opcode fields (Linux `<linux/bpf.h>`).
pub mod ebpf {
    pub const LDX: u8 = 0x01;
    pub const STX: u8 = 0x03;
    pub const ALU: u8 = 0x04;
    pub const JMP: u8 = 0x05;
    pub const ALU64: u8 = 0x07;
    pub const W: u8 = 0x00;
    pub const H: u8 = 0x08;
    pub const B: u8 = 0x10;
    pub const MEM: u8 = 0x60;
    pub const K: u8 = 0x00;
    pub const X: u8 = 0x08;
    pub const ADD: u8 = 0x00;
    pub const SUB: u8 = 0x10;
    pub const MUL: u8 = 0x20;
    pub const DIV: u8 = 0x30;
    pub const OR: u8 = 0x40;
    pub const AND: u8 = 0x50;
    pub const LSH: u8 = 0x60;
    pub const RSH: u8 = 0x70;
    pub const NEG: u8 = 0x80;
    pub const MOD: u8 = 0x90;
    pub const XOR: u8 = 0xa0;
    pub const MOV: u8 = 0xb0;
    pub const END: u8 = 0xd0;
    pub const TO_BE: u8 = 0x08;
    pub const JA: u8 = 0x00;
    pub const JEQ: u8 = 0x10;
    pub const JGT: u8 = 0x20;
    pub const JGE: u8 = 0x30;
    pub const JSET: u8 = 0x40;
    pub const JNE: u8 = 0x50;
    pub const EXIT: u8 = 0x90;
    pub const JLT: u8 = 0xa0;
    pub const JLE: u8 = 0xb0;
}

/// Bytes before the packet data in a record.
pub const RECORD_HEADER_BYTES: usize = 8;

const R0_A: u8 = 0;
const R1_ARG: u8 = 1;
const R2_TMP: u8 = 2;
const R3_TMP: u8 = 3;
const R6_RECORD: u8 = 6;
const R7_X: u8 = 7;
const R8_CAPLEN: u8 = 8;
const R10_FP: u8 = 10;

/// Where a jump goes before offsets are known.
#[derive(Clone, Copy, Debug)]
enum Target {
    /// The first eBPF instruction of classic instruction `pc`.
    Classic(usize),
    /// The shared "return 0" block.
    Reject,
}

#[derive(Default)]
struct Emitter {
    insns: Vec<EbpfInsn>,
    fixups: Vec<(usize, Target)>,
    rejects: bool,
}

impl Emitter {
    fn push(&mut self, code: u8, dst: u8, src: u8, off: i16, imm: i32) {
        self.insns.push(EbpfInsn {
            code,
            dst,
            src,
            off,
            imm,
        });
    }

    fn jump(&mut self, code: u8, dst: u8, src: u8, imm: i32, target: Target) {
        if matches!(target, Target::Reject) {
            self.rejects = true;
        }
        self.fixups.push((self.insns.len(), target));
        self.push(code, dst, src, 0, imm);
    }

    fn mov32_imm(&mut self, dst: u8, value: u32) {
        self.push(ebpf::ALU | ebpf::MOV | ebpf::K, dst, 0, 0, value as i32);
    }

    fn mov32_reg(&mut self, dst: u8, src: u8) {
        self.push(ebpf::ALU | ebpf::MOV | ebpf::X, dst, src, 0, 0);
    }

    /// `if captured_len < need goto reject`, where `need` is a constant.
    fn check_constant(&mut self, need: u64) {
        if need > i32::MAX as u64 {
            // Captured lengths are below 2^31: this load always fails.
            self.jump(ebpf::JMP | ebpf::JA, 0, 0, 0, Target::Reject);
        } else {
            self.jump(
                ebpf::JMP | ebpf::JLT | ebpf::K,
                R8_CAPLEN,
                0,
                need as i32,
                Target::Reject,
            );
        }
    }

    /// Loads `width` bytes at packet offset `k` (constant) into `dst`, big-endian, checked.
    fn load_absolute(&mut self, dst: u8, size: u8, width: u32, k: u32) {
        let need = k as u64 + width as u64;
        self.check_constant(need);
        if need > i32::MAX as u64 {
            return;
        }
        let displacement = k as u64 + RECORD_HEADER_BYTES as u64;
        if displacement <= i16::MAX as u64 {
            self.push(
                ebpf::LDX | ebpf::MEM | size,
                dst,
                R6_RECORD,
                displacement as i16,
                0,
            );
        } else {
            self.push(ebpf::ALU64 | ebpf::MOV | ebpf::X, R3_TMP, R6_RECORD, 0, 0);
            self.push(ebpf::ALU64 | ebpf::ADD | ebpf::K, R3_TMP, 0, 0, k as i32);
            self.push(
                ebpf::LDX | ebpf::MEM | size,
                dst,
                R3_TMP,
                RECORD_HEADER_BYTES as i16,
                0,
            );
        }
        self.swap_to_big_endian(dst, width);
    }

    /// Loads `width` bytes at packet offset `X + k` into A, big-endian, checked in 64-bit
    /// arithmetic (so `X + k` cannot wrap, as libpcap refuses the wrapping case too).
    fn load_indirect(&mut self, size: u8, width: u32, k: u32) {
        // r2 = X + k
        self.push(ebpf::ALU64 | ebpf::MOV | ebpf::X, R2_TMP, R7_X, 0, 0);
        if k <= i32::MAX as u32 {
            if k != 0 {
                self.push(ebpf::ALU64 | ebpf::ADD | ebpf::K, R2_TMP, 0, 0, k as i32);
            }
        } else {
            self.mov32_imm(R3_TMP, k);
            self.push(ebpf::ALU64 | ebpf::ADD | ebpf::X, R2_TMP, R3_TMP, 0, 0);
        }
        // r3 = X + k + width; reject when it exceeds the captured length.
        self.push(ebpf::ALU64 | ebpf::MOV | ebpf::X, R3_TMP, R2_TMP, 0, 0);
        self.push(
            ebpf::ALU64 | ebpf::ADD | ebpf::K,
            R3_TMP,
            0,
            0,
            width as i32,
        );
        self.jump(
            ebpf::JMP | ebpf::JGT | ebpf::X,
            R3_TMP,
            R8_CAPLEN,
            0,
            Target::Reject,
        );
        // r3 = record + X + k; A = *(r3 + 8)
        self.push(ebpf::ALU64 | ebpf::MOV | ebpf::X, R3_TMP, R6_RECORD, 0, 0);
        self.push(ebpf::ALU64 | ebpf::ADD | ebpf::X, R3_TMP, R2_TMP, 0, 0);
        self.push(
            ebpf::LDX | ebpf::MEM | size,
            R0_A,
            R3_TMP,
            RECORD_HEADER_BYTES as i16,
            0,
        );
        self.swap_to_big_endian(R0_A, width);
    }

    fn swap_to_big_endian(&mut self, dst: u8, width: u32) {
        if width > 1 {
            self.push(
                ebpf::ALU | ebpf::END | ebpf::TO_BE,
                dst,
                0,
                0,
                (width * 8) as i32,
            );
        }
    }
}

fn scratch_offset(index: u32) -> i16 {
    -(4 * (cbpf::MEMWORDS as i16)) + 4 * index as i16
}

fn load_size(code: u16) -> Option<(u8, u32)> {
    match code & 0x18 {
        cbpf::W => Some((ebpf::W, 4)),
        cbpf::H => Some((ebpf::H, 2)),
        cbpf::B => Some((ebpf::B, 1)),
        _ => None,
    }
}

fn alu_op(op: u16) -> Option<u8> {
    Some(match op {
        cbpf::ADD => ebpf::ADD,
        cbpf::SUB => ebpf::SUB,
        cbpf::MUL => ebpf::MUL,
        cbpf::DIV => ebpf::DIV,
        cbpf::OR => ebpf::OR,
        cbpf::AND => ebpf::AND,
        cbpf::LSH => ebpf::LSH,
        cbpf::RSH => ebpf::RSH,
        cbpf::MOD => ebpf::MOD,
        cbpf::XOR => ebpf::XOR,
        _ => return None,
    })
}

/// Translates a classic program into eBPF instructions over a packet record (see the module
/// documentation). The classic program is checked as the kernel's `bpf_check_classic` would:
/// known opcodes, jumps inside the program, scratch indices in range, a final return.
pub fn convert(program: &[CbpfInsn]) -> Result<Vec<EbpfInsn>, ConvertError> {
    use cbpf::*;
    let len = program.len();
    if len == 0 || len > 4096 {
        return Err(ConvertError::BadLength(len));
    }
    if program[len - 1].code & 0x07 != RET {
        return Err(ConvertError::NoFinalReturn);
    }
    let unknown = |pc: usize, code: u16| ConvertError::UnknownOpcode { pc, code };
    let mut out = Emitter::default();

    // Prologue: keep the record, load the captured length, A = X = 0, zero the scratch words
    // the program reads (classic BPF leaves them undefined; zero keeps verifiers content).
    out.push(ebpf::ALU64 | ebpf::MOV | ebpf::X, R6_RECORD, R1_ARG, 0, 0);
    out.push(ebpf::LDX | ebpf::MEM | ebpf::W, R8_CAPLEN, R6_RECORD, 0, 0);
    out.mov32_imm(R0_A, 0);
    out.mov32_imm(R7_X, 0);
    let mut zeroed = [false; MEMWORDS as usize];
    for (pc, insn) in program.iter().enumerate() {
        let class = insn.code & 0x07;
        let reads_memory = (class == LD || class == LDX) && insn.code & 0xe0 == MEM;
        if reads_memory || class == ST || class == STX {
            if insn.k >= MEMWORDS {
                return Err(ConvertError::BadMemoryIndex { pc });
            }
            if reads_memory && !zeroed[insn.k as usize] {
                zeroed[insn.k as usize] = true;
                out.mov32_imm(R2_TMP, 0);
                out.push(
                    ebpf::STX | ebpf::MEM | ebpf::W,
                    R10_FP,
                    R2_TMP,
                    scratch_offset(insn.k),
                    0,
                );
            }
        }
    }

    let mut starts = Vec::with_capacity(len);
    for (pc, insn) in program.iter().enumerate() {
        starts.push(out.insns.len());
        let code = insn.code;
        let k = insn.k;
        let target = |offset: u32| -> Result<Target, ConvertError> {
            let to = pc + 1 + offset as usize;
            if to >= len {
                Err(ConvertError::JumpOutOfRange { pc })
            } else {
                Ok(Target::Classic(to))
            }
        };
        match code & 0x07 {
            LD => match code & 0xe0 {
                ABS => {
                    let (size, width) = load_size(code).ok_or(unknown(pc, code))?;
                    out.load_absolute(R0_A, size, width, k);
                }
                IND => {
                    let (size, width) = load_size(code).ok_or(unknown(pc, code))?;
                    out.load_indirect(size, width, k);
                }
                LEN if code & 0x18 == W => {
                    out.push(ebpf::LDX | ebpf::MEM | ebpf::W, R0_A, R6_RECORD, 4, 0);
                }
                IMM if code & 0x18 == W => out.mov32_imm(R0_A, k),
                MEM if code & 0x18 == W => {
                    out.push(
                        ebpf::LDX | ebpf::MEM | ebpf::W,
                        R0_A,
                        R10_FP,
                        scratch_offset(k),
                        0,
                    );
                }
                _ => return Err(unknown(pc, code)),
            },
            LDX => match code & 0xe0 {
                IMM if code & 0x18 == W => out.mov32_imm(R7_X, k),
                LEN if code & 0x18 == W => {
                    out.push(ebpf::LDX | ebpf::MEM | ebpf::W, R7_X, R6_RECORD, 4, 0);
                }
                MEM if code & 0x18 == W => {
                    out.push(
                        ebpf::LDX | ebpf::MEM | ebpf::W,
                        R7_X,
                        R10_FP,
                        scratch_offset(k),
                        0,
                    );
                }
                MSH if code & 0x18 == B => {
                    // X = 4 * (P[k] & 0xf), in 64-bit operations (the byte is zero-extended, so
                    // the result is the same): DPDK 22.11's verifier bounds a 32-bit AND wrongly
                    // (its `eval_umax_bits` assumes 64-bit operands) and would then refuse the
                    // indirect load that uses X.
                    out.load_absolute(R7_X, ebpf::B, 1, k);
                    out.push(ebpf::ALU64 | ebpf::AND | ebpf::K, R7_X, 0, 0, 0x0f);
                    out.push(ebpf::ALU64 | ebpf::LSH | ebpf::K, R7_X, 0, 0, 2);
                }
                _ => return Err(unknown(pc, code)),
            },
            ST if code == ST => {
                out.push(
                    ebpf::STX | ebpf::MEM | ebpf::W,
                    R10_FP,
                    R0_A,
                    scratch_offset(k),
                    0,
                );
            }
            STX if code == STX => {
                out.push(
                    ebpf::STX | ebpf::MEM | ebpf::W,
                    R10_FP,
                    R7_X,
                    scratch_offset(k),
                    0,
                );
            }
            ALU => {
                let op = code & 0xf0;
                if op == NEG {
                    if code != ALU | NEG {
                        return Err(unknown(pc, code));
                    }
                    out.push(ebpf::ALU | ebpf::NEG, R0_A, 0, 0, 0);
                    continue;
                }
                let eop = alu_op(op).ok_or(unknown(pc, code))?;
                let divides = op == DIV || op == MOD;
                match code & 0x08 {
                    K => {
                        if divides && k == 0 {
                            // Division by a zero constant: the program returns 0 here.
                            out.jump(ebpf::JMP | ebpf::JA, 0, 0, 0, Target::Reject);
                        } else {
                            out.push(ebpf::ALU | eop | ebpf::K, R0_A, 0, 0, k as i32);
                        }
                    }
                    _ => {
                        if divides {
                            out.jump(ebpf::JMP | ebpf::JEQ | ebpf::K, R7_X, 0, 0, Target::Reject);
                        }
                        out.push(ebpf::ALU | eop | ebpf::X, R0_A, R7_X, 0, 0);
                    }
                }
            }
            JMP => {
                let op = code & 0xf0;
                if op == JA {
                    if code != JMP | JA {
                        return Err(unknown(pc, code));
                    }
                    let to = target(k)?;
                    out.jump(ebpf::JMP | ebpf::JA, 0, 0, 0, to);
                    continue;
                }
                let (taken, not_taken) = match op {
                    JEQ => (ebpf::JEQ, Some(ebpf::JNE)),
                    JGT => (ebpf::JGT, Some(ebpf::JLE)),
                    JGE => (ebpf::JGE, Some(ebpf::JLT)),
                    JSET => (ebpf::JSET, None),
                    _ => return Err(unknown(pc, code)),
                };
                let on_true = target(insn.jt as u32)?;
                let on_false = target(insn.jf as u32)?;
                // The operand: X, an immediate, or r2 for constants that sign extension would
                // change (except for JSET, where A's zero upper half makes it harmless).
                // DPDK 22.11's x86 JIT encodes `jset dst, imm` as `test r/m64, imm32` but emits
                // only one immediate byte when the constant fits in a signed byte, so the code
                // after it is garbage; such constants go through r2 as well.
                let small = (k as i32) == i32::from(k as i32 as i8);
                let (source, src_reg, imm) = if code & 0x08 == X {
                    (ebpf::X, R7_X, 0)
                } else if (k <= i32::MAX as u32 && op != JSET) || (op == JSET && !small) {
                    (ebpf::K, 0, k as i32)
                } else {
                    out.mov32_imm(R2_TMP, k);
                    (ebpf::X, R2_TMP, 0)
                };
                match (insn.jt, insn.jf, not_taken) {
                    (0, 0, _) => {}
                    (0, _, Some(inverse)) => {
                        out.jump(ebpf::JMP | inverse | source, R0_A, src_reg, imm, on_false);
                    }
                    _ => {
                        out.jump(ebpf::JMP | taken | source, R0_A, src_reg, imm, on_true);
                        if insn.jf != 0 {
                            out.jump(ebpf::JMP | ebpf::JA, 0, 0, 0, on_false);
                        }
                    }
                }
            }
            RET => {
                // `ret x` is in <pcap/bpf.h> but neither libpcap's interpreter nor Linux runs it.
                match code {
                    c if c == RET | K => out.mov32_imm(R0_A, k),
                    c if c == RET | A => {}
                    _ => return Err(unknown(pc, code)),
                }
                out.push(ebpf::JMP | ebpf::EXIT, 0, 0, 0, 0);
            }
            MISC => match code & 0xf8 {
                TAX => out.mov32_reg(R7_X, R0_A),
                TXA => out.mov32_reg(R0_A, R7_X),
                _ => return Err(unknown(pc, code)),
            },
            _ => return Err(unknown(pc, code)),
        }
    }

    let reject_at = out.insns.len();
    if out.rejects {
        out.mov32_imm(R0_A, 0);
        out.push(ebpf::JMP | ebpf::EXIT, 0, 0, 0, 0);
    }
    let Emitter {
        mut insns, fixups, ..
    } = out;
    for (at, target) in fixups {
        let to = match target {
            Target::Classic(pc) => starts[pc],
            Target::Reject => reject_at,
        };
        let offset = to as i64 - (at as i64 + 1);
        insns[at].off = i16::try_from(offset).map_err(|_| ConvertError::TooLong)?;
    }
    Ok(insns)
}

/// The encoded program, as rbpf and rte_bpf take it.
pub fn encode(program: &[EbpfInsn]) -> Vec<u8> {
    program.iter().flat_map(|insn| insn.encode()).collect()
}

/// Lays out a packet record (see the module documentation) for `data` seen on the wire as
/// `wire_len` bytes.
pub fn packet_record(data: &[u8], wire_len: u32) -> Vec<u8> {
    let mut record = Vec::with_capacity(RECORD_HEADER_BYTES + data.len());
    record.extend_from_slice(&(data.len() as u32).to_le_bytes());
    record.extend_from_slice(&wire_len.to_le_bytes());
    record.extend_from_slice(data);
    record
}

#[cfg(test)]
mod tests {
    #![allow(unsafe_code)]

    use super::*;
    use crate::bench::engines::dpdk::RteBpf;
    use crate::bench::engines::libpcap::PcapCompiler;
    use crate::synth::{SynthConfig, generate};

    /// libpcap's verdict on `data` seen as `wire_len` bytes on the wire.
    fn libpcap_verdict(program: &[CbpfInsn], data: &[u8], wire_len: u32) -> u32 {
        crate::bench::engines::libpcap::interpret(program, data, wire_len)
            .expect("libpcap accepts every program here")
    }

    /// rbpf's interpreter, which checks every memory access against the record and the stack.
    fn rbpf_interpreted(program: &[u8], record: &mut [u8]) -> u64 {
        let vm = rbpf::EbpfVmRaw::new(Some(program)).expect("rbpf verifier accepts");
        vm.execute_program(record).expect("in-bounds execution")
    }

    fn rbpf_jit(program: &[u8], record: &mut [u8]) -> u64 {
        let vm = crate::bench::engines::rbpf::load(program).expect("rbpf jit");
        // SAFETY: `program` is a `convert` output, `record` a whole record.
        unsafe { crate::bench::engines::rbpf::run_jit(&vm, record) }
    }

    /// Packets to judge: a synthetic trace, and truncations of some of its packets at the
    /// lengths where headers end (to exercise every bounds check).
    fn packets() -> Vec<Vec<u8>> {
        let trace = generate(&SynthConfig {
            packets: 600,
            flows: 60,
            ..SynthConfig::default()
        });
        let mut out: Vec<Vec<u8>> = trace.packets.iter().map(|p| p.data.clone()).collect();
        for p in trace.packets.iter().take(120) {
            for cut in [
                0, 1, 13, 14, 17, 22, 25, 33, 34, 37, 38, 41, 53, 54, 57, 58, 62,
            ] {
                if cut < p.data.len() {
                    out.push(p.data[..cut].to_vec());
                }
            }
        }
        out
    }

    const EXPRESSIONS: &[&str] = &[
        "ip",
        "ip6 and tcp",
        "tcp dst port 80",
        "udp port 53 or tcp port 443",
        "vlan and ip",
        "vlan and ip6 and udp",
        "ip[6:2] & 0x1fff = 0",
        "tcp[tcpflags] & (tcp-push|tcp-ack) != 0",
        "ip[2:2] - ((ip[0] & 0xf) << 2) > 40",
        "ip[2:2] / 4 > 100 and ip[2:2] % 7 = 3",
        "ip[2:2] * 3 > 600",
        "(ip[2:2] >> 2) & 1 = 1 or ip[0] ^ 0x45 = 0",
        "ip[2:2] / ip[8] > 1",
        "ip[2:2] % (ip[8] - 64) = 1",
        "len > 300 or less 70",
        "ether[0] & 1 = 0 and ether[12:2] > 0x0600",
        "ip[16:4] > 0xc0a80120",
        "ip[12:4] & 0xff000000 = 0x0a000000 and not ip[19] > 0x80",
        "-ip[2:2] > 4294967000",
        "udp[4:2] > 100 or tcp[12] & 0xf0 > 0x50",
        "ip6[40:2] > 30000 or ip6[6] = 17",
    ];

    fn flow_expressions() -> Vec<String> {
        let trace = generate(&SynthConfig {
            packets: 10,
            flows: 40,
            ..SynthConfig::default()
        });
        trace.flows.iter().map(|f| f.expression()).collect()
    }

    /// For every expression and packet: libpcap's bpf_filter, rbpf's interpreter and JIT, and
    /// (when installed) DPDK's JIT give the same verdict.
    #[test]
    fn translations_agree_with_libpcap_on_synthetic_packets() {
        let compiler = PcapCompiler::ethernet().unwrap();
        let dpdk = RteBpf::open().ok();
        if dpdk.is_none() {
            eprintln!("note: DPDK's librte_bpf not installed, checking rbpf only");
        }
        let packets = packets();
        let mut expressions: Vec<String> = EXPRESSIONS.iter().map(|e| e.to_string()).collect();
        expressions.extend(flow_expressions());
        let mut accepted = 0usize;
        let mut judged = 0usize;
        for expression in &expressions {
            let classic = compiler.compile(expression).unwrap().instructions;
            let ebpf = convert(&classic).unwrap_or_else(|e| panic!("{expression}: {e}"));
            let bytes = encode(&ebpf);
            let jit = crate::bench::engines::rbpf::load(&bytes).unwrap();
            let rte = dpdk.as_ref().map(|d| {
                d.load(&ebpf)
                    .unwrap_or_else(|e| panic!("{expression}: rte_bpf: {e}"))
            });
            for data in &packets {
                // Wire length above the capture for some packets: `len` reads the wire length.
                let wire_len = data.len() as u32 + (data.len() as u32 % 3) * 10;
                let expected = libpcap_verdict(&classic, data, wire_len);
                let mut record = packet_record(data, wire_len);
                let interpreted = rbpf_interpreted(&bytes, &mut record);
                // SAFETY: `convert` output on a whole record.
                let compiled = unsafe { crate::bench::engines::rbpf::run_jit(&jit, &mut record) };
                assert_eq!(
                    interpreted, expected as u64,
                    "{expression}: rbpf interpreter on {data:02x?}"
                );
                assert_eq!(compiled, expected as u64, "{expression}: rbpf jit");
                if let Some(rte) = &rte {
                    // SAFETY: `record` was laid out whole by `packet_record`.
                    let dpdk_verdict = unsafe { rte.run(&record) };
                    assert_eq!(dpdk_verdict, expected as u64, "{expression}: rte_bpf");
                }
                accepted += usize::from(expected != 0);
                judged += 1;
            }
        }
        // The set is not trivially all-accept or all-reject.
        assert!(accepted > judged / 20 && accepted < judged - judged / 20);
    }

    fn run_all(program: &[CbpfInsn], data: &[u8], wire_len: u32) -> (u32, u64, u64) {
        let bytes = encode(&convert(program).unwrap());
        let mut record = packet_record(data, wire_len);
        (
            libpcap_verdict(program, data, wire_len),
            rbpf_interpreted(&bytes, &mut record),
            rbpf_jit(&bytes, &mut record),
        )
    }

    use super::cbpf::*;

    fn insn(code: u16, jt: u8, jf: u8, k: u32) -> CbpfInsn {
        CbpfInsn::new(code, jt, jf, k)
    }

    /// Hand-written programs for what libpcap's compiler rarely emits: large constants,
    /// division by a zero X, scratch memory, returns of A, wire length apart from the
    /// captured length, indirect loads past the end.
    #[test]
    fn corner_cases_agree_with_libpcap() {
        let data: Vec<u8> = (0..64u8).map(|b| b.wrapping_mul(37)).collect();
        let programs: Vec<Vec<CbpfInsn>> = vec![
            // A = 0xfffffff0; if A > 0xffffff00 ret 7 else ret 9
            vec![
                insn(LD | IMM, 0, 0, 0xffff_fff0),
                insn(JMP | JGT | K, 0, 1, 0xffff_ff00),
                insn(RET | K, 0, 0, 7),
                insn(RET | K, 0, 0, 9),
            ],
            // jeq #0xffffffff after A = -1 via NEG of 1
            vec![
                insn(LD | IMM, 0, 0, 1),
                insn(ALU | NEG, 0, 0, 0),
                insn(JMP | JEQ | K, 0, 1, 0xffff_ffff),
                insn(RET | K, 0, 0, 1),
                insn(RET | K, 0, 0, 2),
            ],
            // A / X with X = 0 returns 0.
            vec![
                insn(LD | IMM, 0, 0, 100),
                insn(LDX | IMM, 0, 0, 0),
                insn(ALU | DIV | X, 0, 0, 0),
                insn(RET | K, 0, 0, 5),
            ],
            // A % X with X = 7; scratch memory; ret A.
            vec![
                insn(LD | W | ABS, 0, 0, 4),
                insn(ST, 0, 0, 3),
                insn(LDX | IMM, 0, 0, 7),
                insn(ALU | MOD | X, 0, 0, 0),
                insn(STX, 0, 0, 15),
                insn(LDX | MEM, 0, 0, 3),
                insn(MISC | TXA, 0, 0, 0),
                insn(ALU | XOR | K, 0, 0, 0x8000_0001),
                insn(RET | A, 0, 0, 0),
            ],
            // X = wire length, A = captured bytes at X - 60 (indirect), ret X or 0.
            vec![
                insn(LDX | W | LEN, 0, 0, 0),
                insn(MISC | TXA, 0, 0, 0),
                insn(ALU | SUB | K, 0, 0, 60),
                insn(MISC | TAX, 0, 0, 0),
                insn(LD | H | IND, 0, 0, 0),
                insn(MISC | TXA, 0, 0, 0),
                insn(RET | A, 0, 0, 0),
            ],
            // Indirect load with a huge offset: X + k wraps in 32 bits, must fail.
            vec![
                insn(LDX | IMM, 0, 0, 8),
                insn(LD | B | IND, 0, 0, 0xffff_fffa),
                insn(RET | K, 0, 0, 3),
            ],
            // MSH, JSET with a high bit, JGE with X, JA.
            vec![
                insn(LDX | B | MSH, 0, 0, 14),
                insn(LD | W | ABS, 0, 0, 26),
                insn(JMP | JSET | K, 0, 1, 0x8000_0000),
                insn(JMP | JA, 0, 0, 1),
                insn(RET | K, 0, 0, 0),
                insn(JMP | JGE | X, 0, 1, 0),
                insn(RET | K, 0, 0, 11),
                insn(RET | K, 0, 0, 12),
            ],
            // Shifts and multiplication by X, a load at the last byte and one past it.
            vec![
                insn(LD | B | ABS, 0, 0, 63),
                insn(LDX | IMM, 0, 0, 3),
                insn(ALU | LSH | X, 0, 0, 0),
                insn(ALU | MUL | X, 0, 0, 0),
                insn(ALU | RSH | K, 0, 0, 1),
                insn(ALU | AND | K, 0, 0, 0xffff),
                insn(ALU | OR | K, 0, 0, 0x1_0000),
                insn(MISC | TAX, 0, 0, 0),
                insn(LD | B | ABS, 0, 0, 64),
                insn(MISC | TXA, 0, 0, 0),
                insn(RET | A, 0, 0, 0),
            ],
        ];
        for (i, program) in programs.iter().enumerate() {
            for (len, wire) in [(64, 64), (64, 200), (40, 90), (10, 10), (0, 70)] {
                let (expected, interpreted, jitted) = run_all(program, &data[..len], wire);
                assert_eq!(interpreted, expected as u64, "program {i}, {len}/{wire}");
                assert_eq!(jitted, expected as u64, "program {i} jit, {len}/{wire}");
            }
        }
    }

    #[test]
    fn malformed_classic_programs_are_refused() {
        assert_eq!(convert(&[]), Err(ConvertError::BadLength(0)));
        assert_eq!(
            convert(&[insn(LD | IMM, 0, 0, 1)]),
            Err(ConvertError::NoFinalReturn)
        );
        assert_eq!(
            convert(&[insn(JMP | JEQ | K, 0, 5, 1), insn(RET | K, 0, 0, 0)]),
            Err(ConvertError::JumpOutOfRange { pc: 0 })
        );
        assert_eq!(
            convert(&[insn(ST, 0, 0, 16), insn(RET | K, 0, 0, 0)]),
            Err(ConvertError::BadMemoryIndex { pc: 0 })
        );
        assert_eq!(
            convert(&[insn(0xff, 0, 0, 0), insn(RET | K, 0, 0, 0)]),
            Err(ConvertError::UnknownOpcode { pc: 0, code: 0xff })
        );
        assert_eq!(
            convert(&[insn(RET | X, 0, 0, 0)]),
            Err(ConvertError::UnknownOpcode { pc: 0, code: 0x0e })
        );
    }

    #[test]
    fn encoding_matches_the_ebpf_wire_format() {
        let insn = EbpfInsn {
            code: 0x61,
            dst: 8,
            src: 6,
            off: -2,
            imm: 0x1234_5678,
        };
        assert_eq!(
            insn.encode(),
            [0x61, 0x68, 0xfe, 0xff, 0x78, 0x56, 0x34, 0x12]
        );
        assert_eq!(packet_record(&[9], 70), vec![1, 0, 0, 0, 70, 0, 0, 0, 9]);
    }
}
