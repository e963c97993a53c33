//! dpf three ways: the merged trie interpreted, the merged trie compiled, and (to show what
//! merging buys) one compiled trie per filter run in sequence.

use std::io;

use dpf::interp;
use dpf::jit::{self, ExecutableTrie};
use dpf::trie::Trie;
use dpf::{Filter, FilterId};

use super::{Demux, Tally, first_match};
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

/// The merged trie compiled once and mapped twice, replayed through each copy in turn, a pass
/// over the trace each: the benchmark's check that the trace is too long for a branch predictor
/// to learn by heart. Whatever a predictor learns of a trace in one copy's pass is keyed to that
/// copy's addresses and is gone by its next pass, so this costs what one copy does unless the
/// predictor was predicting the trace from memory (with 25,000 packets it ran 1.7 times as
/// long as one copy at 1 filter).
#[derive(Debug)]
pub struct DpfJitTwoCopies {
    copies: [ExecutableTrie; 2],
    next: usize,
}

impl DpfJitTwoCopies {
    /// Maps `trie`'s code twice.
    pub fn new(trie: &Trie) -> Result<DpfJitTwoCopies, String> {
        Ok(DpfJitTwoCopies {
            copies: [executable(trie)?, executable(trie)?],
            next: 0,
        })
    }
}

impl Demux for DpfJitTwoCopies {
    #[inline]
    fn classify(&mut self, arena: &PacketArena, span: PacketSpan) -> Option<u32> {
        self.copies[self.next]
            .classify(&arena.packet(span))
            .map(|FilterId(id)| id)
    }

    fn replay(&mut self, arena: &PacketArena, spans: &[PacketSpan]) -> Tally {
        let code = &self.copies[self.next];
        self.next = (self.next + 1) % self.copies.len();
        let mut tally = Tally::default();
        for &span in spans {
            tally.add(code.classify(&arena.packet(span)).map(|FilterId(id)| id));
        }
        tally
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
