//! The pure core of the exo kernel: the policy and bookkeeping that need no hardware, kept here
//! so every line of it runs under `cargo test` on the host.
//!
//! Principles the kernel is built on:
//! - Protect, do not manage. The kernel multiplexes frames, the CPU and the NIC and checks
//!   every binding; what to do with a resource is the library OS's business.
//! - An argument from user space is an allegation until checked: pointers are checked against
//!   the environment's mappings ([`user_mappings`]), images against the user half ([`elf`]).
//! - `unsafe` lives only in the binary's named hardware modules: `arch` (the CPU), `mm`
//!   (page tables, the heap) and three under `net` (`device`, the virtio-net driver's DMA;
//!   `physical`, ring slots through the identity map; `jit`, running generated code); each
//!   block argues its SAFETY. The binary denies `unsafe_code` at its root and allows it only
//!   on those modules (`main.rs`, `net/mod.rs`); everything else, this library included,
//!   cannot use it.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod arp_questions;
pub mod ash_events;
pub mod cap;
pub mod cmdline;
pub mod code_space;
pub mod elf;
pub mod ended;
pub mod env_ids;
pub mod frame_bitmap;
pub mod page_bindings;
pub mod pvh;
pub mod quota;
pub mod slices;
pub mod stack_budget;
pub mod tx_buffers;
pub mod tx_check;
pub mod user_mappings;
