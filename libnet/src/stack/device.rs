//! `smoltcp::phy::Device` over this app's packet ring and `net_transmit`.
//!
//! Receive lends smoltcp the ring slot in place and gives it back to the kernel when smoltcp
//! is done with it. Before a frame reaches smoltcp the device checks what the kernel does not:
//! the IPv4 header and the TCP/UDP checksums (a bad one is dropped and counted, so smoltcp is
//! told checksums arrive verified). Transmit writes into the app's own transmit buffer and
//! hands it to `net_transmit`, which checks the sender is who it says.
//!
//! Neighbours: ARP requests for the shared address are answered (and consumed) by the
//! system's ARP handler, so this stack never sees them. A frame the kernel delivered here
//! names its sender's MAC and IPv4 address; the device gives smoltcp that pairing as an ARP
//! reply it synthesises just before the frame (the way smoltcp itself used to learn from IP
//! frames), so a server answers a client's first SYN without asking who it is.
use super::retransmits::{self, Watch};
use crate::net::Ring;
use alloc::vec::Vec;
use exo_abi::net::FRAME_MAX_BYTES;
use smoltcp::phy::{self, Checksum, ChecksumCapabilities, DeviceCapabilities, Medium};
use smoltcp::time::Instant;
use smoltcp::wire::{
    EthernetAddress, EthernetFrame, EthernetProtocol, IpAddress, IpProtocol, Ipv4Address,
    Ipv4Packet, TcpPacket, UdpPacket,
};

/// Slots of the stack's receive ring: twice the largest burst the stack invites (see
/// [`MAX_BURST_FRAMES`]), so a full window from a peer never finds the ring full.
pub const RX_SLOTS: usize = 128;
/// Frames smoltcp may invite a peer to send at once (its advertised window is capped at this
/// many segments).
pub const MAX_BURST_FRAMES: usize = RX_SLOTS / 2;
/// Bytes of an Ethernet frame carrying a full 1500-byte IP packet.
const FRAME_BYTES: usize = 1514;
/// Neighbours remembered; the oldest is forgotten first.
const NEIGHBOURS: usize = 32;
/// How often a known neighbour is told to smoltcp again (its cache keeps an entry 60 s).
const NEIGHBOUR_REFRESH_MS: i64 = 20_000;
/// Bytes of an ARP frame for Ethernet and IPv4.
const ARP_FRAME_BYTES: usize = 42;

/// What the device counted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DeviceCounters {
    /// Frames taken from the ring.
    pub rx_frames: u64,
    /// Frames dropped: a header shorter than it says, or a protocol this stack does not speak.
    pub rx_malformed: u64,
    /// Frames dropped for a bad IPv4 header, TCP or UDP checksum.
    pub rx_bad_checksum: u64,
    /// ARP replies synthesised from delivered frames.
    pub rx_neighbours_learned: u64,
    /// ARP frames from the ring: the kernel copies a stack only the replies to its own
    /// requests.
    pub rx_arp: u64,
    /// Frames sent.
    pub tx_frames: u64,
    /// Frames `net_transmit` refused (counted, dropped; TCP retransmits).
    pub tx_refused: u64,
    /// Frames `net_transmit` could not queue: the NIC's transmit queue stayed full through
    /// every attempt (`net::TRANSMIT_ATTEMPTS`), or the NIC refused the frame.
    pub tx_failed: u64,
    /// TCP segments this stack sent again (its retransmission timer fired, or a fast
    /// retransmit): see [`retransmits`].
    pub tx_retransmits: u64,
    /// TCP segments received that carried sequence space already received (the peer sent
    /// them again: a frame lost on the way here, or this stack's ACK came too late).
    pub rx_peer_retransmits: u64,
    /// Copies of frames for this stack the kernel dropped because the ring's next slot was
    /// still taken (read from the kernel, `net_counter(RingFull, ring)`, when the counters
    /// are).
    pub rx_ring_full: u64,
}

/// The device: the ring (a `static` of libnet's), the transmit buffer, the neighbours seen.
#[derive(Debug)]
pub struct RingDevice {
    ring: &'static Ring<RX_SLOTS>,
    transmit_buffer: Vec<u8>,
    mac: EthernetAddress,
    ipv4: Ipv4Address,
    neighbours: Vec<(Ipv4Address, EthernetAddress, i64)>,
    /// A synthesised ARP reply to hand smoltcp before the frame in the ring's next slot.
    pending_arp: Option<[u8; ARP_FRAME_BYTES]>,
    pub(crate) counters: DeviceCounters,
    sent: Watch,
    received: Watch,
    /// TCP frames for this port go to libnet's own engine (`Stack::divert_tcp`), not smoltcp.
    pub(crate) divert: Option<super::divert::Diverted>,
}

impl RingDevice {
    pub(crate) fn new(ring: &'static Ring<RX_SLOTS>, mac: [u8; 6], ipv4: [u8; 4]) -> RingDevice {
        RingDevice {
            ring,
            transmit_buffer: alloc::vec![0; FRAME_BYTES],
            mac: EthernetAddress(mac),
            ipv4: Ipv4Address::from_octets(ipv4),
            neighbours: Vec::new(),
            pending_arp: None,
            counters: DeviceCounters::default(),
            sent: Watch::default(),
            received: Watch::default(),
            divert: None,
        }
    }

    /// Drops frames at the head of the ring that fail the checks, and returns the index and
    /// length of the first good one (queueing a synthesised ARP reply first if it comes from a
    /// neighbour smoltcp should be told about).
    fn next_good_frame(&mut self, now_ms: i64) -> Option<(usize, usize)> {
        loop {
            let (index, length) = self.ring.peek()?;
            let frame = self.ring.frame(index, length);
            match check(frame, self.ipv4) {
                Verdict::Good(sender) => {
                    if let Some((ip, mac)) = sender {
                        self.learn(ip, mac, now_ms);
                    }
                    let diverted = self
                        .divert
                        .as_mut()
                        .is_some_and(|divert| divert.take(frame));
                    if !diverted {
                        // Recorded once: a frame waiting behind a synthesised ARP reply comes
                        // back here with the sender already known.
                        if self.pending_arp.is_none()
                            && let Some(segment) = retransmits::segment(frame, false)
                            && self.received.record(segment)
                        {
                            self.counters.rx_peer_retransmits += 1;
                        }
                        return Some((index, length));
                    }
                }
                Verdict::Arp => {
                    self.counters.rx_arp += 1;
                    return Some((index, length));
                }
                Verdict::BadChecksum => self.counters.rx_bad_checksum += 1,
                Verdict::Malformed => self.counters.rx_malformed += 1,
            }
            self.counters.rx_frames += 1;
            self.ring.release(index);
        }
    }

    /// The NIC's MAC address.
    pub(crate) fn mac(&self) -> [u8; 6] {
        self.mac.0
    }

    fn learn(&mut self, ip: Ipv4Address, mac: EthernetAddress, now_ms: i64) {
        let known = self.neighbours.iter_mut().find(|entry| entry.0 == ip);
        let tell = match known {
            Some(entry) if entry.1 == mac && now_ms - entry.2 < NEIGHBOUR_REFRESH_MS => false,
            Some(entry) => {
                entry.1 = mac;
                entry.2 = now_ms;
                true
            }
            None => {
                if self.neighbours.len() == NEIGHBOURS {
                    self.neighbours.remove(0);
                }
                self.neighbours.push((ip, mac, now_ms));
                true
            }
        };
        if tell {
            self.pending_arp = Some(arp_reply(ip, mac, self.ipv4, self.mac));
            self.counters.rx_neighbours_learned += 1;
        }
    }
}

/// What the device makes of a frame.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    /// For smoltcp; an IPv4 frame names its sender (when it is a unicast one).
    Good(Option<(Ipv4Address, EthernetAddress)>),
    /// An ARP frame, for smoltcp.
    Arp,
    BadChecksum,
    Malformed,
}

/// Checks a frame the kernel delivered: ARP passes (smoltcp parses it), IPv4 TCP or UDP
/// passes with good checksums; anything else is malformed here.
fn check(frame: &[u8], own: Ipv4Address) -> Verdict {
    let Ok(ethernet) = EthernetFrame::new_checked(frame) else {
        return Verdict::Malformed;
    };
    match ethernet.ethertype() {
        EthernetProtocol::Arp => Verdict::Arp,
        EthernetProtocol::Ipv4 => {
            let Ok(ip) = Ipv4Packet::new_checked(ethernet.payload()) else {
                return Verdict::Malformed;
            };
            if !ip.verify_checksum() {
                return Verdict::BadChecksum;
            }
            if ip.dst_addr() != own {
                return Verdict::Malformed;
            }
            let (source, destination) = (IpAddress::Ipv4(ip.src_addr()), IpAddress::Ipv4(own));
            let first_fragment = ip.frag_offset() == 0 && !ip.more_frags();
            let good = match ip.next_header() {
                IpProtocol::Tcp if first_fragment => match TcpPacket::new_checked(ip.payload()) {
                    Ok(tcp) => tcp.verify_checksum(&source, &destination),
                    Err(_) => return Verdict::Malformed,
                },
                IpProtocol::Udp if first_fragment => match UdpPacket::new_checked(ip.payload()) {
                    Ok(udp) => udp.verify_checksum(&source, &destination),
                    Err(_) => return Verdict::Malformed,
                },
                _ => return Verdict::Malformed,
            };
            if !good {
                return Verdict::BadChecksum;
            }
            let mac = ethernet.src_addr();
            let sender = (mac.is_unicast()
                && !ip.src_addr().is_broadcast()
                && !ip.src_addr().is_multicast())
            .then_some((ip.src_addr(), mac));
            Verdict::Good(sender)
        }
        _ => Verdict::Malformed,
    }
}

/// An ARP reply from `(ip, mac)` to `(own_ip, own_mac)`.
fn arp_reply(
    ip: Ipv4Address,
    mac: EthernetAddress,
    own_ip: Ipv4Address,
    own_mac: EthernetAddress,
) -> [u8; ARP_FRAME_BYTES] {
    let mut frame = [0u8; ARP_FRAME_BYTES];
    frame[0..6].copy_from_slice(own_mac.as_bytes());
    frame[6..12].copy_from_slice(mac.as_bytes());
    frame[12..14].copy_from_slice(&[0x08, 0x06]);
    // Ethernet, IPv4, address lengths 6 and 4, reply.
    frame[14..22].copy_from_slice(&[0, 1, 0x08, 0x00, 6, 4, 0, 2]);
    frame[22..28].copy_from_slice(mac.as_bytes());
    frame[28..32].copy_from_slice(&ip.octets());
    frame[32..38].copy_from_slice(own_mac.as_bytes());
    frame[38..42].copy_from_slice(&own_ip.octets());
    frame
}

/// A frame smoltcp reads: a ring slot lent in place, or a synthesised ARP reply.
#[derive(Debug)]
pub enum RxToken {
    /// Slot `index` of the ring, `length` bytes; released after smoltcp read it.
    Slot {
        ring: &'static Ring<RX_SLOTS>,
        index: usize,
        length: usize,
    },
    /// A synthesised ARP reply.
    Neighbour([u8; ARP_FRAME_BYTES]),
}

impl phy::RxToken for RxToken {
    fn consume<R, F>(self, f: F) -> R
    where
        F: FnOnce(&[u8]) -> R,
    {
        match self {
            RxToken::Slot {
                ring,
                index,
                length,
            } => {
                let result = f(ring.frame(index, length));
                ring.release(index);
                result
            }
            RxToken::Neighbour(frame) => f(&frame),
        }
    }
}

/// Room for one frame in the app's transmit buffer; sent with `net_transmit` when filled.
#[derive(Debug)]
pub struct TxToken<'a> {
    buffer: &'a mut [u8],
    counters: &'a mut DeviceCounters,
    sent: &'a mut Watch,
}

impl phy::TxToken for TxToken<'_> {
    fn consume<R, F>(self, length: usize, f: F) -> R
    where
        F: FnOnce(&mut [u8]) -> R,
    {
        // smoltcp never asks for more than the MTU the capabilities give.
        let length = length.min(self.buffer.len());
        let frame = &mut self.buffer[..length];
        let result = f(frame);
        match crate::net::transmit(&[frame]) {
            Ok(_) => {
                self.counters.tx_frames += 1;
                if let Some(segment) = retransmits::segment(frame, true)
                    && self.sent.record(segment)
                {
                    self.counters.tx_retransmits += 1;
                }
            }
            Err(crate::Error::Denied) => self.counters.tx_refused += 1,
            Err(_) => self.counters.tx_failed += 1,
        }
        result
    }
}

impl phy::Device for RingDevice {
    type RxToken<'a> = RxToken;
    type TxToken<'a> = TxToken<'a>;

    fn receive(&mut self, timestamp: Instant) -> Option<(RxToken, TxToken<'_>)> {
        let rx = match self.pending_arp.take() {
            Some(frame) => RxToken::Neighbour(frame),
            None => {
                let (index, length) = self.next_good_frame(timestamp.total_millis())?;
                match self.pending_arp.take() {
                    // The frame's sender is new: smoltcp hears of it first; the frame stays
                    // in its slot for the next call.
                    Some(frame) => RxToken::Neighbour(frame),
                    None => {
                        self.counters.rx_frames += 1;
                        RxToken::Slot {
                            ring: self.ring,
                            index,
                            length,
                        }
                    }
                }
            }
        };
        Some((
            rx,
            TxToken {
                buffer: &mut self.transmit_buffer,
                counters: &mut self.counters,
                sent: &mut self.sent,
            },
        ))
    }

    fn transmit(&mut self, _timestamp: Instant) -> Option<TxToken<'_>> {
        Some(TxToken {
            buffer: &mut self.transmit_buffer,
            counters: &mut self.counters,
            sent: &mut self.sent,
        })
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut capabilities = DeviceCapabilities::default();
        capabilities.medium = Medium::Ethernet;
        capabilities.max_transmission_unit = FRAME_BYTES;
        capabilities.max_burst_size = Some(MAX_BURST_FRAMES);
        // Receive: the device has verified every checksum before smoltcp sees the frame.
        // Transmit: nothing below computes them (the kernel copies frames as they are).
        let mut checksum = ChecksumCapabilities::default();
        checksum.ipv4 = Checksum::Tx;
        checksum.tcp = Checksum::Tx;
        checksum.udp = Checksum::Tx;
        checksum.icmpv4 = Checksum::Tx;
        capabilities.checksum = checksum;
        capabilities
    }
}

const _: () = assert!(FRAME_BYTES as u64 <= FRAME_MAX_BYTES);

#[cfg(test)]
mod tests {
    use super::*;
    use smoltcp::wire::{ArpOperation, ArpPacket, ArpRepr};

    const CLIENT_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x22];
    const HOST_MAC: [u8; 6] = [0x52, 0x54, 0, 0x12, 0x34, 0x56];
    const CLIENT: [u8; 4] = [10, 0, 2, 2];
    const HOST: [u8; 4] = [10, 0, 2, 15];

    fn frame(transport: u8, destination: [u8; 4]) -> Vec<u8> {
        let builder = etherparse::PacketBuilder::ethernet2(CLIENT_MAC, HOST_MAC).ipv4(
            CLIENT,
            destination,
            64,
        );
        let mut bytes = Vec::new();
        match transport {
            6 => builder
                .tcp(40000, 80, 1234, 4096)
                .syn()
                .write(&mut bytes, b"payload")
                .unwrap(),
            17 => builder.udp(40000, 7).write(&mut bytes, b"payload").unwrap(),
            _ => builder
                .icmpv4_echo_request(1, 1)
                .write(&mut bytes, b"payload")
                .unwrap(),
        }
        bytes
    }

    fn own() -> Ipv4Address {
        Ipv4Address::from_octets(HOST)
    }

    #[test]
    fn good_segments_pass_and_name_their_sender() {
        let sender = Some((
            Ipv4Address::from_octets(CLIENT),
            EthernetAddress(CLIENT_MAC),
        ));
        assert_eq!(check(&frame(6, HOST), own()), Verdict::Good(sender));
        assert_eq!(check(&frame(17, HOST), own()), Verdict::Good(sender));
    }

    #[test]
    fn bad_checksums_are_caught() {
        for transport in [6, 17] {
            let mut bytes = frame(transport, HOST);
            // The last payload byte: only the transport checksum covers it.
            *bytes.last_mut().unwrap() ^= 0x40;
            assert_eq!(check(&bytes, own()), Verdict::BadChecksum);
            let mut bytes = frame(transport, HOST);
            // The IPv4 TTL: only the header checksum covers it.
            bytes[14 + 8] ^= 1;
            assert_eq!(check(&bytes, own()), Verdict::BadChecksum);
        }
    }

    #[test]
    fn what_the_stack_does_not_speak_is_malformed() {
        assert_eq!(check(&frame(1, HOST), own()), Verdict::Malformed);
        assert_eq!(check(&frame(6, [10, 0, 2, 16]), own()), Verdict::Malformed);
        let bytes = frame(6, HOST);
        for cut in [0, 13, 14 + 19, 14 + 20 + 10] {
            assert_eq!(
                check(&bytes[..cut], own()),
                Verdict::Malformed,
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn the_synthesised_arp_reply_is_one_smoltcp_learns_from() {
        let bytes = arp_reply(
            Ipv4Address::from_octets(CLIENT),
            EthernetAddress(CLIENT_MAC),
            own(),
            EthernetAddress(HOST_MAC),
        );
        let ethernet = EthernetFrame::new_checked(&bytes[..]).unwrap();
        assert_eq!(ethernet.dst_addr(), EthernetAddress(HOST_MAC));
        assert_eq!(ethernet.src_addr(), EthernetAddress(CLIENT_MAC));
        let arp = ArpRepr::parse(&ArpPacket::new_checked(ethernet.payload()).unwrap()).unwrap();
        assert_eq!(
            arp,
            ArpRepr::EthernetIpv4 {
                operation: ArpOperation::Reply,
                source_hardware_addr: EthernetAddress(CLIENT_MAC),
                source_protocol_addr: Ipv4Address::from_octets(CLIENT),
                target_hardware_addr: EthernetAddress(HOST_MAC),
                target_protocol_addr: own(),
            }
        );
    }
}
