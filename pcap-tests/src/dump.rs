//! Human-readable views of what dpf built: the merged trie as an indented tree and the generated
//! code as assembly, for people comparing engines or checking that filters merged.

use std::fmt::Write as _;

use dpf::jit::CompiledTrie;
use dpf::trie::{NodeKind, Trie};
use dpf::{Atom, CmpOp, Field, Shift};
use iced_x86::{Decoder, DecoderOptions, Formatter, NasmFormatter};

/// The trie as an indented tree, one node per line; `None` (no expression) prints a note.
pub fn dump_trie(trie: Option<&Trie>) -> String {
    let Some(trie) = trie else {
        return "(empty expression: every packet matches, no trie)\n".to_string();
    };
    let mut text = format!(
        "trie: {} filters, {} node slots\n",
        trie.len(),
        trie.node_slots()
    );
    // Depth-first with an explicit stack: a trie can be deeper than is polite for recursion.
    let mut stack = vec![(Trie::ROOT, 0usize)];
    while let Some((index, depth)) = stack.pop() {
        let node = trie.node(index);
        let _ = writeln!(
            text,
            "{:indent$}{} [{} filters]",
            "",
            describe_node(node.kind()),
            node.filter_count(),
            indent = depth * 2
        );
        for &child in node.alternatives().iter().rev() {
            stack.push((child, depth + 1));
        }
    }
    text
}

fn describe_node(kind: &NodeKind) -> String {
    match kind {
        NodeKind::Root => "root".to_string(),
        NodeKind::Test(atom) => describe_atom(atom),
        NodeKind::Shift(shift) => describe_shift(shift),
        NodeKind::Eval(eval) => {
            let insns: Vec<String> = eval
                .program
                .insns
                .iter()
                .map(|insn| format!("{insn:?}"))
                .collect();
            let result = if eval.mask == u32::MAX {
                "result".to_string()
            } else {
                format!("result & {:#x}", eval.mask)
            };
            format!(
                "program [{}] (back edges {}): {result} {} {:#x}",
                insns.join("; "),
                eval.program.back_edges,
                op_text(eval.op),
                eval.value
            )
        }
        NodeKind::Dispatch { field, mask, keys } => {
            format!("dispatch {} on {} keys", masked(*field, *mask), keys.len())
        }
        NodeKind::Key { value } => format!("== {value:#x}"),
        NodeKind::Accept { id, score } => format!("accept id {} (score {:#x})", id.0, score.0),
        NodeKind::Vacant => "(vacant)".to_string(),
    }
}

fn field_name(field: Field) -> String {
    match field {
        Field::Packet { offset, width } => format!("pkt[base+{offset}:{}]", width.bytes()),
        Field::WireLen => "len".to_string(),
        Field::CapturedFromBase => "caplen-base".to_string(),
    }
}

fn masked(field: Field, mask: u32) -> String {
    let full = match field {
        Field::Packet { width, .. } => width.max_value(),
        Field::WireLen | Field::CapturedFromBase => u32::MAX,
    };
    if mask == full {
        field_name(field)
    } else {
        format!("{} & {mask:#x}", field_name(field))
    }
}

fn op_text(op: CmpOp) -> &'static str {
    match op {
        CmpOp::Eq => "==",
        CmpOp::Ne => "!=",
        CmpOp::Lt => "<",
        CmpOp::Le => "<=",
        CmpOp::Gt => ">",
        CmpOp::Ge => ">=",
    }
}

fn describe_atom(atom: &Atom) -> String {
    format!(
        "{} {} {:#x}",
        masked(atom.field, atom.mask),
        op_text(atom.op),
        atom.value
    )
}

fn describe_shift(shift: &Shift) -> String {
    let amount = if shift.shift >= 0 {
        format!("<< {}", shift.shift)
    } else {
        format!(">> {}", -i16::from(shift.shift))
    };
    format!(
        "base += (pkt[base+{}:{}] & {:#x}) {amount}",
        shift.offset,
        shift.width.bytes(),
        shift.mask
    )
}

/// The generated code as NASM-syntax assembly with offsets, followed by the size of the data
/// (hash tables) that trails it.
pub fn disassemble(compiled: &CompiledTrie) -> String {
    let code = &compiled.code()[..compiled.instructions_end()];
    let stats = compiled.stats();
    let mut text = format!(
        "; {} bytes of code, {} bytes of tables, entry at {:#x}\n; {} bounds checks, {} hash tables, {} templated tables ({} dispatches choosing one by cmov), {} compare chains, {} equality atoms in {} compares\n",
        compiled.instructions_end(),
        compiled.code().len() - compiled.instructions_end(),
        compiled.entry_offset(),
        stats.bounds_checks,
        stats.hash_tables,
        stats.templated_tables,
        stats.selected_dispatches,
        stats.compare_chains,
        stats.coalesced_atoms,
        stats.coalesced_compares,
    );
    let mut decoder = Decoder::with_ip(64, code, 0, DecoderOptions::NONE);
    let mut formatter = NasmFormatter::new();
    let mut line = String::new();
    for instruction in &mut decoder {
        line.clear();
        formatter.format(&instruction, &mut line);
        let start = instruction.ip() as usize;
        let bytes: String = code[start..start + instruction.len()]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let marker = if start == compiled.entry_offset() {
            "entry:\n"
        } else {
            ""
        };
        let end = start + instruction.len();
        let note = if compiled
            .data_fixups()
            .iter()
            .any(|&at| at >= start && at + 8 <= end)
        {
            "  ; the tables' address, written by the loader"
        } else {
            ""
        };
        let _ = writeln!(text, "{marker}{start:6x}  {bytes:<24} {line}{note}");
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use dpf::{FilterId, Step, UnverifiedFilter, Width};

    fn port_filter(id: u32, port: u32) -> dpf::Filter {
        let eq = Step::eq;
        UnverifiedFilter {
            id: FilterId(id),
            steps: vec![
                eq(12, Width::B2, 0x0800),
                eq(23, Width::B1, 6),
                Step::Shift(Shift {
                    offset: 14,
                    width: Width::B1,
                    mask: 0x0f,
                    shift: 2,
                }),
                eq(16, Width::B2, port),
            ],
        }
        .verify()
        .expect("a well-formed filter")
    }

    #[test]
    fn dump_shows_shared_prefix_and_every_filter() {
        let trie = Trie::from_filters((0..8).map(|i| port_filter(i, 80 + i)))
            .expect("distinct filters merge");
        let text = dump_trie(Some(&trie));
        assert!(text.starts_with("trie: 8 filters"), "{text}");
        // The ethertype test is shared by all eight filters, not repeated.
        let ethertype_lines = text
            .lines()
            .filter(|l| l.contains("pkt[base+12:2]"))
            .count();
        assert_eq!(ethertype_lines, 1, "{text}");
        for i in 0..8 {
            assert!(text.contains(&format!("accept id {i} ")), "{text}");
        }
    }

    #[test]
    fn disassembly_decodes_the_generated_function() {
        let trie = Trie::from_filters([port_filter(1, 80), port_filter(2, 443)])
            .expect("distinct filters merge");
        let compiled = dpf::jit::compile(&trie).expect("code generation");
        let text = disassemble(&compiled);
        assert!(text.contains("entry:"), "{text}");
        assert!(text.contains("ret"), "{text}");
        assert!(!text.contains("(bad)"), "{text}");
    }

    #[test]
    fn disassembly_names_the_loader_written_table_address() {
        let trie = Trie::from_filters((0..64).map(|i| port_filter(i, 1000 + i)))
            .expect("distinct filters merge");
        let compiled = dpf::jit::compile(&trie).expect("code generation");
        let fixups = compiled.data_fixups().len();
        assert!(fixups > 0, "64 ports make a table");
        let text = disassemble(&compiled);
        assert_eq!(
            text.matches("the tables' address").count(),
            fixups,
            "{text}"
        );
    }
}
