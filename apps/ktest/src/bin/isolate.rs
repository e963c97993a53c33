//! Scenario: isolation. An environment cannot touch kernel memory or another environment's
//! pages, cannot use forged, foreign or revoked capabilities, and cannot gain rights by
//! granting. The parent spawns itself as a PCT server (argument 1) to act as the other side.
#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(target_os = "none")]
libnet::entry!(app::main);

#[cfg(target_os = "none")]
mod app {
    use libnet::abi::Error;
    use libnet::abi::cap::{CapHandle, Rights};
    use libnet::abi::error::{decode_result, encode_result};
    use libnet::abi::syscall::ANY_FRAME;
    use libnet::{env, pct, println, sys, upcall};

    /// Where the parent maps its page.
    const SHARED: u64 = 0x0000_6000_0000_0000;
    /// Where the child maps what it was granted.
    const GRANTED: u64 = 0x0000_6000_0010_0000;
    const NOTHING: u64 = u64::MAX;

    fn child(_caller: u64, arguments: [u64; 5]) -> [u64; 5] {
        let [op, value, ..] = arguments;
        let cap = CapHandle(value);
        let result = match op {
            // Read the parent's address in our own space: nothing is there.
            1 => upcall::probe_read(SHARED).unwrap_or(NOTHING),
            // Map a read-only grant writable (refused), then readable, and read it.
            2 => match sys::page_map(cap, GRANTED, Rights::READ | Rights::WRITE) {
                Err(Error::Denied) => {
                    sys::page_map(cap, GRANTED, Rights::READ).expect("map read-only");
                    upcall::probe_read(GRANTED).unwrap_or(NOTHING)
                }
                other => encode_result(other.map(|()| 0)),
            },
            // Read and write the grant again.
            3 => {
                let wrote = upcall::probe_write(GRANTED, 1);
                upcall::probe_read(GRANTED).unwrap_or(NOTHING) | (wrote as u64) << 63
            }
            // Pass the grant on with more rights, or at all (it has no GRANT).
            4 => encode_result(sys::cap_grant(cap, env::own(), Rights::READ).map(|c| c.raw())),
            // Use the parent's own handle value: not ours.
            5 => encode_result(sys::page_map(cap, GRANTED + 4096, Rights::READ).map(|()| 0)),
            _ => NOTHING,
        };
        [result, 0, 0, 0, 0]
    }

    fn call(server: CapHandle, op: u64, value: u64) -> u64 {
        loop {
            match sys::pct_call(server, [op, value, 0, 0, 0]) {
                Ok(results) => return results[0],
                Err(Error::WouldBlock) => sys::yield_now(),
                Err(error) => panic!("pct_call: {error:?}"),
            }
        }
    }

    pub fn main() -> u8 {
        upcall::install(false);
        if env::argument() == 1 {
            pct::serve(child);
        }
        let page = sys::page_alloc(ANY_FRAME).expect("page_alloc");
        sys::page_map(page, SHARED, Rights::READ | Rights::WRITE).expect("page_map");
        upcall::probe_write(SHARED, 0xfeed);

        // Kernel memory: the kernel image at 1 MiB, the null page, the kernel half.
        let kernel = [0x10_0000, 0x10, 0xffff_8000_0000_0000]
            .map(|address| upcall::probe_read(address).is_none());
        let text = !upcall::probe_write(libnet::abi::layout::APP_IMAGE_BASE, 0);
        println!("isolation: kernel memory unreadable {kernel:?}, own code unwritable {text}");

        let forged = [
            CapHandle::new(page.index(), page.generation() + 1),
            CapHandle::new(page.index() + 1000, 1),
            CapHandle(0),
            CapHandle(u64::MAX),
        ]
        .map(|cap| sys::page_map(cap, SHARED + 4096, Rights::READ));
        let kernel_map = sys::page_map(page, 0x10_0000, Rights::READ);
        println!(
            "isolation: forged capabilities {forged:?}, mapping over the kernel {kernel_map:?}"
        );

        let server = sys::spawn("isolate", 1).expect("spawn");
        let unmapped = call(server, 1, 0);
        let granted = sys::cap_grant(page, server, Rights::READ).expect("cap_grant");
        let too_many = sys::cap_grant(page, server, Rights::READ | Rights::CALL);
        let read = call(server, 2, granted.raw());
        let again = call(server, 3, granted.raw());
        let regrant = decode_result(call(server, 4, granted.raw()));
        let foreign = decode_result(call(server, 5, page.raw()));
        let revoked = sys::cap_revoke(page);
        let after = call(server, 3, granted.raw());
        let stale = decode_result(call(server, 4, granted.raw()));
        println!(
            "isolation: other's address {}, grant read {read:#x}, write refused {}, more rights {too_many:?}, regrant {regrant:?}, foreign handle {foreign:?}",
            if unmapped == NOTHING {
                "unmapped"
            } else {
                "MAPPED"
            },
            again == 0xfeed
        );
        println!(
            "isolation: revoked {revoked:?}, after revocation {}, stale handle {stale:?}",
            if after & !(1 << 63) == NOTHING & !(1 << 63) {
                "unmapped"
            } else {
                "MAPPED"
            }
        );
        sys::env_destroy(server).expect("env_destroy");
        let ok = kernel == [true; 3]
            && text
            && forged == [Err(Error::InvalidCapability); 4]
            && kernel_map == Err(Error::BadAddress)
            && unmapped == NOTHING
            && too_many == Err(Error::Denied)
            && read == 0xfeed
            && again == 0xfeed
            && regrant == Err(Error::Denied)
            && foreign == Err(Error::InvalidCapability)
            && revoked == Ok(1)
            && after & !(1 << 63) == NOTHING & !(1 << 63)
            && stale == Err(Error::InvalidCapability);
        if ok { 0 } else { 1 }
    }
}

#[cfg(not(target_os = "none"))]
fn main() {}
