//! The kernel's own page tables (replacing the boot trampoline's): the identity map, W^X for
//! the image, the heap, device memory, and the helpers every table walk in `mm` shares.
//! Environments' address spaces are `address_space`; the generated-code region is
//! `code_region`.
//!
//! Layout of every address space:
//! - PML4 slot 0: identity map of RAM for the kernel (supervisor only). Text is read-execute,
//!   read-only data read-only, everything else no-execute, so the kernel itself is W^X.
//! - PML4 slots 1..=255: the environment's user pages (`exo_abi::layout`), 4 KiB only.
//! - PML4 slots 256..=511: kernel half (the heap), shared by every address space.
//!
//! The identity map is how the kernel reaches any frame, including page tables and user
//! pages; all raw memory access of `mm` goes through it.
use super::{frames, heap};
use spin::Once;
use x86_64::{
    PhysAddr, VirtAddr,
    registers::control::{Cr0, Cr0Flags, Cr3, Cr3Flags},
    structures::paging::{
        Mapper, OffsetPageTable, Page, PageTable, PageTableFlags as Flags, PhysFrame, Size2MiB,
        Size4KiB, mapper::MapToError,
    },
};

unsafe extern "C" {
    // Defined by kernel.ld; only their addresses are meaningful.
    static __kernel_start: u8;
    static __text_end: u8;
    static __rodata_end: u8;
    static __kernel_end: u8;
}

pub(super) const PAGE_BYTES: u64 = 4096;
pub(super) const TWO_MIB: u64 = 2 << 20;
pub(super) const KERNEL_TABLE_FLAGS: Flags = Flags::PRESENT.union(Flags::WRITABLE);
pub(super) const USER_TABLE_FLAGS: Flags = KERNEL_TABLE_FLAGS.union(Flags::USER_ACCESSIBLE);

/// Where the kernel image lies (physical = virtual), from the linker script.
#[derive(Clone, Copy, Debug)]
pub struct KernelImage {
    /// First byte (text starts here).
    pub start: u64,
    /// End of text, start of read-only data (page-aligned).
    pub text_end: u64,
    /// End of read-only data, start of writable data (page-aligned).
    pub rodata_end: u64,
    /// One past the image, including .bss (page-aligned).
    pub end: u64,
}

/// Every kernel stack's guard page: the boot stack's and the CPU's entry and IST stacks'.
fn stack_guard_pages() -> [u64; 5] {
    unsafe extern "C" {
        /// The page below the boot stack (arch/boot.rs).
        static boot_stack_guard: u8;
    }
    let [entry, double_fault, nmi, machine_check] = crate::arch::gdt::stack_guard_pages();
    [
        (&raw const boot_stack_guard) as u64,
        entry,
        double_fault,
        nmi,
        machine_check,
    ]
}

/// The kernel image's bounds.
pub fn kernel_image() -> KernelImage {
    KernelImage {
        start: (&raw const __kernel_start) as u64,
        text_end: (&raw const __text_end) as u64,
        rodata_end: (&raw const __rodata_end) as u64,
        end: (&raw const __kernel_end) as u64,
    }
}

pub(super) static KERNEL_PML4: Once<PhysFrame> = Once::new();

/// The page table in `frame`, through the identity map.
///
/// # Safety
/// `frame` must hold a page table, and no other reference to it may be live while the result
/// is (the kernel is single-threaded during these operations).
pub(super) unsafe fn table_mut<'a>(frame: PhysFrame) -> &'a mut PageTable {
    // SAFETY: RAM is identity-mapped (boot tables, then ours); exclusivity is the caller's.
    unsafe { &mut *(frame.start_address().as_u64() as *mut PageTable) }
}

/// The page table in `frame`, through the identity map, for reading.
///
/// # Safety
/// `frame` must hold a page table that nothing modifies while the result is live.
pub(super) unsafe fn table_ref<'a>(frame: PhysFrame) -> &'a PageTable {
    // SAFETY: RAM is identity-mapped; the absence of writers is the caller's.
    unsafe { &*(frame.start_address().as_u64() as *const PageTable) }
}

/// Builds the kernel's page tables (identity map of RAM below `ram_end`, W^X for the image,
/// the heap) and switches to them.
pub fn init(ram_end: u64) {
    let image = kernel_image();
    let pml4 = frames::allocate().expect("a frame for the kernel PML4");
    // SAFETY: the frame was just allocated, so nothing else refers to it.
    let table = unsafe { table_mut(pml4) };
    table.zero();
    // SAFETY: physical memory is identity-mapped (offset 0) by the boot tables, which stay
    // active until the CR3 write below.
    let mut mapper = unsafe { OffsetPageTable::new(table, VirtAddr::zero()) };

    // Page 0 stays unmapped so a null dereference faults, and so do the guard pages below
    // every kernel stack, so running off one faults instead of overwriting what lies below.
    let guards = stack_guard_pages();
    let low_end = image.end.next_multiple_of(TWO_MIB);
    for address in (PAGE_BYTES..low_end).step_by(PAGE_BYTES as usize) {
        if guards.contains(&address) {
            continue;
        }
        let flags = if (image.start..image.text_end).contains(&address) {
            Flags::PRESENT
        } else if (image.text_end..image.rodata_end).contains(&address) {
            Flags::PRESENT | Flags::NO_EXECUTE
        } else {
            Flags::PRESENT | Flags::WRITABLE | Flags::NO_EXECUTE
        };
        let page = Page::<Size4KiB>::containing_address(VirtAddr::new(address));
        let frame = PhysFrame::containing_address(PhysAddr::new(address));
        // SAFETY: an identity mapping in tables that are not active yet; it gives every
        // address the meaning it already has.
        unsafe {
            mapper
                .map_to_with_table_flags(
                    page,
                    frame,
                    flags,
                    KERNEL_TABLE_FLAGS,
                    &mut frames::TableFrames,
                )
                .expect("identity map of low memory")
                .ignore();
        }
    }
    let ram_end = ram_end.min(frames::MANAGED_BYTES).next_multiple_of(TWO_MIB);
    for address in (low_end..ram_end).step_by(TWO_MIB as usize) {
        let page = Page::<Size2MiB>::containing_address(VirtAddr::new(address));
        let frame = PhysFrame::<Size2MiB>::containing_address(PhysAddr::new(address));
        let flags = Flags::PRESENT | Flags::WRITABLE | Flags::NO_EXECUTE;
        // SAFETY: as above, an identity mapping in inactive tables.
        unsafe {
            mapper
                .map_to_with_table_flags(
                    page,
                    frame,
                    flags,
                    KERNEL_TABLE_FLAGS,
                    &mut frames::TableFrames,
                )
                .expect("identity map of RAM")
                .ignore();
        }
    }
    for offset in (0..heap::HEAP_SIZE_BYTES).step_by(PAGE_BYTES as usize) {
        let page = Page::<Size4KiB>::containing_address(VirtAddr::new(heap::HEAP_START + offset));
        let frame = frames::allocate().expect("frames for the kernel heap");
        let flags = Flags::PRESENT | Flags::WRITABLE | Flags::NO_EXECUTE;
        // SAFETY: a fresh frame mapped once, in the heap range nothing else uses.
        unsafe {
            mapper
                .map_to_with_table_flags(
                    page,
                    frame,
                    flags,
                    KERNEL_TABLE_FLAGS,
                    &mut frames::TableFrames,
                )
                .expect("heap mapping")
                .ignore();
        }
    }

    // SAFETY: the new tables map the kernel image, its stacks and all RAM at the addresses
    // the boot tables used, so execution continues unchanged.
    unsafe { Cr3::write(pml4, Cr3Flags::empty()) };
    // SAFETY: write-protect makes ring 0 honour read-only pages; the kernel never writes its
    // text or read-only data, so only bugs are affected.
    unsafe { Cr0::update(|flags| flags.insert(Cr0Flags::WRITE_PROTECT)) };
    KERNEL_PML4.call_once(|| pml4);
}

/// Switches back to the kernel's own address space (no user mappings).
pub fn activate_kernel() {
    let pml4 = *KERNEL_PML4.get().expect("paging::init ran");
    // SAFETY: the kernel tables map everything the kernel uses, identically to every
    // environment's kernel half.
    unsafe { Cr3::write(pml4, Cr3Flags::empty()) };
}

/// Zeroes a frame the caller owns.
pub fn zero_frame(frame: u64) {
    // SAFETY: the frame is identity-mapped and owned by the caller (freshly allocated), so no
    // one else reads or writes it meanwhile.
    unsafe { core::ptr::write_bytes(frame as *mut u8, 0, PAGE_BYTES as usize) };
}

/// Maps device memory `[physical, physical + length_bytes)` at the same address in the kernel's
/// identity region (slot 0, shared by every address space), uncached, writable, no-execute.
/// Pages already mapped (RAM) are refused: device memory lies above RAM.
pub fn map_device_memory(physical: u64, length_bytes: u64) {
    let pml4 = *KERNEL_PML4.get().expect("paging::init ran");
    // SAFETY: the kernel PML4 changes only here and in init, on one CPU with the caller
    // holding no reference into it; identity offset 0.
    let mut mapper = unsafe { OffsetPageTable::new(table_mut(pml4), VirtAddr::zero()) };
    let start = physical & !(PAGE_BYTES - 1);
    for address in (start..physical + length_bytes).step_by(PAGE_BYTES as usize) {
        let page = Page::<Size4KiB>::containing_address(VirtAddr::new(address));
        let frame = PhysFrame::containing_address(PhysAddr::new(address));
        let flags = Flags::PRESENT | Flags::WRITABLE | Flags::NO_EXECUTE | Flags::NO_CACHE;
        // SAFETY: an identity mapping of device memory (not RAM, so no frame the allocator
        // hands out), so no existing address changes meaning.
        match unsafe {
            mapper.map_to_with_table_flags(
                page,
                frame,
                flags,
                KERNEL_TABLE_FLAGS,
                &mut frames::TableFrames,
            )
        } {
            Ok(flush) => flush.flush(),
            Err(MapToError::PageAlreadyMapped(_)) => {}
            Err(error) => panic!("mapping device memory at {address:#x}: {error:?}"),
        }
    }
}

/// Physical address behind kernel-heap address `address` (4 KiB pages), for handing heap
/// buffers to devices; `None` outside the heap.
pub fn kernel_heap_physical_address(address: u64) -> Option<u64> {
    if !(heap::HEAP_START..heap::HEAP_START + heap::HEAP_SIZE_BYTES).contains(&address) {
        return None;
    }
    let pml4 = *KERNEL_PML4.get().expect("paging::init ran");
    // SAFETY: the heap's tables were built in init and never change; only read here.
    unsafe { translate(pml4, address, Flags::PRESENT) }
}

/// Physical address behind `address` in the tables rooted at `pml4`, walking 4 KiB pages: `None`
/// unless every level's entry has all of `required` and none maps a huge page.
///
/// # Safety
/// `pml4` and every table below it must be page tables nothing modifies during the walk.
pub(super) unsafe fn translate(pml4: PhysFrame, address: u64, required: Flags) -> Option<u64> {
    let virt = VirtAddr::new(address);
    let mut frame = pml4;
    for index in [
        virt.p4_index(),
        virt.p3_index(),
        virt.p2_index(),
        virt.p1_index(),
    ] {
        // SAFETY: one of the caller's unchanging tables.
        let entry = &unsafe { table_ref(frame) }[index];
        if !entry.flags().contains(required) || entry.flags().contains(Flags::HUGE_PAGE) {
            return None;
        }
        frame = PhysFrame::containing_address(entry.addr());
    }
    Some(frame.start_address().as_u64() + (address % PAGE_BYTES))
}
