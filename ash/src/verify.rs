//! The verifier: what turns an [`UnverifiedHandler`] into a [`Handler`], proving at bind time
//! that every run ends within its budget, touches only memory it may, reads no unwritten
//! register and never divides by zero.
//!
//! It works in four passes over the program: structure (registers, loops, jump targets, calls,
//! regions and rights), a data-flow fixpoint over the control-flow graph (which registers are
//! written, which are known non-zero, how long the packet is known to be), the checks that need
//! that state (reads, divisions, packet bounds), and the worst-case cost. Control flow goes
//! forward only; the one way back is the end of a [`Insn::Loop`] body, whose iteration count has
//! a static bound. Every refusal names where it is ([`At`]) and the [`Rule`] broken.
#![forbid(unsafe_code)]

use alloc::vec;
use alloc::vec::Vec;
use core::fmt;

use crate::ir::{
    AluOp, Call, Check, Cond, Insn, LENGTH_REGISTER, LoopCount, MAX_FRAME_BYTES, MAX_INSTRUCTIONS,
    MAX_LOOP_DEPTH, MAX_LOOP_ITERATIONS, MAX_REGION_BYTES, MAX_REGIONS, Mem, Operand,
    REGISTER_COUNT, REPLY_BYTES, Reg, RegionDecl, Rights, SCRATCH_BYTES, Space, UnverifiedHandler,
};

/// Cost units a run may take unless the binder says otherwise (an instruction is one unit; a
/// copy or checksum over a whole frame about 190).
pub const DEFAULT_BUDGET: u64 = 20_000;

/// What the verifier is told about where the handler will run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Context {
    /// Bytes every packet reaching the handler is known to hold (the guarding filter's bounds
    /// checks prove it).
    pub min_packet_len: u16,
    /// Most cost units one run may take.
    pub budget: u64,
}

impl Default for Context {
    fn default() -> Context {
        Context {
            min_packet_len: 0,
            budget: DEFAULT_BUDGET,
        }
    }
}

/// Where a refusal is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum At {
    /// The program as a whole.
    Program,
    /// A region declaration, by index.
    Region(usize),
    /// An instruction, by index.
    Insn(usize),
}

/// The rule a refused handler breaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rule {
    /// More than [`MAX_INSTRUCTIONS`] instructions.
    TooLong,
    /// More than [`MAX_REGIONS`] regions, or one empty or larger than [`MAX_REGION_BYTES`].
    BadRegion,
    /// A register number at or past [`REGISTER_COUNT`].
    BadRegister,
    /// A jump or branch to itself or an earlier instruction (only loop ends go back).
    BackwardJump,
    /// A jump target past the program, inside a loop body the jump is not in, or past the end
    /// of the loop the jump is in.
    BadJumpTarget,
    /// A loop whose count comes from a register with no static bound.
    UnboundedLoop,
    /// A loop with an empty body, a body past the program or its enclosing loop, more than
    /// [`MAX_LOOP_ITERATIONS`] iterations, or nested deeper than [`MAX_LOOP_DEPTH`].
    BadLoop,
    /// Execution can run past the last instruction.
    FallsOffEnd,
    /// No path from the entry reaches this instruction.
    Unreachable,
    /// A register is read on some path before anything writes it.
    UninitializedRegister,
    /// A divisor that may be zero.
    DivisionByZero,
    /// A proven packet access past the length the filter and the guards establish, or any
    /// packet access past the longest frame.
    OutOfPacket,
    /// An access or call past the end of the scratch area, the reply buffer or a region.
    OutOfRegion,
    /// A region index the handler does not declare.
    UndeclaredRegion,
    /// A store to the packet, or a store, copy or atomic on a region declared without write.
    ReadOnly,
    /// A load or atomic on a region declared without read.
    NotReadable,
    /// A `Proven` access with a base register: its address is not known statically.
    UnprovenAccess,
    /// A call number or argument no action has.
    BadCall,
    /// The worst-case cost exceeds the budget.
    OverBudget,
    /// The data-flow analysis did not settle within its pass limit.
    TooComplex,
}

/// A refusal: where, and which rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VerifyError {
    /// Where.
    pub at: At,
    /// Which rule.
    pub rule: Rule,
}

impl fmt::Display for VerifyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.at {
            At::Program => write!(f, "handler refused: {:?}", self.rule),
            At::Region(index) => write!(f, "region {index} refused: {:?}", self.rule),
            At::Insn(index) => write!(f, "instruction {index} refused: {:?}", self.rule),
        }
    }
}

fn refuse<T>(at: At, rule: Rule) -> Result<T, VerifyError> {
    Err(VerifyError { at, rule })
}

/// A verified handler: only [`verify`] makes one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Handler {
    code: Vec<Insn>,
    regions: Vec<RegionDecl>,
    cost: u64,
    min_packet_len: u16,
}

impl Handler {
    /// The program.
    pub fn code(&self) -> &[Insn] {
        &self.code
    }

    /// The regions it declared, which the binder must supply with exactly these lengths.
    pub fn regions(&self) -> &[RegionDecl] {
        &self.regions
    }

    /// Its proven worst-case cost in units.
    pub fn cost(&self) -> u64 {
        self.cost
    }

    /// The packet length it was verified for; it must never see a shorter one.
    pub fn min_packet_len(&self) -> u16 {
        self.min_packet_len
    }

    /// Back to the untrusted form (to encode it, or to alter it in tests).
    pub fn into_unverified(self) -> UnverifiedHandler {
        UnverifiedHandler {
            regions: self.regions,
            code: self.code,
        }
    }
}

/// Cost units of one instruction, calls included (copies and checksums at their longest).
pub fn insn_cost(insn: &Insn) -> u64 {
    let frame_words = u64::from(MAX_FRAME_BYTES).div_ceil(8);
    match insn {
        Insn::Call(raw) => match raw.resolve() {
            Some(Call::Copy { .. } | Call::CopyChecksum { .. } | Call::Checksum) => 1 + frame_words,
            Some(Call::ReplyBegin { .. } | Call::Send) => 1 + u64::from(REPLY_BYTES).div_ceil(8),
            _ => 4,
        },
        _ => 1,
    }
}

/// What is known at an instruction, on every path to it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct State {
    written: u16,
    nonzero: u16,
    known_len: u16,
}

impl State {
    fn join(self, other: State) -> State {
        State {
            written: self.written & other.written,
            nonzero: self.nonzero & other.nonzero,
            known_len: self.known_len.min(other.known_len),
        }
    }

    fn write(&mut self, reg: Reg, nonzero: bool) {
        let bit = 1u16 << reg.0;
        self.written |= bit;
        if nonzero {
            self.nonzero |= bit;
        } else {
            self.nonzero &= !bit;
        }
    }

    fn is_written(self, reg: Reg) -> bool {
        self.written & (1 << reg.0) != 0
    }

    fn is_nonzero(self, reg: Reg) -> bool {
        self.nonzero & (1 << reg.0) != 0
    }
}

/// Loop structure: for each instruction the loops (by index of their `Loop` instruction) that
/// contain it, outermost first.
struct Loops {
    enclosing: Vec<Vec<usize>>,
}

fn loop_end(code: &[Insn], at: usize) -> usize {
    match code[at] {
        Insn::Loop { body, .. } => at + 1 + usize::from(body),
        _ => at + 1,
    }
}

fn max_iterations(count: LoopCount) -> u64 {
    match count {
        LoopCount::Times(times) => u64::from(times),
        LoopCount::Reg { bound, .. } => u64::from(bound.unwrap_or(0)),
    }
}

fn registers_named(insn: &Insn) -> impl Iterator<Item = Reg> {
    let mut regs: [Option<Reg>; 3] = [None; 3];
    let operand = |operand: Operand| match operand {
        Operand::Reg(reg) => Some(reg),
        Operand::Imm(_) => None,
    };
    match *insn {
        Insn::Mov { dst, src } | Insn::Alu { dst, src, .. } => {
            regs = [Some(dst), operand(src), None];
        }
        Insn::Load { dst, mem, .. } => regs = [Some(dst), mem.base, None],
        Insn::Store { src, mem, .. } => regs = [operand(src), mem.base, None],
        Insn::Branch { a, b, .. } => regs = [Some(a), operand(b), None],
        Insn::Loop {
            count: LoopCount::Reg { reg, .. },
            ..
        } => regs[0] = Some(reg),
        _ => {}
    }
    regs.into_iter().flatten()
}

/// Registers `call` reads as arguments.
pub fn call_arguments(call: Call) -> &'static [Reg] {
    const R1: &[Reg] = &[Reg(1)];
    const R12: &[Reg] = &[Reg(1), Reg(2)];
    const R123: &[Reg] = &[Reg(1), Reg(2), Reg(3)];
    match call {
        Call::Copy { .. } | Call::CopyChecksum { .. } => R123,
        Call::Checksum => R12,
        Call::ReplyBegin { .. } | Call::Wake => &[],
        Call::ChecksumUpdate | Call::CompareSwap { .. } => R123,
        Call::Send | Call::Upcall => R1,
        Call::AtomicAdd { .. } => R12,
    }
}

/// Registers `insn` reads.
fn registers_read(insn: &Insn) -> impl Iterator<Item = Reg> {
    let mut regs: [Option<Reg>; 3] = [None; 3];
    let operand = |operand: Operand| match operand {
        Operand::Reg(reg) => Some(reg),
        Operand::Imm(_) => None,
    };
    match *insn {
        Insn::Mov { src, .. } => regs[0] = operand(src),
        Insn::Alu { dst, src, .. } => regs = [Some(dst), operand(src), None],
        Insn::Load { mem, .. } => regs[0] = mem.base,
        Insn::Store { src, mem, .. } => regs = [operand(src), mem.base, None],
        Insn::Branch { a, b, .. } => regs = [Some(a), operand(b), None],
        Insn::Loop {
            count: LoopCount::Reg { reg, .. },
            ..
        } => regs[0] = Some(reg),
        Insn::Call(raw) => {
            if let Some(call) = raw.resolve() {
                for (slot, reg) in regs.iter_mut().zip(call_arguments(call)) {
                    *slot = Some(*reg);
                }
            }
        }
        _ => {}
    }
    regs.into_iter().flatten()
}

fn region(regions: &[RegionDecl], index: u8, at: At) -> Result<&RegionDecl, VerifyError> {
    match regions.get(usize::from(index)) {
        Some(region) => Ok(region),
        None => refuse(at, Rule::UndeclaredRegion),
    }
}

/// The structural checks of one memory access: space declared, rights held, bounds possible.
fn check_access_structure(
    regions: &[RegionDecl],
    mem: Mem,
    width: u32,
    store: bool,
    at: At,
) -> Result<(), VerifyError> {
    if mem.check == Check::Proven && mem.base.is_some() {
        return refuse(at, Rule::UnprovenAccess);
    }
    let end = u32::from(mem.offset) + width;
    let limit = match mem.space {
        Space::Packet => {
            if store {
                return refuse(at, Rule::ReadOnly);
            }
            if end > MAX_FRAME_BYTES {
                return refuse(at, Rule::OutOfPacket);
            }
            return Ok(());
        }
        Space::Scratch => SCRATCH_BYTES,
        Space::Reply => REPLY_BYTES,
        Space::Region(index) => {
            let region = region(regions, index, at)?;
            let needed = if store { Rights::WRITE } else { Rights::READ };
            if !region.rights.contains(needed) {
                return refuse(
                    at,
                    if store {
                        Rule::ReadOnly
                    } else {
                        Rule::NotReadable
                    },
                );
            }
            region.len
        }
    };
    if end > limit {
        return refuse(at, Rule::OutOfRegion);
    }
    Ok(())
}

fn check_call_structure(regions: &[RegionDecl], call: Call, at: At) -> Result<(), VerifyError> {
    match call {
        Call::Copy { region: index } | Call::CopyChecksum { region: index }
            if !region(regions, index, at)?.rights.contains(Rights::WRITE) =>
        {
            return refuse(at, Rule::ReadOnly);
        }
        Call::AtomicAdd { region: index } | Call::CompareSwap { region: index } => {
            let region = region(regions, index, at)?;
            if !region.rights.contains(Rights::WRITE) {
                return refuse(at, Rule::ReadOnly);
            }
            if !region.rights.contains(Rights::READ) {
                return refuse(at, Rule::NotReadable);
            }
            if region.len < 8 {
                return refuse(at, Rule::OutOfRegion);
            }
        }
        _ => {}
    }
    Ok(())
}

/// Pass 1: everything that does not depend on the path taken.
fn check_structure(handler: &UnverifiedHandler) -> Result<Loops, VerifyError> {
    let code = &handler.code;
    if code.len() > MAX_INSTRUCTIONS {
        return refuse(At::Program, Rule::TooLong);
    }
    if code.is_empty() {
        return refuse(At::Program, Rule::FallsOffEnd);
    }
    if handler.regions.len() > MAX_REGIONS {
        return refuse(At::Region(MAX_REGIONS), Rule::BadRegion);
    }
    for (index, region) in handler.regions.iter().enumerate() {
        if region.len == 0 || region.len > MAX_REGION_BYTES || region.rights.0 & !3 != 0 {
            return refuse(At::Region(index), Rule::BadRegion);
        }
    }
    let mut enclosing = Vec::with_capacity(code.len());
    let mut open: Vec<usize> = Vec::new();
    for (index, insn) in code.iter().enumerate() {
        let at = At::Insn(index);
        while open
            .last()
            .is_some_and(|&start| loop_end(code, start) <= index)
        {
            open.pop();
        }
        enclosing.push(open.clone());
        if registers_named(insn).any(|reg| reg.0 >= REGISTER_COUNT) {
            return refuse(at, Rule::BadRegister);
        }
        match *insn {
            Insn::Load { width, mem, .. } => {
                check_access_structure(&handler.regions, mem, width.bytes(), false, at)?;
            }
            Insn::Store { width, mem, .. } => {
                check_access_structure(&handler.regions, mem, width.bytes(), true, at)?;
            }
            Insn::Jump { target }
            | Insn::Branch { target, .. }
            | Insn::IfLenLess { target, .. } => {
                let target = usize::from(target);
                if target <= index {
                    return refuse(at, Rule::BackwardJump);
                }
                if target >= code.len() {
                    return refuse(at, Rule::BadJumpTarget);
                }
                // Not past the end of the innermost loop the jump is in ...
                if open
                    .last()
                    .is_some_and(|&start| target > loop_end(code, start))
                {
                    return refuse(at, Rule::BadJumpTarget);
                }
                // ... and not into a body it is not in: every open loop that contains the
                // target already contains the jump (loops open at `index` and starting before
                // it). Loops starting between the jump and the target contain the target only
                // if they end past it.
                let mut scan = index + 1;
                while scan < target {
                    if matches!(code[scan], Insn::Loop { .. }) && loop_end(code, scan) > target {
                        return refuse(at, Rule::BadJumpTarget);
                    }
                    scan += 1;
                }
            }
            Insn::Loop { count, body } => {
                if let LoopCount::Reg { bound: None, .. } = count {
                    return refuse(at, Rule::UnboundedLoop);
                }
                let end = index + 1 + usize::from(body);
                let too_deep = open.len() >= MAX_LOOP_DEPTH;
                let past_parent = open
                    .last()
                    .is_some_and(|&start| end > loop_end(code, start));
                if body == 0
                    || end > code.len()
                    || past_parent
                    || too_deep
                    || max_iterations(count) > u64::from(MAX_LOOP_ITERATIONS)
                {
                    return refuse(at, Rule::BadLoop);
                }
                open.push(index);
            }
            Insn::Call(raw) => match raw.resolve() {
                Some(call) => check_call_structure(&handler.regions, call, at)?,
                None => return refuse(at, Rule::BadCall),
            },
            Insn::Mov { .. } | Insn::Alu { .. } | Insn::Exit(_) => {}
        }
    }
    Ok(Loops { enclosing })
}

/// Where control goes when it reaches index `target` from instruction `from`: the ends of the
/// loops `from` is in that end at `target` go back to their body's start, and past the last of
/// them execution goes on at `target`.
fn flow(code: &[Insn], loops: &Loops, from: usize, target: usize, out: &mut Vec<usize>) {
    for &start in loops.enclosing[from].iter().rev() {
        if loop_end(code, start) == target {
            out.push(start + 1);
        } else {
            break;
        }
    }
    out.push(target);
}

/// The state after `insn` along the edge to `successor` (`taken` for a branch's target).
fn transfer(insn: &Insn, before: State, taken: bool) -> State {
    let mut after = before;
    match *insn {
        Insn::Mov { dst, src } => {
            let nonzero = match src {
                Operand::Imm(value) => value != 0,
                Operand::Reg(reg) => before.is_nonzero(reg),
            };
            after.write(dst, nonzero);
        }
        Insn::Alu { op, dst, src } => {
            let nonzero = match (op, src) {
                (AluOp::Or, Operand::Imm(value)) => value != 0 || before.is_nonzero(dst),
                (AluOp::Or, Operand::Reg(reg)) => before.is_nonzero(reg) || before.is_nonzero(dst),
                _ => false,
            };
            after.write(dst, nonzero);
        }
        Insn::Load { dst, .. } => after.write(dst, false),
        Insn::Branch { cond, a, b, .. } => {
            // What a branch against zero proves about `a` on each edge.
            let proves_nonzero = match (cond, b) {
                (Cond::Eq, Operand::Imm(0)) => !taken,
                (Cond::Ne, Operand::Imm(0)) | (Cond::Gt, Operand::Imm(0)) => taken,
                (Cond::Ge, Operand::Imm(1..)) => taken,
                (Cond::Lt, Operand::Imm(1)) | (Cond::Le, Operand::Imm(0)) => !taken,
                _ => false,
            };
            if proves_nonzero {
                after.nonzero |= 1 << a.0;
            }
        }
        Insn::IfLenLess { length, .. } => {
            if !taken {
                after.known_len = after.known_len.max(length);
            }
        }
        Insn::Call(_) => after.write(Reg(0), false),
        Insn::Store { .. } | Insn::Jump { .. } | Insn::Loop { .. } | Insn::Exit(_) => {}
    }
    after
}

/// Most passes the data-flow analysis may take (each loop level needs about one more).
const MAX_PASSES: usize = 4 * (MAX_LOOP_DEPTH + 2) + 2 * REGISTER_COUNT as usize;

/// Pass 2: the state at each reachable instruction, the join over every path to it.
fn analyse(
    handler: &UnverifiedHandler,
    loops: &Loops,
    context: &Context,
) -> Result<Vec<Option<State>>, VerifyError> {
    let code = &handler.code;
    let mut states: Vec<Option<State>> = vec![None; code.len()];
    let entry_nonzero = if context.min_packet_len > 0 {
        1 << LENGTH_REGISTER.0
    } else {
        0
    };
    states[0] = Some(State {
        written: 1 << LENGTH_REGISTER.0,
        nonzero: entry_nonzero,
        known_len: context.min_packet_len,
    });
    let mut successors: Vec<(usize, bool)> = Vec::new();
    let mut targets = Vec::new();
    for _pass in 0..MAX_PASSES {
        let mut changed = false;
        for index in 0..code.len() {
            let Some(before) = states[index] else {
                continue;
            };
            let insn = &code[index];
            successors.clear();
            let mut push = |target: usize, taken: bool, successors: &mut Vec<(usize, bool)>| {
                targets.clear();
                flow(code, loops, index, target, &mut targets);
                successors.extend(targets.iter().map(|&t| (t, taken)));
            };
            match *insn {
                Insn::Exit(_) => {}
                Insn::Jump { target } => push(usize::from(target), true, &mut successors),
                Insn::Branch { target, .. } | Insn::IfLenLess { target, .. } => {
                    push(index + 1, false, &mut successors);
                    push(usize::from(target), true, &mut successors);
                }
                Insn::Loop { .. } => {
                    successors.push((index + 1, false));
                    push(loop_end(code, index), false, &mut successors);
                }
                _ => push(index + 1, false, &mut successors),
            }
            for &(successor, taken) in &successors {
                if successor >= code.len() {
                    return refuse(At::Insn(index), Rule::FallsOffEnd);
                }
                let after = transfer(insn, before, taken);
                let joined = match states[successor] {
                    Some(existing) => existing.join(after),
                    None => after,
                };
                if states[successor] != Some(joined) {
                    states[successor] = Some(joined);
                    changed = true;
                }
            }
        }
        if !changed {
            return Ok(states);
        }
    }
    refuse(At::Program, Rule::TooComplex)
}

/// Pass 3: the checks that depend on the state.
fn check_paths(handler: &UnverifiedHandler, states: &[Option<State>]) -> Result<(), VerifyError> {
    for (index, (insn, state)) in handler.code.iter().zip(states).enumerate() {
        let at = At::Insn(index);
        let Some(state) = *state else {
            return refuse(at, Rule::Unreachable);
        };
        if registers_read(insn).any(|reg| !state.is_written(reg)) {
            return refuse(at, Rule::UninitializedRegister);
        }
        match *insn {
            Insn::Alu {
                op: AluOp::Div | AluOp::Mod,
                src,
                ..
            } => {
                let safe = match src {
                    Operand::Imm(value) => value != 0,
                    Operand::Reg(reg) => state.is_nonzero(reg),
                };
                if !safe {
                    return refuse(at, Rule::DivisionByZero);
                }
            }
            Insn::Load { width, mem, .. }
                if mem.space == Space::Packet
                    && mem.check == Check::Proven
                    && u32::from(mem.offset) + width.bytes() > u32::from(state.known_len) =>
            {
                return refuse(at, Rule::OutOfPacket);
            }
            _ => {}
        }
    }
    Ok(())
}

/// Pass 4: the longest path from `start` to `end` (exclusive; reaching `end` costs nothing),
/// loops counted at their bound.
fn longest_path(code: &[Insn], start: usize, end: usize) -> u64 {
    let mut cost_from = vec![0u64; end - start + 1];
    let at = |cost_from: &[u64], index: usize| {
        if index >= end {
            0
        } else {
            cost_from[index - start]
        }
    };
    for index in (start..end).rev() {
        let insn = &code[index];
        let own = insn_cost(insn);
        let cost = match *insn {
            Insn::Exit(_) => own,
            Insn::Jump { target } => own.saturating_add(at(&cost_from, usize::from(target))),
            Insn::Branch { target, .. } | Insn::IfLenLess { target, .. } => {
                let taken = at(&cost_from, usize::from(target));
                let fall = at(&cost_from, index + 1);
                own.saturating_add(taken.max(fall))
            }
            Insn::Loop { count, body } => {
                let body_end = index + 1 + usize::from(body);
                let iteration = longest_path(code, index + 1, body_end.min(end));
                own.saturating_add(iteration.saturating_mul(max_iterations(count)))
                    .saturating_add(at(&cost_from, body_end))
            }
            _ => own.saturating_add(at(&cost_from, index + 1)),
        };
        cost_from[index - start] = cost;
    }
    cost_from[0]
}

/// Verifies `handler` for `context`.
pub fn verify(handler: UnverifiedHandler, context: &Context) -> Result<Handler, VerifyError> {
    let loops = check_structure(&handler)?;
    let states = analyse(&handler, &loops, context)?;
    check_paths(&handler, &states)?;
    let cost = longest_path(&handler.code, 0, handler.code.len());
    if cost > context.budget {
        return refuse(At::Program, Rule::OverBudget);
    }
    Ok(Handler {
        code: handler.code,
        regions: handler.regions,
        cost,
        min_packet_len: context.min_packet_len,
    })
}

impl UnverifiedHandler {
    /// Verifies the handler for `context` (see [`verify`]).
    pub fn verify(self, context: &Context) -> Result<Handler, VerifyError> {
        verify(self, context)
    }
}
