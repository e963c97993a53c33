//! Sanity timing, not a benchmark: ns/packet of the JIT and the interpreter on a synthetic
//! packet mix for 1..10,000 flow filters, and the cost of binding one more filter (trie insert
//! plus full code regeneration and mapping).
//!
//! `cargo run --release -p dpf --example speed`

use std::hint::black_box;
use std::time::Instant;

use dpf::interp;
use dpf::ir::{Atom, CmpOp, Field, Filter, FilterId, Packet, Shift, Step, UnverifiedFilter, Width};
use dpf::jit::{self, Demux, ExecutableTrie, Update};
use dpf::trie::Trie;

/// `ip and tcp and [src host H and] dst port P`, as the front end would emit it.
fn tcp_filter(id: u32, host: Option<u32>, port: u16) -> Filter {
    let mut steps = vec![
        Step::eq(12, Width::B2, 0x0800),
        Step::eq(23, Width::B1, 6),
        Step::Test(Atom {
            field: Field::Packet {
                offset: 20,
                width: Width::B2,
            },
            mask: 0x1fff,
            op: CmpOp::Eq,
            value: 0,
        }),
    ];
    if let Some(host) = host {
        steps.push(Step::eq(26, Width::B4, host));
    }
    steps.push(Step::Shift(Shift {
        offset: 14,
        width: Width::B1,
        mask: 0x0f,
        shift: 2,
    }));
    steps.push(Step::eq(16, Width::B2, port as u32));
    UnverifiedFilter {
        id: FilterId(id),
        steps,
    }
    .verify()
    .unwrap()
}

fn ipv4_packet(protocol: u8, source: u32, port: u16) -> Vec<u8> {
    let mut p = vec![0u8; 14 + 20 + 20 + 18];
    p[12] = 0x08;
    p[14] = 0x45;
    p[23] = protocol;
    p[26..30].copy_from_slice(&source.to_be_bytes());
    p[34..36].copy_from_slice(&40000u16.to_be_bytes());
    p[36..38].copy_from_slice(&port.to_be_bytes());
    p
}

/// Half the packets belong to a bound flow, the rest are other ports, UDP, IPv6 and ARP.
fn packet_mix(flows: usize) -> Vec<Vec<u8>> {
    let mut x: u32 = 0x1234_5678;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        x
    };
    (0..4096)
        .map(|i| {
            let flow = next() as usize % flows;
            match i % 8 {
                0..=3 => ipv4_packet(6, 0x0a00_0000 + flow as u32, 80 + (flow % 4) as u16),
                4 => ipv4_packet(6, 0x0a00_0000 + flow as u32, 8080),
                5 => ipv4_packet(17, 0x0a00_0000 + flow as u32, 53),
                6 => {
                    let mut p = vec![0u8; 74];
                    p[12] = 0x86;
                    p[13] = 0xdd;
                    p
                }
                _ => {
                    let mut p = vec![0u8; 42];
                    p[12] = 0x08;
                    p[13] = 0x06;
                    p
                }
            }
        })
        .collect()
}

fn ns_per_packet(packets: &[Vec<u8>], classify: impl Fn(&Packet<'_>) -> Option<FilterId>) -> f64 {
    let rounds = 200;
    let mut best = f64::MAX;
    for _ in 0..5 {
        let start = Instant::now();
        for _ in 0..rounds {
            for data in packets {
                black_box(classify(&Packet::whole(black_box(data))));
            }
        }
        let ns = start.elapsed().as_nanos() as f64 / (rounds * packets.len()) as f64;
        best = best.min(ns);
    }
    best
}

fn main() {
    println!("filters  interp ns/pkt  jit ns/pkt  speedup  matched  code bytes");
    let mut jit_at_one = 0.0;
    for &count in &[1usize, 10, 100, 1000, 10_000] {
        let filters: Vec<Filter> = if count == 1 {
            vec![tcp_filter(0, None, 80)]
        } else {
            (0..count)
                .map(|i| tcp_filter(i as u32, Some(0x0a00_0000 + i as u32), 80 + (i % 4) as u16))
                .collect()
        };
        let trie = Trie::from_filters(filters).unwrap();
        let compiled = jit::compile(&trie).unwrap();
        let code = ExecutableTrie::new(&compiled).unwrap();
        let packets = packet_mix(count);
        let matched = packets
            .iter()
            .filter(|p| code.classify(&Packet::whole(p)).is_some())
            .count();
        for p in &packets {
            assert_eq!(
                code.classify(&Packet::whole(p)),
                interp::classify(&trie, &Packet::whole(p))
            );
        }
        let interp_ns = ns_per_packet(&packets, |p| interp::classify(&trie, p));
        let jit_ns = ns_per_packet(&packets, |p| code.classify(p));
        if count == 1 {
            jit_at_one = jit_ns;
        }
        println!(
            "{count:>7}  {interp_ns:>13.2}  {jit_ns:>10.2}  {:>6.1}x  {:>6.1}%  {:>10}",
            interp_ns / jit_ns,
            100.0 * matched as f64 / packets.len() as f64,
            compiled.code().len()
        );
        if count == 10_000 {
            println!(
                "jit at 10,000 filters / jit at 1 filter: {:.2}x",
                jit_ns / jit_at_one
            );
        }
    }

    // Binding one more filter into 10,000 through the live demultiplexer: trie insert, table
    // patch (or regeneration), then mapping the new code.
    let mut demux = Demux::from_filters(
        (0..10_000u32).map(|i| tcp_filter(20_000 + i, Some(0x0a00_0000 + i), 80)),
    )
    .unwrap();
    let mut bind_us = Vec::new();
    let mut patched = 0;
    for i in 0..200u32 {
        let start = Instant::now();
        let (handle, update) = demux
            .insert(tcp_filter(40_000 + i, Some(0x0b00_0000 + i), 443))
            .unwrap();
        let code = ExecutableTrie::new(demux.compiled()).unwrap();
        bind_us.push(start.elapsed().as_secs_f64() * 1e6);
        black_box(code);
        patched += (update == Update::Patched) as usize;
        if i % 2 == 1 {
            demux.remove(handle).unwrap();
        }
    }
    bind_us.sort_by(f64::total_cmp);
    let start = Instant::now();
    let code = ExecutableTrie::new(&jit::compile(demux.trie()).unwrap()).unwrap();
    let regenerate_us = start.elapsed().as_secs_f64() * 1e6;
    black_box(code);
    println!(
        "bind one more into 10,000 (insert + patch or regenerate + map): median {:.1} us, max {:.1} us, {patched}/200 patched; full regeneration + map {:.0} us",
        bind_us[bind_us.len() / 2],
        bind_us[bind_us.len() - 1],
        regenerate_us
    );
}
