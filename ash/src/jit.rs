//! The JIT: a verified handler compiled to x86_64 with `dynasm!` into the emitter dpf uses
//! (`x86-emitter`), and the safe half of running it.
//!
//! The generated function follows the System V ABI, `extern "sysv64" fn(frame: *mut Frame) ->
//! u64`, and keeps the handler's registers in the [`Frame`]. Control flow (branches, length
//! guards, loops with their counters), register moves, arithmetic and packet loads are
//! compiled inline, every packet load checked against the captured length; everything that
//! touches the scratch area, the reply buffer, regions or the host (stores, other loads,
//! ones'-complement adds and calls) is a *service call* back into the interpreter's own
//! definition of that instruction ([`Service::serve`]), so both engines mean the same by
//! construction and differ only in how they get from one instruction to the next. The
//! generated code also counts cost units as the interpreter does, and aborts a run that would
//! exceed the proven cost (as the interpreter does): a wrong proof or a wrong engine costs a
//! counted abort, never an endless loop in the kernel.
//!
//! Mapping the code executable and calling it needs `unsafe`, which this crate forbids: the
//! caller (the kernel, or a host test) maps [`Compiled::code`], and passes [`run`] a closure
//! that calls it with the frame, after setting [`Frame::service`] to a trampoline that calls
//! [`Service::serve`] on the `Service` whose address it put in [`Frame::context`].
//!
//! Register use: `rbx` = the frame, `r12` = packet address, `r13` = captured length (all
//! callee-saved, pushed at entry); `rax`, `rcx`, `rdx`, `rsi`, `rdi` scratch.
#![forbid(unsafe_code)]

use alloc::vec::Vec;
use dynasm::dynasm;
use x86_emitter::{DynamicLabel, EmitError, Emitter};

use crate::interp::{self, AbortReason, Actions, Machine, Outcome, Run};
use crate::ir::{
    AluOp, ByteOrder, Cond, Insn, LoopCount, MAX_LOOP_DEPTH, Mem, Operand, REGISTER_COUNT, Reg,
    Space, Verdict, Width,
};
use crate::verify::{Handler, insn_cost};

/// What the generated code and its service calls share.
#[repr(C)]
#[derive(Clone, Debug)]
pub struct Frame {
    /// The handler's registers.
    pub regs: [u64; REGISTER_COUNT as usize],
    /// Address of the packet's first byte.
    pub packet: u64,
    /// Captured length.
    pub packet_len: u64,
    /// Cost units taken so far.
    pub cost: u64,
    /// Iterations left of each open loop, by depth.
    pub loops: [u64; MAX_LOOP_DEPTH],
    /// Address of the service trampoline: `extern "sysv64" fn(frame: *mut Frame, index: u64)
    /// -> u64`, returning 0 to go on or an encoded abort.
    pub service: u64,
    /// The executor's: the address of the [`Service`] the trampoline serves.
    pub context: u64,
}

const REGS: i32 = 0;
const PACKET: i32 = 8 * REGISTER_COUNT as i32;
const PACKET_LEN: i32 = PACKET + 8;
const COST: i32 = PACKET_LEN + 8;
const LOOPS: i32 = COST + 8;
const SERVICE: i32 = LOOPS + 8 * MAX_LOOP_DEPTH as i32;

const fn reg_offset(reg: Reg) -> i32 {
    REGS + 8 * reg.0 as i32
}

/// Results with this bit are aborts: `ABORT | index << 8 | reason code`.
const ABORT: u64 = 1 << 63;

const fn reason_code(reason: AbortReason) -> u64 {
    match reason {
        AbortReason::PacketBounds => 1,
        AbortReason::RegionBounds => 2,
        AbortReason::Misaligned => 3,
        AbortReason::NotSwappable => 4,
        AbortReason::ReplyLength => 5,
        AbortReason::TooManyReplies => 6,
        AbortReason::HostFault => 7,
        AbortReason::Unverified => 8,
        AbortReason::OverBudget => 9,
    }
}

fn reason_of(code: u64) -> AbortReason {
    match code {
        1 => AbortReason::PacketBounds,
        2 => AbortReason::RegionBounds,
        3 => AbortReason::Misaligned,
        4 => AbortReason::NotSwappable,
        5 => AbortReason::ReplyLength,
        6 => AbortReason::TooManyReplies,
        7 => AbortReason::HostFault,
        9 => AbortReason::OverBudget,
        _ => AbortReason::Unverified,
    }
}

fn encode_abort(index: usize, reason: AbortReason) -> u64 {
    ABORT | ((index as u64 & 0xffff_ffff) << 8) | reason_code(reason)
}

/// What the generated function returned, as an outcome.
fn decode(result: u64) -> Outcome {
    if result & ABORT != 0 {
        Outcome::Abort {
            index: ((result >> 8) & 0xffff_ffff) as usize,
            reason: reason_of(result & 0xff),
        }
    } else {
        match result {
            0 => Outcome::Exit(Verdict::Consume),
            1 => Outcome::Exit(Verdict::Deliver),
            2 => Outcome::Exit(Verdict::Drop),
            _ => Outcome::Abort {
                index: 0,
                reason: AbortReason::Unverified,
            },
        }
    }
}

/// Generated code, not yet executable.
#[derive(Clone, Debug)]
pub struct Compiled {
    code: Vec<u8>,
}

impl Compiled {
    /// The function's bytes; it starts at offset 0.
    pub fn code(&self) -> &[u8] {
        &self.code
    }
}

/// Per-loop labels: where the body starts, the back edge at its end, what follows the back
/// edge.
#[derive(Clone, Copy)]
struct LoopLabels {
    start: usize,
    end: usize,
    depth: usize,
    back: DynamicLabel,
    after: DynamicLabel,
}

struct Generator<'a> {
    ops: Emitter,
    code: &'a [Insn],
    plain: Vec<DynamicLabel>,
    loops: Vec<LoopLabels>,
    /// Loops (indices into `loops`) containing each instruction, outermost first.
    enclosing: Vec<Vec<usize>>,
    aborts: Vec<(DynamicLabel, u64)>,
    exit: DynamicLabel,
    /// The handler's proven cost.
    budget: u64,
}

impl Generator<'_> {
    /// The label a jump from `from` to `target` goes to: the back edge of the innermost loop
    /// around `from` that ends at `target`, or the instruction itself.
    fn target(&self, from: usize, target: usize) -> DynamicLabel {
        self.enclosing[from]
            .iter()
            .rev()
            .map(|&l| self.loops[l])
            .find(|l| l.end == target)
            .map_or(self.plain[target], |l| l.back)
    }

    fn abort_label(&mut self, index: usize, reason: AbortReason) -> DynamicLabel {
        let label = self.ops.new_dynamic_label();
        self.aborts.push((label, encode_abort(index, reason)));
        label
    }

    fn load_operand(&mut self, operand: Operand) {
        match operand {
            Operand::Reg(reg) => {
                dynasm!(self.ops ; .arch x64 ; mov rcx, QWORD [rbx + reg_offset(reg)]);
            }
            Operand::Imm(value) => {
                dynasm!(self.ops ; .arch x64 ; mov rcx, QWORD value as i64);
            }
        }
    }

    fn service(&mut self, index: usize) {
        dynasm!(self.ops
            ; .arch x64
            ; mov rdi, rbx
            ; mov rsi, QWORD index as i64
            ; call QWORD [rbx + SERVICE]
            ; test rax, rax
            ; jnz =>self.exit
        );
    }

    fn packet_load(&mut self, index: usize, dst: Reg, width: Width, order: ByteOrder, mem: Mem) {
        match mem.base {
            Some(base) => {
                dynasm!(self.ops
                    ; .arch x64
                    ; mov rax, QWORD [rbx + reg_offset(base)]
                    ; mov rcx, QWORD i64::from(mem.offset)
                    ; add rax, rcx
                );
            }
            None => {
                dynasm!(self.ops ; .arch x64 ; mov rax, QWORD i64::from(mem.offset));
            }
        }
        let out = self.abort_label(index, AbortReason::PacketBounds);
        // In bounds when len >= width and address <= len - width (no overflow either way).
        dynasm!(self.ops
            ; .arch x64
            ; mov rcx, r13
            ; sub rcx, width.bytes() as i32
            ; jb =>out
            ; cmp rax, rcx
            ; ja =>out
        );
        match width {
            Width::B1 => dynasm!(self.ops ; .arch x64 ; movzx eax, BYTE [r12 + rax]),
            Width::B2 => {
                dynasm!(self.ops ; .arch x64 ; movzx eax, WORD [r12 + rax]);
                if order == ByteOrder::Big {
                    dynasm!(self.ops ; .arch x64 ; ror ax, 8);
                }
            }
            Width::B4 => {
                dynasm!(self.ops ; .arch x64 ; mov eax, DWORD [r12 + rax]);
                if order == ByteOrder::Big {
                    dynasm!(self.ops ; .arch x64 ; bswap eax);
                }
            }
            Width::B8 => {
                dynasm!(self.ops ; .arch x64 ; mov rax, QWORD [r12 + rax]);
                if order == ByteOrder::Big {
                    dynasm!(self.ops ; .arch x64 ; bswap rax);
                }
            }
        }
        dynasm!(self.ops ; .arch x64 ; mov QWORD [rbx + reg_offset(dst)], rax);
    }

    fn alu(&mut self, op: AluOp, dst: Reg, src: Operand) {
        dynasm!(self.ops ; .arch x64 ; mov rax, QWORD [rbx + reg_offset(dst)]);
        self.load_operand(src);
        match op {
            AluOp::Add => dynasm!(self.ops ; .arch x64 ; add rax, rcx),
            AluOp::Sub => dynasm!(self.ops ; .arch x64 ; sub rax, rcx),
            AluOp::Mul => dynasm!(self.ops ; .arch x64 ; imul rax, rcx),
            AluOp::And => dynasm!(self.ops ; .arch x64 ; and rax, rcx),
            AluOp::Or => dynasm!(self.ops ; .arch x64 ; or rax, rcx),
            AluOp::Xor => dynasm!(self.ops ; .arch x64 ; xor rax, rcx),
            AluOp::Shl => dynasm!(self.ops ; .arch x64 ; shl rax, cl),
            AluOp::Shr => dynasm!(self.ops ; .arch x64 ; shr rax, cl),
            AluOp::Div | AluOp::Mod => {
                // As the interpreter's checked division: a zero divisor (which the verifier
                // rules out) gives 0.
                let zero = self.ops.new_dynamic_label();
                let done = self.ops.new_dynamic_label();
                dynasm!(self.ops
                    ; .arch x64
                    ; test rcx, rcx
                    ; jz =>zero
                    ; xor edx, edx
                    ; div rcx
                );
                if op == AluOp::Mod {
                    dynasm!(self.ops ; .arch x64 ; mov rax, rdx);
                }
                dynasm!(self.ops
                    ; .arch x64
                    ; jmp =>done
                    ; =>zero
                    ; xor eax, eax
                    ; =>done
                );
            }
            // Compiled as a service call (see `insn`).
            AluOp::OnesAdd => {}
        }
        dynasm!(self.ops ; .arch x64 ; mov QWORD [rbx + reg_offset(dst)], rax);
    }

    fn branch(&mut self, cond: Cond, a: Reg, b: Operand, label: DynamicLabel) {
        dynasm!(self.ops ; .arch x64 ; mov rax, QWORD [rbx + reg_offset(a)]);
        self.load_operand(b);
        if cond == Cond::AnyBits {
            dynasm!(self.ops ; .arch x64 ; test rax, rcx ; jnz =>label);
            return;
        }
        dynasm!(self.ops ; .arch x64 ; cmp rax, rcx);
        match cond {
            Cond::Eq => dynasm!(self.ops ; .arch x64 ; je =>label),
            Cond::Ne => dynasm!(self.ops ; .arch x64 ; jne =>label),
            Cond::Lt => dynasm!(self.ops ; .arch x64 ; jb =>label),
            Cond::Le => dynasm!(self.ops ; .arch x64 ; jbe =>label),
            Cond::Gt => dynasm!(self.ops ; .arch x64 ; ja =>label),
            Cond::Ge => dynasm!(self.ops ; .arch x64 ; jae =>label),
            Cond::AnyBits => {}
        }
    }

    fn insn(&mut self, index: usize) {
        let insn = self.code[index];
        // The budget, enforced: never more than the proven cost.
        let over = self.abort_label(index, AbortReason::OverBudget);
        dynasm!(self.ops
            ; .arch x64
            ; mov rax, QWORD [rbx + COST]
            ; add rax, insn_cost(&insn) as i32
            ; mov QWORD [rbx + COST], rax
            ; mov rcx, QWORD self.budget as i64
            ; cmp rax, rcx
            ; ja =>over
        );
        match insn {
            Insn::Mov { dst, src } => {
                self.load_operand(src);
                dynasm!(self.ops ; .arch x64 ; mov QWORD [rbx + reg_offset(dst)], rcx);
            }
            Insn::Alu {
                op: AluOp::OnesAdd, ..
            } => self.service(index),
            Insn::Alu { op, dst, src } => self.alu(op, dst, src),
            Insn::Load {
                dst,
                width,
                order,
                mem,
            } if mem.space == Space::Packet => self.packet_load(index, dst, width, order, mem),
            Insn::Load { .. } | Insn::Store { .. } | Insn::Call(_) => self.service(index),
            Insn::Jump { target } => {
                let label = self.target(index, usize::from(target));
                dynasm!(self.ops ; .arch x64 ; jmp =>label);
            }
            Insn::Branch { cond, a, b, target } => {
                let label = self.target(index, usize::from(target));
                self.branch(cond, a, b, label);
            }
            Insn::IfLenLess { length, target } => {
                let label = self.target(index, usize::from(target));
                dynasm!(self.ops
                    ; .arch x64
                    ; cmp r13, i32::from(length)
                    ; jb =>label
                );
            }
            Insn::Loop { count, .. } => {
                let Some(&own) = self.loops.iter().find(|l| l.start == index + 1) else {
                    return;
                };
                match count {
                    LoopCount::Times(times) => {
                        dynasm!(self.ops ; .arch x64 ; mov eax, i32::from(times));
                    }
                    LoopCount::Reg { reg, bound } => {
                        let bound = i32::from(bound.unwrap_or(0));
                        dynasm!(self.ops
                            ; .arch x64
                            ; mov rax, QWORD [rbx + reg_offset(reg)]
                            ; mov ecx, bound
                            ; cmp rax, rcx
                            ; cmova rax, rcx
                        );
                    }
                }
                dynasm!(self.ops
                    ; .arch x64
                    ; test rax, rax
                    ; jz =>own.after
                    ; mov QWORD [rbx + LOOPS + 8 * own.depth as i32], rax
                );
            }
            Insn::Exit(verdict) => {
                dynasm!(self.ops
                    ; .arch x64
                    ; mov eax, verdict as i32
                    ; jmp =>self.exit
                );
            }
        }
    }

    /// The back edges of the loops ending at `index`, innermost first.
    fn back_edges(&mut self, index: usize) {
        let mut ending: Vec<LoopLabels> = self
            .loops
            .iter()
            .copied()
            .filter(|l| l.end == index)
            .collect();
        ending.sort_by_key(|l| core::cmp::Reverse(l.start));
        for l in ending {
            let start = self.plain[l.start];
            dynasm!(self.ops
                ; .arch x64
                ; =>l.back
                ; sub QWORD [rbx + LOOPS + 8 * l.depth as i32], 1
                ; jnz =>start
                ; =>l.after
            );
        }
    }
}

/// Compiles a verified handler.
pub fn compile(handler: &Handler) -> Result<Compiled, EmitError> {
    let code = handler.code();
    let mut ops = Emitter::new();
    let plain: Vec<DynamicLabel> = (0..=code.len()).map(|_| ops.new_dynamic_label()).collect();
    let mut loops = Vec::new();
    let mut enclosing = Vec::with_capacity(code.len());
    let mut open: Vec<usize> = Vec::new();
    for (index, insn) in code.iter().enumerate() {
        while open.last().is_some_and(|&l: &usize| {
            let labels: &LoopLabels = &loops[l];
            labels.end <= index
        }) {
            open.pop();
        }
        enclosing.push(open.clone());
        if let Insn::Loop { body, .. } = insn {
            loops.push(LoopLabels {
                start: index + 1,
                end: index + 1 + usize::from(*body),
                depth: open.len(),
                back: ops.new_dynamic_label(),
                after: ops.new_dynamic_label(),
            });
            open.push(loops.len() - 1);
        }
    }
    let exit = ops.new_dynamic_label();
    let mut generator = Generator {
        ops,
        code,
        plain,
        loops,
        enclosing,
        aborts: Vec::new(),
        exit,
        budget: handler.cost(),
    };
    dynasm!(generator.ops
        ; .arch x64
        ; push rbx
        ; push r12
        ; push r13
        ; mov rbx, rdi
        ; mov r12, QWORD [rbx + PACKET]
        ; mov r13, QWORD [rbx + PACKET_LEN]
    );
    for index in 0..code.len() {
        generator.back_edges(index);
        let label = generator.plain[index];
        dynasm!(generator.ops ; .arch x64 ; =>label);
        generator.insn(index);
    }
    // Past the end (the verifier proves no path gets here).
    generator.back_edges(code.len());
    let label = generator.plain[code.len()];
    let unverified = encode_abort(code.len(), AbortReason::Unverified);
    dynasm!(generator.ops
        ; .arch x64
        ; =>label
        ; mov rax, QWORD unverified as i64
        ; jmp =>exit
    );
    for (label, encoded) in core::mem::take(&mut generator.aborts) {
        dynasm!(generator.ops
            ; .arch x64
            ; =>label
            ; mov rax, QWORD encoded as i64
            ; jmp =>exit
        );
    }
    dynasm!(generator.ops
        ; .arch x64
        ; =>exit
        ; pop r13
        ; pop r12
        ; pop rbx
        ; ret
    );
    Ok(Compiled {
        code: generator.ops.finish()?,
    })
}

/// What a service call works on: the run's state outside the frame.
pub struct Service<'a> {
    handler: &'a Handler,
    packet: &'a [u8],
    machine: &'a mut Machine,
    actions: &'a mut dyn Actions,
    run: Run,
}

impl core::fmt::Debug for Service<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Service").field("run", &self.run).finish()
    }
}

impl Service<'_> {
    /// Executes instruction `index` (a store, a load outside the packet, a ones'-complement
    /// add or a call) as the interpreter does, on the frame's registers; 0, or the encoded
    /// abort the generated code returns.
    pub fn serve(&mut self, frame: &mut Frame, index: u64) -> u64 {
        let index = usize::try_from(index).unwrap_or(usize::MAX);
        match interp::data_step(
            self.handler,
            self.packet,
            self.machine,
            self.actions,
            &mut frame.regs,
            &mut self.run,
            index,
        ) {
            Ok(()) => 0,
            Err(reason) => encode_abort(index, reason),
        }
    }
}

/// Runs compiled `handler` on `packet`: prepares the frame and the buffers as the interpreter
/// does, lets `enter` call the generated code (it sets [`Frame::service`] and
/// [`Frame::context`] and returns what the code returned), and reads the outcome.
pub fn run(
    handler: &Handler,
    packet: &[u8],
    machine: &mut Machine,
    actions: &mut dyn Actions,
    enter: impl FnOnce(&mut Frame, &mut Service<'_>) -> u64,
) -> Run {
    interp::begin(machine);
    let mut frame = Frame {
        regs: [0; REGISTER_COUNT as usize],
        packet: packet.as_ptr() as u64,
        packet_len: packet.len() as u64,
        cost: 0,
        loops: [0; MAX_LOOP_DEPTH],
        service: 0,
        context: 0,
    };
    frame.regs[0] = packet.len() as u64;
    let mut service = Service {
        handler,
        packet,
        machine,
        actions,
        run: interp::fresh_run(),
    };
    let outcome = if packet.len() < usize::from(handler.min_packet_len()) {
        Outcome::Abort {
            index: 0,
            reason: AbortReason::PacketBounds,
        }
    } else {
        decode(enter(&mut frame, &mut service))
    };
    Run {
        outcome,
        cost: frame.cost,
        ..service.run
    }
}
