//! The whole benchmark: traces, filter sets, every engine at every K, bind cost, outputs.
//!
//! Per trace: the flows are drawn once for the largest K (most popular first, then absent
//! ones), and the set of K filters is always the first K, so one program per flow serves every
//! K for the per-filter peers. dpf-interp's verdict on every packet is the reference; every
//! other engine's matches (and the filters they went to) must agree with it on the packets it
//! replayed, or the run fails.
//!
//! Sequential peers are built once per trace for the largest K and then dropped, one engine at
//! a time, so the number of executable mappings stays well under the kernel's per-process limit.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use dpf::jit::{Demux as LiveDemux, ExecutableTrie, Update};
use dpf::trie::Trie;
use dpf::{Filter, FilterId, interp};
use indicatif::{ProgressBar, ProgressStyle};

use super::cbpf_to_ebpf::{self, EbpfInsn};
use super::engines::dpf_engines::{self, DpfInterp, DpfJit, DpfJitUnmerged};
use super::engines::libpcap::{CompiledFilter, Libpcap, PcapCompiler};
use super::engines::native::NativeFlow;
use super::engines::{Demux, Tally, bpfjit, dpdk, rbpf};
use super::flow_filter::dpf_filters;
use super::flows::{self, FilterFlows};
use super::measure::{Measurement, TrialPlan, capped_packets, measure, median_us};
use super::packets::PacketArena;
use super::plot;
use super::report::{self, Row, RowKind};
use crate::synth::{self, Flow, SynthConfig};
use crate::trace::{TracePacket, read_trace};

/// Engine names, in table order.
pub const ENGINE_ORDER: [&str; 8] = [
    "dpf-jit",
    "dpf-interp",
    "dpf-jit-unmerged",
    "native",
    "libpcap",
    "bpfjit",
    "rbpf-jit",
    "dpdk-bpf-jit",
];

/// What to run.
#[derive(Clone, Debug)]
pub struct Options {
    /// Smaller trace, fewer trials, tighter caps: under 5 minutes on 2 cores.
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
}

impl Options {
    /// Whether `engine` is to be measured.
    pub fn wants(&self, engine: &str) -> bool {
        self.engines.is_empty() || self.engines.iter().any(|e| e == engine)
    }
}

/// Synthetic packets replayed: about 8.5 MB of records, well inside this machine's 32 MB L3, so
/// the replay measures the demultiplexers with headers in cache (as a NIC writing into the
/// cache delivers them), not DRAM latency: dpf-jit at 1 filter costs 2.8 ns/packet here,
/// 6.4 ns at 50,000 packets and 9 ns at 100,000 (`--packets` changes it).
pub const SYNTH_PACKETS: usize = 25_000;

/// How much to measure, derived from [`Options::quick`].
#[derive(Clone, Debug)]
pub struct Plan {
    /// The synthetic trace.
    pub synth: SynthConfig,
    /// Trials per measurement.
    pub trial: TrialPlan,
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
        if options.quick {
            Plan {
                synth: SynthConfig {
                    packets: SYNTH_PACKETS,
                    ..SynthConfig::default()
                },
                trial: TrialPlan {
                    trials: 7,
                    min_trial: Duration::from_millis(50),
                },
                sequential_budget: Duration::from_millis(250),
                sequential_floor: 5_000,
                bind_repeats: 51,
            }
        } else {
            Plan {
                synth: SynthConfig {
                    packets: SYNTH_PACKETS,
                    ..SynthConfig::default()
                },
                trial: TrialPlan {
                    trials: 11,
                    min_trial: Duration::from_millis(200),
                },
                sequential_budget: Duration::from_secs(1),
                sequential_floor: 20_000,
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

    /// Measures `engine` on the first `packets` packets (all of them when `None`; sized from a
    /// pilot replay for sequential engines) and checks its verdicts against `reference`.
    fn measure_engine(
        &mut self,
        name: &str,
        k: usize,
        engine: &mut dyn Demux,
        reference: &Reference,
        capped: bool,
    ) {
        if !self.options.wants(name) {
            return;
        }
        self.progress
            .set_message(format!("{}: {name}, {k} filters", self.trace));
        let spans = self.arena.spans();
        let count = if capped {
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
        } else {
            spans.len()
        };
        let Measurement {
            tally,
            ns_per_packet,
        } = measure(engine, self.arena, &spans[..count], self.plan.trial);
        let expected = reference.tally(count);
        let mut row = Row::new(RowKind::Demux, name);
        row.trace = Some(self.trace.to_string());
        row.filters = Some(k);
        row.packets = Some(count);
        row.matches = Some(tally.matches);
        row.ns_per_packet_median = Some(ns_per_packet.median);
        row.ns_min = Some(ns_per_packet.min);
        row.ns_max = Some(ns_per_packet.max);
        row.mpps = Some(1e3 / ns_per_packet.median);
        let mut notes = Vec::new();
        if count < spans.len() {
            notes.push(format!("first {count} of {} packets", spans.len()));
        }
        if tally != expected {
            notes.push("MISMATCH".to_string());
            self.mismatches.push(format!(
                "trace {}, {k} filters: {name} matched {} packets (filter index sum {}) where \
                 dpf-interp matched {} (sum {}) on the same {count} packets",
                self.trace,
                tally.matches,
                tally.filter_index_sum,
                expected.matches,
                expected.filter_index_sum
            ));
        }
        if !notes.is_empty() {
            row.note = Some(notes.join("; "));
        }
        self.rows.push(row);
        self.progress.inc(1);
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

/// The merged engines and the native floor, K by K; returns the reference verdicts per K.
fn merged_engines(
    run: &mut TraceRun<'_>,
    ks: &[usize],
    flows: &FilterFlows,
    filters: &[Vec<Filter>],
) -> Result<Vec<Reference>, String> {
    let mut references = Vec::new();
    for &k in ks {
        run.progress
            .set_message(format!("{}: building dpf for {k} filters", run.trace));
        let trie = dpf_engines::merged_trie(&filters[..k])?;
        let reference = Reference {
            verdicts: run
                .arena
                .spans()
                .iter()
                .map(|&s| interp::classify(&trie, &run.arena.packet(s)).map(|FilterId(i)| i))
                .collect(),
        };
        if run.options.wants("dpf-jit") {
            match dpf_engines::executable(&trie) {
                Ok(code) => {
                    run.measure_engine("dpf-jit", k, &mut DpfJit::new(code), &reference, false)
                }
                Err(e) => run.unavailable("dpf-jit", Some(k), &e),
            }
        }
        run.measure_engine(
            "dpf-interp",
            k,
            &mut DpfInterp::new(trie),
            &reference,
            false,
        );
        if k == 1 {
            let mut native = NativeFlow::new(&flows.flows[0]);
            run.measure_engine("native", k, &mut native, &reference, false);
        }
        references.push(reference);
    }
    Ok(references)
}

/// The per-filter engines, one at a time, each built once for the largest K.
fn sequential_engines(
    run: &mut TraceRun<'_>,
    ks: &[usize],
    flows: &FilterFlows,
    filters: &[Vec<Filter>],
    references: &[Reference],
) {
    let k_max = *ks.last().expect("filter counts");
    let all_k = |run: &mut TraceRun<'_>, name: &str, reason: &str| {
        if !run.options.wants(name) {
            return;
        }
        for &k in ks {
            run.unavailable(name, Some(k), reason);
            run.progress.inc(1);
        }
    };

    // dpf, unmerged.
    if run.options.wants("dpf-jit-unmerged") {
        run.progress.set_message(format!(
            "{}: compiling {k_max} separate dpf programs",
            run.trace
        ));
        match dpf_engines::unmerged_programs(&filters[..k_max]) {
            Ok(programs) => {
                for (i, &k) in ks.iter().enumerate() {
                    let mut engine = DpfJitUnmerged::new(&programs[..k]);
                    run.measure_engine("dpf-jit-unmerged", k, &mut engine, &references[i], true);
                }
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
        .set_message(format!("{}: pcap_compile of {k_max} filters", run.trace));
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
    for (i, &k) in ks.iter().enumerate() {
        run.measure_engine(
            "libpcap",
            k,
            &mut Libpcap::new(&compiled[..k]),
            &references[i],
            true,
        );
    }

    // bpfjit.
    run.progress
        .set_message(format!("{}: bpfjit of {k_max} programs", run.trace));
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
            for (i, &k) in ks.iter().enumerate() {
                let mut engine = bpfjit::BpfJit::new(&programs[..k]);
                run.measure_engine("bpfjit", k, &mut engine, &references[i], true);
            }
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
        .set_message(format!("{}: rbpf JIT of {k_max} programs", run.trace));
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
                for (i, &k) in ks.iter().enumerate() {
                    // SAFETY: every VM was loaded from `cbpf_to_ebpf::convert` output just above.
                    #[allow(unsafe_code)]
                    let mut engine = unsafe { rbpf::RbpfJit::new(&vms[..k], run.arena) };
                    run.measure_engine("rbpf-jit", k, &mut engine, &references[i], true);
                }
            }
            Err(e) => all_k(run, "rbpf-jit", &e),
        }
    }

    run.progress
        .set_message(format!("{}: rte_bpf load of {k_max} programs", run.trace));
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
                for (i, &k) in ks.iter().enumerate() {
                    let mut engine = dpdk::DpdkJit::new(&programs[..k]);
                    run.measure_engine("dpdk-bpf-jit", k, &mut engine, &references[i], true);
                }
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
    for &k in ks {
        run.progress
            .set_message(format!("{}: bind cost at {k} filters", run.trace));
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

    // Steps: per trace, K x (merged + native at 1 + sequential) measurements, plus bind per K.
    let per_trace = ks.len() * 7 + usize::from(ks[0] == 1) + ks.len();
    let progress = ProgressBar::new((per_trace * traces.len()) as u64);
    progress.set_style(
        ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {pos}/{len} {msg}")
            .expect("static template")
            .progress_chars("=> "),
    );

    let mut rows = Vec::new();
    let mut mismatches = Vec::new();
    for trace in &traces {
        let arena = PacketArena::new(&trace.packets);
        let popular = flows::flows_by_popularity(&trace.packets);
        let k_max = *ks.last().expect("filter counts");
        let drawn = flows::draw(&popular, k_max, plan.bind_repeats * 2, 0xf10e_5eed);
        let filters = filters_of(&drawn.flows);
        let mut run = TraceRun {
            options,
            trace: &trace.name,
            arena: &arena,
            plan: &plan,
            progress: &progress,
            rows: Vec::new(),
            mismatches: Vec::new(),
        };
        let references = merged_engines(&mut run, &ks, &drawn, &filters)?;
        sequential_engines(&mut run, &ks, &drawn, &filters, &references);
        if options.wants("bind") {
            bind_costs(&mut run, &ks, &filters, &drawn.spare)?;
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
                r.kind == RowKind::Bind,
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

    #[test]
    fn utc_date_is_well_formed() {
        let now = utc_now();
        assert_eq!(now.len(), "2025-01-01 00:00 UTC".len());
        assert!(now.starts_with("20"));
    }
}
