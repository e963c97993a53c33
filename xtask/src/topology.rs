//! The network topology the ASH scenarios share (and the network benchmarks will): a network
//! namespace holding a tap device that QEMU attaches to (`-netdev tap`, never `-netdev user`),
//! with real clients (`ping`, `arping`, `socat`) run inside it.
//!
//! [`Topology`] removes what it made when dropped: on success, on failure, and on Ctrl-C (the
//! handler [`interrupt::install`] sets only records the signal; QEMU and the clients, in the
//! same process group, die of it, the scenario returns and the drop runs). Namespaces left by
//! a killed xtask (`exo-ash-PID` with PID gone) are removed at the next start. Every client
//! runs with a deadline and is killed at it.
use crate::Result;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The namespace's side of the link; the guest is 10.0.2.15 (the kernel's default `ipv4=`).
pub const HOST_ADDRESS: &str = "10.0.2.2";
/// The guest's IPv4 address.
pub const GUEST_ADDRESS: &str = "10.0.2.15";
/// The tap device's name inside the namespace.
pub const TAP: &str = "tap0";
const PREFIX: &str = "exo-ash-";

/// A namespace with a configured tap device, removed on drop.
#[derive(Debug)]
pub struct Topology {
    pub namespace: String,
}

fn ip(arguments: &[&str]) -> Result<()> {
    let output = Command::new("ip").args(arguments).output()?;
    if !output.status.success() {
        return Err(format!(
            "ip {}: {}",
            arguments.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        )
        .into());
    }
    Ok(())
}

/// Removes namespaces earlier runs left behind (their xtask is gone).
fn remove_stale() {
    let Ok(output) = Command::new("ip").args(["netns", "list"]).output() else {
        return;
    };
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        let Some(name) = line.split_whitespace().next() else {
            continue;
        };
        let Some(pid) = name
            .strip_prefix(PREFIX)
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            eprintln!("xtask: removing network namespace {name} left by an earlier run");
            let _ = ip(&["netns", "del", name]);
        }
    }
}

impl Topology {
    /// Creates `exo-ash-PID` with `tap0` at [`HOST_ADDRESS`]/24, up, IPv6 off (so the
    /// namespace sends nothing the scenarios did not ask for).
    pub fn create() -> Result<Topology> {
        interrupt::install();
        remove_stale();
        let namespace = format!("{PREFIX}{}", std::process::id());
        ip(&["netns", "add", &namespace])?;
        // From here on the drop removes it, whatever fails next.
        let topology = Topology { namespace };
        let ns = topology.namespace.as_str();
        ip(&["-n", ns, "link", "set", "lo", "up"])?;
        ip(&["-n", ns, "tuntap", "add", "dev", TAP, "mode", "tap"])?;
        let quiet = topology.run(
            "sysctl",
            &["-qw", "net.ipv6.conf.all.disable_ipv6=1"],
            Duration::from_secs(5),
            None,
        )?;
        if !quiet.status.success() {
            return Err("sysctl net.ipv6.conf.all.disable_ipv6=1 failed in the namespace".into());
        }
        ip(&[
            "-n",
            ns,
            "addr",
            "add",
            &format!("{HOST_ADDRESS}/24"),
            "dev",
            TAP,
        ])?;
        ip(&["-n", ns, "link", "set", TAP, "up"])?;
        Ok(topology)
    }

    /// Runs `program` inside the namespace with `input` on its stdin, killed after `deadline`;
    /// its output (a killed client is an error).
    pub fn run(
        &self,
        program: &str,
        arguments: &[&str],
        deadline: Duration,
        input: Option<&[u8]>,
    ) -> Result<Output> {
        let mut child = Command::new("ip")
            .args(["netns", "exec", &self.namespace, program])
            .args(arguments)
            .stdin(if input.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|error| format!("starting {program}: {error}"))?;
        // Input, output and errors move on threads of their own: a client that writes more
        // than a pipe holds (a 1 MiB body) must not wait for this loop, nor one that reads
        // its input while it writes (an echo).
        let writer = match (input, child.stdin.take()) {
            (Some(input), Some(mut stdin)) => {
                let input = input.to_vec();
                Some(std::thread::spawn(move || {
                    use std::io::Write;
                    // A client that exits before reading everything closes the pipe: its exit
                    // status says what went wrong.
                    let _ = stdin.write_all(&input);
                }))
            }
            _ => None,
        };
        let drain = |pipe: Option<Box<dyn std::io::Read + Send>>| {
            std::thread::spawn(move || {
                let mut bytes = Vec::new();
                if let Some(mut pipe) = pipe {
                    let _ = pipe.read_to_end(&mut bytes);
                }
                bytes
            })
        };
        let stdout = drain(child.stdout.take().map(|pipe| Box::new(pipe) as _));
        let stderr = drain(child.stderr.take().map(|pipe| Box::new(pipe) as _));
        let start = Instant::now();
        loop {
            if let Some(status) = child.try_wait()? {
                if let Some(writer) = writer {
                    let _ = writer.join();
                }
                return Ok(Output {
                    status,
                    stdout: stdout.join().unwrap_or_default(),
                    stderr: stderr.join().unwrap_or_default(),
                });
            }
            if start.elapsed() >= deadline || interrupt::interrupted() {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "{program} {} killed after {:.1} s",
                    arguments.join(" "),
                    start.elapsed().as_secs_f64()
                )
                .into());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// A program running in the namespace (a server for the guest's clients), killed on drop.
#[derive(Debug)]
pub struct Background {
    child: std::process::Child,
}

impl Topology {
    /// Starts `program` inside the namespace in the background (output discarded).
    pub fn spawn(&self, program: &str, arguments: &[&str]) -> Result<Background> {
        let child = Command::new("ip")
            .args(["netns", "exec", &self.namespace, program])
            .args(arguments)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|error| format!("starting {program}: {error}"))?;
        Ok(Background { child })
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        if let Err(error) = ip(&["netns", "del", &self.namespace]) {
            eprintln!(
                "xtask: could not remove network namespace {}: {error}",
                self.namespace
            );
        }
    }
}

/// Ctrl-C: remembered, so that the running scenario ends and the topology is removed.
#[allow(unsafe_code)]
pub mod interrupt {
    use std::sync::Once;
    use std::sync::atomic::{AtomicBool, Ordering};

    static INTERRUPTED: AtomicBool = AtomicBool::new(false);
    static INSTALL: Once = Once::new();

    extern "C" fn on_interrupt(_signal: libc::c_int) {
        // Only an atomic store: async-signal-safe.
        INTERRUPTED.store(true, Ordering::SeqCst);
    }

    /// Installs the SIGINT handler (once).
    pub fn install() {
        INSTALL.call_once(|| {
            let handler: extern "C" fn(libc::c_int) = on_interrupt;
            // SAFETY: `signal` with a handler that only stores to an atomic (async-signal-safe);
            // it replaces the default action (termination) for this process only.
            unsafe {
                libc::signal(libc::SIGINT, handler as libc::sighandler_t);
            }
        });
    }

    /// Whether Ctrl-C was pressed since [`install`].
    pub fn interrupted() -> bool {
        INTERRUPTED.load(Ordering::SeqCst)
    }
}
