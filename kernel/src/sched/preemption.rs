//! Ring 3 interrupted by a device: a timer tick (charging the slice, revocation deadlines,
//! the end-of-slice upcall and overstays) or the NIC's interrupt.
use super::*;

/// A timer interrupt in ring 3: charge the slice, enforce deadlines, end the slice.
pub fn timer_tick(frame: &mut TrapFrame) {
    with_kernel(|kernel| kernel.timer_tick(frame));
}

/// The NIC's interrupt: acknowledged at the device and the PIC in any mode; from ring 3 its
/// frames are taken at once, while idling (kernel mode, kernel lock held) the idle loop takes
/// them when the interrupt has returned.
pub fn network_interrupt(frame: &mut TrapFrame) {
    crate::net::acknowledge_interrupt();
    if let Some(irq) = crate::net::irq() {
        arch::timer::end_of_interrupt(irq);
    }
    if frame.interrupted_user() {
        with_kernel(|kernel| kernel.network_interrupt(frame));
    }
}

impl Kernel {
    fn timer_tick(&mut self, frame: &mut TrapFrame) {
        // NAPI's other half: frames left over by the last poll, and `net_wait` deadlines.
        self.poll_network();
        let now = arch::timer::ticks();
        let owner = self.slice_owner;
        if let Some(env) = self.env_mut(owner) {
            env.ticks_charged += 1;
        }
        self.enforce_deadlines(now);
        let id = self.running;
        let Some(env) = self.env_mut(id) else {
            // The running environment lost everything in a repossession? It still exists;
            // only a bug gets here.
            self.schedule(frame, Advance::NextSlice);
            return;
        };
        if env.slice_end_pending {
            env.overstays += 1;
            log!(
                "app {} (env {id}) overstayed its end-of-slice upcall ({}/{OVERSTAY_LIMIT})",
                env.name,
                env.overstays
            );
            if env.overstays >= OVERSTAY_LIMIT {
                log!("app {} (env {id}) overstayed too often", env.name);
                self.end_env(id, EnvStatus::Aborted);
            } else {
                env.penalty += 1;
                env.context = *frame;
            }
            self.schedule(frame, Advance::NextSlice);
            return;
        }
        let entry = env.upcall(exo_abi::upcall::UpcallKind::SliceEnd);
        if entry != 0 && id == owner && env.state == State::Runnable {
            if deliver(env, frame, entry, FRAME_SLICE_END, 0, 0).is_ok() {
                env.slice_end_pending = true;
            } else {
                self.abort_undeliverable(frame, id);
            }
            return;
        }
        env.context = *frame;
        self.schedule(frame, Advance::NextSlice);
    }
}
