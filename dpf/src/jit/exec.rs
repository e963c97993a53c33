//! Executable mapping of generated code on a std host (Linux): write, then read+execute.
//!
//! The only module of the crate with `unsafe`. The instructions are copied into an anonymous
//! writable mapping which is then turned read+execute (`make_exec`), so a page is never writable
//! and executable at once. The hash tables go to a second mapping, read+write and never
//! executable, whose address is written into the code's data fixups here before `make_exec`;
//! adding or removing a templated key then writes a few bytes of that data in place
//! ([`ExecutableTrie::write_data`]), with no new code and no remapping. The kernel does the same
//! with its own W^X pages.
#![allow(unsafe_code)]

use std::io;

use memmap2::{Mmap, MmapMut, MmapOptions};

use super::CompiledTrie;
use crate::ir::{FilterId, Packet};
use crate::trie::Score;

/// The generated function: `data` points to `captured_len` readable bytes, `wire_len` is the
/// length on the wire; returns the best [`Score`] (0 = no match).
pub type DemuxFn =
    unsafe extern "sysv64" fn(data: *const u8, captured_len: usize, wire_len: u32) -> u64;

/// Generated code mapped read+execute, ready to classify packets.
#[derive(Debug)]
pub struct ExecutableTrie {
    mapping: Mmap,
    /// The tables (read+write, not executable); `None` when there are none.
    data: Option<MmapMut>,
    /// Offset of the data in [`CompiledTrie::code`].
    data_offset: usize,
    entry: usize,
}

impl ExecutableTrie {
    /// Maps `compiled`: copies the code into fresh pages and makes them executable.
    pub fn new(compiled: &CompiledTrie) -> io::Result<ExecutableTrie> {
        let code = compiled.code();
        let entry = compiled.entry_offset();
        if entry >= code.len() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "entry offset outside the code",
            ));
        }
        let data_offset = compiled.data_offset();
        if entry >= data_offset || data_offset > code.len() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "entry offset outside the instructions",
            ));
        }
        let (instructions, tables) = code.split_at(data_offset);
        let mut writable = MmapOptions::new().len(instructions.len()).map_anon()?;
        writable.copy_from_slice(instructions);
        let fixups = compiled.data_fixups();
        if fixups
            .iter()
            .any(|&at| at.checked_add(8).is_none_or(|end| end > instructions.len()))
        {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "data fixup outside the instructions",
            ));
        }
        let data = if tables.is_empty() {
            if !fixups.is_empty() {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "data fixups without tables",
                ));
            }
            None
        } else {
            // Populated up front: the probes would otherwise fault pages in one by one.
            let mut data = MmapOptions::new().len(tables.len()).populate().map_anon()?;
            data.copy_from_slice(tables);
            let address = (data.as_ptr() as u64).to_le_bytes();
            for &at in fixups {
                writable[at..at + 8].copy_from_slice(&address);
            }
            Some(data)
        };
        let mapping = writable.make_exec()?;
        Ok(ExecutableTrie {
            mapping,
            data,
            data_offset,
            entry,
        })
    }

    /// Writes `bytes` at `offset` of [`CompiledTrie::code`] (which must lie in the tables) into
    /// the mapped tables, as [`super::Demux`] does after a patched change. No other thread can
    /// be running the code meanwhile: this takes `&mut self` and classifying takes `&self`.
    pub fn write_data(&mut self, offset: usize, bytes: &[u8]) -> io::Result<()> {
        let out_of_range =
            || io::Error::new(io::ErrorKind::InvalidInput, "write outside the tables");
        let data = self.data.as_mut().ok_or_else(out_of_range)?;
        let start = offset
            .checked_sub(self.data_offset)
            .ok_or_else(out_of_range)?;
        let end = start.checked_add(bytes.len()).ok_or_else(out_of_range)?;
        data.get_mut(start..end)
            .ok_or_else(out_of_range)?
            .copy_from_slice(bytes);
        Ok(())
    }

    /// The mapped instructions (with the data fixups holding the mapped tables' address), for
    /// disassembly.
    pub fn code(&self) -> &[u8] {
        &self.mapping
    }

    /// The mapped tables.
    pub fn data(&self) -> &[u8] {
        self.data.as_deref().unwrap_or(&[])
    }

    /// Offset of the entry point in [`ExecutableTrie::code`].
    pub fn entry_offset(&self) -> usize {
        self.entry
    }

    /// The winning filter for `packet`.
    #[inline]
    pub fn classify(&self, packet: &Packet<'_>) -> Option<FilterId> {
        self.classify_score(packet).id()
    }

    /// The winning [`Score`].
    #[inline]
    pub fn classify_score(&self, packet: &Packet<'_>) -> Score {
        // SAFETY: (1) `entry` is inside the mapping (checked in `new`) and the mapping is
        // read+execute and lives as long as `self`; so does the data mapping, and every data
        // fixup was set in `new` to its address, so every table address the code forms lies
        // inside it (table offsets within the data come from the generator,
        // and `write_data` only changes bytes inside the data, never its size). (2) The bytes are a function produced by
        // `codegen::generate` with the `DemuxFn` signature: it only reads `data[0..captured_len]`
        // (every load sits behind a bounds check against `captured_len` minus the base:
        // `cmp r10, need`, or in a templated body after a shift, whose base is `r9 + rdx`,
        // `r10 >= rdx + need`; shifts only move the base forward by verified amounts; a table
        // choice for a value with no table yields an empty table in the data), reads its own hash
        // tables, writes nothing but its own stack (balanced push/pop), uses only caller-saved
        // registers, and terminates (forward jumps only, except the hash probe loop, which stops
        // at an empty slot of a table never full: generation (two thirds at most, one half for a
        // jump table) and `Demux` patches (three quarters at most) both keep that bound, and `write_data` writes only what `Demux` computed). (3) `packet.data` is a live slice, so
        // its pointer and length describe readable memory for the duration of the call.
        unsafe {
            let function: DemuxFn =
                core::mem::transmute::<*const u8, DemuxFn>(self.mapping.as_ptr().add(self.entry));
            Score(function(
                packet.data.as_ptr(),
                packet.data.len(),
                packet.wire_len,
            ))
        }
    }
}
