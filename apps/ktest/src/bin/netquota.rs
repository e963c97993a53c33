//! Scenario: the network's quotas. A parent spawns hogs with limits carved out of its own.
//! The first binds filters until `Exhausted`, then handlers on them until `Exhausted`, and
//! each stops at its own limit (never at the kernel's per-environment ceiling). The others
//! have a JIT code budget measured from the parent's own filter (`f` bytes) and handler (`h`):
//! `4f + f/2` stops the fifth filter and the handler after four; `f + h - 1` admits a filter
//! but not its handler; `f + h` both. Each hog waits with everything still bound while the
//! parent (its victim) binds a filter and a handler of its own, which must still work; then
//! the parent ends it and sees its quota come back.
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
    use libnet::net::{self, FilterBinding, Ring};
    use libnet::{println, sys};

    /// The child's argument: bind filters, then handlers, until each runs out.
    const FILTER_HOG: u64 = 1;
    /// The hog's limits (below `ASH_MAX_HANDLERS`, so the quota is what stops it).
    const HOG_FILTERS: u64 = 6;
    const HOG_HANDLERS: u64 = 3;
    /// The child's argument: bind up to `argument >> 8` filters, then a handler on the first.
    const CODE_HOG: u64 = 2;
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
    fn bind(port: u16, ring: &Ring<2>) -> Result<FilterBinding, Error> {
        let expression = alloc::format!("ip and udp dst port {port}");
        let filters = dpf::frontend::compile(&expression, dpf::FilterId(0))
            .map_err(|_| Error::InvalidArgument)?;
        let filter = filters.first().ok_or(Error::InvalidArgument)?;
        let (address, bytes) = ring.region();
        net::filter_bind(&dpf::wire::encode(filter), address, bytes, CapHandle::NONE)
    }

    fn echo() -> Vec<u8> {
        libnet::handlers::udp_echo()
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
        hold()
    }

    /// Holds everything bound until the parent ends it. The second slice it takes first tells
    /// the parent (which reads its `Slices` use) that it is done binding.
    fn hold() -> u8 {
        let _ = sys::slice_acquire();
        for _ in 0..HOG_PATIENCE {
            sys::yield_now();
        }
        println!("netquota hog: never ended by the parent");
        1
    }

    fn code_hog(most: u64) -> u8 {
        let mut bound = Vec::new();
        let (filters, filters_stop) = exhaust(|index| {
            if index == most {
                return Err(Error::NotFound);
            }
            bind(8400 + index as u16, &HOG_RING).map(|binding| bound.push(binding.capability))
        });
        let handler = match bound.first() {
            Some(&binding) => net::ash_bind(binding, &echo(), &[]).map(drop),
            None => Err(Error::NotFound),
        };
        println!(
            "netquota code hog: {filters} filters then {filters_stop:?}, handler {handler:?}; code {}/{} bytes",
            mine(Resource::JitCodeBytes, QuotaField::Used),
            mine(Resource::JitCodeBytes, QuotaField::Limit),
        );
        hold()
    }

    /// Spawns a hog with `limits` and `argument`, waits (bounded) until it is done binding,
    /// checks with `holds` what it holds, then binds a filter on `port` and a handler as the victim; whether the victim's
    /// binds worked while the hog held everything, and the hog was alive then and ended when
    /// destroyed. The victim's bindings are unbound again.
    fn beside_hog(
        limits: &Limits,
        argument: u64,
        holds: impl Fn(CapHandle) -> bool,
        port: u16,
    ) -> (bool, bool, Result<EnvStatus, Error>) {
        let Ok(hog) = sys::spawn_with("netquota", argument, limits) else {
            println!("netquota: could not spawn a hog");
            return (false, false, Err(Error::Exhausted));
        };
        let mut waited = 0;
        while waited < PARENT_PATIENCE
            && of(hog, Resource::Slices) < 2
            && sys::env_status(hog) == Ok(EnvStatus::Running)
        {
            sys::yield_now();
            waited += 1;
        }
        let held = holds(hog);
        let victim = bind(port, &VICTIM_RING);
        let handler = victim.and_then(|binding| net::ash_bind(binding.capability, &echo(), &[]));
        let alive = sys::env_status(hog) == Ok(EnvStatus::Running);
        let destroyed = sys::env_destroy(hog).and_then(|()| sys::wait(hog));
        if let Ok(binding) = victim {
            let _ = net::filter_unbind(binding.capability);
        }
        (held && alive, victim.is_ok() && handler.is_ok(), destroyed)
    }

    pub fn main() -> u8 {
        let argument = libnet::env::argument();
        if argument == FILTER_HOG {
            return filter_hog();
        }
        if argument & 0xff == CODE_HOG {
            return code_hog(argument >> 8);
        }
        let mut limits = Limits::default();
        limits.set(Resource::Capabilities, 64);
        limits.set(Resource::Frames, 16);
        limits.set(Resource::PageTables, 16);
        limits.set(Resource::PageBindings, 16);
        limits.set(Resource::Slices, 2);
        limits.set(Resource::Filters, HOG_FILTERS);
        limits.set(Resource::Handlers, HOG_HANDLERS);
        limits.set(Resource::JitCodeBytes, 64 * 1024);
        let filters_before = mine(Resource::Filters, QuotaField::Used);
        let Ok(hog) = sys::spawn_with("netquota", FILTER_HOG, &limits) else {
            println!("netquota: could not spawn the hog");
            return 1;
        };
        let mut waited = 0;
        while waited < PARENT_PATIENCE
            && of(hog, Resource::Slices) < 2
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
        if let Ok(binding) = victim {
            let _ = net::filter_unbind(binding.capability);
        }
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
        u8::from(!(ok && code_quota(limits)))
    }

    /// The JIT code bytes quota, with budgets measured from the parent's own filter and
    /// handler (of the same shapes as the hogs').
    fn code_quota(mut limits: Limits) -> bool {
        let code = || mine(Resource::JitCodeBytes, QuotaField::Used);
        let before = code();
        let Ok(binding) = bind(8300, &VICTIM_RING) else {
            println!("netquota: the victim's measuring bind failed");
            return false;
        };
        let filter = code() - before;
        let handler = net::ash_bind(binding.capability, &echo(), &[]);
        let handler_bytes = code() - before - filter;
        let _ = net::filter_unbind(binding.capability);
        let returned = code() == before;
        println!(
            "netquota: a filter is charged {filter} code bytes, a handler {handler_bytes} ({:?}); unbound, back to {before}: {returned}",
            handler.map(drop)
        );
        if filter == 0 || handler.is_err() || !returned {
            return false;
        }
        limits.set(Resource::Filters, 64);
        limits.set(Resource::Handlers, 4);
        // (budget, filters at most, filters bound, whether the handler fits)
        let cases = [
            (4 * filter + filter / 2, 64, 4, handler_bytes <= filter / 2),
            (filter + handler_bytes - 1, 1, 1, false),
            (filter + handler_bytes, 1, 1, true),
        ];
        let mut ok = true;
        for (case, &(budget, most, filters, fits)) in cases.iter().enumerate() {
            limits.set(Resource::JitCodeBytes, budget);
            let holds = filters * filter + if fits { handler_bytes } else { 0 };
            let (held, victim, status) = beside_hog(
                &limits,
                CODE_HOG | most << 8,
                |hog| {
                    of(hog, Resource::JitCodeBytes) == holds
                        && of(hog, Resource::Filters) == filters
                        && of(hog, Resource::Handlers) == u64::from(fits)
                },
                8310 + case as u16,
            );
            let case_ok = held && victim && status == Ok(EnvStatus::Aborted);
            println!(
                "netquota: code budget {budget}: hog held {filters} filters and {} handlers ({holds} bytes): {held}; victim binds {victim}; hog {status:?}",
                u64::from(fits)
            );
            ok &= case_ok;
        }
        let after = code();
        println!(
            "netquota: the JIT code quota stops each hog at its budget, victim unaffected, code back to {before}: {}",
            ok && after == before
        );
        ok && after == before
    }
}

#[cfg(not(target_os = "none"))]
fn main() {}
