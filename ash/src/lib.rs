//! Application-specific Safe Handlers: small programs verified at bind time and run in the kernel
//! when a packet matches, bounded in time and memory.
//!
//! A handler is a register-machine program ([`ir`]) that arrives as untrusted bytes ([`wire`]) or
//! is written with the [`builder`]. [`verify()`] proves it safe to run in ring 0 whether or not its
//! owner is scheduled: forward control flow or loops with static bounds, a worst-case cost within
//! the budget, every memory access inside the packet, the scratch area, the reply buffer or a
//! region of application memory it declared (with the rights it declared), no read of an unwritten
//! register, no division by zero. What cannot be proven statically is checked at run time by the
//! [`interp`]reter, which aborts the run. The actions (message vectoring with integrated copy and
//! checksum, replies with incremental checksum updates, atomic words in application memory,
//! wake-ups and upcalls, verdicts) are asked of an [`interp::Actions`] host, which the kernel
//! implements and tests fake. The stock handlers every system wants live in libnet
//! (`libnet::handlers`), built with this crate's builder.
#![no_std]
#![forbid(unsafe_code)]
extern crate alloc;

pub mod builder;
pub mod checksum;
pub mod interp;
pub mod ir;
pub mod jit;
pub mod verify;
pub mod wire;

pub use interp::{AbortReason, Actions, Machine, Outcome, Run, run};
pub use ir::{UnverifiedHandler, Verdict};
pub use verify::{At, Context, Handler, Rule, VerifyError, verify};
