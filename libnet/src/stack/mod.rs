//! This app's own TCP/IP stack: one smoltcp `Interface` over the packet ring, with the host's
//! MAC and IPv4 address, polled through `net_wait` up to smoltcp's next deadline.
//!
//! The stack owns the ports its sockets use: each is a DPF port claim (`ip and tcp dst port
//! P`, `ip and udp dst port P`) bound to the stack's ring when a socket first needs it and
//! unbound when the last socket using it is gone (and by the kernel when the app ends). Since
//! the kernel delivers only frames for claimed ports, the stack never answers for a port it
//! does not own and never resets a segment it did not receive. The replies to the stack's own
//! ARP requests reach its ring too: the kernel remembers who asked whom (`NetTransmit`).
//!
//! The socket API over it is in [`socket`]; the device in [`device`]. A port can instead be
//! served by libnet's own engine ([`cheetah`], Cheetah's techniques), its frames diverted from
//! smoltcp ([`divert`]).
pub mod cheetah;
pub mod device;
pub mod divert;
pub mod profile_port;
mod retransmits;
pub mod socket;

use crate::net::{self, FilterBinding, Ring};
use crate::profile::{self, Layer};
use alloc::rc::Rc;
use alloc::vec::Vec;
use core::cell::RefCell;
use core::sync::atomic::{AtomicBool, Ordering};
use device::{DeviceCounters, RX_SLOTS, RingDevice};
use exo_abi::syscall::{NET_WAIT_MAX_TICKS, NET_WAIT_OWN_FRAMES, TICKS_PER_SECOND};
use smoltcp::iface::{Config, Interface, SocketHandle, SocketSet};
use smoltcp::time::Instant;
use smoltcp::wire::{EthernetAddress, HardwareAddress, IpCidr, Ipv4Address};

pub use socket::{Mode, NetError, Shutdown, TcpListener, TcpStream, UdpSocket};

/// The ring every filter of the stack delivers into (one stack per app).
static RING: Ring<RX_SLOTS> = Ring::new();
/// Whether the stack has been made (the ring has one reader).
static TAKEN: AtomicBool = AtomicBool::new(false);

/// Milliseconds of one timer tick.
const TICK_MS: i64 = 1000 / TICKS_PER_SECOND as i64;

/// How the stack is set up.
#[derive(Clone, Copy, Debug)]
pub struct StackConfig {
    /// Prefix length of the host's IPv4 network (the kernel knows only the address).
    pub prefix_length: u8,
    /// Bytes of each TCP socket's receive buffer: the most the peer may have in flight (above
    /// 64 KiB smoltcp scales the window). A request-response server needs little; a bulk
    /// receiver wants a window that covers the path's round trip.
    pub tcp_receive_bytes: usize,
    /// Bytes of each TCP socket's send buffer: what a write can queue before the peer ACKs.
    pub tcp_send_bytes: usize,
    /// Listening sockets a [`TcpListener`] keeps (smoltcp has no backlog: each takes one
    /// connection through its handshake).
    pub listen_pool: usize,
}

impl Default for StackConfig {
    fn default() -> Self {
        StackConfig {
            prefix_length: 24,
            tcp_receive_bytes: 32 * 1024,
            tcp_send_bytes: 32 * 1024,
            listen_pool: 4,
        }
    }
}

/// Where this app's stack ring starts (for [`net::ring_counter`]); the same address in every
/// app built from one binary, a different ring in each.
pub fn ring_address() -> u64 {
    RING.region().0
}

/// The kernel clock as smoltcp's time.
pub fn now() -> Instant {
    Instant::from_millis(crate::sys::ticks() as i64 * TICK_MS)
}

/// A port claim and how many sockets use it.
#[derive(Debug)]
struct Claim {
    transport: dpf::claim::Transport,
    port: u16,
    bindings: Vec<FilterBinding>,
    users: usize,
}

/// The stack's state, shared by its sockets.
pub(crate) struct Inner {
    pub(crate) interface: Interface,
    pub(crate) device: RingDevice,
    pub(crate) sockets: SocketSet<'static>,
    claims: Vec<Claim>,
    /// TCP sockets closed by their owner, kept until their connection has ended, with the
    /// claim each holds.
    closing: Vec<(SocketHandle, dpf::claim::Transport, u16)>,
    pub(crate) config: StackConfig,
    next_ephemeral: u16,
    pub(crate) ipv4: Ipv4Address,
    /// Copies the kernel dropped for the ring while it had filters before (the kernel's
    /// count goes with the ring's last filter).
    ring_full_before: u64,
    /// The TCP port diverted to another engine, if any.
    diverted_port: Option<u16>,
}

/// The kernel's count of copies dropped for the ring as it is now (0 while it has no filter).
fn ring_full_now() -> u64 {
    net::ring_counter(exo_abi::net::Counter::RingFull, RING.region().0).unwrap_or(0)
}

impl core::fmt::Debug for Inner {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Inner")
            .field("claims", &self.claims)
            .field("closing", &self.closing.len())
            .finish_non_exhaustive()
    }
}

/// What a stack counts (its device's counters and what it holds now).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StackCounters {
    pub device: DeviceCounters,
    /// Sockets in the socket set (listening, connected, closing, UDP).
    pub sockets: usize,
    /// Filters bound for port claims.
    pub filters: usize,
    /// Ring slots holding frames not yet read.
    pub ring_slots_used: usize,
}

/// The app's stack. Cheap to clone: sockets keep one.
#[derive(Clone, Debug)]
pub struct Stack(pub(crate) Rc<RefCell<Inner>>);

/// First ephemeral port (IANA's dynamic range).
const EPHEMERAL_FIRST: u16 = 49152;

impl Stack {
    /// Makes the app's stack with the host's MAC and IPv4 address. `AddressInUse` if this app
    /// already has one.
    pub fn new(config: StackConfig) -> Result<Stack, NetError> {
        if TAKEN.swap(true, Ordering::AcqRel) {
            return Err(NetError::AddressInUse);
        }
        let addresses = net::mac().and_then(|mac| net::ipv4().map(|ipv4| (mac, ipv4)));
        let (mac, ipv4) = match addresses {
            Ok(addresses) => addresses,
            Err(error) => {
                TAKEN.store(false, Ordering::Release);
                return Err(NetError::Kernel(error));
            }
        };
        let mut device = RingDevice::new(&RING, mac, ipv4);
        let mut interface_config = Config::new(HardwareAddress::Ethernet(EthernetAddress(mac)));
        // The initial sequence numbers come from smoltcp's generator seeded here.
        interface_config.random_seed = crate::sys::ticks()
            ^ u64::from_le_bytes([mac[0], mac[1], mac[2], mac[3], mac[4], mac[5], 0x5e, 0xed])
            ^ crate::env::own().raw().rotate_left(32);
        let seed = interface_config.random_seed;
        let mut interface = Interface::new(interface_config, &mut device, now());
        let address = Ipv4Address::from_octets(ipv4);
        interface.update_ip_addrs(|addresses| {
            let _ = addresses.push(IpCidr::new(address.into(), config.prefix_length));
        });
        Ok(Stack(Rc::new(RefCell::new(Inner {
            interface,
            device,
            sockets: SocketSet::new(Vec::new()),
            claims: Vec::new(),
            closing: Vec::new(),
            config,
            next_ephemeral: EPHEMERAL_FIRST + (seed % 16384) as u16,
            ipv4: address,
            ring_full_before: 0,
            diverted_port: None,
        }))))
    }

    /// Processes what arrived and sends what is due; whether any socket may have changed.
    pub fn poll(&self) -> bool {
        let _span = profile::enter(Layer::Stack);
        self.0.borrow_mut().poll()
    }

    /// Polls, then blocks in `net_wait` until a frame reaches the ring or smoltcp's next
    /// deadline (at most `net_wait`'s longest wait), then polls again.
    pub fn wait(&self) -> Result<(), NetError> {
        self.wait_at_most(NET_WAIT_MAX_TICKS)
    }

    /// As [`Stack::wait`], but for at most `limit` ticks (another engine's deadline); no wait
    /// at all while diverted frames are queued.
    pub fn wait_at_most(&self, limit: u64) -> Result<(), NetError> {
        let _span = profile::enter(Layer::Stack);
        let ticks = {
            let mut inner = self.0.borrow_mut();
            inner.poll();
            let Inner {
                interface, sockets, ..
            } = &mut *inner;
            match interface.poll_delay(now(), sockets) {
                Some(delay) => delay
                    .total_millis()
                    .div_ceil(TICK_MS as u64)
                    .min(NET_WAIT_MAX_TICKS),
                None => NET_WAIT_MAX_TICKS,
            }
            .min(limit)
        };
        let diverted = self
            .0
            .borrow()
            .device
            .divert
            .as_ref()
            .is_some_and(|divert| !divert.frames.is_empty());
        if RING.peek().is_none() && ticks > 0 && !diverted {
            net::wait(ticks, NET_WAIT_OWN_FRAMES).map_err(NetError::Kernel)?;
        }
        self.0.borrow_mut().poll();
        Ok(())
    }

    /// The counters, and the sockets, filters and ring slots held now.
    pub fn counters(&self) -> StackCounters {
        let inner = self.0.borrow();
        let mut device = inner.device.counters;
        // The kernel keeps the count (the ring had no room, so the stack never saw them).
        device.rx_ring_full = inner.ring_full_before + ring_full_now();
        StackCounters {
            device,
            sockets: inner.sockets.iter().count(),
            filters: inner.claims.iter().map(|claim| claim.bindings.len()).sum(),
            ring_slots_used: RING.occupied(),
        }
    }

    /// The host's IPv4 address.
    pub fn ipv4(&self) -> [u8; 4] {
        self.0.borrow().ipv4.octets()
    }

    /// The NIC's MAC address.
    pub fn mac(&self) -> [u8; 6] {
        self.0.borrow().device.mac()
    }

    /// Claims TCP `port` and takes its frames from smoltcp's way for another engine (read
    /// them with [`Stack::take_diverted`]); one port per stack. `AddressInUse` if taken.
    pub fn divert_tcp(&self, port: u16) -> Result<(), NetError> {
        let mut inner = self.0.borrow_mut();
        if inner.device.divert.is_some() {
            return Err(NetError::AddressInUse);
        }
        inner.claim(dpf::claim::Transport::Tcp, port)?;
        inner.device.divert = Some(divert::Diverted::new(port));
        inner.diverted_port = Some(port);
        Ok(())
    }

    /// Ends the diversion and releases the port's claim.
    pub fn undivert(&self) {
        let mut inner = self.0.borrow_mut();
        if let Some(port) = inner.diverted_port.take() {
            inner.device.divert = None;
            inner.release(dpf::claim::Transport::Tcp, port);
        }
    }

    /// Hands each diverted frame, oldest first, to `each`.
    pub fn take_diverted(&self, mut each: impl FnMut(&[u8])) {
        let _span = profile::enter(Layer::Stack);
        loop {
            let frame = {
                let mut inner = self.0.borrow_mut();
                let Some(divert) = inner.device.divert.as_mut() else {
                    return;
                };
                match divert.frames.pop_front() {
                    Some(frame) => frame,
                    None => return,
                }
            };
            each(&frame);
        }
    }

    /// Diverted frames taken and dropped for a full queue.
    pub fn diverted_counts(&self) -> (u64, u64) {
        let inner = self.0.borrow();
        inner
            .device
            .divert
            .as_ref()
            .map_or((0, 0), |divert| (divert.taken, divert.dropped))
    }
}

/// The kernel's `net_transmit` as the cheetah engine's link.
#[derive(Debug, Default)]
pub struct KernelLink;

impl cheetah::server::Link for KernelLink {
    fn send(&mut self, pieces: &[&[u8]]) -> bool {
        net::transmit(pieces).is_ok()
    }
}

/// The kernel clock in milliseconds (the cheetah engine's time).
pub fn now_ms() -> u64 {
    crate::sys::ticks() * TICK_MS as u64
}

/// Milliseconds of one tick.
pub const TICK_MILLISECONDS: u64 = TICK_MS as u64;

impl Inner {
    pub(crate) fn poll(&mut self) -> bool {
        let Inner {
            interface,
            device,
            sockets,
            ..
        } = self;
        let changed = interface.poll(now(), device, sockets)
            == smoltcp::iface::PollResult::SocketStateChanged;
        self.reap();
        changed
    }

    /// Removes closed sockets whose connection has ended (or lingers only in TIME-WAIT, which
    /// the claim's release makes moot: the kernel drops segments for an unclaimed port).
    fn reap(&mut self) {
        use smoltcp::socket::tcp::{Socket, State};
        let mut index = 0;
        while index < self.closing.len() {
            let (handle, transport, port) = self.closing[index];
            let state = self.sockets.get::<Socket>(handle).state();
            if matches!(state, State::Closed | State::TimeWait) {
                self.sockets.remove(handle);
                self.closing.swap_remove(index);
                self.release(transport, port);
            } else {
                index += 1;
            }
        }
    }

    /// Claims `port` for `transport` (or adds a user to this stack's claim of it).
    pub(crate) fn claim(
        &mut self,
        transport: dpf::claim::Transport,
        port: u16,
    ) -> Result<(), NetError> {
        if let Some(claim) = self
            .claims
            .iter_mut()
            .find(|claim| claim.transport == transport && claim.port == port)
        {
            claim.users += 1;
            return Ok(());
        }
        if port == 0 {
            return Err(NetError::InvalidInput);
        }
        let protocol = match transport {
            dpf::claim::Transport::Tcp => "tcp",
            dpf::claim::Transport::Udp => "udp",
        };
        let expression = alloc::format!("ip and {protocol} dst port {port}");
        let filters = dpf::frontend::compile(&expression, dpf::FilterId(0))
            .map_err(|_| NetError::InvalidInput)?;
        let (address, bytes) = RING.region();
        let mut bindings = Vec::new();
        for filter in &filters {
            match net::filter_bind(
                &dpf::wire::encode(filter),
                address,
                bytes,
                exo_abi::cap::CapHandle::NONE,
            ) {
                Ok(binding) => bindings.push(binding),
                Err(error) => {
                    for binding in bindings {
                        let _ = net::filter_unbind(binding.capability);
                    }
                    return Err(match error {
                        crate::Error::AddressInUse => NetError::AddressInUse,
                        crate::Error::Exhausted => NetError::Exhausted,
                        other => NetError::Kernel(other),
                    });
                }
            }
        }
        self.claims.push(Claim {
            transport,
            port,
            bindings,
            users: 1,
        });
        Ok(())
    }

    /// Drops one user of the claim of `port`; the last one unbinds its filters.
    pub(crate) fn release(&mut self, transport: dpf::claim::Transport, port: u16) {
        let Some(index) = self
            .claims
            .iter()
            .position(|claim| claim.transport == transport && claim.port == port)
        else {
            return;
        };
        self.claims[index].users -= 1;
        if self.claims[index].users == 0 {
            let claim = self.claims.swap_remove(index);
            if self.claims.is_empty() {
                self.ring_full_before += ring_full_now();
            }
            for binding in claim.bindings {
                let _ = net::filter_unbind(binding.capability);
            }
        }
    }

    /// Claims a free ephemeral TCP port (one no other app holds).
    pub(crate) fn claim_ephemeral(&mut self) -> Result<u16, NetError> {
        for _ in 0..64 {
            let port = self.next_ephemeral;
            self.next_ephemeral = if port == u16::MAX {
                EPHEMERAL_FIRST
            } else {
                port + 1
            };
            let ours = self
                .claims
                .iter()
                .any(|claim| claim.transport == dpf::claim::Transport::Tcp && claim.port == port);
            if ours {
                continue;
            }
            match self.claim(dpf::claim::Transport::Tcp, port) {
                Ok(()) => return Ok(port),
                Err(NetError::AddressInUse) => continue,
                Err(error) => return Err(error),
            }
        }
        Err(NetError::Exhausted)
    }

    /// Hands a TCP socket its owner closed to the stack, which removes it (and releases its
    /// claim) once the connection has ended.
    pub(crate) fn linger(
        &mut self,
        handle: SocketHandle,
        transport: dpf::claim::Transport,
        port: u16,
    ) {
        let socket = self.sockets.get_mut::<smoltcp::socket::tcp::Socket>(handle);
        socket.close();
        // A peer that never answers the FIN does not keep the socket for ever.
        socket.set_timeout(Some(smoltcp::time::Duration::from_secs(10)));
        self.closing.push((handle, transport, port));
        self.reap();
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        TAKEN.store(false, Ordering::Release);
        for claim in self.claims.drain(..) {
            for binding in claim.bindings {
                let _ = net::filter_unbind(binding.capability);
            }
        }
    }
}
