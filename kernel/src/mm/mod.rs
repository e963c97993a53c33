//! Memory management: physical frames, the kernel's own page tables, user address spaces and
//! the kernel heap.
//!
//! Page-table writes and copies into user frames are the `unsafe` here (in `paging`, the
//! kernel's own map; `address_space`, environments'; `code_region`, generated code); frame
//! bookkeeping is the host-tested `exo_kernel::frame_bitmap`.

pub mod address_space;
pub mod code_region;
pub mod frames;
pub mod heap;
pub mod paging;
