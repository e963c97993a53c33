//! Test scenario: computes in ring 3 for a while, so timer interrupts arrive while user code
//! runs (the path through TSS.RSP0 and `swapgs` that a short app never takes), then checks
//! its registers and memory survived them.
#![cfg_attr(target_os = "none", no_std, no_main)]
#![forbid(unsafe_code)]

#[cfg(target_os = "none")]
libnet::entry!(main);

/// Enough work for several 10 ms ticks under TCG on any plausible host.
#[cfg(target_os = "none")]
const ROUNDS: u64 = 2_000_000;

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
