//! Scenario: the network's quotas. A parent spawns a hog with limits carved out of its own;
//! the hog binds filters until `Exhausted`, then handlers on them until `Exhausted`, and each
//! stops at its own limit (never at the kernel's per-environment ceiling), then waits with
//! everything still bound. Meanwhile the parent (its victim) binds a filter and a handler of
//! its own, which must still work; then it ends the hog and sees its quota come back.
#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(target_os = "none")]
extern crate alloc;

#[cfg(target_os = "none")]
libnet::entry!(app::main);

#[cfg(target_os = "none")]
mod app {
    use alloc::vec::Vec;
    use libnet::abi::Error;
    use libnet::abi::cap::CapHandle;
    use libnet::abi::quota::{Limits, QuotaField, Resource};
    use libnet::abi::upcall::EnvStatus;
    use libnet::net::{self, Binding, Ring};
    use libnet::{println, sys};

    /// The child's argument: bind filters, then handlers, until each runs out.
    const FILTER_HOG: u64 = 1;
    /// The hog's limits (below `ASH_MAX_HANDLERS`, so the quota is what stops it).
    const HOG_FILTERS: u64 = 6;
    const HOG_HANDLERS: u64 = 3;
    /// Yields the hog waits through at most, holding what it bound, before giving up.
    const HOG_PATIENCE: u64 = 200_000;
    /// Yields the parent waits through at most for the hog to have bound its limits.
    const PARENT_PATIENCE: u64 = 200_000;

    static HOG_RING: Ring<2> = Ring::new();
    static VICTIM_RING: Ring<2> = Ring::new();

    fn mine(resource: Resource, field: QuotaField) -> u64 {
        sys::env_quota(CapHandle::NONE, resource, field).expect("env_quota")
    }

    fn of(env: CapHandle, resource: Resource) -> u64 {
        sys::env_quota(env, resource, QuotaField::Used).unwrap_or(u64::MAX)
    }

    /// Binds `ip and udp dst port PORT` to `ring`.
    fn bind(port: u16, ring: &Ring<2>) -> Result<Binding, Error> {
        let expression = alloc::format!("ip and udp dst port {port}");
        let filters = dpf::frontend::compile(&expression, dpf::FilterId(0))
            .map_err(|_| Error::InvalidArgument)?;
        let filter = filters.first().ok_or(Error::InvalidArgument)?;
        let (address, bytes) = ring.region();
        net::filter_bind(&dpf::wire::encode(filter), address, bytes, CapHandle::NONE)
    }

    fn echo() -> Vec<u8> {
        ash::stock::udp_echo()
            .map(|handler| ash::wire::encode(&handler))
            .unwrap_or_default()
    }

    /// Takes with `take` until it fails; how many it got and why it stopped.
    fn exhaust(mut take: impl FnMut(u64) -> Result<(), Error>) -> (u64, Error) {
        let mut count = 0;
        loop {
            match take(count) {
                Ok(()) => count += 1,
                Err(error) => return (count, error),
            }
        }
    }

    fn filter_hog() -> u8 {
        let mut bound = Vec::new();
        let (filters, filters_stop) = exhaust(|index| {
            bind(8100 + index as u16, &HOG_RING).map(|binding| bound.push(binding.capability))
        });
        let code = echo();
        let (handlers, handlers_stop) = exhaust(|index| match bound.get(index as usize) {
            Some(&binding) => net::ash_bind(binding, &code, &[]).map(drop),
            None => Err(Error::NotFound),
        });
        let ok = filters == HOG_FILTERS
            && filters_stop == Error::Exhausted
            && handlers == HOG_HANDLERS
            && handlers_stop == Error::Exhausted;
        println!(
            "netquota hog: filters {filters}/{} then {filters_stop:?}, handlers {handlers}/{} then {handlers_stop:?}; at its limits: {ok}",
            mine(Resource::Filters, QuotaField::Limit),
            mine(Resource::Handlers, QuotaField::Limit),
        );
        // Holds everything until the parent ends it.
        for _ in 0..HOG_PATIENCE {
            sys::yield_now();
        }
        println!("netquota hog: never ended by the parent");
        1
    }

    pub fn main() -> u8 {
        if libnet::env::argument() == FILTER_HOG {
            return filter_hog();
        }
        let mut limits = Limits::default();
        limits.set(Resource::Capabilities, 64);
        limits.set(Resource::Frames, 16);
        limits.set(Resource::PageTables, 16);
        limits.set(Resource::Mappings, 16);
        limits.set(Resource::Slices, 1);
        limits.set(Resource::Filters, HOG_FILTERS);
        limits.set(Resource::Handlers, HOG_HANDLERS);
        let filters_before = mine(Resource::Filters, QuotaField::Used);
        let Ok(hog) = sys::spawn_with("netquota", FILTER_HOG, &limits) else {
            println!("netquota: could not spawn the hog");
            return 1;
        };
        let mut waited = 0;
        while waited < PARENT_PATIENCE
            && (of(hog, Resource::Filters) < HOG_FILTERS
                || of(hog, Resource::Handlers) < HOG_HANDLERS)
            && sys::env_status(hog) == Ok(EnvStatus::Running)
        {
            sys::yield_now();
            waited += 1;
        }
        let held = (of(hog, Resource::Filters), of(hog, Resource::Handlers));
        // The victim, with the hog at its limits: its own bind and handler still work.
        let victim = bind(8200, &VICTIM_RING);
        let handler = victim.and_then(|binding| net::ash_bind(binding.capability, &echo(), &[]));
        let alive = sys::env_status(hog) == Ok(EnvStatus::Running);
        let destroyed = sys::env_destroy(hog);
        let status = sys::wait(hog);
        let victim_ok = victim.is_ok() && handler.is_ok();
        let filters_after = mine(Resource::Filters, QuotaField::Used);
        let reserved_after = mine(Resource::Filters, QuotaField::Reserved);
        println!(
            "netquota: hog held filters {}/{HOG_FILTERS} and handlers {}/{HOG_HANDLERS}; victim bind {:?}, handler {:?}; hog alive {alive}, destroyed {destroyed:?} {status:?}; victim's filters {filters_before} -> {filters_after}, reserved after {reserved_after}",
            held.0,
            held.1,
            victim.map(drop),
            handler.map(drop),
        );
        let ok = held == (HOG_FILTERS, HOG_HANDLERS)
            && victim_ok
            && alive
            && destroyed.is_ok()
            && status == Ok(EnvStatus::Aborted)
            && filters_after == filters_before + 1
            && reserved_after == 0;
        println!("netquota: hog stopped at its own limits, victim unaffected: {ok}");
        u8::from(!ok)
    }
}

#[cfg(not(target_os = "none"))]
fn main() {}
