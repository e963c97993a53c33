//! System-call numbers and the register convention; each call is documented once, here.
//!
//! Convention (x86_64 `syscall`): `rax` holds the number, arguments go in `rdi`, `rsi`, `rdx`,
//! `r10`, `r8`, `r9` (in that order), and the result comes back in `rax`, encoded by
//! [`crate::error::encode_result`]. `rcx` and `r11` are clobbered by the instruction itself; the
//! kernel preserves every other register (except where a call says it returns more values).
//!
//! Capabilities are passed as raw [`crate::cap::CapHandle`] values; every call checks them
//! (forged, stale or foreign handles: `InvalidCapability`; missing rights: `Denied`). Every
//! pointer is checked against the caller's mappings (`BadAddress`).

/// A system call the kernel implements. The discriminant is the number user code puts in `rax`.
#[repr(u64)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Syscall {
    /// `exit(status)`: ends the calling environment. `status` 0 means success; the kernel
    /// reports 0..=63 as they are (see [`crate::exit::KernelExit`]). Never returns.
    Exit = 0,
    /// `console_write(pointer, length_bytes) -> length_bytes`: writes bytes to the kernel
    /// console (COM1). The buffer must lie in memory the caller has mapped readable; at most
    /// [`CONSOLE_WRITE_MAX_BYTES`] are written per call and the count written is returned.
    ConsoleWrite = 1,
    /// `null() -> 0`: does nothing; the cost of crossing into the kernel and back. Handled at
    /// the top of the entry stub, before any register is saved.
    Null = 2,
    /// `self_id() -> id`: the caller's environment id (the `getpid` of exo), through the full
    /// dispatch path.
    SelfId = 3,
    /// `set_upcall(kind, entry, stack) -> 0`: registers the entry for an
    /// [`crate::upcall::UpcallKind`] (`entry` 0 removes it). `stack` is used by `Pct` only
    /// (the stack top its activations start on) and must be 0 otherwise. Errors:
    /// `InvalidArgument` (unknown kind, entry or stack outside the user half, unaligned stack).
    SetUpcall = 4,
    /// `yield_to(env_cap) -> 0`: gives up the rest of the time slice; with a capability
    /// (right `YIELD`) to a runnable environment, donates it to that environment, else to the
    /// next slice in round robin (`env_cap` 0). Also acknowledges an end-of-slice upcall.
    Yield = 5,
    /// `spawn(name_pointer, name_length_bytes, argument, limits) -> env_cap`: creates a child
    /// environment from the app of that name in the boot pack, with one time slice. The child
    /// starts with `rdi` = a capability to its parent (`CALL | YIELD`), `rsi` = a capability
    /// to itself (all rights) and `rdx` = `argument`. Returns a capability to the child with
    /// all rights. `limits` points to the child's [`crate::quota::Limits`] (0: half of what
    /// the caller has left of each), carved out of the caller's own until the child ends.
    /// Errors: `BadAddress`, `InvalidArgument` (name too long or not UTF-8), `NotFound`,
    /// `Exhausted` (no environment or slice free, or a limit beyond what the caller has
    /// left), `OutOfMemory`.
    Spawn = 6,
    /// `env_info(env_cap, query) -> value`: a [`crate::upcall::EnvQuery`] about the environment
    /// (right `CONTROL`). Works after the environment ended (status, accounting); the kernel
    /// keeps the records of the boot apps and of the last 128 other environments that ended,
    /// and answers for older ones status `Aborted` and zero accounting.
    EnvInfo = 7,
    /// `env_destroy(env_cap) -> 0`: ends the environment (right `CONTROL`), status `Aborted`.
    /// Errors: `PeerGone` if it already ended.
    EnvDestroy = 8,
    /// `page_alloc(physical_address) -> page_cap`: allocates a zeroed physical page and
    /// returns a capability to it with rights `READ | WRITE | EXECUTE | GRANT`.
    /// `physical_address` = `u64::MAX` takes any frame; otherwise exactly that frame (named
    /// allocation; page-aligned, must be free: else `AddressInUse`).
    PageAlloc = 9,
    /// `page_map(page_cap, virtual_address, access) -> 0`: maps the page at a page-aligned
    /// user address with `access` (a subset of `READ | WRITE | EXECUTE` that the capability
    /// holds; `WRITE` or `EXECUTE` need `READ`; 0 maps it inaccessible, which faults on touch).
    /// Errors: `InvalidArgument` (alignment, access bits), `BadAddress` (not user half),
    /// `AddressInUse`, `Denied`.
    PageMap = 10,
    /// `page_unmap(virtual_address) -> 0`: removes a mapping made with `page_map`. Errors:
    /// `NotMapped` (nothing mapped there by `page_map`).
    PageUnmap = 11,
    /// `page_protect(virtual_address, access) -> 0`: changes the access of a `page_map`
    /// mapping (the `mprotect` of exo, for Appel-Li tricks); rights as for `page_map`.
    PageProtect = 12,
    /// `cap_grant(cap, env_cap, rights) -> handle`: derives a capability with `rights` (a
    /// subset of the source's) for the environment `env_cap` names; the source needs `GRANT`.
    /// Returns the handle as the receiver will name it (pass it on, e.g. in a PCT register).
    /// Revoking or deleting the source invalidates the derived capability and unmaps it.
    CapGrant = 13,
    /// `cap_revoke(cap) -> count`: invalidates every capability derived from `cap` (in any
    /// environment), unmapping their mappings; returns how many were invalidated.
    CapRevoke = 14,
    /// `cap_delete(cap) -> 0`: deletes `cap` and everything derived from it. Deleting the
    /// capability `page_alloc` returned frees the page (this is how pages are given back).
    CapDelete = 15,
    /// `cap_rights(cap) -> rights`: the rights of a capability the caller holds.
    CapRights = 16,
    /// `pct_call(env_cap, a0, a1, a2, a3, a4) -> 0` with results in `rdi`, `rsi`, `rdx`, `r10`,
    /// `r8`: synchronous protected control transfer (right `CALL`). The callee must be waiting
    /// (`pct_wait`, else `WouldBlock`); it runs at its `Pct` entry on the caller's time slice
    /// with the arguments in registers (no kernel buffering) until it calls `pct_return`.
    /// `PeerGone` if the callee ends before returning.
    PctCall = 17,
    /// `pct_send(env_cap, a0, a1, a2, a3, a4) -> 0`: asynchronous PCT: enters the callee as
    /// `pct_call` does and donates the rest of the slice; the sender resumes (with 0) when it
    /// is next scheduled.
    PctSend = 18,
    /// `pct_return(r0, r1, r2, r3, r4)`: ends the current PCT activation; a synchronous caller
    /// resumes with these values in `rdi`, `rsi`, `rdx`, `r10`, `r8`. The callee is waiting
    /// again. Errors (returns): `InvalidArgument` when not in a PCT activation.
    PctReturn = 19,
    /// `pct_wait()`: gives up the caller's context and waits for PCT calls (each one starts
    /// at the `Pct` entry). Errors (returns): `InvalidArgument` without a `Pct` entry.
    PctWait = 20,
    /// `slice_acquire() -> slice`: takes one more time slice from the slice vector; returns
    /// its index. `Exhausted` when none is free.
    SliceAcquire = 21,
    /// `request_pages(env_cap, count, deadline_ticks) -> 0`: visible revocation (right
    /// `CONTROL`): the environment gets a `Revoke` upcall asking for `count` pages; each
    /// page capability it deletes counts; after `deadline_ticks` timer ticks the kernel
    /// repossesses the rest by force and records them in its repossession vector.
    RequestPages = 22,
    /// `repossessed(buffer, capacity) -> count`: moves up to `capacity` entries of the
    /// caller's repossession vector into `buffer` (an array of
    /// [`crate::upcall::RepossessedPage`]).
    Repossessed = 23,
    /// `ticks() -> count`: timer ticks since boot.
    Ticks = 24,
    /// `page_protect_range(virtual_address, page_count, access) -> 0`: `page_protect` over the
    /// `page_count` consecutive pages from `virtual_address` (the `mprotect` of a region, in
    /// one call). Every page must be a `page_map` mapping whose capability holds `access`;
    /// all are checked before any changes, so on error nothing has. At most
    /// [`PAGE_PROTECT_RANGE_MAX_PAGES`] pages per call (the kernel runs it with interrupts
    /// off). Errors: `InvalidArgument` (count 0 or over the maximum, unaligned address,
    /// access bits), `BadAddress` (not user half), `NotMapped` (a page is not a `page_map`
    /// mapping), `Denied`.
    PageProtectRange = 25,
    /// `filter_bind(filter, filter_length_bytes, ring, ring_length_bytes, monitor_cap) ->
    /// filter id`, with the binding's capability in `rdi`: binds a DPF filter (one
    /// conjunction, in `dpf::wire` encoding, at most [`crate::net::FILTER_MAX_BYTES`]) to a
    /// packet ring (see [`crate::net`]) in the caller's read+write memory. The kernel decodes
    /// and verifies the filter (`InvalidArgument` if either fails) and overrides the id it
    /// claims with its own. A filter whose atoms pin IPv4 or IPv6, TCP or UDP and a
    /// destination port (see `dpf::claim`) claims that local port for the caller:
    /// `AddressInUse` if another environment holds a filter claiming the same protocol and
    /// port (either IP version); the caller may bind several filters on its own port, and may
    /// transmit from it (see `NetTransmit`). Any other filter is a *monitor* filter (it
    /// receives copies, whatever else matches), which needs a monitor capability (right
    /// `MONITOR`) passed in `r8`: `Denied` without a live one (absent, forged, revoked); `r8`
    /// is ignored for filters that claim a port. Each boot app named in the command line's
    /// `monitor=APP` starts with a root monitor capability (`MONITOR | GRANT`) in `rdx`, which
    /// it may grant to others (`cap_grant`) and revoke. Several filters may share one ring.
    ///
    /// The binding's capability (object: this binding; rights `CONTROL | GRANT`) is what the
    /// binding lives by: deleting it (`cap_delete`, or `filter_unbind`), revoking a capability
    /// it derives from, or the end of its holder unbinds the filter, and the port claim goes
    /// with it. A monitor filter's capability derives from the monitor capability it was bound
    /// with, so revoking the monitor right also unbinds the monitor filters bound with it. It
    /// may be granted like any capability: a copy with `CONTROL` can unbind (a copy going
    /// away unbinds nothing). `Exhausted` when the capability table is full (nothing is
    /// bound then).
    FilterBind = 26,
    /// `filter_unbind(binding_cap) -> 0`: removes the binding the capability names (right
    /// `CONTROL`; the caller's own or a granted copy), deleting the binding's capability and
    /// every copy of it. Frames in the ring stay where they are. Errors: `InvalidCapability`
    /// (forged, stale, another environment's, or a capability to something other than a
    /// binding), `Denied` (a copy without `CONTROL`).
    FilterUnbind = 27,
    /// `net_wait(timeout_ticks, rx_frames_seen) -> copies`: blocks the calling environment
    /// (others run meanwhile) until frames were delivered to its rings since its last
    /// `net_wait` returned, or the kernel's `rx_frames` counter (see
    /// [`crate::net::Counter`]) exceeds `rx_frames_seen` (pass `u64::MAX` to wait for the
    /// caller's own frames only), or `timeout_ticks` timer ticks passed (0: do not block, only
    /// take what the NIC holds). Returns the copies delivered to the caller's rings since its
    /// last `net_wait` returned (0 on a timeout). Receive is interrupt-driven: the NIC's
    /// interrupt, the timer tick and every `net_wait` take frames from the NIC (at most a
    /// budget each; under load the NIC stops interrupting and the kernel polls), and an
    /// environment woken runs at its next time slice. Errors: `InvalidArgument` without a NIC
    /// or with `timeout_ticks` over [`NET_WAIT_MAX_TICKS`].
    NetWait = 28,
    /// `net_counter(index, ring) -> value`: reads kernel network counter `index`
    /// ([`crate::net::Counter`]); `InvalidArgument` past the last. With `ring` non-zero, the
    /// count for the caller's ring starting there instead: only `Delivered` (copies it got),
    /// `RingFull` (copies dropped because its next slot was still the caller's) and `Matched`
    /// (frames its filters won, before handlers) are kept per ring, `InvalidArgument` for the
    /// others, `NotFound` when the caller has no ring
    /// starting at `ring` (a ring exists from its first `filter_bind` until its last filter
    /// is unbound).
    NetCounter = 29,
    /// `boot_argument(index, buffer, length_bytes) -> length_bytes`: copies the caller's
    /// `index`-th argument, hex-decoded, into its writable `buffer`. Arguments are the boot
    /// command line's `arg=HEX` words (every app's) and `arg=K:HEX` words (only the boot app
    /// at 1-based position K of `apps=`), in command-line order; `NotFound` when there is no
    /// such argument, `InvalidArgument` when it does not
    /// fit.
    BootArgument = 30,
    /// `net_transmit(gather, count, raw) -> length_bytes`: sends one frame gathered from
    /// `count` (at most [`NET_TRANSMIT_MAX_PIECES`]) `(address, length_bytes)` pairs of `u64`
    /// at `gather`, all in the caller's readable memory, at most
    /// [`crate::net::FRAME_MAX_BYTES`] in total. With `raw` 0 the frame must be on the
    /// transmit check's allow list: from the NIC's source MAC, and ARP with the host's
    /// addresses, or IPv4 from the host's address (`NetIpv4`) carrying TCP/UDP from a source
    /// port the caller owns (a port one of its bound filters claims, see `FilterBind`), or an
    /// ICMP error about a packet sent to such a port; otherwise `Denied`, counted as
    /// `tx_refused`. `raw` may name a network-monitor capability with `RAW_TRANSMIT`: then
    /// only the source MAC is checked (a bad `raw` is `Denied`). An ARP request the caller
    /// sends from the host's addresses is remembered for 3 s (at most 4 per app, a new one
    /// replacing its oldest): an ARP reply from the neighbour it asked about, to the host's
    /// addresses, is copied to the caller's ring that holds a port-claiming filter (its
    /// stack's), and to no app that did not ask. The call returns once the frame is queued
    /// on the NIC, not once it is sent; `WouldBlock` (counted as `tx_queue_full`) when the
    /// NIC still holds every transmit buffer, or the caller's share of them (half), unsent.
    NetTransmit = 31,
    /// `net_mac() -> mac`: the NIC's MAC address in the low 48 bits (first byte lowest);
    /// `InvalidArgument` without a NIC.
    NetMac = 32,
    /// `net_ipv4() -> address`: the host's IPv4 address, which apps share (the boot command
    /// line's `ipv4=A.B.C.D`, default 10.0.2.15), in the low 32 bits, first byte lowest; the
    /// source address `NetTransmit` accepts. `InvalidArgument` without a NIC.
    NetIpv4 = 33,
    /// `ash_bind(binding_cap, handler, handler_length_bytes, regions, region_count) -> handler
    /// id`, with the handler's capability in `rdi`: binds an application-specific safe handler
    /// (`ash::wire` encoding, at most [`crate::net::ASH_HANDLER_MAX_BYTES`]) to the filter
    /// binding `binding_cap` names (right `CONTROL`). The kernel decodes and verifies it
    /// (`InvalidArgument` if either fails, the verifier's refusal logged), for packets at
    /// least as long as the filter's bounds checks prove. `regions` is an array of
    /// `region_count` `u64` user addresses, one per region the handler declares, each
    /// page-aligned and the start of read+write memory of the caller's at least as long as
    /// the declaration (else `InvalidArgument`, `BadAddress`). The pages are pinned while
    /// bound: a `page_map`ped one cannot be unmapped or reprotected (`AddressInUse`), and
    /// revoking, deleting or repossessing its capability first unbinds the handler and tells
    /// the caller (`AshDisabled` upcall with `fault_address` =
    /// [`crate::upcall::ASH_UNBOUND_REVOKED`]). From then on the handler runs in the
    /// kernel on every frame the filter wins, before any ring copy, whether or not the caller
    /// is scheduled; its verdict says whether the frame also reaches the ring. Replies go
    /// through the same transmit check as `NetTransmit`. A run that fails a runtime check is
    /// aborted (counted); after [`crate::net::ASH_ABORT_LIMIT`] aborts the handler is
    /// disabled and frames reach the ring as without it. The capability (object: the
    /// handler; rights `CONTROL | GRANT`) derives from the binding's: deleting it unbinds the
    /// handler, and unbinding the filter removes it. One handler per filter (`AddressInUse`),
    /// at most the caller's quota of handlers ([`crate::quota::Resource::Handlers`]) and
    /// never more than [`crate::net::ASH_MAX_HANDLERS`] (`Exhausted`).
    AshBind = 34,
    /// `ash_counter(handler_cap, counter) -> value`: one of the handler's
    /// [`crate::net::AshCounter`]s (any right). Errors: `InvalidCapability`,
    /// `InvalidArgument` (no such counter).
    AshCounter = 35,
    /// `env_quota(env_cap, resource, field) -> count`: an environment's limit, use or
    /// reservation for its children ([`crate::quota::QuotaField`]) of one
    /// [`crate::quota::Resource`]. `env_cap` 0 is the caller; any other needs `CONTROL`.
    /// `InvalidArgument` for an unknown resource or field.
    EnvQuota = 36,
    /// `kernel_usage(gauge) -> value`: one figure of the kernel's own resources
    /// ([`crate::usage::Gauge`]: heap, free frames, its tables, generated code), for tests
    /// that check the kernel is back where it started. `InvalidArgument` for an unknown gauge.
    KernelUsage = 37,
}

/// Most pages one `page_protect_range` changes.
pub const PAGE_PROTECT_RANGE_MAX_PAGES: u64 = 512;

/// Longest `net_wait` timeout, in timer ticks (10 s at 100 Hz).
pub const NET_WAIT_MAX_TICKS: u64 = 1000;
/// Timer ticks per second (`ticks()` counts them; `net_wait` and `request_pages` take them).
pub const TICKS_PER_SECOND: u64 = 100;

/// `net_wait`'s `rx_frames_seen` that never wakes the caller for others' frames.
pub const NET_WAIT_OWN_FRAMES: u64 = u64::MAX;

/// Most pieces one `net_transmit` gathers.
pub const NET_TRANSMIT_MAX_PIECES: u64 = 16;

/// Upper bound of one `console_write`, so one call cannot hold the console (and the kernel,
/// which writes the UART with interrupts off) for long: one of libnet's 512-byte lines.
pub const CONSOLE_WRITE_MAX_BYTES: u64 = 512;

/// `page_alloc` argument asking for any frame.
pub const ANY_FRAME: u64 = u64::MAX;

impl Syscall {
    /// Every system call, in number order; the kernel's dispatch is checked against it.
    pub const ALL: [Syscall; 38] = [
        Syscall::Exit,
        Syscall::ConsoleWrite,
        Syscall::Null,
        Syscall::SelfId,
        Syscall::SetUpcall,
        Syscall::Yield,
        Syscall::Spawn,
        Syscall::EnvInfo,
        Syscall::EnvDestroy,
        Syscall::PageAlloc,
        Syscall::PageMap,
        Syscall::PageUnmap,
        Syscall::PageProtect,
        Syscall::CapGrant,
        Syscall::CapRevoke,
        Syscall::CapDelete,
        Syscall::CapRights,
        Syscall::PctCall,
        Syscall::PctSend,
        Syscall::PctReturn,
        Syscall::PctWait,
        Syscall::SliceAcquire,
        Syscall::RequestPages,
        Syscall::Repossessed,
        Syscall::Ticks,
        Syscall::PageProtectRange,
        Syscall::FilterBind,
        Syscall::FilterUnbind,
        Syscall::NetWait,
        Syscall::NetCounter,
        Syscall::BootArgument,
        Syscall::NetTransmit,
        Syscall::NetMac,
        Syscall::NetIpv4,
        Syscall::AshBind,
        Syscall::AshCounter,
        Syscall::EnvQuota,
        Syscall::KernelUsage,
    ];

    /// The number user code places in `rax`.
    pub const fn number(self) -> u64 {
        self as u64
    }

    /// Decodes a number from `rax`; `None` for numbers no call has (the kernel answers those
    /// with [`crate::Error::UnknownSyscall`]).
    pub const fn from_number(number: u64) -> Option<Syscall> {
        if number < Syscall::ALL.len() as u64 {
            Some(Syscall::ALL[number as usize])
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_round_trip() {
        for call in Syscall::ALL {
            assert_eq!(Syscall::from_number(call.number()), Some(call));
        }
    }

    #[test]
    fn numbers_are_dense_and_stable() {
        // User binaries built against an older ABI keep working only if numbers never move.
        assert_eq!(Syscall::Exit.number(), 0);
        assert_eq!(Syscall::ConsoleWrite.number(), 1);
        assert_eq!(Syscall::Null.number(), 2);
        assert_eq!(Syscall::PctCall.number(), 17);
        assert_eq!(Syscall::Ticks.number(), 24);
        assert_eq!(Syscall::PageProtectRange.number(), 25);
        assert_eq!(Syscall::FilterBind.number(), 26);
        assert_eq!(Syscall::NetMac.number(), 32);
        assert_eq!(Syscall::NetIpv4.number(), 33);
        assert_eq!(Syscall::AshBind.number(), 34);
        assert_eq!(Syscall::AshCounter.number(), 35);
        assert_eq!(Syscall::KernelUsage.number(), 37);
        for (index, call) in Syscall::ALL.iter().enumerate() {
            assert_eq!(call.number(), index as u64);
        }
        assert_eq!(Syscall::from_number(Syscall::ALL.len() as u64), None);
        assert_eq!(Syscall::from_number(u64::MAX), None);
    }
}
