//! `/init` for the Linux side of `cargo xtask bench kernel` and, with the argument `net`, the
//! Linux server of `cargo xtask bench net` ([`net`]).
//!
//! Booted as PID 1 in an initramfs on Debian's kernel, it forks a child that runs every
//! benchmark of [`bench_common::ops`] (the fork makes the benchmark an ordinary process, not
//! init), prints the `BENCH` lines on the console, reaps it and stops the machine through
//! QEMU's isa-debug-exit device with status 0 (all ran) or 1. Run by hand on a Linux host (not
//! as PID 1) it just runs the benchmarks.
#![deny(unsafe_code)]

mod bench;
mod net;
mod sys;

use std::io::Write;

/// QEMU's `isa-debug-exit` port; exo's kernel uses the same device and status encoding.
const DEBUG_EXIT_PORT: u16 = 0xf4;

fn main() {
    // The network benchmark's roles (`-- net` on the kernel command line reaches PID 1 as its
    // argument; the others are its children).
    match std::env::args().nth(1).as_deref() {
        Some("udp-echo") => std::process::exit(i32::from(net::udp_echo())),
        Some("spin") => std::process::exit(i32::from(net::spin())),
        Some("net") if std::process::id() == 1 => {
            println!("linux-init: PID 1, network benchmark server");
            let status = net::serve();
            let _ = std::io::stdout().flush();
            stop_machine(status);
        }
        _ => {}
    }
    if std::process::id() == 1 {
        init();
    }
    let status = run();
    std::process::exit(i32::from(status));
}

/// Runs the benchmarks; the process status.
fn run() -> u8 {
    match bench::run_all() {
        Ok(()) => 0,
        Err(error) => {
            println!("linux-init: benchmark failed: {error}");
            1
        }
    }
}

fn init() -> ! {
    println!("linux-init: PID 1, forking the benchmark process");
    let _ = std::io::stdout().flush();
    let status = match sys::fork() {
        Ok(sys::Fork::Child) => {
            let status = run();
            let _ = std::io::stdout().flush();
            sys::exit(status);
        }
        Ok(sys::Fork::Parent { child }) => reap(child),
        Err(error) => {
            println!("linux-init: fork failed: {error}");
            1
        }
    };
    println!("linux-init: benchmark process ended with status {status}; stopping the machine");
    let _ = std::io::stdout().flush();
    stop_machine(status)
}

/// Waits for `child`, reaping any orphans on the way; its exit status (2 when it was killed).
fn reap(child: u64) -> u8 {
    loop {
        match sys::wait(-1) {
            Ok((pid, status)) if pid == child => {
                // WIFEXITED: low 7 bits zero; WEXITSTATUS: bits 8..16.
                return if status & 0x7f == 0 {
                    ((status >> 8) & 0xff) as u8
                } else {
                    println!(
                        "linux-init: benchmark process killed by signal {}",
                        status & 0x7f
                    );
                    2
                };
            }
            Ok(_) => {}
            Err(error) => {
                println!("linux-init: wait failed: {error}");
                return 1;
            }
        }
    }
}

fn stop_machine(status: u8) -> ! {
    match sys::ioperm(u64::from(DEBUG_EXIT_PORT), 4) {
        #[allow(unsafe_code)]
        // SAFETY: the port is allowed now; the debug-exit device stops QEMU, and without the
        // device the write goes nowhere and we power off below.
        Ok(()) => unsafe { sys::outl(DEBUG_EXIT_PORT, u32::from(status)) },
        Err(error) => println!("linux-init: ioperm failed: {error}"),
    }
    if let Err(error) = sys::power_off() {
        println!("linux-init: power off failed: {error}");
    }
    // PID 1 must not exit (the kernel would panic); wait for the machine to stop.
    loop {
        std::thread::sleep(std::time::Duration::from_secs(1));
    }
}
