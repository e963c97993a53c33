//! The overlap rule's premise, checked on real frames: whenever a filter that claims a port
//! (`dpf::claim`) matches a fixture frame, that frame, parsed independently here (VLAN tags,
//! IPv4 header length, the fixed IPv6 header), carries the claimed protocol and destination
//! port. Covers every expression of `fixtures/expressions.txt` (untagged, VLAN, QinQ) plus
//! tagged port expressions, over every fixture capture.

use std::path::{Path, PathBuf};

use dpf::FilterId;
use dpf::claim::{IpVersion, claim};
use dpf::frontend::{compile, matches_any};
use dpf::ir::Packet;
use pcap_tests::trace::read_trace;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures")
}

/// `(IP version, protocol, destination port)` of a frame, looking through VLAN tags.
fn transport_destination(frame: &[u8]) -> Option<(IpVersion, u8, u16)> {
    let word = |at: usize| Some(u16::from_be_bytes(frame.get(at..at + 2)?.try_into().ok()?));
    let mut at = 12;
    while matches!(word(at)?, 0x8100 | 0x88a8 | 0x9100) {
        at += 4;
    }
    let ip = at + 2;
    match word(at)? {
        0x0800 => {
            let header_bytes = usize::from(*frame.get(ip)? & 0x0f) * 4;
            Some((
                IpVersion::V4,
                *frame.get(ip + 9)?,
                word(ip + header_bytes + 2)?,
            ))
        }
        0x86dd => Some((IpVersion::V6, *frame.get(ip + 6)?, word(ip + 40 + 2)?)),
        _ => None,
    }
}

#[test]
fn a_claiming_filter_matches_only_frames_for_its_port() {
    let mut expressions: Vec<String> = std::fs::read_to_string(fixtures().join("expressions.txt"))
        .expect("fixtures/expressions.txt")
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(String::from)
        .collect();
    for extra in [
        "vlan and tcp dst port 80",
        "vlan and udp dst port 53",
        "vlan and vlan and udp dst port 53",
        "vlan 100 and tcp dst port 22",
        "vlan and ip6 and tcp dst port 443",
    ] {
        expressions.push(extra.into());
    }
    let mut frames = Vec::new();
    for name in ["capture.pcap", "capture-s64.pcap", "crafted.pcap"] {
        frames.extend(read_trace(fixtures().join(name)).expect("fixture capture"));
    }
    let (mut checked, mut tagged) = (0, 0);
    for expression in &expressions {
        let Ok(filters) = compile(expression, FilterId(1)) else {
            continue;
        };
        for filter in &filters {
            let Some(claimed) = claim(filter) else {
                continue;
            };
            for frame in &frames {
                let packet = Packet::whole(&frame.data);
                if !matches_any(std::slice::from_ref(filter), &packet) {
                    continue;
                }
                let seen = transport_destination(&frame.data);
                assert_eq!(
                    seen,
                    Some((claimed.ip, claimed.transport.protocol(), claimed.port)),
                    "{expression:?} claims {claimed:?} but matched a frame carrying {seen:?}"
                );
                checked += 1;
                if matches!(frame.data.get(12..14), Some([0x81, 0x00] | [0x88, 0xa8])) {
                    tagged += 1;
                }
            }
        }
    }
    assert!(
        checked > 0 && tagged > 0,
        "checked {checked}, tagged {tagged}"
    );
}
