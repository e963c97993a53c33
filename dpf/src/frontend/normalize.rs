//! From a condition tree to a disjunction of conjunctions (DNF) with BPF's verdicts, including
//! its treatment of loads past the captured bytes.
//!
//! BPF evaluates left to right and rejects the packet at the first load past the captured
//! bytes, even inside an `or` whose other side would match. A dpf conjunction instead fails on
//! its own when one of its loads does, and the disjunction matches when any conjunction does.
//! To agree with BPF, every subexpression gets two DNFs: `T`, the packets for which it
//! evaluates to true without aborting, and `F`, false without aborting:
//!
//! ```text
//!   T(lit) = {lit}              F(lit) = {negated lit}     (same load, opposite test)
//!   T(a and b) = T(a)·T(b)      F(a and b) = F(a) ∪ T(a)·F(b)
//!   T(a or b) = T(a) ∪ F(a)·T(b)  F(a or b) = F(a)·F(b)
//!   T(not a) = F(a)             F(not a) = T(a)
//! ```
//!
//! and the filter is `T` of the whole expression. Negation is pushed to the atoms for free.
//! The `F(a)·T(b)` guards grow conjunctions; simplification keeps them small: contradictory
//! conjunctions are dropped, implied literals removed, subsumed conjunctions removed, and a
//! literal whose opposite is covered by another conjunction is weakened to the bounds check
//! ("this load succeeds") it still stands for.
//!
//! Hostile inputs cannot explode this: every set is capped at [`MAX_CONJUNCTIONS`] and every
//! product at [`MAX_PRODUCT_PAIRS`] pairs; past that the expression is refused.

use alloc::format;
use alloc::vec::Vec;

use super::CompileError;
use super::cond::{Cond, Lit};
use crate::ir::{CmpOp, Field};

/// Most conjunctions any subexpression may need.
pub const MAX_CONJUNCTIONS: usize = 256;
/// Most pairs one `and` may combine before simplification.
pub const MAX_PRODUCT_PAIRS: usize = 16_384;
/// Largest set the weakening pass runs on; beyond it sets are only deduplicated (the result is
/// the same filter, just longer).
const WEAKEN_LIMIT: usize = 64;

/// A conjunction: sorted, without duplicates or implied literals, not known contradictory.
pub type Conj = Vec<Lit>;

/// The disjunction of conjunctions equivalent to `T(cond)`, or why it cannot be built.
/// `whole` is the expression's extent, used for "too complex" errors.
pub fn to_dnf(cond: &Cond, whole: (usize, usize)) -> Result<Vec<Conj>, CompileError> {
    let mut node = Node::new(cond);
    let mut ctx = Ctx { whole };
    node.t(&mut ctx)
}

struct Ctx {
    whole: (usize, usize),
}

impl Ctx {
    fn too_complex(&self, detail: &str) -> CompileError {
        CompileError::new(
            self.whole.0,
            self.whole.1,
            format!("expression too complex: {detail}"),
        )
    }
}

/// A condition with its `T` and `F` computed at most once each, on demand (`F` of a subtree is
/// only needed under `not` and left of `or`).
struct Node<'a> {
    cond: &'a Cond,
    kids: Vec<Node<'a>>,
    t: Option<Vec<Conj>>,
    f: Option<Vec<Conj>>,
}

impl<'a> Node<'a> {
    fn new(cond: &'a Cond) -> Node<'a> {
        let kids = match cond {
            Cond::And(a, b) | Cond::Or(a, b) => alloc::vec![Node::new(a), Node::new(b)],
            Cond::Not(a) => alloc::vec![Node::new(a)],
            _ => Vec::new(),
        };
        Node {
            cond,
            kids,
            t: None,
            f: None,
        }
    }

    fn t(&mut self, ctx: &mut Ctx) -> Result<Vec<Conj>, CompileError> {
        if let Some(t) = &self.t {
            return Ok(t.clone());
        }
        let t = match self.cond {
            Cond::True => alloc::vec![Vec::new()],
            Cond::False => Vec::new(),
            Cond::Lit(l) => alloc::vec![alloc::vec![l.clone()]],
            Cond::Defined(b) => alloc::vec![alloc::vec![b.clone()]],
            Cond::And(..) => {
                let a = self.kids[0].t(ctx)?;
                let b = self.kids[1].t(ctx)?;
                product(&a, &b, ctx)?
            }
            Cond::Or(..) => {
                let a = self.kids[0].t(ctx)?;
                let fa = self.kids[0].f(ctx)?;
                let b = self.kids[1].t(ctx)?;
                let guarded = product(&fa, &b, ctx)?;
                union(a, guarded, ctx)?
            }
            Cond::Not(..) => self.kids[0].f(ctx)?,
        };
        self.t = Some(t.clone());
        Ok(t)
    }

    fn f(&mut self, ctx: &mut Ctx) -> Result<Vec<Conj>, CompileError> {
        if let Some(f) = &self.f {
            return Ok(f.clone());
        }
        let f = match self.cond {
            Cond::True => Vec::new(),
            Cond::False => alloc::vec![Vec::new()],
            Cond::Lit(l) => alloc::vec![alloc::vec![l.negate()]],
            Cond::Defined(_) => Vec::new(),
            Cond::And(..) => {
                let fa = self.kids[0].f(ctx)?;
                let ta = self.kids[0].t(ctx)?;
                let fb = self.kids[1].f(ctx)?;
                let guarded = product(&ta, &fb, ctx)?;
                union(fa, guarded, ctx)?
            }
            Cond::Or(..) => {
                let fa = self.kids[0].f(ctx)?;
                let fb = self.kids[1].f(ctx)?;
                product(&fa, &fb, ctx)?
            }
            Cond::Not(..) => self.kids[0].t(ctx)?,
        };
        self.f = Some(f.clone());
        Ok(f)
    }
}

fn union(mut a: Vec<Conj>, b: Vec<Conj>, ctx: &Ctx) -> Result<Vec<Conj>, CompileError> {
    a.extend(b);
    simplify_set(a, ctx)
}

fn product(a: &[Conj], b: &[Conj], ctx: &Ctx) -> Result<Vec<Conj>, CompileError> {
    if a.len().saturating_mul(b.len()) > MAX_PRODUCT_PAIRS {
        return Err(ctx.too_complex(&format!(
            "combining {} by {} conjunctions (more than {MAX_PRODUCT_PAIRS})",
            a.len(),
            b.len()
        )));
    }
    let mut out = Vec::new();
    for x in a {
        for y in b {
            let mut lits = x.clone();
            lits.extend(y.iter().cloned());
            if let Some(c) = normalize_conj(lits) {
                out.push(c);
            }
        }
    }
    simplify_set(out, ctx)
}

/// The shifts and loads a literal makes, as `(shifts applied, bytes needed past that base)`:
/// a literal needs `captured >= base(k) + end` for each; shifts only move the base forward, so
/// it also needs that much past any shorter prefix of its path.
fn extents(lit: &Lit) -> impl Iterator<Item = (usize, u32)> + '_ {
    let own = match lit.atom.field {
        Field::Packet { offset, width } => {
            Some((lit.path.len(), u32::from(offset) + u32::from(width.bytes())))
        }
        Field::CapturedFromBase if lit.atom.op == CmpOp::Ge && lit.atom.mask == u32::MAX => {
            Some((lit.path.len(), lit.atom.value))
        }
        _ => None,
    };
    let shifts = lit
        .path
        .iter()
        .enumerate()
        .map(|(k, s)| (k, u32::from(s.offset) + u32::from(s.width.bytes())));
    own.into_iter().chain(shifts)
}

fn is_bounds(lit: &Lit) -> bool {
    matches!(lit.atom.field, Field::CapturedFromBase)
        && lit.atom.op == CmpOp::Ge
        && lit.atom.mask == u32::MAX
}

/// Values of `x & mask` a literal allows, as closed intervals.
fn allowed(lit: &Lit) -> Vec<(u64, u64)> {
    let max = u64::from(lit.atom.mask);
    let v = u64::from(lit.atom.value);
    let mut out = Vec::new();
    let mut push = |lo: u64, hi: u64| {
        if lo <= hi && lo <= max {
            out.push((lo, hi.min(max)));
        }
    };
    match lit.atom.op {
        CmpOp::Eq => push(v, v),
        CmpOp::Ne => {
            if v > 0 {
                push(0, v - 1);
            }
            push(v + 1, max);
        }
        CmpOp::Lt => {
            if v > 0 {
                push(0, v - 1);
            }
        }
        CmpOp::Le => push(0, v),
        CmpOp::Gt => push(v + 1, max),
        CmpOp::Ge => push(v, max),
    }
    out
}

fn subset(a: &[(u64, u64)], b: &[(u64, u64)]) -> bool {
    // Every interval of a lies in one interval of b (b's intervals are disjoint and not
    // adjacent-merged, but a `Ne` hole is the only gap they can have).
    a.iter()
        .all(|&(lo, hi)| b.iter().any(|&(blo, bhi)| blo <= lo && hi <= bhi))
}

fn disjoint(a: &[(u64, u64)], b: &[(u64, u64)]) -> bool {
    a.iter()
        .all(|&(lo, hi)| b.iter().all(|&(blo, bhi)| hi < blo || bhi < lo))
}

/// How two literals on the same value relate.
#[derive(PartialEq, Eq)]
enum Relation {
    Unknown,
    /// The first implies the second.
    Implies,
    /// They cannot both hold.
    Contradicts,
}

fn relate(a: &Lit, b: &Lit) -> Relation {
    if is_bounds(b) {
        let depth = b.path.len();
        if a.path.len() >= depth
            && a.path[..depth] == b.path[..]
            && extents(a).any(|(k, end)| k >= depth && end >= b.atom.value)
        {
            return Relation::Implies;
        }
        return Relation::Unknown;
    }
    if a.path != b.path || a.atom.field != b.atom.field || a.program != b.program || is_bounds(a) {
        return Relation::Unknown;
    }
    let (ma, mb) = (a.atom.mask, b.atom.mask);
    if ma == mb {
        let (sa, sb) = (allowed(a), allowed(b));
        if disjoint(&sa, &sb) {
            return Relation::Contradicts;
        }
        if subset(&sa, &sb) {
            return Relation::Implies;
        }
        return Relation::Unknown;
    }
    // An equality on a wider mask decides any test on a narrower one.
    if a.atom.op == CmpOp::Eq && ma & mb == mb {
        return if b.atom.op.holds(a.atom.value & mb, b.atom.value) {
            Relation::Implies
        } else {
            Relation::Contradicts
        };
    }
    if a.atom.op == CmpOp::Eq && b.atom.op == CmpOp::Eq {
        let common = ma & mb;
        if a.atom.value & common != b.atom.value & common {
            return Relation::Contradicts;
        }
    }
    if b.atom.op == CmpOp::Eq && ma & mb == ma && !a.atom.op.holds(b.atom.value & ma, a.atom.value)
    {
        return Relation::Contradicts;
    }
    Relation::Unknown
}

/// Sorts, deduplicates and drops implied literals; `None` when two literals contradict.
pub fn normalize_conj(mut lits: Vec<Lit>) -> Option<Conj> {
    lits.sort();
    lits.dedup();
    let mut keep = alloc::vec![true; lits.len()];
    for i in 0..lits.len() {
        for j in 0..lits.len() {
            if i == j || !keep[j] || !keep[i] {
                continue;
            }
            match relate(&lits[j], &lits[i]) {
                Relation::Contradicts => return None,
                Relation::Implies => keep[i] = false,
                Relation::Unknown => {}
            }
        }
    }
    Some(
        lits.into_iter()
            .zip(keep)
            .filter_map(|(l, k)| k.then_some(l))
            .collect(),
    )
}

/// Whether every packet `b` matches, `a` matches too (each literal of `a` is implied by one
/// of `b`).
fn subsumes(a: &Conj, b: &Conj) -> bool {
    a.iter().all(|la| {
        b.iter()
            .any(|lb| lb == la || relate(lb, la) == Relation::Implies)
    })
}

fn remove_subsumed(set: &mut Vec<Conj>) {
    set.sort();
    set.dedup();
    // Shorter conjunctions first: they are the likely subsumers.
    set.sort_by_key(|c| c.len());
    let mut keep = alloc::vec![true; set.len()];
    for i in 0..set.len() {
        for j in 0..set.len() {
            if i != j && keep[j] && keep[i] && subsumes(&set[j], &set[i]) {
                keep[i] = false;
            }
        }
    }
    let mut k = keep.into_iter();
    set.retain(|_| k.next().unwrap_or(false));
}

fn simplify_set(mut set: Vec<Conj>, ctx: &Ctx) -> Result<Vec<Conj>, CompileError> {
    remove_subsumed(&mut set);
    if set.len() <= WEAKEN_LIMIT {
        weaken(&mut set);
        remove_subsumed(&mut set);
    }
    if set.len() > MAX_CONJUNCTIONS {
        return Err(ctx.too_complex(&format!("more than {MAX_CONJUNCTIONS} conjunctions")));
    }
    Ok(set)
}

/// Replaces a literal `x` of a conjunction `c` by its bounds check when `c` with `x` negated is
/// covered by another conjunction (or impossible): then `c` with only the bounds check matches
/// the same packets as the whole set did.
fn weaken(set: &mut [Conj]) {
    for _round in 0..4 {
        let mut changed = false;
        for i in 0..set.len() {
            let mut li = 0;
            while li < set[i].len() {
                let x = set[i][li].clone();
                if is_bounds(&x) {
                    li += 1;
                    continue;
                }
                let mut flipped: Vec<Lit> = set[i].clone();
                flipped[li] = x.negate();
                let covered = match normalize_conj(flipped) {
                    None => true,
                    Some(r) => set
                        .iter()
                        .enumerate()
                        .any(|(j, d)| j != i && subsumes(d, &r)),
                };
                if !covered {
                    li += 1;
                    continue;
                }
                let mut lits: Vec<Lit> = set[i].clone();
                lits.remove(li);
                lits.extend(x.bounds());
                // Dropping a literal cannot make a consistent conjunction contradictory.
                if let Some(c) = normalize_conj(lits) {
                    set[i] = c;
                    changed = true;
                    li = 0;
                } else {
                    li += 1;
                }
            }
        }
        if !changed {
            break;
        }
    }
}

/// Boxed to keep `Cond` construction in tests short.
#[cfg(test)]
fn lit_cond(l: Lit) -> alloc::boxed::Box<Cond> {
    alloc::boxed::Box::new(Cond::Lit(l))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::Width;

    fn l(offset: u16, op: CmpOp, value: u32) -> Lit {
        Lit::packet(Vec::new(), offset, Width::B2, 0xffff, op, value)
    }

    #[test]
    fn contradictions_and_implications() {
        assert!(
            normalize_conj(alloc::vec![
                l(12, CmpOp::Eq, 0x800),
                l(12, CmpOp::Eq, 0x86dd)
            ])
            .is_none()
        );
        assert_eq!(
            normalize_conj(alloc::vec![
                l(12, CmpOp::Eq, 0x800),
                l(12, CmpOp::Ne, 0x86dd)
            ]),
            Some(alloc::vec![l(12, CmpOp::Eq, 0x800)])
        );
        assert_eq!(
            normalize_conj(alloc::vec![
                l(20, CmpOp::Eq, 80),
                Lit::captured_at_least(Vec::new(), 22)
            ]),
            Some(alloc::vec![l(20, CmpOp::Eq, 80)])
        );
        assert!(
            normalize_conj(alloc::vec![l(20, CmpOp::Ge, 1000), l(20, CmpOp::Lt, 1000)]).is_none()
        );
    }

    #[test]
    fn or_guards_reproduce_bpf_aborts() {
        // `[20] == 80 or [30] == 1`: BPF loads [20] first, so a packet too short for it is
        // rejected even when ... it cannot be, [30] is further. Reversed: `[30] == 1 or
        // [20] == 80` on a 25-byte packet aborts at [30], so the second disjunct must carry
        // the bounds check of the first.
        let cond = Cond::Or(
            lit_cond(l(30, CmpOp::Eq, 1)),
            lit_cond(l(20, CmpOp::Eq, 80)),
        );
        let dnf = to_dnf(&cond, (0, 0)).unwrap();
        assert_eq!(dnf.len(), 2);
        assert!(dnf.contains(&alloc::vec![l(30, CmpOp::Eq, 1)]));
        assert!(dnf.contains(&alloc::vec![
            l(20, CmpOp::Eq, 80),
            Lit::captured_at_least(Vec::new(), 32)
        ]));
    }

    #[test]
    fn or_of_same_field_needs_no_guards() {
        let cond = Cond::Or(
            lit_cond(l(12, CmpOp::Eq, 0x800)),
            lit_cond(l(12, CmpOp::Eq, 0x806)),
        );
        let mut dnf = to_dnf(&cond, (0, 0)).unwrap();
        dnf.sort();
        assert_eq!(
            dnf,
            alloc::vec![
                alloc::vec![l(12, CmpOp::Eq, 0x800)],
                alloc::vec![l(12, CmpOp::Eq, 0x806)]
            ]
        );
    }

    #[test]
    fn hostile_growth_is_refused() {
        // (a1 or b1) and (a2 or b2) and ... doubles per term.
        let mut cond = Cond::True;
        for i in 0..20u16 {
            let term = Cond::Or(
                lit_cond(l(2 * i, CmpOp::Eq, 1)),
                lit_cond(l(2 * i + 100, CmpOp::Eq, 2)),
            );
            cond = cond.and(term);
        }
        let err = to_dnf(&cond, (0, 5)).unwrap_err();
        assert!(
            err.message.starts_with("expression too complex"),
            "{}",
            err.message
        );
    }
}
