//! The parsed filter: boolean structure over primitives whose qualifiers are resolved and whose
//! link-layer offsets are fixed, as libpcap fixes them while it parses (`vlan` moves the
//! offsets of everything written after it).

use alloc::boxed::Box;

use super::lexer::Span;
use crate::ir::{CmpOp, Width};

/// A boolean expression over primitives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Expr {
    /// Both, left first.
    And(Box<Expr>, Box<Expr>),
    /// Either, left first.
    Or(Box<Expr>, Box<Expr>),
    /// Negation.
    Not(Box<Expr>),
    /// A primitive and the text it came from.
    Primitive(Primitive, Span),
}

/// Where the link-layer type field and the payload start, when the primitive was parsed:
/// 12 and 14 on Ethernet, 4 more for each `vlan` written before it; and what says which
/// protocol the payload is (`mpls` and `pppoes` change that for what is written after them).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Link {
    /// Offset of the 16-bit type (or length) field; after `mpls`, of the last label; after
    /// `pppoes`, of the PPP protocol field.
    pub linktype: u16,
    /// Offset of the network-layer header.
    pub payload: u16,
    /// What the payload sits in.
    pub encap: Encap,
}

/// What names the payload's protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encap {
    /// An Ethernet type (or 802.3 length and 802.2 header).
    Ethernet,
    /// An MPLS label stack: the bottom-of-stack bit and the IP version nibble. `mpls` moves
    /// only the network layer: the Ethernet type and 802.2 header stay where they were.
    Mpls {
        /// Offset of the Ethernet type field below the labels.
        ethernet_linktype: u16,
        /// Offset of the Ethernet payload (where an 802.2 header would be).
        ethernet_payload: u16,
    },
    /// A PPPoE session: the PPP protocol number.
    Pppoes,
    /// The frame inside GENEVE, whose offsets are computed from the packet: the link's offsets
    /// are those of an Ethernet frame at the inner frame's start; `outer` is where the GENEVE
    /// packet's own link layer was.
    Geneve {
        /// Offset of the outer type field.
        outer_linktype: u16,
        /// Offset of the outer network header.
        outer_payload: u16,
    },
}

impl Link {
    /// Plain Ethernet.
    pub const ETHERNET: Link = Link {
        linktype: 12,
        payload: 14,
        encap: Encap::Ethernet,
    };
}

/// `llc` and its frame kinds (gen_llc, gen_llc_i/s/u and the subtypes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LlcKind {
    /// Any 802.2 frame.
    Any,
    /// Information frames.
    Information,
    /// Supervisory frames.
    Supervisory,
    /// Unnumbered frames.
    Unnumbered,
    /// A supervisory command (`rr`, `rnr`, `rej`): control byte & 0x0f.
    SupervisoryCommand(u8),
    /// An unnumbered command (`ui`, `ua`, `disc`, ...): control byte & 0xef.
    UnnumberedCommand(u8),
}

/// Which addresses a host, net or port primitive looks at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// The source only.
    Src,
    /// The destination only.
    Dst,
    /// Either (the default).
    SrcOrDst,
    /// Both.
    SrcAndDst,
}

/// Which protocols carry the IPv4 address of a `host` or `net` primitive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HostLayer {
    /// IPv4, ARP and RARP, as an unqualified `host` means in libpcap.
    Any,
    /// `ip host`.
    Ip,
    /// `arp host`.
    Arp,
    /// `rarp host`.
    Rarp,
}

/// Network layers a protocol number is looked up in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProtoLayer {
    /// `ip proto`.
    Ip,
    /// `ip6 proto` (also after an IPv6 fragment header).
    Ip6,
    /// `proto`: either.
    Both,
}

/// Transport protocols that have ports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
    /// SCTP.
    Sctp,
}

/// Protocols whose headers `proto[offset]` can index.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LoadBase {
    /// `ether[]`: from the start of the frame.
    Link,
    /// `ip[]`.
    Ip,
    /// `ip6[]`.
    Ip6,
    /// `arp[]`.
    Arp,
    /// `rarp[]`.
    Rarp,
    /// `tcp[]`, `udp[]`, `icmp[]`, ...: after the IPv4 header, IPv4 only, first fragments only;
    /// the value is the IP protocol number.
    Transport(u8),
    /// `icmp6[]`: after a 40-byte IPv6 header whose next header is ICMPv6.
    Icmp6,
}

/// A value computed from constants, the wire length and packet loads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Arith {
    /// A constant.
    Num(u32),
    /// `len`: the wire length.
    Len,
    /// `base[index:size]`.
    Load {
        /// Which header the index is relative to.
        base: LoadBase,
        /// Offsets when it was parsed.
        link: Link,
        /// Offset within that header.
        index: Box<Arith>,
        /// How many bytes.
        size: Width,
        /// Where it was written.
        span: Span,
    },
    /// `left op right`.
    Binary(ArithOp, Box<Arith>, Box<Arith>, Span),
    /// `-value`.
    Neg(Box<Arith>, Span),
}

/// Arithmetic operators of the filter language (32-bit unsigned, like BPF).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArithOp {
    Add,
    Sub,
    Mul,
    Div,
    Mod,
    And,
    Or,
    Xor,
    Shl,
    Shr,
}

/// One primitive, with everything lowering needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Primitive {
    /// `ether host|src|dst MAC`.
    EtherHost {
        /// Which address.
        dir: Direction,
        /// The address.
        mac: [u8; 6],
    },
    /// `ether broadcast` (also plain `broadcast`).
    EtherBroadcast,
    /// `ether multicast` (also plain `multicast`).
    EtherMulticast,
    /// `ether proto N`.
    EtherProto {
        /// Offsets.
        link: Link,
        /// Ethernet type, or an 802.2 SAP when at most 1500.
        value: u16,
    },
    /// IPv4 `host`/`net` (a host is a net with an all-ones mask).
    Host4 {
        /// Offsets.
        link: Link,
        /// Which protocols.
        layer: HostLayer,
        /// Which addresses.
        dir: Direction,
        /// Address, host order.
        addr: u32,
        /// Network mask, host order.
        mask: u32,
    },
    /// IPv6 `host`/`net`.
    Host6 {
        /// Offsets.
        link: Link,
        /// Which addresses.
        dir: Direction,
        /// Address.
        addr: [u8; 16],
        /// Network mask.
        mask: [u8; 16],
    },
    /// `ip proto N`, `ip6 proto N`, `proto N`, and `tcp`, `udp`, ... alone.
    Proto {
        /// Offsets.
        link: Link,
        /// Which network layers.
        layer: ProtoLayer,
        /// IP protocol number.
        value: u8,
    },
    /// `ip`, `ip6`, `arp`, `rarp`, `decnet`...: an Ethernet type check.
    EtherType {
        /// Offsets.
        link: Link,
        /// The type.
        value: u16,
    },
    /// `port`, `portrange`, with optional `tcp`/`udp`/`sctp` and direction.
    Port {
        /// Offsets.
        link: Link,
        /// `None`: any of TCP, UDP and SCTP.
        transport: Option<Transport>,
        /// Which ports.
        dir: Direction,
        /// Lowest port.
        low: u16,
        /// Highest port (equal to `low` for `port`).
        high: u16,
    },
    /// `[ip|ip6] protochain N`: the protocol found by walking the header chain (IPv6 extension
    /// headers and AH), as gen_protochain walks it.
    Protochain {
        /// Offsets.
        link: Link,
        /// Which network layers (IPv4 first when both).
        layer: ProtoLayer,
        /// The protocol looked for.
        value: u32,
    },
    /// `mpls [LABEL]`: an MPLS label (the next one down the stack after an earlier `mpls`).
    Mpls {
        /// Offsets before this label.
        link: Link,
        /// The 20-bit label, if given.
        label: Option<u32>,
    },
    /// `pppoed`: PPPoE discovery.
    Pppoed {
        /// Offsets.
        link: Link,
    },
    /// `pppoes [ID]`: a PPPoE session frame.
    Pppoes {
        /// Offsets before the PPPoE header.
        link: Link,
        /// The session id, if given.
        session: Option<u16>,
    },
    /// `geneve [VNI]`: UDP to port 6081 with a GENEVE version 0 header.
    Geneve {
        /// Offsets.
        link: Link,
        /// The 24-bit virtual network identifier, if given.
        vni: Option<u32>,
    },
    /// `decnet [src|dst] host A.N`: the address in each of the four DECnet routing headers.
    DecnetHost {
        /// Offsets.
        link: Link,
        /// Which addresses.
        dir: Direction,
        /// `area << 10 | node`.
        addr: u16,
    },
    /// `llc [TYPE]`.
    Llc {
        /// Offsets.
        link: Link,
        /// Which frames.
        kind: LlcKind,
    },
    /// `clnp`, `esis`, `isis` and the IS-IS PDU classes (`l1`, `lsp`, ...): the ISO SAP, the
    /// network-layer protocol id, and for IS-IS PDUs one of the PDU types.
    Iso {
        /// Offsets.
        link: Link,
        /// The NLPID after the 802.2 header.
        nlpid: u8,
        /// IS-IS PDU types accepted (empty: any).
        pdus: &'static [u8],
    },
    /// `ip multicast`: IPv4 destination in 224.0.0.0/3 and up (libpcap compares `>= 224`).
    IpMulticast {
        /// Offsets.
        link: Link,
    },
    /// `ip6 multicast`: destination starts with 0xff.
    Ip6Multicast {
        /// Offsets.
        link: Link,
    },
    /// `ip broadcast` with the netmask of a saved capture (unknown, so 0): destination
    /// 0.0.0.0 or 255.255.255.255.
    IpBroadcast {
        /// Offsets.
        link: Link,
    },
    /// `vlan [ID]`: a VLAN tag (TPID 0x8100, 0x88a8 or 0x9100) at the current offsets.
    Vlan {
        /// Offsets before this tag.
        link: Link,
        /// The 12-bit VLAN id, if given.
        vid: Option<u16>,
    },
    /// `left op right`.
    Relation {
        /// Left side.
        left: Arith,
        /// Comparison.
        op: CmpOp,
        /// Right side.
        right: Arith,
    },
}
