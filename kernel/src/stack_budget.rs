//! How deep the kernel's entry stack must be: one number shared by the stack itself and by the
//! host test that runs the deepest filter set the verifier admits through merge, JIT and
//! interpreter on a stack of that size.
//!
//! Everything a syscall, an interrupt or an exception from ring 3 does runs on one stack
//! (`arch::gdt`'s entry stack), which has a guard page below it but no way to grow: running
//! off it double-faults and ends the kernel. Two walks there recurse once per trie level: the
//! JIT's code generator (`alternatives -> node -> dispatch -> key_code -> alternatives`) at
//! every `filter_bind`/`filter_unbind`, and the interpreter that a debug kernel runs beside the
//! JIT on every received frame. A trie is as deep as its longest filter (two nodes per
//! equality step, one per other step, plus the root and the accept), and the verifier admits
//! `dpf::ir::MAX_STEPS` steps, so the depth is bounded; what each level costs is the frame
//! sizes the compiler picks, which no constant here can know. So the bound is a test: the
//! tests below build that deepest trie in every shape that takes a different recursion path
//! and run it on a thread whose stack is this budget, less what the syscall path above the
//! generator uses.
#![forbid(unsafe_code)]

/// Bytes of the stack every entry from ring 3 runs on. 64 KiB overflowed: the deepest
/// branching trie needs between 176 and 184 KiB in a debug build (about 2.2 KiB of generator
/// frames per level, 64 levels); 256 KiB less [`SYSCALL_PATH_BYTES`] leaves it 40 KiB spare.
pub const ENTRY_STACK_BYTES: usize = 256 * 1024;

/// Bytes the kernel's own frames take below the generator's first call, kept free by the test:
/// the syscall entry, `simple_call` (1.8 KiB in a debug build), `filter_bind` (2.4 KiB) and
/// the demux's insert and sync, rounded up generously.
pub const SYSCALL_PATH_BYTES: usize = 32 * 1024;

#[cfg(test)]
mod tests {
    use super::{ENTRY_STACK_BYTES, SYSCALL_PATH_BYTES};
    use alloc::vec::Vec;
    use dpf::FilterId;
    use dpf::ir::{
        CmpOp, Field, MAX_SHIFTS, MAX_STEPS, Packet, Shift, Step, UnverifiedFilter, Width,
    };
    use dpf::jit::Demux;
    use dpf::trie::Trie;

    fn verified(id: u32, steps: Vec<Step>) -> dpf::Filter {
        UnverifiedFilter {
            id: FilterId(id),
            steps,
        }
        .verify()
        .expect("the verifier admits every filter these tests build")
    }

    fn byte_is(offset: usize, value: u32) -> Step {
        Step::eq(offset as u16, Width::B1, value)
    }

    /// One filter of `MAX_STEPS` equality steps on successive bytes (all 1), and at every
    /// level one more filter leaving it (value 2): every level is a dispatch on two keys, the
    /// generator's costliest recursion (`node -> dispatch -> key_code -> alternatives`).
    fn branching_at_every_level() -> Vec<dpf::Filter> {
        let deepest: Vec<Step> = (0..MAX_STEPS).map(|at| byte_is(at, 1)).collect();
        let mut filters = vec![verified(0, deepest.clone())];
        for level in 0..MAX_STEPS {
            let mut steps = deepest[..level].to_vec();
            steps.push(byte_is(level, 2));
            filters.push(verified(level as u32 + 1, steps));
        }
        filters
    }

    /// Pairs of levels where the first dispatch's keys each lead to one dispatch whose keys
    /// share one chain shape (a templated table chosen by `cmov`) but for one key that leads
    /// deeper: the `dispatch -> selected_tables -> key_code` path, the generator's largest
    /// frame.
    fn selected_tables_at_every_other_level() -> Vec<dpf::Filter> {
        let mut filters = Vec::new();
        let mut prefix = Vec::new();
        let mut id = 0;
        for pair in 0..MAX_STEPS / 2 {
            let (first, second) = (2 * pair, 2 * pair + 1);
            for key in [1, 2] {
                for value in 1..=3 {
                    let mut steps = prefix.clone();
                    steps.extend([byte_is(first, key), byte_is(second, value)]);
                    filters.push(verified(id, steps));
                    id += 1;
                }
            }
            prefix.extend([byte_is(first, 1), byte_is(second, 4)]);
        }
        filters.push(verified(id, prefix));
        filters
    }

    /// One filter of ordered comparisons only: one node per step, `node -> alternatives`.
    fn comparisons_only() -> Vec<dpf::Filter> {
        let steps = (0..MAX_STEPS)
            .map(|at| {
                Step::Test(dpf::ir::Atom {
                    field: Field::Packet {
                        offset: at as u16,
                        width: Width::B1,
                    },
                    mask: 0xff,
                    op: CmpOp::Ne,
                    value: 0,
                })
            })
            .collect();
        vec![verified(0, steps)]
    }

    /// The most shifts a filter may hold, each followed by a branching level: the shift's own
    /// recursion (saving the base around its subtree) mixed with dispatches.
    fn shifts_and_dispatches() -> Vec<dpf::Filter> {
        let shift = Step::Shift(Shift {
            offset: 0,
            width: Width::B1,
            mask: 0x01,
            shift: 0,
        });
        let mut deepest = Vec::new();
        for level in 0..MAX_STEPS {
            if level % (MAX_STEPS / MAX_SHIFTS) == 0
                && level / (MAX_STEPS / MAX_SHIFTS) < MAX_SHIFTS
            {
                deepest.push(shift.clone());
            } else {
                deepest.push(byte_is(1, level as u32 % 200 + 1));
            }
        }
        let mut filters = vec![verified(0, deepest.clone())];
        for level in 0..MAX_STEPS {
            if let Step::Test(atom) = deepest[level] {
                let mut steps = deepest[..level].to_vec();
                steps.push(byte_is(1, atom.value + 1));
                filters.push(verified(level as u32 + 1, steps));
            }
        }
        filters
    }

    /// Merges `filters` one at a time as `filter_bind` does (each insert regenerates or
    /// patches the code), classifies a frame of `frame_byte`s with the interpreter, removes
    /// them all again, on a thread whose stack is what the kernel leaves the generator.
    fn bind_classify_unbind_on_a_kernel_sized_stack(
        filters: Vec<dpf::Filter>,
        frame_byte: u8,
    ) -> Option<FilterId> {
        let depth_nodes = {
            let trie = Trie::from_filters(filters.clone()).expect("distinct filters");
            trie.depth()
        };
        assert!(
            depth_nodes >= MAX_STEPS + 2,
            "the shape reaches the deepest trie ({depth_nodes} nodes)"
        );
        std::thread::Builder::new()
            .stack_size(ENTRY_STACK_BYTES - SYSCALL_PATH_BYTES)
            .spawn(move || {
                let mut demux = Demux::new().expect("an empty demux compiles");
                let mut handles = Vec::new();
                for filter in filters {
                    handles.push(demux.insert(filter).expect("binds").0);
                }
                let frame = [frame_byte; MAX_STEPS + 64];
                let verdict = dpf::interp::classify(demux.trie(), &Packet::whole(&frame));
                for handle in handles.into_iter().rev() {
                    demux.remove(handle).expect("unbinds");
                }
                verdict
            })
            .expect("a thread")
            .join()
            .expect("no stack overflow")
    }

    #[test]
    fn the_deepest_branching_trie_compiles_on_the_entry_stack() {
        assert_eq!(
            bind_classify_unbind_on_a_kernel_sized_stack(branching_at_every_level(), 1),
            Some(FilterId(0))
        );
    }

    #[test]
    fn the_deepest_selected_tables_trie_compiles_on_the_entry_stack() {
        let filters = selected_tables_at_every_other_level();
        let deepest = FilterId(filters.len() as u32 - 1);
        // Byte 1 everywhere takes key 1 then misses the table (value 1 is templated, but its
        // chain ends there): the walk goes down the exceptions to the end.
        let verdict = bind_classify_unbind_on_a_kernel_sized_stack(filters, 1);
        assert!(verdict.is_some() && verdict <= Some(deepest));
    }

    #[test]
    fn the_deepest_comparison_chain_compiles_on_the_entry_stack() {
        assert_eq!(
            bind_classify_unbind_on_a_kernel_sized_stack(comparisons_only(), 1),
            Some(FilterId(0))
        );
    }

    #[test]
    fn the_deepest_shifting_trie_compiles_on_the_entry_stack() {
        bind_classify_unbind_on_a_kernel_sized_stack(shifts_and_dispatches(), 0);
    }
}
