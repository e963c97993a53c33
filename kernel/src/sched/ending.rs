//! Ending an environment: freeing what it held, waking its PCT caller, and what is
//! remembered of it afterwards (`env_info`).
use super::*;

impl Kernel {
    /// Ends environment `id`: frees its slices, capabilities (undoing what was derived from
    /// them elsewhere) and memory, and wakes a PCT caller waiting on it with `PeerGone`.
    pub fn end_env(&mut self, id: EnvId, status: EnvStatus) {
        let Some(env) = self.envs[slot(id)].take_if(|env| env.id == id) else {
            return;
        };
        match status {
            EnvStatus::Exited(code) => {
                log!("app {} (env {id}) exited with status {code}", env.name)
            }
            EnvStatus::Aborted => log!("app {} (env {id}) aborted", env.name),
            EnvStatus::Faulted(_) | EnvStatus::Running => {}
        }
        if env.ticks_charged > 0 {
            log!(
                "app {} (env {id}): the timer interrupted ring 3 {} times",
                env.name,
                env.ticks_charged
            );
        }
        if self.active_space == id {
            paging::activate_kernel();
            self.active_space = 0;
        }
        // Its packet rings are its pages: the kernel stops writing them before they go.
        crate::net::release(id);
        self.slices.release_all(id);
        let mut removed = Vec::new();
        self.caps.delete_owned_by(id, &mut |r| removed.push(r));
        self.undo(&removed);
        // Everything it paid for went with what it held; its limits go back to its parent.
        self.caps.forget(id);
        if let Some(parent) = env.parent {
            self.reserve(parent, &env.limits, false);
        }
        let serving = match env.state {
            State::Serving(caller) => caller,
            State::Calling(_) => env.nested_in.flatten(),
            State::Runnable | State::Receiving | State::NetWaiting { .. } => None,
        };
        if let Some(caller) = serving
            && let Some(caller) = self.env_mut(caller)
            && caller.state == State::Calling(id)
        {
            caller.call_ended();
            caller.context.rax = exo_abi::error::encode_result(Err(Error::PeerGone));
        }
        let pinned = if self.boot_apps.contains(&id) {
            Pinned::Yes
        } else {
            Pinned::No
        };
        self.ended.push(
            id,
            Ended {
                status,
                ticks_charged: env.ticks_charged,
                overstays: env.overstays,
                repossessed: env.repossessed_total,
                dispatches: env.dispatches,
            },
            pinned,
        );
        if self.running == id {
            self.set_running(0);
        }
        drop(env);
    }

    /// Status and accounting of an environment, alive or ended.
    pub fn env_info(&self, id: EnvId, query: upcall::EnvQuery) -> u64 {
        use upcall::EnvQuery;
        if let Some(env) = self.env(id) {
            return match query {
                EnvQuery::Status => EnvStatus::Running.encode(),
                EnvQuery::TicksCharged => env.ticks_charged,
                EnvQuery::Overstays => env.overstays,
                EnvQuery::Slices => self.slices.count(id) as u64,
                EnvQuery::Repossessed => env.repossessed_total,
                EnvQuery::Dispatches => env.dispatches,
            };
        }
        let Some(ended) = self.ended.get(id) else {
            // Forgotten (see ENDED_RECORDS): it ended, how is no longer known.
            return match query {
                EnvQuery::Status => EnvStatus::Aborted.encode(),
                _ => 0,
            };
        };
        match query {
            EnvQuery::Status => ended.status.encode(),
            EnvQuery::TicksCharged => ended.ticks_charged,
            EnvQuery::Overstays => ended.overstays,
            EnvQuery::Slices => 0,
            EnvQuery::Repossessed => ended.repossessed,
            EnvQuery::Dispatches => ended.dispatches,
        }
    }

    /// Ends the running environment and runs someone else.
    pub fn end_running(&mut self, frame: &mut TrapFrame, status: EnvStatus) {
        let id = self.running;
        self.end_env(id, status);
        self.schedule(frame, Advance::SameSlice);
    }
}
