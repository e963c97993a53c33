//! The shared demux: every port-claiming filter of every app merged into one trie, one code.
use super::counters::{Counters, bump};
use super::jit;
use crate::env::EnvId;
use alloc::collections::BTreeMap;
use dpf::FilterId;
use dpf::jit::Demux;
use dpf::trie::{FilterHandle, Score};
use exo_abi::Error;
use exo_abi::net::Counter;

/// Every port-claiming filter, merged, and its code.
pub(super) struct Shared {
    pub(super) demux: Demux,
    /// The demux's code as mapped; `None` while no filter is bound.
    pub(super) code: Option<jit::KernelCode>,
    /// The mapped code is not the demux's (an install failed): install afresh at the next
    /// change, never patch.
    pub(super) stale: bool,
    /// Each bound filter's trie handle and ring (owner, ring address).
    pub(super) filters: BTreeMap<u32, (FilterHandle, EnvId, u64)>,
}

impl Shared {
    /// Brings the mapped code up to the demux's: copies the patched table bytes, or maps the
    /// code generated anew (dropping the old: one CPU, interrupts off, see the module doc).
    /// Counts which it was.
    pub(super) fn sync(&mut self, counters: &mut Counters) -> Result<(), Error> {
        let patches = self.demux.take_patches().filter(|_| !self.stale);
        if let (Some(patches), Some(code)) = (&patches, self.code.as_mut()) {
            let compiled = self.demux.compiled().code();
            let written = patches
                .iter()
                .try_for_each(|&(start, end)| code.write_data(start, &compiled[start..end]));
            if written.is_ok() {
                if !patches.is_empty() {
                    bump(counters, Counter::DemuxPatched);
                }
                return Ok(());
            }
        }
        bump(counters, Counter::DemuxRegenerated);
        self.stale = true;
        self.code = if self.demux.trie().is_empty() {
            None
        } else {
            Some(install(self.demux.compiled())?)
        };
        self.stale = false;
        Ok(())
    }

    /// The ring (owner, address) of the filter `score` names, if it is still bound.
    pub(super) fn ring_of(&self, score: u64) -> Option<(EnvId, u64)> {
        let FilterId(id) = Score(score).id()?;
        self.filters
            .get(&id)
            .map(|&(_, owner, address)| (owner, address))
    }

    /// Unbinds filter `id`; then the code must be synced.
    pub(super) fn remove(&mut self, id: u32) -> bool {
        let Some((handle, _, _)) = self.filters.remove(&id) else {
            return false;
        };
        if self.demux.remove(handle).is_err() {
            // The trie and the code disagree now: the filter is gone from `filters`, so a
            // frame it still matches reaches no ring; the next change installs afresh.
            self.stale = true;
        }
        true
    }
}

/// Maps `compiled`, with the errors a system call reports.
pub(super) fn install(compiled: &dpf::jit::CompiledTrie) -> Result<jit::KernelCode, Error> {
    jit::KernelCode::install(compiled).map_err(|error| match error {
        jit::InstallError::OutOfMemory => Error::OutOfMemory,
        jit::InstallError::BadLayout => Error::InvalidArgument,
    })
}

/// Merges a port-claiming `filter` into the shared demux (made at the first such bind) for
/// ring `(owner, address)` as filter `id`, and brings the mapped code up to date; on failure
/// nothing is bound.
pub(super) fn bind_shared(
    shared: &mut Option<Shared>,
    counters: &mut Counters,
    filter: dpf::Filter,
    (id, owner, address): (u32, EnvId, u64),
) -> Result<(), Error> {
    if shared.is_none() {
        *shared = Some(Shared {
            demux: Demux::new().map_err(|_| Error::OutOfMemory)?,
            code: None,
            stale: false,
            filters: BTreeMap::new(),
        });
    }
    let Some(shared) = shared.as_mut() else {
        return Err(Error::OutOfMemory);
    };
    let (handle, _) = shared
        .demux
        .insert(filter)
        .map_err(|_| Error::InvalidArgument)?;
    if let Err(error) = shared.sync(counters) {
        // The mapped code is still the old one, for the filters bound before: take the new
        // filter out of the demux again (the next change installs afresh).
        let _ = shared.demux.remove(handle);
        shared.stale = true;
        return Err(error);
    }
    shared.filters.insert(id, (handle, owner, address));
    Ok(())
}
