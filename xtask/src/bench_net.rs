//! `cargo xtask bench net`: exo's network servers against Linux 6.1's on the same emulated
//! machine and the same wire.
//!
//! One topology for both (a namespace with a tap device, [`crate::topology`]); the clients
//! run in the namespace. The server is either exo (ashd's in-kernel UDP echo, apps/echo,
//! apps/httpd, apps/busy) or Debian's Linux 6.1 booted in the same QEMU (`-cpu max`, 256 MiB,
//! the same virtio-net device) from an initramfs of Debian's packages ([`initramfs`]) around
//! `bench/linux-init` run as `/init net`: nginx, socat's TCP echo, a UDP echo process and busy
//! processes on demand. Every boot runs under `-icount shift=0`, and QMP's raw instruction
//! counter ([`qmp`]) read around each measurement gives the guest's busy instructions per
//! request, per KB or per round trip: the deterministic figure beside each time.
//!
//! Rows: HTTP (`wrk --latency` on /1k.html and /100k.bin at 1, 16 and 64 connections; `ab -k`
//! on one case), httpd with each of Cheetah's techniques (`cheetah=` boot argument), TCP bulk
//! through an echo ([`bulk`]), and UDP round trips ([`rtt`]) by ASH, by the echo app and by
//! Linux with 0, 1, 2, 5 and 10 busy environments. Rounds alternate which system goes first.
//! Writes `target/bench/net.json`, `net.svg`, `net.png` and each boot's console
//! (`net-<boot>.log`); prints the table and the targets with pass or fail (a missed
//! target never fails the command: this is a benchmark).
mod bulk;
mod http_load;
pub(crate) mod initramfs;
mod netns;
mod plot;
mod profile;
mod qmp;
mod report;
mod rtt;

use crate::qemu::{Accel, Echo, Qemu, TapNetdev};
use crate::topology::{self, GUEST_ADDRESS, Topology};
use crate::{Result, bench_ash, bench_kernel, image, setup};
use indicatif::{ProgressBar, ProgressStyle};
use report::{Group, Row, Sample};
use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

/// Which systems serve.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Systems {
    Both,
    Exo,
    Linux,
}

/// Parts of the benchmark.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Part {
    /// wrk on both documents and all connection counts.
    Http,
    /// ab -k on one case.
    Ab,
    /// TCP bulk through an echo.
    Bulk,
    /// UDP round trips with 0..10 busy environments.
    Udp,
    /// httpd with each of Cheetah's techniques.
    Cheetah,
}

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Shorter runs (1 s warm-up, 3 s wrk, 8 MiB bulk, 1,000 round trips, one round): under
    /// ten minutes on 2 shared vCPUs.
    #[arg(long)]
    pub quick: bool,
    /// Boot only one system (the other's rows are missing, and so are the ratios).
    #[arg(long, value_enum, default_value_t = Systems::Both)]
    pub systems: Systems,
    /// Run only these parts (comma-separated; default all).
    #[arg(long, value_enum, value_delimiter = ',')]
    pub parts: Vec<Part>,
    /// Rounds (each boots every server again; default 1 with --quick, else 3).
    #[arg(long)]
    pub rounds: Option<usize>,
    /// Whether the Linux guest may use virtio-net's checksum and segmentation offloads (the
    /// tap's `vnet_hdr`). On, as a Linux VM runs by default: Linux hands the device frames of
    /// up to 64 KiB. Off: every frame is one it built, as exo's are (virtio-drivers
    /// negotiates no offload), so the per-frame costs compare like for like.
    #[arg(long, value_enum, default_value_t = Offloads::On)]
    pub linux_offloads: Offloads,
}

/// `--linux-offloads`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Offloads {
    On,
    Off,
}

/// Durations and counts of one mode.
#[derive(Clone, Debug)]
struct Plan {
    warmup: Duration,
    duration: Duration,
    ab_requests: u64,
    bulk_bytes: u64,
    udp_requests: u64,
    udp_budget: Duration,
    rounds: usize,
    parts: Vec<Part>,
    /// The Linux guest's tap offloads.
    linux_offloads: bool,
}

impl Plan {
    fn new(args: &Args) -> Plan {
        let parts = if args.parts.is_empty() {
            vec![Part::Http, Part::Ab, Part::Bulk, Part::Udp, Part::Cheetah]
        } else {
            args.parts.clone()
        };
        if args.quick {
            Plan {
                warmup: Duration::from_secs(1),
                duration: Duration::from_secs(3),
                ab_requests: 2_000,
                bulk_bytes: 8 << 20,
                udp_requests: 1_000,
                udp_budget: Duration::from_secs(15),
                rounds: args.rounds.unwrap_or(1),
                parts,
                linux_offloads: args.linux_offloads == Offloads::On,
            }
        } else {
            Plan {
                warmup: Duration::from_secs(3),
                duration: Duration::from_secs(10),
                ab_requests: 20_000,
                bulk_bytes: 64 << 20,
                udp_requests: 10_000,
                udp_budget: Duration::from_secs(240),
                rounds: args.rounds.unwrap_or(3),
                parts,
                linux_offloads: args.linux_offloads == Offloads::On,
            }
        }
    }

    fn has(&self, part: Part) -> bool {
        self.parts.contains(&part)
    }
}

/// Documents and connection counts of the HTTP rows.
const DOCUMENTS: [&str; 2] = ["/1k.html", "/100k.bin"];
const CONNECTIONS: [u32; 3] = [1, 16, 64];
/// Busy environments (exo) or processes (Linux) on the server during the UDP rows.
const BUSY: [u32; 5] = [0, 1, 2, 5, 10];
/// httpd's `cheetah=` values measured: `none` is its smoltcp path, `engine` libnet's Cheetah
/// engine with no technique (the baseline each technique is judged against).
const CHEETAH: [&str; 6] = ["none", "engine", "prebuilt", "cache", "piggyback", "all"];
/// Ports: ASH's UDP echo (ashd's stock handler), the echo app's UDP and TCP echo, the
/// Linux server's control port (bench/linux-init's `net` module).
const ASH_UDP_PORT: u16 = 7;
const APP_UDP_PORT: u16 = 7007;
const TCP_ECHO_PORT: u16 = 7;
const LINUX_CONTROL_PORT: u16 = 9999;
/// ashd's report port: a datagram there prints the kernel's arrival-to-send counters.
const ASHD_REPORT_PORT: u16 = 9006;
/// exo's two httpds in the main boot: Cheetah's path (`cheetah=all`, exo's httpd) and the
/// smoltcp path. The ready lines the boot waits for name these two ports.
const EXO_HTTPD_PORT: u16 = 80;
const SMOLTCP_HTTPD_PORT: u16 = 8080;
/// nginx's port on Linux.
const NGINX_PORT: u16 = 80;
/// httpd's listening pool: smoltcp has no backlog, so the pool must cover the most
/// connections the rows open at once (64); the Cheetah path has no pool and ignores it.
const HTTPD_POOL: usize = 64;
/// The profile ports (`libnet::stack::profile_port`) of exo's httpd, the smoltcp httpd and
/// echo in the main boot.
const PROFILE_PORTS: [u16; 3] = [9801, 9802, 9803];
/// Per-request timeout of the UDP client.
const UDP_TIMEOUT: Duration = Duration::from_secs(1);
/// Longest wait for a server's ready lines.
const READY_WITHIN: Duration = Duration::from_secs(180);

fn hex(text: &str) -> String {
    text.bytes().map(|byte| format!("{byte:02x}")).collect()
}

/// One boot of one server configuration.
#[derive(Clone, Debug)]
struct Boot {
    /// For the console log's name.
    name: String,
    system: &'static str,
    kernel: PathBuf,
    append: String,
    extra: Vec<OsString>,
    /// Serial lines to wait for before measuring.
    ready: Vec<&'static str>,
    /// The tap's offloads (see [`TapNetdev::offloads`]).
    offloads: bool,
}

/// exo's command line: `apps` with their `arg=K:` (hex) arguments, ashd as the monitor.
fn exo_cmdline(apps: &[(&str, &str)]) -> String {
    let names: Vec<&str> = apps.iter().map(|(name, _)| *name).collect();
    let mut line = format!("apps={}", names.join(","));
    if names.contains(&"ashd") {
        line.push_str(" monitor=ashd");
    }
    for (index, (_, argument)) in apps.iter().enumerate() {
        if !argument.is_empty() {
            line.push_str(&format!(" arg={}:{}", index + 1, hex(argument)));
        }
    }
    line
}

/// A running guest: its serial lines and its QMP connection.
struct Guest {
    lines: Receiver<String>,
    seen: Vec<String>,
    qmp: qmp::Qmp,
    /// The last token sent to ashd's report port.
    report_token: usize,
}

impl Guest {
    fn wait_for(&mut self, text: &str, within: Duration) -> std::result::Result<String, String> {
        if let Some(line) = self.seen.iter().find(|line| line.contains(text)) {
            return Ok(line.clone());
        }
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.contains(text) {
                        return Ok(line);
                    }
                }
                Err(_) => return Err(format!("no serial line with {text:?} within {within:?}")),
            }
        }
    }

    fn instructions(&mut self) -> std::result::Result<u64, String> {
        self.qmp.instructions()
    }

    /// An error if a server on the guest has ended (an exo app exiting, Linux's init
    /// stopping): measuring a dead server would only wait for timeouts.
    fn check_alive(&mut self) -> std::result::Result<(), String> {
        while let Ok(line) = self.lines.try_recv() {
            self.seen.push(line);
        }
        let ended = |line: &&String| {
            (line.starts_with("[exo] app ") && line.contains(" exited with status"))
                || line.contains("stopping the machine")
        };
        match self.seen.iter().find(ended) {
            None => Ok(()),
            Some(line) => {
                let last_words: Vec<&str> = self
                    .seen
                    .iter()
                    .filter(|line| line.contains("panicked") || line.contains("failed"))
                    .map(String::as_str)
                    .take(3)
                    .collect();
                Err(format!("the server ended: {line} {}", last_words.join(" ")))
            }
        }
    }
}

/// Boots `boot` on the topology's tap under `-icount shift=0` with a QMP socket, waits for
/// its ready lines, runs `work`, stops the machine and keeps its console in `out`.
fn with_guest<T>(
    topology: &Topology,
    boot: &Boot,
    out: &Path,
    work: impl FnOnce(&mut Guest) -> std::result::Result<T, String>,
) -> std::result::Result<T, String> {
    let socket = std::env::temp_dir().join(format!("exo-bench-net-{}.qmp", std::process::id()));
    let _ = fs::remove_file(&socket);
    let mut extra = boot.extra.clone();
    extra.extend([
        "-icount".into(),
        "shift=0".into(),
        "-qmp".into(),
        format!("unix:{},server=on,wait=off", socket.display()).into(),
    ]);
    let (sender, lines) = std::sync::mpsc::channel::<String>();
    let stop = AtomicBool::new(false);
    let (outcome, run) = std::thread::scope(|scope| {
        let stop = &stop;
        let extra = &extra;
        let qemu = scope.spawn(move || {
            Qemu {
                kernel: &boot.kernel,
                append: &boot.append,
                accel: Accel::Tcg,
                // A bound on the whole boot; `stop` ends it as soon as the work is done.
                timeout: Duration::from_secs(3600),
                echo: Echo::Quiet,
                netdev: None,
                tap: Some(TapNetdev {
                    namespace: &topology.namespace,
                    ifname: topology::TAP,
                    offloads: boot.offloads,
                }),
            }
            .run_until(
                extra,
                move |line| {
                    let _ = sender.send(line.to_string());
                },
                stop,
            )
            .map_err(|error| error.to_string())
        });
        let outcome = (|| {
            let qmp = qmp::Qmp::connect(&socket, Duration::from_secs(20))?;
            let mut guest = Guest {
                lines,
                seen: Vec::new(),
                qmp,
                report_token: 0,
            };
            for ready in &boot.ready {
                guest.wait_for(ready, READY_WITHIN)?;
            }
            // The previous boot's neighbour entry (a failed resolution while no guest ran)
            // would answer "no route to host" for a while: ask afresh.
            let _ = std::process::Command::new("ip")
                .args([
                    "-n",
                    &topology.namespace,
                    "neigh",
                    "flush",
                    "dev",
                    topology::TAP,
                ])
                .output();
            work(&mut guest)
        })();
        stop.store(true, Ordering::SeqCst);
        (outcome, qemu.join())
    });
    let _ = fs::remove_file(&socket);
    let log = out.join(format!("net-{}.log", boot.name));
    let serial = match run {
        Ok(Ok(run)) => run.serial,
        Ok(Err(error)) => format!("[qemu did not run: {error}]"),
        Err(_) => "[the QEMU thread panicked]".into(),
    };
    let _ = fs::write(&log, &serial);
    outcome.map_err(|error| {
        let tail: Vec<&str> = serial.lines().rev().take(8).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        format!(
            "{}: {error} (console in {}; it ends: {})",
            boot.name,
            log.display(),
            tail.join(" / ")
        )
    })
}

/// Runs a client program in the namespace, killed after `deadline`; its stdout.
fn client(
    topology: &Topology,
    program: &str,
    arguments: &[&str],
    deadline: Duration,
) -> std::result::Result<String, String> {
    let output = topology
        .run(program, arguments, deadline, None)
        .map_err(|error| error.to_string())?;
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    if !output.status.success() {
        return Err(format!(
            "{program} {} failed ({}): {stdout}{}",
            arguments.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    Ok(stdout)
}

/// Fetches every document with curl (retrying while the server starts) and checks the
/// bytes against httpd's site: both servers must serve the same thing.
fn check_site(topology: &Topology, port: u16) -> std::result::Result<(), String> {
    let site = crate::scenarios::httpd_site()?;
    for document in DOCUMENTS {
        let wanted = &site
            .iter()
            .find(|(path, _)| *path == document)
            .ok_or_else(|| format!("{document} is not in httpd's site"))?
            .1;
        let url = format!("http://{GUEST_ADDRESS}:{port}{document}");
        let start = Instant::now();
        let output = loop {
            let output = topology
                .run(
                    "curl",
                    &["-s", "-S", "--max-time", "10", &url],
                    Duration::from_secs(15),
                    None,
                )
                .map_err(|error| error.to_string())?;
            if output.status.success() || start.elapsed() > Duration::from_secs(60) {
                break output;
            }
            std::thread::sleep(Duration::from_millis(500));
        };
        if !output.status.success() {
            return Err(format!(
                "curl {url}: {}",
                String::from_utf8_lossy(&output.stderr).trim()
            ));
        }
        if output.stdout != *wanted {
            return Err(format!(
                "curl {url}: {} bytes, not the site's {} bytes",
                output.stdout.len(),
                wanted.len()
            ));
        }
    }
    Ok(())
}

/// One wrk run after a warm-up; instructions counted over the measured run only.
fn wrk(
    guest: &mut Guest,
    topology: &Topology,
    port: u16,
    document: &str,
    connections: u32,
    plan: &Plan,
) -> std::result::Result<Sample, String> {
    guest.check_alive()?;
    let url = format!("http://{GUEST_ADDRESS}:{port}{document}");
    let run = |duration: Duration| {
        let connections = format!("-c{connections}");
        let seconds = format!("-d{}s", duration.as_secs());
        client(
            topology,
            "wrk",
            &[
                "-t1",
                &connections,
                &seconds,
                "--latency",
                "--timeout",
                "5s",
                &url,
            ],
            duration + Duration::from_secs(30),
        )
    };
    run(plan.warmup)?;
    let before = guest.instructions()?;
    let report = run(plan.duration)?;
    let after = guest.instructions()?;
    let load = http_load::parse_wrk(&report)?;
    if load.requests == 0 {
        return Err(format!("wrk: no request answered ({} errors)", load.errors));
    }
    Ok(http_sample(&load, after - before))
}

/// The row's sample from an HTTP client's report and the guest instructions it took.
fn http_sample(load: &http_load::Load, instructions: u64) -> Sample {
    Sample {
        rate: load.requests_per_second,
        p50_us: Some(load.p50_ms * 1e3),
        p99_us: Some(load.p99_ms * 1e3),
        instructions_per_unit: instructions as f64 / load.requests.max(1) as f64,
        count: load.requests,
        errors: load.errors,
        reply_instructions: None,
    }
}

/// `ab -k` on /1k.html at 16 connections.
fn ab(
    guest: &mut Guest,
    topology: &Topology,
    port: u16,
    plan: &Plan,
) -> std::result::Result<Sample, String> {
    guest.check_alive()?;
    let url = format!("http://{GUEST_ADDRESS}:{port}/1k.html");
    let requests = plan.ab_requests.to_string();
    let before = guest.instructions()?;
    let report = client(
        topology,
        "ab",
        &["-k", "-q", "-n", &requests, "-c", "16", "-s", "10", &url],
        Duration::from_secs(300),
    )?;
    let after = guest.instructions()?;
    let load = http_load::parse_ab(&report)?;
    if load.requests == 0 {
        return Err(format!("ab: no request answered ({} failed)", load.errors));
    }
    Ok(http_sample(&load, after - before))
}

fn bulk_sample(
    guest: &mut Guest,
    topology: &Topology,
    plan: &Plan,
) -> std::result::Result<Sample, String> {
    guest.check_alive()?;
    let bytes = plan.bulk_bytes;
    let before = guest.instructions()?;
    let transfer = netns::run_in(&topology.namespace, move || {
        bulk::echo(
            &format!("{GUEST_ADDRESS}:{TCP_ECHO_PORT}"),
            bytes,
            Duration::from_secs(30),
        )
    })
    .map_err(|error| error.to_string())?;
    let after = guest.instructions()?;
    Ok(Sample {
        rate: transfer.megabytes_per_second(),
        p50_us: None,
        p99_us: None,
        instructions_per_unit: (after - before) as f64 / (bytes as f64 / 1024.0),
        count: bytes,
        errors: 0,
        reply_instructions: None,
    })
}

/// Runs `run` with the server's profile (port `profile_port`) switched on; what it returned,
/// the guest instructions over it and the profile's sums.
fn profiled<T>(
    guest: &mut Guest,
    topology: &Topology,
    profile_port: u16,
    run: impl FnOnce() -> std::result::Result<T, String>,
) -> std::result::Result<(T, u64, std::collections::BTreeMap<String, u64>), String> {
    guest.check_alive()?;
    let started = ask_guest(topology, profile_port, "start")?;
    if started != "profile started" {
        return Err(format!("profile port {profile_port}: {started:?}"));
    }
    let before = guest.instructions()?;
    let value = run()?;
    let after = guest.instructions()?;
    let sums = profile::parse(&ask_guest(topology, profile_port, "stop")?)?;
    Ok((value, after - before, sums))
}

/// The profiled runs after a boot's rows: for the TCP server one bulk transfer, for each
/// HTTP server one wrk run of the target case (no warm-up: the rows warmed it).
#[allow(clippy::too_many_arguments)]
fn profile_runs(
    guest: &mut Guest,
    topology: &Topology,
    http_servers: &[(&str, u16)],
    tcp_server: &str,
    profile_ports: &[(&str, u16)],
    plan: &Plan,
    rows: &mut Rows,
    progress: &ProgressBar,
) {
    for (server, profile_port) in profile_ports {
        progress.set_message(format!("profile of {server}"));
        let result = if *server == tcp_server {
            if !plan.has(Part::Bulk) {
                continue;
            }
            let bytes = plan.bulk_bytes;
            profiled(guest, topology, *profile_port, || {
                netns::run_in(&topology.namespace, move || {
                    bulk::echo(
                        &format!("{GUEST_ADDRESS}:{TCP_ECHO_PORT}"),
                        bytes,
                        Duration::from_secs(30),
                    )
                })
                .map_err(|error| error.to_string())
            })
            .and_then(|(_, instructions, sums)| {
                profile::layers(
                    server,
                    &bulk_case(plan),
                    "KB",
                    bytes as f64 / 1024.0,
                    instructions,
                    &sums,
                )
            })
        } else {
            let Some((_, port)) = http_servers.iter().find(|(name, _)| name == server) else {
                continue;
            };
            if !plan.has(Part::Http) {
                continue;
            }
            let url = format!("http://{GUEST_ADDRESS}:{port}/1k.html");
            let seconds = format!("-d{}s", plan.duration.as_secs());
            profiled(guest, topology, *profile_port, || {
                let report = client(
                    topology,
                    "wrk",
                    &[
                        "-t1",
                        "-c16",
                        &seconds,
                        "--latency",
                        "--timeout",
                        "5s",
                        &url,
                    ],
                    plan.duration + Duration::from_secs(30),
                )?;
                http_load::parse_wrk(&report)
            })
            .and_then(|(load, instructions, sums)| {
                profile::layers(
                    server,
                    report::HTTP_TARGET_CASE,
                    "request",
                    load.requests as f64,
                    instructions,
                    &sums,
                )
            })
        };
        match result {
            Ok(profile) => rows.profiles.push(profile),
            Err(error) => say(
                progress,
                &format!("xtask: bench net: profile of {server}: {error}"),
            ),
        }
    }
}

/// Which UDP server a row measures: on exo, ashd's kernel counters frame it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum UdpServer {
    /// exo, ashd running: its report port gives the arrival-to-send counters around the row.
    Exo,
    Linux,
}

/// ashd's report (arrival-to-send counters) for the next token, read from the console. The
/// request goes to ashd's ring and is answered by no frame, so it makes no arrival-to-send
/// pair of its own: the next request's arrival replaces its arrival time.
fn ashd_report(
    guest: &mut Guest,
    topology: &Topology,
) -> std::result::Result<bench_ash::Report, String> {
    guest.report_token += 1;
    let token = guest.report_token;
    netns::run_in(&topology.namespace, move || {
        let socket = std::net::UdpSocket::bind("0.0.0.0:0").map_err(|error| error.to_string())?;
        socket
            .send_to(
                token.to_string().as_bytes(),
                (GUEST_ADDRESS, ASHD_REPORT_PORT),
            )
            .map(|_| ())
            .map_err(|error| error.to_string())
    })
    .map_err(|error| error.to_string())?;
    let line = guest.wait_for(&format!("ashd: report {token}:"), Duration::from_secs(10))?;
    bench_ash::reports(&line)
        .remove(&token)
        .ok_or_else(|| format!("ashd's report {token} is cut: {line}"))
}

/// Mean guest instructions from arrival to reply over the pairs between two reports, every
/// pair (ticked ones too); `None` without a pair.
fn reply_instructions(before: &bench_ash::Report, after: &bench_ash::Report) -> Option<f64> {
    // Checked throughout: ashd prints u64::MAX for a counter it could not read, and a
    // figure from that is no figure.
    let total = |report: &bench_ash::Report| {
        Some((
            report.pairs.checked_add(report.ticked)?,
            report.cycles.checked_add(report.ticked_cycles)?,
        ))
    };
    let ((pairs_before, cycles_before), (pairs_after, cycles_after)) =
        (total(before)?, total(after)?);
    let pairs = pairs_after.checked_sub(pairs_before)?;
    let cycles = cycles_after.checked_sub(cycles_before)?;
    (pairs > 0).then(|| cycles as f64 / pairs as f64)
}

fn udp_sample(
    guest: &mut Guest,
    topology: &Topology,
    port: u16,
    server: UdpServer,
    plan: &Plan,
) -> std::result::Result<Sample, String> {
    guest.check_alive()?;
    let (count, budget) = (plan.udp_requests, plan.udp_budget);
    let report_before = match server {
        UdpServer::Exo => Some(ashd_report(guest, topology)?),
        UdpServer::Linux => None,
    };
    let before = guest.instructions()?;
    let start = Instant::now();
    let series = netns::run_in(&topology.namespace, move || {
        rtt::measure(
            &format!("{GUEST_ADDRESS}:{port}"),
            count,
            UDP_TIMEOUT,
            budget,
        )
    })
    .map_err(|error| error.to_string())?;
    let elapsed = start.elapsed();
    let after = guest.instructions()?;
    let reply_instructions = match &report_before {
        Some(before) => reply_instructions(before, &ashd_report(guest, topology)?),
        None => None,
    };
    let answered = series.samples_us.len() as u64;
    if answered == 0 {
        return Err(format!(
            "no UDP echo on port {port}: {} sent, all lost",
            series.sent
        ));
    }
    Ok(Sample {
        rate: answered as f64 / elapsed.as_secs_f64(),
        p50_us: series.quantile(0.5),
        p99_us: series.quantile(0.99),
        instructions_per_unit: (after - before) as f64 / answered as f64,
        count: answered,
        errors: series.lost,
        reply_instructions,
    })
}

/// Sends `command` in a datagram from the namespace to the guest's UDP `port` and returns the
/// reply (three tries, 5 s each): the exo profile port's and the Linux server's control.
fn ask_guest(topology: &Topology, port: u16, command: &str) -> std::result::Result<String, String> {
    let command = command.to_string();
    netns::run_in(&topology.namespace, move || {
        let socket = std::net::UdpSocket::bind("0.0.0.0:0").map_err(|error| error.to_string())?;
        socket
            .set_read_timeout(Some(Duration::from_secs(5)))
            .map_err(|error| error.to_string())?;
        let mut reply = [0u8; 2048];
        for _ in 0..3 {
            socket
                .send_to(command.as_bytes(), (GUEST_ADDRESS, port))
                .map_err(|error| error.to_string())?;
            if let Ok(length) = socket.recv(&mut reply) {
                return Ok(String::from_utf8_lossy(&reply[..length]).into_owned());
            }
        }
        Err(format!(
            "no reply to {command:?} from {GUEST_ADDRESS}:{port}"
        ))
    })
    .map_err(|error| error.to_string())
}

/// Sends a control datagram to the Linux server's `/init net`; its reply, which must be `ok`.
fn linux_control(topology: &Topology, command: &str) -> std::result::Result<String, String> {
    let reply = ask_guest(topology, LINUX_CONTROL_PORT, command)?;
    if reply.starts_with("ok") {
        Ok(reply)
    } else {
        Err(format!("{command:?}: {reply}"))
    }
}

/// A line above the progress bar (or on stderr when there is no terminal to draw it on).
fn say(progress: &ProgressBar, line: &str) {
    if progress.is_hidden() {
        eprintln!("{line}");
    } else {
        progress.println(line);
    }
}

/// The rows, gathered across rounds by their key.
#[derive(Debug, Default)]
struct Rows {
    rows: Vec<Row>,
    /// The per-layer profiles (exo only), one per profiled run.
    profiles: Vec<profile::Profile>,
}

impl Rows {
    #[allow(clippy::too_many_arguments)]
    fn record(
        &mut self,
        group: Group,
        system: &'static str,
        server: &str,
        case: &str,
        sample: std::result::Result<Sample, String>,
        note: &str,
        progress: &ProgressBar,
    ) {
        let index = match self.rows.iter().position(|row| {
            row.group == group && row.system == system && row.server == server && row.case == case
        }) {
            Some(index) => index,
            None => {
                self.rows.push(Row {
                    group,
                    system,
                    server: server.into(),
                    case: case.into(),
                    samples: Vec::new(),
                    note: String::new(),
                });
                self.rows.len() - 1
            }
        };
        let row = &mut self.rows[index];
        match sample {
            Ok(sample) => {
                if row.note.is_empty() {
                    row.note = note.into();
                }
                row.samples.push(sample);
            }
            Err(error) => {
                say(
                    progress,
                    &format!("xtask: bench net: {system} {server} {case}: {error}"),
                );
                row.note = format!("failed: {}", error.chars().take(120).collect::<String>());
            }
        }
        progress.inc(1);
    }

    /// The rows of a boot that failed and have no sample of this round yet, so the table
    /// says so.
    fn fail_all(
        &mut self,
        keys: &[(Group, &'static str, String, String)],
        error: &str,
        round: usize,
        progress: &ProgressBar,
    ) {
        for (group, system, server, case) in keys {
            let measured = self.rows.iter().any(|row| {
                row.group == *group
                    && row.system == *system
                    && row.server == *server
                    && row.case == *case
                    && (row.samples.len() > round || row.note.starts_with("failed"))
            });
            if !measured {
                self.record(
                    *group,
                    system,
                    server,
                    case,
                    Err(error.to_string()),
                    "",
                    progress,
                );
            }
        }
    }
}

/// Everything needed to boot either system.
struct Prepared {
    exo: Option<PathBuf>,
    linux: Option<(PathBuf, PathBuf)>,
}

fn prepare_linux(root: &Path, out: &Path) -> Result<(PathBuf, PathBuf)> {
    let directory = out.join("linux");
    let kernel = bench_kernel::linux::prepare(&directory)?;
    let kernel_root = directory.join(format!("root-{}", kernel.package));
    let roots = initramfs::unpack_packages(&directory.join("debs"))?;
    let init_path = bench_kernel::build_linux_init(root)?;
    let init = fs::read(&init_path)?;
    let site = crate::scenarios::httpd_site()?;
    let tree = initramfs::tree(&init, &roots, &kernel_root, &site)?;
    let archive = tree.archive();
    let path = directory.join("initramfs-net.cpio");
    fs::write(&path, &archive)?;
    eprintln!(
        "xtask: Linux server: {} with {} ({} MiB: busybox, nginx, socat, virtio_net)",
        kernel.package,
        path.display(),
        archive.len() >> 20
    );
    Ok((kernel.vmlinux, path))
}

pub fn run(args: &Args) -> Result<ExitCode> {
    let plan = Plan::new(args);
    setup::ensure_target()?;
    setup::ensure_qemu()?;
    setup::ensure_packages(setup::NET_BENCH_PACKAGES)?;
    let root = image::workspace_root();
    let out = root.join("target").join("bench");
    fs::create_dir_all(&out)?;
    let systems = Prepared {
        exo: match args.systems {
            Systems::Linux => None,
            _ => Some(image::build(image::Profile::Release)?.kernel),
        },
        linux: match args.systems {
            Systems::Exo => None,
            _ => Some(prepare_linux(&root, &out)?),
        },
    };
    let topology = Topology::create()?;
    let steps = plan_steps(&plan, &systems);
    let progress = ProgressBar::new(steps);
    progress.set_style(
        ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {pos}/{len} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    let mut rows = Rows::default();
    let started = Instant::now();
    for round in 0..plan.rounds {
        let linux_first = round % 2 == 1;
        let order: &[&str] = if linux_first {
            &["linux", "exo"]
        } else {
            &["exo", "linux"]
        };
        for system in order {
            if topology::interrupt::interrupted() {
                return Err("interrupted (Ctrl-C)".into());
            }
            match *system {
                "exo" => {
                    if let Some(kernel) = &systems.exo {
                        exo_round(&topology, kernel, &plan, &out, &mut rows, &progress, round);
                    }
                }
                _ => {
                    if let Some((kernel, initrd)) = &systems.linux {
                        linux_round(
                            &topology, kernel, initrd, &plan, &out, &mut rows, &progress, round,
                        );
                    }
                }
            }
        }
    }
    progress.finish_with_message(format!("done in {:.0} s", started.elapsed().as_secs_f64()));
    drop(topology);
    let profiles = rows.profiles;
    let mut rows = rows.rows;
    rows.sort_by_key(|row| {
        (
            match row.group {
                Group::Http => 0,
                Group::HttpAb => 1,
                Group::Cheetah => 2,
                Group::Bulk => 3,
                Group::Udp => 4,
            },
            row.case.starts_with("/100k"),
            row.case
                .split(['c', ' '])
                .next_back()
                .and_then(|number| number.parse::<u32>().ok())
                .unwrap_or(0),
            row.server.clone(),
            row.system,
        )
    });
    let json = out.join("net.json");
    fs::write(&json, report::json(&rows))?;
    let (svg, png) = (out.join("net.svg"), out.join("net.png"));
    plot::write(&rows, &svg, &png)?;
    println!();
    print!("{}", report::table(&rows));
    println!(
        "\nrate: median over {} round(s), spread lowest..highest; p50/p99 in microseconds (wrk, ab: per request; UDP: per round trip); guest instr.: QEMU's raw instruction count (-icount shift=0, QMP query-replay) over the measured run divided by its requests, KB sent or round trips; arrival to reply (exo's UDP rows): guest instructions from a request's arrival at the NIC to its reply's queueing, mean over every such pair (the kernel's arrival_to_send counters, read through ashd). The Linux guest's virtio-net offloads were {} (--linux-offloads).",
        plan.rounds,
        if plan.linux_offloads { "on" } else { "off" }
    );
    println!("\ntargets (issue 13; a benchmark: misses do not fail the command):");
    print!(
        "{}",
        report::target_lines(&report::targets(&rows, &CHEETAH))
    );
    let profile_json = out.join("net-profile.json");
    fs::write(&profile_json, profile::json(&profiles))?;
    if !profiles.is_empty() {
        println!(
            "\nexo's per-layer profile (one extra run each after the rows, first round; guest instructions per unit: libnet's and the kernel's TSC sums under -icount shift=0, a cycle an instruction; interrupts taken inside a libnet or app span are in that span and in the rx layer both, so the rest can come out negative):"
        );
        print!("{}", profile::table(&profiles));
    }
    println!(
        "\nwrote {}, {}, {} and {}",
        json.display(),
        profile_json.display(),
        svg.display(),
        png.display()
    );
    Ok(ExitCode::SUCCESS)
}

fn plan_steps(plan: &Plan, systems: &Prepared) -> u64 {
    // Rows of one HTTP server, and the bulk row of each system.
    let mut per_http_server = 0;
    if plan.has(Part::Http) {
        per_http_server += (DOCUMENTS.len() * CONNECTIONS.len()) as u64;
    }
    if plan.has(Part::Ab) {
        per_http_server += 1;
    }
    let bulk = u64::from(plan.has(Part::Bulk));
    let mut steps = 0;
    if systems.exo.is_some() {
        // exo's httpd with Cheetah's techniques and its smoltcp path.
        steps += 2 * per_http_server + bulk;
        if plan.has(Part::Udp) {
            steps += 2 * BUSY.len() as u64;
        }
        if plan.has(Part::Cheetah) {
            steps += CHEETAH.len() as u64;
        }
    }
    if systems.linux.is_some() {
        steps += per_http_server + bulk;
        if plan.has(Part::Udp) {
            steps += BUSY.len() as u64;
        }
    }
    steps * plan.rounds as u64
}

fn exo_round(
    topology: &Topology,
    kernel: &Path,
    plan: &Plan,
    out: &Path,
    rows: &mut Rows,
    progress: &ProgressBar,
    round: usize,
) {
    let boot = |name: String, apps: &[(&str, &str)], ready: Vec<&'static str>| Boot {
        name,
        system: "exo",
        kernel: kernel.to_path_buf(),
        append: exo_cmdline(apps),
        extra: Vec::new(),
        ready,
        offloads: true,
    };
    if plan.has(Part::Http) || plan.has(Part::Ab) || plan.has(Part::Bulk) {
        // Two httpds side by side, each with its own stack and port: exo's httpd (Cheetah's
        // techniques, the one the targets are judged on) and httpd's smoltcp path.
        let exo_httpd = format!(
            "port={EXO_HTTPD_PORT} pool={HTTPD_POOL} cheetah=all profile={}",
            PROFILE_PORTS[0]
        );
        let smoltcp_httpd = format!(
            "port={SMOLTCP_HTTPD_PORT} pool={HTTPD_POOL} profile={}",
            PROFILE_PORTS[1]
        );
        let echo = format!(
            "tcp={TCP_ECHO_PORT} udp={APP_UDP_PORT} profile={}",
            PROFILE_PORTS[2]
        );
        let main = boot(
            format!("exo-r{round}"),
            &[
                ("ashd", "serve"),
                ("echo", &echo),
                ("httpd", &exo_httpd),
                ("httpd", &smoltcp_httpd),
            ],
            vec![
                "ashd: ready",
                "echo: ready",
                "httpd: ready on port 80,",
                "httpd: ready on port 8080,",
            ],
        );
        progress.set_message(format!("round {}: exo httpd (both paths), echo", round + 1));
        serve_main(
            topology,
            &main,
            &[
                (report::EXO_HTTPD, EXO_HTTPD_PORT),
                (report::EXO_HTTPD_SMOLTCP, SMOLTCP_HTTPD_PORT),
            ],
            "echo",
            &[
                (report::EXO_HTTPD, PROFILE_PORTS[0]),
                (report::EXO_HTTPD_SMOLTCP, PROFILE_PORTS[1]),
                ("echo", PROFILE_PORTS[2]),
            ],
            plan,
            out,
            rows,
            progress,
            round,
        );
    }
    if plan.has(Part::Udp) {
        for busy in BUSY {
            let spin = format!("spin={busy}");
            let mut apps = vec![("ashd", "serve"), ("echo", "tcp=7 udp=7007")];
            let mut ready = vec!["ashd: ready", "echo: ready"];
            if busy > 0 {
                apps.push(("busy", &spin));
                ready.push("busy: spinning");
            }
            let config = boot(format!("exo-busy{busy}-r{round}"), &apps, ready);
            progress.set_message(format!("round {}: exo UDP echo, {busy} busy", round + 1));
            let case = format!("busy {busy}");
            let result = with_guest(topology, &config, out, |guest| {
                if busy > 0 {
                    let line = guest.wait_for("busy: spinning", READY_WITHIN)?;
                    if !line.ends_with(&format!(": {busy} environments")) {
                        return Err(format!("asked for {busy} busy environments: {line}"));
                    }
                }
                let ash = udp_sample(guest, topology, ASH_UDP_PORT, UdpServer::Exo, plan);
                let app = udp_sample(guest, topology, APP_UDP_PORT, UdpServer::Exo, plan);
                Ok((ash, app))
            });
            match result {
                Ok((ash, app)) => {
                    rows.record(Group::Udp, "exo", "ash", &case, ash, "", progress);
                    rows.record(Group::Udp, "exo", "echo app", &case, app, "", progress);
                }
                Err(error) => rows.fail_all(
                    &[
                        (Group::Udp, "exo", "ash".into(), case.clone()),
                        (Group::Udp, "exo", "echo app".into(), case.clone()),
                    ],
                    &error,
                    round,
                    progress,
                ),
            }
        }
    }
    if plan.has(Part::Cheetah) {
        for set in CHEETAH {
            let argument = format!("port=80 pool={HTTPD_POOL} cheetah={set}");
            // ashd answers ARP (in the kernel) for the machine's address.
            let config = boot(
                format!("exo-cheetah-{set}-r{round}"),
                &[("ashd", "serve"), ("httpd", &argument)],
                vec!["ashd: ready", "httpd: ready"],
            );
            progress.set_message(format!("round {}: exo httpd cheetah={set}", round + 1));
            let case = format!("cheetah={set}");
            let result = with_guest(topology, &config, out, |guest| {
                let ready = guest.wait_for("httpd: ready", READY_WITHIN)?;
                let ready = crate::qemu::app_text(&ready).trim().to_string();
                check_site(topology, 80)?;
                Ok((wrk(guest, topology, 80, "/1k.html", 16, plan), ready))
            });
            match result {
                Ok((sample, ready)) => {
                    // Until httpd has the switch, its ready line names no set: say so.
                    let note = if ready.contains("cheetah") {
                        ready
                    } else {
                        "httpd ignores cheetah= (no switch in this build)".into()
                    };
                    rows.record(
                        Group::Cheetah,
                        "exo",
                        "httpd",
                        &case,
                        sample,
                        &note,
                        progress,
                    );
                }
                Err(error) => rows.fail_all(
                    &[(Group::Cheetah, "exo", "httpd".into(), case.clone())],
                    &error,
                    round,
                    progress,
                ),
            }
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn linux_round(
    topology: &Topology,
    kernel: &Path,
    initrd: &Path,
    plan: &Plan,
    out: &Path,
    rows: &mut Rows,
    progress: &ProgressBar,
    round: usize,
) {
    let config = Boot {
        name: format!("linux-r{round}"),
        system: "linux",
        kernel: kernel.to_path_buf(),
        append: format!("{} -- net", bench_kernel::LINUX_CMDLINE),
        extra: vec!["-initrd".into(), initrd.into()],
        ready: vec!["linux-init: net ready"],
        offloads: plan.linux_offloads,
    };
    progress.set_message(format!("round {}: Linux nginx, socat, UDP echo", round + 1));
    if plan.has(Part::Http) || plan.has(Part::Ab) || plan.has(Part::Bulk) || plan.has(Part::Udp) {
        let mut udp = Vec::new();
        let result = with_guest(topology, &config, out, |guest| {
            serve_http_bulk(
                guest,
                topology,
                "linux",
                &[("nginx", NGINX_PORT)],
                "socat",
                plan,
                rows,
                progress,
            )?;
            if plan.has(Part::Udp) {
                for busy in BUSY {
                    progress
                        .set_message(format!("round {}: Linux UDP echo, {busy} busy", round + 1));
                    let sample = linux_control(topology, &format!("busy {busy}")).and_then(|_| {
                        udp_sample(guest, topology, ASH_UDP_PORT, UdpServer::Linux, plan)
                    });
                    udp.push((busy, sample));
                }
            }
            let _ = linux_control(topology, "quit");
            Ok(())
        });
        for (busy, sample) in udp {
            rows.record(
                Group::Udp,
                "linux",
                "udp-echo process",
                &format!("busy {busy}"),
                sample,
                "",
                progress,
            );
        }
        if let Err(error) = result {
            let mut keys = http_keys(plan, "linux", &[("nginx", NGINX_PORT)], "socat");
            if plan.has(Part::Udp) {
                for busy in BUSY {
                    keys.push((
                        Group::Udp,
                        "linux",
                        "udp-echo process".into(),
                        format!("busy {busy}"),
                    ));
                }
            }
            rows.fail_all(&keys, &error, round, progress);
        }
    }
}

fn bulk_case(plan: &Plan) -> String {
    format!("{} MiB each way", plan.bulk_bytes >> 20)
}

fn http_keys(
    plan: &Plan,
    system: &'static str,
    http_servers: &[(&str, u16)],
    tcp_server: &str,
) -> Vec<(Group, &'static str, String, String)> {
    let mut keys = Vec::new();
    for (http_server, _) in http_servers {
        if plan.has(Part::Http) {
            for document in DOCUMENTS {
                for connections in CONNECTIONS {
                    keys.push((
                        Group::Http,
                        system,
                        http_server.to_string(),
                        format!("{document} c{connections}"),
                    ));
                }
            }
        }
        if plan.has(Part::Ab) {
            keys.push((
                Group::HttpAb,
                system,
                http_server.to_string(),
                report::HTTP_TARGET_CASE.into(),
            ));
        }
    }
    if plan.has(Part::Bulk) {
        keys.push((Group::Bulk, system, tcp_server.to_string(), bulk_case(plan)));
    }
    keys
}

#[allow(clippy::too_many_arguments)]
fn serve_main(
    topology: &Topology,
    boot: &Boot,
    http_servers: &[(&str, u16)],
    tcp_server: &str,
    profile_ports: &[(&str, u16)],
    plan: &Plan,
    out: &Path,
    rows: &mut Rows,
    progress: &ProgressBar,
    round: usize,
) {
    let result = with_guest(topology, boot, out, |guest| {
        serve_http_bulk(
            guest,
            topology,
            boot.system,
            http_servers,
            tcp_server,
            plan,
            rows,
            progress,
        )?;
        // Instruction counts hold still between rounds: the first round's profile is enough.
        if round == 0 {
            profile_runs(
                guest,
                topology,
                http_servers,
                tcp_server,
                profile_ports,
                plan,
                rows,
                progress,
            );
        }
        Ok(())
    });
    if let Err(error) = result {
        rows.fail_all(
            &http_keys(plan, boot.system, http_servers, tcp_server),
            &error,
            round,
            progress,
        );
    }
}

/// The bulk row of one booted server, then the ab and HTTP rows of each of its HTTP servers
/// (name and port).
#[allow(clippy::too_many_arguments)]
fn serve_http_bulk(
    guest: &mut Guest,
    topology: &Topology,
    system: &'static str,
    http_servers: &[(&str, u16)],
    tcp_server: &str,
    plan: &Plan,
    rows: &mut Rows,
    progress: &ProgressBar,
) -> std::result::Result<(), String> {
    if plan.has(Part::Http) || plan.has(Part::Ab) {
        for (_, port) in http_servers {
            check_site(topology, *port)?;
        }
    }
    if plan.has(Part::Bulk) {
        progress.set_message(format!("{system} {tcp_server} TCP bulk"));
        // One more transfer on a fresh connection if the first fails, said in the row's
        // note: Linux's socat echo stalled for the whole 30 s read deadline in about one run
        // of four here (at 0.28 to 1.8 MB of 8), with offloads on and off; a second stall
        // fails the row.
        let (sample, note) = match bulk_sample(guest, topology, plan) {
            Err(first) => (
                bulk_sample(guest, topology, plan),
                format!(
                    "second transfer; the first: {}",
                    first.chars().take(80).collect::<String>()
                ),
            ),
            sample => (sample, String::new()),
        };
        rows.record(
            Group::Bulk,
            system,
            tcp_server,
            &bulk_case(plan),
            sample,
            &note,
            progress,
        );
    }
    for (http_server, port) in http_servers {
        if plan.has(Part::Ab) {
            progress.set_message(format!("{system} {http_server} ab -k"));
            let sample = ab(guest, topology, *port, plan);
            rows.record(
                Group::HttpAb,
                system,
                http_server,
                report::HTTP_TARGET_CASE,
                sample,
                "",
                progress,
            );
        }
        // Connections outermost: a server that gives out under 64 connections takes only
        // those rows with it.
        if plan.has(Part::Http) {
            for connections in CONNECTIONS {
                for document in DOCUMENTS {
                    let case = format!("{document} c{connections}");
                    progress.set_message(format!("{system} {http_server} {case}"));
                    let sample = wrk(guest, topology, *port, document, connections, plan);
                    rows.record(
                        Group::Http,
                        system,
                        http_server,
                        &case,
                        sample,
                        "",
                        progress,
                    );
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reply_instructions_count_every_pair_ticked_or_not() {
        let report = |line: &str| bench_ash::reports(line).remove(&1).unwrap();
        let before = report("ashd| ashd: report 1: arrival-to-send 10 10000 2 50000\n");
        // 8 untimed-by-tick pairs of 1,000 and 2 that a tick cut, of 100,000 each.
        let after = report("ashd| ashd: report 1: arrival-to-send 18 18000 4 250000\n");
        assert_eq!(reply_instructions(&before, &after), Some(20_800.0));
        let unread = report(&format!(
            "ashd| ashd: report 1: arrival-to-send 18 18000 {} 250000\n",
            u64::MAX
        ));
        assert_eq!(
            reply_instructions(&before, &unread),
            None,
            "an unread counter"
        );
        assert_eq!(
            reply_instructions(&after, &after),
            None,
            "no pair, no figure"
        );
        assert_eq!(
            reply_instructions(&after, &before),
            None,
            "counters do not go back"
        );
    }

    #[test]
    fn exo_command_lines_give_each_app_its_hex_argument() {
        assert_eq!(
            exo_cmdline(&[("ashd", "serve"), ("echo", ""), ("busy", "spin")]),
            "apps=ashd,echo,busy monitor=ashd arg=1:7365727665 arg=3:7370696e"
        );
        assert_eq!(
            exo_cmdline(&[("httpd", "port=80")]),
            "apps=httpd arg=1:706f72743d3830"
        );
    }

    #[test]
    fn quick_mode_is_shorter_than_full() {
        let args = |quick| Args {
            quick,
            systems: Systems::Both,
            parts: Vec::new(),
            rounds: None,
            linux_offloads: Offloads::On,
        };
        let (quick, full) = (Plan::new(&args(true)), Plan::new(&args(false)));
        assert!(quick.duration < full.duration && quick.udp_requests < full.udp_requests);
        assert_eq!((quick.rounds, full.rounds), (1, 3));
        assert_eq!(full.bulk_bytes, 64 << 20);
        assert_eq!(full.udp_requests, 10_000);
        assert_eq!(
            (full.warmup, full.duration),
            (Duration::from_secs(3), Duration::from_secs(10))
        );
    }
}
