//! The app heap: a global allocator on pages the library allocates (`page_alloc`) and maps
//! (`page_map`) itself, in a region of the user half it reserves ([`HEAP_BASE`]).
//!
//! Small requests (up to [`LARGEST_CLASS_BYTES`], after rounding to a power of two no smaller
//! than the alignment) come from slab pages, one size class per page, through an intrusive
//! free list per class; slab pages stay with the heap. Larger requests take a run of whole
//! pages, first fit over the region; a freed run's pages stay mapped as *free pages*, reused
//! by later runs, and are what the library gives back when the kernel asks for pages
//! ([`Heap::give_back`]: least recently allocated first). Running out of region or of frames
//! makes the allocation fail (a null pointer, `Err` from `try_reserve`), never a fault.
//!
//! The bookkeeping is host-tested through [`PageSource`], which stands for the kernel.
#![allow(unsafe_code)]
use exo_abi::Error;

/// Where the heap region starts (PML4 slot 192 of the user half, away from the image, the
/// stack and the addresses the scenarios map by hand).
pub const HEAP_BASE: u64 = 0x0000_6000_0000_0000;
/// Pages the region spans (4 MiB).
pub const HEAP_MAX_PAGES: usize = 1024;
/// Bytes of a page.
pub const PAGE_BYTES: usize = 4096;
/// Largest request served from a slab; larger ones take whole pages.
pub const LARGEST_CLASS_BYTES: usize = 2048;
const SMALLEST_CLASS_BYTES: usize = 16;
const CLASSES: usize = 8; // 16, 32, ..., 2048

/// Where pages come from: the kernel in an app, a fake in host tests.
pub trait PageSource {
    /// Backs `address` (page-aligned) with a fresh page readable and writable; returns the
    /// capability that names it.
    fn map(&mut self, address: u64) -> Result<u64, Error>;
    /// Removes the mapping at `address` and gives the page (`cap`) back.
    fn unmap(&mut self, address: u64, cap: u64);
}

/// What a page of the region is used for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum PageUse {
    /// No page behind it.
    Unmapped,
    /// Mapped, nothing allocated in it.
    Free,
    /// Mapped, carved into blocks of one size class.
    Slab,
    /// First page of an allocated run of this many pages.
    RunHead(u32),
    /// A later page of an allocated run.
    RunTail,
}

/// Counters an app (or a test) can read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HeapStats {
    /// Pages mapped now (slabs, runs and free pages).
    pub mapped_pages: usize,
    /// Mapped pages with nothing allocated in them.
    pub free_pages: usize,
    /// Pages mapped since the start (each one a `page_alloc`).
    pub pages_mapped_total: u64,
    /// Pages given back to the kernel since the start.
    pub pages_given_back: u64,
    /// Allocations refused (region or frames exhausted, unsupported alignment).
    pub failures: u64,
}

/// The allocator's state over a region of `PAGES` pages at `base`.
#[derive(Debug)]
pub struct Heap<const PAGES: usize> {
    base: u64,
    uses: [PageUse; PAGES],
    caps: [u64; PAGES],
    /// Sequence number of the allocation that last used the page (for the give-back order).
    last_used: [u64; PAGES],
    sequence: u64,
    /// Head of each class's free list (0 = empty); the next pointer sits in the block.
    free_blocks: [u64; CLASSES],
    stats: HeapStats,
}

/// The size class for a request, or `None` when it takes whole pages.
pub const fn class_of(size: usize, align: usize) -> Option<usize> {
    let size = if size > align { size } else { align };
    let size = if size < SMALLEST_CLASS_BYTES {
        SMALLEST_CLASS_BYTES
    } else {
        size
    };
    if size > LARGEST_CLASS_BYTES {
        return None;
    }
    let rounded = size.next_power_of_two();
    Some((rounded.trailing_zeros() - SMALLEST_CLASS_BYTES.trailing_zeros()) as usize)
}

const fn class_bytes(class: usize) -> usize {
    SMALLEST_CLASS_BYTES << class
}

impl<const PAGES: usize> Heap<PAGES> {
    /// An empty heap over `[base, base + PAGES * PAGE_BYTES)` (`base` page-aligned).
    pub const fn new(base: u64) -> Heap<PAGES> {
        Heap {
            base,
            uses: [PageUse::Unmapped; PAGES],
            caps: [0; PAGES],
            last_used: [0; PAGES],
            sequence: 0,
            free_blocks: [0; CLASSES],
            stats: HeapStats {
                mapped_pages: 0,
                free_pages: 0,
                pages_mapped_total: 0,
                pages_given_back: 0,
                failures: 0,
            },
        }
    }

    /// The counters.
    pub fn stats(&self) -> HeapStats {
        self.stats
    }

    fn address_of(&self, page: usize) -> u64 {
        self.base + (page * PAGE_BYTES) as u64
    }

    /// Allocates `size` bytes aligned to `align` (a power of two); 0 when it cannot.
    pub fn allocate(&mut self, source: &mut dyn PageSource, size: usize, align: usize) -> u64 {
        let address = match class_of(size, align) {
            Some(class) => self.allocate_block(source, class),
            None if align <= PAGE_BYTES => {
                let pages = size.div_ceil(PAGE_BYTES).max(1);
                self.allocate_run(source, pages, PageUse::RunHead(pages as u32))
            }
            None => 0,
        };
        if address == 0 {
            self.stats.failures += 1;
        }
        address
    }

    /// Frees what [`Heap::allocate`] returned for the same `size` and `align`.
    pub fn free(&mut self, address: u64, size: usize, align: usize) {
        match class_of(size, align) {
            Some(class) => {
                // SAFETY: the block lies in a mapped slab page of this class (the caller
                // passes back an allocation with its layout) and is no longer in use.
                unsafe { (address as *mut u64).write(self.free_blocks[class]) };
                self.free_blocks[class] = address;
            }
            None => {
                let first = ((address - self.base) as usize) / PAGE_BYTES;
                let PageUse::RunHead(pages) = self.uses[first] else {
                    panic!("heap: freeing {address:#x}, which is not a run");
                };
                for page in first..first + pages as usize {
                    self.uses[page] = PageUse::Free;
                }
                self.stats.free_pages += pages as usize;
            }
        }
    }

    fn allocate_block(&mut self, source: &mut dyn PageSource, class: usize) -> u64 {
        if self.free_blocks[class] == 0 {
            let page = self.allocate_run(source, 1, PageUse::Slab);
            if page == 0 {
                return 0;
            }
            let bytes = class_bytes(class);
            // Thread the page's blocks onto the list, lowest address first.
            for block in (0..PAGE_BYTES / bytes).rev() {
                let address = page + (block * bytes) as u64;
                // SAFETY: the page was just mapped writable for the heap and nothing else
                // refers to it.
                unsafe { (address as *mut u64).write(self.free_blocks[class]) };
                self.free_blocks[class] = address;
            }
        }
        let block = self.free_blocks[class];
        // SAFETY: a block on the free list holds the next pointer the heap wrote there.
        self.free_blocks[class] = unsafe { (block as *const u64).read() };
        block
    }

    /// First fit: the lowest run of `pages` pages that are free or unmapped; maps the
    /// unmapped ones. Pages it mapped stay (as free) if a later one fails.
    fn allocate_run(&mut self, source: &mut dyn PageSource, pages: usize, kind: PageUse) -> u64 {
        let mut start = 0;
        let mut length = 0;
        for page in 0..PAGES {
            if matches!(self.uses[page], PageUse::Unmapped | PageUse::Free) {
                if length == 0 {
                    start = page;
                }
                length += 1;
                if length == pages {
                    break;
                }
            } else {
                length = 0;
            }
        }
        if length < pages {
            return 0;
        }
        for page in start..start + pages {
            if self.uses[page] == PageUse::Unmapped {
                match source.map(self.address_of(page)) {
                    Ok(cap) => {
                        self.caps[page] = cap;
                        self.uses[page] = PageUse::Free;
                        self.stats.mapped_pages += 1;
                        self.stats.free_pages += 1;
                        self.stats.pages_mapped_total += 1;
                    }
                    Err(_) => return 0,
                }
            }
        }
        self.sequence += 1;
        for page in start..start + pages {
            self.uses[page] = if page == start {
                kind
            } else {
                PageUse::RunTail
            };
            self.last_used[page] = self.sequence;
        }
        self.stats.free_pages -= pages;
        self.address_of(start)
    }

    /// Gives up to `pages` free pages back to the kernel, least recently allocated first
    /// (never allocated before recently allocated); returns how many went.
    pub fn give_back(&mut self, source: &mut dyn PageSource, pages: usize) -> usize {
        let mut given = 0;
        while given < pages {
            let oldest = (0..PAGES)
                .filter(|&page| self.uses[page] == PageUse::Free)
                .min_by_key(|&page| (self.last_used[page], page));
            let Some(page) = oldest else { break };
            source.unmap(self.address_of(page), self.caps[page]);
            self.uses[page] = PageUse::Unmapped;
            self.caps[page] = 0;
            self.stats.mapped_pages -= 1;
            self.stats.free_pages -= 1;
            self.stats.pages_given_back += 1;
            given += 1;
        }
        given
    }
}

#[cfg(target_os = "none")]
pub use global::{give_back, stats};

#[cfg(target_os = "none")]
mod global {
    //! The `#[global_allocator]`: one [`Heap`] over the kernel, behind a lock that an upcall
    //! never waits for (a give-back that finds it taken is left for the holder to do).
    use super::{HEAP_BASE, HEAP_MAX_PAGES, Heap, HeapStats, PageSource};
    use crate::sys;
    use core::alloc::{GlobalAlloc, Layout};
    use core::cell::UnsafeCell;
    use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use exo_abi::Error;
    use exo_abi::cap::{CapHandle, Rights};
    use exo_abi::syscall::ANY_FRAME;

    struct Kernel;

    impl PageSource for Kernel {
        fn map(&mut self, address: u64) -> Result<u64, Error> {
            let cap = sys::page_alloc(ANY_FRAME)?;
            if let Err(error) = sys::page_map(cap, address, Rights::READ | Rights::WRITE) {
                let _ = sys::cap_delete(cap);
                return Err(error);
            }
            Ok(cap.raw())
        }

        fn unmap(&mut self, _address: u64, cap: u64) {
            // Deleting the page's root capability unmaps it and frees the frame.
            let _ = sys::cap_delete(CapHandle(cap));
        }
    }

    struct Global {
        locked: AtomicBool,
        pending_give_back: AtomicUsize,
        heap: UnsafeCell<Heap<HEAP_MAX_PAGES>>,
    }

    // SAFETY: `heap` is only touched by the holder of `locked` (one environment runs on one
    // CPU; an upcall that interrupts the holder does not wait for it).
    unsafe impl Sync for Global {}

    impl Global {
        fn with<R>(&self, action: impl FnOnce(&mut Heap<HEAP_MAX_PAGES>) -> R) -> Option<R> {
            if self.locked.swap(true, Ordering::Acquire) {
                return None;
            }
            // SAFETY: we hold the lock.
            let result = action(unsafe { &mut *self.heap.get() });
            self.locked.store(false, Ordering::Release);
            self.run_pending();
            Some(result)
        }

        fn run_pending(&self) {
            if self.pending_give_back.load(Ordering::Relaxed) == 0
                || self.locked.swap(true, Ordering::Acquire)
            {
                return;
            }
            let pages = self.pending_give_back.swap(0, Ordering::Relaxed);
            // SAFETY: we hold the lock.
            unsafe { &mut *self.heap.get() }.give_back(&mut Kernel, pages);
            self.locked.store(false, Ordering::Release);
        }
    }

    static GLOBAL: Global = Global {
        locked: AtomicBool::new(false),
        pending_give_back: AtomicUsize::new(0),
        heap: UnsafeCell::new(Heap::new(HEAP_BASE)),
    };

    struct Allocator;

    // SAFETY: blocks and runs never overlap while allocated, are aligned as asked (classes
    // are powers of two no smaller than the alignment inside page-aligned slabs; runs are
    // page-aligned) and lie in pages mapped writable for as long as they are allocated.
    unsafe impl GlobalAlloc for Allocator {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            GLOBAL
                .with(|heap| heap.allocate(&mut Kernel, layout.size(), layout.align()))
                .unwrap_or(0) as *mut u8
        }

        unsafe fn dealloc(&self, pointer: *mut u8, layout: Layout) {
            // Only an upcall handler that allocates while it interrupted the allocator can
            // find the lock taken; the block is then leaked rather than corrupt the heap.
            let _ = GLOBAL.with(|heap| heap.free(pointer as u64, layout.size(), layout.align()));
        }
    }

    #[global_allocator]
    static ALLOCATOR: Allocator = Allocator;

    /// Gives up to `pages` free heap pages back to the kernel (least recently allocated
    /// first); returns how many went now (0 if the heap was busy: they go when it is free).
    pub fn give_back(pages: usize) -> usize {
        GLOBAL.pending_give_back.fetch_add(pages, Ordering::Relaxed);
        let before = stats().pages_given_back;
        GLOBAL.run_pending();
        (stats().pages_given_back - before) as usize
    }

    /// The heap's counters.
    pub fn stats() -> HeapStats {
        // SAFETY: a copy of plain counters; a torn read during an interrupted update is
        // harmless for statistics.
        unsafe { (*GLOBAL.heap.get()).stats() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    extern crate std;
    use std::vec::Vec;

    const PAGES: usize = 16;

    /// Pages out of a host buffer; refuses after `limit` maps.
    struct Fake {
        mapped: Vec<u64>,
        unmapped: Vec<u64>,
        limit: usize,
    }

    impl PageSource for Fake {
        fn map(&mut self, address: u64) -> Result<u64, Error> {
            if self.mapped.len() - self.unmapped.len() >= self.limit {
                return Err(Error::OutOfMemory);
            }
            self.mapped.push(address);
            Ok(address ^ 0xcafe)
        }
        fn unmap(&mut self, address: u64, cap: u64) {
            assert_eq!(cap, address ^ 0xcafe);
            self.unmapped.push(address);
        }
    }

    fn region() -> (Vec<u8>, u64) {
        let buffer = std::vec![0u8; (PAGES + 1) * PAGE_BYTES];
        let base = (buffer.as_ptr() as u64).next_multiple_of(PAGE_BYTES as u64);
        (buffer, base)
    }

    fn fake(limit: usize) -> Fake {
        Fake {
            mapped: Vec::new(),
            unmapped: Vec::new(),
            limit,
        }
    }

    #[test]
    fn classes() {
        assert_eq!(class_of(1, 1), Some(0));
        assert_eq!(class_of(16, 8), Some(0));
        assert_eq!(class_of(17, 8), Some(1));
        assert_eq!(class_of(8, 64), Some(2));
        assert_eq!(class_of(2048, 8), Some(7));
        assert_eq!(class_of(2049, 8), None);
        assert_eq!(class_of(8, 4096), None);
    }

    #[test]
    fn small_blocks_share_a_page_and_are_reused() {
        let (_buffer, base) = region();
        let mut heap = Heap::<PAGES>::new(base);
        let mut source = fake(PAGES);
        let blocks: Vec<u64> = (0..256)
            .map(|_| heap.allocate(&mut source, 16, 8))
            .collect();
        assert!(blocks.iter().all(|&block| block != 0 && block % 16 == 0));
        assert_eq!(source.mapped.len(), 1);
        let mut sorted = blocks.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), 256);
        heap.free(blocks[7], 16, 8);
        assert_eq!(heap.allocate(&mut source, 10, 8), blocks[7]);
        assert_eq!(heap.allocate(&mut source, 16, 8) / 4096, base / 4096 + 1);
    }

    #[test]
    fn runs_reuse_freed_pages_and_fail_cleanly() {
        let (_buffer, base) = region();
        let mut heap = Heap::<PAGES>::new(base);
        let mut source = fake(10);
        let a = heap.allocate(&mut source, 3 * PAGE_BYTES, 8);
        let b = heap.allocate(&mut source, 5000, 4096);
        assert_eq!((a, b), (base, base + 3 * PAGE_BYTES as u64));
        heap.free(a, 3 * PAGE_BYTES, 8);
        assert_eq!(heap.stats().free_pages, 3);
        // Reuse without new pages.
        assert_eq!(heap.allocate(&mut source, 2 * PAGE_BYTES, 8), a);
        assert_eq!(source.mapped.len(), 5);
        // Out of frames: null, counted, the heap still works.
        assert_eq!(heap.allocate(&mut source, 8 * PAGE_BYTES, 8), 0);
        assert_eq!(heap.stats().failures, 1);
        assert_eq!(
            heap.allocate(&mut source, PAGE_BYTES, 8),
            a + 2 * PAGE_BYTES as u64
        );
        // Out of region.
        assert_eq!(heap.allocate(&mut source, (PAGES + 1) * PAGE_BYTES, 8), 0);
        assert_eq!(heap.allocate(&mut source, 8, 8192), 0);
    }

    #[test]
    fn give_back_takes_least_recently_allocated_free_pages() {
        let (_buffer, base) = region();
        let mut heap = Heap::<PAGES>::new(base);
        let mut source = fake(PAGES);
        let old = heap.allocate(&mut source, 2 * PAGE_BYTES, 8);
        let busy = heap.allocate(&mut source, PAGE_BYTES, 8);
        let young = heap.allocate(&mut source, 2 * PAGE_BYTES, 8);
        heap.free(young, 2 * PAGE_BYTES, 8);
        heap.free(old, 2 * PAGE_BYTES, 8);
        assert_eq!(heap.give_back(&mut source, 3), 3);
        assert_eq!(
            source.unmapped,
            [old, old + PAGE_BYTES as u64, young],
            "the oldest free pages go first"
        );
        assert_eq!(heap.give_back(&mut source, 5), 1);
        let stats = heap.stats();
        assert_eq!((stats.mapped_pages, stats.free_pages), (1, 0));
        assert_eq!(stats.pages_given_back, 4);
        // A given-back page is mapped again when needed.
        assert_eq!(heap.allocate(&mut source, PAGE_BYTES, 8), old);
        assert_ne!(busy, 0);
    }
}
