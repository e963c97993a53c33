//! `arith relop arith`: folds the arithmetic into one masked, shifted field compared with a
//! constant, which is what a dpf atom can say; anything else is refused with its position.
//!
//! A field value is kept as `(load & mask)` shifted left (`shift > 0`) or right (`shift < 0`),
//! with the mask trimmed so the shift never loses or wraps bits. `&`, `<<`, `>>`, and `*`, `/`,
//! `%` by powers of two stay in that form; a comparison with a constant then becomes a
//! comparison of `load & mask` with a rescaled constant. A loaded value used as an offset
//! (`tcp[(tcp[12] & 0xf0) >> 2]`) becomes a dpf shift of the base.

use alloc::format;

use super::CompileError;
use super::arith;
use super::ast::{Arith, ArithOp, Link, LoadBase};
use super::cond::{Cond, Lit, Path};
use super::lexer::Span;
use super::lower::{eq, first_fragment, ipv4_header_length, linktype, unsupported};
use super::protocols as p;
use crate::ir::{CmpOp, Field, MAX_OFFSET, MAX_SHIFT_BYTES, Shift, Width};

/// A field of the packet (or the wire length) after constant arithmetic.
#[derive(Clone, Debug)]
struct Term {
    path: Path,
    field: Field,
    /// Bits of the field kept.
    mask: u32,
    /// Left shift when positive, right when negative.
    shift: i8,
    /// A constant added (only meaningful as an offset).
    add: u32,
    /// Protocol checks that must hold before the field is read.
    cond: Cond,
    span: Span,
}

#[derive(Clone, Debug)]
enum Value {
    Const(u32),
    Field(Term),
}

impl Term {
    fn shift_right(&mut self, k: u32) {
        let s = i32::from(self.shift) - k.min(64) as i32;
        self.set_shift(s);
    }

    fn shift_left(&mut self, k: u32) {
        let s = i32::from(self.shift) + k.min(64) as i32;
        self.set_shift(s);
    }

    /// Sets the scale and trims the mask so `(load & mask)` scaled loses no bits and stays
    /// within 32 bits, as BPF's 32-bit arithmetic would have dropped them.
    fn set_shift(&mut self, s: i32) {
        if s >= 32 || s <= -32 {
            self.mask = 0;
            self.shift = 0;
            return;
        }
        if s >= 0 {
            self.mask &= u32::MAX >> s;
        } else {
            self.mask &= !((1u32 << -s) - 1);
        }
        self.shift = s as i8;
        if self.mask == 0 {
            self.shift = 0;
        }
    }

    fn and_const(&mut self, c: u32) {
        let c = if self.shift >= 0 {
            c >> self.shift
        } else {
            ((u64::from(c)) << -self.shift) as u32
        };
        self.mask &= c;
        if self.mask == 0 {
            self.shift = 0;
        }
    }

    /// The atom "this term's load succeeds".
    fn bounds(&self) -> Option<Lit> {
        Lit {
            path: self.path.clone(),
            atom: crate::ir::Atom {
                field: self.field,
                mask: 0,
                op: CmpOp::Eq,
                value: 0,
            },
            program: None,
        }
        .bounds()
    }
}

/// Lowers `left op right`: as one masked field when the arithmetic folds into one (which the
/// trie can dispatch on and merge), else as an expression step (`arith`).
pub fn lower_relation(
    left: &Arith,
    op: CmpOp,
    right: &Arith,
    span: Span,
) -> Result<Cond, CompileError> {
    match fold_relation(left, op, right, span) {
        // What the fold refuses is arithmetic a single field cannot say.
        Err(e) if e.message.starts_with("unsupported") => arith::relation(left, op, right, span),
        other => other,
    }
}

fn fold_relation(left: &Arith, op: CmpOp, right: &Arith, span: Span) -> Result<Cond, CompileError> {
    let l = eval(left)?;
    let r = eval(right)?;
    match (l, r) {
        (Value::Const(a), Value::Const(b)) => Ok(if op.holds(a, b) {
            Cond::True
        } else {
            Cond::False
        }),
        (Value::Field(t), Value::Const(c)) => compare(t, op, c),
        (Value::Const(c), Value::Field(t)) => compare(t, mirror(op), c),
        (Value::Field(_), Value::Field(_)) => Err(unsupported(
            span,
            "comparing two values that both come from the packet; compare a field with a constant",
        )),
    }
}

/// `c op x` is `x mirror(op) c`.
fn mirror(op: CmpOp) -> CmpOp {
    match op {
        CmpOp::Lt => CmpOp::Gt,
        CmpOp::Le => CmpOp::Ge,
        CmpOp::Gt => CmpOp::Lt,
        CmpOp::Ge => CmpOp::Le,
        other => other,
    }
}

/// What a comparison turned out to be once the constant is rescaled.
enum Outcome {
    Always,
    Never,
    Test(CmpOp, u32),
}

fn compare(t: Term, op: CmpOp, c: u32) -> Result<Cond, CompileError> {
    if t.add != 0 {
        return Err(unsupported(
            t.span,
            "adding to a packet field before comparing it; move the constant to the other side",
        ));
    }
    let max = u64::from(t.mask);
    let c64 = u64::from(c);
    let outcome = if t.shift >= 0 {
        // value = (f & m) << s, exactly (the mask keeps it within 32 bits).
        let s = t.shift as u32;
        let unit = 1u64 << s;
        let floor = c64 >> s;
        let ceil = c64.div_ceil(unit);
        match op {
            CmpOp::Eq if c64 % unit != 0 => Outcome::Never,
            CmpOp::Ne if c64 % unit != 0 => Outcome::Always,
            CmpOp::Eq | CmpOp::Ne => Outcome::Test(op, floor as u32),
            CmpOp::Lt | CmpOp::Ge => Outcome::Test(op, ceil as u32),
            CmpOp::Le | CmpOp::Gt => Outcome::Test(op, floor as u32),
        }
    } else {
        // value = (f & m) >> r with the low r bits of m clear: compare f & m with c << r.
        let scaled = c64 << (-t.shift) as u32;
        if scaled > u64::from(u32::MAX) {
            match op {
                CmpOp::Eq | CmpOp::Gt | CmpOp::Ge => Outcome::Never,
                CmpOp::Ne | CmpOp::Lt | CmpOp::Le => Outcome::Always,
            }
        } else {
            Outcome::Test(op, scaled as u32)
        }
    };
    // Decide comparisons the masked value's range [0, mask] settles.
    let outcome = match outcome {
        Outcome::Test(op, v) => {
            let v64 = u64::from(v);
            let outside = v & !t.mask != 0;
            match op {
                CmpOp::Eq if outside => Outcome::Never,
                CmpOp::Ne if outside => Outcome::Always,
                CmpOp::Lt if v == 0 => Outcome::Never,
                CmpOp::Lt if v64 > max => Outcome::Always,
                CmpOp::Le if v64 >= max => Outcome::Always,
                CmpOp::Gt if v64 >= max => Outcome::Never,
                CmpOp::Ge if v == 0 => Outcome::Always,
                CmpOp::Ge if v64 > max => Outcome::Never,
                _ => Outcome::Test(op, v),
            }
        }
        other => other,
    };
    let core = match outcome {
        Outcome::Test(op, value) => Cond::Lit(Lit {
            path: t.path.clone(),
            atom: crate::ir::Atom {
                field: t.field,
                mask: t.mask,
                op,
                value,
            },
            program: None,
        }),
        Outcome::Always => t.bounds().map_or(Cond::True, Cond::Defined),
        Outcome::Never => t.bounds().map_or(Cond::False, |b| Cond::Defined(b).not()),
    };
    Ok(t.cond.and(core))
}

fn eval(arith: &Arith) -> Result<Value, CompileError> {
    match arith {
        Arith::Num(n) => Ok(Value::Const(*n)),
        Arith::Len => Ok(Value::Field(Term {
            path: Path::new(),
            field: Field::WireLen,
            mask: u32::MAX,
            shift: 0,
            add: 0,
            cond: Cond::True,
            span: Span { start: 0, end: 0 },
        })),
        Arith::Neg(inner, span) => match eval(inner)? {
            Value::Const(c) => Ok(Value::Const(c.wrapping_neg())),
            Value::Field(_) => Err(unsupported(*span, "negating a packet field")),
        },
        Arith::Binary(op, a, b, span) => binary(*op, eval(a)?, eval(b)?, *span),
        Arith::Load {
            base,
            link,
            index,
            size,
            span,
        } => load(*base, *link, index, *size, *span),
    }
}

fn binary(op: ArithOp, a: Value, b: Value, span: Span) -> Result<Value, CompileError> {
    let err = |what: &str| Err(unsupported(span, what));
    let (mut t, c, const_left) = match (a, b) {
        (Value::Const(x), Value::Const(y)) => return fold(op, x, y, span).map(Value::Const),
        (Value::Field(_), Value::Field(_)) => {
            return err("arithmetic between two packet fields");
        }
        (Value::Field(t), Value::Const(c)) => (t, c, false),
        // libpcap's gen_arth keeps only the left operand's protocol checks: in
        // `4 * (ip[0] & 0xf)` the `ip` check is lost and the byte is read from any frame.
        (Value::Const(c), Value::Field(t)) => (
            Term {
                cond: Cond::True,
                ..t
            },
            c,
            true,
        ),
    };
    let commutative = matches!(
        op,
        ArithOp::Add | ArithOp::Mul | ArithOp::And | ArithOp::Or | ArithOp::Xor
    );
    if const_left && !commutative {
        return err("a packet field on the right of '-', '/', '%', '<<' or '>>'");
    }
    if t.add != 0 && op != ArithOp::Add {
        return err("arithmetic on a packet field after adding a constant to it");
    }
    match op {
        ArithOp::Add => t.add = t.add.wrapping_add(c),
        ArithOp::Sub if c == 0 => {}
        ArithOp::Sub => return err("subtracting from a packet field"),
        ArithOp::And => t.and_const(c),
        ArithOp::Shl => t.shift_left(c),
        ArithOp::Shr => t.shift_right(c),
        ArithOp::Mul if c == 0 => t.and_const(0),
        ArithOp::Mul if c.is_power_of_two() => t.shift_left(c.trailing_zeros()),
        ArithOp::Div if c == 0 => {
            return Err(CompileError::new(span.start, span.end, "division by zero"));
        }
        ArithOp::Div if c.is_power_of_two() => t.shift_right(c.trailing_zeros()),
        ArithOp::Mod if c == 0 => {
            return Err(CompileError::new(span.start, span.end, "modulus by zero"));
        }
        ArithOp::Mod if c.is_power_of_two() => t.and_const(c - 1),
        ArithOp::Or if c == 0 => {}
        ArithOp::Xor if c == 0 => {}
        ArithOp::Mul | ArithOp::Div | ArithOp::Mod => {
            return err(
                "multiplying, dividing or taking a modulus of a packet field by a number that is not a power of two",
            );
        }
        ArithOp::Or | ArithOp::Xor => return err("'|' or '^' on a packet field"),
    }
    Ok(Value::Field(t))
}

/// BPF's 32-bit constant arithmetic.
fn fold(op: ArithOp, x: u32, y: u32, span: Span) -> Result<u32, CompileError> {
    let e = |m: &str| CompileError::new(span.start, span.end, m);
    Ok(match op {
        ArithOp::Add => x.wrapping_add(y),
        ArithOp::Sub => x.wrapping_sub(y),
        ArithOp::Mul => x.wrapping_mul(y),
        ArithOp::Div => x.checked_div(y).ok_or_else(|| e("division by zero"))?,
        ArithOp::Mod => x.checked_rem(y).ok_or_else(|| e("modulus by zero"))?,
        ArithOp::And => x & y,
        ArithOp::Or => x | y,
        ArithOp::Xor => x ^ y,
        ArithOp::Shl => x.checked_shl(y).unwrap_or(0),
        ArithOp::Shr => x.checked_shr(y).unwrap_or(0),
    })
}

/// `base[index:size]`: where the header starts, which checks guard it (gen_load in libpcap),
/// then the index as a constant offset or a shift of the base.
fn load(
    base: LoadBase,
    link: Link,
    index: &Arith,
    size: Width,
    span: Span,
) -> Result<Value, CompileError> {
    let index = eval(index)?;
    let (index_cond, index_shift, index_add) = match index {
        Value::Const(c) => (Cond::True, None, c),
        Value::Field(t) => {
            let Field::Packet { offset, width } = t.field else {
                return Err(unsupported(span, "the wire length as an offset"));
            };
            let shift = Shift {
                offset,
                width,
                mask: t.mask,
                shift: t.shift,
            };
            if shift.max_amount() > u64::from(MAX_SHIFT_BYTES) {
                return Err(unsupported(
                    t.span,
                    &format!("a computed offset that can exceed {MAX_SHIFT_BYTES} bytes"),
                ));
            }
            (t.cond, Some((t.path, shift)), t.add)
        }
    };
    let sp = span;
    let (path, start, cond): (Path, u16, Cond) = match base {
        LoadBase::Link => (Path::new(), 0, index_cond),
        LoadBase::Ip => (
            Path::new(),
            link.payload,
            index_cond.and(linktype(link, p::ETHERTYPE_IP, sp)?),
        ),
        LoadBase::Ip6 => (
            Path::new(),
            link.payload,
            index_cond.and(linktype(link, p::ETHERTYPE_IPV6, sp)?),
        ),
        LoadBase::Arp => (
            Path::new(),
            link.payload,
            index_cond.and(linktype(link, p::ETHERTYPE_ARP, sp)?),
        ),
        LoadBase::Rarp => (
            Path::new(),
            link.payload,
            index_cond.and(linktype(link, p::ETHERTYPE_REVARP, sp)?),
        ),
        // libpcap: `ip`, then the index's own checks, then the protocol and first fragment.
        LoadBase::Transport(proto) => {
            let checks = linktype(link, p::ETHERTYPE_IP, sp)?.and(index_cond).and(
                linktype(link, p::ETHERTYPE_IP, sp)?
                    .and(eq(link.payload + 9, Width::B1, u32::from(proto)))
                    .and(first_fragment(link)),
            );
            (alloc::vec![ipv4_header_length(link)], link.payload, checks)
        }
        // libpcap: the index's checks, `ip6`, then a next header of 58 (no extension headers).
        LoadBase::Icmp6 => (
            Path::new(),
            link.payload + 40,
            index_cond
                .and(linktype(link, p::ETHERTYPE_IPV6, sp)?)
                .and(eq(
                    link.payload + 6,
                    Width::B1,
                    u32::from(p::IPPROTO_ICMPV6),
                )),
        ),
    };
    let mut path = path;
    if let Some((index_path, shift)) = index_shift {
        if index_path != path {
            return Err(unsupported(
                span,
                "an offset computed from a field outside the header it indexes",
            ));
        }
        path.push(shift);
    }
    let offset = u32::from(start) + index_add;
    if offset > u32::from(MAX_OFFSET) {
        return Err(unsupported(
            span,
            &format!("offset {offset} is past dpf's limit of {MAX_OFFSET} bytes"),
        ));
    }
    if path.len() > crate::ir::MAX_SHIFTS {
        return Err(unsupported(span, "too many computed offsets"));
    }
    Ok(Value::Field(Term {
        path,
        field: Field::Packet {
            offset: offset as u16,
            width: size,
        },
        mask: size.max_value(),
        shift: 0,
        add: 0,
        cond,
        span,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;

    #[test]
    fn shifts_rescale_the_constant() {
        let t = Term {
            path: Vec::new(),
            field: Field::Packet {
                offset: 14,
                width: Width::B1,
            },
            mask: 0xff,
            shift: 0,
            add: 0,
            cond: Cond::True,
            span: Span { start: 0, end: 0 },
        };
        // (x & 0xf0) >> 4 == 4  is  x & 0xf0 == 0x40.
        let mut u = t.clone();
        u.and_const(0xf0);
        u.shift_right(4);
        let Cond::Lit(lit) = compare(u.clone(), CmpOp::Eq, 4).unwrap() else {
            panic!()
        };
        assert_eq!(
            (lit.atom.mask, lit.atom.op, lit.atom.value),
            (0xf0, CmpOp::Eq, 0x40)
        );
        // (x >> 4) > 3  is  x & 0xf0 > 0x30.
        let mut v = t.clone();
        v.shift_right(4);
        let Cond::Lit(lit) = compare(v, CmpOp::Gt, 3).unwrap() else {
            panic!()
        };
        assert_eq!(
            (lit.atom.mask, lit.atom.op, lit.atom.value),
            (0xf0, CmpOp::Gt, 0x30)
        );
        // 4 * (x & 0xf) < 21  is  x & 0xf < 6.
        let mut w = t.clone();
        w.and_const(0xf);
        w.shift_left(2);
        let Cond::Lit(lit) = compare(w.clone(), CmpOp::Lt, 21).unwrap() else {
            panic!()
        };
        assert_eq!(
            (lit.atom.mask, lit.atom.op, lit.atom.value),
            (0xf, CmpOp::Lt, 6)
        );
        // ... and == 21 can never hold, but still reads the byte.
        assert!(matches!(compare(w, CmpOp::Eq, 21).unwrap(), Cond::Not(_)));
        // x & 0x0f == 0x10 never holds either.
        let mut m = t;
        m.and_const(0x0f);
        assert!(matches!(compare(m, CmpOp::Eq, 0x10).unwrap(), Cond::Not(_)));
    }
}
