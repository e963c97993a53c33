//! The first app: proves the build -> pack -> load -> ring 3 -> syscall path.
#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(not(target_os = "none"))]
fn main() {}
