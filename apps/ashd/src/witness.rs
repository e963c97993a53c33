//! ashd's own witness to the demux: every frame found in one of its rings is run through the
//! filters bound to that ring with dpf's interpreter, so a frame the kernel delivered against
//! its filters is counted here, whatever the kernel's counters say.
//!
//! It also prints each bound filter's wire form with its ring (`ashd: ring R filter HEX`) and,
//! at the end, what the kernel says each ring got (`ashd: ring R: matched M delivered D full
//! F`), for xtask to replay the capture of the run through hosted dpf and compare.
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt::Write;
use dpf::trie::Trie;
use dpf::{Filter, Packet};
use libnet::abi::net::Counter;
use libnet::net;
use libnet::println;

/// The filters bound to each ring, and what checking the rings' frames against them found.
pub struct Witness {
    /// Per ring: its address (for the kernel's per-ring counters), and its filters merged
    /// into one trie, as a frame matches the ring when any of them does. `None`: nothing bound.
    rings: Vec<Option<(u64, Trie)>>,
    /// Frames checked against their ring's filters.
    pub checked: u64,
    /// Frames in a ring none of whose filters matches them.
    pub mismatched: u64,
}

impl Witness {
    /// A witness for `rings` rings, none bound yet.
    pub fn new(rings: usize) -> Witness {
        Witness {
            rings: (0..rings).map(|_| None).collect(),
            checked: 0,
            mismatched: 0,
        }
    }

    /// Records `filters`, just bound to ring `ring` at `address`, and prints their wire form.
    /// A filter the trie refuses (it took the kernel's bind, so it cannot be refused here) is
    /// reported and makes every frame of the ring a mismatch, never a silent pass.
    pub fn bound(&mut self, ring: usize, address: u64, filters: &[Filter]) {
        let Some(entry) = self.rings.get_mut(ring) else {
            println!("ashd: witness: no ring {ring}");
            return;
        };
        let (_, trie) = entry.get_or_insert_with(|| (address, Trie::new()));
        for filter in filters {
            let mut wire = String::new();
            for byte in dpf::wire::encode(filter) {
                let _ = write!(wire, "{byte:02x}");
            }
            println!("ashd: ring {ring} filter {wire}");
            if let Err(error) = trie.insert(filter.clone()) {
                println!("ashd: witness: ring {ring} refused a filter: {error:?}");
            }
        }
    }

    /// Checks one frame found in ring `ring` against that ring's filters.
    pub fn check(&mut self, ring: usize, frame: &[u8]) {
        self.checked += 1;
        let matches = match self.rings.get(ring) {
            Some(Some((_, trie))) => dpf::interp::classify(trie, &Packet::whole(frame)).is_some(),
            _ => false,
        };
        if !matches {
            self.mismatched += 1;
            if self.mismatched <= 3 {
                println!(
                    "ashd: ring {ring} holds a frame its filters do not match: {} bytes, {:02x?}",
                    frame.len(),
                    &frame[..frame.len().min(48)]
                );
            }
        }
    }

    /// Prints the check's result and the kernel's per-ring counters of every bound ring.
    pub fn report(&self) {
        for (ring, entry) in self.rings.iter().enumerate() {
            let Some((address, _)) = entry else {
                continue;
            };
            let read = |counter: Counter| net::ring_counter(counter, *address).unwrap_or(u64::MAX);
            println!(
                "ashd: ring {ring}: matched {} delivered {} full {}",
                read(Counter::Matched),
                read(Counter::Delivered),
                read(Counter::RingFull)
            );
        }
        println!(
            "ashd: frames checked against their ring's filters {}, not matching: {}",
            self.checked, self.mismatched
        );
    }
}
