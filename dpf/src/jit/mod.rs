//! The JIT: the whole trie compiled into one block of x86_64 code with `dynasm!`.
//!
//! [`compile`] is no_std: it produces the bytes and the entry offset, which the kernel maps on
//! its own W^X pages. With the `std` feature, [`ExecutableTrie`] maps them on a Linux host and
//! calls them. The generated function follows the System V ABI:
//!
//! ```text
//! extern "sysv64" fn(data: *const u8, captured_len: usize, wire_len: u32) -> u64
//! ```
//!
//! and returns the winning [`crate::trie::Score`]: 0 when nothing matches, otherwise
//! `(atoms + 1) << 32 | (u32::MAX - id)` ([`crate::trie::Score::id`] decodes it). `captured_len`
//! must be below 2^32 for `CapturedFromBase` atoms to agree with the reference (which measures
//! it as a `u32`).
// `deny`, not `forbid`: `exec` is the one module allowed unsafe (mapping and calling the code);
// every other module below says `forbid` itself.
#![deny(unsafe_code)]

pub mod coalesce;
pub mod codegen;
pub mod demux;
/// The assembler (the `x86-emitter` crate, shared with ash's JIT).
pub mod emitter {
    pub use x86_emitter::*;
}
#[cfg(feature = "std")]
pub mod exec;
pub mod hash_table;
pub mod program_code;
pub mod template;

use alloc::vec::Vec;

pub use codegen::CodegenStats;
pub use demux::{Demux, DemuxError, Update};
pub use emitter::EmitError;
#[cfg(feature = "std")]
pub use exec::ExecutableTrie;

use crate::trie::Trie;

/// Generated code for one trie, not yet executable.
#[derive(Clone, Debug)]
pub struct CompiledTrie {
    code: Vec<u8>,
    entry: usize,
    instructions_end: usize,
    stats: CodegenStats,
    /// Templated tables, which [`Demux`] patches in place.
    templates: Vec<codegen::TemplateTable>,
    data_fixups: Vec<usize>,
    data_offset: usize,
}

impl CompiledTrie {
    /// Code followed by its hash tables.
    pub fn code(&self) -> &[u8] {
        &self.code
    }

    /// Offset of the function's first instruction in [`CompiledTrie::code`].
    pub fn entry_offset(&self) -> usize {
        self.entry
    }

    /// Where the instructions end and the hash tables begin (for disassemblers).
    pub fn instructions_end(&self) -> usize {
        self.instructions_end
    }

    /// Offsets in the instructions of the `u64` immediates that must hold the address of the
    /// tables once mapped: a loader maps the tables (read+write, apart from the read+execute
    /// code) and writes their address at each before it makes the code executable. As generated
    /// they are 0, so code that was not loaded cannot reach a table. Empty when there are no
    /// tables.
    pub fn data_fixups(&self) -> &[usize] {
        &self.data_fixups
    }

    /// Where the tables (the data) start in [`CompiledTrie::code`]: page-aligned, or the code
    /// length when there are none. Bytes before it are instructions and the constants they read.
    pub fn data_offset(&self) -> usize {
        self.data_offset
    }

    /// The templated tables: where each sits and how its entries are laid out.
    pub fn templates(&self) -> &[codegen::TemplateTable] {
        &self.templates
    }

    /// What the generator did.
    pub fn stats(&self) -> CodegenStats {
        self.stats
    }
}

/// Compiles every filter bound in `trie` into one function.
pub fn compile(trie: &Trie) -> Result<CompiledTrie, EmitError> {
    let generated = codegen::generate(trie)?;
    Ok(CompiledTrie {
        code: generated.code,
        entry: generated.entry,
        instructions_end: generated.instructions_end,
        stats: generated.stats,
        templates: generated.templates,
        data_fixups: generated.data_fixups,
        data_offset: generated.data_offset,
    })
}
