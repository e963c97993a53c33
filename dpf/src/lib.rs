//! Dynamic Packet Filter: untrusted filter descriptions are verified, merged into one trie and run
//! by an interpreter (the reference) or x86_64 code generated at bind time.
#![no_std]
extern crate alloc;
#[cfg(feature = "std")]
extern crate std;

pub mod claim;
pub mod frontend;
pub mod interp;
pub mod ir;
pub mod jit;
pub mod program;
pub mod trie;
pub mod vlan;
pub mod wire;

pub use ir::{
    Atom, CmpOp, Eval, Field, Filter, FilterId, Packet, Shift, Step, UnverifiedFilter, VerifyError,
    Width,
};
