//! Executable mapping of generated code on a std host (Linux): write, then read+execute.
//!
//! The only module of the crate with `unsafe`. The code is copied into an anonymous writable
//! mapping which is then turned read+execute (`make_exec`), so a page is never writable and
//! executable at once. The kernel does the same with its own W^X pages.
#![allow(unsafe_code)]

use std::io;

use memmap2::{Mmap, MmapOptions};

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
        // Populated up front: faulting in a large table page by page would dominate the cost of
        // a bind that only patched one entry.
        let mut writable = MmapOptions::new().len(code.len()).populate().map_anon()?;
        writable.copy_from_slice(code);
        let mapping = writable.make_exec()?;
        Ok(ExecutableTrie { mapping, entry })
    }

    /// The mapped bytes (as generated), for disassembly.
    pub fn code(&self) -> &[u8] {
        &self.mapping
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
        // read+execute and lives as long as `self`. (2) The bytes are a function produced by
        // `codegen::generate` with the `DemuxFn` signature: it only reads `data[0..captured_len]`
        // (every load sits behind a `cmp r10, need` bounds check against `captured_len` minus
        // the base, shifts only move the base forward by verified amounts), reads its own hash
        // tables, writes nothing but its own stack (balanced push/pop), uses only caller-saved
        // registers, and terminates (forward jumps only, except the hash probe loop, which stops
        // at an empty slot of a table at most half full). (3) `packet.data` is a live slice, so
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
