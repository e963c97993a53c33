//! Statically allocated stacks that only the CPU touches (through RSP, TSS and IST entries).
use core::cell::UnsafeCell;
use x86_64::VirtAddr;

/// A stack of `N` bytes, 16-byte aligned as the ABI expects at a call.
#[repr(C, align(16))]
#[derive(Debug)]
pub struct Stack<const N: usize>(UnsafeCell<[u8; N]>);

// SAFETY: Rust code never forms a reference to the bytes; only the CPU reads and writes them,
// through RSP while running on the stack, so sharing the static between contexts is sound.
unsafe impl<const N: usize> Sync for Stack<N> {}

impl<const N: usize> Stack<N> {
    /// A zeroed stack (placed in .bss).
    pub const fn new() -> Stack<N> {
        Stack(UnsafeCell::new([0; N]))
    }

    /// The address one past the highest byte: the initial RSP.
    pub fn top(&'static self) -> VirtAddr {
        VirtAddr::from_ptr(self.0.get()) + N as u64
    }
}
