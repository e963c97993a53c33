//! Scenario: slice accounting and fairness. Two children spin until the same tick; one holds
//! two time slices, the other one. The ticks the kernel charged them must be about 2:1, and
//! each must have seen its slices start (slice-start upcalls).
#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(target_os = "none")]
libnet::entry!(app::main);

#[cfg(target_os = "none")]
mod app {
    use libnet::abi::upcall::{EnvQuery, EnvStatus};
    use libnet::{env, println, sys, upcall};

    const RUN_TICKS: u64 = 90;

    fn spin(end_tick: u64, extra_slice: bool) -> u8 {
        upcall::install(true);
        if extra_slice {
            sys::slice_acquire().expect("slice_acquire");
        }
        let mut rounds = 0u64;
        while sys::ticks() < end_tick {
            rounds = core::hint::black_box(rounds + 1);
        }
        if upcall::slice_starts() > 0 { 0 } else { 1 }
    }

    pub fn main() -> u8 {
        let argument = env::argument();
        if argument != 0 {
            return spin(argument >> 1, argument & 1 == 1);
        }
        let end = sys::ticks() + RUN_TICKS;
        let two = sys::spawn("sched", end << 1 | 1).expect("spawn");
        let one = sys::spawn("sched", end << 1).expect("spawn");
        let statuses = (sys::wait(two), sys::wait(one));
        let charged = |env| sys::env_info(env, EnvQuery::TicksCharged).unwrap_or(0);
        let (a, b) = (charged(two), charged(one));
        let fair = b >= 10 && 2 * a >= 3 * b && 10 * a <= 26 * b;
        println!(
            "fairness: two slices ran {a} ticks, one slice {b} ticks; slice ticks: {}",
            if fair { "ok" } else { "UNFAIR" }
        );
        let exited = statuses == (Ok(EnvStatus::Exited(0)), Ok(EnvStatus::Exited(0)));
        if fair && exited { 0 } else { 1 }
    }
}

#[cfg(not(target_os = "none"))]
fn main() {}
