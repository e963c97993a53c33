//! Scenario: the libnet heap. `alloc` works on pages the library maps itself: thousands of
//! small boxes, a vector grown far beyond one page, its pages reused after it is freed
//! without asking the kernel for more, and running out of heap as an error (`try_reserve`),
//! after which freeing makes allocation work again.
#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(target_os = "none")]
extern crate alloc;

#[cfg(target_os = "none")]
libnet::entry!(app::main);

#[cfg(target_os = "none")]
mod app {
    use alloc::boxed::Box;
    use alloc::vec::Vec;
    use libnet::heap::{HEAP_MAX_PAGES, PAGE_BYTES};
    use libnet::{heap, println};

    const BOXES: u64 = 10_000;
    const BIG_WORDS: u64 = 64 * 1024; // 512 KiB
    const CHUNK_BYTES: usize = 64 * PAGE_BYTES;

    pub fn main() -> u8 {
        let boxes: Vec<Box<u64>> = (0..BOXES).map(|i| Box::new(i * 3)).collect();
        let boxes_ok = boxes.iter().enumerate().all(|(i, b)| **b == i as u64 * 3);

        let mut big = Vec::new();
        for i in 0..BIG_WORDS {
            big.push(i ^ 0x5a5a);
        }
        let big_ok = big.iter().enumerate().all(|(i, &w)| w == i as u64 ^ 0x5a5a);
        let mapped = heap::stats().pages_mapped_total;
        drop(big);
        drop(boxes);
        let free = heap::stats().free_pages;

        let again = alloc::vec![7u8; (BIG_WORDS * 8) as usize];
        let reused = again.iter().all(|&b| b == 7) && heap::stats().pages_mapped_total == mapped;
        drop(again);

        let mut too_big: Vec<u8> = Vec::new();
        let refused = too_big
            .try_reserve_exact(2 * HEAP_MAX_PAGES * PAGE_BYTES)
            .is_err();
        // Room for every chunk the region can hold, so the list never grows while full.
        let mut chunks: Vec<Vec<u8>> =
            Vec::with_capacity(HEAP_MAX_PAGES * PAGE_BYTES / CHUNK_BYTES);
        loop {
            let mut chunk = Vec::new();
            if chunk.try_reserve_exact(CHUNK_BYTES).is_err() {
                break;
            }
            chunk.resize(CHUNK_BYTES, chunks.len() as u8);
            chunks.push(chunk);
        }
        let filled = chunks.len();
        let intact = chunks
            .iter()
            .enumerate()
            .all(|(i, c)| c[0] == i as u8 && c[CHUNK_BYTES - 1] == i as u8);
        let failures = heap::stats().failures;
        chunks.clear();
        let after = alloc::vec![1u64; 100_000];
        let recovered = after.iter().sum::<u64>() == 100_000;
        let stats = heap::stats();
        println!(
            "heap: {BOXES} boxes {boxes_ok}, 512 KiB vector {big_ok} ({mapped} pages mapped, {free} free after dropping)"
        );
        println!(
            "heap: freed pages reused without new ones: {reused}; 8 MiB refused: {refused}; out of memory after {filled} chunks of 256 KiB (intact {intact}, {failures} refusals); allocation after freeing: {recovered}"
        );
        println!("heap: {stats:?}");
        let ok = boxes_ok
            && big_ok
            && reused
            && refused
            && (10..16).contains(&filled)
            && intact
            && failures >= 2
            && recovered;
        if ok { 0 } else { 1 }
    }
}

#[cfg(not(target_os = "none"))]
fn main() {}
