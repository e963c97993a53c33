//! From guest consoles to results: reads the `BENCH` lines of one boot
//! ([`bench_common::protocol`]) into a [`GuestReport`], pairs exo's and Linux's reports of one
//! mode into [`Row`]s, and renders the table and `kernel.json`.
use bench_common::Op;
use bench_common::ops::REPEATS;
use bench_common::protocol::{self, Line, Sample};
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write;

/// How guest time was measured.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// `-icount shift=0,sleep=off`: the TSC advances once per guest instruction, so a
    /// difference of two readings counts instructions, deterministically.
    Icount,
    /// No icount: the TSC is the host's, read through the emulator (wall time).
    Wall,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::Icount => "icount",
            Mode::Wall => "wall",
        }
    }

    /// The unit of a per-operation value in this mode.
    pub fn unit(self) -> &'static str {
        match self {
            Mode::Icount => "guest_instructions",
            Mode::Wall => "tsc_ticks",
        }
    }
}

/// What one boot printed.
#[derive(Debug, Default)]
pub struct GuestReport {
    /// The kernel its `BENCH begin` line named.
    pub kernel: Option<String>,
    pub samples: BTreeMap<Op, Vec<Sample>>,
    /// Operations the guest said it cannot run, with its reason.
    pub unavailable: BTreeMap<Op, String>,
    /// It printed `BENCH done`.
    pub done: bool,
    /// Lines with the marker that did not parse.
    pub malformed: Vec<String>,
}

/// Reads every protocol line of a console capture; other lines are ignored.
pub fn parse_serial(serial: &str) -> GuestReport {
    let mut report = GuestReport::default();
    for text in serial.lines() {
        match protocol::parse_line(text) {
            None => {}
            Some(Err(error)) => report
                .malformed
                .push(format!("{error} in {:?}", text.trim())),
            Some(Ok(Line::Begin { kernel })) => report.kernel = Some(kernel.to_string()),
            Some(Ok(Line::Sample(sample))) => {
                report.samples.entry(sample.op).or_default().push(sample)
            }
            Some(Ok(Line::Unavailable { op, reason })) => {
                report.unavailable.insert(op, reason.to_string());
            }
            Some(Ok(Line::Done)) => report.done = true,
        }
    }
    report
}

impl GuestReport {
    /// Median over the repeats of cycles per operation.
    pub fn median(&self, op: Op) -> Option<f64> {
        let mut values: Vec<f64> = self
            .samples
            .get(&op)?
            .iter()
            .map(Sample::per_iteration)
            .collect();
        values.sort_by(f64::total_cmp);
        let middle = values.len() / 2;
        match values.len() {
            0 => None,
            length if length % 2 == 1 => Some(values[middle]),
            _ => Some((values[middle - 1] + values[middle]) / 2.0),
        }
    }

    /// Lowest and highest cycles per operation over the repeats.
    pub fn range(&self, op: Op) -> Option<(f64, f64)> {
        let values = self.samples.get(&op)?.iter().map(Sample::per_iteration);
        values.fold(None, |range, value| match range {
            None => Some((value, value)),
            Some((low, high)) => Some((f64::min(low, value), f64::max(high, value))),
        })
    }

    /// The result checksum of `op`, if every repeat reported the same one.
    pub fn check(&self, op: Op) -> Result<Option<u64>, String> {
        let mut checks = self.samples.get(&op).into_iter().flatten().map(|s| s.check);
        let first = checks.next().flatten();
        if checks.all(|check| check == first) {
            Ok(first)
        } else {
            Err(format!("{}: checksums differ between repeats", op.name()))
        }
    }

    /// Why the report is not a complete run, if it is not.
    pub fn problem(&self) -> Option<String> {
        if let Some(line) = self.malformed.first() {
            return Some(format!("malformed BENCH line: {line}"));
        }
        if !self.done {
            return Some("no `BENCH done`: the run stopped early".into());
        }
        for (op, samples) in &self.samples {
            if samples.len() != REPEATS as usize {
                return Some(format!(
                    "{}: {} samples, expected {REPEATS}",
                    op.name(),
                    samples.len()
                ));
            }
        }
        None
    }
}

/// One kernel's outcome in one mode.
#[derive(Debug)]
pub enum Side {
    /// It booted and printed this.
    Ran(GuestReport),
    /// It did not run (not requested, not built, boot failed): why.
    Missing(String),
}

impl Side {
    /// The lowest and highest per-operation value of `op` over the repeats.
    fn range(&self, op: Op) -> (Option<f64>, Option<f64>) {
        match self {
            Side::Ran(report) => report.range(op).unzip(),
            Side::Missing(_) => (None, None),
        }
    }

    /// The per-operation value of `op`, or the note that explains its absence.
    fn value(&self, op: Op) -> (Option<f64>, Option<String>) {
        match self {
            Side::Missing(reason) => (None, Some(reason.clone())),
            Side::Ran(report) => match report.median(op) {
                Some(value) => (Some(value), None),
                None => match report.unavailable.get(&op) {
                    Some(reason) => (None, Some(reason.clone())),
                    None => (None, Some("not measured".into())),
                },
            },
        }
    }
}

/// What issue #5 asks of an operation's ratio (linux / exo).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Target {
    /// exo at least this many times cheaper.
    AtLeast(f64),
    /// The same cost within this fraction either way.
    Within(f64),
}

impl Target {
    pub fn met(self, ratio: f64) -> bool {
        match self {
            Target::AtLeast(factor) => ratio >= factor,
            Target::Within(fraction) => (ratio - 1.0).abs() <= fraction,
        }
    }

    /// Where the plot marks it.
    pub fn mark(self) -> f64 {
        match self {
            Target::AtLeast(factor) => factor,
            Target::Within(_) => 1.0,
        }
    }
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::AtLeast(factor) => write!(f, ">= {factor}x"),
            Target::Within(fraction) => write!(f, "within {}%", fraction * 100.0),
        }
    }
}

/// The targets: null syscall 5x cheaper than getpid, exception dispatch and the protected
/// control transfer round trip 20x cheaper, the Appel-Li trap 10x, matmul within 5%.
pub fn target(op: Op) -> Option<Target> {
    match op {
        Op::NullSyscall => Some(Target::AtLeast(5.0)),
        Op::ExceptionDispatch | Op::PctRoundTrip | Op::PctVsEventfd => Some(Target::AtLeast(20.0)),
        Op::AppelLiTrap => Some(Target::AtLeast(10.0)),
        Op::Matmul => Some(Target::Within(0.05)),
        _ => None,
    }
}

/// One line of the table and one object of `kernel.json`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Row {
    pub op: &'static str,
    pub mode: &'static str,
    /// QEMU accelerator of the boots (`tcg`, `kvm`).
    pub accel: String,
    /// Median per-operation cost on exo, in `unit`; null when exo could not run it.
    pub exo: Option<f64>,
    pub linux: Option<f64>,
    /// linux / exo: how many times cheaper the operation is on exo.
    pub ratio: Option<f64>,
    /// The spread of the repeats behind `exo` and `linux` (wall time on a busy host varies;
    /// icount does not).
    pub exo_min: Option<f64>,
    pub exo_max: Option<f64>,
    pub linux_min: Option<f64>,
    pub linux_max: Option<f64>,
    pub unit: &'static str,
    /// What one operation is.
    pub per: &'static str,
    /// Operations per timed run.
    pub iterations: u64,
    /// Timed runs per kernel (the value is their median).
    pub repeats: u32,
    /// The ratio asked for (`>= 5x`, `within 5%`), if any.
    pub target: Option<String>,
    /// Whether `ratio` meets it (null without a ratio or a target).
    pub meets_target: Option<bool>,
    pub exo_note: Option<String>,
    pub linux_note: Option<String>,
}

/// The operation whose exo measurement a row shows: exo has one protected control transfer,
/// compared with both a pipe and an eventfd round trip.
pub fn exo_counterpart(op: Op) -> Op {
    match op {
        Op::PctVsEventfd => Op::PctRoundTrip,
        other => other,
    }
}

/// The operation whose Linux measurement a row shows: getpid is compared with both exo's null
/// call and its `self_id`, the SIGILL round trip with both exo exception paths.
pub fn linux_counterpart(op: Op) -> Op {
    match op {
        Op::SelfIdVsGetpid => Op::NullSyscall,
        Op::ExceptionDispatchRawEntry => Op::ExceptionDispatch,
        other => other,
    }
}

/// The rows of one mode, one per operation in report order.
pub fn rows(mode: Mode, accel: &str, exo: &Side, linux: &Side) -> Vec<Row> {
    Op::ALL
        .into_iter()
        .map(|op| {
            let (exo_value, exo_note) = exo.value(exo_counterpart(op));
            let (linux_value, mut linux_note) = linux.value(linux_counterpart(op));
            let (exo_min, exo_max) = exo.range(exo_counterpart(op));
            let (linux_min, linux_max) = linux.range(linux_counterpart(op));
            let ratio = match (exo_value, linux_value) {
                (Some(exo), Some(linux)) if exo > 0.0 => Some(linux / exo),
                _ => None,
            };
            if let (Side::Ran(exo), Side::Ran(linux)) = (exo, linux)
                && let (Ok(Some(a)), Ok(Some(b))) = (exo.check(op), linux.check(op))
                && a != b
            {
                linux_note = Some(format!("result checksum {b:#x} differs from exo's {a:#x}"));
            }
            Row {
                op: op.name(),
                mode: mode.name(),
                accel: accel.to_string(),
                exo: exo_value,
                linux: linux_value,
                ratio,
                exo_min,
                exo_max,
                linux_min,
                linux_max,
                unit: mode.unit(),
                per: op.per(),
                iterations: op.iterations(),
                repeats: REPEATS,
                target: target(op).map(|target| target.to_string()),
                meets_target: target(op)
                    .zip(ratio)
                    .map(|(target, ratio)| target.met(ratio)),
                exo_note,
                linux_note,
            }
        })
        .collect()
}

fn cell(value: Option<f64>) -> String {
    match value {
        Some(value) if value >= 100.0 => format!("{value:.0}"),
        Some(value) => format!("{value:.1}"),
        None => "-".into(),
    }
}

/// Printed under the table: how to read the two modes.
pub const LEGEND: &str = "\
Values are medians of 5 runs, per operation, including the shared loop's own instructions.
icount: guest instructions (TSC under -icount shift=0): deterministic, the figure to judge by.
wall: the host's TSC seen through TCG: emulation cost, not hardware cost, and it keeps counting
while QEMU waits for a busy host's CPU (see the min/max in kernel.json).";

/// The table printed at the end: op, mode, exo, linux, linux/exo, and notes.
pub fn table(rows: &[Row]) -> String {
    let mut lines = vec![[
        "op".to_string(),
        "mode".into(),
        "exo".into(),
        "linux".into(),
        "linux/exo".into(),
        "target".into(),
        "unit per".into(),
        "note".into(),
    ]];
    for row in rows {
        let mut notes = Vec::new();
        if let Some(note) = &row.exo_note {
            notes.push(format!("exo: {note}"));
        }
        if let Some(note) = &row.linux_note {
            notes.push(format!("linux: {note}"));
        }
        let mode = if row.accel == "tcg" {
            row.mode.to_string()
        } else {
            format!("{} ({})", row.mode, row.accel)
        };
        lines.push([
            row.op.to_string(),
            mode,
            cell(row.exo),
            cell(row.linux),
            row.ratio.map_or("-".into(), |ratio| format!("{ratio:.2}x")),
            match (&row.target, row.meets_target) {
                (Some(target), Some(true)) => format!("{target} met"),
                (Some(target), Some(false)) => format!("{target} MISSED"),
                (Some(target), None) => target.clone(),
                (None, _) => String::new(),
            },
            format!("{} / {}", row.unit, row.per),
            notes.join("; "),
        ]);
    }
    let mut widths = [0usize; 8];
    for line in &lines {
        for (width, text) in widths.iter_mut().zip(line) {
            *width = (*width).max(text.chars().count());
        }
    }
    let mut out = String::new();
    for line in &lines {
        let mut text = String::new();
        for (index, (value, width)) in line.iter().zip(widths).enumerate() {
            // Numbers right-aligned, text left-aligned; no padding after the last column.
            let _ = match index {
                2..=4 => write!(text, "{value:>width$}  "),
                7 => write!(text, "{value}"),
                _ => write!(text, "{value:<width$}  "),
            };
        }
        out.push_str(text.trim_end());
        out.push('\n');
    }
    out
}

/// `kernel.json`: an array with one object per row.
pub fn json(rows: &[Row]) -> String {
    serde_json::to_string_pretty(rows).expect("rows serialize") + "\n"
}

#[cfg(test)]
mod tests {
    use super::*;

    const LINUX: &str = "\
[    0.000000] Linux version 6.1.0-56-amd64
linux-init: PID 1, forking the benchmark process
BENCH begin kernel=linux
BENCH op=null_syscall repeat=0 iters=100 cycles=30900
BENCH op=null_syscall repeat=1 iters=100 cycles=31000
BENCH op=null_syscall repeat=2 iters=100 cycles=30800
BENCH op=null_syscall repeat=3 iters=100 cycles=90000
BENCH op=null_syscall repeat=4 iters=100 cycles=30950
BENCH op=pct_round_trip repeat=0 iters=10 cycles=124190
BENCH op=pct_vs_eventfd repeat=0 iters=10 cycles=100000
BENCH op=matmul repeat=0 iters=1 cycles=2000000 check=0xabc
BENCH done
";

    const EXO: &str = "\
BENCH begin kernel=exo
BENCH op=null_syscall repeat=0 iters=100 cycles=6000
BENCH op=pct_round_trip unavailable=\"primitive not implemented\"
BENCH op=matmul repeat=0 iters=1 cycles=2000000 check=0xabc
BENCH done
";

    #[test]
    fn reads_a_console_capture() {
        let report = parse_serial(LINUX);
        assert_eq!(report.kernel.as_deref(), Some("linux"));
        assert!(report.done);
        assert!(report.malformed.is_empty());
        // Median of 309, 310, 308, 900, 309.5: the outlier does not move it.
        assert_eq!(report.median(Op::NullSyscall), Some(309.5));
        assert_eq!(report.median(Op::PctRoundTrip), Some(12419.0));
        assert_eq!(report.range(Op::NullSyscall), Some((308.0, 900.0)));
        assert_eq!(report.range(Op::AppelLiTrap), None);
        assert_eq!(report.median(Op::AppelLiTrap), None);
        assert_eq!(report.check(Op::Matmul), Ok(Some(0xabc)));
        // One repeat where five are expected.
        assert!(report.problem().unwrap().contains("pct_round_trip"));
    }

    #[test]
    fn even_counts_take_the_mean_of_the_middle_two() {
        let report = parse_serial(
            "BENCH op=matmul repeat=0 iters=1 cycles=10\nBENCH op=matmul repeat=1 iters=1 cycles=20\n",
        );
        assert_eq!(report.median(Op::Matmul), Some(15.0));
        assert!(report.problem().unwrap().contains("done"));
    }

    #[test]
    fn malformed_lines_and_differing_checksums_are_problems() {
        let report = parse_serial("BENCH op=nosuch repeat=0 iters=1 cycles=1\nBENCH done\n");
        assert!(report.problem().unwrap().contains("unknown op"));
        let report = parse_serial(
            "BENCH op=matmul repeat=0 iters=1 cycles=1 check=0x1\n\
             BENCH op=matmul repeat=1 iters=1 cycles=1 check=0x2\n",
        );
        assert!(report.check(Op::Matmul).is_err());
    }

    #[test]
    fn rows_pair_the_kernels_and_say_why_a_value_is_missing() {
        let exo = Side::Ran(parse_serial(EXO));
        let linux = Side::Ran(parse_serial(LINUX));
        let rows = rows(Mode::Icount, "tcg", &exo, &linux);
        assert_eq!(rows.len(), Op::ALL.len());
        let row = |name: &str| rows.iter().find(|row| row.op == name).unwrap();

        let null = row("null_syscall");
        assert_eq!((null.exo, null.linux), (Some(60.0), Some(309.5)));
        assert!((null.ratio.unwrap() - 309.5 / 60.0).abs() < 1e-9);
        assert_eq!(null.unit, "guest_instructions");

        let pct = row("pct_round_trip");
        assert_eq!(pct.exo, None);
        assert_eq!(pct.ratio, None);
        assert_eq!(pct.exo_note.as_deref(), Some("primitive not implemented"));
        assert_eq!(pct.linux, Some(12419.0));
        // The eventfd row compares against exo's pct_round_trip, unavailable too.
        assert_eq!(
            row("pct_vs_eventfd").exo_note.as_deref(),
            Some("primitive not implemented")
        );
        assert_eq!(
            row("appel_li_trap").linux_note.as_deref(),
            Some("not measured")
        );
        assert!(!Target::AtLeast(20.0).met(19.9));
        assert!(Target::Within(0.05).met(0.96) && !Target::Within(0.05).met(1.06));
        let matmul = row("matmul");
        assert_eq!(matmul.ratio, Some(1.0));
        assert_eq!(matmul.linux_note, None);

        let missing = Side::Missing("kbench is not built".into());
        let rows = super::rows(Mode::Wall, "tcg", &missing, &linux);
        assert!(
            rows.iter()
                .all(|row| row.exo.is_none()
                    && row.exo_note.as_deref() == Some("kbench is not built"))
        );
        assert_eq!(rows[0].unit, "tsc_ticks");
    }

    #[test]
    fn differing_matmul_results_are_flagged() {
        let exo = Side::Ran(parse_serial(&EXO.replace("0xabc", "0xabd")));
        let linux = Side::Ran(parse_serial(LINUX));
        let rows = rows(Mode::Icount, "tcg", &exo, &linux);
        let matmul = rows.iter().find(|row| row.op == "matmul").unwrap();
        assert!(matmul.linux_note.as_deref().unwrap().contains("differs"));
    }

    #[test]
    fn table_and_json_carry_every_row() {
        let exo = Side::Ran(parse_serial(EXO));
        let linux = Side::Ran(parse_serial(LINUX));
        let rows = rows(Mode::Icount, "tcg", &exo, &linux);
        let table = table(&rows);
        assert_eq!(table.lines().count(), rows.len() + 1);
        assert!(table.contains("5.16x"), "{table}");
        assert!(table.contains(">= 5x met"), "{table}");
        assert!(table.contains("within 5% met"), "{table}");
        assert!(table.contains("exo: primitive not implemented"));
        let json: serde_json::Value = serde_json::from_str(&json(&rows)).unwrap();
        let array = json.as_array().unwrap();
        assert_eq!(array.len(), rows.len());
        assert_eq!(array[0]["op"], "null_syscall");
        assert_eq!(array[0]["mode"], "icount");
        assert_eq!(array[0]["exo"], 60.0);
        assert_eq!(array[0]["linux"], 309.5);
        assert_eq!(array[0]["iterations"], Op::NullSyscall.iterations());
        assert_eq!(array[0]["linux_min"], 308.0);
        assert_eq!(array[0]["linux_max"], 900.0);
        assert_eq!(array[0]["exo_min"], 60.0);
        assert_eq!(array[4]["op"], "pct_round_trip");
        assert!(array[4]["exo"].is_null());
        assert_eq!(array[0]["target"], ">= 5x");
        assert_eq!(array[0]["meets_target"], true);
        assert!(array[4]["meets_target"].is_null());
    }
}
