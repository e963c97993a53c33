//! `cargo xtask bench cheetah`: httpd's Cheetah techniques side by side, a quick look before
//! the network benchmark's full rows. Each round boots httpd once per (set, document) in a
//! fresh namespace, rotating the order of the sets from round to round, and runs `wrk -t1
//! -c16` on the document; beside the rate it reads from httpd's own counters the frames it
//! sent per request (a count, not a time). Prints a table (median and spread of the rounds,
//! ratio to smoltcp's path) and writes `target/bench/cheetah.json`.
use crate::qemu::Accel;
use crate::scenarios::{Expect, Network, Scenario, Session};
use crate::topology::GUEST_ADDRESS;
use crate::{Result, image, setup, test};
use exo_abi::KernelExit;
use std::sync::Mutex;
use std::time::Duration;

/// The sets measured: smoltcp's path first (the ratios' base), libnet's engine with no
/// technique (each technique's own baseline), each technique, all three.
const SETS: &[&str] = &["none", "engine", "prebuilt", "cache", "piggyback", "all"];
const DOCUMENTS: &[&str] = &["/1k.html", "/100k.bin"];

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Rounds (each boots every set for every document once).
    #[arg(long, default_value_t = 2)]
    rounds: usize,
    /// Seconds of each wrk run.
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// Only these sets (comma-separated), e.g. `none,all`.
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Print httpd's own report of each run.
    #[arg(long)]
    verbose: bool,
    /// Where the results go.
    #[arg(long, value_name = "DIR", default_value = "target/bench")]
    out: std::path::PathBuf,
}

/// What the clients of the current boot are to do, and what they saw.
static PLAN: Mutex<(String, u64)> = Mutex::new((String::new(), 5));
static SEEN: Mutex<Option<(f64, f64)>> = Mutex::new(None);

fn hex(text: &str) -> String {
    text.bytes().map(|byte| format!("{byte:02x}")).collect()
}

/// A number after `key` in `line`.
fn number_after(line: &str, key: &str) -> Option<f64> {
    let at = line.find(key)? + key.len();
    line[at..]
        .trim_start()
        .split(|c: char| !(c.is_ascii_digit() || c == '.'))
        .next()?
        .parse()
        .ok()
}

fn clients(session: &mut Session<'_>) -> std::result::Result<(), String> {
    let (document, seconds) = PLAN.lock().map_err(|e| e.to_string())?.clone();
    for ready in ["ashd: ready", "httpd: ready"] {
        session.wait_for(ready, Duration::from_secs(60))?;
    }
    let url = format!("http://{GUEST_ADDRESS}{document}");
    let duration = format!("-d{seconds}s");
    let wrk = session.client(
        "wrk",
        &["-t1", "-c16", &duration, "--timeout", "5s", &url],
        Duration::from_secs(seconds + 20),
        None,
    )?;
    let wrk = String::from_utf8_lossy(&wrk);
    if wrk.contains("Non-2xx") {
        return Err(format!("wrk: {wrk}"));
    }
    // Timeouts are a result here (a loaded host, a stalled connection), reported, not fatal.
    if let Some(line) = wrk.lines().find(|line| line.contains("Socket errors")) {
        eprintln!("bench cheetah: {document}: {}", line.trim());
    }
    let rate = number_after(&wrk, "Requests/sec:").ok_or(format!("wrk said {wrk}"))?;
    for port in [9180u16, 9003] {
        session.client(
            "socat",
            &[
                "-u",
                "-t",
                "0.2",
                "-",
                &format!("UDP:{GUEST_ADDRESS}:{port}"),
            ],
            Duration::from_secs(10),
            Some(b"quit"),
        )?;
    }
    let done = session.wait_for("httpd: done:", Duration::from_secs(30))?;
    let served = number_after(&done, "connections, ").ok_or("no served count")?;
    // smoltcp's path sends through the device; the engine through its own link.
    let frames = match number_after(&done, "tx_frames: ") {
        Some(frames) if frames > 0.0 => frames,
        _ => {
            let line = session.wait_for("sums_stored", Duration::from_secs(10))?;
            number_after(&line, "segments_out: ").ok_or("no segments_out")?
        }
    };
    *SEEN.lock().map_err(|e| e.to_string())? = Some((rate, frames / served.max(1.0)));
    Ok(())
}

pub fn run(args: &Args) -> Result<std::process::ExitCode> {
    setup::ensure_target()?;
    setup::ensure_qemu()?;
    setup::ensure_packages(setup::TAP_TEST_PACKAGES)?;
    let image = image::build(image::Profile::Dev)?;
    // (set, document) -> rates and frames per request of each round.
    let mut results: Vec<(&str, &str, Vec<f64>, Vec<f64>)> = Vec::new();
    for set in SETS {
        for document in DOCUMENTS {
            results.push((set, document, Vec::new(), Vec::new()));
        }
    }
    for round in 0..args.rounds {
        for step in 0..SETS.len() {
            let set = SETS[(step + round) % SETS.len()];
            if !args.only.is_empty() && !args.only.iter().any(|only| only == set) {
                continue;
            }
            for document in DOCUMENTS {
                *PLAN.lock().unwrap() = (document.to_string(), args.seconds);
                *SEEN.lock().unwrap() = None;
                let cmdline: &'static str = Box::leak(
                    format!(
                        "apps=ashd,httpd monitor=ashd arg=1:7365727665 arg=2:{}",
                        hex(&format!("port=80 quit=9180 pool=20 cheetah={set}"))
                    )
                    .into_boxed_str(),
                );
                let scenario = Scenario {
                    name: "bench-cheetah",
                    cmdline,
                    exit: KernelExit::Exited(0),
                    serial: &[],
                    timeout: Duration::from_secs(120 + args.seconds),
                    expect: Expect::Pass,
                    network: Network::Tap { clients },
                };
                let (run, outcome) =
                    test::run_with_clients(&image.kernel, &scenario, Accel::Tcg, clients, &[])?;
                if args.verbose || outcome.is_err() {
                    let lines: Vec<&str> = run.serial.lines().collect();
                    let from = if outcome.is_err() {
                        lines.len().saturating_sub(25)
                    } else {
                        0
                    };
                    for line in lines[from..]
                        .iter()
                        .filter(|line| outcome.is_err() || line.contains("httpd"))
                    {
                        eprintln!("    | {line}");
                    }
                }
                if let Err(error) = outcome {
                    return Err(format!("cheetah={set} {document}: {error}").into());
                }
                let (rate, frames) = SEEN.lock().unwrap().take().unwrap_or((0.0, 0.0));
                eprintln!(
                    "bench cheetah: round {} cheetah={set} {document}: {rate:.1} requests/s, {frames:.2} frames out per request",
                    round + 1
                );
                let row = results
                    .iter_mut()
                    .find(|row| row.0 == set && row.1 == *document)
                    .expect("every pair has a row");
                row.2.push(rate);
                row.3.push(frames);
            }
        }
    }
    let median = |values: &[f64]| {
        let mut sorted = values.to_vec();
        sorted.sort_by(f64::total_cmp);
        let middle = sorted.len() / 2;
        if sorted.len().is_multiple_of(2) {
            (sorted[middle - 1] + sorted[middle]) / 2.0
        } else {
            sorted[middle]
        }
    };
    println!(
        "{:<10} {:<10} {:>12} {:>18} {:>9} {:>16}",
        "cheetah=", "document", "requests/s", "rounds (min-max)", "vs none", "frames/request"
    );
    let mut json = Vec::new();
    for (set, document, rates, frames) in results.iter().filter(|row| !row.2.is_empty()) {
        let base = results
            .iter()
            .find(|row| row.0 == "none" && row.1 == *document && !row.2.is_empty())
            .map_or(f64::NAN, |row| median(&row.2));
        let rate = median(rates);
        let (low, high) = rates.iter().fold((f64::MAX, 0.0f64), |(low, high), &r| {
            (low.min(r), high.max(r))
        });
        println!(
            "{set:<10} {document:<10} {rate:>12.1} {:>18} {:>8.2}x {:>16.2}",
            format!("{low:.1}-{high:.1}"),
            rate / base,
            median(frames)
        );
        json.push(serde_json::json!({
            "cheetah": set, "document": document, "requests_per_second": rates,
            "median": rate, "vs_none": rate / base, "frames_out_per_request": frames,
            "client": "wrk -t1 -c16", "seconds": args.seconds,
        }));
    }
    std::fs::create_dir_all(&args.out)?;
    let path = args.out.join("cheetah.json");
    std::fs::write(&path, serde_json::to_string_pretty(&json)?)?;
    println!("bench cheetah: wrote {}", path.display());
    Ok(std::process::ExitCode::SUCCESS)
}
