//! Layout of the hash tables the generated code probes for a disjunction with many keys.
//!
//! Two kinds. A jump table ([`HashLayout`]) has a power-of-two slot count. A templated table
//! ([`RangedLayout`]) has any slot count, so it need not round its slack up to the next power
//! of two (which made a table of 5,000 keys as large as one of 8,000).
//!
//! The jump table lives in the code block after the function: `2^bits` slots of 8 bytes, each the
//! key (`u32`) and the target as an `i32` offset from the table's start, 0 for an empty slot
//! (code precedes the table, so a real target is never 0). The code hashes with
//! `(key * multiplier) >> (32 - bits)` and probes linearly; the table is at most half full, so
//! a miss meets an empty slot. The multiplier is the one, among a few fixed odd constants, with
//! the shortest longest probe for these keys; when every key sits in its home slot the code
//! needs no probe loop at all.
#![forbid(unsafe_code)]

use alloc::vec;
use alloc::vec::Vec;

/// Odd multipliers tried in turn; the first is Knuth's golden-ratio constant.
const MULTIPLIERS: [u32; 6] = [
    0x9e37_79b1,
    0x85eb_ca6b,
    0xc2b2_ae35,
    0x27d4_eb2f,
    0x1656_67b1,
    0x7feb_352d,
];

/// Where each key goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HashLayout {
    /// log2 of the slot count.
    pub bits: u32,
    /// The hash multiplier.
    pub multiplier: u32,
    /// For each slot, the index of the key stored there.
    pub slots: Vec<Option<usize>>,
    /// Longest distance of a key from its home slot (0: no collision at all).
    pub longest_probe: usize,
}

impl HashLayout {
    /// Home slot of `key`.
    pub fn home(bits: u32, multiplier: u32, key: u32) -> usize {
        (key.wrapping_mul(multiplier) >> (32 - bits)) as usize
    }

    /// A layout for distinct `keys`, at most half full.
    pub fn new(keys: &[u32]) -> HashLayout {
        Self::with_headroom(keys, 2)
    }

    /// A layout for distinct `keys` with at least `factor` slots per key (a power of two).
    pub fn with_headroom(keys: &[u32], factor: usize) -> HashLayout {
        let bits = (keys.len() * factor)
            .next_power_of_two()
            .max(8)
            .trailing_zeros();
        let mut best: Option<HashLayout> = None;
        for multiplier in MULTIPLIERS {
            let layout = Self::with_multiplier(keys, bits, multiplier);
            let better = best
                .as_ref()
                .is_none_or(|b| layout.longest_probe < b.longest_probe);
            if better {
                best = Some(layout);
            }
            if best.as_ref().is_some_and(|b| b.longest_probe == 0) {
                break;
            }
        }
        // MULTIPLIERS is not empty, so the loop ran.
        best.unwrap_or_else(|| Self::with_multiplier(keys, bits, MULTIPLIERS[0]))
    }

    fn with_multiplier(keys: &[u32], bits: u32, multiplier: u32) -> HashLayout {
        let size = 1usize << bits;
        let mut slots = vec![None; size];
        let mut longest_probe = 0;
        for (index, &key) in keys.iter().enumerate() {
            let mut slot = Self::home(bits, multiplier, key);
            let mut probe = 0;
            while slots[slot].is_some() {
                slot = (slot + 1) & (size - 1);
                probe += 1;
            }
            slots[slot] = Some(index);
            longest_probe = longest_probe.max(probe);
        }
        HashLayout {
            bits,
            multiplier,
            slots,
            longest_probe,
        }
    }

    /// The key index a lookup of `key` finds, probing as the generated code does.
    pub fn lookup(&self, keys: &[u32], key: u32) -> Option<usize> {
        let mask = self.slots.len() - 1;
        let mut slot = Self::home(self.bits, self.multiplier, key);
        loop {
            match self.slots[slot] {
                None => return None,
                Some(index) if keys[index] == key => return Some(index),
                Some(_) => slot = (slot + 1) & mask,
            }
        }
    }
}

/// Where each key of a templated table goes: `slots` slots (any count, the code reads it from
/// the table's header), the home slot by multiply-then-scale (`(key * multiplier) as u32` times
/// the slot count, top 32 bits of the product: the hash's high bits, no modulo), linear probing
/// that wraps at the last slot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RangedLayout {
    /// The hash multiplier.
    pub multiplier: u32,
    /// For each slot, the index of the key stored there.
    pub slots: Vec<Option<usize>>,
    /// Longest distance of a key from its home slot (0: no collision at all).
    pub longest_probe: usize,
}

impl RangedLayout {
    /// Home slot of `key` in a table of `slots` slots.
    pub fn home(slots: usize, multiplier: u32, key: u32) -> usize {
        ((u64::from(key.wrapping_mul(multiplier)) * slots as u64) >> 32) as usize
    }

    /// The slot after `slot`, wrapping.
    pub fn next(slots: usize, slot: usize) -> usize {
        if slot + 1 == slots { 0 } else { slot + 1 }
    }

    /// Layouts for several tables probed by one piece of code: table `i` of `slots[i]` slots,
    /// one multiplier for all (the one with the shortest longest probe).
    pub fn shared(key_sets: &[&[u32]], slots: &[usize]) -> Vec<RangedLayout> {
        // A table without its slot count would be dropped by the `zip` below, silently.
        debug_assert_eq!(key_sets.len(), slots.len(), "one slot count per table");
        let mut best: Option<(usize, Vec<RangedLayout>)> = None;
        for multiplier in MULTIPLIERS {
            let layouts: Vec<RangedLayout> = key_sets
                .iter()
                .zip(slots)
                .map(|(keys, &slots)| Self::with_multiplier(keys, slots, multiplier))
                .collect();
            let longest = layouts.iter().map(|l| l.longest_probe).max().unwrap_or(0);
            if best.as_ref().is_none_or(|(b, _)| longest < *b) {
                best = Some((longest, layouts));
            }
            if best.as_ref().is_some_and(|(b, _)| *b == 0) {
                break;
            }
        }
        best.map(|(_, layouts)| layouts).unwrap_or_default()
    }

    /// `keys` (distinct, fewer than `slots`) in `slots` slots hashed with `multiplier`.
    pub fn with_multiplier(keys: &[u32], slots: usize, multiplier: u32) -> RangedLayout {
        let mut table = vec![None; slots];
        let mut longest_probe = 0;
        for (index, &key) in keys.iter().enumerate() {
            let mut slot = Self::home(slots, multiplier, key);
            let mut probe = 0;
            while table[slot].is_some() {
                slot = Self::next(slots, slot);
                probe += 1;
            }
            table[slot] = Some(index);
            longest_probe = longest_probe.max(probe);
        }
        RangedLayout {
            multiplier,
            slots: table,
            longest_probe,
        }
    }

    /// The key index a lookup of `key` finds, probing as the generated code does.
    pub fn lookup(&self, keys: &[u32], key: u32) -> Option<usize> {
        let count = self.slots.len();
        let mut slot = Self::home(count, self.multiplier, key);
        loop {
            match self.slots[slot] {
                None => return None,
                Some(index) if keys[index] == key => return Some(index),
                Some(_) => slot = Self::next(count, slot),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranged_tables_of_any_size_find_every_key_and_spread_them() {
        let keys: Vec<u32> = (0..5_000u32).map(|i| 0x0a00_0000 + i * 7).collect();
        // 10,001 slots: not a power of two, and odd.
        let layouts = RangedLayout::shared(&[&keys, &keys[..3]], &[10_001, 7]);
        assert_eq!(layouts[0].slots.len(), 10_001);
        assert_eq!(layouts[1].slots.len(), 7);
        for (i, &k) in keys.iter().enumerate() {
            assert_eq!(layouts[0].lookup(&keys, k), Some(i));
        }
        assert_eq!(layouts[0].lookup(&keys, 0x0a00_0001), None);
        // Homes use the whole range: some key's home is in the top tenth.
        assert!(
            keys.iter()
                .any(|&k| RangedLayout::home(10_001, layouts[0].multiplier, k) >= 9_001)
        );
        assert!(
            layouts[0].longest_probe < 64,
            "{}",
            layouts[0].longest_probe
        );
        assert_eq!(RangedLayout::next(7, 6), 0);
    }

    #[test]
    fn every_key_is_found_and_absent_keys_are_not() {
        let keys: Vec<u32> = (0..10_000u32).map(|i| 0x0a00_0000 + i * 7).collect();
        let layout = HashLayout::new(&keys);
        assert!(layout.slots.len() >= 2 * keys.len());
        for (i, &k) in keys.iter().enumerate() {
            assert_eq!(layout.lookup(&keys, k), Some(i));
        }
        assert_eq!(layout.lookup(&keys, 0x0a00_0001), None);
        assert!(layout.longest_probe < 64, "{}", layout.longest_probe);
    }

    #[test]
    fn few_spread_keys_need_no_probe_loop() {
        let keys = [80, 443, 22, 53];
        let layout = HashLayout::new(&keys);
        assert_eq!(layout.longest_probe, 0);
    }
}
