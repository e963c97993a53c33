//! The stock handlers on real-looking frames built with etherparse: each answer is compared
//! byte for byte with the frame etherparse builds for the same answer.
// The fake kernel and JIT runner ash's own tests use.
#[path = "../../ash/tests/common/mod.rs"]
mod common;

use ash::interp::{Machine, Outcome};
use ash::ir::UnverifiedHandler;
use ash::{Context, Handler, Verdict};
use common::FakeHost;
use etherparse::{ArpHardwareId, ArpOperation, ArpPacket, EtherType, PacketBuilder};
use libnet::handlers;

const HOST_MAC: [u8; 6] = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56];
const HOST_IP: [u8; 4] = [10, 0, 2, 15];
const CLIENT_MAC: [u8; 6] = [0x02, 0x00, 0x00, 0x00, 0x00, 0x01];
const CLIENT_IP: [u8; 4] = [10, 0, 2, 2];

fn verified(handler: UnverifiedHandler) -> Handler {
    match handler.verify(&Context::default()) {
        Ok(handler) => handler,
        Err(error) => panic!("stock handler refused: {error}"),
    }
}

fn run(handler: &Handler, host: &mut FakeHost, frame: &[u8]) -> Outcome {
    let mut machine = Machine::new();
    ash::run(handler, frame, &mut machine, host).outcome
}

fn arp_frame(operation: ArpOperation, target_ip: [u8; 4]) -> Vec<u8> {
    let builder = PacketBuilder::ethernet2(CLIENT_MAC, [0xff; 6]).arp(
        ArpPacket::new(
            ArpHardwareId::ETHERNET,
            EtherType::IPV4,
            operation,
            &CLIENT_MAC,
            &CLIENT_IP,
            &[0; 6],
            &target_ip,
        )
        .unwrap(),
    );
    let mut frame = Vec::new();
    builder.write(&mut frame).unwrap();
    frame
}

#[test]
fn arp_request_for_us_is_answered() {
    let handler = verified(handlers::arp_responder(HOST_MAC, HOST_IP).unwrap());
    let mut host = FakeHost::for_regions(handler.regions());
    let request = arp_frame(ArpOperation::REQUEST, HOST_IP);
    assert_eq!(
        run(&handler, &mut host, &request),
        Outcome::Exit(Verdict::Consume)
    );
    let expected = {
        let builder = PacketBuilder::ethernet2(HOST_MAC, CLIENT_MAC).arp(
            ArpPacket::new(
                ArpHardwareId::ETHERNET,
                EtherType::IPV4,
                ArpOperation::REPLY,
                &HOST_MAC,
                &HOST_IP,
                &CLIENT_MAC,
                &CLIENT_IP,
            )
            .unwrap(),
        );
        let mut frame = Vec::new();
        builder.write(&mut frame).unwrap();
        frame
    };
    assert_eq!(host.sent, vec![expected]);
}

#[test]
fn arp_padded_request_is_answered_at_its_length() {
    let handler = verified(handlers::arp_responder(HOST_MAC, HOST_IP).unwrap());
    let mut host = FakeHost::for_regions(handler.regions());
    let mut request = arp_frame(ArpOperation::REQUEST, HOST_IP);
    request.resize(60, 0);
    assert_eq!(
        run(&handler, &mut host, &request),
        Outcome::Exit(Verdict::Consume)
    );
    assert_eq!(host.sent[0].len(), 60);
}

#[test]
fn arp_not_for_us_is_delivered_unanswered() {
    let handler = verified(handlers::arp_responder(HOST_MAC, HOST_IP).unwrap());
    let mut host = FakeHost::for_regions(handler.regions());
    for frame in [
        arp_frame(ArpOperation::REQUEST, [10, 0, 2, 16]),
        arp_frame(ArpOperation::REPLY, HOST_IP),
        arp_frame(ArpOperation::REQUEST, HOST_IP)[..41].to_vec(),
    ] {
        assert_eq!(
            run(&handler, &mut host, &frame),
            Outcome::Exit(Verdict::Deliver)
        );
    }
    assert!(host.sent.is_empty());
}

fn icmp_echo(request: bool, ttl: u8, payload: &[u8]) -> Vec<u8> {
    let (source_mac, destination_mac, source, destination) = if request {
        (CLIENT_MAC, HOST_MAC, CLIENT_IP, HOST_IP)
    } else {
        (HOST_MAC, CLIENT_MAC, HOST_IP, CLIENT_IP)
    };
    let step = PacketBuilder::ethernet2(source_mac, destination_mac).ipv4(source, destination, ttl);
    let mut frame = Vec::new();
    if request {
        step.icmpv4_echo_request(0x1234, 7)
            .write(&mut frame, payload)
            .unwrap();
    } else {
        step.icmpv4_echo_reply(0x1234, 7)
            .write(&mut frame, payload)
            .unwrap();
    }
    frame
}

#[test]
fn icmp_echo_request_is_answered_with_incremental_checksums() {
    let handler = verified(handlers::icmp_echo(HOST_IP).unwrap());
    for (ttl, payload) in [
        (20u8, &b"abcdefgh"[..]),
        (64, &[0xff; 57][..]),
        (1, &[][..]),
    ] {
        let mut host = FakeHost::for_regions(handler.regions());
        let request = icmp_echo(true, ttl, payload);
        assert_eq!(
            run(&handler, &mut host, &request),
            Outcome::Exit(Verdict::Consume)
        );
        assert_eq!(host.sent, vec![icmp_echo(false, 64, payload)], "ttl {ttl}");
    }
}

#[test]
fn icmp_other_than_echo_request_to_us_is_delivered() {
    let handler = verified(handlers::icmp_echo(HOST_IP).unwrap());
    let mut host = FakeHost::for_regions(handler.regions());
    let reply = icmp_echo(false, 64, b"x");
    let mut other_host = icmp_echo(true, 64, b"x");
    other_host[33] = 16; // destination 10.0.2.16 (checksum now wrong, but not ours anyway)
    let udp = udp_frame(true, 7, b"x");
    for frame in [reply, other_host, udp] {
        assert_eq!(
            run(&handler, &mut host, &frame),
            Outcome::Exit(Verdict::Deliver)
        );
    }
    assert!(host.sent.is_empty());
}

fn udp_frame(request: bool, port: u16, payload: &[u8]) -> Vec<u8> {
    let (source_mac, destination_mac, source, destination, ports) = if request {
        (CLIENT_MAC, HOST_MAC, CLIENT_IP, HOST_IP, (40000, port))
    } else {
        (HOST_MAC, CLIENT_MAC, HOST_IP, CLIENT_IP, (port, 40000))
    };
    let mut frame = Vec::new();
    PacketBuilder::ethernet2(source_mac, destination_mac)
        .ipv4(source, destination, 64)
        .udp(ports.0, ports.1)
        .write(&mut frame, payload)
        .unwrap();
    frame
}

#[test]
fn udp_echo_is_byte_identical() {
    let handler = verified(handlers::udp_echo().unwrap());
    for payload in [&b"hello, exo"[..], &[], &[0xa5; 1472]] {
        let mut host = FakeHost::for_regions(handler.regions());
        let outcome = run(&handler, &mut host, &udp_frame(true, 7, payload));
        assert_eq!(outcome, Outcome::Exit(Verdict::Consume));
        assert_eq!(host.sent, vec![udp_frame(false, 7, payload)]);
    }
}

#[test]
fn udp_echo_refused_by_transmit_check_still_consumes_and_counts() {
    let handler = verified(handlers::udp_echo().unwrap());
    let mut host = FakeHost::for_regions(handler.regions());
    host.refuse_transmit = true;
    let mut machine = Machine::new();
    let result = ash::run(&handler, &udp_frame(true, 7, b"x"), &mut machine, &mut host);
    assert_eq!(result.outcome, Outcome::Exit(Verdict::Consume));
    assert_eq!((result.replies_sent, result.replies_refused), (0, 1));
}

#[test]
fn remote_increment_adds_and_answers_with_the_new_value() {
    let handler = verified(handlers::remote_increment().unwrap());
    let mut host = FakeHost::for_regions(handler.regions());
    let mut total = 0u64;
    for addend in [5u64, 7, u64::MAX - 3, 0x0001_0000_ffff_0000] {
        total = total.wrapping_add(addend);
        let mut payload = addend.to_be_bytes().to_vec();
        payload.extend_from_slice(b"tail");
        let outcome = run(&handler, &mut host, &udp_frame(true, 9000, &payload));
        assert_eq!(outcome, Outcome::Exit(Verdict::Consume));
        let mut answer = total.to_be_bytes().to_vec();
        answer.extend_from_slice(b"tail");
        // etherparse computes the checksum from scratch; ours was updated incrementally.
        assert_eq!(
            host.sent.last(),
            Some(&udp_frame(false, 9000, &answer)),
            "{addend:#x}"
        );
    }
    assert_eq!(host.read_u64(0, 0), total);
}

#[test]
fn remote_increment_without_udp_checksum_sends_none() {
    let handler = verified(handlers::remote_increment().unwrap());
    let mut host = FakeHost::for_regions(handler.regions());
    let mut frame = udp_frame(true, 9000, &3u64.to_be_bytes());
    frame[40..42].copy_from_slice(&[0, 0]);
    assert_eq!(
        run(&handler, &mut host, &frame),
        Outcome::Exit(Verdict::Consume)
    );
    assert_eq!(host.sent[0][40..42], [0, 0]);
    assert_eq!(host.sent[0][42..50], 3u64.to_be_bytes());
}

#[test]
fn remote_increment_drops_short_payloads() {
    let handler = verified(handlers::remote_increment().unwrap());
    let mut host = FakeHost::for_regions(handler.regions());
    let frame = udp_frame(true, 9000, &[1, 2, 3, 4, 5, 6, 7]);
    assert_eq!(
        run(&handler, &mut host, &frame),
        Outcome::Exit(Verdict::Drop)
    );
    assert_eq!(host.read_u64(0, 0), 0);
    assert!(host.sent.is_empty());
}

fn vectored(slot: u32, message: &[u8]) -> Vec<u8> {
    let mut payload = slot.to_be_bytes().to_vec();
    payload.extend_from_slice(message);
    udp_frame(true, 5000, &payload)
}

/// The receiver both ways: checksum integrated with the copy, and in a second pass.
fn vectoring_handlers() -> [Handler; 2] {
    [
        verified(handlers::message_vectoring().unwrap()),
        verified(handlers::message_vectoring_two_pass().unwrap()),
    ]
}

#[test]
fn message_vectoring_copies_into_the_named_slot_with_checksum_verified() {
    for (handler, piece_bytes) in vectoring_handlers()
        .iter()
        .flat_map(|handler| [1, 7, 4096].map(|piece| (handler, piece)))
    {
        let mut host = FakeHost::for_regions(handler.regions());
        host.piece_bytes = piece_bytes;
        for (slot, message) in [
            (3u32, &b"odd-length message"[..]),
            (0, b"even"),
            (7, &[0x5a; 1468]),
        ] {
            let outcome = run(handler, &mut host, &vectored(slot, message));
            assert_eq!(outcome, Outcome::Exit(Verdict::Consume), "slot {slot}");
            let start = slot as usize * handlers::VECTOR_SLOT_BYTES as usize;
            assert_eq!(&host.regions[0][start..start + message.len()], message);
            let status = host.read_u64(1, slot as usize * 8);
            assert_eq!(status, handlers::VECTOR_FULL | message.len() as u64);
        }
        assert_eq!(host.wakes, 3);
    }
}

#[test]
fn message_vectoring_drops_bad_checksum_bad_slot_and_oversized() {
    for handler in vectoring_handlers() {
        let mut host = FakeHost::for_regions(handler.regions());
        let mut corrupt = vectored(2, b"payload!");
        let last = corrupt.len() - 1;
        corrupt[last] ^= 0x40;
        let bad_slot = vectored(handlers::VECTOR_SLOTS as u32, b"x");
        let oversized = vectored(1, &vec![1; handlers::VECTOR_SLOT_BYTES as usize + 1]);
        for frame in [corrupt, bad_slot, oversized] {
            assert_eq!(
                run(&handler, &mut host, &frame),
                Outcome::Exit(Verdict::Drop)
            );
        }
        assert!(
            host.regions[1].iter().all(|&b| b == 0),
            "no status word set"
        );
        assert_eq!(host.wakes, 0);
    }
}

#[test]
fn message_vectoring_accepts_datagrams_without_checksum() {
    for handler in vectoring_handlers() {
        let mut host = FakeHost::for_regions(handler.regions());
        let mut frame = vectored(4, b"no checksum");
        frame[40..42].copy_from_slice(&[0, 0]);
        assert_eq!(
            run(&handler, &mut host, &frame),
            Outcome::Exit(Verdict::Consume)
        );
        assert_eq!(host.read_u64(1, 32), handlers::VECTOR_FULL | 11);
    }
}

#[test]
fn stock_handlers_survive_every_truncation() {
    let handlers = [
        handlers::arp_responder(HOST_MAC, HOST_IP).unwrap(),
        handlers::icmp_echo(HOST_IP).unwrap(),
        handlers::udp_echo().unwrap(),
        handlers::remote_increment().unwrap(),
        handlers::message_vectoring().unwrap(),
        handlers::message_vectoring_two_pass().unwrap(),
    ];
    let frames = [
        arp_frame(ArpOperation::REQUEST, HOST_IP),
        icmp_echo(true, 64, b"0123456789"),
        udp_frame(true, 7, b"0123456789abcdef"),
        vectored(1, b"0123456789"),
    ];
    for handler in handlers {
        let handler = verified(handler);
        for frame in &frames {
            for cut in 0..=frame.len() {
                let mut host = FakeHost::for_regions(handler.regions());
                let outcome = run(&handler, &mut host, &frame[..cut]);
                assert!(
                    matches!(outcome, Outcome::Exit(_)),
                    "stock handlers check lengths themselves: {outcome:?} at {cut}"
                );
                assert!(host.escapes.is_empty());
            }
        }
    }
}

#[test]
fn stock_handlers_jit_equals_interpreter_on_every_truncation() {
    let handlers = [
        handlers::arp_responder(HOST_MAC, HOST_IP).unwrap(),
        handlers::icmp_echo(HOST_IP).unwrap(),
        handlers::udp_echo().unwrap(),
        handlers::remote_increment().unwrap(),
        handlers::message_vectoring().unwrap(),
        handlers::message_vectoring_two_pass().unwrap(),
    ];
    let mut increment = 9u64.to_be_bytes().to_vec();
    increment.extend_from_slice(b"tail");
    let frames = [
        arp_frame(ArpOperation::REQUEST, HOST_IP),
        icmp_echo(true, 20, b"0123456789"),
        udp_frame(true, 7, b"0123456789abcdef"),
        udp_frame(true, 9000, &increment),
        vectored(1, b"0123456789"),
    ];
    for handler in handlers {
        let handler = verified(handler);
        let executable = common::jit_exec::Executable::new(&handler);
        for frame in &frames {
            for cut in 0..=frame.len() {
                let mut host = FakeHost::for_regions(handler.regions());
                let mut jit_host = FakeHost::for_regions(handler.regions());
                let interpreted = ash::run(&handler, &frame[..cut], &mut Machine::new(), &mut host);
                let compiled =
                    executable.run(&handler, &frame[..cut], &mut Machine::new(), &mut jit_host);
                assert_eq!(interpreted, compiled, "cut at {cut}");
                assert_eq!(host.sent, jit_host.sent);
                assert_eq!(host.regions, jit_host.regions);
            }
        }
    }
}
