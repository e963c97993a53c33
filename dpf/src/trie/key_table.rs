//! An open-addressing hash table from a disjunction's key (a masked field value) to the trie node
//! that follows it: the interpreter's O(1) dispatch over thousands of flows.
#![forbid(unsafe_code)]

use alloc::vec;
use alloc::vec::Vec;

use super::NodeIndex;

/// Fibonacci hashing: multiply by 2^32 / golden ratio and keep the top bits. Cheap, and spreads
/// consecutive keys (ports, addresses in one subnet) over the table.
const MULTIPLIER: u32 = 0x9e37_79b1;

/// Value to node, linear probing, at most half full so probes stay short and a miss always
/// meets an empty slot.
#[derive(Clone, Debug)]
pub struct KeyTable {
    /// `(key, node)`; `None` is empty.
    slots: Vec<Option<(u32, NodeIndex)>>,
    len: usize,
}

impl Default for KeyTable {
    fn default() -> Self {
        KeyTable::new()
    }
}

impl KeyTable {
    const INITIAL_SLOTS: usize = 4;

    /// An empty table.
    pub fn new() -> KeyTable {
        KeyTable {
            slots: vec![None; Self::INITIAL_SLOTS],
            len: 0,
        }
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when no key is present.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn home(&self, key: u32) -> usize {
        let bits = self.slots.len().trailing_zeros();
        (key.wrapping_mul(MULTIPLIER) as u64 >> (32 - bits)) as usize
    }

    /// The node for `key`.
    #[inline]
    pub fn get(&self, key: u32) -> Option<NodeIndex> {
        let mask = self.slots.len() - 1;
        let mut slot = self.home(key);
        loop {
            match self.slots[slot] {
                None => return None,
                Some((k, node)) if k == key => return Some(node),
                Some(_) => slot = (slot + 1) & mask,
            }
        }
    }

    /// Adds or replaces `key`.
    pub fn insert(&mut self, key: u32, node: NodeIndex) {
        if (self.len + 1) * 2 > self.slots.len() {
            self.grow();
        }
        let mask = self.slots.len() - 1;
        let mut slot = self.home(key);
        loop {
            match self.slots[slot] {
                None => {
                    self.slots[slot] = Some((key, node));
                    self.len += 1;
                    return;
                }
                Some((k, _)) if k == key => {
                    self.slots[slot] = Some((key, node));
                    return;
                }
                Some(_) => slot = (slot + 1) & mask,
            }
        }
    }

    /// Removes `key`, shifting later entries of its probe run back so lookups never stop early
    /// at a hole (no tombstones, so the table never fills with them).
    pub fn remove(&mut self, key: u32) -> Option<NodeIndex> {
        let mask = self.slots.len() - 1;
        let mut slot = self.home(key);
        let removed = loop {
            match self.slots[slot] {
                None => return None,
                Some((k, node)) if k == key => break node,
                Some(_) => slot = (slot + 1) & mask,
            }
        };
        self.slots[slot] = None;
        self.len -= 1;
        let mut hole = slot;
        let mut next = (slot + 1) & mask;
        while let Some((k, node)) = self.slots[next] {
            let home = self.home(k);
            // The entry may move into the hole unless its home lies cyclically in (hole, next].
            let distance_to_next = next.wrapping_sub(home) & mask;
            let distance_to_hole = hole.wrapping_sub(home) & mask;
            if distance_to_hole < distance_to_next {
                self.slots[hole] = Some((k, node));
                self.slots[next] = None;
                hole = next;
            }
            next = (next + 1) & mask;
        }
        Some(removed)
    }

    fn grow(&mut self) {
        let doubled = vec![None; self.slots.len() * 2];
        let old = core::mem::replace(&mut self.slots, doubled);
        self.len = 0;
        for (key, node) in old.into_iter().flatten() {
            self.insert(key, node);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insert_get_remove_agree_with_a_plain_list() {
        let mut table = KeyTable::new();
        let mut reference: Vec<(u32, NodeIndex)> = Vec::new();
        // Keys chosen to collide: multiples of a power of two land in few home slots.
        let mut x: u32 = 12345;
        for step in 0..4000u32 {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
            let key = (x >> 8) % 512 * 64;
            if x & 3 == 0 {
                assert_eq!(
                    table.remove(key),
                    reference
                        .iter()
                        .position(|&(k, _)| k == key)
                        .map(|i| reference.swap_remove(i).1)
                );
            } else {
                table.insert(key, NodeIndex(step));
                match reference.iter_mut().find(|(k, _)| *k == key) {
                    Some(entry) => entry.1 = NodeIndex(step),
                    None => reference.push((key, NodeIndex(step))),
                }
            }
            assert_eq!(table.len(), reference.len());
        }
        for key in (0..512 * 64).step_by(64) {
            assert_eq!(
                table.get(key),
                reference.iter().find(|&&(k, _)| k == key).map(|&(_, n)| n)
            );
        }
    }
}
