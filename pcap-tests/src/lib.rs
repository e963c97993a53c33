//! Hosted tooling around dpf: reading traces, replaying them through both engines, comparing
//! verdicts with tcpdump, and benchmarks.
#![forbid(unsafe_code)]

pub mod describe;
pub mod dump;
pub mod synth;
pub mod trace;
