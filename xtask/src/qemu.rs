//! A typed QEMU command line and a runner that captures serial output, enforces a timeout
//! and decodes how the machine stopped.
use crate::{Result, setup::QEMU};
use exo_abi::KernelExit;
use std::ffi::OsString;
use std::fmt;
use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// How QEMU executes guest code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Accel {
    /// Software emulation: slow, but the same everywhere (the default).
    Tcg,
    /// Hardware virtualisation.
    Kvm,
}

impl fmt::Display for Accel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Accel::Tcg => "tcg",
            Accel::Kvm => "kvm",
        })
    }
}

/// Where the guest's serial output goes besides the captured copy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Echo {
    /// Stream it to this terminal as it arrives.
    Terminal,
    /// Keep it only in the capture.
    Quiet,
}

/// Guest RAM.
const MEMORY: &str = "256M";

/// One QEMU boot.
#[derive(Debug)]
pub struct Qemu<'a> {
    /// Kernel ELF (PVH note), passed to `-kernel`.
    pub kernel: &'a Path,
    /// Kernel command line, passed to `-append`.
    pub append: &'a str,
    pub accel: Accel,
    /// Kill the machine after this long.
    pub timeout: Duration,
    pub echo: Echo,
    /// A virtio-net NIC on a UDP datagram backend (`None`: no NIC).
    pub netdev: Option<Netdev>,
    /// A virtio-net NIC on a tap device inside a network namespace: QEMU runs inside that
    /// namespace (`ip netns exec`). Exclusive with `netdev`.
    pub tap: Option<TapNetdev<'a>>,
}

/// `-netdev tap` on device `ifname` of network namespace `namespace` (see `topology`).
#[derive(Clone, Copy, Debug)]
pub struct TapNetdev<'a> {
    pub namespace: &'a str,
    pub ifname: &'a str,
    /// Whether the tap may carry the virtio-net header (`vnet_hdr`): then QEMU offers the
    /// guest checksum and segmentation offloads (a driver that negotiates them, as Linux's
    /// does, sends and receives frames of up to 64 KiB that the host cuts or joins). Off, every
    /// frame on the wire is one the guest built.
    pub offloads: bool,
}

/// The `-netdev tap` argument of `tap`.
fn tap_netdev(tap: &TapNetdev<'_>) -> String {
    let mut argument = format!("tap,id=n0,ifname={},script=no,downscript=no", tap.ifname);
    if !tap.offloads {
        argument.push_str(",vnet_hdr=off");
    }
    argument
}

/// `-netdev dgram` on loopback: QEMU receives one frame per datagram on `guest_port` and sends
/// the guest's frames to `host_port`; the NIC is modern-only virtio-net-pci.
#[derive(Clone, Copy, Debug)]
pub struct Netdev {
    pub guest_port: u16,
    pub host_port: u16,
}

/// How a boot ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The kernel wrote this code to isa-debug-exit.
    Kernel(KernelExit),
    /// QEMU exited with an odd status that no `KernelExit` has.
    UnknownCode(i32),
    /// QEMU stopped for another reason (even status: e.g. a triple fault with -no-reboot).
    NoDebugExit(Option<i32>),
    /// Killed at the timeout.
    Timeout(Duration),
}

impl Outcome {
    /// The status `cargo xtask run` exits with: the kernel's own code when it chose one.
    pub fn host_status(self) -> u8 {
        match self {
            Outcome::Kernel(exit) => exit.code(),
            Outcome::Timeout(_) => 124,
            Outcome::UnknownCode(_) | Outcome::NoDebugExit(_) => 125,
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Kernel(exit) => write!(f, "kernel exit {exit:?} (code {})", exit.code()),
            Outcome::UnknownCode(status) => write!(f, "unknown debug-exit status {status}"),
            Outcome::NoDebugExit(Some(status)) => {
                write!(f, "QEMU exited with status {status} without isa-debug-exit")
            }
            Outcome::NoDebugExit(None) => write!(f, "QEMU was killed by a signal"),
            Outcome::Timeout(after) => write!(f, "timed out after {} s", after.as_secs_f64()),
        }
    }
}

/// The result of a boot.
#[derive(Debug)]
pub struct Run {
    pub outcome: Outcome,
    /// Everything the guest wrote to COM1 (and QEMU to stderr, after it).
    pub serial: String,
    pub elapsed: Duration,
}

impl Qemu<'_> {
    /// The command-line arguments, in one place.
    pub fn arguments(&self) -> Vec<OsString> {
        let mut arguments: Vec<OsString> = [
            "-machine",
            "q35",
            "-cpu",
            "max",
            "-m",
            MEMORY,
            "-accel",
            match self.accel {
                Accel::Tcg => "tcg",
                Accel::Kvm => "kvm",
            },
            "-display",
            "none",
            "-serial",
            "stdio",
            "-monitor",
            "none",
            "-no-reboot",
            "-device",
            "isa-debug-exit,iobase=0xf4,iosize=0x04",
        ]
        .into_iter()
        .map(OsString::from)
        .collect();
        if let Some(netdev) = self.netdev {
            arguments.push("-netdev".into());
            arguments.push(
                format!(
                    "dgram,id=n0,local.type=inet,local.host=127.0.0.1,local.port={},\
                     remote.type=inet,remote.host=127.0.0.1,remote.port={}",
                    netdev.guest_port, netdev.host_port
                )
                .into(),
            );
            arguments.push("-device".into());
            arguments.push("virtio-net-pci,disable-legacy=on,netdev=n0".into());
        } else if let Some(tap) = self.tap {
            arguments.push("-netdev".into());
            arguments.push(tap_netdev(&tap).into());
            arguments.push("-device".into());
            arguments.push("virtio-net-pci,disable-legacy=on,netdev=n0".into());
        }
        arguments.push("-kernel".into());
        arguments.push(self.kernel.into());
        arguments.push("-append".into());
        arguments.push(self.append.into());
        arguments
    }

    /// Boots, waits for the machine to stop or the timeout, and reports what happened.
    pub fn run(&self) -> Result<Run> {
        self.run_with(&[])
    }

    /// [`Qemu::run`] with `extra` arguments after the common ones (a benchmark's `-initrd`,
    /// `-icount`).
    pub fn run_with(&self, extra: &[OsString]) -> Result<Run> {
        self.run_watching(extra, |_| {})
    }

    /// [`Qemu::run_with`], calling `on_line` with each complete serial line as it arrives (on
    /// the reader thread), so a caller can act while the guest runs.
    pub fn run_watching(
        &self,
        extra: &[OsString],
        on_line: impl FnMut(&str) + Send + 'static,
    ) -> Result<Run> {
        self.run_until(extra, on_line, &AtomicBool::new(false))
    }

    /// [`Qemu::run_watching`] that also kills the machine as soon as `stop` is set (a
    /// scenario's clients failed: waiting for the timeout would tell nothing more). Reported
    /// as a timeout at the time it stopped.
    pub fn run_until(
        &self,
        extra: &[OsString],
        on_line: impl FnMut(&str) + Send + 'static,
        stop: &AtomicBool,
    ) -> Result<Run> {
        let start = Instant::now();
        let mut command = match self.tap {
            Some(tap) => {
                let mut command = Command::new("ip");
                command.args(["netns", "exec", tap.namespace, QEMU]);
                command
            }
            None => Command::new(QEMU),
        };
        let mut child = command
            .args(self.arguments())
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|error| format!("starting {QEMU}: {error}"))?;
        let serial = Arc::new(Mutex::new(Vec::new()));
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let readers = [
            pump(
                child.stdout.take().expect("piped"),
                Arc::clone(&serial),
                self.echo,
                Box::new(on_line),
            ),
            pump(
                child.stderr.take().expect("piped"),
                Arc::clone(&stderr),
                self.echo,
                Box::new(|_| {}),
            ),
        ];

        let status = loop {
            if let Some(status) = child.try_wait()? {
                break Some(status);
            }
            if start.elapsed() >= self.timeout || stop.load(Ordering::SeqCst) {
                // Already exited, or killed now: either way there is nothing left to stop.
                let _ = child.kill();
                child.wait()?;
                break None;
            }
            thread::sleep(Duration::from_millis(5));
        };
        for reader in readers {
            let _ = reader.join();
        }
        let outcome = match status {
            None => Outcome::Timeout(start.elapsed().min(self.timeout)),
            Some(status) => match status.code() {
                Some(code) if code & 1 == 1 => match KernelExit::from_qemu_status(code) {
                    Some(exit) => Outcome::Kernel(exit),
                    None => Outcome::UnknownCode(code),
                },
                code => Outcome::NoDebugExit(code),
            },
        };
        let mut text = String::from_utf8_lossy(&serial.lock().expect("reader done")).into_owned();
        let stderr = stderr.lock().expect("reader done");
        if !stderr.is_empty() {
            text.push_str("\n[qemu stderr]\n");
            text.push_str(&String::from_utf8_lossy(&stderr));
        }
        Ok(Run {
            outcome,
            serial: text,
            elapsed: start.elapsed(),
        })
    }
}

/// Copies a child's output into `sink`, and to this terminal when echoing.
fn pump(
    mut source: impl Read + Send + 'static,
    sink: Arc<Mutex<Vec<u8>>>,
    echo: Echo,
    mut on_line: Box<dyn FnMut(&str) + Send>,
) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        let mut buffer = [0u8; 4096];
        let mut line = Vec::new();
        while let Ok(count) = source.read(&mut buffer) {
            if count == 0 {
                break;
            }
            sink.lock()
                .expect("one writer")
                .extend_from_slice(&buffer[..count]);
            for &byte in &buffer[..count] {
                if byte == b'\n' {
                    on_line(&String::from_utf8_lossy(&line));
                    line.clear();
                } else {
                    line.push(byte);
                }
            }
            if echo == Echo::Terminal {
                let mut out = std::io::stdout().lock();
                // Terminal output is best effort; the capture is what gets judged.
                let _ = out.write_all(&buffer[..count]);
                let _ = out.flush();
            }
        }
    })
}

/// The mark the kernel puts before each of its own log lines; no app can print a line that
/// starts with it (the kernel marks every app line with the app's name instead).
pub const KERNEL_MARK: &str = "[exo] ";

/// What an app printed on a serial `line`, without the kernel's `NAME| ` mark.
pub fn app_text(line: &str) -> &str {
    if line.starts_with(KERNEL_MARK) {
        return line;
    }
    line.split_once("| ").map_or(line, |(_, text)| text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offloads_off_takes_the_virtio_header_from_the_tap() {
        let tap = |offloads| TapNetdev {
            namespace: "ns",
            ifname: "tap0",
            offloads,
        };
        assert_eq!(
            tap_netdev(&tap(true)),
            "tap,id=n0,ifname=tap0,script=no,downscript=no"
        );
        assert_eq!(
            tap_netdev(&tap(false)),
            "tap,id=n0,ifname=tap0,script=no,downscript=no,vnet_hdr=off"
        );
    }
}
