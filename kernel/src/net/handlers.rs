//! ASH handlers bound to filters (`ash_bind`): verified, compiled, their region pages pinned.
use super::{NET, jit};
use crate::env::{EnvId, Environment};
use crate::usermem::UserSlice;
use alloc::boxed::Box;
use alloc::vec::Vec;
use exo_abi::Error;
use exo_abi::cap::CapHandle;
use exo_abi::net::{self as abi, AshCounter};
use exo_kernel::elf::Access;

/// One bound handler (`ash_bind`).
pub(super) struct BoundHandler {
    pub(super) id: u32,
    /// The filter it runs for.
    pub(super) filter: u32,
    pub(super) owner: EnvId,
    pub(super) handler: ash::Handler,
    /// Physical address of each page of each region, pinned while bound: loader-mapped pages
    /// live as long as the owner (whose handlers go before its pages); a `page_map`ped one
    /// cannot be unmapped or reprotected while pinned, and revoking it unbinds the handler
    /// first ([`ash_frames_revoked`]).
    pub(super) regions: Vec<Vec<u64>>,
    /// The owner's virtual addresses of those pages.
    pub(super) pinned: Vec<u64>,
    /// Boxed: the reply buffer is 1.5 KiB.
    pub(super) machine: Box<ash::Machine>,
    /// The handler compiled (`ash::jit`), which is what runs.
    pub(super) code: jit::HandlerCode,
    pub(super) counters: [u64; AshCounter::ALL.len()],
    /// The capability `ash_bind` made (`NONE` until attached in the same call).
    pub(super) capability: CapHandle,
    /// Its compiled code's bytes (charged to its owner's `JitCodeBytes`).
    pub(super) code_bytes: u64,
}

impl BoundHandler {
    pub(super) fn disabled(&self) -> bool {
        self.counters[AshCounter::Disabled as usize] != 0
    }
}

/// How many handlers `owner` has bound (its quota's `Handlers`).
pub fn handlers_of(owner: EnvId) -> u64 {
    NET.lock()
        .handlers
        .iter()
        .filter(|bound| bound.owner == owner)
        .count() as u64
}

/// `ash_bind(binding, handler, regions)` from `env`, for filter `filter` (the caller checked
/// the binding capability), `code_budget` the JIT code bytes it has left (`Exhausted` if the
/// compiled handler needs more). The caller attaches the handler's capability
/// ([`ash_attach_capability`]) or, if it cannot make one, unbinds ([`ash_unbind`]).
pub fn ash_bind(
    env: &Environment,
    filter: u32,
    handler: UserSlice,
    regions: UserSlice,
    code_budget: u64,
) -> Result<u32, Error> {
    if handler.length_bytes() > abi::ASH_HANDLER_MAX_BYTES
        || regions.length_bytes() > 8 * ash::ir::MAX_REGIONS as u64
    {
        return Err(Error::InvalidArgument);
    }
    let mut bytes = Vec::new();
    crate::usermem::read_chunks(env, handler, |chunk| bytes.extend_from_slice(chunk))?;
    let mut region_bytes = Vec::new();
    crate::usermem::read_chunks(env, regions, |chunk| region_bytes.extend_from_slice(chunk))?;
    let unverified = ash::wire::decode(&bytes).map_err(|error| {
        log!(
            "net: ash_bind by env {}: undecodable handler: {error:?}",
            env.id
        );
        Error::InvalidArgument
    })?;
    let proven_len = {
        let net = NET.lock();
        let ring = net
            .rings
            .iter()
            .find(|ring| ring.filters.iter().any(|bound| bound.id == filter))
            .ok_or(Error::InvalidCapability)?;
        if ring.owner != env.id {
            return Err(Error::Denied);
        }
        if net.handlers.iter().any(|bound| bound.filter == filter) {
            return Err(Error::AddressInUse);
        }
        // Within the environment's quota (checked by the caller) and never more than this.
        if net
            .handlers
            .iter()
            .filter(|bound| bound.owner == env.id)
            .count()
            >= abi::ASH_MAX_HANDLERS
        {
            return Err(Error::Exhausted);
        }
        ring.filters
            .iter()
            .find(|bound| bound.id == filter)
            .map_or(0, |bound| bound.proven_len)
    };
    let context = ash::Context {
        min_packet_len: proven_len,
        ..ash::Context::default()
    };
    let handler = unverified.verify(&context).map_err(|error| {
        log!("net: ash_bind by env {}: {error}", env.id);
        Error::InvalidArgument
    })?;
    if region_bytes.len() != 8 * handler.regions().len() {
        return Err(Error::InvalidArgument);
    }
    let mut pinned = Vec::with_capacity(handler.regions().len());
    let mut pinned_pages = Vec::new();
    for (declared, address) in handler.regions().iter().zip(region_bytes.chunks_exact(8)) {
        let mut word = [0u8; 8];
        word.copy_from_slice(address);
        let address = u64::from_le_bytes(word);
        let pages = u64::from(declared.len).div_ceil(exo_abi::layout::PAGE_SIZE_BYTES);
        if !address.is_multiple_of(exo_abi::layout::PAGE_SIZE_BYTES) {
            return Err(Error::InvalidArgument);
        }
        let length = pages * exo_abi::layout::PAGE_SIZE_BYTES;
        env.mappings.check(address, length, Access::READ_WRITE)?;
        let frames = (0..pages)
            .map(|page| {
                let page_address = address + page * exo_abi::layout::PAGE_SIZE_BYTES;
                pinned_pages.push(page_address);
                env.space
                    .user_physical_address(page_address)
                    .ok_or(Error::BadAddress)
            })
            .collect::<Result<Vec<u64>, Error>>()?;
        pinned.push(frames);
    }
    let compiled = ash::jit::compile(&handler).map_err(|error| {
        log!("net: ash_bind by env {}: compiling: {error}", env.id);
        Error::InvalidArgument
    })?;
    let code_bytes = compiled.code().len() as u64;
    if code_bytes > code_budget {
        return Err(Error::Exhausted);
    }
    let code = jit::HandlerCode::install(&compiled).map_err(|error| match error {
        jit::InstallError::OutOfMemory => Error::OutOfMemory,
        jit::InstallError::BadLayout => Error::InvalidArgument,
    })?;
    let mut net = NET.lock();
    // Checked again under the lock held to the end (nothing else runs meanwhile, but keep the
    // invariants local).
    if net.handlers.iter().any(|bound| bound.filter == filter) {
        return Err(Error::AddressInUse);
    }
    let id = net.next_handler;
    net.next_handler += 1;
    log!(
        "net: env {} bound handler {id} to filter {filter} ({} instructions, cost {}, packets >= {} bytes, {} bytes of code)",
        env.id,
        handler.code().len(),
        handler.cost(),
        proven_len,
        compiled.code().len()
    );
    net.handlers.push(BoundHandler {
        id,
        filter,
        owner: env.id,
        handler,
        regions: pinned,
        pinned: pinned_pages,
        machine: Box::new(ash::Machine::new()),
        code,
        counters: [0; AshCounter::ALL.len()],
        capability: CapHandle::NONE,
        code_bytes,
    });
    Ok(id)
}

/// Whether page `address` of `owner` is a region page of one of its handlers (then it may be
/// neither unmapped nor reprotected).
pub fn ash_pinned(owner: EnvId, address: u64) -> bool {
    NET.lock()
        .handlers
        .iter()
        .any(|bound| bound.owner == owner && bound.pinned.contains(&address))
}

/// The `(holder, frame)` pairs in `frames` are being taken from their holders (capabilities
/// revoked, deleted or repossessed): every handler of a holder with a region page among its
/// frames is unbound first. Returns (owner, handler id) of each, for the caller to tell the
/// owners.
pub fn ash_frames_revoked(frames: &[(EnvId, u64)]) -> Vec<(EnvId, u32)> {
    let mut net = NET.lock();
    let mut unbound = Vec::new();
    net.handlers.retain(|bound| {
        let hit = bound.regions.iter().flatten().any(|&page| {
            let frame = page & !(exo_abi::layout::PAGE_SIZE_BYTES - 1);
            frames.contains(&(bound.owner, frame))
        });
        if hit {
            unbound.push((bound.owner, bound.id));
        }
        !hit
    });
    for (owner, id) in &unbound {
        log!("net: handler {id} of env {owner} unbound: a region page was revoked");
    }
    unbound
}

/// Records the capability made for handler `id` (see [`ash_bind`]).
pub fn ash_attach_capability(id: u32, capability: CapHandle) {
    let mut net = NET.lock();
    if let Some(bound) = net.handlers.iter_mut().find(|bound| bound.id == id) {
        bound.capability = capability;
    }
}

/// Removes handler `id` (nothing if it is not bound).
pub fn ash_unbind(id: u32) {
    NET.lock().handlers.retain(|bound| bound.id != id);
}

/// A capability naming handler `id` was removed: if it is the one the handler lives by, the
/// handler is unbound.
pub fn ash_capability_removed(id: u32, handle: CapHandle) {
    let mut net = NET.lock();
    net.handlers
        .retain(|bound| bound.id != id || bound.capability != handle);
}

/// `ash_counter` of handler `id`.
pub fn ash_counter(id: u32, index: u64) -> Result<u64, Error> {
    let counter = AshCounter::from_index(index).ok_or(Error::InvalidArgument)?;
    let net = NET.lock();
    let bound = net
        .handlers
        .iter()
        .find(|bound| bound.id == id)
        .ok_or(Error::InvalidCapability)?;
    Ok(bound.counters[counter as usize])
}
