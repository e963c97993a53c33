//! The deterministic figure beside each time: the same replay under valgrind's callgrind
//! (instructions, branch mispredictions and simulated L1/LL misses per packet).
//!
//! The parent re-runs its own executable as a child under
//! `valgrind --tool=callgrind --branch-sim=yes --cache-sim=yes --collect-atstart=no
//! --toggle-collect=*callgrind_replay*`: the child regenerates the seeded synthetic trace and
//! the same filter set, builds one engine for K filters, replays the trace once untimed (the
//! simulated caches warm up as the real ones do before a timed trial), then once inside
//! [`callgrind_replay`], the only function whose costs are collected.

use std::hint::black_box;
use std::path::PathBuf;
use std::process::Command;

use dpf::FilterId;

use super::engines::dpf_engines::{self, DpfJit};
use super::engines::ebpf_map::{self, EbpfMap};
use super::engines::native_hash::NativeHash;
use super::engines::{Demux, Tally};
use super::flow_filter::dpf_filters;
use super::flows;
use super::packets::PacketArena;
use super::run::{DRAW_SEED, SYNTH_PACKETS};
use crate::synth::{self, SynthConfig};

/// The argument that makes `demux-bench` a callgrind child.
pub const CHILD_FLAG: &str = "--callgrind-child";

/// What one child measures: `engine` at `filters` filters, from a draw of `drawn` flows and
/// `spare` spares (as the parent drew them) on a synthetic trace of `packets`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Job {
    /// Engine name (one of [`super::run::COUNTED_ENGINES`]).
    pub engine: String,
    /// K.
    pub filters: usize,
    /// Flows the parent drew (its largest K).
    pub drawn: usize,
    /// Spare flows the parent drew.
    pub spare: usize,
    /// Synthetic packets.
    pub packets: usize,
}

impl Job {
    /// As one command-line word.
    pub fn to_arg(&self) -> String {
        format!(
            "{}:{}:{}:{}:{}",
            self.engine, self.filters, self.drawn, self.spare, self.packets
        )
    }

    /// From [`Job::to_arg`]'s form.
    pub fn parse(arg: &str) -> Result<Job, String> {
        let parts: Vec<&str> = arg.split(':').collect();
        let [engine, filters, drawn, spare, packets] = parts[..] else {
            return Err(format!("{arg:?}: want ENGINE:K:DRAWN:SPARE:PACKETS"));
        };
        let number = |s: &str| {
            s.parse::<usize>()
                .map_err(|e| format!("{arg:?}: {s:?}: {e}"))
        };
        let job = Job {
            engine: engine.to_string(),
            filters: number(filters)?,
            drawn: number(drawn)?,
            spare: number(spare)?,
            packets: number(packets)?,
        };
        if job.filters == 0 || job.filters > job.drawn {
            return Err(format!("{arg:?}: K must be in 1..=DRAWN"));
        }
        Ok(job)
    }
}

/// Event totals of the collected replay.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Counts {
    /// Packets replayed in the collected function.
    pub packets: u64,
    /// Packets that matched (checked against the reference by the parent).
    pub matches: u64,
    /// Instructions (Ir).
    pub instructions: u64,
    /// Conditional and indirect branch mispredictions (Bcm + Bim).
    pub branch_misses: u64,
    /// First-level misses, instruction and data (I1mr + D1mr + D1mw).
    pub l1_misses: u64,
    /// Last-level misses (ILmr + DLmr + DLmw).
    pub ll_misses: u64,
}

/// [`Counts`] divided by the packets.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PerPacket {
    /// Instructions per packet.
    pub instructions: f64,
    /// Branch mispredictions per packet.
    pub branch_misses: f64,
    /// L1 misses per packet.
    pub l1_misses: f64,
    /// LL misses per packet.
    pub ll_misses: f64,
}

impl Counts {
    /// Per packet.
    pub fn per_packet(&self) -> PerPacket {
        let n = self.packets.max(1) as f64;
        PerPacket {
            instructions: self.instructions as f64 / n,
            branch_misses: self.branch_misses as f64 / n,
            l1_misses: self.l1_misses as f64 / n,
            ll_misses: self.ll_misses as f64 / n,
        }
    }
}

/// Reads the totals of a callgrind output file: its `events:` line names the columns of its
/// `summary:` (or `totals:`) line.
pub fn parse_totals(text: &str) -> Result<Counts, String> {
    let mut events: Option<Vec<&str>> = None;
    let mut totals: Option<Vec<u64>> = None;
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("events:") {
            events = Some(rest.split_whitespace().collect());
        } else if let Some(rest) = line
            .strip_prefix("summary:")
            .or_else(|| line.strip_prefix("totals:"))
        {
            totals = Some(
                rest.split_whitespace()
                    .map(|v| v.parse::<u64>().map_err(|e| format!("{v:?}: {e}")))
                    .collect::<Result<_, _>>()?,
            );
        }
    }
    let events = events.ok_or("no events: line")?;
    let totals = totals.ok_or("no summary: line")?;
    let get = |name: &str| {
        events
            .iter()
            .position(|e| *e == name)
            .map_or(0, |i| totals.get(i).copied().unwrap_or(0))
    };
    if !events.contains(&"Ir") {
        return Err("no Ir event".into());
    }
    Ok(Counts {
        instructions: get("Ir"),
        branch_misses: get("Bcm") + get("Bim"),
        l1_misses: get("I1mr") + get("D1mr") + get("D1mw"),
        ll_misses: get("ILmr") + get("DLmr") + get("DLmw"),
        ..Counts::default()
    })
}

/// The one function callgrind collects: one replay of every packet.
#[inline(never)]
pub fn callgrind_replay(engine: &mut dyn Demux, arena: &PacketArena) -> Tally {
    black_box(engine.replay(arena, black_box(arena.spans())))
}

/// Runs `job` under callgrind and reads its counts (`matches` and `packets` from the child's
/// output).
pub fn count(job: &Job) -> Result<Counts, String> {
    let exe = std::env::current_exe().map_err(|e| format!("own executable: {e}"))?;
    let out: PathBuf = std::env::temp_dir().join(format!(
        "demux-callgrind-{}-{}-{}.out",
        std::process::id(),
        job.engine,
        job.filters
    ));
    let output = Command::new("valgrind")
        .args([
            "--tool=callgrind",
            "--branch-sim=yes",
            "--cache-sim=yes",
            "--collect-atstart=no",
            "--toggle-collect=*callgrind_replay*",
        ])
        .arg(format!("--callgrind-out-file={}", out.display()))
        .arg(&exe)
        .arg(CHILD_FLAG)
        .arg(job.to_arg())
        .output()
        .map_err(|e| format!("valgrind: {e} (Debian package valgrind)"))?;
    let text = std::fs::read_to_string(&out);
    let _ = std::fs::remove_file(&out);
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let last = stderr.lines().rev().find(|l| !l.trim().is_empty());
        return Err(format!(
            "child {}: {}",
            output.status,
            last.unwrap_or("no output")
        ));
    }
    let mut counts = parse_totals(&text.map_err(|e| format!("{}: {e}", out.display()))?)?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let (packets, matches) = parse_child_line(&stdout)?;
    counts.packets = packets;
    counts.matches = matches;
    Ok(counts)
}

/// [`count`] for every job, `workers` children at a time; results in job order.
pub fn count_all(
    jobs: &[Job],
    workers: usize,
    progress: &indicatif::ProgressBar,
) -> Vec<Result<Counts, String>> {
    let next = std::sync::atomic::AtomicUsize::new(0);
    let results: Vec<std::sync::Mutex<Option<Result<Counts, String>>>> =
        jobs.iter().map(|_| std::sync::Mutex::new(None)).collect();
    std::thread::scope(|scope| {
        for _ in 0..workers.max(1) {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some(job) = jobs.get(i) else {
                        break;
                    };
                    let result = count(job);
                    if let Ok(mut slot) = results[i].lock() {
                        *slot = Some(result);
                    }
                    progress.inc(1);
                }
            });
        }
    });
    results
        .into_iter()
        .map(|m| {
            m.into_inner()
                .ok()
                .flatten()
                .unwrap_or_else(|| Err("worker died".into()))
        })
        .collect()
}

fn parse_child_line(stdout: &str) -> Result<(u64, u64), String> {
    let line = stdout
        .lines()
        .find(|l| l.starts_with("callgrind-child "))
        .ok_or("the child printed no result")?;
    let words: Vec<&str> = line.split_whitespace().collect();
    let [_, "packets", packets, "matches", matches] = words[..] else {
        return Err(format!("child said {line:?}"));
    };
    let n = |s: &str| s.parse::<u64>().map_err(|e| format!("{s:?}: {e}"));
    Ok((n(packets)?, n(matches)?))
}

/// The child's side: builds the job's engine, replays once to warm up, once collected.
pub fn child(job: &Job) -> Result<(), String> {
    let trace = synth::generate(&SynthConfig {
        packets: if job.packets == 0 {
            SYNTH_PACKETS
        } else {
            job.packets
        },
        ..SynthConfig::default()
    });
    let arena = PacketArena::new(&trace.packets);
    let popular = flows::flows_by_popularity(&trace.packets);
    let drawn = flows::draw(&popular, job.drawn, job.spare, DRAW_SEED);
    let flows = &drawn.flows[..job.filters];
    let tally = match job.engine.as_str() {
        "dpf-jit" => {
            let filters: Vec<_> = flows
                .iter()
                .enumerate()
                .map(|(i, f)| dpf_filters(f, FilterId(i as u32)))
                .collect();
            let trie = dpf_engines::merged_trie(&filters)?;
            let mut engine = DpfJit::new(dpf_engines::executable(&trie)?);
            replay_twice(&mut engine, &arena)
        }
        "native-hash" => replay_twice(&mut NativeHash::new(flows), &arena),
        "ebpf-map" => {
            let map = ebpf_map::flow_map(flows);
            let code = ebpf_map::encoded_program(&map);
            let vm = ebpf_map::load(&code)?;
            // SAFETY: `vm` was loaded from `encoded_program(&map)` just above.
            #[allow(unsafe_code)]
            let mut engine = unsafe { EbpfMap::new(vm, &map, &arena) };
            replay_twice(&mut engine, &arena)
        }
        other => return Err(format!("callgrind counts no engine {other:?}")),
    };
    println!(
        "callgrind-child packets {} matches {}",
        arena.len(),
        tally.matches
    );
    Ok(())
}

fn replay_twice(engine: &mut dyn Demux, arena: &PacketArena) -> Tally {
    let warm = engine.replay(arena, arena.spans());
    let counted = callgrind_replay(engine, arena);
    debug_assert_eq!(warm, counted);
    counted
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jobs_round_trip_and_bad_ones_are_refused() {
        let job = Job {
            engine: "dpf-jit".into(),
            filters: 10,
            drawn: 100,
            spare: 4,
            packets: 25_000,
        };
        assert_eq!(Job::parse(&job.to_arg()).unwrap(), job);
        assert!(Job::parse("dpf-jit:0:100:4:1").is_err());
        assert!(Job::parse("dpf-jit:101:100:4:1").is_err());
        assert!(Job::parse("dpf-jit:1:x:4:1").is_err());
        assert!(Job::parse("dpf-jit:1").is_err());
    }

    #[test]
    fn totals_are_read_by_event_name() {
        let text = "version: 1\nevents: Ir Dr Dw I1mr D1mr D1mw ILmr DLmr DLmw Bc Bcm Bi Bim\n\
                    fn=foo\n1 2 3\nsummary: 1000 10 20 1 2 3 4 5 6 100 7 9 1\n";
        let c = parse_totals(text).unwrap();
        assert_eq!(c.instructions, 1000);
        assert_eq!(c.branch_misses, 8);
        assert_eq!(c.l1_misses, 6);
        assert_eq!(c.ll_misses, 15);
        assert!(parse_totals("summary: 1\n").is_err());
        assert_eq!(
            parse_child_line("x\ncallgrind-child packets 25 matches 7\n").unwrap(),
            (25, 7)
        );
        assert!(parse_child_line("nothing").is_err());
    }
}
