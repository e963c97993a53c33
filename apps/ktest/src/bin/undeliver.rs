//! Scenario: environments ended because no upcall frame fits. The parent spawns children (as
//! many as its slices and the environment table allow, 64 in all, slots reused as children
//! end); each waits until a given tick, installs a slice-start upcall, points its stack at an
//! unmapped address and spins. At its next slice start the kernel cannot deliver the upcall,
//! ends it and picks the next environment in the same decision: in a loop, not by recursing
//! through the scheduler once per ended environment (the kernel's entry stack is 64 KiB).
#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(target_os = "none")]
libnet::entry!(app::main);

#[cfg(target_os = "none")]
mod app {
    use libnet::abi::cap::CapHandle;
    use libnet::abi::quota::{Limits, QuotaField, Resource};
    use libnet::abi::upcall::{EnvStatus, UpcallKind};
    use libnet::{env, println, sys};

    const CHILD: u64 = 1;

    extern "C" fn never_entered() -> ! {
        loop {
            core::hint::spin_loop();
        }
    }

    /// Waits (yielding) until tick `go`, so all children reach their spin together.
    fn child(go: u64) -> ! {
        while sys::ticks() < go {
            sys::yield_now();
        }
        sys::set_upcall(UpcallKind::SliceStart, never_entered as *const () as u64, 0)
            .expect("set_upcall");
        #[allow(unsafe_code)]
        // SAFETY: the child never returns and never touches memory again: it spins with an
        // unusable stack pointer until the kernel ends it.
        unsafe {
            core::arch::asm!(
                "mov rsp, 0x1000",
                "2:",
                "pause",
                "jmp 2b",
                options(noreturn)
            );
        }
    }

    pub fn main() -> u8 {
        if env::argument() & 0xff == CHILD {
            child(env::argument() >> 8);
        }
        let mine = |resource| {
            sys::env_quota(CapHandle::NONE, resource, QuotaField::Limit).unwrap_or(0)
                - sys::env_quota(CapHandle::NONE, resource, QuotaField::Used).unwrap_or(0)
        };
        let mut each = Limits::default();
        each.set(Resource::Capabilities, 4);
        each.set(Resource::Frames, 4);
        each.set(Resource::PageTables, 16);
        each.set(Resource::Slices, 1);
        let mut children = [CapHandle::NONE; 64];
        let mut count = 0;
        let go = sys::ticks() + 20;
        while count < children.len() && mine(Resource::Slices) > 0 {
            match sys::spawn_with("undeliver", go << 8 | CHILD, &each) {
                Ok(child) => {
                    children[count] = child;
                    count += 1;
                }
                Err(_) => break,
            }
        }
        let aborted = children[..count]
            .iter()
            .filter(|&&child| sys::wait(child) == Ok(EnvStatus::Aborted))
            .count();
        println!(
            "undeliver: {aborted} of {count} children ended for an undeliverable upcall (spawned by tick {}, released at {go})",
            sys::ticks()
        );
        u8::from(!(count >= 16 && aborted == count))
    }
}

#[cfg(not(target_os = "none"))]
fn main() {}
