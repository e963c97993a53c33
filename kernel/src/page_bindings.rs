//! The pages an environment mapped with `page_map`, by address and by the capability each was
//! mapped with: removing capabilities finds their mappings through the index, so the work
//! (done with interrupts off) grows with what is removed, not with every mapping held.
#![forbid(unsafe_code)]

use alloc::collections::{BTreeMap, BTreeSet};
use alloc::vec::Vec;
use core::ops::Range;
use exo_abi::cap::CapHandle;

/// A page mapped through a capability.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PageBinding {
    /// The capability it was mapped with: revoking it removes the mapping.
    pub cap: CapHandle,
}

/// Mapped pages by virtual address, and the addresses each capability is mapped at. The two
/// maps always name the same pairs.
#[derive(Debug, Default)]
pub struct PageBindings {
    by_address: BTreeMap<u64, PageBinding>,
    by_cap: BTreeMap<CapHandle, BTreeSet<u64>>,
}

impl PageBindings {
    /// No pages.
    pub const fn new() -> PageBindings {
        PageBindings {
            by_address: BTreeMap::new(),
            by_cap: BTreeMap::new(),
        }
    }

    /// Pages mapped.
    pub fn len(&self) -> usize {
        self.by_address.len()
    }

    /// True when no page is mapped.
    pub fn is_empty(&self) -> bool {
        self.by_address.is_empty()
    }

    /// The binding of the page at `address`.
    pub fn get(&self, address: u64) -> Option<PageBinding> {
        self.by_address.get(&address).copied()
    }

    /// Whether a page is mapped at `address`.
    pub fn contains(&self, address: u64) -> bool {
        self.by_address.contains_key(&address)
    }

    /// The pages mapped in `addresses`, in address order.
    pub fn range(&self, addresses: Range<u64>) -> impl Iterator<Item = (u64, PageBinding)> + '_ {
        self.by_address
            .range(addresses)
            .map(|(&address, &binding)| (address, binding))
    }

    /// Records the page at `address` (the caller checked it was free), replacing any binding
    /// there.
    pub fn insert(&mut self, address: u64, binding: PageBinding) {
        if let Some(old) = self.by_address.insert(address, binding) {
            self.unindex(old.cap, address);
        }
        self.by_cap.entry(binding.cap).or_default().insert(address);
    }

    /// Forgets the page at `address`; its binding, if one was there.
    pub fn remove(&mut self, address: u64) -> Option<PageBinding> {
        let binding = self.by_address.remove(&address)?;
        self.unindex(binding.cap, address);
        Some(binding)
    }

    /// The lowest address `cap` is mapped at.
    pub fn first_address_of(&self, cap: CapHandle) -> Option<u64> {
        self.by_cap.get(&cap)?.first().copied()
    }

    /// Forgets every page mapped through one of `caps`; their addresses, highest first (the
    /// order the region table shrinks best in).
    pub fn remove_all_of(&mut self, caps: impl IntoIterator<Item = CapHandle>) -> Vec<u64> {
        let mut addresses = Vec::new();
        for cap in caps {
            if let Some(mapped) = self.by_cap.remove(&cap) {
                for &address in &mapped {
                    self.by_address.remove(&address);
                }
                addresses.extend(mapped);
            }
        }
        addresses.sort_unstable_by(|a, b| b.cmp(a));
        addresses
    }

    fn unindex(&mut self, cap: CapHandle, address: u64) {
        if let Some(mapped) = self.by_cap.get_mut(&cap) {
            mapped.remove(&address);
            if mapped.is_empty() {
                self.by_cap.remove(&cap);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAGE: u64 = 4096;

    fn bound(cap: u64) -> PageBinding {
        PageBinding {
            cap: CapHandle(cap),
        }
    }

    /// Both maps name the same pairs.
    fn consistent(bindings: &PageBindings) -> bool {
        let indexed: usize = bindings.by_cap.values().map(BTreeSet::len).sum();
        indexed == bindings.by_address.len()
            && bindings.by_cap.iter().all(|(cap, addresses)| {
                !addresses.is_empty()
                    && addresses
                        .iter()
                        .all(|address| bindings.get(*address) == Some(PageBinding { cap: *cap }))
            })
    }

    #[test]
    fn removing_capabilities_removes_exactly_their_pages() {
        let mut bindings = PageBindings::new();
        for page in 0..100 {
            bindings.insert(page * PAGE, bound(page % 3 + 1));
        }
        assert!(consistent(&bindings));
        let removed = bindings.remove_all_of([CapHandle(2), CapHandle(9)]);
        let expected: Vec<u64> = (0..100)
            .rev()
            .filter(|page| page % 3 == 1)
            .map(|page| page * PAGE)
            .collect();
        assert_eq!(removed, expected);
        assert_eq!(bindings.len(), 100 - expected.len());
        assert!(
            bindings
                .range(0..100 * PAGE)
                .all(|(_, b)| b.cap != CapHandle(2))
        );
        assert_eq!(bindings.first_address_of(CapHandle(3)), Some(2 * PAGE));
        assert_eq!(bindings.first_address_of(CapHandle(2)), None);
        assert!(consistent(&bindings));
    }

    #[test]
    fn unmapping_and_remapping_keep_the_index_true() {
        let mut bindings = PageBindings::new();
        bindings.insert(PAGE, bound(1));
        bindings.insert(2 * PAGE, bound(1));
        assert_eq!(bindings.remove(PAGE), Some(bound(1)));
        assert_eq!(bindings.remove(PAGE), None);
        // Replacing a binding moves the address to the new capability's set.
        bindings.insert(2 * PAGE, bound(5));
        assert!(consistent(&bindings));
        assert_eq!(bindings.remove_all_of([CapHandle(1)]), Vec::<u64>::new());
        assert_eq!(bindings.remove_all_of([CapHandle(5)]), [2 * PAGE]);
        assert!(bindings.is_empty() && consistent(&bindings));
    }
}
