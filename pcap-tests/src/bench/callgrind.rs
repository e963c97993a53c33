//! The deterministic figure beside each time: the same replay under valgrind's callgrind
//! (instructions, branch mispredictions and simulated L1/LL misses per packet).
//!
//! The parent re-runs its own executable as a child under
//! `valgrind --tool=callgrind --branch-sim=yes --cache-sim=yes --instr-atstart=no
//! --collect-atstart=no --toggle-collect=*callgrind_replay*`: the child regenerates the seeded
//! synthetic trace and the same flows, reads the parent's dpf filters from a file of their wire
//! encodings (compiling 100,000 expressions again would take minutes under valgrind), builds
//! one engine for K filters, asks callgrind to start instrumenting (a client request: until
//! then the child runs uninstrumented, several times faster), replays the trace once (the
//! simulated caches warm up as the real ones do before a timed trial), then once inside
//! [`callgrind_replay`], the only function whose costs are collected.
//!
//! The one `unsafe` here is that client request, valgrind's "magic sequence" of no-op
//! instructions.
#![allow(unsafe_code)]

use std::hint::black_box;
use std::path::PathBuf;
use std::process::Command;

use super::engines::dpf_engines::{self, DpfJit};
use super::engines::ebpf_map::{self, EbpfMap};
use super::engines::native_hash::NativeHash;
use super::engines::{Demux, Tally};
use super::flows;
use super::packets::PacketArena;
use super::run::{DRAW_SEED, SYNTH_PACKETS, synth_config};
use crate::synth;

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
    /// The parent's dpf filters ([`write_filters`]).
    pub filters_file: PathBuf,
}

impl Job {
    /// As one command-line word.
    pub fn to_arg(&self) -> String {
        format!(
            "{}:{}:{}:{}:{}:{}",
            self.engine,
            self.filters,
            self.drawn,
            self.spare,
            self.packets,
            self.filters_file.display()
        )
    }

    /// From [`Job::to_arg`]'s form.
    pub fn parse(arg: &str) -> Result<Job, String> {
        let parts: Vec<&str> = arg.splitn(6, ':').collect();
        let [engine, filters, drawn, spare, packets, file] = parts[..] else {
            return Err(format!("{arg:?}: want ENGINE:K:DRAWN:SPARE:PACKETS:FILE"));
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
            filters_file: PathBuf::from(file),
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
            "--instr-atstart=no",
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

/// Writes every flow's filters, in order, as wire encodings: per flow a `u32` count, then per
/// filter a `u32` length and the bytes.
pub fn write_filters(path: &std::path::Path, filters: &[Vec<dpf::Filter>]) -> Result<(), String> {
    let mut bytes = Vec::new();
    for flow in filters {
        bytes.extend_from_slice(&(flow.len() as u32).to_le_bytes());
        for filter in flow {
            let encoded = dpf::wire::encode(filter);
            bytes.extend_from_slice(&(encoded.len() as u32).to_le_bytes());
            bytes.extend_from_slice(&encoded);
        }
    }
    std::fs::write(path, bytes).map_err(|e| format!("{}: {e}", path.display()))
}

/// The first `k` flows' filters from [`write_filters`]' file, decoded and verified again.
pub fn read_filters(path: &std::path::Path, k: usize) -> Result<Vec<Vec<dpf::Filter>>, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut at = 0usize;
    let word = |at: &mut usize| -> Result<usize, String> {
        let b = bytes
            .get(*at..*at + 4)
            .ok_or_else(|| format!("{}: cut short at {at}", path.display()))?;
        *at += 4;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
    };
    let mut flows = Vec::with_capacity(k);
    while flows.len() < k {
        let count = word(&mut at)?;
        let mut flow = Vec::with_capacity(count);
        for _ in 0..count {
            let len = word(&mut at)?;
            let encoded = bytes
                .get(at..at + len)
                .ok_or_else(|| format!("{}: filter cut short at {at}", path.display()))?;
            at += len;
            let filter = dpf::wire::decode(encoded)
                .map_err(|e| format!("{}: {e:?}", path.display()))?
                .verify()
                .map_err(|e| format!("{}: {e}", path.display()))?;
            flow.push(filter);
        }
        flows.push(flow);
    }
    Ok(flows)
}

/// `CALLGRIND_START_INSTRUMENTATION` (callgrind.h): `VG_USERREQ_TOOL_BASE('C','T') + 4`.
const START_INSTRUMENTATION: u64 = (0x43 << 24) | (0x54 << 16) | 4;

/// Asks callgrind to start instrumenting; a no-op outside valgrind.
fn start_instrumentation() {
    let request: [u64; 6] = [START_INSTRUMENTATION, 0, 0, 0, 0, 0];
    let mut result: u64 = 0;
    // SAFETY: valgrind's amd64 client-request sequence (valgrind.h): four rotations of rdi by
    // 3 + 13 + 61 + 51 = 128 bits (rdi comes back unchanged) and `xchg rbx, rbx` (a no-op).
    // Natively nothing happens; under valgrind the core reads the six words `rax` points to
    // (alive on this stack) and puts the answer in rdx. No memory is written, no other
    // register is changed.
    unsafe {
        std::arch::asm!(
            "rol rdi, 3",
            "rol rdi, 13",
            "rol rdi, 61",
            "rol rdi, 51",
            "xchg rbx, rbx",
            in("rax") request.as_ptr(),
            inout("rdx") result,
            inout("rdi") 0u64 => _,
            options(nostack, preserves_flags, readonly),
        );
    }
    black_box(result);
}

/// The child's side: builds the job's engine, replays once to warm up, once collected.
pub fn child(job: &Job) -> Result<(), String> {
    let trace = synth::generate(&synth_config(if job.packets == 0 {
        SYNTH_PACKETS
    } else {
        job.packets
    }));
    let arena = PacketArena::new(&trace.packets);
    let popular = flows::flows_by_popularity(&trace.packets);
    let drawn = flows::draw(&popular, job.drawn, job.spare, DRAW_SEED);
    let flows = &drawn.flows[..job.filters];
    let tally = match job.engine.as_str() {
        "dpf-jit" => {
            let filters = read_filters(&job.filters_file, job.filters)?;
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
    start_instrumentation();
    let warm = engine.replay(arena, arena.spans());
    let counted = callgrind_replay(engine, arena);
    debug_assert_eq!(warm, counted);
    counted
}

#[cfg(test)]
mod tests {
    use super::*;
    use dpf::FilterId;

    #[test]
    fn jobs_round_trip_and_bad_ones_are_refused() {
        let job = Job {
            engine: "dpf-jit".into(),
            filters: 10,
            drawn: 100,
            spare: 4,
            packets: 25_000,
            filters_file: PathBuf::from("/tmp/a:b"),
        };
        assert_eq!(Job::parse(&job.to_arg()).unwrap(), job);
        assert!(Job::parse("dpf-jit:0:100:4:1:f").is_err());
        assert!(Job::parse("dpf-jit:101:100:4:1:f").is_err());
        assert!(Job::parse("dpf-jit:1:x:4:1:f").is_err());
        assert!(Job::parse("dpf-jit:1:1:4:1").is_err());
        assert!(Job::parse("dpf-jit:1").is_err());
    }

    #[test]
    fn filters_survive_the_file_and_a_cut_file_is_refused() {
        let flows: Vec<Vec<dpf::Filter>> = [
            "ip and tcp and src host 10.0.0.1 and dst port 80",
            "vlan 5 and ip6 and udp and src host ::1 and dst port 53",
        ]
        .iter()
        .enumerate()
        .map(|(i, e)| dpf::frontend::compile(e, FilterId(i as u32)).unwrap())
        .collect();
        let path = std::env::temp_dir().join(format!("callgrind-filters-{}", std::process::id()));
        write_filters(&path, &flows).unwrap();
        assert_eq!(read_filters(&path, 2).unwrap(), flows);
        assert_eq!(read_filters(&path, 1).unwrap(), flows[..1]);
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() - 3]).unwrap();
        assert!(read_filters(&path, 2).is_err());
        let _ = std::fs::remove_file(&path);
        // Natively the client request does nothing.
        start_instrumentation();
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
