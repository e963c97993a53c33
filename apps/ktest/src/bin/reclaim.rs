//! Scenario: visible revocation. The parent asks two children for 3 of their 6 pages each;
//! the cooperative one gives them back from its revocation upcall, the stubborn one ignores
//! it and, after the deadline, the kernel repossesses them and records them in its
//! repossession vector, which it reads (and finds the pages gone).
#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(target_os = "none")]
libnet::entry!(app::main);

#[cfg(target_os = "none")]
mod app {
    use core::sync::atomic::{AtomicU64, Ordering};
    use libnet::abi::cap::{CapHandle, Rights};
    use libnet::abi::syscall::ANY_FRAME;
    use libnet::abi::upcall::{EnvQuery, EnvStatus, RepossessedPage};
    use libnet::{env, println, sys, upcall};

    const COOPERATIVE: u64 = 1;
    const STUBBORN: u64 = 2;
    const PAGES: usize = 6;
    const BASE: u64 = 0x0000_5000_0000_0000;

    static CAPS: [AtomicU64; PAGES] = [const { AtomicU64::new(0) }; PAGES];
    static GIVEN: AtomicU64 = AtomicU64::new(0);

    /// Policy: give back the most recently mapped pages first.
    fn give_back(pages: u64, _deadline: u64) {
        for slot in CAPS.iter().rev().take(pages as usize) {
            let cap = CapHandle(slot.swap(0, Ordering::Relaxed));
            if sys::cap_delete(cap).is_ok() {
                GIVEN.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    fn pager(mode: u64, end_tick: u64) -> u8 {
        upcall::install(false);
        if mode == COOPERATIVE {
            upcall::on_revoke(give_back);
        }
        for (index, slot) in CAPS.iter().enumerate() {
            let cap = sys::page_alloc(ANY_FRAME).expect("page_alloc");
            let address = BASE + index as u64 * 4096;
            sys::page_map(cap, address, Rights::READ | Rights::WRITE).expect("page_map");
            upcall::probe_write(address, index as u64);
            slot.store(cap.raw(), Ordering::Relaxed);
        }
        while sys::ticks() < end_tick {
            sys::yield_now();
        }
        let mut vector = [RepossessedPage::default(); 8];
        let taken = sys::repossessed(&mut vector).expect("repossessed");
        let gone = vector[..taken]
            .iter()
            .all(|page| upcall::probe_read(page.address).is_none());
        let given = GIVEN.load(Ordering::Relaxed);
        if mode == COOPERATIVE {
            println!("pager cooperative: gave back {given} pages, repossessed {taken}");
            if given == 3 && taken == 0 { 0 } else { 1 }
        } else {
            println!(
                "pager stubborn: gave back {given} pages, repossessed {taken}, repossessed pages unmapped: {gone}"
            );
            if given == 0 && taken == 3 && gone {
                0
            } else {
                1
            }
        }
    }

    pub fn main() -> u8 {
        let argument = env::argument();
        if argument != 0 {
            return pager(argument & 3, argument >> 2);
        }
        let start = sys::ticks();
        let end = start + 60;
        let cooperative = sys::spawn("reclaim", end << 2 | COOPERATIVE).expect("spawn");
        let stubborn = sys::spawn("reclaim", end << 2 | STUBBORN).expect("spawn");
        while sys::ticks() < start + 5 {
            sys::yield_now();
        }
        for child in [cooperative, stubborn] {
            sys::request_pages(child, 3, 10).expect("request_pages");
        }
        let statuses = (sys::wait(cooperative), sys::wait(stubborn));
        let repossessed = |env| sys::env_info(env, EnvQuery::Repossessed);
        let counts = (repossessed(cooperative), repossessed(stubborn));
        println!(
            "revocation: repossessed from cooperative {:?}, from stubborn {:?}",
            counts.0, counts.1
        );
        let ok = statuses == (Ok(EnvStatus::Exited(0)), Ok(EnvStatus::Exited(0)))
            && counts == (Ok(0), Ok(3));
        if ok { 0 } else { 1 }
    }
}

#[cfg(not(target_os = "none"))]
fn main() {}
