//! `test=jit-out-of-frames`: installing generated code while the frame allocator runs dry at
//! each point of the install in turn (a code frame, the frame that splits the identity map's
//! 2 MiB page, the code region's page tables) must be an error with nothing held, never a
//! panic. Apps cannot reach this by themselves (their quotas leave the kernel a quarter of the
//! frames), so the kernel drains the allocator itself, before any app runs.
#![forbid(unsafe_code)]

use super::jit::{InstallError, KernelCode, code_pages_in_use};
use crate::mm::{code_region, frames};
use alloc::vec::Vec;
use exo_abi::KernelExit;
use x86_64::structures::paging::PhysFrame;

/// Filters in the trie installed: ordered comparisons are not merged into a table, so each
/// has code of its own and the instructions span pages; a failure after the first code frame
/// must give that frame back too.
const FILTERS: u32 = 256;

/// Frames the kernel made page tables of for the code region and the identity map's splits:
/// kept for the kernel's life (counted apart by the end-of-run check), not held by an install.
fn table_frames() -> u64 {
    code_region::code_table_frames() + code_region::split_table_frames()
}

/// Takes every free frame but `left`.
fn drain_to(left: u64) -> Vec<PhysFrame> {
    let mut held = Vec::with_capacity(frames::free_count() as usize);
    while frames::free_count() > left {
        match frames::allocate() {
            Some(frame) => held.push(frame),
            None => break,
        }
    }
    held
}

/// Runs the self-test and stops the machine: `Exited(0)` when every refused install held
/// nothing; a panic names the first one that did.
pub fn self_test() -> ! {
    let filters = (0..FILTERS).map(|id| {
        dpf::UnverifiedFilter {
            id: dpf::FilterId(id),
            steps: alloc::vec![
                dpf::Step::eq(12, dpf::ir::Width::B2, 0x0800),
                dpf::Step::Test(dpf::ir::Atom {
                    field: dpf::ir::Field::Packet {
                        offset: 14 + (id % 64) as u16,
                        width: dpf::ir::Width::B1,
                    },
                    mask: 0xff,
                    op: dpf::ir::CmpOp::Lt,
                    value: id / 64 + 1,
                }),
            ],
        }
        .verify()
        .expect("a two-step filter verifies")
    });
    let trie = dpf::trie::Trie::from_filters(filters).expect("distinct filters");
    let compiled = dpf::jit::compile(&trie).expect("code for the trie");
    let pages = compiled
        .data_offset()
        .div_ceil(exo_abi::layout::PAGE_SIZE_BYTES as usize);
    let frames_before = frames::free_count();
    let tables_before = table_frames();
    let code_pages_before = code_pages_in_use();
    log!(
        "self-test: test=jit-out-of-frames, installing {pages} code pages with 0, 1, ... frames left"
    );
    let mut left = 0;
    let installed = loop {
        let tables = table_frames();
        let held = drain_to(left);
        let result = KernelCode::install(&compiled);
        let made_tables = table_frames() - tables;
        match result {
            Err(InstallError::OutOfMemory) => {
                // Everything the failed install took is back, but tables it made for the
                // region (the kernel's for life, counted apart).
                let free = frames::free_count();
                if free + made_tables != left || code_pages_in_use() != code_pages_before {
                    panic!(
                        "self-test: a refused install with {left} frames left holds {} frames and {} code pages",
                        left - free - made_tables,
                        code_pages_in_use() - code_pages_before
                    );
                }
                log!(
                    "self-test: {left} frames left: refused (OutOfMemory), {made_tables} page tables made, nothing held"
                );
            }
            Err(other) => panic!("self-test: install failed with {other:?}, not OutOfMemory"),
            Ok(code) => {
                log!("self-test: {left} frames left: installed ({made_tables} page tables made)");
                drop(code);
                held.into_iter().for_each(frames::free);
                break left;
            }
        }
        held.into_iter().for_each(frames::free);
        left += 1;
    };
    let tables = table_frames() - tables_before;
    let frames_after = frames::free_count();
    if frames_after + tables != frames_before || code_pages_in_use() != code_pages_before {
        panic!(
            "self-test: after the installs {frames_after} frames free and {tables} page tables made, {frames_before} before"
        );
    }
    log!(
        "self-test: jit-out-of-frames: {installed} installs refused, then installed; frames back to {frames_before} less {tables} page tables, code pages back to {code_pages_before}"
    );
    crate::arch::exit_qemu(KernelExit::Exited(0))
}
