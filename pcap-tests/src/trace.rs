//! Reads a capture file (pcap or pcapng) into memory, so the CLI, the fixture tests and the
//! benchmarks replay the same frames in the same order with the same lengths tcpdump sees.
//!
//! dpf's offsets assume an Ethernet header at byte 0, so a trace of any other link type is
//! refused rather than silently misread.

use std::fmt;
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;

use pcap_file::pcap::PcapReader;
use pcap_file::pcapng::blocks::interface_description::InterfaceDescriptionOption;
use pcap_file::pcapng::{Block, PcapNgReader};
use pcap_file::{DataLink, PcapError, TsResolution};

/// One captured frame, starting at its Ethernet header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TracePacket {
    /// The captured bytes (at most the snapshot length of the capture).
    pub data: Vec<u8>,
    /// The frame's length on the wire, which is pcap's `len` and may exceed `data.len()`.
    pub wire_len: u32,
    /// Capture time, whole seconds since the Unix epoch.
    pub ts_sec: u32,
    /// Capture time, nanoseconds within the second.
    pub ts_nsec: u32,
}

/// Why a trace could not be read.
#[derive(Debug)]
pub enum TraceError {
    /// The file could not be opened or read.
    Io(std::io::Error),
    /// Neither a pcap nor a pcapng magic number at the start of the file.
    UnknownFormat {
        /// The first four bytes found (fewer if the file is shorter).
        magic: Vec<u8>,
    },
    /// The file is pcap or pcapng but malformed.
    Malformed(PcapError),
    /// A link type other than Ethernet, whose frames dpf's offsets do not describe.
    UnsupportedLinkType(DataLink),
    /// A pcapng packet names an interface the file never described.
    UnknownInterface(u32),
}

impl fmt::Display for TraceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TraceError::Io(e) => write!(f, "cannot read trace: {e}"),
            TraceError::UnknownFormat { magic } => {
                write!(f, "not a pcap or pcapng file (starts with {magic:02x?})")
            }
            TraceError::Malformed(e) => write!(f, "malformed trace: {e}"),
            TraceError::UnsupportedLinkType(link) => write!(
                f,
                "link type {link:?} is not supported: dpf filters start at an Ethernet header"
            ),
            TraceError::UnknownInterface(id) => {
                write!(
                    f,
                    "packet names interface {id}, which the trace never described"
                )
            }
        }
    }
}

impl std::error::Error for TraceError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            TraceError::Io(e) => Some(e),
            TraceError::Malformed(e) => Some(e),
            _ => None,
        }
    }
}

impl From<std::io::Error> for TraceError {
    fn from(e: std::io::Error) -> Self {
        TraceError::Io(e)
    }
}

impl From<PcapError> for TraceError {
    fn from(e: PcapError) -> Self {
        TraceError::Malformed(e)
    }
}

/// The file formats told apart by their first four bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Format {
    Pcap,
    PcapNg,
}

fn sniff_format(magic: &[u8]) -> Option<Format> {
    match magic {
        // Microsecond and nanosecond pcap, in either byte order.
        [0xa1, 0xb2, 0xc3, 0xd4]
        | [0xd4, 0xc3, 0xb2, 0xa1]
        | [0xa1, 0xb2, 0x3c, 0x4d]
        | [0x4d, 0x3c, 0xb2, 0xa1] => Some(Format::Pcap),
        // The section header block type reads the same in both byte orders.
        [0x0a, 0x0d, 0x0d, 0x0a] => Some(Format::PcapNg),
        _ => None,
    }
}

/// Reads every frame of a pcap or pcapng file, in file order (frame 1 is index 0).
pub fn read_trace(path: impl AsRef<Path>) -> Result<Vec<TracePacket>, TraceError> {
    let mut bytes = Vec::new();
    BufReader::new(File::open(path)?).read_to_end(&mut bytes)?;
    read_trace_bytes(&bytes)
}

/// Same as [`read_trace`], from the file's bytes already in memory.
pub fn read_trace_bytes(bytes: &[u8]) -> Result<Vec<TracePacket>, TraceError> {
    let magic = &bytes[..bytes.len().min(4)];
    match sniff_format(magic) {
        Some(Format::Pcap) => read_pcap(bytes),
        Some(Format::PcapNg) => read_pcapng(bytes),
        None => Err(TraceError::UnknownFormat {
            magic: magic.to_vec(),
        }),
    }
}

fn read_pcap(bytes: &[u8]) -> Result<Vec<TracePacket>, TraceError> {
    let mut reader = PcapReader::new(bytes)?;
    let header = reader.header();
    if header.datalink != DataLink::ETHERNET {
        return Err(TraceError::UnsupportedLinkType(header.datalink));
    }
    let mut packets = Vec::new();
    // pcap-file 2's checked packets refuse a wire length above the snapshot length, which is
    // exactly what a truncated capture (`tcpdump -s 64`) holds; read the raw records instead.
    while let Some(packet) = reader.next_raw_packet() {
        let packet = packet?;
        let ts_nsec = match header.ts_resolution {
            TsResolution::MicroSecond => packet.ts_frac.saturating_mul(1000),
            TsResolution::NanoSecond => packet.ts_frac,
        };
        packets.push(TracePacket {
            data: packet.data.into_owned(),
            wire_len: packet.orig_len,
            ts_sec: packet.ts_sec,
            ts_nsec,
        });
    }
    Ok(packets)
}

/// What a pcapng interface description says that matters here.
#[derive(Clone, Copy, Debug)]
struct Interface {
    link: DataLink,
    /// Timestamp units per second (`if_tsresol`; microseconds when absent).
    units_per_sec: u64,
}

fn units_per_sec(options: &[InterfaceDescriptionOption<'_>]) -> u64 {
    for option in options {
        if let InterfaceDescriptionOption::IfTsResol(resolution) = *option {
            // High bit set: a negative power of two; clear: a negative power of ten. Exponents
            // past what a u64 holds are clamped: no capture clock is that fine.
            let exponent = u32::from(resolution & 0x7f);
            return if resolution & 0x80 != 0 {
                1u64 << exponent.min(63)
            } else {
                10u64.pow(exponent.min(19))
            };
        }
    }
    1_000_000
}

fn read_pcapng(bytes: &[u8]) -> Result<Vec<TracePacket>, TraceError> {
    let mut reader = PcapNgReader::new(bytes)?;
    let mut interfaces: Vec<Interface> = Vec::new();
    let mut packets = Vec::new();
    while let Some(block) = reader.next_block() {
        match block? {
            // A new section starts a new numbering of interfaces.
            Block::SectionHeader(_) => interfaces.clear(),
            Block::InterfaceDescription(idb) => {
                if idb.linktype != DataLink::ETHERNET {
                    return Err(TraceError::UnsupportedLinkType(idb.linktype));
                }
                interfaces.push(Interface {
                    link: idb.linktype,
                    units_per_sec: units_per_sec(&idb.options),
                });
            }
            Block::EnhancedPacket(epb) => {
                let interface = interfaces
                    .get(epb.interface_id as usize)
                    .ok_or(TraceError::UnknownInterface(epb.interface_id))?;
                debug_assert_eq!(interface.link, DataLink::ETHERNET);
                // pcap-file 2 hands the raw 64-bit timestamp over as nanoseconds whatever the
                // interface's resolution; rescale it here.
                let raw = epb.timestamp.as_nanos() as u64;
                let (ts_sec, ts_nsec) = split_timestamp(raw, interface.units_per_sec);
                packets.push(TracePacket {
                    data: epb.data.into_owned(),
                    wire_len: epb.original_len,
                    ts_sec,
                    ts_nsec,
                });
            }
            Block::SimplePacket(spb) => {
                // Simple packets belong to the first interface and carry no timestamp.
                if interfaces.is_empty() {
                    return Err(TraceError::UnknownInterface(0));
                }
                packets.push(TracePacket {
                    data: spb.data.into_owned(),
                    wire_len: spb.original_len,
                    ts_sec: 0,
                    ts_nsec: 0,
                });
            }
            Block::Packet(pb) => {
                let interface = interfaces
                    .get(pb.interface_id as usize)
                    .ok_or(TraceError::UnknownInterface(u32::from(pb.interface_id)))?;
                let (ts_sec, ts_nsec) = split_timestamp(pb.timestamp, interface.units_per_sec);
                packets.push(TracePacket {
                    data: pb.data.into_owned(),
                    wire_len: pb.original_len,
                    ts_sec,
                    ts_nsec,
                });
            }
            _ => {}
        }
    }
    Ok(packets)
}

/// Splits a count of `units_per_sec` ticks into seconds and nanoseconds.
fn split_timestamp(raw: u64, units_per_sec: u64) -> (u32, u32) {
    let units_per_sec = units_per_sec.max(1);
    let secs = raw / units_per_sec;
    let rest = raw % units_per_sec;
    let nanos = (u128::from(rest) * 1_000_000_000 / u128::from(units_per_sec)) as u32;
    (secs as u32, nanos)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_follow_the_interface_resolution() {
        assert_eq!(split_timestamp(1_500_000, 1_000_000), (1, 500_000_000));
        assert_eq!(split_timestamp(2_000_000_007, 1_000_000_000), (2, 7));
        assert_eq!(split_timestamp(3 * 1024 + 512, 1024), (3, 500_000_000));
    }

    #[test]
    fn unknown_magic_is_refused() {
        let err = read_trace_bytes(b"GIF89a").unwrap_err();
        assert!(matches!(err, TraceError::UnknownFormat { ref magic } if magic == b"GIF8"));
        assert!(matches!(
            read_trace_bytes(b""),
            Err(TraceError::UnknownFormat { .. })
        ));
    }

    #[test]
    fn pcap_and_pcapng_read_alike() {
        use pcap_file::pcap::{PcapHeader, PcapPacket, PcapWriter};
        use pcap_file::pcapng::PcapNgWriter;
        use pcap_file::pcapng::blocks::enhanced_packet::EnhancedPacketBlock;
        use pcap_file::pcapng::blocks::interface_description::InterfaceDescriptionBlock;
        use std::borrow::Cow;
        use std::time::Duration;

        let frame = [0xffu8; 60];
        let mut pcap = Vec::new();
        {
            let header = PcapHeader {
                snaplen: 64,
                ..PcapHeader::default()
            };
            let mut writer = PcapWriter::with_header(&mut pcap, header).unwrap();
            writer
                .write_packet(&PcapPacket::new(
                    Duration::new(7, 250_000_000),
                    1514,
                    &frame,
                ))
                .unwrap();
        }
        let mut pcapng = Vec::new();
        {
            let mut writer = PcapNgWriter::new(&mut pcapng).unwrap();
            writer
                .write_pcapng_block(InterfaceDescriptionBlock {
                    linktype: DataLink::ETHERNET,
                    snaplen: 64,
                    options: vec![],
                })
                .unwrap();
            // Default resolution is microseconds: 7.25 s is 7_250_000 ticks, which pcap-file
            // carries as a Duration of that many nanoseconds.
            writer
                .write_pcapng_block(EnhancedPacketBlock {
                    interface_id: 0,
                    timestamp: Duration::from_nanos(7_250_000),
                    original_len: 1514,
                    data: Cow::Borrowed(&frame),
                    options: vec![],
                })
                .unwrap();
        }
        let expected = vec![TracePacket {
            data: frame.to_vec(),
            wire_len: 1514,
            ts_sec: 7,
            ts_nsec: 250_000_000,
        }];
        assert_eq!(read_trace_bytes(&pcap).unwrap(), expected);
        assert_eq!(read_trace_bytes(&pcapng).unwrap(), expected);
    }
}
