//! The orchestrator: builds apps, packs them, builds the kernel, runs QEMU, reads the exit code.
//!
//! `cargo xtask run` runs the demonstration ([`demo`]; with `--append`, boots that command line
//! with serial on the terminal and exits with the kernel's status); `cargo xtask test` runs the host tests and every QEMU scenario in
//! [`scenarios::SCENARIOS`]; `cargo xtask bench kernel` compares exo with Linux
//! ([`bench_kernel`]), `cargo xtask bench net` compares their network servers ([`bench_net`]),
//! and `cargo xtask bench demux` runs pcap-tests' demux benchmark. New
//! subcommands (`replay`) are new variants of [`Command`] with their own module, reusing
//! [`image`] and [`qemu`].
#![deny(unsafe_code)]

mod bench_ash;
mod bench_cheetah;
mod bench_kernel;
mod bench_net;
mod demo;
mod demo_counters;
mod fuzz;
mod image;
mod qemu;
mod replay;
mod scenarios;
mod setup;
mod test;
mod topology;

use clap::{Args, Parser, Subcommand};
use std::process::ExitCode;
use std::time::Duration;

/// Errors are reported once, at the top, as text.
type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

#[derive(Debug, Parser)]
#[command(about = "Build, boot and test the exo exokernel")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// The demonstration (see `demo`); with `--append`, build apps, pack them, build the
    /// kernel and boot that command line, with serial on this terminal. Exits with the
    /// kernel's status (0 when every app exited with 0).
    Run(RunArgs),
    /// Host tests (`cargo test --workspace`), then every QEMU scenario; one summary line.
    Test(TestArgs),
    /// Build the boot image only and print the kernel's path.
    Build(BuildArgs),
    /// Benchmarks: each prints a table and writes `target/bench/<name>.json` and a plot.
    #[command(subcommand)]
    Bench(Bench),
    /// Replay a capture into the booted kernel: one monitor filter per expression, counts
    /// checked against hosted dpf; writes target/bench/replay.json.
    Replay(replay::ReplayArgs),
    /// Fuzz the parsers, verifiers and the JIT (cargo-fuzz on nightly) for a bounded time
    /// per target; prints a table.
    Fuzz(fuzz::Args),
}

#[derive(Debug, Subcommand)]
enum Bench {
    /// exo's primitives against Debian's Linux 6.1 on the same QEMU machine, counted in guest
    /// instructions (-icount) and in wall time.
    Kernel(bench_kernel::Args),
    /// exo's httpd, echo and in-kernel ASH echo against nginx, socat and a UDP echo on
    /// Debian's Linux 6.1 in the same QEMU, on one tap topology: wrk and ab, TCP bulk, UDP
    /// round trips with 0..10 busy environments, Cheetah's techniques; guest instructions per
    /// request from QEMU's -icount counter. `--quick` runs in under ten minutes.
    Net(bench_net::Args),
    /// The dpf demultiplexer against libpcap, bpfjit, rbpf and DPDK (pcap-tests' demux-bench).
    Demux(DemuxArgs),
    /// ASH: on the host, integrated copy + checksum against copy then checksum and the
    /// interpreter's and JIT's cost per stock handler (ash's `bench` example, release build);
    /// then in the kernel under `-icount shift=0`, guest instructions per handler run, per
    /// message-vectoring run both ways (UDP payloads 64/512/1472) and per UDP echo answered by
    /// the ASH against ashd's own echo through its ring (table, ash.json, ash-guest.json,
    /// ash.svg/png).
    Ash(AshArgs),
    /// httpd's Cheetah techniques (cheetah=none, each, all) side by side: wrk -t1 -c16 on
    /// /1k.html and /100k.bin, rounds interleaved; frames sent per request beside the rate.
    Cheetah(bench_cheetah::Args),
}

#[derive(Debug, Args)]
struct AshArgs {
    /// Where the results go.
    #[arg(long, value_name = "DIR", default_value = "target/bench")]
    out: std::path::PathBuf,
}

#[derive(Debug, Args)]
struct DemuxArgs {
    /// Fewer filter counts and packets.
    #[arg(long)]
    quick: bool,
    /// Replay this trace instead of the synthetic one.
    #[arg(long, value_name = "FILE")]
    pcap: Option<std::path::PathBuf>,
    /// Where the results go.
    #[arg(long, value_name = "DIR", default_value = "target/bench")]
    out: std::path::PathBuf,
}

/// Options every subcommand that builds shares.
#[derive(Debug, Args)]
struct BuildArgs {
    /// Build the kernel and apps with the release profile.
    #[arg(long)]
    release: bool,
}

/// Options for subcommands that boot QEMU.
#[derive(Debug, Args)]
struct BootArgs {
    /// QEMU accelerator. `kvm` is used only when asked for and the CPU shows vmx or svm.
    #[arg(long, value_enum, default_value_t = qemu::Accel::Tcg)]
    accel: qemu::Accel,
}

#[derive(Debug, Args)]
struct RunArgs {
    #[command(flatten)]
    build: BuildArgs,
    #[command(flatten)]
    boot: BootArgs,
    /// Kernel command line (`apps=a,b`, see kernel/src/cmdline.rs); without it, the
    /// demonstration (httpd and echo on their own stacks in a network namespace, driven by
    /// curl, socat and ping; see `demo`).
    #[arg(long)]
    append: Option<String>,
    /// The demonstration only: keep the system up and say how to reach it, until Ctrl-C or
    /// `--for` seconds, then run its clients and print the counters.
    #[arg(long)]
    serve: bool,
    /// With `--serve`: how long to serve.
    #[arg(long = "for", value_name = "SECONDS")]
    serve_for: Option<u64>,
    /// Stop QEMU after this many seconds.
    #[arg(long, default_value_t = 120)]
    timeout_secs: u64,
}

#[derive(Debug, Args)]
struct TestArgs {
    #[command(flatten)]
    build: BuildArgs,
    #[command(flatten)]
    boot: BootArgs,
    /// Skip `cargo test --workspace` (QEMU scenarios only).
    #[arg(long)]
    no_host: bool,
    /// Run only the scenarios whose name contains this text.
    #[arg(long)]
    scenario: Option<String>,
    /// Print every scenario's serial output, not only failures'.
    #[arg(long, short)]
    verbose: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run(args) => run(&args),
        Command::Test(args) => test::run(&args),
        Command::Build(args) => build(&args),
        Command::Bench(Bench::Kernel(args)) => bench_kernel::run(&args),
        Command::Bench(Bench::Net(args)) => bench_net::run(&args),
        Command::Bench(Bench::Demux(args)) => bench_demux(&args),
        Command::Bench(Bench::Ash(args)) => bench_ash::run(&args.out),
        Command::Bench(Bench::Cheetah(args)) => bench_cheetah::run(&args),
        Command::Replay(args) => replay::run(&args),
        Command::Fuzz(args) => fuzz::run(&args),
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("xtask: error: {error}");
            ExitCode::FAILURE
        }
    }
}

fn build(args: &BuildArgs) -> Result<ExitCode> {
    setup::ensure_target()?;
    let image = image::build(image::Profile::from_release(args.release))?;
    println!("{}", image.kernel.display());
    Ok(ExitCode::SUCCESS)
}

/// `cargo run --release -p pcap-tests --bin demux-bench -- [--quick] [--pcap F] [--out D]`.
fn bench_demux(args: &DemuxArgs) -> Result<ExitCode> {
    // libpcap for the libpcap, bpfjit and rbpf peers; DPDK's rte_bpf for its JIT peer.
    setup::ensure_packages(setup::DEMUX_BENCH_PACKAGES)?;
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = std::process::Command::new(cargo);
    command.current_dir(image::workspace_root()).args([
        "run",
        "--release",
        "-p",
        "pcap-tests",
        "--bin",
        "demux-bench",
        "--",
    ]);
    if args.quick {
        command.arg("--quick");
    }
    if let Some(pcap) = &args.pcap {
        command.arg("--pcap").arg(pcap);
    }
    command.arg("--out").arg(&args.out);
    let status = command.status()?;
    Ok(if status.success() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn run(args: &RunArgs) -> Result<ExitCode> {
    let Some(append) = args.append.as_deref() else {
        let serve = args.serve.then_some(args.serve_for.unwrap_or(u64::MAX / 4));
        return demo::run(args.build.release, args.boot.accel, serve);
    };
    setup::ensure_target()?;
    setup::ensure_qemu()?;
    let image = image::build(image::Profile::from_release(args.build.release))?;
    let accel = setup::usable_accel(args.boot.accel);
    eprintln!(
        "xtask: booting {} with `{append}` ({accel})",
        image.kernel.display(),
    );
    let run = qemu::Qemu {
        kernel: &image.kernel,
        append,
        accel,
        timeout: Duration::from_secs(args.timeout_secs),
        netdev: None,
        tap: None,
        echo: qemu::Echo::Terminal,
    }
    .run()?;
    eprintln!(
        "xtask: {} after {:.2} s",
        run.outcome,
        run.elapsed.as_secs_f64()
    );
    Ok(ExitCode::from(run.outcome.host_status()))
}
