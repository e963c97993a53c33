//! `cargo xtask bench kernel`: exo's primitives against Linux's on the same emulated machine.
//!
//! Boots exo with the `kbench` app, then Debian's Linux 6.1 ([`linux`]) with a static Rust
//! `/init` (`bench/linux-init`, in an initramfs written by [`initramfs`]); both run the loops
//! of `bench/common` and print `BENCH` lines ([`report`] reads them). Each pair boots twice:
//! with `-icount shift=0,sleep=off` (the TSC counts guest instructions: deterministic) and
//! without (the TSC is the host's: wall time). Both get xtask's machine (`-machine q35 -cpu
//! max -m 256M`, one CPU, no network); Linux gets `mitigations=off` (its best case). With
//! `--accel kvm` (only where the CPU shows vmx/svm) the pair also runs under KVM, in wall mode.
//!
//! Writes `target/bench/kernel.json` (one object per row), `target/bench/kernel.svg`, and each
//! boot's console as `target/bench/kernel-<kernel>-<mode>.log`; prints the table.
pub(crate) mod initramfs;
pub(crate) mod linux;
mod plot;
mod report;

pub(crate) use plot::register_font as register_plot_font;

use crate::qemu::{Accel, Echo, Outcome, Qemu};
use crate::{BootArgs, Result, image, setup};
use exo_abi::KernelExit;
use report::{GuestReport, Mode, Side};
use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Duration;

/// Linux's command line: serial console, quiet boot, no speculative-execution mitigations
/// (the fastest system calls Linux offers), and a reboot (QEMU exit) should it panic.
pub(crate) const LINUX_CMDLINE: &str = "console=ttyS0 quiet mitigations=off panic=-1";
/// exo's command line: run the benchmark app.
const EXO_CMDLINE: &str = "apps=kbench";
/// The app's package name (in [`image::APPS`] once it exists).
const EXO_APP: &str = "kbench";

/// Which kernels to boot.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Kernels {
    Both,
    Exo,
    Linux,
}

/// Which timing modes to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Modes {
    Both,
    Icount,
    Wall,
}

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub boot: BootArgs,
    /// Boot only one of the kernels (the other's column stays empty).
    #[arg(long, value_enum, default_value_t = Kernels::Both)]
    pub kernels: Kernels,
    /// Run only one timing mode.
    #[arg(long, value_enum, default_value_t = Modes::Both)]
    pub modes: Modes,
    /// Stop a boot after this many seconds.
    #[arg(long, default_value_t = 600)]
    pub timeout_secs: u64,
}

/// One boot's configuration: which kernel, how timed, on what.
#[derive(Clone, Copy, Debug)]
struct Run {
    mode: Mode,
    accel: Accel,
}

impl Run {
    fn qemu_arguments(self) -> Vec<OsString> {
        match self.mode {
            Mode::Icount => vec!["-icount".into(), "shift=0,sleep=off".into()],
            Mode::Wall => Vec::new(),
        }
    }
}

/// A kernel ready to boot.
#[derive(Debug)]
struct Bootable {
    name: &'static str,
    kernel: PathBuf,
    append: &'static str,
    extra: Vec<OsString>,
}

pub fn run(args: &Args) -> Result<ExitCode> {
    setup::ensure_qemu()?;
    let root = image::workspace_root();
    let out = root.join("target").join("bench");
    fs::create_dir_all(&out)?;

    let exo = match args.kernels {
        Kernels::Linux => Err("not booted (--kernels linux)".to_string()),
        _ => prepare_exo(),
    };
    let linux = match args.kernels {
        Kernels::Exo => Err("not booted (--kernels exo)".to_string()),
        _ => Ok(prepare_linux(&root, &out)?),
    };

    let mut runs = Vec::new();
    if args.modes != Modes::Wall {
        runs.push(Run {
            mode: Mode::Icount,
            accel: Accel::Tcg,
        });
    }
    if args.modes != Modes::Icount {
        runs.push(Run {
            mode: Mode::Wall,
            accel: Accel::Tcg,
        });
        if setup::usable_accel(args.boot.accel) == Accel::Kvm {
            runs.push(Run {
                mode: Mode::Wall,
                accel: Accel::Kvm,
            });
        }
    }

    let timeout = Duration::from_secs(args.timeout_secs);
    let mut rows = Vec::new();
    let mut failures = Vec::new();
    for run in runs {
        let mut boot = |bootable: &std::result::Result<Bootable, String>| match bootable {
            Err(reason) => Side::Missing(reason.clone()),
            Ok(bootable) => match boot(bootable, run, timeout, &out) {
                Ok(report) => {
                    if let Some(problem) = report.problem() {
                        failures.push(format!("{} {}: {problem}", bootable.name, run.mode.name()));
                    }
                    Side::Ran(report)
                }
                Err(error) => {
                    failures.push(format!("{} {}: {error}", bootable.name, run.mode.name()));
                    Side::Missing(format!("boot failed: {error}"))
                }
            },
        };
        let exo_side = boot(&exo);
        let linux_side = boot(&linux);
        rows.extend(report::rows(
            run.mode,
            &run.accel.to_string(),
            &exo_side,
            &linux_side,
        ));
    }

    let json = out.join("kernel.json");
    fs::write(&json, report::json(&rows))?;
    let svg = out.join("kernel.svg");
    plot::write(&rows, &svg)?;
    println!();
    print!("{}", report::table(&rows));
    println!("\n{}", report::LEGEND);
    println!("wrote {} and {}", json.display(), svg.display());
    for row in &rows {
        if let Some(note) = &row.linux_note
            && note.contains("differs")
        {
            failures.push(format!("{} {}: {note}", row.op, row.mode));
        }
    }
    if failures.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        for failure in &failures {
            eprintln!("xtask: bench kernel: {failure}");
        }
        Ok(ExitCode::FAILURE)
    }
}

/// Builds the release image with `kbench`, if the app exists yet.
fn prepare_exo() -> std::result::Result<Bootable, String> {
    if !image::APPS.contains(&EXO_APP) {
        return Err(format!("the {EXO_APP} app is not in the boot pack yet"));
    }
    setup::ensure_target().map_err(|error| error.to_string())?;
    let image =
        image::build(image::Profile::Release).map_err(|error| format!("building exo: {error}"))?;
    Ok(Bootable {
        name: "exo",
        kernel: image.kernel,
        append: EXO_CMDLINE,
        extra: Vec::new(),
    })
}

/// Fetches Debian's kernel and builds the initramfs around a static `/init`.
fn prepare_linux(root: &Path, out: &Path) -> Result<Bootable> {
    let kernel = linux::prepare(&out.join("linux"))?;
    let init_path = build_linux_init(root)?;
    let init = fs::read(&init_path)?;
    if !is_static_elf(&init) {
        return Err(format!("{} is not a static executable", init_path.display()).into());
    }
    let initramfs = out.join("linux").join("initramfs.cpio");
    fs::write(&initramfs, initramfs::for_init(&init))?;
    eprintln!(
        "xtask: Linux side: {} with {} ({} KiB /init)",
        kernel.package,
        initramfs.display(),
        init.len() >> 10
    );
    Ok(Bootable {
        name: "linux",
        kernel: kernel.vmlinux,
        append: LINUX_CMDLINE,
        extra: vec!["-initrd".into(), initramfs.into()],
    })
}

/// Builds `linux-init` statically: for musl if rustup can add that target, else for glibc
/// with `crt-static`.
pub(crate) fn build_linux_init(root: &Path) -> Result<PathBuf> {
    const MUSL: &str = "x86_64-unknown-linux-musl";
    const GNU: &str = "x86_64-unknown-linux-gnu";
    let target = if ensure_rust_target(MUSL) { MUSL } else { GNU };
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo);
    command
        .current_dir(root)
        .args(["build", "--release", "-p", "linux-init", "--target", target]);
    if target == GNU {
        eprintln!("xtask: no {MUSL} target; linking linux-init statically against glibc");
        command.env(
            "CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUSTFLAGS",
            "-C target-feature=+crt-static",
        );
    }
    let status = command.status()?;
    if !status.success() {
        return Err(format!("building linux-init for {target} failed ({status})").into());
    }
    Ok(root
        .join("target")
        .join(target)
        .join("release")
        .join("linux-init"))
}

/// Whether the Rust target is installed, adding it with rustup if not.
fn ensure_rust_target(target: &str) -> bool {
    let installed = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .is_ok_and(|output| {
            String::from_utf8_lossy(&output.stdout)
                .lines()
                .any(|line| line.trim() == target)
        });
    if installed {
        return true;
    }
    eprintln!("xtask: rustup target add {target}");
    Command::new("rustup")
        .args(["target", "add", target])
        .status()
        .is_ok_and(|status| status.success())
}

/// An ELF64 without a PT_INTERP program header (no dynamic loader needed).
fn is_static_elf(elf: &[u8]) -> bool {
    let field = |offset: usize, size: usize| -> Option<u64> {
        let bytes = elf.get(offset..offset + size)?;
        Some(
            bytes
                .iter()
                .rev()
                .fold(0u64, |value, byte| (value << 8) | u64::from(*byte)),
        )
    };
    let header = || -> Option<bool> {
        if elf.get(..4)? != b"\x7fELF" {
            return Some(false);
        }
        let (table, size, count) = (field(0x20, 8)?, field(0x36, 2)?, field(0x38, 2)?);
        for index in 0..count {
            if field((table + index * size) as usize, 4)? == 3 {
                return Some(false); // PT_INTERP
            }
        }
        Some(true)
    };
    header().unwrap_or(false)
}

/// Boots one kernel in one mode, saves its console, and reads its report.
fn boot(bootable: &Bootable, run: Run, timeout: Duration, out: &Path) -> Result<GuestReport> {
    let mut extra = bootable.extra.clone();
    extra.extend(run.qemu_arguments());
    eprintln!(
        "xtask: bench kernel: booting {} ({} mode, {})",
        bootable.name,
        run.mode.name(),
        run.accel
    );
    let result = Qemu {
        kernel: &bootable.kernel,
        append: bootable.append,
        accel: run.accel,
        timeout,
        echo: Echo::Quiet,
        netdev: None,
        tap: None,
    }
    .run_with(&extra)?;
    let suffix = match run.accel {
        Accel::Tcg => String::new(),
        Accel::Kvm => "-kvm".into(),
    };
    let log = out.join(format!(
        "kernel-{}-{}{suffix}.log",
        bootable.name,
        run.mode.name()
    ));
    fs::write(&log, &result.serial)?;
    eprintln!(
        "xtask: bench kernel: {} {}: {} after {:.1} s (console in {})",
        bootable.name,
        run.mode.name(),
        result.outcome,
        result.elapsed.as_secs_f64(),
        log.display()
    );
    if result.outcome != Outcome::Kernel(KernelExit::Exited(0)) {
        return Err(format!("{} (console in {})", result.outcome, log.display()).into());
    }
    Ok(report::parse_serial(&result.serial))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_static_executables() {
        let mut elf = vec![0u8; 0x40 + 0x38];
        elf[..4].copy_from_slice(b"\x7fELF");
        elf[0x20] = 0x40;
        elf[0x36] = 0x38;
        elf[0x38] = 1;
        elf[0x40] = 1; // PT_LOAD
        assert!(is_static_elf(&elf));
        elf[0x40] = 3; // PT_INTERP
        assert!(!is_static_elf(&elf));
        assert!(!is_static_elf(b"#!/bin/sh"));
    }
}
