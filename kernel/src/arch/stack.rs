//! Statically allocated stacks that only the CPU touches (through RSP, TSS and IST entries).
use core::cell::UnsafeCell;
use x86_64::VirtAddr;

/// A stack of `N` bytes, 16-byte aligned as the ABI expects at a call, above a guard page
/// the kernel's page tables leave unmapped ([`Stack::guard_page`]): running off its bottom
/// faults (and, with nowhere to push the fault's frame, double-faults onto its own stack)
/// instead of overwriting whatever lies below.
#[repr(C, align(4096))]
#[derive(Debug)]
pub struct Stack<const N: usize> {
    guard: UnsafeCell<[u8; GUARD_BYTES]>,
    bytes: UnsafeCell<[u8; N]>,
}

/// One page.
const GUARD_BYTES: usize = 4096;

// SAFETY: Rust code never forms a reference to the bytes; only the CPU reads and writes them,
// through RSP while running on the stack, so sharing the static between contexts is sound.
unsafe impl<const N: usize> Sync for Stack<N> {}

impl<const N: usize> Stack<N> {
    /// A zeroed stack (placed in .bss).
    pub const fn new() -> Stack<N> {
        Stack {
            guard: UnsafeCell::new([0; GUARD_BYTES]),
            bytes: UnsafeCell::new([0; N]),
        }
    }

    /// The address one past the highest byte: the initial RSP.
    pub fn top(&'static self) -> VirtAddr {
        VirtAddr::from_ptr(self.bytes.get()) + N as u64
    }

    /// The page below the stack, which must stay unmapped.
    pub fn guard_page(&'static self) -> u64 {
        self.guard.get() as u64
    }
}
