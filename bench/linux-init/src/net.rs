//! The Linux server of `cargo xtask bench net`: what `/init net` does as PID 1.
//!
//! The initramfs xtask builds for it (`xtask/src/bench_net/initramfs.rs`) holds Debian's
//! busybox, nginx and socat with their libraries, the `virtio_net` modules and the site; this
//! brings the network up with busybox, starts nginx (one worker) and socat's TCP echo, runs
//! the UDP echo as a process of its own (`/init udp-echo`), and then answers the bench's
//! control datagrams on [`CONTROL_PORT`]: `busy N` keeps N spinning processes (`/init spin`),
//! `quit` stops the machine. Every failure is printed on the console, which xtask shows.
use std::io::Write;
use std::net::UdpSocket;
use std::process::{Child, Command};

/// The UDP port of the bench's control datagrams.
pub const CONTROL_PORT: u16 = 9999;
/// The UDP echo port (the same as ashd's and echo's on exo).
const ECHO_PORT: u16 = 7;
/// Most busy processes the control port starts (the bench asks for at most 10).
const BUSY_MAX: usize = 64;
/// The modules to load, in order (dependencies first), one file name per line.
const MODULE_LIST: &str = "/etc/exo-net/modules";

/// Runs a busybox applet; an error names it.
fn busybox(arguments: &[&str]) -> Result<(), String> {
    let status = Command::new("/bin/busybox")
        .args(arguments)
        .status()
        .map_err(|error| format!("busybox {}: {error}", arguments.join(" ")))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("busybox {}: {status}", arguments.join(" ")))
    }
}

fn bring_up() -> Result<(), String> {
    busybox(&["mount", "-t", "proc", "proc", "/proc"])?;
    busybox(&["mount", "-t", "sysfs", "sysfs", "/sys"])?;
    busybox(&["mount", "-t", "devtmpfs", "devtmpfs", "/dev"])?;
    let modules = std::fs::read_to_string(MODULE_LIST)
        .map_err(|error| format!("reading {MODULE_LIST}: {error}"))?;
    for module in modules.lines().filter(|line| !line.is_empty()) {
        busybox(&["insmod", module])?;
    }
    // The device appears once virtio_net has probed it; wait a bounded while.
    let mut tries = 0;
    while !std::path::Path::new("/sys/class/net/eth0").exists() {
        tries += 1;
        if tries > 200 {
            return Err("no eth0 after loading virtio_net".into());
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    busybox(&["ip", "link", "set", "lo", "up"])?;
    busybox(&["ip", "addr", "add", "10.0.2.15/24", "dev", "eth0"])?;
    busybox(&["ip", "link", "set", "eth0", "up"])?;
    Ok(())
}

fn spawn(program: &str, arguments: &[&str]) -> Result<Child, String> {
    // No ld.so.cache in the initramfs: the libraries are where their packages put them.
    Command::new(program)
        .args(arguments)
        .env(
            "LD_LIBRARY_PATH",
            "/lib/x86_64-linux-gnu:/usr/lib/x86_64-linux-gnu",
        )
        .spawn()
        .map_err(|error| format!("starting {program}: {error}"))
}

/// PID 1's work in net mode; returns only when asked to stop (the status to stop with).
pub fn serve() -> u8 {
    if let Err(error) = bring_up() {
        println!("linux-init: net: {error}");
        return 1;
    }
    let servers = [
        spawn("/usr/sbin/nginx", &["-c", "/etc/nginx/nginx.conf"]),
        spawn(
            "/usr/bin/socat",
            &["TCP-LISTEN:7,reuseaddr,fork,backlog=64", "PIPE"],
        ),
        spawn("/init", &["udp-echo"]),
    ];
    let mut children = Vec::new();
    for server in servers {
        match server {
            Ok(child) => children.push(child),
            Err(error) => {
                println!("linux-init: net: {error}");
                return 1;
            }
        }
    }
    // A server that cannot start (a library missing, a port taken) exits at once.
    std::thread::sleep(std::time::Duration::from_millis(500));
    for (child, name) in children.iter_mut().zip(["nginx", "socat", "udp-echo"]) {
        if let Ok(Some(status)) = child.try_wait() {
            println!("linux-init: net: {name} exited at start ({status})");
            return 1;
        }
    }
    let control = match UdpSocket::bind(("0.0.0.0", CONTROL_PORT)) {
        Ok(socket) => socket,
        Err(error) => {
            println!("linux-init: net: control port: {error}");
            return 1;
        }
    };
    println!("linux-init: net ready: nginx on 80, socat TCP echo on 7, UDP echo on 7");
    let _ = std::io::stdout().flush();
    let mut busy: Vec<Child> = Vec::new();
    let mut buffer = [0u8; 256];
    loop {
        let Ok((length, peer)) = control.recv_from(&mut buffer) else {
            continue;
        };
        let command = String::from_utf8_lossy(&buffer[..length])
            .trim()
            .to_string();
        let reply = match command.split_whitespace().collect::<Vec<_>>().as_slice() {
            ["quit"] => {
                let _ = control.send_to(b"ok quit", peer);
                break;
            }
            ["busy", count] => match count.parse::<usize>() {
                Ok(count) if count <= BUSY_MAX => set_busy(&mut busy, count),
                _ => format!("error: busy wants 0..={BUSY_MAX}"),
            },
            _ => format!("error: unknown command {command:?}"),
        };
        let _ = control.send_to(reply.as_bytes(), peer);
    }
    set_busy(&mut busy, 0);
    for mut child in children {
        let _ = child.kill();
        let _ = child.wait();
    }
    0
}

fn set_busy(busy: &mut Vec<Child>, count: usize) -> String {
    while busy.len() > count {
        if let Some(mut child) = busy.pop() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
    while busy.len() < count {
        match spawn("/init", &["spin"]) {
            Ok(child) => busy.push(child),
            Err(error) => return format!("error: {error}"),
        }
    }
    format!("ok busy {count}")
}

/// `/init udp-echo`: every datagram on [`ECHO_PORT`] goes back to its sender.
pub fn udp_echo() -> u8 {
    let socket = match UdpSocket::bind(("0.0.0.0", ECHO_PORT)) {
        Ok(socket) => socket,
        Err(error) => {
            println!("linux-init: udp-echo: {error}");
            return 1;
        }
    };
    let mut buffer = [0u8; 2048];
    loop {
        if let Ok((length, peer)) = socket.recv_from(&mut buffer) {
            let _ = socket.send_to(&buffer[..length], peer);
        }
    }
}

/// `/init spin`: computes until killed (a busy process, as apps/busy is on exo).
pub fn spin() -> u8 {
    let mut state = std::hint::black_box(0x9e37_79b9_7f4a_7c15u64);
    loop {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        std::hint::black_box(state);
    }
}
