//! Undoing what removed capabilities were used for, and taking back by force what an
//! environment did not return by its revocation deadline.
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
        // One pass over each holder's mappings for all of its removed capabilities (not one
        // per capability: a delete can remove thousands, the kernel runs with interrupts off).
        let mut by_owner: alloc::collections::BTreeMap<EnvId, alloc::collections::BTreeSet<u64>> =
            alloc::collections::BTreeMap::new();
        for capability in removed {
            by_owner
                .entry(capability.owner)
                .or_default()
                .insert(capability.handle.raw());
        }
        for (owner, handles) in by_owner {
            let Some(env) = self.env_mut(owner) else {
                continue;
            };
            let addresses: Vec<u64> = env
                .page_bindings
                .iter()
                .filter(|(_, binding)| handles.contains(&binding.cap.raw()))
                .map(|(&address, _)| address)
                .collect();
            // Newest first: the region table shrinks from its end.
            for address in addresses.into_iter().rev() {
                env.page_bindings.remove(&address);
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

    /// Takes by force what environments past their revocation deadline did not give back.
    pub(super) fn enforce_deadlines(&mut self, now: u64) {
        for index in 0..MAX_ENVS {
            let Some(env) = self.envs[index].as_deref_mut() else {
                continue;
            };
            if env
                .revocation
                .as_ref()
                .is_none_or(|revocation| now < revocation.deadline_tick)
            {
                continue;
            }
            let Some(revocation) = env.revocation.take() else {
                continue;
            };
            let id = env.id;
            let missing = revocation.count.saturating_sub(revocation.returned);
            let roots: Vec<CapHandle> = self
                .caps
                .owned_page_roots(id)
                .into_iter()
                .take(missing as usize)
                .collect();
            // Where each is mapped, from one pass over the mappings.
            let wanted: alloc::collections::BTreeSet<u64> =
                roots.iter().map(|handle| handle.raw()).collect();
            let mut mapped_at = alloc::collections::BTreeMap::new();
            if let Some(env) = self.env(id) {
                for (&address, binding) in &env.page_bindings {
                    if wanted.contains(&binding.cap.raw()) {
                        mapped_at.entry(binding.cap.raw()).or_insert(address);
                    }
                }
            }
            let mut taken = 0;
            for handle in roots {
                // `undo` ends no environment, so `id` is alive; were that to change, the
                // repossession stops here instead of panicking in a timer interrupt.
                let Some(env) = self.env_mut(id) else {
                    break;
                };
                let address = mapped_at.get(&handle.raw()).copied().unwrap_or(0);
                env.repossessed.push(RepossessedPage {
                    cap: handle.raw(),
                    address,
                });
                env.repossessed_total += 1;
                let mut removed = Vec::new();
                if self
                    .caps
                    .delete(handle, id, &mut |r| removed.push(r))
                    .is_ok()
                {
                    self.undo(&removed);
                    taken += 1;
                }
            }
            log!(
                "app {} (env {id}): revocation deadline: asked {}, given back {}, repossessed {taken}",
                self.name_of(id),
                revocation.count,
                revocation.returned
            );
        }
    }
}
