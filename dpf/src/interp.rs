//! The interpreter: the reference engine, walking the trie's compact node array.
//!
//! It reads the [`Trie`] directly (no separate compiled form), so it is always in step with the
//! bound filters. The walk is depth first along each node's alternatives, which the trie keeps
//! best-bound first: once a match at least as good as an alternative's bound is held, that
//! alternative and every later one are skipped. Every load checks `base + offset + width <=
//! captured length`, exactly like [`crate::ir::reference_matches`].
#![forbid(unsafe_code)]

use crate::ir::{Field, FilterId, Packet};
use crate::trie::{NodeIndex, NodeKind, Score, Trie};

/// The winning filter for `packet`: the longest match, ties to the lowest id.
pub fn classify(trie: &Trie, packet: &Packet<'_>) -> Option<FilterId> {
    classify_score(trie, packet).id()
}

/// The winning [`Score`], [`Score::NONE`] when nothing matches.
pub fn classify_score(trie: &Trie, packet: &Packet<'_>) -> Score {
    let mut best = Score::NONE;
    explore_alternatives(trie, Trie::ROOT, 0, packet, &mut best);
    best
}

/// Loads `field` relative to `base`; `None` when the bytes are not all captured.
#[inline]
fn load(field: Field, base: u32, packet: &Packet<'_>) -> Option<u32> {
    match field {
        Field::Packet { offset, width } => packet.load(base + offset as u32, width),
        Field::WireLen => Some(packet.wire_len),
        Field::CapturedFromBase => Some((packet.data.len() as u32).saturating_sub(base)),
    }
}

/// Tries `node`'s alternatives in order at `base`.
fn explore_alternatives(
    trie: &Trie,
    node: NodeIndex,
    base: u32,
    packet: &Packet<'_>,
    best: &mut Score,
) {
    for &alternative in trie.node(node).alternatives() {
        let next = trie.node(alternative);
        // Sorted best bound first: nothing from here on can beat what we hold.
        if *best >= next.bound() {
            return;
        }
        match next.kind() {
            NodeKind::Test(atom) => {
                if let Some(value) = load(atom.field, base, packet)
                    && atom.op.holds(value & atom.mask, atom.value)
                {
                    explore_alternatives(trie, alternative, base, packet, best);
                }
            }
            NodeKind::Eval(eval) => {
                if let Some(result) = eval.program.run(packet, base)
                    && eval.holds(result)
                {
                    explore_alternatives(trie, alternative, base, packet, best);
                }
            }
            NodeKind::Shift(shift) => {
                if let Some(value) = packet.load(base + shift.offset as u32, shift.width) {
                    let moved = base + shift.amount(value);
                    explore_alternatives(trie, alternative, moved, packet, best);
                }
            }
            NodeKind::Dispatch { field, mask, keys } => {
                if let Some(value) = load(*field, base, packet)
                    && let Some(key) = keys.get(value & mask)
                {
                    explore_alternatives(trie, key, base, packet, best);
                }
            }
            NodeKind::Accept { score, .. } => *best = (*best).max(*score),
            // Keys are reached through their dispatch, the root and vacant slots never as an
            // alternative; nothing to match.
            NodeKind::Key { .. } | NodeKind::Root | NodeKind::Vacant => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::{Atom, CmpOp, Filter, Shift, Step, UnverifiedFilter, Width};
    use alloc::vec;
    use alloc::vec::Vec;

    fn atom(offset: u16, width: Width, op: CmpOp, value: u32) -> Step {
        Step::Test(Atom {
            field: Field::Packet { offset, width },
            mask: width.max_value(),
            op,
            value,
        })
    }

    fn filter(id: u32, steps: Vec<Step>) -> Filter {
        UnverifiedFilter {
            id: FilterId(id),
            steps,
        }
        .verify()
        .unwrap()
    }

    #[test]
    fn longest_match_then_lowest_id_with_backtracking() {
        let ihl = Step::Shift(Shift {
            offset: 14,
            width: Width::B1,
            mask: 0x0f,
            shift: 2,
        });
        let ip = atom(12, Width::B2, CmpOp::Eq, 0x0800);
        let filters = vec![
            filter(7, vec![ip.clone()]),
            filter(
                3,
                vec![
                    ip.clone(),
                    atom(23, Width::B1, CmpOp::Eq, 6),
                    ihl.clone(),
                    atom(16, Width::B2, CmpOp::Eq, 80),
                ],
            ),
            // Same length as id 3 but a higher id: loses the tie.
            filter(
                4,
                vec![
                    ip.clone(),
                    ihl.clone(),
                    atom(16, Width::B2, CmpOp::Eq, 80),
                    atom(23, Width::B1, CmpOp::Eq, 6),
                ],
            ),
            // Longer, but its last atom fails for port 80: the walk must back out of it.
            filter(
                1,
                vec![
                    ip.clone(),
                    atom(23, Width::B1, CmpOp::Eq, 6),
                    ihl.clone(),
                    atom(16, Width::B2, CmpOp::Eq, 80),
                    atom(18, Width::B2, CmpOp::Gt, 1000),
                ],
            ),
        ];
        let trie = Trie::from_filters(filters.iter().cloned()).unwrap();
        let mut p = vec![0u8; 14 + 20 + 20];
        p[12] = 0x08;
        p[14] = 0x45;
        p[23] = 6;
        p[14 + 20 + 3] = 80;
        let packet = Packet::whole(&p);
        assert_eq!(classify(&trie, &packet), Some(FilterId(3)));
        assert_eq!(
            crate::ir::reference_classify(&filters, &packet),
            Some(FilterId(3))
        );
        // Destination port 0xffff > 1000: the five-atom filter now holds.
        p[14 + 20 + 4] = 0xff;
        p[14 + 20 + 5] = 0xff;
        assert_eq!(classify(&trie, &Packet::whole(&p)), Some(FilterId(1)));
        // Truncated inside the source port: only the IPv4 filter holds.
        assert_eq!(classify(&trie, &Packet::whole(&p[..37])), Some(FilterId(7)));
        assert_eq!(classify(&trie, &Packet::whole(&p[..13])), None);
    }
}
