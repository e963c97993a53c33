//! Sockets used like std's: `TcpListener`, `TcpStream`, `UdpSocket`, blocking or not, with
//! errors as values.
//!
//! Each socket holds the port claim it needs (see the stack's module): a listener its listen
//! port, a stream connected out an ephemeral port, a UDP socket its bound port; the claim goes
//! with the last socket using it. A listener keeps a pool of listening smoltcp sockets, since
//! smoltcp has no backlog: each takes one connection through its handshake, and `accept`
//! replaces the one it hands out.
use super::{Inner, Stack};
use alloc::vec;
use alloc::vec::Vec;
use dpf::claim::Transport;
use smoltcp::iface::SocketHandle;
use smoltcp::socket::{tcp, udp};
use smoltcp::wire::{IpAddress, IpEndpoint, Ipv4Address};

/// Why a socket call did not do what was asked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NetError {
    /// Non-blocking: nothing to do now; try again after [`Stack::wait`].
    WouldBlock,
    /// Another app (or socket of this one) holds the port.
    AddressInUse,
    /// The peer answered a connection attempt with a reset.
    ConnectionRefused,
    /// The connection was reset or timed out after it was established.
    ConnectionReset,
    /// The operation needs a connection that is not (or no longer) there.
    NotConnected,
    /// A blocking call waited longer than it allows.
    TimedOut,
    /// A quota or a table of the stack is full.
    Exhausted,
    /// A bad argument (port 0, a datagram larger than the buffer).
    InvalidInput,
    /// A system call failed.
    Kernel(crate::Error),
}

/// Whether calls wait for what they need.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Calls wait (in `net_wait`) until they can complete.
    Blocking,
    /// Calls return [`NetError::WouldBlock`] instead of waiting.
    NonBlocking,
}

/// Which half of a connection [`TcpStream::shutdown`] ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shutdown {
    /// No more writes: sends FIN once the queued data is out.
    Write,
    /// Both: as `Write`; the socket goes when the peer has closed too.
    Both,
}

/// Longest a blocking `connect` waits.
const CONNECT_TIMEOUT_MS: i64 = 10_000;
/// Datagrams a UDP socket queues each way.
const UDP_DATAGRAMS: usize = 16;
/// Bytes of a UDP socket's receive and of its send buffer.
const UDP_BUFFER_BYTES: usize = 16 * 1024;

/// Runs `attempt` until it gives something other than `WouldBlock`, waiting in between
/// (blocking mode), or once (non-blocking).
fn run<T>(
    stack: &Stack,
    mode: Mode,
    mut attempt: impl FnMut(&mut Inner) -> Result<T, NetError>,
) -> Result<T, NetError> {
    loop {
        let result = {
            let _span = crate::profile::enter(crate::profile::Layer::Stack);
            let mut inner = stack.0.borrow_mut();
            inner.poll();
            attempt(&mut inner)
        };
        match (result, mode) {
            (Err(NetError::WouldBlock), Mode::Blocking) => stack.wait()?,
            (result, _) => return result,
        }
    }
}

/// A TCP socket with the configured buffers; `Exhausted` when the heap cannot hold them (an
/// allocation failure would otherwise abort the app).
fn new_tcp_socket(inner: &Inner) -> Result<tcp::Socket<'static>, NetError> {
    let mut socket = tcp::Socket::new(
        tcp::SocketBuffer::new(zeroed(inner.config.tcp_receive_bytes)?),
        tcp::SocketBuffer::new(zeroed(inner.config.tcp_send_bytes)?),
    );
    // Request-response traffic (HTTP) should not wait for an ACK before a small last segment.
    socket.set_nagle_enabled(false);
    Ok(socket)
}

/// `bytes` zero bytes, or `Exhausted` if the heap has no room for them.
fn zeroed(bytes: usize) -> Result<Vec<u8>, NetError> {
    let mut buffer = Vec::new();
    buffer
        .try_reserve_exact(bytes)
        .map_err(|_| NetError::Exhausted)?;
    buffer.resize(bytes, 0);
    Ok(buffer)
}

/// A TCP port this app listens on, with its pool of listening sockets.
#[derive(Debug)]
pub struct TcpListener {
    stack: Stack,
    port: u16,
    pool: Vec<SocketHandle>,
    mode: Mode,
}

impl TcpListener {
    /// Claims `port` and starts the pool of listening sockets (the stack's `listen_pool`).
    pub fn bind(stack: &Stack, port: u16) -> Result<TcpListener, NetError> {
        let pool_size = stack.0.borrow().config.listen_pool.max(1);
        Self::bind_with_pool(stack, port, pool_size)
    }

    /// [`TcpListener::bind`] with a pool of `pool_size` listening sockets: at most that many
    /// connections can be in their handshake or waiting for `accept` at once.
    pub fn bind_with_pool(
        stack: &Stack,
        port: u16,
        pool_size: usize,
    ) -> Result<TcpListener, NetError> {
        if pool_size == 0 {
            return Err(NetError::InvalidInput);
        }
        let mut inner = stack.0.borrow_mut();
        inner.claim(Transport::Tcp, port)?;
        let mut pool = Vec::new();
        let mut filled = pool
            .try_reserve_exact(pool_size)
            .map_err(|_| NetError::Exhausted);
        for _ in 0..pool_size {
            if filled.is_err() {
                break;
            }
            filled = new_tcp_socket(&inner).and_then(|mut socket| {
                socket.listen(port).map_err(|_| NetError::InvalidInput)?;
                pool.push(inner.sockets.add(socket));
                Ok(())
            });
        }
        if let Err(error) = filled {
            // Nothing of a pool that did not fit stays behind: its sockets, nor the claim.
            for handle in pool {
                inner.sockets.remove(handle);
            }
            inner.release(Transport::Tcp, port);
            return Err(error);
        }
        drop(inner);
        Ok(TcpListener {
            stack: stack.clone(),
            port,
            pool,
            mode: Mode::Blocking,
        })
    }

    /// Blocking (the default) or not.
    pub fn set_mode(&mut self, mode: Mode) {
        self.mode = mode;
    }

    /// The port listened on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The next connection whose handshake is done, and the peer's address and port.
    pub fn accept(&mut self) -> Result<(TcpStream, ([u8; 4], u16)), NetError> {
        let port = self.port;
        let pool = &mut self.pool;
        let stream = run(&self.stack, self.mode, |inner| {
            for slot in pool.iter_mut() {
                let socket = inner.sockets.get_mut::<tcp::Socket>(*slot);
                match socket.state() {
                    tcp::State::Listen | tcp::State::SynReceived => continue,
                    // A handshake reset or timed out: listen again.
                    tcp::State::Closed => {
                        let _ = socket.listen(port);
                        continue;
                    }
                    _ => {}
                }
                let peer = socket.remote_endpoint();
                // No room for the socket that would listen in its place: the connection waits
                // in the pool for a later accept.
                let mut fresh = new_tcp_socket(inner)?;
                if fresh.listen(port).is_err() {
                    return Err(NetError::InvalidInput);
                }
                let accepted = core::mem::replace(slot, inner.sockets.add(fresh));
                // The stream is one more user of the listen port's claim.
                inner.claim(Transport::Tcp, port)?;
                let peer = match peer {
                    Some(IpEndpoint {
                        addr: IpAddress::Ipv4(address),
                        port,
                    }) => (address.octets(), port),
                    _ => ([0; 4], 0),
                };
                return Ok((accepted, peer));
            }
            Err(NetError::WouldBlock)
        })?;
        let (handle, peer) = stream;
        Ok((
            TcpStream {
                stack: self.stack.clone(),
                handle: Some(handle),
                local_port: port,
                mode: Mode::Blocking,
            },
            peer,
        ))
    }
}

impl Drop for TcpListener {
    fn drop(&mut self) {
        let mut inner = self.stack.0.borrow_mut();
        for handle in self.pool.drain(..) {
            inner.sockets.get_mut::<tcp::Socket>(handle).abort();
            // Sends the reset for a handshake in progress, then the socket goes.
            inner.poll();
            inner.sockets.remove(handle);
        }
        inner.release(Transport::Tcp, self.port);
    }
}

/// A TCP connection.
#[derive(Debug)]
pub struct TcpStream {
    stack: Stack,
    /// `None` once handed to the stack to linger.
    handle: Option<SocketHandle>,
    local_port: u16,
    mode: Mode,
}

impl TcpStream {
    /// Connects from an ephemeral port (claimed for the connection) to `address:port`,
    /// waiting until the handshake is done.
    pub fn connect(stack: &Stack, address: [u8; 4], port: u16) -> Result<TcpStream, NetError> {
        if port == 0 {
            return Err(NetError::InvalidInput);
        }
        let (handle, local_port) = {
            let mut inner = stack.0.borrow_mut();
            let local_port = inner.claim_ephemeral()?;
            let mut socket = match new_tcp_socket(&inner) {
                Ok(socket) => socket,
                Err(error) => {
                    inner.release(Transport::Tcp, local_port);
                    return Err(error);
                }
            };
            let remote = IpEndpoint::new(Ipv4Address::from_octets(address).into(), port);
            let context = inner.interface.context();
            if socket.connect(context, remote, local_port).is_err() {
                inner.release(Transport::Tcp, local_port);
                return Err(NetError::InvalidInput);
            }
            (inner.sockets.add(socket), local_port)
        };
        let stream = TcpStream {
            stack: stack.clone(),
            handle: Some(handle),
            local_port,
            mode: Mode::Blocking,
        };
        let deadline = super::now().total_millis() + CONNECT_TIMEOUT_MS;
        run(stack, Mode::Blocking, |inner| {
            match inner.sockets.get::<tcp::Socket>(handle).state() {
                tcp::State::SynSent | tcp::State::SynReceived => {
                    if super::now().total_millis() >= deadline {
                        Err(NetError::TimedOut)
                    } else {
                        Err(NetError::WouldBlock)
                    }
                }
                tcp::State::Closed => Err(NetError::ConnectionRefused),
                _ => Ok(()),
            }
        })?;
        Ok(stream)
    }

    /// Blocking (the default) or not.
    pub fn set_mode(&mut self, mode: Mode) {
        self.mode = mode;
    }

    fn handle(&self) -> Result<SocketHandle, NetError> {
        self.handle.ok_or(NetError::NotConnected)
    }

    /// Reads what has arrived into `buffer`: at least one byte, or 0 at the end of the
    /// stream (the peer closed its side).
    pub fn read(&mut self, buffer: &mut [u8]) -> Result<usize, NetError> {
        let handle = self.handle()?;
        if buffer.is_empty() {
            return Ok(0);
        }
        run(&self.stack, self.mode, |inner| {
            let socket = inner.sockets.get_mut::<tcp::Socket>(handle);
            match socket.recv_slice(buffer) {
                Ok(0) if socket.state() == tcp::State::Closed => Err(NetError::ConnectionReset),
                Ok(0) => Err(NetError::WouldBlock),
                Ok(count) => Ok(count),
                Err(tcp::RecvError::Finished) => Ok(0),
                Err(tcp::RecvError::InvalidState) => match socket.state() {
                    tcp::State::Closed => Err(NetError::ConnectionReset),
                    _ => Err(NetError::NotConnected),
                },
            }
        })
    }

    /// Queues bytes of `data` for sending; how many (at least one).
    pub fn write(&mut self, data: &[u8]) -> Result<usize, NetError> {
        let handle = self.handle()?;
        if data.is_empty() {
            return Ok(0);
        }
        run(&self.stack, self.mode, |inner| {
            let socket = inner.sockets.get_mut::<tcp::Socket>(handle);
            if !socket.may_send() {
                return Err(match socket.state() {
                    tcp::State::Closed => NetError::ConnectionReset,
                    _ => NetError::NotConnected,
                });
            }
            match socket.send_slice(data) {
                Ok(0) => Err(NetError::WouldBlock),
                Ok(count) => Ok(count),
                Err(tcp::SendError::InvalidState) => Err(NetError::NotConnected),
            }
        })
    }

    /// Writes all of `data` (blocking mode; in non-blocking mode, as much as fits, then
    /// `WouldBlock` with the count written so far lost: use [`TcpStream::write`] there).
    pub fn write_all(&mut self, mut data: &[u8]) -> Result<(), NetError> {
        while !data.is_empty() {
            let count = self.write(data)?;
            data = &data[count..];
        }
        Ok(())
    }

    /// Bytes queued and not yet acknowledged by the peer.
    pub fn unacknowledged(&self) -> usize {
        match self.handle {
            Some(handle) => self
                .stack
                .0
                .borrow()
                .sockets
                .get::<tcp::Socket>(handle)
                .send_queue(),
            None => 0,
        }
    }

    /// Ends the writing half (FIN after the queued data).
    pub fn shutdown(&mut self, how: Shutdown) -> Result<(), NetError> {
        let handle = self.handle()?;
        let _ = how;
        self.stack
            .0
            .borrow_mut()
            .sockets
            .get_mut::<tcp::Socket>(handle)
            .close();
        Ok(())
    }

    /// The peer's address and port, while connected.
    pub fn peer(&self) -> Option<([u8; 4], u16)> {
        let handle = self.handle?;
        let inner = self.stack.0.borrow();
        match inner.sockets.get::<tcp::Socket>(handle).remote_endpoint() {
            Some(IpEndpoint {
                addr: IpAddress::Ipv4(address),
                port,
            }) => Some((address.octets(), port)),
            _ => None,
        }
    }
}

impl Drop for TcpStream {
    fn drop(&mut self) {
        if let Some(handle) = self.handle.take() {
            self.stack
                .0
                .borrow_mut()
                .linger(handle, Transport::Tcp, self.local_port);
        }
    }
}

/// A UDP port this app has bound.
#[derive(Debug)]
pub struct UdpSocket {
    stack: Stack,
    handle: SocketHandle,
    port: u16,
    mode: Mode,
}

impl UdpSocket {
    /// Claims `port` and binds a socket to it.
    pub fn bind(stack: &Stack, port: u16) -> Result<UdpSocket, NetError> {
        let mut inner = stack.0.borrow_mut();
        inner.claim(Transport::Udp, port)?;
        let buffer = || {
            udp::PacketBuffer::new(
                vec![udp::PacketMetadata::EMPTY; UDP_DATAGRAMS],
                vec![0; UDP_BUFFER_BYTES],
            )
        };
        let mut socket = udp::Socket::new(buffer(), buffer());
        if socket.bind(port).is_err() {
            inner.release(Transport::Udp, port);
            return Err(NetError::InvalidInput);
        }
        let handle = inner.sockets.add(socket);
        drop(inner);
        Ok(UdpSocket {
            stack: stack.clone(),
            handle,
            port,
            mode: Mode::Blocking,
        })
    }

    /// Blocking (the default) or not.
    pub fn set_mode(&mut self, mode: Mode) {
        self.mode = mode;
    }

    /// Sends `data` as one datagram to `address:port`.
    pub fn send_to(&mut self, data: &[u8], address: [u8; 4], port: u16) -> Result<(), NetError> {
        if port == 0 || data.len() > UDP_BUFFER_BYTES {
            return Err(NetError::InvalidInput);
        }
        let handle = self.handle;
        let remote = IpEndpoint::new(Ipv4Address::from_octets(address).into(), port);
        run(&self.stack, self.mode, |inner| {
            match inner
                .sockets
                .get_mut::<udp::Socket>(handle)
                .send_slice(data, remote)
            {
                Ok(()) => Ok(()),
                Err(udp::SendError::BufferFull) => Err(NetError::WouldBlock),
                Err(udp::SendError::Unaddressable) => Err(NetError::InvalidInput),
            }
        })?;
        // Send it now rather than at the next poll.
        self.stack.poll();
        Ok(())
    }

    /// The next datagram: its length (cut to `buffer`'s) and sender.
    pub fn recv_from(&mut self, buffer: &mut [u8]) -> Result<(usize, ([u8; 4], u16)), NetError> {
        let handle = self.handle;
        run(&self.stack, self.mode, |inner| {
            let socket = inner.sockets.get_mut::<udp::Socket>(handle);
            match socket.recv() {
                Ok((payload, meta)) => {
                    let count = payload.len().min(buffer.len());
                    buffer[..count].copy_from_slice(&payload[..count]);
                    let peer = match meta.endpoint.addr {
                        IpAddress::Ipv4(address) => address.octets(),
                    };
                    Ok((count, (peer, meta.endpoint.port)))
                }
                Err(udp::RecvError::Exhausted) => Err(NetError::WouldBlock),
                Err(udp::RecvError::Truncated) => Err(NetError::InvalidInput),
            }
        })
    }

    /// The bound port.
    pub fn port(&self) -> u16 {
        self.port
    }
}

impl Drop for UdpSocket {
    fn drop(&mut self) {
        let mut inner = self.stack.0.borrow_mut();
        inner.sockets.remove(self.handle);
        inner.release(Transport::Udp, self.port);
    }
}
