//! Turns each primitive into the tests libpcap 1.10 generates for it, in the same order, so
//! that verdicts (including on truncated frames) agree with `tcpdump`. The comment on each
//! function names the libpcap generator it follows; `tcpdump -d EXPR` shows the code.

use alloc::format;
use alloc::vec::Vec;

use super::CompileError;
use super::ast::{Direction, Encap, Expr, HostLayer, Link, Primitive, ProtoLayer, Transport};
use super::cond::{Cond, Lit, Path};
use super::geneve;
use super::lexer::Span;
use super::link;
use super::protochain;
use super::protocols::{self as p};
use super::relation;
use crate::ir::{CmpOp, Shift, Width};

/// Lowers a whole expression.
pub fn lower(expr: &Expr) -> Result<Cond, CompileError> {
    Ok(match expr {
        Expr::And(a, b) => lower(a)?.and(lower(b)?),
        Expr::Or(..) => {
            let mut operands = Vec::new();
            flatten_or(expr, &mut operands);
            or_chain(&operands)?
        }
        Expr::Not(a) => lower(a)?.not(),
        Expr::Primitive(prim, span) => primitive(prim, *span)?,
    })
}

/// The operands of a chain of `or`s, left to right, whatever the parentheses.
fn flatten_or<'a>(expr: &'a Expr, out: &mut Vec<&'a Expr>) {
    match expr {
        Expr::Or(a, b) => {
            flatten_or(a, out);
            flatten_or(b, out);
        }
        other => out.push(other),
    }
}

/// What libpcap's optimiser merges when adjacent in an `or` chain: the primitives whose
/// alternatives all compare one already-loaded field (a port, an IPv4 address) with a constant.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mergeable {
    /// `[tcp|udp|sctp] [src|dst] port N` (not `portrange`, not `src and dst`).
    Port(Link, Option<Transport>, Direction, u16),
    /// `[ip|arp|rarp] [src|dst] host A` (not `net`, not `src and dst`).
    Host(Link, HostLayer, Direction, u32),
}

fn mergeable(expr: &Expr) -> Option<(Mergeable, Span)> {
    let Expr::Primitive(prim, span) = expr else {
        return None;
    };
    let single = |dir| !matches!(dir, Direction::SrcAndDst);
    // Inside GENEVE every primitive is moved on its own (see `primitive`).
    if relinked(prim, Link::ETHERNET)
        .is_some_and(|(link, _)| matches!(link.encap, Encap::Geneve { .. }))
    {
        return None;
    }
    match *prim {
        Primitive::Port {
            link,
            transport,
            dir,
            low,
            high,
        } if low == high && single(dir) => {
            Some((Mergeable::Port(link, transport, dir, low), *span))
        }
        Primitive::Host4 {
            link,
            layer,
            dir,
            addr,
            mask: u32::MAX,
        } if single(dir) && !matches!(link.encap, Encap::Mpls { .. }) => {
            Some((Mergeable::Host(link, layer, dir, addr), *span))
        }
        _ => None,
    }
}

/// Whether `a` and `b` can share their loads: same kind on the same link.
fn same_group(a: Mergeable, b: Mergeable) -> bool {
    match (a, b) {
        (Mergeable::Port(la, ..), Mergeable::Port(lb, ..))
        | (Mergeable::Host(la, ..), Mergeable::Host(lb, ..)) => la == lb,
        _ => false,
    }
}

/// An `or` chain, in written order, except that runs of adjacent port primitives (and of
/// adjacent IPv4 host primitives) are lowered together the way libpcap 1.10's optimiser leaves
/// them (or_pullup): the first loaded field is compared with every value of the run before
/// the other field is loaded. `tcpdump -d 'port 80 or port 53'` loads the source port,
/// compares it with 80 and 53, and only then loads the destination port, so a frame cut inside
/// the destination port whose source port is 53 matches.
fn or_chain(operands: &[&Expr]) -> Result<Cond, CompileError> {
    let mut cond = Cond::False;
    let mut i = 0;
    while i < operands.len() {
        let Some((first, span)) = mergeable(operands[i]) else {
            cond = cond.or(lower(operands[i])?);
            i += 1;
            continue;
        };
        let mut run = alloc::vec![first];
        let mut end = span.end;
        while let Some((next, next_span)) = operands.get(i + run.len()).and_then(|e| mergeable(e)) {
            if !same_group(first, next) {
                break;
            }
            run.push(next);
            end = next_span.end;
        }
        let span = Span {
            start: span.start,
            end,
        };
        cond = cond.or(if run.len() == 1 {
            lower(operands[i])?
        } else {
            merged(&run, span)?
        });
        i += run.len();
    }
    Ok(cond)
}

/// The tests of a run of directed comparisons on one (source, destination) pair: the field
/// the first operand loads first, against every operand that tests it, then the other field.
fn pulled(ops: &[(Direction, Cond, Cond)]) -> Cond {
    let src_first = !matches!(ops.first(), Some((Direction::Dst, ..)));
    let tests_src = |dir: &Direction| !matches!(dir, Direction::Dst);
    let tests_dst = |dir: &Direction| !matches!(dir, Direction::Src);
    let mut cond = Cond::False;
    for pass in [src_first, !src_first] {
        for (dir, src, dst) in ops {
            if pass && tests_src(dir) {
                cond = cond.or(src.clone());
            } else if !pass && tests_dst(dir) {
                cond = cond.or(dst.clone());
            }
        }
    }
    cond
}

/// A merged run of ports or of IPv4 hosts (see [`or_chain`]).
fn merged(run: &[Mergeable], span: Span) -> Result<Cond, CompileError> {
    match run[0] {
        Mergeable::Port(link, ..) => {
            let ports = run.iter().filter_map(|m| match *m {
                Mergeable::Port(_, transport, dir, port) => Some((transport, dir, port)),
                Mergeable::Host(..) => None,
            });
            let ports: Vec<_> = ports.collect();
            merged_ports(link, &ports, span)
        }
        Mergeable::Host(link, ..) => {
            let hosts: Vec<_> = run
                .iter()
                .filter_map(|m| match *m {
                    Mergeable::Host(_, layer, dir, addr) => Some((layer, dir, addr)),
                    Mergeable::Port(..) => None,
                })
                .collect();
            let layer =
                |ethertype: u16, (src, dst): (u16, u16), includes: fn(HostLayer) -> bool| {
                    let ops: Vec<_> = hosts
                        .iter()
                        .filter(|(l, ..)| includes(*l))
                        .map(|&(_, dir, addr)| {
                            let word = |offset: u16| eq(link.payload + offset, Width::B4, addr);
                            (dir, word(src), word(dst))
                        })
                        .collect();
                    if ops.is_empty() {
                        return Ok(Cond::False);
                    }
                    Ok(linktype(link, ethertype, span)?.and(pulled(&ops)))
                };
            let ip = layer(p::ETHERTYPE_IP, (12, 16), |l| {
                matches!(l, HostLayer::Ip | HostLayer::Any)
            })?;
            let arp = layer(p::ETHERTYPE_ARP, (14, 24), |l| {
                matches!(l, HostLayer::Arp | HostLayer::Any)
            })?;
            let rarp = layer(p::ETHERTYPE_REVARP, (14, 24), |l| {
                matches!(l, HostLayer::Rarp | HostLayer::Any)
            })?;
            Ok(ip.or(arp).or(rarp))
        }
    }
}

/// A merged run of ports: for each transport protocol some operand accepts, the protocol test
/// and then the operands that accept it, pulled as in [`pulled`]; IPv6 first, as gen_port.
fn merged_ports(
    link: Link,
    ports: &[(Option<Transport>, Direction, u16)],
    span: Span,
) -> Result<Cond, CompileError> {
    let accepts = |transport: Option<Transport>, proto: u8| match transport {
        None => true,
        Some(Transport::Tcp) => proto == p::IPPROTO_TCP,
        Some(Transport::Udp) => proto == p::IPPROTO_UDP,
        Some(Transport::Sctp) => proto == p::IPPROTO_SCTP,
    };
    let v4_path: Path = alloc::vec![ipv4_header_length(link)];
    let mut v6 = Cond::False;
    let mut v4 = Cond::False;
    for proto in [p::IPPROTO_SCTP, p::IPPROTO_TCP, p::IPPROTO_UDP] {
        let selected: Vec<_> = ports.iter().filter(|(t, ..)| accepts(*t, proto)).collect();
        if selected.is_empty() {
            continue;
        }
        let ops = |path: &Path, src: u16| -> Vec<(Direction, Cond, Cond)> {
            selected
                .iter()
                .map(|&&(_, dir, port)| {
                    (
                        dir,
                        port_atom(path, src, port, port),
                        port_atom(path, src + 2, port, port),
                    )
                })
                .collect()
        };
        let proto_value = u32::from(proto);
        v6 = v6.or(eq(link.payload + 6, Width::B1, proto_value)
            .and(pulled(&ops(&Path::new(), link.payload + 40))));
        v4 = v4.or(eq(link.payload + 9, Width::B1, proto_value)
            .and(first_fragment(link))
            .and(pulled(&ops(&v4_path, link.payload))));
    }
    let v6 = linktype(link, p::ETHERTYPE_IPV6, span)?.and(v6);
    let v4 = linktype(link, p::ETHERTYPE_IP, span)?.and(v4);
    Ok(v6.or(v4))
}

/// `(bytes at offset & mask) op value`, from the frame start.
pub fn cmp(offset: u16, width: Width, mask: u32, op: CmpOp, value: u32) -> Cond {
    Cond::Lit(Lit::packet(Path::new(), offset, width, mask, op, value))
}

/// `bytes at offset == value`, from the frame start.
pub fn eq(offset: u16, width: Width, value: u32) -> Cond {
    cmp(offset, width, width.max_value(), CmpOp::Eq, value)
}

/// The IPv4 header length shift: moves the base by `4 * (ip[0] & 0xf)` (BPF's
/// `ldxb 4*([14]&0xf)`), so `payload + n` afterwards is byte `n` of the transport header.
pub fn ipv4_header_length(link: Link) -> Shift {
    Shift {
        offset: link.payload,
        width: Width::B1,
        mask: 0x0f,
        shift: 2,
    }
}

/// Non-first IPv4 fragments have no transport header: `(ip[6:2] & 0x1fff) == 0` (gen_ipfrag).
pub fn first_fragment(link: Link) -> Cond {
    cmp(link.payload + 6, Width::B2, 0x1fff, CmpOp::Eq, 0)
}

/// gen_linktype on Ethernet: the type field, or for values up to 1500 an 802.3 length field
/// followed by the 802.2 DSAP (and SSAP for the SAPs libpcap treats as always 802.2).
pub fn linktype(link: Link, value: u16, span: Span) -> Result<Cond, CompileError> {
    if let Some(inside) = link::encapsulated_linktype(link, value, span) {
        return inside;
    }
    if value > p::ETHERMTU {
        if matches!(value, p::ETHERTYPE_ATALK | p::ETHERTYPE_AARP) {
            return Ok(link::appletalk(link, value));
        }
        return Ok(eq(link.linktype, Width::B2, u32::from(value)));
    }
    let is_8023 = cmp(
        link.linktype,
        Width::B2,
        0xffff,
        CmpOp::Gt,
        u32::from(p::ETHERMTU),
    )
    .not();
    let sap = match value {
        // LLCSAP_IP, LLCSAP_ISONS, LLCSAP_NETBEUI: DSAP and SSAP both.
        0x06 | 0xfe | 0xf0 => eq(
            link.payload,
            Width::B2,
            u32::from(value) << 8 | u32::from(value),
        ),
        p::LLCSAP_IPX => return Ok(link::ipx(link)),
        _ => eq(link.payload, Width::B1, u32::from(value)),
    };
    Ok(is_8023.and(sap))
}

fn directed(dir: Direction, src: Cond, dst: Cond) -> Cond {
    match dir {
        Direction::Src => src,
        Direction::Dst => dst,
        Direction::SrcOrDst => src.or(dst),
        Direction::SrcAndDst => src.and(dst),
    }
}

/// gen_mcmp: a masked 32-bit compare; a zero mask compares nothing (libpcap's optimiser drops
/// the load, so it is not made here either).
fn masked_word(offset: u16, addr: u32, mask: u32) -> Cond {
    if mask == 0 {
        Cond::True
    } else {
        cmp(offset, Width::B4, mask, CmpOp::Eq, addr & mask)
    }
}

/// gen_hostop: type check and address compare, for each direction.
fn hostop(
    link: Link,
    ethertype: u16,
    (src, dst): (u16, u16),
    dir: Direction,
    (addr, mask): (u32, u32),
    span: Span,
) -> Result<Cond, CompileError> {
    let one = |offset: u16| -> Result<Cond, CompileError> {
        Ok(linktype(link, ethertype, span)?.and(masked_word(link.payload + offset, addr, mask)))
    };
    Ok(directed(dir, one(src)?, one(dst)?))
}

/// gen_hostop6: type check, then the four words of the address in order.
fn hostop6(
    link: Link,
    offset: u16,
    addr: &[u8; 16],
    mask: &[u8; 16],
    span: Span,
) -> Result<Cond, CompileError> {
    let mut cond = linktype(link, p::ETHERTYPE_IPV6, span)?;
    for word in 0..4 {
        let a = u32::from_be_bytes([
            addr[4 * word],
            addr[4 * word + 1],
            addr[4 * word + 2],
            addr[4 * word + 3],
        ]);
        let m = u32::from_be_bytes([
            mask[4 * word],
            mask[4 * word + 1],
            mask[4 * word + 2],
            mask[4 * word + 3],
        ]);
        cond = cond.and(masked_word(link.payload + offset + 4 * word as u16, a, m));
    }
    Ok(cond)
}

/// gen_bcmp over a MAC address: the last four bytes first, then the first two.
fn mac_at(offset: u16, mac: &[u8; 6]) -> Cond {
    eq(
        offset + 2,
        Width::B4,
        u32::from_be_bytes([mac[2], mac[3], mac[4], mac[5]]),
    )
    .and(eq(
        offset,
        Width::B2,
        u32::from(u16::from_be_bytes([mac[0], mac[1]])),
    ))
}

/// gen_proto for IPv4 and IPv6 (the latter also after one fragment header).
fn ip_proto(link: Link, layer: ProtoLayer, value: u8, span: Span) -> Result<Cond, CompileError> {
    let v = u32::from(value);
    let ip = || -> Result<Cond, CompileError> {
        Ok(linktype(link, p::ETHERTYPE_IP, span)?.and(eq(link.payload + 9, Width::B1, v)))
    };
    let ip6 =
        || -> Result<Cond, CompileError> {
            let direct = eq(link.payload + 6, Width::B1, v);
            let fragmented = eq(link.payload + 6, Width::B1, u32::from(p::IPPROTO_FRAGMENT))
                .and(eq(link.payload + 40, Width::B1, v));
            Ok(linktype(link, p::ETHERTYPE_IPV6, span)?.and(direct.or(fragmented)))
        };
    Ok(match layer {
        ProtoLayer::Ip => ip()?,
        ProtoLayer::Ip6 => ip6()?,
        ProtoLayer::Both => ip()?.or(ip6()?),
    })
}

/// One port test (gen_portatom / gen_portrangeatom) at `offset` under `path`.
fn port_atom(path: &Path, offset: u16, low: u16, high: u16) -> Cond {
    let at = |op, value: u16| {
        Cond::Lit(Lit::packet(
            path.clone(),
            offset,
            Width::B2,
            0xffff,
            op,
            u32::from(value),
        ))
    };
    if low == high {
        at(CmpOp::Eq, low)
    } else {
        at(CmpOp::Ge, low).and(at(CmpOp::Le, high))
    }
}

fn transports(transport: Option<Transport>, mut each: impl FnMut(u8) -> Cond) -> Cond {
    match transport {
        Some(Transport::Tcp) => each(p::IPPROTO_TCP),
        Some(Transport::Udp) => each(p::IPPROTO_UDP),
        Some(Transport::Sctp) => each(p::IPPROTO_SCTP),
        // gen_port: tcp or udp, then sctp in front of both.
        None => {
            let tcp_or_udp = each(p::IPPROTO_TCP).or(each(p::IPPROTO_UDP));
            each(p::IPPROTO_SCTP).or(tcp_or_udp)
        }
    }
}

/// gen_port / gen_port6, IPv6 first as libpcap ors them.
fn ports(
    link: Link,
    transport: Option<Transport>,
    dir: Direction,
    low: u16,
    high: u16,
    span: Span,
) -> Result<Cond, CompileError> {
    let v6_path = Path::new();
    let v6 = transports(transport, |proto| {
        let ports = directed(
            dir,
            port_atom(&v6_path, link.payload + 40, low, high),
            port_atom(&v6_path, link.payload + 42, low, high),
        );
        eq(link.payload + 6, Width::B1, u32::from(proto)).and(ports)
    });
    let v4_path: Path = alloc::vec![ipv4_header_length(link)];
    let v4 = transports(transport, |proto| {
        let ports = directed(
            dir,
            port_atom(&v4_path, link.payload, low, high),
            port_atom(&v4_path, link.payload + 2, low, high),
        );
        eq(link.payload + 9, Width::B1, u32::from(proto))
            .and(first_fragment(link))
            .and(ports)
    });
    let v6 = linktype(link, p::ETHERTYPE_IPV6, span)?.and(v6);
    let v4 = linktype(link, p::ETHERTYPE_IP, span)?.and(v4);
    Ok(v6.or(v4))
}

/// `prim` with its offsets replaced by `link`, for the primitives that carry them and that
/// dpf follows inside GENEVE.
fn relinked(prim: &Primitive, to: Link) -> Option<(Link, Primitive)> {
    let mut prim = prim.clone();
    let link = match &mut prim {
        Primitive::EtherType { link, .. }
        | Primitive::EtherProto { link, .. }
        | Primitive::Proto { link, .. }
        | Primitive::Host4 { link, .. }
        | Primitive::Host6 { link, .. }
        | Primitive::Port { link, .. }
        | Primitive::IpMulticast { link }
        | Primitive::Ip6Multicast { link }
        | Primitive::IpBroadcast { link } => link,
        _ => return None,
    };
    let was = *link;
    *link = to;
    Some((was, prim))
}

fn primitive(prim: &Primitive, span: Span) -> Result<Cond, CompileError> {
    if let Some((
        Link {
            encap:
                Encap::Geneve {
                    outer_linktype,
                    outer_payload,
                },
            ..
        },
        on_ethernet,
    )) = relinked(prim, Link::ETHERNET)
    {
        let inner = primitive(&on_ethernet, span)?;
        let outer = Link {
            linktype: outer_linktype,
            payload: outer_payload,
            encap: Encap::Ethernet,
        };
        return geneve::inside_geneve(&inner, outer, span);
    }
    Ok(match *prim {
        Primitive::EtherHost { dir, ref mac } => directed(dir, mac_at(6, mac), mac_at(0, mac)),
        Primitive::EtherBroadcast => mac_at(0, &[0xff; 6]),
        Primitive::EtherMulticast => cmp(0, Width::B1, 1, CmpOp::Ne, 0),
        Primitive::EtherProto { link, value } | Primitive::EtherType { link, value } => {
            linktype(link, value, span)?
        }
        Primitive::Host4 {
            link,
            layer,
            dir,
            addr,
            mask,
        } => {
            let ip = || hostop(link, p::ETHERTYPE_IP, (12, 16), dir, (addr, mask), span);
            let arp = || hostop(link, p::ETHERTYPE_ARP, (14, 24), dir, (addr, mask), span);
            let rarp = || hostop(link, p::ETHERTYPE_REVARP, (14, 24), dir, (addr, mask), span);
            match layer {
                HostLayer::Ip => ip()?,
                HostLayer::Arp => arp()?,
                HostLayer::Rarp => rarp()?,
                // gen_host: under MPLS an unqualified host is IPv4 only.
                HostLayer::Any if matches!(link.encap, Encap::Mpls { .. }) => ip()?,
                HostLayer::Any => ip()?.or(arp()?).or(rarp()?),
            }
        }
        Primitive::Host6 {
            link,
            dir,
            ref addr,
            ref mask,
        } => directed(
            dir,
            hostop6(link, 8, addr, mask, span)?,
            hostop6(link, 24, addr, mask, span)?,
        ),
        Primitive::Proto { link, layer, value } => ip_proto(link, layer, value, span)?,
        Primitive::Mpls { link, label } => link::mpls(link, label, span)?,
        Primitive::Pppoed { link } => linktype(link, p::ETHERTYPE_PPPOED, span)?,
        Primitive::Pppoes { link, session } => link::pppoes(link, session, span)?,
        Primitive::Geneve { link, vni } => geneve::geneve(link, vni, span)?,
        Primitive::Llc { link, kind } => link::llc(link, kind),
        Primitive::DecnetHost { link, dir, addr } => link::decnet_host(link, dir, addr, span)?,
        Primitive::Iso { link, nlpid, pdus } => link::iso(link, nlpid, pdus, span)?,
        Primitive::Protochain { link, layer, value } => {
            protochain::protochain(link, layer, value, span)?
        }
        Primitive::Port {
            link,
            transport,
            dir,
            low,
            high,
        } => ports(link, transport, dir, low, high, span)?,
        Primitive::IpMulticast { link } => linktype(link, p::ETHERTYPE_IP, span)?.and(cmp(
            link.payload + 16,
            Width::B1,
            0xff,
            CmpOp::Ge,
            224,
        )),
        Primitive::Ip6Multicast { link } => {
            linktype(link, p::ETHERTYPE_IPV6, span)?.and(eq(link.payload + 24, Width::B1, 0xff))
        }
        Primitive::IpBroadcast { link } => {
            let dst = link.payload + 16;
            linktype(link, p::ETHERTYPE_IP, span)?.and(eq(dst, Width::B4, 0).or(eq(
                dst,
                Width::B4,
                u32::MAX,
            )))
        }
        Primitive::Vlan { link, vid } => {
            let [a, b, c] = p::VLAN_TPIDS.map(|tpid| eq(link.linktype, Width::B2, u32::from(tpid)));
            let tagged = a.or(b).or(c);
            match vid {
                Some(id) => tagged.and(cmp(
                    link.payload,
                    Width::B2,
                    0x0fff,
                    CmpOp::Eq,
                    u32::from(id),
                )),
                None => tagged,
            }
        }
        Primitive::Relation {
            ref left,
            op,
            ref right,
        } => relation::lower_relation(left, op, right, span)?,
    })
}

/// An unsupported-construct error over `span`.
pub fn unsupported(span: Span, what: &str) -> CompileError {
    CompileError::new(span.start, span.end, format!("unsupported: {what}"))
}
