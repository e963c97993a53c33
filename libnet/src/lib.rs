//! The library operating system each exo application links: entry, system calls, upcalls, heap,
//! and its own TCP/IP stack over the packet rings the kernel exports.
//!
//! Today: the entry point (`_start` calls the app's `main` registered with [`entry!`] and
//! exits with its status; [`env`] keeps what the kernel passed at start), safe system-call
//! wrappers ([`sys`]), console output ([`print!`], [`println!`]), a panic handler that
//! reports and exits, user-level upcall handling (`upcall`: exception dispatch, probes,
//! slice-end and revocation policy, the kernel-free resume), PCT serving (`pct`), the heap
//! behind `alloc` ([`heap`]: a `#[global_allocator]` on pages the library maps itself), and
//! shared-page communication ([`ipc`]: shared pages, pipes over [`ring`]), the app's own
//! TCP/IP stack ([`stack`]: smoltcp over the packet ring, sockets used like std's), and the
//! stock ASH handlers an app binds in the kernel ([`handlers`]), and the per-layer time
//! sums a benchmark reads ([`profile`]).
#![no_std]
#![deny(unsafe_code)]

extern crate alloc;

pub mod console;
pub mod env;
pub mod handlers;
pub mod heap;
#[cfg(target_os = "none")]
pub mod ipc;
pub mod net;
#[cfg(target_os = "none")]
pub mod pct;
pub mod profile;
pub mod ring;
#[cfg(target_os = "none")]
mod rt;
pub mod stack;
pub mod sys;
#[cfg(target_os = "none")]
pub mod upcall;

pub use exo_abi as abi;
pub use exo_abi::Error;

/// Status an app exits with when it panics.
pub const PANIC_EXIT_STATUS: u8 = 60;

/// Registers `main` (a `fn() -> u8` returning the exit status) as the app's entry point.
///
/// ```ignore
/// libnet::entry!(main);
/// fn main() -> u8 { libnet::println!("hi"); 0 }
/// ```
#[macro_export]
macro_rules! entry {
    ($main:path) => {
        #[unsafe(export_name = "__exo_app_main")]
        fn __exo_app_main() -> u8 {
            let main: fn() -> u8 = $main;
            main()
        }
    };
}
