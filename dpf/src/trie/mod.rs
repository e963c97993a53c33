//! The merged trie: every bound filter in one structure, shared prefixes shared, equal fields
//! dispatched together.
//!
//! Filters are paths of steps from the root. Two filters share nodes as long as their steps are
//! identical. Equality atoms on the same `(field, mask)` at the same point become one
//! [`NodeKind::Dispatch`] node whose keys (the compared values) each lead to a [`NodeKind::Key`]
//! node: one load then one table lookup however many flows there are. Anything else (ordered
//! comparisons, different fields, shifts, the end of a filter) is an *alternative*: a node keeps
//! its alternatives ordered by the best score reachable below them ([`Node::bound`]), so a walk
//! that already holds a match at least that good skips the rest. Every engine must give the same
//! verdict as [`crate::ir::reference_classify`]: the longest match (most atoms) wins, ties go to
//! the lowest [`FilterId`].
//!
//! Nodes live in one `Vec` addressed by [`NodeIndex`] (freed slots are reused), with a count of
//! the filters passing through each, so insert and remove touch one path.
#![forbid(unsafe_code)]

mod key_table;

use alloc::vec;
use alloc::vec::Vec;
use core::fmt;

pub use key_table::KeyTable;

use alloc::boxed::Box;

use crate::ir::{Atom, CmpOp, Eval, Field, Filter, FilterId, Shift, Step};

/// Index of a node in [`Trie::node`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeIndex(pub u32);

impl NodeIndex {
    fn slot(self) -> usize {
        self.0 as usize
    }
}

/// How good a match is, as one comparable number: `(atoms + 1) << 32 | (u32::MAX - id)`, so the
/// larger score is the longer match, and between equally long ones the lower id. Zero means "no
/// match" (the `+ 1` keeps a filter of shifts alone with id `u32::MAX` above zero). The JIT keeps
/// the best score so far in a register and returns it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Score(pub u64);

impl Score {
    /// No match.
    pub const NONE: Score = Score(0);

    /// Score of a match through a filter with `atoms` atoms and owner `id`.
    pub const fn new(atoms: usize, id: FilterId) -> Score {
        Score(((atoms as u64 + 1) << 32) | (u32::MAX - id.0) as u64)
    }

    /// The owner, or `None` for [`Score::NONE`].
    pub const fn id(self) -> Option<FilterId> {
        if self.0 == 0 {
            None
        } else {
            Some(FilterId(u32::MAX - self.0 as u32))
        }
    }
}

/// What a node tests or does.
#[derive(Clone, Debug)]
pub enum NodeKind {
    /// The start of every filter.
    Root,
    /// An atom that is not grouped into a dispatch (ordered comparisons and `!=`).
    Test(Atom),
    /// Moves the base for everything below.
    Shift(Shift),
    /// An expression step (never grouped into a dispatch).
    Eval(Box<Eval>),
    /// `field & mask` is loaded once and looked up: each key leads to a [`NodeKind::Key`] child,
    /// and those children are this node's [`Node::alternatives`] (in no particular order).
    Dispatch {
        /// What is loaded.
        field: Field,
        /// Bits kept.
        mask: u32,
        /// Key to the [`NodeKind::Key`] node.
        keys: KeyTable,
    },
    /// `field & mask == value` held in the parent dispatch; what follows are the alternatives.
    Key {
        /// The value.
        value: u32,
    },
    /// A filter ends here: a match with this score.
    Accept {
        /// The owner.
        id: FilterId,
        /// Its score (the number of atoms on the path and the id).
        score: Score,
    },
    /// A free slot.
    Vacant,
}

/// One node of the trie.
#[derive(Clone, Debug)]
pub struct Node {
    kind: NodeKind,
    parent: Option<NodeIndex>,
    alternatives: Vec<NodeIndex>,
    filters: u32,
    bound: Score,
}

impl Node {
    fn new(kind: NodeKind, parent: NodeIndex) -> Node {
        Node {
            kind,
            parent: Some(parent),
            alternatives: Vec::new(),
            filters: 0,
            bound: Score::NONE,
        }
    }

    /// What the node does.
    pub fn kind(&self) -> &NodeKind {
        &self.kind
    }

    /// What is tried after this node passes, best [`Node::bound`] first (for a dispatch: its
    /// keys' nodes, unordered).
    pub fn alternatives(&self) -> &[NodeIndex] {
        &self.alternatives
    }

    /// The best score of any filter ending at or below this node.
    pub fn bound(&self) -> Score {
        self.bound
    }

    /// The node above, `None` for the root.
    pub fn parent(&self) -> Option<NodeIndex> {
        self.parent
    }

    /// How many bound filters pass through this node.
    pub fn filter_count(&self) -> u32 {
        self.filters
    }
}

/// Names one bound filter, to remove it. Stale handles (of a filter already removed) are
/// recognised by their generation and refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FilterHandle {
    slot: u32,
    generation: u32,
}

/// Why a filter was not bound.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InsertError {
    /// A filter with exactly the same steps is already bound (whatever its id): two owners for the
    /// same packets is the overlap the paper refuses, and the same owner twice is a bug.
    IdenticalSteps {
        /// The id of the filter already bound.
        existing: FilterId,
    },
    /// The trie has as many nodes as a [`NodeIndex`] can name.
    Full,
}

impl fmt::Display for InsertError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InsertError::IdenticalSteps { existing } => write!(
                f,
                "a filter with identical steps is already bound (id {})",
                existing.0
            ),
            InsertError::Full => write!(f, "the filter trie is full"),
        }
    }
}

/// Why a filter was not removed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RemoveError {
    /// No bound filter has this handle (never issued, or already removed).
    UnknownHandle,
    /// No bound filter has these steps and this id.
    NotBound,
}

impl fmt::Display for RemoveError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RemoveError::UnknownHandle => "no bound filter has this handle",
            RemoveError::NotBound => "no filter with these steps and id is bound",
        })
    }
}

#[derive(Clone, Debug)]
struct FilterSlot {
    generation: u32,
    bound: Option<(Filter, NodeIndex)>,
}

/// Every bound filter, merged.
#[derive(Clone, Debug)]
pub struct Trie {
    nodes: Vec<Node>,
    free_nodes: Vec<NodeIndex>,
    filters: Vec<FilterSlot>,
    free_filters: Vec<u32>,
    filter_count: usize,
}

impl Default for Trie {
    fn default() -> Self {
        Trie::new()
    }
}

impl Trie {
    /// The root's index.
    pub const ROOT: NodeIndex = NodeIndex(0);

    /// A trie with no filters: it matches nothing.
    pub fn new() -> Trie {
        Trie {
            nodes: alloc::vec![Node {
                kind: NodeKind::Root,
                parent: None,
                alternatives: Vec::new(),
                filters: 0,
                bound: Score::NONE,
            }],
            free_nodes: Vec::new(),
            filters: Vec::new(),
            free_filters: Vec::new(),
            filter_count: 0,
        }
    }

    /// A trie holding `filters`, or the first insertion error.
    pub fn from_filters(filters: impl IntoIterator<Item = Filter>) -> Result<Trie, InsertError> {
        let mut trie = Trie::new();
        for filter in filters {
            trie.insert(filter)?;
        }
        Ok(trie)
    }

    /// The node at `index`.
    #[inline]
    pub fn node(&self, index: NodeIndex) -> &Node {
        &self.nodes[index.slot()]
    }

    /// Number of node slots (some may be [`NodeKind::Vacant`]); indices are below this.
    pub fn node_slots(&self) -> usize {
        self.nodes.len()
    }

    /// Nodes on the longest path from the root to an accept, both counted: what the
    /// recursive walks over the trie (the code generator, the interpreter) nest to. At most
    /// two per step of the longest filter (a dispatch and its key) plus two.
    pub fn depth(&self) -> usize {
        let mut deepest = 0;
        let mut stack = vec![(Trie::ROOT, 1usize)];
        while let Some((index, depth)) = stack.pop() {
            deepest = deepest.max(depth);
            stack.extend(
                self.node(index)
                    .alternatives
                    .iter()
                    .map(|&child| (child, depth + 1)),
            );
        }
        deepest
    }

    /// Number of bound filters.
    pub fn len(&self) -> usize {
        self.filter_count
    }

    /// True when no filter is bound.
    pub fn is_empty(&self) -> bool {
        self.filter_count == 0
    }

    /// Every bound filter with its handle.
    pub fn filters(&self) -> impl Iterator<Item = (FilterHandle, &Filter)> + '_ {
        self.filters.iter().enumerate().filter_map(|(slot, s)| {
            s.bound.as_ref().map(|(filter, _)| {
                (
                    FilterHandle {
                        slot: slot as u32,
                        generation: s.generation,
                    },
                    filter,
                )
            })
        })
    }

    /// The node reached from `at` by `step`, if the trie has it.
    fn find_step(&self, at: NodeIndex, step: &Step) -> Option<NodeIndex> {
        let alternatives = &self.node(at).alternatives;
        match step {
            Step::Test(atom) if atom.op == CmpOp::Eq => {
                alternatives
                    .iter()
                    .find_map(|&alt| match &self.node(alt).kind {
                        NodeKind::Dispatch { field, mask, keys }
                            if *field == atom.field && *mask == atom.mask =>
                        {
                            keys.get(atom.value)
                        }
                        _ => None,
                    })
            }
            Step::Test(atom) => alternatives
                .iter()
                .copied()
                .find(|&alt| matches!(&self.node(alt).kind, NodeKind::Test(a) if a == atom)),
            Step::Shift(shift) => alternatives
                .iter()
                .copied()
                .find(|&alt| matches!(&self.node(alt).kind, NodeKind::Shift(s) if s == shift)),
            Step::Eval(eval) => alternatives
                .iter()
                .copied()
                .find(|&alt| matches!(&self.node(alt).kind, NodeKind::Eval(e) if e == eval)),
        }
    }

    /// Follows `steps` from the root as far as the trie has them: the deepest node reached and
    /// how many steps led there.
    pub fn longest_prefix(&self, steps: &[Step]) -> (NodeIndex, usize) {
        let mut at = Self::ROOT;
        for (taken, step) in steps.iter().enumerate() {
            match self.find_step(at, step) {
                Some(next) => at = next,
                None => return (at, taken),
            }
        }
        (at, steps.len())
    }

    /// The dispatch alternative of `at` on `(field, mask)`, if there is one.
    pub fn dispatch_of(&self, at: NodeIndex, field: Field, mask: u32) -> Option<NodeIndex> {
        self.node(at).alternatives.iter().copied().find(|&alt| {
            matches!(&self.node(alt).kind,
                NodeKind::Dispatch { field: f, mask: m, .. } if *f == field && *m == mask)
        })
    }

    /// The accept node of the filter `handle` names.
    pub fn accept_of(&self, handle: FilterHandle) -> Option<NodeIndex> {
        self.filters
            .get(handle.slot as usize)
            .filter(|s| s.generation == handle.generation)
            .and_then(|s| s.bound.as_ref())
            .map(|(_, accept)| *accept)
    }

    fn find_accept(&self, at: NodeIndex) -> Option<(NodeIndex, FilterId)> {
        self.node(at)
            .alternatives
            .iter()
            .find_map(|&alt| match self.node(alt).kind {
                NodeKind::Accept { id, .. } => Some((alt, id)),
                _ => None,
            })
    }

    /// The accept node of a bound filter with exactly these steps.
    fn find_path(&self, steps: &[Step]) -> Option<(NodeIndex, FilterId)> {
        let mut at = Self::ROOT;
        for step in steps {
            at = self.find_step(at, step)?;
        }
        self.find_accept(at)
    }

    fn allocate(&mut self, node: Node) -> Result<NodeIndex, InsertError> {
        if let Some(index) = self.free_nodes.pop() {
            self.nodes[index.slot()] = node;
            return Ok(index);
        }
        let index = u32::try_from(self.nodes.len()).map_err(|_| InsertError::Full)?;
        self.nodes.push(node);
        Ok(NodeIndex(index))
    }

    /// Adds a child of `parent` (its place among the alternatives is fixed once its bound is).
    fn add_child(&mut self, parent: NodeIndex, kind: NodeKind) -> Result<NodeIndex, InsertError> {
        let child = self.allocate(Node::new(kind, parent))?;
        self.nodes[parent.slot()].alternatives.push(child);
        Ok(child)
    }

    fn find_or_add_step(&mut self, at: NodeIndex, step: &Step) -> Result<NodeIndex, InsertError> {
        if let Some(next) = self.find_step(at, step) {
            return Ok(next);
        }
        match step {
            &Step::Test(atom) if atom.op == CmpOp::Eq => {
                let existing = self.node(at).alternatives.iter().copied().find(|&alt| {
                    matches!(&self.node(alt).kind,
                        NodeKind::Dispatch { field, mask, .. }
                            if *field == atom.field && *mask == atom.mask)
                });
                let dispatch = match existing {
                    Some(dispatch) => dispatch,
                    None => self.add_child(
                        at,
                        NodeKind::Dispatch {
                            field: atom.field,
                            mask: atom.mask,
                            keys: KeyTable::new(),
                        },
                    )?,
                };
                let key = self.add_child(dispatch, NodeKind::Key { value: atom.value })?;
                if let NodeKind::Dispatch { keys, .. } = &mut self.nodes[dispatch.slot()].kind {
                    keys.insert(atom.value, key);
                }
                Ok(key)
            }
            &Step::Test(atom) => self.add_child(at, NodeKind::Test(atom)),
            &Step::Shift(shift) => self.add_child(at, NodeKind::Shift(shift)),
            Step::Eval(eval) => self.add_child(at, NodeKind::Eval(eval.clone())),
        }
    }

    /// Binds `filter`. Touches only the nodes on its path (plus a sort of the alternatives of
    /// each node on it whose order changed).
    pub fn insert(&mut self, filter: Filter) -> Result<FilterHandle, InsertError> {
        if let Some((_, existing)) = self.find_path(filter.steps()) {
            return Err(InsertError::IdenticalSteps { existing });
        }
        // Reserve what can fail before mutating, so a refused insert leaves the trie unchanged.
        let most_new_nodes = 2 * filter.steps().len() + 1;
        if self.nodes.len() + most_new_nodes > u32::MAX as usize {
            return Err(InsertError::Full);
        }
        let mut at = Self::ROOT;
        for step in filter.steps() {
            at = self.find_or_add_step(at, step)?;
        }
        let score = Score::new(filter.atom_count(), filter.id());
        let accept = self.add_child(
            at,
            NodeKind::Accept {
                id: filter.id(),
                score,
            },
        )?;
        let mut node = Some(accept);
        while let Some(index) = node {
            let n = &mut self.nodes[index.slot()];
            n.filters += 1;
            n.bound = n.bound.max(score);
            node = n.parent;
            if let Some(parent) = node {
                self.order_alternatives(parent);
            }
        }
        let handle = match self.free_filters.pop() {
            Some(slot) => {
                let s = &mut self.filters[slot as usize];
                s.generation = s.generation.wrapping_add(1);
                s.bound = Some((filter, accept));
                FilterHandle {
                    slot,
                    generation: s.generation,
                }
            }
            None => {
                self.filters.push(FilterSlot {
                    generation: 0,
                    bound: Some((filter, accept)),
                });
                FilterHandle {
                    slot: (self.filters.len() - 1) as u32,
                    generation: 0,
                }
            }
        };
        self.filter_count += 1;
        Ok(handle)
    }

    /// Keeps `parent`'s alternatives best-bound first (dispatch keys need no order).
    fn order_alternatives(&mut self, parent: NodeIndex) {
        if matches!(self.node(parent).kind, NodeKind::Dispatch { .. }) {
            return;
        }
        let mut alternatives = core::mem::take(&mut self.nodes[parent.slot()].alternatives);
        alternatives.sort_by(|&a, &b| self.node(b).bound.cmp(&self.node(a).bound).then(a.cmp(&b)));
        self.nodes[parent.slot()].alternatives = alternatives;
    }

    /// Unbinds the filter `handle` names and returns it.
    pub fn remove(&mut self, handle: FilterHandle) -> Result<Filter, RemoveError> {
        let slot = self
            .filters
            .get_mut(handle.slot as usize)
            .filter(|s| s.generation == handle.generation)
            .ok_or(RemoveError::UnknownHandle)?;
        let (filter, accept) = slot.bound.take().ok_or(RemoveError::UnknownHandle)?;
        self.free_filters.push(handle.slot);
        self.filter_count -= 1;
        self.unlink_path(accept);
        Ok(filter)
    }

    /// Unbinds the bound filter with exactly `filter`'s steps and id, and returns it.
    pub fn remove_filter(&mut self, filter: &Filter) -> Result<Filter, RemoveError> {
        let handle = self
            .filters()
            .find(|(_, f)| *f == filter)
            .map(|(handle, _)| handle)
            .ok_or(RemoveError::NotBound)?;
        self.remove(handle)
    }

    /// The handle of the bound filter with exactly `filter`'s steps and id.
    pub fn handle_of(&self, filter: &Filter) -> Option<FilterHandle> {
        let (accept, id) = self.find_path(filter.steps())?;
        if id != filter.id() {
            return None;
        }
        self.filters()
            .find(|(handle, _)| {
                self.filters[handle.slot as usize]
                    .bound
                    .as_ref()
                    .is_some_and(|(_, a)| *a == accept)
            })
            .map(|(handle, _)| handle)
    }

    /// Drops one filter's count along the path from `accept` up, frees nodes no filter passes
    /// through any more, and recomputes the bounds that may have fallen.
    fn unlink_path(&mut self, accept: NodeIndex) {
        let mut node = Some(accept);
        while let Some(index) = node {
            let parent = self.node(index).parent;
            let n = &mut self.nodes[index.slot()];
            n.filters -= 1;
            if n.filters == 0 && index != Self::ROOT {
                let kind = core::mem::replace(&mut n.kind, NodeKind::Vacant);
                n.alternatives = Vec::new();
                n.parent = None;
                n.bound = Score::NONE;
                self.free_nodes.push(index);
                if let Some(parent) = parent {
                    let p = &mut self.nodes[parent.slot()];
                    p.alternatives.retain(|&alt| alt != index);
                    if let (NodeKind::Key { value }, NodeKind::Dispatch { keys, .. }) =
                        (kind, &mut p.kind)
                    {
                        keys.remove(value);
                    }
                }
            } else {
                let bound = match n.kind {
                    NodeKind::Accept { score, .. } => score,
                    _ => self
                        .node(index)
                        .alternatives
                        .iter()
                        .map(|&alt| self.node(alt).bound)
                        .max()
                        .unwrap_or(Score::NONE),
                };
                self.nodes[index.slot()].bound = bound;
                if let Some(parent) = parent {
                    self.order_alternatives(parent);
                }
            }
            node = parent;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::{UnverifiedFilter, Width};
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
    fn expression_steps_share_prefixes() {
        use crate::program::{AluOp, Insn, Program};
        // ip[8] ^ ip[9] == 0x3a, then the protocol.
        let eval = |value| {
            Step::Eval(Box::new(Eval {
                program: Program {
                    insns: vec![
                        Insn::Load {
                            offset: 22,
                            width: Width::B1,
                        },
                        Insn::Store(0),
                        Insn::Load {
                            offset: 23,
                            width: Width::B1,
                        },
                        Insn::SetX,
                        Insn::Recall(0),
                        Insn::AluX(AluOp::Xor),
                    ],
                    back_edges: 0,
                },
                mask: u32::MAX,
                op: CmpOp::Eq,
                value,
            }))
        };
        let ip = Step::eq(12, Width::B2, 0x0800);
        let mut trie = Trie::new();
        for (id, (xor, protocol)) in [(0x3a, 6), (0x3a, 17), (0x3b, 6)].into_iter().enumerate() {
            trie.insert(filter(
                id as u32,
                vec![ip.clone(), eval(xor), Step::eq(23, Width::B1, protocol)],
            ))
            .unwrap();
        }
        let evals: Vec<&Node> = (0..trie.node_slots() as u32)
            .map(|i| trie.node(NodeIndex(i)))
            .filter(|n| matches!(n.kind(), NodeKind::Eval(_)))
            .collect();
        // One node for the two filters that share the expression, one for the third.
        assert_eq!(evals.len(), 2);
        assert_eq!(
            evals.iter().map(|n| n.filter_count()).max(),
            Some(2),
            "the shared expression is one node"
        );
        let mut packet = vec![0u8; 34];
        packet[12] = 0x08;
        packet[22] = 0x3a ^ 17;
        packet[23] = 17;
        let packet = crate::ir::Packet::whole(&packet);
        assert_eq!(crate::interp::classify(&trie, &packet), Some(FilterId(1)));
    }

    #[test]
    fn shared_prefix_and_dispatch() {
        let mut trie = Trie::new();
        for port in 0..100u32 {
            trie.insert(filter(
                port,
                vec![
                    Step::eq(12, Width::B2, 0x0800),
                    Step::eq(36, Width::B2, port),
                ],
            ))
            .unwrap();
        }
        // root -> dispatch(12) -> key(0x800) -> dispatch(36) -> 100 keys -> 100 accepts.
        let used = (0..trie.node_slots() as u32)
            .filter(|&i| !matches!(trie.node(NodeIndex(i)).kind, NodeKind::Vacant))
            .count();
        assert_eq!(used, 1 + 1 + 1 + 1 + 100 + 100);
        let root = trie.node(Trie::ROOT);
        assert_eq!(root.alternatives().len(), 1);
        assert_eq!(root.filter_count(), 100);
        assert_eq!(root.bound(), Score::new(2, FilterId(0)));
    }

    #[test]
    fn identical_steps_are_refused_whatever_the_id() {
        let mut trie = Trie::new();
        trie.insert(filter(1, vec![Step::eq(12, Width::B2, 0x0800)]))
            .unwrap();
        for id in [1, 2] {
            assert_eq!(
                trie.insert(filter(id, vec![Step::eq(12, Width::B2, 0x0800)])),
                Err(InsertError::IdenticalSteps {
                    existing: FilterId(1)
                })
            );
        }
        assert_eq!(trie.len(), 1);
    }

    #[test]
    fn remove_frees_the_path_and_restores_bounds() {
        let mut trie = Trie::new();
        let short = trie
            .insert(filter(5, vec![Step::eq(12, Width::B2, 0x0800)]))
            .unwrap();
        let slots_before = trie.node_slots();
        let long = trie
            .insert(filter(
                9,
                vec![Step::eq(12, Width::B2, 0x0800), Step::eq(23, Width::B1, 6)],
            ))
            .unwrap();
        assert_eq!(trie.node(Trie::ROOT).bound(), Score::new(2, FilterId(9)));
        let removed = trie.remove(long).unwrap();
        assert_eq!(removed.id(), FilterId(9));
        assert_eq!(trie.remove(long), Err(RemoveError::UnknownHandle));
        assert_eq!(trie.node(Trie::ROOT).bound(), Score::new(1, FilterId(5)));
        // The freed slots are reused by the next insert instead of growing the array.
        trie.insert(removed).unwrap();
        assert_eq!(trie.node_slots(), slots_before + 3);
        trie.remove(short).unwrap();
        assert_eq!(trie.len(), 1);
    }

    #[test]
    fn score_orders_longer_then_lower_id() {
        assert!(Score::new(3, FilterId(9)) > Score::new(2, FilterId(0)));
        assert!(Score::new(2, FilterId(1)) > Score::new(2, FilterId(2)));
        assert!(Score::new(0, FilterId(u32::MAX)) > Score::NONE);
        assert_eq!(Score::new(4, FilterId(77)).id(), Some(FilterId(77)));
        assert_eq!(Score::NONE.id(), None);
    }
}
