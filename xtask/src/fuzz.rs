//! `cargo xtask fuzz`: runs the cargo-fuzz targets in `fuzz/` (the pcap-filter front end,
//! dpf's and ash's wire decoders and verifiers, dpf's JIT against its interpreter and the
//! reference) for a bounded time each, on the nightly toolchain, the only thing nightly is
//! used for. Installs nightly and cargo-fuzz when missing, saying so.
use crate::{Result, image};
use std::process::{Command, ExitCode};
use std::time::Instant;

/// The targets, with what each one checks.
pub const TARGETS: &[(&str, &str)] = &[
    (
        "pcap_filter",
        "the pcap-filter front end compiles or refuses any text",
    ),
    ("dpf_wire", "dpf's wire decoder and verifier take any bytes"),
    ("ash_wire", "ash's wire decoder and verifier take any bytes"),
    (
        "dpf_engines",
        "JIT == interpreter == reference on any verified filter set and packet",
    ),
];

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Seconds to fuzz each target.
    #[arg(long, default_value_t = 60)]
    seconds: u64,
    /// Run only the targets whose name contains this text.
    #[arg(long)]
    target: Option<String>,
}

fn succeeds(command: &mut Command) -> bool {
    command.output().is_ok_and(|output| output.status.success())
}

fn install(what: &str, why: &str, program: &str, arguments: &[&str]) -> Result<()> {
    eprintln!(
        "xtask: installing {what}: {why}: {program} {}",
        arguments.join(" ")
    );
    let status = Command::new(program).args(arguments).status()?;
    if !status.success() {
        return Err(format!("`{program} {}` failed ({status})", arguments.join(" ")).into());
    }
    Ok(())
}

pub fn run(args: &Args) -> Result<ExitCode> {
    let has_nightly = Command::new("rustup")
        .args(["toolchain", "list"])
        .output()
        .is_ok_and(|output| String::from_utf8_lossy(&output.stdout).contains("nightly"));
    if !has_nightly {
        install(
            "the nightly toolchain",
            "cargo-fuzz needs nightly's sanitizer support",
            "rustup",
            &["toolchain", "install", "nightly", "--profile", "minimal"],
        )?;
    }
    if !succeeds(Command::new("rustup").args(["run", "nightly", "cargo", "fuzz", "--version"])) {
        install(
            "cargo-fuzz",
            "it runs the libFuzzer targets in fuzz/",
            "rustup",
            &[
                "run",
                "nightly",
                "cargo",
                "install",
                "cargo-fuzz",
                "--locked",
            ],
        )?;
    }
    let seconds = args.seconds.to_string();
    let mut results = Vec::new();
    for &(target, what) in TARGETS {
        if args
            .target
            .as_deref()
            .is_some_and(|filter| !target.contains(filter))
        {
            continue;
        }
        eprintln!("xtask: fuzzing {target} for {seconds} s: {what}");
        let start = Instant::now();
        let status = Command::new("rustup")
            .current_dir(image::workspace_root())
            .args([
                "run",
                "nightly",
                "cargo",
                "fuzz",
                "run",
                "--fuzz-dir",
                "fuzz",
                target,
            ])
            .args([
                "--",
                &format!("-max_total_time={seconds}"),
                "-rss_limit_mb=2048",
            ])
            .status()?;
        results.push((target, start.elapsed().as_secs_f64(), status.success()));
    }
    println!("| target | seconds | result |");
    println!("|---|---|---|");
    for (target, elapsed, passed) in &results {
        let verdict = if *passed {
            "no failure"
        } else {
            "FAILED (crash saved in fuzz/artifacts)"
        };
        println!("| {target} | {elapsed:.0} | {verdict} |");
    }
    Ok(if results.iter().all(|(_, _, passed)| *passed) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
