//! The stock ASH handlers every system wants, written with ash's builder: ARP responder, ICMP
//! echo, UDP echo, remote increment and a message-vectoring receiver (and its copy-then-checksum
//! twin, for the bench). An app builds one here, encodes it (`ash::wire`) and binds it with
//! [`crate::net::ash_bind`].
//!
//! Each checks the headers it relies on itself (so it is safe behind any filter) and delivers
//! to the ring whatever it does not answer. This module builds on the host too: its tests
//! (`libnet/tests/handlers.rs`) run every handler on frames etherparse builds and compare the
//! answers byte for byte.
#![forbid(unsafe_code)]

use ash::builder::{BuildError, Builder, Label, R0, R1, R2, R3, R4, R5, R6, R7, R8};
use ash::ir::{AluOp, Call, Cond, LoopCount, Mem, Rights, Swap, UnverifiedHandler, Verdict, Width};

/// Ethernet header bytes (untagged).
const ETHERNET_BYTES: u16 = 14;
const IPV4_PROTOCOL_ICMP: u64 = 1;
const IPV4_PROTOCOL_UDP: u64 = 17;

fn mac_high(mac: [u8; 6]) -> u64 {
    u64::from(u32::from_be_bytes([mac[0], mac[1], mac[2], mac[3]]))
}

fn mac_low(mac: [u8; 6]) -> u64 {
    u64::from(u16::from_be_bytes([mac[4], mac[5]]))
}

/// ARP responder: answers requests for `ipv4` with `mac`, consumes them; anything else is
/// delivered.
pub fn arp_responder(mac: [u8; 6], ipv4: [u8; 4]) -> Result<UnverifiedHandler, BuildError> {
    let mut b = Builder::new();
    let not_ours = b.label();
    let ip = u64::from(u32::from_be_bytes(ipv4));
    b.mov(R6, R0)
        .if_len_less(42, not_ours)
        .expect(R5, Width::B2, 12, 0x0806, not_ours) // ARP
        .expect(R5, Width::B2, 14, 1, not_ours) // Ethernet hardware
        .expect(R5, Width::B2, 16, 0x0800, not_ours) // IPv4 protocol
        .expect(R5, Width::B2, 18, 0x0604, not_ours) // address lengths 6 and 4
        .expect(R5, Width::B2, 20, 1, not_ours) // request
        .expect(R5, Width::B4, 38, ip, not_ours) // for our address
        .reply_begin(Swap::NONE)
        // Ethernet: to the asker, from us.
        .load(R5, Width::B4, Mem::packet(6))
        .store(R5, Width::B4, Mem::reply(0))
        .load(R5, Width::B2, Mem::packet(10))
        .store(R5, Width::B2, Mem::reply(4))
        .store(mac_high(mac), Width::B4, Mem::reply(6))
        .store(mac_low(mac), Width::B2, Mem::reply(10))
        // ARP reply: we are the sender, the asker the target.
        .store(2u64, Width::B2, Mem::reply(20))
        .store(mac_high(mac), Width::B4, Mem::reply(22))
        .store(mac_low(mac), Width::B2, Mem::reply(26))
        .store(ip, Width::B4, Mem::reply(28))
        .load(R5, Width::B4, Mem::packet(22))
        .store(R5, Width::B4, Mem::reply(32))
        .load(R5, Width::B2, Mem::packet(26))
        .store(R5, Width::B2, Mem::reply(36))
        .load(R5, Width::B4, Mem::packet(28))
        .store(R5, Width::B4, Mem::reply(38))
        .mov(R1, R6)
        .call(Call::Send)
        .exit(Verdict::Consume)
        .bind(not_ours)
        .exit(Verdict::Deliver);
    b.finish()
}

/// The common prologue of the IPv4 handlers: keeps the packet length in `r6`, leaves the
/// transport header's offset in `r4`, and goes to `not_ours` unless the frame is an untagged,
/// unfragmented IPv4 packet of `protocol` whose transport header's first `transport_bytes`
/// were captured (and, if `destination` is given, addressed to it).
fn ipv4_prologue(
    b: &mut Builder,
    protocol: u64,
    transport_bytes: u64,
    destination: Option<[u8; 4]>,
    not_ours: Label,
) {
    b.mov(R6, R0)
        .if_len_less(ETHERNET_BYTES + 20, not_ours)
        .expect(R5, Width::B2, 12, 0x0800, not_ours)
        .load(R4, Width::B1, Mem::packet(14))
        .mov(R5, R4)
        .alu(AluOp::Shr, R5, 4u64)
        .branch(Cond::Ne, R5, 4u64, not_ours)
        .alu(AluOp::And, R4, 0x0fu64)
        .branch(Cond::Lt, R4, 5u64, not_ours)
        .alu(AluOp::Mul, R4, 4u64)
        .alu(AluOp::Add, R4, u64::from(ETHERNET_BYTES))
        .expect(R5, Width::B1, 23, protocol, not_ours)
        .load(R5, Width::B2, Mem::packet(20))
        .branch(Cond::AnyBits, R5, 0x3fffu64, not_ours);
    if let Some(address) = destination {
        b.expect(
            R5,
            Width::B4,
            30,
            u64::from(u32::from_be_bytes(address)),
            not_ours,
        );
    }
    b.mov(R5, R4)
        .alu(AluOp::Add, R5, transport_bytes)
        .branch(Cond::Gt, R5, R6, not_ours);
}

/// ICMP echo responder for `ipv4`: answers echo requests (type 8) with echo replies, the ICMP
/// checksum and the IPv4 header checksum (the TTL is reset to 64) updated incrementally.
pub fn icmp_echo(ipv4: [u8; 4]) -> Result<UnverifiedHandler, BuildError> {
    let mut b = Builder::new();
    let not_ours = b.label();
    ipv4_prologue(&mut b, IPV4_PROTOCOL_ICMP, 8, Some(ipv4), not_ours);
    b.load(R5, Width::B2, Mem::packet_at(R4, 0)) // type and code
        .branch(Cond::Ne, R5, 0x0800u64, not_ours)
        .reply_begin(Swap::ETHERNET.union(Swap::IPV4))
        .store(0u64, Width::B2, Mem::reply_at(R4, 0))
        .mov(R1, R4)
        .alu(AluOp::Add, R1, 2u64)
        .mov(R2, 0x0800u64)
        .mov(R3, 0u64)
        .call(Call::ChecksumUpdate)
        // TTL 64: the word holding TTL and protocol changes.
        .load(R2, Width::B2, Mem::packet(22))
        .mov(R3, (64 << 8) | IPV4_PROTOCOL_ICMP)
        .store(R3, Width::B2, Mem::reply(22))
        .mov(R1, 24u64)
        .call(Call::ChecksumUpdate)
        .mov(R1, R6)
        .call(Call::Send)
        .exit(Verdict::Consume)
        .bind(not_ours)
        .exit(Verdict::Deliver);
    b.finish()
}

/// UDP echo: every IPv4 UDP datagram goes back to its sender, addresses and ports swapped (the
/// checksums hold as they are: both sums are commutative).
pub fn udp_echo() -> Result<UnverifiedHandler, BuildError> {
    let mut b = Builder::new();
    let not_ours = b.label();
    ipv4_prologue(&mut b, IPV4_PROTOCOL_UDP, 8, None, not_ours);
    b.reply_begin(Swap::ALL)
        .mov(R1, R6)
        .call(Call::Send)
        .exit(Verdict::Consume)
        .bind(not_ours)
        .exit(Verdict::Deliver);
    b.finish()
}

/// Bytes of the remote-increment counter region (one little-endian word at offset 0).
pub const COUNTER_REGION_BYTES: u32 = 8;

/// Remote increment: a UDP datagram whose payload starts with a big-endian `u64` adds it to
/// the counter word of region 0 and is answered with the new value in its place (the UDP
/// checksum updated incrementally, one 16-bit word at a time, in a loop). A payload shorter
/// than 8 bytes is dropped.
pub fn remote_increment() -> Result<UnverifiedHandler, BuildError> {
    let mut b = Builder::new();
    let not_ours = b.label();
    let short = b.label();
    let no_checksum = b.label();
    let counter = b.region(COUNTER_REGION_BYTES, Rights::READ_WRITE);
    ipv4_prologue(&mut b, IPV4_PROTOCOL_UDP, 8, None, not_ours);
    b.mov(R5, R4)
        .alu(AluOp::Add, R5, 16u64)
        .branch(Cond::Gt, R5, R6, short)
        .load(R2, Width::B8, Mem::packet_at(R4, 8))
        .mov(R1, 0u64)
        .call(Call::AtomicAdd { region: counter })
        .mov(R7, R0)
        .reply_begin(Swap::ALL)
        .store(R7, Width::B8, Mem::reply_at(R4, 8))
        .load(R5, Width::B2, Mem::packet_at(R4, 6))
        .branch(Cond::Eq, R5, 0u64, no_checksum)
        // For each of the four words: r8 = byte offset in the payload, r5 = shift of the new
        // word within the value.
        .mov(R8, 8u64)
        .mov(R5, 48u64)
        .mov(R1, R4)
        .alu(AluOp::Add, R1, 6u64)
        .repeat(LoopCount::Times(4), |b| {
            b.mov(R3, R4)
                .alu(AluOp::Add, R3, R8)
                .load(R2, Width::B2, Mem::packet_at(R3, 0))
                .mov(R3, R7)
                .alu(AluOp::Shr, R3, R5)
                .alu(AluOp::And, R3, 0xffffu64)
                .call(Call::ChecksumUpdate)
                .alu(AluOp::Add, R8, 2u64)
                .alu(AluOp::Sub, R5, 16u64);
        });
    // A computed UDP checksum of zero is sent as 0xffff (RFC 768).
    let nonzero = b.label();
    b.load(R5, Width::B2, Mem::reply_at(R4, 6))
        .branch(Cond::Ne, R5, 0u64, nonzero)
        .store(0xffffu64, Width::B2, Mem::reply_at(R4, 6))
        .bind(nonzero)
        .bind(no_checksum)
        .mov(R1, R6)
        .call(Call::Send)
        .exit(Verdict::Consume)
        .bind(short)
        .exit(Verdict::Drop)
        .bind(not_ours)
        .exit(Verdict::Deliver);
    b.finish()
}

/// Buffers the message-vectoring receiver fills.
pub const VECTOR_SLOTS: u64 = 8;
/// Bytes of each buffer.
pub const VECTOR_SLOT_BYTES: u64 = 2048;
/// A slot's status word once the handler has filled it: this flag or'd with the length.
pub const VECTOR_FULL: u64 = 1 << 32;

/// Message-vectoring receiver. Each UDP payload is a big-endian `u32` slot number followed by
/// the message; the message is copied into slot `n` of region 0 (`VECTOR_SLOTS` buffers of
/// `VECTOR_SLOT_BYTES`) with the UDP checksum verified in the same pass, then the slot's
/// little-endian status word in region 1 becomes `VECTOR_FULL | length` and the owner is
/// woken. A bad slot, an oversized message or a bad checksum is dropped (a bad checksum after
/// the copy, so the status word is not set).
pub fn message_vectoring() -> Result<UnverifiedHandler, BuildError> {
    vectoring(Pass::Integrated)
}

/// [`message_vectoring`] done the way it is without integration: the copy first, then a
/// second pass over the same bytes for the checksum. Same answers, same regions; it exists to
/// measure what the integrated pass saves (`cargo xtask bench ash`).
pub fn message_vectoring_two_pass() -> Result<UnverifiedHandler, BuildError> {
    vectoring(Pass::CopyThenChecksum)
}

/// How the message-vectoring receiver sums what it copies.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Pass {
    /// One pass: copy and checksum together.
    Integrated,
    /// Copy, then checksum the packet's bytes again.
    CopyThenChecksum,
}

fn vectoring(pass: Pass) -> Result<UnverifiedHandler, BuildError> {
    let mut b = Builder::new();
    let not_ours = b.label();
    let drop = b.label();
    let verified = b.label();
    let buffers = b.region((VECTOR_SLOTS * VECTOR_SLOT_BYTES) as u32, Rights::WRITE);
    let status = b.region((VECTOR_SLOTS * 8) as u32, Rights::READ_WRITE);
    ipv4_prologue(&mut b, IPV4_PROTOCOL_UDP, 12, None, not_ours);
    // r7 = UDP length; it must cover our 12 bytes and lie within the capture.
    b.load(R7, Width::B2, Mem::packet_at(R4, 4))
        .branch(Cond::Lt, R7, 12u64, drop)
        .mov(R5, R4)
        .alu(AluOp::Add, R5, R7)
        .branch(Cond::Gt, R5, R6, drop)
        // r8 = slot
        .load(R8, Width::B4, Mem::packet_at(R4, 8))
        .branch(Cond::Ge, R8, VECTOR_SLOTS, drop)
        .mov(R3, R7)
        .alu(AluOp::Sub, R3, 12u64)
        .branch(Cond::Gt, R3, VECTOR_SLOT_BYTES, drop)
        .mov(R1, R8)
        .alu(AluOp::Mul, R1, VECTOR_SLOT_BYTES)
        .mov(R2, R4)
        .alu(AluOp::Add, R2, 12u64);
    match pass {
        Pass::Integrated => b.call(Call::CopyChecksum { region: buffers }),
        Pass::CopyThenChecksum => b
            .call(Call::Copy { region: buffers })
            .mov(R1, R2)
            .mov(R2, R3)
            .call(Call::Checksum),
    };
    b.mov(R5, R0)
        // No checksum sent: nothing to verify.
        .load(R0, Width::B2, Mem::packet_at(R4, 6))
        .branch(Cond::Eq, R0, 0u64, verified)
        // UDP header and slot number.
        .mov(R1, R4)
        .mov(R2, 12u64)
        .call(Call::Checksum)
        .alu(AluOp::OnesAdd, R5, R0)
        // Pseudo header: addresses, protocol, UDP length.
        .mov(R1, 26u64)
        .mov(R2, 8u64)
        .call(Call::Checksum)
        .alu(AluOp::OnesAdd, R5, R0)
        .alu(AluOp::OnesAdd, R5, IPV4_PROTOCOL_UDP)
        .alu(AluOp::OnesAdd, R5, R7)
        .branch(Cond::Ne, R5, 0xffffu64, drop)
        .bind(verified)
        .mov(R5, R7)
        .alu(AluOp::Sub, R5, 12u64)
        .alu(AluOp::Or, R5, VECTOR_FULL)
        .mov(R1, R8)
        .alu(AluOp::Mul, R1, 8u64)
        .store_le(R5, Width::B8, Mem::region_at(status, R1, 0))
        .call(Call::Wake)
        .exit(Verdict::Consume)
        .bind(drop)
        .exit(Verdict::Drop)
        .bind(not_ours)
        .exit(Verdict::Deliver);
    b.finish()
}
