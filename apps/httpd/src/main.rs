//! An HTTP/1.1 server over this app's own TCP/IP stack (libnet's smoltcp): a small site
//! embedded in the image, every response built once at start (headers included) and served
//! from memory.
//!
//! GET and HEAD; keep-alive (HTTP/1.1's default, and HTTP/1.0 with `Connection: keep-alive`),
//! pipelined requests answered in order; 404 for a path it does not have, 400 for a request it
//! cannot parse (then the connection closes). Arguments (`arg=K:HEX`): `port=PORT` (default
//! 80), `quit=PORT` (a UDP datagram there ends the app), `pool=N` (listening sockets, default
//! 8: at most that many connections in their handshake at once), `profile=PORT` (the
//! per-layer profile's control port, `libnet::stack::profile_port`). Prints `httpd: ready ...`, and at the
//! end what it served and what the stack still holds, which must be nothing. `cheetah=LIST`
//! (`none`, the default: smoltcp serves; `engine`: libnet's own engine with no technique; `all`;
//! or some of `prebuilt,cache,piggyback`) serves with libnet's own engine and Cheetah's
//! techniques instead (`cheetah.rs`).
#![cfg_attr(target_os = "none", no_std, no_main)]
#![forbid(unsafe_code)]

#[cfg(target_os = "none")]
extern crate alloc;

#[cfg(target_os = "none")]
libnet::entry!(main);

/// The site: path, content type, body.
#[cfg(target_os = "none")]
const SITE: &[(&str, &str, &[u8])] = &[
    (
        "/",
        "text/html; charset=utf-8",
        include_bytes!("../site/index.html"),
    ),
    (
        "/index.html",
        "text/html; charset=utf-8",
        include_bytes!("../site/index.html"),
    ),
    (
        "/about.html",
        "text/html; charset=utf-8",
        include_bytes!("../site/about.html"),
    ),
    (
        "/style.css",
        "text/css",
        include_bytes!("../site/style.css"),
    ),
    (
        "/logo.svg",
        "image/svg+xml",
        include_bytes!("../site/logo.svg"),
    ),
    (
        "/1k.html",
        "text/html; charset=utf-8",
        include_bytes!("../site/1k.html"),
    ),
    (
        "/100k.bin",
        "application/octet-stream",
        include_bytes!(concat!(env!("OUT_DIR"), "/100k.bin")),
    ),
    (
        "/big.bin",
        "application/octet-stream",
        include_bytes!(concat!(env!("OUT_DIR"), "/big.bin")),
    ),
];

/// Longest request head accepted (request line and headers).
#[cfg(target_os = "none")]
const HEAD_MAX_BYTES: usize = 8 * 1024;

/// Bytes of each smoltcp socket's receive buffer. Requests are small and are copied out into
/// the connection's own input at once (which holds up to [`HEAD_MAX_BYTES`]), so this only
/// bounds what a client may send ahead; it is small so that a pool of listening sockets and
/// as many connections fit the heap (64 of each take 2.5 MiB of libnet's 4 MiB with these
/// two sizes, where smoltcp's default 32 KiB each way took 8 MiB).
#[cfg(target_os = "none")]
const RECEIVE_BYTES: usize = 4 * 1024;
/// Bytes of each smoltcp socket's send buffer: the most of a response in flight at once on
/// the smoltcp path (the Cheetah engine sends from the prebuilt responses, not from it).
#[cfg(target_os = "none")]
const SEND_BYTES: usize = 16 * 1024;

#[cfg(target_os = "none")]
pub(crate) mod http {
    use alloc::format;
    use alloc::vec::Vec;

    /// One prebuilt response: its head for a kept and for a closed connection, and its body.
    pub struct Response {
        pub keep: Vec<u8>,
        pub close: Vec<u8>,
        pub body: &'static [u8],
    }

    impl Response {
        pub fn new(status: &str, content_type: &str, body: &'static [u8]) -> Response {
            let head = |connection: &str| {
                format!(
                    "HTTP/1.1 {status}\r\nServer: exo-httpd\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: {connection}\r\n\r\n",
                    body.len()
                )
                .into_bytes()
            };
            Response {
                keep: head("keep-alive"),
                close: head("close"),
                body,
            }
        }
    }

    /// What a complete request head asks for.
    #[derive(Debug, PartialEq, Eq)]
    pub enum Request<'a> {
        /// A GET (`head_only` false) or HEAD of `path`; whether the connection stays open.
        Fetch {
            path: &'a str,
            head_only: bool,
            keep_alive: bool,
        },
        /// Not a request this server can parse.
        Bad,
    }

    /// The request in `head` (without the blank line that ends it).
    pub fn parse(head: &[u8]) -> Request<'_> {
        let Ok(text) = core::str::from_utf8(head) else {
            return Request::Bad;
        };
        let mut lines = text.split("\r\n");
        let mut words = lines.next().unwrap_or("").split(' ');
        let (Some(method), Some(target), Some(version), None) =
            (words.next(), words.next(), words.next(), words.next())
        else {
            return Request::Bad;
        };
        let head_only = match method {
            "GET" => false,
            "HEAD" => true,
            _ => return Request::Bad,
        };
        let mut keep_alive = match version {
            "HTTP/1.1" => true,
            "HTTP/1.0" => false,
            _ => return Request::Bad,
        };
        if !target.starts_with('/') {
            return Request::Bad;
        }
        for line in lines {
            let Some((name, value)) = line.split_once(':') else {
                return Request::Bad;
            };
            let value = value.trim();
            if name.eq_ignore_ascii_case("connection") {
                if value.eq_ignore_ascii_case("close") {
                    keep_alive = false;
                } else if value.eq_ignore_ascii_case("keep-alive") {
                    keep_alive = true;
                }
            } else if (name.eq_ignore_ascii_case("content-length") && value != "0")
                || name.eq_ignore_ascii_case("transfer-encoding")
            {
                // A body on GET or HEAD: not something this server reads.
                return Request::Bad;
            }
        }
        let path = target.split('?').next().unwrap_or(target);
        Request::Fetch {
            path,
            head_only,
            keep_alive,
        }
    }
}

#[cfg(target_os = "none")]
mod cheetah;

/// What the boot arguments give.
#[cfg(target_os = "none")]
struct Arguments {
    port: u16,
    quit: Option<u16>,
    /// The profile port (`libnet::stack::profile_port`).
    profile: Option<u16>,
    pool: usize,
    techniques: Result<Techniques, alloc::string::String>,
}

/// The ports, listening-pool size and Cheetah techniques the boot arguments give.
#[cfg(target_os = "none")]
fn ports() -> Arguments {
    let (mut port, mut quit, mut profile, mut pool) = (80, None, None, 8);
    let mut techniques = Ok(Techniques::default());
    let mut buffer = [0u8; 128];
    for index in 0..8 {
        let Ok(length) = libnet::net::boot_argument(index, &mut buffer) else {
            break;
        };
        let text = core::str::from_utf8(&buffer[..length]).unwrap_or("");
        for word in text.split_whitespace() {
            if let Some(list) = word.strip_prefix("cheetah=") {
                techniques = Techniques::parse(list).map_err(alloc::string::ToString::to_string);
                continue;
            }
            match word
                .split_once('=')
                .map(|(key, value)| (key, value.parse::<u16>()))
            {
                Some(("port", Ok(value))) => port = value,
                Some(("quit", Ok(value))) => quit = Some(value),
                Some(("profile", Ok(value))) => profile = Some(value),
                Some(("pool", Ok(value))) => pool = usize::from(value),
                _ => {}
            }
        }
    }
    Arguments {
        port,
        quit,
        profile,
        pool,
        techniques,
    }
}

#[cfg(target_os = "none")]
use libnet::stack::cheetah::Techniques;

#[cfg(target_os = "none")]
fn main() -> u8 {
    use alloc::vec::Vec;
    use http::{Request, Response};
    use libnet::println;
    use libnet::stack::profile_port::ProfilePort;
    use libnet::stack::{Mode, NetError, Stack, StackConfig, TcpListener, TcpStream, UdpSocket};

    /// A connection: the request bytes not yet parsed, the response pieces not yet written,
    /// and whether to close once they are.
    struct Connection<'a> {
        stream: TcpStream,
        input: Vec<u8>,
        output: Vec<&'a [u8]>,
        close_after: bool,
    }

    let Arguments {
        port,
        quit: quit_port,
        profile: profile_port,
        pool,
        techniques,
    } = ports();
    let techniques = match techniques {
        Ok(techniques) => techniques,
        Err(word) => {
            println!(
                "httpd: cheetah={word}: not one of none, engine, all, prebuilt, cache, piggyback"
            );
            return 2;
        }
    };
    let responses: Vec<(&str, Response)> = SITE
        .iter()
        .map(|(path, content_type, body)| (*path, Response::new("200 OK", content_type, body)))
        .collect();
    let not_found = Response::new("404 Not Found", "text/plain", b"not found\n");
    let bad_request = Response::new("400 Bad Request", "text/plain", b"bad request\n");
    let stack = match Stack::new(StackConfig {
        listen_pool: pool,
        tcp_receive_bytes: RECEIVE_BYTES,
        tcp_send_bytes: SEND_BYTES,
        ..StackConfig::default()
    }) {
        Ok(stack) => stack,
        Err(error) => {
            println!("httpd: no stack: {error:?}");
            return 2;
        }
    };
    let mut profile = match profile_port.map(|port| ProfilePort::bind(&stack, port)) {
        Some(Ok(profile)) => Some(profile),
        Some(Err(error)) => {
            println!("httpd: profile port: {error:?}");
            return 3;
        }
        None => None,
    };
    if techniques.any() {
        return cheetah::serve(
            &stack,
            port,
            quit_port,
            profile.as_mut(),
            techniques,
            &responses,
            &not_found,
            &bad_request,
        );
    }
    let mut listener = match TcpListener::bind(&stack, port) {
        Ok(listener) => listener,
        Err(error) => {
            println!("httpd: port {port}: {error:?}");
            return 3;
        }
    };
    listener.set_mode(Mode::NonBlocking);
    let mut quit = match quit_port.map(|port| UdpSocket::bind(&stack, port)) {
        Some(Ok(mut socket)) => {
            socket.set_mode(Mode::NonBlocking);
            Some(socket)
        }
        Some(Err(error)) => {
            println!("httpd: quit port: {error:?}");
            return 3;
        }
        None => None,
    };
    println!(
        "httpd: ready on port {port}, {} paths, cheetah={techniques}",
        SITE.len()
    );
    let mut connections: Vec<Connection<'_>> = Vec::new();
    let (mut accepted, mut served, mut missing, mut bad, mut lost) = (0u64, 0u64, 0u64, 0u64, 0u64);
    let mut buffer = alloc::vec![0u8; 4096];
    loop {
        let mut progress = false;
        while let Ok((mut stream, _peer)) = listener.accept() {
            stream.set_mode(Mode::NonBlocking);
            connections.push(Connection {
                stream,
                input: Vec::new(),
                output: Vec::new(),
                close_after: false,
            });
            accepted += 1;
            progress = true;
        }
        connections.retain_mut(|connection| {
            if !connection.close_after {
                match connection.stream.read(&mut buffer) {
                    Ok(0) => connection.close_after = true,
                    Ok(count) => {
                        connection.input.extend_from_slice(&buffer[..count]);
                        progress = true;
                    }
                    Err(NetError::WouldBlock) => {}
                    Err(_) => {
                        lost += 1;
                        return false;
                    }
                }
            }
            // Every complete request head in the input, in order.
            while !connection.close_after {
                let Some(end) = connection.input.windows(4).position(|w| w == b"\r\n\r\n") else {
                    if connection.input.len() > HEAD_MAX_BYTES {
                        connection.output.push(&bad_request.close);
                        connection.output.push(bad_request.body);
                        connection.close_after = true;
                        bad += 1;
                    }
                    break;
                };
                let (response, head_only, keep_alive) = match http::parse(&connection.input[..end])
                {
                    Request::Fetch {
                        path,
                        head_only,
                        keep_alive,
                    } => match responses.iter().find(|(known, _)| *known == path) {
                        Some((_, response)) => {
                            served += 1;
                            (response, head_only, keep_alive)
                        }
                        None => {
                            missing += 1;
                            (&not_found, head_only, keep_alive)
                        }
                    },
                    Request::Bad => {
                        bad += 1;
                        (&bad_request, false, false)
                    }
                };
                connection.output.push(if keep_alive {
                    &response.keep
                } else {
                    &response.close
                });
                if !head_only {
                    connection.output.push(response.body);
                }
                connection.close_after = !keep_alive;
                connection.input.drain(..end + 4);
            }
            while let Some(piece) = connection.output.first_mut() {
                match connection.stream.write(piece) {
                    Ok(count) => {
                        *piece = &piece[count..];
                        if piece.is_empty() {
                            connection.output.remove(0);
                        }
                        progress = true;
                    }
                    Err(NetError::WouldBlock) => break,
                    Err(_) => {
                        lost += 1;
                        return false;
                    }
                }
            }
            // Closed (by dropping, after the queued bytes) once everything is written.
            !(connection.close_after && connection.output.is_empty())
        });
        if let Some(socket) = quit.as_mut()
            && socket.recv_from(&mut buffer).is_ok()
        {
            break;
        }
        if let Some(profile) = profile.as_mut() {
            progress |= profile.serve(&mut buffer);
        }
        if !progress && let Err(error) = stack.wait() {
            println!("httpd: net_wait: {error:?}");
            return 4;
        }
    }
    drop(connections);
    drop(listener);
    drop(quit);
    let start = libnet::sys::ticks();
    while stack.counters().sockets > 0 && libnet::sys::ticks() - start < 500 {
        let _ = stack.wait();
    }
    let counters = stack.counters();
    println!(
        "httpd: done: {accepted} connections, {served} served, {missing} not found, {bad} bad requests, {lost} lost; device {:?}",
        counters.device
    );
    println!(
        "httpd: left: sockets {} filters {} ring slots {}",
        counters.sockets, counters.filters, counters.ring_slots_used
    );
    0
}

#[cfg(not(target_os = "none"))]
fn main() {}
