//! The engine fed with frames etherparse builds, its frames checked by etherparse (headers,
//! both checksums) and reassembled by a small client model, for every set of techniques, and
//! under loss, reordering and a zero window.
use super::Techniques;
use super::prebuilt::Prebuilt;
use super::server::{Link, Server, ServerConfig};
use alloc::boxed::Box;
use alloc::vec;
use alloc::vec::Vec;
use etherparse::{NetSlice, PacketBuilder, SlicedPacket, TcpOptionElement, TransportSlice};

const HOST_MAC: [u8; 6] = [0x52, 0x54, 0, 0x12, 0x34, 0x56];
const CLIENT_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x22];
const HOST: [u8; 4] = [10, 0, 2, 15];
const CLIENT: [u8; 4] = [10, 0, 2, 2];

/// A segment the engine sent, parsed and checked.
#[derive(Debug, Clone)]
struct Out {
    seq: u32,
    ack: u32,
    syn: bool,
    fin: bool,
    rst: bool,
    has_ack: bool,
    window: u16,
    mss: Option<u16>,
    payload: Vec<u8>,
    source_port: u16,
}

#[derive(Default)]
struct Wire(Vec<Vec<u8>>);

impl Link for Wire {
    fn send(&mut self, pieces: &[&[u8]]) -> bool {
        self.0.push(pieces.concat());
        true
    }
}

fn check(frame: &[u8]) -> Out {
    let packet = SlicedPacket::from_ethernet(frame).expect("a frame etherparse reads");
    let Some(NetSlice::Ipv4(ip)) = packet.net else {
        panic!("not IPv4")
    };
    let header = ip.header().to_header();
    assert_eq!(
        header.calc_header_checksum(),
        header.header_checksum,
        "IPv4 checksum"
    );
    assert_eq!(header.source, HOST);
    assert_eq!(header.destination, CLIENT);
    let Some(TransportSlice::Tcp(tcp)) = packet.transport else {
        panic!("not TCP")
    };
    assert_eq!(
        tcp.calc_checksum_ipv4(header.source, header.destination)
            .unwrap(),
        tcp.checksum(),
        "TCP checksum"
    );
    let mss = tcp.options_iterator().find_map(|option| match option {
        Ok(TcpOptionElement::MaximumSegmentSize(mss)) => Some(mss),
        _ => None,
    });
    Out {
        seq: tcp.sequence_number(),
        ack: tcp.acknowledgment_number(),
        syn: tcp.syn(),
        fin: tcp.fin(),
        rst: tcp.rst(),
        has_ack: tcp.ack(),
        window: tcp.window_size(),
        mss,
        payload: tcp.payload().to_vec(),
        source_port: tcp.source_port(),
    }
}

/// The client side: builds segments and keeps what it received in order.
struct Client {
    port: u16,
    seq: u32,
    rcv_nxt: u32,
    window: u16,
    received: Vec<u8>,
    fin_seen: bool,
}

impl Client {
    fn frame(&self, seq: u32, flags: &str, payload: &[u8], mss: Option<u16>) -> Vec<u8> {
        let mut builder = PacketBuilder::ethernet2(CLIENT_MAC, HOST_MAC)
            .ipv4(CLIENT, HOST, 64)
            .tcp(self.port, 80, seq, self.window);
        if let Some(mss) = mss {
            builder = builder
                .options(&[TcpOptionElement::MaximumSegmentSize(mss)])
                .unwrap();
        }
        for flag in flags.chars() {
            builder = match flag {
                'S' => builder.syn(),
                'F' => builder.fin(),
                'R' => builder.rst(),
                'P' => builder.psh(),
                'A' => builder.ack(self.rcv_nxt),
                _ => builder,
            };
        }
        let mut bytes = Vec::new();
        builder.write(&mut bytes, payload).unwrap();
        bytes
    }

    /// Takes a segment in order (anything else is dropped, as the tests' loss).
    fn take(&mut self, segment: &Out) -> bool {
        // In order, or overlapping what it has (the overlap trimmed); a hole drops it.
        let behind = self.rcv_nxt.wrapping_sub(segment.seq) as usize;
        if segment.rst
            || behind > segment.payload.len()
            || (behind == segment.payload.len() && !segment.fin)
        {
            return false;
        }
        if self.window == 0 {
            return false;
        }
        self.received.extend_from_slice(&segment.payload[behind..]);
        self.rcv_nxt = self
            .rcv_nxt
            .wrapping_add((segment.payload.len() - behind) as u32);
        if segment.fin {
            self.fin_seen = true;
            self.rcv_nxt = self.rcv_nxt.wrapping_add(1);
        }
        true
    }
}

fn leak(bytes: Vec<u8>) -> &'static Prebuilt {
    let body: &'static [u8] = Box::leak(bytes.into_boxed_slice());
    let head: &'static [u8] = Box::leak(
        alloc::format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len())
            .into_bytes()
            .into_boxed_slice(),
    );
    Box::leak(Box::new(Prebuilt::new(vec![head, body])))
}

fn body(length: usize) -> Vec<u8> {
    (0..length).map(|i| (i * 31 + i / 7) as u8).collect()
}

fn server(techniques: Techniques) -> Server {
    Server::new(
        ServerConfig::new(HOST_MAC, HOST, 80, techniques),
        0x1234_5678,
    )
}

/// The app: every request gets `response`; closes when asked to or when the peer closed.
fn app(
    response: &'static Prebuilt,
) -> impl FnMut(&mut Vec<u8>, bool, &mut Vec<&'static Prebuilt>) -> bool {
    move |input, peer_closed, replies| {
        let mut close = peer_closed;
        while let Some(end) = input.windows(4).position(|w| w == b"\r\n\r\n") {
            close |= input[..end].windows(5).any(|w| w == b"close");
            input.drain(..end + 4);
            replies.push(response);
        }
        close
    }
}

fn handshake(server: &mut Server, wire: &mut Wire, client: &mut Client, now: u64) {
    server.receive(&client.frame(client.seq, "S", &[], Some(1460)), now, wire);
    let syn_ack = check(&wire.0.pop().expect("a SYN-ACK"));
    assert!(syn_ack.syn && syn_ack.has_ack && !syn_ack.fin);
    assert_eq!(syn_ack.ack, client.seq.wrapping_add(1));
    assert_eq!(syn_ack.mss, Some(1460));
    client.seq = client.seq.wrapping_add(1);
    client.rcv_nxt = syn_ack.seq.wrapping_add(1);
    server.receive(&client.frame(client.seq, "A", &[], None), now, wire);
    assert!(wire.0.is_empty());
}

/// Runs one request to completion over a wire that drops the segments `drop` picks (by
/// index among the data segments sent), acknowledging every segment taken; returns what the
/// client got, the segments seen and the time it took (ms).
fn exchange(
    techniques: Techniques,
    response: &'static Prebuilt,
    request: &[u8],
    mut drop: impl FnMut(usize, &Out) -> bool,
) -> (Vec<u8>, Vec<Out>, Server, u64) {
    let mut server = server(techniques);
    let mut wire = Wire::default();
    let mut client = Client {
        port: 40000,
        seq: 0xffff_ff00,
        rcv_nxt: 0,
        window: 65535,
        received: Vec::new(),
        fin_seen: false,
    };
    let mut handler = app(response);
    let mut now = 1000;
    handshake(&mut server, &mut wire, &mut client, now);
    server.receive(
        &client.frame(client.seq, "PA", request, None),
        now,
        &mut wire,
    );
    client.seq = client.seq.wrapping_add(request.len() as u32);
    let mut seen = Vec::new();
    let mut sent_index = 0;
    for _ in 0..10_000 {
        server.run(now, &mut wire, &mut handler);
        let frames: Vec<Vec<u8>> = wire.0.drain(..).collect();
        let mut took = false;
        for frame in frames {
            let segment = check(&frame);
            seen.push(segment.clone());
            if !segment.payload.is_empty() || segment.fin {
                let dropped = drop(sent_index, &segment);
                sent_index += 1;
                if dropped {
                    continue;
                }
            }
            took |= client.take(&segment);
            if !segment.payload.is_empty() || segment.fin {
                // One ACK per segment (in order or not: a duplicate ACK for a hole).
                server.receive(&client.frame(client.seq, "A", &[], None), now, &mut wire);
            }
        }
        if client.fin_seen {
            // The client closes too: its FIN is answered and this side keeps TIME-WAIT.
            server.receive(&client.frame(client.seq, "FA", &[], None), now, &mut wire);
            client.seq = client.seq.wrapping_add(1);
            server.run(now, &mut wire, &mut handler);
            let last = check(&wire.0.pop().expect("the ACK of the client's FIN"));
            assert!(last.has_ack && last.ack == client.seq && last.payload.is_empty());
            assert!(wire.0.is_empty());
            assert_eq!(server.held(), (0, 1));
            break;
        }
        if !took && wire.0.is_empty() {
            now = server
                .next_deadline()
                .expect("a timer while data is missing")
                .max(now + 1);
        }
    }
    (client.received, seen, server, now - 1000)
}

fn expected(response: &Prebuilt) -> Vec<u8> {
    let mut slices = [&[][..]; 2];
    let used = response.slices(0, response.len(), &mut slices);
    slices[..used].concat()
}

fn every_set() -> Vec<Techniques> {
    let mut sets = Vec::new();
    for bits in 0..8u8 {
        sets.push(Techniques {
            engine: true,
            prebuilt: bits & 1 != 0,
            cache: bits & 2 != 0,
            piggyback: bits & 4 != 0,
        });
    }
    sets
}

const CLOSE: &[u8] = b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n";

#[test]
fn every_set_of_techniques_delivers_the_response_exactly() {
    let response = leak(body(100 * 1024 + 17));
    for techniques in every_set() {
        let (got, seen, server, _) = exchange(techniques, response, CLOSE, |_, _| false);
        assert!(
            got == expected(response),
            "{techniques}: got {} bytes",
            got.len()
        );
        let counters = server.counters();
        assert_eq!(counters.timeouts, 0, "{techniques}");
        assert_eq!(
            counters.sums_stored > 0,
            techniques.prebuilt,
            "{techniques}"
        );
        if techniques.prebuilt {
            // Every segment is a whole chunk or a response's end.
            assert_eq!(counters.sums_computed, 0, "{techniques}");
        }
        assert_eq!(counters.bytes_copied > 0, !techniques.cache, "{techniques}");
        // Piggybacking: no pure ACK before the first data and the FIN on the last data.
        let first_data = seen.iter().position(|s| !s.payload.is_empty()).unwrap();
        let acks_before = seen[..first_data]
            .iter()
            .filter(|s| s.payload.is_empty())
            .count();
        let last = seen.iter().rev().find(|s| !s.payload.is_empty()).unwrap();
        if techniques.piggyback {
            assert_eq!(acks_before, 0, "{techniques}");
            assert!(last.fin, "{techniques}");
            assert_eq!((counters.bare_fins, counters.fins_piggybacked), (0, 1));
        } else {
            assert_eq!(acks_before, 1, "{techniques}");
            assert!(!last.fin, "{techniques}");
            assert_eq!((counters.bare_fins, counters.fins_piggybacked), (1, 0));
        }
        assert!(seen.iter().all(|s| s.source_port == 80 && s.has_ack));
        assert!(seen.iter().all(|s| s.payload.len() <= 1460));
        // The request took little of the receive window.
        assert!(seen.iter().all(|s| s.window > 8 * 1024));
    }
}

#[test]
fn lost_segments_come_again_from_the_cache() {
    let response = leak(body(50_000));
    for techniques in every_set() {
        // Lose the 3rd, 4th and 10th data segments the first time they are sent, and the
        // first retransmission of the 3rd as well.
        let mut losses = vec![2usize, 3, 9];
        let mut third_seq = None;
        let (got, _, server, elapsed) = exchange(techniques, response, CLOSE, |index, segment| {
            if index == 2 {
                third_seq = Some(segment.seq);
            }
            if let Some(position) = losses.iter().position(|&lost| lost == index) {
                losses.remove(position);
                return true;
            }
            if Some(segment.seq) == third_seq && index > 2 && third_seq.take().is_some() {
                return true;
            }
            false
        });
        assert!(
            got == expected(response),
            "{techniques}: got {} bytes",
            got.len()
        );
        let counters = server.counters();
        assert!(
            counters.segments_retransmitted >= 3,
            "{techniques}: {counters:?}"
        );
        assert!(
            counters.fast_retransmits + counters.timeouts > 0,
            "{techniques}"
        );
        // Well under smoltcp's one-second floor per loss.
        assert!(elapsed < 3_000, "{techniques}: {elapsed} ms");
    }
}

#[test]
fn a_lost_fin_is_sent_again() {
    let response = leak(body(3000));
    let techniques = Techniques::ALL;
    let mut lost = false;
    let (got, _, server, _) = exchange(techniques, response, CLOSE, |_, segment| {
        if segment.fin && !lost {
            lost = true;
            return true;
        }
        false
    });
    assert!(got == expected(response), "got {} bytes", got.len());
    assert!(server.counters().timeouts >= 1);
}

fn connected(techniques: Techniques, window: u16) -> (Server, Wire, Client) {
    let mut server = server(techniques);
    let mut wire = Wire::default();
    let mut client = Client {
        port: 40001,
        seq: 7,
        rcv_nxt: 0,
        window,
        received: Vec::new(),
        fin_seen: false,
    };
    handshake(&mut server, &mut wire, &mut client, 0);
    (server, wire, client)
}

#[test]
fn out_of_order_request_bytes_wait_for_the_hole() {
    let response = leak(body(10));
    let (mut server, mut wire, client) = connected(Techniques::ALL, 65535);
    let mut handler = app(response);
    let (first, second) = CLOSE.split_at(10);
    // The second part first: dropped, and a duplicate ACK names the hole.
    server.receive(
        &client.frame(client.seq + 10, "PA", second, None),
        0,
        &mut wire,
    );
    let ack = check(&wire.0.pop().unwrap());
    assert_eq!(ack.ack, client.seq);
    assert!(ack.payload.is_empty());
    server.run(0, &mut wire, &mut handler);
    assert!(wire.0.is_empty(), "no response before the request is whole");
    server.receive(&client.frame(client.seq, "PA", first, None), 0, &mut wire);
    // The overlap of a retransmission is trimmed.
    server.receive(
        &client.frame(client.seq + 5, "PA", &CLOSE[5..], None),
        0,
        &mut wire,
    );
    server.run(0, &mut wire, &mut handler);
    let frames: Vec<Out> = wire.0.drain(..).map(|f| check(&f)).collect();
    let data: Vec<u8> = frames.iter().flat_map(|s| s.payload.clone()).collect();
    assert!(data == expected(response));
    assert_eq!(frames.last().unwrap().ack, client.seq + CLOSE.len() as u32);
    let counters = server.counters();
    assert_eq!(counters.out_of_order, 1);
    assert_eq!(counters.duplicate_bytes, 5);
}

#[test]
fn a_zero_window_is_probed_and_then_filled() {
    let response = leak(body(5000));
    let (mut server, mut wire, mut client) = connected(Techniques::ALL, 0);
    let mut handler = app(response);
    server.receive(&client.frame(client.seq, "PA", CLOSE, None), 0, &mut wire);
    client.seq += CLOSE.len() as u32;
    server.run(0, &mut wire, &mut handler);
    let frames: Vec<Out> = wire.0.drain(..).map(|f| check(&f)).collect();
    assert!(
        frames.iter().all(|s| s.payload.is_empty()),
        "nothing into a shut window"
    );
    assert_eq!(frames.len(), 1, "the request's ACK");
    client.rcv_nxt = frames[0].seq;
    let deadline = server.next_deadline().unwrap();
    server.run(deadline, &mut wire, &mut handler);
    let probe = check(&wire.0.pop().unwrap());
    assert!(probe.payload.is_empty(), "a probe without data");
    assert_eq!(
        probe.seq,
        client.rcv_nxt.wrapping_sub(1),
        "an old sequence number"
    );
    assert_eq!(server.counters().window_probes, 1);
    // Still shut: the answer keeps it shut, and the probes back off.
    server.receive(
        &client.frame(client.seq, "A", &[], None),
        deadline,
        &mut wire,
    );
    let again = server.next_deadline().unwrap();
    assert!(
        again - deadline >= 2 * deadline.min(1000) - 10,
        "{deadline} {again}"
    );
    server.run(again, &mut wire, &mut handler);
    assert_eq!(server.counters().window_probes, 2);
    wire.0.clear();
    let deadline = again;
    // The window opens: everything follows.
    client.window = 65535;
    server.receive(
        &client.frame(client.seq, "A", &[], None),
        deadline,
        &mut wire,
    );
    let mut now = deadline;
    for _ in 0..100 {
        server.run(now, &mut wire, &mut handler);
        for frame in wire.0.drain(..).collect::<Vec<_>>() {
            let segment = check(&frame);
            client.take(&segment);
            server.receive(&client.frame(client.seq, "A", &[], None), now, &mut wire);
        }
        if client.fin_seen {
            break;
        }
        now = server.next_deadline().unwrap_or(now + 1);
    }
    assert!(
        client.received == expected(response),
        "got {} bytes",
        client.received.len()
    );
}

#[test]
fn what_it_refuses_it_resets_and_other_ports_it_never_answers() {
    let mut server = server(Techniques::ALL);
    let mut wire = Wire::default();
    let client = Client {
        port: 40002,
        seq: 100,
        rcv_nxt: 555,
        window: 1000,
        received: Vec::new(),
        fin_seen: false,
    };
    // An ACK for no connection: a reset from its ACK number.
    server.receive(&client.frame(100, "A", &[], None), 0, &mut wire);
    let reset = check(&wire.0.pop().unwrap());
    assert!(reset.rst && reset.seq == 555);
    // A reset is never answered; SYN+FIN is dropped.
    server.receive(&client.frame(100, "R", &[], None), 0, &mut wire);
    server.receive(&client.frame(100, "SF", &[], None), 0, &mut wire);
    assert!(wire.0.is_empty());
    // Another port: nothing.
    let mut other = client.frame(100, "S", &[], None);
    other[14 + 20 + 2..14 + 20 + 4].copy_from_slice(&81u16.to_be_bytes());
    server.receive(&other, 0, &mut wire);
    assert!(wire.0.is_empty());
    let counters = server.counters();
    assert_eq!(
        (counters.resets_out, counters.bad_flags, counters.not_ours),
        (1, 1, 1)
    );
}

#[test]
fn a_syn_flood_is_bounded_and_half_open_connections_expire() {
    let mut server = server(Techniques::ALL);
    let mut wire = Wire::default();
    for port in 0..300u16 {
        let client = Client {
            port: 20000 + port,
            seq: 1,
            rcv_nxt: 0,
            window: 1000,
            received: Vec::new(),
            fin_seen: false,
        };
        server.receive(&client.frame(1, "S", &[], None), 0, &mut wire);
    }
    assert_eq!(server.held().0, 128);
    assert_eq!(server.counters().refused_full, 172);
    let mut handler = app(leak(body(1)));
    let mut now = 0;
    while let Some(deadline) = server.next_deadline() {
        now = deadline;
        server.run(now, &mut wire, &mut handler);
        if server.held().0 == 0 {
            break;
        }
    }
    assert_eq!(server.held(), (0, 0));
    assert!(now < 120_000, "{now}");
}

#[test]
fn keep_alive_requests_are_answered_in_order_and_the_peer_closes() {
    let small = leak(body(700));
    let (mut server, mut wire, mut client) = connected(Techniques::ALL, 65535);
    let mut handler = app(small);
    let request = b"GET / HTTP/1.1\r\n\r\n";
    for round in 0..100u32 {
        server.receive(
            &client.frame(client.seq, "PA", request, None),
            round.into(),
            &mut wire,
        );
        client.seq += request.len() as u32;
        server.run(round.into(), &mut wire, &mut handler);
        let frames: Vec<Out> = wire.0.drain(..).map(|f| check(&f)).collect();
        // One segment: the response, carrying the request's ACK.
        assert_eq!(frames.len(), 1, "round {round}");
        assert_eq!(frames[0].ack, client.seq);
        assert!(client.take(&frames[0]));
        server.receive(
            &client.frame(client.seq, "A", &[], None),
            round.into(),
            &mut wire,
        );
    }
    assert_eq!(client.received.len(), 100 * small.len());
    // The client closes: the engine's FIN follows and the connection is gone (no TIME-WAIT on
    // this side).
    server.receive(&client.frame(client.seq, "FA", &[], None), 200, &mut wire);
    client.seq += 1;
    server.run(200, &mut wire, &mut handler);
    let fin = check(&wire.0.pop().unwrap());
    assert!(fin.fin && fin.ack == client.seq);
    client.take(&fin);
    server.receive(&client.frame(client.seq, "A", &[], None), 200, &mut wire);
    server.run(200, &mut wire, &mut handler);
    assert_eq!(server.held(), (0, 0));
}

#[test]
fn one_call_sends_at_most_its_budget_and_acks_wait_to_ride_on_data() {
    let response = leak(body(100 * 1024));
    let mut server = server(Techniques::ALL);
    let mut wire = Wire::default();
    let mut clients = Vec::new();
    for port in 0..16u16 {
        let mut client = Client {
            port: 30000 + port,
            seq: 1,
            rcv_nxt: 0,
            window: 65535,
            received: Vec::new(),
            fin_seen: false,
        };
        handshake(&mut server, &mut wire, &mut client, 0);
        server.receive(&client.frame(client.seq, "PA", CLOSE, None), 0, &mut wire);
        client.seq += CLOSE.len() as u32;
        clients.push(client);
    }
    let mut handler = app(response);
    let mut acks = Vec::new();
    for _ in 0..4 {
        server.run(0, &mut wire, &mut handler);
        assert!(wire.0.len() <= 32, "{} segments in one call", wire.0.len());
        for frame in wire.0.drain(..) {
            let segment = check(&frame);
            assert!(!segment.payload.is_empty(), "a pure ACK while data waits");
            acks.push(segment.ack);
        }
        assert_eq!(
            server.next_deadline(),
            Some(0),
            "more to send: call again at once"
        );
    }
    // Every connection had its turn: each request's ACK (1 + its length) rode on data.
    assert_eq!(acks.len(), 4 * 32);
    assert_eq!(server.counters().pure_acks, 0);
}
