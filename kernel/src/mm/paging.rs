//! Page tables under the kernel's control: the kernel's own map (replacing the boot
//! trampoline's), and one address space per environment.
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
use core::sync::atomic::{AtomicU64, Ordering};
use exo_abi::{Error, layout};
use exo_kernel::elf::Access;
use spin::Once;
use x86_64::{
    PhysAddr, VirtAddr,
    registers::control::{Cr0, Cr0Flags, Cr3, Cr3Flags},
    structures::paging::{
        FrameAllocator, Mapper, OffsetPageTable, Page, PageTable, PageTableFlags as Flags,
        PhysFrame, Size2MiB, Size4KiB, mapper::MapToError,
    },
};

unsafe extern "C" {
    // Defined by kernel.ld; only their addresses are meaningful.
    static __kernel_start: u8;
    static __text_end: u8;
    static __rodata_end: u8;
    static __kernel_end: u8;
}

const PAGE_BYTES: u64 = 4096;
const TWO_MIB: u64 = 2 << 20;
const KERNEL_TABLE_FLAGS: Flags = Flags::PRESENT.union(Flags::WRITABLE);
const USER_TABLE_FLAGS: Flags = KERNEL_TABLE_FLAGS.union(Flags::USER_ACCESSIBLE);

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

static KERNEL_PML4: Once<PhysFrame> = Once::new();

/// The page table in `frame`, through the identity map.
///
/// # Safety
/// `frame` must hold a page table, and no other reference to it may be live while the result
/// is (the kernel is single-threaded during these operations).
unsafe fn table_mut<'a>(frame: PhysFrame) -> &'a mut PageTable {
    // SAFETY: RAM is identity-mapped (boot tables, then ours); exclusivity is the caller's.
    unsafe { &mut *(frame.start_address().as_u64() as *mut PageTable) }
}

/// The page table in `frame`, through the identity map, for reading.
///
/// # Safety
/// `frame` must hold a page table that nothing modifies while the result is live.
unsafe fn table_ref<'a>(frame: PhysFrame) -> &'a PageTable {
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

/// Why a user page could not be mapped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MapError {
    /// No frame for the page or its tables.
    OutOfMemory,
    /// Its page tables would take more frames than its quota allows.
    TableQuota,
    /// Not a page-aligned address in the user half.
    NotUserPage,
    /// The page is mapped already.
    AlreadyMapped,
}

/// An environment's address space: its own PML4 with the kernel half shared.
#[derive(Debug)]
pub struct AddressSpace {
    pml4: PhysFrame,
    /// Frames taken for its user-half page tables (kept until the space is dropped).
    table_frames: u64,
    /// Most it may take: its quota of page-table frames.
    table_limit: u64,
}

/// Takes frames for one space's new page tables, within its budget.
struct BudgetedTableFrames<'a> {
    taken: &'a mut u64,
    limit: u64,
}

// SAFETY: every frame returned comes from the frame allocator, which hands each frame out
// once, so the mapper gets frames nobody else uses.
unsafe impl x86_64::structures::paging::FrameAllocator<Size4KiB> for BudgetedTableFrames<'_> {
    fn allocate_frame(&mut self) -> Option<PhysFrame> {
        if *self.taken >= self.limit {
            return None;
        }
        let frame = frames::allocate()?;
        *self.taken += 1;
        Some(frame)
    }
}

impl AddressSpace {
    /// An address space with no user mappings, or `None` when out of memory.
    pub fn new() -> Option<AddressSpace> {
        let kernel = *KERNEL_PML4.get().expect("paging::init ran");
        let pml4 = frames::allocate()?;
        // SAFETY: `pml4` is fresh; the kernel PML4 is only read, and only changes in init.
        let (table, kernel) = unsafe { (table_mut(pml4), table_ref(kernel)) };
        table.zero();
        table[0] = kernel[0].clone();
        for index in 256..512 {
            table[index] = kernel[index].clone();
        }
        Some(AddressSpace {
            pml4,
            table_frames: 0,
            table_limit: u64::MAX,
        })
    }

    /// Frames its user-half page tables hold.
    pub fn table_frames(&self) -> u64 {
        self.table_frames
    }

    /// Limits the frames its page tables may take from now on; a mapping that would need
    /// more fails with `MapError::TableQuota`.
    pub fn set_table_limit(&mut self, limit: u64) {
        self.table_limit = limit;
    }

    /// Why a table frame could not be had: the quota, or no frame at all.
    fn table_refusal(&self) -> MapError {
        if self.table_frames >= self.table_limit {
            MapError::TableQuota
        } else {
            MapError::OutOfMemory
        }
    }

    /// Maps a fresh zeroed frame at user page `address` with `access`.
    pub fn map_user_page(&mut self, address: u64, access: Access) -> Result<(), MapError> {
        if !address.is_multiple_of(PAGE_BYTES) || !layout::range_is_user(address, PAGE_BYTES) {
            return Err(MapError::NotUserPage);
        }
        let frame = frames::allocate().ok_or(MapError::OutOfMemory)?;
        // SAFETY: the frame is fresh (no other owner) and identity-mapped.
        unsafe {
            core::ptr::write_bytes(
                frame.start_address().as_u64() as *mut u8,
                0,
                PAGE_BYTES as usize,
            );
        }
        let mut flags = Flags::PRESENT | Flags::USER_ACCESSIBLE;
        if access.write {
            flags |= Flags::WRITABLE;
        }
        if !access.execute {
            flags |= Flags::NO_EXECUTE;
        }
        let page = Page::<Size4KiB>::containing_address(VirtAddr::new(address));
        // SAFETY: this space owns its tables exclusively (`&mut self`); identity offset 0.
        let mut mapper = unsafe { OffsetPageTable::new(table_mut(self.pml4), VirtAddr::zero()) };
        // SAFETY: a fresh frame mapped once, at a user-half page where no kernel data lives;
        // the user-half tables it creates are this space's own.
        let result = unsafe {
            mapper.map_to_with_table_flags(
                page,
                frame,
                flags,
                USER_TABLE_FLAGS,
                &mut BudgetedTableFrames {
                    taken: &mut self.table_frames,
                    limit: self.table_limit,
                },
            )
        };
        match result {
            Ok(flush) => {
                flush.flush();
                Ok(())
            }
            Err(error) => {
                frames::free(frame);
                Err(match error {
                    MapToError::FrameAllocationFailed => self.table_refusal(),
                    MapToError::PageAlreadyMapped(_) => MapError::AlreadyMapped,
                    MapToError::ParentEntryHugePage => MapError::NotUserPage,
                })
            }
        }
    }

    /// Maps the frame at physical `frame` (owned by a page capability, not by this space) at
    /// user page `address` with `access`; no access at all maps it supervisor-only, so every
    /// user touch faults. The entry is marked borrowed: dropping the space leaves the frame.
    pub fn map_borrowed(
        &mut self,
        address: u64,
        frame: u64,
        access: Access,
    ) -> Result<(), MapError> {
        if !address.is_multiple_of(PAGE_BYTES) || !layout::range_is_user(address, PAGE_BYTES) {
            return Err(MapError::NotUserPage);
        }
        let page = Page::<Size4KiB>::containing_address(VirtAddr::new(address));
        let frame = PhysFrame::containing_address(PhysAddr::new(frame));
        // SAFETY: this space owns its tables exclusively (`&mut self`); identity offset 0.
        let mut mapper = unsafe { OffsetPageTable::new(table_mut(self.pml4), VirtAddr::zero()) };
        // SAFETY: a user-half page of this space; the frame belongs to a page capability the
        // caller checked, never to the kernel (the frame allocator handed it out for user use).
        let result = unsafe {
            mapper.map_to_with_table_flags(
                page,
                frame,
                borrowed_flags(access),
                USER_TABLE_FLAGS,
                &mut BudgetedTableFrames {
                    taken: &mut self.table_frames,
                    limit: self.table_limit,
                },
            )
        };
        match result {
            Ok(flush) => {
                flush.flush();
                Ok(())
            }
            Err(MapToError::FrameAllocationFailed) => Err(self.table_refusal()),
            Err(MapToError::PageAlreadyMapped(_)) => Err(MapError::AlreadyMapped),
            Err(MapToError::ParentEntryHugePage) => Err(MapError::NotUserPage),
        }
    }

    /// Removes a borrowed mapping made by [`Self::map_borrowed`]; the frame is not freed.
    pub fn unmap_borrowed(&mut self, address: u64) {
        let page = Page::<Size4KiB>::containing_address(VirtAddr::new(address));
        // SAFETY: as in map_borrowed.
        let mut mapper = unsafe { OffsetPageTable::new(table_mut(self.pml4), VirtAddr::zero()) };
        if let Ok((_, flush)) = mapper.unmap(page) {
            flush.flush();
        }
    }

    /// Changes the access of a borrowed mapping.
    pub fn protect_borrowed(&mut self, address: u64, access: Access) {
        self.protect_borrowed_range(address, 1, access);
    }

    /// Changes the access of the borrowed mappings of `pages` consecutive pages from
    /// `address` (the caller checked each is one), then flushes the TLB once for all of them:
    /// `invlpg` per page up to [`INVLPG_MAX_PAGES`], beyond that one CR3 reload (which drops
    /// every non-global entry, and user entries are never global). Nothing to flush when this
    /// space is not the one loaded: without PCIDs, loading it later starts from an empty TLB.
    pub fn protect_borrowed_range(&mut self, address: u64, pages: u64, access: Access) {
        let flags = borrowed_flags(access);
        // The last-level table of the current 2 MiB span: one walk per span, not per page.
        let mut span: Option<(u64, PhysFrame)> = None;
        for index in 0..pages {
            let virt = VirtAddr::new(address + index * PAGE_BYTES);
            let base = virt.as_u64() & !(TWO_MIB - 1);
            let table = match span {
                Some((span_base, table)) if span_base == base => table,
                _ => match self.leaf_table(virt) {
                    Some(table) => {
                        span = Some((base, table));
                        table
                    }
                    None => continue,
                },
            };
            // SAFETY: `table` is a last-level table of this space (`leaf_table`), changed
            // under `&mut self`; only the flags of a mapped entry change, its frame stays.
            let entry = &mut unsafe { table_mut(table) }[virt.p1_index()];
            if !entry.is_unused() {
                let frame = entry.addr();
                entry.set_addr(frame, flags);
            }
        }
        let (loaded, cr3_flags) = Cr3::read();
        if loaded != self.pml4 {
            return;
        }
        if pages <= INVLPG_MAX_PAGES {
            for index in 0..pages {
                x86_64::instructions::tlb::flush(VirtAddr::new(address + index * PAGE_BYTES));
            }
        } else {
            // SAFETY: reloads the table already loaded: only the TLB changes.
            unsafe { Cr3::write(loaded, cr3_flags) };
        }
    }

    /// The last-level table mapping user address `virt`, if the walk down to it finds
    /// present, user, 4 KiB-granular tables.
    fn leaf_table(&self, virt: VirtAddr) -> Option<PhysFrame> {
        let mut frame = self.pml4;
        for index in [virt.p4_index(), virt.p3_index(), virt.p2_index()] {
            // SAFETY: `frame` is one of this space's tables, read while `&self` is held.
            let entry = &unsafe { table_ref(frame) }[index];
            let flags = entry.flags();
            if !flags.contains(Flags::PRESENT | Flags::USER_ACCESSIBLE)
                || flags.contains(Flags::HUGE_PAGE)
            {
                return None;
            }
            frame = PhysFrame::containing_address(entry.addr());
        }
        Some(frame)
    }

    /// Physical address behind user address `address`, if it is mapped user-accessible.
    pub fn user_physical_address(&self, address: u64) -> Option<u64> {
        if !layout::range_is_user(address, 1) {
            return None;
        }
        let virt = VirtAddr::new(address);
        let mut frame = self.pml4;
        for index in [
            virt.p4_index(),
            virt.p3_index(),
            virt.p2_index(),
            virt.p1_index(),
        ] {
            // SAFETY: `frame` is one of this space's tables, read while `&self` is held.
            let entry = &unsafe { table_ref(frame) }[index];
            let flags = entry.flags();
            if !flags.contains(Flags::PRESENT | Flags::USER_ACCESSIBLE)
                || flags.contains(Flags::HUGE_PAGE)
            {
                return None;
            }
            frame = PhysFrame::containing_address(entry.addr());
        }
        Some(frame.start_address().as_u64() + (address % PAGE_BYTES))
    }

    /// Copies `bytes` into this space's user pages at `address` (the kernel may write pages
    /// user code may only read: that is how images are loaded).
    pub fn write_user(&mut self, address: u64, bytes: &[u8]) -> Result<(), Error> {
        let mut done = 0;
        while done < bytes.len() {
            let target = address + done as u64;
            let physical = self
                .user_physical_address(target)
                .ok_or(Error::BadAddress)?;
            let chunk =
                (PAGE_BYTES - target % PAGE_BYTES).min((bytes.len() - done) as u64) as usize;
            // SAFETY: `physical..physical + chunk` lies in one user frame of this space (never
            // kernel memory), identity-mapped; the source is a kernel slice, so no overlap.
            unsafe {
                core::ptr::copy_nonoverlapping(bytes[done..].as_ptr(), physical as *mut u8, chunk);
            }
            done += chunk;
        }
        Ok(())
    }

    /// Copies user bytes at `address` into `buffer`.
    pub fn read_user(&self, address: u64, buffer: &mut [u8]) -> Result<(), Error> {
        let mut done = 0;
        while done < buffer.len() {
            let source = address + done as u64;
            let physical = self
                .user_physical_address(source)
                .ok_or(Error::BadAddress)?;
            let chunk =
                (PAGE_BYTES - source % PAGE_BYTES).min((buffer.len() - done) as u64) as usize;
            // SAFETY: the source lies in one user frame of this space, identity-mapped; the
            // environment is not running while the kernel copies (one CPU), so nothing writes
            // it concurrently; the destination is a kernel buffer.
            unsafe {
                core::ptr::copy_nonoverlapping(
                    physical as *const u8,
                    buffer[done..].as_mut_ptr(),
                    chunk,
                );
            }
            done += chunk;
        }
        Ok(())
    }

    /// Makes this the active address space.
    pub fn activate(&self) {
        // SAFETY: the kernel half (and slot 0) are copies of the kernel's entries, so the
        // kernel's code, stacks and data stay mapped at the same addresses.
        unsafe { Cr3::write(self.pml4, Cr3Flags::empty()) };
    }
}

/// Most pages [`AddressSpace::protect_borrowed_range`] flushes one by one before it reloads
/// CR3 instead (Linux's `tlb_single_page_flush_ceiling` is 33 for the same trade: a full flush
/// costs the refills of everything else the environment had cached).
const INVLPG_MAX_PAGES: u64 = 32;

/// Marks a leaf whose frame belongs to a page capability rather than to the address space.
const BORROWED: Flags = Flags::BIT_9;

fn borrowed_flags(access: Access) -> Flags {
    let mut flags = Flags::PRESENT | BORROWED;
    if access.read || access.write || access.execute {
        flags |= Flags::USER_ACCESSIBLE;
    }
    if access.write {
        flags |= Flags::WRITABLE;
    }
    if !access.execute {
        flags |= Flags::NO_EXECUTE;
    }
    flags
}

/// Zeroes a frame the caller owns.
pub fn zero_frame(frame: u64) {
    // SAFETY: the frame is identity-mapped and owned by the caller (freshly allocated), so no
    // one else reads or writes it meanwhile.
    unsafe { core::ptr::write_bytes(frame as *mut u8, 0, PAGE_BYTES as usize) };
}

/// Frees a user-half table at `level` (3 = PDPT, 2 = PD, 1 = PT), the tables below it and
/// the frames its leaves map.
fn free_user_table(frame: PhysFrame, level: u8) {
    // SAFETY: a table of an address space being dropped, reached only from its parent.
    let table = unsafe { table_ref(frame) };
    for entry in table
        .iter()
        .filter(|entry| entry.flags().contains(Flags::PRESENT))
    {
        let child = PhysFrame::containing_address(entry.addr());
        if level == 1 {
            // Borrowed frames belong to page capabilities, which free them.
            if !entry.flags().contains(BORROWED) {
                frames::free(child);
            }
        } else {
            free_user_table(child, level - 1);
        }
    }
    frames::free(frame);
}

impl Drop for AddressSpace {
    /// Returns every user frame and user-half table; the shared kernel half is left alone.
    fn drop(&mut self) {
        assert_ne!(
            Cr3::read().0,
            self.pml4,
            "dropping the active address space"
        );
        // SAFETY: the space is not active and is being dropped, so nothing else uses it.
        let pml4 = unsafe { table_ref(self.pml4) };
        for entry in pml4.iter().take(256).skip(1) {
            if entry.flags().contains(Flags::PRESENT) {
                free_user_table(PhysFrame::containing_address(entry.addr()), 3);
            }
        }
        frames::free(self.pml4);
    }
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
    let virt = VirtAddr::new(address);
    let mut frame = *KERNEL_PML4.get().expect("paging::init ran");
    for index in [
        virt.p4_index(),
        virt.p3_index(),
        virt.p2_index(),
        virt.p1_index(),
    ] {
        // SAFETY: the heap's tables were built in init and never change; only read here.
        let entry = &unsafe { table_ref(frame) }[index];
        if !entry.flags().contains(Flags::PRESENT) || entry.flags().contains(Flags::HUGE_PAGE) {
            return None;
        }
        frame = PhysFrame::containing_address(entry.addr());
    }
    Some(frame.start_address().as_u64() + (address % PAGE_BYTES))
}

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
