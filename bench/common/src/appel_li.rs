//! The Appel-Li virtual-memory benchmarks (see [`crate::ops`] for the definitions), written once
//! over a kernel's page-protection calls ([`Protection`]) and its fault handler, which calls
//! [`handle_fault`] and resumes where that says.
//!
//! "Protect" makes a page inaccessible and "unprotect" makes it readable and writable again;
//! every access is a load through [`crate::loops`]. Each run returns the TSC ticks of its timed
//! parts only (the set-up between passes, such as unprotecting the region again after `prot1`,
//! is not counted).
use crate::Lcg;
use crate::loops::{self, rdtsc};
use crate::ops::{APPEL_LI_PAGES, Op, SEED};
use core::sync::atomic::{AtomicU8, AtomicUsize, Ordering};

/// A kernel's page protection over a region of [`APPEL_LI_PAGES`] pages it has mapped
/// readable and writable (and touched, so no fault is a first-touch fault).
pub trait Protection {
    /// Address of page `page` of the region.
    fn page_address(&self, page: usize) -> u64;
    /// Makes pages `first..first + count` inaccessible, in as few calls as the kernel offers
    /// (Linux: one `mprotect`; exo: one `page_protect` for one page, one
    /// `page_protect_range` for more).
    fn protect(&self, first: usize, count: usize);
    /// Makes pages `first..first + count` readable and writable, likewise.
    fn unprotect(&self, first: usize, count: usize);
    /// The region's page index of `address`, if it lies in the region.
    fn page_of(&self, address: u64) -> Option<usize> {
        let base = self.page_address(0);
        let offset = address.checked_sub(base)?;
        let page = (offset / 4096) as usize;
        (page < APPEL_LI_PAGES).then_some(page)
    }
}

/// What the fault handler does; set by the run before it faults.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
enum Policy {
    /// Not expecting a fault: the handler reports it unhandled.
    None = 0,
    /// `trap`: step over the load.
    Skip = 1,
    /// `appel1`: protect the page unprotected last, unprotect the faulting page.
    Swap = 2,
    /// `appel2`: unprotect the faulting page.
    Unprotect = 3,
}

static POLICY: AtomicU8 = AtomicU8::new(Policy::None as u8);
/// `appel1`: the one page of the region that is accessible.
static LAST_UNPROTECTED: AtomicUsize = AtomicUsize::new(0);

/// How the handler returns from a fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resume {
    /// Retry the faulting instruction (its page is accessible now).
    Retry,
    /// Continue at this address.
    At(u64),
    /// Not a benchmark fault: the kernel's default (end the program).
    Unhandled,
}

/// A kernel's page-fault handler calls this with the faulting address and instruction.
pub fn handle_fault<P: Protection>(pages: &P, address: u64, instruction: u64) -> Resume {
    let policy = POLICY.load(Ordering::Relaxed);
    if policy == Policy::Skip as u8 && instruction == loops::load_site() {
        return Resume::At(loops::load_resume());
    }
    let Some(page) = pages.page_of(address) else {
        return Resume::Unhandled;
    };
    if policy == Policy::Swap as u8 {
        pages.protect(LAST_UNPROTECTED.load(Ordering::Relaxed), 1);
        pages.unprotect(page, 1);
        LAST_UNPROTECTED.store(page, Ordering::Relaxed);
        Resume::Retry
    } else if policy == Policy::Unprotect as u8 {
        pages.unprotect(page, 1);
        Resume::Retry
    } else {
        Resume::Unhandled
    }
}

fn set_policy(policy: Policy) {
    POLICY.store(policy as u8, Ordering::Relaxed);
}

/// Runs one timed repeat of an Appel-Li `op` (the region starts and ends accessible) and
/// returns its TSC ticks. Panics for ops that are not Appel-Li's.
pub fn run<P: Protection>(pages: &P, op: Op, iterations: u64) -> u64 {
    let region = APPEL_LI_PAGES;
    match op {
        Op::AppelLiTrap => {
            pages.protect(0, 1);
            set_policy(Policy::Skip);
            let start = rdtsc();
            // SAFETY: the Skip policy makes the handler resume after each faulting load.
            #[allow(unsafe_code)]
            unsafe {
                loops::load_fault_loop(pages.page_address(0), iterations);
            }
            let cycles = rdtsc() - start;
            set_policy(Policy::None);
            pages.unprotect(0, 1);
            cycles
        }
        Op::AppelLiProt1 => {
            let mut cycles = 0;
            for _ in 0..iterations / region as u64 {
                let start = rdtsc();
                for page in 0..region {
                    pages.protect(page, 1);
                }
                cycles += rdtsc() - start;
                pages.unprotect(0, region);
            }
            cycles
        }
        Op::AppelLiProt100 | Op::AppelLiUnprot100 => {
            let mut cycles = 0;
            for _ in 0..iterations {
                if op == Op::AppelLiProt100 {
                    let start = rdtsc();
                    pages.protect(0, region);
                    cycles += rdtsc() - start;
                    pages.unprotect(0, region);
                } else {
                    pages.protect(0, region);
                    let start = rdtsc();
                    pages.unprotect(0, region);
                    cycles += rdtsc() - start;
                }
            }
            cycles
        }
        Op::AppelLiAppel1 => {
            // Everything protected but page 0.
            pages.protect(1, region - 1);
            LAST_UNPROTECTED.store(0, Ordering::Relaxed);
            set_policy(Policy::Swap);
            let mut random = Lcg::new(SEED);
            let start = rdtsc();
            for _ in 0..iterations {
                // A random protected page: any but the one accessible now.
                let mut page = random.below(region as u64 - 1) as usize;
                if page >= LAST_UNPROTECTED.load(Ordering::Relaxed) {
                    page += 1;
                }
                touch(pages, page);
            }
            let cycles = rdtsc() - start;
            set_policy(Policy::None);
            pages.unprotect(0, region);
            cycles
        }
        Op::AppelLiAppel2 => {
            let mut order = [0u8; APPEL_LI_PAGES];
            for (index, page) in order.iter_mut().enumerate() {
                *page = index as u8;
            }
            let mut random = Lcg::new(SEED);
            set_policy(Policy::Unprotect);
            let mut cycles = 0;
            for _ in 0..iterations / region as u64 {
                random.shuffle(&mut order);
                let start = rdtsc();
                pages.protect(0, region);
                for page in order {
                    touch(pages, usize::from(page));
                }
                cycles += rdtsc() - start;
            }
            set_policy(Policy::None);
            cycles
        }
        _ => panic!("{} is not an Appel-Li benchmark", op.name()),
    }
}

fn touch<P: Protection>(pages: &P, page: usize) {
    // SAFETY: the page is in the mapped region; the installed policy makes it accessible on
    // the fault and the load is retried.
    #[allow(unsafe_code)]
    unsafe {
        loops::touch(pages.page_address(page));
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use core::cell::RefCell;
    use std::vec::Vec;

    /// A region that records calls and never faults (the host test cannot protect pages).
    struct Recorder {
        calls: RefCell<Vec<(bool, usize, usize)>>,
    }

    impl Protection for Recorder {
        fn page_address(&self, page: usize) -> u64 {
            0x10_0000 + page as u64 * 4096
        }
        fn protect(&self, first: usize, count: usize) {
            self.calls.borrow_mut().push((true, first, count));
        }
        fn unprotect(&self, first: usize, count: usize) {
            self.calls.borrow_mut().push((false, first, count));
        }
    }

    #[test]
    fn handler_policies() {
        let pages = Recorder {
            calls: RefCell::new(Vec::new()),
        };
        set_policy(Policy::None);
        assert_eq!(handle_fault(&pages, 0x10_0000, 0), Resume::Unhandled);
        set_policy(Policy::Skip);
        assert_eq!(
            handle_fault(&pages, 0x10_0000, loops::load_site()),
            Resume::At(loops::load_resume())
        );
        set_policy(Policy::Swap);
        LAST_UNPROTECTED.store(4, Ordering::Relaxed);
        assert_eq!(
            handle_fault(&pages, 0x10_0000 + 7 * 4096 + 8, 0),
            Resume::Retry
        );
        assert_eq!(LAST_UNPROTECTED.load(Ordering::Relaxed), 7);
        assert_eq!(
            handle_fault(&pages, 0x10_0000 + 100 * 4096, 0),
            Resume::Unhandled
        );
        set_policy(Policy::Unprotect);
        assert_eq!(
            handle_fault(&pages, 0x10_0000 + 99 * 4096, 0),
            Resume::Retry
        );
        set_policy(Policy::None);
        assert_eq!(
            *pages.calls.borrow(),
            [(true, 4, 1), (false, 7, 1), (false, 99, 1)]
        );
    }

    #[test]
    fn prot_runs_leave_the_region_accessible() {
        for op in [Op::AppelLiProt1, Op::AppelLiProt100, Op::AppelLiUnprot100] {
            let pages = Recorder {
                calls: RefCell::new(Vec::new()),
            };
            run(&pages, op, 200);
            let calls = pages.calls.borrow();
            assert_eq!(calls.last(), Some(&(false, 0, APPEL_LI_PAGES)), "{op:?}");
            let protected: usize = calls.iter().filter(|c| c.0).map(|c| c.2).sum();
            assert_eq!(protected, if op == Op::AppelLiProt1 { 200 } else { 20_000 });
        }
    }
}
