//! TCP and UDP echo over this app's own TCP/IP stack (libnet's smoltcp), on the ports its boot
//! arguments name.
//!
//! Arguments (each `arg=K:HEX` of the boot command line, hex of the text): `tcp=PORT`
//! (default 7), `udp=PORT` (default 7), `quit=PORT` (a datagram there ends the app; default
//! none), `probe=1` (first check that the kernel tells this app nothing about another app's
//! ring at the address of its own, see below), `arp_flood=N` (first send N ARP requests for
//! as many addresses, two per timer tick: the kernel remembers at most 4 of an app's
//! questions, so this must not keep another app's ARP reply from reaching it), `window=KIB`
//! (each TCP socket's receive and send buffer, default 32: a bulk transfer wants a window that
//! covers the round trip; above 64 smoltcp scales the window), `profile=PORT` (the per-layer
//! profile's control port, `libnet::stack::profile_port`). Any number of TCP connections at once: what arrives is sent back, and when the peer
//! closes its side, the rest is sent and the connection closed. Prints `echo: ready ...`, and
//! at the end what it echoed and what the stack still holds (sockets, filters, ring slots),
//! which must be nothing.
#![cfg_attr(target_os = "none", no_std, no_main)]
#![forbid(unsafe_code)]

#[cfg(target_os = "none")]
extern crate alloc;

#[cfg(target_os = "none")]
libnet::entry!(main);

/// What the boot arguments give.
#[cfg(target_os = "none")]
struct Arguments {
    tcp: u16,
    udp: u16,
    quit: Option<u16>,
    /// The per-layer profile's control port (`libnet::stack::profile_port`).
    profile: Option<u16>,
    probe: bool,
    /// ARP requests to send first.
    flood: u16,
    /// Each TCP socket's buffers, in KiB.
    window: u16,
}

/// What the boot arguments give.
#[cfg(target_os = "none")]
fn ports() -> Arguments {
    let mut arguments = Arguments {
        tcp: 7,
        udp: 7,
        quit: None,
        profile: None,
        probe: false,
        flood: 0,
        window: 32,
    };
    let mut buffer = [0u8; 64];
    for index in 0..8 {
        let Ok(length) = libnet::net::boot_argument(index, &mut buffer) else {
            break;
        };
        let text = core::str::from_utf8(&buffer[..length]).unwrap_or("");
        for word in text.split_whitespace() {
            let Some((key, value)) = word.split_once('=') else {
                continue;
            };
            let Ok(port) = value.parse::<u16>() else {
                continue;
            };
            match key {
                "tcp" => arguments.tcp = port,
                "udp" => arguments.udp = port,
                "quit" => arguments.quit = Some(port),
                "profile" => arguments.profile = Some(port),
                "probe" => arguments.probe = port != 0,
                "arp_flood" => arguments.flood = port,
                "window" => arguments.window = port.max(1),
                _ => {}
            }
        }
    }
    arguments
}

/// Sends `requests` ARP requests from the host's addresses for 10.99.X.Y, two per timer tick;
/// how many the kernel sent.
#[cfg(target_os = "none")]
fn arp_flood(requests: u16) -> u16 {
    use libnet::net;
    let (Ok(mac), Ok(ipv4)) = (net::mac(), net::ipv4()) else {
        return 0;
    };
    let mut frame = [0u8; 42];
    frame[..6].copy_from_slice(&[0xff; 6]);
    frame[6..12].copy_from_slice(&mac);
    frame[12..14].copy_from_slice(&[0x08, 0x06]);
    // Ethernet, IPv4, address lengths 6 and 4, request.
    frame[14..22].copy_from_slice(&[0, 1, 0x08, 0x00, 6, 4, 0, 1]);
    frame[22..28].copy_from_slice(&mac);
    frame[28..32].copy_from_slice(&ipv4);
    let mut sent = 0;
    for index in 0..requests {
        frame[38..42].copy_from_slice(&[10, 99, (index >> 8) as u8, index as u8]);
        if net::transmit(&[&frame]).is_ok() {
            sent += 1;
        }
        if index % 2 == 1 {
            let _ = net::wait(1, libnet::abi::syscall::NET_WAIT_OWN_FRAMES);
        }
    }
    sent
}

/// The hostile half of `net_counter(index, ring)`: booted after another echo (the same binary,
/// so its stack ring is at the same address), this one waits 3 s for that one to bind its
/// ring, asks for the count of that address before having a ring there itself (`NotFound`:
/// another app's ring is not told), then, with its own stack, for a counter the kernel does not
/// keep per ring and for an address inside its ring. The scenario checks the other echo was
/// ready first.
#[cfg(target_os = "none")]
fn probe_ring_counters(stack: Option<&libnet::stack::Stack>) {
    use libnet::abi::net::Counter;
    use libnet::net::ring_counter;
    let ring = libnet::stack::ring_address();
    match stack {
        None => {
            let _ = libnet::net::wait(300, libnet::abi::syscall::NET_WAIT_OWN_FRAMES);
            libnet::println!(
                "echo: ring counters: another app's ring {:?}",
                ring_counter(Counter::RingFull, ring)
            );
        }
        Some(_) => libnet::println!(
            "echo: ring counters: own delivered {:?}, own ring full {:?}, not kept per ring {:?}, inside the ring {:?}",
            ring_counter(Counter::Delivered, ring).is_ok(),
            ring_counter(Counter::RingFull, ring),
            ring_counter(Counter::TxFrames, ring),
            ring_counter(Counter::RingFull, ring + 4096),
        ),
    }
}

#[cfg(target_os = "none")]
fn main() -> u8 {
    use alloc::vec::Vec;
    use libnet::println;
    use libnet::stack::profile_port::ProfilePort;
    use libnet::stack::{Mode, NetError, Stack, StackConfig, TcpListener, TcpStream, UdpSocket};

    /// One connection: bytes read and not yet written back, and whether the peer has closed.
    struct Connection {
        stream: TcpStream,
        pending: Vec<u8>,
        peer_closed: bool,
    }

    let Arguments {
        tcp: tcp_port,
        udp: udp_port,
        quit: quit_port,
        profile: profile_port,
        probe,
        flood,
        window: window_kib,
    } = ports();
    if probe {
        probe_ring_counters(None);
    }
    let window = usize::from(window_kib) * 1024;
    let stack = match Stack::new(StackConfig {
        tcp_receive_bytes: window,
        tcp_send_bytes: window,
        ..StackConfig::default()
    }) {
        Ok(stack) => stack,
        Err(error) => {
            println!("echo: no stack: {error:?}");
            return 2;
        }
    };
    let mut listener = match TcpListener::bind(&stack, tcp_port) {
        Ok(listener) => listener,
        Err(error) => {
            println!("echo: tcp port {tcp_port}: {error:?}");
            return 3;
        }
    };
    listener.set_mode(Mode::NonBlocking);
    let mut udp = match UdpSocket::bind(&stack, udp_port) {
        Ok(udp) => udp,
        Err(error) => {
            println!("echo: udp port {udp_port}: {error:?}");
            return 3;
        }
    };
    udp.set_mode(Mode::NonBlocking);
    let mut quit = match quit_port.map(|port| UdpSocket::bind(&stack, port)) {
        Some(Ok(mut socket)) => {
            socket.set_mode(Mode::NonBlocking);
            Some(socket)
        }
        Some(Err(error)) => {
            println!("echo: quit port: {error:?}");
            return 3;
        }
        None => None,
    };
    let mut profile = match profile_port.map(|port| ProfilePort::bind(&stack, port)) {
        Some(Ok(profile)) => Some(profile),
        Some(Err(error)) => {
            println!("echo: profile port: {error:?}");
            return 3;
        }
        None => None,
    };
    if flood > 0 {
        println!(
            "echo: ARP flood: {} of {flood} requests sent",
            arp_flood(flood)
        );
    }
    if probe {
        probe_ring_counters(Some(&stack));
    }
    println!("echo: ready tcp {tcp_port} udp {udp_port} window {window_kib} KiB");
    let mut connections: Vec<Connection> = Vec::new();
    let (mut accepted, mut tcp_bytes, mut datagrams, mut errors) = (0u64, 0u64, 0u64, 0u64);
    // One read takes what a full window holds, so a bulk peer's data goes back in one write.
    let mut buffer = alloc::vec![0u8; window.max(16 * 1024)];
    loop {
        let mut progress = false;
        while let Ok((mut stream, _peer)) = listener.accept() {
            stream.set_mode(Mode::NonBlocking);
            connections.push(Connection {
                stream,
                pending: Vec::new(),
                peer_closed: false,
            });
            accepted += 1;
            progress = true;
        }
        connections.retain_mut(|connection| {
            if connection.pending.is_empty() && !connection.peer_closed {
                match connection.stream.read(&mut buffer) {
                    Ok(0) => connection.peer_closed = true,
                    Ok(count) => connection.pending.extend_from_slice(&buffer[..count]),
                    Err(NetError::WouldBlock) => {}
                    Err(_) => {
                        errors += 1;
                        return false;
                    }
                }
            }
            while !connection.pending.is_empty() {
                match connection.stream.write(&connection.pending) {
                    Ok(count) => {
                        connection.pending.drain(..count);
                        tcp_bytes += count as u64;
                        progress = true;
                    }
                    Err(NetError::WouldBlock) => break,
                    Err(_) => {
                        errors += 1;
                        return false;
                    }
                }
            }
            // Done: the peer closed and everything is written back (dropping closes ours).
            !(connection.peer_closed && connection.pending.is_empty())
        });
        while let Ok((count, (address, port))) = udp.recv_from(&mut buffer) {
            if udp.send_to(&buffer[..count], address, port).is_ok() {
                datagrams += 1;
            }
            progress = true;
        }
        if let Some(socket) = quit.as_mut()
            && socket.recv_from(&mut buffer).is_ok()
        {
            break;
        }
        if let Some(profile) = profile.as_mut() {
            progress |= profile.serve(&mut buffer);
        }
        if !progress && let Err(error) = stack.wait() {
            println!("echo: net_wait: {error:?}");
            return 4;
        }
    }
    drop(connections);
    drop(listener);
    drop(udp);
    drop(quit);
    // Closed connections linger until their FIN is acknowledged: wait for them, bounded.
    let start = libnet::sys::ticks();
    while stack.counters().sockets > 0 && libnet::sys::ticks() - start < 500 {
        let _ = stack.wait();
    }
    let counters = stack.counters();
    println!(
        "echo: done: {accepted} connections, {tcp_bytes} bytes echoed, {datagrams} datagrams, {errors} errors; device {:?}",
        counters.device
    );
    println!(
        "echo: left: sockets {} filters {} ring slots {}",
        counters.sockets, counters.filters, counters.ring_slots_used
    );
    0
}

#[cfg(not(target_os = "none"))]
fn main() {}
