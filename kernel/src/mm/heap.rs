//! The kernel heap: a linked-list allocator over pages `paging::init` maps at a fixed address
//! in the kernel half, from frames of the frame allocator.
use linked_list_allocator::LockedHeap;

/// First byte of the heap (PML4 slot 384, shared by every address space).
pub const HEAP_START: u64 = 0xffff_c000_0000_0000;
/// Heap size; mapped up front, so the kernel half's top-level entries never change later.
pub const HEAP_SIZE_BYTES: u64 = 16 << 20;

#[global_allocator]
static ALLOCATOR: LockedHeap = LockedHeap::empty();

/// Hands the mapped heap range to the allocator. Call once, after `paging::init`.
pub fn init() {
    // SAFETY: paging::init mapped [HEAP_START, HEAP_START + HEAP_SIZE_BYTES) writable, from
    // frames used for nothing else, and this is the only call, so the allocator owns it.
    unsafe {
        ALLOCATOR
            .lock()
            .init(HEAP_START as *mut u8, HEAP_SIZE_BYTES as usize);
    }
}

/// Bytes allocated now (`kernel_usage`).
pub fn used_bytes() -> u64 {
    ALLOCATOR.lock().used() as u64
}
