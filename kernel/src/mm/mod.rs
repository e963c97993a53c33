//! Memory management: physical frames, the kernel's own page tables, user address spaces and
//! the kernel heap.
//!
//! Page-table writes and copies into user frames are the `unsafe` here (in `paging`); frame
//! bookkeeping is the host-tested `exo_kernel::frame_bitmap`.

pub mod frames;
pub mod heap;
pub mod paging;
