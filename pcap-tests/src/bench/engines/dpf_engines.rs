//! dpf three ways: the merged trie interpreted, the merged trie compiled, and (to show what
//! merging buys) one compiled trie per filter run in sequence.

use std::io;

use dpf::interp;
use dpf::jit::{self, ExecutableTrie};
use dpf::trie::Trie;
use dpf::{Filter, FilterId};

use super::{Demux, first_match};
use crate::bench::packets::{PacketArena, PacketSpan};

/// Why a dpf engine could not be built.
pub fn build_error(what: &str, e: impl std::fmt::Display) -> String {
    format!("{what}: {e}")
}

/// The filters of flows `0..K`, flow `i` owning `FilterId(i)`.
pub fn merged_trie(filters_by_flow: &[Vec<Filter>]) -> Result<Trie, String> {
    Trie::from_filters(filters_by_flow.iter().flatten().cloned())
        .map_err(|e| build_error("trie insert", e))
}

/// The merged trie, interpreted.
#[derive(Debug)]
pub struct DpfInterp {
    trie: Trie,
}

impl DpfInterp {
    /// Interprets `trie`.
    pub fn new(trie: Trie) -> DpfInterp {
        DpfInterp { trie }
    }
}

impl Demux for DpfInterp {
    #[inline]
    fn classify(&mut self, arena: &PacketArena, span: PacketSpan) -> Option<u32> {
        interp::classify(&self.trie, &arena.packet(span)).map(|FilterId(id)| id)
    }
}

/// Compiles and maps a trie.
pub fn executable(trie: &Trie) -> Result<ExecutableTrie, String> {
    let compiled = jit::compile(trie).map_err(|e| build_error("dpf jit", e))?;
    ExecutableTrie::new(&compiled).map_err(|e: io::Error| build_error("mapping code", e))
}

/// The merged trie, compiled.
#[derive(Debug)]
pub struct DpfJit {
    code: ExecutableTrie,
}

impl DpfJit {
    /// Runs `code`.
    pub fn new(code: ExecutableTrie) -> DpfJit {
        DpfJit { code }
    }
}

impl Demux for DpfJit {
    #[inline]
    fn classify(&mut self, arena: &PacketArena, span: PacketSpan) -> Option<u32> {
        self.code
            .classify(&arena.packet(span))
            .map(|FilterId(id)| id)
    }
}

/// One compiled trie per flow (each holding that flow's one or three conjunctions).
pub fn unmerged_programs(filters_by_flow: &[Vec<Filter>]) -> Result<Vec<ExecutableTrie>, String> {
    filters_by_flow
        .iter()
        .map(|filters| {
            let trie = Trie::from_filters(filters.iter().cloned())
                .map_err(|e| build_error("trie insert", e))?;
            executable(&trie)
        })
        .collect()
}

/// Per-flow compiled tries in sequence, first match wins.
#[derive(Debug)]
pub struct DpfJitUnmerged<'a> {
    programs: &'a [ExecutableTrie],
}

impl<'a> DpfJitUnmerged<'a> {
    /// Runs `programs` in order.
    pub fn new(programs: &'a [ExecutableTrie]) -> DpfJitUnmerged<'a> {
        DpfJitUnmerged { programs }
    }
}

impl Demux for DpfJitUnmerged<'_> {
    #[inline]
    fn classify(&mut self, arena: &PacketArena, span: PacketSpan) -> Option<u32> {
        let packet = arena.packet(span);
        first_match(self.programs, |code| code.classify_score(&packet).0 != 0)
    }
}
