//! The kernel heap: a buddy allocator over pages `paging::init` maps at a fixed address in the
//! kernel half, from frames of the frame allocator.
//!
//! Buddy, not first-fit: an allocation costs O(log size) whatever the heap holds. The
//! first-fit linked list it replaced walked the free blocks before the one it took, so each
//! allocation on a packet path (a handler's reply, a transmit's gather) cost more the more the
//! kernel had allocated and freed. `bench net --parts udp --quick`, guest instructions from a
//! request's arrival to its reply by handler: 5,120 with no busy environment and 5,810 with 10
//! under the linked list; 3,899 and 4,068 under this allocator. Blocks are naturally aligned
//! to their power-of-two size, so a block of at most a page never straddles two (the NIC
//! driver's descriptor lists must be physically contiguous).
use buddy_system_allocator::LockedHeap;

/// First byte of the heap (PML4 slot 384, shared by every address space).
pub const HEAP_START: u64 = 0xffff_c000_0000_0000;
/// Heap size; mapped up front, so the kernel half's top-level entries never change later.
pub const HEAP_SIZE_BYTES: u64 = 16 << 20;

/// Orders of block size: the largest block is 2^(ORDER - 1) bytes, past the whole heap.
const ORDER: usize = 32;
const _: () = assert!(HEAP_SIZE_BYTES <= 1 << (ORDER - 1));

#[global_allocator]
static ALLOCATOR: LockedHeap<ORDER> = LockedHeap::empty();

/// Hands the mapped heap range to the allocator. Call once, after `paging::init`.
pub fn init() {
    // SAFETY: paging::init mapped [HEAP_START, HEAP_START + HEAP_SIZE_BYTES) writable, from
    // frames used for nothing else, and this is the only call, so the allocator owns it.
    unsafe {
        ALLOCATOR
            .lock()
            .init(HEAP_START as usize, HEAP_SIZE_BYTES as usize);
    }
}

/// Bytes allocated now, as asked for (`kernel_usage`).
pub fn used_bytes() -> u64 {
    ALLOCATOR.lock().stats_alloc_actual() as u64
}
