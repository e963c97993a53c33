//! Numbers of the protocols the filter language names: Ethernet types, IP protocol numbers and
//! the names `ether proto \NAME` and `ip proto \NAME` accept.
//!
//! libpcap looks `\NAME` up in the system's protocol database; dpf runs without one, so it
//! carries the standard assignments (IANA, the same as Debian's /etc/protocols) itself.

/// IPv4.
pub const ETHERTYPE_IP: u16 = 0x0800;
/// ARP.
pub const ETHERTYPE_ARP: u16 = 0x0806;
/// Reverse ARP.
pub const ETHERTYPE_REVARP: u16 = 0x8035;
/// IPv6.
pub const ETHERTYPE_IPV6: u16 = 0x86dd;
/// DECnet Phase IV.
pub const ETHERTYPE_DN: u16 = 0x6003;
/// DEC LAT.
pub const ETHERTYPE_LAT: u16 = 0x6004;
/// DEC SCA.
pub const ETHERTYPE_SCA: u16 = 0x6007;
/// DEC MOP remote console.
pub const ETHERTYPE_MOPRC: u16 = 0x6002;
/// DEC MOP dump/load.
pub const ETHERTYPE_MOPDL: u16 = 0x6001;
/// AppleTalk (EtherTalk).
pub const ETHERTYPE_ATALK: u16 = 0x809b;
/// AppleTalk ARP.
pub const ETHERTYPE_AARP: u16 = 0x80f3;
/// IPX over Ethernet II.
pub const ETHERTYPE_IPX: u16 = 0x8137;
/// MPLS unicast.
pub const ETHERTYPE_MPLS: u16 = 0x8847;
/// PPPoE discovery.
pub const ETHERTYPE_PPPOED: u16 = 0x8863;
/// PPPoE session.
pub const ETHERTYPE_PPPOES: u16 = 0x8864;
/// 802.2 SAP of the spanning tree protocol.
pub const LLCSAP_8021D: u16 = 0x42;
/// 802.2 SAP of ISO network layers.
pub const LLCSAP_ISONS: u16 = 0xfe;
/// 802.2 SAP of NetBEUI.
pub const LLCSAP_NETBEUI: u16 = 0xf0;
/// 802.2 SAP of IPX.
pub const LLCSAP_IPX: u16 = 0xe0;
/// ISO network-layer protocol ids after the ISO SAP.
pub const ISO8473_CLNP: u8 = 0x81;
/// ES-IS.
pub const ISO9542_ESIS: u8 = 0x82;
/// IS-IS.
pub const ISO10589_ISIS: u8 = 0x83;
/// UDP port of GENEVE.
pub const GENEVE_PORT: u16 = 6081;
/// VLAN tag protocol identifiers libpcap 1.10 recognises: 802.1Q, 802.1ad, and the pre-standard
/// QinQ value; the same ones claims and the transmit check look through ([`crate::vlan`]).
pub const VLAN_TPIDS: [u16; 3] = crate::vlan::TAG_PROTOCOL_IDENTIFIERS;
/// Largest value of the Ethernet type/length field that is a length (an 802.3 frame).
pub const ETHERMTU: u16 = 1500;

/// ICMP.
pub const IPPROTO_ICMP: u8 = 1;
/// IGMP.
pub const IPPROTO_IGMP: u8 = 2;
/// TCP.
pub const IPPROTO_TCP: u8 = 6;
/// IGRP.
pub const IPPROTO_IGRP: u8 = 9;
/// UDP.
pub const IPPROTO_UDP: u8 = 17;
/// IPv6 fragment header.
pub const IPPROTO_FRAGMENT: u8 = 44;
/// ESP.
pub const IPPROTO_ESP: u8 = 50;
/// AH.
pub const IPPROTO_AH: u8 = 51;
/// ICMPv6.
pub const IPPROTO_ICMPV6: u8 = 58;
/// PIM.
pub const IPPROTO_PIM: u8 = 103;
/// VRRP (and CARP, which shares the number).
pub const IPPROTO_VRRP: u8 = 112;
/// SCTP.
pub const IPPROTO_SCTP: u8 = 132;

/// `ip proto \NAME`: names of /etc/protocols (name and alias columns).
pub fn ip_protocol(name: &str) -> Option<u8> {
    const NAMES: &[(&str, u8)] = &[
        ("ip", 0),
        ("hopopt", 0),
        ("icmp", 1),
        ("igmp", 2),
        ("ggp", 3),
        ("ipencap", 4),
        ("st", 5),
        ("tcp", 6),
        ("egp", 8),
        ("igp", 9),
        ("pup", 12),
        ("udp", 17),
        ("hmp", 20),
        ("xns-idp", 22),
        ("rdp", 27),
        ("iso-tp4", 29),
        ("dccp", 33),
        ("xtp", 36),
        ("ddp", 37),
        ("idpr-cmtp", 38),
        ("ipv6", 41),
        ("ipv6-route", 43),
        ("ipv6-frag", 44),
        ("idrp", 45),
        ("rsvp", 46),
        ("gre", 47),
        ("esp", 50),
        ("ah", 51),
        ("skip", 57),
        ("ipv6-icmp", 58),
        ("ipv6-nonxt", 59),
        ("ipv6-opts", 60),
        ("rspf", 73),
        ("vmtp", 81),
        ("eigrp", 88),
        ("ospf", 89),
        ("ax.25", 93),
        ("ipip", 94),
        ("etherip", 97),
        ("encap", 98),
        ("pim", 103),
        ("ipcomp", 108),
        ("vrrp", 112),
        ("l2tp", 115),
        ("isis", 124),
        ("sctp", 132),
        ("fc", 133),
        ("mobility-header", 135),
        ("udplite", 136),
        ("mpls-in-ip", 137),
        ("manet", 138),
        ("hip", 139),
        ("shim6", 140),
        ("wesp", 141),
        ("rohc", 142),
        ("ethernet", 143),
    ];
    NAMES.iter().find(|(n, _)| *n == name).map(|&(_, v)| v)
}

/// `ether proto \NAME`: the Ethernet types libpcap 1.10 names (pcap_nametoeproto), then the
/// 802.2 SAPs (pcap_nametollc), which `linktype` tests with their encapsulations.
pub fn ether_protocol(name: &str) -> Option<u16> {
    const NAMES: &[(&str, u16)] = &[
        ("ip", ETHERTYPE_IP),
        ("ip6", ETHERTYPE_IPV6),
        ("arp", ETHERTYPE_ARP),
        ("rarp", ETHERTYPE_REVARP),
        ("decnet", ETHERTYPE_DN),
        ("lat", ETHERTYPE_LAT),
        ("sca", ETHERTYPE_SCA),
        ("moprc", ETHERTYPE_MOPRC),
        ("mopdl", ETHERTYPE_MOPDL),
        ("atalk", ETHERTYPE_ATALK),
        ("aarp", ETHERTYPE_AARP),
        ("loopback", 0x9000),
        ("iso", LLCSAP_ISONS),
        ("stp", LLCSAP_8021D),
        ("ipx", LLCSAP_IPX),
        ("netbeui", LLCSAP_NETBEUI),
    ];
    NAMES.iter().find(|(n, _)| *n == name).map(|&(_, v)| v)
}
