//! Hosted tooling around dpf: reading traces, replaying them through both engines, comparing
//! verdicts with tcpdump, and benchmarks.
// Denied, not forbidden: the benchmark's foreign engines (`bench::engines::{bpfjit, rbpf,
// dpdk}`) call C and foreign JIT code and allow it in those modules alone.
#![deny(unsafe_code)]

pub mod bench;
pub mod describe;
pub mod dump;
pub mod synth;
pub mod trace;
