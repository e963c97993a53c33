//! Unit tests of the front end: the filters each construct compiles to, and their verdicts on
//! hand-built frames (the fixture tests in pcap-tests compare with tcpdump at scale).

use alloc::vec;
use alloc::vec::Vec;

use super::*;
use crate::ir::{Shift, Width};

fn filters(expr: &str) -> Vec<Filter> {
    compile(expr, FilterId(9)).unwrap_or_else(|e| panic!("`{expr}`: {e}"))
}

fn matches(expr: &str, frame: &[u8]) -> bool {
    matches_any(&filters(expr), &Packet::whole(frame))
}

fn test(offset: u16, width: Width, mask: u32, op: CmpOp, value: u32) -> Step {
    Step::Test(Atom {
        field: Field::Packet { offset, width },
        mask,
        op,
        value,
    })
}

fn eq16(offset: u16, value: u32) -> Step {
    test(offset, Width::B2, 0xffff, CmpOp::Eq, value)
}

fn eq8(offset: u16, value: u32) -> Step {
    test(offset, Width::B1, 0xff, CmpOp::Eq, value)
}

/// Ethernet + IPv4 (20-byte header, or more with `options` words) + a transport header.
fn ipv4(proto: u8, options: usize, transport: &[u8]) -> Vec<u8> {
    let mut f = vec![0u8; 14];
    f[0..6].copy_from_slice(&[2, 0, 0, 0, 0, 0xb]);
    f[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 0xa]);
    f[12] = 0x08;
    let ihl = 5 + options as u8;
    let mut ip = vec![0u8; 4 * ihl as usize];
    ip[0] = 0x40 | ihl;
    ip[8] = 64;
    ip[9] = proto;
    ip[12..16].copy_from_slice(&[10, 9, 0, 1]);
    ip[16..20].copy_from_slice(&[10, 9, 0, 2]);
    f.extend_from_slice(&ip);
    f.extend_from_slice(transport);
    f
}

fn tcp(sport: u16, dport: u16, flags: u8) -> Vec<u8> {
    let mut t = vec![0u8; 20];
    t[0..2].copy_from_slice(&sport.to_be_bytes());
    t[2..4].copy_from_slice(&dport.to_be_bytes());
    t[12] = 0x50;
    t[13] = flags;
    t
}

fn vlan_tagged(frame: &[u8], tpid: u16, vid: u16) -> Vec<u8> {
    let mut f = frame[..12].to_vec();
    f.extend_from_slice(&tpid.to_be_bytes());
    f.extend_from_slice(&vid.to_be_bytes());
    f.extend_from_slice(&frame[12..]);
    f
}

#[test]
fn ip_is_one_atom() {
    let f = filters("ip");
    assert_eq!(f.len(), 1);
    assert_eq!(f[0].steps(), &[eq16(12, 0x0800)]);
    assert_eq!(f[0].id(), FilterId(9));
}

#[test]
fn tcp_port_checks_fragment_and_shifts_by_header_length() {
    let f = filters("tcp dst port 80");
    // IPv6 (no shift) and IPv4 (header length shift, first fragments only).
    assert_eq!(f.len(), 2);
    let v4 = f
        .iter()
        .find(|f| f.steps().contains(&eq16(12, 0x0800)))
        .unwrap();
    assert_eq!(
        v4.steps(),
        &[
            eq16(12, 0x0800),
            test(20, Width::B2, 0x1fff, CmpOp::Eq, 0),
            eq8(23, 6),
            Step::Shift(Shift {
                offset: 14,
                width: Width::B1,
                mask: 0x0f,
                shift: 2
            }),
            eq16(16, 80),
        ]
    );
    assert!(matches("tcp dst port 80", &ipv4(6, 0, &tcp(1234, 80, 2))));
    // IPv4 options move the ports: still found.
    assert!(matches("tcp dst port 80", &ipv4(6, 3, &tcp(1234, 80, 2))));
    assert!(!matches("tcp dst port 80", &ipv4(17, 0, &tcp(1234, 80, 2))));
    // A non-first fragment has no ports, whatever its payload says.
    let mut frag = ipv4(6, 0, &tcp(1234, 80, 2));
    frag[14 + 6] = 0x00;
    frag[14 + 7] = 0x10;
    assert!(!matches("tcp dst port 80", &frag));
    assert!(!matches("tcp[2:2] = 80", &frag));
    assert!(matches("ip[2:2] = 0", &frag));
}

#[test]
fn port_alone_covers_tcp_udp_sctp_over_both_ips() {
    let f = filters("port 53");
    // 3 transports x 2 directions x 2 IP versions.
    assert_eq!(f.len(), 12);
    assert!(matches("port 53", &ipv4(17, 0, &tcp(53, 9, 0))));
    assert!(matches("port 53", &ipv4(132, 0, &tcp(9, 53, 0))));
    assert!(!matches("port 53", &ipv4(1, 0, &tcp(9, 53, 0))));
    assert!(matches("portrange 50-60", &ipv4(6, 0, &tcp(9, 53, 0))));
    assert!(!matches("portrange 54-60", &ipv4(6, 0, &tcp(9, 53, 0))));
}

#[test]
fn tcp_flags_and_computed_offsets() {
    let syn = ipv4(6, 0, &tcp(1, 2, 0x02));
    let synack = ipv4(6, 0, &tcp(1, 2, 0x12));
    assert!(matches("tcp[tcpflags] & tcp-syn != 0", &syn));
    assert!(matches("tcp[tcpflags] & (tcp-syn|tcp-ack) = tcp-syn", &syn));
    assert!(!matches(
        "tcp[tcpflags] & (tcp-syn|tcp-ack) = tcp-syn",
        &synack
    ));
    let mut get = tcp(1, 80, 0x18);
    get.extend_from_slice(b"GET / HTTP/1.0");
    let frame = ipv4(6, 2, &get);
    let expr = "tcp[((tcp[12] & 0xf0) >> 2):4] = 0x47455420";
    assert!(matches(expr, &frame));
    let f = filters(expr);
    assert_eq!(f.len(), 1);
    assert_eq!(
        f[0].steps()[4],
        Step::Shift(Shift {
            offset: 26,
            width: Width::B1,
            mask: 0xf0,
            shift: -2
        })
    );
    assert!(!matches(expr, &syn));
}

#[test]
fn negation_of_a_relation_is_not_the_inverse_relation() {
    let icmp = ipv4(1, 0, &[8, 0, 0, 0]);
    // `tcp[13] != 2` needs a TCP packet; `not tcp[13] = 2` holds for anything not TCP.
    assert!(!matches("tcp[13] != 2", &icmp));
    assert!(matches("not tcp[13] = 2", &icmp));
}

#[test]
fn hosts_cover_ip_arp_and_rarp() {
    let frame = ipv4(1, 0, &[8, 0, 0, 0]);
    assert!(matches("host 10.9.0.2", &frame));
    assert!(matches("src host 10.9.0.1", &frame));
    assert!(!matches("dst host 10.9.0.1", &frame));
    assert!(matches("net 10.9.0.0/24", &frame));
    assert!(matches("dst host 10.9.0.7 or 10.9.0.2", &frame));
    let mut arp = vec![0xffu8; 6];
    arp.extend_from_slice(&[2, 0, 0, 0, 0, 0xa, 0x08, 0x06]);
    arp.extend_from_slice(&[0, 1, 8, 0, 6, 4, 0, 1, 2, 0, 0, 0, 0, 0xa, 10, 9, 0, 1]);
    arp.extend_from_slice(&[0, 0, 0, 0, 0, 0, 10, 9, 0, 2]);
    assert!(matches("host 10.9.0.2", &arp));
    assert!(!matches("ip host 10.9.0.2", &arp));
    assert!(matches("arp host 10.9.0.1", &arp));
    assert!(matches("ether broadcast", &arp));
    assert!(matches("ether src 02:00:00:00:00:0a", &arp));
}

#[test]
fn vlan_shifts_what_follows() {
    let inner = ipv4(6, 0, &tcp(1, 80, 2));
    let tagged = vlan_tagged(&inner, 0x8100, 100);
    assert!(!matches("ip", &tagged));
    assert!(matches("vlan and ip", &tagged));
    assert!(matches("vlan 100 and tcp port 80", &tagged));
    assert!(!matches("vlan 101", &tagged));
    // The quirk: `vlan or ip` looks for ip after a tag even on the untagged side.
    assert!(!matches("vlan 101 or ip", &inner));
    let qinq = vlan_tagged(&tagged, 0x88a8, 200);
    assert!(matches("vlan 200 and vlan 100 and tcp dst port 80", &qinq));
    assert!(matches(
        "vlan and vlan and ip",
        &vlan_tagged(&tagged, 0x9100, 7)
    ));
}

#[test]
fn lengths_use_the_wire_length() {
    let frame = ipv4(1, 0, &[8, 0, 0, 0]);
    let short = Packet {
        data: &frame[..20],
        wire_len: 1500,
    };
    assert!(matches_any(&filters("greater 1000"), &short));
    assert!(!matches_any(&filters("less 1000"), &short));
    assert!(matches_any(&filters("len = 1500"), &short));
}

#[test]
fn a_short_capture_rejects_the_whole_or_like_bpf() {
    // `ip[40] = 1 or ip`: BPF loads ip[40] first and rejects a frame too short for it, even
    // though `ip` would match.
    let frame = ipv4(1, 0, &[8, 0, 0, 0]);
    assert!(frame.len() < 14 + 41);
    assert!(!matches("ip[40] = 1 or ip", &frame));
    assert!(matches("ip or ip[40] = 1", &frame));
}

#[test]
fn or_of_ports_tests_the_loaded_source_port_first_like_libpcaps_optimiser() {
    // `tcpdump -d 'port 80 or port 53'`: the source port is compared with 80 and 53 before the
    // destination port is loaded, so a capture cut inside the destination port matches when
    // the source port is 53. Written order would load the destination for port 80 and abort.
    let frame = ipv4(6, 0, &tcp(53, 9, 0x02));
    let cut = |len: usize| Packet {
        data: &frame[..len],
        wire_len: frame.len() as u32,
    };
    let short = cut(14 + 20 + 3);
    for expr in [
        "port 80 or port 53",
        "tcp and (port 8080 or port 53)",
        "port 80 or src port 53",
        "src port 80 or dst port 22 or src port 53",
        "tcp port 80 or port 53",
        "src port 80 or dst port 22 or port 53",
    ] {
        assert!(matches_any(&filters(expr), &short), "{expr}");
    }
    // Where libpcap loads the destination first, so does dpf (`ip[0] = 0` interrupts the run
    // of ports on IPv4 frames).
    for expr in [
        "src port 80 or dst port 22",
        "port 80 or portrange 50-60",
        "port 80 or ip[0] = 0 or port 53",
    ] {
        assert!(!matches_any(&filters(expr), &short), "{expr}");
    }
    assert!(!matches_any(
        &filters("port 80 or port 53"),
        &cut(14 + 20 + 1)
    ));
}

#[test]
fn or_of_ipv4_hosts_tests_the_loaded_source_address_first() {
    // `host A or host B`: the source address against both, then the destination (per
    // ethertype); `src host A or dst host B` keeps its order.
    let mut frame = ipv4(17, 0, &[0, 1, 0, 2, 0, 8, 0, 0]);
    frame[26..30].copy_from_slice(&[10, 0, 0, 2]);
    frame[30..34].copy_from_slice(&[10, 0, 0, 9]);
    let short = Packet {
        data: &frame[..32],
        wire_len: frame.len() as u32,
    };
    assert!(matches_any(
        &filters("host 10.0.0.1 or host 10.0.0.2"),
        &short
    ));
    assert!(matches_any(
        &filters("host 10.0.0.1 or ip src 10.0.0.2"),
        &short
    ));
    assert!(matches_any(
        &filters("src host 10.0.0.1 or dst host 10.0.0.3 or host 10.0.0.2"),
        &short
    ));
    assert!(!matches_any(
        &filters("src host 10.0.0.1 or dst host 10.0.0.3"),
        &short
    ));
    // A masked `net` is compared after an `and`: not merged (a /32 is a host, and merged).
    assert!(!matches_any(
        &filters("net 10.1.0.0/16 or host 10.0.0.2"),
        &short
    ));
    assert!(matches_any(
        &filters("net 10.1.0.1/32 or host 10.0.0.2"),
        &short
    ));
}

#[test]
fn empty_expression_matches_everything() {
    let f = filters("  ");
    assert_eq!(f.len(), 1);
    assert!(matches_any(&f, &Packet::whole(&[])));
}

#[test]
fn arithmetic_between_fields_is_an_expression_step() {
    use crate::ir::Step;
    // The payload-length idiom: the `ip` check, then one program over both headers (gen_arth
    // drops the `tcp` checks of the right operand, as libpcap does).
    let f = compile(
        "ip[2:2] - ((ip[0]&0xf)<<2) - ((tcp[12]&0xf0)>>2) != 0",
        FilterId(1),
    )
    .unwrap();
    assert_eq!(f.len(), 1);
    let steps = f[0].steps();
    assert_eq!(steps[0], Step::eq(12, crate::ir::Width::B2, 0x0800));
    assert!(
        matches!(steps[1], Step::Eval(_)) && steps.len() == 2,
        "{steps:?}"
    );
    // IPv4, header 20 bytes, TCP data offset 5 words, total length 40 + 6 bytes of payload.
    let mut p = alloc::vec![0u8; 14 + 20 + 20 + 6];
    p[12] = 0x08;
    p[14] = 0x45;
    p[16..18].copy_from_slice(&46u16.to_be_bytes());
    p[14 + 9] = 6;
    p[14 + 20 + 12] = 0x50;
    assert!(matches_any(&f, &Packet::whole(&p)));
    p[16..18].copy_from_slice(&40u16.to_be_bytes());
    assert!(!matches_any(&f, &Packet::whole(&p)));
    // Cut before the TCP header's data offset: the load fails and so does the filter.
    p[16..18].copy_from_slice(&46u16.to_be_bytes());
    assert!(!matches_any(&f, &Packet::whole(&p[..14 + 20 + 12])));
}

#[test]
fn errors_say_what_and_where() {
    let err = |e: &str| compile(e, FilterId(1)).unwrap_err();
    let e = err("tcp port");
    assert_eq!(e.position, 8);
    assert!(e.message.contains("expected an address"), "{e}");
    let e = err("tcp prot 80");
    assert_eq!(e.position, 4);
    let e = err("ip6 and ip");
    assert_eq!(e.message, "expression rejects all packets");
    let e = err("ip[0] / 0 = 1");
    assert_eq!(e.message, "division by zero");
    let e = err("ip[0] ^ ip[1] << 32 = 1");
    assert_eq!(e.message, "shift by more than 31 bits");
    assert_eq!((e.position, e.end), (14, 16));
    let e = err("udp port http");
    assert_eq!(e.message, "port 'http' is tcp");
    assert_eq!((e.position, e.end), (9, 13));
    let e = err("tcp portrange ntp-bootps");
    assert_eq!(e.message, "port in range 'ntp-bootps' is udp");
    let e = err("port no-such-service");
    assert!(e.message.contains("unknown port 'no-such-service'"), "{e}");
    let e = err("host foo");
    assert!(e.message.contains("unknown host 'foo'"), "{e}");
    let e = err("ip and type mgt");
    assert!(
        e.message.contains("802.11") && e.message.contains("DLT_EN10MB"),
        "{e}"
    );
    assert_eq!((e.position, e.end), (7, 11));
    let e = err("byte 1 = 2");
    assert!(e.message.contains("not support"), "{e}");
    let e = err("mpls and arp");
    assert_eq!(e.message, "unsupported protocol over mpls");
    let e = err("geneve and ether host 02:00:00:00:00:01");
    assert!(e.message.contains("GENEVE"), "{e}");
    let e = err("geneve and vlan");
    assert!(e.message.contains("GENEVE"), "{e}");
    let e = err("vlan 5000");
    assert!(e.message.contains("4095"), "{e}");
}

#[test]
fn hostile_expressions_are_refused_not_exploded() {
    let mut expr = alloc::string::String::new();
    for i in 0..24 {
        if i > 0 {
            expr.push_str(" and ");
        }
        expr.push_str(&alloc::format!("(ip[{i}] = 1 or ip[{}] = 2)", i + 40));
    }
    let e = compile(&expr, FilterId(1)).unwrap_err();
    assert!(e.message.starts_with("expression too complex"), "{e}");
}

mod hostile {
    //! Whatever the text, `compile` returns: filters that verify, or an error that points inside
    //! the text.
    use super::*;
    use alloc::string::String;
    use proptest::prelude::*;

    const VOCABULARY: &[&str] = &[
        "ip",
        "ip6",
        "arp",
        "rarp",
        "tcp",
        "udp",
        "icmp",
        "icmp6",
        "sctp",
        "igmp",
        "ether",
        "vlan",
        "host",
        "net",
        "port",
        "portrange",
        "src",
        "dst",
        "proto",
        "mask",
        "and",
        "or",
        "not",
        "!",
        "&&",
        "||",
        "(",
        ")",
        "[",
        "]",
        ":",
        "=",
        "==",
        "!=",
        "<",
        "<=",
        ">",
        ">=",
        "&",
        "|",
        "^",
        "+",
        "-",
        "*",
        "/",
        "%",
        "<<",
        ">>",
        "len",
        "less",
        "greater",
        "broadcast",
        "multicast",
        "0",
        "1",
        "4",
        "13",
        "80",
        "0x800",
        "010",
        "65535",
        "70000",
        "4096",
        "10.9.0.1",
        "10.9",
        "10.0.0.0/8",
        "fe80::1",
        "::",
        "02:00:00:00:00:0a",
        "1000-2000",
        "\\tcp",
        "tcpflags",
        "tcp-syn",
        "icmp-echo",
        "icmp6type",
        "foo",
        "mpls",
        "gateway",
        "é",
    ];

    fn check(expr: &str) {
        match compile(expr, FilterId(3)) {
            Ok(filters) => {
                assert!(!filters.is_empty());
                for f in &filters {
                    assert_eq!(f.id(), FilterId(3));
                }
                let frame = [0x45u8; 80];
                let _ = matches_any(&filters, &Packet::whole(&frame));
                let _ = matches_any(&filters, &Packet::whole(&frame[..17]));
            }
            Err(e) => {
                assert!(e.position <= expr.len(), "{expr:?}: {e:?}");
                assert!(e.end <= expr.len(), "{expr:?}: {e:?}");
                assert!(e.position <= e.end);
                assert!(expr.is_char_boundary(e.position), "{expr:?}: {e:?}");
                assert!(!e.message.is_empty());
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn random_text_never_panics(expr in "\\PC{0,60}") {
            check(&expr);
        }

        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..80)) {
            check(&String::from_utf8_lossy(&bytes));
        }

        #[test]
        fn token_soup_never_panics(
            picks in proptest::collection::vec(0..VOCABULARY.len(), 0..24),
            glue in proptest::collection::vec(prop_oneof![Just(" "), Just("")], 24),
        ) {
            let mut expr = String::new();
            for (i, &p) in picks.iter().enumerate() {
                expr.push_str(VOCABULARY[p]);
                expr.push_str(glue[i]);
            }
            check(&expr);
        }
    }

    #[test]
    fn deep_and_long_inputs_are_refused_quickly() {
        for expr in [
            "(".repeat(100_000),
            "not ".repeat(10_000) + "ip",
            "ip and ".repeat(2_000) + "ip",
            alloc::format!("{}ip{}", "(".repeat(60), ")".repeat(60)),
            "port 1 or ".repeat(300) + "port 2",
            "port 1 or ".repeat(150) + "port 2",
            "host 10.0.0.1 or ".repeat(150) + "host 10.0.0.2",
            "not (tcp[0] = 1 or udp[1] = 2 or ip6[2] = 3 or ether[3] = 4) and ".repeat(40) + "ip",
            "-".repeat(10_000) + "1 = 1",
        ] {
            check(&expr);
        }
    }
}
