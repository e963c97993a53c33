//! Upcalls at user level: the entry the kernel jumps to, the handlers the library OS runs by
//! default, and the resume sequence that returns to the interrupted code without the kernel.
//!
//! Defaults: an exception first goes to the probes ([`probe_read`], [`probe_write`]: a faulting
//! probe returns `None`), then to the app's handler ([`on_exception`]); if none takes it, the
//! library reports it and exits with [`EXCEPTION_EXIT_STATUS`]. The end of a slice is answered
//! with `yield` (the policy the kernel expects of a cooperative environment). A revocation
//! request goes to the app's handler ([`on_revoke`]), or by default to the heap, which gives
//! back its free pages, least recently allocated first (the kernel repossesses the rest by
//! force after the deadline). Slice starts are counted ([`slice_starts`]). Packet arrival
//! upcalls go to the app's handler ([`on_packet`], which also asks the kernel for them); those
//! the app's ASH handlers raise, with their argument, to [`on_handler_upcall`]'s.
#![allow(unsafe_code)]
use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use exo_abi::upcall::{
    FRAME_ASH_DISABLED, FRAME_ASH_UPCALL, FRAME_PACKET, FRAME_REVOKE, FRAME_SLICE_END,
    FRAME_SLICE_START, UpcallFrame, UpcallKind,
};

pub use exo_abi::upcall::UpcallFrame as Frame;

/// Status an app exits with when an exception reaches the default handler.
pub const EXCEPTION_EXIT_STATUS: u8 = 61;

/// An exception handler: return `true` to resume at `frame.rip` (which it may change).
pub type ExceptionHandler = fn(&mut UpcallFrame) -> bool;
/// A revocation handler: `pages` wanted, `deadline_tick` when the kernel takes them.
pub type RevokeHandler = fn(pages: u64, deadline_tick: u64);
/// A packet-arrival handler: `copies` delivered to this app's rings since the last upcall.
/// It runs on the interrupted stack, between two instructions of the app: it should note the
/// arrival (an atomic) and let the main code drain the rings.
pub type PacketHandler = fn(copies: u64);
/// A handler-disabled handler: the id of the app's ASH handler the kernel disabled, and its
/// aborted runs.
pub type AshDisabledHandler = fn(handler: u64, aborts: u64);
/// A handler-upcall handler: the id of the app's ASH handler that raised the packet-arrival
/// upcall, and the argument it passed (its `r1`). Runs like a [`PacketHandler`].
pub type HandlerUpcallHandler = fn(handler: u64, argument: u64);

static EXCEPTION_HANDLER: AtomicUsize = AtomicUsize::new(0);
static REVOKE_HANDLER: AtomicUsize = AtomicUsize::new(0);
static PACKET_HANDLER: AtomicUsize = AtomicUsize::new(0);
static ASH_DISABLED_HANDLER: AtomicUsize = AtomicUsize::new(0);
static HANDLER_UPCALL_HANDLER: AtomicUsize = AtomicUsize::new(0);
static SLICE_STARTS: AtomicU64 = AtomicU64::new(0);
static SLICE_ENDS: AtomicU64 = AtomicU64::new(0);
static PROBE_FAULTED: AtomicU64 = AtomicU64::new(0);

/// Registers the library's upcall entry for exceptions, slice ends and revocation requests
/// (and slice starts with `count_slice_starts`).
pub fn install(count_slice_starts: bool) {
    let entry = upcall_entry as *const () as u64;
    for kind in [
        UpcallKind::Exception,
        UpcallKind::SliceEnd,
        UpcallKind::Revoke,
    ] {
        crate::sys::set_upcall(kind, entry, 0).expect("set_upcall");
    }
    if count_slice_starts {
        crate::sys::set_upcall(UpcallKind::SliceStart, entry, 0).expect("set_upcall");
    }
}

/// Sets the app's exception handler (after the probes, before the default).
pub fn on_exception(handler: ExceptionHandler) {
    EXCEPTION_HANDLER.store(handler as usize, Ordering::Relaxed);
}

/// Sets the app's revocation handler.
pub fn on_revoke(handler: RevokeHandler) {
    REVOKE_HANDLER.store(handler as usize, Ordering::Relaxed);
}

/// Sets the app's packet-arrival handler and registers the `Packet` upcall (needs
/// [`install`] for the entry's other kinds to be handled too).
pub fn on_packet(handler: PacketHandler) -> Result<(), exo_abi::Error> {
    PACKET_HANDLER.store(handler as usize, Ordering::Relaxed);
    crate::sys::set_upcall(UpcallKind::Packet, upcall_entry as *const () as u64, 0)
}

/// Sets the app's handler for the upcalls its ASH handlers raise and registers the `Packet`
/// upcall, which carries them (a [`on_packet`] handler, if set, still gets the arrivals).
pub fn on_handler_upcall(handler: HandlerUpcallHandler) -> Result<(), exo_abi::Error> {
    HANDLER_UPCALL_HANDLER.store(handler as usize, Ordering::Relaxed);
    crate::sys::set_upcall(UpcallKind::Packet, upcall_entry as *const () as u64, 0)
}

/// Sets the app's handler for "an ASH handler of yours was disabled" and registers that
/// upcall.
pub fn on_ash_disabled(handler: AshDisabledHandler) -> Result<(), exo_abi::Error> {
    ASH_DISABLED_HANDLER.store(handler as usize, Ordering::Relaxed);
    crate::sys::set_upcall(UpcallKind::AshDisabled, upcall_entry as *const () as u64, 0)
}

/// Slice-start upcalls received.
pub fn slice_starts() -> u64 {
    SLICE_STARTS.load(Ordering::Relaxed)
}

/// Slice-end upcalls received.
pub fn slice_ends() -> u64 {
    SLICE_ENDS.load(Ordering::Relaxed)
}

/// Reads the u64 at `address`, or `None` if the read faults (needs [`install`]).
pub fn probe_read(address: u64) -> Option<u64> {
    PROBE_FAULTED.store(0, Ordering::Relaxed);
    let value: u64;
    // SAFETY: the read either succeeds or faults; a fault is delivered to upcall_dispatch,
    // which recognises this instruction's address and resumes after it with the flag set.
    unsafe {
        core::arch::asm!("call {probe}", probe = sym probe_read_stub, in("rdi") address, lateout("rax") value, options(nostack));
    }
    (PROBE_FAULTED.load(Ordering::Relaxed) == 0).then_some(value)
}

/// Writes `value` at `address`; false if the write faults (needs [`install`]).
pub fn probe_write(address: u64, value: u64) -> bool {
    PROBE_FAULTED.store(0, Ordering::Relaxed);
    // SAFETY: as probe_read; the write goes to memory the caller names and accepts changing.
    unsafe {
        core::arch::asm!("call {probe}", probe = sym probe_write_stub, in("rdi") address, in("rsi") value, options(nostack));
    }
    PROBE_FAULTED.load(Ordering::Relaxed) == 0
}

/// `mov rax, [rdi]` (3 bytes) then `ret`.
#[unsafe(naked)]
extern "C" fn probe_read_stub() {
    core::arch::naked_asm!("mov rax, [rdi]", "ret")
}

/// `mov [rdi], rsi` (3 bytes) then `ret`.
#[unsafe(naked)]
extern "C" fn probe_write_stub() {
    core::arch::naked_asm!("mov [rdi], rsi", "ret")
}

const PROBE_INSTRUCTION_BYTES: u64 = 3;

/// The kernel enters here with `rsp` = `rdi` = the frame (callee-saved registers live).
#[unsafe(naked)]
extern "C" fn upcall_entry() {
    core::arch::naked_asm!(
        "and rsp, -16",
        "push rdi",
        "push rdi",
        "call {dispatch}",
        "pop rdi",
        "pop rdi",
        "jmp {resume}",
        dispatch = sym upcall_dispatch,
        resume = sym resume,
    )
}

/// Returns to the context a frame describes: every register, `rsp`, `rflags` and `rip`,
/// without entering the kernel (see `exo_abi::upcall` for why the red zone stays intact).
///
/// # Safety
/// `frame` must describe a context of this environment (normally one the kernel wrote).
#[unsafe(naked)]
pub unsafe extern "C" fn resume(frame: *const UpcallFrame) -> ! {
    core::arch::naked_asm!(
        "mov rax, [rdi + 96]",
        "mov rcx, [rdi + 104]",
        "mov [rax - 144], rcx",
        "mov rcx, [rdi + 112]",
        "mov [rax - 136], rcx",
        "mov rsp, rdi",
        "mov rax, [rsp + 24]",
        "mov rcx, [rsp + 32]",
        "mov rdx, [rsp + 40]",
        "mov rsi, [rsp + 48]",
        "mov rdi, [rsp + 56]",
        "mov r8, [rsp + 64]",
        "mov r9, [rsp + 72]",
        "mov r10, [rsp + 80]",
        "mov r11, [rsp + 88]",
        "mov rsp, [rsp + 96]",
        "lea rsp, [rsp - 144]",
        "popfq",
        "ret 128",
    )
}

extern "C" fn upcall_dispatch(frame: &mut UpcallFrame) {
    match frame.kind {
        0..32 => {
            let probe = frame.rip == probe_read_stub as *const () as u64
                || frame.rip == probe_write_stub as *const () as u64;
            if probe {
                PROBE_FAULTED.store(1, Ordering::Relaxed);
                frame.rip += PROBE_INSTRUCTION_BYTES;
                return;
            }
            let handler = EXCEPTION_HANDLER.load(Ordering::Relaxed);
            if handler != 0 {
                // SAFETY: only `on_exception` stores here, always an `ExceptionHandler`.
                let handler: ExceptionHandler = unsafe { core::mem::transmute(handler) };
                if handler(frame) {
                    return;
                }
            }
            crate::println!(
                "unhandled exception {} at rip {:#x} address {:#x} error {:#x}",
                frame.kind,
                frame.rip,
                frame.fault_address,
                frame.error_code
            );
            crate::sys::exit(EXCEPTION_EXIT_STATUS);
        }
        FRAME_SLICE_START => {
            SLICE_STARTS.fetch_add(1, Ordering::Relaxed);
        }
        FRAME_SLICE_END => {
            SLICE_ENDS.fetch_add(1, Ordering::Relaxed);
            crate::sys::yield_now();
        }
        FRAME_PACKET => {
            let handler = PACKET_HANDLER.load(Ordering::Relaxed);
            if handler != 0 {
                // SAFETY: only `on_packet` stores here, always a `PacketHandler`.
                let handler: PacketHandler = unsafe { core::mem::transmute(handler) };
                handler(frame.error_code);
            }
        }
        FRAME_ASH_UPCALL => {
            let handler = HANDLER_UPCALL_HANDLER.load(Ordering::Relaxed);
            if handler != 0 {
                // SAFETY: only `on_handler_upcall` stores here, always a
                // `HandlerUpcallHandler`.
                let handler: HandlerUpcallHandler = unsafe { core::mem::transmute(handler) };
                handler(frame.error_code, frame.fault_address);
            }
        }
        FRAME_ASH_DISABLED => {
            let handler = ASH_DISABLED_HANDLER.load(Ordering::Relaxed);
            if handler != 0 {
                // SAFETY: only `on_ash_disabled` stores here, always an `AshDisabledHandler`.
                let handler: AshDisabledHandler = unsafe { core::mem::transmute(handler) };
                handler(frame.error_code, frame.fault_address);
            }
        }
        FRAME_REVOKE => {
            let handler = REVOKE_HANDLER.load(Ordering::Relaxed);
            if handler != 0 {
                // SAFETY: only `on_revoke` stores here, always a `RevokeHandler`.
                let handler: RevokeHandler = unsafe { core::mem::transmute(handler) };
                handler(frame.error_code, frame.fault_address);
            } else {
                // The default policy: the heap's free pages, least recently allocated first.
                crate::heap::give_back(frame.error_code as usize);
            }
        }
        _ => {}
    }
}
