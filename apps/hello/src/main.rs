//! The first app: proves the build -> pack -> load -> ring 3 -> syscall path, and that the
//! kernel refuses bad system-call arguments instead of trusting them.
#![cfg_attr(target_os = "none", no_std, no_main)]
#![forbid(unsafe_code)]

#[cfg(target_os = "none")]
libnet::entry!(main);

#[cfg(target_os = "none")]
fn main() -> u8 {
    use libnet::{Error, println, sys};

    println!("hello from ring 3");
    // A kernel address and an unmapped user address are allegations the kernel must refuse.
    let kernel = sys::console_write_at(0x10_0000, 16);
    // The lowest user address: nothing is mapped there (apps start 2 MiB above it).
    let unmapped = sys::console_write_at(libnet::abi::layout::USER_BASE, 16);
    let unknown = sys::raw_call(0x7fff);
    println!("bad pointers: kernel {kernel:?}, unmapped {unmapped:?}; unknown call: {unknown:?}");
    let refused = kernel == Err(Error::BadAddress)
        && unmapped == Err(Error::BadAddress)
        && unknown == Err(Error::UnknownSyscall);
    if refused { 0 } else { 1 }
}

#[cfg(not(target_os = "none"))]
fn main() {}
