//! Installs what a fresh machine lacks, saying so: the bare-metal Rust target, QEMU and the
//! Debian packages the host tests link against.
use crate::{Result, qemu::Accel};
use std::process::{Command, Stdio};

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
    eprintln!(
        "xtask: installing the Rust target {TARGET}, which the kernel and apps are built for: \
         rustup target add {TARGET}"
    );
    let status = Command::new("rustup")
        .args(["target", "add", TARGET])
        .status()?;
    if !status.success() {
        return Err(format!("`rustup target add {TARGET}` failed ({status})").into());
    }
    Ok(())
}

/// A Debian package xtask installs when it is missing, and why it is needed: every install
/// says what it installs and what for, in one line.
#[derive(Clone, Copy, Debug)]
pub struct Package {
    /// Debian's package name.
    pub name: &'static str,
    /// What needs it, as the install line says.
    pub why: &'static str,
}

/// Debian packages the host tests need: libpcap (opened at run time, never linked) to compile
/// the cBPF programs the peers are checked against, tcpdump to re-check the stored verdicts.
pub const HOST_TEST_PACKAGES: &[Package] = &[
    Package {
        name: "libpcap0.8",
        why: "libpcap's compiler and interpreter, which the host tests compare dpf and the peers with",
    },
    Package {
        name: "tcpdump",
        why: "re-checking the stored tcpdump verdicts dpf must equal",
    },
    Package {
        name: "netbase",
        why: "/etc/protocols and /etc/services, where tcpdump looks up names such as \\tcp",
    },
];

/// Debian packages the demux benchmark's peers need: libpcap, and DPDK's BPF and ACL libraries
/// (without them the `dpdk-bpf-jit` and `rte-acl` rows say they are unavailable); and valgrind for
/// its deterministic counts.
pub const DEMUX_BENCH_PACKAGES: &[Package] = &[
    Package {
        name: "libpcap0.8",
        why: "the libpcap peer and the cBPF programs bpfjit and rbpf run",
    },
    Package {
        name: "librte-bpf23",
        why: "DPDK's rte_bpf JIT peer",
    },
    Package {
        name: "librte-acl23",
        why: "DPDK's rte_acl multi-field classifier peer (brings librte-eal23, which it allocates through)",
    },
    Package {
        name: "valgrind",
        why: "callgrind's instructions, branch and cache misses per packet beside the times",
    },
];

/// QEMU, for every command that boots the kernel.
const QEMU_PACKAGE: Package = Package {
    name: "qemu-system-x86",
    why: "QEMU, which boots the exo kernel",
};

/// Installs Debian's `qemu-system-x86` if `qemu-system-x86_64` is missing.
pub fn ensure_qemu() -> Result<()> {
    if Command::new(QEMU).arg("--version").output().is_ok() {
        return Ok(());
    }
    ensure_packages(&[QEMU_PACKAGE])?;
    Command::new(QEMU)
        .arg("--version")
        .output()
        .map_err(|error| format!("{QEMU} still not runnable after installing: {error}"))?;
    Ok(())
}

/// What `cargo xtask run`'s demonstration runs in its namespace: `ip`, `sysctl`, `ping`,
/// `socat` and `curl` (a subset of [`TAP_TEST_PACKAGES`]).
pub const DEMO_PACKAGES: &[Package] = &[
    Package {
        name: "iproute2",
        why: "`ip`, which makes the demonstration's network namespace and its tap device",
    },
    Package {
        name: "procps",
        why: "`sysctl`, which turns IPv6 autoconfiguration off in the demonstration's namespace",
    },
    Package {
        name: "iputils-ping",
        why: "`ping`, which the demonstration's ICMP echo handler answers",
    },
    Package {
        name: "socat",
        why: "`socat`, which sends a line through the demonstration's echo app",
    },
    Package {
        name: "curl",
        why: "`curl`, which fetches the demonstration's front page from httpd",
    },
];

/// What the tap scenarios' real clients need: network namespaces and tap devices (`ip`),
/// `ping`, `arping` and `socat` (ASH), hping3 and tcpdump (the floods and their capture), and
/// curl, ab, wrk and scapy (libnet) to run inside the namespace.
pub const TAP_TEST_PACKAGES: &[Package] = &[
    Package {
        name: "iproute2",
        why: "`ip`, which makes the test network namespace and its tap device",
    },
    Package {
        name: "procps",
        why: "`sysctl`, which turns IPv6 autoconfiguration off in the test namespace",
    },
    Package {
        name: "iputils-ping",
        why: "`ping`, a real client the ASH echo responder answers",
    },
    Package {
        name: "iputils-arping",
        why: "`arping`, a real client the ASH ARP responder answers",
    },
    Package {
        name: "hping3",
        why: "`hping3`, the floods of the net-flood scenario",
    },
    Package {
        name: "tcpdump",
        why: "`tcpdump`, which captures the net-flood frames hosted dpf replays",
    },
    Package {
        name: "socat",
        why: "`socat`, the UDP client of the ASH echo and remote-increment scenarios",
    },
    Package {
        name: "curl",
        why: "`curl`, the HTTP client of the libnet scenario (httpd's pages, keep-alive, HEAD)",
    },
    Package {
        name: "apache2-utils",
        why: "`ab`, the load client of the libnet-load scenario",
    },
    Package {
        name: "wrk",
        why: "`wrk`, the load client of the libnet-load scenario",
    },
    Package {
        name: "python3-scapy",
        why: "scapy, which sends the libnet scenario's bad input (bad checksums, resets, a SYN flood)",
    },
];

/// What `cargo xtask bench net` runs in its namespace and needs to build the Linux server:
/// `ip`, `sysctl`, curl, wrk and ab, and `xz` for Debian's kernel image. (nginx, socat and
/// busybox for the Linux guest are only downloaded and unpacked, never installed.)
pub const NET_BENCH_PACKAGES: &[Package] = &[
    Package {
        name: "iproute2",
        why: "`ip`, which makes the network benchmark's namespace and its tap device",
    },
    Package {
        name: "procps",
        why: "`sysctl`, which turns IPv6 autoconfiguration off in the benchmark's namespace",
    },
    Package {
        name: "curl",
        why: "`curl`, which checks both servers serve the benchmark's documents byte for byte",
    },
    Package {
        name: "wrk",
        why: "`wrk --latency`, the network benchmark's HTTP load client",
    },
    Package {
        name: "apache2-utils",
        why: "`ab -k`, the network benchmark's second HTTP client",
    },
    Package {
        name: "xz-utils",
        why: "`xz`, which unpacks the vmlinux inside Debian's Linux image for the benchmark",
    },
];

/// How apt-get can be run here.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Privilege {
    /// We are root.
    Root,
    /// `sudo -n` works without asking for a password.
    Sudo,
}

fn privilege() -> Option<Privilege> {
    let is_root = Command::new("id")
        .arg("-u")
        .output()
        .map(|output| String::from_utf8_lossy(&output.stdout).trim() == "0")
        .unwrap_or(false);
    if is_root {
        return Some(Privilege::Root);
    }
    let sudo_works = Command::new("sudo")
        .args(["-n", "true"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    sudo_works.then_some(Privilege::Sudo)
}

/// The apt-get runs that install `missing`, as a program and its arguments each, or why they
/// cannot run here with the exact command to run by hand instead.
fn install_plan(
    missing: &[Package],
    has_apt: bool,
    privilege: Option<Privilege>,
) -> std::result::Result<Vec<Vec<&'static str>>, String> {
    let names: Vec<&'static str> = missing.iter().map(|package| package.name).collect();
    let list = names.join(" ");
    let by_hand = format!("sudo apt-get update && sudo apt-get install -y {list}");
    if !has_apt {
        return Err(format!(
            "missing Debian packages ({list}) and no apt-get here: exo's setup needs Debian 12 \
             or a derivative; on one, run: {by_hand}"
        ));
    }
    let prefix: &[&'static str] = match privilege {
        Some(Privilege::Root) => &["apt-get"],
        Some(Privilege::Sudo) => &["sudo", "-n", "apt-get"],
        None => {
            return Err(format!(
                "missing Debian packages ({list}); installing them needs root, and `sudo -n` \
                 asks for a password. Run this, then try again: {by_hand}"
            ));
        }
    };
    let update = [prefix, &["update", "-q"]].concat();
    let install = [
        prefix,
        &["install", "-y", "-q", "--no-install-recommends"],
        &names,
    ]
    .concat();
    Ok(vec![update, install])
}

/// Installs whichever of `packages` dpkg does not list as installed, in one `apt-get` run,
/// with one line per package saying what it is for. As root it runs apt-get; otherwise
/// `sudo -n apt-get` where sudo needs no password; where neither works it stops with the exact
/// command to run by hand.
pub fn ensure_packages(packages: &[Package]) -> Result<()> {
    let mut missing: Vec<Package> = Vec::new();
    for package in packages {
        if !package_installed(package.name) && !missing.iter().any(|m| m.name == package.name) {
            missing.push(*package);
        }
    }
    if missing.is_empty() {
        return Ok(());
    }
    let has_apt = Command::new("apt-get").arg("--version").output().is_ok();
    let runs = install_plan(&missing, has_apt, privilege())?;
    for package in &missing {
        eprintln!(
            "xtask: installing Debian package {}: {}",
            package.name, package.why
        );
    }
    let shown: Vec<String> = runs.iter().map(|run| run.join(" ")).collect();
    eprintln!("xtask: running {}", shown.join(" && "));
    for run in &runs {
        let status = Command::new(run[0])
            .args(&run[1..])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdin(Stdio::null())
            .status()?;
        if !status.success() {
            return Err(format!("`{}` failed ({status})", run.join(" ")).into());
        }
    }
    Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;

    const PCAP: Package = Package {
        name: "libpcap0.8",
        why: "testing",
    };

    #[test]
    fn installs_as_root_or_through_sudo_without_a_password() {
        let root = install_plan(&[PCAP, QEMU_PACKAGE], true, Some(Privilege::Root)).unwrap();
        assert_eq!(root[0], ["apt-get", "update", "-q"]);
        assert_eq!(
            root[1],
            [
                "apt-get",
                "install",
                "-y",
                "-q",
                "--no-install-recommends",
                "libpcap0.8",
                "qemu-system-x86"
            ]
        );
        let sudo = install_plan(&[PCAP], true, Some(Privilege::Sudo)).unwrap();
        assert!(sudo.iter().all(|run| run[..3] == ["sudo", "-n", "apt-get"]));
    }

    #[test]
    fn without_a_way_to_install_it_says_the_exact_command() {
        let error = install_plan(&[PCAP, QEMU_PACKAGE], true, None).unwrap_err();
        assert!(
            error.ends_with(
                "sudo apt-get update && sudo apt-get install -y libpcap0.8 qemu-system-x86"
            ),
            "{error}"
        );
        let error = install_plan(&[PCAP], false, Some(Privilege::Root)).unwrap_err();
        assert!(error.contains("no apt-get"), "{error}");
    }
}
