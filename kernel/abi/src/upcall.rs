//! Upcalls: how the kernel enters an environment's own code, and the frame it leaves behind.
//!
//! An environment registers one entry per [`UpcallKind`] (`set_upcall`). When the kernel
//! delivers an exception or an event, it writes an [`UpcallFrame`] on the interrupted user
//! stack and jumps to the entry with `rdi` (and `rsp`) pointing at the frame. The frame holds
//! what the kernel had to take away to get there: the caller-saved registers, `rsp`, `rflags`
//! and `rip`. The callee-saved registers (`rbx`, `rbp`, `r12`..`r15`) are live and untouched,
//! so a handler written as an ordinary function preserves them. The handler resumes the
//! interrupted code itself (no kernel call): see [`RESUME_RED_ZONE_BYTES`].
//!
//! Placement: with `T` the interrupted `rsp`, the frame occupies
//! `[T - RESUME_RED_ZONE_BYTES - UPCALL_FRAME_BYTES, T - RESUME_RED_ZONE_BYTES)`: the 128-byte
//! red zone below `T` stays intact, and the frame's last two words (`rflags`, `rip`) sit at
//! `T - 144` and `T - 136`, so `lea rsp, [frame + 104]; popfq; ret 128` resumes with every
//! register and `rsp = T`. If the frame does not fit in writable memory the environment is
//! ended, as a machine ends on a double fault.

/// Bytes below the interrupted `rsp` the kernel leaves alone (the System V red zone).
pub const RESUME_RED_ZONE_BYTES: u64 = 128;

/// An upcall entry an environment can register (`set_upcall(kind, entry, stack)`).
#[repr(u64)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum UpcallKind {
    /// CPU exceptions in user mode (frame kind = the vector: 0 divide error, 3 breakpoint,
    /// 6 invalid opcode, 13 general protection, 14 page fault, ...). Without an entry, an
    /// exception ends the environment.
    Exception = 0,
    /// The environment's time slice begins (frame kind [`FRAME_SLICE_START`]).
    SliceStart = 1,
    /// Its time slice has ended (frame kind [`FRAME_SLICE_END`]): save what you need and
    /// `yield` before the next timer tick, or be penalized (skip a slice) and, after
    /// [`OVERSTAY_LIMIT`] overstays, aborted. Without an entry the kernel preempts silently.
    SliceEnd = 2,
    /// The kernel asks for pages back (frame kind [`FRAME_REVOKE`], `error_code` = pages
    /// wanted, `fault_address` = the tick of the deadline).
    Revoke = 3,
    /// Frames were delivered to the environment's packet rings (frame kind
    /// [`FRAME_PACKET`], `error_code` = copies delivered since the last packet upcall or
    /// `net_wait` return). Delivered when the environment next runs (at once if it is running
    /// when the frames arrive); frames that end a `net_wait` raise none (the call says so).
    /// The same entry takes the upcalls the environment's handlers raise (frame kind
    /// [`FRAME_ASH_UPCALL`], `error_code` = the handler's id, `fault_address` = the argument
    /// the handler passed), one per `Upcall` call, delivered when it next runs whether or not
    /// a `net_wait` returned meanwhile.
    Packet = 4,
    /// Protected control transfer entry; `stack` is the stack the entry starts on. Entered
    /// with `rdi` = caller's environment id and `rsi`, `rdx`, `r10`, `r8`, `r9` = the caller's
    /// arguments; no frame is written (the callee's earlier state is not kept).
    Pct = 5,
    /// One of the environment's handlers was disabled after too many aborted runs, or unbound
    /// because a page of its regions was revoked (frame kind [`FRAME_ASH_DISABLED`],
    /// `error_code` = the handler's id as `ash_bind` returned it, `fault_address` = its aborts,
    /// or [`ASH_UNBOUND_REVOKED`]). Delivered when the environment next runs; after aborts the
    /// kernel also wakes its `net_wait`.
    AshDisabled = 6,
}

impl UpcallKind {
    /// Number of kinds.
    pub const COUNT: usize = 7;

    /// Decodes a kind number.
    pub const fn from_number(number: u64) -> Option<UpcallKind> {
        match number {
            0 => Some(UpcallKind::Exception),
            1 => Some(UpcallKind::SliceStart),
            2 => Some(UpcallKind::SliceEnd),
            3 => Some(UpcallKind::Revoke),
            4 => Some(UpcallKind::Packet),
            5 => Some(UpcallKind::Pct),
            6 => Some(UpcallKind::AshDisabled),
            _ => None,
        }
    }
}

/// Frame kind of a slice-start upcall (exceptions use their vector, 0..32).
pub const FRAME_SLICE_START: u64 = 32;
/// Frame kind of a slice-end upcall.
pub const FRAME_SLICE_END: u64 = 33;
/// Frame kind of a revocation request.
pub const FRAME_REVOKE: u64 = 34;
/// Frame kind of a packet-arrival upcall.
pub const FRAME_PACKET: u64 = 35;
/// Frame kind of a handler-disabled upcall.
pub const FRAME_ASH_DISABLED: u64 = 36;
/// Frame kind of a packet-arrival upcall a handler raised (with its argument).
pub const FRAME_ASH_UPCALL: u64 = 37;
/// `fault_address` of a handler-disabled upcall for a handler unbound because a page of its
/// regions was revoked (rather than disabled after aborts).
pub const ASH_UNBOUND_REVOKED: u64 = u64::MAX;

/// End-of-slice upcalls an environment may overstay before the kernel aborts it.
pub const OVERSTAY_LIMIT: u64 = 3;

/// What the kernel leaves on the user stack for an upcall; `rdi` points at it.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UpcallFrame {
    /// Exception vector (0..32) or `FRAME_*` event.
    pub kind: u64,
    /// CPU error code (page fault bits: 1 present, 2 write, 4 user, 16 fetch), or the
    /// event's argument.
    pub error_code: u64,
    /// Faulting address for page faults (CR2), or the event's second argument.
    pub fault_address: u64,
    pub rax: u64,
    pub rcx: u64,
    pub rdx: u64,
    pub rsi: u64,
    pub rdi: u64,
    pub r8: u64,
    pub r9: u64,
    pub r10: u64,
    pub r11: u64,
    /// The interrupted stack pointer.
    pub rsp: u64,
    /// The interrupted flags.
    pub rflags: u64,
    /// Where the interrupted code resumes (for faults: the faulting instruction).
    pub rip: u64,
}

/// Size of [`UpcallFrame`].
pub const UPCALL_FRAME_BYTES: u64 = core::mem::size_of::<UpcallFrame>() as u64;

const _: () = assert!(UPCALL_FRAME_BYTES == 15 * 8);
const _: () = assert!(core::mem::offset_of!(UpcallFrame, rflags) == 104);
const _: () = assert!(core::mem::offset_of!(UpcallFrame, rip) == 112);

/// Where the kernel puts the frame for an interrupted `rsp`, if it does not wrap.
pub const fn frame_address(interrupted_rsp: u64) -> Option<u64> {
    interrupted_rsp.checked_sub(RESUME_RED_ZONE_BYTES + UPCALL_FRAME_BYTES)
}

/// An environment's state as `env_info(cap, EnvQuery::Status)` reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EnvStatus {
    /// Still alive.
    Running,
    /// Called `exit(status)`.
    Exited(u8),
    /// Ended by a CPU exception it had no handler for (the vector).
    Faulted(u8),
    /// Aborted by the kernel (overstayed its slice, destroyed, or its upcall frame did not fit).
    Aborted,
}

impl EnvStatus {
    /// Encoding in a result register.
    pub const fn encode(self) -> u64 {
        match self {
            EnvStatus::Running => 0,
            EnvStatus::Exited(status) => 0x100 | status as u64,
            EnvStatus::Faulted(vector) => 0x200 | vector as u64,
            EnvStatus::Aborted => 0x300,
        }
    }

    /// Decodes a result register.
    pub const fn decode(value: u64) -> Option<EnvStatus> {
        match value >> 8 {
            0 if value == 0 => Some(EnvStatus::Running),
            1 => Some(EnvStatus::Exited(value as u8)),
            2 => Some(EnvStatus::Faulted(value as u8)),
            3 if value == 0x300 => Some(EnvStatus::Aborted),
            _ => None,
        }
    }
}

/// What `env_info` reports.
#[repr(u64)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EnvQuery {
    /// [`EnvStatus`], encoded.
    Status = 0,
    /// Timer ticks charged to the environment's slices.
    TicksCharged = 1,
    /// End-of-slice upcalls it overstayed.
    Overstays = 2,
    /// Time slices it holds.
    Slices = 3,
    /// Pages the kernel repossessed from it.
    Repossessed = 4,
    /// Times the kernel switched to it (a slice began, a yield or PCT return reached it):
    /// how a test sees who ran.
    Dispatches = 5,
}

impl EnvQuery {
    /// Decodes a query number.
    pub const fn from_number(number: u64) -> Option<EnvQuery> {
        match number {
            0 => Some(EnvQuery::Status),
            1 => Some(EnvQuery::TicksCharged),
            2 => Some(EnvQuery::Overstays),
            3 => Some(EnvQuery::Slices),
            4 => Some(EnvQuery::Repossessed),
            5 => Some(EnvQuery::Dispatches),
            _ => None,
        }
    }
}

/// One entry of the repossession vector (`repossessed(buffer, capacity)`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RepossessedPage {
    /// The page capability the kernel deleted (now stale).
    pub cap: u64,
    /// A virtual address it was mapped at in this environment (0 if none).
    pub address: u64,
}

/// Size of [`RepossessedPage`].
pub const REPOSSESSED_PAGE_BYTES: u64 = 16;
const _: () = assert!(core::mem::size_of::<RepossessedPage>() as u64 == REPOSSESSED_PAGE_BYTES);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_round_trip() {
        for number in 0..UpcallKind::COUNT as u64 {
            assert_eq!(UpcallKind::from_number(number).unwrap() as u64, number);
        }
        assert_eq!(UpcallKind::from_number(UpcallKind::COUNT as u64), None);
    }

    #[test]
    fn statuses_round_trip() {
        for status in [
            EnvStatus::Running,
            EnvStatus::Exited(0),
            EnvStatus::Exited(255),
            EnvStatus::Faulted(14),
            EnvStatus::Aborted,
        ] {
            assert_eq!(EnvStatus::decode(status.encode()), Some(status));
        }
        assert_eq!(EnvStatus::decode(0x301), None);
        assert_eq!(EnvStatus::decode(0x400), None);
    }

    #[test]
    fn frame_sits_below_the_red_zone_with_rflags_and_rip_last() {
        let rsp = 0x10_0000;
        let frame = frame_address(rsp).unwrap();
        assert_eq!(frame + 104, rsp - 144);
        assert_eq!(frame + 112, rsp - 136);
        assert_eq!(frame + UPCALL_FRAME_BYTES, rsp - RESUME_RED_ZONE_BYTES);
        assert_eq!(frame_address(100), None);
    }
}
