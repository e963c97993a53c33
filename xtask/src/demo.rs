//! `cargo xtask run` without `--append`: the demonstration. Boots exo with httpd and echo,
//! each on its own TCP/IP stack, and ashd's ARP and ICMP handlers, on a tap device in a
//! network namespace it creates; fetches the front page with curl, echoes a line through
//! socat and pings; then prints what happened, what each app counted (frames, drops,
//! retransmissions, what it still holds) and the kernel's network counters as a table.
//!
//! Last, it replays a capture shipped in the repo through dpf monitors, and the kernel's
//! generated code must count what dpf's interpreter counts on the host.
//!
//! `--serve [--for SECONDS]` keeps the system up first (until Ctrl-C, which stops QEMU too, or
//! for the time given, after which the clients run and the counters are printed), and says
//! how to reach it from the namespace.
//!
//! Without a namespace (no root, or a chroot without `ip netns`), it says so and boots the
//! plain image (`apps=hello`), which needs no network.
use crate::qemu::app_text;
use crate::scenarios::{Expect, Network, Scenario, Session, ping_three};
use crate::topology::GUEST_ADDRESS;
use crate::{Result, image, setup, test, topology};
use exo_abi::KernelExit;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The demonstration's apps: ashd serving, echo (TCP 7, UDP 7007, quit 9107), httpd (80,
/// quit 9180); the arguments are hex of `serve`, `tcp=7 udp=7007 quit=9107`, `port=80
/// quit=9180`.
const DEMO_CMDLINE: &str = "apps=ashd,echo,httpd monitor=ashd arg=1:7365727665 arg=2:7463703d37207564703d3730303720717569743d39313037 arg=3:706f72743d383020717569743d39313830";

/// Longest one demonstration client may run.
const CLIENT_DEADLINE: Duration = Duration::from_secs(20);

/// `--serve`: seconds to keep the system up before the demonstration's clients run (0: do
/// not serve; `u64::MAX`: until Ctrl-C, which also stops QEMU).
static SERVE_SECONDS: AtomicU64 = AtomicU64::new(0);

fn demo_clients(session: &mut Session<'_>) -> std::result::Result<(), String> {
    for ready in ["ashd: ready", "echo: ready", "httpd: ready"] {
        session.wait_for(ready, Duration::from_secs(60))?;
    }
    let namespace = session.topology.namespace.clone();
    println!("demo: exo is up at {GUEST_ADDRESS} in network namespace {namespace}");
    let serve = SERVE_SECONDS.load(Ordering::Relaxed);
    if serve > 0 {
        println!(
            "demo: serving: try `ip netns exec {namespace} curl http://{GUEST_ADDRESS}/`, `ip netns exec {namespace} socat - TCP:{GUEST_ADDRESS}:7`, `ip netns exec {namespace} ping {GUEST_ADDRESS}`"
        );
        let start = Instant::now();
        while start.elapsed().as_secs() < serve && !topology::interrupt::interrupted() {
            std::thread::sleep(Duration::from_millis(100));
        }
        println!("demo: served for {:.0} s", start.elapsed().as_secs_f64());
    }
    let start = Instant::now();
    let url = format!("http://{GUEST_ADDRESS}/");
    let page = session.client(
        "curl",
        &["-s", "-S", "--max-time", "15", &url],
        CLIENT_DEADLINE,
        None,
    )?;
    let wanted = std::fs::read(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../apps/httpd/site/index.html"),
    )
    .map_err(|error| error.to_string())?;
    if page != wanted {
        return Err(format!(
            "curl {url}: {} bytes, not the site's front page",
            page.len()
        ));
    }
    println!(
        "demo: ip netns exec {namespace} curl {url}: {} bytes, the front page exactly ({:.2} s), from httpd",
        page.len(),
        start.elapsed().as_secs_f64()
    );
    let start = Instant::now();
    let line = b"hello through echo's own TCP stack\n";
    let target = format!("TCP:{GUEST_ADDRESS}:7");
    let echoed = session.client(
        "socat",
        &["-t", "5", "-T", "10", "-", &target],
        CLIENT_DEADLINE,
        Some(line),
    )?;
    if echoed != line {
        return Err(format!(
            "socat echo: got {:?}",
            String::from_utf8_lossy(&echoed)
        ));
    }
    println!(
        "demo: socat - {target}: {:?} came back ({:.2} s), from echo",
        String::from_utf8_lossy(line).trim_end(),
        start.elapsed().as_secs_f64()
    );
    let summary = ping_three(session, "")?;
    println!(
        "demo: ping {GUEST_ADDRESS}: {summary}, answered by ashd's ICMP handler in the kernel"
    );
    for port in [9107, 9180, 9003] {
        let target = format!("UDP:{GUEST_ADDRESS}:{port}");
        session.client(
            "socat",
            &["-u", "-t", "0.2", "-", &target],
            CLIENT_DEADLINE,
            Some(b"quit"),
        )?;
    }
    Ok(())
}

/// Monitor expressions the shipped capture is replayed through.
const REPLAY_EXPRESSIONS: [&str; 3] = ["tcp", "udp", "arp"];

/// Replays `pcap-tests/fixtures/capture.pcap` (real traffic of two namespaces) into the booted
/// kernel, one netmon monitor per expression: each count from the kernel's generated code must
/// equal dpf's interpreter's on the host. Needs no root (`-netdev dgram` on loopback).
fn replay(kernel: &std::path::Path) -> std::result::Result<(), String> {
    let capture = image::workspace_root().join("pcap-tests/fixtures/capture.pcap");
    let trace = pcap_tests::trace::read_trace(&capture)
        .map_err(|error| format!("reading {}: {error:?}", capture.display()))?;
    let frames: Vec<Vec<u8>> = trace
        .into_iter()
        .map(|packet| packet.data)
        .filter(|data| data.len() as u64 <= exo_abi::net::FRAME_MAX_BYTES)
        .collect();
    let mut interpreted = Vec::new();
    for expression in REPLAY_EXPRESSIONS {
        let filters = dpf::frontend::compile(expression, dpf::FilterId(0))
            .map_err(|error| format!("{expression}: {error:?}"))?;
        let trie = dpf::trie::Trie::from_filters(filters).map_err(|error| format!("{error:?}"))?;
        let count = frames
            .iter()
            .filter(|frame| {
                frame.len() as u64 >= exo_abi::net::FRAME_MIN_BYTES
                    && dpf::interp::classify(&trie, &dpf::Packet::whole(frame)).is_some()
            })
            .count() as u64;
        interpreted.push(count);
    }
    let sent = frames.len();
    let expressions: Vec<String> = REPLAY_EXPRESSIONS.iter().map(|e| e.to_string()).collect();
    let outcome = crate::replay::replay_frames(
        kernel,
        frames,
        &expressions,
        &[],
        "",
        5_000,
        false,
        crate::qemu::Echo::Quiet,
    )
    .map_err(|error| error.to_string())?;
    outcome.clean_exit()?;
    let mut equal = true;
    for ((expression, jit, _), interpreter) in outcome.apps.iter().zip(&interpreted) {
        println!(
            "demo: replay of {sent} frames of capture.pcap through monitor {expression:?}: in-kernel JIT {jit}, interpreter {interpreter}{}",
            if jit == interpreter { "" } else { "  MISMATCH" }
        );
        equal &= jit == interpreter;
    }
    if equal {
        Ok(())
    } else {
        Err("the replay's counts differ".into())
    }
}

/// Runs the demonstration; the process's exit status.
pub fn run(
    release: bool,
    accel: crate::qemu::Accel,
    serve_seconds: Option<u64>,
) -> Result<std::process::ExitCode> {
    SERVE_SECONDS.store(serve_seconds.unwrap_or(0), Ordering::Relaxed);
    setup::ensure_target()?;
    setup::ensure_qemu()?;
    let image = image::build(image::Profile::from_release(release))?;
    let accel = setup::usable_accel(accel);
    let started = Instant::now();
    // The packages first: `ip` itself may be what is missing.
    let network = setup::ensure_packages(setup::DEMO_PACKAGES)
        .and_then(|()| topology::Topology::create().map(drop));
    if let Err(error) = network {
        println!(
            "demo: the network part could not start ({error}); it needs root (network namespaces) and the packages it installs; booting `apps=hello` instead"
        );
        let run = crate::qemu::Qemu {
            kernel: &image.kernel,
            append: "apps=hello",
            accel,
            timeout: Duration::from_secs(60),
            netdev: None,
            tap: None,
            echo: crate::qemu::Echo::Terminal,
        }
        .run()?;
        println!(
            "demo: {} after {:.2} s",
            run.outcome,
            run.elapsed.as_secs_f64()
        );
        if let Err(error) = replay(&image.kernel) {
            println!("demo: FAILED: {error}");
            return Ok(std::process::ExitCode::FAILURE);
        }
        return Ok(std::process::ExitCode::from(run.outcome.host_status()));
    }
    let scenario = Scenario {
        name: "demo",
        cmdline: DEMO_CMDLINE,
        exit: KernelExit::Exited(0),
        serial: &[],
        timeout: Duration::from_secs(120)
            .saturating_add(Duration::from_secs(serve_seconds.unwrap_or(0))),
        expect: Expect::Pass,
        network: Network::Tap {
            clients: demo_clients,
        },
    };
    println!("demo: booting exo with `{DEMO_CMDLINE}` ({accel})");
    let (run, clients) =
        test::run_with_clients(&image.kernel, &scenario, accel, demo_clients, &[])?;
    for line in run.serial.lines() {
        let text = app_text(line);
        if text.contains(": done:")
            || text.contains(": left:")
            || line.starts_with("[exo] all apps")
        {
            println!("demo: {}", line.trim());
        }
    }
    let counters = crate::demo_counters::last_counters(&run.serial)
        .ok_or_else(|| "the kernel printed no network counters".to_string())
        .and_then(|counters| crate::demo_counters::report(&counters));
    if let Ok(lines) = &counters {
        for line in lines {
            println!("demo: {line}");
        }
    }
    let verdict = clients
        .and_then(|()| {
            crate::scenarios::judge(&scenario, &run).map_err(|failure| failure.to_string())
        })
        .and_then(|()| counters.map(drop));
    let verdict = verdict.and_then(|()| replay(&image.kernel));
    match verdict {
        Ok(()) => {
            println!(
                "demo: done in {:.2} s: {}",
                started.elapsed().as_secs_f64(),
                run.outcome
            );
            Ok(std::process::ExitCode::SUCCESS)
        }
        Err(detail) => {
            println!("demo: FAILED: {detail}");
            for line in run.serial.lines() {
                println!("    | {line}");
            }
            Ok(std::process::ExitCode::FAILURE)
        }
    }
}
