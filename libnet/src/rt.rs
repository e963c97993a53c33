//! The app runtime: `_start` and the panic handler (bare-metal builds only).
#![allow(unsafe_code)]

unsafe extern "Rust" {
    /// Defined by the app through `libnet::entry!`.
    fn __exo_app_main() -> u8;
}

/// The first user instruction. The kernel starts us with RSP 16-byte aligned and nothing on
/// the stack, `rdi` = capability to the parent, `rsi` = to ourselves, `rdx` = the argument;
/// `call` makes the alignment the ABI expects at a function's entry.
#[unsafe(naked)]
#[unsafe(no_mangle)]
#[unsafe(link_section = ".text._start")]
extern "C" fn _start() -> ! {
    core::arch::naked_asm!("xor ebp, ebp", "call {start}", "ud2", start = sym start)
}

extern "C" fn start(parent: u64, own: u64, argument: u64) -> ! {
    crate::env::init(parent, own, argument);
    // SAFETY: `entry!` defines `__exo_app_main` with exactly this signature; an app that
    // does not use it fails to link rather than reaching here.
    let status = unsafe { __exo_app_main() };
    crate::sys::exit(status)
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    crate::println!("app panicked: {info}");
    crate::sys::exit(crate::PANIC_EXIT_STATUS)
}
