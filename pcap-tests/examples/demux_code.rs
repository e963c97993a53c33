//! Profiling aid for the demux benchmark: builds the benchmark's own synthetic trace and its
//! set of K flow filters, writes the merged trie and the generated code, then classifies the
//! trace N times with dpf's JIT so a profiler (`valgrind --tool=callgrind --branch-sim=yes`)
//! sees exactly what `demux-bench` measures.
//!
//! `cargo run --release -p pcap-tests --example demux_code -- K [ROUNDS] [OUT_PREFIX]`

use std::hint::black_box;
use std::time::Instant;

use pcap_tests::bench::engines::dpf_engines;
use pcap_tests::bench::flow_filter::dpf_filters;
use pcap_tests::bench::flows;
use pcap_tests::bench::packets::PacketArena;
use pcap_tests::bench::run::SYNTH_PACKETS;
use pcap_tests::dump;
use pcap_tests::synth::{self, SynthConfig};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let k: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(100);
    let rounds: usize = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(10);
    let prefix = args
        .get(3)
        .cloned()
        .unwrap_or_else(|| format!("/tmp/demux-{k}"));
    let trace = synth::generate(&SynthConfig {
        packets: SYNTH_PACKETS,
        ..SynthConfig::default()
    });
    let popular = flows::flows_by_popularity(&trace.packets);
    let drawn = flows::draw(&popular, 10_000.max(k), 102, 0xf10e_5eed);
    let filters: Vec<_> = drawn.flows[..k]
        .iter()
        .enumerate()
        .map(|(i, flow)| dpf_filters(flow, dpf::FilterId(i as u32)))
        .collect();
    let trie = dpf_engines::merged_trie(&filters).expect("trie");
    let compiled = dpf::jit::compile(&trie).expect("compile");
    std::fs::write(format!("{prefix}.trie"), dump::dump_trie(Some(&trie))).expect("write");
    std::fs::write(format!("{prefix}.asm"), dump::disassemble(&compiled)).expect("write");
    let code = dpf::jit::ExecutableTrie::new(&compiled).expect("map");
    let arena = PacketArena::new(&trace.packets);
    let mut matches = 0usize;
    let mut times = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let start = Instant::now();
        for &span in arena.spans() {
            matches += usize::from(black_box(code.classify_score(&arena.packet(span))).0 != 0);
        }
        times.push(start.elapsed().as_secs_f64() * 1e9 / arena.len() as f64);
    }
    times.sort_by(f64::total_cmp);
    println!(
        "K={k}: {} packets x {rounds} rounds, {} matches/round, ns/packet min {:.2} median {:.2}; wrote {prefix}.trie, {prefix}.asm",
        arena.len(),
        matches / rounds.max(1),
        times.first().copied().unwrap_or(0.0),
        times.get(times.len() / 2).copied().unwrap_or(0.0),
    );
}
