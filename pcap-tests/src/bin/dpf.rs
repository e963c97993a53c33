//! `dpf`: tcpdump's reading half on top of the Dynamic Packet Filter, to check verdicts and compare
//! the JIT with the interpreter on real captures.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, ValueEnum};
use dpf::jit::ExecutableTrie;
use dpf::trie::Trie;
use dpf::{FilterId, Packet};
use pcap_tests::describe::{summary, timestamp};
use pcap_tests::dump::{disassemble, dump_trie};
use pcap_tests::trace::{TracePacket, read_trace};

/// Filter a capture with dpf, the way `tcpdump -r FILE EXPR` does.
///
/// The expression is pcap-filter syntax (`man pcap-filter`): it is compiled to conjunctive dpf
/// filters, merged into one trie, and run by the chosen engine. Exit status: 0 on success, 1 when
/// the capture cannot be read or written, 2 when the expression is refused.
#[derive(Debug, Parser)]
#[command(name = "dpf", version, about, long_about = None)]
struct Args {
    /// Capture to read: pcap or pcapng, Ethernet link type.
    #[arg(short = 'r', value_name = "FILE")]
    read: PathBuf,

    /// Which engine decides: the x86_64 code generated from the trie, or the interpreter that
    /// walks it (the reference).
    #[arg(short = 'e', long = "engine", value_enum, default_value_t = Engine::Jit)]
    engine: Engine,

    /// Print only the number of matching packets.
    #[arg(long, conflicts_with = "frames")]
    count: bool,

    /// Print the 1-based frame numbers of matching packets, one per line.
    #[arg(long)]
    frames: bool,

    /// Write matching packets to this pcap file (nanosecond timestamps), like `tcpdump -w`.
    #[arg(short = 'w', value_name = "OUT")]
    write: Option<PathBuf>,

    /// Print the merged trie before filtering.
    #[arg(long)]
    dump: bool,

    /// Print the generated x86_64 code before filtering.
    #[arg(long)]
    disasm: bool,

    /// Also time the engine over the whole trace in memory (after a warm-up, median of several
    /// passes) and print ns/packet to stderr.
    #[arg(long)]
    time: bool,

    /// The filter expression; several arguments are joined with spaces, as tcpdump does.
    /// An empty expression matches every packet.
    #[arg(
        value_name = "EXPRESSION",
        trailing_var_arg = true,
        allow_hyphen_values = true
    )]
    expression: Vec<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Engine {
    /// Generated x86_64 code.
    Jit,
    /// The trie interpreter.
    Interp,
}

/// The one filter id every conjunction of the expression carries.
const EXPRESSION_ID: FilterId = FilterId(1);

fn main() -> ExitCode {
    let args = Args::parse();
    let expression = args.expression.join(" ");

    let trie = match build_trie(&expression) {
        Ok(trie) => trie,
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::from(2);
        }
    };

    let packets = match read_trace(&args.read) {
        Ok(packets) => packets,
        Err(e) => {
            eprintln!("dpf: {}: {e}", args.read.display());
            return ExitCode::from(1);
        }
    };

    let stdout = io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    if args.dump {
        let _ = write!(out, "{}", dump_trie(trie.as_ref()));
    }

    let matches = match select(&args, trie.as_ref(), &packets, &mut out) {
        Ok(matches) => matches,
        Err(message) => {
            let _ = out.flush();
            eprintln!("dpf: {message}");
            return ExitCode::from(1);
        }
    };

    if args.count {
        let _ = writeln!(out, "{}", matches.len());
    } else if args.frames {
        for frame in &matches {
            let _ = writeln!(out, "{frame}");
        }
    } else if args.write.is_none() {
        for &frame in &matches {
            let p = &packets[frame - 1];
            let _ = writeln!(
                out,
                "{} {}",
                timestamp(p.ts_sec, p.ts_nsec),
                summary(&p.data, p.wire_len)
            );
        }
    }
    if let Some(path) = &args.write
        && let Err(e) = write_matches(path, &packets, &matches)
    {
        let _ = out.flush();
        eprintln!("dpf: {}: {e}", path.display());
        return ExitCode::from(1);
    }
    if out.flush().is_err() {
        return ExitCode::from(1);
    }
    ExitCode::SUCCESS
}

/// Compiles the expression into a trie; `None` for the empty expression (everything matches).
fn build_trie(expression: &str) -> Result<Option<Trie>, String> {
    if expression.trim().is_empty() {
        return Ok(None);
    }
    let filters = dpf::frontend::compile(expression, EXPRESSION_ID)
        .map_err(|e| filter_error(expression, e.position, &e.message))?;
    let mut trie = Trie::new();
    for filter in filters {
        match trie.insert(filter) {
            Ok(_) => {}
            // A disjunction may repeat a conjunction (`tcp or tcp`): the trie already has it.
            Err(dpf::trie::InsertError::IdenticalSteps { .. }) => {}
            Err(e) => return Err(format!("dpf: cannot bind the filter: {e}")),
        }
    }
    Ok(Some(trie))
}

/// The error with the expression and a caret under the position, as a compiler prints it.
fn filter_error(expression: &str, position: usize, message: &str) -> String {
    let column = expression
        .get(..position.min(expression.len()))
        .map_or(position, |prefix| prefix.chars().count());
    format!(
        "dpf: filter error at position {position}: {message}\n  {expression}\n  {}^",
        " ".repeat(column)
    )
}

/// Runs the chosen engine over every packet; returns the 1-based numbers of matching frames.
fn select(
    args: &Args,
    trie: Option<&Trie>,
    packets: &[TracePacket],
    out: &mut impl Write,
) -> Result<Vec<usize>, String> {
    let Some(trie) = trie else {
        return Ok((1..=packets.len()).collect());
    };
    let frames_where = |pred: &dyn Fn(&Packet<'_>) -> bool| {
        packets
            .iter()
            .enumerate()
            .filter(|(_, p)| pred(&packet_view(p)))
            .map(|(i, _)| i + 1)
            .collect::<Vec<_>>()
    };
    match args.engine {
        Engine::Interp => {
            if args.disasm {
                let _ = writeln!(out, "(the interpreter generates no code; use -e jit)");
            }
            let classify = |p: &Packet<'_>| dpf::interp::classify(trie, p).is_some();
            if args.time {
                report_time("interp", packets, &classify);
            }
            Ok(frames_where(&classify))
        }
        Engine::Jit => {
            let compiled = dpf::jit::compile(trie).map_err(|e| format!("code generation: {e}"))?;
            if args.disasm {
                let _ = write!(out, "{}", disassemble(&compiled));
            }
            let executable = ExecutableTrie::new(&compiled)
                .map_err(|e| format!("cannot map generated code: {e}"))?;
            let classify = |p: &Packet<'_>| executable.classify(p).is_some();
            if args.time {
                report_time("jit", packets, &classify);
            }
            Ok(frames_where(&classify))
        }
    }
}

/// Times `classify` over every packet: one warm-up pass, then passes of at least 200 ms each,
/// median of five, printed to stderr so it never mixes with the packet output.
fn report_time(engine: &str, packets: &[TracePacket], classify: &dyn Fn(&Packet<'_>) -> bool) {
    use std::time::{Duration, Instant};
    if packets.is_empty() {
        eprintln!("dpf: {engine}: no packets to time");
        return;
    }
    let views: Vec<Packet<'_>> = packets.iter().map(packet_view).collect();
    let pass = || views.iter().filter(|p| classify(p)).count();
    let matches = pass();
    let mut per_packet_ns = Vec::new();
    for _ in 0..5 {
        let started = Instant::now();
        let mut passes = 0u64;
        while started.elapsed() < Duration::from_millis(200) {
            std::hint::black_box(pass());
            passes += 1;
        }
        let elapsed = started.elapsed().as_nanos() as f64;
        per_packet_ns.push(elapsed / (passes as f64 * views.len() as f64));
    }
    per_packet_ns.sort_by(f64::total_cmp);
    eprintln!(
        "dpf: {engine}: {} packets, {matches} match, {:.2} ns/packet (median of 5; min {:.2}, max {:.2})",
        views.len(),
        per_packet_ns[2],
        per_packet_ns[0],
        per_packet_ns[4]
    );
}

fn packet_view(p: &TracePacket) -> Packet<'_> {
    Packet {
        data: &p.data,
        wire_len: p.wire_len,
    }
}

fn write_matches(path: &PathBuf, packets: &[TracePacket], frames: &[usize]) -> io::Result<()> {
    use pcap_file::pcap::{PcapHeader, PcapPacket, PcapWriter};
    use pcap_file::{DataLink, TsResolution};
    use std::time::Duration;

    let header = PcapHeader {
        datalink: DataLink::ETHERNET,
        ts_resolution: TsResolution::NanoSecond,
        snaplen: 262_144,
        ..PcapHeader::default()
    };
    let file = BufWriter::new(File::create(path)?);
    let mut writer = PcapWriter::with_header(file, header).map_err(io::Error::other)?;
    for &frame in frames {
        let p = &packets[frame - 1];
        let timestamp = Duration::new(u64::from(p.ts_sec), p.ts_nsec);
        writer
            .write_packet(&PcapPacket::new(timestamp, p.wire_len, &p.data))
            .map_err(io::Error::other)?;
    }
    Ok(())
}
