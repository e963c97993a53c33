//! Application-specific Safe Handlers: small programs verified at bind time and run in the kernel
//! when a packet matches, bounded in time and memory.
#![no_std]
#![forbid(unsafe_code)]
extern crate alloc;
