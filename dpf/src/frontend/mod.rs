//! pcap-filter front end: what a tcpdump user types, compiled to conjunctive filters with
//! tcpdump's verdicts.
//!
//! `lexer` → `parser` (→ `ast`) → `lower` (→ `cond`, with `relation` for `ip[9] = 6`-style
//! tests) → `normalize` (DNF with BPF's abort-on-short-packet semantics) → `UnverifiedFilter`
//! → `verify`. The compiled filters all carry the id given; a packet matches the expression
//! when any of them matches (see [`matches_any`]).
#![forbid(unsafe_code)]

mod arith;
mod ast;
mod cond;
mod geneve;
mod lexer;
mod link;
mod lower;
mod normalize;
mod parser;
mod protochain;
mod protocols;
mod relation;
mod services;

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use crate::ir::{
    Atom, CmpOp, Eval, Field, Filter, FilterId, MAX_SHIFTS, MAX_STEPS, Packet, Step,
    UnverifiedFilter, VerifyError, reference_matches,
};
use cond::Lit;
pub use normalize::{MAX_CONJUNCTIONS, MAX_PRODUCT_PAIRS};
pub use parser::{MAX_NESTING, MAX_OPERATORS};

/// Why an expression did not compile, and where.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CompileError {
    /// Byte offset in the expression where the problem starts (the length of the expression
    /// when something is missing at its end).
    pub position: usize,
    /// Byte offset just past the offending text (equal to `position` when nothing is there).
    pub end: usize,
    /// What is wrong, for a person.
    pub message: String,
}

impl CompileError {
    /// An error over `position..end`.
    pub fn new(position: usize, end: usize, message: impl Into<String>) -> CompileError {
        CompileError {
            position,
            end: end.max(position),
            message: message.into(),
        }
    }
}

impl fmt::Display for CompileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (at byte {})", self.message, self.position)
    }
}

/// Compiles a pcap-filter expression into conjunctive filters that all carry `id`; a packet
/// matches the expression exactly when at least one of them matches.
///
/// An empty expression (only blanks) matches every packet, as in tcpdump, and compiles to one
/// filter whose only atom always holds. An expression no packet can match is refused, as
/// libpcap refuses it ("expression rejects all packets").
pub fn compile(expr: &str, id: FilterId) -> Result<Vec<Filter>, CompileError> {
    let tokens = lexer::tokenize(expr)?;
    let Some(ast) = parser::parse(&tokens, expr)? else {
        return Ok(alloc::vec![verify(id, alloc::vec![always()], expr)?]);
    };
    let cond = lower::lower(&ast)?;
    let conjunctions = normalize::to_dnf(&cond, (0, expr.len()))?;
    if conjunctions.is_empty() {
        return Err(CompileError::new(
            0,
            expr.len(),
            "expression rejects all packets",
        ));
    }
    conjunctions
        .into_iter()
        .map(|conj| verify(id, steps_of(&conj, expr)?, expr))
        .collect()
}

/// Whether any of `filters` matches, by the reference evaluator: the expression's verdict.
pub fn matches_any(filters: &[Filter], packet: &Packet<'_>) -> bool {
    filters.iter().any(|f| reference_matches(f, packet))
}

/// An atom that holds for every packet (it loads nothing).
fn always() -> Step {
    Step::Test(Atom {
        field: Field::WireLen,
        mask: 0,
        op: CmpOp::Eq,
        value: 0,
    })
}

/// Orders a conjunction's literals into steps: the literals at the frame start, then the
/// first shift, the literals after it, and so on. The literals' shift paths must nest.
fn steps_of(conj: &[Lit], expr: &str) -> Result<Vec<Step>, CompileError> {
    if conj.is_empty() {
        return Ok(alloc::vec![always()]);
    }
    let deepest = conj
        .iter()
        .max_by_key(|l| l.path.len())
        .map(|l| l.path.clone())
        .unwrap_or_default();
    if conj.iter().any(|l| deepest[..l.path.len()] != l.path[..]) {
        return Err(CompileError::new(
            0,
            expr.len(),
            "unsupported: one alternative of this expression reads fields at two different computed offsets",
        ));
    }
    if deepest.len() > MAX_SHIFTS {
        return Err(CompileError::new(
            0,
            expr.len(),
            alloc::format!("expression too complex: more than {MAX_SHIFTS} computed offsets"),
        ));
    }
    let mut steps = Vec::new();
    for depth in 0..=deepest.len() {
        let mut here: Vec<&Lit> = conj.iter().filter(|l| l.path.len() == depth).collect();
        here.sort_by_key(|l| l.atom);
        let (programs, here): (Vec<&Lit>, Vec<&Lit>) =
            here.into_iter().partition(|l| l.program.is_some());
        let mut atoms: Vec<Atom> = here.into_iter().map(|l| l.atom).collect();
        last_word_first(&mut atoms);
        steps.extend(atoms.into_iter().map(Step::Test));
        // Expressions after the plain tests at their base: those are cheaper and often
        // decide first.
        steps.extend(programs.into_iter().filter_map(|l| {
            let program = l.program.clone()?;
            Some(Step::Eval(alloc::boxed::Box::new(Eval {
                program,
                mask: l.atom.mask,
                op: l.atom.op,
                value: l.atom.value,
            })))
        }));
        if let Some(shift) = deepest.get(depth) {
            steps.push(Step::Shift(*shift));
        }
    }
    Ok(steps)
}

/// Reverses each run of 4-byte equality atoms on adjacent words (a multi-word address, such as
/// an IPv6 host), so its last word is tested first, as libpcap's gen_bcmp does: the low word
/// varies most between hosts, so a trie of many host filters dispatches on it first and finds
/// the other words as constants under each key. `atoms` are sorted by field.
fn last_word_first(atoms: &mut [Atom]) {
    let word = |a: &Atom| match a.field {
        Field::Packet {
            offset,
            width: crate::ir::Width::B4,
        } if a.op == CmpOp::Eq => Some(offset),
        _ => None,
    };
    let mut start = 0;
    while start < atoms.len() {
        let mut end = start + 1;
        if let Some(mut at) = word(&atoms[start]) {
            while end < atoms.len() && word(&atoms[end]) == Some(at + 4) {
                at += 4;
                end += 1;
            }
        }
        atoms[start..end].reverse();
        start = end;
    }
}

fn verify(id: FilterId, steps: Vec<Step>, expr: &str) -> Result<Filter, CompileError> {
    let count = steps.len();
    UnverifiedFilter { id, steps }.verify().map_err(|e| match e {
        VerifyError::TooManySteps { .. } => CompileError::new(
            0,
            expr.len(),
            alloc::format!(
                "expression too complex: one alternative needs {count} steps, dpf allows {MAX_STEPS}"
            ),
        ),
        other => CompileError::new(0, expr.len(), alloc::format!("unsupported: {other}")),
    })
}

#[cfg(test)]
mod tests;
