//! Scenario: every kind of bad system-call argument is refused with an error code, and the
//! kernel never faults: unknown numbers, bad pointers (kernel, unmapped, wrapping, too long),
//! forged and wrong-type capabilities, unaligned and non-user addresses, bad rights bits,
//! bad kinds and queries, and calls that make no sense in the caller's state. A refused
//! `page_protect_range` changes no page, not even the ones before the bad one. A zero PCT
//! entry is no entry: `pct_wait` without one is refused, and a PCT into a child whose entry
//! is unset never enters it.
#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(target_os = "none")]
libnet::entry!(app::main);

#[cfg(target_os = "none")]
mod app {
    use libnet::abi::Error;
    use libnet::abi::cap::{CapHandle, Rights};
    use libnet::abi::layout::{APP_IMAGE_BASE, USER_BASE};
    use libnet::abi::syscall::{ANY_FRAME, PAGE_PROTECT_RANGE_MAX_PAGES};
    use libnet::{env, println, sys, upcall};

    const KERNEL: u64 = 0x10_0000;
    const FREE: u64 = 0x0000_7000_0000_0000;
    /// Two pages for `page_protect_range`: the first mapped read-write, the second left
    /// unmapped or mapped through a read-only capability.
    const RANGE: u64 = 0x0000_7000_0010_0000;
    const PAGE: u64 = 4096;
    const READ_WRITE: Rights = Rights::READ.union(Rights::WRITE);

    /// `page_protect_range`'s refusals; `page` is a page capability with every right.
    fn range_checks(page: CapHandle) -> (usize, usize) {
        upcall::install(false);
        sys::page_map(page, RANGE, READ_WRITE).expect("map");
        let writable = || upcall::probe_write(RANGE, 7);
        let mut checks: [(&str, Result<(), Error>, Error); 9] = [
            (
                "range zero pages",
                sys::page_protect_range(RANGE, 0, Rights::READ),
                Error::InvalidArgument,
            ),
            (
                "range too many pages",
                sys::page_protect_range(RANGE, PAGE_PROTECT_RANGE_MAX_PAGES + 1, Rights::READ),
                Error::InvalidArgument,
            ),
            (
                "range unaligned",
                sys::page_protect_range(RANGE + 8, 1, Rights::READ),
                Error::InvalidArgument,
            ),
            (
                "range write-only",
                sys::page_protect_range(RANGE, 1, Rights::WRITE),
                Error::InvalidArgument,
            ),
            (
                "range kernel",
                sys::page_protect_range(KERNEL, 1, Rights::READ),
                Error::BadAddress,
            ),
            (
                "range wrapping",
                sys::page_protect_range(!(PAGE - 1), 2, Rights::READ),
                Error::BadAddress,
            ),
            (
                "range image",
                sys::page_protect_range(APP_IMAGE_BASE, 1, Rights::READ),
                Error::NotMapped,
            ),
            (
                "range with a hole",
                sys::page_protect_range(RANGE, 2, Rights::empty()),
                Error::NotMapped,
            ),
            ("", Ok(()), Error::Denied),
        ];
        let hole_left_alone = writable();
        let read_only = sys::cap_grant(page, env::own(), Rights::READ).expect("grant");
        sys::page_map(read_only, RANGE + PAGE, Rights::READ).expect("map read-only");
        checks[8] = (
            "range beyond a capability's rights",
            sys::page_protect_range(RANGE, 2, READ_WRITE),
            Error::Denied,
        );
        let denied_left_alone = writable();
        let mut refused = 0;
        for (what, result, expected) in checks {
            if result == Err(expected) {
                refused += 1;
            } else {
                println!("badargs: {what}: expected Err({expected:?}), got {result:?}");
            }
        }
        let unchanged = hole_left_alone && denied_left_alone;
        if !unchanged {
            println!("badargs: a refused page_protect_range changed a page");
        }
        // The call itself works: both pages read-only, then back.
        let works = sys::page_protect_range(RANGE, 2, Rights::READ).is_ok()
            && !writable()
            && sys::page_protect(RANGE, READ_WRITE).is_ok()
            && writable();
        if !works {
            println!("badargs: page_protect_range did not take effect");
        }
        sys::page_unmap(RANGE + PAGE).expect("unmap");
        sys::page_unmap(RANGE).expect("unmap");
        sys::cap_delete(read_only).expect("delete");
        let passed = refused + usize::from(unchanged) + usize::from(works);
        (passed, checks.len() + 2)
    }

    /// Argument of the child whose PCT entry is zero.
    const NO_ENTRY_CHILD: u64 = 1;
    /// PCT calls the parent tries while that child lives.
    const CALLS_AT_NO_ENTRY: u32 = 200;
    /// The upcall kind number of PCT entries.
    const PCT: u64 = 5;

    /// The child: sets a zero PCT entry (accepted: it unsets the entry), then asks to wait
    /// for calls, which must be refused; exits 0 if it was.
    fn no_entry_child() -> u8 {
        let unset = sys::set_upcall_raw(PCT, 0, 0);
        let waited = sys::pct_wait();
        println!(
            "badargs child: set_upcall(pct, 0) {unset:?}; pct_wait without an entry {waited:?}"
        );
        if unset.is_ok() && waited == Error::InvalidArgument {
            0
        } else {
            1
        }
    }

    /// PCT into a child whose entry is zero, for as long as it lives: every call must be
    /// refused (it never waits for calls), none may enter it.
    fn pct_into_no_entry() -> bool {
        let child = sys::spawn("badargs", NO_ENTRY_CHILD).expect("spawn the no-entry child");
        let mut refused = 0;
        let mut entered = 0;
        for _ in 0..CALLS_AT_NO_ENTRY {
            match sys::pct_call(child, [0; 5]) {
                Err(Error::WouldBlock | Error::PeerGone) => refused += 1,
                _ => entered += 1,
            }
            sys::yield_now();
        }
        let status = sys::wait(child);
        println!(
            "badargs: pct_call into a child whose pct entry is zero: {refused} refused, {entered} entered; child {status:?}"
        );
        entered == 0 && status == Ok(libnet::abi::upcall::EnvStatus::Exited(0))
    }

    pub fn main() -> u8 {
        if env::argument() == NO_ENTRY_CHILD {
            return no_entry_child();
        }
        let no_entry_refused = pct_into_no_entry();
        let page = sys::page_alloc(ANY_FRAME).expect("page_alloc");
        let forged = CapHandle::new(page.index(), page.generation() ^ 0x55);
        let env_cap = env::own();
        let checks: &[(&str, Result<u64, Error>, Error)] = &[
            ("unknown call", sys::raw_call(0x7fff), Error::UnknownSyscall),
            (
                "console kernel pointer",
                sys::console_write_at(KERNEL, 16).map(|n| n as u64),
                Error::BadAddress,
            ),
            (
                "console unmapped",
                sys::console_write_at(USER_BASE, 16).map(|n| n as u64),
                Error::BadAddress,
            ),
            (
                "console wrapping",
                sys::console_write_at(u64::MAX - 4, 16).map(|n| n as u64),
                Error::BadAddress,
            ),
            (
                "spawn kernel pointer",
                sys::spawn_at(KERNEL, 5, 0).map(|c| c.raw()),
                Error::BadAddress,
            ),
            (
                "spawn long name",
                sys::spawn_at(APP_IMAGE_BASE, 4096, 0).map(|c| c.raw()),
                Error::InvalidArgument,
            ),
            (
                "spawn empty name",
                sys::spawn_at(APP_IMAGE_BASE, 0, 0).map(|c| c.raw()),
                Error::InvalidArgument,
            ),
            (
                "spawn unknown app",
                sys::spawn("nosuch", 0).map(|c| c.raw()),
                Error::NotFound,
            ),
            (
                "set_upcall kind",
                sys::set_upcall_raw(99, APP_IMAGE_BASE, 0).map(|()| 0),
                Error::InvalidArgument,
            ),
            (
                "set_upcall kernel entry",
                sys::set_upcall_raw(0, KERNEL, 0).map(|()| 0),
                Error::InvalidArgument,
            ),
            (
                "set_upcall non-canonical",
                sys::set_upcall_raw(0, 0x8000_0000_0000_0000, 0).map(|()| 0),
                Error::InvalidArgument,
            ),
            (
                "set_upcall stray stack",
                sys::set_upcall_raw(0, APP_IMAGE_BASE, FREE).map(|()| 0),
                Error::InvalidArgument,
            ),
            (
                "set_upcall unaligned pct stack",
                sys::set_upcall_raw(5, APP_IMAGE_BASE, FREE + 8).map(|()| 0),
                Error::InvalidArgument,
            ),
            (
                "page_map forged",
                sys::page_map(forged, FREE, Rights::READ).map(|()| 0),
                Error::InvalidCapability,
            ),
            (
                "page_map env cap",
                sys::page_map(env_cap, FREE, Rights::READ).map(|()| 0),
                Error::InvalidCapability,
            ),
            (
                "page_map unaligned",
                sys::page_map(page, FREE + 8, Rights::READ).map(|()| 0),
                Error::InvalidArgument,
            ),
            (
                "page_map kernel",
                sys::page_map(page, KERNEL, Rights::READ).map(|()| 0),
                Error::BadAddress,
            ),
            (
                "page_map kernel half",
                sys::page_map(page, 0xffff_8000_0000_0000, Rights::READ).map(|()| 0),
                Error::BadAddress,
            ),
            (
                "page_map over image",
                sys::page_map(page, APP_IMAGE_BASE, Rights::READ).map(|()| 0),
                Error::AddressInUse,
            ),
            (
                "page_map bad bits",
                sys::page_map_raw(page.raw(), FREE, 1 << 40).map(|()| 0),
                Error::InvalidArgument,
            ),
            (
                "page_map write-only",
                sys::page_map(page, FREE, Rights::WRITE).map(|()| 0),
                Error::InvalidArgument,
            ),
            (
                "page_map grant bit",
                sys::page_map(page, FREE, Rights::READ | Rights::GRANT).map(|()| 0),
                Error::InvalidArgument,
            ),
            (
                "page_unmap unmapped",
                sys::page_unmap(FREE).map(|()| 0),
                Error::NotMapped,
            ),
            (
                "page_unmap image",
                sys::page_unmap(APP_IMAGE_BASE).map(|()| 0),
                Error::NotMapped,
            ),
            (
                "page_protect unmapped",
                sys::page_protect(FREE, Rights::READ).map(|()| 0),
                Error::NotMapped,
            ),
            (
                "page_alloc kernel frame",
                sys::page_alloc(KERNEL).map(|c| c.raw()),
                Error::AddressInUse,
            ),
            (
                "page_alloc unaligned frame",
                sys::page_alloc(0x1234_5678).map(|c| c.raw()),
                Error::AddressInUse,
            ),
            (
                "page_alloc beyond memory",
                sys::page_alloc(1 << 45).map(|c| c.raw()),
                Error::AddressInUse,
            ),
            (
                "cap_grant bad bits",
                sys::cap_grant(page, env_cap, Rights::from_bits_retain(1 << 50)).map(|c| c.raw()),
                Error::InvalidArgument,
            ),
            (
                "cap_grant to page",
                sys::cap_grant(page, page, Rights::READ).map(|c| c.raw()),
                Error::InvalidCapability,
            ),
            (
                "cap_grant forged",
                sys::cap_grant(forged, env_cap, Rights::READ).map(|c| c.raw()),
                Error::InvalidCapability,
            ),
            (
                "cap_revoke forged",
                sys::cap_revoke(forged),
                Error::InvalidCapability,
            ),
            (
                "cap_delete none",
                sys::cap_delete(CapHandle::NONE),
                Error::InvalidCapability,
            ),
            (
                "cap_rights forged",
                sys::cap_rights(forged).map(|r| r.bits()),
                Error::InvalidCapability,
            ),
            (
                "env_info page cap",
                sys::env_info(page, libnet::abi::upcall::EnvQuery::Status),
                Error::InvalidCapability,
            ),
            (
                "env_info bad query",
                sys::syscall5(libnet::abi::Syscall::EnvInfo, [env_cap.raw(), 99, 0, 0, 0]),
                Error::InvalidArgument,
            ),
            (
                "env_destroy page cap",
                sys::env_destroy(page).map(|()| 0),
                Error::InvalidCapability,
            ),
            (
                "yield_to page cap",
                sys::yield_to(page).map(|()| 0),
                Error::InvalidCapability,
            ),
            (
                "yield_to forged",
                sys::yield_to(forged).map(|()| 0),
                Error::InvalidCapability,
            ),
            (
                "pct_call page cap",
                sys::pct_call(page, [0; 5]).map(|r| r[0]),
                Error::InvalidCapability,
            ),
            (
                "pct_call self",
                sys::pct_call(env_cap, [0; 5]).map(|r| r[0]),
                Error::WouldBlock,
            ),
            (
                "pct_return outside a call",
                Err(sys::pct_return([0; 5])),
                Error::InvalidArgument,
            ),
            (
                "pct_wait without entry",
                Err(sys::pct_wait()),
                Error::InvalidArgument,
            ),
            (
                "request_pages zero",
                sys::request_pages(env_cap, 0, 5).map(|()| 0),
                Error::InvalidArgument,
            ),
            (
                "request_pages far deadline",
                sys::request_pages(env_cap, 1, u64::MAX).map(|()| 0),
                Error::InvalidArgument,
            ),
            (
                "request_pages page cap",
                sys::request_pages(page, 1, 5).map(|()| 0),
                Error::InvalidCapability,
            ),
        ];
        let mut refused = 0;
        for (what, result, expected) in checks {
            if *result == Err(*expected) {
                refused += 1;
            } else {
                println!("badargs: {what}: expected Err({expected:?}), got {result:?}");
            }
        }
        let (range_passed, range_checks) = range_checks(page);
        refused += range_passed;
        let total = checks.len() + range_checks;
        // The page capability still works after all that.
        let usable =
            sys::page_map(page, FREE, Rights::READ).is_ok() && sys::page_unmap(FREE).is_ok();
        println!(
            "badargs: {refused}/{total} bad calls refused with the right error; kernel intact: {usable}",
        );
        if refused == total && usable && no_entry_refused {
            0
        } else {
            1
        }
    }
}

#[cfg(not(target_os = "none"))]
fn main() {}
