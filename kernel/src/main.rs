//! exo: an exokernel that protects and multiplexes the hardware and leaves its management to
//! library operating systems in user space.
//!
//! This binary is the thin, hardware-facing layer: boot, descriptor tables, traps, paging and
//! the system-call entry. Policy and bookkeeping live in the `exo_kernel` library next to it,
//! which is tested on the host. On the host this binary is an empty stub, so
//! `cargo clippy --workspace` works without a cross target.
#![cfg_attr(target_os = "none", no_std, no_main)]
// Where `unsafe` may live (see the `exo_kernel` library's doc): allowed module by module below.
#![deny(unsafe_code)]

#[cfg(target_os = "none")]
extern crate alloc;

#[cfg(target_os = "none")]
#[macro_use]
mod log;

#[cfg(target_os = "none")]
#[allow(unsafe_code)]
mod arch;
#[cfg(target_os = "none")]
mod boot;
#[cfg(target_os = "none")]
mod env;
#[cfg(target_os = "none")]
#[allow(unsafe_code)]
mod mm;
#[cfg(target_os = "none")]
mod net;
#[cfg(target_os = "none")]
mod protection_test;
#[cfg(target_os = "none")]
mod sched;
#[cfg(target_os = "none")]
mod syscall;
#[cfg(target_os = "none")]
mod usermem;

#[cfg(not(target_os = "none"))]
fn main() {}

/// The apps xtask packed for this boot (see `exo_abi::pack`).
#[cfg(target_os = "none")]
static BOOT_PACK: &[u8] = include_bytes!(env!("EXO_PACK_PATH"));

#[cfg(target_os = "none")]
#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    arch::interrupts_disable();
    match info.location() {
        Some(location) => log::panic_write(format_args!(
            "[exo] kernel panic at {}:{}: {}\n",
            location.file(),
            location.line(),
            info.message()
        )),
        None => log::panic_write(format_args!("[exo] kernel panic: {}\n", info.message())),
    }
    arch::exit_qemu(exo_abi::KernelExit::KernelPanic)
}
