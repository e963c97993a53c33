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

/// A frame: Ethernet II + IPv4 + UDP (or TCP) with `destination_port`, from 10.0.0.1.
fn transport_frame(protocol: u8, destination_port: u16, payload_bytes: usize) -> Vec<u8> {
    let mut frame = vec![
        0x52, 0x54, 0, 0x12, 0x34, 0x56, 0x02, 0, 0, 0, 0, 1, 0x08, 0x00,
    ];
    let transport_bytes = if protocol == 6 { 20 } else { 8 };
    let total = (20 + transport_bytes + payload_bytes) as u16;
    frame.extend_from_slice(&[0x45, 0]);
    frame.extend_from_slice(&total.to_be_bytes());
    frame.extend_from_slice(&[0, 0, 0x40, 0, 64, protocol, 0, 0, 10, 0, 0, 1, 10, 0, 2, 15]);
    frame.extend_from_slice(&40000u16.to_be_bytes());
    frame.extend_from_slice(&destination_port.to_be_bytes());
    frame.resize(frame.len() + transport_bytes - 4, 0);
    frame.resize(frame.len() + payload_bytes, 0xab);
    frame
}

/// Traffic for the test scenarios: `counts[i]` UDP frames to port 7001 + i, interleaved, plus
/// TCP port 80 frames nobody binds, runts, frames with bad IPv4 headers and cut-off frames.
fn scenario_frames(counts: &[usize], runts: usize) -> Vec<Vec<u8>> {
    let mut frames = Vec::new();
    let most = counts.iter().copied().max().unwrap_or(0);
    for round in 0..most {
        for (index, count) in counts.iter().enumerate() {
            if round < *count {
                frames.push(transport_frame(17, 7001 + index as u16, round % 200));
            }
        }
        if round % 4 == 0 {
            frames.push(transport_frame(6, 80, 10));
        }
        if round % 16 == 0 {
            let mut bad = transport_frame(17, 7001, 4);
            bad[14] = 0x42; // IHL 2: shorter than an IPv4 header
            frames.push(bad);
            let mut cut = transport_frame(17, 7001, 0);
            cut.truncate(14 + 20 + 2); // the destination port is missing
            frames.push(cut);
        }
        if round < runts {
            frames.push(vec![0xff; 1 + round % 13]);
        }
    }
    frames
}

/// A QEMU scenario with traffic: what netmon binds, what is injected, how it is judged.
struct NetScenario {
    name: &'static str,
    expressions: &'static [&'static str],
    /// UDP frames to port 7001, 7002, ...
    counts: &'static [usize],
    runts: usize,
    /// Apps booted beside the monitors.
    companions: &'static [&'static str],
    /// More kernel command-line words.
    boot_words: &'static str,
    judge: fn(&Outcome) -> std::result::Result<(), String>,
}

/// The numbers in the first serial line that starts with `prefix`, in order.
fn numbers_after(serial: &str, prefix: &str) -> Vec<u64> {
    serial
        .lines()
        .find_map(|line| app_text(line).strip_prefix(prefix))
        .map(|rest| {
            rest.split(|c: char| !c.is_ascii_digit())
                .filter_map(|word| word.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

fn app_count(outcome: &Outcome, index: usize) -> (u64, u64) {
    let (_, received, hosted) = &outcome.apps[index];
    (*received, *hosted)
}

const NET_SCENARIOS: &[NetScenario] = &[
    NetScenario {
        // Three apps bind 16 ports each (32 port-claiming conjunctions: IPv4 and IPv6), all
        // merged into the kernel's one shared demux: each app gets exactly its ports' frames,
        // and once a port table exists binds only patch a table entry (no new code).
        name: "net-shared-demux",
        expressions: &[
            "udp dst port 7001 or 7004 or 7007 or 7010 or 7013 or 7016 or 7019 or 7022 or 7025 or 7028 or 7031 or 7034 or 7037 or 7040 or 7043 or 7046",
            "udp dst port 7002 or 7005 or 7008 or 7011 or 7014 or 7017 or 7020 or 7023 or 7026 or 7029 or 7032 or 7035 or 7038 or 7041 or 7044 or 7047",
            "udp dst port 7003 or 7006 or 7009 or 7012 or 7015 or 7018 or 7021 or 7024 or 7027 or 7030 or 7033 or 7036 or 7039 or 7042 or 7045 or 7048",
        ],
        counts: &[10; 48],
        runts: 0,
        companions: &[],
        boot_words: "",
        judge: |outcome| {
            outcome.verdict()?;
            for app in 0..3 {
                if app_count(outcome, app).0 != 160 {
                    return Err(format!(
                        "app {app} got {} frames, not its 16 ports x 10",
                        app_count(outcome, app).0
                    ));
                }
            }
            let patched = outcome.counter("demux_patched");
            let regenerated = outcome.counter("demux_regenerated");
            // 96 binds, then three releases: a few regenerations while each port dispatch is
            // still a compare chain, patches after.
            if patched < 60 || regenerated * 3 > patched {
                return Err(format!(
                    "shared demux: {patched} changes patched, {regenerated} regenerated (want most patched); kernel {:?}",
                    outcome.kernel
                ));
            }
            Ok(())
        },
    },
    NetScenario {
        // Two apps with disjoint filters each get exactly their frames; runts, bad headers and
        // cut-off frames are counted and crash nothing.
        name: "net-two-filters",
        expressions: &["udp dst port 7001", "udp dst port 7002"],
        counts: &[300, 200],
        runts: 7,
        companions: &[],
        boot_words: "",
        judge: |outcome| {
            outcome.verdict()?;
            if app_count(outcome, 0).0 != 300 || app_count(outcome, 1).0 != 200 {
                return Err("the apps did not get exactly their 300 and 200 frames".into());
            }
            match outcome.kernel.get("malformed") {
                Some(7) => Ok(()),
                other => Err(format!("expected 7 malformed (the runts), got {other:?}")),
            }
        },
    },
    NetScenario {
        // The monitor right is a capability: netmon starts with a root one (`monitor=netmon`),
        // grants itself a derived one and binds a monitor filter with it, revokes it (which
        // unbinds that filter: its binding capability derives from the monitor capability)
        // and is refused (`Denied`) the same binding; then binds with the root and gets all.
        name: "net-monitor-capability",
        expressions: &["revoked:udp"],
        counts: &[100],
        runts: 0,
        companions: &[],
        boot_words: "",
        judge: |outcome| {
            outcome.verdict()?;
            let checked = outcome
                .serial
                .contains("netmon: bound with a granted monitor capability")
                && outcome
                    .serial
                    .contains("netmon: revoking the monitor capability unbound its filters")
                && outcome.serial.contains("netmon: after revoke: Denied")
                && outcome
                    .serial
                    .contains("]: filter 0 \"udp\": revoke check Ok(())");
            // `verdict` holds it to hosted dpf's count; at least the 100 injected.
            if !checked || app_count(outcome, 0).0 < 100 {
                return Err(format!(
                    "revoke check passed {checked}, monitor got {} frames (want 100 or more)",
                    app_count(outcome, 0).0
                ));
            }
            Ok(())
        },
    },
    NetScenario {
        // One app never drains its ring: the kernel drops and counts, the other app gets all.
        name: "net-ring-full",
        expressions: &["stall:udp dst port 7001", "udp dst port 7002"],
        counts: &[200, 200],
        runts: 0,
        companions: &[],
        boot_words: "",
        judge: |outcome| {
            outcome.no_loss()?;
            let (stalled, _) = app_count(outcome, 0);
            let (other, other_hosted) = app_count(outcome, 1);
            let ring_full = outcome.counter("ring_full");
            // netmon's rings hold 128 frames.
            if stalled != 0 || ring_full != 200 - 128 || other != other_hosted {
                return Err(format!(
                    "stalled app took {stalled}, ring_full {ring_full} (want {}), other app {other} of {other_hosted}",
                    200 - 128
                ));
            }
            Ok(())
        },
    },
    NetScenario {
        // One app unbinds while frames keep arriving; the other keeps getting all of its own.
        name: "net-unbind-under-traffic",
        expressions: &["unbind-after=50:udp dst port 7001", "udp dst port 7002"],
        counts: &[300, 300],
        runts: 0,
        companions: &[],
        boot_words: "",
        judge: |outcome| {
            outcome.no_loss()?;
            let (unbound, hosted) = app_count(outcome, 0);
            let (other, other_hosted) = app_count(outcome, 1);
            if !(50..hosted).contains(&unbound) || other != other_hosted {
                return Err(format!(
                    "unbinding app took {unbound} of {hosted}, other app {other} of {other_hosted}"
                ));
            }
            Ok(())
        },
    },
    NetScenario {
        // Port ownership: the first app owns UDP port 7001, the third's bind of the same port
        // is refused (`AddressInUse`) while the second binds 7002 beside it; once the first
        // unbinds under traffic, the third binds 7001 and gets the rest of its frames.
        name: "net-port-ownership",
        expressions: &[
            "unbind-after=50:udp dst port 7001",
            "udp dst port 7002",
            "claimed:udp dst port 7001",
        ],
        counts: &[300, 300],
        runts: 0,
        companions: &[],
        boot_words: "",
        judge: |outcome| {
            outcome.no_loss()?;
            let (first, hosted) = app_count(outcome, 0);
            let (second, second_hosted) = app_count(outcome, 1);
            let (third, _) = app_count(outcome, 2);
            let refused = outcome.serial.contains(
                "]: filter 0 \"udp dst port 7001\": AddressInUse, waiting for the owner to unbind",
            );
            let rebound = outcome.serial.contains("]: filter 0 bound once released");
            // Every instance's transmit from a port it does not own, and of an ethertype off
            // the allow list, was refused (4 counted refusals each: MAC, IPv4, port,
            // ethertype); the owners' transmits from their own ports went out.
            let spoofed = outcome.serial.matches("source port Err(Denied)").count();
            let unlisted = outcome
                .serial
                .matches(
                    "unlisted ethertype Err(Denied), raw through a forged capability Err(Denied)",
                )
                .count();
            let own_port_sent = outcome
                .serial
                .contains("]: transmit from owned port Udp 7002: Ok(42)");
            if spoofed != 3
                || unlisted != 3
                || !own_port_sent
                || outcome.kernel.get("tx_refused") != Some(&12)
            {
                return Err(format!(
                    "spoofed source ports refused {spoofed} of 3, unlisted ethertypes {unlisted} of 3, own port sent {own_port_sent}, tx_refused {:?} (want 12)",
                    outcome.kernel.get("tx_refused")
                ));
            }
            if !refused
                || !rebound
                || !(50..hosted).contains(&first)
                || third == 0
                || first + third > hosted
                || second != second_hosted
            {
                return Err(format!(
                    "refused {refused}, rebound {rebound}; port 7001: first app {first}, third {third} of {hosted}; port 7002: {second} of {second_hosted}"
                ));
            }
            Ok(())
        },
    },
    NetScenario {
        // Bindings are capabilities: the first app checks `filter_unbind` refuses bad
        // capabilities (none, an environment's, forged, a copy without CONTROL), unbinds
        // through a granted copy and by deleting its capabilities, which are stale after; its
        // ring gets nothing more, and the port it claimed is free: the third app, refused at
        // first (`AddressInUse`), binds it and gets the rest.
        name: "net-binding-capability",
        expressions: &[
            "revoke-after=50:udp dst port 7001",
            "udp dst port 7002",
            "claimed:udp dst port 7001",
        ],
        counts: &[300, 300],
        runts: 0,
        companions: &[],
        boot_words: "",
        judge: |outcome| {
            outcome.no_loss()?;
            let (first, hosted) = app_count(outcome, 0);
            let (second, second_hosted) = app_count(outcome, 1);
            let (third, _) = app_count(outcome, 2);
            let checks = outcome
                .serial
                .contains("]: binding capability checks passed");
            let silent = outcome
                .serial
                .contains("]: filter 0 received 0 after unbinding");
            let refused = outcome.serial.contains(
                "]: filter 0 \"udp dst port 7001\": AddressInUse, waiting for the owner to unbind",
            );
            let rebound = outcome.serial.contains("]: filter 0 bound once released");
            if !checks
                || !silent
                || !refused
                || !rebound
                || !(50..hosted).contains(&first)
                || third == 0
                || first + third > hosted
                || second != second_hosted
            {
                return Err(format!(
                    "checks {checks}, nothing after unbinding {silent}, refused {refused}, rebound {rebound}; port 7001: first app {first}, third {third} of {hosted}; port 7002: {second} of {second_hosted}"
                ));
            }
            Ok(())
        },
    },
    NetScenario {
        // Receive without spinning: the first app blocks in `net_wait` and wakes when its
        // frames arrive (interrupt-driven receive), the second never waits and learns of its
        // frames by packet upcall, and a computing app beside them keeps the processor: it is
        // charged most ticks, the waiter almost none. No frame is lost.
        name: "net-wait-blocks",
        expressions: &["udp dst port 7001", "upcall:udp dst port 7002"],
        counts: &[300, 300],
        runts: 0,
        companions: &["spin"],
        boot_words: "",
        judge: |outcome| {
            outcome.verdict()?;
            let spin = numbers_after(&outcome.serial, "spin: ");
            let waiter = numbers_after(&outcome.serial, "netmon[1]: net_wait returned ");
            let upcalled = numbers_after(&outcome.serial, "netmon[2]: net_wait returned ");
            let (
                [rounds, spin_charged, spin_ticks],
                [_, with_frames, _, waiter_charged],
                [_, _, upcalls, _],
            ) = (spin.as_slice(), waiter.as_slice(), upcalled.as_slice())
            else {
                return Err(format!(
                    "reports missing: spin {spin:?}, waiter {waiter:?}, upcall app {upcalled:?}"
                ));
            };
            let counter = |name: &str| outcome.counter(name);
            if *rounds == 0
                || spin_charged * 2 < *spin_ticks
                || *with_frames == 0
                || waiter_charged * 4 > *spin_charged
                || *upcalls == 0
                || counter("interrupts") == 0
                || counter("waits_blocked") == 0
                || counter("waits_woken") == 0
            {
                return Err(format!(
                    "spin: {rounds} rounds, charged {spin_charged} of {spin_ticks} ticks; waiter woken with frames {with_frames} times, charged {waiter_charged}; packet upcalls {upcalls}; interrupts {}, waits blocked {}, woken {}",
                    counter("interrupts"),
                    counter("waits_blocked"),
                    counter("waits_woken")
                ));
            }
            Ok(())
        },
    },
    NetScenario {
        // A VLAN-tagged filter that pins ethertype, protocol and destination port claims that
        // port like an untagged one: the second app's untagged bind of the same port is
        // refused (`AddressInUse`) while the first lives, so nobody gets the (untagged) frames
        // to that port.
        name: "net-vlan-claim",
        expressions: &["vlan and udp dst port 7001", "claimed:udp dst port 7001"],
        counts: &[100],
        runts: 0,
        companions: &[],
        boot_words: "",
        judge: |outcome| {
            outcome.no_loss()?;
            let refused = outcome.serial.contains(
                "]: filter 0 \"udp dst port 7001\": AddressInUse, waiting for the owner to unbind",
            );
            let sent = outcome
                .serial
                .contains("]: transmit from owned port Udp 7001: Ok(42)");
            // The second app may bind once the first has ended (after the traffic): it must
            // have received none of the frames to the port.
            let (tagged, untagged) = (app_count(outcome, 0).0, app_count(outcome, 1).0);
            if !refused || !sent || tagged != 0 || untagged != 0 {
                return Err(format!(
                    "untagged bind refused {refused}, tagged owner sent from its port {sent}; received: tagged owner {tagged}, untagged {untagged}"
                ));
            }
            Ok(())
        },
    },
    NetScenario {
        // The host's IPv4 address is a boot parameter: booted with 192.168.7.2, netmon learns
        // it (`net_ipv4`), transmits from it and is refused the default 10.0.2.15.
        name: "net-ipv4-parameter",
        expressions: &["udp dst port 7001"],
        counts: &[100],
        runts: 0,
        companions: &[],
        boot_words: "ipv4=192.168.7.2",
        judge: |outcome| {
            outcome.verdict()?;
            let configured = outcome
                .serial
                .contains("]: IPv4 192.168.7.2; transmit from 10.0.2.15: Err(Denied)");
            let sent = outcome
                .serial
                .contains("]: transmit from owned port Udp 7001: Ok(42)");
            if !configured || !sent {
                return Err(format!(
                    "default address refused {configured}, configured address sent {sent}"
                ));
            }
            Ok(())
        },
    },
];

/// Runs the scenarios that need traffic (for `cargo xtask test`); returns (passed, failed).
pub fn run_scenarios(kernel: &std::path::Path, filter: Option<&str>, verbose: bool) -> (u64, u64) {
    let (mut passed, mut failed) = (0, 0);
    for scenario in NET_SCENARIOS {
        if filter.is_some_and(|filter| !scenario.name.contains(filter)) {
            continue;
        }
        let start = Instant::now();
        let expressions: Vec<String> = scenario.expressions.iter().map(|e| e.to_string()).collect();
        let frames = scenario_frames(scenario.counts, scenario.runts);
        let sent = frames.len();
        let result = replay_frames(
            kernel,
            frames,
            &expressions,
            scenario.companions,
            scenario.boot_words,
            20_000,
            false,
            Echo::Quiet,
        )
        .map_err(|error| error.to_string())
        .and_then(|outcome| {
            outcome.clean_exit()?;
            (scenario.judge)(&outcome).map(|()| outcome)
        });
        let seconds = start.elapsed().as_secs_f64();
        match result {
            Ok(outcome) => {
                passed += 1;
                println!(
                    "scenario {} ({seconds:.2} s, {sent} frames injected): ok; kernel {:?}",
                    scenario.name, outcome.kernel
                );
                if verbose {
                    for line in outcome.serial.lines() {
                        println!("    | {line}");
                    }
                }
            }
            Err(problem) => {
                failed += 1;
                println!(
                    "scenario {} ({seconds:.2} s): FAILED: {problem}",
                    scenario.name
                );
            }
        }
    }
    (passed, failed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_frames_match_what_they_claim() {
        let frames = scenario_frames(&[3, 2], 2);
        let port = |port: u16| {
            let filters =
                dpf::frontend::compile(&format!("udp dst port {port}"), dpf::FilterId(0)).unwrap();
            frames
                .iter()
                .filter(|f| dpf::frontend::matches_any(&filters, &dpf::Packet::whole(f)))
                .count()
        };
        assert_eq!(port(7001), 3);
        assert_eq!(port(7002), 2);
        assert_eq!(frames.iter().filter(|f| f.len() < 14).count(), 2);
        assert_eq!(strip_options("stall:tcp"), "tcp");
        assert_eq!(strip_options("claimed:tcp"), "tcp");
        assert_eq!(strip_options("unbind-after=5:udp"), "udp");
        assert_eq!(strip_options("revoke-after=5:udp"), "udp");
        assert_eq!(strip_options("upcall:stall:udp"), "udp");
        assert_eq!(hex("ab "), "616220");
        assert_eq!(
            numbers_after("x\nspin: 5 rounds; ticks charged 3 of 9\n", "spin: "),
            [5, 3, 9]
        );
    }
}
