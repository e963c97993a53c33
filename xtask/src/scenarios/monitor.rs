//! Events only the platform raises, injected from QEMU's monitor (QMP) while an app runs: NMIs
//! (`inject-nmi`), which the kernel must take on their IST stack and dismiss, and a machine
//! check (HMP `mce`), which it must take on its IST stack and report before it stops.
use crate::qemu::{Accel, Echo, Qemu, Run};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Between two injections: long enough that each lands in a different stretch of the app.
const BETWEEN: Duration = Duration::from_millis(100);
/// How long to wait for QEMU's socket and for each reply.
const WAIT: Duration = Duration::from_secs(10);

/// A QMP reply line that answers a command (events on the way are skipped).
fn answer(reader: &mut BufReader<UnixStream>) -> Result<String, String> {
    loop {
        let mut line = String::new();
        reader
            .read_line(&mut line)
            .map_err(|error| format!("reading QMP: {error}"))?;
        if line.is_empty() {
            return Err("QMP closed".into());
        }
        if line.contains("\"return\"") {
            return Ok(line);
        }
        if line.contains("\"error\"") {
            return Err(format!("QMP refused: {}", line.trim()));
        }
    }
}

/// The thread injecting, started by the first line that asks for it.
type Injection = std::thread::JoinHandle<Result<(), String>>;

/// What the monitor injects.
#[derive(Clone, Copy, Debug)]
pub enum Inject {
    /// This many NMIs, [`BETWEEN`] apart.
    Nmis(u32),
    /// One uncorrected machine check in bank 1 of CPU 0 (status VAL|UC|EN|PCC).
    MachineCheck,
}

/// The QMP command lines `inject` stands for.
fn commands(inject: Inject) -> Vec<String> {
    match inject {
        Inject::Nmis(count) => (0..count)
            .map(|_| r#"{"execute": "inject-nmi"}"#.to_string())
            .collect(),
        Inject::MachineCheck => vec![
            r#"{"execute": "human-monitor-command", "arguments": {"command-line": "mce 0 1 0xb200000000000000 0 0 0"}}"#
                .to_string(),
        ],
    }
}

/// Connects to `socket` and sends what `inject` stands for, [`BETWEEN`] apart.
fn send(socket: &Path, inject: Inject) -> Result<(), String> {
    let start = Instant::now();
    let stream = loop {
        match UnixStream::connect(socket) {
            Ok(stream) => break stream,
            Err(error) if start.elapsed() >= WAIT => {
                return Err(format!("QMP socket {}: {error}", socket.display()));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    };
    stream
        .set_read_timeout(Some(WAIT))
        .map_err(|error| error.to_string())?;
    let mut writer = stream.try_clone().map_err(|error| error.to_string())?;
    let mut reader = BufReader::new(stream);
    let mut greeting = String::new();
    reader
        .read_line(&mut greeting)
        .map_err(|error| format!("reading QMP: {error}"))?;
    if !greeting.contains("\"QMP\"") {
        return Err(format!("not a QMP greeting: {greeting}"));
    }
    writeln!(writer, r#"{{"execute": "qmp_capabilities"}}"#)
        .map_err(|error| format!("writing QMP: {error}"))?;
    answer(&mut reader)?;
    for command in commands(inject) {
        std::thread::sleep(BETWEEN);
        writeln!(writer, "{command}").map_err(|error| format!("writing QMP: {error}"))?;
        let reply = answer(&mut reader)?;
        // HMP answers in text: QEMU refusing the injection is not an error reply.
        if reply.contains("not enabled") || reply.contains("triple fault") {
            return Err(format!("QEMU did not inject: {}", reply.trim()));
        }
    }
    Ok(())
}

/// Boots `append` with a QMP socket and, once a serial line contains `after`, injects
/// `inject`; the run and whether every injection was accepted.
pub fn run(
    kernel: &Path,
    (append, timeout): (&'static str, Duration),
    accel: Accel,
    (after, inject): (&'static str, Inject),
    extra: &[std::ffi::OsString],
) -> crate::Result<(Run, Result<(), String>)> {
    let socket: PathBuf =
        std::env::temp_dir().join(format!("exo-monitor-{}.qmp", std::process::id()));
    let _ = std::fs::remove_file(&socket);
    let mut arguments = vec![
        "-qmp".into(),
        format!("unix:{},server=on,wait=off", socket.display()).into(),
    ];
    arguments.extend_from_slice(extra);
    let injector: Arc<Mutex<Option<Injection>>> = Arc::new(Mutex::new(None));
    let started = Arc::clone(&injector);
    let path = socket.clone();
    let run = Qemu {
        kernel,
        append,
        accel,
        timeout,
        netdev: None,
        tap: None,
        echo: Echo::Quiet,
    }
    .run_watching(&arguments, move |line| {
        let mut slot = started.lock().expect("not poisoned");
        if slot.is_none() && line.contains(after) {
            let path = path.clone();
            *slot = Some(std::thread::spawn(move || send(&path, inject)));
        }
    });
    let _ = std::fs::remove_file(&socket);
    let injected = match injector.lock().expect("not poisoned").take() {
        Some(thread) => thread
            .join()
            .unwrap_or_else(|_| Err("the injecting thread panicked".into())),
        None => Err(format!(
            "no serial line contained {after:?}: nothing injected"
        )),
    };
    Ok((run?, injected))
}
