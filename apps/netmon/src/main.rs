//! Network monitor: for each boot argument (a pcap-filter expression), compiles it with dpf's
//! front end here in the app, binds every conjunction to that expression's own packet ring as
//! a monitor filter, then counts what arrives until the traffic stops.
//!
//! Prints `netmon[ENV]: ready N` once bound (xtask starts sending when every instance has)
//! and, at the end, one line `netmon[ENV]: filter I received N` per expression. Several
//! instances may run at once (`apps=netmon,netmon arg=1:HEX arg=2:HEX`). While frames arrive it transmits a progress
//! frame (ethertype 0x88b5, `EXOACK`, the kernel's `rx_frames` it has drained up to and its
//! environment id, each a little-endian u64) whenever the kernel took more frames from the NIC: xtask paces its sending by it.
//!
//! It blocks in `net_wait` (for its own frames, or any frame past its last report), or, as
//! an `upcall:` instance (any argument starting `upcall:`), never waits: it yields until a
//! packet upcall says frames arrived. At the end it prints how often the wait returned (with
//! frames), the packet upcalls and the ticks charged to it.
//!
//! An argument may start with an option (after `upcall:`): `stall:EXPR` binds but never drains that ring (it
//! fills; the kernel drops and counts), `unbind-after=N:EXPR` unbinds once N frames arrived,
//! `revoke-after=N:EXPR` does the same by deleting the bindings' capabilities, after checking
//! `filter_unbind` refuses bad capabilities (none, another object, forged, a copy without
//! `CONTROL`) and that a granted copy with `CONTROL` unbinds, and that the capabilities are
//! stale afterwards; both print how many frames reached the ring after unbinding (0).
//! `claimed:EXPR` expects another instance to own EXPR's port: the first bind (after a short
//! wait, so that instance has bound) must be refused with `AddressInUse`; netmon then retries
//! after every wait until the port is released and the bind succeeds.
//! Before binding, netmon checks the kernel refuses a garbage filter and spoofed transmits
//! (MAC, IPv4 address, a source port it does not own); after binding, that it may transmit
//! from a port its filters claim.
#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(target_os = "none")]
extern crate alloc;

#[cfg(target_os = "none")]
libnet::entry!(main);

/// Expressions one boot may carry (one ring each).
#[cfg(target_os = "none")]
const MAX_EXPRESSIONS: usize = 4;
/// Slots per ring.
#[cfg(target_os = "none")]
const SLOTS: usize = 128;
/// Longest a `net_wait` blocks, in timer ticks: netmon checks for the end of the traffic at
/// least this often.
#[cfg(target_os = "none")]
const WAIT_TIMEOUT_TICKS: u64 = 10;
/// Timer ticks (100 Hz) without a new frame at the NIC, after traffic started, that end the
/// run (the kernel's `rx_frames`: frames another monitor's wait took count too).
#[cfg(target_os = "none")]
const IDLE_TICKS_AFTER_TRAFFIC: u64 = 200;
/// Ticks without any traffic that end the run.
#[cfg(target_os = "none")]
const IDLE_TICKS_BEFORE_TRAFFIC: u64 = 6_000;

#[cfg(target_os = "none")]
static RINGS: [libnet::net::Ring<SLOTS>; MAX_EXPRESSIONS] =
    [const { libnet::net::Ring::new() }; MAX_EXPRESSIONS];

/// Packet upcalls received (`upcall:` instances).
#[cfg(target_os = "none")]
static PACKET_UPCALLS: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0);
/// Set by the packet upcall, cleared by the main loop when it drains.
#[cfg(target_os = "none")]
static ARRIVED: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);

#[cfg(target_os = "none")]
fn on_packet(_copies: u64) {
    use core::sync::atomic::Ordering;
    PACKET_UPCALLS.fetch_add(1, Ordering::Relaxed);
    ARRIVED.store(true, Ordering::Release);
}

#[cfg(target_os = "none")]
fn main() -> u8 {
    use libnet::{net, println};

    let me = libnet::sys::self_id();
    let garbage = net::filter_bind(
        &[0xff; 9],
        RINGS[0].region().0,
        RINGS[0].region().1,
        net::boot_monitor(),
    );
    println!("netmon[{me}]: garbage filter: {garbage:?}");
    let mac = match net::mac() {
        Ok(mac) => mac,
        Err(error) => {
            // Binding still shows whether the monitor right is checked.
            println!("netmon[{me}]: no NIC: {error:?}");
            [0; 6]
        }
    };
    let ipv4 = net::ipv4().unwrap_or(DEFAULT_IPV4);
    let mut spoofed_mac = mac;
    spoofed_mac[5] ^= 1;
    let spoofed = net::transmit(&[&[0xff; 6], &spoofed_mac, &[0x88, 0xb5, 0, 0]]);
    let mut spoofed_ip = [0u8; 14 + 28];
    spoofed_ip[..6].copy_from_slice(&[0xff; 6]);
    spoofed_ip[6..12].copy_from_slice(&mac);
    spoofed_ip[12..16].copy_from_slice(&[0x08, 0x00, 0x45, 0]);
    spoofed_ip[14 + 9] = 17;
    spoofed_ip[14 + 12..14 + 16].copy_from_slice(&[10, 0, 2, 99]);
    let spoofed_address = net::transmit(&[&spoofed_ip]);
    // Nothing is bound yet: no port is netmon's.
    let spoofed_port = net::transmit(&[&from_port(mac, ipv4, 17, 7001)]);
    // From netmon's own MAC but not on the allow list: needs the raw-transmit right, which a
    // forged capability does not carry (refused before the check, so not `tx_refused`).
    let unlisted_frame = [&[0xff; 6][..], &mac, &[0x88, 0xb5, 0, 0]];
    let unlisted = net::transmit(&unlisted_frame);
    let monitor = net::boot_monitor();
    let forged = libnet::abi::cap::CapHandle::new(monitor.index(), monitor.generation() ^ 1);
    let forged_raw = net::transmit_raw(&unlisted_frame, forged);
    println!(
        "netmon[{me}]: spoofed transmit: MAC {spoofed:?}, IPv4 {spoofed_address:?}, source port {spoofed_port:?}, unlisted ethertype {unlisted:?}, raw through a forged capability {forged_raw:?}"
    );
    let refused = |result| result == Err(libnet::Error::Denied);
    if garbage != Err(libnet::Error::InvalidArgument)
        || (mac != [0; 6]
            && !(refused(spoofed)
                && refused(spoofed_address)
                && refused(spoofed_port)
                && refused(unlisted)
                && refused(forged_raw)))
    {
        return 5;
    }

    let mut expressions = 0;
    let mut upcalls = false;
    let mut stalled = [false; MAX_EXPRESSIONS];
    let mut unbind_after = [None::<(u64, Unbinding)>; MAX_EXPRESSIONS];
    let mut after_unbind = [None::<u64>; MAX_EXPRESSIONS];
    let mut claimed: [Option<alloc::vec::Vec<dpf::Filter>>; MAX_EXPRESSIONS] = Default::default();
    let mut owned_port = None;
    let mut bindings: [alloc::vec::Vec<net::FilterBinding>; MAX_EXPRESSIONS] = Default::default();
    let mut buffer = [0u8; 1024];
    while expressions < MAX_EXPRESSIONS {
        let Ok(length) = net::boot_argument(expressions as u64, &mut buffer) else {
            break;
        };
        let Ok(mut expression) = core::str::from_utf8(&buffer[..length]) else {
            println!("netmon[{me}]: argument {expressions} is not UTF-8");
            return 2;
        };
        let mut revoked = false;
        if let Some(rest) = expression.strip_prefix("upcall:") {
            upcalls = true;
            expression = rest;
        }
        if let Some(rest) = expression.strip_prefix("stall:") {
            stalled[expressions] = true;
            expression = rest;
        } else if let Some((rest, how)) = expression
            .strip_prefix("unbind-after=")
            .map(|rest| (rest, Unbinding::Unbind))
            .or_else(|| {
                expression
                    .strip_prefix("revoke-after=")
                    .map(|rest| (rest, Unbinding::Revoke))
            })
            && let Some((count, rest)) = rest.split_once(':')
            && let Ok(count) = count.parse()
        {
            unbind_after[expressions] = Some((count, how));
            expression = rest;
        } else if let Some(rest) = expression.strip_prefix("revoked:") {
            revoked = true;
            expression = rest;
        } else if let Some(rest) = expression.strip_prefix("claimed:") {
            claimed[expressions] = Some(alloc::vec::Vec::new());
            expression = rest;
        }
        let filters = match dpf::frontend::compile(expression, dpf::FilterId(0)) {
            Ok(filters) => filters,
            Err(error) => {
                println!("netmon[{me}]: filter {expressions} {expression:?}: {error:?}");
                return 2;
            }
        };
        if claimed[expressions].is_some() {
            // Let the owner bind first.
            let start = libnet::sys::ticks();
            while libnet::sys::ticks() - start < CLAIMED_WAIT_TICKS {
                libnet::sys::yield_now();
            }
        }
        if revoked {
            // The monitor right as a capability: a granted one binds; revoked, it does not.
            let revoked = revoke_check(&filters, &RINGS[expressions]);
            println!("netmon[{me}]: filter {expressions} {expression:?}: revoke check {revoked:?}");
            if revoked.is_err() {
                return 9;
            }
        }
        match bind_all(&filters, &RINGS[expressions], net::boot_monitor()) {
            Ok(bound) => bindings[expressions] = bound,
            Err(error) if claimed[expressions].is_some() => {
                println!(
                    "netmon[{me}]: filter {expressions} {expression:?}: {error:?}, waiting for the owner to unbind"
                );
                if error != libnet::Error::AddressInUse {
                    return 8;
                }
                claimed[expressions] = Some(filters);
                expressions += 1;
                continue;
            }
            Err(error) => {
                println!("netmon[{me}]: binding filter {expressions} {expression:?}: {error:?}");
                return 3;
            }
        }
        if claimed[expressions].is_some() {
            println!("netmon[{me}]: filter {expressions} {expression:?} was not refused");
            return 8;
        }
        owned_port = owned_port.or(filters.iter().find_map(dpf::claim::claim));
        println!(
            "netmon[{me}]: filter {expressions} {expression:?}: {} conjunctions bound",
            filters.len()
        );
        expressions += 1;
    }
    if let Some(claim) = owned_port {
        let protocol = claim.transport.protocol();
        let sent = net::transmit(&[&from_port(mac, ipv4, protocol, claim.port)]);
        println!(
            "netmon[{me}]: transmit from owned port {:?} {}: {sent:?}",
            claim.transport, claim.port
        );
        if mac != [0; 6] && sent.is_err() {
            return 5;
        }
        if ipv4 != DEFAULT_IPV4 {
            // Booted with another address: the default one is now someone else's.
            let old = net::transmit(&[&from_port(mac, DEFAULT_IPV4, protocol, claim.port)]);
            println!(
                "netmon[{me}]: IPv4 {}.{}.{}.{}; transmit from {}.{}.{}.{}: {old:?}",
                ipv4[0],
                ipv4[1],
                ipv4[2],
                ipv4[3],
                DEFAULT_IPV4[0],
                DEFAULT_IPV4[1],
                DEFAULT_IPV4[2],
                DEFAULT_IPV4[3]
            );
            if old != Err(libnet::Error::Denied) {
                return 5;
            }
        }
    }
    println!("netmon[{me}]: ready {expressions}");
    if upcalls && let Err(error) = libnet::upcall::on_packet(on_packet) {
        println!("netmon[{me}]: packet upcall: {error:?}");
        return 4;
    }
    let mut received = [0u64; MAX_EXPRESSIONS];
    let mut waits = 0u64;
    let mut waits_with_frames = 0u64;
    let mut acked = 0u64;
    let mut last_rx = 0u64;
    let mut last_change = libnet::sys::ticks();
    loop {
        let rx = net::counter(libnet::abi::net::Counter::RxFrames as u64).unwrap_or(0);
        let now = libnet::sys::ticks();
        if rx != last_rx {
            last_rx = rx;
            last_change = now;
        }
        let limit = if rx > 0 {
            IDLE_TICKS_AFTER_TRAFFIC
        } else {
            IDLE_TICKS_BEFORE_TRAFFIC
        };
        if now - last_change >= limit {
            break;
        }
        if upcalls {
            // Woken by nobody: frames announce themselves by upcall; until then, give the
            // processor away.
            if !ARRIVED.swap(false, core::sync::atomic::Ordering::Acquire) {
                libnet::sys::yield_now();
            }
        } else {
            // Wake for frames here, or for any frame past the last one reported to xtask
            // (which paces its sending by every monitor's reports).
            match net::wait(WAIT_TIMEOUT_TICKS, acked) {
                Ok(0) => {}
                Ok(_) => waits_with_frames += 1,
                Err(error) => {
                    println!("netmon[{me}]: net_wait: {error:?}");
                    return 4;
                }
            }
            waits += 1;
        }
        for index in 0..expressions {
            if stalled[index] {
                continue;
            }
            if let Some(filters) = claimed[index].as_ref().filter(|f| !f.is_empty()) {
                match bind_all(filters, &RINGS[index], net::boot_monitor()) {
                    Ok(bound) => {
                        bindings[index] = bound;
                        claimed[index] = None;
                        println!("netmon[{me}]: filter {index} bound once released");
                    }
                    Err(libnet::Error::AddressInUse) => {}
                    Err(error) => {
                        println!("netmon[{me}]: filter {index}: {error:?}");
                        return 8;
                    }
                }
            }
            while RINGS[index].take(|_, _| received[index] += 1) {}
            if let Some((limit, how)) = unbind_after[index]
                && received[index] >= limit
            {
                let unbound = match how {
                    Unbinding::Unbind => bindings[index]
                        .drain(..)
                        .try_for_each(|binding| net::filter_unbind(binding.capability).map(|_| ())),
                    Unbinding::Revoke => revoke_bindings(me, &mut bindings[index]),
                };
                if let Err(error) = unbound {
                    println!("netmon[{me}]: unbinding filter {index}: {error:?}");
                    return 6;
                }
                // Everything in the ring now was delivered before the unbinding.
                while RINGS[index].take(|_, _| received[index] += 1) {}
                after_unbind[index] = Some(received[index]);
                unbind_after[index] = None;
                println!(
                    "netmon[{me}]: filter {index} unbound after {}",
                    received[index]
                );
            }
        }
        let rx = net::counter(libnet::abi::net::Counter::RxFrames as u64).unwrap_or(0);
        if rx != acked {
            let mut progress = [0u8; 36];
            progress[..6].copy_from_slice(&[0xff; 6]);
            progress[6..12].copy_from_slice(&mac);
            progress[12..14].copy_from_slice(&[0x88, 0xb5]);
            progress[14..20].copy_from_slice(b"EXOACK");
            progress[20..28].copy_from_slice(&rx.to_le_bytes());
            progress[28..36].copy_from_slice(&me.to_le_bytes());
            // Not an allow-listed frame: sent with the monitor capability's raw-transmit right.
            if let Err(error) = net::transmit_raw(&[&progress], net::boot_monitor()) {
                println!("netmon[{me}]: progress frame: {error:?}");
                return 7;
            }
            acked = rx;
        }
    }
    let charged = libnet::sys::env_info(
        libnet::env::own(),
        libnet::abi::upcall::EnvQuery::TicksCharged,
    )
    .unwrap_or(u64::MAX);
    println!(
        "netmon[{me}]: net_wait returned {waits} times, {waits_with_frames} with frames; packet upcalls {}; ticks charged {charged}",
        PACKET_UPCALLS.load(core::sync::atomic::Ordering::Relaxed)
    );
    for (index, count) in received.iter().take(expressions).enumerate() {
        println!("netmon[{me}]: filter {index} received {count}");
        if let Some(at_unbind) = after_unbind[index] {
            println!(
                "netmon[{me}]: filter {index} received {} after unbinding",
                count - at_unbind
            );
        }
    }
    0
}

/// Ticks a `claimed:` expression waits before its first bind.
#[cfg(target_os = "none")]
const CLAIMED_WAIT_TICKS: u64 = 20;

/// How an `unbind-after=`/`revoke-after=` expression ends its bindings.
#[cfg(target_os = "none")]
#[derive(Clone, Copy, Debug)]
enum Unbinding {
    /// `filter_unbind` with each binding's capability.
    Unbind,
    /// Checks, then deletes the capabilities (see [`revoke_bindings`]).
    Revoke,
}

/// Binds every conjunction to `ring`; on an error, unbinds those it bound.
#[cfg(target_os = "none")]
fn bind_all<const N: usize>(
    filters: &[dpf::Filter],
    ring: &libnet::net::Ring<N>,
    monitor: libnet::abi::cap::CapHandle,
) -> Result<alloc::vec::Vec<libnet::net::FilterBinding>, libnet::Error> {
    let (address, bytes) = ring.region();
    let mut bindings = alloc::vec::Vec::new();
    for filter in filters {
        match libnet::net::filter_bind(&dpf::wire::encode(filter), address, bytes, monitor) {
            Ok(binding) => bindings.push(binding),
            Err(error) => {
                for binding in bindings {
                    let _ = libnet::net::filter_unbind(binding.capability);
                }
                return Err(error);
            }
        }
    }
    Ok(bindings)
}

/// Ends `bindings` through their capabilities, checking the refusals on the way: `filter_unbind`
/// of no capability, of an environment capability and of a forged handle is
/// `InvalidCapability`; of a granted copy without `CONTROL`, `Denied`. The first binding is
/// unbound through a granted copy with `CONTROL`, the others by deleting their capability;
/// afterwards the capabilities and the copy are stale (`InvalidCapability`).
#[cfg(target_os = "none")]
fn revoke_bindings(
    me: u64,
    bindings: &mut alloc::vec::Vec<libnet::net::FilterBinding>,
) -> Result<(), libnet::Error> {
    use libnet::abi::cap::{CapHandle, Rights};
    use libnet::{Error, env, net, sys};
    let Some(first) = bindings.first().copied() else {
        return Ok(());
    };
    let handle = first.capability;
    let forged = CapHandle::new(handle.index(), handle.generation().wrapping_add(1));
    let refusals = [
        net::filter_unbind(CapHandle::NONE),
        net::filter_unbind(env::own()),
        net::filter_unbind(forged),
    ];
    let weak = sys::cap_grant(handle, env::own(), Rights::GRANT)?;
    let without_control = net::filter_unbind(weak);
    let strong = sys::cap_grant(handle, env::own(), Rights::CONTROL)?;
    let by_copy = net::filter_unbind(strong);
    let mut deleted = Ok(0);
    for binding in bindings.iter().skip(1) {
        deleted = deleted.and(sys::cap_delete(binding.capability));
    }
    let stale = [
        net::filter_unbind(handle),
        net::filter_unbind(strong),
        net::filter_unbind(weak),
    ];
    libnet::println!(
        "netmon[{me}]: binding capability: none, env, forged {refusals:?}; copy without CONTROL {without_control:?}; unbound by a granted copy {by_copy:?}, {} by cap_delete {deleted:?}; stale {stale:?}",
        bindings.len() - 1
    );
    let invalid = Err(Error::InvalidCapability);
    let good = refusals.iter().all(|r| *r == invalid)
        && without_control == Err(Error::Denied)
        && by_copy.is_ok()
        && deleted.is_ok()
        && stale.iter().all(|r| *r == invalid);
    bindings.clear();
    if good {
        libnet::println!("netmon[{me}]: binding capability checks passed");
        Ok(())
    } else {
        Err(Error::InvalidArgument)
    }
}

/// Grants this app's boot monitor capability to itself, binds `filters` with the granted
/// one, revokes the grant (which must unbind them: their capabilities derive from it, and are
/// stale afterwards) and binds again: `Ok` when that last bind is `Denied`.
#[cfg(target_os = "none")]
fn revoke_check<const N: usize>(
    filters: &[dpf::Filter],
    ring: &libnet::net::Ring<N>,
) -> Result<(), &'static str> {
    use libnet::abi::cap::Rights;
    use libnet::{env, net, sys};
    let granted = sys::cap_grant(net::boot_monitor(), env::own(), Rights::MONITOR)
        .map_err(|_| "grant refused")?;
    let bindings = bind_all(filters, ring, granted).map_err(|_| "granted capability refused")?;
    libnet::println!("netmon: bound with a granted monitor capability");
    sys::cap_revoke(net::boot_monitor()).map_err(|_| "revoke refused")?;
    for binding in bindings {
        if net::filter_unbind(binding.capability) != Err(libnet::Error::InvalidCapability) {
            return Err("a binding outlived the monitor capability it was bound with");
        }
    }
    libnet::println!("netmon: revoking the monitor capability unbound its filters");
    match bind_all(filters, ring, granted) {
        Err(libnet::Error::Denied) => {
            libnet::println!("netmon: after revoke: Denied");
            Ok(())
        }
        _ => Err("revoked capability not refused"),
    }
}

/// The kernel's IPv4 address unless booted with `ipv4=`.
#[cfg(target_os = "none")]
const DEFAULT_IPV4: [u8; 4] = [10, 0, 2, 15];

/// An IPv4 frame from `source` and `source_port`, to the broadcast MAC.
#[cfg(target_os = "none")]
fn from_port(mac: [u8; 6], source: [u8; 4], protocol: u8, source_port: u16) -> [u8; 14 + 20 + 8] {
    let mut frame = [0u8; 14 + 20 + 8];
    frame[..6].copy_from_slice(&[0xff; 6]);
    frame[6..12].copy_from_slice(&mac);
    frame[12..14].copy_from_slice(&[0x08, 0x00]);
    frame[14..26].copy_from_slice(&[0x45, 0, 0, 28, 0, 0, 0x40, 0, 64, protocol, 0, 0]);
    frame[26..30].copy_from_slice(&source);
    frame[30..34].copy_from_slice(&[10, 0, 2, 2]);
    frame[34..36].copy_from_slice(&source_port.to_be_bytes());
    frame[36..38].copy_from_slice(&9u16.to_be_bytes());
    frame
}

#[cfg(not(target_os = "none"))]
fn main() {}
