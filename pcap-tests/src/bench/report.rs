//! Results: rows for `demux.json`, the terminal table, and the issue's targets checked against
//! what was measured.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

/// What a row records.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RowKind {
    /// Packets replayed through a demultiplexer.
    Demux,
    /// Binding and unbinding one filter in a live set.
    Bind,
    /// An engine that could not run, with the reason in `note`.
    Unavailable,
    /// One of the issue's targets, checked.
    Check,
    /// The size of dpf's generated code and tables for K filters.
    Size,
}

/// One line of `demux.json`. Fields that do not apply to the kind are left out.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Row {
    /// What the row records.
    pub kind: RowKind,
    /// Engine name (`dpf-jit`, `libpcap`, ...), or the check's name.
    pub engine: String,
    /// Number of flow filters bound.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filters: Option<usize>,
    /// Trace name (`synth`, or the pcap's file name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace: Option<String>,
    /// Packets replayed per trial.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub packets: Option<usize>,
    /// Packets some filter matched, in one replay.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub matches: Option<u64>,
    /// Median over trials of nanoseconds per packet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ns_per_packet_median: Option<f64>,
    /// Fastest trial.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ns_min: Option<f64>,
    /// Slowest trial.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ns_max: Option<f64>,
    /// Interquartile range of the per-round samples.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ns_iqr: Option<f64>,
    /// Rounds (one sample each) the median is over.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rounds: Option<usize>,
    /// Callgrind: instructions per packet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instructions_per_packet: Option<f64>,
    /// Callgrind: mispredicted branches (conditional and indirect) per packet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branch_misses_per_packet: Option<f64>,
    /// Callgrind: simulated L1 misses (instruction and data) per packet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub l1_misses_per_packet: Option<f64>,
    /// Callgrind: simulated last-level misses per packet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ll_misses_per_packet: Option<f64>,
    /// Size rows: bytes of instructions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code_bytes: Option<usize>,
    /// Size rows: bytes of tables.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table_bytes: Option<usize>,
    /// Size rows: table bytes divided by the filters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table_bytes_per_filter: Option<f64>,
    /// Millions of packets per second at the median.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mpps: Option<f64>,
    /// Median microseconds to bind one more filter (including new code, mapped).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub insert_us_median: Option<f64>,
    /// Median microseconds to unbind it again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remove_us_median: Option<f64>,
    /// For checks: the measured ratio (or value).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ratio: Option<f64>,
    /// For checks: the target, e.g. `<= 2`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// For checks: whether it was met (absent when it could not be measured).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pass: Option<bool>,
    /// Anything a reader should know: reduced packet counts, why an engine is missing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

impl Row {
    /// A row of `kind` for `engine` with nothing else filled in.
    pub fn new(kind: RowKind, engine: &str) -> Row {
        Row {
            kind,
            engine: engine.to_string(),
            filters: None,
            trace: None,
            packets: None,
            matches: None,
            ns_per_packet_median: None,
            ns_min: None,
            ns_max: None,
            ns_iqr: None,
            rounds: None,
            instructions_per_packet: None,
            branch_misses_per_packet: None,
            l1_misses_per_packet: None,
            ll_misses_per_packet: None,
            code_bytes: None,
            table_bytes: None,
            table_bytes_per_filter: None,
            mpps: None,
            insert_us_median: None,
            remove_us_median: None,
            ratio: None,
            target: None,
            pass: None,
            note: None,
        }
    }
}

/// The rows as pretty-printed JSON (a list of objects).
pub fn to_json(rows: &[Row]) -> String {
    serde_json::to_string_pretty(rows).expect("rows hold only strings and numbers")
}

fn number(value: Option<f64>, decimals: usize) -> String {
    match value {
        Some(v) if v.is_finite() => format!("{v:.decimals$}"),
        _ => "-".into(),
    }
}

/// Columns whose text is aligned left (the rest, numbers, to the right).
fn render(header: &[&str], left_aligned: &[usize], lines: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for line in lines {
        for (w, cell) in widths.iter_mut().zip(line) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut emit = |cells: &mut dyn Iterator<Item = String>| {
        let mut text = String::new();
        for (i, cell) in cells.enumerate() {
            let pad = widths[i].saturating_sub(cell.chars().count());
            if left_aligned.contains(&i) {
                let _ = write!(text, "{cell}{}  ", " ".repeat(pad));
            } else {
                let _ = write!(text, "{}{cell}  ", " ".repeat(pad));
            }
        }
        out.push_str(text.trim_end());
        out.push('\n');
    };
    emit(&mut header.iter().map(|h| h.to_string()));
    emit(&mut widths.clone().into_iter().map(|w| "-".repeat(w)));
    for line in lines {
        emit(&mut line.iter().cloned());
    }
    out
}

/// The demux and unavailable rows as a table: the median over rounds, its range and IQR, and
/// callgrind's counts per packet where taken.
pub fn demux_table(rows: &[Row]) -> String {
    let lines: Vec<Vec<String>> = rows
        .iter()
        .filter(|r| matches!(r.kind, RowKind::Demux | RowKind::Unavailable))
        .map(|r| {
            vec![
                r.engine.clone(),
                r.trace.clone().unwrap_or_default(),
                r.filters.map_or("-".into(), |k| k.to_string()),
                r.packets.map_or("-".into(), |n| n.to_string()),
                r.matches.map_or("-".into(), |n| n.to_string()),
                number(r.ns_per_packet_median, 1),
                number(r.ns_min, 1),
                number(r.ns_max, 1),
                number(r.ns_iqr, 2),
                number(r.instructions_per_packet, 1),
                number(r.branch_misses_per_packet, 2),
                number(r.l1_misses_per_packet, 2),
                number(r.ll_misses_per_packet, 2),
                r.note.clone().unwrap_or_default(),
            ]
        })
        .collect();
    render(
        &[
            "engine",
            "trace",
            "filters",
            "packets",
            "matches",
            "ns/pkt",
            "min",
            "max",
            "IQR",
            "instr/pkt",
            "br-miss/pkt",
            "L1-miss/pkt",
            "LL-miss/pkt",
            "note",
        ],
        &[0, 1, 13],
        &lines,
    )
}

/// dpf's generated code and table sizes per K.
pub fn size_table(rows: &[Row]) -> String {
    let lines: Vec<Vec<String>> = rows
        .iter()
        .filter(|r| r.kind == RowKind::Size)
        .map(|r| {
            vec![
                r.engine.clone(),
                r.trace.clone().unwrap_or_default(),
                r.filters.map_or("-".into(), |k| k.to_string()),
                r.code_bytes.map_or("-".into(), |n| n.to_string()),
                r.table_bytes.map_or("-".into(), |n| n.to_string()),
                number(r.table_bytes_per_filter, 1),
            ]
        })
        .collect();
    render(
        &[
            "engine",
            "trace",
            "filters",
            "code bytes",
            "table bytes",
            "table bytes/filter",
        ],
        &[0, 1],
        &lines,
    )
}

/// The bind-cost rows as a table.
pub fn bind_table(rows: &[Row]) -> String {
    let lines: Vec<Vec<String>> = rows
        .iter()
        .filter(|r| r.kind == RowKind::Bind)
        .map(|r| {
            vec![
                r.engine.clone(),
                r.trace.clone().unwrap_or_default(),
                r.filters.map_or("-".into(), |k| k.to_string()),
                number(r.insert_us_median, 1),
                number(r.remove_us_median, 1),
                r.note.clone().unwrap_or_default(),
            ]
        })
        .collect();
    render(
        &[
            "engine",
            "trace",
            "filters",
            "insert us",
            "remove us",
            "note",
        ],
        &[0, 1, 5],
        &lines,
    )
}

/// The checks as a table.
pub fn check_table(rows: &[Row]) -> String {
    let lines: Vec<Vec<String>> = rows
        .iter()
        .filter(|r| r.kind == RowKind::Check)
        .map(|r| {
            vec![
                r.engine.clone(),
                number(r.ratio, 2),
                r.target.clone().unwrap_or_default(),
                match r.pass {
                    Some(true) => "pass".into(),
                    Some(false) => "FAIL".into(),
                    None => "n/a".into(),
                },
                r.note.clone().unwrap_or_default(),
            ]
        })
        .collect();
    render(
        &["target", "measured", "wanted", "result", "how"],
        &[0, 2, 3, 4],
        &lines,
    )
}

/// Peers that compile to native code (for "no slower than the best peer JIT").
pub const PEER_JITS: [&str; 3] = ["bpfjit", "rbpf-jit", "dpdk-bpf-jit"];
/// Peers that run one program per filter.
pub const SEQUENTIAL_PEERS: [&str; 4] = ["libpcap", "bpfjit", "rbpf-jit", "dpdk-bpf-jit"];

fn demux_row<'r>(rows: &'r [Row], trace: &str, engine: &str, filters: usize) -> Option<&'r Row> {
    rows.iter().find(|r| {
        r.kind == RowKind::Demux
            && r.engine == engine
            && r.filters == Some(filters)
            && r.trace.as_deref() == Some(trace)
    })
}

fn median_of(rows: &[Row], trace: &str, engine: &str, filters: usize) -> Option<f64> {
    demux_row(rows, trace, engine, filters).and_then(|r| r.ns_per_packet_median)
}

fn instructions_of(rows: &[Row], trace: &str, engine: &str, filters: usize) -> Option<f64> {
    demux_row(rows, trace, engine, filters).and_then(|r| r.instructions_per_packet)
}

fn check(
    name: &str,
    ratio: Option<f64>,
    target: &str,
    holds: impl Fn(f64) -> bool,
    how: String,
) -> Row {
    let mut row = Row::new(RowKind::Check, name);
    row.ratio = ratio;
    row.target = Some(target.to_string());
    row.pass = ratio.map(holds);
    row.note = Some(how);
    row
}

fn bind_of(rows: &[Row], trace: &str, filters: usize) -> Option<f64> {
    rows.iter()
        .find(|r| {
            r.kind == RowKind::Bind
                && r.engine == "dpf-jit"
                && r.filters == Some(filters)
                && r.trace.as_deref() == Some(trace)
        })
        .and_then(|r| r.insert_us_median)
}

/// The issue's targets, evaluated on `trace`'s rows with filter counts `ks` (ascending).
/// A target whose figures were not measured (a K not in `ks`, callgrind not run) gets no
/// verdict rather than a made-up one.
pub fn checks(rows: &[Row], trace: &str, ks: &[usize]) -> Vec<Row> {
    let jit = |k| median_of(rows, trace, "dpf-jit", k);
    let jit_ir = |k| instructions_of(rows, trace, "dpf-jit", k);
    let smallest = *ks.first().expect("some filter counts");
    let largest = *ks.last().expect("some filter counts");
    let mut out = Vec::new();

    for k in [10_000, 100_000] {
        out.push(check(
            &format!("dpf-jit {k} filters / {smallest} filter, time"),
            jit(k).zip(jit(smallest)).map(|(a, b)| a / b),
            "<= 2",
            |r| r <= 2.0,
            format!("ns/pkt medians, interleaved rounds, K={k} over K={smallest}"),
        ));
        out.push(check(
            &format!("dpf-jit {k} filters / {smallest} filter, instructions"),
            jit_ir(k).zip(jit_ir(smallest)).map(|(a, b)| a / b),
            "<= 2",
            |r| r <= 2.0,
            "callgrind instructions per packet".into(),
        ));
    }

    let hash_ratios: Vec<(usize, f64)> = ks
        .iter()
        .filter(|&&k| k >= 100)
        .filter_map(|&k| Some((k, jit(k)? / median_of(rows, trace, "native-hash", k)?)))
        .collect();
    let worst = hash_ratios
        .iter()
        .copied()
        .max_by(|a, b| a.1.total_cmp(&b.1));
    out.push(check(
        "dpf-jit / native-hash, every K >= 100",
        worst.map(|w| w.1),
        "<= 1.3",
        |r| r <= 1.3,
        worst.map_or("not measured".into(), |(k, _)| {
            format!("worst at K={k} (hashbrown lookup on the parsed tuple)")
        }),
    ));
    for peer in ["rte-acl", "ebpf-map"] {
        out.push(check(
            &format!("{peer} / dpf-jit, 10000 filters"),
            median_of(rows, trace, peer, 10_000)
                .zip(jit(10_000))
                .map(|(a, b)| a / b),
            ">= 2",
            |r| r >= 2.0,
            if peer == "rte-acl" {
                "DPDK 22.11's rte_acl, one context, one classify per parsed packet".into()
            } else {
                "one eBPF program with a map-lookup helper, rbpf JIT".into()
            },
        ));
    }
    out.push(check(
        "dpf-jit insert into 100000 filters, us",
        bind_of(rows, trace, 100_000),
        "<= 10",
        |r| r <= 10.0,
        "median, including the mapped code or tables updated".into(),
    ));
    let size_10k = rows
        .iter()
        .find(|r| {
            r.kind == RowKind::Size
                && r.filters == Some(10_000)
                && r.trace.as_deref() == Some(trace)
        })
        .and_then(|r| r.table_bytes_per_filter);
    out.push(check(
        "dpf-jit table bytes per filter, 10000 filters",
        size_10k,
        "<= 32",
        |r| r <= 32.0,
        "generated tables over K".into(),
    ));

    // Whether the trace is long enough that the times are not those of a predictor that has
    // learnt it by heart (see `DpfJitTwoCopies`).
    out.push(check(
        &format!("dpf-jit {smallest} filter, two copies in turn / one"),
        median_of(rows, trace, "dpf-jit-two-copies", smallest)
            .zip(jit(smallest))
            .map(|(a, b)| a / b),
        "<= 1.2",
        |r| r <= 1.2,
        "two mapped copies of the code, a pass each: near 1 unless a predictor learnt the trace"
            .into(),
    ));

    // The targets of round 1.
    let interp_ratios: Vec<(usize, f64)> = ks
        .iter()
        .filter_map(|&k| Some((k, median_of(rows, trace, "dpf-interp", k)? / jit(k)?)))
        .collect();
    let worst = interp_ratios
        .iter()
        .copied()
        .min_by(|a, b| a.1.total_cmp(&b.1));
    out.push(check(
        "dpf-interp / dpf-jit, every K",
        worst.map(|w| w.1),
        ">= 5",
        |r| r >= 5.0,
        worst.map_or("not measured".into(), |(k, _)| format!("worst at K={k}")),
    ));

    let best_peer = PEER_JITS
        .iter()
        .filter_map(|e| Some((*e, median_of(rows, trace, e, smallest)?)))
        .min_by(|a, b| a.1.total_cmp(&b.1));
    out.push(check(
        "dpf-jit / best peer JIT, 1 filter",
        jit(smallest).zip(best_peer).map(|(a, (_, b))| a / b),
        "<= 1",
        |r| r <= 1.0,
        best_peer.map_or("no peer JIT ran".into(), |(e, _)| format!("best peer: {e}")),
    ));

    out.push(check(
        "dpf-jit / native, 1 filter",
        jit(smallest)
            .zip(median_of(rows, trace, "native", smallest))
            .map(|(a, b)| a / b),
        "<= 2.5",
        |r| r <= 2.5,
        "hand-written Rust match of the same flow".into(),
    ));

    let sequential: Vec<(usize, &str, f64)> = ks
        .iter()
        .filter(|&&k| k >= 100)
        .flat_map(|&k| SEQUENTIAL_PEERS.iter().map(move |e| (k, *e)))
        .filter_map(|(k, e)| Some((k, e, median_of(rows, trace, e, k)? / jit(k)?)))
        .collect();
    let slowest_gap = sequential
        .iter()
        .copied()
        .min_by(|a, b| a.2.total_cmp(&b.2));
    out.push(check(
        "sequential peer / dpf-jit, K >= 100",
        slowest_gap.map(|g| g.2),
        ">= 50",
        |r| r >= 50.0,
        slowest_gap.map_or("no sequential peer ran at K >= 100".into(), |(k, e, _)| {
            format!("closest: {e} at K={k}")
        }),
    ));

    let sequential_largest = ks
        .iter()
        .copied()
        .filter(|&k| k <= 10_000)
        .max()
        .unwrap_or(largest);
    out.push(check(
        &format!("dpf-jit insert into {sequential_largest} filters, us"),
        bind_of(rows, trace, sequential_largest),
        "<= 200",
        |r| r <= 200.0,
        "median, including new code mapped".into(),
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn demux(engine: &str, k: usize, ns: f64) -> Row {
        let mut r = Row::new(RowKind::Demux, engine);
        r.trace = Some("synth".into());
        r.filters = Some(k);
        r.packets = Some(1000);
        r.matches = Some(900);
        r.ns_per_packet_median = Some(ns);
        r.ns_min = Some(ns * 0.9);
        r.ns_max = Some(ns * 1.1);
        r.mpps = Some(1e3 / ns);
        r
    }

    #[test]
    fn json_rows_carry_the_issue_fields_and_round_trip() {
        let mut bind = Row::new(RowKind::Bind, "dpf-jit");
        bind.filters = Some(10_000);
        bind.trace = Some("synth".into());
        bind.insert_us_median = Some(12.5);
        bind.remove_us_median = Some(8.0);
        let rows = vec![demux("dpf-jit", 1, 10.0), bind];
        let json = to_json(&rows);
        let value: serde_json::Value = serde_json::from_str(&json).unwrap();
        let list = value.as_array().unwrap();
        for key in [
            "engine",
            "filters",
            "trace",
            "packets",
            "matches",
            "ns_per_packet_median",
            "ns_min",
            "ns_max",
        ] {
            assert!(list[0].get(key).is_some(), "missing {key}");
        }
        assert_eq!(list[0]["kind"], "demux");
        assert_eq!(list[1]["insert_us_median"], 12.5);
        assert!(list[1].get("ns_min").is_none());
        let back: Vec<Row> = serde_json::from_str(&json).unwrap();
        assert_eq!(back, rows);
    }

    #[test]
    fn checks_compute_ratios_from_rows() {
        let ks = [1, 100, 10_000];
        let mut rows = vec![
            demux("dpf-jit", 1, 10.0),
            demux("dpf-jit", 100, 12.0),
            demux("dpf-jit", 10_000, 15.0),
            demux("dpf-interp", 1, 60.0),
            demux("dpf-interp", 100, 50.0),
            demux("dpf-interp", 10_000, 90.0),
            demux("native", 1, 5.0),
            demux("bpfjit", 1, 12.0),
            demux("rbpf-jit", 1, 11.0),
            demux("libpcap", 100, 900.0),
            demux("libpcap", 10_000, 90_000.0),
            demux("bpfjit", 100, 500.0),
        ];
        let mut bind = Row::new(RowKind::Bind, "dpf-jit");
        bind.filters = Some(10_000);
        bind.trace = Some("synth".into());
        bind.insert_us_median = Some(250.0);
        rows.push(bind);
        rows[0].instructions_per_packet = Some(20.0);
        rows[2].instructions_per_packet = Some(50.0);
        rows.push(demux("native-hash", 100, 10.0));
        rows.push(demux("native-hash", 10_000, 10.0));
        rows.push(demux("ebpf-map", 10_000, 45.0));
        rows.push(demux("dpf-jit-two-copies", 1, 17.0));
        let mut size = Row::new(RowKind::Size, "dpf-jit");
        size.trace = Some("synth".into());
        size.filters = Some(10_000);
        size.table_bytes_per_filter = Some(31.5);
        rows.push(size);
        let c = checks(&rows, "synth", &ks);
        let by = |name: &str| {
            c.iter()
                .find(|r| r.engine == name)
                .unwrap_or_else(|| panic!("no check {name:?}"))
        };
        let t = by("dpf-jit 10000 filters / 1 filter, time");
        assert_eq!((t.ratio, t.pass), (Some(1.5), Some(true)));
        let i = by("dpf-jit 10000 filters / 1 filter, instructions");
        assert_eq!((i.ratio, i.pass), (Some(2.5), Some(false)));
        // K=100,000 was not run: no verdict.
        assert_eq!(by("dpf-jit 100000 filters / 1 filter, time").pass, None);
        let h = by("dpf-jit / native-hash, every K >= 100");
        assert_eq!((h.ratio, h.pass), (Some(1.5), Some(false)));
        assert_eq!(
            h.note.as_deref(),
            Some("worst at K=10000 (hashbrown lookup on the parsed tuple)")
        );
        assert_eq!(by("ebpf-map / dpf-jit, 10000 filters").ratio, Some(3.0));
        let learnt = by("dpf-jit 1 filter, two copies in turn / one");
        assert_eq!((learnt.ratio, learnt.pass), (Some(1.7), Some(false)));
        assert_eq!(by("rte-acl / dpf-jit, 10000 filters").pass, None);
        assert_eq!(
            by("dpf-jit table bytes per filter, 10000 filters").pass,
            Some(true)
        );
        let interp = by("dpf-interp / dpf-jit, every K");
        assert_eq!(
            (interp.ratio, interp.pass),
            (Some(50.0 / 12.0), Some(false))
        );
        let peer = by("dpf-jit / best peer JIT, 1 filter");
        assert_eq!(peer.ratio, Some(10.0 / 11.0));
        assert_eq!(peer.note.as_deref(), Some("best peer: rbpf-jit"));
        assert_eq!(by("dpf-jit / native, 1 filter").ratio, Some(2.0));
        let seq = by("sequential peer / dpf-jit, K >= 100");
        assert_eq!(seq.ratio, Some(500.0 / 12.0));
        assert_eq!(seq.note.as_deref(), Some("closest: bpfjit at K=100"));
        assert_eq!(seq.pass, Some(false));
        assert_eq!(
            by("dpf-jit insert into 10000 filters, us").pass,
            Some(false)
        );
        assert_eq!(by("dpf-jit insert into 100000 filters, us").pass, None);
        // Nothing measured: no verdict rather than a made-up one.
        let empty = checks(&[], "synth", &ks);
        assert!(empty.iter().all(|r| r.pass.is_none()));
        assert!(check_table(&c).contains("FAIL"));
        assert!(demux_table(&rows).contains("dpf-interp"));
    }
}
