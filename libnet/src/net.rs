//! The network calls: bind DPF filters to packet rings in this app's memory, wait for frames,
//! read the kernel's counters. Ring layout: `exo_abi::net`.
use core::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use exo_abi::cap::CapHandle;
use exo_abi::net::{FRAME_MAX_BYTES, RING_SLOT_BYTES, RING_SLOT_HEADER_BYTES};
use exo_abi::{Error, Syscall, error::decode_result};

#[allow(unsafe_code)]
fn syscall4(call: Syscall, a0: u64, a1: u64, a2: u64, a3: u64) -> u64 {
    let result: u64;
    // SAFETY: as `sys::syscall2`: the kernel preserves every register but rax, rcx and r11,
    // and only reads or writes memory the arguments name, after checking it.
    unsafe {
        core::arch::asm!(
            "syscall",
            inlateout("rax") call.number() => result,
            in("rdi") a0,
            in("rsi") a1,
            in("rdx") a2,
            in("r10") a3,
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack),
        );
    }
    result
}

/// A bound filter: its id, and the capability the binding lives by (rights
/// `CONTROL | GRANT`; delete it or pass it to [`filter_unbind`] to unbind).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FilterBinding {
    /// The filter id the kernel gave it.
    pub id: u64,
    /// The binding's capability.
    pub capability: CapHandle,
}

/// Binds an encoded filter (`dpf::wire`) to the ring at `ring` (`ring_length_bytes` long).
/// `monitor` is a monitor capability (right `MONITOR`), needed only for a filter that claims
/// no port; `CapHandle::NONE` otherwise.
#[allow(unsafe_code)]
pub fn filter_bind(
    filter: &[u8],
    ring: u64,
    ring_length_bytes: u64,
    monitor: CapHandle,
) -> Result<FilterBinding, Error> {
    let result: u64;
    let capability: u64;
    // SAFETY: as `sys::syscall5`; `filter_bind` also returns the capability in `rdi`, and the
    // kernel reads only the filter and checks the ring against this environment's mappings.
    unsafe {
        core::arch::asm!(
            "syscall",
            inlateout("rax") Syscall::FilterBind.number() => result,
            inlateout("rdi") filter.as_ptr() as u64 => capability,
            in("rsi") filter.len() as u64,
            in("rdx") ring,
            in("r10") ring_length_bytes,
            in("r8") monitor.raw(),
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack),
        );
    }
    decode_result(result).map(|id| FilterBinding {
        id,
        capability: CapHandle(capability),
    })
}

/// A bound handler: its id, and its capability (rights `CONTROL | GRANT`; delete it to unbind
/// the handler; unbinding the filter removes it too).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HandlerBinding {
    /// The handler id the kernel gave it.
    pub id: u64,
    /// The handler's capability.
    pub capability: CapHandle,
}

/// Binds an encoded handler (`ash::wire`) to the filter `binding` names, with `regions` the
/// addresses of the regions it declares, in order (see `Syscall::AshBind`).
#[allow(unsafe_code)]
pub fn ash_bind(
    binding: CapHandle,
    handler: &[u8],
    regions: &[u64],
) -> Result<HandlerBinding, Error> {
    let result: u64;
    let capability: u64;
    // SAFETY: as `sys::syscall5`; `ash_bind` also returns the capability in `rdi`, and the
    // kernel only reads the handler and the region list, after checking them.
    unsafe {
        core::arch::asm!(
            "syscall",
            inlateout("rax") Syscall::AshBind.number() => result,
            inlateout("rdi") binding.raw() => capability,
            in("rsi") handler.as_ptr() as u64,
            in("rdx") handler.len() as u64,
            in("r10") regions.as_ptr() as u64,
            in("r8") regions.len() as u64,
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack),
        );
    }
    decode_result(result).map(|id| HandlerBinding {
        id,
        capability: CapHandle(capability),
    })
}

/// One of a handler's counters.
pub fn ash_counter(handler: CapHandle, counter: exo_abi::net::AshCounter) -> Result<u64, Error> {
    decode_result(syscall4(
        Syscall::AshCounter,
        handler.raw(),
        counter as u64,
        0,
        0,
    ))
}

/// The monitor capability a boot app named in `monitor=APP` starts with (in the argument
/// register); meaningless for a spawned child, whose argument is its parent's.
pub fn boot_monitor() -> CapHandle {
    CapHandle(crate::env::argument())
}

/// Removes the binding `capability` names (the binder's own or a granted copy with
/// `CONTROL`).
pub fn filter_unbind(capability: CapHandle) -> Result<u64, Error> {
    decode_result(syscall4(Syscall::FilterUnbind, capability.raw(), 0, 0, 0))
}

/// Blocks until frames reach this app's rings (returns how many copies since the last wait
/// returned), the kernel has taken more than `rx_frames_seen` frames from the NIC
/// ([`exo_abi::syscall::NET_WAIT_OWN_FRAMES`] to ignore others' frames), or `timeout_ticks`
/// pass (0 copies). Other environments run meanwhile.
pub fn wait(timeout_ticks: u64, rx_frames_seen: u64) -> Result<u64, Error> {
    let _span = crate::profile::enter(crate::profile::Layer::Wait);
    decode_result(syscall4(
        Syscall::NetWait,
        timeout_ticks,
        rx_frames_seen,
        0,
        0,
    ))
}

/// Kernel counter `index` (`exo_abi::net::Counter`).
pub fn counter(index: u64) -> Result<u64, Error> {
    decode_result(syscall4(Syscall::NetCounter, index, 0, 0, 0))
}

/// Kernel counter `counter` of this app's ring starting at `ring` (only `Delivered`,
/// `RingFull` and `Matched` are kept per ring); `NotFound` when no filter is bound to such a ring of this
/// app's.
pub fn ring_counter(counter: exo_abi::net::Counter, ring: u64) -> Result<u64, Error> {
    if ring == 0 {
        return Err(Error::NotFound);
    }
    decode_result(syscall4(Syscall::NetCounter, counter as u64, ring, 0, 0))
}

/// Copies boot argument `index` into `buffer`; returns its length.
pub fn boot_argument(index: u64, buffer: &mut [u8]) -> Result<usize, Error> {
    decode_result(syscall4(
        Syscall::BootArgument,
        index,
        buffer.as_mut_ptr() as u64,
        buffer.len() as u64,
        0,
    ))
    .map(|n| n as usize)
}

/// A packet ring over `SLOTS` page-sized slots this app owns (place it in a `static`).
#[repr(C, align(4096))]
#[derive(Debug)]
pub struct Ring<const SLOTS: usize> {
    slots: [[AtomicU32; RING_SLOT_BYTES as usize / 4]; SLOTS],
    next: AtomicUsize,
}

impl<const SLOTS: usize> Ring<SLOTS> {
    /// An empty ring.
    pub const fn new() -> Self {
        Ring {
            slots: [const { [const { AtomicU32::new(0) }; RING_SLOT_BYTES as usize / 4] }; SLOTS],
            next: AtomicUsize::new(0),
        }
    }

    /// Address and length to pass to [`filter_bind`].
    pub fn region(&self) -> (u64, u64) {
        (self.slots.as_ptr() as u64, SLOTS as u64 * RING_SLOT_BYTES)
    }

    /// Takes the next frame, if the kernel has filled it: calls `read` with its captured length
    /// and the first word of the frame (enough for counting), then gives the slot back. One reader
    /// per ring.
    pub fn take(&self, read: impl FnOnce(u32, u32)) -> bool {
        let next = self.next.load(Ordering::Relaxed);
        let slot = &self.slots[next];
        let length = slot[0].load(Ordering::Acquire);
        if length == 0 {
            return false;
        }
        let first_word = slot[(RING_SLOT_HEADER_BYTES / 4) as usize].load(Ordering::Relaxed);
        read(length, first_word);
        slot[0].store(0, Ordering::Release);
        self.next.store((next + 1) % SLOTS, Ordering::Relaxed);
        true
    }
}

impl<const SLOTS: usize> Ring<SLOTS> {
    /// The next slot, if the kernel has filled it: its index and the frame's captured length
    /// (never more than a slot holds). The slot stays this app's until [`Ring::release`].
    pub fn peek(&self) -> Option<(usize, usize)> {
        let next = self.next.load(Ordering::Relaxed);
        let length = self.slots[next][0].load(Ordering::Acquire) as usize;
        if length == 0 {
            return None;
        }
        Some((next, length.min(FRAME_MAX_BYTES as usize)))
    }

    /// The first `length` bytes of the frame in slot `index`, lent in place. Call only for a
    /// slot [`Ring::peek`] returned and not yet released: the kernel does not write a slot
    /// while its owner word is set.
    #[allow(unsafe_code)]
    pub fn frame(&self, index: usize, length: usize) -> &[u8] {
        let slot = &self.slots[index % SLOTS];
        let length = length.min(FRAME_MAX_BYTES as usize);
        // SAFETY: 1. the slot is `RING_SLOT_BYTES` of memory inside `self`, and the frame
        // starts `RING_SLOT_HEADER_BYTES` into it, so `length` (at most FRAME_MAX_BYTES)
        // bytes from there stay inside it; `AtomicU32` has the size and alignment of `u32`,
        // so the words are plain bytes in memory. 2. While the owner word is non-zero (the
        // caller holds the slot, having seen it set with Acquire) neither the kernel nor this
        // library writes the frame bytes, and `release` needs `&self` after the returned
        // borrow ends in every caller (the device's receive token), so nothing mutates the
        // bytes while the slice lives.
        unsafe {
            core::slice::from_raw_parts(
                (slot.as_ptr() as *const u8).add(RING_SLOT_HEADER_BYTES as usize),
                length,
            )
        }
    }

    /// Gives slot `index` back to the kernel and moves on to the next one.
    pub fn release(&self, index: usize) {
        self.slots[index % SLOTS][0].store(0, Ordering::Release);
        self.next.store((index + 1) % SLOTS, Ordering::Relaxed);
    }

    /// Slots the kernel has filled and this app not yet released.
    pub fn occupied(&self) -> usize {
        self.slots
            .iter()
            .filter(|slot| slot[0].load(Ordering::Relaxed) != 0)
            .count()
    }
}

impl<const SLOTS: usize> Default for Ring<SLOTS> {
    fn default() -> Self {
        Self::new()
    }
}

/// Attempts [`transmit`] makes while the NIC's transmit queue is full, yielding the processor
/// between them. The device drains its queue on its own (under QEMU, in another host thread),
/// so a few yields usually find room; past them the frame is given up as the kernel's
/// `WouldBlock` (the caller counts it; TCP retransmits).
pub const TRANSMIT_ATTEMPTS: usize = 64;

/// Sends one frame gathered from `pieces`; the kernel's transmit check must allow it (its
/// source addresses and port are this app's own). While the NIC's queue is full (the kernel's
/// `WouldBlock`), tries again, at most [`TRANSMIT_ATTEMPTS`] times in all.
pub fn transmit(pieces: &[&[u8]]) -> Result<u64, Error> {
    patiently(|| try_transmit(pieces))
}

/// One attempt at [`transmit`]: `WouldBlock` when the NIC's transmit queue holds every
/// buffer, or this app's share of them, unsent.
pub fn try_transmit(pieces: &[&[u8]]) -> Result<u64, Error> {
    transmit_with(pieces, CapHandle::NONE)
}

/// Sends one frame gathered from `pieces` beyond the transmit check's allow list, through a
/// network-monitor capability with the `RAW_TRANSMIT` right (only its source MAC is checked);
/// waits for room in the NIC's queue as [`transmit`] does.
pub fn transmit_raw(pieces: &[&[u8]], raw: CapHandle) -> Result<u64, Error> {
    if raw == CapHandle::NONE {
        return Err(Error::InvalidArgument);
    }
    patiently(|| transmit_with(pieces, raw))
}

/// Runs `attempt` until it gives something other than `WouldBlock`, at most
/// [`TRANSMIT_ATTEMPTS`] times, yielding in between.
fn patiently(mut attempt: impl FnMut() -> Result<u64, Error>) -> Result<u64, Error> {
    let mut result = attempt();
    for _ in 1..TRANSMIT_ATTEMPTS {
        if result != Err(Error::WouldBlock) {
            break;
        }
        crate::sys::yield_now();
        result = attempt();
    }
    result
}

fn transmit_with(pieces: &[&[u8]], raw: CapHandle) -> Result<u64, Error> {
    let _span = crate::profile::enter(crate::profile::Layer::Transmit);
    let mut gather = [[0u64; 2]; exo_abi::syscall::NET_TRANSMIT_MAX_PIECES as usize];
    if pieces.len() > gather.len() {
        return Err(Error::InvalidArgument);
    }
    for (entry, piece) in gather.iter_mut().zip(pieces) {
        *entry = [piece.as_ptr() as u64, piece.len() as u64];
    }
    decode_result(syscall4(
        Syscall::NetTransmit,
        gather.as_ptr() as u64,
        pieces.len() as u64,
        raw.raw(),
        0,
    ))
}

/// The NIC's MAC address.
pub fn mac() -> Result<[u8; 6], Error> {
    let value = decode_result(syscall4(Syscall::NetMac, 0, 0, 0, 0))?;
    let bytes = value.to_le_bytes();
    let mut mac = [0u8; 6];
    mac.copy_from_slice(&bytes[..6]);
    Ok(mac)
}

/// The host's IPv4 address (which this app shares with the others; the source address a
/// transmit must carry).
pub fn ipv4() -> Result<[u8; 4], Error> {
    let value = decode_result(syscall4(Syscall::NetIpv4, 0, 0, 0, 0))?;
    Ok((value as u32).to_le_bytes())
}
