//! Scenario: an unprivileged app attacks the kernel through capabilities and mappings it is
//! allowed to hold, and the kernel survives every attack:
//! - it maps a page at the top of the user half, where a `syscall` in the last two bytes would
//!   return to a non-canonical RCX (the `sysretq` class of CVE-2012-0217): refused, since the
//!   last user page is never mappable;
//! - it grants a page capability to itself, each grant derived from the previous one, until the
//!   capability space is full, then deletes the root: a chain as deep as the kernel has slots,
//!   which a recursive delete would follow off the end of its stack;
//! - it maps one page at successive addresses until refused: each mapping costs kernel heap,
//!   and the release kernel panicked after about 65,000 (`memory allocation failed`); now its
//!   mapping quota says `Exhausted` first;
//! - it runs `sgdt`, which UMIP makes fault in ring 3 (the kernel's descriptor-table address
//!   stays the kernel's);
//! - it asks `net_transmit` to gather a piece of 2^64 - 1 bytes after a first one, so a
//!   length sum that does not check overflow wraps (and panics a debug kernel).
#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(target_os = "none")]
libnet::entry!(app::main);

#[cfg(target_os = "none")]
mod app {
    use libnet::abi::cap::{CapHandle, Rights};
    use libnet::abi::layout::{PAGE_SIZE_BYTES, USER_END};
    use libnet::abi::quota::{QuotaField, Resource};
    use libnet::abi::syscall::ANY_FRAME;
    use libnet::abi::{Error, Syscall};
    use libnet::{env, println, sys, upcall};

    /// The page whose last bytes a `syscall` would return past the canonical boundary from.
    const TOP_PAGE: u64 = 0x0000_8000_0000_0000 - PAGE_SIZE_BYTES;
    /// Where one page is mapped over and over.
    const MANY: u64 = 0x0000_6000_0000_0000;
    /// Somewhere ordinary to check the kernel still maps pages afterwards.
    const FREE: u64 = 0x0000_7000_0000_0000;

    static UMIP_FAULTED: core::sync::atomic::AtomicBool =
        core::sync::atomic::AtomicBool::new(false);

    /// `sgdt [rdi]` (3 bytes), then `ret`.
    #[unsafe(naked)]
    extern "C" fn sgdt_stub() {
        core::arch::naked_asm!("sgdt [rdi]", "ret")
    }

    /// Resumes after `sgdt_stub`'s first instruction if it faulted (#GP, vector 13).
    fn on_exception(frame: &mut upcall::Frame) -> bool {
        if frame.kind == 13 && frame.rip == sgdt_stub as *const () as u64 {
            UMIP_FAULTED.store(true, core::sync::atomic::Ordering::Relaxed);
            frame.rip += 3;
            return true;
        }
        false
    }

    /// Whether `sgdt` faults here.
    fn sgdt_faults() -> bool {
        upcall::install(false);
        upcall::on_exception(on_exception);
        let mut table = [0u8; 10];
        #[allow(unsafe_code)]
        // SAFETY: `sgdt` writes 10 bytes at `table` (when it does not fault) and the stub
        // returns normally either way.
        unsafe {
            core::arch::asm!("call {stub}", stub = sym sgdt_stub, in("rdi") table.as_mut_ptr(), options(nostack));
        }
        UMIP_FAULTED.load(core::sync::atomic::Ordering::Relaxed)
    }

    pub fn main() -> u8 {
        let umip = sgdt_faults();
        println!("hostile: sgdt in ring 3 faults: {umip}");
        let page = sys::page_alloc(ANY_FRAME).expect("page_alloc");
        let top = sys::page_map(page, TOP_PAGE, Rights::READ | Rights::EXECUTE);
        let top_refused = top == Err(Error::BadAddress) && USER_END <= TOP_PAGE;
        println!("hostile: top user page map {top:?}, refused: {top_refused}");

        let rights = Rights::READ | Rights::GRANT;
        let root = sys::cap_grant(page, env::own(), rights).expect("first grant");
        let mut tip = root;
        let mut depth = 1u64;
        let stopped = loop {
            match sys::cap_grant(tip, env::own(), rights) {
                Ok(next) => {
                    tip = next;
                    depth += 1;
                }
                Err(error) => break error,
            }
        };
        println!("hostile: self-grant chain {depth} deep, then {stopped:?}");
        let deleted = sys::cap_delete(root);
        let whole_chain = deleted == Ok(depth);
        println!("hostile: deleting its root removed {deleted:?}, whole chain: {whole_chain}");

        let header = [0u8; 14];
        let gather = [
            [header.as_ptr() as u64, header.len() as u64],
            [header.as_ptr() as u64, u64::MAX],
        ];
        let wrapped = sys::syscall5(Syscall::NetTransmit, [gather.as_ptr() as u64, 2, 0, 0, 0]);
        let wrap_refused = wrapped == Err(Error::InvalidArgument);
        println!("hostile: transmit of a wrapping length {wrapped:?}, refused: {wrap_refused}");

        let mut mapped = 0u64;
        let stop = loop {
            match sys::page_map(page, MANY + mapped * PAGE_SIZE_BYTES, Rights::READ) {
                Ok(()) => mapped += 1,
                Err(error) => break error,
            }
        };
        let limit = sys::env_quota(CapHandle::NONE, Resource::PageBindings, QuotaField::Limit);
        let bounded = stop == Error::Exhausted && limit == Ok(mapped);
        // Newest first: the kernel's region table then shrinks from its end.
        for index in (0..mapped).rev() {
            sys::page_unmap(MANY + index * PAGE_SIZE_BYTES).expect("unmap");
        }
        println!(
            "hostile: one page mapped {mapped} times, then {stop:?}; at the mapping quota: {bounded}"
        );

        // The slots are free again and the kernel still works.
        let again = sys::cap_grant(page, env::own(), rights).is_ok()
            && sys::page_map(page, FREE, Rights::READ).is_ok()
            && sys::page_unmap(FREE).is_ok();
        let deep = depth > 8000 && stopped == Error::Exhausted;
        println!("hostile: kernel intact after the attacks: {again}");
        u8::from(!(umip && top_refused && deep && whole_chain && wrap_refused && bounded && again))
    }
}

#[cfg(not(target_os = "none"))]
fn main() {}
