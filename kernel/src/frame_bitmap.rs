//! Physical frame bookkeeping: which 4 KiB frames are free, fed from the boot memory map. The
//! kernel keeps one instance of it, `mm::frames`.
//!
//! A bitmap (one bit per frame, set = in use) is small enough to live in a static for the
//! memory QEMU gives us, needs no heap (the heap is built from these frames), and makes a
//! double free detectable.

/// Size of one physical frame.
pub const FRAME_SIZE_BYTES: u64 = 4096;

/// A 4 KiB physical frame, by number (physical address / 4096).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PhysicalFrame(u64);

impl PhysicalFrame {
    /// The frame that holds physical address `address`.
    pub const fn containing(address: u64) -> PhysicalFrame {
        PhysicalFrame(address / FRAME_SIZE_BYTES)
    }

    /// The frame's number.
    pub const fn number(self) -> u64 {
        self.0
    }

    /// Physical address of the frame's first byte.
    pub const fn start_address(self) -> u64 {
        self.0 * FRAME_SIZE_BYTES
    }
}

/// Why a frame could not be returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FreeError {
    /// Beyond the memory this allocator manages.
    OutOfRange,
    /// Already free: a double free, which would hand the frame to two owners.
    NotAllocated,
}

/// Frame allocator over a bitmap `B` (any `[u64]` storage: a static array in the kernel, a
/// `Vec` in tests). Frame `n` is bit `n % 64` of word `n / 64`.
#[derive(Debug)]
pub struct FrameBitmap<B> {
    bitmap: B,
    free_frames: u64,
    /// Word where the next search starts, so allocation does not rescan the used prefix.
    next_word: usize,
}

impl<B: AsRef<[u64]> + AsMut<[u64]>> FrameBitmap<B> {
    /// An allocator over `bitmap`, which must have every bit set (every frame in use) until
    /// the memory map says otherwise.
    pub const fn new(bitmap: B) -> FrameBitmap<B> {
        FrameBitmap {
            bitmap,
            free_frames: 0,
            next_word: 0,
        }
    }

    /// Number of frames the bitmap can describe.
    pub fn capacity_frames(&self) -> u64 {
        self.bitmap.as_ref().len() as u64 * 64
    }

    /// Frames currently free.
    pub fn free_frames(&self) -> u64 {
        self.free_frames
    }

    fn is_used(&self, frame: u64) -> bool {
        self.bitmap.as_ref()[(frame / 64) as usize] & (1 << (frame % 64)) != 0
    }

    fn set_used(&mut self, frame: u64, used: bool) {
        let word = &mut self.bitmap.as_mut()[(frame / 64) as usize];
        if used {
            *word |= 1 << (frame % 64);
        } else {
            *word &= !(1 << (frame % 64));
        }
    }

    /// Makes the whole frames inside `[start_address, end_address)` available (a usable
    /// region of the memory map). Partial frames at the edges and frames beyond the bitmap
    /// are left out. Returns how many frames became free.
    pub fn add_free_region(&mut self, start_address: u64, end_address: u64) -> u64 {
        let first = start_address.div_ceil(FRAME_SIZE_BYTES);
        let end = (end_address / FRAME_SIZE_BYTES).min(self.capacity_frames());
        let mut added = 0;
        for frame in first..end {
            if self.is_used(frame) {
                self.set_used(frame, false);
                added += 1;
            }
        }
        self.free_frames += added;
        self.next_word = 0;
        added
    }

    /// Takes every frame that overlaps `[start_address, end_address)` out of circulation (the
    /// kernel image, boot data). Returns how many free frames it removed.
    pub fn reserve_region(&mut self, start_address: u64, end_address: u64) -> u64 {
        let first = start_address / FRAME_SIZE_BYTES;
        let end = end_address
            .div_ceil(FRAME_SIZE_BYTES)
            .min(self.capacity_frames());
        let mut removed = 0;
        for frame in first..end {
            if !self.is_used(frame) {
                self.set_used(frame, true);
                removed += 1;
            }
        }
        self.free_frames -= removed;
        removed
    }

    /// Hands out a free frame, or `None` when memory is exhausted.
    pub fn allocate(&mut self) -> Option<PhysicalFrame> {
        let words = self.bitmap.as_ref().len();
        for step in 0..words {
            let index = (self.next_word + step) % words;
            let word = self.bitmap.as_ref()[index];
            if word != u64::MAX {
                let frame = index as u64 * 64 + u64::from((!word).trailing_zeros());
                self.set_used(frame, true);
                self.free_frames -= 1;
                self.next_word = index;
                return Some(PhysicalFrame(frame));
            }
        }
        None
    }

    /// Hands out the frame at `address` (a named allocation), if it is free.
    pub fn allocate_at(&mut self, address: u64) -> Option<PhysicalFrame> {
        if !address.is_multiple_of(FRAME_SIZE_BYTES) {
            return None;
        }
        let frame = address / FRAME_SIZE_BYTES;
        if frame >= self.capacity_frames() || self.is_used(frame) {
            return None;
        }
        self.set_used(frame, true);
        self.free_frames -= 1;
        Some(PhysicalFrame(frame))
    }

    /// Returns `frame` to the pool. The caller must own it (have received it from
    /// [`Self::allocate`]); freeing a frame that is already free is refused.
    pub fn free(&mut self, frame: PhysicalFrame) -> Result<(), FreeError> {
        if frame.0 >= self.capacity_frames() {
            return Err(FreeError::OutOfRange);
        }
        if !self.is_used(frame.0) {
            return Err(FreeError::NotAllocated);
        }
        self.set_used(frame.0, false);
        self.free_frames += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn named_allocation_takes_exactly_that_free_frame() {
        let mut frames = allocator(4);
        frames.add_free_region(0x1000, 0x10000);
        let before = frames.free_frames();
        assert_eq!(
            frames.allocate_at(0x3000).map(|f| f.start_address()),
            Some(0x3000)
        );
        assert_eq!(frames.free_frames(), before - 1);
        assert_eq!(frames.allocate_at(0x3000), None, "already taken");
        assert_eq!(frames.allocate_at(0x3001), None, "unaligned");
        assert_eq!(frames.allocate_at(0), None, "never freed");
        assert_eq!(frames.allocate_at(1 << 40), None, "out of range");
        frames.free(PhysicalFrame::containing(0x3000)).unwrap();
        assert_eq!(frames.free_frames(), before);
    }

    fn allocator(words: usize) -> FrameBitmap<Vec<u64>> {
        FrameBitmap::new(vec![u64::MAX; words])
    }

    #[test]
    fn starts_with_nothing_free() {
        let mut frames = allocator(4);
        assert_eq!(frames.capacity_frames(), 256);
        assert_eq!(frames.free_frames(), 0);
        assert_eq!(frames.allocate(), None);
    }

    #[test]
    fn hands_out_only_usable_frames_and_never_twice() {
        let mut frames = allocator(4);
        // Usable: frames 2..10 and 100..164; partial frames at the edges are not usable.
        assert_eq!(frames.add_free_region(0x1800, 10 * 4096), 8);
        assert_eq!(frames.add_free_region(100 * 4096, 164 * 4096 + 100), 64);
        assert_eq!(frames.free_frames(), 72);
        let mut seen = HashSet::new();
        while let Some(frame) = frames.allocate() {
            assert!((2..10).contains(&frame.number()) || (100..164).contains(&frame.number()));
            assert!(seen.insert(frame), "frame {frame:?} handed out twice");
        }
        assert_eq!(seen.len(), 72);
        assert_eq!(frames.free_frames(), 0);
    }

    #[test]
    fn reserved_frames_are_never_handed_out() {
        let mut frames = allocator(2);
        frames.add_free_region(0, 128 * 4096);
        // A reservation covers every frame it touches, even partially.
        assert_eq!(frames.reserve_region(10 * 4096 + 1, 20 * 4096 - 1), 10);
        assert_eq!(frames.reserve_region(10 * 4096, 20 * 4096), 0);
        while let Some(frame) = frames.allocate() {
            assert!(!(10..20).contains(&frame.number()));
        }
    }

    #[test]
    fn freed_frames_are_reused() {
        let mut frames = allocator(1);
        frames.add_free_region(0, 64 * 4096);
        let all: Vec<_> = std::iter::from_fn(|| frames.allocate()).collect();
        assert_eq!(all.len(), 64);
        frames.free(all[17]).unwrap();
        frames.free(all[3]).unwrap();
        assert_eq!(frames.free_frames(), 2);
        let again: HashSet<_> = [frames.allocate().unwrap(), frames.allocate().unwrap()].into();
        assert_eq!(again, HashSet::from([all[17], all[3]]));
        assert_eq!(frames.allocate(), None);
    }

    #[test]
    fn double_free_and_foreign_frames_are_refused() {
        let mut frames = allocator(1);
        frames.add_free_region(0, 64 * 4096);
        let frame = frames.allocate().unwrap();
        assert_eq!(frames.free(frame), Ok(()));
        assert_eq!(frames.free(frame), Err(FreeError::NotAllocated));
        assert_eq!(
            frames.free(PhysicalFrame::containing(64 * 4096)),
            Err(FreeError::OutOfRange)
        );
        assert_eq!(frames.free_frames(), 64);
    }

    #[test]
    fn regions_beyond_the_bitmap_are_clipped() {
        let mut frames = allocator(1);
        assert_eq!(frames.add_free_region(0, 1 << 40), 64);
        assert_eq!(frames.reserve_region(0, 1 << 40), 64);
        assert_eq!(frames.free_frames(), 0);
    }

    #[test]
    fn frame_addresses() {
        assert_eq!(PhysicalFrame::containing(0x1fff).start_address(), 0x1000);
        assert_eq!(PhysicalFrame::containing(0x2000).number(), 2);
    }
}
