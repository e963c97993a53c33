//! The filter system calls: bind (checked, verified, claims kept apart), unbind, and the
//! capability each binding lives by.
use super::ring::{BoundFilter, Ring, swap_in};
use super::shared::bind_shared;
use super::{NET, Net};
use crate::env::{EnvId, Environment};
use crate::usermem::UserSlice;
use alloc::vec::Vec;
use dpf::FilterId;
use dpf::trie::Trie;
use exo_abi::Error;
use exo_abi::cap::CapHandle;
use exo_abi::net as abi;
use exo_kernel::elf::Access;

/// Bytes every frame `filter` matches holds: the furthest end of a load before its first
/// shift (every load checks `offset + width <= length`, and a failed load fails the filter).
pub(super) fn proven_length(filter: &dpf::Filter) -> u16 {
    let mut proven = 0u32;
    for step in filter.steps() {
        match step {
            dpf::ir::Step::Test(atom) => {
                if let dpf::ir::Field::Packet { offset, width } = atom.field {
                    proven = proven.max(u32::from(offset) + u32::from(width.bytes()));
                }
            }
            // An expression step does not move the base: the tests after it still read
            // from the frame's start. What it loads itself proves nothing here.
            dpf::ir::Step::Eval(_) => {}
            dpf::ir::Step::Shift(_) => break,
        }
    }
    u16::try_from(proven).unwrap_or(u16::MAX)
}

/// What `filter_bind` bound.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BindOutcome {
    /// The filter id.
    pub id: u32,
    /// Whether it is a monitor filter (claims no port; bound on a monitor capability).
    pub monitor: bool,
}

/// The JIT code bytes `filter` is charged: the code it compiles to in a trie of its own. The
/// code actually mapped is shared (the demux merges every claiming filter, a ring's monitors
/// share one trie), so this is what the filter would cost alone, the same whoever else binds.
fn code_bytes_alone(filter: &dpf::Filter) -> Result<u64, Error> {
    let mut alone = Trie::new();
    alone
        .insert(filter.clone())
        .map_err(|_| Error::InvalidArgument)?;
    let compiled = dpf::jit::compile(&alone).map_err(|_| Error::InvalidArgument)?;
    Ok(compiled.code().len() as u64)
}

/// `filter_bind(filter, length, ring, ring_length, monitor_cap)` from `env`; `monitor` says
/// whether the capability passed is a live monitor capability of `env`'s, `code_budget` the
/// JIT code bytes it has left (`Exhausted` if the filter's code needs more). The caller
/// attaches the binding's capability ([`attach_capability`]) or, if it cannot make one,
/// unbinds ([`unbind`]).
pub fn filter_bind(
    env: &Environment,
    filter: UserSlice,
    ring: UserSlice,
    monitor: bool,
    code_budget: u64,
) -> Result<BindOutcome, Error> {
    if filter.length_bytes() > abi::FILTER_MAX_BYTES {
        return Err(Error::InvalidArgument);
    }
    let slot_count =
        abi::ring_slots(ring.address(), ring.length_bytes()).ok_or(Error::InvalidArgument)?;
    let mut bytes = Vec::new();
    crate::usermem::read_chunks(env, filter, |chunk| bytes.extend_from_slice(chunk))?;
    env.mappings
        .check(ring.address(), ring.length_bytes(), Access::READ_WRITE)?;
    // Only pages the loader mapped, which live as long as the environment: a `page_map`ped
    // page can be unmapped or revoked while bound, and the kernel would write a freed frame.
    let slots = (0..slot_count)
        .map(|index| {
            let address = abi::slot_address(ring.address(), index);
            if env.page_bindings.contains(address) {
                return Err(Error::InvalidArgument);
            }
            env.space
                .user_physical_address(address)
                .ok_or(Error::BadAddress)
        })
        .collect::<Result<Vec<u64>, Error>>()?;
    let owner = env.id;
    let mut unverified = dpf::wire::decode(&bytes).map_err(|_| Error::InvalidArgument)?;
    let mut net = NET.lock();
    let id = net.next_filter;
    unverified.id = FilterId(id);
    let filter = unverified.verify().map_err(|_| Error::InvalidArgument)?;
    let claim = dpf::claim::claim(&filter);
    let proven_len = proven_length(&filter);
    let code_bytes = code_bytes_alone(&filter)?;
    match &claim {
        None if !monitor => return Err(Error::Denied),
        None => {}
        Some(claim) => {
            let taken = net
                .rings
                .iter()
                .filter(|ring| ring.owner != owner)
                .flat_map(|ring| ring.filters.iter())
                .any(|bound| bound.claim.is_some_and(|other| other.overlaps(claim)));
            if taken {
                return Err(Error::AddressInUse);
            }
        }
    }
    if net.nic.is_none() {
        return Err(Error::InvalidArgument);
    }
    if code_bytes > code_budget {
        return Err(Error::Exhausted);
    }
    let index = match net
        .rings
        .iter()
        .position(|r| r.owner == owner && r.address == ring.address())
    {
        Some(index) if net.rings[index].slots.len() == slots.len() => index,
        Some(_) => return Err(Error::InvalidArgument),
        None => {
            net.rings.push(Ring::new(owner, ring.address(), slots));
            net.rings.len() - 1
        }
    };
    let Net {
        shared,
        rings,
        counters,
        ..
    } = &mut *net;
    let target = &mut rings[index];
    let installed = if claim.is_some() {
        bind_shared(shared, counters, filter, (id, owner, target.address))
    } else {
        let mut trie = target.trie.clone();
        trie.insert(filter)
            .map_err(|_| Error::InvalidArgument)
            .and_then(|_| swap_in(target, trie))
    };
    if let Err(error) = installed {
        if target.filters.is_empty() {
            rings.remove(index);
        }
        return Err(error);
    }
    let monitor = claim.is_none();
    target.filters.push(BoundFilter {
        id,
        claim,
        capability: CapHandle::NONE,
        proven_len,
        code_bytes,
    });
    net.next_filter += 1;
    Ok(BindOutcome { id, monitor })
}

/// Records the capability made for binding `id` (see [`filter_bind`]).
pub fn attach_capability(id: u32, capability: CapHandle) {
    let mut net = NET.lock();
    if let Some(bound) = net
        .rings
        .iter_mut()
        .flat_map(|ring| ring.filters.iter_mut())
        .find(|bound| bound.id == id)
    {
        bound.capability = capability;
    }
}

/// The capability binding `id` lives by, and who holds it (the environment that bound it).
pub fn binding_capability(id: u32) -> Option<(CapHandle, EnvId)> {
    let net = NET.lock();
    net.rings.iter().find_map(|ring| {
        ring.filters
            .iter()
            .find(|bound| bound.id == id)
            .map(|bound| (bound.capability, ring.owner))
    })
}

/// A capability naming binding `id` was removed: if it is the one the binding lives by, the
/// filter is unbound (its port claim goes with it).
pub fn capability_removed(id: u32, handle: CapHandle) {
    if binding_capability(id).is_some_and(|(capability, _)| capability == handle) {
        unbind(id);
    }
}

/// Removes binding `id`, whoever made it (the capability checks are the caller's: see
/// [`capability_removed`]). Frames already in the ring stay there. Does nothing for an id
/// that is not bound.
pub fn unbind(id: u32) {
    let mut net = NET.lock();
    net.handlers.retain(|bound| bound.filter != id);
    let Some(index) = net
        .rings
        .iter()
        .position(|ring| ring.filters.iter().any(|bound| bound.id == id))
    else {
        return;
    };
    let Net {
        shared,
        rings,
        counters,
        ..
    } = &mut *net;
    if let Some(shared) = shared.as_mut()
        && shared.remove(id)
    {
        if let Err(error) = shared.sync(counters) {
            // The old code stays mapped; the filter is out of `filters`, so the frames it
            // still matches reach no ring. The next change installs afresh.
            log!("net: unbinding filter {id}: could not update the shared demux code: {error:?}");
        }
        let ring = &mut rings[index];
        ring.filters.retain(|bound| bound.id != id);
        if ring.filters.is_empty() {
            rings.remove(index);
        }
        return;
    }
    let ring = &mut net.rings[index];
    let handle = ring
        .trie
        .filters()
        .find(|(_, filter)| filter.id().0 == id)
        .map(|(handle, _)| handle);
    let mut trie = ring.trie.clone();
    // Removing a filter the trie holds and compiling what is left fails only without memory
    // for the code; then the whole ring goes (every filter on it stops, and their claims with
    // them) rather than keep delivering for a filter that is no longer bound.
    let swapped =
        handle.is_some_and(|handle| trie.remove(handle).is_ok() && swap_in(ring, trie).is_ok());
    if !swapped {
        log!(
            "net: unbinding filter {id}: could not regenerate the ring's code; ring {:#x} unbound",
            ring.address
        );
        let removed = net.rings.remove(index);
        // Its port-claiming filters live in the shared demux: they go with the ring, or their
        // ports would stay claimed by filters that reach nothing.
        let Net {
            shared, counters, ..
        } = &mut *net;
        if let Some(shared) = shared.as_mut() {
            let mut changed = false;
            for bound in &removed.filters {
                changed |= shared.remove(bound.id);
            }
            if changed && let Err(error) = shared.sync(counters) {
                log!(
                    "net: unbinding ring {:#x}: could not update the shared demux code: {error:?}",
                    removed.address
                );
            }
        }
        return;
    }
    ring.filters.retain(|bound| bound.id != id);
    if ring.filters.is_empty() {
        net.rings.remove(index);
    }
}

/// How many filters `owner` has bound (its quota's `Filters`).
pub fn filters_of(owner: EnvId) -> u64 {
    NET.lock()
        .rings
        .iter()
        .filter(|ring| ring.owner == owner)
        .map(|ring| ring.filters.len() as u64)
        .sum()
}

/// The JIT code bytes `owner` is charged (its quota's `JitCodeBytes`): its filters' and its
/// handlers'.
pub fn code_bytes_of(owner: EnvId) -> u64 {
    let net = NET.lock();
    let filters: u64 = net
        .rings
        .iter()
        .filter(|ring| ring.owner == owner)
        .flat_map(|ring| ring.filters.iter())
        .map(|bound| bound.code_bytes)
        .sum();
    let handlers: u64 = net
        .handlers
        .iter()
        .filter(|bound| bound.owner == owner)
        .map(|bound| bound.code_bytes)
        .sum();
    filters + handlers
}
