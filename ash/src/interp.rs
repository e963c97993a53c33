//! The interpreter: the reference engine, and what the kernel runs on receive.
//!
//! It executes a verified [`Handler`] against one packet. What the verifier proved it relies
//! on (registers written before read, divisors non-zero, proven accesses in bounds, loop
//! bounds); what it could not prove it checks here, and a failed check aborts the run with the
//! instruction index and the reason, never touching memory outside the packet, the
//! [`Machine`]'s buffers or the ranges it asks the [`Actions`] host for. The host is the
//! kernel (or a test): it owns application memory, the transmit path and the owner's wake-ups.
#![forbid(unsafe_code)]

use crate::checksum;
use crate::ir::{
    AluOp, ByteOrder, Call, Insn, LoopCount, MAX_LOOP_DEPTH, MAX_REPLIES_PER_RUN, Mem, Operand,
    REGISTER_COUNT, REPLY_BYTES, RegionDecl, SCRATCH_BYTES, Space, Swap, Verdict, Width,
};
use crate::verify::Handler;

/// What a handler may ask of the system it runs in. The interpreter has checked every range
/// against the region's declared length before it calls; a host that cannot supply a range (a
/// page gone) says so and the run aborts.
pub trait Actions {
    /// Calls `piece` with consecutive mutable pieces that together are bytes
    /// `offset .. offset + len` of region `region`, in order; `false` if it cannot.
    fn region(
        &mut self,
        region: u8,
        offset: u32,
        len: u32,
        piece: &mut dyn FnMut(&mut [u8]),
    ) -> bool;
    /// Atomically adds `value` to the little-endian word at `offset` (8-aligned) of `region`;
    /// the new value, `None` if it cannot.
    fn fetch_add(&mut self, region: u8, offset: u32, value: u64) -> Option<u64>;
    /// Atomically replaces the word at `offset` with `new` if it equals `expected`; the old
    /// value, `None` if it cannot.
    fn compare_swap(&mut self, region: u8, offset: u32, expected: u64, new: u64) -> Option<u64>;
    /// Sends `frame` through the same transmit check as the owner's own frames; whether it
    /// was sent.
    fn transmit(&mut self, frame: &[u8]) -> bool;
    /// Wakes the owner if it waits for packets.
    fn wake(&mut self);
    /// Raises the owner's packet-arrival upcall with `argument`.
    fn upcall(&mut self, argument: u64);
}

/// Why a run was aborted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AbortReason {
    /// A runtime-checked packet access or a copy's source range past the captured bytes (or a
    /// packet shorter than the handler was verified for).
    PacketBounds,
    /// A runtime-checked access past the scratch area, the reply buffer or a region.
    RegionBounds,
    /// An atomic on a word that is not 8-aligned.
    Misaligned,
    /// The packet lacks the headers a reply swap needs.
    NotSwappable,
    /// A reply shorter than an Ethernet header or longer than the reply buffer.
    ReplyLength,
    /// More than [`MAX_REPLIES_PER_RUN`] replies.
    TooManyReplies,
    /// The host could not supply a region range.
    HostFault,
    /// The run took more cost units than the verifier proved it could (never for a verified
    /// handler on a correct engine: the budget check is the engines' last line of defence).
    OverBudget,
    /// A state the verifier rules out (an unknown call, running off the end, loops nested
    /// too deep): never for a verified handler, an abort rather than a panic if it happens.
    Unverified,
}

/// How a run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The handler exited with a verdict.
    Exit(Verdict),
    /// A runtime check failed at instruction `index`.
    Abort {
        /// The instruction.
        index: usize,
        /// The check.
        reason: AbortReason,
    },
}

/// A run's outcome and what it did, for the handler's counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Run {
    /// How it ended.
    pub outcome: Outcome,
    /// Bytes copied into application regions.
    pub bytes_copied: u64,
    /// Replies the transmit check let through.
    pub replies_sent: u32,
    /// Replies it refused.
    pub replies_refused: u32,
    /// Cost units taken (never more than [`Handler::cost`]).
    pub cost: u64,
}

/// Per-run memory: the scratch area and the reply buffer, kept between runs so that no run
/// allocates; each run starts with both zeroed.
#[derive(Clone, Debug)]
pub struct Machine {
    scratch: [u8; SCRATCH_BYTES as usize],
    reply: [u8; REPLY_BYTES as usize],
    dirty: bool,
}

impl Default for Machine {
    fn default() -> Machine {
        Machine::new()
    }
}

impl Machine {
    /// Zeroed buffers.
    pub const fn new() -> Machine {
        Machine {
            scratch: [0; SCRATCH_BYTES as usize],
            reply: [0; REPLY_BYTES as usize],
            dirty: false,
        }
    }

    /// The reply buffer as the last run left it.
    pub fn reply(&self) -> &[u8] {
        &self.reply
    }
}

fn read_value(bytes: &[u8], order: ByteOrder) -> u64 {
    let mut buffer = [0u8; 8];
    match order {
        ByteOrder::Big => {
            buffer[8 - bytes.len()..].copy_from_slice(bytes);
            u64::from_be_bytes(buffer)
        }
        ByteOrder::Little => {
            buffer[..bytes.len()].copy_from_slice(bytes);
            u64::from_le_bytes(buffer)
        }
    }
}

fn write_value(value: u64, width: Width, order: ByteOrder, out: &mut [u8; 8]) -> usize {
    let bytes = width.bytes() as usize;
    match order {
        ByteOrder::Big => out[..bytes].copy_from_slice(&value.to_be_bytes()[8 - bytes..]),
        ByteOrder::Little => out[..bytes].copy_from_slice(&value.to_le_bytes()[..bytes]),
    }
    bytes
}

/// `start .. start + len` as a range of a buffer `limit` long, if it fits.
fn range(start: u64, len: u64, limit: usize) -> Option<core::ops::Range<usize>> {
    let end = start.checked_add(len)?;
    if end > limit as u64 {
        return None;
    }
    Some(start as usize..end as usize)
}

struct Runner<'a> {
    handler: &'a Handler,
    packet: &'a [u8],
    machine: &'a mut Machine,
    actions: &'a mut dyn Actions,
    regs: [u64; REGISTER_COUNT as usize],
    run: Run,
}

type Step<T> = Result<T, AbortReason>;

impl Runner<'_> {
    fn operand(&self, operand: Operand) -> u64 {
        match operand {
            Operand::Reg(reg) => self.regs[usize::from(reg.0)],
            Operand::Imm(value) => value,
        }
    }

    fn declared(&self, region: u8) -> Step<RegionDecl> {
        self.handler
            .regions()
            .get(usize::from(region))
            .copied()
            .ok_or(AbortReason::Unverified)
    }

    fn address(&self, mem: Mem) -> u64 {
        let base = mem.base.map_or(0, |reg| self.regs[usize::from(reg.0)]);
        base.wrapping_add(u64::from(mem.offset))
    }

    /// Bytes `start .. start + len` of `region`, checked against its declaration.
    fn region_range(&self, region: u8, start: u64, len: u64) -> Step<u32> {
        let declared = self.declared(region)?;
        match range(start, len, declared.len as usize) {
            Some(range) => Ok(range.start as u32),
            None => Err(AbortReason::RegionBounds),
        }
    }

    fn load(&mut self, width: Width, order: ByteOrder, mem: Mem) -> Step<u64> {
        let address = self.address(mem);
        let len = u64::from(width.bytes());
        let bytes: &[u8] = match mem.space {
            Space::Packet => {
                let range =
                    range(address, len, self.packet.len()).ok_or(AbortReason::PacketBounds)?;
                &self.packet[range]
            }
            Space::Scratch => {
                let range = range(address, len, self.machine.scratch.len())
                    .ok_or(AbortReason::RegionBounds)?;
                &self.machine.scratch[range]
            }
            Space::Reply => {
                let range = range(address, len, self.machine.reply.len())
                    .ok_or(AbortReason::RegionBounds)?;
                &self.machine.reply[range]
            }
            Space::Region(region) => {
                let offset = self.region_range(region, address, len)?;
                let mut buffer = [0u8; 8];
                let mut filled = 0usize;
                let supplied = self
                    .actions
                    .region(region, offset, len as u32, &mut |piece| {
                        if let Some(slot) = buffer.get_mut(filled..filled + piece.len()) {
                            slot.copy_from_slice(piece);
                        }
                        filled += piece.len();
                    });
                if !supplied || filled != len as usize {
                    return Err(AbortReason::HostFault);
                }
                return Ok(read_value(&buffer[..len as usize], order));
            }
        };
        Ok(read_value(bytes, order))
    }

    fn store(&mut self, value: u64, width: Width, order: ByteOrder, mem: Mem) -> Step<()> {
        let address = self.address(mem);
        let mut encoded = [0u8; 8];
        let len = write_value(value, width, order, &mut encoded);
        let bytes = &encoded[..len];
        match mem.space {
            // The verifier refuses stores to the packet.
            Space::Packet => Err(AbortReason::PacketBounds),
            Space::Scratch => {
                let range = range(address, len as u64, self.machine.scratch.len())
                    .ok_or(AbortReason::RegionBounds)?;
                self.machine.scratch[range].copy_from_slice(bytes);
                Ok(())
            }
            Space::Reply => {
                let range = range(address, len as u64, self.machine.reply.len())
                    .ok_or(AbortReason::RegionBounds)?;
                self.machine.reply[range].copy_from_slice(bytes);
                Ok(())
            }
            Space::Region(region) => {
                let offset = self.region_range(region, address, len as u64)?;
                let mut taken = 0usize;
                let supplied = self
                    .actions
                    .region(region, offset, len as u32, &mut |piece| {
                        if let Some(source) = bytes.get(taken..taken + piece.len()) {
                            piece.copy_from_slice(source);
                        }
                        taken += piece.len();
                    });
                if !supplied || taken != len {
                    return Err(AbortReason::HostFault);
                }
                Ok(())
            }
        }
    }

    /// Copies `len` packet bytes from `source` to `region` at `destination`; the partial
    /// checksum of what it copied.
    fn copy(&mut self, region: u8, destination: u64, source: u64, len: u64) -> Step<u16> {
        let source = range(source, len, self.packet.len()).ok_or(AbortReason::PacketBounds)?;
        let offset = self.region_range(region, destination, len)?;
        let packet = &self.packet[source];
        let mut taken = 0usize;
        let mut sum = 0u16;
        let mut overrun = false;
        let supplied = self
            .actions
            .region(region, offset, len as u32, &mut |piece| {
                match packet.get(taken..taken + piece.len()) {
                    Some(from) => {
                        let partial = checksum::copy_and_partial(from, piece, taken % 2 == 1);
                        sum = checksum::ones_add(u64::from(sum), partial);
                    }
                    None => overrun = true,
                }
                taken += piece.len();
            });
        if !supplied || overrun || taken != packet.len() {
            return Err(AbortReason::HostFault);
        }
        self.run.bytes_copied += len;
        Ok(sum)
    }

    fn reply_begin(&mut self, swap: Swap) -> Step<()> {
        let len = self.packet.len();
        if len > self.machine.reply.len() {
            return Err(AbortReason::ReplyLength);
        }
        let reply = &mut self.machine.reply;
        reply[..len].copy_from_slice(self.packet);
        if swap.contains(Swap::ETHERNET) {
            if len < 14 {
                return Err(AbortReason::NotSwappable);
            }
            for i in 0..6 {
                reply.swap(i, 6 + i);
            }
        }
        if swap.contains(Swap::IPV4) || swap.contains(Swap::PORTS) {
            let mut ipv4 = [0u8; 22];
            ipv4.copy_from_slice(self.packet.get(12..34).ok_or(AbortReason::NotSwappable)?);
            let header_bytes = usize::from(ipv4[2] & 0x0f) * 4;
            if ipv4[..2] != [0x08, 0x00] || ipv4[2] >> 4 != 4 || header_bytes < 20 {
                return Err(AbortReason::NotSwappable);
            }
            if swap.contains(Swap::IPV4) {
                for i in 0..4 {
                    reply.swap(26 + i, 30 + i);
                }
            }
            if swap.contains(Swap::PORTS) {
                let fragment = u16::from_be_bytes([ipv4[8], ipv4[9]]) & 0x1fff;
                let ports = 14 + header_bytes;
                if fragment != 0 || ports + 4 > len {
                    return Err(AbortReason::NotSwappable);
                }
                for i in 0..2 {
                    reply.swap(ports + i, ports + 2 + i);
                }
            }
        }
        Ok(())
    }

    fn call(&mut self, call: Call) -> Step<u64> {
        let [r1, r2, r3] = [self.regs[1], self.regs[2], self.regs[3]];
        match call {
            Call::Copy { region } => {
                self.copy(region, r1, r2, r3)?;
                Ok(r3)
            }
            Call::CopyChecksum { region } => self.copy(region, r1, r2, r3).map(u64::from),
            Call::Checksum => {
                let source = range(r1, r2, self.packet.len()).ok_or(AbortReason::PacketBounds)?;
                Ok(u64::from(checksum::sum(&self.packet[source])))
            }
            Call::ReplyBegin { swap } => {
                self.machine.dirty = true;
                self.reply_begin(swap)?;
                Ok(0)
            }
            Call::ChecksumUpdate => {
                let field =
                    range(r1, 2, self.machine.reply.len()).ok_or(AbortReason::RegionBounds)?;
                let bytes = &mut self.machine.reply[field];
                let old = u16::from_be_bytes([bytes[0], bytes[1]]);
                let new = checksum::update(old, r2 as u16, r3 as u16);
                bytes.copy_from_slice(&new.to_be_bytes());
                Ok(0)
            }
            Call::Send => {
                if !(14..=u64::from(REPLY_BYTES)).contains(&r1) {
                    return Err(AbortReason::ReplyLength);
                }
                if self.run.replies_sent + self.run.replies_refused >= MAX_REPLIES_PER_RUN {
                    return Err(AbortReason::TooManyReplies);
                }
                if self.actions.transmit(&self.machine.reply[..r1 as usize]) {
                    self.run.replies_sent += 1;
                    Ok(0)
                } else {
                    self.run.replies_refused += 1;
                    Ok(1)
                }
            }
            Call::AtomicAdd { region } => {
                if r1 % 8 != 0 {
                    return Err(AbortReason::Misaligned);
                }
                let offset = self.region_range(region, r1, 8)?;
                self.actions
                    .fetch_add(region, offset, r2)
                    .ok_or(AbortReason::HostFault)
            }
            Call::CompareSwap { region } => {
                if r1 % 8 != 0 {
                    return Err(AbortReason::Misaligned);
                }
                let offset = self.region_range(region, r1, 8)?;
                self.actions
                    .compare_swap(region, offset, r2, r3)
                    .ok_or(AbortReason::HostFault)
            }
            Call::Wake => {
                self.actions.wake();
                Ok(0)
            }
            Call::Upcall => {
                self.actions.upcall(r1);
                Ok(0)
            }
        }
    }

    fn alu(op: AluOp, a: u64, b: u64) -> u64 {
        match op {
            AluOp::Add => a.wrapping_add(b),
            AluOp::Sub => a.wrapping_sub(b),
            AluOp::Mul => a.wrapping_mul(b),
            // The verifier proves divisors non-zero; `checked_*` keeps a wrong proof from
            // panicking the kernel (the result is then 0).
            AluOp::Div => a.checked_div(b).unwrap_or(0),
            AluOp::Mod => a.checked_rem(b).unwrap_or(0),
            AluOp::And => a & b,
            AluOp::Or => a | b,
            AluOp::Xor => a ^ b,
            AluOp::Shl => a << (b & 63),
            AluOp::Shr => a >> (b & 63),
            AluOp::OnesAdd => u64::from(checksum::ones_add(a, b)),
        }
    }

    /// Executes one instruction that only computes or moves data (everything but control
    /// flow): the one definition of their meaning, for the interpreter and for the JIT's
    /// service calls.
    fn data_step(&mut self, insn: &Insn) -> Step<()> {
        match *insn {
            Insn::Mov { dst, src } => {
                self.regs[usize::from(dst.0)] = self.operand(src);
                Ok(())
            }
            Insn::Alu { op, dst, src } => {
                let b = self.operand(src);
                let slot = &mut self.regs[usize::from(dst.0)];
                *slot = Self::alu(op, *slot, b);
                Ok(())
            }
            Insn::Load {
                dst,
                width,
                order,
                mem,
            } => self
                .load(width, order, mem)
                .map(|value| self.regs[usize::from(dst.0)] = value),
            Insn::Store {
                src,
                width,
                order,
                mem,
            } => {
                let value = self.operand(src);
                self.machine.dirty |= mem.space == Space::Reply;
                self.store(value, width, order, mem)
            }
            Insn::Call(raw) => match raw.resolve() {
                Some(call) => self.call(call).map(|value| self.regs[0] = value),
                None => Err(AbortReason::Unverified),
            },
            Insn::Jump { .. }
            | Insn::Branch { .. }
            | Insn::IfLenLess { .. }
            | Insn::Loop { .. }
            | Insn::Exit(_) => Err(AbortReason::Unverified),
        }
    }

    fn execute(&mut self) -> Outcome {
        let code = self.handler.code();
        // (body start, body end, iterations left)
        let mut loops = [(0usize, 0usize, 0u64); MAX_LOOP_DEPTH];
        let mut depth = 0usize;
        let mut pc = 0usize;
        loop {
            let Some(insn) = code.get(pc) else {
                return Outcome::Abort {
                    index: pc,
                    reason: AbortReason::Unverified,
                };
            };
            self.run.cost += crate::verify::insn_cost(insn);
            if self.run.cost > self.handler.cost() {
                return Outcome::Abort {
                    index: pc,
                    reason: AbortReason::OverBudget,
                };
            }
            let mut next = pc + 1;
            let step: Step<()> = match *insn {
                Insn::Mov { .. }
                | Insn::Alu { .. }
                | Insn::Load { .. }
                | Insn::Store { .. }
                | Insn::Call(_) => self.data_step(insn),
                Insn::Jump { target } => {
                    next = usize::from(target);
                    Ok(())
                }
                Insn::Branch { cond, a, b, target } => {
                    if cond.holds(self.regs[usize::from(a.0)], self.operand(b)) {
                        next = usize::from(target);
                    }
                    Ok(())
                }
                Insn::IfLenLess { length, target } => {
                    if self.packet.len() < usize::from(length) {
                        next = usize::from(target);
                    }
                    Ok(())
                }
                Insn::Loop { count, body } => {
                    let iterations = match count {
                        LoopCount::Times(times) => u64::from(times),
                        LoopCount::Reg { reg, bound } => {
                            self.regs[usize::from(reg.0)].min(u64::from(bound.unwrap_or(0)))
                        }
                    };
                    let end = pc + 1 + usize::from(body);
                    if iterations == 0 {
                        next = end;
                    } else if depth < MAX_LOOP_DEPTH {
                        loops[depth] = (pc + 1, end, iterations);
                        depth += 1;
                    } else {
                        return Outcome::Abort {
                            index: pc,
                            reason: AbortReason::Unverified,
                        };
                    }
                    Ok(())
                }
                Insn::Exit(verdict) => return Outcome::Exit(verdict),
            };
            if let Err(reason) = step {
                return Outcome::Abort { index: pc, reason };
            }
            // Reaching the end of a loop body: go round again, or leave (and maybe reach the
            // end of the enclosing body too).
            while depth > 0 && next == loops[depth - 1].1 {
                let (start, _, left) = &mut loops[depth - 1];
                if *left > 1 {
                    *left -= 1;
                    next = *start;
                    break;
                }
                depth -= 1;
            }
            pc = next;
        }
    }
}

/// A run starts with both buffers zeroed (the reply buffer only if a run used it).
pub(crate) fn begin(machine: &mut Machine) {
    if machine.dirty {
        machine.reply.fill(0);
        machine.dirty = false;
    }
    machine.scratch.fill(0);
}

/// A fresh run's record.
pub(crate) const fn fresh_run() -> Run {
    Run {
        outcome: Outcome::Exit(Verdict::Drop),
        bytes_copied: 0,
        replies_sent: 0,
        replies_refused: 0,
        cost: 0,
    }
}

/// Executes the data instruction at `index` of `handler` against `regs` (see
/// `Runner::data_step`), updating `run`'s counters: the JIT's service call.
pub(crate) fn data_step(
    handler: &Handler,
    packet: &[u8],
    machine: &mut Machine,
    actions: &mut dyn Actions,
    regs: &mut [u64; REGISTER_COUNT as usize],
    run: &mut Run,
    index: usize,
) -> Result<(), AbortReason> {
    let Some(insn) = handler.code().get(index) else {
        return Err(AbortReason::Unverified);
    };
    let mut runner = Runner {
        handler,
        packet,
        machine,
        actions,
        regs: *regs,
        run: *run,
    };
    let result = runner.data_step(insn);
    *regs = runner.regs;
    *run = runner.run;
    result
}

/// Runs `handler` on `packet` with `machine`'s buffers and `actions` as the host.
pub fn run(
    handler: &Handler,
    packet: &[u8],
    machine: &mut Machine,
    actions: &mut dyn Actions,
) -> Run {
    begin(machine);
    let mut runner = Runner {
        handler,
        packet,
        machine,
        actions,
        regs: [0; REGISTER_COUNT as usize],
        run: fresh_run(),
    };
    runner.regs[0] = packet.len() as u64;
    runner.run.outcome = if packet.len() < usize::from(handler.min_packet_len()) {
        Outcome::Abort {
            index: 0,
            reason: AbortReason::PacketBounds,
        }
    } else {
        runner.execute()
    };
    runner.run
}
