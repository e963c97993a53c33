//! Capabilities as user code sees them: a handle (an index and a generation) and rights.
//!
//! The capability itself lives in the kernel; a handle is only a name for it. The kernel
//! checks on every call that the handle's index holds a live capability of the caller with the
//! handle's generation, so a forged, stale or borrowed handle is refused
//! ([`crate::Error::InvalidCapability`]).

bitflags::bitflags! {
    /// What a capability allows. A derived capability carries a subset of its parent's rights.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub struct Rights: u64 {
        /// Page: map readable.
        const READ = 1 << 0;
        /// Page: map writable (implies readable on x86_64).
        const WRITE = 1 << 1;
        /// Page: map executable.
        const EXECUTE = 1 << 2;
        /// Derive a capability for another environment (`cap_grant`).
        const GRANT = 1 << 3;
        /// Environment: protected control transfer into it (`pct_call`, `pct_send`).
        const CALL = 1 << 4;
        /// Environment: donate the rest of a time slice to it (`yield_to`).
        const YIELD = 1 << 5;
        /// Environment: control it (destroy it, ask it for pages back, read its accounting).
        /// Filter binding: unbind it (`filter_unbind`).
        const CONTROL = 1 << 6;
        /// Network monitor: bind monitor filters (filters that claim no port; `filter_bind`).
        const MONITOR = 1 << 7;
        /// Network monitor: send frames beyond the transmit check's allow list (any ethertype
        /// and protocol, still from the NIC's MAC; `net_transmit` naming this capability).
        const RAW_TRANSMIT = 1 << 8;
    }
}

impl Rights {
    /// The rights that say how a page may be mapped.
    pub const PAGE_ACCESS: Rights = Rights::READ.union(Rights::WRITE).union(Rights::EXECUTE);
}

/// A capability handle: `generation << 32 | index`. Index 0 is never used, so the handle 0
/// means "none".
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CapHandle(pub u64);

impl CapHandle {
    /// The handle that names nothing.
    pub const NONE: CapHandle = CapHandle(0);

    /// A handle from its parts.
    pub const fn new(index: u32, generation: u32) -> CapHandle {
        CapHandle(((generation as u64) << 32) | index as u64)
    }

    /// The table index.
    pub const fn index(self) -> u32 {
        self.0 as u32
    }

    /// The generation the slot had when the handle was made.
    pub const fn generation(self) -> u32 {
        (self.0 >> 32) as u32
    }

    /// The raw value passed in registers.
    pub const fn raw(self) -> u64 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handles_round_trip() {
        let handle = CapHandle::new(7, 0xdead_beef);
        assert_eq!(handle.index(), 7);
        assert_eq!(handle.generation(), 0xdead_beef);
        assert_eq!(CapHandle(handle.raw()), handle);
        assert_eq!(CapHandle::NONE.index(), 0);
    }

    #[test]
    fn page_access_is_read_write_execute() {
        assert!(Rights::PAGE_ACCESS.contains(Rights::READ | Rights::WRITE | Rights::EXECUTE));
        assert!(!Rights::PAGE_ACCESS.contains(Rights::GRANT));
    }
}
