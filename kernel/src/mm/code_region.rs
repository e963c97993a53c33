//! The kernel's generated-code region (compiled filters and handlers): mapping its pages
//! read+execute in the kernel half every address space shares, and keeping the frames of
//! that code read-only in the identity map.
use super::paging::{KERNEL_PML4, KERNEL_TABLE_FLAGS, PAGE_BYTES, table_mut, table_ref};
use super::{frames, heap};
use core::sync::atomic::{AtomicU64, Ordering};
use x86_64::{
    PhysAddr, VirtAddr,
    structures::paging::{
        FrameAllocator, Mapper, OffsetPageTable, Page, PageTableFlags as Flags, PhysFrame, Size4KiB,
    },
};

/// Start of the kernel's generated-code region: inside the heap's PML4 slot (384), whose
/// entry every address space shares, so code mapped later is visible in all of them.
pub const KERNEL_CODE_START: u64 = heap::HEAP_START + (1 << 30);
/// Size of the generated-code region.
pub const KERNEL_CODE_SIZE_BYTES: u64 = 1 << 30;
const _: () = assert!(
    heap::HEAP_SIZE_BYTES <= 1 << 30,
    "the heap stays below the code region"
);

/// Frames the generated-code region's page tables took. They stay for the kernel's life (the
/// region's addresses are handed out once, and tables are not reclaimed), so the end-of-run
/// leak check counts them as the kernel's, not as leaked by environments.
static CODE_TABLE_FRAMES: AtomicU64 = AtomicU64::new(0);

/// Frames taken for the generated-code region's page tables so far.
pub fn code_table_frames() -> u64 {
    CODE_TABLE_FRAMES.load(Ordering::Relaxed)
}

/// Table frames for the code region, counted (see [`CODE_TABLE_FRAMES`]).
struct CodeTableFrames;

// SAFETY: each frame comes from `frames::TableFrames`, which hands out frames nobody else
// uses; counting them changes nothing about that.
unsafe impl FrameAllocator<Size4KiB> for CodeTableFrames {
    fn allocate_frame(&mut self) -> Option<PhysFrame> {
        let frame = frames::TableFrames.allocate_frame()?;
        CODE_TABLE_FRAMES.fetch_add(1, Ordering::Relaxed);
        Some(frame)
    }
}

/// Page tables made by splitting 2 MiB pages of the identity map (never merged again), counted
/// so the end-of-run frame check can tell them from a leak.
static SPLIT_TABLE_FRAMES: AtomicU64 = AtomicU64::new(0);

/// Frames taken for splitting the identity map's 2 MiB pages so far.
pub fn split_table_frames() -> u64 {
    SPLIT_TABLE_FRAMES.load(Ordering::Relaxed)
}

/// Makes the identity map's page for the RAM frame at `frame` writable or read-only, first
/// splitting the 2 MiB page holding it into 4 KiB pages (its flags kept) if need be. A frame
/// of generated code is read-only there while the code lives, so even a kernel bug that
/// writes through the identity map cannot change code the kernel executes. The identity map
/// is shared by every address space (PML4 slot 0), so this holds in all of them.
pub fn set_identity_writable(frame: u64, writable: bool) -> Result<(), OutOfFrames> {
    let address = VirtAddr::new(frame);
    let pml4 = *KERNEL_PML4.get().expect("paging::init ran");
    // SAFETY: the kernel tables change only in init and in these functions, on one CPU with
    // interrupts off (system calls), holding no other reference into them. Every level below
    // is present for RAM (`init` mapped all of it), and the identity map gives each table's
    // physical address as its address.
    unsafe {
        let directory_pointers = table_mut(PhysFrame::containing_address(
            table_ref(pml4)[address.p4_index()].addr(),
        ));
        let directory = table_mut(PhysFrame::containing_address(
            directory_pointers[address.p3_index()].addr(),
        ));
        let entry = &mut directory[address.p2_index()];
        if entry.flags().contains(Flags::HUGE_PAGE) {
            let table_frame = frames::allocate().ok_or(OutOfFrames)?;
            let table = table_mut(table_frame);
            let base = entry.addr().as_u64();
            let flags = entry.flags() - Flags::HUGE_PAGE;
            for (index, small) in table.iter_mut().enumerate() {
                small.set_addr(PhysAddr::new(base + index as u64 * PAGE_BYTES), flags);
            }
            entry.set_addr(table_frame.start_address(), KERNEL_TABLE_FLAGS);
            // `invlpg` on any address of a large page drops its whole translation.
            x86_64::instructions::tlb::flush(VirtAddr::new(base));
            SPLIT_TABLE_FRAMES.fetch_add(1, Ordering::Relaxed);
        }
        let table = table_mut(PhysFrame::containing_address(entry.addr()));
        let page = &mut table[address.p1_index()];
        let mut flags = page.flags();
        flags.set(Flags::WRITABLE, writable);
        page.set_flags(flags);
    }
    x86_64::instructions::tlb::flush(address);
    Ok(())
}

/// Maps `frames` read+execute (not writable) at consecutive pages from `virtual_address` in
/// the generated-code region. The caller wrote the frames' contents first, through the
/// identity map (which maps them no-execute): no mapping is ever writable and executable.
/// Without a frame for a page table it maps nothing and says so.
pub fn map_kernel_code(virtual_address: u64, frames: &[u64]) -> Result<(), OutOfFrames> {
    let inside = (frames.len() as u64)
        .checked_mul(PAGE_BYTES)
        .and_then(|bytes| virtual_address.checked_add(bytes))
        .is_some_and(|end| {
            virtual_address >= KERNEL_CODE_START
                && end <= KERNEL_CODE_START + KERNEL_CODE_SIZE_BYTES
        });
    assert!(inside, "outside the generated-code region");
    let pml4 = *KERNEL_PML4.get().expect("paging::init ran");
    // SAFETY: the kernel PML4 changes only in init and in these functions, on one CPU with
    // interrupts off (system calls), holding no other reference into it; identity offset 0.
    let mut mapper = unsafe { OffsetPageTable::new(table_mut(pml4), VirtAddr::zero()) };
    for (index, &frame) in frames.iter().enumerate() {
        let page = Page::<Size4KiB>::containing_address(VirtAddr::new(
            virtual_address + index as u64 * PAGE_BYTES,
        ));
        let frame = PhysFrame::containing_address(PhysAddr::new(frame));
        // SAFETY: a page of the code region nothing else maps (the caller holds the range
        // from its code space), mapped to a frame the caller owns; read+execute only.
        let mapped = unsafe {
            mapper.map_to_with_table_flags(
                page,
                frame,
                Flags::PRESENT,
                KERNEL_TABLE_FLAGS,
                &mut CodeTableFrames,
            )
        };
        match mapped {
            Ok(flush) => flush.flush(),
            Err(_) => {
                // Only a missing table frame can fail here: the range is the caller's alone.
                // (The mapper is not used again, so its borrow of the PML4 has ended.)
                unmap_kernel_code(virtual_address, index);
                return Err(OutOfFrames);
            }
        }
    }
    Ok(())
}

/// No frame was free for a page table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OutOfFrames;

/// Removes `pages` mappings made by [`map_kernel_code`] (the frames stay the caller's).
pub fn unmap_kernel_code(virtual_address: u64, pages: usize) {
    let pml4 = *KERNEL_PML4.get().expect("paging::init ran");
    // SAFETY: as in map_kernel_code.
    let mut mapper = unsafe { OffsetPageTable::new(table_mut(pml4), VirtAddr::zero()) };
    for index in 0..pages as u64 {
        let page = Page::<Size4KiB>::containing_address(VirtAddr::new(
            virtual_address + index * PAGE_BYTES,
        ));
        mapper.unmap(page).expect("a mapped code page").1.flush();
    }
}
