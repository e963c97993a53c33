//! Splits filter text into tokens the way libpcap's scanner does, so the same text means the
//! same thing (`1000-2000` is one name, `ip[14-2]` is a syntax error, `tcp-syn` is a number).
//!
//! libpcap's flex scanner takes the longest match and, among equally long ones, the earliest
//! rule: keywords, then numbers, dotted IPv4, MAC and IPv6 addresses, then plain names. This
//! lexer computes the same candidates at each position and applies the same tie-break.

use alloc::string::String;
use alloc::vec::Vec;

use super::CompileError;

/// A byte range of the filter text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Span {
    /// First byte.
    pub start: usize,
    /// One past the last byte.
    pub end: usize,
}

impl Span {
    /// The range covering both.
    pub fn to(self, other: Span) -> Span {
        Span {
            start: self.start.min(other.start),
            end: self.end.max(other.end),
        }
    }
}

/// Words with a meaning of their own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Keyword {
    Src,
    Dst,
    Host,
    Net,
    Mask,
    Port,
    Portrange,
    Proto,
    Protochain,
    Gateway,
    /// `ether`, `link` (and libpcap's other link-layer names, which dpf refuses).
    Link,
    Ip,
    Ip6,
    Arp,
    Rarp,
    Tcp,
    Udp,
    Icmp,
    Icmp6,
    Igmp,
    Sctp,
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
    Broadcast,
    Multicast,
    Less,
    Greater,
    Len,
    Vlan,
    Mpls,
    Pppoed,
    Pppoes,
    Geneve,
    Llc,
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
    And,
    Or,
    Not,
}

/// What a token is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TokenKind {
    Keyword(Keyword),
    /// A libpcap keyword dpf does not implement (`mpls`, `fddi`, `inbound`, ...).
    UnsupportedKeyword(&'static str),
    /// A number, including libpcap's named constants (`tcp-syn`, `icmptype`, ...).
    Num(u32),
    /// A name: a host name, a port range `A-B`, or `\name` (escaped, backslash dropped).
    Id(String),
    /// Dotted IPv4 address with 2 to 4 parts.
    Hid(String),
    /// IPv6 address.
    Hid6(String),
    /// MAC address.
    Eid([u8; 6]),
    LParen,
    RParen,
    LBracket,
    RBracket,
    Colon,
    Plus,
    Minus,
    Star,
    Slash,
    Percent,
    Amp,
    Pipe,
    Caret,
    Shl,
    Shr,
    Gt,
    Ge,
    Lt,
    Le,
    Eq,
    Ne,
    Bang,
    /// Synthetic, at the end of the text.
    End,
}

/// A token and where it came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Token {
    /// What it is.
    pub kind: TokenKind,
    /// Where it is.
    pub span: Span,
}

/// Keyword spellings, as libpcap 1.10's scanner knows them.
const KEYWORDS: &[(&str, Keyword)] = &[
    ("src", Keyword::Src),
    ("dst", Keyword::Dst),
    ("host", Keyword::Host),
    ("net", Keyword::Net),
    ("mask", Keyword::Mask),
    ("port", Keyword::Port),
    ("portrange", Keyword::Portrange),
    ("proto", Keyword::Proto),
    ("protochain", Keyword::Protochain),
    ("gateway", Keyword::Gateway),
    ("ether", Keyword::Link),
    ("link", Keyword::Link),
    // One token in libpcap's scanner: on Ethernet their addresses are Ethernet's.
    ("fddi", Keyword::Link),
    ("tr", Keyword::Link),
    ("wlan", Keyword::Link),
    ("ip", Keyword::Ip),
    ("ip6", Keyword::Ip6),
    ("arp", Keyword::Arp),
    ("rarp", Keyword::Rarp),
    ("tcp", Keyword::Tcp),
    ("udp", Keyword::Udp),
    ("icmp", Keyword::Icmp),
    ("icmp6", Keyword::Icmp6),
    ("igmp", Keyword::Igmp),
    ("sctp", Keyword::Sctp),
    ("igrp", Keyword::Igrp),
    ("pim", Keyword::Pim),
    ("vrrp", Keyword::Vrrp),
    ("carp", Keyword::Carp),
    ("ah", Keyword::Ah),
    ("esp", Keyword::Esp),
    ("decnet", Keyword::Decnet),
    ("lat", Keyword::Lat),
    ("sca", Keyword::Sca),
    ("moprc", Keyword::Moprc),
    ("mopdl", Keyword::Mopdl),
    ("broadcast", Keyword::Broadcast),
    ("multicast", Keyword::Multicast),
    ("less", Keyword::Less),
    ("greater", Keyword::Greater),
    ("len", Keyword::Len),
    ("length", Keyword::Len),
    ("vlan", Keyword::Vlan),
    ("mpls", Keyword::Mpls),
    ("pppoed", Keyword::Pppoed),
    ("pppoes", Keyword::Pppoes),
    ("geneve", Keyword::Geneve),
    ("llc", Keyword::Llc),
    ("stp", Keyword::Stp),
    ("iso", Keyword::Iso),
    ("esis", Keyword::Esis),
    ("es-is", Keyword::Esis),
    ("isis", Keyword::Isis),
    ("is-is", Keyword::Isis),
    ("clnp", Keyword::Clnp),
    ("netbeui", Keyword::Netbeui),
    ("ipx", Keyword::Ipx),
    ("atalk", Keyword::Atalk),
    ("aarp", Keyword::Aarp),
    ("l1", Keyword::L1),
    ("l2", Keyword::L2),
    ("iih", Keyword::Iih),
    ("lsp", Keyword::Lsp),
    ("snp", Keyword::Snp),
    ("csnp", Keyword::Csnp),
    ("psnp", Keyword::Psnp),
    ("and", Keyword::And),
    ("or", Keyword::Or),
    ("not", Keyword::Not),
];

/// libpcap keywords for things dpf does not do: recognised so the error says "not supported"
/// instead of "syntax error".
const UNSUPPORTED_KEYWORDS: &[&str] = &[
    "ppp",
    "slip",
    "radio",
    "type",
    "subtype",
    "direction",
    "dir",
    "address1",
    "addr1",
    "address2",
    "addr2",
    "address3",
    "addr3",
    "address4",
    "addr4",
    "ra",
    "ta",
    "byte",
    "inbound",
    "outbound",
    "ifindex",
    "lane",
    "metac",
    "bcc",
    "oam",
    "oamf4",
    "oamf4ec",
    "oamf4sc",
    "sc",
    "ilmic",
    "vpi",
    "vci",
    "connectmsg",
    "metaconnect",
    "on",
    "ifname",
    "rnr",
    "rulenum",
    "reason",
    "rset",
    "ruleset",
    "srnr",
    "subrulenum",
    "action",
    "fisu",
    "lssu",
    "lsu",
    "sls",
    "opc",
    "dpc",
    "sio",
    "hfisu",
    "hlssu",
    "hlsu",
    "hsls",
    "hopc",
    "hdpc",
    "hsio",
];

/// libpcap's named numbers: header offsets and values for ICMP, ICMPv6 and TCP flags.
const NAMED_NUMBERS: &[(&str, u32)] = &[
    ("icmptype", 0),
    ("icmpcode", 1),
    ("icmp-echoreply", 0),
    ("icmp-unreach", 3),
    ("icmp-sourcequench", 4),
    ("icmp-redirect", 5),
    ("icmp-echo", 8),
    ("icmp-routeradvert", 9),
    ("icmp-routersolicit", 10),
    ("icmp-timxceed", 11),
    ("icmp-paramprob", 12),
    ("icmp-tstamp", 13),
    ("icmp-tstampreply", 14),
    ("icmp-ireq", 15),
    ("icmp-ireqreply", 16),
    ("icmp-maskreq", 17),
    ("icmp-maskreply", 18),
    ("icmp6type", 0),
    ("icmp6code", 1),
    ("icmp6-destinationunreach", 1),
    ("icmp6-packettoobig", 2),
    ("icmp6-timeexceeded", 3),
    ("icmp6-parameterproblem", 4),
    ("icmp6-echo", 128),
    ("icmp6-echoreply", 129),
    ("icmp6-multicastlistenerquery", 130),
    ("icmp6-multicastlistenerreportv1", 131),
    ("icmp6-multicastlistenerdone", 132),
    ("icmp6-routersolicit", 133),
    ("icmp6-routeradvert", 134),
    ("icmp6-neighborsolicit", 135),
    ("icmp6-neighboradvert", 136),
    ("icmp6-redirect", 137),
    ("icmp6-routerrenum", 138),
    ("icmp6-nodeinformationquery", 139),
    ("icmp6-nodeinformationresponse", 140),
    ("icmp6-ineighbordiscoverysolicit", 141),
    ("icmp6-ineighbordiscoveryadvert", 142),
    ("icmp6-multicastlistenerreportv2", 143),
    ("icmp6-homeagentdiscoveryrequest", 144),
    ("icmp6-homeagentdiscoveryreply", 145),
    ("icmp6-mobileprefixsolicit", 146),
    ("icmp6-mobileprefixadvert", 147),
    ("icmp6-certpathsolicit", 148),
    ("icmp6-certpathadvert", 149),
    ("icmp6-multicastrouteradvert", 151),
    ("icmp6-multicastroutersolicit", 152),
    ("icmp6-multicastrouterterm", 153),
    ("tcpflags", 13),
    ("tcp-fin", 0x01),
    ("tcp-syn", 0x02),
    ("tcp-rst", 0x04),
    ("tcp-push", 0x08),
    ("tcp-ack", 0x10),
    ("tcp-urg", 0x20),
    ("tcp-ece", 0x40),
    ("tcp-cwr", 0x80),
];

/// Longest text libpcap would take as one address; longer runs cannot be addresses, which
/// also bounds the work spent on hostile input.
const MAX_ADDRESS_CHARS: usize = 64;

/// Tokens of `text`, ending with [`TokenKind::End`].
pub fn tokenize(text: &str) -> Result<Vec<Token>, CompileError> {
    let bytes = text.as_bytes();
    let mut tokens = Vec::new();
    let mut pos = 0;
    while pos < bytes.len() {
        let c = bytes[pos];
        if matches!(c, b' ' | b'\t' | b'\n' | b'\r') {
            pos += 1;
            continue;
        }
        let (kind, len) = next_token(text, pos)?;
        tokens.push(Token {
            kind,
            span: Span {
                start: pos,
                end: pos + len,
            },
        });
        pos += len;
    }
    tokens.push(Token {
        kind: TokenKind::End,
        span: Span {
            start: text.len(),
            end: text.len(),
        },
    });
    Ok(tokens)
}

fn next_token(text: &str, pos: usize) -> Result<(TokenKind, usize), CompileError> {
    let bytes = text.as_bytes();
    let rest = &bytes[pos..];
    let two = |a: u8, b: u8| rest.len() >= 2 && rest[0] == a && rest[1] == b;
    // Multi-character operators first; `::1` style addresses start with a colon.
    if rest[0] == b':' {
        if let Some(len) = ipv6_len(rest) {
            return Ok((TokenKind::Hid6(String::from(&text[pos..pos + len])), len));
        }
        return Ok((TokenKind::Colon, 1));
    }
    let op = if two(b'>', b'=') {
        Some((TokenKind::Ge, 2))
    } else if two(b'<', b'=') {
        Some((TokenKind::Le, 2))
    } else if two(b'!', b'=') {
        Some((TokenKind::Ne, 2))
    } else if two(b'=', b'=') {
        Some((TokenKind::Eq, 2))
    } else if two(b'<', b'<') {
        Some((TokenKind::Shl, 2))
    } else if two(b'>', b'>') {
        Some((TokenKind::Shr, 2))
    } else if two(b'&', b'&') {
        Some((TokenKind::Keyword(Keyword::And), 2))
    } else if two(b'|', b'|') {
        Some((TokenKind::Keyword(Keyword::Or), 2))
    } else {
        let single = match rest[0] {
            b'(' => Some(TokenKind::LParen),
            b')' => Some(TokenKind::RParen),
            b'[' => Some(TokenKind::LBracket),
            b']' => Some(TokenKind::RBracket),
            b'+' => Some(TokenKind::Plus),
            b'-' => Some(TokenKind::Minus),
            b'*' => Some(TokenKind::Star),
            b'/' => Some(TokenKind::Slash),
            b'%' => Some(TokenKind::Percent),
            b'&' => Some(TokenKind::Amp),
            b'|' => Some(TokenKind::Pipe),
            b'^' => Some(TokenKind::Caret),
            b'>' => Some(TokenKind::Gt),
            b'<' => Some(TokenKind::Lt),
            b'=' => Some(TokenKind::Eq),
            b'!' => Some(TokenKind::Bang),
            _ => None,
        };
        single.map(|k| (k, 1))
    };
    if let Some(op) = op {
        return Ok(op);
    }
    if rest[0] == b'\\' {
        // `\name`: everything up to a blank, `!` or a parenthesis, backslash dropped.
        let len = 1 + rest[1..]
            .iter()
            .take_while(|&&b| !matches!(b, b' ' | b'!' | b'(' | b')' | b'\n' | b'\t'))
            .count();
        if len == 1 {
            return Err(CompileError::new(
                pos,
                pos + 1,
                "expected a name after '\\'",
            ));
        }
        let name = &text[pos + 1..pos + len];
        return Ok((TokenKind::Id(String::from(name)), len));
    }
    if !rest[0].is_ascii_alphanumeric() {
        let len = text[pos..].chars().next().map_or(1, char::len_utf8);
        return Err(CompileError::new(
            pos,
            pos + len,
            alloc::format!("illegal character '{}'", &text[pos..pos + len]),
        ));
    }
    word_token(text, pos)
}

/// A token starting with a letter or digit: the longest of keyword/name, number, IPv4, MAC and
/// IPv6 candidates, ties going to the earlier of those (libpcap's rule order).
fn word_token(text: &str, pos: usize) -> Result<(TokenKind, usize), CompileError> {
    let rest = &text.as_bytes()[pos..];
    let id_len = id_len(rest);
    let num_len = number_len(rest);
    let hid_len = ipv4_len(rest);
    let eid_len = mac_len(rest);
    let hid6_len = ipv6_len(rest);
    let best = id_len
        .max(num_len)
        .max(hid_len)
        .max(eid_len.map_or(0, |(l, _)| l))
        .max(hid6_len.unwrap_or(0));
    let word = &text[pos..pos + id_len];
    if id_len == best {
        if let Some(&(_, kw)) = KEYWORDS.iter().find(|(s, _)| *s == word) {
            return Ok((TokenKind::Keyword(kw), id_len));
        }
        if let Some(&name) = UNSUPPORTED_KEYWORDS.iter().find(|s| **s == word) {
            return Ok((TokenKind::UnsupportedKeyword(name), id_len));
        }
        if let Some(&(_, value)) = NAMED_NUMBERS.iter().find(|(s, _)| *s == word) {
            return Ok((TokenKind::Num(value), id_len));
        }
    }
    if num_len == best {
        let value = parse_number(&text[pos..pos + num_len], pos)?;
        return Ok((TokenKind::Num(value), num_len));
    }
    if hid_len == best {
        return Ok((
            TokenKind::Hid(String::from(&text[pos..pos + hid_len])),
            hid_len,
        ));
    }
    if let Some((len, mac)) = eid_len
        && len == best
    {
        return Ok((TokenKind::Eid(mac), len));
    }
    if let Some(len) = hid6_len
        && len == best
    {
        return Ok((TokenKind::Hid6(String::from(&text[pos..pos + len])), len));
    }
    Ok((TokenKind::Id(String::from(word)), id_len))
}

/// libpcap's name pattern `[A-Za-z0-9]([-_.A-Za-z0-9]*[.A-Za-z0-9])?`.
fn id_len(rest: &[u8]) -> usize {
    let run = rest
        .iter()
        .take_while(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        .count();
    // The name may not end in '-' or '_'.
    let mut len = run;
    while len > 1 && matches!(rest[len - 1], b'-' | b'_') {
        len -= 1;
    }
    len
}

/// `[0-9]+` or `0x[0-9a-fA-F]+`; 0 when the text does not start with a digit.
fn number_len(rest: &[u8]) -> usize {
    if rest.len() >= 3
        && rest[0] == b'0'
        && matches!(rest[1], b'x' | b'X')
        && rest[2].is_ascii_hexdigit()
    {
        return 2 + rest[2..]
            .iter()
            .take_while(|b| b.is_ascii_hexdigit())
            .count();
    }
    rest.iter().take_while(|b| b.is_ascii_digit()).count()
}

/// Dotted address of 2 to 4 numbers (`N.N`, `N.N.N`, `N.N.N.N`, each as [`number_len`]).
fn ipv4_len(rest: &[u8]) -> usize {
    let mut len = 0;
    let mut parts = 0;
    let mut best = 0;
    loop {
        let n = number_len(&rest[len..]);
        if n == 0 {
            break;
        }
        len += n;
        parts += 1;
        if parts >= 2 {
            best = len;
        }
        if parts == 4 || rest.get(len) != Some(&b'.') {
            break;
        }
        len += 1;
    }
    best
}

/// MAC address forms libpcap accepts: `x:x:x:x:x:x`, `x-x-x-x-x-x`, `x.x.x.x.x.x` (1 or 2 hex
/// digits each), `xxxx.xxxx.xxxx` and `xxxxxxxxxxxx`.
fn mac_len(rest: &[u8]) -> Option<(usize, [u8; 6])> {
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let mut best: Option<(usize, [u8; 6])> = None;
    for sep in [b':', b'-', b'.'] {
        let mut mac = [0u8; 6];
        let mut pos = 0;
        let mut ok = true;
        for (i, byte) in mac.iter_mut().enumerate() {
            let digits = rest[pos..]
                .iter()
                .take(2)
                .take_while(|b| b.is_ascii_hexdigit())
                .count();
            if digits == 0 {
                ok = false;
                break;
            }
            *byte = rest[pos..pos + digits]
                .iter()
                .fold(0, |acc, &b| acc * 16 + hex(b).unwrap_or(0));
            pos += digits;
            if i < 5 {
                if rest.get(pos) != Some(&sep) {
                    ok = false;
                    break;
                }
                pos += 1;
            }
        }
        if ok && best.is_none_or(|(l, _)| pos > l) {
            best = Some((pos, mac));
        }
    }
    // Three groups of four hex digits with dots, or twelve in a row.
    let grouped = |dots: bool| -> Option<(usize, [u8; 6])> {
        let mut digits = [0u8; 12];
        let mut pos = 0;
        for (i, d) in digits.iter_mut().enumerate() {
            if dots && i > 0 && i % 4 == 0 {
                if rest.get(pos) != Some(&b'.') {
                    return None;
                }
                pos += 1;
            }
            *d = hex(*rest.get(pos)?)?;
            pos += 1;
        }
        let mut mac = [0u8; 6];
        for (i, m) in mac.iter_mut().enumerate() {
            *m = digits[2 * i] * 16 + digits[2 * i + 1];
        }
        Some((pos, mac))
    };
    for candidate in [grouped(true), grouped(false)].into_iter().flatten() {
        if best.is_none_or(|(l, _)| candidate.0 > l) {
            best = Some(candidate);
        }
    }
    best
}

/// Length of the longest prefix that is an IPv6 address, if any.
fn ipv6_len(rest: &[u8]) -> Option<usize> {
    let run = rest
        .iter()
        .take(MAX_ADDRESS_CHARS)
        .take_while(|b| b.is_ascii_hexdigit() || matches!(b, b':' | b'.'))
        .count();
    if !rest[..run].contains(&b':') {
        return None;
    }
    (2..=run)
        .rev()
        .find(|&len| parse_ipv6(core::str::from_utf8(&rest[..len]).unwrap_or("")).is_some())
}

/// Parses an IPv6 address (with `::` and an optional dotted IPv4 tail).
pub fn parse_ipv6(s: &str) -> Option<[u8; 16]> {
    let (head, tail, compressed) = match s.find("::") {
        Some(i) => (&s[..i], &s[i + 2..], true),
        None => (s, "", false),
    };
    if compressed && tail.contains("::") {
        return None;
    }
    let groups = |part: &str, allow_v4: bool| -> Option<Vec<u16>> {
        let mut out = Vec::new();
        if part.is_empty() {
            return Some(out);
        }
        let pieces: Vec<&str> = part.split(':').collect();
        for (i, piece) in pieces.iter().enumerate() {
            if allow_v4 && i == pieces.len() - 1 && piece.contains('.') {
                let v4 = parse_ipv4_strict(piece)?;
                out.push(u16::from_be_bytes([v4[0], v4[1]]));
                out.push(u16::from_be_bytes([v4[2], v4[3]]));
            } else {
                if piece.is_empty() || piece.len() > 4 {
                    return None;
                }
                out.push(u16::from_str_radix(piece, 16).ok()?);
            }
        }
        Some(out)
    };
    let head_groups = groups(head, !compressed)?;
    let tail_groups = groups(tail, true)?;
    let total = head_groups.len() + tail_groups.len();
    if (compressed && total > 7) || (!compressed && total != 8) {
        return None;
    }
    let mut words = [0u16; 8];
    words[..head_groups.len()].copy_from_slice(&head_groups);
    words[8 - tail_groups.len()..].copy_from_slice(&tail_groups);
    let mut out = [0u8; 16];
    for (i, w) in words.iter().enumerate() {
        out[2 * i..2 * i + 2].copy_from_slice(&w.to_be_bytes());
    }
    Some(out)
}

fn parse_ipv4_strict(s: &str) -> Option<[u8; 4]> {
    let mut out = [0u8; 4];
    let mut parts = s.split('.');
    for o in out.iter_mut() {
        let p = parts.next()?;
        if p.is_empty() || p.len() > 3 || !p.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        *o = p.parse().ok()?;
    }
    parts.next().is_none().then_some(out)
}

/// libpcap's number rules: `0x` hexadecimal, a leading `0` octal, otherwise decimal; 32 bits.
pub fn parse_number(s: &str, pos: usize) -> Result<u32, CompileError> {
    let err = |msg: &str| CompileError::new(pos, pos + s.len(), alloc::format!("number {s} {msg}"));
    let (digits, radix) = if let Some(hex) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        (hex, 16)
    } else if s.len() > 1 && s.starts_with('0') {
        (&s[1..], 8)
    } else {
        (s, 10)
    };
    let mut value: u64 = 0;
    for c in digits.chars() {
        let d = c.to_digit(radix).ok_or_else(|| {
            if radix == 8 {
                err("contains non-octal digit")
            } else {
                err("is malformed")
            }
        })?;
        value = value * radix as u64 + d as u64;
        if value > u32::MAX as u64 {
            return Err(err("overflows 32 bits"));
        }
    }
    Ok(value as u32)
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    fn kinds(text: &str) -> Vec<TokenKind> {
        tokenize(text)
            .unwrap()
            .into_iter()
            .map(|t| t.kind)
            .filter(|k| *k != TokenKind::End)
            .collect()
    }

    #[test]
    fn longest_match_decides_like_libpcap() {
        assert_eq!(kinds("1000-2000"), vec![TokenKind::Id("1000-2000".into())]);
        assert_eq!(kinds("tcp-syn"), vec![TokenKind::Num(2)]);
        assert_eq!(kinds("tcpx"), vec![TokenKind::Id("tcpx".into())]);
        assert_eq!(
            kinds("tcp[13]"),
            vec![
                TokenKind::Keyword(Keyword::Tcp),
                TokenKind::LBracket,
                TokenKind::Num(13),
                TokenKind::RBracket
            ]
        );
        assert_eq!(kinds("1.2.3.4"), vec![TokenKind::Hid("1.2.3.4".into())]);
        assert_eq!(kinds("1.2.3.4.5"), vec![TokenKind::Id("1.2.3.4.5".into())]);
        assert_eq!(kinds("0x1f"), vec![TokenKind::Num(0x1f)]);
        assert_eq!(kinds("010"), vec![TokenKind::Num(8)]);
        assert_eq!(kinds("fe80::1"), vec![TokenKind::Hid6("fe80::1".into())]);
        assert_eq!(kinds("::1"), vec![TokenKind::Hid6("::1".into())]);
        assert_eq!(
            kinds("1:2:3:4:5:6"),
            vec![TokenKind::Eid([1, 2, 3, 4, 5, 6])]
        );
        assert_eq!(
            kinds("tcp[13:1]")[2..5],
            [TokenKind::Num(13), TokenKind::Colon, TokenKind::Num(1)]
        );
        assert_eq!(kinds("\\tcp"), vec![TokenKind::Id("tcp".into())]);
        assert_eq!(
            kinds("a&&b||!c"),
            vec![
                TokenKind::Id("a".into()),
                TokenKind::Keyword(Keyword::And),
                TokenKind::Id("b".into()),
                TokenKind::Keyword(Keyword::Or),
                TokenKind::Bang,
                TokenKind::Id("c".into())
            ]
        );
    }

    #[test]
    fn number_errors_name_the_number() {
        let e = tokenize("ip[08] = 1").unwrap_err();
        assert_eq!((e.position, e.end), (3, 5));
        assert!(e.message.contains("non-octal"));
        let e = tokenize("len = 99999999999").unwrap_err();
        assert!(e.message.contains("overflows 32 bits"));
        let e = tokenize("len = 1 @").unwrap_err();
        assert_eq!(e.position, 8);
    }
}
