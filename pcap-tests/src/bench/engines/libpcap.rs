//! libpcap: `pcap_compile` (optimised) per filter, run by libpcap's own filter interpreter, the
//! one tcpdump uses. The compiled instructions also feed bpfjit and the eBPF peers.
//!
//! The library is opened at run time (`dlopen` of Debian's `libpcap0.8`), not linked, so that
//! nothing in the workspace needs a system library to build: xtask installs the package before
//! it runs anything that uses it, and without it the libpcap rows say it is unavailable.
#![allow(unsafe_code)]

use std::ffi::{CStr, CString, c_char, c_int, c_long, c_uint, c_void};
use std::sync::OnceLock;

use libloading::Library;

use super::{Demux, first_match};
use crate::bench::cbpf_to_ebpf::CbpfInsn;
use crate::bench::packets::{PacketArena, PacketSpan};

/// Shared objects tried in order: Debian's `libpcap0.8` soname first, then other distributions'.
pub const LIBRARIES: [&str; 3] = ["libpcap.so.0.8", "libpcap.so.1", "libpcap.so"];

/// `DLT_EN10MB`.
const LINKTYPE_ETHERNET: c_int = 1;
/// Snapshot length of the dead handle, as tcpdump's default.
const SNAPLEN: c_int = 65_535;
/// `PCAP_NETMASK_UNKNOWN`.
const NETMASK_UNKNOWN: u32 = 0xffff_ffff;

/// `struct bpf_insn` (pcap/bpf.h).
#[repr(C)]
#[derive(Clone, Copy)]
struct BpfInsn {
    code: u16,
    jt: u8,
    jf: u8,
    k: u32,
}

/// `struct bpf_program` (pcap/bpf.h).
#[repr(C)]
struct BpfProgram {
    bf_len: c_uint,
    bf_insns: *mut BpfInsn,
}

/// `struct pcap_pkthdr` (pcap/pcap.h) on LP64: a `struct timeval`, then the two lengths.
#[repr(C)]
struct PcapPkthdr {
    tv_sec: c_long,
    tv_usec: c_long,
    caplen: u32,
    len: u32,
}

type OpenDeadFn = unsafe extern "C" fn(c_int, c_int) -> *mut c_void;
type CompileFn =
    unsafe extern "C" fn(*mut c_void, *mut BpfProgram, *const c_char, c_int, u32) -> c_int;
type GetErrFn = unsafe extern "C" fn(*mut c_void) -> *mut c_char;
type CloseFn = unsafe extern "C" fn(*mut c_void);
type FreeCodeFn = unsafe extern "C" fn(*mut BpfProgram);
type BpfFilterFn = unsafe extern "C" fn(*const CbpfInsn, *const u8, c_uint, c_uint) -> c_uint;
type BpfValidateFn = unsafe extern "C" fn(*const CbpfInsn, c_int) -> c_int;
type OfflineFilterFn =
    unsafe extern "C" fn(*const BpfProgram, *const PcapPkthdr, *const u8) -> c_int;

/// The opened library and the functions used from it. Opened once per process and never
/// closed, so every program it compiled stays freeable and every function pointer valid.
struct LibpcapLibrary {
    open_dead: OpenDeadFn,
    compile: CompileFn,
    geterr: GetErrFn,
    close: CloseFn,
    freecode: FreeCodeFn,
    offline_filter: OfflineFilterFn,
    bpf_filter: BpfFilterFn,
    bpf_validate: BpfValidateFn,
    _library: Library,
}

/// Opens libpcap once, or says why it cannot (and how to get it).
fn library() -> Result<&'static LibpcapLibrary, String> {
    static LIBRARY: OnceLock<Result<LibpcapLibrary, String>> = OnceLock::new();
    LIBRARY
        .get_or_init(|| {
            let mut reasons = Vec::new();
            for name in LIBRARIES {
                // SAFETY: loading runs libpcap's initialisers, which only set up its own
                // tables; sound at any time.
                match unsafe { Library::new(name) } {
                    Ok(library) => return LibpcapLibrary::resolve(library),
                    Err(e) => reasons.push(format!("{name}: {e}")),
                }
            }
            Err(format!(
                "libpcap not loadable ({}); Debian package libpcap0.8 provides it \
                 (`cargo xtask test` and `cargo xtask bench demux` install it)",
                reasons.join("; ")
            ))
        })
        .as_ref()
        .map_err(Clone::clone)
}

impl LibpcapLibrary {
    fn resolve(library: Library) -> Result<LibpcapLibrary, String> {
        // SAFETY: each symbol is looked up with the C signature libpcap 1.10's pcap/pcap.h
        // declares for it and copied out as a plain function pointer; `_library` keeps it
        // mapped for as long as the struct lives (the process, see `library`).
        unsafe {
            let symbol = |name: &[u8]| -> Result<*const c_void, String> {
                library
                    .get::<*const c_void>(name)
                    .map(|s| *s)
                    .map_err(|e| e.to_string())
            };
            Ok(LibpcapLibrary {
                open_dead: std::mem::transmute::<*const c_void, OpenDeadFn>(symbol(
                    b"pcap_open_dead\0",
                )?),
                compile: std::mem::transmute::<*const c_void, CompileFn>(symbol(
                    b"pcap_compile\0",
                )?),
                geterr: std::mem::transmute::<*const c_void, GetErrFn>(symbol(b"pcap_geterr\0")?),
                close: std::mem::transmute::<*const c_void, CloseFn>(symbol(b"pcap_close\0")?),
                freecode: std::mem::transmute::<*const c_void, FreeCodeFn>(symbol(
                    b"pcap_freecode\0",
                )?),
                offline_filter: std::mem::transmute::<*const c_void, OfflineFilterFn>(symbol(
                    b"pcap_offline_filter\0",
                )?),
                bpf_filter: std::mem::transmute::<*const c_void, BpfFilterFn>(symbol(
                    b"bpf_filter\0",
                )?),
                bpf_validate: std::mem::transmute::<*const c_void, BpfValidateFn>(symbol(
                    b"bpf_validate\0",
                )?),
                _library: library,
            })
        }
    }
}

/// libpcap's classic BPF interpreter (`bpf_filter`) on `data` seen as `wire_len` bytes on the
/// wire, for any program `bpf_validate` accepts (jumps inside, ends with a return); others are
/// refused, so no program can make the interpreter read outside itself or `data`.
pub fn interpret(program: &[CbpfInsn], data: &[u8], wire_len: u32) -> Result<u32, String> {
    let library = library()?;
    let length = c_int::try_from(program.len()).map_err(|_| "program too long".to_string())?;
    // SAFETY: `CbpfInsn` is `#[repr(C)]` with `struct bpf_insn`'s fields in its order, and
    // `program` holds `length` of them; bpf_validate only reads them.
    if unsafe { (library.bpf_validate)(program.as_ptr(), length) } == 0 {
        return Err("bpf_validate refused the program".into());
    }
    // SAFETY: the program is valid (checked above), and `data` is a live slice of
    // `data.len()` bytes, which bpf_filter bounds every load by.
    Ok(unsafe {
        (library.bpf_filter)(
            program.as_ptr(),
            data.as_ptr(),
            wire_len,
            data.len() as c_uint,
        )
    })
}

/// A program `pcap_compile` filled, freed with `pcap_freecode` when dropped.
struct OwnedProgram {
    program: BpfProgram,
    library: &'static LibpcapLibrary,
}

// SAFETY: the program is plain memory libpcap allocated and only reads when filtering;
// `pcap_offline_filter` keeps no state between calls, so moving it across threads is sound.
unsafe impl Send for OwnedProgram {}
// SAFETY: as above: filtering only reads the program.
unsafe impl Sync for OwnedProgram {}

impl Drop for OwnedProgram {
    fn drop(&mut self) {
        // SAFETY: `program` was filled by a successful `pcap_compile` of this library and is
        // freed exactly once, here.
        unsafe { (self.library.freecode)(&mut self.program) }
    }
}

impl OwnedProgram {
    /// The program's instructions.
    fn instructions(&self) -> &[BpfInsn] {
        if self.program.bf_insns.is_null() {
            return &[];
        }
        // SAFETY: a successful `pcap_compile` leaves `bf_len` initialised instructions at
        // `bf_insns`, owned by `self` (freed only on drop).
        unsafe { std::slice::from_raw_parts(self.program.bf_insns, self.program.bf_len as usize) }
    }
}

/// One filter as libpcap compiled it.
pub struct CompiledFilter {
    /// The program libpcap runs.
    program: OwnedProgram,
    /// Its instructions.
    pub instructions: Vec<CbpfInsn>,
}

impl std::fmt::Debug for CompiledFilter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CompiledFilter")
            .field("instructions", &self.instructions.len())
            .finish()
    }
}

impl CompiledFilter {
    /// libpcap's verdict on a whole frame (captured length = wire length).
    #[inline]
    pub fn accepts(&self, frame: &[u8]) -> bool {
        let header = PcapPkthdr {
            tv_sec: 0,
            tv_usec: 0,
            caplen: frame.len() as u32,
            len: frame.len() as u32,
        };
        let program = &self.program;
        // SAFETY: `program` is a live compiled program, `header` says exactly `frame.len()`
        // bytes are readable at `frame.as_ptr()`, and libpcap's interpreter reads only those.
        unsafe { (program.library.offline_filter)(&program.program, &header, frame.as_ptr()) != 0 }
    }
}

/// `pcap_compile` on a dead Ethernet handle, as tcpdump `-y EN10MB` would.
pub struct PcapCompiler {
    handle: *mut c_void,
    library: &'static LibpcapLibrary,
}

impl std::fmt::Debug for PcapCompiler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PcapCompiler")
    }
}

impl Drop for PcapCompiler {
    fn drop(&mut self) {
        // SAFETY: `handle` came from `pcap_open_dead` and is closed exactly once, here.
        unsafe { (self.library.close)(self.handle) }
    }
}

impl PcapCompiler {
    /// A compiler for Ethernet frames (snapshot length 65535).
    pub fn ethernet() -> Result<PcapCompiler, String> {
        let library = library()?;
        // SAFETY: `pcap_open_dead` takes two integers and returns a new handle or null.
        let handle = unsafe { (library.open_dead)(LINKTYPE_ETHERNET, SNAPLEN) };
        if handle.is_null() {
            return Err("libpcap: pcap_open_dead failed".into());
        }
        Ok(PcapCompiler { handle, library })
    }

    /// Compiles `expression` with the optimiser on.
    pub fn compile(&self, expression: &str) -> Result<CompiledFilter, String> {
        let text = CString::new(expression)
            .map_err(|_| format!("pcap_compile({expression:?}): the expression holds a NUL"))?;
        let mut program = BpfProgram {
            bf_len: 0,
            bf_insns: std::ptr::null_mut(),
        };
        // SAFETY: `handle` is live (only `&self` methods use it, and a handle is used by one
        // thread at a time: `PcapCompiler` is neither Send nor Sync), `program` is a valid
        // out-parameter and `text` a NUL-terminated string alive for the call.
        let status = unsafe {
            (self.library.compile)(self.handle, &mut program, text.as_ptr(), 1, NETMASK_UNKNOWN)
        };
        if status != 0 {
            // SAFETY: after a failed call `pcap_geterr` returns the handle's NUL-terminated
            // error buffer, valid until the next call on the handle; it is copied at once.
            let reason = unsafe { CStr::from_ptr((self.library.geterr)(self.handle)) }
                .to_string_lossy()
                .into_owned();
            return Err(format!("pcap_compile({expression:?}): {reason}"));
        }
        let program = OwnedProgram {
            program,
            library: self.library,
        };
        let instructions = program
            .instructions()
            .iter()
            .map(|i| CbpfInsn {
                code: i.code,
                jt: i.jt,
                jf: i.jf,
                k: i.k,
            })
            .collect();
        Ok(CompiledFilter {
            program,
            instructions,
        })
    }
}

/// libpcap's filter interpreter over each program in turn.
#[derive(Debug)]
pub struct Libpcap<'a> {
    filters: &'a [CompiledFilter],
}

impl<'a> Libpcap<'a> {
    /// Runs `filters` in order.
    pub fn new(filters: &'a [CompiledFilter]) -> Libpcap<'a> {
        Libpcap { filters }
    }
}

impl Demux for Libpcap<'_> {
    #[inline]
    fn classify(&mut self, arena: &PacketArena, span: PacketSpan) -> Option<u32> {
        let data = arena.data(span);
        first_match(self.filters, |f| f.accepts(data))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compiles_and_filters_like_tcpdump() {
        let compiler = PcapCompiler::ethernet().unwrap();
        let compiled = compiler.compile("ip and tcp and dst port 80").unwrap();
        assert_eq!(compiled.instructions[0], CbpfInsn::new(0x28, 0, 0, 12));
        assert_eq!(compiled.instructions.last().unwrap().code, 0x06);
        let error = compiler.compile("ip and and").unwrap_err();
        assert!(error.contains("syntax error"), "{error}");
        assert!(compiler.compile("ip\0").is_err());

        // An IPv4/TCP frame to port 80, and the same frame to port 81.
        let mut frame = vec![0u8; 54];
        frame[12..14].copy_from_slice(&[0x08, 0x00]);
        frame[14] = 0x45;
        frame[23] = 6;
        frame[36..38].copy_from_slice(&80u16.to_be_bytes());
        assert!(compiled.accepts(&frame));
        frame[37] = 81;
        assert!(!compiled.accepts(&frame));
        assert!(!compiled.accepts(&frame[..20]));
        assert_eq!(interpret(&compiled.instructions, &frame, 54), Ok(0));
        frame[37] = 80;
        assert_ne!(interpret(&compiled.instructions, &frame, 54), Ok(0));
        // A jump past the end is refused, not run.
        let wild = [CbpfInsn::new(0x05, 0, 0, 100), CbpfInsn::new(0x06, 0, 0, 1)];
        assert!(interpret(&wild, &frame, 54).is_err());
    }
}
