//! Upcalls: the frame written below an environment's stack pointer, the upcalls due when it
//! is dispatched, and ending it when a frame does not fit.
use super::*;

fn upcall_frame_bytes(upcall: &UpcallFrame) -> [u8; UPCALL_FRAME_BYTES as usize] {
    let words = [
        upcall.kind,
        upcall.error_code,
        upcall.fault_address,
        upcall.rax,
        upcall.rcx,
        upcall.rdx,
        upcall.rsi,
        upcall.rdi,
        upcall.r8,
        upcall.r9,
        upcall.r10,
        upcall.r11,
        upcall.rsp,
        upcall.rflags,
        upcall.rip,
    ];
    let mut bytes = [0u8; UPCALL_FRAME_BYTES as usize];
    for (chunk, word) in bytes.chunks_exact_mut(8).zip(words) {
        chunk.copy_from_slice(&word.to_le_bytes());
    }
    bytes
}

/// Writes an upcall frame for the context in `frame` on its stack and redirects it to
/// `entry`. Fails (changing nothing) when the frame does not fit in writable user memory.
pub(super) fn deliver(
    env: &mut Environment,
    frame: &mut TrapFrame,
    entry: u64,
    kind: u64,
    error_code: u64,
    fault_address: u64,
) -> Result<(), Error> {
    let at = upcall::frame_address(frame.rsp).ok_or(Error::BadAddress)?;
    let upcall = UpcallFrame {
        kind,
        error_code,
        fault_address,
        rax: frame.rax,
        rcx: frame.rcx,
        rdx: frame.rdx,
        rsi: frame.rsi,
        rdi: frame.rdi,
        r8: frame.r8,
        r9: frame.r9,
        r10: frame.r10,
        r11: frame.r11,
        rsp: frame.rsp,
        rflags: frame.rflags,
        rip: frame.rip,
    };
    crate::usermem::write_bytes(env, at, &upcall_frame_bytes(&upcall))?;
    frame.rip = entry;
    frame.rcx = entry;
    frame.rflags = USER_RFLAGS;
    frame.r11 = USER_RFLAGS;
    frame.rsp = at;
    frame.rdi = at;
    Ok(())
}

/// Whether `address` may be an entry point or stack top (user half; canonical).
pub fn is_user_address(address: u64) -> bool {
    address != 0 && exo_abi::layout::range_is_user(address, 0) && address < USER_END
}

impl Kernel {
    /// Loads `id`'s context and page table; at a slice start, delivers the upcalls it is due.
    /// `false` when an upcall frame did not fit and `id` was ended instead (nothing runs yet).
    pub(super) fn run(&mut self, frame: &mut TrapFrame, id: EnvId, slice_start: bool) -> bool {
        self.set_running(id);
        // Unreachable with `id` gone: both callers found it alive in this critical section
        // (`try_schedule` through `resolve`, `yield_to` through `env`), and nothing between
        // there and here ends an environment.
        let env = self.env_mut(id).expect("scheduled environments exist");
        *frame = env.context;
        if env.state != State::Runnable {
            return true;
        }
        env.dispatches += 1;
        let mut undeliverable = false;
        if env.revoke_upcall_pending {
            env.revoke_upcall_pending = false;
            let entry = env.upcall(UpcallKind::Revoke);
            if let (Some(revocation), true) = (env.revocation.as_ref(), entry != 0) {
                let wanted = revocation.count.saturating_sub(revocation.returned);
                undeliverable |= deliver(
                    env,
                    frame,
                    entry,
                    FRAME_REVOKE,
                    wanted,
                    revocation.deadline_tick,
                )
                .is_err();
            }
        }
        if env.packet_upcall_due > 0 {
            let entry = env.upcall(UpcallKind::Packet);
            let copies = core::mem::take(&mut env.packet_upcall_due);
            if entry != 0 {
                undeliverable |= deliver(env, frame, entry, FRAME_PACKET, copies, 0).is_err();
            }
        }
        if let Some(upcall) = env.handler_upcalls_due.take_oldest() {
            let entry = env.upcall(UpcallKind::Packet);
            if entry != 0 {
                undeliverable |= deliver(
                    env,
                    frame,
                    entry,
                    FRAME_ASH_UPCALL,
                    u64::from(upcall.handler),
                    upcall.argument,
                )
                .is_err();
            }
        }
        if !env.ash_disabled_due.is_empty() {
            let (id, aborts) = env.ash_disabled_due.remove(0);
            let entry = env.upcall(UpcallKind::AshDisabled);
            if entry != 0 {
                undeliverable |=
                    deliver(env, frame, entry, FRAME_ASH_DISABLED, u64::from(id), aborts).is_err();
            }
        }
        let entry = env.upcall(UpcallKind::SliceStart);
        if slice_start && entry != 0 {
            undeliverable |= deliver(env, frame, entry, FRAME_SLICE_START, 0, 0).is_err();
        }
        if undeliverable {
            self.end_undeliverable(frame, id);
            return false;
        }
        true
    }

    /// Ends `id`, whose upcall frame did not fit below its stack pointer.
    fn end_undeliverable(&mut self, frame: &TrapFrame, id: EnvId) {
        if let Some(env) = self.env(id) {
            log!(
                "app {} (env {id}): no room for an upcall frame below rsp {:#x}: aborted",
                env.name,
                frame.rsp
            );
        }
        self.end_env(id, EnvStatus::Aborted);
    }

    /// Ends `id` (see [`Self::end_undeliverable`]) and runs someone else.
    pub(super) fn abort_undeliverable(&mut self, frame: &mut TrapFrame, id: EnvId) {
        self.end_undeliverable(frame, id);
        self.schedule(frame, Advance::SameSlice);
    }
}
