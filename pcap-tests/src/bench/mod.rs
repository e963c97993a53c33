//! The demux benchmark: dpf's JIT and interpreter against libpcap, bpfjit, rbpf and DPDK's
//! rte_bpf on replayed traces, from 1 to 10,000 flow filters, plus the cost of binding one.
//!
//! `cargo run --release -p pcap-tests --bin demux-bench -- --help` runs it ([`run::run`]).
//! Layout: [`flows`] draws the filter sets, [`flow_filter`] turns a flow into dpf filters,
//! [`engines`] wraps each engine as a demultiplexer, [`cbpf_to_ebpf`] translates libpcap's
//! programs for the eBPF peers, [`measure`] times, [`report`] and [`plot`] present.
//! The only `unsafe` is in the foreign engines: `engines::{bpfjit, rbpf, dpdk}`.

pub mod callgrind;
pub mod cbpf_to_ebpf;
pub mod engines;
pub mod flow_filter;
pub mod flows;
pub mod measure;
pub mod packets;
pub mod plot;
pub mod report;
pub mod rounds;
pub mod run;
