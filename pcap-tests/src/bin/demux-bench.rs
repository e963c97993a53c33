//! `demux-bench`: replays traces through dpf (JIT, interpreter, unmerged) and the peers a user
//! would pick instead (native-hash, ebpf-map, libpcap, bpfjit, rbpf, DPDK rte_bpf), from 1 to
//! 100,000 flow filters, in interleaved rounds, with callgrind's counts beside the times.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

use pcap_tests::bench::callgrind::{self, Job};
use pcap_tests::bench::report::{self, RowKind};
use pcap_tests::bench::run::{self, Options};

/// Demultiplexing benchmark: which of K flow filters does each packet belong to?
///
/// Packets are held in memory and replayed on one thread: 200,000 synthetic ones, each cut to
/// its first 128 bytes (no filter reads further), as many as it takes for a branch predictor
/// not to learn the trace by heart over a trial's passes (with 25,000 it did, and the cheap
/// cells ran about twice as fast as on traffic that does not repeat). Cells (an engine at a K) are timed
/// in interleaved rounds: every round gives each cell of a phase one trial, starting one cell
/// later each time, so the host's drift falls on all cells alike; rows report the median over
/// rounds, its min, max and interquartile range. Beside the times, callgrind replays the same
/// trace for dpf-jit, native-hash and ebpf-map at every K (a child process under valgrind):
/// instructions, branch mispredictions and simulated L1 / last-level misses per packet.
/// Filter sets of K = 1, 10, 100, 1,000, 10,000 and 100,000 flows (`[vlan V and] ip|ip6 and
/// tcp|udp and src host A and dst port P`) are drawn from the trace's most popular flows, then
/// flows that do not occur. Engines:
///
///   dpf-jit, dpf-interp   all K filters merged into one trie (compiled / interpreted);
///   native-hash           hand-written Rust: parse, then one hashbrown lookup (the floor);
///   ebpf-map              one eBPF program that parses and calls a map-lookup helper (rbpf JIT);
///   rte-acl               parse, then one DPDK rte_acl_classify over a context of K 5-tuple rules
///                         (librte-acl23, if installed; EAL without hugepages; up to 10,000);
///   native                a hand-written Rust match of the K=1 filter;
///   dpf-jit-two-copies    dpf-jit at the smallest K mapped twice, a pass through each in
///                         turn: what a predictor learnt of the trace in one copy is gone by
///                         its next pass, so its time over dpf-jit's (a target) stays near 1
///                         unless the trace was learnt by heart;
///   dpf-jit-unmerged      one compiled dpf program per filter, in sequence;
///   libpcap               pcap_compile (optimised) per filter, bpf_filter, in sequence;
///   bpfjit                FreeBSD's cBPF JIT on libpcap's programs, in sequence;
///   rbpf-jit              libpcap's programs translated to eBPF, rbpf's x86_64 JIT;
///   dpdk-bpf-jit          the same eBPF on DPDK's rte_bpf JIT (librte-bpf23, if installed).
///
/// The first five (with native and dpf-jit-two-copies) form one phase; each sequential engine
/// is a phase of its own, up to 10,000 filters, stopping at the first filter that accepts and
/// replaying a prefix of the trace sized from a pilot run (the row's note says so). Every
/// engine must report the same matches as dpf-interp on the packets it replayed, or the run
/// exits 1.
/// Bind cost: one filter inserted into a live set of K and removed, for dpf's live JIT demux
/// (including new code, mapped) and its interpreter's trie. Sizes: dpf's code and table
/// bytes per K.
///
/// Writes DIR/demux.json (one object per row), DIR/demux.svg and DIR/demux.png
/// (ns/packet against K, log scales, one line per engine), and prints the tables and the
/// issue's targets with pass/fail.
#[derive(Debug, Parser)]
#[command(name = "demux-bench", verbatim_doc_comment)]
struct Args {
    /// 11 rounds of 20 ms trials, sequential peers capped at ~60 ms of packets per trial, 51
    /// bind pairs: a few minutes on 2 cores. Without it: 21 rounds of 50 ms, 250 ms caps, 101
    /// bind pairs.
    #[arg(long)]
    quick: bool,
    /// Also replay this capture (pcap or pcapng, Ethernet); filters are drawn from its own
    /// flows. May be given more than once.
    #[arg(long = "pcap", value_name = "FILE")]
    pcaps: Vec<PathBuf>,
    /// Directory for demux.json and the plots.
    #[arg(long, value_name = "DIR", default_value = "target/bench")]
    out: PathBuf,
    /// Filter counts K to measure, comma-separated.
    #[arg(
        long,
        value_name = "K,...",
        value_delimiter = ',',
        default_value = "1,10,100,1000,10000,100000"
    )]
    filters: Vec<usize>,
    /// Synthetic packets to replay, each snapped to its first 128 bytes (default 200,000: about
    /// 20 MB of records, inside the L3, so headers are in cache as a NIC writing into the cache
    /// leaves them, and too many for a branch predictor to learn the trace by heart, which it
    /// does with 25,000).
    #[arg(long, value_name = "N")]
    packets: Option<usize>,
    /// Only these engines (comma-separated names as in the table, `bind` for the bind cost);
    /// dpf-interp's verdicts are still computed as the reference. For profiling one engine.
    #[arg(long, value_name = "ENGINE,...", value_delimiter = ',')]
    engines: Vec<String>,
    /// Skip callgrind's counts (which need valgrind and take a minute or two).
    #[arg(long)]
    no_callgrind: bool,
    /// Internal: run one callgrind job (ENGINE:K:DRAWN:SPARE:PACKETS) and print its tally.
    #[arg(long = "callgrind-child", value_name = "JOB", hide = true)]
    callgrind_child: Option<String>,
    /// Exit 2 when any of the targets is missed (by default they are only reported).
    #[arg(long)]
    strict: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    if let Some(job) = &args.callgrind_child {
        return match Job::parse(job).and_then(|job| callgrind::child(&job)) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("demux-bench callgrind child: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let options = Options {
        quick: args.quick,
        pcaps: args.pcaps,
        out: args.out,
        filter_counts: args.filters,
        engines: args.engines,
        synth_packets: args.packets,
        callgrind: !args.no_callgrind,
    };
    println!(
        "demux-bench{}: {} on {}",
        if options.quick { " --quick" } else { "" },
        run::utc_now(),
        run::machine()
    );
    let outcome = match run::run(&options) {
        Ok(outcome) => outcome,
        Err(e) => {
            eprintln!("demux-bench: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!("\n{}", report::demux_table(&outcome.rows));
    println!("dpf's generated code and tables\n");
    println!("{}", report::size_table(&outcome.rows));
    println!("Bind cost (one filter into a live set of K and out again)\n");
    println!("{}", report::bind_table(&outcome.rows));
    println!("Targets (synth trace; ratios of medians)\n");
    println!("{}", report::check_table(&outcome.rows));
    for path in &outcome.written {
        println!("wrote {}", path.display());
    }
    if !outcome.mismatches.is_empty() {
        eprintln!("\ndemux-bench: engines disagree on which packets match:");
        for m in &outcome.mismatches {
            eprintln!("  {m}");
        }
        return ExitCode::FAILURE;
    }
    let missed = outcome
        .rows
        .iter()
        .filter(|r| r.kind == RowKind::Check && r.pass == Some(false))
        .count();
    if args.strict && missed > 0 {
        eprintln!("demux-bench: {missed} target(s) missed");
        return ExitCode::from(2);
    }
    ExitCode::SUCCESS
}
