//! The user half of every address space: where apps are linked and where their stack sits.
//!
//! The kernel keeps the first 512 GiB (PML4 slot 0: its identity map of physical memory) and
//! the upper half; user mappings live in PML4 slots 1..=255, so an address space can share the
//! kernel's top-level entries without ever sharing a user page table.

/// Size of the pages the kernel maps for user code.
pub const PAGE_SIZE_BYTES: u64 = 4096;

/// Lowest user virtual address (start of PML4 slot 1).
pub const USER_BASE: u64 = 0x0000_0080_0000_0000;

/// One past the highest user virtual address: the lower canonical half but its last page. That
/// page is never mappable, so no user instruction ends at the canonical boundary: a `syscall`
/// in its last two bytes would return to the non-canonical RCX 0x8000_0000_0000, where
/// `sysretq` faults in ring 0 on Intel CPUs, on the user's stack (CVE-2012-0217).
pub const USER_END: u64 = 0x0000_8000_0000_0000 - PAGE_SIZE_BYTES;

/// The lower canonical half ends here: a user `rip` at or above it cannot be returned to.
pub const CANONICAL_LOWER_END: u64 = 0x0000_8000_0000_0000;

/// Where apps are linked (`libnet` generates the linker script from this value) and where the
/// kernel expects their first loadable segment.
pub const APP_IMAGE_BASE: u64 = USER_BASE + 0x20_0000;

/// One past the top of the initial user stack; the stack grows down from here.
pub const USER_STACK_TOP: u64 = 0x0000_7fff_ffff_0000;

/// Size of the initial user stack the kernel maps.
pub const USER_STACK_SIZE_BYTES: u64 = 256 * 1024;

// The layout is ordered: image above the base, stack above the image, all below the end.
const _: () = assert!(USER_BASE < APP_IMAGE_BASE);
const _: () = assert!(APP_IMAGE_BASE < USER_STACK_TOP - USER_STACK_SIZE_BYTES);
const _: () = assert!(USER_STACK_TOP < USER_END);

/// Whether `[address, address + length_bytes)` lies entirely inside the user half. A zero-length
/// range is inside when its address is.
pub const fn range_is_user(address: u64, length_bytes: u64) -> bool {
    match address.checked_add(length_bytes) {
        Some(end) => address >= USER_BASE && end <= USER_END,
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_is_page_aligned() {
        for address in [USER_BASE, USER_END, APP_IMAGE_BASE, USER_STACK_TOP] {
            assert_eq!(address % PAGE_SIZE_BYTES, 0);
        }
    }

    #[test]
    fn user_ranges() {
        assert!(range_is_user(USER_BASE, 0));
        assert!(range_is_user(APP_IMAGE_BASE, 4096));
        assert!(range_is_user(USER_END - 1, 1));
        assert!(!range_is_user(USER_END - 1, 2));
        assert!(!range_is_user(USER_BASE - 1, 1));
        assert!(!range_is_user(0x1000, 16));
        assert!(!range_is_user(u64::MAX, 2));
        assert!(!range_is_user(0xffff_8000_0000_0000, 8));
        // The last page of the lower half is never user memory.
        assert!(!range_is_user(CANONICAL_LOWER_END - PAGE_SIZE_BYTES, 1));
        assert!(!range_is_user(CANONICAL_LOWER_END - 2, 2));
    }
}
