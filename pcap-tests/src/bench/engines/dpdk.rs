//! DPDK's rte_bpf JIT (Debian's `librte-bpf23`, loaded at run time) on the same eBPF as rbpf.
//!
//! The library is opened with `dlopen`, so the benchmark builds and runs without DPDK and
//! reports the engine as unavailable, with the reason, when the library is missing.
//! `rte_bpf_load` needs no EAL initialisation: it validates the program (statically bounding
//! every memory access against the argument's declared size), JIT-compiles it and maps it.
#![allow(unsafe_code)]

use std::ffi::{c_int, c_void};

use libloading::Library;

use super::{Demux, first_match};
use crate::bench::cbpf_to_ebpf::{EbpfInsn, RECORD_HEADER_BYTES};
use crate::bench::packets::{PacketArena, PacketSpan};

/// The shared object Debian's `librte-bpf23` installs.
pub const LIBRARY: &str = "librte_bpf.so.23";

/// `RTE_BPF_ARG_PTR`: the argument points to a buffer of `size` bytes.
const RTE_BPF_ARG_PTR: c_int = 0x10;
/// `RTE_LOG_ERR`: keep the library's errors, drop its per-load info lines.
const RTE_LOG_ERR: u32 = 4;

/// Largest record the programs may be given: the header and a 64 KiB capture. The verifier
/// proves every load stays inside it; the programs' own length checks keep them inside the
/// actual record.
pub const MAX_RECORD_BYTES: usize = RECORD_HEADER_BYTES + 65_536;

/// `struct rte_bpf_arg` (DPDK 22.11 `rte_bpf.h`).
#[repr(C)]
struct RteBpfArg {
    kind: c_int,
    size: usize,
    buf_size: usize,
}

/// `struct rte_bpf_prm`.
#[repr(C)]
struct RteBpfPrm {
    ins: *const u64,
    nb_ins: u32,
    xsym: *const c_void,
    nb_xsym: u32,
    prog_arg: RteBpfArg,
}

/// `struct rte_bpf_jit`.
#[repr(C)]
struct RteBpfJit {
    func: Option<unsafe extern "C" fn(*mut c_void) -> u64>,
    size: usize,
}

type LoadFn = unsafe extern "C" fn(*const RteBpfPrm) -> *mut c_void;
type GetJitFn = unsafe extern "C" fn(*const c_void, *mut RteBpfJit) -> c_int;
type DestroyFn = unsafe extern "C" fn(*mut c_void);
type SetLevelFn = unsafe extern "C" fn(u32);

/// The opened library and the functions used from it.
pub struct RteBpf {
    load: LoadFn,
    get_jit: GetJitFn,
    destroy: DestroyFn,
    // Keeps the functions above (and every loaded program's code) mapped.
    _library: Library,
}

impl std::fmt::Debug for RteBpf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RteBpf")
    }
}

/// One loaded, JIT-compiled program.
pub struct RteProgram<'l> {
    library: &'l RteBpf,
    handle: *mut c_void,
    function: unsafe extern "C" fn(*mut c_void) -> u64,
}

impl std::fmt::Debug for RteProgram<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RteProgram")
    }
}

impl Drop for RteProgram<'_> {
    fn drop(&mut self) {
        // SAFETY: `handle` came from `rte_bpf_load` of this library (still open: `library`
        // outlives `self`) and is destroyed exactly once, here.
        unsafe { (self.library.destroy)(self.handle) }
    }
}

impl RteBpf {
    /// Opens [`LIBRARY`], or says why not.
    pub fn open() -> Result<RteBpf, String> {
        // SAFETY: loading runs the library's initialisers; librte_bpf's (and its dependencies')
        // only register log types and tailq heads, which is sound at any time.
        let library = unsafe { Library::new(LIBRARY) }.map_err(|e| {
            format!("{LIBRARY} not loadable ({e}); Debian package librte-bpf23 provides it")
        })?;
        // SAFETY: the symbols are looked up with the C signatures DPDK 22.11 declares for
        // them in rte_bpf.h and rte_log.h, and copied out as plain function pointers that
        // `_library` keeps valid for the life of `RteBpf`.
        unsafe {
            let load = *library
                .get::<LoadFn>(b"rte_bpf_load\0")
                .map_err(|e| e.to_string())?;
            let get_jit = *library
                .get::<GetJitFn>(b"rte_bpf_get_jit\0")
                .map_err(|e| e.to_string())?;
            let destroy = *library
                .get::<DestroyFn>(b"rte_bpf_destroy\0")
                .map_err(|e| e.to_string())?;
            if let Ok(set_level) = library.get::<SetLevelFn>(b"rte_log_set_global_level\0") {
                set_level(RTE_LOG_ERR);
            }
            Ok(RteBpf {
                load,
                get_jit,
                destroy,
                _library: library,
            })
        }
    }

    /// Validates, loads and JIT-compiles `program`, whose argument is a packet record.
    pub fn load(&self, program: &[EbpfInsn]) -> Result<RteProgram<'_>, String> {
        let words: Vec<u64> = program
            .iter()
            .map(|insn| u64::from_le_bytes(insn.encode()))
            .collect();
        let parameters = RteBpfPrm {
            ins: words.as_ptr(),
            nb_ins: words.len() as u32,
            xsym: std::ptr::null(),
            nb_xsym: 0,
            prog_arg: RteBpfArg {
                kind: RTE_BPF_ARG_PTR,
                size: MAX_RECORD_BYTES,
                buf_size: 0,
            },
        };
        // SAFETY: `parameters` is a valid `struct rte_bpf_prm` whose `ins` points to `nb_ins`
        // initialised 8-byte instructions (alive until the call returns; rte_bpf_load copies
        // them) and declares no external symbols.
        let handle = unsafe { (self.load)(&parameters) };
        if handle.is_null() {
            return Err("rte_bpf_load refused the program (its reason is on stderr)".into());
        }
        let mut jit = RteBpfJit {
            func: None,
            size: 0,
        };
        // SAFETY: `handle` is a live program of this library; `jit` is a valid out-parameter.
        let status = unsafe { (self.get_jit)(handle, &mut jit) };
        match jit.func {
            Some(function) if status == 0 => Ok(RteProgram {
                library: self,
                handle,
                function,
            }),
            _ => {
                // SAFETY: `handle` is live and destroyed once, here.
                unsafe { (self.destroy)(handle) };
                Err("rte_bpf has no JIT for this program".into())
            }
        }
    }
}

impl RteProgram<'_> {
    /// Runs the JIT-compiled program on a record.
    ///
    /// # Safety
    ///
    /// `record` must be a whole packet record: its header's captured length must not exceed
    /// the bytes after the header (see [`record_is_whole`]).
    #[inline]
    pub unsafe fn run(&self, record: &[u8]) -> u64 {
        // SAFETY: the program was validated by rte_bpf to read its argument only within
        // `MAX_RECORD_BYTES` and, being a `cbpf_to_ebpf` translation, only within the captured
        // length stated in the record's header, which the caller guarantees `record` holds; it
        // writes only its own stack. The code stays mapped while `self` (and its handle) lives.
        unsafe { (self.function)(record.as_ptr() as *mut c_void) }
    }
}

/// Whether `record`'s header states a captured length that the record holds, within
/// [`MAX_RECORD_BYTES`].
#[inline]
pub fn record_is_whole(record: &[u8]) -> bool {
    let Some(header) = record.get(..4) else {
        return false;
    };
    let stated = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
    RECORD_HEADER_BYTES + stated <= record.len().min(MAX_RECORD_BYTES)
}

/// rte_bpf JIT programs in sequence, first match wins.
#[derive(Debug)]
pub struct DpdkJit<'a, 'l> {
    programs: &'a [RteProgram<'l>],
}

impl<'a, 'l> DpdkJit<'a, 'l> {
    /// Runs `programs` in order.
    pub fn new(programs: &'a [RteProgram<'l>]) -> DpdkJit<'a, 'l> {
        DpdkJit { programs }
    }
}

impl Demux for DpdkJit<'_, '_> {
    #[inline]
    fn classify(&mut self, arena: &PacketArena, span: PacketSpan) -> Option<u32> {
        let record = arena.record(span);
        if !record_is_whole(record) {
            return None;
        }
        // SAFETY: checked just above.
        first_match(self.programs, |p| unsafe { p.run(record) } != 0)
    }
}
