//! TCP segments on the wire: what the engine reads from a frame the device has verified, and
//! the Ethernet, IPv4 and TCP headers it writes in front of a payload it does not copy.
use super::seq::Seq;
use smoltcp::wire::checksum;
use smoltcp::wire::{
    EthernetFrame, EthernetProtocol, IpProtocol, Ipv4Address, Ipv4Packet, TcpOption, TcpPacket,
};

/// TCP flag bits.
pub const FIN: u8 = 0x01;
pub const SYN: u8 = 0x02;
pub const RST: u8 = 0x04;
pub const PSH: u8 = 0x08;
pub const ACK: u8 = 0x10;

/// Bytes of the headers the engine writes: Ethernet, IPv4 without options, TCP with room for
/// the MSS option.
pub const HEADER_MAX_BYTES: usize = 14 + 20 + 24;

/// A segment as received (the frame's checksums already verified by the device).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Incoming<'a> {
    pub source_mac: [u8; 6],
    pub source_ip: [u8; 4],
    pub destination_ip: [u8; 4],
    pub source_port: u16,
    pub destination_port: u16,
    pub seq: Seq,
    pub ack: Seq,
    pub flags: u8,
    pub window: u16,
    /// The MSS option, on a SYN.
    pub mss: Option<u16>,
    pub payload: &'a [u8],
}

impl Incoming<'_> {
    pub fn has(&self, flag: u8) -> bool {
        self.flags & flag != 0
    }

    /// Sequence space it takes: payload, and one each for SYN and FIN.
    pub fn length(&self) -> u32 {
        self.payload.len() as u32 + u32::from(self.has(SYN)) + u32::from(self.has(FIN))
    }
}

/// Reads the TCP segment in an Ethernet frame; `None` for anything else (or a fragment).
pub fn parse(frame: &[u8]) -> Option<Incoming<'_>> {
    let ethernet = EthernetFrame::new_checked(frame).ok()?;
    if ethernet.ethertype() != EthernetProtocol::Ipv4 {
        return None;
    }
    let source_mac = ethernet.src_addr().0;
    let ip = Ipv4Packet::new_checked(ethernet.payload()).ok()?;
    if ip.next_header() != IpProtocol::Tcp || ip.frag_offset() != 0 || ip.more_frags() {
        return None;
    }
    let (source_ip, destination_ip) = (ip.src_addr().octets(), ip.dst_addr().octets());
    let tcp = TcpPacket::new_checked(ip.payload()).ok()?;
    let mut mss = None;
    let mut options = tcp.options();
    while !options.is_empty() {
        let Ok((rest, option)) = TcpOption::parse(options) else {
            break;
        };
        match option {
            TcpOption::EndOfList => break,
            TcpOption::MaxSegmentSize(value) => mss = Some(value),
            _ => {}
        }
        options = rest;
    }
    let flags = (u8::from(tcp.fin()) * FIN)
        | (u8::from(tcp.syn()) * SYN)
        | (u8::from(tcp.rst()) * RST)
        | (u8::from(tcp.psh()) * PSH)
        | (u8::from(tcp.ack()) * ACK);
    // The payload's bounds, within the packet the IPv4 length gives.
    let offset = usize::from(tcp.header_len());
    let payload = ip.payload().get(offset..)?;
    Some(Incoming {
        source_mac,
        source_ip,
        destination_ip,
        source_port: tcp.src_port(),
        destination_port: tcp.dst_port(),
        seq: Seq(tcp.seq_number().0 as u32),
        ack: Seq(tcp.ack_number().0 as u32),
        flags,
        window: tcp.window_len(),
        mss,
        payload,
    })
}

/// The addresses and ports of one connection, from this host's side.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Endpoints {
    pub own_mac: [u8; 6],
    pub peer_mac: [u8; 6],
    pub own_ip: [u8; 4],
    pub peer_ip: [u8; 4],
    pub own_port: u16,
    pub peer_port: u16,
}

/// What one outgoing segment's header says.
#[derive(Clone, Copy, Debug)]
pub struct Header {
    pub seq: Seq,
    pub ack: Seq,
    pub flags: u8,
    pub window: u16,
    /// The MSS option (on a SYN-ACK).
    pub mss: Option<u16>,
    pub ip_id: u16,
}

/// Writes the headers for a payload of `payload_length` bytes whose one's-complement sum is
/// `payload_sum` into `out`; the bytes written. The TCP checksum is the header's sum (and the
/// pseudo header's) combined with the payload's, so the payload is never read here.
pub fn write_header(
    out: &mut [u8; HEADER_MAX_BYTES],
    endpoints: &Endpoints,
    header: &Header,
    payload_length: usize,
    payload_sum: u16,
) -> usize {
    let tcp_header = if header.mss.is_some() { 24 } else { 20 };
    let tcp_length = tcp_header + payload_length;
    let ip_length = 20 + tcp_length;
    out[0..6].copy_from_slice(&endpoints.peer_mac);
    out[6..12].copy_from_slice(&endpoints.own_mac);
    out[12..14].copy_from_slice(&[0x08, 0x00]);
    let ip = &mut out[14..34];
    ip[0] = 0x45;
    ip[1] = 0;
    ip[2..4].copy_from_slice(&(ip_length as u16).to_be_bytes());
    ip[4..6].copy_from_slice(&header.ip_id.to_be_bytes());
    // Don't fragment.
    ip[6..8].copy_from_slice(&[0x40, 0x00]);
    ip[8] = 64;
    ip[9] = 6;
    ip[10..12].copy_from_slice(&[0, 0]);
    ip[12..16].copy_from_slice(&endpoints.own_ip);
    ip[16..20].copy_from_slice(&endpoints.peer_ip);
    let ip_sum = !checksum::data(ip);
    ip[10..12].copy_from_slice(&ip_sum.to_be_bytes());
    let tcp = &mut out[34..34 + tcp_header];
    tcp[0..2].copy_from_slice(&endpoints.own_port.to_be_bytes());
    tcp[2..4].copy_from_slice(&endpoints.peer_port.to_be_bytes());
    tcp[4..8].copy_from_slice(&header.seq.0.to_be_bytes());
    tcp[8..12].copy_from_slice(&header.ack.0.to_be_bytes());
    tcp[12] = ((tcp_header / 4) as u8) << 4;
    tcp[13] = header.flags;
    tcp[14..16].copy_from_slice(&header.window.to_be_bytes());
    tcp[16..20].copy_from_slice(&[0, 0, 0, 0]);
    if let Some(mss) = header.mss {
        tcp[20..22].copy_from_slice(&[2, 4]);
        tcp[22..24].copy_from_slice(&mss.to_be_bytes());
    }
    let pseudo = checksum::pseudo_header_v4(
        &Ipv4Address::from_octets(endpoints.own_ip),
        &Ipv4Address::from_octets(endpoints.peer_ip),
        IpProtocol::Tcp,
        tcp_length as u32,
    );
    let tcp_sum = !checksum::combine(&[pseudo, checksum::data(tcp), payload_sum]);
    tcp[16..18].copy_from_slice(&tcp_sum.to_be_bytes());
    34 + tcp_header
}
