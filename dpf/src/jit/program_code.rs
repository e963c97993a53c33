//! Machine code for an expression step's program: BPF-style A and X in registers, scratch words
//! on the stack, the back-edge budget in a counter.
//!
//! Registers (all scratch in the generated function; see `codegen`): `eax` = A, `ecx` = X
//! (written only by 32-bit moves, so `rcx` is X zero-extended), `esi` = back edges left, `edx`
//! and `edi` for division. The base is `r9`, the bytes captured from it `r10` (signed), the wire
//! length `r11d`. Scratch words live in a frame of `4 * slots` bytes (rounded to 8) pushed for the
//! run and popped on both exits, so the rest of the code finds the stack as it left it.
#![forbid(unsafe_code)]

use alloc::vec::Vec;

use dynasm::dynasm;

use super::emitter::{DynamicLabel, Emitter};
use crate::ir::{CmpOp, Width};
use crate::program::{AluOp, Insn, Program};

/// Emits `program`; on success control falls through with the result in `eax`, on failure
/// (a load past the captured bytes, division by zero, budget spent) it jumps to `fail`. The
/// program must be verified.
pub fn emit(ops: &mut Emitter, program: &Program, fail: DynamicLabel) {
    let slots = u32::from(program.scratch_used());
    let frame = (4 * slots).div_ceil(8) * 8;
    let frame_imm = frame as i32;
    // With a frame, failing first drops it.
    let failed = if frame > 0 {
        ops.new_dynamic_label()
    } else {
        fail
    };
    let labels: Vec<DynamicLabel> = (0..=program.insns.len())
        .map(|_| ops.new_dynamic_label())
        .collect();
    dynasm!(ops
        ; .arch x64
        ; xor eax, eax
        ; xor ecx, ecx
    );
    if frame > 0 {
        dynasm!(ops ; .arch x64 ; sub rsp, DWORD frame_imm);
        for slot in 0..slots {
            let at = (4 * slot) as i32;
            dynasm!(ops ; .arch x64 ; mov DWORD [rsp + at], 0);
        }
    }
    if program.insns.iter().any(|i| matches!(i, Insn::Back(_))) {
        let budget = i32::from(program.back_edges);
        dynasm!(ops ; .arch x64 ; mov esi, DWORD budget);
    }
    for (pc, insn) in program.insns.iter().enumerate() {
        dynasm!(ops ; .arch x64 ; =>labels[pc]);
        let ahead = |n: u8| labels[pc + 1 + usize::from(n)];
        match *insn {
            Insn::Load { offset, width } => {
                let end = i32::from(offset) + i32::from(width.bytes());
                dynasm!(ops
                    ; .arch x64
                    ; cmp r10, DWORD end
                    ; jl =>failed
                );
                load(ops, width, i32::from(offset), false);
            }
            Insn::LoadIndexed { offset, width } => {
                let end = i32::from(offset) + i32::from(width.bytes());
                dynasm!(ops
                    ; .arch x64
                    ; lea rdx, [rcx + end]
                    ; cmp rdx, r10
                    ; jg =>failed
                );
                load(ops, width, i32::from(offset), true);
            }
            Insn::Const(k) => {
                let k = k as i32;
                dynasm!(ops ; .arch x64 ; mov eax, DWORD k);
            }
            Insn::WireLen => dynasm!(ops ; .arch x64 ; mov eax, r11d),
            Insn::SetX => dynasm!(ops ; .arch x64 ; mov ecx, eax),
            Insn::GetX => dynasm!(ops ; .arch x64 ; mov eax, ecx),
            Insn::Store(slot) => {
                let at = 4 * i32::from(slot);
                dynasm!(ops ; .arch x64 ; mov DWORD [rsp + at], eax);
            }
            Insn::Recall(slot) => {
                let at = 4 * i32::from(slot);
                dynasm!(ops ; .arch x64 ; mov eax, DWORD [rsp + at]);
            }
            Insn::AluConst(op, k) => alu_const(ops, op, k),
            Insn::AluX(op) => alu_x(ops, op, failed),
            Insn::Neg => dynasm!(ops ; .arch x64 ; neg eax),
            Insn::CompareX(op) => {
                dynasm!(ops ; .arch x64 ; cmp eax, ecx);
                match op {
                    CmpOp::Eq => dynasm!(ops ; .arch x64 ; sete al),
                    CmpOp::Ne => dynasm!(ops ; .arch x64 ; setne al),
                    CmpOp::Lt => dynasm!(ops ; .arch x64 ; setb al),
                    CmpOp::Le => dynasm!(ops ; .arch x64 ; setbe al),
                    CmpOp::Gt => dynasm!(ops ; .arch x64 ; seta al),
                    CmpOp::Ge => dynasm!(ops ; .arch x64 ; setae al),
                }
                dynasm!(ops ; .arch x64 ; movzx eax, al);
            }
            Insn::Jump {
                op,
                value,
                if_true,
                if_false,
            } => {
                let (taken, other) = (ahead(if_true), ahead(if_false));
                if if_true == if_false {
                    dynasm!(ops ; .arch x64 ; jmp =>taken);
                    continue;
                }
                let value = value as i32;
                dynasm!(ops ; .arch x64 ; cmp eax, DWORD value);
                match op {
                    CmpOp::Eq => dynasm!(ops ; .arch x64 ; je =>taken),
                    CmpOp::Ne => dynasm!(ops ; .arch x64 ; jne =>taken),
                    CmpOp::Lt => dynasm!(ops ; .arch x64 ; jb =>taken),
                    CmpOp::Le => dynasm!(ops ; .arch x64 ; jbe =>taken),
                    CmpOp::Gt => dynasm!(ops ; .arch x64 ; ja =>taken),
                    CmpOp::Ge => dynasm!(ops ; .arch x64 ; jae =>taken),
                }
                if if_false != 0 {
                    dynasm!(ops ; .arch x64 ; jmp =>other);
                }
            }
            Insn::Ahead(n) => dynasm!(ops ; .arch x64 ; jmp =>ahead(n)),
            Insn::Back(n) => {
                let target = labels[pc - usize::from(n)];
                dynasm!(ops
                    ; .arch x64
                    ; sub esi, 1
                    ; jb =>failed
                    ; jmp =>target
                );
            }
        }
    }
    dynasm!(ops ; .arch x64 ; =>labels[program.insns.len()]);
    if frame > 0 {
        let done = ops.new_dynamic_label();
        dynasm!(ops
            ; .arch x64
            ; add rsp, DWORD frame_imm
            ; jmp =>done
            ; =>failed
            ; add rsp, DWORD frame_imm
            ; jmp =>fail
            ; =>done
        );
    }
}

/// `eax` = `width` bytes, big-endian, at `r9 + offset` (plus `rcx` when `indexed`).
fn load(ops: &mut Emitter, width: Width, offset: i32, indexed: bool) {
    match (width, indexed) {
        (Width::B1, false) => dynasm!(ops ; .arch x64 ; movzx eax, BYTE [r9 + offset]),
        (Width::B1, true) => dynasm!(ops ; .arch x64 ; movzx eax, BYTE [r9 + rcx + offset]),
        (Width::B2, false) => dynasm!(ops
            ; .arch x64
            ; movzx eax, WORD [r9 + offset]
            ; rol ax, 8
        ),
        (Width::B2, true) => dynasm!(ops
            ; .arch x64
            ; movzx eax, WORD [r9 + rcx + offset]
            ; rol ax, 8
        ),
        (Width::B4, false) => dynasm!(ops
            ; .arch x64
            ; mov eax, DWORD [r9 + offset]
            ; bswap eax
        ),
        (Width::B4, true) => dynasm!(ops
            ; .arch x64
            ; mov eax, DWORD [r9 + rcx + offset]
            ; bswap eax
        ),
    }
}

/// `A = A op k` (a verified program divides by no constant zero and shifts by less than 32).
fn alu_const(ops: &mut Emitter, op: AluOp, k: u32) {
    let imm = k as i32;
    match op {
        AluOp::Add => dynasm!(ops ; .arch x64 ; add eax, DWORD imm),
        AluOp::Sub => dynasm!(ops ; .arch x64 ; sub eax, DWORD imm),
        AluOp::Mul => dynasm!(ops ; .arch x64 ; imul eax, eax, DWORD imm),
        AluOp::And => dynasm!(ops ; .arch x64 ; and eax, DWORD imm),
        AluOp::Or => dynasm!(ops ; .arch x64 ; or eax, DWORD imm),
        AluOp::Xor => dynasm!(ops ; .arch x64 ; xor eax, DWORD imm),
        AluOp::Shl => {
            let bits = (k & 31) as i8;
            dynasm!(ops ; .arch x64 ; shl eax, BYTE bits);
        }
        AluOp::Shr => {
            let bits = (k & 31) as i8;
            dynasm!(ops ; .arch x64 ; shr eax, BYTE bits);
        }
        AluOp::Div | AluOp::Mod => {
            dynasm!(ops
                ; .arch x64
                ; mov edi, DWORD imm
                ; xor edx, edx
                ; div edi
            );
            if op == AluOp::Mod {
                dynasm!(ops ; .arch x64 ; mov eax, edx);
            }
        }
    }
}

/// `A = A op X`; a division or remainder by a zero X jumps to `failed`.
fn alu_x(ops: &mut Emitter, op: AluOp, failed: DynamicLabel) {
    match op {
        AluOp::Add => dynasm!(ops ; .arch x64 ; add eax, ecx),
        AluOp::Sub => dynasm!(ops ; .arch x64 ; sub eax, ecx),
        AluOp::Mul => dynasm!(ops ; .arch x64 ; imul eax, ecx),
        AluOp::And => dynasm!(ops ; .arch x64 ; and eax, ecx),
        AluOp::Or => dynasm!(ops ; .arch x64 ; or eax, ecx),
        AluOp::Xor => dynasm!(ops ; .arch x64 ; xor eax, ecx),
        // x86 takes the count modulo 32; a count of 32 or more gives 0 instead.
        AluOp::Shl => dynasm!(ops
            ; .arch x64
            ; shl eax, cl
            ; xor edx, edx
            ; cmp ecx, 31
            ; cmova eax, edx
        ),
        AluOp::Shr => dynasm!(ops
            ; .arch x64
            ; shr eax, cl
            ; xor edx, edx
            ; cmp ecx, 31
            ; cmova eax, edx
        ),
        AluOp::Div | AluOp::Mod => {
            dynasm!(ops
                ; .arch x64
                ; test ecx, ecx
                ; jz =>failed
                ; xor edx, edx
                ; div ecx
            );
            if op == AluOp::Mod {
                dynasm!(ops ; .arch x64 ; mov eax, edx);
            }
        }
    }
}
