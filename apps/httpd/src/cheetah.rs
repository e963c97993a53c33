//! httpd served by libnet's own TCP engine with Cheetah's techniques (`cheetah=LIST`): the
//! port's frames are diverted from smoltcp to `libnet::stack::cheetah`, every response is
//! prebuilt once in the forms a request can ask for (kept or closed connection, GET or HEAD),
//! and the engine sends from those (or from a copy, without `cache`).
use crate::http::{self, Request, Response};
use crate::{HEAD_MAX_BYTES, SITE};
use alloc::boxed::Box;
use alloc::vec;
use alloc::vec::Vec;
use libnet::abi::syscall::NET_WAIT_MAX_TICKS;
use libnet::println;
use libnet::stack::cheetah::Techniques;
use libnet::stack::cheetah::prebuilt::Prebuilt;
use libnet::stack::cheetah::server::{Server, ServerConfig};
use libnet::stack::{KernelLink, Mode, Stack, TICK_MILLISECONDS, UdpSocket, now_ms};

/// Responses a request gets per handler call (the rest of a pipelined burst waits its turn).
const REPLIES_PER_CALL: usize = 8;

/// One response in the four forms a request can want; built once, kept for the app's life.
struct Forms {
    keep: &'static Prebuilt,
    close: &'static Prebuilt,
    keep_head: &'static Prebuilt,
    close_head: &'static Prebuilt,
}

impl Forms {
    fn new(response: &Response) -> Forms {
        let keep: &'static [u8] = Box::leak(response.keep.clone().into_boxed_slice());
        let close: &'static [u8] = Box::leak(response.close.clone().into_boxed_slice());
        let leak = |pieces: Vec<&'static [u8]>| -> &'static Prebuilt {
            Box::leak(Box::new(Prebuilt::new(pieces)))
        };
        Forms {
            keep: leak(vec![keep, response.body]),
            close: leak(vec![close, response.body]),
            keep_head: leak(vec![keep]),
            close_head: leak(vec![close]),
        }
    }

    fn pick(&self, keep_alive: bool, head_only: bool) -> &'static Prebuilt {
        match (keep_alive, head_only) {
            (true, false) => self.keep,
            (false, false) => self.close,
            (true, true) => self.keep_head,
            (false, true) => self.close_head,
        }
    }
}

/// Serves until a datagram reaches the quit port; the exit status.
#[allow(clippy::too_many_arguments)]
pub fn serve(
    stack: &Stack,
    port: u16,
    quit_port: Option<u16>,
    mut profile: Option<&mut libnet::stack::profile_port::ProfilePort>,
    techniques: Techniques,
    responses: &[(&str, Response)],
    not_found: &Response,
    bad_request: &Response,
) -> u8 {
    let site: Vec<(&str, Forms)> = responses
        .iter()
        .map(|(path, response)| (*path, Forms::new(response)))
        .collect();
    let missing = Forms::new(not_found);
    let bad = Forms::new(bad_request);
    if let Err(error) = stack.divert_tcp(port) {
        println!("httpd: port {port}: {error:?}");
        return 3;
    }
    let mut quit = match quit_port.map(|port| UdpSocket::bind(stack, port)) {
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
    let mac = stack.mac();
    let seed = now_ms().rotate_left(17)
        ^ u64::from_le_bytes([mac[0], mac[1], mac[2], mac[3], mac[4], mac[5], 0xc4, 0x33])
        ^ libnet::env::own().raw().rotate_left(40);
    let mut server = Server::new(ServerConfig::new(mac, stack.ipv4(), port, techniques), seed);
    println!(
        "httpd: ready on port {port}, {} paths, cheetah={techniques}",
        SITE.len()
    );
    let (mut served, mut not_found_count, mut bad_count) = (0u64, 0u64, 0u64);
    let mut handler =
        |input: &mut Vec<u8>, peer_closed: bool, replies: &mut Vec<&'static Prebuilt>| -> bool {
            // httpd's own work, called from inside the engine's span.
            let _span = libnet::profile::enter(libnet::profile::Layer::App);
            while replies.len() < REPLIES_PER_CALL {
                let Some(end) = input.windows(4).position(|w| w == b"\r\n\r\n") else {
                    if input.len() > HEAD_MAX_BYTES {
                        replies.push(bad.close);
                        bad_count += 1;
                        return true;
                    }
                    return peer_closed;
                };
                let (response, keep_alive) = match http::parse(&input[..end]) {
                    Request::Fetch {
                        path,
                        head_only,
                        keep_alive,
                    } => match site.iter().find(|(known, _)| *known == path) {
                        Some((_, forms)) => {
                            served += 1;
                            (forms.pick(keep_alive, head_only), keep_alive)
                        }
                        None => {
                            not_found_count += 1;
                            (missing.pick(keep_alive, head_only), keep_alive)
                        }
                    },
                    Request::Bad => {
                        bad_count += 1;
                        (bad.close, false)
                    }
                };
                replies.push(response);
                input.drain(..end + 4);
                if !keep_alive {
                    return true;
                }
            }
            false
        };
    let mut link = KernelLink;
    let mut buffer = [0u8; 64];
    loop {
        stack.poll();
        let now = now_ms();
        stack.take_diverted(|frame| server.receive(frame, now, &mut link));
        {
            let _span = libnet::profile::enter(libnet::profile::Layer::Stack);
            server.run(now, &mut link, &mut handler);
        }
        if let Some(socket) = quit.as_mut()
            && socket.recv_from(&mut buffer).is_ok()
        {
            break;
        }
        if let Some(profile) = profile.as_deref_mut()
            && profile.serve(&mut buffer)
        {
            // Answered: look again before waiting (the next datagram may be queued).
            continue;
        }
        let ticks = server
            .next_deadline()
            .map_or(NET_WAIT_MAX_TICKS, |deadline| {
                deadline
                    .saturating_sub(now_ms())
                    .div_ceil(TICK_MILLISECONDS)
                    .min(NET_WAIT_MAX_TICKS)
            });
        if let Err(error) = stack.wait_at_most(ticks) {
            println!("httpd: net_wait: {error:?}");
            return 4;
        }
    }
    let (connections, time_wait) = server.held();
    let (diverted, diverted_dropped) = stack.diverted_counts();
    drop(quit);
    stack.undivert();
    // What the kernel delivered before the claim went: read and dropped (no filter now).
    stack.poll();
    let start = libnet::sys::ticks();
    while stack.counters().sockets > 0 && libnet::sys::ticks() - start < 500 {
        let _ = stack.wait();
    }
    let counters = stack.counters();
    let engine = server.counters();
    println!(
        "httpd: done: {} connections, {served} served, {not_found_count} not found, {bad_count} bad requests, {} lost; device {:?}",
        engine.accepted, engine.gave_up, counters.device
    );
    // In short lines (the console's line buffer is bounded).
    println!(
        "httpd: cheetah={techniques}: sums_stored: {}, sums_computed: {}, bytes_copied: {}, fins_piggybacked: {}, bare_fins: {}, pure_acks: {}, segments_out: {}, segments_retransmitted: {}",
        engine.sums_stored,
        engine.sums_computed,
        engine.bytes_copied,
        engine.fins_piggybacked,
        engine.bare_fins,
        engine.pure_acks,
        engine.segments_out,
        engine.segments_retransmitted
    );
    println!(
        "httpd: engine in: segments {}, not ours {}, SYNs {}, accepted {}, refused (full) {}, bad flags {}, resets {} ({} challenged), out of window {}, out of order {}, duplicate bytes {}, ACKs of unsent {}, duplicate ACKs {}",
        engine.segments_in,
        engine.not_ours,
        engine.syns,
        engine.accepted,
        engine.refused_full,
        engine.bad_flags,
        engine.resets_in,
        engine.resets_challenged,
        engine.out_of_window,
        engine.out_of_order,
        engine.duplicate_bytes,
        engine.ack_of_unsent,
        engine.duplicate_acks
    );
    println!(
        "httpd: engine out: timeouts {}, fast retransmits {}, window probes {}, given up {}, resets {}, refused by the kernel {}, closed {}; TIME-WAIT entered {}, evicted {}, answered {}",
        engine.timeouts,
        engine.fast_retransmits,
        engine.window_probes,
        engine.gave_up,
        engine.resets_out,
        engine.tx_refused,
        engine.closed,
        engine.time_wait_entered,
        engine.time_wait_evicted,
        engine.time_wait_answered
    );
    let kernel =
        |counter: libnet::abi::net::Counter| libnet::net::counter(counter as u64).unwrap_or(0);
    println!(
        "httpd: kernel: rx {}, ring full {}, tx {}, tx refused {}",
        kernel(libnet::abi::net::Counter::RxFrames),
        kernel(libnet::abi::net::Counter::RingFull),
        kernel(libnet::abi::net::Counter::TxFrames),
        kernel(libnet::abi::net::Counter::TxRefused)
    );
    println!(
        "httpd: diverted {diverted} frames, {diverted_dropped} dropped; held at the end: {connections} connections, {time_wait} TIME-WAIT records"
    );
    println!(
        "httpd: left: sockets {} filters {} ring slots {}",
        counters.sockets, counters.filters, counters.ring_slots_used
    );
    0
}
