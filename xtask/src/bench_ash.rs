//! `cargo xtask bench ash`: the host figures (libnet's `ash-bench` example), then one boot of ashd
//! under `-icount shift=0` on the tap topology, where a time-stamp difference is a count of
//! guest instructions. In that boot the clients send, round after round with the engines'
//! order alternating, message-vectoring datagrams to the receiver that checksums while it
//! copies and to the one that copies, then checksums (UDP payloads of 64, 512 and 1472
//! bytes), and UDP echoes answered by the ASH on port 7 and by ashd itself through its ring
//! and `net_transmit` on port 9004. After each batch a datagram to ashd's report port makes it
//! print the kernel's counters; a batch's figure is the difference of two reports:
//! handler cycles per run for the copies, and the kernel's arrival-to-send cycles per pair
//! (from the request's arrival at the NIC to its reply's queueing on the NIC, the same two
//! points whoever answers) for the echoes. Table, `ash-guest.json`, the rows appended to
//! `ash.json`, and a plot (`ash.svg`, `ash.png`).
mod plot;

use crate::scenarios::{Expect, Network, Scenario, Session};
use crate::{Result, image, qemu, setup, test};
use exo_abi::KernelExit;
use serde::Serialize;
use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::Duration;

/// Rounds of every batch kind (the spread is over these).
const ROUNDS: usize = 3;
/// UDP payload bytes of the message-vectoring datagrams (4 name the slot, the rest is copied).
pub const PAYLOADS: [usize; 3] = [64, 512, 1472];
const VECTOR_COUNT: usize = 8;
const ECHO_COUNT: usize = 16;
/// The ports ashd serves (see apps/ashd).
const ASH_ECHO_PORT: u16 = 7;
const APP_ECHO_PORT: u16 = 9004;
const INTEGRATED_PORT: u16 = 9002;
const TWO_PASS_PORT: u16 = 9005;
const REPORT_PORT: u16 = 9006;
const QUIT_PORT: u16 = 9003;
/// ashd's MAC on the tap topology (QEMU's default for the first NIC).
const GUEST_MAC: &str = "52:54:00:12:34:56";

/// How the message-vectoring receiver sums what it copies.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Pass {
    Integrated,
    TwoPass,
}

impl Pass {
    pub fn label(self) -> &'static str {
        match self {
            Pass::Integrated => "copy + checksum in one pass",
            Pass::TwoPass => "copy, then checksum",
        }
    }
    fn port(self) -> u16 {
        match self {
            Pass::Integrated => INTEGRATED_PORT,
            Pass::TwoPass => TWO_PASS_PORT,
        }
    }
}

/// Who answers a UDP echo.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Echoer {
    /// The stock UDP echo handler, in the kernel.
    Ash,
    /// ashd, through its ring and `net_transmit`.
    App,
}

impl Echoer {
    pub fn label(self) -> &'static str {
        match self {
            Echoer::Ash => "ASH (in the kernel)",
            Echoer::App => "app (ring + net_transmit)",
        }
    }
    fn port(self) -> u16 {
        match self {
            Echoer::Ash => ASH_ECHO_PORT,
            Echoer::App => APP_ECHO_PORT,
        }
    }
}

/// What the clients send between two reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Batch {
    /// One of each handler's datagrams (not measured here; their counters are).
    Warmup,
    Vector {
        pass: Pass,
        payload: usize,
    },
    Echo(Echoer),
}

/// Every batch, in order: report `k + 1` follows batch `k` (report 0 comes first).
fn plan() -> Vec<Batch> {
    let mut batches = vec![Batch::Warmup];
    for round in 0..ROUNDS {
        let (first, second) = if round % 2 == 0 {
            (Pass::Integrated, Pass::TwoPass)
        } else {
            (Pass::TwoPass, Pass::Integrated)
        };
        for payload in PAYLOADS {
            for pass in [first, second] {
                batches.push(Batch::Vector { pass, payload });
            }
        }
        let echoers = if round % 2 == 0 {
            [Echoer::Ash, Echoer::App]
        } else {
            [Echoer::App, Echoer::Ash]
        };
        batches.extend(echoers.map(Batch::Echo));
    }
    batches
}

/// Sends `count` datagrams of one kind to the guest, then the report request with `token`;
/// every wait bounded (socket timeout 3 s). argv: port, payload bytes, count, mode, token.
const SENDER: &str = r#"
import socket, sys
guest = "10.0.2.15"
port, size, count, mode, token = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(3)
for i in range(count):
    if mode == "vector":
        payload = (i % 8).to_bytes(4, "big") + bytes((j * 7 + 3) & 0xff for j in range(size - 4))
    elif mode == "increment":
        payload = (1).to_bytes(8, "big")
    else:
        payload = bytes((j * 7 + 3 + i) & 0xff for j in range(size))
    s.sendto(payload, (guest, port))
    if mode in ("echo", "increment"):
        reply, _ = s.recvfrom(4096)
        if (mode == "echo" and reply != payload) or (mode == "increment" and len(reply) != 8):
            sys.exit("bad reply on port %d: %r" % (port, reply[:32]))
if token != "-":
    s.sendto(token.encode(), (guest, %REPORT%))
"#;

fn sender() -> String {
    SENDER.replace("%REPORT%", &REPORT_PORT.to_string())
}

fn send(
    session: &Session<'_>,
    port: u16,
    size: usize,
    count: usize,
    mode: &str,
    token: Option<usize>,
) -> std::result::Result<(), String> {
    let token = token.map_or("-".to_string(), |token| token.to_string());
    session
        .client(
            "/usr/bin/python3",
            &[
                "-c",
                &sender(),
                &port.to_string(),
                &size.to_string(),
                &count.to_string(),
                mode,
                &token,
            ],
            Duration::from_secs(60),
            None,
        )
        .map(|_| ())
}

fn report(session: &mut Session<'_>, token: usize) -> std::result::Result<(), String> {
    session
        .wait_for(&format!("ashd: report {token}:"), Duration::from_secs(30))
        .map(|_| ())
}

/// The bench's clients: ARP and ICMP once (for the per-handler table), the neighbour entry
/// pinned (so no ARP exchange lands inside a batch), then the plan, then quit.
fn clients(session: &mut Session<'_>) -> std::result::Result<(), String> {
    session.wait_for("ashd: ready", Duration::from_secs(60))?;
    let tap = crate::topology::TAP;
    let guest = crate::topology::GUEST_ADDRESS;
    session.client(
        "arping",
        &["-c", "3", "-w", "10", "-I", tap, guest],
        Duration::from_secs(15),
        None,
    )?;
    session.client(
        "ping",
        &["-c", "3", "-i", "0.2", "-W", "2", guest],
        Duration::from_secs(15),
        None,
    )?;
    session.client(
        "ip",
        &[
            "neigh",
            "replace",
            guest,
            "lladdr",
            GUEST_MAC,
            "dev",
            tap,
            "nud",
            "permanent",
        ],
        Duration::from_secs(5),
        None,
    )?;
    send(session, REPORT_PORT, 0, 0, "none", Some(0))?;
    report(session, 0)?;
    for (index, batch) in plan().into_iter().enumerate() {
        let token = index + 1;
        match batch {
            Batch::Warmup => {
                send(session, 9000, 8, 3, "increment", None)?;
                send(session, 9001, 8, 1, "none", None)?;
                send(session, ASH_ECHO_PORT, 64, 1, "echo", None)?;
                send(session, APP_ECHO_PORT, 64, 1, "echo", None)?;
                send(session, INTEGRATED_PORT, 512, 1, "vector", None)?;
                send(session, TWO_PASS_PORT, 512, 1, "vector", Some(token))?;
            }
            Batch::Vector { pass, payload } => {
                send(
                    session,
                    pass.port(),
                    payload,
                    VECTOR_COUNT,
                    "vector",
                    Some(token),
                )?;
            }
            Batch::Echo(echoer) => {
                send(session, echoer.port(), 64, ECHO_COUNT, "echo", Some(token))?;
            }
        }
        report(session, token)?;
    }
    send(session, QUIT_PORT, 4, 1, "none", None)
}

/// One `ashd: report` line: the arrival-to-send pairs and cycles, and per handler (named by
/// the last word of its filter) its runs and cycles.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Report {
    pub(crate) pairs: u64,
    pub(crate) cycles: u64,
    /// Pairs left out because a timer tick came in between.
    pub(crate) ticked: u64,
    /// Their cycles (what the reply waited while other environments ran).
    pub(crate) ticked_cycles: u64,
    handlers: BTreeMap<String, (u64, u64)>,
}

/// What follows `marker` in a serial line (the kernel prefixes an app's lines with its name).
fn after<'a>(line: &'a str, marker: &str) -> Option<&'a str> {
    line.find(marker)
        .map(|at| line[at + marker.len()..].trim_end())
}

/// The reports in `serial`, by token.
pub(crate) fn reports(serial: &str) -> BTreeMap<usize, Report> {
    let mut found = BTreeMap::new();
    for line in serial.lines() {
        let Some(rest) = after(line, "ashd: report ") else {
            continue;
        };
        let Some((token, fields)) = rest.split_once(": ") else {
            continue;
        };
        let Ok(token) = token.parse() else {
            continue;
        };
        let mut report = Report::default();
        let mut complete = true;
        for (index, field) in fields.split("; ").enumerate() {
            let words: Vec<&str> = field.split(' ').collect();
            let numbers = |at: usize| -> Option<(u64, u64)> {
                Some((
                    words.get(at)?.parse().ok()?,
                    words.get(at + 1)?.parse().ok()?,
                ))
            };
            match (index, numbers(1)) {
                (0, Some((pairs, cycles))) if words[0] == "arrival-to-send" => {
                    let number = |at: usize| words.get(at).and_then(|word| word.parse().ok());
                    let (Some(ticked), Some(ticked_cycles)) = (number(3), number(4)) else {
                        complete = false;
                        continue;
                    };
                    report.pairs = pairs;
                    report.cycles = cycles;
                    report.ticked = ticked;
                    report.ticked_cycles = ticked_cycles;
                }
                (1.., Some(counts)) => {
                    report.handlers.insert(words[0].to_string(), counts);
                }
                _ => complete = false,
            }
        }
        if complete {
            found.insert(token, report);
        }
    }
    found
}

/// Guest instructions per packet of one batch (one round).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Sample {
    pub kind: &'static str,
    pub engine: String,
    pub payload_bytes: usize,
    pub round: usize,
    pub packets: u64,
    /// Packets sent but left out of the figure (an echo whose interval a timer tick cut).
    pub left_out: u64,
    pub guest_instructions_per_packet: f64,
}

/// The figures of the batches, from consecutive reports; an error names a batch whose
/// report is missing or whose counts are not what its clients sent.
fn samples(reports: &BTreeMap<usize, Report>) -> std::result::Result<Vec<Sample>, String> {
    let mut samples = Vec::new();
    let mut rounds: BTreeMap<String, usize> = BTreeMap::new();
    for (index, batch) in plan().into_iter().enumerate() {
        let (Some(before), Some(after)) = (reports.get(&index), reports.get(&(index + 1))) else {
            return Err(format!("no report around batch {index} ({batch:?})"));
        };
        let handler = |name: &str| -> std::result::Result<(u64, u64), String> {
            let (runs_before, cycles_before) = before.handlers.get(name).copied().unwrap_or((0, 0));
            let (runs, cycles) = after
                .handlers
                .get(name)
                .copied()
                .ok_or(format!("report {} lacks handler {name}", index + 1))?;
            Ok((runs - runs_before, cycles - cycles_before))
        };
        let (kind, engine, payload, packets, left_out, cycles) = match batch {
            Batch::Warmup => continue,
            Batch::Vector { pass, payload } => {
                let (runs, cycles) = handler(&pass.port().to_string())?;
                (
                    "copy_checksum",
                    format!("{pass:?}"),
                    payload,
                    runs,
                    0,
                    cycles,
                )
            }
            Batch::Echo(echoer) => {
                let pairs = after.pairs - before.pairs;
                let ticked = after.ticked - before.ticked;
                let cycles = after.cycles - before.cycles;
                ("udp_echo", format!("{echoer:?}"), 64, pairs, ticked, cycles)
            }
        };
        let wanted = match batch {
            Batch::Vector { .. } => VECTOR_COUNT,
            _ => ECHO_COUNT,
        } as u64;
        if packets + left_out != wanted || packets == 0 {
            return Err(format!(
                "batch {index} ({batch:?}): {packets} counted and {left_out} left out, {wanted} sent"
            ));
        }
        let round = rounds
            .entry(format!("{kind} {engine} {payload}"))
            .or_default();
        samples.push(Sample {
            kind,
            engine,
            payload_bytes: payload,
            round: *round,
            packets,
            left_out,
            guest_instructions_per_packet: cycles as f64 / packets as f64,
        });
        *round += 1;
    }
    Ok(samples)
}

/// Median, least and most of the rounds of one (kind, engine, payload).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Figure {
    pub kind: &'static str,
    pub engine: String,
    pub payload_bytes: usize,
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

fn figures(samples: &[Sample]) -> Vec<Figure> {
    let mut groups: BTreeMap<(&'static str, String, usize), Vec<f64>> = BTreeMap::new();
    for sample in samples {
        groups
            .entry((sample.kind, sample.engine.clone(), sample.payload_bytes))
            .or_default()
            .push(sample.guest_instructions_per_packet);
    }
    groups
        .into_iter()
        .map(|((kind, engine, payload_bytes), mut values)| {
            values.sort_by(f64::total_cmp);
            Figure {
                kind,
                engine,
                payload_bytes,
                median: values[values.len() / 2],
                min: values[0],
                max: values[values.len() - 1],
            }
        })
        .collect()
}

pub fn figure<'a>(
    figures: &'a [Figure],
    kind: &str,
    engine: &str,
    payload: usize,
) -> Option<&'a Figure> {
    figures
        .iter()
        .find(|f| f.kind == kind && f.engine == engine && f.payload_bytes == payload)
}

fn spread(figure: &Figure) -> String {
    format!("{:.0} ({:.0}-{:.0})", figure.median, figure.min, figure.max)
}

/// The host figures, then the guest's; see the module comment.
pub fn run(out: &std::path::Path) -> Result<ExitCode> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = std::process::Command::new(cargo)
        .current_dir(image::workspace_root())
        .args([
            "run",
            "--release",
            "-p",
            "libnet",
            "--example",
            "ash-bench",
            "--",
            "--out",
        ])
        .arg(out)
        .status()?;
    if !status.success() {
        return Ok(ExitCode::FAILURE);
    }
    setup::ensure_target()?;
    setup::ensure_qemu()?;
    setup::ensure_packages(setup::TAP_TEST_PACKAGES)?;
    let image = image::build(image::Profile::Release)?;
    let scenario = Scenario {
        name: "ash-bench",
        cmdline: "apps=ashd monitor=ashd arg=7365727665",
        exit: KernelExit::Exited(0),
        serial: &["ashd: ready"],
        timeout: Duration::from_secs(900),
        expect: Expect::Pass,
        network: Network::Tap { clients },
    };
    eprintln!(
        "xtask: booting ashd under -icount shift=0; {} batches of datagrams follow",
        plan().len()
    );
    let extra: Vec<std::ffi::OsString> = vec!["-icount".into(), "shift=0".into()];
    let (run, clients) =
        test::run_with_clients(&image.kernel, &scenario, qemu::Accel::Tcg, clients, &extra)?;
    std::fs::create_dir_all(out)?;
    let serial = out.join("ash-serial.txt");
    std::fs::write(&serial, &run.serial)?;
    clients.map_err(|error| {
        format!(
            "the clients failed under -icount: {error} (serial output in {})",
            serial.display()
        )
    })?;

    let mut guest_rows = handler_rows(&run.serial)
        .map_err(|error| format!("{error} (serial output in {})", serial.display()))?;
    let samples = samples(&reports(&run.serial))?;
    let figures = figures(&samples);

    println!();
    println!(
        "| UDP payload bytes | {} | {} | two-pass / one-pass |",
        Pass::Integrated.label(),
        Pass::TwoPass.label()
    );
    println!("|---|---|---|---|");
    for payload in PAYLOADS {
        let one = figure(&figures, "copy_checksum", "Integrated", payload);
        let two = figure(&figures, "copy_checksum", "TwoPass", payload);
        if let (Some(one), Some(two)) = (one, two) {
            println!(
                "| {payload} | {} | {} | {:.2}x |",
                spread(one),
                spread(two),
                two.median / one.median
            );
        }
    }
    println!(
        "(guest instructions per handler run, median (min-max) of {ROUNDS} rounds of {VECTOR_COUNT} datagrams)"
    );
    println!();
    println!("| UDP echo of 64 bytes, answered by | guest instructions, arrival to reply queued |");
    println!("|---|---|");
    for echoer in [Echoer::Ash, Echoer::App] {
        if let Some(f) = figure(&figures, "udp_echo", &format!("{echoer:?}"), 64) {
            println!("| {} | {} |", echoer.label(), spread(f));
        }
    }
    if let (Some(ash), Some(app)) = (
        figure(&figures, "udp_echo", "Ash", 64),
        figure(&figures, "udp_echo", "App", 64),
    ) {
        println!(
            "(median (min-max) of {ROUNDS} rounds of {ECHO_COUNT} echoes; echoes whose interval a timer tick cut, left out: {} of {}; app / ASH = {:.2}x)",
            samples
                .iter()
                .filter(|sample| sample.kind == "udp_echo")
                .map(|sample| sample.left_out)
                .sum::<u64>(),
            samples
                .iter()
                .filter(|sample| sample.kind == "udp_echo")
                .map(|sample| sample.packets + sample.left_out)
                .sum::<u64>(),
            app.median / ash.median
        );
    }

    for figure in &figures {
        guest_rows.push(serde_json::to_value(figure)?);
    }
    for sample in &samples {
        guest_rows.push(serde_json::to_value(sample)?);
    }
    std::fs::create_dir_all(out)?;
    let guest = out.join("ash-guest.json");
    std::fs::write(&guest, serde_json::to_string_pretty(&guest_rows)?)?;
    // ash.json: the host rows the example wrote, then the guest's.
    let all = out.join("ash.json");
    let mut rows: Vec<serde_json::Value> = serde_json::from_str(&std::fs::read_to_string(&all)?)?;
    rows.extend(guest_rows.iter().cloned().map(|mut row| {
        if let Some(object) = row.as_object_mut() {
            object.insert("guest".into(), true.into());
        }
        row
    }));
    std::fs::write(&all, serde_json::to_string_pretty(&rows)?)?;
    let stem = out.join("ash");
    plot::write(&figures, &stem)?;
    println!(
        "\nwrote {}, {}, {} and {}",
        guest.display(),
        all.display(),
        stem.with_extension("svg").display(),
        stem.with_extension("png").display()
    );
    Ok(ExitCode::SUCCESS)
}

/// The per-handler table from ashd's final counters: guest instructions per run of each
/// handler that ran (its reply's transmit check and queueing included).
fn handler_rows(serial: &str) -> Result<Vec<serde_json::Value>> {
    println!();
    println!("| handler (in the kernel, JIT) | runs | guest instructions per run |");
    println!("|---|---|---|");
    let mut rows = Vec::new();
    for line in serial.lines() {
        let Some(rest) = after(line, "ashd: handler \"") else {
            continue;
        };
        let Some((name, counters)) = rest.split_once("\": ") else {
            continue;
        };
        let field = |label: &str| -> Option<u64> {
            counters
                .split([' ', ';'])
                .skip_while(|word| *word != label)
                .nth(1)?
                .parse()
                .ok()
        };
        let (Some(runs), Some(cycles)) = (field("runs"), field("cycles")) else {
            continue;
        };
        if runs == 0 {
            continue;
        }
        println!("| {name} | {runs} | {} |", cycles / runs);
        rows.push(serde_json::json!({
            "kind": "handler",
            "handler": name,
            "runs": runs,
            "guest_instructions_per_run": cycles / runs,
        }));
    }
    if rows.is_empty() {
        return Err("no handler counters in ashd's output".into());
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(token: usize, pairs: u64, cycles: u64, runs: u64, vector: u64) -> String {
        format!(
            "ashd| ashd: report {token}: arrival-to-send {pairs} {cycles} 0 0; arp 3 900; 7 1 100; 9002 {runs} {vector}; 9005 {runs} {}\n",
            vector * 2
        )
    }

    #[test]
    fn handler_rows_read_the_final_counters() {
        let rows = handler_rows(
            "ashd| ashd: handler \"arp\": runs 4 aborts 0 replies 4 refused 0 disabled 0; cycles 2000\n\
             ashd| ashd: handler \"ip and udp dst port 9007\": runs 0 aborts 0 replies 0 refused 0 disabled 0; cycles 0\n",
        )
        .unwrap();
        assert_eq!(rows.len(), 1, "handlers that never ran are left out");
        assert_eq!(rows[0]["guest_instructions_per_run"], 500);
    }

    #[test]
    fn reports_parse_and_skip_cut_lines() {
        let serial = format!(
            "{}ashd| ashd: report 1: arrival-to-send 5\n{}",
            line(0, 4, 400, 2, 50),
            line(2, 5, 500, 3, 60)
        );
        let found = reports(&serial);
        assert_eq!(found.len(), 2, "the cut line is not a report");
        assert_eq!(found[&0].pairs, 4);
        assert_eq!(found[&2].handlers["9005"], (3, 120));
        let ticked = reports("ashd| ashd: report 7: arrival-to-send 5 500 2 9000; arp 1 1\n");
        assert_eq!((ticked[&7].ticked, ticked[&7].ticked_cycles), (2, 9000));
        // Without the ticked pairs' cycles (an older ashd) the line is not a report.
        assert!(reports("ashd| ashd: report 8: arrival-to-send 5 500 2; arp 1 1\n").is_empty());
    }

    #[test]
    fn samples_are_differences_of_reports_and_check_the_counts() {
        // A run where every batch counted exactly what was sent: each vectoring batch adds
        // VECTOR_COUNT runs of 1,000 cycles to both receivers' counters, each echo batch
        // ECHO_COUNT pairs of 3,000.
        let batches = plan();
        let mut serial = line(0, 0, 0, 0, 0);
        let (mut pairs, mut cycles, mut runs, mut vector) = (0, 0, 0, 0);
        for (index, batch) in batches.iter().enumerate() {
            match batch {
                Batch::Vector { .. } => {
                    runs += VECTOR_COUNT as u64;
                    vector += 1000 * VECTOR_COUNT as u64;
                }
                Batch::Echo(_) => {
                    pairs += ECHO_COUNT as u64;
                    cycles += 3000 * ECHO_COUNT as u64;
                }
                Batch::Warmup => {}
            }
            serial += &line(index + 1, pairs, cycles, runs, vector);
        }
        let found = samples(&reports(&serial)).unwrap();
        assert_eq!(found.len(), batches.len() - 1);
        let figures = figures(&found);
        let one = figure(&figures, "copy_checksum", "Integrated", 512).unwrap();
        let two = figure(&figures, "copy_checksum", "TwoPass", 512).unwrap();
        assert_eq!((one.median, two.median), (1000.0, 2000.0));
        assert_eq!(figure(&figures, "udp_echo", "App", 64).unwrap().max, 3000.0);
        // A report missing, or a stray pair inside an echo batch, is an error.
        let cut: String = serial
            .lines()
            .filter(|line| !line.contains("ashd: report 3:"))
            .map(|line| format!("{line}\n"))
            .collect();
        assert!(samples(&reports(&cut)).is_err());
        let echo = batches
            .iter()
            .position(|batch| matches!(batch, Batch::Echo(_)))
            .unwrap()
            + 1;
        let stray = serial.replace(
            &format!("ashd: report {echo}: arrival-to-send {} ", ECHO_COUNT),
            &format!("ashd: report {echo}: arrival-to-send {} ", ECHO_COUNT + 1),
        );
        assert_ne!(stray, serial);
        assert!(samples(&reports(&stray)).is_err());
    }
}
