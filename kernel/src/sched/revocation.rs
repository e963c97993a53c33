//! Visible revocation's last step: taking back by force what an environment did not return
//! by its revocation deadline (`request_pages`), and recording it in its repossession vector.
use super::*;

impl Kernel {
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
            // Where each is mapped (its lowest address), through the index.
            let mut mapped_at = alloc::collections::BTreeMap::new();
            if let Some(env) = self.env(id) {
                for handle in &roots {
                    if let Some(address) = env.page_bindings.first_address_of(*handle) {
                        mapped_at.insert(handle.raw(), address);
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
