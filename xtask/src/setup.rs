//! Installs what a fresh machine lacks, saying so: the bare-metal Rust target, QEMU and the
//! Debian packages the host tests link against.
use crate::{Result, qemu::Accel};
use std::process::Command;

pub const TARGET: &str = "x86_64-unknown-none";
pub const QEMU: &str = "qemu-system-x86_64";

/// Adds the `x86_64-unknown-none` target to the pinned toolchain if missing. (A target listed
/// in rust-toolchain.toml is not installed when rustup's auto-install is off.)
pub fn ensure_target() -> Result<()> {
    let listed = match Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
    {
        Ok(output) => output,
        Err(_) => {
            eprintln!("xtask: rustup not found; assuming the toolchain has {TARGET}");
            return Ok(());
        }
    };
    if String::from_utf8_lossy(&listed.stdout)
        .lines()
        .any(|line| line.trim() == TARGET)
    {
        return Ok(());
    }
    eprintln!("xtask: installing the {TARGET} target: rustup target add {TARGET}");
    let status = Command::new("rustup")
        .args(["target", "add", TARGET])
        .status()?;
    if !status.success() {
        return Err(format!("`rustup target add {TARGET}` failed ({status})").into());
    }
    Ok(())
}

/// Debian packages the host tests need: libpcap to link the libpcap peer and read its programs,
/// tcpdump to re-check the stored verdicts.
pub const HOST_TEST_PACKAGES: &[&str] = &["libpcap-dev", "tcpdump"];

/// Debian packages the demux benchmark's peers need: libpcap, and DPDK's BPF library (without it
/// the `dpdk-bpf-jit` rows say it is unavailable).
pub const DEMUX_BENCH_PACKAGES: &[&str] = &["libpcap-dev", "librte-bpf23"];

/// Installs Debian's `qemu-system-x86` if `qemu-system-x86_64` is missing.
pub fn ensure_qemu() -> Result<()> {
    if Command::new(QEMU).arg("--version").output().is_ok() {
        return Ok(());
    }
    ensure_packages(&["qemu-system-x86"])?;
    Command::new(QEMU)
        .arg("--version")
        .output()
        .map_err(|error| format!("{QEMU} still not runnable after installing: {error}"))?;
    Ok(())
}

/// What the ASH scenarios' real clients need: network namespaces and tap devices (`ip`),
/// `ping`, `arping` and `socat` to run inside the namespace.
pub const TAP_TEST_PACKAGES: &[&str] = &["iproute2", "iputils-ping", "iputils-arping", "socat"];

/// Installs whichever of `packages` dpkg does not list as installed, in one `apt-get` run, and
/// says so. Uses sudo when not root.
pub fn ensure_packages(packages: &[&str]) -> Result<()> {
    ensure_packages_for(packages, "the build and the tests use them")
}

/// [`ensure_packages`], saying `why` they are needed when it installs any.
pub fn ensure_packages_for(packages: &[&str], why: &str) -> Result<()> {
    let missing: Vec<&str> = packages
        .iter()
        .copied()
        .filter(|package| !package_installed(package))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let is_root = Command::new("id")
        .arg("-u")
        .output()
        .map(|output| String::from_utf8_lossy(&output.stdout).trim() == "0")
        .unwrap_or(false);
    let apt = |arguments: &[&str]| -> Result<()> {
        let mut command = if is_root {
            Command::new("apt-get")
        } else {
            let mut sudo = Command::new("sudo");
            sudo.arg("apt-get");
            sudo
        };
        command
            .args(arguments)
            .env("DEBIAN_FRONTEND", "noninteractive");
        let status = command.status()?;
        if !status.success() {
            return Err(format!("apt-get {} failed ({status})", arguments.join(" ")).into());
        }
        Ok(())
    };
    let sudo = if is_root { "" } else { "sudo " };
    let list = missing.join(" ");
    eprintln!(
        "xtask: missing Debian packages ({why}); installing them: {sudo}apt-get update && {sudo}apt-get install -y {list}"
    );
    apt(&["update"])?;
    let mut install = vec!["install", "-y"];
    install.extend(&missing);
    apt(&install)
}

fn package_installed(package: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", package])
        .output()
        .map(|output| String::from_utf8_lossy(&output.stdout).contains("install ok installed"))
        .unwrap_or(false)
}

/// The accelerator to use: KVM only when asked for *and* the CPU advertises hardware
/// virtualisation. (A /dev/kvm without vmx/svm, such as a software-nested PVM, runs ring 3
/// and traps incorrectly, so its mere presence is not enough.)
pub fn usable_accel(requested: Accel) -> Accel {
    if requested == Accel::Kvm {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let hardware = cpuinfo
            .lines()
            .filter(|line| line.starts_with("flags"))
            .any(|line| {
                line.split_whitespace()
                    .any(|flag| flag == "vmx" || flag == "svm")
            });
        if !hardware {
            eprintln!(
                "xtask: --accel kvm refused: /proc/cpuinfo shows neither vmx nor svm; using tcg"
            );
            return Accel::Tcg;
        }
    }
    requested
}
