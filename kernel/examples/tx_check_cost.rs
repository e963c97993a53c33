//! What the transmit check costs per frame, on the host: it runs `tx_check::check` over
//! frames of the kinds apps and handlers send (built with etherparse, lengths and checksums
//! right) `ROUNDS` times, so that callgrind's instruction count of a run with `ROUNDS` = N
//! minus one with 0, divided by N times the frame count, is the check's instructions per frame:
//!
//! ```text
//! cargo build --release -p exo-kernel --example tx_check_cost
//! valgrind --tool=callgrind --callgrind-out-file=/dev/null target/release/examples/tx_check_cost 0
//! valgrind --tool=callgrind --callgrind-out-file=/dev/null target/release/examples/tx_check_cost 100000
//! ```
//!
//! It also prints every frame's verdict, which must be the allow list's (all `Ok`).
use etherparse::{Icmpv4Type, PacketBuilder, VlanId, icmpv4::DestUnreachableHeader};
use exo_kernel::tx_check::{Privilege, SenderIdentity, check};
use std::hint::black_box;

const MAC: [u8; 6] = [0x52, 0x54, 0, 0x12, 0x34, 0x56];
const PEER_MAC: [u8; 6] = [0x46, 0x95, 0xa5, 0xfd, 0x87, 0x7d];
const IP: [u8; 4] = [10, 0, 2, 15];
const PEER: [u8; 4] = [10, 0, 2, 2];

fn frames() -> Vec<(&'static str, Vec<u8>, Privilege)> {
    let mut frames = Vec::new();
    let udp = PacketBuilder::ethernet2(MAC, PEER_MAC)
        .ipv4(IP, PEER, 64)
        .udp(7, 4000);
    let mut frame = Vec::new();
    udp.write(&mut frame, &[0x5a; 300]).unwrap();
    frames.push(("udp echo reply", frame, Privilege::App));
    let tcp = PacketBuilder::ethernet2(MAC, PEER_MAC)
        .ipv4(IP, PEER, 64)
        .tcp(80, 40000, 1, 65535)
        .ack(2);
    let mut frame = Vec::new();
    tcp.write(&mut frame, &[0x41; 1400]).unwrap();
    frames.push(("tcp segment", frame, Privilege::App));
    let tagged = PacketBuilder::ethernet2(MAC, PEER_MAC)
        .single_vlan(VlanId::try_new(5).unwrap())
        .ipv4(IP, PEER, 64)
        .udp(7, 4000);
    let mut frame = Vec::new();
    tagged.write(&mut frame, &[0x5a; 64]).unwrap();
    frames.push(("802.1Q udp", frame, Privilege::App));
    let stacked = PacketBuilder::ethernet2(MAC, PEER_MAC)
        .double_vlan(VlanId::try_new(5).unwrap(), VlanId::try_new(6).unwrap())
        .ipv4(IP, PEER, 64)
        .udp(7, 4000);
    let mut frame = Vec::new();
    stacked.write(&mut frame, &[0x5a; 64]).unwrap();
    frames.push(("802.1ad+802.1Q udp", frame, Privilege::App));
    let echo = PacketBuilder::ethernet2(MAC, PEER_MAC)
        .ipv4(IP, PEER, 64)
        .icmpv4_echo_reply(1, 1);
    let mut frame = Vec::new();
    echo.write(&mut frame, &[0x33; 56]).unwrap();
    frames.push(("icmp echo reply", frame, Privilege::System));
    // A port unreachable about a datagram the peer sent to the sender's port 7.
    let mut quoted = Vec::new();
    PacketBuilder::ipv4(PEER, IP, 64)
        .udp(4000, 7)
        .write(&mut quoted, &[0; 8])
        .unwrap();
    quoted.truncate(28);
    let error = PacketBuilder::ethernet2(MAC, PEER_MAC)
        .ipv4(IP, PEER, 64)
        .icmpv4(Icmpv4Type::DestinationUnreachable(
            DestUnreachableHeader::Port,
        ));
    let mut frame = Vec::new();
    error.write(&mut frame, &quoted).unwrap();
    frames.push(("icmp port unreachable", frame, Privilege::App));
    let mut arp = Vec::new();
    arp.extend_from_slice(&PEER_MAC);
    arp.extend_from_slice(&MAC);
    arp.extend_from_slice(&[0x08, 0x06, 0, 1, 8, 0, 6, 4, 0, 2]);
    arp.extend_from_slice(&MAC);
    arp.extend_from_slice(&IP);
    arp.extend_from_slice(&PEER_MAC);
    arp.extend_from_slice(&PEER);
    frames.push(("arp reply", arp, Privilege::App));
    frames
}

fn main() {
    let rounds: u64 = std::env::args()
        .nth(1)
        .and_then(|rounds| rounds.parse().ok())
        .unwrap_or(0);
    let ports = [(17, 7), (6, 80)];
    let sender = SenderIdentity {
        mac: MAC,
        ipv4: IP,
        ports: &ports[..],
    };
    let frames = frames();
    for (what, frame, privilege) in &frames {
        println!("{what}: {:?}", check(frame, &sender, *privilege));
    }
    let mut passed = 0u64;
    for _ in 0..rounds {
        for (_, frame, privilege) in &frames {
            passed += u64::from(check(black_box(frame), black_box(&sender), *privilege).is_ok());
        }
    }
    println!(
        "{rounds} rounds of {} frames, {passed} passed",
        frames.len()
    );
}
