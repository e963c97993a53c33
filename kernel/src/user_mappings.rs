//! What an environment has mapped in the user half, so the kernel can judge user pointers.
//!
//! A pointer passed to a system call is an allegation; [`UserMappings::check`] turns it into a
//! fact (the whole range is mapped with the access the call needs) or a `BadAddress` error.

use crate::elf::Access;
use alloc::vec::Vec;
use exo_abi::Error;

/// A contiguous, page-aligned user mapping.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UserRegion {
    /// First address.
    pub start: u64,
    /// One past the last address.
    pub end: u64,
    /// What user code may do there.
    pub access: Access,
}

/// The regions one environment has mapped, sorted by address and disjoint.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UserMappings {
    regions: Vec<UserRegion>,
}

/// Why a region could not be recorded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RegionError {
    /// It overlaps one already mapped, or is empty.
    Overlap,
    /// The kernel heap could not hold one more region.
    OutOfMemory,
}

impl UserMappings {
    /// No mappings.
    pub const fn new() -> UserMappings {
        UserMappings {
            regions: Vec::new(),
        }
    }

    /// Records a new region; refuses empty regions and overlaps, and says so when the heap
    /// cannot grow the table (never an allocation panic).
    pub fn insert(&mut self, region: UserRegion) -> Result<(), RegionError> {
        if region.start >= region.end {
            return Err(RegionError::Overlap);
        }
        let index = self.regions.partition_point(|r| r.start < region.start);
        let overlaps_before = index > 0 && self.regions[index - 1].end > region.start;
        let overlaps_after = self
            .regions
            .get(index)
            .is_some_and(|next| next.start < region.end);
        if overlaps_before || overlaps_after {
            return Err(RegionError::Overlap);
        }
        self.regions
            .try_reserve(1)
            .map_err(|_| RegionError::OutOfMemory)?;
        self.regions.insert(index, region);
        Ok(())
    }

    /// Removes the region that starts exactly at `start`.
    pub fn remove(&mut self, start: u64) -> Option<UserRegion> {
        let index = self
            .regions
            .binary_search_by_key(&start, |r| r.start)
            .ok()?;
        Some(self.regions.remove(index))
    }

    /// Changes the access of the region that starts exactly at `start`; false if none does.
    pub fn set_access(&mut self, start: u64, access: Access) -> bool {
        match self.regions.binary_search_by_key(&start, |r| r.start) {
            Ok(index) => {
                self.regions[index].access = access;
                true
            }
            Err(_) => false,
        }
    }

    /// Changes the access of every region that lies entirely inside `[start, end)` (one
    /// search, then a walk: the range form of [`Self::set_access`]); returns how many changed.
    pub fn set_access_within(&mut self, start: u64, end: u64, access: Access) -> usize {
        let first = self.regions.partition_point(|r| r.start < start);
        let mut changed = 0;
        for region in &mut self.regions[first..] {
            if region.end > end {
                break;
            }
            region.access = access;
            changed += 1;
        }
        changed
    }

    /// The regions, in address order.
    pub fn regions(&self) -> &[UserRegion] {
        &self.regions
    }

    /// Checks that `[address, address + length_bytes)` is entirely mapped with `needed`
    /// access (it may span adjacent regions). An empty range is always acceptable: nothing
    /// will be touched.
    pub fn check(&self, address: u64, length_bytes: u64, needed: Access) -> Result<(), Error> {
        if length_bytes == 0 {
            return Ok(());
        }
        let end = address.checked_add(length_bytes).ok_or(Error::BadAddress)?;
        let mut cursor = address;
        let first = self.regions.partition_point(|r| r.end <= address);
        for region in &self.regions[first..] {
            if region.start > cursor || !region.access.covers(needed) {
                return Err(Error::BadAddress);
            }
            cursor = region.end;
            if cursor >= end {
                return Ok(());
            }
        }
        Err(Error::BadAddress)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CODE: Access = Access {
        read: true,
        write: false,
        execute: true,
    };

    fn mappings() -> UserMappings {
        let mut mappings = UserMappings::new();
        for (start, end, access) in [
            (0x1000, 0x3000, CODE),
            (0x3000, 0x4000, Access::READ),
            (0x8000, 0x9000, Access::READ_WRITE),
        ] {
            mappings.insert(UserRegion { start, end, access }).unwrap();
        }
        mappings
    }

    #[test]
    fn access_changes_within_a_range_only() {
        let mut m = mappings();
        assert_eq!(m.set_access_within(0x1000, 0x4000, Access::READ_WRITE), 2);
        assert_eq!(m.check(0x1000, 0x3000, Access::READ_WRITE), Ok(()));
        assert_eq!(m.regions()[2].access, Access::READ_WRITE);
        assert_eq!(m.set_access_within(0x1000, 0x3800, Access::READ), 1);
        assert_eq!(m.regions()[0].access, Access::READ);
        assert_eq!(
            m.regions()[1].access,
            Access::READ_WRITE,
            "straddles the end"
        );
        assert_eq!(m.set_access_within(0x4000, 0x8000, Access::READ), 0);
        assert_eq!(m.set_access_within(0x2000, 0x9000, Access::READ), 2);
        assert_eq!(
            m.regions()[0].access,
            Access::READ,
            "starts before the range"
        );
    }

    #[test]
    fn ranges_inside_mappings_pass() {
        let m = mappings();
        assert_eq!(m.check(0x1000, 0x1000, Access::READ), Ok(()));
        assert_eq!(
            m.check(0x2ff0, 0x20, Access::READ),
            Ok(()),
            "spans two adjacent regions"
        );
        assert_eq!(m.check(0x8000, 0x1000, Access::READ_WRITE), Ok(()));
        assert_eq!(m.check(0xdead_0000, 0, Access::READ), Ok(()));
    }

    #[test]
    fn ranges_touching_unmapped_memory_fail() {
        let m = mappings();
        assert_eq!(m.check(0x0fff, 2, Access::READ), Err(Error::BadAddress));
        assert_eq!(m.check(0x3ff0, 0x20, Access::READ), Err(Error::BadAddress));
        assert_eq!(m.check(0x4000, 1, Access::READ), Err(Error::BadAddress));
        assert_eq!(m.check(0x8fff, 2, Access::READ), Err(Error::BadAddress));
        assert_eq!(m.check(u64::MAX, 2, Access::READ), Err(Error::BadAddress));
        assert_eq!(m.check(0, u64::MAX, Access::READ), Err(Error::BadAddress));
    }

    #[test]
    fn access_is_checked() {
        let m = mappings();
        assert_eq!(
            m.check(0x1000, 8, Access::READ_WRITE),
            Err(Error::BadAddress)
        );
        assert_eq!(m.check(0x2ff0, 0x20, CODE), Err(Error::BadAddress));
    }

    #[test]
    fn regions_are_removed_and_reprotected_by_start() {
        let mut m = mappings();
        assert!(m.set_access(0x8000, Access::READ));
        assert_eq!(
            m.check(0x8000, 8, Access::READ_WRITE),
            Err(Error::BadAddress)
        );
        assert!(!m.set_access(0x8001, Access::READ));
        assert_eq!(m.remove(0x8001), None);
        assert_eq!(m.remove(0x8000).map(|r| r.end), Some(0x9000));
        assert_eq!(m.check(0x8000, 1, Access::READ), Err(Error::BadAddress));
        let none = Access {
            read: false,
            write: false,
            execute: false,
        };
        assert!(m.set_access(0x3000, none));
        assert_eq!(m.check(0x3000, 1, Access::READ), Err(Error::BadAddress));
    }

    #[test]
    fn overlaps_are_refused() {
        let mut m = mappings();
        let region = |start, end| UserRegion {
            start,
            end,
            access: Access::READ,
        };
        assert_eq!(m.insert(region(0x2000, 0x5000)), Err(RegionError::Overlap));
        assert_eq!(m.insert(region(0x7000, 0x8001)), Err(RegionError::Overlap));
        assert_eq!(m.insert(region(0x5000, 0x5000)), Err(RegionError::Overlap));
        assert_eq!(m.insert(region(0x4000, 0x8000)), Ok(()));
        assert_eq!(m.regions().len(), 4);
        assert_eq!(m.check(0x1000, 0x8000, Access::READ), Ok(()));
    }
}
