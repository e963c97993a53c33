//! The whole benchmark: traces, filter sets, every engine at every K, bind cost, outputs.
//!
//! Per trace: the flows are drawn once for the largest K (most popular first, then absent
//! ones), and the set of K filters is always the first K, so one program per flow serves every
//! K for the per-filter peers. dpf-interp's verdict on every packet is the reference; every
//! other engine's matches (and the filters they went to) must agree with it on the packets it
//! replayed, or the run fails.
//!
//! Timing is in phases of interleaved rounds ([`super::rounds`]): the engines that classify
//! with one structure (dpf, native-hash, ebpf-map) at every K form one phase, so the ratios
//! the targets are about come from cells measured side by side; each sequential peer is a
//! phase of its own at K <= [`SEQUENTIAL_MAX_FILTERS`], built for its largest K and dropped
//! after, so the number of executable mappings stays well under the kernel's per-process
//! limit. Callgrind's counts ([`super::callgrind`]) are taken after the rounds, in child
//! processes.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use dpf::jit::{Demux as LiveDemux, ExecutableTrie, Update};
use dpf::trie::Trie;
use dpf::{Filter, FilterId, interp};
use indicatif::{ProgressBar, ProgressStyle};

use super::callgrind;
use super::cbpf_to_ebpf::{self, EbpfInsn};
use super::engines::dpf_engines::{self, DpfInterp, DpfJit, DpfJitTwoCopies, DpfJitUnmerged};
use super::engines::ebpf_map::{self, EbpfMap, FlowMap};
use super::engines::libpcap::{CompiledFilter, Libpcap, PcapCompiler};
use super::engines::native::NativeFlow;
use super::engines::native_hash::NativeHash;
use super::engines::{Demux, Tally, bpfjit, dpdk, rbpf, rte_acl};
use super::flow_filter::dpf_filters;
use super::flows::{self, FilterFlows};
use super::measure::{capped_packets, median_us};
use super::packets::PacketArena;
use super::plot;
use super::report::{self, Row, RowKind};
use super::rounds::{Cell, RoundPlan, run_rounds};
use crate::synth::{self, Flow, SynthConfig};
use crate::trace::{TracePacket, read_trace};

/// Engine names, in table order.
pub const ENGINE_ORDER: [&str; 12] = [
    "dpf-jit",
    "dpf-jit-two-copies",
    "dpf-interp",
    "dpf-jit-unmerged",
    "native-hash",
    "native",
    "ebpf-map",
    "rte-acl",
    "libpcap",
    "bpfjit",
    "rbpf-jit",
    "dpdk-bpf-jit",
];

/// Engines callgrind counts, at every K.
pub const COUNTED_ENGINES: [&str; 3] = ["dpf-jit", "native-hash", "ebpf-map"];

/// Callgrind children run at once, after the timed rounds (nothing else of the benchmark runs
/// then, so they disturb no timing).
pub const CALLGRIND_WORKERS: usize = 2;

/// Sequential peers (one program per filter) run up to this many filters: at 100,000 each
/// would need 100,000 programs compiled and mapped for a figure a hundred times their 1,000.
pub const SEQUENTIAL_MAX_FILTERS: usize = 10_000;

/// The seed the filter sets are drawn with.
pub const DRAW_SEED: u64 = 0xf10e_5eed;

/// What to run.
#[derive(Clone, Debug)]
pub struct Options {
    /// Smaller trace, fewer rounds, tighter caps: a few minutes on 2 cores.
    pub quick: bool,
    /// Captures to replay besides the synthetic trace.
    pub pcaps: Vec<PathBuf>,
    /// Where `demux.json` and the plots go.
    pub out: PathBuf,
    /// Filter counts K.
    pub filter_counts: Vec<usize>,
    /// Engines to run (all when empty; `bind` names the bind-cost measurements); dpf-interp's
    /// verdicts are computed regardless, as the reference.
    pub engines: Vec<String>,
    /// Synthetic packets, instead of the plan's.
    pub synth_packets: Option<usize>,
    /// Take callgrind's counts (needs valgrind).
    pub callgrind: bool,
}

impl Options {
    /// Whether `engine` is to be measured.
    pub fn wants(&self, engine: &str) -> bool {
        self.engines.is_empty() || self.engines.iter().any(|e| e == engine)
    }
}

/// Synthetic packets replayed. A trial replays the trace over and over, and a branch predictor
/// learns a short one by heart: with 25,000 packets (the earlier length), dpf-jit at 1 filter
/// took 2.94 ns/packet replayed alone and 5.29-5.32 ns with a second copy of its code replayed
/// in between (`demux_code`, minima of 10 rounds), which evicts what the predictor learnt of the first (same bytes, same code, same
/// cache footprint). Its rejections hinge on the ethertype and the source address, which no
/// predictor can guess on traffic that does not repeat, so the cheap cells looked about twice as
/// fast as they are. At 200,000 packets the two agree (5.80 and 5.87-5.89 ns);
/// `demux_code K ROUNDS PREFIX 2` repeats the check.
pub const SYNTH_PACKETS: usize = 200_000;

/// Bytes of each synthetic packet kept, as `tcpdump -s 128` keeps them: more than any header a
/// flow filter reads (82 bytes at most: a VLAN tag, 60 bytes of IPv4 header with options, the
/// ports), while the 200,000 records take about 20 MB, inside this machine's 32 MB L3, so
/// headers are in cache as a NIC writing into the cache leaves them. With whole packets they
/// would take about 68 MB and the replay would measure DRAM.
pub const SYNTH_SNAPLEN: usize = 128;

/// The synthetic trace the benchmark replays, at `packets` packets (callgrind's children and
/// the profiling example regenerate it from this).
pub fn synth_config(packets: usize) -> SynthConfig {
    SynthConfig {
        packets,
        snaplen: Some(SYNTH_SNAPLEN),
        ..SynthConfig::default()
    }
}

/// How much to measure, derived from [`Options::quick`].
#[derive(Clone, Debug)]
pub struct Plan {
    /// The synthetic trace.
    pub synth: SynthConfig,
    /// Rounds per phase and the length of a trial.
    pub rounds: RoundPlan,
    /// Per-trial time a sequential peer's packet count is sized for.
    pub sequential_budget: Duration,
    /// Fewest packets a capped engine replays.
    pub sequential_floor: usize,
    /// Insert/remove pairs per bind-cost measurement.
    pub bind_repeats: usize,
}

impl Plan {
    /// The plan for a run.
    pub fn for_options(options: &Options) -> Plan {
        let synth = synth_config(SYNTH_PACKETS);
        if options.quick {
            Plan {
                synth,
                rounds: RoundPlan {
                    rounds: 11,
                    min_trial: Duration::from_millis(20),
                },
                sequential_budget: Duration::from_millis(60),
                sequential_floor: 2_000,
                bind_repeats: 51,
            }
        } else {
            Plan {
                synth,
                rounds: RoundPlan {
                    rounds: 21,
                    min_trial: Duration::from_millis(50),
                },
                sequential_budget: Duration::from_millis(250),
                sequential_floor: 10_000,
                bind_repeats: 101,
            }
        }
    }
}

/// What a run produced.
#[derive(Debug)]
pub struct Outcome {
    /// Every row written to `demux.json`.
    pub rows: Vec<Row>,
    /// Engines whose verdicts differed from the reference (empty on success).
    pub mismatches: Vec<String>,
    /// Files written.
    pub written: Vec<PathBuf>,
}

/// One trace to replay.
struct Trace {
    name: String,
    packets: Vec<TracePacket>,
}

fn trace_name(path: &Path) -> String {
    path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    )
}

/// The reference verdicts for K filters and the tally of a prefix of them.
struct Reference {
    verdicts: Vec<Option<u32>>,
}

impl Reference {
    fn tally(&self, packets: usize) -> Tally {
        let mut tally = Tally::default();
        for &v in &self.verdicts[..packets] {
            tally.add(v);
        }
        tally
    }
}

struct TraceRun<'a> {
    options: &'a Options,
    trace: &'a str,
    arena: &'a PacketArena,
    plan: &'a Plan,
    progress: &'a ProgressBar,
    /// Reference verdicts by K.
    references: BTreeMap<usize, Reference>,
    rows: Vec<Row>,
    mismatches: Vec<String>,
}

impl TraceRun<'_> {
    fn unavailable(&mut self, engine: &str, filters: Option<usize>, reason: &str) {
        let mut row = Row::new(RowKind::Unavailable, engine);
        row.trace = Some(self.trace.to_string());
        row.filters = filters;
        row.note = Some(format!("unavailable: {reason}"));
        self.rows.push(row);
    }

    /// How many packets `engine` replays per trial: all of them, or for a sequential engine
    /// as many as the plan's budget affords at the speed of a pilot replay.
    fn packets_for(&self, engine: &mut dyn Demux, capped: bool) -> usize {
        let spans = self.arena.spans();
        if !capped {
            return spans.len();
        }
        let pilot = &spans[..spans.len().min(500)];
        engine.replay(self.arena, pilot);
        let start = Instant::now();
        engine.replay(self.arena, pilot);
        let ns = start.elapsed().as_nanos() as f64 / pilot.len() as f64;
        capped_packets(
            spans.len(),
            ns,
            self.plan.sequential_budget,
            self.plan.sequential_floor,
        )
    }

    /// A cell for `engine` at `k`, if it is wanted.
    fn cell<'e>(
        &self,
        name: &'static str,
        k: usize,
        mut engine: Box<dyn Demux + 'e>,
        capped: bool,
    ) -> Option<Cell<'e>> {
        if !self.options.wants(name) {
            return None;
        }
        let packets = self.packets_for(engine.as_mut(), capped);
        Some(Cell::new(name, k, engine, packets))
    }

    /// Runs the rounds of one phase and turns its cells into rows, each checked against the
    /// reference.
    fn phase(&mut self, what: &str, mut cells: Vec<Cell<'_>>) {
        if cells.is_empty() {
            return;
        }
        self.progress.set_prefix(format!("{}: {what}", self.trace));
        run_rounds(&mut cells, self.arena, self.plan.rounds, self.progress);
        let total = self.arena.len();
        for cell in &cells {
            let Some((summary, iqr)) = cell.summary() else {
                continue;
            };
            let expected = self.references[&cell.filters].tally(cell.packets);
            let mut row = Row::new(RowKind::Demux, cell.engine);
            row.trace = Some(self.trace.to_string());
            row.filters = Some(cell.filters);
            row.packets = Some(cell.packets);
            row.matches = Some(cell.tally.matches);
            row.ns_per_packet_median = Some(summary.median);
            row.ns_min = Some(summary.min);
            row.ns_max = Some(summary.max);
            row.ns_iqr = Some(iqr);
            row.rounds = Some(cell.samples.len());
            row.mpps = Some(1e3 / summary.median);
            let mut notes = Vec::new();
            if cell.packets < total {
                notes.push(format!("first {} of {total} packets", cell.packets));
            }
            if cell.tally != expected {
                notes.push("MISMATCH".to_string());
                self.mismatches.push(format!(
                    "trace {}, {} filters: {} matched {} packets (filter index sum {}) where \
                     dpf-interp matched {} (sum {}) on the same {} packets",
                    self.trace,
                    cell.filters,
                    cell.engine,
                    cell.tally.matches,
                    cell.tally.filter_index_sum,
                    expected.matches,
                    expected.filter_index_sum,
                    cell.packets
                ));
            }
            if !notes.is_empty() {
                row.note = Some(notes.join("; "));
            }
            self.rows.push(row);
        }
    }
}

fn expressions(flows: &[Flow]) -> Vec<String> {
    flows.iter().map(Flow::expression).collect()
}

fn filters_of(flows: &[Flow]) -> Vec<Vec<Filter>> {
    flows
        .iter()
        .enumerate()
        .map(|(i, flow)| dpf_filters(flow, FilterId(i as u32)))
        .collect()
}

/// Bytes of the tables in dpf's generated code (what follows the instructions and the base
/// slot), and of the code itself.
pub fn code_and_table_bytes(compiled: &dpf::jit::CompiledTrie) -> (usize, usize) {
    let tables = compiled.code().len() - compiled.data_offset();
    (compiled.instructions_end(), tables)
}

/// The engines that classify with one structure, at every K, in one phase; records the
/// reference verdicts per K.
fn merged_engines(
    run: &mut TraceRun<'_>,
    ks: &[usize],
    flows: &FilterFlows,
    filters: &[Vec<Filter>],
) -> Result<(), String> {
    // What the cells borrow, made first.
    let maps: Vec<FlowMap> = ks
        .iter()
        .map(|&k| ebpf_map::flow_map(&flows.flows[..k]))
        .collect();
    let programs: Vec<Vec<u8>> = maps.iter().map(ebpf_map::encoded_program).collect();
    // DPDK's ACL, one context per K (up to the sequential peers' largest K: building a
    // context of 100,000 rules takes minutes and more EAL heap than it is given).
    let acl = if run.options.wants("rte-acl") {
        run.progress
            .set_message("initialising EAL for rte_acl".to_string());
        match rte_acl::RteAcl::open() {
            Ok(library) => Some(library),
            Err(e) => {
                run.unavailable("rte-acl", None, &e);
                None
            }
        }
    } else {
        None
    };
    let mut acl_contexts: Vec<Option<rte_acl::AclContext<'_>>> = Vec::new();
    for &k in ks {
        let Some(library) = acl.as_ref().filter(|_| k <= SEQUENTIAL_MAX_FILTERS) else {
            acl_contexts.push(None);
            continue;
        };
        run.progress
            .set_message(format!("building the rte_acl context for {k} filters"));
        match library.context(&k.to_string(), &flows.flows[..k]) {
            Ok(context) => acl_contexts.push(Some(context)),
            Err(e) => {
                run.unavailable("rte-acl", Some(k), &e);
                acl_contexts.push(None);
            }
        }
    }
    let mut cells: Vec<Cell<'_>> = Vec::new();
    for (i, &k) in ks.iter().enumerate() {
        run.progress
            .set_message(format!("building the engines for {k} filters"));
        let trie = dpf_engines::merged_trie(&filters[..k])?;
        run.references.insert(
            k,
            Reference {
                verdicts: run
                    .arena
                    .spans()
                    .iter()
                    .map(|&s| interp::classify(&trie, &run.arena.packet(s)).map(|FilterId(i)| i))
                    .collect(),
            },
        );
        if run.options.wants("dpf-jit") {
            match dpf::jit::compile(&trie) {
                Ok(compiled) => {
                    let (code, tables) = code_and_table_bytes(&compiled);
                    let mut row = Row::new(RowKind::Size, "dpf-jit");
                    row.trace = Some(run.trace.to_string());
                    row.filters = Some(k);
                    row.code_bytes = Some(code);
                    row.table_bytes = Some(tables);
                    row.table_bytes_per_filter = Some(tables as f64 / k as f64);
                    run.rows.push(row);
                    match ExecutableTrie::new(&compiled) {
                        Ok(exec) => {
                            cells.extend(run.cell("dpf-jit", k, Box::new(DpfJit::new(exec)), false))
                        }
                        Err(e) => run.unavailable("dpf-jit", Some(k), &e.to_string()),
                    }
                }
                Err(e) => run.unavailable("dpf-jit", Some(k), &e.to_string()),
            }
        }
        if k == ks[0] && run.options.wants("dpf-jit-two-copies") {
            match DpfJitTwoCopies::new(&trie) {
                Ok(copies) => {
                    cells.extend(run.cell("dpf-jit-two-copies", k, Box::new(copies), false))
                }
                Err(e) => run.unavailable("dpf-jit-two-copies", Some(k), &e),
            }
        }
        cells.extend(run.cell("dpf-interp", k, Box::new(DpfInterp::new(trie)), false));
        cells.extend(run.cell(
            "native-hash",
            k,
            Box::new(NativeHash::new(&flows.flows[..k])),
            false,
        ));
        if run.options.wants("ebpf-map") {
            match ebpf_map::load(&programs[i]) {
                // SAFETY: the VM was loaded from `encoded_program(&maps[i])` just above.
                #[allow(unsafe_code)]
                Ok(vm) => cells.extend(run.cell(
                    "ebpf-map",
                    k,
                    Box::new(unsafe { EbpfMap::new(vm, &maps[i], run.arena) }),
                    false,
                )),
                Err(e) => run.unavailable("ebpf-map", Some(k), &e),
            }
        }
        if let Some(context) = &acl_contexts[i] {
            cells.extend(run.cell(
                "rte-acl",
                k,
                Box::new(rte_acl::RteAclDemux::new(context)),
                false,
            ));
        }
        if k == 1 {
            cells.extend(run.cell(
                "native",
                k,
                Box::new(NativeFlow::new(&flows.flows[0])),
                false,
            ));
        }
    }
    run.phase("merged engines, interleaved", cells);
    Ok(())
}

/// The per-filter engines, one phase each, each built once for the largest K.
fn sequential_engines(
    run: &mut TraceRun<'_>,
    ks: &[usize],
    flows: &FilterFlows,
    filters: &[Vec<Filter>],
) {
    let ks: Vec<usize> = ks
        .iter()
        .copied()
        .filter(|&k| k <= SEQUENTIAL_MAX_FILTERS)
        .collect();
    let Some(&k_max) = ks.last() else {
        return;
    };
    let all_k = |run: &mut TraceRun<'_>, name: &str, reason: &str| {
        if !run.options.wants(name) {
            return;
        }
        for &k in &ks {
            run.unavailable(name, Some(k), reason);
        }
    };

    // dpf, unmerged.
    if run.options.wants("dpf-jit-unmerged") {
        run.progress
            .set_message(format!("compiling {k_max} separate dpf programs"));
        match dpf_engines::unmerged_programs(&filters[..k_max]) {
            Ok(programs) => {
                let cells = ks
                    .iter()
                    .filter_map(|&k| {
                        run.cell(
                            "dpf-jit-unmerged",
                            k,
                            Box::new(DpfJitUnmerged::new(&programs[..k])),
                            true,
                        )
                    })
                    .collect();
                run.phase("dpf-jit-unmerged", cells);
            }
            Err(e) => all_k(run, "dpf-jit-unmerged", &e),
        }
    }
    if !["libpcap", "bpfjit", "rbpf-jit", "dpdk-bpf-jit"]
        .iter()
        .any(|e| run.options.wants(e))
    {
        return;
    }

    // libpcap, and the programs every classic and eBPF peer starts from.
    run.progress
        .set_message(format!("pcap_compile of {k_max} filters"));
    let compiled: Result<Vec<CompiledFilter>, String> = PcapCompiler::ethernet().and_then(|c| {
        expressions(&flows.flows[..k_max])
            .iter()
            .map(|e| c.compile(e))
            .collect()
    });
    let compiled = match compiled {
        Ok(compiled) => compiled,
        Err(e) => {
            for name in ["libpcap", "bpfjit", "rbpf-jit", "dpdk-bpf-jit"] {
                all_k(run, name, &e);
            }
            return;
        }
    };
    let cells = ks
        .iter()
        .filter_map(|&k| run.cell("libpcap", k, Box::new(Libpcap::new(&compiled[..k])), true))
        .collect();
    run.phase("libpcap", cells);

    // bpfjit.
    run.progress
        .set_message(format!("bpfjit of {k_max} programs"));
    let bpfjit_programs = if run.options.wants("bpfjit") {
        compiled
            .iter()
            .map(|c| bpfjit::compile(&c.instructions))
            .collect::<Result<Vec<_>, _>>()
    } else {
        Ok(Vec::new())
    };
    match bpfjit_programs {
        Ok(programs) if !programs.is_empty() => {
            let cells = ks
                .iter()
                .filter_map(|&k| {
                    run.cell(
                        "bpfjit",
                        k,
                        Box::new(bpfjit::BpfJit::new(&programs[..k])),
                        true,
                    )
                })
                .collect();
            run.phase("bpfjit", cells);
        }
        Ok(_) => {}
        Err(e) => all_k(run, "bpfjit", &e),
    }

    // eBPF: one translation for rbpf and DPDK.
    let ebpf: Result<Vec<Vec<EbpfInsn>>, String> = compiled
        .iter()
        .enumerate()
        .map(|(i, c)| {
            cbpf_to_ebpf::convert(&c.instructions)
                .map_err(|e| format!("cBPF->eBPF of filter {i}: {e}"))
        })
        .collect();
    let ebpf = match ebpf {
        Ok(ebpf) => ebpf,
        Err(e) => {
            all_k(run, "rbpf-jit", &e);
            all_k(run, "dpdk-bpf-jit", &e);
            return;
        }
    };

    run.progress
        .set_message(format!("rbpf JIT of {k_max} programs"));
    // In a block: the programs and their JIT pages go before DPDK's are made.
    {
        let encoded: Vec<Vec<u8>> = ebpf.iter().map(|p| cbpf_to_ebpf::encode(p)).collect();
        let vms = if run.options.wants("rbpf-jit") {
            encoded
                .iter()
                .map(|p| rbpf::load(p))
                .collect::<Result<Vec<_>, _>>()
        } else {
            Ok(Vec::new())
        };
        match vms {
            Ok(vms) if vms.is_empty() => {}
            Ok(vms) => {
                let cells = ks
                    .iter()
                    .filter_map(|&k| {
                        // SAFETY: every VM was loaded from `cbpf_to_ebpf::convert` output just
                        // above.
                        #[allow(unsafe_code)]
                        let engine = unsafe { rbpf::RbpfJit::new(&vms[..k], run.arena) };
                        run.cell("rbpf-jit", k, Box::new(engine), true)
                    })
                    .collect();
                run.phase("rbpf-jit", cells);
            }
            Err(e) => all_k(run, "rbpf-jit", &e),
        }
    }

    run.progress
        .set_message(format!("rte_bpf load of {k_max} programs"));
    if !run.options.wants("dpdk-bpf-jit") {
        return;
    }
    match dpdk::RteBpf::open() {
        Err(e) => all_k(run, "dpdk-bpf-jit", &e),
        Ok(library) => match ebpf
            .iter()
            .enumerate()
            .map(|(i, p)| library.load(p).map_err(|e| format!("filter {i}: {e}")))
            .collect::<Result<Vec<_>, _>>()
        {
            Ok(programs) => {
                let cells = ks
                    .iter()
                    .filter_map(|&k| {
                        run.cell(
                            "dpdk-bpf-jit",
                            k,
                            Box::new(dpdk::DpdkJit::new(&programs[..k])),
                            true,
                        )
                    })
                    .collect();
                run.phase("dpdk-bpf-jit", cells);
            }
            Err(e) => all_k(run, "dpdk-bpf-jit", &e),
        },
    }
}

/// Bind cost: one more filter into a live set of K and out again, for the live JIT demux
/// (patched or regenerated code, then mapped) and for the interpreter's trie.
fn bind_costs(
    run: &mut TraceRun<'_>,
    ks: &[usize],
    filters: &[Vec<Filter>],
    spare: &[Flow],
) -> Result<(), String> {
    let k_max = *ks.last().expect("filter counts");
    // One conjunction per bind: untagged spare flows (a tagged one is three).
    let extra: Vec<Filter> = spare
        .iter()
        .filter(|f| f.vlan.is_none())
        .enumerate()
        .map(|(i, f)| {
            dpf_filters(f, FilterId((k_max + i) as u32))
                .pop()
                .expect("one filter")
        })
        .take(run.plan.bind_repeats)
        .collect();
    if extra.is_empty() {
        return Err("no spare flows to bind".into());
    }
    run.progress.inc_length(ks.len() as u64);
    for &k in ks {
        run.progress
            .set_message(format!("bind cost at {k} filters"));
        let base: Vec<Filter> = filters[..k].iter().flatten().cloned().collect();

        let mut demux = LiveDemux::from_filters(base.iter().cloned()).map_err(|e| e.to_string())?;
        // The code that runs before the first change (and after each, replaced).
        let mut mapped = ExecutableTrie::new(demux.compiled()).map_err(|e| e.to_string())?;
        std::hint::black_box(&mapped);
        let (mut inserts, mut removes, mut patched, mut total) = (vec![], vec![], 0, 0);
        for filter in &extra {
            let start = Instant::now();
            let (handle, how_in) = demux.insert(filter.clone()).map_err(|e| e.to_string())?;
            demux.sync(&mut mapped).map_err(|e| e.to_string())?;
            inserts.push(start.elapsed());
            std::hint::black_box(&mapped);
            let start = Instant::now();
            let (_, how_out) = demux.remove(handle).map_err(|e| e.to_string())?;
            demux.sync(&mut mapped).map_err(|e| e.to_string())?;
            removes.push(start.elapsed());
            std::hint::black_box(&mapped);
            patched +=
                usize::from(how_in == Update::Patched) + usize::from(how_out == Update::Patched);
            total += 2;
        }
        let mut row = Row::new(RowKind::Bind, "dpf-jit");
        row.trace = Some(run.trace.to_string());
        row.filters = Some(k);
        row.insert_us_median = Some(median_us(&inserts));
        row.remove_us_median = Some(median_us(&removes));
        row.note = Some(format!(
            "{} pairs; {patched} of {total} changes patched in place, the rest regenerated; \
             patches written into the mapped tables, regenerations remapped",
            extra.len()
        ));
        run.rows.push(row);

        let mut trie = Trie::from_filters(base).map_err(|e| e.to_string())?;
        let (mut inserts, mut removes) = (vec![], vec![]);
        for filter in &extra {
            let start = Instant::now();
            let handle = trie.insert(filter.clone()).map_err(|e| e.to_string())?;
            inserts.push(start.elapsed());
            let start = Instant::now();
            trie.remove(handle).map_err(|e| e.to_string())?;
            removes.push(start.elapsed());
        }
        let mut row = Row::new(RowKind::Bind, "dpf-interp");
        row.trace = Some(run.trace.to_string());
        row.filters = Some(k);
        row.insert_us_median = Some(median_us(&inserts));
        row.remove_us_median = Some(median_us(&removes));
        row.note = Some(format!("{} pairs; trie only", extra.len()));
        run.rows.push(row);
        run.progress.inc(1);
    }
    Ok(())
}

fn engine_rank(engine: &str) -> usize {
    ENGINE_ORDER
        .iter()
        .position(|e| *e == engine)
        .unwrap_or(ENGINE_ORDER.len())
}

/// Runs everything and writes the outputs.
pub fn run(options: &Options) -> Result<Outcome, String> {
    let mut plan = Plan::for_options(options);
    if let Some(packets) = options.synth_packets {
        plan.synth.packets = packets.max(1);
    }
    let mut ks = options.filter_counts.clone();
    ks.sort_unstable();
    ks.dedup();
    if ks.is_empty() || ks[0] == 0 {
        return Err("filter counts must be positive".into());
    }
    let mut traces = vec![];
    let synth = synth::generate(&plan.synth);
    traces.push(Trace {
        name: "synth".into(),
        packets: synth.packets,
    });
    for path in &options.pcaps {
        let packets = read_trace(path).map_err(|e| format!("{}: {e}", path.display()))?;
        if packets.is_empty() {
            return Err(format!("{}: no packets", path.display()));
        }
        traces.push(Trace {
            name: trace_name(path),
            packets,
        });
    }

    // Grows as each phase adds its rounds.
    let progress = ProgressBar::new(0);
    progress.set_style(
        ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {pos}/{len} {prefix}: {msg}")
            .expect("static template")
            .progress_chars("=> "),
    );

    let mut rows = Vec::new();
    let mut mismatches = Vec::new();
    let k_max = *ks.last().expect("filter counts");
    for (t, trace) in traces.iter().enumerate() {
        let arena = PacketArena::new(&trace.packets);
        let popular = flows::flows_by_popularity(&trace.packets);
        let spare = plan.bind_repeats * 2;
        let drawn = flows::draw(&popular, k_max, spare, DRAW_SEED);
        let filters = filters_of(&drawn.flows);
        let mut run = TraceRun {
            options,
            trace: &trace.name,
            arena: &arena,
            plan: &plan,
            progress: &progress,
            references: BTreeMap::new(),
            rows: Vec::new(),
            mismatches: Vec::new(),
        };
        merged_engines(&mut run, &ks, &drawn, &filters)?;
        sequential_engines(&mut run, &ks, &drawn, &filters);
        if options.wants("bind") {
            bind_costs(&mut run, &ks, &filters, &drawn.spare)?;
        }
        // Callgrind replays the synthetic trace, which a child regenerates from its seed.
        if options.callgrind && t == 0 {
            let filters_file =
                std::env::temp_dir().join(format!("demux-bench-filters-{}", std::process::id()));
            callgrind::write_filters(&filters_file, &filters)?;
            let jobs: Vec<callgrind::Job> = COUNTED_ENGINES
                .iter()
                .filter(|e| options.wants(e))
                .flat_map(|e| {
                    let filters_file = &filters_file;
                    ks.iter().map(move |&k| callgrind::Job {
                        engine: e.to_string(),
                        filters: k,
                        drawn: k_max,
                        spare,
                        packets: plan.synth.packets,
                        filters_file: filters_file.clone(),
                    })
                })
                .collect();
            progress.set_prefix("callgrind");
            progress.set_message(format!("{} children under valgrind", jobs.len()));
            progress.inc_length(jobs.len() as u64);
            let results = callgrind::count_all(&jobs, CALLGRIND_WORKERS, &progress);
            let _ = std::fs::remove_file(&filters_file);
            for (job, counts) in jobs.iter().zip(results) {
                let (engine, k) = (job.engine.as_str(), job.filters);
                let Some(row) = run.rows.iter_mut().find(|r| {
                    r.kind == RowKind::Demux && r.engine == engine && r.filters == Some(k)
                }) else {
                    continue;
                };
                match counts {
                    Ok(c) => {
                        let per = c.per_packet();
                        row.instructions_per_packet = Some(per.instructions);
                        row.branch_misses_per_packet = Some(per.branch_misses);
                        row.l1_misses_per_packet = Some(per.l1_misses);
                        row.ll_misses_per_packet = Some(per.ll_misses);
                        let expected = run.references[&k].tally(arena.len()).matches;
                        if c.matches != expected || c.packets != arena.len() as u64 {
                            run.mismatches.push(format!(
                                "callgrind's {engine} at {k} filters matched {} of {} packets, \
                                 dpf-interp {expected} of {}",
                                c.matches,
                                c.packets,
                                arena.len()
                            ));
                        }
                    }
                    Err(e) => {
                        let note = format!("callgrind: {e}");
                        row.note = Some(match row.note.take() {
                            Some(n) => format!("{n}; {note}"),
                            None => note,
                        });
                    }
                }
            }
        }
        let occurring = drawn.occurring;
        progress.println(format!(
            "{}: {} packets, {} flows with ports, {} of the {} filters name flows that occur",
            trace.name,
            trace.packets.len(),
            popular.len(),
            occurring.min(k_max),
            k_max
        ));
        rows.extend(run.rows);
        mismatches.extend(run.mismatches);
    }
    progress.finish_and_clear();

    rows.sort_by(|a, b| {
        let key = |r: &Row| {
            (
                (r.kind == RowKind::Bind, r.kind == RowKind::Size),
                traces
                    .iter()
                    .position(|t| Some(&t.name) == r.trace.as_ref()),
                r.filters,
                engine_rank(&r.engine),
            )
        };
        key(a).cmp(&key(b))
    });
    rows.extend(report::checks(&rows, "synth", &ks));

    std::fs::create_dir_all(&options.out).map_err(|e| format!("{}: {e}", options.out.display()))?;
    let mut written = Vec::new();
    let json = options.out.join("demux.json");
    std::fs::write(&json, report::to_json(&rows))
        .map_err(|e| format!("{}: {e}", json.display()))?;
    written.push(json);
    for (i, trace) in traces.iter().enumerate() {
        let stem = if i == 0 {
            options.out.join("demux")
        } else {
            options.out.join(format!("demux-{}", trace.name))
        };
        plot::write_plots(&rows, &trace.name, &stem)?;
        written.push(stem.with_extension("svg"));
        written.push(stem.with_extension("png"));
    }
    Ok(Outcome {
        rows,
        mismatches,
        written,
    })
}

/// `YYYY-MM-DD HH:MM UTC` for now (no calendar crate needed for one line).
pub fn utc_now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let days = (secs / 86_400) as i64;
    let (hour, minute) = ((secs % 86_400) / 3_600, (secs % 3_600) / 60);
    // Howard Hinnant's civil-from-days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02} {hour:02}:{minute:02} UTC")
}

/// The CPU model and how many CPUs this process may use.
pub fn machine() -> String {
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    format!("{model}, {cpus} CPUs")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The bench replays packets cut to [`SYNTH_SNAPLEN`]; that must change no verdict of the
    /// filters it binds (a VLAN tag, 60 bytes of IPv4 header and the ports end by byte 82).
    #[test]
    fn cutting_the_synthetic_packets_changes_no_verdict() {
        let whole = synth::generate(&SynthConfig {
            snaplen: None,
            ..synth_config(4_000)
        });
        let cut = synth::generate(&synth_config(4_000));
        let popular = flows::flows_by_popularity(&whole.packets);
        let drawn = flows::draw(&popular, 400, 0, DRAW_SEED);
        let trie = dpf_engines::merged_trie(&filters_of(&drawn.flows)).unwrap();
        let verdict = |p: &TracePacket| {
            interp::classify(
                &trie,
                &dpf::Packet {
                    data: &p.data,
                    wire_len: p.wire_len,
                },
            )
        };
        let (mut matched, mut shortened) = (0, 0);
        for (w, c) in whole.packets.iter().zip(&cut.packets) {
            assert_eq!(verdict(w), verdict(c));
            matched += usize::from(verdict(c).is_some());
            shortened += usize::from(c.data.len() < w.data.len());
        }
        assert!(
            matched > 1_000 && shortened > 1_000,
            "{matched} {shortened}"
        );
    }

    #[test]
    fn utc_date_is_well_formed() {
        let now = utc_now();
        assert_eq!(now.len(), "2025-01-01 00:00 UTC".len());
        assert!(now.starts_with("20"));
    }
}
