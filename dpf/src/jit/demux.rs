//! A live demultiplexer: the trie and its generated code kept in step on insert and remove.
//!
//! Most binds in a busy system add one more flow to a large disjunction whose keys share one
//! templated body (see [`super::template`]). Then nothing in the code changes but one table
//! entry, so the entry is written into the tables (and, by [`Demux::sync`], into the mapped
//! read+write data, with no remapping), as the paper does ("adding a hash-table key needs no regeneration"). Anything else regenerates the
//! whole function. The fast path applies only when it provably yields the code a regeneration
//! would be equivalent to:
//! - the new filter reaches an existing templated dispatch and its remaining steps have the
//!   dispatch's shape (so bounds checks, computed from the shape, are unchanged);
//! - its score does not raise the dispatch's bound (so no pruning constant or alternative order
//!   above it changes);
//! - the table stays at most three quarters full (`codegen::PATCHED_LOAD`; tables are
//!   generated at most two thirds full, so growth regenerates rarely), and a table whose code has no probe loop receives the key only
//!   in its home slot.
//!
//! Removing a key from a templated table is a table edit too: bounds can only fall, and a
//! pruning constant higher than the true bound only prunes less, which is still exact.
#![forbid(unsafe_code)]

use alloc::vec::Vec;
use core::fmt;

use super::codegen::TemplateTable;
use super::hash_table::RangedLayout;
use super::template::ShapeStep;
use super::{CompiledTrie, EmitError, compile};
use crate::ir::{CmpOp, Filter, Step};
use crate::trie::{FilterHandle, InsertError, NodeIndex, NodeKind, RemoveError, Score, Trie};

/// How the code followed a change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Update {
    /// One table entry was rewritten.
    Patched,
    /// The whole function was generated again.
    Regenerated,
}

/// Why a change was refused. The trie and the code are unchanged when this is returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DemuxError {
    /// The trie refused the filter.
    Insert(InsertError),
    /// The trie has no such filter.
    Remove(RemoveError),
    /// Code generation failed (a generator bug, reported rather than hidden).
    Emit(EmitError),
}

impl fmt::Display for DemuxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DemuxError::Insert(e) => e.fmt(f),
            DemuxError::Remove(e) => e.fmt(f),
            DemuxError::Emit(e) => write!(f, "code generation failed: {e}"),
        }
    }
}

/// Every bound filter, merged, with its code.
#[derive(Clone, Debug)]
pub struct Demux {
    trie: Trie,
    compiled: CompiledTrie,
    /// Table bytes (`start..end` in the code) patched since the last [`Demux::sync`].
    dirty: Vec<(usize, usize)>,
    /// Regenerated since the last [`Demux::sync`]: a mapping must be made afresh.
    stale: bool,
}

/// Where a new key goes in a templated table.
struct Patch {
    record: usize,
    slot: usize,
    key: u32,
    parameters: Vec<u32>,
    score: u64,
}

impl Demux {
    /// No filters: matches nothing.
    pub fn new() -> Result<Demux, DemuxError> {
        let trie = Trie::new();
        let compiled = compile(&trie).map_err(DemuxError::Emit)?;
        Ok(Demux {
            trie,
            compiled,
            dirty: Vec::new(),
            stale: true,
        })
    }

    /// `filters` bound at once (one code generation).
    pub fn from_filters(filters: impl IntoIterator<Item = Filter>) -> Result<Demux, DemuxError> {
        let trie = Trie::from_filters(filters).map_err(DemuxError::Insert)?;
        let compiled = compile(&trie).map_err(DemuxError::Emit)?;
        Ok(Demux {
            trie,
            compiled,
            dirty: Vec::new(),
            stale: true,
        })
    }

    /// The merged filters.
    pub fn trie(&self) -> &Trie {
        &self.trie
    }

    /// The current code (map it with `ExecutableTrie::new`, then keep that mapping in step
    /// with [`Demux::sync`]).
    pub fn compiled(&self) -> &CompiledTrie {
        &self.compiled
    }

    fn regenerated(&mut self) {
        self.stale = true;
        self.dirty.clear();
    }

    fn touched(&mut self, start: usize, len: usize) {
        self.dirty.push((start, start + len));
    }

    /// What a loader of this demux's code must do to catch up since it last asked: `None` when
    /// the code was generated anew (load [`Demux::compiled`] afresh), else the byte ranges of
    /// [`CompiledTrie::code`] (all inside the tables) patched in place, to copy into its
    /// mapped tables. The `no_std` counterpart of [`Demux::sync`], for the kernel.
    pub fn take_patches(&mut self) -> Option<Vec<(usize, usize)>> {
        let stale = core::mem::replace(&mut self.stale, false);
        let dirty = core::mem::take(&mut self.dirty);
        (!stale).then_some(dirty)
    }

    /// Brings `mapped` (mapped from this demux's code) up to date: patched table entries are
    /// written into its data in place, a regenerated function is mapped afresh.
    #[cfg(feature = "std")]
    pub fn sync(&mut self, mapped: &mut super::ExecutableTrie) -> std::io::Result<()> {
        if self.stale {
            *mapped = super::ExecutableTrie::new(&self.compiled)?;
            self.stale = false;
        } else {
            for &(start, end) in &self.dirty {
                mapped.write_data(start, &self.compiled.code[start..end])?;
            }
        }
        self.dirty.clear();
        Ok(())
    }

    /// Binds `filter`, patching the code when possible.
    pub fn insert(&mut self, filter: Filter) -> Result<(FilterHandle, Update), DemuxError> {
        let patch = self.plan_insert(&filter);
        let handle = self.trie.insert(filter).map_err(DemuxError::Insert)?;
        match patch {
            Some(patch) => {
                self.write_entry(&patch);
                self.compiled.templates[patch.record].keys += 1;
                Ok((handle, Update::Patched))
            }
            None => match compile(&self.trie) {
                Ok(compiled) => {
                    self.compiled = compiled;
                    self.regenerated();
                    Ok((handle, Update::Regenerated))
                }
                Err(e) => {
                    // Keep trie and code in step: undo the insert.
                    let _ = self.trie.remove(handle);
                    Err(DemuxError::Emit(e))
                }
            },
        }
    }

    /// Unbinds the filter `handle` names, patching the code when possible.
    pub fn remove(&mut self, handle: FilterHandle) -> Result<(Filter, Update), DemuxError> {
        let accept = self
            .trie
            .accept_of(handle)
            .ok_or(DemuxError::Remove(RemoveError::UnknownHandle))?;
        let patch = self.plan_remove(accept);
        let filter = self.trie.remove(handle).map_err(DemuxError::Remove)?;
        match patch {
            Some((record, slot)) => {
                self.delete_entry(record, slot);
                self.compiled.templates[record].keys -= 1;
                Ok((filter, Update::Patched))
            }
            None => match compile(&self.trie) {
                Ok(compiled) => {
                    self.compiled = compiled;
                    self.regenerated();
                    Ok((filter, Update::Regenerated))
                }
                Err(e) => {
                    // Keep trie and code in step: put the filter back (it was bound a moment ago).
                    let _ = self.trie.insert(filter);
                    Err(DemuxError::Emit(e))
                }
            },
        }
    }

    fn plan_insert(&self, filter: &Filter) -> Option<Patch> {
        let steps = filter.steps();
        let (at, taken) = self.trie.longest_prefix(steps);
        let Some(Step::Test(atom)) = steps.get(taken) else {
            return None;
        };
        if atom.op != CmpOp::Eq {
            return None;
        }
        let dispatch = self.trie.dispatch_of(at, atom.field, atom.mask)?;
        let record = self
            .compiled
            .templates
            .iter()
            .position(|t| t.dispatch == dispatch)?;
        let table = &self.compiled.templates[record];
        let rest = &steps[taken + 1..];
        let score = Score::new(filter.atom_count(), filter.id());
        // The table's code holds the rank; an entry's low half of 0 would read as empty.
        let accept = ShapeStep::Accept {
            rank: (score.0 >> 32) as u32,
        };
        if rest.len() + 1 != table.shape.len()
            || table.shape.last() != Some(&accept)
            || score.0 as u32 == 0
        {
            return None;
        }
        let mut parameters = Vec::with_capacity(table.entry.parameters);
        for (step, shape) in rest.iter().zip(&table.shape) {
            match (step, shape) {
                (Step::Test(a), ShapeStep::Compare { field, mask, op })
                    if a.field == *field && a.mask == *mask && a.op == *op =>
                {
                    parameters.push(shape.stored(a.value))
                }
                (Step::Shift(s), ShapeStep::Shift(t)) if s == t => {}
                _ => return None,
            }
        }
        if score > self.trie.node(dispatch).bound() {
            return None;
        }
        let (num, den) = super::codegen::PATCHED_LOAD;
        if (table.keys + 1) * den > table.slots * num {
            return None;
        }
        let mut slot = RangedLayout::home(table.slots, table.multiplier, atom.value);
        while !self.slot_is_empty(table, slot) {
            if !table.probes {
                return None;
            }
            slot = RangedLayout::next(table.slots, slot);
        }
        Some(Patch {
            record,
            slot,
            key: atom.value,
            parameters,
            score: score.0,
        })
    }

    /// The templated table and slot holding the key whose chain ends at `accept`, when removing
    /// that filter only takes that entry out.
    fn plan_remove(&self, accept: NodeIndex) -> Option<(usize, usize)> {
        let mut node = accept;
        loop {
            if self.trie.node(node).filter_count() != 1 {
                return None;
            }
            let parent = self.trie.node(node).parent()?;
            if let NodeKind::Key { value } = *self.trie.node(node).kind()
                && let Some(record) = self
                    .compiled
                    .templates
                    .iter()
                    .position(|t| t.dispatch == parent)
            {
                // The dispatch must survive, or the code above it changes.
                if self.trie.node(parent).filter_count() < 2 {
                    return None;
                }
                let table = &self.compiled.templates[record];
                let mut slot = RangedLayout::home(table.slots, table.multiplier, value);
                while !self.slot_is_empty(table, slot) {
                    if self.read_u32(table, slot, 0) == value {
                        return Some((record, slot));
                    }
                    slot = RangedLayout::next(table.slots, slot);
                }
                return None;
            }
            node = parent;
        }
    }

    fn entry_start(table: &TemplateTable, slot: usize) -> usize {
        table.offset + slot * table.entry.size
    }

    fn read_u32(&self, table: &TemplateTable, slot: usize, at: usize) -> u32 {
        let start = Self::entry_start(table, slot) + at;
        let mut bytes = [0u8; 4];
        bytes.copy_from_slice(&self.compiled.code[start..start + 4]);
        u32::from_le_bytes(bytes)
    }

    fn slot_is_empty(&self, table: &TemplateTable, slot: usize) -> bool {
        let start = Self::entry_start(table, slot) + table.entry.score_offset;
        self.compiled.code[start..start + 4].iter().all(|&b| b == 0)
    }

    fn write_entry(&mut self, patch: &Patch) {
        let table = &self.compiled.templates[patch.record];
        let start = Self::entry_start(table, patch.slot);
        let entry = table.entry;
        let code = &mut self.compiled.code;
        code[start..start + 4].copy_from_slice(&patch.key.to_le_bytes());
        for (i, parameter) in patch.parameters.iter().enumerate() {
            let at = start + entry.parameter_offset(i);
            code[at..at + 4].copy_from_slice(&parameter.to_le_bytes());
        }
        // The low half: the rank is the table's, in the code.
        let at = start + entry.score_offset;
        code[at..at + 4].copy_from_slice(&(patch.score as u32).to_le_bytes());
        self.touched(start, entry.size);
    }

    /// Empties `slot` and moves later entries of its probe run back (the same backward-shift
    /// deletion as the trie's key table), so lookups never stop early at a hole.
    fn delete_entry(&mut self, record: usize, slot: usize) {
        let table = self.compiled.templates[record].clone();
        let size = table.entry.size;
        let count = table.slots;
        let clear = |code: &mut [u8], slot: usize| {
            let start = Self::entry_start(&table, slot);
            code[start..start + size].fill(0);
        };
        clear(&mut self.compiled.code, slot);
        self.touched(Self::entry_start(&table, slot), size);
        let mut hole = slot;
        let mut next = RangedLayout::next(count, slot);
        // Cyclic distance from `home` forward to `slot`.
        let distance = |home: usize, slot: usize| (slot + count - home) % count;
        while !self.slot_is_empty(&table, next) {
            let key = self.read_u32(&table, next, 0);
            let home = RangedLayout::home(count, table.multiplier, key);
            let distance_to_next = distance(home, next);
            let distance_to_hole = distance(home, hole);
            if distance_to_hole < distance_to_next {
                let from = Self::entry_start(&table, next);
                let to = Self::entry_start(&table, hole);
                self.compiled.code.copy_within(from..from + size, to);
                clear(&mut self.compiled.code, next);
                self.touched(to, size);
                self.touched(from, size);
                hole = next;
            }
            next = RangedLayout::next(count, next);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::{Atom, Field, FilterId, UnverifiedFilter, Width};
    use alloc::vec;

    fn flow(id: u32, host: u32) -> Filter {
        UnverifiedFilter {
            id: FilterId(id),
            steps: vec![Step::eq(26, Width::B4, host), Step::eq(36, Width::B2, 80)],
        }
        .verify()
        .unwrap()
    }

    /// What the generated probe finds for `key`: its slot, or `None` at the first empty slot.
    fn probe(demux: &Demux, key: u32) -> Option<usize> {
        let table = &demux.compiled.templates[0];
        let mut slot = RangedLayout::home(table.slots, table.multiplier, key);
        while !demux.slot_is_empty(table, slot) {
            if demux.read_u32(table, slot, 0) == key {
                return Some(slot);
            }
            slot = RangedLayout::next(table.slots, slot);
        }
        None
    }

    #[test]
    fn take_patches_says_what_a_loader_must_copy() {
        let mut demux = Demux::from_filters((0..8).map(|i| flow(i, 0x0a00_0000 + i))).unwrap();
        // Fresh code: load it whole.
        assert_eq!(demux.take_patches(), None);
        assert_eq!(demux.take_patches(), Some(vec![]));
        let (handle, update) = demux.insert(flow(20, 0x0a00_0020)).unwrap();
        assert_eq!(update, Update::Patched);
        let patches = demux.take_patches().unwrap();
        assert!(!patches.is_empty());
        assert!(
            patches
                .iter()
                .all(|&(start, end)| start >= demux.compiled().data_offset() && end > start)
        );
        demux.remove(handle).unwrap();
        assert!(demux.take_patches().is_some_and(|p| !p.is_empty()));
        // A better score than the table's bound regenerates.
        let mut longer = flow(0, 0x0b00_0000).steps().to_vec();
        longer.push(longer[1].clone());
        let longer = UnverifiedFilter {
            id: FilterId(30),
            steps: longer,
        }
        .verify()
        .unwrap();
        assert_eq!(demux.insert(longer).unwrap().1, Update::Regenerated);
        assert_eq!(demux.take_patches(), None);
    }

    #[test]
    fn colliding_keys_stay_reachable_through_patches() {
        // 120 keys in 240 slots collide under any multiplier, so the code probes; then add keys that all share one home.
        // Pseudo-random keys (an arithmetic progression would spread perfectly).
        let keys: Vec<u32> = (1..=120u32)
            .map(|i| i.wrapping_mul(0x2545_f491).rotate_left(13) ^ 0x5bd1_e995)
            .collect();
        let mut demux =
            Demux::from_filters(keys.iter().zip(100..).map(|(&k, id)| flow(id, k))).unwrap();
        assert_eq!(demux.compiled.templates.len(), 1);
        let table = demux.compiled.templates[0].clone();
        assert!(table.probes, "test needs a table with a probe loop");
        let home = RangedLayout::home(table.slots, table.multiplier, 7);
        let colliding: Vec<u32> = (1_000u32..)
            .filter(|&k| RangedLayout::home(table.slots, table.multiplier, k) == home)
            .take(5)
            .collect();
        let mut handles = Vec::new();
        for (i, &key) in colliding.iter().enumerate() {
            let (handle, update) = demux.insert(flow(200 + i as u32, key)).unwrap();
            assert_eq!(update, Update::Patched);
            handles.push(handle);
        }
        // Remove the first two of the run: the later ones must move back and stay found.
        for handle in handles.drain(..2) {
            assert_eq!(demux.remove(handle).unwrap().1, Update::Patched);
        }
        for &gone in &colliding[..2] {
            assert_eq!(probe(&demux, gone), None);
        }
        for &key in &colliding[2..] {
            assert!(probe(&demux, key).is_some(), "key lost after a removal");
        }
        for &key in &keys {
            assert!(probe(&demux, key).is_some());
        }
    }

    #[test]
    fn a_better_score_or_a_new_shape_regenerates() {
        let mut demux = Demux::from_filters((0..10).map(|i| flow(100 + i, i))).unwrap();
        // Lower id than every bound flow: the dispatch's bound rises.
        assert_eq!(demux.insert(flow(1, 77)).unwrap().1, Update::Regenerated);
        assert_eq!(demux.insert(flow(500, 78)).unwrap().1, Update::Patched);
        let other_shape = UnverifiedFilter {
            id: FilterId(600),
            steps: vec![Step::Test(Atom {
                field: Field::Packet {
                    offset: 26,
                    width: Width::B4,
                },
                mask: u32::MAX,
                op: CmpOp::Eq,
                value: 79,
            })],
        }
        .verify()
        .unwrap();
        assert_eq!(demux.insert(other_shape).unwrap().1, Update::Regenerated);
        assert_eq!(
            demux.insert(flow(700, 78)).map(|_| ()),
            Err(DemuxError::Insert(InsertError::IdenticalSteps {
                existing: FilterId(500)
            }))
        );
    }
}
