//! Protected control transfer and donation: entering another environment at its PCT entry,
//! returning, waiting for calls, and yielding the rest of a slice.
use super::*;

impl Kernel {
    /// `pct_call`/`pct_send`: enters `callee` at its PCT entry with the arguments in the
    /// registers of `frame`; the caller's context is saved first.
    pub fn pct_enter(
        &mut self,
        frame: &mut TrapFrame,
        callee: EnvId,
        synchronous: bool,
    ) -> Result<(), Error> {
        let caller = self.running;
        let target = self.env_mut(callee).ok_or(Error::PeerGone)?;
        if target.state != State::Receiving || callee == caller {
            return Err(Error::WouldBlock);
        }
        let entry = target.upcall(UpcallKind::Pct);
        let stack = target.pct_stack;
        // `pct_wait` refused to block without an entry, but check again what the frame will
        // hold: a callee that cannot be entered is not receiving.
        if !is_user_address(entry) || !is_user_address(stack) {
            return Err(Error::WouldBlock);
        }
        target.state = State::Serving(synchronous.then_some(caller));
        let env = self.current();
        frame.rax = 0;
        env.context = *frame;
        if synchronous {
            env.nested_in = match env.state {
                State::Serving(caller) => Some(caller),
                _ => None,
            };
            env.state = State::Calling(callee);
        }
        // Registers are the message: rsi, rdx, r10, r8, r9 pass through untouched; rdi says
        // who called; the caller's callee-saved registers are not the callee's business.
        frame.rdi = u64::from(caller);
        frame.rbx = 0;
        frame.rbp = 0;
        frame.r12 = 0;
        frame.r13 = 0;
        frame.r14 = 0;
        frame.r15 = 0;
        frame.rip = entry;
        frame.rcx = entry;
        frame.rflags = USER_RFLAGS;
        frame.r11 = USER_RFLAGS;
        frame.rsp = stack;
        self.set_running(callee);
        Ok(())
    }

    /// `pct_return`: back to the synchronous caller with the results in `frame`'s argument
    /// registers, or on with the slice after an asynchronous send.
    pub fn pct_return(&mut self, frame: &mut TrapFrame) -> Result<(), Error> {
        let id = self.running;
        let env = self.current();
        let State::Serving(caller) = env.state else {
            return Err(Error::InvalidArgument);
        };
        env.state = State::Receiving;
        env.slice_end_pending = false;
        let results = [frame.rdi, frame.rsi, frame.rdx, frame.r10, frame.r8];
        if let Some(caller) = caller
            && let Some(env) = self.env_mut(caller)
            && env.state == State::Calling(id)
        {
            env.call_ended();
            self.set_running(caller);
            let env = self.current();
            *frame = env.context;
            frame.rax = 0;
            [frame.rdi, frame.rsi, frame.rdx, frame.r10, frame.r8] = results;
            return Ok(());
        }
        self.schedule(frame, Advance::SameSlice);
        Ok(())
    }

    /// `yield_to`: donate the rest of the slice to `target`, or move to the next slice.
    pub fn yield_to(&mut self, frame: &mut TrapFrame, target: Option<EnvId>) -> Result<(), Error> {
        if let Some(target) = target {
            let env = self.env(target).ok_or(Error::PeerGone)?;
            if env.state != State::Runnable {
                return Err(Error::WouldBlock);
            }
        }
        frame.rax = 0;
        let env = self.current();
        env.slice_end_pending = false;
        env.context = *frame;
        match target {
            Some(target) => {
                if !self.run(frame, target, false) {
                    self.schedule(frame, Advance::SameSlice);
                }
            }
            None => self.schedule(frame, Advance::NextSlice),
        }
        Ok(())
    }

    /// `pct_wait`: the running environment gives up its context and waits for calls.
    pub fn pct_wait(&mut self, frame: &mut TrapFrame) -> Result<(), Error> {
        let env = self.current();
        if env.upcall(UpcallKind::Pct) == 0 || env.state != State::Runnable {
            return Err(Error::InvalidArgument);
        }
        env.state = State::Receiving;
        env.slice_end_pending = false;
        self.schedule(frame, Advance::SameSlice);
        Ok(())
    }
}
