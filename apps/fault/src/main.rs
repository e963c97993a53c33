//! Test scenario: reads an address it never mapped. The kernel must report the page fault
//! (address and rip) and end the app with the "app faulted" status instead of crashing.
#![cfg_attr(target_os = "none", no_std, no_main)]
#![deny(unsafe_code)]

#[cfg(target_os = "none")]
libnet::entry!(main);

/// In the user half, far from the image and the stack: never mapped.
#[cfg(target_os = "none")]
const UNMAPPED: u64 = 0x0000_5555_dead_0000;

#[cfg(target_os = "none")]
#[allow(unsafe_code)]
fn main() -> u8 {
    libnet::println!("fault: reading unmapped address {UNMAPPED:#x}");
    // SAFETY: none, deliberately: this read must fault, and the kernel must end the app.
    let value = unsafe { core::ptr::read_volatile(UNMAPPED as *const u64) };
    libnet::println!("fault: read {value:#x}, the kernel did not stop us");
    1
}

#[cfg(not(target_os = "none"))]
fn main() {}
