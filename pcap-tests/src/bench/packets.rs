//! The replayed packets, in memory once: every engine reads the same bytes in the same order.
//!
//! Each packet is stored as a *record* (captured length, wire length, bytes; see
//! [`super::cbpf_to_ebpf`]) in one contiguous arena, 8-byte aligned, so the eBPF engines get
//! their argument with no copy and the others read the bytes just after the header.

use dpf::Packet;

use super::cbpf_to_ebpf::RECORD_HEADER_BYTES;
use crate::trace::TracePacket;

/// Where one packet's record lies in a [`PacketArena`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PacketSpan {
    /// Offset of the record in the arena.
    pub record: usize,
    /// Captured bytes.
    pub captured_len: u32,
    /// Length on the wire.
    pub wire_len: u32,
}

impl PacketSpan {
    /// Bytes of the record: header and packet.
    pub fn record_len(&self) -> usize {
        RECORD_HEADER_BYTES + self.captured_len as usize
    }
}

/// All packets of a trace as records in one buffer.
#[derive(Clone, Debug)]
pub struct PacketArena {
    bytes: Vec<u8>,
    spans: Vec<PacketSpan>,
}

impl PacketArena {
    /// Lays out `packets` in order.
    pub fn new(packets: &[TracePacket]) -> PacketArena {
        let total: usize = packets
            .iter()
            .map(|p| (RECORD_HEADER_BYTES + p.data.len()).next_multiple_of(8))
            .sum();
        let mut bytes = Vec::with_capacity(total);
        let mut spans = Vec::with_capacity(packets.len());
        for packet in packets {
            let record = bytes.len();
            bytes.extend_from_slice(&(packet.data.len() as u32).to_le_bytes());
            bytes.extend_from_slice(&packet.wire_len.to_le_bytes());
            bytes.extend_from_slice(&packet.data);
            bytes.resize(bytes.len().next_multiple_of(8), 0);
            spans.push(PacketSpan {
                record,
                captured_len: packet.data.len() as u32,
                wire_len: packet.wire_len,
            });
        }
        PacketArena { bytes, spans }
    }

    /// Number of packets.
    pub fn len(&self) -> usize {
        self.spans.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    /// Where each packet lies, in trace order.
    pub fn spans(&self) -> &[PacketSpan] {
        &self.spans
    }

    /// The whole buffer (for engines that keep a private copy).
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The captured bytes of a packet.
    #[inline]
    pub fn data(&self, span: PacketSpan) -> &[u8] {
        let start = span.record + RECORD_HEADER_BYTES;
        &self.bytes[start..start + span.captured_len as usize]
    }

    /// The record (header and bytes) of a packet.
    #[inline]
    pub fn record(&self, span: PacketSpan) -> &[u8] {
        &self.bytes[span.record..span.record + span.record_len()]
    }

    /// The packet as dpf sees it.
    #[inline]
    pub fn packet(&self, span: PacketSpan) -> Packet<'_> {
        Packet {
            data: self.data(span),
            wire_len: span.wire_len,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_keep_lengths_and_bytes() {
        let packets = vec![
            TracePacket {
                data: vec![1, 2, 3],
                wire_len: 60,
                ts_sec: 0,
                ts_nsec: 0,
            },
            TracePacket {
                data: (0..20).collect(),
                wire_len: 20,
                ts_sec: 0,
                ts_nsec: 0,
            },
        ];
        let arena = PacketArena::new(&packets);
        assert_eq!(arena.len(), 2);
        let spans = arena.spans().to_vec();
        assert_eq!(spans[1].record % 8, 0);
        assert_eq!(arena.data(spans[0]), &[1, 2, 3]);
        assert_eq!(arena.packet(spans[0]).wire_len, 60);
        assert_eq!(arena.record(spans[0])[..8], [3, 0, 0, 0, 60, 0, 0, 0]);
        assert_eq!(arena.data(spans[1]), packets[1].data.as_slice());
    }
}
