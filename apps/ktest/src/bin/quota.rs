//! Scenario: per-environment quotas. A parent spawns a hog with limits carved out of its own;
//! the hog takes capabilities, frames, mappings of one page, sparse page tables and slices
//! until each runs out, and every time it gets `Exhausted` at its own limit, while the parent
//! (its victim) can still allocate, map and acquire. Limits beyond what the parent has left
//! are refused, and the parent's reservation returns when the hog ends.
#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(target_os = "none")]
libnet::entry!(app::main);

#[cfg(target_os = "none")]
mod app {
    use libnet::abi::Error;
    use libnet::abi::cap::{CapHandle, Rights};
    use libnet::abi::quota::{Limits, QuotaField, Resource};
    use libnet::abi::syscall::ANY_FRAME;
    use libnet::abi::upcall::EnvStatus;
    use libnet::{env, println, sys};

    const HOG: u64 = 1;
    /// Where the hog maps one page over and over.
    const DENSE: u64 = 0x0000_6000_0000_0000;
    /// Where it maps pages 1 GiB apart, each needing page tables of its own.
    const SPARSE: u64 = 0x0000_5000_0000_0000;
    const GIB: u64 = 1 << 30;

    fn limits(caps: u64, frames: u64, tables: u64, mappings: u64, slices: u64) -> Limits {
        let mut limits = Limits::default();
        limits.set(Resource::Capabilities, caps);
        limits.set(Resource::Frames, frames);
        limits.set(Resource::PageTables, tables);
        limits.set(Resource::PageBindings, mappings);
        limits.set(Resource::Slices, slices);
        limits
    }

    fn mine(resource: Resource, field: QuotaField) -> u64 {
        sys::env_quota(CapHandle::NONE, resource, field).expect("env_quota")
    }

    /// Takes `resource` with `take` until it fails; how many it got and why it stopped.
    fn exhaust(mut take: impl FnMut(u64) -> Result<(), Error>) -> (u64, Error) {
        let mut count = 0;
        loop {
            match take(count) {
                Ok(()) => count += 1,
                Err(error) => return (count, error),
            }
        }
    }

    fn hog() -> u8 {
        let limit = |resource| mine(resource, QuotaField::Limit);
        let used = |resource| mine(resource, QuotaField::Used);
        let page = sys::page_alloc(ANY_FRAME).expect("a first page");
        let (_, frames_stop) = exhaust(|_| sys::page_alloc(ANY_FRAME).map(drop));
        let frames = used(Resource::Frames);
        let (_, caps_stop) = exhaust(|_| sys::cap_grant(page, env::own(), Rights::READ).map(drop));
        let caps = used(Resource::Capabilities);
        // One page mapped at address after address: each mapping is charged.
        let (mappings, mappings_stop) =
            exhaust(|index| sys::page_map(page, DENSE + index * 4096, Rights::READ));
        for index in 0..mappings {
            sys::page_unmap(DENSE + index * 4096).expect("unmap");
        }
        // Pages 1 GiB apart: each needs page tables of its own, which are charged too.
        let (sparse, sparse_stop) =
            exhaust(|index| sys::page_map(page, SPARSE + index * GIB, Rights::READ));
        let tables = used(Resource::PageTables);
        let (_, slices_stop) = exhaust(|_| sys::slice_acquire().map(drop));
        let slices = used(Resource::Slices);
        println!(
            "quota hog: frames {frames}/{}, capabilities {caps}/{}, mappings {mappings}/{}, table frames {tables}/{} after {sparse} sparse maps, slices {slices}/{}; stopped by {frames_stop:?} {caps_stop:?} {mappings_stop:?} {sparse_stop:?} {slices_stop:?}",
            limit(Resource::Frames),
            limit(Resource::Capabilities),
            limit(Resource::PageBindings),
            limit(Resource::PageTables),
            limit(Resource::Slices),
        );
        let at_limits = frames == limit(Resource::Frames)
            && caps == limit(Resource::Capabilities)
            && mappings == limit(Resource::PageBindings)
            && sparse > 0
            && tables + 1 >= limit(Resource::PageTables)
            && tables <= limit(Resource::PageTables)
            && slices == limit(Resource::Slices);
        let all_exhausted = [
            frames_stop,
            caps_stop,
            mappings_stop,
            sparse_stop,
            slices_stop,
        ]
        .iter()
        .all(|&stop| stop == Error::Exhausted);
        println!(
            "quota hog: every resource stopped at its limit with Exhausted: {}",
            at_limits && all_exhausted
        );
        u8::from(!(at_limits && all_exhausted))
    }

    pub fn main() -> u8 {
        if env::argument() == HOG {
            return hog();
        }
        let left = |resource| {
            mine(resource, QuotaField::Limit)
                - mine(resource, QuotaField::Used)
                - mine(resource, QuotaField::Reserved)
        };
        // More than the parent has left is refused.
        let greedy = limits(left(Resource::Capabilities) + 1, 1, 1, 1, 1);
        let refused = sys::spawn_with("quota", HOG, &greedy);
        let hog_limits = limits(300, 64, 24, 2000, 3);
        let hog = sys::spawn_with("quota", HOG, &hog_limits).expect("spawn the hog");
        let reserved = mine(Resource::Frames, QuotaField::Reserved);
        let status = sys::wait(hog);
        // The victim still has everything it did not give away.
        let page = sys::page_alloc(ANY_FRAME);
        let mapped = page.is_ok_and(|page| {
            sys::page_map(page, DENSE, Rights::READ | Rights::WRITE).is_ok()
                && sys::page_unmap(DENSE).is_ok()
        });
        let slice = sys::slice_acquire();
        let returned = mine(Resource::Frames, QuotaField::Reserved);
        println!(
            "quota: greedy spawn {:?}; hog {status:?}; reserved for it {reserved}, after it {returned}; victim maps {mapped}, acquires a slice {}",
            refused.map(drop),
            slice.is_ok()
        );
        let ok = refused == Err(Error::Exhausted)
            && status == Ok(EnvStatus::Exited(0))
            && reserved == 64
            && returned == 0
            && mapped
            && slice.is_ok();
        u8::from(!ok)
    }
}

#[cfg(not(target_os = "none"))]
fn main() {}
