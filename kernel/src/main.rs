//! exo: an exokernel that protects and multiplexes the hardware and leaves its management to
//! library operating systems in user space.
#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(not(target_os = "none"))]
fn main() {}
