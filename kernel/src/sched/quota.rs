//! Quotas: what each environment uses of each kernel resource, what it has left, and
//! what a parent's children hold of its limits.
use super::*;

/// What the machine has for all environments together: every capability slot, three
/// quarters of the free frames (the rest stays the kernel's, for tables, rings and code),
/// page tables and mappings within what the kernel heap and RAM can hold, filters, slices,
/// handlers, and generated code in a sixteenth of the free frames (code frames are the
/// kernel's quarter's).
pub(super) fn machine_limits() -> Limits {
    let frames = frames::free_count();
    let mut machine = Limits::default();
    machine.set(Resource::Capabilities, MAX_CAPS as u64);
    machine.set(Resource::Frames, frames / 4 * 3);
    machine.set(Resource::PageTables, frames / 16);
    machine.set(Resource::PageBindings, MAX_PAGE_BINDINGS);
    machine.set(Resource::Filters, MAX_FILTERS);
    machine.set(Resource::Slices, exo_kernel::slices::SLICES as u64);
    machine.set(Resource::Handlers, MAX_HANDLERS);
    machine.set(
        Resource::JitCodeBytes,
        frames / 16 * exo_abi::layout::PAGE_SIZE_BYTES,
    );
    machine
}

/// What the capability space may charge an environment with `limits`, `reserved` of which
/// it gave its children.
pub(super) fn cap_limit(limits: &Limits, reserved: &Limits) -> exo_kernel::cap::CapUsage {
    let left = exo_kernel::quota::subtract(limits, reserved);
    exo_kernel::cap::CapUsage {
        capabilities: left.get(Resource::Capabilities),
        frames: left.get(Resource::Frames),
    }
}

/// Gives each of `count` boot apps (spawned next) an equal share of the machine.
pub fn set_boot_apps(count: usize) {
    with_kernel(|kernel| {
        kernel.boot_share = exo_kernel::quota::boot_share(&machine_limits(), count);
    });
}

impl Kernel {
    /// One more slice for `id`, within its quota.
    pub fn acquire_slice(&mut self, id: EnvId) -> Result<usize, Error> {
        self.charge(id, Resource::Slices)?;
        self.slices.acquire(id).ok_or(Error::Exhausted)
    }

    /// What `id` uses of each resource now.
    pub fn used(&self, id: EnvId) -> Option<Limits> {
        let env = self.env(id)?;
        let caps = self.caps.usage(id);
        let mut used = Limits::default();
        used.set(Resource::Capabilities, caps.capabilities);
        used.set(Resource::Frames, caps.frames);
        used.set(Resource::PageTables, env.space.table_frames());
        used.set(Resource::PageBindings, env.page_bindings.len() as u64);
        used.set(Resource::Filters, crate::net::filters_of(id));
        used.set(Resource::Slices, self.slices.count(id) as u64);
        used.set(Resource::Handlers, crate::net::handlers_of(id));
        used.set(Resource::JitCodeBytes, crate::net::code_bytes_of(id));
        Some(used)
    }

    /// What `id` has left of each resource (neither used nor given to its children).
    pub fn available(&self, id: EnvId) -> Option<Limits> {
        let env = self.env(id)?;
        Some(exo_kernel::quota::available(
            &env.limits,
            &self.used(id)?,
            &env.reserved,
        ))
    }

    /// `Exhausted` unless `id` has one more of `resource` left.
    pub fn charge(&self, id: EnvId, resource: Resource) -> Result<(), Error> {
        match self.available(id) {
            Some(left) if left.get(resource) > 0 => Ok(()),
            _ => Err(Error::Exhausted),
        }
    }

    /// The bytes of generated code `id` may still be charged (`JitCodeBytes` left): a bind
    /// whose code needs more is `Exhausted` (checked where the code's size is known, in `net`).
    pub fn code_budget(&self, id: EnvId) -> u64 {
        self.available(id)
            .map_or(0, |left| left.get(Resource::JitCodeBytes))
    }

    /// Moves `limits` into (`take`) or out of `parent`'s reservation for its children, and
    /// tells the capability space and the address space what it may still take itself.
    pub(super) fn reserve(&mut self, parent: EnvId, limits: &Limits, take: bool) {
        let Some(env) = self.env_mut(parent) else {
            return;
        };
        env.reserved = if take {
            exo_kernel::quota::add(&env.reserved, limits)
        } else {
            exo_kernel::quota::subtract(&env.reserved, limits)
        };
        let (own, reserved) = (env.limits, env.reserved);
        env.space.set_table_limit(
            own.get(Resource::PageTables)
                .saturating_sub(reserved.get(Resource::PageTables)),
        );
        self.caps.set_limit(parent, cap_limit(&own, &reserved));
    }
}
