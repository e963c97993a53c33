//! Scenario: fault containment. A child that crashes is ended, one that overstays its
//! end-of-slice upcall is penalized and then aborted (and, still in its handler, is never
//! sent a second end-of-slice frame: it would exit if it were), and a third that just
//! computes is not starved by either and exits normally; so does the parent.
#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(target_os = "none")]
libnet::entry!(app::main);

#[cfg(target_os = "none")]
mod app {
    use libnet::abi::upcall::{EnvQuery, EnvStatus, UpcallKind};
    use libnet::{env, println, sys};

    const HOG: u64 = 1;
    const WORKER: u64 = 2;
    /// Exit status of the hog if its handler is entered twice (frames piling up).
    const PILED: u8 = 9;

    static ENTRIES: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0);

    /// An end-of-slice handler that counts its entries, then never yields.
    #[unsafe(naked)]
    extern "C" fn hog_slice_end() {
        core::arch::naked_asm!("and rsp, -16", "call {count}", "2:", "jmp 2b", count = sym count_entry)
    }

    extern "C" fn count_entry() {
        if ENTRIES.fetch_add(1, core::sync::atomic::Ordering::Relaxed) > 0 {
            sys::exit(PILED);
        }
    }

    pub fn main() -> u8 {
        match env::argument() {
            HOG => {
                sys::set_upcall(UpcallKind::SliceEnd, hog_slice_end as *const () as u64, 0)
                    .expect("set_upcall");
                loop {
                    core::hint::spin_loop();
                }
            }
            WORKER => {
                let end = sys::ticks() + 30;
                while sys::ticks() < end {}
                return 0;
            }
            _ => {}
        }
        let crasher = sys::spawn("fault", 0).expect("spawn");
        let hog = sys::spawn("contain", HOG).expect("spawn");
        let worker = sys::spawn("contain", WORKER).expect("spawn");
        let crashed = sys::wait(crasher);
        let hogged = sys::wait(hog);
        let worked = sys::wait(worker);
        let overstays = sys::env_info(hog, EnvQuery::Overstays);
        println!(
            "containment: crasher {crashed:?}, hog {hogged:?} after {overstays:?} overstays, worker {worked:?}"
        );
        let ok = crashed == Ok(EnvStatus::Faulted(14))
            && hogged == Ok(EnvStatus::Aborted)
            && overstays == Ok(3)
            && worked == Ok(EnvStatus::Exited(0));
        if ok { 0 } else { 1 }
    }
}

#[cfg(not(target_os = "none"))]
fn main() {}
