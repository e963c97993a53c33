//! Test scenario: computes in ring 3 for a while, so timer interrupts arrive while user code
//! runs (the path through TSS.RSP0 and `swapgs` that a short app never takes), then checks
//! its registers and memory survived them.
//!
//! With the boot argument `spin=N` it computes until the machine stops instead, as N
//! environments (itself and N - 1 children it spawns with small quotas): the busy
//! environments of `cargo xtask bench net`, which measures round trips while 1 to 10 of them
//! compete for the CPU. (N boot apps would each get 1/N of the machine's quotas, too little
//! for the servers measured beside them.)
#![cfg_attr(target_os = "none", no_std, no_main)]
#![forbid(unsafe_code)]

#[cfg(target_os = "none")]
libnet::entry!(main);

/// Enough work for several 10 ms ticks under TCG on any plausible host.
#[cfg(target_os = "none")]
const ROUNDS: u64 = 2_000_000;

/// The spawn argument of a spinning child.
#[cfg(target_os = "none")]
const SPIN_CHILD: u64 = 0x5350_494e;

/// Most environments `spin=N` makes.
#[cfg(target_os = "none")]
const SPIN_MAX: u32 = 16;

/// `spin=N` among the boot arguments; a spawned child spins as one of them.
#[cfg(target_os = "none")]
fn spin_count() -> Option<u32> {
    if libnet::env::argument() == SPIN_CHILD {
        return Some(1);
    }
    let mut buffer = [0u8; 32];
    let length = libnet::net::boot_argument(0, &mut buffer).ok()?;
    let count = core::str::from_utf8(&buffer[..length])
        .ok()?
        .strip_prefix("spin=")?
        .parse::<u32>()
        .ok()?;
    Some(count.clamp(1, SPIN_MAX))
}

/// Spawns `count - 1` spinning children (a boot app only), then spins until the machine stops.
#[cfg(target_os = "none")]
fn spin(count: u32, run: &dyn Fn() -> u64) -> ! {
    use libnet::abi::quota::{Limits, Resource};
    if libnet::env::argument() != SPIN_CHILD {
        let mut each = Limits::default();
        each.set(Resource::Capabilities, 8);
        each.set(Resource::Frames, 32);
        each.set(Resource::PageTables, 16);
        each.set(Resource::Slices, 1);
        let mut children = 0;
        for _ in 1..count {
            match libnet::sys::spawn_with("busy", SPIN_CHILD, &each) {
                Ok(_) => children += 1,
                Err(error) => libnet::println!("busy: spawning a spinning child: {error:?}"),
            }
        }
        libnet::println!(
            "busy: spinning until the machine stops: {} environments",
            children + 1
        );
    }
    loop {
        core::hint::black_box(run());
    }
}

#[cfg(target_os = "none")]
fn main() -> u8 {
    // An xorshift sequence computed twice must agree: an interrupt that corrupted a register
    // or the stack would make the runs differ.
    let run = || {
        let mut state = core::hint::black_box(0x9e37_79b9_7f4a_7c15u64);
        for _ in 0..ROUNDS {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
        }
        state
    };
    if let Some(count) = spin_count() {
        spin(count, &run);
    }
    let first = run();
    let second = run();
    libnet::println!(
        "busy: {ROUNDS} rounds twice, results agree: {}",
        first == second
    );
    if first == second { 0 } else { 1 }
}

#[cfg(not(target_os = "none"))]
fn main() {}
