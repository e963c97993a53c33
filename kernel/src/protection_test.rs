//! `test=smap` and `test=smep`: the kernel touches a user page from ring 0, as a kernel bug
//! might, and the CPU must refuse (SMAP: a read without `stac`; SMEP: a call into it), the
//! page-fault report naming which protection it was. Run before any app, in an address
//! space of the test's own with one user page.
#![forbid(unsafe_code)]

use crate::arch;
use crate::mm::address_space::AddressSpace;
use exo_kernel::elf::Access;

/// The user page the kernel touches.
const USER_PAGE: u64 = 0x0000_4000_0000_0000;

/// Which protection to provoke.
#[derive(Clone, Copy, Debug)]
pub enum Provoke {
    /// A ring-0 read of a user page without `stac`.
    Smap,
    /// A ring-0 call into a user page.
    Smep,
}

/// Maps the page, touches it, and panics if the CPU let the kernel through.
pub fn run(provoke: Provoke, protections: arch::protect::Protections) -> ! {
    let mut space = AddressSpace::new().expect("a frame for the test's page table");
    let access = Access {
        read: true,
        write: false,
        execute: true,
    };
    space
        .map_user_page(USER_PAGE, access)
        .expect("frames for the test's user page");
    // One `ret`, so a CPU without SMEP returns and the panic below says what happened.
    space
        .write_user(USER_PAGE, &[0xc3])
        .expect("the page was just mapped");
    space.activate();
    match provoke {
        Provoke::Smap => {
            log!(
                "self-test: test=smap (SMAP {}), reading user page {USER_PAGE:#x} from ring 0 without stac",
                if protections.smap { "on" } else { "absent" }
            );
            arch::protect::read_user_without_stac(USER_PAGE);
            panic!("self-test: ring 0 read a user page without stac and did not fault");
        }
        Provoke::Smep => {
            log!(
                "self-test: test=smep (SMEP {}), calling user page {USER_PAGE:#x} from ring 0",
                if protections.smep { "on" } else { "absent" }
            );
            arch::protect::call_user_page(USER_PAGE);
            panic!("self-test: ring 0 executed a user page and did not fault");
        }
    }
}
