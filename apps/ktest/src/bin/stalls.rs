//! Scenario: the kernel's work with interrupts off grows with what a call removes, not with
//! everything the caller holds. Deleting one page capability mapped once costs about the
//! same beside 64 other mappings as beside 4,096 (`undo` finds a capability's mappings
//! through an index; a scan of every mapping, or a region table that shifts on each removal,
//! grows with the total). Read with the TSC, which `-icount` makes count instructions: a
//! complexity check between two sizes, not a speed target. A 1 MiB `console_write` is cut to
//! the kernel's per-call bound.
#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(target_os = "none")]
libnet::entry!(app::main);

#[cfg(target_os = "none")]
mod app {
    use libnet::abi::cap::Rights;
    use libnet::abi::syscall::{ANY_FRAME, CONSOLE_WRITE_MAX_BYTES};
    use libnet::{println, sys};

    const BASE: u64 = 0x0000_5000_0000_0000;
    const PAGE: u64 = 4096;
    const READ_WRITE: Rights = Rights::READ.union(Rights::WRITE);
    /// Other mappings beside the deleted one: a small and a large table.
    const FEW: u64 = 64;
    const MANY: u64 = 4096;
    /// Runs per size; the cheapest counts (the first may take page-table frames).
    const RUNS: usize = 3;
    /// How much dearer the delete may be beside `MANY` than beside `FEW`: a B-tree's few
    /// more levels, far below the 64 times a walk over every mapping costs.
    const MAX_GROWTH: u64 = 2;

    /// Maps one page capability at `others` even pages, another once at an odd page in their
    /// middle, and returns the TSC cycles deleting the latter takes; then deletes the former.
    fn delete_cost(others: u64) -> u64 {
        let filler = sys::page_alloc(ANY_FRAME).expect("a page");
        for index in 0..others {
            sys::page_map(filler, BASE + 2 * index * PAGE, READ_WRITE).expect("map filler");
        }
        let page = sys::page_alloc(ANY_FRAME).expect("a page");
        sys::page_map(page, BASE + (others | 1) * PAGE, READ_WRITE).expect("map");
        let start = sys::tsc();
        sys::cap_delete(page).expect("delete");
        let cycles = sys::tsc().wrapping_sub(start);
        sys::cap_delete(filler).expect("delete filler");
        cycles
    }

    fn cheapest(others: u64) -> u64 {
        (0..RUNS)
            .map(|_| delete_cost(others))
            .min()
            .unwrap_or(u64::MAX)
    }

    static TEXT: [u8; 1 << 20] = [b'='; 1 << 20];

    pub fn main() -> u8 {
        let few = cheapest(FEW);
        let many = cheapest(MANY);
        let bounded = many <= few * MAX_GROWTH;
        println!(
            "stalls: deleting a page mapped once costs {few} TSC cycles beside {FEW} mappings, {many} beside {MANY}: bounded {bounded}"
        );
        let written = sys::console_write(&TEXT);
        println!();
        let truncated = written == Ok(CONSOLE_WRITE_MAX_BYTES as usize);
        println!("stalls: a 1 MiB console_write wrote {written:?}: cut to the bound {truncated}");
        if bounded && truncated { 0 } else { 1 }
    }
}

#[cfg(not(target_os = "none"))]
fn main() {}
