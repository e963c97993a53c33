//! The rows of `bench net`, their table, their JSON and the targets as ratios with
//! pass or fail. Each row gathers one measurement per round; the table gives the median and,
//! for the rate, the spread (lowest..highest) over the rounds.
use serde::Serialize;

/// One round's measurement of one row.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Sample {
    /// Requests/s (HTTP), MB/s (bulk) or round trips/s (UDP).
    pub rate: f64,
    pub p50_us: Option<f64>,
    pub p99_us: Option<f64>,
    /// Guest instructions (QMP `query-replay` icount, -icount shift=0) per unit of work.
    pub instructions_per_unit: f64,
    /// Requests, bytes or round trips measured.
    pub count: u64,
    /// Errors (HTTP) or losses (UDP).
    pub errors: u64,
    /// exo's UDP rows: guest instructions from a request's arrival at the NIC to its reply's
    /// queueing, the mean over every such pair the kernel counted (`arrival_to_send_*`, the
    /// pairs a timer tick cut included), so a reply that waited while other environments ran
    /// counts their instructions too. A figure of the guest alone: the host's load and the
    /// client's scheduling do not enter it.
    pub reply_instructions: Option<f64>,
}

/// What a row measures, which fixes its units.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Group {
    /// wrk --latency.
    Http,
    /// ab -k.
    HttpAb,
    /// TCP bulk through an echo.
    Bulk,
    /// UDP round trips.
    Udp,
    /// httpd with a set of Cheetah's techniques (wrk).
    Cheetah,
}

impl Group {
    fn units(self) -> (&'static str, &'static str) {
        match self {
            Group::Http | Group::HttpAb | Group::Cheetah => ("req/s", "request"),
            Group::Bulk => ("MB/s", "KB"),
            Group::Udp => ("rt/s", "round trip"),
        }
    }
}

/// One row: a system's server doing one case, over the rounds.
#[derive(Clone, Debug, Serialize)]
pub struct Row {
    pub group: Group,
    /// `exo` or `linux`.
    pub system: &'static str,
    /// `httpd`, `nginx`, `ash`, `echo app`, `udp-echo process`, `echo` (TCP), `socat`.
    pub server: String,
    /// `/1k.html c16`, `busy 5`, `64 MiB each way`, `cheetah=all`.
    pub case: String,
    pub samples: Vec<Sample>,
    /// What the run said about the row (a failure, the active Cheetah set).
    pub note: String,
}

fn median(mut values: Vec<f64>) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let middle = values.len() / 2;
    Some(if values.len() % 2 == 1 {
        values[middle]
    } else {
        (values[middle - 1] + values[middle]) / 2.0
    })
}

impl Row {
    pub fn rate(&self) -> Option<f64> {
        median(self.samples.iter().map(|sample| sample.rate).collect())
    }
    pub fn spread(&self) -> Option<(f64, f64)> {
        let rates = self.samples.iter().map(|sample| sample.rate);
        let low = rates.clone().reduce(f64::min)?;
        Some((low, rates.reduce(f64::max)?))
    }
    pub fn p50_us(&self) -> Option<f64> {
        median(
            self.samples
                .iter()
                .filter_map(|sample| sample.p50_us)
                .collect(),
        )
    }
    pub fn p99_us(&self) -> Option<f64> {
        median(
            self.samples
                .iter()
                .filter_map(|sample| sample.p99_us)
                .collect(),
        )
    }
    pub fn reply_instructions(&self) -> Option<f64> {
        median(
            self.samples
                .iter()
                .filter_map(|sample| sample.reply_instructions)
                .collect(),
        )
    }
    pub fn instructions(&self) -> Option<f64> {
        median(
            self.samples
                .iter()
                .map(|sample| sample.instructions_per_unit)
                .collect(),
        )
    }
}

/// The rows as the JSON array `target/bench/net.json` holds: one object per row, with the
/// medians beside the samples.
pub fn json(rows: &[Row]) -> String {
    let objects: Vec<serde_json::Value> = rows
        .iter()
        .map(|row| {
            let (rate_unit, per) = row.group.units();
            serde_json::json!({
                "group": row.group,
                "system": row.system,
                "server": row.server,
                "case": row.case,
                "rate": row.rate(),
                "rate_unit": rate_unit,
                "rate_spread": row.spread(),
                "p50_us": row.p50_us(),
                "p99_us": row.p99_us(),
                "guest_instructions_per": per,
                "guest_instructions": row.instructions(),
                "arrival_to_reply_instructions": row.reply_instructions(),
                "rounds": row.samples.len(),
                "samples": row.samples,
                "note": row.note,
            })
        })
        .collect();
    serde_json::to_string_pretty(&objects).unwrap_or_else(|_| "[]".into()) + "\n"
}

fn figure(value: Option<f64>) -> String {
    match value {
        None => "-".into(),
        Some(value) if value >= 100.0 => format!("{value:.0}"),
        Some(value) if value >= 10.0 => format!("{value:.1}"),
        Some(value) => format!("{value:.2}"),
    }
}

/// The terminal table (Markdown, so the README can hold it as printed).
pub fn table(rows: &[Row]) -> String {
    let mut text = String::from(
        "| what | system | server | case | rate | spread | p50 us | p99 us | guest instr. | arrival to reply | n | err/lost | note |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for row in rows {
        let (unit, per) = row.group.units();
        let spread = row
            .spread()
            .filter(|_| row.samples.len() > 1)
            .map_or("-".into(), |(low, high)| {
                format!("{}..{}", figure(Some(low)), figure(Some(high)))
            });
        let count: u64 = row.samples.iter().map(|sample| sample.count).sum();
        let errors: u64 = row.samples.iter().map(|sample| sample.errors).sum();
        text.push_str(&format!(
            "| {} | {} | {} | {} | {} {unit} | {spread} | {} | {} | {} /{per} | {} | {count} | {errors} | {} |\n",
            serde_json::to_value(row.group)
                .ok()
                .and_then(|value| value.as_str().map(str::to_string))
                .unwrap_or_default(),
            row.system,
            row.server,
            row.case,
            figure(row.rate()),
            figure(row.p50_us()),
            figure(row.p99_us()),
            figure(row.instructions()),
            figure(row.reply_instructions()),
            row.note,
        ));
    }
    text
}

/// One of the targets, judged from the rows.
#[derive(Clone, Debug, PartialEq)]
pub struct Target {
    pub name: String,
    /// The measured ratio and the bound it must meet, as text.
    pub measured: String,
    /// None: a row it needs is missing.
    pub passed: Option<bool>,
}

fn find<'a>(
    rows: &'a [Row],
    group: Group,
    system: &str,
    server: &str,
    case: &str,
) -> Option<&'a Row> {
    rows.iter().find(|row| {
        row.group == group && row.system == system && row.server == server && row.case == case
    })
}

fn ratio_target(
    name: &str,
    numerator: Option<f64>,
    denominator: Option<f64>,
    what: &str,
    pass: impl Fn(f64) -> bool,
    bound: &str,
) -> Target {
    match (numerator, denominator) {
        (Some(numerator), Some(denominator)) if denominator > 0.0 => {
            let ratio = numerator / denominator;
            Target {
                name: name.into(),
                measured: format!("{what} = {ratio:.2} (target {bound})"),
                passed: Some(pass(ratio)),
            }
        }
        _ => Target {
            name: name.into(),
            measured: format!("{what}: a row is missing"),
            passed: None,
        },
    }
}

/// The cases the targets read.
pub const HTTP_TARGET_CASE: &str = "/1k.html c16";
/// exo's httpd, the server the HTTP targets are judged on: httpd with all of Cheetah's
/// techniques on libnet's own TCP engine (the README's "exo's httpd").
pub const EXO_HTTPD: &str = "httpd cheetah=all";
/// httpd's smoltcp path (`cheetah=none`), measured beside it and not judged.
pub const EXO_HTTPD_SMOLTCP: &str = "httpd smoltcp";

/// One of a row's figures (its median over the rounds).
type Figure = fn(&Row) -> Option<f64>;

/// The targets, from the rows of one run.
pub fn targets(rows: &[Row], cheetah_sets: &[&str]) -> Vec<Target> {
    let mut targets = Vec::new();
    let exo_http = find(rows, Group::Http, "exo", EXO_HTTPD, HTTP_TARGET_CASE);
    let nginx = find(rows, Group::Http, "linux", "nginx", HTTP_TARGET_CASE);
    targets.push(ratio_target(
        "HTTP 1 KB, 16 connections (exo: httpd cheetah=all): requests/s",
        exo_http.and_then(Row::rate),
        nginx.and_then(Row::rate),
        "exo / nginx",
        |ratio| ratio >= 2.0,
        ">= 2",
    ));
    targets.push(ratio_target(
        "HTTP 1 KB, 16 connections (exo: httpd cheetah=all): p99",
        exo_http.and_then(Row::p99_us),
        nginx.and_then(Row::p99_us),
        "exo / nginx",
        |ratio| ratio <= 1.0,
        "<= 1",
    ));
    targets.push(ratio_target(
        "HTTP 1 KB, 16 connections (exo: httpd cheetah=all): guest instructions per request",
        exo_http.and_then(Row::instructions),
        nginx.and_then(Row::instructions),
        "exo / linux",
        |ratio| ratio <= 1.0 / 3.0,
        "<= 0.33",
    ));
    // Each technique against the engine without any (`engine`) when that row exists, else
    // against `none`.
    let baseline = if cheetah_sets.contains(&"engine") {
        "engine"
    } else {
        "none"
    };
    let base = find(
        rows,
        Group::Cheetah,
        "exo",
        "httpd",
        &format!("cheetah={baseline}"),
    );
    for set in cheetah_sets
        .iter()
        .filter(|set| **set != "none" && **set != baseline)
    {
        let case = format!("cheetah={set}");
        let row = find(rows, Group::Cheetah, "exo", "httpd", &case);
        targets.push(ratio_target(
            &format!("Cheetah {set}: requests/s against {baseline}"),
            row.and_then(Row::rate),
            base.and_then(Row::rate),
            &format!("{set} / {baseline}"),
            |ratio| ratio > 1.0,
            "> 1",
        ));
        // The deterministic figure beside it: wrk's rate on 2 shared vCPUs moves by more than
        // a technique that saves a copy or a checksum can gain.
        targets.push(ratio_target(
            &format!("Cheetah {set}: guest instructions per request against {baseline}"),
            row.and_then(Row::instructions),
            base.and_then(Row::instructions),
            &format!("{set} / {baseline}"),
            |ratio| ratio < 1.0,
            "< 1",
        ));
    }
    let bulk_case = rows
        .iter()
        .find(|row| row.group == Group::Bulk)
        .map(|row| row.case.clone())
        .unwrap_or_default();
    targets.push(ratio_target(
        "TCP bulk throughput",
        find(rows, Group::Bulk, "exo", "echo", &bulk_case).and_then(Row::rate),
        find(rows, Group::Bulk, "linux", "socat", &bulk_case).and_then(Row::rate),
        "exo / linux",
        |ratio| ratio >= 1.0,
        ">= 1",
    ));
    let ash = |busy: u32| find(rows, Group::Udp, "exo", "ash", &format!("busy {busy}"));
    let app = |busy: u32| find(rows, Group::Udp, "exo", "echo app", &format!("busy {busy}"));
    let linux = |busy: u32| {
        find(
            rows,
            Group::Udp,
            "linux",
            "udp-echo process",
            &format!("busy {busy}"),
        )
    };
    targets.push(ratio_target(
        "UDP echo round trip p50, idle server",
        ash(0).and_then(Row::p50_us),
        linux(0).and_then(Row::p50_us),
        "ash / linux",
        |ratio| ratio <= 0.5,
        "<= 0.5",
    ));
    // Aegis's claim, on the wall clock and on the guest's own (instructions from arrival to
    // reply): the handler's round trip stays flat while the receiver runs busy environments,
    // the app's grows.
    let figures: [(&str, Figure); 2] = [
        ("round trip p50", Row::p50_us),
        (
            "arrival to reply in guest instructions",
            Row::reply_instructions,
        ),
    ];
    for (what, figure) in figures {
        targets.push(ratio_target(
            &format!("ASH {what} with 10 busy environments"),
            ash(10).and_then(figure),
            ash(0).and_then(figure),
            "busy 10 / busy 0",
            |ratio| ratio <= 1.1,
            "<= 1.1",
        ));
        targets.push(ratio_target(
            &format!("app-path {what} with 10 busy environments (must grow)"),
            app(10).and_then(figure),
            app(0).and_then(figure),
            "busy 10 / busy 0",
            |ratio| ratio > 1.1,
            "> 1.1",
        ));
    }
    targets
}

/// The targets as lines.
pub fn target_lines(targets: &[Target]) -> String {
    targets
        .iter()
        .map(|target| {
            let verdict = match target.passed {
                Some(true) => "pass",
                Some(false) => "FAIL",
                None => "n/a ",
            };
            format!("[{verdict}] {}: {}\n", target.name, target.measured)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(group: Group, system: &'static str, server: &str, case: &str, rates: &[f64]) -> Row {
        Row {
            group,
            system,
            server: server.into(),
            case: case.into(),
            samples: rates
                .iter()
                .map(|rate| Sample {
                    rate: *rate,
                    p50_us: Some(1000.0 / rate),
                    p99_us: Some(2000.0 / rate),
                    instructions_per_unit: 1e6 / rate,
                    count: 10,
                    errors: 0,
                    reply_instructions: Some(500.0 / rate),
                })
                .collect(),
            note: String::new(),
        }
    }

    #[test]
    fn medians_and_spreads() {
        let row = row(
            Group::Http,
            "exo",
            "httpd",
            "/1k.html c16",
            &[3.0, 1.0, 2.0, 10.0],
        );
        assert_eq!(row.rate(), Some(2.5));
        assert_eq!(row.spread(), Some((1.0, 10.0)));
        assert_eq!(median(Vec::new()), None);
        let table = table(&[row]);
        assert!(
            table.contains("| http | exo | httpd | /1k.html c16 | 2.50 req/s | 1.00..10.0 |"),
            "{table}"
        );
    }

    #[test]
    fn targets_pass_fail_and_missing() {
        let rows = [
            row(Group::Http, "exo", EXO_HTTPD, HTTP_TARGET_CASE, &[400.0]),
            // The smoltcp path is measured, not judged: its slower figures change nothing.
            row(
                Group::Http,
                "exo",
                EXO_HTTPD_SMOLTCP,
                HTTP_TARGET_CASE,
                &[1.0],
            ),
            row(Group::Http, "linux", "nginx", HTTP_TARGET_CASE, &[100.0]),
            row(Group::Cheetah, "exo", "httpd", "cheetah=none", &[100.0]),
            row(Group::Cheetah, "exo", "httpd", "cheetah=all", &[90.0]),
        ];
        let targets = targets(&rows, &["none", "all"]);
        assert_eq!(targets[0].passed, Some(true), "{:?}", targets[0]);
        assert!(targets[0].measured.starts_with("exo / nginx = 4.00"));
        // p99 and instructions scale with 1/rate here: exo's are a quarter of nginx's.
        assert_eq!(targets[1].passed, Some(true));
        assert_eq!(targets[2].passed, Some(true));
        assert_eq!(targets[3].passed, Some(false), "{:?}", targets[3]);
        // Instructions scale with 1/rate: the slower set costs more per request.
        assert!(
            targets[4].name.contains("guest instructions"),
            "{:?}",
            targets[4]
        );
        assert_eq!(targets[4].passed, Some(false), "{:?}", targets[4]);
        assert_eq!(targets[5].passed, None, "no bulk rows: {:?}", targets[5]);
        assert!(target_lines(&targets).contains("[FAIL] Cheetah all"));
        let faster = [
            row(Group::Cheetah, "exo", "httpd", "cheetah=engine", &[100.0]),
            row(Group::Cheetah, "exo", "httpd", "cheetah=cache", &[110.0]),
        ];
        let targets = super::targets(&faster, &["none", "engine", "cache"]);
        let cache: Vec<_> = targets
            .iter()
            .filter(|target| target.name.starts_with("Cheetah cache"))
            .collect();
        assert_eq!(cache.len(), 2, "{targets:?}");
        assert!(cache.iter().all(|target| target.passed == Some(true)));
        assert!(
            cache[1].measured.starts_with("cache / engine = 0.91"),
            "{:?}",
            cache[1]
        );
    }

    #[test]
    fn the_busy_targets_read_the_guests_own_clock_too() {
        let udp = |server: &str, busy: u32, reply: f64| {
            let mut row = row(Group::Udp, "exo", server, &format!("busy {busy}"), &[100.0]);
            row.samples[0].reply_instructions = Some(reply);
            row
        };
        let judged = |rows: &[Row], name: &str| {
            let targets = targets(rows, &[]);
            targets
                .iter()
                .find(|target| target.name.starts_with(name))
                .unwrap_or_else(|| panic!("no target {name}: {targets:?}"))
                .clone()
        };
        let rows = [
            udp("ash", 0, 6000.0),
            udp("ash", 10, 6300.0),
            udp("echo app", 0, 9000.0),
            udp("echo app", 10, 5e6),
        ];
        let ash = judged(&rows, "ASH arrival to reply");
        assert_eq!(ash.passed, Some(true), "{ash:?}");
        assert!(
            ash.measured.starts_with("busy 10 / busy 0 = 1.05"),
            "{ash:?}"
        );
        assert_eq!(
            judged(&rows, "app-path arrival to reply").passed,
            Some(true)
        );
        let grown = [udp("ash", 0, 6000.0), udp("ash", 10, 7000.0)];
        assert_eq!(judged(&grown, "ASH arrival to reply").passed, Some(false));
        assert_eq!(judged(&grown, "app-path arrival to reply").passed, None);
    }
}
