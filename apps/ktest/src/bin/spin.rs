//! Scenario companion: computes for a fixed stretch of timer ticks, to show that others
//! blocked in the kernel (`net_wait`) leave it the processor. Prints the rounds it computed
//! and the ticks charged to its slices against the ticks that passed.
#![cfg_attr(target_os = "none", no_std, no_main)]
#![forbid(unsafe_code)]

#[cfg(target_os = "none")]
libnet::entry!(main);

/// How long it computes, in timer ticks (100 Hz): longer than a net scenario's traffic.
#[cfg(target_os = "none")]
const SPIN_TICKS: u64 = 300;

/// Rounds between two looks at the clock.
#[cfg(target_os = "none")]
const ROUNDS_PER_CHECK: u64 = 10_000;

#[cfg(target_os = "none")]
fn main() -> u8 {
    use libnet::abi::upcall::EnvQuery;
    use libnet::{env, println, sys};
    let start = sys::ticks();
    let mut state = core::hint::black_box(0x9e37_79b9_7f4a_7c15u64);
    let mut rounds = 0u64;
    while sys::ticks() - start < SPIN_TICKS {
        for _ in 0..ROUNDS_PER_CHECK {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
        }
        rounds += ROUNDS_PER_CHECK;
    }
    core::hint::black_box(state);
    let charged = sys::env_info(env::own(), EnvQuery::TicksCharged).unwrap_or(0);
    println!(
        "spin: {rounds} rounds; ticks charged {charged} of {}",
        sys::ticks() - start
    );
    0
}

#[cfg(not(target_os = "none"))]
fn main() {}
