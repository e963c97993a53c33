//! Templated dispatch: when every key of a large disjunction leads to a chain of the same shape
//! (the same fields, masks, comparisons and shifts, only the compared values and the final
//! score differ), one shared body of code serves them all and reads each key's constants from
//! its hash table entry.
//!
//! Keys whose chain has another shape, or branches (a host with two flows), do not spoil the
//! table: the most common shape is templated and those few keep code of their own, reached when
//! the table misses ([`partition_chains`]).
//!
//! This is what keeps 10,000 `src host A and dst port P` flows as fast as one: a hash probe and
//! a handful of compares, with no per-flow code, no indirect jump to mispredict and a table that
//! is data, not instructions.
#![forbid(unsafe_code)]

use alloc::vec::Vec;

use crate::ir::{CmpOp, Field, Shift, Width};
use crate::trie::{NodeIndex, NodeKind, Trie};

/// One step of a chain, without its constant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShapeStep {
    /// `field & mask op parameter`: an ordered test, or a single-key dispatch (`op` Eq).
    Compare {
        /// What is loaded.
        field: Field,
        /// Bits kept.
        mask: u32,
        /// The comparison.
        op: CmpOp,
    },
    /// A shift (identical in every chain).
    Shift(Shift),
    /// The end: accept with the entry's score, whose high half (`rank`: the filter's atoms plus
    /// one, see [`crate::trie::Score`]) is the same for every key of the shape, so the code holds
    /// it as an immediate and an entry holds only the low half (which names the filter).
    Accept {
        /// `score >> 32`.
        rank: u32,
    },
}

impl ShapeStep {
    /// True for an equality on packet bytes: the generated code compares the bytes as loaded
    /// (little-endian, no byte swap), so the table holds its constant byte-swapped.
    pub fn compares_raw(&self) -> bool {
        matches!(
            self,
            ShapeStep::Compare {
                field: Field::Packet { .. },
                op: CmpOp::Eq,
                ..
            }
        )
    }

    /// A compare's constant (or mask) as the table entry holds it: byte-swapped within the
    /// field's width when [`ShapeStep::compares_raw`], else as is.
    pub fn stored(&self, value: u32) -> u32 {
        match *self {
            ShapeStep::Compare {
                field: Field::Packet { width, .. },
                op: CmpOp::Eq,
                ..
            } => swap_within(value, width),
            _ => value,
        }
    }
}

/// `value`'s low `width` bytes in reverse order: a big-endian field's value as a little-endian
/// load of its bytes reads it.
pub fn swap_within(value: u32, width: Width) -> u32 {
    match width {
        Width::B1 => value & 0xff,
        Width::B2 => u32::from((value as u16).swap_bytes()),
        Width::B4 => value.swap_bytes(),
    }
}

/// The stored form of each of `parameters` (one per compare of `shape`, in order).
pub fn stored_parameters(shape: &[ShapeStep], parameters: &[u32]) -> Vec<u32> {
    shape
        .iter()
        .filter(|step| matches!(step, ShapeStep::Compare { .. }))
        .zip(parameters)
        .map(|(step, &value)| step.stored(value))
        .collect()
}

/// A key's chain: its shape, the node each step comes from (the first key's nodes stand for all
/// when computing bounds checks), its parameters in order and its final score.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Chain {
    /// Steps in order, ending with [`ShapeStep::Accept`].
    pub shape: Vec<ShapeStep>,
    /// The node each step was read from.
    pub nodes: Vec<NodeIndex>,
    /// One value per [`ShapeStep::Compare`], in order.
    pub parameters: Vec<u32>,
    /// Score of the accept at the end.
    pub score: u64,
}

/// The chain below `key` (a [`NodeKind::Key`] node), if it is linear: every node on it has
/// exactly one alternative, down to an accept.
pub fn chain_below(trie: &Trie, key: NodeIndex) -> Option<Chain> {
    let mut chain = Chain {
        shape: Vec::new(),
        nodes: Vec::new(),
        parameters: Vec::new(),
        score: 0,
    };
    let mut at = key;
    loop {
        let &[next] = trie.node(at).alternatives() else {
            return None;
        };
        chain.nodes.push(next);
        match trie.node(next).kind() {
            NodeKind::Test(atom) => {
                chain.shape.push(ShapeStep::Compare {
                    field: atom.field,
                    mask: atom.mask,
                    op: atom.op,
                });
                chain.parameters.push(atom.value);
                at = next;
            }
            NodeKind::Dispatch { field, mask, .. } => {
                let &[only_key] = trie.node(next).alternatives() else {
                    return None;
                };
                let NodeKind::Key { value } = *trie.node(only_key).kind() else {
                    return None;
                };
                chain.shape.push(ShapeStep::Compare {
                    field: *field,
                    mask: *mask,
                    op: CmpOp::Eq,
                });
                chain.parameters.push(value);
                at = only_key;
            }
            NodeKind::Shift(shift) => {
                chain.shape.push(ShapeStep::Shift(*shift));
                at = next;
            }
            NodeKind::Accept { score, .. } => {
                // A low half of 0 (filter id `u32::MAX`) would read as an empty slot: such a
                // key keeps code of its own.
                if score.0 as u32 == 0 {
                    return None;
                }
                chain.shape.push(ShapeStep::Accept {
                    rank: (score.0 >> 32) as u32,
                });
                chain.score = score.0;
                return Some(chain);
            }
            // Programs keep code of their own.
            NodeKind::Eval(_) | NodeKind::Key { .. } | NodeKind::Root | NodeKind::Vacant => {
                return None;
            }
        }
    }
}

/// Chains for all `keys` when they share one shape.
pub fn common_chains(trie: &Trie, keys: &[NodeIndex]) -> Option<Vec<Chain>> {
    let mut chains: Vec<Chain> = Vec::with_capacity(keys.len());
    for &key in keys {
        let chain = chain_below(trie, key)?;
        if chains
            .first()
            .is_some_and(|first| first.shape != chain.shape)
        {
            return None;
        }
        chains.push(chain);
    }
    Some(chains)
}

/// The keys of a large disjunction split by shape: the most common linear chain shape goes to a
/// templated table (`chains`, for the keys at `templated`), every other key (a chain that
/// branches, or of another shape) keeps code of its own (the keys at `exceptions`). Indices are
/// into `keys`. `None` when no shape is shared by more than `at_least` keys.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Partition {
    /// Chains of the templated keys, all of one shape.
    pub chains: Vec<Chain>,
    /// Positions in `keys` of the templated keys (parallel to `chains`).
    pub templated: Vec<usize>,
    /// Positions in `keys` of the others.
    pub exceptions: Vec<usize>,
}

/// Splits `keys` (the [`NodeKind::Key`] children of one dispatch) into the most common chain
/// shape and the rest; `None` unless more than `at_least` keys share it.
pub fn partition_chains(trie: &Trie, keys: &[NodeIndex], at_least: usize) -> Option<Partition> {
    let chains: Vec<Option<Chain>> = keys.iter().map(|&k| chain_below(trie, k)).collect();
    // Most common shape (first seen wins ties), counted without hashing (shapes are few).
    let mut shapes: Vec<(&[ShapeStep], usize)> = Vec::new();
    for chain in chains.iter().flatten() {
        match shapes
            .iter_mut()
            .find(|(s, _)| *s == chain.shape.as_slice())
        {
            Some((_, count)) => *count += 1,
            None => shapes.push((&chain.shape, 1)),
        }
    }
    let mut best: Option<(&[ShapeStep], usize)> = None;
    for &(shape, count) in &shapes {
        if best.is_none_or(|(_, c)| count > c) {
            best = Some((shape, count));
        }
    }
    let (shape, count) = best?;
    if count <= at_least {
        return None;
    }
    let shape: Vec<ShapeStep> = shape.to_vec();
    let mut partition = Partition {
        chains: Vec::with_capacity(count),
        templated: Vec::with_capacity(count),
        exceptions: Vec::new(),
    };
    for (i, chain) in chains.into_iter().enumerate() {
        match chain {
            Some(chain) if chain.shape == shape => {
                partition.chains.push(chain);
                partition.templated.push(i);
            }
            _ => partition.exceptions.push(i),
        }
    }
    Some(partition)
}

/// Byte layout of one templated table entry: key, parameters, the score's low half, each a
/// `u32`, packed: no padding and no rounding of the size (the slot address is one `imul` away),
/// since every byte of an entry is paid once per slot and the tables must stay in cache.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EntryLayout {
    /// Number of `u32` parameters after the key.
    pub parameters: usize,
    /// Offset of the `u32` low half of the score (never 0 for a key); 0 there marks an empty
    /// slot.
    pub score_offset: usize,
    /// Entry size in bytes.
    pub size: usize,
}

impl EntryLayout {
    /// Layout for `parameters` parameters.
    pub fn new(parameters: usize) -> EntryLayout {
        let score_offset = 4 + 4 * parameters;
        EntryLayout {
            parameters,
            score_offset,
            size: score_offset + 4,
        }
    }

    /// Offset of parameter `index`.
    pub fn parameter_offset(&self, index: usize) -> usize {
        4 + 4 * index
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::{Filter, FilterId, Step, UnverifiedFilter, Width};
    use alloc::vec;

    fn filter(id: u32, steps: Vec<Step>) -> Filter {
        UnverifiedFilter {
            id: FilterId(id),
            steps,
        }
        .verify()
        .unwrap()
    }

    #[test]
    fn flows_share_a_shape_and_a_branch_breaks_it() {
        let mut trie = Trie::new();
        for host in 0..5u32 {
            trie.insert(filter(
                host,
                vec![
                    Step::eq(26, Width::B4, host),
                    Step::eq(36, Width::B2, 80 + host),
                ],
            ))
            .unwrap();
        }
        let dispatch = trie.node(Trie::ROOT).alternatives()[0];
        let keys = trie.node(dispatch).alternatives().to_vec();
        let chains = common_chains(&trie, &keys).unwrap();
        assert_eq!(chains.len(), 5);
        assert_eq!(chains[0].shape.len(), 2);
        assert!(chains.iter().any(|c| c.parameters == [83]));
        // A second filter below one host makes its chain branch: no common shape any more.
        trie.insert(filter(
            9,
            vec![Step::eq(26, Width::B4, 3), Step::eq(36, Width::B2, 443)],
        ))
        .unwrap();
        let keys = trie.node(dispatch).alternatives().to_vec();
        assert_eq!(common_chains(&trie, &keys), None);
    }

    #[test]
    fn the_most_common_shape_is_templated_and_the_rest_are_exceptions() {
        let mut trie = Trie::new();
        for host in 0..6u32 {
            trie.insert(filter(
                host,
                vec![
                    Step::eq(26, Width::B4, host),
                    Step::eq(36, Width::B2, 80 + host),
                ],
            ))
            .unwrap();
        }
        // Host 3 branches; host 7 has another shape.
        trie.insert(filter(
            9,
            vec![Step::eq(26, Width::B4, 3), Step::eq(36, Width::B2, 443)],
        ))
        .unwrap();
        trie.insert(filter(
            10,
            vec![Step::eq(26, Width::B4, 7), Step::eq(34, Width::B2, 1)],
        ))
        .unwrap();
        let dispatch = trie.node(Trie::ROOT).alternatives()[0];
        let keys = trie.node(dispatch).alternatives().to_vec();
        let partition = partition_chains(&trie, &keys, 3).unwrap();
        assert_eq!(partition.templated.len(), 5);
        assert_eq!(partition.chains.len(), 5);
        let exceptions: Vec<u32> = partition
            .exceptions
            .iter()
            .map(|&i| match *trie.node(keys[i]).kind() {
                NodeKind::Key { value } => value,
                _ => unreachable!(),
            })
            .collect();
        assert_eq!(exceptions, [3, 7]);
        assert_eq!(partition_chains(&trie, &keys, 5), None);
    }

    #[test]
    fn entry_layouts_are_packed_words() {
        assert_eq!(
            EntryLayout::new(1),
            EntryLayout {
                parameters: 1,
                score_offset: 8,
                size: 12
            }
        );
        let four = EntryLayout::new(4);
        assert_eq!((four.score_offset, four.size), (20, 24));
        assert_eq!(four.parameter_offset(2), 12);
    }
}
