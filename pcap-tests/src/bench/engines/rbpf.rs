//! rbpf's x86_64 JIT on eBPF translated from libpcap's programs by
//! [`crate::bench::cbpf_to_ebpf`].
#![allow(unsafe_code)]

use rbpf::EbpfVmRaw;

use super::{Demux, first_match};
use crate::bench::packets::{PacketArena, PacketSpan};

/// Loads (rbpf's verifier runs here) and JIT-compiles one encoded eBPF program.
pub fn load(program: &[u8]) -> Result<EbpfVmRaw<'_>, String> {
    let mut vm = EbpfVmRaw::new(Some(program)).map_err(|e| format!("rbpf verifier: {e}"))?;
    vm.jit_compile().map_err(|e| format!("rbpf jit: {e}"))?;
    Ok(vm)
}

/// Runs a JIT-compiled program on a packet record.
///
/// # Safety
///
/// The program must come from [`crate::bench::cbpf_to_ebpf::convert`] (its loads are all
/// behind a check against the captured length in the record's header, and it writes only its
/// stack), and `record` must be a whole record (see [`super::dpdk::record_is_whole`]).
#[inline]
pub unsafe fn run_jit(vm: &EbpfVmRaw<'_>, record: &mut [u8]) -> u64 {
    // SAFETY: the caller guarantees the program stays inside `record` and its stack; rbpf's JIT
    // itself checks nothing, which is why the translation does.
    unsafe { vm.execute_program_jit(record) }.unwrap_or(0)
}

/// rbpf JIT programs in sequence, first match wins. rbpf wants the packet as `&mut [u8]`, so
/// the engine replays its own copy of the arena.
pub struct RbpfJit<'a, 'p> {
    vms: &'a [EbpfVmRaw<'p>],
    bytes: Vec<u8>,
}

impl std::fmt::Debug for RbpfJit<'_, '_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RbpfJit")
            .field("programs", &self.vms.len())
            .finish()
    }
}

impl<'a, 'p> RbpfJit<'a, 'p> {
    /// Runs `vms` in order over a copy of `arena`.
    ///
    /// # Safety
    ///
    /// Every program in `vms` must have been loaded from [`crate::bench::cbpf_to_ebpf::convert`]
    /// output (see [`run_jit`]).
    pub unsafe fn new(vms: &'a [EbpfVmRaw<'p>], arena: &PacketArena) -> RbpfJit<'a, 'p> {
        RbpfJit {
            vms,
            bytes: arena.bytes().to_vec(),
        }
    }
}

impl Demux for RbpfJit<'_, '_> {
    #[inline]
    fn classify(&mut self, _arena: &PacketArena, span: PacketSpan) -> Option<u32> {
        let record = &mut self.bytes[span.record..span.record + span.record_len()];
        if !super::dpdk::record_is_whole(record) {
            return None;
        }
        // SAFETY: the programs come from `cbpf_to_ebpf::convert` (the only source of programs
        // `RbpfJit::new` requires it), and `record` was checked above.
        first_match(self.vms, |vm| unsafe { run_jit(vm, record) } != 0)
    }
}
