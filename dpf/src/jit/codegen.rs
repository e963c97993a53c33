//! Code generation: the trie walked once, each node turned into x86_64 with `dynasm!`.
//!
//! Register use inside the generated function (System V, no callee-saved register touched):
//! - `r9`  = address of the current base (`data + base`)
//! - `r10` = captured bytes from the base on (`captured_len - base`, signed: a shift may move
//!   the base past the end)
//! - `r11d` = wire length (set up only when some atom reads it)
//! - `r8`  = best [`Score`] so far (0 = none); returned in `rax`
//! - `rax`, `rcx`, `rdx`, `rsi`, `rdi` = scratch (`rdi`: a table's address, then in a
//!   templated body the entry's score, kept or cleared by each compare; `rdx` in a templated
//!   body after a shift: how far that shift moved the base from `r9`)
//!
//! The code has the trie's shape: a node's test jumps to `next` (its continuation: the next
//! alternative of its parent) when it fails, and falls into its own alternatives when it holds.
//! A shift saves `r9`/`r10` on the stack around its subtree, so backtracking to an alternative
//! finds its base again (inside a templated body nothing backtracks, so a shift there only
//! sets `rdx`). Before the second and later alternatives a node compares the best score
//! held with the alternative's bound and skips the rest of the list when nothing there can win.
//! Templated hash tables are the exception to "jump on failure": their shared body runs for hit
//! and miss alike and clears the score with `cmov`, because whether a packet's flow is bound is
//! the least predictable branch in the code (see [`Codegen::templated_lookup`]).
//!
//! Bounds checks: for every node, `need` is the fewest bytes from the current base that *every*
//! filter through it loads (up to its next shift). At the first load not covered by the bytes
//! already checked, one `cmp r10, need` covers it and everything below that needs no more; a
//! failing check skips the subtree, which is exact because each filter in it would fail anyway.
#![forbid(unsafe_code)]

use alloc::vec;
use alloc::vec::Vec;

use dynasm::dynasm;

use super::coalesce::{self, Compare, EqAtom};
use super::emitter::{DynamicLabel, EmitError, Emitter};
use super::hash_table::{HashLayout, RangedLayout};
use super::program_code;
use super::template::{self, Chain, EntryLayout, ShapeStep};
use crate::ir::{CmpOp, Field, Shift, Width};
use crate::trie::{NodeIndex, NodeKind, Trie};

/// A disjunction with more keys than this is templated when most share a chain shape.
pub const MAX_COMPARE_CHAIN: usize = 3;

/// A disjunction of keys with code of their own (not templated) is a compare chain up to this
/// many keys; more get a hash table and an indirect jump.
pub const MAX_KEY_CODE_CHAIN: usize = 6;

/// A hash table to lay out after the code, once every target is placed.
#[derive(Debug)]
struct PendingTable {
    /// Where slot 0 goes in the data (allocated when the table is planned, so code can name
    /// it as a constant: [`Codegen::allocate_data`]).
    offset: usize,
    /// Which key is in which slot.
    slots: Vec<Option<usize>>,
    keys: Vec<u32>,
    entries: TableEntries,
}

/// The tables a [`Codegen::selected_tables`] dispatch chooses between, one per key.
#[derive(Debug)]
struct SelectedTables {
    /// The field every table is keyed on, and its mask.
    field: Field,
    mask: u32,
    /// Bytes every filter below loads (the same for each table).
    need: u32,
    /// Per key: the templated dispatch below it, its templated keys and their chains.
    children: Vec<NodeIndex>,
    keys: Vec<Vec<u32>>,
    chains: Vec<Vec<Chain>>,
    /// Per key: the keys below it whose chains do not fit the template, and their nodes.
    exceptions: Vec<(Vec<u32>, Vec<NodeIndex>)>,
}

/// A 256-entry selector (`u32` table offsets within the data, indexed by a byte) to lay out
/// in the data.
#[derive(Debug)]
struct PendingSelector {
    /// Where it goes in the data.
    offset: usize,
    /// Per byte value: its table's offset in the data (a never-matching empty table for the
    /// bytes that are no key), as a `u64` the code adds to the data's address in one
    /// instruction.
    entries: Vec<u64>,
}

/// What a table's entries carry besides the key.
#[derive(Debug)]
enum TableEntries {
    /// `i32` offset of the key's code from the table (0 = empty slot).
    Jumps(Vec<DynamicLabel>),
    /// The key's chain constants and score, for one shared body of code; the index of its
    /// [`TemplateTable`] record.
    Templates(EntryLayout, Vec<Chain>, usize),
    /// A templated table of one empty slot, which every probe misses: what a table choice
    /// yields for a key that has no table, so the choice needs no branch.
    Empty(EntryLayout),
}

/// Counts of what the generator did, for tests and `--disasm`-style reports.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CodegenStats {
    /// Bounds checks emitted.
    pub bounds_checks: usize,
    /// Equality atoms that went through coalescing.
    pub coalesced_atoms: usize,
    /// Compares those atoms became.
    pub coalesced_compares: usize,
    /// Hash tables emitted whose entries jump to per-key code.
    pub hash_tables: usize,
    /// Hash tables emitted whose keys share one templated body.
    pub templated_tables: usize,
    /// Compare chains emitted (disjunctions of 2..=MAX_KEY_CODE_CHAIN keys).
    pub compare_chains: usize,
    /// Dispatches on a few keys turned into a choice of templated table by `cmov`.
    pub selected_dispatches: usize,
}

/// Where a templated table sits in the code and how it is probed, so a key can be added or
/// removed by rewriting its bytes instead of regenerating.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TemplateTable {
    /// The dispatch node the table implements.
    pub dispatch: NodeIndex,
    /// Offset of slot 0 in the code; the slot count is the `u64` just before it.
    pub offset: usize,
    /// Slot count (any, see [`RangedLayout`]).
    pub slots: usize,
    /// Hash multiplier.
    pub multiplier: u32,
    /// False when the code has no probe loop (every key must sit in its home slot).
    pub probes: bool,
    /// Entry layout.
    pub entry: EntryLayout,
    /// The chain every key leads to.
    pub shape: Vec<ShapeStep>,
    /// Keys present.
    pub keys: usize,
}

/// Machine code for a trie: the function starts at `entry`, hash tables follow the code.
#[derive(Debug)]
pub struct GeneratedCode {
    /// Code and data.
    pub code: Vec<u8>,
    /// Offset of the function's first instruction.
    pub entry: usize,
    /// Where the instructions end and the hash tables begin.
    pub instructions_end: usize,
    /// What was generated.
    pub stats: CodegenStats,
    /// The templated tables, for patching.
    pub templates: Vec<TemplateTable>,
    /// Offsets of the `u64` immediates that must hold the tables' address (see
    /// [`super::CompiledTrie::data_fixups`]); empty when there are no tables.
    pub data_fixups: Vec<usize>,
    /// Where the tables start (page-aligned; the code length when there are none).
    pub data_offset: usize,
}

struct Codegen<'t> {
    trie: &'t Trie,
    ops: Emitter,
    /// Per node slot: bytes every filter through the node loads from the current base.
    need: Vec<u32>,
    tables: Vec<PendingTable>,
    selectors: Vec<PendingSelector>,
    templates: Vec<TemplateTable>,
    stats: CodegenStats,
    /// A label after the instructions that jump-table targets are relative to.
    anchor: DynamicLabel,
    /// Offsets of the `u64` immediates that load the tables' address (the loader writes it).
    data_fixups: Vec<usize>,
    /// A `u64` 0 after the instructions (readable with them), which a `cmov` can load.
    zero_slot: DynamicLabel,
    /// Whether any code reads [`Codegen::zero_slot`].
    uses_zero_slot: bool,
    /// Bytes of data (tables, selectors) allocated so far.
    data_len: usize,
    /// Bytes that tables may still take beyond packed ones to be sparse ([`templated_slots`]).
    sparse_left: usize,
    /// The empty tables allocated ([`TableEntries::Empty`]): entry size, offset.
    empty_tables: Vec<(usize, usize)>,
    /// While emitting a node: the best score anything that may still run after its subtree
    /// can reach. A match at least this good returns at once.
    later: u64,
    /// While emitting a node: shifts whose saved base (two pushes each) is on the stack.
    depth: u32,
    /// While emitting a node: no accept can have run on any path to it, so `r8` is 0.
    r8_zero: bool,
    /// While emitting a templated body after a shift: the base is `r9 + rdx` (and `r10` is
    /// still the bytes captured from `r9`), see [`Codegen::predicated_shift`].
    body_shifted: bool,
}

/// Tables start on a page of their own, so a loader can map them read+write apart from the
/// read+execute code.
pub const DATA_ALIGN: usize = 4096;

/// Bytes past the base that loading `field` touches (0 for fields that are not loads).
fn field_end(field: Field) -> u32 {
    match field {
        Field::Packet { offset, width } => offset as u32 + width.bytes() as u32,
        Field::WireLen | Field::CapturedFromBase => 0,
    }
}

/// Computes `need` for every node below `index` (post-order, iteratively: kernel stacks are
/// small and a trie can be 130 nodes deep).
fn compute_need(trie: &Trie) -> Vec<u32> {
    let mut need = vec![0u32; trie.node_slots()];
    // (node, children done?)
    let mut stack = vec![(Trie::ROOT, false)];
    while let Some((index, done)) = stack.pop() {
        let node = trie.node(index);
        if !done {
            stack.push((index, true));
            stack.extend(node.alternatives().iter().map(|&a| (a, false)));
            continue;
        }
        let below = || {
            node.alternatives()
                .iter()
                .map(|a| need[a.0 as usize])
                .min()
                .unwrap_or(0)
        };
        need[index.0 as usize] = match node.kind() {
            NodeKind::Accept { .. } | NodeKind::Vacant => 0,
            // What follows a shift is on another base.
            NodeKind::Shift(shift) => shift.offset as u32 + shift.width.bytes() as u32,
            NodeKind::Test(atom) => field_end(atom.field).max(below()),
            // A program checks its own loads.
            NodeKind::Eval(_) => below(),
            NodeKind::Dispatch { field, .. } => field_end(*field).max(below()),
            NodeKind::Key { .. } | NodeKind::Root => below(),
        };
    }
    need
}

/// True when some atom or program reads the wire length (`r11d` is set up only then).
fn reads_wire_len(trie: &Trie) -> bool {
    (0..trie.node_slots() as u32).any(|i| {
        let kind = trie.node(NodeIndex(i)).kind();
        if let NodeKind::Eval(eval) = kind {
            return eval.program.reads_wire_len();
        }
        matches!(
            kind,
            NodeKind::Test(crate::ir::Atom {
                field: Field::WireLen,
                ..
            }) | NodeKind::Dispatch {
                field: Field::WireLen,
                ..
            }
        )
    })
}

/// Generates the code for `trie`.
pub fn generate(trie: &Trie) -> Result<GeneratedCode, EmitError> {
    let mut ops = Emitter::new();
    let anchor = ops.new_dynamic_label();
    let zero_slot = ops.new_dynamic_label();
    let mut generator = Codegen {
        trie,
        ops,
        need: compute_need(trie),
        tables: Vec::new(),
        selectors: Vec::new(),
        templates: Vec::new(),
        stats: CodegenStats::default(),
        anchor,
        data_fixups: Vec::new(),
        zero_slot,
        uses_zero_slot: false,
        data_len: 0,
        sparse_left: SPARSE_EXTRA_BYTES,
        empty_tables: Vec::new(),
        later: 0,
        depth: 0,
        r8_zero: true,
        body_shifted: false,
    };
    let entry = generator.ops.offset();
    dynasm!(generator.ops
        ; .arch x64
        ; mov r9, rdi
        ; mov r10, rsi
    );
    if reads_wire_len(trie) {
        dynasm!(generator.ops ; .arch x64 ; mov r11d, edx);
    }
    dynasm!(generator.ops
        ; .arch x64
        ; xor r8d, r8d
    );
    generator.alternatives(Trie::ROOT, 0);
    dynasm!(generator.ops
        ; .arch x64
        ; mov rax, r8
        ; ret
    );
    let instructions_end = generator.ops.offset();
    let data_offset = generator.emit_tables()?;
    let data_fixups = core::mem::take(&mut generator.data_fixups);
    let stats = generator.stats;
    let templates = core::mem::take(&mut generator.templates);
    Ok(GeneratedCode {
        code: generator.ops.finish()?,
        entry,
        instructions_end,
        stats,
        templates,
        data_fixups,
        data_offset,
    })
}

impl Codegen<'_> {
    fn need(&self, index: NodeIndex) -> u32 {
        self.need[index.0 as usize]
    }

    /// Tries `parent`'s alternatives in order; `checked` bytes from the base are known captured.
    fn alternatives(&mut self, parent: NodeIndex, checked: u32) {
        let trie = self.trie;
        let alternatives = trie.node(parent).alternatives();
        let end = self.ops.new_dynamic_label();
        let outer = self.later;
        let outer_zero = self.r8_zero;
        for (i, &alternative) in alternatives.iter().enumerate() {
            // An earlier alternative may have matched without returning.
            self.r8_zero = outer_zero && i == 0;
            // Sorted best bound first: the next alternative is the best that may follow.
            let following = alternatives
                .get(i + 1)
                .map_or(0, |&a| trie.node(a).bound().0);
            self.later = outer.max(following);
            if i > 0 {
                // Sorted best bound first: once the best held reaches this bound, stop.
                let bound = trie.node(alternative).bound().0 as i64;
                dynasm!(self.ops
                    ; .arch x64
                    ; mov rax, QWORD bound
                    ; cmp r8, rax
                    ; jae =>end
                );
            }
            let next = self.ops.new_dynamic_label();
            self.node(alternative, checked, next);
            dynasm!(self.ops ; .arch x64 ; =>next);
        }
        self.later = outer;
        self.r8_zero = outer_zero;
        dynasm!(self.ops ; .arch x64 ; =>end);
    }

    /// A match scoring `rax` that nothing later can beat: returns it, or the best held if that
    /// is better (no compare needed while nothing can have matched yet).
    fn return_best_of_rax(&mut self) {
        if !self.r8_zero {
            dynasm!(self.ops
                ; .arch x64
                ; cmp rax, r8
                ; cmovb rax, r8
            );
        }
        if self.depth > 0 {
            let bytes = (16 * self.depth) as i32;
            dynasm!(self.ops ; .arch x64 ; add rsp, DWORD bytes);
        }
        dynasm!(self.ops ; .arch x64 ; ret);
    }

    /// After a match: nothing left can beat the best held, so drop the saved bases and return.
    fn return_now(&mut self) {
        if self.depth > 0 {
            let bytes = (16 * self.depth) as i32;
            dynasm!(self.ops ; .arch x64 ; add rsp, DWORD bytes);
        }
        dynasm!(self.ops
            ; .arch x64
            ; mov rax, r8
            ; ret
        );
    }

    /// Code for one node: on failure (or once its subtree is explored) control reaches `next`.
    fn node(&mut self, index: NodeIndex, checked: u32, next: DynamicLabel) {
        let trie = self.trie;
        match trie.node(index).kind() {
            NodeKind::Accept { score, .. } => {
                let done = score.0 >= self.later;
                let score = score.0 as i64;
                dynasm!(self.ops ; .arch x64 ; mov rax, QWORD score);
                if done {
                    self.return_best_of_rax();
                } else {
                    dynasm!(self.ops
                        ; .arch x64
                        ; cmp rax, r8
                        ; cmova r8, rax
                    );
                }
            }
            NodeKind::Test(atom) => {
                let checked = self.ensure(field_end(atom.field), index, checked, next);
                self.load_value(atom.field, atom.mask);
                let value = atom.value as i32;
                dynasm!(self.ops ; .arch x64 ; cmp eax, DWORD value);
                self.branch_unless(atom.op, next);
                self.alternatives(index, checked);
            }
            NodeKind::Eval(eval) => {
                program_code::emit(&mut self.ops, &eval.program, next);
                if eval.mask != u32::MAX {
                    let mask = eval.mask as i32;
                    dynasm!(self.ops ; .arch x64 ; and eax, DWORD mask);
                }
                let value = eval.value as i32;
                dynasm!(self.ops ; .arch x64 ; cmp eax, DWORD value);
                self.branch_unless(eval.op, next);
                self.alternatives(index, checked);
            }
            NodeKind::Shift(shift) => {
                self.shift_load(*shift, index, checked, next);
                self.depth += 1;
                self.alternatives(index, 0);
                self.depth -= 1;
                dynasm!(self.ops
                    ; .arch x64
                    ; pop r10
                    ; pop r9
                );
            }
            NodeKind::Dispatch { field, mask, keys } => {
                if keys.len() == 1 && matches!(field, Field::Packet { .. }) {
                    self.equality_run(index, checked, next);
                } else {
                    let checked = self.ensure(field_end(*field), index, checked, next);
                    self.dispatch(index, (*field, *mask), checked, next);
                }
            }
            // Never an alternative: keys are reached through their dispatch.
            NodeKind::Key { .. } | NodeKind::Root | NodeKind::Vacant => {}
        }
    }

    /// After `cmp eax, value`: jump to `next` unless `op` holds (unsigned conditions).
    fn branch_unless(&mut self, op: CmpOp, next: DynamicLabel) {
        match op {
            CmpOp::Eq => dynasm!(self.ops ; .arch x64 ; jne =>next),
            CmpOp::Ne => dynasm!(self.ops ; .arch x64 ; je =>next),
            CmpOp::Lt => dynasm!(self.ops ; .arch x64 ; jae =>next),
            CmpOp::Le => dynasm!(self.ops ; .arch x64 ; ja =>next),
            CmpOp::Gt => dynasm!(self.ops ; .arch x64 ; jbe =>next),
            CmpOp::Ge => dynasm!(self.ops ; .arch x64 ; jb =>next),
        }
    }

    /// Loads a shift's amount and moves the base, saving the old one on the stack; the caller
    /// emits the subtree and then `pop r10; pop r9`. A failing load goes to `next` before the
    /// push.
    fn shift_load(&mut self, shift: Shift, node: NodeIndex, checked: u32, next: DynamicLabel) {
        let field = Field::Packet {
            offset: shift.offset,
            width: shift.width,
        };
        self.ensure(field_end(field), node, checked, next);
        self.load_value(field, shift.mask);
        self.shift_eax(shift.shift);
        dynasm!(self.ops
            ; .arch x64
            ; push r9
            ; push r10
            ; add r9, rax
            ; sub r10, rax
        );
    }

    /// A shift inside a templated body: the amount goes into `rdx` (added to it after an
    /// earlier shift of the body), which later loads, bounds checks and
    /// [`Field::CapturedFromBase`] add to `r9`/subtract from `r10`
    /// ([`Codegen::body_shifted`]). A failing load of the amount goes to `next`.
    fn predicated_shift(
        &mut self,
        shift: Shift,
        node: NodeIndex,
        checked: u32,
        next: DynamicLabel,
    ) {
        let field = Field::Packet {
            offset: shift.offset,
            width: shift.width,
        };
        self.ensure(field_end(field), node, checked, next);
        if self.body_shifted {
            self.load_value(field, shift.mask);
            self.shift_eax(shift.shift);
            dynasm!(self.ops ; .arch x64 ; add rdx, rax);
            return;
        }
        // The first shift loads straight into `edx` (a 32-bit write: the upper half is 0).
        let offset = shift.offset as i32;
        match shift.width {
            Width::B1 => dynasm!(self.ops ; .arch x64 ; movzx edx, BYTE [r9 + offset]),
            Width::B2 => dynasm!(self.ops
                ; .arch x64
                ; movzx edx, WORD [r9 + offset]
                ; rol dx, 8
            ),
            Width::B4 => dynasm!(self.ops
                ; .arch x64
                ; mov edx, DWORD [r9 + offset]
                ; bswap edx
            ),
        }
        if shift.mask != shift.width.max_value() {
            let mask = shift.mask as i32;
            dynasm!(self.ops ; .arch x64 ; and edx, DWORD mask);
        }
        if shift.shift >= 0 {
            let bits = shift.shift;
            dynasm!(self.ops ; .arch x64 ; shl edx, BYTE bits);
        } else {
            let bits = -shift.shift;
            dynasm!(self.ops ; .arch x64 ; shr edx, BYTE bits);
        }
    }

    /// `eax <<= bits` (`>>=` for a negative count), as a shift's amount is scaled.
    fn shift_eax(&mut self, bits: i8) {
        if bits >= 0 {
            dynasm!(self.ops ; .arch x64 ; shl eax, BYTE bits);
        } else {
            let bits = -bits;
            dynasm!(self.ops ; .arch x64 ; shr eax, BYTE bits);
        }
    }

    /// Makes sure `end` bytes from the base are captured before a load: when `checked` does not
    /// cover it, checks `need(index)` (which is at least `end`) and skips to `next` if short.
    fn ensure(&mut self, end: u32, index: NodeIndex, checked: u32, next: DynamicLabel) -> u32 {
        if end <= checked {
            return checked;
        }
        let need = self.need(index).max(end);
        self.stats.bounds_checks += 1;
        let need_imm = need as i32;
        if self.body_shifted {
            // The base is `r9 + rdx`: `r10 - rdx >= need`, as `r10 >= rdx + need` (signed).
            dynasm!(self.ops
                ; .arch x64
                ; lea rax, [rdx + need_imm]
                ; cmp r10, rax
                ; jl =>next
            );
        } else {
            dynasm!(self.ops
                ; .arch x64
                ; cmp r10, DWORD need_imm
                ; jl =>next
            );
        }
        need
    }

    /// `eax` = the field's bytes as loaded (little-endian), masked by `mask` byte-swapped within
    /// the width: equal to a natural value `v` exactly when it equals `swap_within(v, width)`.
    fn load_raw(&mut self, offset: u16, width: Width, mask: u32) {
        let offset = offset as i32;
        match (width, self.body_shifted) {
            (Width::B1, false) => dynasm!(self.ops ; .arch x64 ; movzx eax, BYTE [r9 + offset]),
            (Width::B2, false) => dynasm!(self.ops ; .arch x64 ; movzx eax, WORD [r9 + offset]),
            (Width::B4, false) => dynasm!(self.ops ; .arch x64 ; mov eax, DWORD [r9 + offset]),
            (Width::B1, true) => {
                dynasm!(self.ops ; .arch x64 ; movzx eax, BYTE [r9 + rdx + offset]);
            }
            (Width::B2, true) => {
                dynasm!(self.ops ; .arch x64 ; movzx eax, WORD [r9 + rdx + offset]);
            }
            (Width::B4, true) => dynasm!(self.ops ; .arch x64 ; mov eax, DWORD [r9 + rdx + offset]),
        }
        if mask & width.max_value() != width.max_value() {
            let mask = template::swap_within(mask, width) as i32;
            dynasm!(self.ops ; .arch x64 ; and eax, DWORD mask);
        }
    }

    /// `eax = field & mask` in natural (big-endian-decoded) order. Bounds already checked.
    fn load_value(&mut self, field: Field, mask: u32) {
        let full = match field {
            Field::Packet { offset, width } => {
                // Little-endian as loaded, then byte-swapped.
                self.load_raw(offset, width, width.max_value());
                match width {
                    Width::B1 => {}
                    Width::B2 => dynasm!(self.ops ; .arch x64 ; rol ax, 8),
                    Width::B4 => dynasm!(self.ops ; .arch x64 ; bswap eax),
                }
                width.max_value()
            }
            Field::WireLen => {
                dynasm!(self.ops ; .arch x64 ; mov eax, r11d);
                u32::MAX
            }
            Field::CapturedFromBase if self.body_shifted => {
                // max(captured - base, 0) with the base at `r9 + rdx`.
                let zero = self.zero_slot;
                self.uses_zero_slot = true;
                dynasm!(self.ops
                    ; .arch x64
                    ; mov rax, r10
                    ; sub rax, rdx
                    ; cmovl eax, DWORD [=>zero]
                );
                u32::MAX
            }
            Field::CapturedFromBase => {
                // max(captured - base, 0): the base may lie past the end.
                dynasm!(self.ops
                    ; .arch x64
                    ; xor eax, eax
                    ; test r10, r10
                    ; cmovg eax, r10d
                );
                u32::MAX
            }
        };
        if mask != full {
            let mask = mask as i32;
            dynasm!(self.ops ; .arch x64 ; and eax, DWORD mask);
        }
    }

    /// A chain of single-key equality dispatches on packet bytes, coalesced into wide compares.
    fn equality_run(&mut self, first: NodeIndex, checked: u32, next: DynamicLabel) {
        let trie = self.trie;
        let mut atoms = Vec::new();
        let mut dispatch = first;
        let last_key = loop {
            let NodeKind::Dispatch {
                field: Field::Packet { offset, width },
                mask,
                ..
            } = *trie.node(dispatch).kind()
            else {
                unreachable_run();
                return;
            };
            let key = trie.node(dispatch).alternatives()[0];
            let NodeKind::Key { value } = *trie.node(key).kind() else {
                unreachable_run();
                return;
            };
            atoms.push(EqAtom {
                offset,
                width,
                mask,
                value,
            });
            let following = trie.node(key).alternatives();
            let continues = following.len() == 1
                && matches!(trie.node(following[0]).kind(),
                    NodeKind::Dispatch { field: Field::Packet { .. }, keys, .. } if keys.len() == 1);
            if !continues {
                break key;
            }
            dispatch = following[0];
        };
        let end = atoms
            .iter()
            .map(|a| a.offset as u32 + a.width.bytes() as u32)
            .max()
            .unwrap_or(0);
        let checked = self.ensure(end, first, checked, next);
        match coalesce::plan(&atoms, checked) {
            Ok(compares) => {
                self.stats.coalesced_atoms += atoms.len();
                self.stats.coalesced_compares += compares.len();
                for compare in compares {
                    self.compare(compare, next);
                }
                self.alternatives(last_key, checked);
            }
            // The atoms ask one bit to be 0 and 1: nothing below can match.
            Err(coalesce::Contradiction) => dynasm!(self.ops ; .arch x64 ; jmp =>next),
        }
    }

    /// `little_endian_load & mask == value`, else to `next`.
    fn compare(&mut self, compare: Compare, next: DynamicLabel) {
        let offset = compare.offset as i32;
        let full = compare.full_mask();
        match (compare.bytes, full) {
            (1, true) => {
                let value = compare.value as i8;
                dynasm!(self.ops ; .arch x64 ; cmp BYTE [r9 + offset], BYTE value);
            }
            (2, true) => {
                let value = compare.value as i16;
                dynasm!(self.ops ; .arch x64 ; cmp WORD [r9 + offset], WORD value);
            }
            (4, true) => {
                let value = compare.value as i32;
                dynasm!(self.ops ; .arch x64 ; cmp DWORD [r9 + offset], DWORD value);
            }
            // Masked bits all zero: one `test`, no load into a register.
            (1, false) if compare.value == 0 => {
                let mask = compare.mask as i8;
                dynasm!(self.ops ; .arch x64 ; test BYTE [r9 + offset], BYTE mask);
            }
            (2, false) if compare.value == 0 => {
                let mask = compare.mask as i16;
                dynasm!(self.ops ; .arch x64 ; test WORD [r9 + offset], WORD mask);
            }
            (4, false) if compare.value == 0 => {
                let mask = compare.mask as i32;
                dynasm!(self.ops ; .arch x64 ; test DWORD [r9 + offset], DWORD mask);
            }
            (1 | 2 | 4, false) => {
                match compare.bytes {
                    1 => dynasm!(self.ops ; .arch x64 ; movzx eax, BYTE [r9 + offset]),
                    2 => dynasm!(self.ops ; .arch x64 ; movzx eax, WORD [r9 + offset]),
                    _ => dynasm!(self.ops ; .arch x64 ; mov eax, DWORD [r9 + offset]),
                }
                let mask = compare.mask as i32;
                let value = compare.value as i32;
                dynasm!(self.ops
                    ; .arch x64
                    ; and eax, DWORD mask
                    ; cmp eax, DWORD value
                );
            }
            _ => {
                let mask = compare.mask as i64;
                let value = compare.value as i64;
                dynasm!(self.ops ; .arch x64 ; mov rax, QWORD [r9 + offset]);
                if !full {
                    dynasm!(self.ops
                        ; .arch x64
                        ; mov rcx, QWORD mask
                        ; and rax, rcx
                    );
                }
                dynasm!(self.ops
                    ; .arch x64
                    ; mov rcx, QWORD value
                    ; cmp rax, rcx
                );
            }
        }
        dynasm!(self.ops ; .arch x64 ; jne =>next);
    }

    /// `eax` holds the masked value: jump to the key's subtree, or to `next` if none.
    fn dispatch(
        &mut self,
        index: NodeIndex,
        (field, mask): (Field, u32),
        checked: u32,
        next: DynamicLabel,
    ) {
        let trie = self.trie;
        let mut keys = Vec::new();
        let mut key_nodes = Vec::new();
        let mut targets = Vec::new();
        for &key_node in trie.node(index).alternatives() {
            if let NodeKind::Key { value } = *trie.node(key_node).kind() {
                keys.push(value);
                key_nodes.push(key_node);
                targets.push(self.ops.new_dynamic_label());
            }
        }
        if matches!(field, Field::Packet { .. })
            && let Some(plan) = self.selected_tables_plan(&key_nodes)
        {
            return self.selected_tables((field, mask), &keys, plan, checked, next);
        }
        // Compared as loaded (constants byte-swapped) when only a compare chain follows.
        let mut raw = None;
        if keys.len() > MAX_COMPARE_CHAIN
            && let Some(partition) = template::partition_chains(trie, &key_nodes, MAX_COMPARE_CHAIN)
        {
            self.load_value(field, mask);
            // Keys whose chain does not fit the template keep their own code, tried when the
            // table misses (a key is in one or the other, never both).
            let miss = if partition.exceptions.is_empty() {
                next
            } else {
                self.ops.new_dynamic_label()
            };
            let templated_keys = partition.templated.iter().map(|&i| keys[i]).collect();
            self.templated_lookup(
                index,
                templated_keys,
                partition.chains,
                checked,
                (miss, !partition.exceptions.is_empty()),
                next,
            );
            if partition.exceptions.is_empty() {
                return;
            }
            // The body ran (and used `eax`) before the table was found to miss: load the key
            // again for the exceptions. The field was bounds-checked before the dispatch.
            dynasm!(self.ops ; .arch x64 ; =>miss);
            self.load_value(field, mask);
            keys = pick(&keys, &partition.exceptions);
            key_nodes = pick(&key_nodes, &partition.exceptions);
            targets = pick(&targets, &partition.exceptions);
        } else if let (Field::Packet { offset, width }, true) =
            (field, keys.len() <= MAX_KEY_CODE_CHAIN)
        {
            self.load_raw(offset, width, mask);
            raw = Some(width);
        } else {
            self.load_value(field, mask);
        }
        self.key_code(&keys, &key_nodes, &targets, raw, checked, next);
    }

    /// With `eax` = the dispatched value (`raw`: as loaded, of that width): a jump to the code
    /// of the key it equals (`targets`, then emitted here), or to `next`.
    fn key_code(
        &mut self,
        keys: &[u32],
        key_nodes: &[NodeIndex],
        targets: &[DynamicLabel],
        raw: Option<Width>,
        checked: u32,
        next: DynamicLabel,
    ) {
        let trie = self.trie;
        if keys.len() <= MAX_KEY_CODE_CHAIN {
            if keys.len() > 1 {
                self.stats.compare_chains += 1;
            }
            // Keys with more filters below first (more flows, likely more traffic): a short
            // chain of compares beats a probe and an indirect jump.
            let mut order: Vec<usize> = (0..keys.len()).collect();
            order.sort_by_key(|&i| core::cmp::Reverse(trie.node(key_nodes[i]).filter_count()));
            for &i in &order {
                let key = raw.map_or(keys[i], |width| template::swap_within(keys[i], width));
                let target = targets[i];
                let key = key as i32;
                dynasm!(self.ops
                    ; .arch x64
                    ; cmp eax, DWORD key
                    ; je =>target
                );
            }
            dynasm!(self.ops ; .arch x64 ; jmp =>next);
        } else {
            self.hash_lookup(keys, targets, next);
        }
        for (&key_node, &target) in key_nodes.iter().zip(targets) {
            dynasm!(self.ops ; .arch x64 ; =>target);
            self.alternatives(key_node, checked);
            dynasm!(self.ops ; .arch x64 ; jmp =>next);
        }
    }

    /// Probes a templated table for `eax` and runs one shared body with the constants of the
    /// entry found, without a branch that depends on whether the key was there.
    ///
    /// Whether a packet's key is in the table, and whether the rest of its chain holds, is as
    /// unpredictable as the traffic: a branch on either mispredicts on a large share of packets
    /// (15-20 cycles each, more than the whole lookup). So the probe stops at the key or at an
    /// empty slot alike, `rdi` becomes the entry's score if the key is the entry's and 0 if not,
    /// and every compare of the body clears it with a `cmov` instead of jumping away. Only
    /// bounds checks (which almost never fail) and a collision in the table (rare: it is at
    /// most two thirds full) still branch. An empty slot is all zeros, so a key of 0 meeting one
    /// "hits" it with score 0, which changes nothing.
    fn templated_lookup(
        &mut self,
        dispatch: NodeIndex,
        keys: Vec<u32>,
        chains: Vec<Chain>,
        checked: u32,
        (miss, exceptions): (DynamicLabel, bool),
        next: DynamicLabel,
    ) {
        let entry = EntryLayout::new(chains[0].parameters.len());
        let slots = templated_slots(keys.len(), entry.size, &mut self.sparse_left);
        let layout = RangedLayout::shared(&[&keys], &[slots]).remove(0);
        let multiplier = layout.multiplier;
        let chain = chains[0].clone();
        let table = self.template_table(dispatch, keys, chains, layout);
        self.data_base();
        self.templated_probe(
            (multiplier, table as i32),
            entry,
            &chain,
            checked,
            (miss, exceptions),
            next,
        );
    }

    /// `rcx` = the start of the data, as an immediate the loader writes (a fixup): no load on
    /// the way to a table, which every lookup's chain of dependent loads would wait for.
    fn data_base(&mut self) {
        dynasm!(self.ops ; .arch x64 ; mov rcx, QWORD 0);
        self.data_fixups.push(self.ops.offset() - 8);
    }

    /// Reserves `bytes` of data after `header` bytes (a multiple of 16), starting on 16 bytes;
    /// returns the offset after the header. Every offset is known when the code naming it is
    /// emitted; [`Codegen::emit_tables`] lays the data out at these offsets.
    fn allocate_data(&mut self, header: usize, bytes: usize) -> usize {
        let start = self.data_len.next_multiple_of(16) + header;
        self.data_len = start + bytes;
        start
    }

    /// The offset of an empty templated table with `entry`'s layout (one per entry size).
    fn empty_table(&mut self, entry: EntryLayout) -> usize {
        if let Some(&(_, offset)) = self.empty_tables.iter().find(|(s, _)| *s == entry.size) {
            return offset;
        }
        let offset = self.allocate_data(TEMPLATE_HEADER, entry.size);
        self.empty_tables.push((entry.size, offset));
        self.tables.push(PendingTable {
            offset,
            slots: vec![None],
            keys: Vec::new(),
            entries: TableEntries::Empty(entry),
        });
        offset
    }

    /// Records a templated table for `dispatch` (laid out after the code by
    /// [`Codegen::emit_tables`]); returns its offset in the data.
    fn template_table(
        &mut self,
        dispatch: NodeIndex,
        keys: Vec<u32>,
        chains: Vec<Chain>,
        layout: RangedLayout,
    ) -> usize {
        self.stats.templated_tables += 1;
        let entry = EntryLayout::new(chains[0].parameters.len());
        let table = self.allocate_data(TEMPLATE_HEADER, layout.slots.len() * entry.size);
        self.templates.push(TemplateTable {
            dispatch,
            offset: 0,
            slots: layout.slots.len(),
            multiplier: layout.multiplier,
            probes: true,
            entry,
            shape: chains[0].shape.clone(),
            keys: keys.len(),
        });
        self.tables.push(PendingTable {
            offset: table,
            slots: layout.slots,
            keys,
            entries: TableEntries::Templates(entry, chains, self.templates.len() - 1),
        });
        table
    }

    /// With `rcx` = a templated table hashed with `multiplier` and `eax` = the key: the
    /// probe, then `chain`'s shape as one predicated body (see [`Codegen::templated_lookup`]).
    /// The slot count is read from the table's header, so one body serves tables of any size.
    fn templated_probe(
        &mut self,
        (multiplier, table): (u32, i32),
        entry: EntryLayout,
        chain: &Chain,
        checked: u32,
        (miss, exceptions): (DynamicLabel, bool),
        next: DynamicLabel,
    ) {
        let multiplier = multiplier as i32;
        let entry_size = entry.size as i32;
        let score_offset = table + entry.score_offset as i32;
        let header = table - 8;
        let probe = self.ops.new_dynamic_label();
        let collision = self.ops.new_dynamic_label();
        let done = self.ops.new_dynamic_label();
        let zero = self.zero_slot;
        self.uses_zero_slot = true;
        dynasm!(self.ops
            ; .arch x64
            ; imul edx, eax, DWORD multiplier
            // Home slot: the hash scaled to the slot count ([`RangedLayout::home`]), which is
            // the `u64` before slot 0 (a 32-bit hash times it fits 64 bits).
            ; imul rdx, QWORD [rcx + header]
            ; shr rdx, BYTE 32
            ; =>probe
            // Entries are packed (any size): `rsi` = slot times size, which fits 32 bits
            // (`emit_tables` refuses a larger table); the entry is at `rcx + rsi`.
            ; imul esi, edx, DWORD entry_size
            // The score's low half; the rank is added at the accept.
            ; mov edi, DWORD [rcx + rsi + score_offset]
            ; cmp eax, DWORD [rcx + rsi + table]
            ; cmovne edi, DWORD [=>zero]
            // Another key in the slot (its score is not the one kept): probe the next slot.
            ; cmp edi, DWORD [rcx + rsi + score_offset]
            ; jne =>collision
        );
        self.predicated_steps(
            &chain.shape,
            &chain.nodes,
            (entry, table),
            0,
            checked,
            (done, exceptions),
        );
        dynasm!(self.ops ; .arch x64 ; =>done);
        if exceptions {
            // Only a key that is not in the table can belong to an exception.
            dynasm!(self.ops
                ; .arch x64
                ; test rdi, rdi
                ; jz =>miss
            );
        }
        dynasm!(self.ops
            ; .arch x64
            ; jmp =>next
            // Out of line: taken only on a collision, so a patch may put a key in any free slot.
            ; =>collision
            ; add edx, 1
            ; cmp edx, DWORD [rcx + header]
            ; jb =>probe
            ; xor edx, edx
            ; jmp =>probe
        );
    }

    /// A dispatch on a few keys (such as the IP protocol) below each of which there is nothing
    /// but a templated dispatch on one same field (such as the source host) with one same
    /// chain shape: the table is chosen by a selector or `cmov`s (an empty table for a value
    /// that is none of the keys) and one probe and one body serve them all, so the branch on
    /// which key it was (as unpredictable as the traffic mix) is gone. The tables share a
    /// multiplier, and the probe reads each one's slot count, so only their address differs;
    /// each stays its own [`TemplateTable`], patched as any other. Keys of a table that have
    /// code of their own (exceptions) are reached on a miss, through a compare on the first
    /// field again.
    fn selected_tables(
        &mut self,
        (field, mask): (Field, u32),
        keys: &[u32],
        plan: SelectedTables,
        checked: u32,
        next: DynamicLabel,
    ) {
        let Field::Packet { offset, width } = field else {
            return unreachable_run();
        };
        self.stats.selected_dispatches += 1;
        let entry = EntryLayout::new(plan.chains[0][0].parameters.len());
        let key_sets: Vec<&[u32]> = plan.keys.iter().map(Vec::as_slice).collect();
        let slots: Vec<usize> = key_sets
            .iter()
            .map(|keys| templated_slots(keys.len(), entry.size, &mut self.sparse_left))
            .collect();
        let layouts = RangedLayout::shared(&key_sets, &slots);
        let hash = layouts[0].multiplier;
        let table_bytes: usize = layouts.iter().map(|l| l.slots.len() * entry.size).sum();
        let chain = plan.chains[0][0].clone();
        let mut tables = Vec::with_capacity(keys.len());
        for (((child, child_keys), chains), layout) in plan
            .children
            .iter()
            .zip(plan.keys)
            .zip(plan.chains)
            .zip(layouts)
        {
            tables.push(self.template_table(*child, child_keys, chains, layout));
        }
        self.load_raw(offset, width, mask);
        self.data_base();
        // A selector is 2 KB: worth it beside tables at least as large (one load instead of a
        // compare and a `cmov` per key), not beside small ones, which it would outweigh many
        // times (a VLAN with a few flows).
        if width == Width::B1 && table_bytes >= SELECTOR_MIN_TABLE_BYTES {
            self.choose_table_by_selector(keys, &tables, entry);
        } else {
            self.choose_table_by_cmov(width, keys, &tables, entry);
        }
        let end = field_end(plan.field);
        let checked = if end <= checked {
            checked
        } else {
            self.stats.bounds_checks += 1;
            let need = plan.need as i32;
            dynasm!(self.ops
                ; .arch x64
                ; cmp r10, DWORD need
                ; jl =>next
            );
            plan.need
        };
        self.load_value(plan.field, plan.mask);
        let exceptions = plan.exceptions.iter().any(|(keys, _)| !keys.is_empty());
        let miss = self.ops.new_dynamic_label();
        self.templated_probe((hash, 0), entry, &chain, checked, (miss, exceptions), next);
        if !exceptions {
            return;
        }
        // Missed a table that has exceptions (keys with code of their own): which table was it?
        // A branch again, but only on a miss.
        dynasm!(self.ops ; .arch x64 ; =>miss);
        self.load_raw(offset, width, mask);
        let mut own_code = Vec::new();
        for (&key, (exception_keys, exception_nodes)) in keys.iter().zip(plan.exceptions) {
            if exception_keys.is_empty() {
                continue;
            }
            let label = self.ops.new_dynamic_label();
            let key = template::swap_within(key, width) as i32;
            dynasm!(self.ops
                ; .arch x64
                ; cmp eax, DWORD key
                ; je =>label
            );
            own_code.push((label, exception_keys, exception_nodes));
        }
        dynasm!(self.ops ; .arch x64 ; jmp =>next);
        for (label, exception_keys, exception_nodes) in own_code {
            dynasm!(self.ops ; .arch x64 ; =>label);
            self.load_value(plan.field, plan.mask);
            let targets: Vec<DynamicLabel> = exception_keys
                .iter()
                .map(|_| self.ops.new_dynamic_label())
                .collect();
            self.key_code(
                &exception_keys,
                &exception_nodes,
                &targets,
                None,
                checked,
                next,
            );
        }
    }

    /// `rcx` = the table of the key `eax` (a byte, such as the IP protocol) equals, by one load
    /// from a 256-entry selector in the data holding each key's table offset, and an empty
    /// table's (which every probe misses) for the other bytes, so there is no branch on which it
    /// was. `rcx` holds the data's start on entry.
    fn choose_table_by_selector(&mut self, keys: &[u32], tables: &[usize], entry: EntryLayout) {
        let empty = self.empty_table(entry);
        let mut entries = vec![empty as u64; 256];
        for (&key, &table) in keys.iter().zip(tables) {
            entries[key as usize & 0xff] = table as u64;
        }
        let offset = self.allocate_data(0, 256 * 8);
        self.selectors.push(PendingSelector { offset, entries });
        let selector = offset as i32;
        dynasm!(self.ops ; .arch x64 ; add rcx, QWORD [rcx + rax * 8 + selector]);
    }

    /// `rcx` = the table of the key `eax` (as loaded, of `width`) equals, by a chain of `cmov`
    /// starting from an empty table (which every probe misses: no branch when it is none of
    /// them). `rcx` holds the data's start on entry.
    fn choose_table_by_cmov(
        &mut self,
        width: Width,
        keys: &[u32],
        tables: &[usize],
        entry: EntryLayout,
    ) {
        let empty = self.empty_table(entry) as i32;
        dynasm!(self.ops ; .arch x64 ; lea rsi, [rcx + empty]);
        for (&key, &table) in keys.iter().zip(tables) {
            let key = template::swap_within(key, width) as i32;
            let table = table as i32;
            dynasm!(self.ops
                ; .arch x64
                ; lea rdx, [rcx + table]
                ; cmp eax, DWORD key
                ; cmove rsi, rdx
            );
        }
        dynasm!(self.ops ; .arch x64 ; mov rcx, rsi);
    }

    /// Whether the keys at `key_nodes` (of one dispatch) qualify for
    /// [`Codegen::selected_tables`], and what each leads to.
    fn selected_tables_plan(&self, key_nodes: &[NodeIndex]) -> Option<SelectedTables> {
        let trie = self.trie;
        if !(2..=MAX_KEY_CODE_CHAIN).contains(&key_nodes.len()) {
            return None;
        }
        let mut plan: Option<SelectedTables> = None;
        for &key_node in key_nodes {
            let &[child] = trie.node(key_node).alternatives() else {
                return None;
            };
            let NodeKind::Dispatch { field, mask, .. } = *trie.node(child).kind() else {
                return None;
            };
            let mut child_keys = Vec::new();
            let mut child_key_nodes = Vec::new();
            for &k in trie.node(child).alternatives() {
                let NodeKind::Key { value } = *trie.node(k).kind() else {
                    return None;
                };
                child_keys.push(value);
                child_key_nodes.push(k);
            }
            if !matches!(field, Field::Packet { .. }) {
                return None;
            }
            // Any number of keys: with the table chosen and probed without a branch on the
            // packet, even a table of one or two keys beats compares that mispredict.
            let partition = template::partition_chains(trie, &child_key_nodes, 0)?;
            let need = self.need(child);
            let plan = plan.get_or_insert_with(|| SelectedTables {
                field,
                mask,
                need,
                children: Vec::new(),
                keys: Vec::new(),
                chains: Vec::new(),
                exceptions: Vec::new(),
            });
            // One body for all: the same field, the same shape, the same bounds checks.
            let first = plan.chains.first().map(|chains| &chains[0]);
            let same_checks = |a: &Chain, b: &Chain| {
                a.nodes
                    .iter()
                    .zip(&b.nodes)
                    .all(|(&x, &y)| self.need(x) == self.need(y))
            };
            if (plan.field, plan.mask, plan.need) != (field, mask, need)
                || first.is_some_and(|first| {
                    first.shape != partition.chains[0].shape
                        || !same_checks(first, &partition.chains[0])
                })
            {
                return None;
            }
            plan.children.push(child);
            plan.keys
                .push(partition.templated.iter().map(|&i| child_keys[i]).collect());
            plan.chains.push(partition.chains);
            plan.exceptions.push((
                pick(&child_keys, &partition.exceptions),
                pick(&child_key_nodes, &partition.exceptions),
            ));
        }
        plan
    }

    /// The shared body of a templated chain: the entry is at `rcx + rsi`, `rdi` holds its
    /// score's low half (0 when the key missed); each compare that fails clears `rdi` instead
    /// of branching. `parameter` counts the compares emitted so far. A failed bounds check
    /// leaves for `next`, the table's end.
    /// `exceptions`: other keys have code of their own, so a zero score must not return.
    fn predicated_steps(
        &mut self,
        shape: &[ShapeStep],
        nodes: &[NodeIndex],
        (entry, table): (EntryLayout, i32),
        parameter: usize,
        checked: u32,
        (next, exceptions): (DynamicLabel, bool),
    ) {
        let (Some(step), Some(&node)) = (shape.first(), nodes.first()) else {
            return;
        };
        match *step {
            ShapeStep::Compare { field, mask, op } => {
                let checked = self.ensure(field_end(field), node, checked, next);
                match field {
                    // The entry holds the constant byte-swapped: compare the bytes as loaded.
                    Field::Packet { offset, width } if shape[0].compares_raw() => {
                        self.load_raw(offset, width, mask);
                    }
                    _ => self.load_value(field, mask),
                }
                let offset = table + entry.parameter_offset(parameter) as i32;
                dynasm!(self.ops ; .arch x64 ; cmp eax, DWORD [rcx + rsi + offset]);
                self.clear_unless(op);
                self.predicated_steps(
                    &shape[1..],
                    &nodes[1..],
                    (entry, table),
                    parameter + 1,
                    checked,
                    (next, exceptions),
                );
            }
            ShapeStep::Shift(shift) => {
                // Nothing after the body backtracks to this base: the shift is an offset in
                // `rdx` beside `r9`/`r10` instead of a new base saved and restored on the stack.
                self.predicated_shift(shift, node, checked, next);
                let outer = core::mem::replace(&mut self.body_shifted, true);
                self.predicated_steps(
                    &shape[1..],
                    &nodes[1..],
                    (entry, table),
                    parameter,
                    0,
                    (next, exceptions),
                );
                self.body_shifted = outer;
            }
            ShapeStep::Accept { rank } => {
                // `rdi` is the score's low half, or 0: the whole score, or 0. With exceptions a
                // zero must leave for them anyway, and past that branch `rdi` is not 0.
                let high = (u64::from(rank) << 32) as i64;
                if exceptions {
                    dynasm!(self.ops
                        ; .arch x64
                        ; test edi, edi
                        ; jz =>next
                        ; mov rax, QWORD high
                        ; or rax, rdi
                    );
                } else {
                    dynasm!(self.ops
                        ; .arch x64
                        ; mov rax, QWORD high
                        ; or rax, rdi
                        ; test edi, edi
                        ; cmovz rax, rdi
                    );
                }
                // Scores differ by entry (and patches add some): test the one held.
                if self.later == 0 {
                    self.return_best_of_rax();
                } else {
                    // `rdi` stays as it was: not 0 exactly when the key hit, which is all the
                    // table's end asks of it.
                    dynasm!(self.ops
                        ; .arch x64
                        ; cmp rax, r8
                        ; cmova r8, rax
                    );
                    let later = self.later as i64;
                    let keep_going = self.ops.new_dynamic_label();
                    dynasm!(self.ops
                        ; .arch x64
                        ; mov rax, QWORD later
                        ; cmp r8, rax
                        ; jb =>keep_going
                    );
                    self.return_now();
                    dynasm!(self.ops ; .arch x64 ; =>keep_going);
                }
            }
        }
    }

    /// After `cmp eax, value`: `rdi = 0` (from the zero slot: no register to clear first)
    /// unless `op` holds (unsigned conditions).
    fn clear_unless(&mut self, op: CmpOp) {
        let zero = self.zero_slot;
        self.uses_zero_slot = true;
        match op {
            CmpOp::Eq => dynasm!(self.ops ; .arch x64 ; cmovne rdi, QWORD [=>zero]),
            CmpOp::Ne => dynasm!(self.ops ; .arch x64 ; cmove rdi, QWORD [=>zero]),
            CmpOp::Lt => dynasm!(self.ops ; .arch x64 ; cmovae rdi, QWORD [=>zero]),
            CmpOp::Le => dynasm!(self.ops ; .arch x64 ; cmova rdi, QWORD [=>zero]),
            CmpOp::Gt => dynasm!(self.ops ; .arch x64 ; cmovbe rdi, QWORD [=>zero]),
            CmpOp::Ge => dynasm!(self.ops ; .arch x64 ; cmovb rdi, QWORD [=>zero]),
        }
    }

    /// Probes a generated table for `eax`; jumps to the matching target or to `next`.
    fn hash_lookup(&mut self, keys: &[u32], targets: &[DynamicLabel], next: DynamicLabel) {
        self.stats.hash_tables += 1;
        let layout = HashLayout::new(keys);
        let table = self.allocate_data(0, layout.slots.len() * 8);
        let multiplier = layout.multiplier as i32;
        let shift = (32 - layout.bits) as i8;
        let slot_mask = ((1u32 << layout.bits) - 1) as i32;
        let hit = self.ops.new_dynamic_label();
        let probe = self.ops.new_dynamic_label();
        self.table_address(table);
        dynasm!(self.ops
            ; .arch x64
            ; imul edx, eax, DWORD multiplier
            ; shr edx, BYTE shift
            ; =>probe
            ; movsxd rsi, DWORD [rcx + rdx * 8 + 4]
            ; test rsi, rsi
            ; jz =>next
            ; cmp eax, DWORD [rcx + rdx * 8]
            ; je =>hit
        );
        if layout.longest_probe == 0 {
            // Every key is in its home slot: a mismatch there is a miss.
            dynasm!(self.ops ; .arch x64 ; jmp =>next);
        } else {
            dynasm!(self.ops
                ; .arch x64
                ; add edx, 1
                ; and edx, DWORD slot_mask
                ; jmp =>probe
            );
        }
        dynasm!(self.ops
            ; .arch x64
            ; =>hit
            ; add rsi, rdi
            ; jmp rsi
        );
        self.tables.push(PendingTable {
            offset: table,
            slots: layout.slots,
            keys: keys.to_vec(),
            entries: TableEntries::Jumps(targets.to_vec()),
        });
    }

    /// `rcx` = address of `table` (in the data), `rdi` = address of the anchor (in the code;
    /// jump-table targets are relative to it). `rdi` is free: `r9` holds the packet.
    fn table_address(&mut self, table: usize) {
        let anchor = self.anchor;
        let table = table as i32;
        self.data_base();
        dynasm!(self.ops
            ; .arch x64
            ; lea rdi, [=>anchor]
            ; add rcx, DWORD table
        );
    }

    /// Lays out the anchor and the data after the code, every table and selector at the
    /// offset the code was given for it; every target label is placed by now. Returns the
    /// slot's offset and where the data starts.
    fn emit_tables(&mut self) -> Result<usize, EmitError> {
        if self.tables.is_empty() {
            return Ok(self.ops.offset());
        }
        // Offsets within the data went into the code as 32-bit displacements (with the entry
        // offsets added, and slot times entry size computed in 32 bits).
        if i32::try_from(self.data_len).is_err() {
            return Err(EmitError::RelocationOutOfRange);
        }
        let anchor = self.anchor;
        dynasm!(self.ops ; .arch x64 ; .align 8 ; =>anchor);
        let anchor_offset = self.ops.offset();
        if self.uses_zero_slot {
            let zero = self.zero_slot;
            dynasm!(self.ops ; .arch x64 ; =>zero);
            self.ops.push_u64(0);
        }
        self.ops.align(DATA_ALIGN, 0);
        let data_offset = self.ops.offset();
        // Tables and selectors in the order of their offsets.
        let tables = core::mem::take(&mut self.tables);
        let selectors = core::mem::take(&mut self.selectors);
        let mut order: Vec<(usize, Option<usize>, Option<usize>)> = tables
            .iter()
            .enumerate()
            .map(|(i, t)| (t.offset, Some(i), None))
            .chain(
                selectors
                    .iter()
                    .enumerate()
                    .map(|(i, s)| (s.offset, None, Some(i))),
            )
            .collect();
        order.sort_unstable();
        for (offset, table, selector) in order {
            let header = match table.map(|i| &tables[i].entries) {
                Some(TableEntries::Templates(..) | TableEntries::Empty(_)) => TEMPLATE_HEADER,
                _ => 0,
            };
            let start = data_offset + offset;
            if self.ops.offset() > start - header {
                return Err(EmitError::RelocationOutOfRange);
            }
            while self.ops.offset() < start - header {
                self.ops.push(0);
            }
            if let Some(i) = selector {
                for &entry in &selectors[i].entries {
                    self.ops.push_u64(entry);
                }
                continue;
            }
            let Some(i) = table else { continue };
            let table = &tables[i];
            if header != 0 {
                // The header: the slot count, in the `u64` before slot 0 (the probe
                // multiplies by it).
                let count = u32::try_from(table.slots.len())
                    .map_err(|_| EmitError::RelocationOutOfRange)?;
                self.ops.push_u64(0);
                self.ops.push_u64(u64::from(count));
            }
            match &table.entries {
                TableEntries::Jumps(targets) => {
                    for slot in &table.slots {
                        let Some(index) = *slot else {
                            self.ops.push_u64(0);
                            continue;
                        };
                        let target = self
                            .ops
                            .label_offset(targets[index])
                            .ok_or(EmitError::UndefinedLabel)?;
                        let relative = i32::try_from(target as i64 - anchor_offset as i64)
                            .map_err(|_| EmitError::RelocationOutOfRange)?;
                        self.ops.push_u32(table.keys[index]);
                        self.ops.push_i32(relative);
                    }
                }
                TableEntries::Empty(entry) => {
                    for _ in 0..entry.size {
                        self.ops.push(0);
                    }
                }
                TableEntries::Templates(entry, chains, record) => {
                    self.templates[*record].offset = start;
                    let shape = self.templates[*record].shape.clone();
                    for slot in &table.slots {
                        let at = self.ops.offset();
                        if let Some(index) = *slot {
                            self.ops.push_u32(table.keys[index]);
                            let stored =
                                template::stored_parameters(&shape, &chains[index].parameters);
                            for parameter in stored {
                                self.ops.push_u32(parameter);
                            }
                            // The low half; the rank is in the code.
                            self.ops.push_u32(chains[index].score as u32);
                        }
                        // Empty slots are all zero: score 0 marks them.
                        let end = at + entry.size;
                        while self.ops.offset() < end {
                            self.ops.push(0);
                        }
                    }
                }
            }
        }
        Ok(data_offset)
    }
}

/// Slots for a templated table of `keys` entries of `entry_size` bytes: one and a half times
/// the keys, so a generated table is at most two thirds full ([`GENERATED_LOAD`]) and
/// [`super::Demux`] can patch keys in up to [`PATCHED_LOAD`]; a table gets 2, 4 or 8 slots per
/// key while it stays within [`SPARSE_TABLE_BYTES`] and what it takes beyond a packed table
/// stays within `sparse_left` (which it spends).
///
/// A packet whose key is absent lands on an occupied slot (and takes the probe loop's branch,
/// mispredicted as often as not, then probes on until an empty slot) with probability equal to
/// the load. With 100 flows, 47 of them IPv4 TCP, two thirds full meant 0.44 mispredicted
/// branches per packet on that loop (callgrind) and one eighth 0.06; with 1,000 flows, 0.25 and
/// (one quarter) 0.11. Large tables stay packed:
/// at 10,000 flows they must stay well inside L2, which is what two thirds (with packed
/// entries) buys over one half, and almost every packet there is a hit, which stops at its key.
pub fn templated_slots(keys: usize, entry_size: usize, sparse_left: &mut usize) -> usize {
    let (num, den) = GENERATED_LOAD;
    let packed = (keys * den).div_ceil(num).max(MIN_TEMPLATED_SLOTS);
    let mut slots = packed;
    for factor in [2, 4, 8] {
        let sparse = (keys * factor).max(packed);
        if sparse * entry_size > SPARSE_TABLE_BYTES || (sparse - packed) * entry_size > *sparse_left
        {
            break;
        }
        slots = sparse;
    }
    *sparse_left -= (slots - packed) * entry_size;
    slots
}

/// Keys over slots, at most, of a generated templated table.
pub const GENERATED_LOAD: (usize, usize) = (2, 3);

/// Keys over slots, at most, that patching fills a templated table to (then it is regenerated).
pub const PATCHED_LOAD: (usize, usize) = (3, 4);

/// Tables a selector (256 `u64` offsets, 2 KB) chooses between must take at least as many
/// bytes as it does; smaller ones are chosen by `cmov`.
const SELECTOR_MIN_TABLE_BYTES: usize = 2048;

/// Largest table [`templated_slots`] makes sparser than it has to be.
pub const SPARSE_TABLE_BYTES: usize = 32 * 1024;

/// Bytes all of a program's sparse tables may take beyond packed ones: half of a 32 KB L1 data
/// cache, so that the tables of a few hundred flows stay in L1 and the 10,000-flow tables stay
/// within 32 bytes a filter.
pub const SPARSE_EXTRA_BYTES: usize = 16 * 1024;

/// Fewest slots of a templated table.
const MIN_TEMPLATED_SLOTS: usize = 4;

/// Bytes before slot 0 of a templated table: a `u64` 0 and the `u64` slot count.
const TEMPLATE_HEADER: usize = 16;

/// `items` at `positions`, in that order.
fn pick<T: Copy>(items: &[T], positions: &[usize]) -> Vec<T> {
    positions.iter().map(|&i| items[i]).collect()
}

/// `equality_run` is only entered for a single-key packet dispatch whose key node is a `Key`;
/// the trie guarantees both, so this is never reached (and emits nothing if it were: the
/// subtree is then simply not matched, which a property test would catch).
fn unreachable_run() {
    debug_assert!(
        false,
        "equality run over a node that is not a packet dispatch"
    );
}

#[cfg(test)]
mod slot_tests {
    use super::*;

    #[test]
    fn small_tables_are_sparse_and_large_ones_packed() {
        let mut left = SPARSE_EXTRA_BYTES;
        // 47 IPv4 TCP flows of 12-byte entries (100 flow filters): 8 slots per key, so a packet
        // of another flow meets an occupied slot once in 8.
        assert_eq!(templated_slots(47, 12, &mut left), 47 * 8);
        assert_eq!(left, SPARSE_EXTRA_BYTES - (47 * 8 - 71) * 12);
        // 470 of them (1,000 filters): 4 per key (8 would pass 32 KB), from a whole budget,
        // but 2 from what is left after the 47.
        let mut fresh = SPARSE_EXTRA_BYTES;
        assert_eq!(templated_slots(470, 12, &mut fresh), 470 * 4);
        assert_eq!(fresh, SPARSE_EXTRA_BYTES - (470 * 4 - 705) * 12);
        assert_eq!(templated_slots(470, 12, &mut left), 470 * 2);
        // What is left of the whole one (2,284 bytes) buys 2 per key for 200 keys, not 4.
        assert_eq!(templated_slots(200, 12, &mut fresh), 400);
        // 4,700 (10,000 filters): packed to two thirds.
        assert_eq!(templated_slots(4_700, 12, &mut left), 7_050);
        assert_eq!(templated_slots(1, 12, &mut left), 8);
        assert_eq!(templated_slots(0, 12, &mut left), MIN_TEMPLATED_SLOTS);
        // Once the budget is spent, tables are packed.
        let mut left = 100;
        assert_eq!(templated_slots(47, 12, &mut left), 71);
        assert_eq!(left, 100);
    }
}
