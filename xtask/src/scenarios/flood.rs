//! The `net-flood` clients: bounded hping3 floods and scapy's malformed frames from the
//! namespace, then the services checked byte for byte.
use super::{CLIENT_DEADLINE, Session, ping_three, ring_check, udp};
use crate::topology::GUEST_ADDRESS;
use std::time::Duration;

/// Malformed frames sent at layer 2 with scapy on the tap device: runts, IPv4 headers with
/// impossible header lengths, total lengths and option lengths, tiny and overlapping
/// fragments, IPv6 with a truncated header and a wrong payload length, stacks of VLAN tags
/// (802.1Q, 802.1ad, 0x9100), 802.3/LLC frames, and ARP with wrong address lengths; bounded in
/// count and rate. Every one must be counted (malformed, unmatched, or taken by a handler).
const SCAPY_MALFORMED: &str = r#"
from scapy.all import Ether, Dot1Q, Dot1AD, IP, IPv6, UDP, TCP, ICMP, ARP, LLC, Raw, fragment, sendp, conf
conf.verb = 0
guest, tap = "10.0.2.15", "tap0"
mac = "52:54:00:12:34:56"
eth = Ether(dst=mac)
frames = []
frames += [Raw(bytes(range(n))) for n in (1, 6, 13)]                   # runts
frames += [eth/IP(dst=guest, ihl=ihl)/UDP(dport=7)/(b"x" * 8) for ihl in (0, 1, 4, 15)]
frames += [eth/IP(dst=guest, len=n)/UDP(dport=7)/(b"y" * 16) for n in (0, 19, 21, 65535)]
frames += [eth/IP(dst=guest, options=b"\x44\x00\x05\x00")/UDP(dport=7)/b"o"]
frames += [eth/f for f in fragment(IP(dst=guest)/UDP(dport=7)/(b"f" * 200), fragsize=8)]
frames += [eth/IP(dst=guest, frag=1, flags="MF")/(b"overlap" * 4) for _ in range(5)]
frames += [eth/IPv6(dst="fe80::1", plen=n)/UDP(dport=7)/b"6" for n in (0, 1, 9000)]
frames += [Ether(dst=mac, type=0x86dd)/Raw(b"\x60\x00\x00")]
frames += [eth/Dot1Q(vlan=1)/Dot1Q(vlan=2)/Dot1Q(vlan=3)/IP(dst=guest)/UDP(dport=7)/b"q"]
frames += [eth/Dot1AD(vlan=5)/Dot1Q(vlan=6)/IP(dst=guest)/UDP(dport=7)/b"ad"]
frames += [Ether(dst=mac, type=0x9100)/Raw(b"\x00\x07\x08\x00" + bytes(IP(dst=guest)/UDP(dport=7)/b"old"))]
frames += [Ether(dst=mac, type=0x8100)/Raw(b"\x00")]                   # a cut tag
frames += [Ether(dst=mac)/LLC(dsap=0x42, ssap=0x42, ctrl=3)/Raw(b"stp" * 10)]
frames += [eth/ARP(pdst=guest, hwlen=9, plen=2)]
frames += [eth/IP(dst=guest)/TCP(dport=80, dataofs=1)/b"t", eth/IP(dst=guest)/ICMP(type=8)/b""]
sendp(frames * 5, iface=tap, inter=0.002)
print("sent", len(frames) * 5)
"#;

/// The `net-flood` clients: bounded floods, then the services checked byte for byte.
pub(super) fn flood_clients(session: &mut Session<'_>) -> Result<(), String> {
    // Before anything is sent: every frame the guest takes is in the capture.
    let capture = ring_check::Capture::start(session.topology)?;
    session.wait_for("ashd: ready", Duration::from_secs(60))?;
    let floods: [&[&str]; 6] = [
        // UDP to the echo handler's port: every one answered by the kernel.
        &["-2", "-p", "7", "-d", "120", "-c", "1500", "-i", "u300"],
        // SYNs to a port nobody owns: matched by no filter, counted, dropped.
        &["-S", "-p", "80", "-c", "1500", "-i", "u200"],
        // Every TCP flag at once.
        &[
            "-F", "-S", "-R", "-P", "-A", "-U", "-X", "-Y", "-p", "7", "-c", "500", "-i", "u300",
        ],
        // ICMP echo: answered by the ICMP handler.
        &["-1", "-c", "1000", "-i", "u300"],
        // UDP in 16-byte fragments: no fragment claims a port.
        &[
            "-2", "-f", "-p", "7", "-d", "200", "-c", "300", "-i", "u500",
        ],
        // UDP with bad checksums.
        &["-2", "-b", "-p", "7", "-d", "64", "-c", "500", "-i", "u300"],
    ];
    for flood in floods {
        let mut arguments = flood.to_vec();
        arguments.extend(["-q", GUEST_ADDRESS]);
        // hping3's exit status says whether replies came, which depends on the flood: what
        // matters is that it ran to its count within its time.
        session
            .topology
            .run("hping3", &arguments, Duration::from_secs(30), None)
            .map_err(|error| format!("hping3 {}: {error}", arguments.join(" ")))?;
    }
    let sent = session.client(
        "/usr/bin/python3",
        &["-c", SCAPY_MALFORMED],
        CLIENT_DEADLINE * 2,
        None,
    )?;
    if !sent.starts_with(b"sent") {
        return Err(format!(
            "scapy did not send the malformed frames: {}",
            String::from_utf8_lossy(&sent)
        ));
    }
    let payload: Vec<u8> = (0..300u32).map(|i| (i * 13 + 1) as u8).collect();
    let echoed = udp(session, 7, &payload, true)?;
    if echoed != payload {
        return Err(format!(
            "UDP echo after the floods: sent {} bytes, got back {echoed:?}",
            payload.len()
        ));
    }
    ping_three(session, " after the floods")?;
    udp(session, 9003, b"quit", false)?;
    let agreed = ring_check::compare(session, capture)?;
    println!("net-flood: {agreed}");
    Ok(())
}
