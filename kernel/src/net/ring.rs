//! A packet ring on an app's pages, the filters bound to it, and its monitor filters' code.
use super::jit;
use crate::env::EnvId;
use alloc::vec::Vec;
use dpf::claim::PortClaim;
use dpf::trie::Trie;
use exo_abi::Error;
use exo_abi::cap::CapHandle;

/// One ring and the filters that feed it.
pub(super) struct Ring {
    pub(super) owner: EnvId,
    pub(super) address: u64,
    /// Physical address of each slot (one frame each).
    pub(super) slots: Vec<u64>,
    pub(super) next: usize,
    /// The ring's monitor filters (port-claiming ones are in [`super::shared::Shared`]).
    pub(super) trie: Trie,
    /// The monitor trie's generated code; `None` while the trie is empty.
    pub(super) code: Option<jit::KernelCode>,
    /// Filters bound to this ring.
    pub(super) filters: Vec<BoundFilter>,
    /// Copies delivered to this ring.
    pub(super) delivered: u64,
    /// Copies delivered since the last poll reported them (see [`super::poll`]).
    pub(super) fresh: u64,
    /// Copies dropped because the ring's next slot was still the app's (`ring_counters`).
    pub(super) full: u64,
    /// Frames this ring's filters won, before any handler decided (`Counter::Matched`).
    pub(super) won: u64,
    /// Whether the frame being demultiplexed matched (scratch between the two passes).
    pub(super) matched: bool,
    /// The monitor trie's winning score for that frame (0: none).
    pub(super) winner: u64,
}

impl Ring {
    /// A ring of `owner`'s at user address `address` over the frames `slots`, with no filter
    /// bound and nothing counted yet.
    pub(super) fn new(owner: EnvId, address: u64, slots: Vec<u64>) -> Ring {
        Ring {
            owner,
            address,
            slots,
            next: 0,
            trie: Trie::new(),
            code: None,
            filters: Vec::new(),
            delivered: 0,
            fresh: 0,
            full: 0,
            won: 0,
            matched: false,
            winner: 0,
        }
    }
}

/// One bound filter.
pub(super) struct BoundFilter {
    pub(super) id: u32,
    /// The port it claims (`None`: a monitor filter).
    pub(super) claim: Option<PortClaim>,
    /// The capability `filter_bind` made for it (`NONE` until the system-call layer attached
    /// it, within the same call): the binding lasts as long as this capability.
    pub(super) capability: CapHandle,
    /// Bytes every frame this filter wins is known to hold (its loads before the first shift
    /// succeeded): what a handler bound to it is verified for.
    pub(super) proven_len: u16,
    /// The JIT code bytes it is charged (its owner's `JitCodeBytes`): its code compiled alone.
    pub(super) code_bytes: u64,
}

/// Compiles `trie` (monitor filters) and makes it and its code the ring's; nothing changes if that fails. The
/// old code is dropped (unmapped and freed) here, in a system call with interrupts off on the
/// one CPU, so no frame is being classified by it.
pub(super) fn swap_in(ring: &mut Ring, trie: Trie) -> Result<(), Error> {
    let code = if trie.is_empty() {
        None
    } else {
        let compiled = dpf::jit::compile(&trie).map_err(|_| Error::InvalidArgument)?;
        Some(
            jit::KernelCode::install(&compiled).map_err(|error| match error {
                jit::InstallError::OutOfMemory => Error::OutOfMemory,
                jit::InstallError::BadLayout => Error::InvalidArgument,
            })?,
        )
    };
    ring.trie = trie;
    ring.code = code;
    Ok(())
}

/// The `(IP protocol, port)` pairs `owner`'s filters claim: the source ports the transmit
/// check lets it (and its handlers) send from.
pub(super) fn owned_ports(rings: &[Ring], owner: EnvId) -> impl Iterator<Item = (u8, u16)> + '_ {
    rings
        .iter()
        .filter(move |ring| ring.owner == owner)
        .flat_map(|ring| ring.filters.iter())
        .filter_map(|bound| {
            bound
                .claim
                .map(|claim| (claim.transport.protocol(), claim.port))
        })
}

/// [`owned_ports`] as the transmit check asks it: one pair at a time, straight from the
/// rings, so a frame's check collects nothing.
pub(super) struct OwnedPorts<'a> {
    pub(super) rings: &'a [Ring],
    pub(super) owner: EnvId,
}

impl exo_kernel::tx_check::PortOwner for OwnedPorts<'_> {
    fn owns(&self, protocol: u8, port: u16) -> bool {
        owned_ports(self.rings, self.owner).any(|owned| owned == (protocol, port))
    }
}
