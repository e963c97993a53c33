//! An HTTP client over this app's own TCP/IP stack (libnet's smoltcp): connects out from an
//! ephemeral port, GETs the URL its boot argument names (`http://A.B.C.D:PORT/PATH`), and
//! prints the status, the body's length and its SHA-256. A second argument `wait=TICKS`
//! (at most 1000) makes it wait that long first (a scenario uses it to ask for its neighbour
//! while another app floods the network with ARP requests).
//!
//! It needs no monitor capability: the kernel copies the reply to its stack's ARP request for
//! the server to its ring (and to no other app's). The server may not be up yet: a refused
//! connection is tried again for a while.
#![cfg_attr(target_os = "none", no_std, no_main)]
#![forbid(unsafe_code)]

#[cfg(target_os = "none")]
extern crate alloc;

#[cfg(target_os = "none")]
libnet::entry!(main);

/// `http://A.B.C.D[:PORT]/PATH` as address, port and path.
#[cfg(target_os = "none")]
fn parse_url(url: &str) -> Option<([u8; 4], u16, &str)> {
    let rest = url.strip_prefix("http://")?;
    let (authority, path) = match rest.find('/') {
        Some(at) => (&rest[..at], &rest[at..]),
        None => (rest, "/"),
    };
    let (host, port) = match authority.split_once(':') {
        Some((host, port)) => (host, port.parse().ok()?),
        None => (authority, 80),
    };
    let mut address = [0u8; 4];
    let mut parts = host.split('.');
    for byte in &mut address {
        *byte = parts.next()?.parse().ok()?;
    }
    if parts.next().is_some() {
        return None;
    }
    Some((address, port, path))
}

/// Tries before giving up on a refused connection, a second apart.
#[cfg(target_os = "none")]
const CONNECT_TRIES: u32 = 20;

#[cfg(target_os = "none")]
fn main() -> u8 {
    use alloc::vec::Vec;
    use libnet::println;
    use libnet::stack::{NetError, Stack, StackConfig, TcpStream};
    use sha2::{Digest, Sha256};

    let mut argument = [0u8; 256];
    let url = match libnet::net::boot_argument(0, &mut argument) {
        Ok(length) => core::str::from_utf8(&argument[..length]).unwrap_or(""),
        Err(_) => "",
    };
    let Some((address, port, path)) = parse_url(url) else {
        println!("fetch: not a URL: {url:?}");
        return 2;
    };
    let mut option = [0u8; 32];
    let wait = libnet::net::boot_argument(1, &mut option)
        .ok()
        .and_then(|length| core::str::from_utf8(&option[..length]).ok())
        .and_then(|text| text.strip_prefix("wait="))
        .and_then(|ticks| ticks.parse::<u64>().ok());
    if let Some(ticks) = wait {
        let ticks = ticks.min(libnet::abi::syscall::NET_WAIT_MAX_TICKS);
        // No ring yet: this only sleeps.
        let _ = libnet::net::wait(ticks, libnet::abi::syscall::NET_WAIT_OWN_FRAMES);
        println!("fetch: waited {ticks} ticks");
    }
    let stack = match Stack::new(StackConfig::default()) {
        Ok(stack) => stack,
        Err(error) => {
            println!("fetch: no stack: {error:?}");
            return 2;
        }
    };
    let start = libnet::sys::ticks();
    let mut tries = 0;
    let mut stream = loop {
        tries += 1;
        match TcpStream::connect(&stack, address, port) {
            Ok(stream) => break stream,
            Err(NetError::ConnectionRefused) if tries < CONNECT_TRIES => {
                let wait = libnet::sys::ticks();
                while libnet::sys::ticks() - wait < libnet::abi::syscall::TICKS_PER_SECOND {
                    let _ = stack.wait();
                }
            }
            Err(error) => {
                println!("fetch: connecting to {url}: {error:?} (try {tries})");
                return 3;
            }
        }
    };
    let request = alloc::format!(
        "GET {path} HTTP/1.1\r\nHost: {}.{}.{}.{}:{port}\r\nUser-Agent: exo-fetch\r\nConnection: close\r\n\r\n",
        address[0],
        address[1],
        address[2],
        address[3]
    );
    if let Err(error) = stream.write_all(request.as_bytes()) {
        println!("fetch: sending the request: {error:?}");
        return 4;
    }
    // The response until the server closes (Connection: close): the head kept, the body
    // hashed as it arrives.
    let mut head = Vec::new();
    let mut body_bytes = 0usize;
    let mut hasher = Sha256::new();
    let mut in_body = false;
    let mut buffer = alloc::vec![0u8; 16 * 1024];
    loop {
        let count = match stream.read(&mut buffer) {
            Ok(0) => break,
            Ok(count) => count,
            Err(error) => {
                println!("fetch: reading after {} body bytes: {error:?}", body_bytes);
                return 5;
            }
        };
        let mut bytes = &buffer[..count];
        if !in_body {
            head.extend_from_slice(bytes);
            let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") else {
                if head.len() > 16 * 1024 {
                    println!("fetch: no end of the response head in {} bytes", head.len());
                    return 6;
                }
                continue;
            };
            let already = head.len() - count;
            bytes = &bytes[end + 4 - already..];
            head.truncate(end);
            in_body = true;
        }
        hasher.update(bytes);
        body_bytes += bytes.len();
    }
    let elapsed_ticks = libnet::sys::ticks() - start;
    if !in_body {
        println!("fetch: no response head in {} bytes", head.len());
        return 6;
    }
    let head = core::str::from_utf8(&head).unwrap_or("");
    let status = head.lines().next().unwrap_or("");
    let digest = hasher.finalize();
    let mut hex = alloc::string::String::new();
    for byte in digest {
        hex.push_str(&alloc::format!("{byte:02x}"));
    }
    println!(
        "fetch: {url}: {status:?}, body {body_bytes} bytes, sha256 {hex}, {} ms",
        elapsed_ticks * 1000 / libnet::abi::syscall::TICKS_PER_SECOND
    );
    drop(stream);
    let wait = libnet::sys::ticks();
    while stack.counters().sockets > 0 && libnet::sys::ticks() - wait < 500 {
        let _ = stack.wait();
    }
    // Segments the peer sent again can land in the ring just before the last filter goes;
    // the stack takes them (and releases their slots) on its next poll. What is still held
    // after that is a slot the library failed to release.
    for _ in 0..4 {
        if stack.counters().ring_slots_used == 0 {
            break;
        }
        let _ = stack.wait();
    }
    let counters = stack.counters();
    println!(
        "fetch: left: sockets {} filters {} ring slots {}; device {:?}",
        counters.sockets, counters.filters, counters.ring_slots_used, counters.device
    );
    0
}

#[cfg(not(target_os = "none"))]
fn main() {}
