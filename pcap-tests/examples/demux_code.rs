//! Profiling aid for the demux benchmark: builds the benchmark's own synthetic trace and its
//! set of K flow filters, writes the merged trie and the generated code, then classifies the
//! trace N times with dpf's JIT so a profiler (`valgrind --tool=callgrind --branch-sim=yes`)
//! sees exactly what `demux-bench` measures.
//!
//! With COPIES above 1 it maps that many copies of the same code and replays the trace through
//! each in turn, pass by pass: what a branch predictor learnt of the trace in one copy's pass
//! is gone by its next, so the gap between one copy and several is how much of the time a
//! predictor that has learnt the trace by heart saves (the reason the benchmark's trace is as
//! long as it is).
//!
//! `cargo run --release -p pcap-tests --example demux_code -- K [ROUNDS] [OUT_PREFIX] [COPIES] [PACKETS]`

use std::hint::black_box;
use std::time::Instant;

use pcap_tests::bench::engines::dpf_engines;
use pcap_tests::bench::flow_filter::dpf_filters;
use pcap_tests::bench::flows;
use pcap_tests::bench::packets::PacketArena;
use pcap_tests::bench::run::{SYNTH_PACKETS, synth_config};
use pcap_tests::dump;
use pcap_tests::synth;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let k: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(100);
    let rounds: usize = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(10);
    let prefix = args
        .get(3)
        .cloned()
        .unwrap_or_else(|| format!("/tmp/demux-{k}"));
    let copies: usize = args.get(4).and_then(|a| a.parse().ok()).unwrap_or(1).max(1);
    let packets: usize = args
        .get(5)
        .and_then(|a| a.parse().ok())
        .unwrap_or(SYNTH_PACKETS)
        .max(1);
    let trace = synth::generate(&synth_config(packets));
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
    let codes: Vec<_> = (0..copies)
        .map(|_| dpf::jit::ExecutableTrie::new(&compiled).expect("map"))
        .collect();
    let arena = PacketArena::new(&trace.packets);
    let mut matches = 0usize;
    let mut times = vec![Vec::with_capacity(rounds); copies];
    for _ in 0..rounds {
        for (code, times) in codes.iter().zip(&mut times) {
            let start = Instant::now();
            for &span in arena.spans() {
                matches += usize::from(black_box(code.classify_score(&arena.packet(span))).0 != 0);
            }
            times.push(start.elapsed().as_secs_f64() * 1e9 / arena.len() as f64);
        }
    }
    for (copy, times) in times.iter_mut().enumerate() {
        times.sort_by(f64::total_cmp);
        println!(
            "K={k}, copy {} of {copies}: {} packets x {rounds} rounds, {} matches/round, ns/packet min {:.2} median {:.2}",
            copy + 1,
            arena.len(),
            matches / (rounds * copies).max(1),
            times.first().copied().unwrap_or(0.0),
            times.get(times.len() / 2).copied().unwrap_or(0.0),
        );
    }
    println!("wrote {prefix}.trie, {prefix}.asm");
}
