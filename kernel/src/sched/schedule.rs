//! The scheduling loop: who runs when a slice comes up (its owner, or the callee it is
//! blocked on), switching page tables and FPU state, and idling or ending the run when
//! nobody can run.
use super::*;

/// Enters the first environment; never returns.
pub fn start() -> ! {
    let mut frame = TrapFrame::default();
    with_kernel(|kernel| kernel.schedule(&mut frame, Advance::NextSlice));
    arch::user::enter_first(&frame)
}

/// What one attempt at scheduling did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Pick {
    /// Someone's context is in the frame.
    Ran,
    /// The one picked was ended instead of run; pick again.
    Ended,
    /// Nobody can run.
    Nobody,
}

/// Whether to move the slice cursor when scheduling.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Advance {
    /// Keep the current slice if its owner (or whom it calls) can run.
    SameSlice,
    /// Move on to the next slice.
    NextSlice,
}

impl Kernel {
    /// The environment that actually runs when `owner`'s slice comes up: itself, or the
    /// callee it is blocked on (PCT runs on the caller's time). `None` if nothing can run.
    fn resolve(envs: &[Option<Box<Environment>>], owner: EnvId) -> Option<EnvId> {
        let mut id = owner;
        for _ in 0..MAX_ENVS {
            let env = envs[slot(id)].as_deref().filter(|env| env.id == id)?;
            match env.state {
                State::Runnable | State::Serving(_) => return Some(id),
                State::Receiving | State::NetWaiting { .. } => return None,
                State::Calling(callee) => id = callee,
            }
        }
        None
    }

    /// Makes `id` the running environment (0: none): loads its page table and publishes its
    /// exception entry to the trap fast path (`arch::trap`). Every change of `running` goes
    /// through here.
    pub(super) fn set_running(&mut self, id: EnvId) {
        self.running = id;
        self.switch_fpu(id);
        let mut entry = 0;
        if let Some(env) = self.envs[slot(id)].as_deref().filter(|env| env.id == id) {
            if self.active_space != id {
                env.space.activate();
                self.active_space = id;
            }
            entry = env.upcall(UpcallKind::Exception);
        }
        arch::percpu::publish_exception_entry(entry);
    }

    /// Makes the x87/MMX/SSE registers `id`'s: saves the previous owner's (if it still
    /// exists) and loads `id`'s. With no environment running (0) the registers stay as they
    /// are, the last owner's.
    fn switch_fpu(&mut self, id: EnvId) {
        if id == 0 || id == self.fpu_owner {
            return;
        }
        let owner = self.fpu_owner;
        if let Some(previous) = self.envs[slot(owner)]
            .as_deref_mut()
            .filter(|env| env.id == owner)
        {
            previous.fpu.save();
        }
        if let Some(next) = self.envs[slot(id)].as_deref().filter(|env| env.id == id) {
            next.fpu.restore();
            self.fpu_owner = id;
        }
    }

    /// Publishes the running environment's exception entry again (after `set_upcall`).
    pub fn republish_exception_entry(&self) {
        let entry = self
            .env(self.running)
            .map_or(0, |env| env.upcall(UpcallKind::Exception));
        arch::percpu::publish_exception_entry(entry);
    }

    /// Picks who runs next and loads its context into `frame` (the running environment's
    /// context must already be saved, or it must have ended). Ends the run when nothing can
    /// run any more.
    pub fn schedule(&mut self, frame: &mut TrapFrame, mut advance: Advance) {
        loop {
            match self.try_schedule(frame, advance) {
                Pick::Ran => return,
                // An environment was ended on its way in: pick again, in this loop, not by
                // recursion (every environment could fail so, and the entry stack is small).
                Pick::Ended => {
                    advance = Advance::SameSlice;
                    continue;
                }
                Pick::Nobody => {}
            }
            if !self.any_net_waiting() {
                self.finish_or_end_waiters(frame);
                return;
            }
            self.idle();
            advance = Advance::NextSlice;
        }
    }

    /// Tries to pick who runs next and runs it.
    fn try_schedule(&mut self, frame: &mut TrapFrame, advance: Advance) -> Pick {
        let mut choice = None;
        if advance == Advance::SameSlice
            && let (_, Some(owner)) = self.slices.current()
            && let Some(runner) = Kernel::resolve(&self.envs, owner)
        {
            choice = Some((owner, runner, false));
        }
        if choice.is_none() {
            let envs = &mut self.envs;
            choice = self
                .slices
                .advance(|owner| {
                    let Some(runner) = Kernel::resolve(envs, owner) else {
                        return false;
                    };
                    let Some(env) = envs[slot(owner)].as_deref_mut() else {
                        return false;
                    };
                    if env.penalty > 0 {
                        env.penalty -= 1;
                        return false;
                    }
                    runner != 0
                })
                .and_then(|(_, owner)| {
                    Kernel::resolve(&self.envs, owner).map(|runner| (owner, runner, true))
                });
        }
        let Some((owner, runner, new_slice)) = choice else {
            return Pick::Nobody;
        };
        self.slice_owner = owner;
        if self.run(frame, runner, new_slice && runner == owner) {
            Pick::Ran
        } else {
            Pick::Ended
        }
    }
}
