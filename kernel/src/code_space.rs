//! Page ranges of the kernel's generated-code region: handed out to each installed demux and
//! taken back when it is replaced, so binding and unbinding forever never runs out of
//! addresses (every bind or unbind compiles new code and frees the old).
//!
//! First fit over a sorted list of free ranges, coalesced on every free: the list never holds
//! two adjacent ranges, so its length is bounded by the number of live allocations plus one.
use alloc::vec::Vec;

/// A region of `pages` pages starting at `start`, carved into ranges.
#[derive(Debug)]
pub struct CodeSpace {
    page_bytes: u64,
    /// The region's bounds.
    start: u64,
    end: u64,
    /// Free ranges as (first page address, pages), sorted by address, never adjacent.
    free: Vec<(u64, u64)>,
}

/// Why a range could not be had or given back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CodeSpaceError {
    /// No free range is large enough (or zero pages were asked for).
    Exhausted,
    /// The kernel heap could not grow the free list.
    OutOfMemory,
    /// A range given back overlaps a free one or lies outside the region: a kernel bug,
    /// reported rather than corrupting the list.
    NotAllocated,
}

impl CodeSpace {
    /// The whole region `[start, start + pages * page_bytes)` free.
    pub fn new(start: u64, pages: u64, page_bytes: u64) -> CodeSpace {
        let mut free = Vec::new();
        if pages > 0 {
            free.push((start, pages));
        }
        CodeSpace {
            page_bytes,
            start,
            end: start.saturating_add(pages.saturating_mul(page_bytes)),
            free,
        }
    }

    /// The address of `pages` consecutive free pages, now allocated.
    pub fn allocate(&mut self, pages: u64) -> Result<u64, CodeSpaceError> {
        if pages == 0 {
            return Err(CodeSpaceError::Exhausted);
        }
        let index = self
            .free
            .iter()
            .position(|&(_, length)| length >= pages)
            .ok_or(CodeSpaceError::Exhausted)?;
        let (start, length) = self.free[index];
        if length == pages {
            self.free.remove(index);
        } else {
            self.free[index] = (start + pages * self.page_bytes, length - pages);
        }
        Ok(start)
    }

    /// Gives back `pages` pages at `start`, allocated earlier.
    pub fn free(&mut self, start: u64, pages: u64) -> Result<(), CodeSpaceError> {
        if pages == 0 {
            return Ok(());
        }
        let bytes = pages
            .checked_mul(self.page_bytes)
            .ok_or(CodeSpaceError::NotAllocated)?;
        let end = start
            .checked_add(bytes)
            .ok_or(CodeSpaceError::NotAllocated)?;
        if start < self.start || end > self.end || !start.is_multiple_of(self.page_bytes) {
            return Err(CodeSpaceError::NotAllocated);
        }
        let index = self
            .free
            .partition_point(|&(free_start, _)| free_start < start);
        let end_of = |&(s, l): &(u64, u64)| s + l * self.page_bytes;
        let before = index.checked_sub(1).map(|i| self.free[i]);
        let after = self.free.get(index).copied();
        if before.is_some_and(|b| end_of(&b) > start) || after.is_some_and(|a| a.0 < end) {
            return Err(CodeSpaceError::NotAllocated);
        }
        let joins_before = before.is_some_and(|b| end_of(&b) == start);
        let joins_after = after.is_some_and(|a| a.0 == end);
        match (joins_before, joins_after) {
            (true, true) => {
                let after = self.free.remove(index);
                self.free[index - 1].1 += pages + after.1;
            }
            (true, false) => self.free[index - 1].1 += pages,
            (false, true) => self.free[index] = (start, pages + after.map_or(0, |a| a.1)),
            (false, false) => {
                self.free
                    .try_reserve(1)
                    .map_err(|_| CodeSpaceError::OutOfMemory)?;
                self.free.insert(index, (start, pages));
            }
        }
        Ok(())
    }

    /// Free pages in all.
    pub fn free_pages(&self) -> u64 {
        self.free.iter().map(|&(_, pages)| pages).sum()
    }

    /// How many separate free ranges there are.
    pub fn fragments(&self) -> usize {
        self.free.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAGE: u64 = 4096;
    const BASE: u64 = 0xffff_c000_0000_0000;

    #[test]
    fn a_million_bind_unbind_cycles_never_exhaust_the_region() {
        // A region for 16 pages; a demux of 1 to 3 pages replaced a million times.
        let mut space = CodeSpace::new(BASE, 16, PAGE);
        let mut live = space.allocate(1).unwrap();
        let mut live_pages = 1;
        for cycle in 0..1_000_000u64 {
            let pages = 1 + cycle % 3;
            let next = space.allocate(pages).expect("room for the new code");
            space.free(live, live_pages).unwrap();
            (live, live_pages) = (next, pages);
        }
        assert_eq!(space.free_pages(), 16 - live_pages);
        assert!(space.fragments() <= 2);
    }

    #[test]
    fn frees_coalesce_and_first_fit_reuses_them() {
        let mut space = CodeSpace::new(BASE, 8, PAGE);
        let a = space.allocate(2).unwrap();
        let b = space.allocate(2).unwrap();
        let c = space.allocate(2).unwrap();
        assert_eq!((a, b, c), (BASE, BASE + 2 * PAGE, BASE + 4 * PAGE));
        assert_eq!(space.allocate(3), Err(CodeSpaceError::Exhausted));
        space.free(a, 2).unwrap();
        space.free(c, 2).unwrap();
        assert_eq!(space.fragments(), 2, "a, and c joined with the tail");
        space.free(b, 2).unwrap();
        assert_eq!(space.fragments(), 1);
        assert_eq!(space.allocate(8), Ok(BASE));
    }

    #[test]
    fn bad_frees_are_refused_and_change_nothing() {
        let mut space = CodeSpace::new(BASE, 4, PAGE);
        let a = space.allocate(2).unwrap();
        assert_eq!(
            space.free(BASE + 2 * PAGE, 1),
            Err(CodeSpaceError::NotAllocated)
        );
        assert_eq!(space.free(a + PAGE, 2), Err(CodeSpaceError::NotAllocated));
        assert_eq!(
            space.free(u64::MAX - PAGE, 4),
            Err(CodeSpaceError::NotAllocated)
        );
        assert_eq!(
            space.free(BASE + 8 * PAGE, 1),
            Err(CodeSpaceError::NotAllocated)
        );
        assert_eq!(
            space.free(BASE - PAGE, 1),
            Err(CodeSpaceError::NotAllocated)
        );
        assert_eq!(space.free(a + 8, 1), Err(CodeSpaceError::NotAllocated));
        assert_eq!(space.free_pages(), 2);
        space.free(a, 2).unwrap();
        assert_eq!(
            space.free(a, 2),
            Err(CodeSpaceError::NotAllocated),
            "double free"
        );
        assert_eq!(space.allocate(0), Err(CodeSpaceError::Exhausted));
    }
}
