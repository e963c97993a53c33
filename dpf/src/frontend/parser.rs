//! Recursive-descent parser for libpcap's grammar, including its qualifier inheritance
//! (`host a or b` means `host a or host b`) and its parse-order `vlan` offsets.
//!
//! libpcap's yacc grammar hands every `id` the qualifiers of whatever stands before it
//! (`$<blk>0`): after `and`/`or` that is the previous term's qualifiers, inside `( ... )` the
//! ones before the parenthesis. Terms without qualifiers (`tcp`, relations, `vlan`) pass on
//! "undefined" qualifiers, so `tcp and 80` is a syntax error, as in tcpdump. The parser
//! threads the same value through.

use alloc::boxed::Box;
use alloc::format;
use alloc::string::String;

use super::CompileError;
use super::ast::{
    Arith, ArithOp, Direction, Encap, Expr, HostLayer, Link, LlcKind, LoadBase, Primitive,
    ProtoLayer, Transport,
};
use super::lexer::{Keyword, Span, Token, TokenKind, parse_ipv6};
use super::protocols;
use super::services::{self, Carried};
use crate::ir::{CmpOp, Width};

/// Deepest nesting of parentheses and `not`s accepted; deeper input is refused before it can
/// exhaust the stack.
pub const MAX_NESTING: usize = 64;
/// Most `and`/`or` operators accepted: each adds a level to the trees built from the
/// expression, and no sensible filter needs this many.
pub const MAX_OPERATORS: usize = 200;

/// Protocol qualifier.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum QProto {
    Undef,
    Default,
    Link,
    Ip,
    Ip6,
    Arp,
    Rarp,
    Tcp,
    Udp,
    Sctp,
    Icmp,
    Icmp6,
    Igmp,
    Igrp,
    Pim,
    Vrrp,
    Carp,
    Ah,
    Esp,
    Decnet,
    Lat,
    Sca,
    Moprc,
    Mopdl,
    Stp,
    Iso,
    Esis,
    Isis,
    Clnp,
    Netbeui,
    Ipx,
    Atalk,
    Aarp,
    L1,
    L2,
    Iih,
    Lsp,
    Snp,
    Csnp,
    Psnp,
}

/// Direction qualifier.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum QDir {
    Undef,
    Default,
    Src,
    Dst,
    Or,
    And,
}

/// Address-kind qualifier.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum QAddr {
    Undef,
    Default,
    Host,
    Net,
    Port,
    Portrange,
    Proto,
    Protochain,
    Gateway,
}

/// The qualifiers an `id` is interpreted with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Quals {
    proto: QProto,
    dir: QDir,
    addr: QAddr,
}

/// libpcap's `qerr`: what unqualified terms pass on.
const UNDEFINED: Quals = Quals {
    proto: QProto::Undef,
    dir: QDir::Undef,
    addr: QAddr::Undef,
};

/// Parses the whole text; `None` for an empty (match-everything) filter.
pub fn parse(tokens: &[Token], text: &str) -> Result<Option<Expr>, CompileError> {
    let mut parser = Parser {
        tokens,
        text,
        pos: 0,
        link: Link::ETHERNET,
        after_geneve: false,
        depth: 0,
        operators: 0,
    };
    if parser.peek() == &TokenKind::End {
        return Ok(None);
    }
    let (expr, _) = parser.expr(UNDEFINED)?;
    if parser.peek() != &TokenKind::End {
        return Err(parser.unexpected("'and', 'or' or the end of the expression"));
    }
    Ok(Some(expr))
}

struct Parser<'a> {
    tokens: &'a [Token],
    text: &'a str,
    pos: usize,
    /// Current link-layer offsets: each `vlan` parsed moves them by 4.
    link: Link,
    /// A `geneve` was parsed: libpcap reads what follows inside its frame, dpf does not.
    after_geneve: bool,
    depth: usize,
    /// `and`/`or` operators seen so far.
    operators: usize,
}

fn pname_of(kind: &TokenKind) -> Option<QProto> {
    let TokenKind::Keyword(kw) = kind else {
        return None;
    };
    Some(match kw {
        Keyword::Link => QProto::Link,
        Keyword::Ip => QProto::Ip,
        Keyword::Ip6 => QProto::Ip6,
        Keyword::Arp => QProto::Arp,
        Keyword::Rarp => QProto::Rarp,
        Keyword::Tcp => QProto::Tcp,
        Keyword::Udp => QProto::Udp,
        Keyword::Sctp => QProto::Sctp,
        Keyword::Icmp => QProto::Icmp,
        Keyword::Icmp6 => QProto::Icmp6,
        Keyword::Igmp => QProto::Igmp,
        Keyword::Igrp => QProto::Igrp,
        Keyword::Pim => QProto::Pim,
        Keyword::Vrrp => QProto::Vrrp,
        Keyword::Carp => QProto::Carp,
        Keyword::Ah => QProto::Ah,
        Keyword::Esp => QProto::Esp,
        Keyword::Decnet => QProto::Decnet,
        Keyword::Lat => QProto::Lat,
        Keyword::Sca => QProto::Sca,
        Keyword::Moprc => QProto::Moprc,
        Keyword::Mopdl => QProto::Mopdl,
        Keyword::Stp => QProto::Stp,
        Keyword::Iso => QProto::Iso,
        Keyword::Esis => QProto::Esis,
        Keyword::Isis => QProto::Isis,
        Keyword::Clnp => QProto::Clnp,
        Keyword::Netbeui => QProto::Netbeui,
        Keyword::Ipx => QProto::Ipx,
        Keyword::Atalk => QProto::Atalk,
        Keyword::Aarp => QProto::Aarp,
        Keyword::L1 => QProto::L1,
        Keyword::L2 => QProto::L2,
        Keyword::Iih => QProto::Iih,
        Keyword::Lsp => QProto::Lsp,
        Keyword::Snp => QProto::Snp,
        Keyword::Csnp => QProto::Csnp,
        Keyword::Psnp => QProto::Psnp,
        _ => return None,
    })
}

fn relop_of(kind: &TokenKind) -> Option<CmpOp> {
    Some(match kind {
        TokenKind::Gt => CmpOp::Gt,
        TokenKind::Ge => CmpOp::Ge,
        TokenKind::Eq => CmpOp::Eq,
        TokenKind::Le => CmpOp::Le,
        TokenKind::Lt => CmpOp::Lt,
        TokenKind::Ne => CmpOp::Ne,
        _ => return None,
    })
}

fn is_arith_op(kind: &TokenKind) -> bool {
    matches!(
        kind,
        TokenKind::Plus
            | TokenKind::Minus
            | TokenKind::Star
            | TokenKind::Slash
            | TokenKind::Percent
            | TokenKind::Amp
            | TokenKind::Pipe
            | TokenKind::Caret
            | TokenKind::Shl
            | TokenKind::Shr
    ) || relop_of(kind).is_some()
}

fn describe(kind: &TokenKind) -> String {
    match kind {
        TokenKind::End => String::from("the end of the expression"),
        _ => String::from("this"),
    }
}

impl<'a> Parser<'a> {
    fn peek(&self) -> &'a TokenKind {
        &self.tokens[self.pos].kind
    }

    fn peek_at(&self, ahead: usize) -> &'a TokenKind {
        let i = (self.pos + ahead).min(self.tokens.len() - 1);
        &self.tokens[i].kind
    }

    fn span(&self) -> Span {
        self.tokens[self.pos].span
    }

    fn prev_span(&self) -> Span {
        self.tokens[self.pos.saturating_sub(1)].span
    }

    fn bump(&mut self) -> &'a Token {
        let t = &self.tokens[self.pos];
        if self.pos + 1 < self.tokens.len() {
            self.pos += 1;
        }
        t
    }

    fn eat(&mut self, kind: &TokenKind) -> bool {
        if self.peek() == kind {
            self.bump();
            true
        } else {
            false
        }
    }

    fn error(&self, span: Span, message: impl Into<String>) -> CompileError {
        CompileError::new(span.start, span.end, message)
    }

    fn unexpected(&self, expected: &str) -> CompileError {
        let span = self.span();
        let found = if span.start == span.end {
            describe(self.peek())
        } else {
            format!("'{}'", &self.text[span.start..span.end])
        };
        self.error(span, format!("expected {expected}, found {found}"))
    }

    /// The number after `mpls`, `pppoes` or `geneve`, if one follows; at most `max`.
    fn optional_number(&mut self, max: u32, what: &str) -> Result<Option<u32>, CompileError> {
        let TokenKind::Num(n) = *self.peek() else {
            return Ok(None);
        };
        let span = self.span();
        self.bump();
        if n > max {
            return Err(self.error(span, format!("{what} {n} greater than maximum {max}")));
        }
        Ok(Some(n))
    }

    /// Encapsulations move the payload; past 16 of them the offsets are refused.
    fn check_depth(&self, start: Span) -> Result<(), CompileError> {
        if self.link.payload > 14 + 8 * 16 {
            return Err(self.error(start, "too many encapsulations: at most 16"));
        }
        Ok(())
    }

    fn enter(&mut self) -> Result<(), CompileError> {
        self.depth += 1;
        if self.depth > MAX_NESTING {
            return Err(self.error(
                self.span(),
                format!("expression nested too deeply: more than {MAX_NESTING} levels"),
            ));
        }
        Ok(())
    }

    /// Counts one `and`/`or` at the cursor, refusing past [`MAX_OPERATORS`].
    fn count_operator(&mut self) -> Result<(), CompileError> {
        self.operators += 1;
        if self.operators > MAX_OPERATORS {
            return Err(self.error(
                self.span(),
                format!("expression too complex: more than {MAX_OPERATORS} 'and'/'or' operators"),
            ));
        }
        Ok(())
    }

    fn leave(&mut self) {
        self.depth -= 1;
    }

    fn keyword(&self) -> Option<Keyword> {
        match self.peek() {
            TokenKind::Keyword(k) => Some(*k),
            _ => None,
        }
    }

    /// `expr: term | expr and term | expr and id | expr or term | expr or id`.
    fn expr(&mut self, inherited: Quals) -> Result<(Expr, Quals), CompileError> {
        let (mut left, mut quals) = self.term(inherited)?;
        loop {
            let is_and = match self.keyword() {
                Some(Keyword::And) => true,
                Some(Keyword::Or) => false,
                _ => break,
            };
            self.count_operator()?;
            self.bump();
            let (right, q) = if self.starts_id(0) {
                self.id(quals)?
            } else {
                self.term(quals)?
            };
            quals = q;
            left = if is_and {
                Expr::And(Box::new(left), Box::new(right))
            } else {
                Expr::Or(Box::new(left), Box::new(right))
            };
        }
        Ok((left, quals))
    }

    /// Whether the tokens from `ahead` on form an `id` (a bare address or number that
    /// inherits qualifiers) rather than a term. A number followed by an operator starts a
    /// relation instead.
    fn starts_id(&self, ahead: usize) -> bool {
        match self.peek_at(ahead) {
            TokenKind::Id(_) | TokenKind::Hid(_) | TokenKind::Hid6(_) | TokenKind::Eid(_) => true,
            TokenKind::Num(_) => !is_arith_op(self.peek_at(ahead + 1)),
            TokenKind::Bang | TokenKind::Keyword(Keyword::Not) | TokenKind::LParen => {
                // Bounded look-ahead: nesting is limited when it is parsed anyway.
                ahead < MAX_NESTING && self.starts_id(ahead + 1)
            }
            _ => false,
        }
    }

    /// `term: rterm | not term`.
    fn term(&mut self, inherited: Quals) -> Result<(Expr, Quals), CompileError> {
        if matches!(
            self.peek(),
            TokenKind::Bang | TokenKind::Keyword(Keyword::Not)
        ) {
            self.bump();
            self.enter()?;
            let (inner, q) = self.term(inherited)?;
            self.leave();
            return Ok((Expr::Not(Box::new(inner)), q));
        }
        self.rterm(inherited)
    }

    /// `id: nid | pnum | paren pid ')'`, and `not id`.
    fn id(&mut self, quals: Quals) -> Result<(Expr, Quals), CompileError> {
        match self.peek() {
            TokenKind::Bang | TokenKind::Keyword(Keyword::Not) => {
                self.bump();
                self.enter()?;
                let (inner, q) = self.id(quals)?;
                self.leave();
                Ok((Expr::Not(Box::new(inner)), q))
            }
            TokenKind::LParen => {
                self.bump();
                self.enter()?;
                let (mut left, mut q) = self.id(quals)?;
                loop {
                    let is_and = match self.keyword() {
                        Some(Keyword::And) => true,
                        Some(Keyword::Or) => false,
                        _ => break,
                    };
                    self.count_operator()?;
                    self.bump();
                    let (right, q2) = self.id(q)?;
                    q = q2;
                    left = if is_and {
                        Expr::And(Box::new(left), Box::new(right))
                    } else {
                        Expr::Or(Box::new(left), Box::new(right))
                    };
                }
                if !self.eat(&TokenKind::RParen) {
                    return Err(self.unexpected("')'"));
                }
                self.leave();
                Ok((left, q))
            }
            _ => {
                let start = self.span();
                let prim = self.nid(quals)?;
                Ok((Expr::Primitive(prim, start.to(self.prev_span())), quals))
            }
        }
    }

    /// An address, number or name, interpreted with `quals`.
    fn nid(&mut self, q: Quals) -> Result<Primitive, CompileError> {
        if !matches!(
            self.peek(),
            TokenKind::Num(_)
                | TokenKind::Hid(_)
                | TokenKind::Hid6(_)
                | TokenKind::Eid(_)
                | TokenKind::Id(_)
                | TokenKind::UnsupportedKeyword(_)
        ) {
            return Err(self.unexpected("an address, a number or a name"));
        }
        let token = self.bump();
        let span = token.span;
        match &token.kind {
            TokenKind::Num(v) => self.number_id(*v, None, q, span),
            TokenKind::Hid(text) => {
                let text = text.clone();
                if self.eat(&TokenKind::Slash) {
                    let len_span = self.span();
                    let TokenKind::Num(len) = *self.peek() else {
                        return Err(self.unexpected("a mask length"));
                    };
                    self.bump();
                    if len > 32 {
                        return Err(self.error(len_span, "mask length must be <= 32"));
                    }
                    let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
                    let full = span.to(len_span);
                    return self.masked_net(&text, span, mask, full, q);
                }
                if self.peek() == &TokenKind::Keyword(Keyword::Mask) {
                    self.bump();
                    let mask_span = self.span();
                    let TokenKind::Hid(mask_text) = self.peek() else {
                        return Err(self.unexpected("a dotted network mask"));
                    };
                    self.bump();
                    let (mask, _) = parse_dotted(mask_text, mask_span, self)?;
                    return self.masked_net(&text, span, mask, span.to(mask_span), q);
                }
                let (addr, bits) = parse_dotted(&text, span, self)?;
                self.number_id(addr, Some(bits), q, span)
            }
            TokenKind::Hid6(text) => {
                let addr = parse_ipv6(text)
                    .ok_or_else(|| self.error(span, format!("invalid IPv6 address '{text}'")))?;
                let mut len = 128u32;
                let mut full = span;
                if self.eat(&TokenKind::Slash) {
                    let len_span = self.span();
                    let TokenKind::Num(l) = *self.peek() else {
                        return Err(self.unexpected("a prefix length"));
                    };
                    self.bump();
                    if l > 128 {
                        return Err(self.error(len_span, "mask length must be <= 128"));
                    }
                    len = l;
                    full = span.to(len_span);
                }
                self.host6(addr, len, q, full)
            }
            TokenKind::Eid(mac) => {
                if matches!(q.addr, QAddr::Host | QAddr::Default) && q.proto == QProto::Link {
                    Ok(Primitive::EtherHost {
                        dir: direction(q.dir),
                        mac: *mac,
                    })
                } else {
                    Err(self.error(span, "ethernet address used in non-ether expression"))
                }
            }
            TokenKind::Id(name) => self.name_id(name, q, span),
            TokenKind::UnsupportedKeyword(k) => Err(self.error(span, unsupported_keyword(k))),
            _ => unreachable!("checked above"),
        }
    }

    /// A network given with `/len` or `mask`.
    fn masked_net(
        &mut self,
        text: &str,
        addr_span: Span,
        mask: u32,
        full: Span,
        q: Quals,
    ) -> Result<Primitive, CompileError> {
        let (addr, bits) = parse_dotted(text, addr_span, self)?;
        // Short forms (`10.1/16`) fill the low parts with zeros, as libpcap does.
        let addr = if bits == 32 {
            addr
        } else {
            addr << (32 - bits)
        };
        if q.addr != QAddr::Net {
            return Err(self.error(full, "Mask syntax for networks only"));
        }
        if addr & !mask != 0 {
            return Err(self.error(
                full,
                format!(
                    "non-network bits set in \"{}\"",
                    &self.text[full.start..full.end]
                ),
            ));
        }
        self.host4(addr, mask, q, full)
    }

    /// A number or dotted address: host, net, port, port range or protocol by qualifier.
    /// `bits` is `Some` for dotted text (how many bits it gave), `None` for a plain number.
    fn number_id(
        &mut self,
        v: u32,
        bits: Option<u32>,
        q: Quals,
        span: Span,
    ) -> Result<Primitive, CompileError> {
        match q.addr {
            QAddr::Default | QAddr::Host | QAddr::Net => {
                if q.proto == QProto::Link {
                    return Err(self.error(span, "illegal link layer address"));
                }
                if q.proto == QProto::Decnet {
                    return self.decnet_host(v, bits.is_some(), q, span);
                }
                let (addr, mask) = match bits {
                    // A plain number for `net` is promoted: `net 10` is 10.0.0.0/8.
                    None if q.addr == QAddr::Net => {
                        let (mut a, mut m) = (v, u32::MAX);
                        while a != 0 && a & 0xff00_0000 == 0 {
                            a <<= 8;
                            m <<= 8;
                        }
                        (a, m)
                    }
                    None => (v, u32::MAX),
                    // Dotted text with fewer than four parts covers a network.
                    Some(32) => (v, u32::MAX),
                    Some(b) => (v << (32 - b), u32::MAX << (32 - b)),
                };
                self.host4(addr, mask, q, span)
            }
            QAddr::Port | QAddr::Portrange => {
                if bits.is_some() {
                    let what = if q.addr == QAddr::Port {
                        "port"
                    } else {
                        "portrange"
                    };
                    return Err(
                        self.error(span, format!("'{what}' modifier applied to IP address"))
                    );
                }
                if v > 65535 {
                    return Err(self.error(span, format!("illegal port number {v} > 65535")));
                }
                self.port(v as u16, v as u16, q, span)
            }
            QAddr::Proto => {
                if bits.is_some() {
                    return Err(self.error(span, "'proto' modifier applied to IP address"));
                }
                self.proto(v, q, span)
            }
            QAddr::Protochain => {
                if bits.is_some() {
                    return Err(self.error(span, "'protochain' modifier applied to IP address"));
                }
                self.protochain(v, q, span)
            }
            QAddr::Gateway => Err(self.error(
                span,
                "'gateway' needs a host name, which dpf cannot resolve",
            )),
            QAddr::Undef => Err(self.error(
                span,
                "syntax error: an address or number needs a qualifier such as 'host' or 'port'",
            )),
        }
    }

    fn name_id(&mut self, name: &str, q: Quals, span: Span) -> Result<Primitive, CompileError> {
        match q.addr {
            QAddr::Portrange => {
                if let Some((low, high)) = parse_port_range(name) {
                    if low > 65535 || high > 65535 {
                        return Err(self.error(span, format!("illegal port range '{name}'")));
                    }
                    return self.port(low as u16, high as u16, q, span);
                }
                // pcap_nametoportrange: split at the first '-', each side a service; sides
                // carried by different protocols stand for both.
                let (low, high, carried) = name
                    .split_once('-')
                    .and_then(|(a, b)| {
                        let (low, first) = service_or_number(a)?;
                        let (high, second) = service_or_number(b)?;
                        let carried = if first == second {
                            first
                        } else {
                            Carried::Both
                        };
                        Some((low, high, carried))
                    })
                    .ok_or_else(|| self.error(span, format!("illegal port range '{name}'")))?;
                let q = self.named_port_quals(name, carried, q, span)?;
                self.port(low, high, q, span)
            }
            QAddr::Port => {
                let (port, carried) = services::service(name)
                    .ok_or_else(|| self.error(span, format!("unknown port '{name}'")))?;
                let q = self.named_port_quals(name, carried, q, span)?;
                self.port(port, port, q, span)
            }
            QAddr::Proto => {
                let value = match q.proto {
                    QProto::Default | QProto::Ip | QProto::Ip6 => protocols::ip_protocol(name)
                        .map(u16::from)
                        .ok_or_else(|| self.error(span, format!("unknown ip proto '{name}'")))?,
                    QProto::Link => protocols::ether_protocol(name)
                        .ok_or_else(|| self.error(span, format!("unknown ether proto '{name}'")))?,
                    _ => {
                        return Err(self.error(span, format!("unknown protocol '{name}'")));
                    }
                };
                self.proto(u32::from(value), q, span)
            }
            QAddr::Protochain => {
                let value = protocols::ip_protocol(name)
                    .ok_or_else(|| self.error(span, format!("unknown ip proto '{name}'")))?;
                self.protochain(u32::from(value), q, span)
            }
            QAddr::Undef => Err(self.error(span, format!("unknown protocol or keyword '{name}'"))),
            QAddr::Gateway | QAddr::Default | QAddr::Host | QAddr::Net => Err(self.error(
                span,
                format!("unknown host '{name}': dpf cannot resolve names, give an address"),
            )),
        }
    }

    /// `decnet [src|dst] host AREA.NODE` (or a 16-bit number): __pcap_atodn's address.
    fn decnet_host(
        &mut self,
        v: u32,
        dotted: bool,
        q: Quals,
        span: Span,
    ) -> Result<Primitive, CompileError> {
        if q.addr == QAddr::Net {
            return Err(self.error(span, "dpf supports DECnet hosts, not nets"));
        }
        let addr = if dotted {
            let text = &self.text[span.start..span.end];
            let parts: Option<(u32, u32)> = text
                .split_once('.')
                .and_then(|(a, n)| Some((a.parse().ok()?, n.parse().ok()?)));
            let Some((area, node)) = parts else {
                return Err(self.error(span, format!("malformed decnet address '{text}'")));
            };
            if area > 63 {
                return Err(self.error(span, "DECnet area number > 63"));
            }
            if node > 1023 {
                return Err(self.error(span, "DECnet node number > 1023"));
            }
            area << 10 | node
        } else {
            v
        };
        if addr > 0xffff {
            return Err(self.error(span, format!("DECnet address {addr} does not fit 16 bits")));
        }
        Ok(Primitive::DecnetHost {
            link: self.link,
            dir: direction(q.dir),
            addr: addr as u16,
        })
    }

    fn host4(
        &mut self,
        addr: u32,
        mask: u32,
        q: Quals,
        span: Span,
    ) -> Result<Primitive, CompileError> {
        let layer = match q.proto {
            QProto::Default => HostLayer::Any,
            QProto::Ip => HostLayer::Ip,
            QProto::Arp => HostLayer::Arp,
            QProto::Rarp => HostLayer::Rarp,
            other => {
                return Err(self.error(
                    span,
                    format!("'{}' modifier applied to host", proto_name(other)),
                ));
            }
        };
        Ok(Primitive::Host4 {
            link: self.link,
            layer,
            dir: direction(q.dir),
            addr,
            mask,
        })
    }

    fn host6(
        &mut self,
        addr: [u8; 16],
        prefix: u32,
        q: Quals,
        span: Span,
    ) -> Result<Primitive, CompileError> {
        match q.addr {
            QAddr::Default | QAddr::Host | QAddr::Net => {}
            _ => {
                return Err(self.error(
                    span,
                    "an IPv6 address needs 'host' or 'net', not a port or protocol qualifier",
                ));
            }
        }
        if q.addr == QAddr::Host && prefix != 128 {
            return Err(self.error(span, "Mask syntax for networks only"));
        }
        if !matches!(q.proto, QProto::Default | QProto::Ip6) {
            return Err(self.error(
                span,
                format!("'{}' modifier applied to ip6 host", proto_name(q.proto)),
            ));
        }
        let mut mask = [0u8; 16];
        for (i, m) in mask.iter_mut().enumerate() {
            let bits = prefix.saturating_sub(8 * i as u32).min(8);
            *m = if bits == 0 { 0 } else { 0xffu8 << (8 - bits) };
        }
        if addr.iter().zip(mask).any(|(a, m)| a & !m != 0) {
            return Err(self.error(
                span,
                format!(
                    "non-network bits set in \"{}\"",
                    &self.text[span.start..span.end]
                ),
            ));
        }
        Ok(Primitive::Host6 {
            link: self.link,
            dir: direction(q.dir),
            addr,
            mask,
        })
    }

    /// gen_scode's checks of a named port against its qualifier, and the protocol a name
    /// carried by one protocol only restricts an unqualified port to.
    fn named_port_quals(
        &self,
        name: &str,
        carried: Carried,
        q: Quals,
        span: Span,
    ) -> Result<Quals, CompileError> {
        let what = if q.addr == QAddr::Port {
            "port"
        } else {
            "port in range"
        };
        let proto = match (q.proto, carried) {
            (QProto::Udp | QProto::Sctp, Carried::Tcp) => {
                return Err(self.error(span, format!("{what} '{name}' is tcp")));
            }
            (QProto::Tcp | QProto::Sctp, Carried::Udp) => {
                return Err(self.error(span, format!("{what} '{name}' is udp")));
            }
            (QProto::Default, Carried::Tcp) => QProto::Tcp,
            (QProto::Default, Carried::Udp) => QProto::Udp,
            (other, _) => other,
        };
        Ok(Quals { proto, ..q })
    }

    fn port(&mut self, a: u16, b: u16, q: Quals, span: Span) -> Result<Primitive, CompileError> {
        let transport = match q.proto {
            QProto::Default => None,
            QProto::Tcp => Some(Transport::Tcp),
            QProto::Udp => Some(Transport::Udp),
            QProto::Sctp => Some(Transport::Sctp),
            _ => {
                let what = if q.addr == QAddr::Port {
                    "port"
                } else {
                    "portrange"
                };
                return Err(self.error(span, format!("illegal qualifier of '{what}'")));
            }
        };
        Ok(Primitive::Port {
            link: self.link,
            transport,
            dir: direction(q.dir),
            low: a.min(b),
            high: a.max(b),
        })
    }

    /// gen_protochain: IPv4, IPv6, or (unqualified) both.
    fn protochain(&mut self, v: u32, q: Quals, span: Span) -> Result<Primitive, CompileError> {
        let layer = match q.proto {
            QProto::Default => ProtoLayer::Both,
            QProto::Ip => ProtoLayer::Ip,
            QProto::Ip6 => ProtoLayer::Ip6,
            _ => return Err(self.error(span, "bad protocol applied for 'protochain'")),
        };
        Ok(Primitive::Protochain {
            link: self.link,
            layer,
            value: v,
        })
    }

    fn proto(&mut self, v: u32, q: Quals, span: Span) -> Result<Primitive, CompileError> {
        if q.proto == QProto::Link {
            if v > 0xffff {
                return Err(self.error(span, format!("ether proto {v} does not fit 16 bits")));
            }
            return Ok(Primitive::EtherProto {
                link: self.link,
                value: v as u16,
            });
        }
        let layer = match q.proto {
            QProto::Default => ProtoLayer::Both,
            QProto::Ip => ProtoLayer::Ip,
            QProto::Ip6 => ProtoLayer::Ip6,
            other => {
                return Err(self.error(span, format!("'{} proto' is bogus", proto_name(other))));
            }
        };
        if v > 0xff {
            return Err(self.error(span, format!("ip proto {v} does not fit 8 bits")));
        }
        Ok(Primitive::Proto {
            link: self.link,
            layer,
            value: v as u8,
        })
    }

    /// `rterm`: qualified ids, parenthesised expressions, protocol names, relations and the
    /// other primitives.
    fn rterm(&mut self, inherited: Quals) -> Result<(Expr, Quals), CompileError> {
        let start = self.span();
        if self.after_geneve
            && matches!(
                self.peek(),
                TokenKind::Keyword(
                    Keyword::Vlan | Keyword::Mpls | Keyword::Pppoes | Keyword::Geneve
                )
            )
        {
            return Err(self.error(start, "dpf does not follow encapsulations inside GENEVE"));
        }
        let inside = self.after_geneve;
        let (expr, quals) = self.rterm_inner(inherited)?;
        if inside {
            inside_geneve(&expr).map_err(|span| {
                self.error(
                    span,
                    "inside GENEVE dpf follows network and transport primitives (ip, ip6, host, net, port, proto, ether proto), not this one",
                )
            })?;
        }
        Ok((expr, quals))
    }

    fn rterm_inner(&mut self, inherited: Quals) -> Result<(Expr, Quals), CompileError> {
        let start = self.span();
        if self.link.encap == Encap::Pppoes {
            let link_header = match self.peek() {
                TokenKind::Keyword(Keyword::Link) => {
                    !matches!(self.peek_at(1), TokenKind::Keyword(Keyword::Proto))
                }
                TokenKind::Keyword(Keyword::Broadcast | Keyword::Multicast | Keyword::Llc) => true,
                _ => false,
            };
            if link_header {
                return Err(self.error(
                    start,
                    "after 'pppoes' the link-layer header is PPP's, which dpf does not follow",
                ));
            }
        }
        match self.peek() {
            TokenKind::LParen => {
                if self.could_start_arith() {
                    let save = (self.pos, self.link, self.depth, self.operators);
                    match self.relation() {
                        Ok(prim) => {
                            return Ok((
                                Expr::Primitive(prim, start.to(self.prev_span())),
                                UNDEFINED,
                            ));
                        }
                        Err(arith_error) => {
                            (self.pos, self.link, self.depth, self.operators) = save;
                            self.bump();
                            self.enter()?;
                            match self.expr(inherited) {
                                Ok((inner, _)) if self.peek() == &TokenKind::RParen => {
                                    self.bump();
                                    self.leave();
                                    return Ok((inner, inherited));
                                }
                                Ok(_) => return Err(self.unexpected("')'")),
                                Err(e) => {
                                    return Err(if arith_error.position > e.position {
                                        arith_error
                                    } else {
                                        e
                                    });
                                }
                            }
                        }
                    }
                }
                self.bump();
                self.enter()?;
                let (inner, _) = self.expr(inherited)?;
                if !self.eat(&TokenKind::RParen) {
                    return Err(self.unexpected("')'"));
                }
                self.leave();
                Ok((inner, inherited))
            }
            TokenKind::Num(_) | TokenKind::Minus | TokenKind::Keyword(Keyword::Len) => {
                let prim = self.relation()?;
                Ok((Expr::Primitive(prim, start.to(self.prev_span())), UNDEFINED))
            }
            TokenKind::Keyword(Keyword::Less | Keyword::Greater) => {
                let op = if self.peek() == &TokenKind::Keyword(Keyword::Less) {
                    CmpOp::Le
                } else {
                    CmpOp::Ge
                };
                self.bump();
                let TokenKind::Num(n) = *self.peek() else {
                    return Err(self.unexpected("a length"));
                };
                self.bump();
                let prim = Primitive::Relation {
                    left: Arith::Len,
                    op,
                    right: Arith::Num(n),
                };
                Ok((Expr::Primitive(prim, start.to(self.prev_span())), UNDEFINED))
            }
            TokenKind::Keyword(Keyword::Mpls) => {
                self.bump();
                let label = self.optional_number(0xfffff, "MPLS label")?;
                if self.link.encap == Encap::Pppoes {
                    return Err(self.error(start, "dpf does not follow 'mpls' after 'pppoes'"));
                }
                let prim = Primitive::Mpls {
                    link: self.link,
                    label,
                };
                // What follows is under this label; the Ethernet header stays where it was.
                let encap = match self.link.encap {
                    Encap::Mpls { .. } => self.link.encap,
                    _ => Encap::Mpls {
                        ethernet_linktype: self.link.linktype,
                        ethernet_payload: self.link.payload,
                    },
                };
                self.link = Link {
                    linktype: self.link.payload,
                    payload: self.link.payload + 4,
                    encap,
                };
                self.check_depth(start)?;
                Ok((Expr::Primitive(prim, start.to(self.prev_span())), UNDEFINED))
            }
            TokenKind::Keyword(Keyword::Pppoed) => {
                self.bump();
                let prim = Primitive::Pppoed { link: self.link };
                Ok((Expr::Primitive(prim, start.to(self.prev_span())), UNDEFINED))
            }
            TokenKind::Keyword(Keyword::Pppoes) => {
                self.bump();
                let session = self
                    .optional_number(0xffff, "PPPoE session number")?
                    .map(|n| n as u16);
                if self.link.encap == Encap::Pppoes {
                    return Err(self.error(start, "dpf does not follow 'pppoes' inside 'pppoes'"));
                }
                let prim = Primitive::Pppoes {
                    link: self.link,
                    session,
                };
                // What follows is the PPP payload: the protocol after the 6-byte header.
                self.link = Link {
                    linktype: self.link.payload + 6,
                    payload: self.link.payload + 8,
                    encap: Encap::Pppoes,
                };
                self.check_depth(start)?;
                Ok((Expr::Primitive(prim, start.to(self.prev_span())), UNDEFINED))
            }
            TokenKind::Keyword(Keyword::Geneve) => {
                self.bump();
                let vni = self.optional_number(0xff_ffff, "Geneve VNI")?;
                let prim = Primitive::Geneve {
                    link: self.link,
                    vni,
                };
                if self.link.encap != Encap::Ethernet {
                    return Err(
                        self.error(start, "dpf follows 'geneve' only on Ethernet (or VLAN)")
                    );
                }
                self.after_geneve = true;
                // What follows is read in the inner frame.
                let outer = self.link;
                self.link = Link {
                    linktype: 12,
                    payload: 14,
                    encap: Encap::Geneve {
                        outer_linktype: outer.linktype,
                        outer_payload: outer.payload,
                    },
                };
                Ok((Expr::Primitive(prim, start.to(self.prev_span())), UNDEFINED))
            }
            TokenKind::Keyword(Keyword::Llc) => {
                self.bump();
                let kind = match self.peek().clone() {
                    // `rnr` is also a pf keyword.
                    TokenKind::UnsupportedKeyword(name) if llc_kind(name).is_some() => {
                        self.bump();
                        llc_kind(name).unwrap_or(LlcKind::Any)
                    }
                    TokenKind::Id(name) => {
                        let span = self.span();
                        self.bump();
                        llc_kind(&name).ok_or_else(|| {
                            self.error(span, format!("unknown LLC type name \"{name}\""))
                        })?
                    }
                    _ => LlcKind::Any,
                };
                let prim = Primitive::Llc {
                    link: self.link,
                    kind,
                };
                Ok((Expr::Primitive(prim, start.to(self.prev_span())), UNDEFINED))
            }
            TokenKind::Keyword(Keyword::Vlan) => {
                self.bump();
                let vid = match *self.peek() {
                    TokenKind::Num(n) => {
                        let s = self.span();
                        self.bump();
                        if n > 4095 {
                            return Err(
                                self.error(s, format!("VLAN tag {n} greater than maximum 4095"))
                            );
                        }
                        Some(n as u16)
                    }
                    _ => None,
                };
                if self.link.encap != Encap::Ethernet {
                    return Err(self.error(start, "no VLAN match after MPLS or PPPoE"));
                }
                let prim = Primitive::Vlan {
                    link: self.link,
                    vid,
                };
                // Everything written after a `vlan` looks one tag further in.
                self.link.linktype += 4;
                self.link.payload += 4;
                if self.link.payload > 14 + 4 * 16 {
                    return Err(self.error(start, "too many 'vlan' keywords: at most 16"));
                }
                Ok((Expr::Primitive(prim, start.to(self.prev_span())), UNDEFINED))
            }
            TokenKind::UnsupportedKeyword(k) => Err(self.error(start, unsupported_keyword(k))),
            TokenKind::Id(name) => {
                let name = name.clone();
                if matches!(
                    self.peek_at(1),
                    TokenKind::Keyword(
                        Keyword::Src
                            | Keyword::Dst
                            | Keyword::Host
                            | Keyword::Net
                            | Keyword::Port
                            | Keyword::Portrange
                            | Keyword::Proto
                            | Keyword::Protochain
                    ) | TokenKind::LBracket
                ) {
                    Err(self.error(start, format!("unknown protocol '{name}'")))
                } else {
                    Err(self.error(
                        start,
                        format!(
                            "syntax error: '{name}' needs a qualifier such as 'host' or 'port'"
                        ),
                    ))
                }
            }
            TokenKind::Hid(_) | TokenKind::Hid6(_) | TokenKind::Eid(_) => Err(self.error(
                start,
                "syntax error: an address needs a qualifier such as 'host' or 'net'",
            )),
            _ => {
                let pqual = pname_of(self.peek());
                if pqual.is_some() && self.peek_at(1) == &TokenKind::LBracket {
                    let prim = self.relation()?;
                    return Ok((Expr::Primitive(prim, start.to(self.prev_span())), UNDEFINED));
                }
                let proto = pqual.unwrap_or(QProto::Default);
                let ahead = usize::from(pqual.is_some());
                match self.peek_at(ahead) {
                    TokenKind::Keyword(Keyword::Broadcast | Keyword::Multicast) => {
                        let multicast =
                            self.peek_at(ahead) == &TokenKind::Keyword(Keyword::Multicast);
                        self.pos += ahead + 1;
                        let span = start.to(self.prev_span());
                        let prim = if multicast {
                            self.multicast(proto, span)?
                        } else {
                            self.broadcast(proto, span)?
                        };
                        return Ok((Expr::Primitive(prim, span), UNDEFINED));
                    }
                    TokenKind::Keyword(
                        Keyword::Src
                        | Keyword::Dst
                        | Keyword::Host
                        | Keyword::Net
                        | Keyword::Port
                        | Keyword::Portrange
                        | Keyword::Proto
                        | Keyword::Protochain
                        | Keyword::Gateway,
                    ) => {
                        self.pos += ahead;
                        let quals = self.head(proto)?;
                        let (expr, q) = self.id(quals)?;
                        return Ok((expr, q));
                    }
                    _ => {}
                }
                if let Some(proto) = pqual {
                    self.bump();
                    let span = start.to(self.prev_span());
                    let prim = self.abbrev(proto, span)?;
                    return Ok((Expr::Primitive(prim, span), UNDEFINED));
                }
                Err(self.unexpected("a primitive (such as 'host', 'port', 'tcp' or 'ip[9] = 6')"))
            }
        }
    }

    /// Whether the text at the cursor may begin an arithmetic relation: after any number of
    /// '(' comes a number, `len`, `-`, or a protocol name with '['.
    fn could_start_arith(&self) -> bool {
        let mut i = 0;
        while self.peek_at(i) == &TokenKind::LParen && i < MAX_NESTING {
            i += 1;
        }
        match self.peek_at(i) {
            TokenKind::Num(_) | TokenKind::Minus | TokenKind::Keyword(Keyword::Len) => true,
            k => pname_of(k).is_some() && self.peek_at(i + 1) == &TokenKind::LBracket,
        }
    }

    /// `head: pqual dqual aqual | pqual dqual | pqual aqual | pqual PROTO | pqual gateway`.
    fn head(&mut self, proto: QProto) -> Result<Quals, CompileError> {
        let mut dir = QDir::Default;
        match self.keyword() {
            Some(Keyword::Src) | Some(Keyword::Dst) => {
                let first = self.keyword();
                self.bump();
                dir = if first == Some(Keyword::Src) {
                    QDir::Src
                } else {
                    QDir::Dst
                };
                // `src or dst`, `dst and src`, ...
                if let Some(conj @ (Keyword::Or | Keyword::And)) = self.keyword() {
                    let other = if first == Some(Keyword::Src) {
                        Keyword::Dst
                    } else {
                        Keyword::Src
                    };
                    if self.peek_at(1) == &TokenKind::Keyword(other) {
                        self.pos += 2;
                        dir = if conj == Keyword::Or {
                            QDir::Or
                        } else {
                            QDir::And
                        };
                    }
                }
            }
            _ => {}
        }
        let addr = match self.keyword() {
            Some(Keyword::Host) => QAddr::Host,
            Some(Keyword::Net) => QAddr::Net,
            Some(Keyword::Port) => QAddr::Port,
            Some(Keyword::Portrange) => QAddr::Portrange,
            Some(Keyword::Proto) if dir == QDir::Default => QAddr::Proto,
            Some(Keyword::Protochain) if dir == QDir::Default => QAddr::Protochain,
            Some(Keyword::Gateway) if dir == QDir::Default => QAddr::Gateway,
            _ => QAddr::Default,
        };
        if addr != QAddr::Default {
            self.bump();
        }
        Ok(Quals { proto, dir, addr })
    }

    fn abbrev(&mut self, proto: QProto, span: Span) -> Result<Primitive, CompileError> {
        let link = self.link;
        let both = |value| Primitive::Proto {
            link,
            layer: ProtoLayer::Both,
            value,
        };
        let ip = |value| Primitive::Proto {
            link,
            layer: ProtoLayer::Ip,
            value,
        };
        let ether = |value| Primitive::EtherType { link, value };
        let iso = |nlpid, pdus| Primitive::Iso { link, nlpid, pdus };
        Ok(match proto {
            QProto::Ip => ether(protocols::ETHERTYPE_IP),
            QProto::Ip6 => ether(protocols::ETHERTYPE_IPV6),
            QProto::Arp => ether(protocols::ETHERTYPE_ARP),
            QProto::Rarp => ether(protocols::ETHERTYPE_REVARP),
            QProto::Decnet => ether(protocols::ETHERTYPE_DN),
            QProto::Lat => ether(protocols::ETHERTYPE_LAT),
            QProto::Sca => ether(protocols::ETHERTYPE_SCA),
            QProto::Moprc => ether(protocols::ETHERTYPE_MOPRC),
            QProto::Mopdl => ether(protocols::ETHERTYPE_MOPDL),
            QProto::Stp => ether(protocols::LLCSAP_8021D),
            QProto::Iso => ether(protocols::LLCSAP_ISONS),
            QProto::Netbeui => ether(protocols::LLCSAP_NETBEUI),
            QProto::Ipx => ether(protocols::LLCSAP_IPX),
            QProto::Atalk => ether(protocols::ETHERTYPE_ATALK),
            QProto::Aarp => ether(protocols::ETHERTYPE_AARP),
            QProto::Clnp => iso(protocols::ISO8473_CLNP, &[]),
            QProto::Esis => iso(protocols::ISO9542_ESIS, &[]),
            QProto::Isis => iso(protocols::ISO10589_ISIS, &[]),
            QProto::L1 => iso(protocols::ISO10589_ISIS, &[15, 17, 18, 24, 26]),
            QProto::L2 => iso(protocols::ISO10589_ISIS, &[16, 17, 20, 25, 27]),
            QProto::Iih => iso(protocols::ISO10589_ISIS, &[15, 16, 17]),
            QProto::Lsp => iso(protocols::ISO10589_ISIS, &[18, 20]),
            QProto::Snp => iso(protocols::ISO10589_ISIS, &[24, 25, 26, 27]),
            QProto::Csnp => iso(protocols::ISO10589_ISIS, &[24, 25]),
            QProto::Psnp => iso(protocols::ISO10589_ISIS, &[26, 27]),
            QProto::Tcp => both(protocols::IPPROTO_TCP),
            QProto::Udp => both(protocols::IPPROTO_UDP),
            QProto::Sctp => both(protocols::IPPROTO_SCTP),
            QProto::Pim => both(protocols::IPPROTO_PIM),
            QProto::Ah => both(protocols::IPPROTO_AH),
            QProto::Esp => both(protocols::IPPROTO_ESP),
            QProto::Icmp => ip(protocols::IPPROTO_ICMP),
            QProto::Igmp => ip(protocols::IPPROTO_IGMP),
            QProto::Igrp => ip(protocols::IPPROTO_IGRP),
            QProto::Vrrp | QProto::Carp => ip(protocols::IPPROTO_VRRP),
            QProto::Icmp6 => Primitive::Proto {
                link,
                layer: ProtoLayer::Ip6,
                value: protocols::IPPROTO_ICMPV6,
            },
            QProto::Link => {
                return Err(self.error(
                    span,
                    "'ether' alone is not a filter: say 'ether host', 'ether proto', 'ether broadcast'...",
                ));
            }
            QProto::Default | QProto::Undef => {
                return Err(self.error(span, "expected a protocol"));
            }
        })
    }

    fn broadcast(&mut self, proto: QProto, span: Span) -> Result<Primitive, CompileError> {
        match proto {
            QProto::Default | QProto::Link => Ok(Primitive::EtherBroadcast),
            QProto::Ip => Ok(Primitive::IpBroadcast { link: self.link }),
            _ => Err(self.error(span, "only link-layer/IP broadcast filters supported")),
        }
    }

    fn multicast(&mut self, proto: QProto, span: Span) -> Result<Primitive, CompileError> {
        match proto {
            QProto::Default | QProto::Link => Ok(Primitive::EtherMulticast),
            QProto::Ip => Ok(Primitive::IpMulticast { link: self.link }),
            QProto::Ip6 => Ok(Primitive::Ip6Multicast { link: self.link }),
            _ => Err(self.error(span, "only link-layer/IP/IPv6 multicast filters supported")),
        }
    }

    /// `arth relop arth`.
    fn relation(&mut self) -> Result<Primitive, CompileError> {
        let left = self.arith(0)?;
        let Some(op) = relop_of(self.peek()) else {
            return Err(self.unexpected("a comparison ('=', '!=', '<', '<=', '>', '>=')"));
        };
        self.bump();
        let right = self.arith(0)?;
        Ok(Primitive::Relation { left, op, right })
    }

    /// Precedence climbing over libpcap's levels: `|` `^` < `&` < shifts < `+ -` < `* / %`.
    fn arith(&mut self, min_level: u8) -> Result<Arith, CompileError> {
        let mut left = self.arith_unary()?;
        loop {
            let (op, level) = match self.peek() {
                TokenKind::Pipe => (ArithOp::Or, 0),
                TokenKind::Caret => (ArithOp::Xor, 0),
                TokenKind::Amp => (ArithOp::And, 1),
                TokenKind::Shl => (ArithOp::Shl, 2),
                TokenKind::Shr => (ArithOp::Shr, 2),
                TokenKind::Plus => (ArithOp::Add, 3),
                TokenKind::Minus => (ArithOp::Sub, 3),
                TokenKind::Star => (ArithOp::Mul, 4),
                TokenKind::Slash => (ArithOp::Div, 4),
                TokenKind::Percent => (ArithOp::Mod, 4),
                _ => break,
            };
            if level < min_level {
                break;
            }
            let op_span = self.span();
            self.bump();
            let right = self.arith(level + 1)?;
            left = Arith::Binary(op, Box::new(left), Box::new(right), op_span);
        }
        Ok(left)
    }

    fn arith_unary(&mut self) -> Result<Arith, CompileError> {
        let start = self.span();
        match self.peek() {
            TokenKind::Minus => {
                self.bump();
                self.enter()?;
                let inner = self.arith_unary()?;
                self.leave();
                Ok(Arith::Neg(Box::new(inner), start))
            }
            TokenKind::Num(n) => {
                self.bump();
                Ok(Arith::Num(*n))
            }
            TokenKind::Keyword(Keyword::Len) => {
                self.bump();
                Ok(Arith::Len)
            }
            TokenKind::LParen => {
                self.bump();
                self.enter()?;
                let inner = self.arith(0)?;
                if !self.eat(&TokenKind::RParen) {
                    return Err(self.unexpected("')'"));
                }
                self.leave();
                Ok(inner)
            }
            kind => {
                let Some(proto) = pname_of(kind) else {
                    return Err(self.unexpected("a number, 'len' or a load such as 'ip[9]'"));
                };
                self.bump();
                let base = match proto {
                    QProto::Link => LoadBase::Link,
                    QProto::Ip => LoadBase::Ip,
                    QProto::Ip6 => LoadBase::Ip6,
                    QProto::Arp => LoadBase::Arp,
                    QProto::Rarp => LoadBase::Rarp,
                    QProto::Tcp => LoadBase::Transport(protocols::IPPROTO_TCP),
                    QProto::Udp => LoadBase::Transport(protocols::IPPROTO_UDP),
                    QProto::Sctp => LoadBase::Transport(protocols::IPPROTO_SCTP),
                    QProto::Icmp => LoadBase::Transport(protocols::IPPROTO_ICMP),
                    QProto::Igmp => LoadBase::Transport(protocols::IPPROTO_IGMP),
                    QProto::Igrp => LoadBase::Transport(protocols::IPPROTO_IGRP),
                    QProto::Pim => LoadBase::Transport(protocols::IPPROTO_PIM),
                    QProto::Vrrp | QProto::Carp => LoadBase::Transport(protocols::IPPROTO_VRRP),
                    QProto::Icmp6 => LoadBase::Icmp6,
                    _ => {
                        return Err(self.error(
                            start,
                            format!("'{}[...]' is not supported", proto_name(proto)),
                        ));
                    }
                };
                if !self.eat(&TokenKind::LBracket) {
                    return Err(self.unexpected("'['"));
                }
                self.enter()?;
                let index = self.arith(0)?;
                self.leave();
                let mut size = Width::B1;
                if self.eat(&TokenKind::Colon) {
                    let s = self.span();
                    let TokenKind::Num(n) = *self.peek() else {
                        return Err(self.unexpected("a size (1, 2 or 4)"));
                    };
                    self.bump();
                    size = match n {
                        1 => Width::B1,
                        2 => Width::B2,
                        4 => Width::B4,
                        _ => return Err(self.error(s, "data size must be 1, 2, or 4")),
                    };
                }
                if !self.eat(&TokenKind::RBracket) {
                    return Err(self.unexpected("']'"));
                }
                Ok(Arith::Load {
                    base,
                    link: self.link,
                    index: Box::new(index),
                    size,
                    span: start.to(self.prev_span()),
                })
            }
        }
    }
}

fn direction(dir: QDir) -> Direction {
    match dir {
        QDir::Src => Direction::Src,
        QDir::Dst => Direction::Dst,
        QDir::And => Direction::SrcAndDst,
        QDir::Or | QDir::Default | QDir::Undef => Direction::SrcOrDst,
    }
}

fn proto_name(p: QProto) -> &'static str {
    match p {
        QProto::Undef | QProto::Default => "default",
        QProto::Link => "ether",
        QProto::Ip => "ip",
        QProto::Ip6 => "ip6",
        QProto::Arp => "arp",
        QProto::Rarp => "rarp",
        QProto::Tcp => "tcp",
        QProto::Udp => "udp",
        QProto::Sctp => "sctp",
        QProto::Icmp => "icmp",
        QProto::Icmp6 => "icmp6",
        QProto::Igmp => "igmp",
        QProto::Igrp => "igrp",
        QProto::Pim => "pim",
        QProto::Vrrp => "vrrp",
        QProto::Carp => "carp",
        QProto::Ah => "ah",
        QProto::Esp => "esp",
        QProto::Decnet => "decnet",
        QProto::Lat => "lat",
        QProto::Sca => "sca",
        QProto::Moprc => "moprc",
        QProto::Mopdl => "mopdl",
        QProto::Stp => "stp",
        QProto::Iso => "iso",
        QProto::Esis => "esis",
        QProto::Isis => "isis",
        QProto::Clnp => "clnp",
        QProto::Netbeui => "netbeui",
        QProto::Ipx => "ipx",
        QProto::Atalk => "atalk",
        QProto::Aarp => "aarp",
        QProto::L1 => "l1",
        QProto::L2 => "l2",
        QProto::Iih => "iih",
        QProto::Lsp => "lsp",
        QProto::Snp => "snp",
        QProto::Csnp => "csnp",
        QProto::Psnp => "psnp",
    }
}

/// Dotted decimal with 1 to 4 parts, as libpcap's `__pcap_atoin`: the value and how many bits
/// the parts gave.
fn parse_dotted(text: &str, span: Span, p: &Parser<'_>) -> Result<(u32, u32), CompileError> {
    let mut value: u32 = 0;
    let mut bits = 0;
    for part in text.split('.') {
        let n: u32 =
            if !part.is_empty() && part.len() <= 3 && part.bytes().all(|b| b.is_ascii_digit()) {
                part.parse().unwrap_or(256)
            } else {
                256
            };
        if n > 255 || bits >= 32 {
            return Err(p.error(span, format!("invalid IPv4 address '{text}'")));
        }
        value = (value << 8) | n;
        bits += 8;
    }
    Ok((value, bits))
}

/// One side of a named port range: a service, or a number (getaddrinfo accepts those too,
/// for both protocols).
fn service_or_number(text: &str) -> Option<(u16, Carried)> {
    if !text.is_empty() && text.len() <= 5 && text.bytes().all(|c| c.is_ascii_digit()) {
        return text.parse().ok().map(|n| (n, Carried::Both));
    }
    services::service(text)
}

/// Why a libpcap keyword dpf knows of is refused: most belong to another link type, which the
/// message names; dpf filters Ethernet (DLT_EN10MB).
fn unsupported_keyword(k: &str) -> String {
    let needs = match k {
        "type" | "subtype" | "direction" | "dir" | "address1" | "addr1" | "address2" | "addr2"
        | "address3" | "addr3" | "address4" | "addr4" | "ra" | "ta" => {
            "802.11 headers (DLT_IEEE802_11, DLT_IEEE802_11_RADIO, DLT_PRISM_HEADER or DLT_IEEE802_11_RADIO_AVS)"
        }
        "radio" => "802.11 with radio information (DLT_IEEE802_11_RADIO)",
        "ppp" | "slip" => "PPP or SLIP framing (DLT_PPP, DLT_SLIP)",
        "lane" | "metac" | "bcc" | "oam" | "oamf4" | "oamf4ec" | "oamf4sc" | "sc" | "ilmic"
        | "vpi" | "vci" | "connectmsg" | "metaconnect" => "raw ATM (DLT_SUNATM)",
        "on" | "ifname" | "rnr" | "rulenum" | "reason" | "rset" | "ruleset" | "srnr"
        | "subrulenum" | "action" => "pflog (DLT_PFLOG)",
        "fisu" | "lssu" | "lsu" | "sls" | "opc" | "dpc" | "sio" | "hfisu" | "hlssu" | "hlsu"
        | "hsls" | "hopc" | "hdpc" | "hsio" => "MTP2 (DLT_MTP2, DLT_MTP2_WITH_PHDR, DLT_ERF)",
        "inbound" | "outbound" | "ifindex" => {
            "a link type that records the direction (DLT_LINUX_SLL, DLT_LINUX_SLL2, DLT_PFLOG)"
        }
        _ => return format!("'{k}' is a libpcap keyword dpf does not support"),
    };
    format!("'{k}' needs {needs}; dpf filters Ethernet (DLT_EN10MB)")
}

/// Whether every primitive of `expr` is one dpf follows inside GENEVE; the span of the first
/// that is not.
fn inside_geneve(expr: &Expr) -> Result<(), Span> {
    match expr {
        Expr::And(a, b) | Expr::Or(a, b) => {
            inside_geneve(a)?;
            inside_geneve(b)
        }
        Expr::Not(a) => inside_geneve(a),
        Expr::Primitive(prim, span) => match prim {
            Primitive::EtherType { .. }
            | Primitive::EtherProto { .. }
            | Primitive::Proto { .. }
            | Primitive::Host4 { .. }
            | Primitive::Host6 { .. }
            | Primitive::Port { .. }
            | Primitive::IpMulticast { .. }
            | Primitive::Ip6Multicast { .. }
            | Primitive::IpBroadcast { .. } => Ok(()),
            _ => Err(*span),
        },
    }
}

/// The frame kinds and commands `llc` takes (libpcap's llc_s_subtypes and llc_u_subtypes).
fn llc_kind(name: &str) -> Option<LlcKind> {
    Some(match name {
        "i" => LlcKind::Information,
        "s" => LlcKind::Supervisory,
        "u" => LlcKind::Unnumbered,
        "rr" => LlcKind::SupervisoryCommand(0x01),
        "rnr" => LlcKind::SupervisoryCommand(0x05),
        "rej" => LlcKind::SupervisoryCommand(0x09),
        "ui" => LlcKind::UnnumberedCommand(0x03),
        "ua" => LlcKind::UnnumberedCommand(0x63),
        "disc" => LlcKind::UnnumberedCommand(0x43),
        "dm" => LlcKind::UnnumberedCommand(0x0f),
        "sabme" => LlcKind::UnnumberedCommand(0x6f),
        "test" => LlcKind::UnnumberedCommand(0xe3),
        "xid" => LlcKind::UnnumberedCommand(0xaf),
        "frmr" => LlcKind::UnnumberedCommand(0x87),
        _ => return None,
    })
}

/// `A-B` with decimal ports.
fn parse_port_range(name: &str) -> Option<(u32, u32)> {
    let (a, b) = name.split_once('-')?;
    let num = |s: &str| -> Option<u32> {
        if s.is_empty() || s.len() > 5 || !s.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        s.parse().ok()
    };
    Some((num(a)?, num(b)?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frontend::lexer::tokenize;

    fn parse_text(text: &str) -> Result<Option<Expr>, CompileError> {
        parse(&tokenize(text)?, text)
    }

    fn prim(text: &str) -> Primitive {
        match parse_text(text).unwrap().unwrap() {
            Expr::Primitive(p, _) => p,
            other => panic!("{text}: not a primitive: {other:?}"),
        }
    }

    #[test]
    fn ids_inherit_qualifiers() {
        let Some(Expr::Or(_, right)) = parse_text("dst host 1.2.3.4 or 5.6.7.8").unwrap() else {
            panic!("expected or");
        };
        assert!(matches!(
            *right,
            Expr::Primitive(
                Primitive::Host4 {
                    dir: Direction::Dst,
                    addr: 0x0506_0708,
                    ..
                },
                _
            )
        ));
        let Some(Expr::And(_, right)) = parse_text("port 80 and not 22").unwrap() else {
            panic!("expected and");
        };
        assert!(matches!(
            *right,
            Expr::Not(ref inner) if matches!(**inner, Expr::Primitive(Primitive::Port { low: 22, .. }, _))
        ));
        assert!(parse_text("tcp and 80").is_err());
        assert!(parse_text("1.2.3.4").is_err());
    }

    #[test]
    fn vlan_moves_later_offsets() {
        let Some(Expr::And(left, right)) = parse_text("vlan 100 and ip").unwrap() else {
            panic!("expected and");
        };
        assert!(matches!(
            *left,
            Expr::Primitive(
                Primitive::Vlan {
                    link: Link::ETHERNET,
                    vid: Some(100)
                },
                _
            )
        ));
        assert!(matches!(
            *right,
            Expr::Primitive(
                Primitive::EtherType {
                    link: Link {
                        linktype: 16,
                        payload: 18,
                        encap: Encap::Ethernet,
                    },
                    ..
                },
                _
            )
        ));
    }

    #[test]
    fn addresses_follow_libpcap_promotion() {
        assert!(matches!(
            prim("net 10"),
            Primitive::Host4 {
                addr: 0x0a00_0000,
                mask: 0xff00_0000,
                ..
            }
        ));
        assert!(matches!(
            prim("host 10.1"),
            Primitive::Host4 {
                addr: 0x0a01_0000,
                mask: 0xffff_0000,
                ..
            }
        ));
        assert!(matches!(
            prim("src net 10.1.0.0 mask 255.255.0.0"),
            Primitive::Host4 {
                dir: Direction::Src,
                mask: 0xffff_0000,
                ..
            }
        ));
        let e = parse_text("net 10.0.0.1/8").unwrap_err();
        assert!(e.message.contains("non-network bits"), "{e:?}");
        let e = parse_text("host 10.0.0.0/8").unwrap_err();
        assert!(e.message.contains("networks only"));
        assert!(matches!(
            prim("portrange 2000-1000"),
            Primitive::Port {
                low: 1000,
                high: 2000,
                ..
            }
        ));
    }

    #[test]
    fn parenthesised_arithmetic_and_expressions() {
        assert!(matches!(
            prim("(tcp[13] & 2) != 0"),
            Primitive::Relation { op: CmpOp::Ne, .. }
        ));
        assert!(matches!(
            prim("(tcp[13] & 2 != 0)"),
            Primitive::Relation { op: CmpOp::Ne, .. }
        ));
        assert!(matches!(
            parse_text("(tcp or udp) and not icmp").unwrap(),
            Some(Expr::And(..))
        ));
    }

    #[test]
    fn errors_point_at_the_problem() {
        let e = parse_text("tpc port 80").unwrap_err();
        assert_eq!((e.position, e.end), (0, 3));
        assert_eq!(e.message, "unknown protocol 'tpc'");
        let e = parse_text("port").unwrap_err();
        assert_eq!(e.position, 4);
        let e = parse_text("tcp port 70000").unwrap_err();
        assert_eq!(e.position, 9);
        let e = parse_text("ip proto \\tpc").unwrap_err();
        assert_eq!(e.message, "unknown ip proto 'tpc'");
        let e = parse_text("tcp[1:3] = 1").unwrap_err();
        assert_eq!(e.position, 6);
        let deep = "(".repeat(1000);
        assert!(parse_text(&deep).unwrap_err().message.contains("nested"));
    }
}
