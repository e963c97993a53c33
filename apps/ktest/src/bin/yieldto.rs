//! Scenario: yield to a named environment. Of two children, one spins on plain `yield` and
//! the other donates every slice it gets back to the parent. When the parent yields to the
//! second by name, the second must be the next environment to run (its dispatch count moves
//! by one, the first one's not at all); a plain `yield` must run the first (round robin) in
//! about every other round (when the parent runs on the second's donated slice, the next slice
//! is its own), which shows the check can fail.
#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(target_os = "none")]
libnet::entry!(app::main);

#[cfg(target_os = "none")]
mod app {
    use libnet::abi::cap::CapHandle;
    use libnet::abi::upcall::EnvQuery;
    use libnet::{env, println, sys};

    const SPINNER: u64 = 1;
    const RETURNER: u64 = 2;
    const ROUNDS: u64 = 200;

    fn dispatches(env: CapHandle) -> u64 {
        sys::env_info(env, EnvQuery::Dispatches).expect("env_info")
    }

    pub fn main() -> u8 {
        match env::argument() {
            SPINNER => loop {
                sys::yield_now();
            },
            RETURNER => loop {
                if sys::yield_to(env::parent()).is_err() {
                    sys::yield_now();
                }
            },
            _ => {}
        }
        let spinner = sys::spawn("yieldto", SPINNER).expect("spawn");
        let named = sys::spawn("yieldto", RETURNER).expect("spawn");
        for _ in 0..4 {
            sys::yield_now();
        }
        let (mut next, mut wrong, mut skipped) = (0, 0, 0);
        for _ in 0..ROUNDS {
            let tick = sys::ticks();
            let before = (dispatches(spinner), dispatches(named));
            sys::yield_to(named).expect("yield_to");
            let after = (dispatches(spinner), dispatches(named));
            if sys::ticks() != tick {
                // A timer tick in between may end the slice: round robin, not the test.
                skipped += 1;
            } else if after == (before.0, before.1 + 1) {
                next += 1;
            } else {
                wrong += 1;
            }
        }
        let mut spinner_ran = 0;
        for _ in 0..ROUNDS {
            let before = dispatches(spinner);
            sys::yield_now();
            if dispatches(spinner) > before {
                spinner_ran += 1;
            }
        }
        sys::env_destroy(spinner).expect("env_destroy");
        sys::env_destroy(named).expect("env_destroy");
        println!(
            "yield to named: it ran next {next} times, another ran {wrong} times, {skipped} rounds crossed a tick"
        );
        println!("plain yield: round robin ran the other child in {spinner_ran}/{ROUNDS} rounds");
        let ok = wrong == 0 && next >= ROUNDS / 2 && spinner_ran >= ROUNDS / 4;
        if ok { 0 } else { 1 }
    }
}

#[cfg(not(target_os = "none"))]
fn main() {}
