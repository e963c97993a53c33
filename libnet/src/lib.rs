//! The library operating system each exo application links: entry, system calls, upcalls, heap,
//! and its own TCP/IP stack over the packet rings the kernel exports.
#![no_std]
