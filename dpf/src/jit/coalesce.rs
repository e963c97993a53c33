//! Atom coalescing: a run of equality atoms on one base becomes as few wide compares as the
//! bytes allow (two adjacent 16-bit ports -> one 32-bit compare, an IPv6 address -> two 64-bit).
//!
//! Within a run nothing branches, so the order of the atoms does not matter: the bytes they
//! constrain are merged into one map (`offset -> (mask, value)`) and covered left to right by
//! loads of 1, 2, 4 or 8 bytes that never reach past what the bounds check already proved
//! captured. Compares are expressed in x86 (little-endian) order so the generated code compares
//! memory against an immediate with no byte swap.
#![forbid(unsafe_code)]

use alloc::collections::BTreeMap;
use alloc::vec::Vec;

use crate::ir::Width;

/// One equality atom of a run: `load(offset, width) & mask == value` (big-endian, as in the IR).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EqAtom {
    /// Bytes past the base.
    pub offset: u16,
    /// Load width.
    pub width: Width,
    /// Bits kept.
    pub mask: u32,
    /// Expected value of the kept bits.
    pub value: u32,
}

/// One generated compare: `little_endian_load(offset, bytes) & mask == value`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Compare {
    /// Bytes past the base.
    pub offset: u16,
    /// 1, 2, 4 or 8.
    pub bytes: u8,
    /// Bits kept, little-endian order.
    pub mask: u64,
    /// Expected value, little-endian order.
    pub value: u64,
}

impl Compare {
    /// True when every loaded bit is compared (no `and` needed).
    pub fn full_mask(&self) -> bool {
        self.mask == u64::MAX >> (64 - 8 * self.bytes as u32)
    }
}

/// The atoms demand different values of the same bit: the run can never hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Contradiction;

/// Plans the compares for `atoms`, loading nothing at or past `limit` bytes from the base.
/// Every atom must end at or before `limit`.
pub fn plan(atoms: &[EqAtom], limit: u32) -> Result<Vec<Compare>, Contradiction> {
    let mut bytes: BTreeMap<u32, (u8, u8)> = BTreeMap::new();
    for atom in atoms {
        let width = atom.width.bytes() as u32;
        for i in 0..width {
            let shift = 8 * (width - 1 - i);
            let mask = (atom.mask >> shift) as u8;
            let value = (atom.value >> shift) as u8 & mask;
            if mask == 0 {
                continue;
            }
            let entry = bytes.entry(atom.offset as u32 + i).or_insert((0, 0));
            if (entry.1 ^ value) & entry.0 & mask != 0 {
                return Err(Contradiction);
            }
            *entry = (entry.0 | mask, entry.1 | value);
        }
    }
    let mut compares = Vec::new();
    let constrained: Vec<(u32, (u8, u8))> = bytes.into_iter().collect();
    let mut i = 0;
    while i < constrained.len() {
        let start = constrained[i].0;
        let covered_by = |width: u32| {
            constrained[i..]
                .iter()
                .take_while(|(offset, _)| *offset < start + width)
                .count()
        };
        // The widest load the bounds allow, then the narrowest one covering as many bytes.
        let widest = [8u32, 4, 2, 1]
            .into_iter()
            .find(|w| start + w <= limit)
            .unwrap_or(1);
        let most = covered_by(widest);
        let width = [1u32, 2, 4, 8]
            .into_iter()
            .find(|&w| w <= widest && covered_by(w) == most)
            .unwrap_or(widest);
        let mut mask = 0u64;
        let mut value = 0u64;
        for &(offset, (m, v)) in &constrained[i..i + most] {
            let shift = 8 * (offset - start);
            mask |= (m as u64) << shift;
            value |= (v as u64) << shift;
        }
        compares.push(Compare {
            offset: start as u16,
            bytes: width as u8,
            mask,
            value,
        });
        i += most;
    }
    Ok(compares)
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    fn eq(offset: u16, width: Width, value: u32) -> EqAtom {
        EqAtom {
            offset,
            width,
            mask: width.max_value(),
            value,
        }
    }

    #[test]
    fn two_adjacent_ports_become_one_32_bit_compare() {
        // TCP source port 1234 at 0, destination port 80 at 2.
        let plan = plan(&[eq(2, Width::B2, 80), eq(0, Width::B2, 1234)], 4).unwrap();
        assert_eq!(
            plan,
            vec![Compare {
                offset: 0,
                bytes: 4,
                mask: 0xffff_ffff,
                // Bytes in memory: 04 d2 00 50, read little-endian.
                value: 0x5000_d204,
            }]
        );
        assert!(plan[0].full_mask());
    }

    #[test]
    fn an_ipv6_address_becomes_two_64_bit_compares() {
        let atoms: Vec<EqAtom> = (0..4)
            .map(|i| eq(22 + 4 * i, Width::B4, 0x2001_0db8 + i as u32))
            .collect();
        let plan = plan(&atoms, 38).unwrap();
        assert_eq!(plan.len(), 2);
        assert_eq!((plan[0].offset, plan[0].bytes), (22, 8));
        assert_eq!((plan[1].offset, plan[1].bytes), (30, 8));
        assert_eq!(plan[0].value as u32, 0x2001_0db8u32.swap_bytes());
    }

    #[test]
    fn loads_stay_inside_the_checked_bytes() {
        // Ethertype at 12..14 and protocol at 23 with only 24 bytes proven: no 8-byte load at 12
        // (it would read to 20, fine) ... but from 23 only one byte remains.
        let plan = plan(&[eq(12, Width::B2, 0x0800), eq(23, Width::B1, 6)], 24).unwrap();
        assert_eq!(plan.len(), 2);
        assert_eq!((plan[0].offset, plan[0].bytes), (12, 2));
        assert_eq!((plan[1].offset, plan[1].bytes, plan[1].value), (23, 1, 6));
        // With the limit at 14 an 8-byte load from 12 would overrun: it must be 2 bytes.
        let plan = super::plan(&[eq(12, Width::B2, 0x0800)], 14).unwrap();
        assert_eq!(plan[0].bytes, 2);
    }

    #[test]
    fn partial_masks_merge_and_contradictions_are_found() {
        let version = EqAtom {
            offset: 0,
            width: Width::B1,
            mask: 0xf0,
            value: 0x40,
        };
        let ihl = EqAtom {
            offset: 0,
            width: Width::B1,
            mask: 0x0f,
            value: 0x05,
        };
        let plan = plan(&[version, ihl], 1).unwrap();
        assert_eq!(
            plan,
            vec![Compare {
                offset: 0,
                bytes: 1,
                mask: 0xff,
                value: 0x45
            }]
        );
        let other_version = EqAtom {
            value: 0x60,
            ..version
        };
        assert_eq!(
            super::plan(&[version, other_version], 1),
            Err(Contradiction)
        );
    }

    #[test]
    fn gaps_are_masked_out() {
        // Bytes 0 and 3 constrained, 1..3 free: one 4-byte compare with a mask.
        let plan = plan(&[eq(0, Width::B1, 0xaa), eq(3, Width::B1, 0xbb)], 4).unwrap();
        assert_eq!(
            plan,
            vec![Compare {
                offset: 0,
                bytes: 4,
                mask: 0xff00_00ff,
                value: 0xbb00_00aa
            }]
        );
        assert!(!plan[0].full_mask());
    }
}
