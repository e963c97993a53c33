//! Protected control transfer at user level: serve calls at an entry, on a stack of the
//! library's own.
#![allow(unsafe_code)]
use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicUsize, Ordering};
use exo_abi::upcall::UpcallKind;

/// A PCT handler: the caller's environment id and five arguments in, five results out.
pub type Handler = fn(caller: u64, arguments: [u64; 5]) -> [u64; 5];

const STACK_BYTES: usize = 64 * 1024;

#[repr(C, align(16))]
struct Stack(UnsafeCell<[u8; STACK_BYTES]>);

// SAFETY: only the CPU uses the bytes (as the stack of PCT activations, one at a time: the
// kernel never enters an environment that is already serving a call).
unsafe impl Sync for Stack {}

static STACK: Stack = Stack(UnsafeCell::new([0; STACK_BYTES]));
static HANDLER: AtomicUsize = AtomicUsize::new(0);

/// Registers `handler` as this environment's PCT entry, then waits for calls forever: each
/// call runs `handler` and returns its results to the caller.
pub fn serve(handler: Handler) -> ! {
    HANDLER.store(handler as usize, Ordering::Relaxed);
    let stack_top = STACK.0.get() as u64 + STACK_BYTES as u64;
    crate::sys::set_upcall(UpcallKind::Pct, pct_entry as *const () as u64, stack_top)
        .expect("set_upcall(Pct)");
    let error = crate::sys::pct_wait();
    panic!("pct_wait: {error:?}");
}

/// Entered by the kernel: `rdi` caller, `rsi`, `rdx`, `r10`, `r8`, `r9` arguments, `rsp` the
/// aligned stack top. The System V order wants the third argument in `rcx`.
#[unsafe(naked)]
extern "C" fn pct_entry() {
    core::arch::naked_asm!("mov rcx, r10", "call {dispatch}", "ud2", dispatch = sym pct_dispatch)
}

extern "C" fn pct_dispatch(caller: u64, a0: u64, a1: u64, a2: u64, a3: u64, a4: u64) -> ! {
    let handler = HANDLER.load(Ordering::Relaxed);
    // SAFETY: only `serve` stores here, always a `Handler`, before registering the entry.
    let handler: Handler = unsafe { core::mem::transmute(handler) };
    let results = handler(caller, [a0, a1, a2, a3, a4]);
    let error = crate::sys::pct_return(results);
    panic!("pct_return: {error:?}");
}
