//! FreeBSD's classic BPF JIT (the `bpfjit` crate) on libpcap's programs.
#![allow(unsafe_code)]

use bpfjit::{BpfJitFilter, bpf_insn};

use super::{Demux, first_match};
use crate::bench::cbpf_to_ebpf::CbpfInsn;
use crate::bench::packets::{PacketArena, PacketSpan};

/// Compiles one classic program to native code.
pub fn compile(instructions: &[CbpfInsn]) -> Result<BpfJitFilter, String> {
    // SAFETY: (1) `bpfjit::bpf_insn` is `#[repr(C)]` with fields `code: c_ushort, jt: c_uchar,
    // jf: c_uchar, k: uint32_t`, and `CbpfInsn` is `#[repr(C)]` with `u16, u8, u8, u32` in the
    // same order, so both are 8 bytes with identical field offsets and no padding, and every
    // bit pattern is valid for both. (2) The slice is built from a live slice's pointer and
    // length, so it covers exactly the same initialised memory, borrowed for the same lifetime.
    // (The crate's fields are private, hence no safe constructor.)
    let raw: &[bpf_insn] = unsafe {
        std::slice::from_raw_parts(instructions.as_ptr().cast::<bpf_insn>(), instructions.len())
    };
    BpfJitFilter::compile(raw).ok_or_else(|| "bpf_jit_compile refused the program".to_string())
}

/// bpfjit's native programs in sequence, first match wins.
pub struct BpfJit<'a> {
    filters: &'a [BpfJitFilter],
}

impl std::fmt::Debug for BpfJit<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BpfJit")
            .field("filters", &self.filters.len())
            .finish()
    }
}

impl<'a> BpfJit<'a> {
    /// Runs `filters` in order.
    pub fn new(filters: &'a [BpfJitFilter]) -> BpfJit<'a> {
        BpfJit { filters }
    }
}

impl Demux for BpfJit<'_> {
    #[inline]
    fn classify(&mut self, arena: &PacketArena, span: PacketSpan) -> Option<u32> {
        let data = arena.data(span);
        first_match(self.filters, |f| f.matched(data))
    }
}
