//! `cargo xtask replay FILE.pcap EXPR...`: boots the kernel with one `netmon` app per
//! expression, each holding that expression as a monitor filter (netmon compiles it with dpf's
//! front end, in the app, and binds it),
//! injects the capture's frames into the guest's virtio-net through a `-netdev dgram` socket
//! (one UDP datagram per frame, paced), and checks each count against hosted dpf on the same
//! frames.
//!
//! What gets injected: a frame's captured bytes, as they are (the guest sees the captured
//! length as the frame's length, and hosted dpf is asked the same question). Frames longer than
//! a ring slot holds (`exo_abi::net::FRAME_MAX_BYTES`) are not sent and are reported as
//! `oversized_not_sent`; truncated captures (captured < wire length) are sent and counted.
//! Runts (shorter than an Ethernet header) are sent; the kernel counts them `malformed`.
use crate::qemu::{Echo, Netdev, Qemu, app_text};
use crate::{Result, image, setup};
use exo_abi::net::{Counter, FRAME_MAX_BYTES, FRAME_MIN_BYTES};
use std::collections::BTreeMap;
use std::net::UdpSocket;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

mod net_scenarios;

pub use net_scenarios::run_scenarios;

/// Arguments of `cargo xtask replay`.
#[derive(Debug, clap::Args)]
pub struct ReplayArgs {
    /// The capture (pcap or pcapng).
    pub file: PathBuf,
    /// One pcap-filter expression per monitor.
    #[arg(required = true)]
    pub expressions: Vec<String>,
    /// Most frames per second to inject (the guest's progress reports pace it further).
    #[arg(long, default_value_t = 50_000)]
    pub rate: u64,
    /// Run under `-icount shift=0`: the demux cost comes out in guest instructions.
    #[arg(long)]
    pub icount: bool,
    /// Build the kernel and apps with the debug profile (the default is release).
    #[arg(long)]
    pub debug: bool,
    /// Print the guest's serial output as it runs.
    #[arg(long, short)]
    pub verbose: bool,
}

/// Frames the sender may be ahead of the guest's last progress report (`EXOACK` frames netmon
/// transmits): below the NIC's 256 receive buffers and below what QEMU's socket buffer holds
/// (212,992 bytes by default, ~160 datagrams at their kernel overhead), so a datagram is never
/// dropped while QEMU is busy running the guest.
const WINDOW: u64 = 96;
/// How long the sender waits for progress before it stops waiting for any (loss is then
/// detected).
const STALL: Duration = Duration::from_secs(5);

/// Frames injected per burst; the sender sleeps between bursts to keep the rate.
const BURST: usize = 16;
/// Frames over which the rate ramps up from a tenth to full: the guest's first frames run
/// through code TCG has not translated yet, and QEMU's socket buffer is small.
const RAMP_FRAMES: usize = 4_000;

/// Host-wide UDP datagrams dropped for a full socket buffer (`RcvbufErrors` in
/// /proc/net/snmp): how frames lost before QEMU read them are told from unexplained loss.
fn udp_receive_buffer_errors() -> Option<u64> {
    let snmp = std::fs::read_to_string("/proc/net/snmp").ok()?;
    let mut lines = snmp.lines().filter(|line| line.starts_with("Udp:"));
    let names = lines.next()?.split_whitespace();
    let values = lines.next()?.split_whitespace();
    names
        .zip(values)
        .find(|(name, _)| *name == "RcvbufErrors")
        .and_then(|(_, value)| value.parse().ok())
}

/// What a replay measured.
#[derive(Debug)]
pub struct Outcome {
    /// Per expression: (expression, received in the guest, hosted dpf's count).
    pub apps: Vec<(String, u64, u64)>,
    pub kernel: BTreeMap<String, u64>,
    pub sent: u64,
    pub oversized_not_sent: u64,
    pub truncated: u64,
    pub send_seconds: f64,
    /// UDP datagrams the host dropped for full socket buffers during the run (host-wide).
    pub host_socket_drops: Option<u64>,
    /// How the machine stopped.
    pub exit: crate::qemu::Outcome,
    pub serial: String,
}

impl Outcome {
    /// The kernel stopped by itself with every app exited 0 (no panic, no leak).
    pub fn clean_exit(&self) -> std::result::Result<(), String> {
        match self.exit {
            crate::qemu::Outcome::Kernel(exo_abi::KernelExit::Exited(0)) => Ok(()),
            other => {
                let panic = self
                    .serial
                    .lines()
                    .find(|line| line.starts_with("[exo] kernel panic"))
                    .unwrap_or("");
                Err(format!("the kernel stopped with {other} {panic}"))
            }
        }
    }

    /// The kernel counter `name` (0 if it did not report it).
    pub fn counter(&self, name: &str) -> u64 {
        self.kernel.get(name).copied().unwrap_or(0)
    }

    /// Every count equals hosted dpf's and every frame sent was received (or counted), and
    /// the kernel stopped cleanly.
    pub fn verdict(&self) -> std::result::Result<(), String> {
        self.clean_exit()?;
        self.no_loss()?;
        for (expression, received, hosted) in &self.apps {
            if received != hosted {
                return Err(format!(
                    "{expression:?}: guest received {received}, hosted dpf counts {hosted}"
                ));
            }
        }
        let ring_full = self.counter("ring_full");
        if ring_full != 0 {
            return Err(format!("{ring_full} copies dropped on full rings"));
        }
        Ok(())
    }

    /// Every frame sent reached the kernel.
    pub fn no_loss(&self) -> std::result::Result<(), String> {
        let rx = self.counter("rx_frames");
        if rx != self.sent {
            let drops = match self.host_socket_drops {
                Some(drops) => {
                    format!("the host dropped {drops} datagrams for full socket buffers")
                }
                None => String::from("/proc/net/snmp unreadable"),
            };
            return Err(format!(
                "{} frames sent, kernel took {rx} from the NIC: {} lost ({drops}); try a lower --rate",
                self.sent,
                self.sent.saturating_sub(rx)
            ));
        }
        Ok(())
    }
}

/// The expression without netmon's option prefixes (`upcall:`, then `stall:`, `claimed:`,
/// `revoked:`, `unbind-after=N:` or `revoke-after=N:`).
fn strip_options(expression: &str) -> &str {
    let expression = expression.strip_prefix("upcall:").unwrap_or(expression);
    if let Some(rest) = expression
        .strip_prefix("stall:")
        .or_else(|| expression.strip_prefix("claimed:"))
        .or_else(|| expression.strip_prefix("revoked:"))
    {
        return rest;
    }
    if let Some(rest) = expression
        .strip_prefix("unbind-after=")
        .or_else(|| expression.strip_prefix("revoke-after="))
        && let Some((_, rest)) = rest.split_once(':')
    {
        return rest;
    }
    expression
}

fn hex(text: &str) -> String {
    text.bytes().map(|byte| format!("{byte:02x}")).collect()
}

fn free_udp_port() -> Result<u16> {
    Ok(UdpSocket::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Boots, injects `frames` and collects the counts (the pure part of `replay`, used by tests).
/// `companions` are apps booted after the monitors (they take no part in the counting);
/// `boot_words` go on the kernel command line as they are.
#[allow(clippy::too_many_arguments)]
pub fn replay_frames(
    kernel: &std::path::Path,
    frames: Vec<Vec<u8>>,
    expressions: &[String],
    companions: &[&str],
    boot_words: &str,
    rate: u64,
    icount: bool,
    echo: Echo,
) -> Result<Outcome> {
    let mut hosted = Vec::new();
    for expression in expressions {
        let filters = dpf::frontend::compile(strip_options(expression), dpf::FilterId(0))
            .map_err(|error| format!("{expression:?}: {error:?}"))?;
        let count = frames
            .iter()
            .filter(|frame| {
                (FRAME_MIN_BYTES..=FRAME_MAX_BYTES).contains(&(frame.len() as u64))
                    && dpf::frontend::matches_any(&filters, &dpf::Packet::whole(frame))
            })
            .count() as u64;
        hosted.push(count);
    }
    let host = UdpSocket::bind("127.0.0.1:0")?;
    let host_port = host.local_addr()?.port();
    let guest_port = free_udp_port()?;
    let apps = expressions.len();
    let mut names = vec!["netmon"; apps];
    names.extend_from_slice(companions);
    let mut append = format!("apps={} monitor=netmon", names.join(","));
    if !boot_words.is_empty() {
        append.push(' ');
        append.push_str(boot_words);
    }
    for (index, expression) in expressions.iter().enumerate() {
        append.push_str(&format!(" arg={}:{}", index + 1, hex(expression)));
    }
    let (ready_tx, ready_rx) = mpsc::channel::<()>();
    let sent_frames = frames.len() as u64;
    // The least progress any monitor has reported (each reports the kernel's rx count up to
    // which it drained its ring), so no monitor's ring is overrun by the window.
    let acked = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let progress = host.try_clone()?;
    progress.set_read_timeout(Some(Duration::from_millis(200)))?;
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let receiver = {
        let acked = std::sync::Arc::clone(&acked);
        let done = std::sync::Arc::clone(&done);
        thread::spawn(move || {
            let mut buffer = [0u8; 2048];
            let mut per_app = BTreeMap::<u64, u64>::new();
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                let Ok(length) = progress.recv(&mut buffer) else {
                    continue;
                };
                if length >= 36 && buffer[12..14] == [0x88, 0xb5] && &buffer[14..20] == b"EXOACK" {
                    let count = u64::from_le_bytes(buffer[20..28].try_into().expect("8 bytes"));
                    let app = u64::from_le_bytes(buffer[28..36].try_into().expect("8 bytes"));
                    let entry = per_app.entry(app).or_default();
                    *entry = (*entry).max(count);
                    if per_app.len() == apps {
                        let least = per_app.values().copied().min().unwrap_or(0);
                        acked.store(least, std::sync::atomic::Ordering::Relaxed);
                    }
                }
            }
        })
    };
    let sender_acked = std::sync::Arc::clone(&acked);
    let sender = thread::spawn(move || -> std::io::Result<f64> {
        if ready_rx.recv_timeout(Duration::from_secs(60)).is_err() {
            return Ok(0.0);
        }
        let target = ("127.0.0.1", guest_port);
        let start = Instant::now();
        let mut due = 0.0f64;
        let mut paced = true;
        for (index, frame) in frames.iter().enumerate() {
            let waiting = Instant::now();
            while paced
                && index as u64 > sender_acked.load(std::sync::atomic::Ordering::Relaxed) + WINDOW
            {
                if waiting.elapsed() >= STALL {
                    // A monitor stopped reporting: send the rest at the rate (loss is detected).
                    paced = false;
                }
                thread::sleep(Duration::from_micros(100));
            }
            host.send_to(frame, target)?;
            let ramp = (0.1 + index as f64 / RAMP_FRAMES as f64).min(1.0);
            due += 1.0 / (rate as f64 * ramp);
            if (index + 1) % BURST == 0
                && let Some(wait) = Duration::from_secs_f64(due).checked_sub(start.elapsed())
            {
                thread::sleep(wait);
            }
        }
        Ok(start.elapsed().as_secs_f64())
    });
    let timeout = Duration::from_secs(90 + sent_frames / rate.max(1) * 2);
    let buffer_errors_before = udp_receive_buffer_errors();
    let icount_arguments: Vec<std::ffi::OsString> = if icount {
        vec!["-icount".into(), "shift=0".into()]
    } else {
        Vec::new()
    };
    let run = Qemu {
        kernel,
        append: &append,
        accel: setup::usable_accel(crate::qemu::Accel::Tcg),
        timeout,
        echo,
        netdev: Some(Netdev {
            guest_port,
            host_port,
        }),
        tap: None,
    }
    .run_watching(&icount_arguments, {
        let mut ready = 0;
        move |line| {
            if app_text(line).starts_with("netmon[") && line.contains("]: ready") {
                ready += 1;
                if ready == apps {
                    let _ = ready_tx.send(());
                }
            }
        }
    })?;
    let send_seconds = sender.join().map_err(|_| "sender panicked")??;
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = receiver.join();
    let host_socket_drops = match (buffer_errors_before, udp_receive_buffer_errors()) {
        (Some(before), Some(after)) => Some(after - before),
        _ => None,
    };
    let mut received = vec![None; expressions.len()];
    let mut kernel_counters = BTreeMap::new();
    // Boot apps are logged in command-line order as `app netmon: env ID ready`.
    let mut env_ids = Vec::new();
    for line in run.serial.lines() {
        if let Some(rest) = line.strip_prefix("[exo] app netmon: env ")
            && let Some(id) = rest.strip_suffix(" ready")
        {
            env_ids.push(id.to_string());
        }
        if let Some(rest) = app_text(line).strip_prefix("netmon[")
            && let Some((id, rest)) = rest.split_once("]: filter 0 received ")
            && let Ok(count) = rest.trim().parse::<u64>()
            && let Some(position) = env_ids.iter().position(|known| known == id)
        {
            received[position] = Some(count);
        }
        if let Some(rest) = line.split("net counters:").nth(1) {
            for pair in rest.split_whitespace() {
                if let Some((name, value)) = pair.split_once('=')
                    && let Ok(value) = value.parse()
                {
                    kernel_counters.insert(name.to_string(), value);
                }
            }
        }
    }
    if received.iter().any(Option::is_none) || kernel_counters.is_empty() {
        return Err(format!(
            "the guest did not report its counts ({}):\n{}",
            run.outcome, run.serial
        )
        .into());
    }
    Ok(Outcome {
        apps: expressions
            .iter()
            .zip(received.iter().zip(hosted))
            .map(|(expression, (received, hosted))| {
                (expression.clone(), received.expect("checked"), hosted)
            })
            .collect(),
        kernel: kernel_counters,
        sent: sent_frames,
        oversized_not_sent: 0,
        truncated: 0,
        send_seconds,
        host_socket_drops,
        exit: run.outcome,
        serial: run.serial,
    })
}

pub fn run(args: &ReplayArgs) -> Result<ExitCode> {
    setup::ensure_target()?;
    setup::ensure_qemu()?;
    let trace = pcap_tests::trace::read_trace(&args.file)
        .map_err(|error| format!("reading {}: {error:?}", args.file.display()))?;
    let total = trace.len() as u64;
    let truncated = trace
        .iter()
        .filter(|packet| (packet.data.len() as u64) < u64::from(packet.wire_len))
        .count() as u64;
    let frames: Vec<Vec<u8>> = trace
        .into_iter()
        .map(|packet| packet.data)
        .filter(|data| data.len() as u64 <= FRAME_MAX_BYTES)
        .collect();
    let oversized = total - frames.len() as u64;
    let image = image::build(image::Profile::from_release(!args.debug))?;
    println!(
        "replay: {total} frames in {} ({oversized} oversized, not sent; {truncated} truncated captures), {} expressions, {} frames/s{}",
        args.file.display(),
        args.expressions.len(),
        args.rate,
        if args.icount { ", -icount shift=0" } else { "" }
    );
    let echo = if args.verbose {
        Echo::Terminal
    } else {
        Echo::Quiet
    };
    let mut outcome = replay_frames(
        &image.kernel,
        frames,
        &args.expressions,
        &[],
        "",
        args.rate,
        args.icount,
        echo,
    )?;
    outcome.oversized_not_sent = oversized;
    outcome.truncated = truncated;
    report(&outcome, args.icount)
}

fn report(outcome: &Outcome, icount: bool) -> Result<ExitCode> {
    println!("{:<40} {:>10} {:>10}", "filter", "received", "hosted dpf");
    for (expression, received, hosted) in &outcome.apps {
        let mark = if received == hosted { "" } else { "  MISMATCH" };
        println!("{expression:<40} {received:>10} {hosted:>10}{mark}");
    }
    let counter = |counter: Counter| outcome.counter(counter.name());
    let demux_frames = counter(Counter::DemuxFrames).max(1);
    let per_packet = counter(Counter::DemuxCycles) as f64 / demux_frames as f64;
    println!(
        "kernel: {}",
        outcome
            .kernel
            .iter()
            .map(|(name, value)| format!("{name}={value}"))
            .collect::<Vec<_>>()
            .join(" ")
    );
    let unit = if icount {
        "guest instructions"
    } else {
        "TSC cycles"
    };
    println!(
        "sent {} frames in {:.2} s ({:.0} frames/s); in-kernel demux {per_packet:.0} {unit}/packet ({} netmon apps)",
        outcome.sent,
        outcome.send_seconds,
        outcome.sent as f64 / outcome.send_seconds.max(1e-9),
        outcome.apps.len()
    );
    let json = serde_json::json!({
        "apps": outcome.apps.iter().map(|(filter, received, hosted)| serde_json::json!({
            "filter": filter, "received": received, "hosted": hosted,
        })).collect::<Vec<_>>(),
        "kernel": outcome.kernel,
        "sent": outcome.sent,
        "oversized_not_sent": outcome.oversized_not_sent,
        "truncated_captures": outcome.truncated,
        "send_seconds": outcome.send_seconds,
        "host_socket_drops": outcome.host_socket_drops,
        "demux_per_packet": per_packet,
        "demux_unit": unit,
    });
    let path = image::workspace_root().join("target/bench/replay.json");
    std::fs::create_dir_all(path.parent().expect("has a parent"))?;
    std::fs::write(&path, serde_json::to_string_pretty(&json)?)?;
    println!("wrote {}", path.display());
    match outcome.verdict() {
        Ok(()) => {
            println!("replay: every count matches hosted dpf; no frame lost");
            Ok(ExitCode::SUCCESS)
        }
        Err(problem) => {
            for line in outcome.serial.lines() {
                println!("    | {line}");
            }
            println!("replay: FAILED: {problem}");
            Ok(ExitCode::FAILURE)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_are_stripped_and_arguments_hexed() {
        assert_eq!(strip_options("stall:tcp"), "tcp");
        assert_eq!(strip_options("claimed:tcp"), "tcp");
        assert_eq!(strip_options("unbind-after=5:udp"), "udp");
        assert_eq!(strip_options("revoke-after=5:udp"), "udp");
        assert_eq!(strip_options("upcall:stall:udp"), "udp");
        assert_eq!(hex("ab "), "616220");
    }
}
