//! Undoing what removed capabilities were used for (by `cap_delete`, `cap_revoke`, an ended
//! environment or a repossession): filters and handlers unbound, mappings removed, frames freed.
use super::*;

impl Kernel {
    /// Undoes what removed capabilities were used for: filters bound by them are unbound,
    /// their mappings go, and frames whose root capability went are freed (after every
    /// mapping of them is gone).
    pub fn undo(&mut self, removed: &[Removed]) {
        // Handlers writing into a page being taken away go first (before the unmapping and
        // the freeing below); their owners are told by the AshDisabled upcall.
        let frames: Vec<(EnvId, u64)> = removed
            .iter()
            .filter_map(|capability| match capability.object {
                Object::Page { frame } => Some((capability.owner, frame)),
                _ => None,
            })
            .collect();
        if !frames.is_empty() {
            for (owner, id) in crate::net::ash_frames_revoked(&frames) {
                if let Some(env) = self.env_mut(owner)
                    && env.upcall(UpcallKind::AshDisabled) != 0
                {
                    env.ash_disabled_due
                        .push((id, exo_abi::upcall::ASH_UNBOUND_REVOKED));
                }
            }
        }
        for capability in removed {
            match capability.object {
                Object::FilterBinding { id } => {
                    crate::net::capability_removed(id, capability.handle);
                }
                Object::AshHandler { id } => {
                    crate::net::ash_capability_removed(id, capability.handle);
                }
                _ => {}
            }
        }
        // The mappings of each removed capability, through the holder's index: the work
        // grows with what is removed, never with every mapping (interrupts are off).
        let mut by_owner: alloc::collections::BTreeMap<EnvId, Vec<CapHandle>> =
            alloc::collections::BTreeMap::new();
        for capability in removed {
            by_owner
                .entry(capability.owner)
                .or_default()
                .push(capability.handle);
        }
        for (owner, handles) in by_owner {
            let Some(env) = self.env_mut(owner) else {
                continue;
            };
            // Highest first: the region table shrinks from its end.
            for address in env.page_bindings.remove_all_of(handles) {
                env.space.unmap_borrowed(address);
                env.mappings.remove(address);
            }
        }
        for capability in removed {
            if let (true, Object::Page { frame }) = (capability.root, capability.object) {
                frames::free(x86_64::structures::paging::PhysFrame::containing_address(
                    x86_64::PhysAddr::new(frame),
                ));
            }
        }
    }
}
