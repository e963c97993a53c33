//! `synth`: writes the seeded synthetic trace (Zipf flows over IPv4/IPv6, TCP/UDP, some VLAN
//! tags, IP options and fragments) to a pcap file, so any tool can replay what the benchmarks use.

use std::fs::File;
use std::io::BufWriter;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use pcap_file::pcap::{PcapHeader, PcapPacket, PcapWriter};
use pcap_file::{DataLink, TsResolution};
use pcap_tests::synth::{SynthConfig, generate};

/// Write a synthetic trace to a pcap file (nanosecond timestamps, Ethernet).
#[derive(Debug, Parser)]
#[command(name = "synth", version, about)]
struct Args {
    /// Output pcap file.
    #[arg(short = 'o', value_name = "FILE")]
    output: PathBuf,
    /// Packets to generate.
    #[arg(long, default_value_t = 100_000)]
    packets: usize,
    /// Distinct flows (popularity follows Zipf with exponent 1).
    #[arg(long, default_value_t = 4_096)]
    flows: usize,
    /// RNG seed: the same seed writes the same file.
    #[arg(long, default_value_t = SynthConfig::default().seed)]
    seed: u64,
    /// Keep only each packet's first N bytes, as `tcpdump -s N` does (the wire length stays the
    /// whole packet's). `demux-bench` replays 200,000 packets cut to 128 bytes:
    /// `--packets 200000 --snaplen 128` writes that trace.
    #[arg(long, value_name = "N")]
    snaplen: Option<u32>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    if args.flows == 0 {
        eprintln!("synth: --flows must be at least 1");
        return ExitCode::from(2);
    }
    if args.snaplen == Some(0) {
        eprintln!("synth: --snaplen must be at least 1");
        return ExitCode::from(2);
    }
    let trace = generate(&SynthConfig {
        seed: args.seed,
        packets: args.packets,
        flows: args.flows,
        snaplen: args.snaplen.map(|n| n as usize),
        ..SynthConfig::default()
    });
    let header = PcapHeader {
        datalink: DataLink::ETHERNET,
        ts_resolution: TsResolution::NanoSecond,
        snaplen: args.snaplen.unwrap_or(65_535),
        ..PcapHeader::default()
    };
    let result = File::create(&args.output)
        .map_err(|e| e.to_string())
        .and_then(|file| {
            let mut writer =
                PcapWriter::with_header(BufWriter::new(file), header).map_err(|e| e.to_string())?;
            for p in &trace.packets {
                let ts = Duration::new(u64::from(p.ts_sec), p.ts_nsec);
                writer
                    .write_packet(&PcapPacket::new(ts, p.wire_len, &p.data))
                    .map_err(|e| e.to_string())?;
            }
            Ok(())
        });
    match result {
        Ok(()) => {
            println!(
                "{}: {} packets over {} flows",
                args.output.display(),
                trace.packets.len(),
                trace.flows.len()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("synth: {}: {e}", args.output.display());
            ExitCode::from(1)
        }
    }
}
