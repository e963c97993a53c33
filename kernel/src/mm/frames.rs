//! The kernel's one frame allocator: `exo_kernel::frame_bitmap` over a static bitmap for 4 GiB.
use exo_kernel::frame_bitmap::{FrameBitmap, PhysicalFrame};
use exo_kernel::pvh::{MemoryKind, MemoryRegion};
use spin::Mutex;
use x86_64::{
    PhysAddr,
    structures::paging::{PhysFrame, Size4KiB},
};

/// Physical memory the bitmap covers; RAM above it is not used (the boot map also stops here).
pub const MANAGED_BYTES: u64 = 4 << 30;
const BITMAP_WORDS: usize = (MANAGED_BYTES / 4096 / 64) as usize;

static FRAMES: Mutex<FrameBitmap<[u64; BITMAP_WORDS]>> =
    Mutex::new(FrameBitmap::new([u64::MAX; BITMAP_WORDS]));

/// Frees the RAM regions of the memory map, then takes back `reserved` ranges (the kernel
/// image, low memory, boot data). Returns the number of free frames.
pub fn init(regions: &[MemoryRegion], reserved: &[(u64, u64)]) -> u64 {
    let mut frames = FRAMES.lock();
    for region in regions.iter().filter(|r| r.kind == MemoryKind::Ram) {
        frames.add_free_region(region.start, region.end());
    }
    for &(start, end) in reserved {
        frames.reserve_region(start, end);
    }
    frames.free_frames()
}

fn to_phys_frame(frame: PhysicalFrame) -> PhysFrame {
    PhysFrame::containing_address(PhysAddr::new(frame.start_address()))
}

/// A free frame, contents undefined; `None` when memory is exhausted.
pub fn allocate() -> Option<PhysFrame> {
    FRAMES.lock().allocate().map(to_phys_frame)
}

/// The free frame at physical `address`, if it is one (a named allocation).
pub fn allocate_at(address: u64) -> Option<PhysFrame> {
    FRAMES.lock().allocate_at(address).map(to_phys_frame)
}

/// Returns a frame the caller allocated and no longer maps anywhere.
///
/// Panics on a double free: two owners of one frame is a kernel bug that must not go on.
pub fn free(frame: PhysFrame) {
    let frame = PhysicalFrame::containing(frame.start_address().as_u64());
    if let Err(error) = FRAMES.lock().free(frame) {
        panic!("freeing {frame:?}: {error:?}");
    }
}

/// Frames currently free.
pub fn free_count() -> u64 {
    FRAMES.lock().free_frames()
}

/// Adapter so the `x86_64` page-table code can take frames for new tables.
#[derive(Debug)]
pub struct TableFrames;

// SAFETY: every frame returned comes from the allocator, which hands each frame out once, so
// the mapper gets frames nobody else uses.
unsafe impl x86_64::structures::paging::FrameAllocator<Size4KiB> for TableFrames {
    fn allocate_frame(&mut self) -> Option<PhysFrame> {
        allocate()
    }
}
