//! Scenario: visible revocation. The parent asks two children for 3 of their 6 pages each;
//! the cooperative one gives them back from its revocation upcall, the stubborn one ignores
//! it and, after the deadline, the kernel repossesses them and records them in its
//! repossession vector, which it reads (and finds the pages gone). A third one installs no
//! policy of its own: libnet's default gives back the heap's free pages, the least recently
//! allocated first. A fourth one tries to dodge: it answers by allocating 3 fresh pages and
//! deleting those, keeping all it held; only pages held when the request was made count, so the
//! kernel still repossesses 3.
#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(target_os = "none")]
extern crate alloc;

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
    const HEAP: u64 = 3;
    const DODGER: u64 = 4;
    /// Bits of the argument that say which pager a child is; the rest is its end tick.
    const MODE_BITS: u32 = 3;
    const MODE_MASK: u64 = (1 << MODE_BITS) - 1;
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

    /// The dodge: answer a request with pages allocated for the purpose.
    fn give_back_fresh(pages: u64, _deadline: u64) {
        for _ in 0..pages {
            if let Ok(fresh) = sys::page_alloc(ANY_FRAME)
                && sys::cap_delete(fresh).is_ok()
            {
                GIVEN.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    fn pager(mode: u64, end_tick: u64) -> u8 {
        upcall::install(false);
        if mode == COOPERATIVE {
            upcall::on_revoke(give_back);
        }
        if mode == DODGER {
            upcall::on_revoke(give_back_fresh);
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
        } else if mode == DODGER {
            println!(
                "pager dodger: deleted {given} fresh pages, repossessed {taken}, repossessed pages unmapped: {gone}"
            );
            if given == 3 && taken == 3 && gone {
                0
            } else {
                1
            }
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

    /// Frees 6 heap pages (an old run of 4 and a young run of 2) and lets the default policy
    /// answer the request: the old run's first 3 pages go.
    fn heap_pager(end_tick: u64) -> u8 {
        use libnet::heap;
        upcall::install(false);
        let old = alloc::vec![1u8; 4 * 4096];
        let keep = alloc::vec![2u8; 4096];
        let young = alloc::vec![3u8; 2 * 4096];
        let old_address = old.as_ptr() as u64;
        drop(old);
        drop(young);
        let before = heap::stats();
        while sys::ticks() < end_tick {
            sys::yield_now();
        }
        let after = heap::stats();
        let mut vector = [RepossessedPage::default(); 8];
        let taken = sys::repossessed(&mut vector).expect("repossessed");
        let oldest_gone = (0..3)
            .all(|page| upcall::probe_read(old_address + page * 4096).is_none())
            && upcall::probe_read(old_address + 3 * 4096).is_some();
        let reuse = alloc::vec![4u8; 6 * 4096];
        let works = reuse.iter().all(|&b| b == 4) && keep.iter().all(|&b| b == 2);
        let given = after.pages_given_back - before.pages_given_back;
        println!(
            "pager heap: default policy gave back {given} of {} free heap pages, oldest first {oldest_gone}, repossessed {taken}, heap works after {works}",
            before.free_pages
        );
        if given == 3 && before.free_pages == 6 && oldest_gone && taken == 0 && works {
            0
        } else {
            1
        }
    }

    pub fn main() -> u8 {
        let argument = env::argument();
        if argument & MODE_MASK == HEAP {
            return heap_pager(argument >> MODE_BITS);
        }
        if argument != 0 {
            return pager(argument & MODE_MASK, argument >> MODE_BITS);
        }
        let start = sys::ticks();
        let end = start + 60;
        let cooperative = sys::spawn("reclaim", end << MODE_BITS | COOPERATIVE).expect("spawn");
        let stubborn = sys::spawn("reclaim", end << MODE_BITS | STUBBORN).expect("spawn");
        let heap = sys::spawn("reclaim", end << MODE_BITS | HEAP).expect("spawn");
        let dodger = sys::spawn("reclaim", end << MODE_BITS | DODGER).expect("spawn");
        while sys::ticks() < start + 5 {
            sys::yield_now();
        }
        for child in [cooperative, stubborn, heap, dodger] {
            sys::request_pages(child, 3, 10).expect("request_pages");
        }
        let statuses = (sys::wait(cooperative), sys::wait(stubborn), sys::wait(heap));
        let dodger_status = sys::wait(dodger);
        let repossessed = |env| sys::env_info(env, EnvQuery::Repossessed);
        let counts = (
            repossessed(cooperative),
            repossessed(stubborn),
            repossessed(heap),
            repossessed(dodger),
        );
        println!(
            "revocation: repossessed from cooperative {:?}, from stubborn {:?}, from heap default {:?}, from dodger {:?}",
            counts.0, counts.1, counts.2, counts.3
        );
        let exited = Ok(EnvStatus::Exited(0));
        let ok = statuses == (exited, exited, exited)
            && dodger_status == exited
            && counts == (Ok(0), Ok(3), Ok(0), Ok(3));
        if ok { 0 } else { 1 }
    }
}

#[cfg(not(target_os = "none"))]
fn main() {}
