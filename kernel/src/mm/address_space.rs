//! Environments' address spaces: each its own PML4 sharing the kernel's half, its user
//! pages (owned, or borrowed from page capabilities), their access, and copies to and from
//! them through the identity map.
use super::frames;
use super::paging::{
    KERNEL_PML4, PAGE_BYTES, TWO_MIB, USER_TABLE_FLAGS, table_mut, table_ref, translate,
};
use exo_abi::{Error, layout};
use exo_kernel::elf::Access;
use x86_64::{
    PhysAddr, VirtAddr,
    registers::control::{Cr3, Cr3Flags},
    structures::paging::{
        Mapper, OffsetPageTable, Page, PageTableFlags as Flags, PhysFrame, Size4KiB,
        mapper::MapToError,
    },
};

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
        // SAFETY: a fresh frame mapped once, so it holds no kernel data and has no other owner.
        let result = unsafe { self.map_frame(page, frame, flags) };
        if result.is_err() {
            frames::free(frame);
        }
        result
    }

    /// Maps `frame` at user page `page` with `flags`, creating missing tables within this
    /// space's table-frame budget; the error says whether the budget or the machine ran out.
    ///
    /// # Safety
    /// `frame` must never hold kernel data: a fresh frame, or one a page capability owns.
    unsafe fn map_frame(
        &mut self,
        page: Page<Size4KiB>,
        frame: PhysFrame<Size4KiB>,
        flags: Flags,
    ) -> Result<(), MapError> {
        // SAFETY: this space owns its tables exclusively (`&mut self`); identity offset 0.
        let mut mapper = unsafe { OffsetPageTable::new(table_mut(self.pml4), VirtAddr::zero()) };
        // SAFETY: a user-half page, where no kernel data lives, of this space's own tables; the
        // caller vouches that the frame is a user frame.
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
            Err(MapToError::FrameAllocationFailed) => Err(self.table_refusal()),
            Err(MapToError::PageAlreadyMapped(_)) => Err(MapError::AlreadyMapped),
            Err(MapToError::ParentEntryHugePage) => Err(MapError::NotUserPage),
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
        // SAFETY: the frame belongs to a page capability the caller checked, never to the
        // kernel (the frame allocator handed it out for user use).
        unsafe { self.map_frame(page, frame, borrowed_flags(access)) }
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
        // SAFETY: this space's own tables, read while `&self` is held.
        unsafe { translate(self.pml4, address, Flags::PRESENT | Flags::USER_ACCESSIBLE) }
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
