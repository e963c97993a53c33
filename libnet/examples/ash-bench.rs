//! The host half of `cargo xtask bench ash`: the integrated copy + Internet checksum against a
//! copy followed by a checksum pass (bytes per ns), and the interpreter's and the JIT's cost
//! per run of each stock handler on the frame it answers (ns). Prints a table; writes `OUT/ash.json`, one
//! object per row. Run with `--release` (`cargo xtask bench ash` does).
use ash::checksum;
use ash::interp::Machine;
use ash::ir::RegionDecl;
use ash::{Actions, Context, Handler};
use etherparse::{ArpHardwareId, ArpOperation, ArpPacket, EtherType, PacketBuilder};
use libnet::handlers;
use std::hint::black_box;

#[path = "../../ash/tests/common/jit_exec.rs"]
#[allow(dead_code)]
mod jit_exec;
use std::time::Instant;

const HOST_MAC: [u8; 6] = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56];
const HOST_IP: [u8; 4] = [10, 0, 2, 15];
const CLIENT_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 1];
const CLIENT_IP: [u8; 4] = [10, 0, 2, 2];
/// Timed rounds per figure; the median is reported.
const ROUNDS: usize = 11;

/// Median ns per call of `f`, over [`ROUNDS`] rounds of `iterations` calls.
fn median_ns(iterations: u32, mut f: impl FnMut()) -> f64 {
    let mut samples: Vec<f64> = (0..ROUNDS)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..iterations {
                f();
            }
            start.elapsed().as_nanos() as f64 / f64::from(iterations)
        })
        .collect();
    samples.sort_by(f64::total_cmp);
    samples[ROUNDS / 2]
}

/// A host for the stock handlers: regions in vectors, replies counted.
struct Host {
    regions: Vec<Vec<u8>>,
    sent: u64,
}

impl Actions for Host {
    fn region(
        &mut self,
        region: u8,
        offset: u32,
        len: u32,
        piece: &mut dyn FnMut(&mut [u8]),
    ) -> bool {
        let Some(bytes) = self.regions.get_mut(region as usize) else {
            return false;
        };
        match bytes.get_mut(offset as usize..(offset + len) as usize) {
            Some(range) => {
                piece(range);
                true
            }
            None => false,
        }
    }
    fn fetch_add(&mut self, region: u8, offset: u32, value: u64) -> Option<u64> {
        let word = self
            .regions
            .get_mut(region as usize)?
            .get_mut(offset as usize..offset as usize + 8)?;
        let new = u64::from_le_bytes(word.try_into().ok()?).wrapping_add(value);
        word.copy_from_slice(&new.to_le_bytes());
        Some(new)
    }
    fn compare_swap(&mut self, region: u8, offset: u32, expected: u64, new: u64) -> Option<u64> {
        let word = self
            .regions
            .get_mut(region as usize)?
            .get_mut(offset as usize..offset as usize + 8)?;
        let old = u64::from_le_bytes(word.try_into().ok()?);
        if old == expected {
            word.copy_from_slice(&new.to_le_bytes());
        }
        Some(old)
    }
    fn transmit(&mut self, frame: &[u8]) -> bool {
        black_box(frame);
        self.sent += 1;
        true
    }
    fn wake(&mut self) {}
    fn upcall(&mut self, _argument: u64) {}
}

fn udp(port: u16, payload: &[u8]) -> Vec<u8> {
    let mut frame = Vec::new();
    PacketBuilder::ethernet2(CLIENT_MAC, HOST_MAC)
        .ipv4(CLIENT_IP, HOST_IP, 64)
        .udp(40000, port)
        .write(&mut frame, payload)
        .expect("a frame");
    frame
}

fn frames() -> Vec<(&'static str, Handler, Vec<u8>)> {
    let verify = |handler: Result<ash::UnverifiedHandler, ash::builder::BuildError>| {
        handler
            .expect("stock handlers build")
            .verify(&Context::default())
            .expect("stock handlers verify")
    };
    let mut arp = Vec::new();
    PacketBuilder::ethernet2(CLIENT_MAC, [0xff; 6])
        .arp(
            ArpPacket::new(
                ArpHardwareId::ETHERNET,
                EtherType::IPV4,
                ArpOperation::REQUEST,
                &CLIENT_MAC,
                &CLIENT_IP,
                &[0; 6],
                &HOST_IP,
            )
            .expect("an ARP packet"),
        )
        .write(&mut arp)
        .expect("a frame");
    let mut icmp = Vec::new();
    PacketBuilder::ethernet2(CLIENT_MAC, HOST_MAC)
        .ipv4(CLIENT_IP, HOST_IP, 64)
        .icmpv4_echo_request(1, 1)
        .write(&mut icmp, &[0x5a; 56])
        .expect("a frame");
    let mut vectored = 3u32.to_be_bytes().to_vec();
    vectored.extend_from_slice(&[0xa5; 1024]);
    vec![
        (
            "arp_responder",
            verify(handlers::arp_responder(HOST_MAC, HOST_IP)),
            arp,
        ),
        ("icmp_echo", verify(handlers::icmp_echo(HOST_IP)), icmp),
        (
            "udp_echo",
            verify(handlers::udp_echo()),
            udp(7, &[0x42; 64]),
        ),
        (
            "remote_increment",
            verify(handlers::remote_increment()),
            udp(9000, &5u64.to_be_bytes()),
        ),
        (
            "message_vectoring_1k",
            verify(handlers::message_vectoring()),
            udp(5000, &vectored),
        ),
    ]
}

fn main() {
    let mut out = std::path::PathBuf::from("target/bench");
    let mut arguments = std::env::args().skip(1);
    while let Some(argument) = arguments.next() {
        if argument == "--out" {
            out = arguments.next().expect("--out DIR").into();
        }
    }
    let mut rows = Vec::new();
    println!("| bytes | integrated copy+checksum (B/ns) | copy, then checksum (B/ns) | ratio |");
    println!("|---|---|---|---|");
    for bytes in [64usize, 512, 1472, 8192] {
        let source: Vec<u8> = (0..bytes).map(|i| (i * 31 + 7) as u8).collect();
        let mut destination = vec![0u8; bytes];
        let iterations = (4_000_000 / bytes) as u32;
        let integrated = median_ns(iterations, || {
            black_box(checksum::copy_and_partial(
                black_box(&source),
                &mut destination,
                false,
            ));
        });
        let separate = median_ns(iterations, || {
            destination.copy_from_slice(black_box(&source));
            black_box(checksum::partial(black_box(&destination), false));
        });
        let (a, b) = (bytes as f64 / integrated, bytes as f64 / separate);
        println!("| {bytes} | {a:.2} | {b:.2} | {:.2}x |", a / b);
        rows.push(format!(
            "{{\"kind\": \"copy_checksum\", \"bytes\": {bytes}, \"integrated_bytes_per_ns\": {a:.4}, \"separate_bytes_per_ns\": {b:.4}}}"
        ));
    }
    println!();
    println!(
        "| stock handler | frame bytes | interpreter ns/run | JIT ns/run | JIT speed-up | proven cost (units) |"
    );
    println!("|---|---|---|---|---|---|");
    for (name, handler, frame) in frames() {
        let decls: &[RegionDecl] = handler.regions();
        let mut host = Host {
            regions: decls.iter().map(|d| vec![0; d.len as usize]).collect(),
            sent: 0,
        };
        let mut machine = Machine::new();
        let first = ash::run(&handler, &frame, &mut machine, &mut host);
        assert!(
            matches!(first.outcome, ash::Outcome::Exit(ash::Verdict::Consume)),
            "{name}: {first:?}"
        );
        let ns = median_ns(20_000, || {
            black_box(ash::run(
                &handler,
                black_box(&frame),
                &mut machine,
                &mut host,
            ));
        });
        let executable = jit_exec::Executable::new(&handler);
        let compiled = executable.run(&handler, &frame, &mut machine, &mut host);
        let interpreted = ash::run(&handler, &frame, &mut machine, &mut host);
        assert_eq!(compiled, interpreted, "{name}");
        let jit_ns = median_ns(20_000, || {
            black_box(executable.run(&handler, black_box(&frame), &mut machine, &mut host));
        });
        println!(
            "| {name} | {} | {ns:.0} | {jit_ns:.0} | {:.2}x | {} |",
            frame.len(),
            ns / jit_ns,
            handler.cost()
        );
        rows.push(format!(
            "{{\"kind\": \"stock_handler\", \"handler\": \"{name}\", \"frame_bytes\": {}, \"interpreter_ns\": {ns:.1}, \"jit_ns\": {jit_ns:.1}, \"cost_units\": {}}}",
            frame.len(),
            handler.cost()
        ));
    }
    std::fs::create_dir_all(&out).expect("creating the output directory");
    let json = out.join("ash.json");
    std::fs::write(&json, format!("[\n  {}\n]\n", rows.join(",\n  "))).expect("writing ash.json");
    println!("\nwrote {}", json.display());
}
