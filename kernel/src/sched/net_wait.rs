//! The scheduler's side of the network: polling the NIC, `net_wait` and its wake-ups, and
//! idling while environments wait for frames.
use super::*;

impl Kernel {
    /// Whether an environment is blocked in `net_wait` (it will wake: deadlines are finite).
    pub(super) fn any_net_waiting(&self) -> bool {
        self.envs
            .iter()
            .flatten()
            .any(|env| matches!(env.state, State::NetWaiting { .. }))
    }

    /// Nothing can run, but environments wait for the network: sleeps until an interrupt
    /// (the NIC's, or the timer's, for the deadlines), takes what arrived and returns once
    /// someone was woken. Runs inside a system call or interrupt with the kernel lock held:
    /// the interrupts that arrive here only acknowledge their device and count ticks (see
    /// `arch::trap`), they never take that lock.
    pub(super) fn idle(&mut self) {
        loop {
            let (backlog, woken) = self.poll_network();
            if woken > 0 {
                return;
            }
            if backlog == crate::net::Backlog::Empty {
                arch::idle_until_interrupt();
            }
        }
    }

    /// Takes frames from the NIC (one budget), then wakes the `net_wait`ers that are due.
    /// Returns whether frames were left over and how many environments woke.
    pub(super) fn poll_network(&mut self) -> (crate::net::Backlog, usize) {
        let envs = &mut self.envs;
        // Counted after the poll: its report runs with the network's lock held.
        let mut upcalls_dropped = 0;
        let backlog = crate::net::poll(|owner, event| {
            let Some(env) = envs[slot(owner)]
                .as_deref_mut()
                .filter(|env| env.id == owner)
            else {
                return;
            };
            match event {
                crate::net::Event::Delivered(copies) => {
                    env.net_delivered += copies;
                    if env.upcall(UpcallKind::Packet) != 0 {
                        env.packet_upcall_due += copies;
                    }
                }
                crate::net::Event::HandlerUpcall(upcall) => {
                    // It wakes a net_wait as a wake does; the upcall itself is delivered
                    // when the environment next runs, whether or not that wait returned.
                    env.net_delivered += 1;
                    if env.upcall(UpcallKind::Packet) != 0 && !env.handler_upcalls_due.raise(upcall)
                    {
                        upcalls_dropped += 1;
                    }
                }
                crate::net::Event::HandlerDisabled { id, aborts } => {
                    if env.upcall(UpcallKind::AshDisabled) != 0 {
                        env.ash_disabled_due.push((id, aborts));
                    }
                }
            }
        });
        for _ in 0..upcalls_dropped {
            crate::net::count(NetCounter::AshRequestsDropped);
        }
        (backlog, self.wake_net_waiters())
    }

    /// Ends the `net_wait`s that are due (frames for the waiter, frames past the count it
    /// saw, or its deadline); the woken run at their next slice. Returns how many woke.
    pub(super) fn wake_net_waiters(&mut self) -> usize {
        let now = arch::timer::ticks();
        let received = crate::net::received();
        let mut woken = 0;
        for env in self.envs.iter_mut().flatten() {
            let State::NetWaiting {
                deadline_tick,
                rx_frames_seen,
            } = env.state
            else {
                continue;
            };
            let by_frames = env.net_delivered > 0 || received > rx_frames_seen;
            if !by_frames && now < deadline_tick {
                continue;
            }
            crate::net::count(if by_frames {
                NetCounter::WaitsWoken
            } else {
                NetCounter::WaitsTimedOut
            });
            env.state = State::Runnable;
            // The call's result says what arrived: no packet upcall for the same frames.
            env.packet_upcall_due = 0;
            env.context.rax =
                exo_abi::error::encode_result(Ok(core::mem::take(&mut env.net_delivered)));
            woken += 1;
        }
        woken
    }

    /// `net_wait(timeout_ticks, rx_frames_seen)`: polls the NIC; returns `Some(copies)` at
    /// once when the call is already satisfied (or must not block), else blocks the caller
    /// and schedules someone else (`None`: `frame` holds another context).
    pub fn net_wait(
        &mut self,
        frame: &mut TrapFrame,
        timeout_ticks: u64,
        rx_frames_seen: u64,
    ) -> Result<Option<u64>, Error> {
        if timeout_ticks > exo_abi::syscall::NET_WAIT_MAX_TICKS || !crate::net::has_nic() {
            return Err(Error::InvalidArgument);
        }
        self.poll_network();
        let received = crate::net::received();
        let env = self.current();
        if env.net_delivered > 0 || received > rx_frames_seen || timeout_ticks == 0 {
            env.packet_upcall_due = 0;
            return Ok(Some(core::mem::take(&mut env.net_delivered)));
        }
        env.state = State::NetWaiting {
            deadline_tick: arch::timer::ticks() + timeout_ticks,
            rx_frames_seen,
        };
        // Blocking gives the slice up, as `yield` does (it answers an end-of-slice upcall).
        env.slice_end_pending = false;
        env.context = *frame;
        crate::net::count(NetCounter::WaitsBlocked);
        self.schedule(frame, Advance::SameSlice);
        Ok(None)
    }

    /// The NIC interrupted ring 3: take its frames and wake whom they are for; a packet
    /// upcall due to the running environment goes straight into its context.
    pub(super) fn network_interrupt(&mut self, frame: &mut TrapFrame) {
        self.poll_network();
        let id = self.running;
        let Some(env) = self.env_mut(id) else {
            return;
        };
        if env.state != State::Runnable || env.packet_upcall_due == 0 {
            return;
        }
        let entry = env.upcall(UpcallKind::Packet);
        let copies = core::mem::take(&mut env.packet_upcall_due);
        if deliver(env, frame, entry, FRAME_PACKET, copies, 0).is_err() {
            self.abort_undeliverable(frame, id);
        }
    }
}
