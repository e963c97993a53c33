//! The no_std assembler the `dynasm!` macro writes into: bytes, dynamic labels, relocations.
//! One copy, shared by dpf's JIT (where it was born) and ash's.
//!
//! `dynasmrt` (the macro's usual runtime) needs std, but the macro itself only emits method
//! calls on the value it is given (`push`, `push_i32`, `extend`, `align`, `dynamic_label`,
//! `dynamic_reloc`, ...). This is the subset the code generator uses, with dynasmrt's
//! relocation rules, so the bytes are exactly the ones dynasmrt would produce. Global and local
//! (`->name`, `>name`) labels are deliberately absent: every label here is dynamic, so a use the
//! generator does not support fails to compile instead of misbehaving.
#![no_std]
#![forbid(unsafe_code)]
extern crate alloc;

use alloc::vec::Vec;
use core::fmt;

/// A label whose position is decided while emitting (`=>label` in `dynasm!`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct DynamicLabel(usize);

/// Why the emitted code could not be finished.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EmitError {
    /// A relocation names a label that was never defined.
    UndefinedLabel,
    /// A label was defined twice.
    LabelRedefined,
    /// A relocation's value does not fit its field (e.g. a `BYTE` jump too far away).
    RelocationOutOfRange,
    /// A relocation kind other than relative (absolute addresses would tie the code to one
    /// mapping, which the swap-by-copy design forbids).
    UnsupportedRelocation,
}

impl fmt::Display for EmitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            EmitError::UndefinedLabel => "relocation against an undefined label",
            EmitError::LabelRedefined => "label defined twice",
            EmitError::RelocationOutOfRange => "relocation value does not fit its field",
            EmitError::UnsupportedRelocation => "only relative relocations are supported",
        })
    }
}

/// A relocation waiting for the end of emission, when every label is known.
#[derive(Clone, Copy, Debug)]
struct PendingRelocation {
    label: DynamicLabel,
    /// Offset just past the instruction (where dynasm says "at").
    at: usize,
    target_offset: isize,
    field_offset: u8,
    ref_offset: u8,
    kind: u8,
}

/// Bytes plus labels: what `dynasm!(emitter ; .arch x64 ; ...)` appends to.
#[derive(Debug, Default)]
pub struct Emitter {
    code: Vec<u8>,
    labels: Vec<Option<usize>>,
    relocations: Vec<PendingRelocation>,
    error: Option<EmitError>,
}

impl Emitter {
    /// An empty buffer.
    pub fn new() -> Emitter {
        Emitter::default()
    }

    /// Where the next byte goes.
    pub fn offset(&self) -> usize {
        self.code.len()
    }

    /// A fresh, not yet placed label.
    pub fn new_dynamic_label(&mut self) -> DynamicLabel {
        self.labels.push(None);
        DynamicLabel(self.labels.len() - 1)
    }

    /// Where `label` was placed, if it was.
    pub fn label_offset(&self, label: DynamicLabel) -> Option<usize> {
        self.labels.get(label.0).copied().flatten()
    }

    /// The bytes so far (relocations not yet applied).
    pub fn bytes(&self) -> &[u8] {
        &self.code
    }

    // ---- the interface the `dynasm!` macro calls ----

    /// One byte.
    pub fn push(&mut self, byte: u8) {
        self.code.push(byte);
    }

    /// A signed byte.
    pub fn push_i8(&mut self, value: i8) {
        self.code.push(value as u8);
    }

    /// Little-endian `u16`.
    pub fn push_u16(&mut self, value: u16) {
        self.code.extend_from_slice(&value.to_le_bytes());
    }

    /// Little-endian `i16`.
    pub fn push_i16(&mut self, value: i16) {
        self.code.extend_from_slice(&value.to_le_bytes());
    }

    /// Little-endian `u32`.
    pub fn push_u32(&mut self, value: u32) {
        self.code.extend_from_slice(&value.to_le_bytes());
    }

    /// Little-endian `i32`.
    pub fn push_i32(&mut self, value: i32) {
        self.code.extend_from_slice(&value.to_le_bytes());
    }

    /// Little-endian `u64`.
    pub fn push_u64(&mut self, value: u64) {
        self.code.extend_from_slice(&value.to_le_bytes());
    }

    /// Little-endian `i64`.
    pub fn push_i64(&mut self, value: i64) {
        self.code.extend_from_slice(&value.to_le_bytes());
    }

    /// Overwrites the little-endian `u32` at `at` (already emitted).
    pub fn patch_u32(&mut self, at: usize, value: u32) {
        self.code[at..at + 4].copy_from_slice(&value.to_le_bytes());
    }

    /// Overwrites the little-endian `u64` at `at` (already emitted).
    pub fn patch_u64(&mut self, at: usize, value: u64) {
        self.code[at..at + 8].copy_from_slice(&value.to_le_bytes());
    }

    /// Bytes the macro folded at compile time.
    pub fn extend(&mut self, bytes: &[u8]) {
        self.code.extend_from_slice(bytes);
    }

    /// Pads with `with` until the offset is a multiple of `alignment` (as dynasmrt does).
    pub fn align(&mut self, alignment: usize, with: u8) {
        if alignment == 0 {
            return;
        }
        let misalignment = self.code.len() % alignment;
        if misalignment != 0 {
            let padding = alignment - misalignment;
            self.code.resize(self.code.len() + padding, with);
        }
    }

    /// `=>label` as a definition: the label is here.
    pub fn dynamic_label(&mut self, label: DynamicLabel) {
        match self.labels.get_mut(label.0) {
            Some(slot @ None) => *slot = Some(self.code.len()),
            _ => self.fail(EmitError::LabelRedefined),
        }
    }

    /// `=>label` as an operand: the field just emitted refers to `label`. The field starts at
    /// `offset - field_offset`; its value is `target + target_offset - (offset - ref_offset)`;
    /// `kind` holds the field size in bits 0-5 (0/1/2/3 = 1/2/4/8 bytes) and the relocation
    /// kind in bits 6-7 (0 = relative, the only one supported).
    pub fn dynamic_reloc(
        &mut self,
        label: DynamicLabel,
        target_offset: isize,
        field_offset: u8,
        ref_offset: u8,
        kind: u8,
    ) {
        self.relocations.push(PendingRelocation {
            label,
            at: self.code.len(),
            target_offset,
            field_offset,
            ref_offset,
            kind,
        });
    }

    fn fail(&mut self, error: EmitError) {
        self.error.get_or_insert(error);
    }

    /// Applies every relocation and returns the finished code.
    pub fn finish(mut self) -> Result<Vec<u8>, EmitError> {
        if let Some(error) = self.error {
            return Err(error);
        }
        for relocation in core::mem::take(&mut self.relocations) {
            self.apply(relocation)?;
        }
        Ok(self.code)
    }

    fn apply(&mut self, relocation: PendingRelocation) -> Result<(), EmitError> {
        let target = self
            .label_offset(relocation.label)
            .ok_or(EmitError::UndefinedLabel)?;
        if relocation.kind >> 6 != 0 {
            return Err(EmitError::UnsupportedRelocation);
        }
        let size = 1usize << (relocation.kind & 0x3f);
        let field_start = relocation
            .at
            .checked_sub(relocation.field_offset as usize)
            .ok_or(EmitError::RelocationOutOfRange)?;
        let reference = relocation
            .at
            .checked_sub(relocation.ref_offset as usize)
            .ok_or(EmitError::RelocationOutOfRange)?;
        let value = (target as i64 + relocation.target_offset as i64) - reference as i64;
        let field = self
            .code
            .get_mut(field_start..field_start + size)
            .ok_or(EmitError::RelocationOutOfRange)?;
        let fits = match size {
            1 => i8::try_from(value).is_ok(),
            2 => i16::try_from(value).is_ok(),
            4 => i32::try_from(value).is_ok(),
            _ => true,
        };
        if !fits {
            return Err(EmitError::RelocationOutOfRange);
        }
        field.copy_from_slice(&value.to_le_bytes()[..size]);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dynasm::dynasm;

    #[test]
    fn forward_and_backward_jumps_are_relative_to_the_next_instruction() {
        let mut ops = Emitter::new();
        let top = ops.new_dynamic_label();
        let bottom = ops.new_dynamic_label();
        dynasm!(ops
            ; .arch x64
            ; =>top
            ; jmp =>bottom
            ; nop
            ; =>bottom
            ; jmp =>top
        );
        let code = ops.finish().unwrap();
        // E9 rel32 = +1 (skips the nop); then E9 rel32 = -(5 + 1 + 5) back to 0.
        assert_eq!(
            code,
            [
                0xe9, 0x01, 0x00, 0x00, 0x00, 0x90, 0xe9, 0xf5, 0xff, 0xff, 0xff
            ]
        );
    }

    #[test]
    fn conditional_byte_jump_and_rip_relative_lea() {
        let mut ops = Emitter::new();
        let data = ops.new_dynamic_label();
        let out = ops.new_dynamic_label();
        dynasm!(ops
            ; .arch x64
            ; lea rcx, [=>data]
            ; jne BYTE =>out
            ; =>out
            ; ret
            ; =>data
        );
        let code = ops.finish().unwrap();
        // lea rcx, [rip + 3]: 48 8D 0D disp32, measured from the end of the lea (7 bytes)
        // to `data` at 10; jne rel8 = 0; ret.
        assert_eq!(
            code,
            [0x48, 0x8d, 0x0d, 0x03, 0x00, 0x00, 0x00, 0x75, 0x00, 0xc3]
        );
    }

    #[test]
    fn byte_jump_out_of_range_is_an_error_not_a_wrong_jump() {
        let mut ops = Emitter::new();
        let far = ops.new_dynamic_label();
        dynasm!(ops ; .arch x64 ; jmp BYTE =>far);
        for _ in 0..200 {
            dynasm!(ops ; .arch x64 ; nop);
        }
        dynasm!(ops ; .arch x64 ; =>far);
        assert_eq!(ops.finish(), Err(EmitError::RelocationOutOfRange));
    }

    #[test]
    fn undefined_and_redefined_labels_are_errors() {
        let mut ops = Emitter::new();
        let nowhere = ops.new_dynamic_label();
        dynasm!(ops ; .arch x64 ; jmp =>nowhere);
        assert_eq!(ops.finish(), Err(EmitError::UndefinedLabel));
        let mut ops = Emitter::new();
        let twice = ops.new_dynamic_label();
        dynasm!(ops ; .arch x64 ; =>twice ; =>twice);
        assert_eq!(ops.finish(), Err(EmitError::LabelRedefined));
    }

    #[test]
    fn runtime_immediates_and_alignment() {
        let mut ops = Emitter::new();
        let value: i32 = 0x0102_0304;
        let wide: i64 = 0x1122_3344_5566_7788;
        dynasm!(ops
            ; .arch x64
            ; cmp eax, DWORD value
            ; mov rax, QWORD wide
            ; .align 8
        );
        let code = ops.finish().unwrap();
        assert_eq!(&code[..5], &[0x3d, 0x04, 0x03, 0x02, 0x01]);
        assert_eq!(
            &code[5..15],
            &[0x48, 0xb8, 0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11]
        );
        assert_eq!(code.len(), 16);
        assert!(code[15..].iter().all(|&b| b == 0x90));
    }
}
