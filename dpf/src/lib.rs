//! Dynamic Packet Filter: untrusted filter descriptions are verified, merged into one trie and run
//! by an interpreter (the reference) or x86_64 code generated at bind time.
#![no_std]
extern crate alloc;

pub mod ir;

pub use ir::{
    Atom, CmpOp, Field, Filter, FilterId, Packet, Shift, Step, UnverifiedFilter, VerifyError, Width,
};
