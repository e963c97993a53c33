//! The demultiplexers under test, each as a user would build one from its engine: given K flow
//! filters, say which one (if any) a packet belongs to.
//!
//! dpf merges all K into one trie and answers with the filter's id. The classic and eBPF peers
//! have one program per filter and run them in order until one accepts (first match wins):
//! that is what a user of libpcap, bpfjit, rbpf or rte_bpf would write. The filters are
//! disjoint (see [`super::flows`]), so every engine must find the same filter for every packet.

pub mod bpfjit;
pub mod dpdk;
pub mod dpf_engines;
pub mod ebpf_map;
pub mod libpcap;
pub mod native;
pub mod native_hash;
pub mod rbpf;
pub mod rte_acl;

use super::packets::{PacketArena, PacketSpan};

/// What a replay found: how many packets matched and the sum of the winning filters' indices
/// (a cheap check that the same packets went to the same filters).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    /// Packets some filter accepted.
    pub matches: u64,
    /// Sum over matching packets of the winning filter's index.
    pub filter_index_sum: u64,
}

impl Tally {
    /// Counts one verdict.
    #[inline]
    pub fn add(&mut self, verdict: Option<u32>) {
        if let Some(index) = verdict {
            self.matches += 1;
            self.filter_index_sum += u64::from(index);
        }
    }
}

/// A demultiplexer over K filters numbered `0..K` in flow order.
pub trait Demux {
    /// The index of the filter that takes the packet, or `None`.
    fn classify(&mut self, arena: &PacketArena, span: PacketSpan) -> Option<u32>;

    /// Classifies `spans` in order. Provided here so each engine gets its own copy with
    /// `classify` inlined: one dynamic call per replay, none per packet.
    fn replay(&mut self, arena: &PacketArena, spans: &[PacketSpan]) -> Tally {
        let mut tally = Tally::default();
        for &span in spans {
            tally.add(self.classify(arena, span));
        }
        tally
    }
}

/// Runs `programs` in order on a packet; the first that accepts wins.
#[inline]
pub fn first_match<P>(programs: &[P], accepts: impl FnMut(&P) -> bool) -> Option<u32> {
    programs.iter().position(accepts).map(|i| i as u32)
}
