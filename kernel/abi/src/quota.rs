//! Per-environment quotas: how much of each kernel resource an environment may hold. Every
//! environment has a limit for each [`Resource`]; asking for more than it has left is
//! `Exhausted` for that environment alone. A parent gives a child its limits at `spawn`,
//! carved out of its own (they stay reserved until the child ends), so no subtree of
//! environments can hold more than its root was given and no environment can starve another.

/// A kernel resource an environment consumes.
#[repr(u64)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resource {
    /// Capabilities it made exist: created for it, or granted or derived by it.
    Capabilities = 0,
    /// Physical frames it allocated (`page_alloc`); a frame is held while its root
    /// capability lives.
    Frames = 1,
    /// Frames for the page tables of its address space.
    PageTables = 2,
    /// Pages mapped in its address space through page capabilities (`page_map`): its page
    /// bindings.
    PageBindings = 3,
    /// Packet filters it has bound (`filter_bind`).
    Filters = 4,
    /// Time slices it holds (the one `spawn` gives, and `slice_acquire`'s).
    Slices = 5,
    /// Application-specific safe handlers it has bound (`ash_bind`).
    Handlers = 6,
    /// Bytes of generated code its filters and handlers are charged: each filter the code it
    /// compiles to alone (`dpf::jit`), each handler its compiled code (`ash::jit`).
    JitCodeBytes = 7,
}

/// How many resources there are.
pub const RESOURCES: usize = 8;

impl Resource {
    /// Every resource, in number order.
    pub const ALL: [Resource; RESOURCES] = [
        Resource::Capabilities,
        Resource::Frames,
        Resource::PageTables,
        Resource::PageBindings,
        Resource::Filters,
        Resource::Slices,
        Resource::Handlers,
        Resource::JitCodeBytes,
    ];

    /// Decodes a resource number.
    pub const fn from_number(number: u64) -> Option<Resource> {
        if number < RESOURCES as u64 {
            Some(Resource::ALL[number as usize])
        } else {
            None
        }
    }
}

/// A limit for every resource, indexed by [`Resource`]: what `spawn` reads (as
/// [`LIMITS_BYTES`] bytes of little-endian `u64`s) and `env_quota` reports.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Limits(pub [u64; RESOURCES]);

/// Bytes of an encoded [`Limits`].
pub const LIMITS_BYTES: usize = RESOURCES * 8;

impl Limits {
    /// The limit for `resource`.
    pub const fn get(&self, resource: Resource) -> u64 {
        self.0[resource as usize]
    }

    /// Sets the limit for `resource`.
    pub fn set(&mut self, resource: Resource, limit: u64) {
        self.0[resource as usize] = limit;
    }

    /// As `spawn` reads them.
    pub fn encode(&self) -> [u8; LIMITS_BYTES] {
        let mut bytes = [0u8; LIMITS_BYTES];
        for (chunk, limit) in bytes.chunks_exact_mut(8).zip(self.0) {
            chunk.copy_from_slice(&limit.to_le_bytes());
        }
        bytes
    }

    /// From `spawn`'s argument bytes.
    pub fn decode(bytes: &[u8; LIMITS_BYTES]) -> Limits {
        let mut limits = Limits::default();
        for (limit, chunk) in limits.0.iter_mut().zip(bytes.chunks_exact(8)) {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            *limit = u64::from_le_bytes(word);
        }
        limits
    }
}

/// What `env_quota` reports about one resource.
#[repr(u64)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QuotaField {
    /// The environment's limit.
    Limit = 0,
    /// What it holds now.
    Used = 1,
    /// What it has given its live children's limits.
    Reserved = 2,
}

impl QuotaField {
    /// Decodes a field number.
    pub const fn from_number(number: u64) -> Option<QuotaField> {
        match number {
            0 => Some(QuotaField::Limit),
            1 => Some(QuotaField::Used),
            2 => Some(QuotaField::Reserved),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_round_trip_and_resources_decode() {
        let mut limits = Limits::default();
        for (index, resource) in Resource::ALL.into_iter().enumerate() {
            assert_eq!(Resource::from_number(index as u64), Some(resource));
            limits.set(resource, 1000 + index as u64);
        }
        assert_eq!(Resource::from_number(RESOURCES as u64), None);
        assert_eq!(Limits::decode(&limits.encode()), limits);
        assert_eq!(limits.get(Resource::Slices), 1005);
        assert_eq!(limits.get(Resource::Handlers), 1006);
        assert_eq!(limits.get(Resource::JitCodeBytes), 1007);
        assert_eq!(QuotaField::from_number(3), None);
    }
}
