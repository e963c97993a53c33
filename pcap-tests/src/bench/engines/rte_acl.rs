//! DPDK's multi-field classifier (`rte_acl`, Debian's `librte-acl23`, loaded at run time): the
//! structure a DPDK user with many 5-tuple rules reaches for, on the same flows as the others.
//!
//! Each packet is parsed once into the tuple [`super::native_hash`] looks up (tag, family, IP
//! protocol, source address, destination port), written in network byte order into a key
//! record, and classified by one `rte_acl_classify` call over one context that holds a rule
//! per flow. ACL allocates through EAL's heap, so EAL is initialised first, once per process,
//! without hugepages, PCI, shared config files or telemetry (see [`EAL_ARGUMENTS`]).
#![allow(unsafe_code)]

use std::ffi::{CString, c_char, c_int, c_void};
use std::sync::OnceLock;

use libloading::Library;

use super::Demux;
use super::native_hash::Tuple;
use crate::bench::packets::{PacketArena, PacketSpan};
use crate::synth::Flow;

/// The shared object Debian's `librte-acl23` installs.
pub const LIBRARY: &str = "librte_acl.so.23";
/// EAL, which `librte_acl` allocates through (a dependency of the ACL package).
pub const EAL_LIBRARY: &str = "librte_eal.so.23";

/// EAL's command line: heap from plain `mmap` (no hugepages, no root), no PCI scan, no files in
/// /var/run/dpdk, no telemetry socket, one lcore, errors only. `-m` bounds EAL's heap, which the
/// ACL context and its build scratch come from.
pub const EAL_ARGUMENTS: [&str; 11] = [
    "demux-bench",
    "-l",
    "0",
    "--no-huge",
    "--no-pci",
    "--no-shconf",
    "--no-telemetry",
    "-m",
    "512",
    "--log-level=4",
    "--file-prefix=demux-bench",
];

/// `RTE_ACL_FIELD_TYPE_MASK`: value and prefix length.
const FIELD_TYPE_MASK: u8 = 0;
/// `RTE_ACL_FIELD_TYPE_BITMASK`: value and bit mask.
const FIELD_TYPE_BITMASK: u8 = 2;
/// `RTE_ACL_MAX_FIELDS`.
const MAX_FIELDS: usize = 64;
/// `RTE_ACL_MAX_PRIORITY` (`2^29 - 1`).
const MAX_PRIORITY: i32 = (1 << 29) - 1;
/// `SOCKET_ID_ANY`.
const SOCKET_ID_ANY: c_int = -1;

/// The key record, in network byte order: what [`FIELDS`] describe.
const KEY_BYTES: usize = 28;
/// Offsets in the key record.
const PROTOCOL_AT: usize = 0;
const META_AT: usize = 4;
const SOURCE_AT: usize = 8;
const PORTS_AT: usize = 24;

/// Fields of a rule, in order: the IP protocol (ACL's first field must be one byte), a word of
/// family and tag, the source address as four words (an IPv4 address in the first), and the
/// ports word (the source port wildcarded, the destination port exact).
const FIELD_COUNT: usize = 8;

/// `struct rte_acl_field_def`.
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct FieldDef {
    kind: u8,
    size: u8,
    field_index: u8,
    input_index: u8,
    offset: u32,
}

/// `struct rte_acl_config`.
#[repr(C)]
struct Config {
    num_categories: u32,
    num_fields: u32,
    defs: [FieldDef; MAX_FIELDS],
    max_size: usize,
}

/// `struct rte_acl_field`: value and mask or prefix length, each a `union rte_acl_field_types`
/// (8 bytes; on this little-endian host a `u8`, `u16` or `u32` member is the low bytes).
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct Field {
    value: u64,
    mask_range: u64,
}

/// `struct rte_acl_rule_data`.
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct RuleData {
    category_mask: u32,
    priority: i32,
    userdata: u32,
}

/// `RTE_ACL_RULE_DEF(.., FIELD_COUNT)`: the data, then the fields (8-aligned, at offset 16).
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct Rule {
    data: RuleData,
    fields: [Field; FIELD_COUNT],
}

/// `struct rte_acl_param`.
#[repr(C)]
struct Param {
    name: *const c_char,
    socket_id: c_int,
    rule_size: u32,
    max_rule_num: u32,
}

type EalInitFn = unsafe extern "C" fn(c_int, *mut *mut c_char) -> c_int;
type CreateFn = unsafe extern "C" fn(*const Param) -> *mut c_void;
type AddRulesFn = unsafe extern "C" fn(*mut c_void, *const Rule, u32) -> c_int;
type BuildFn = unsafe extern "C" fn(*mut c_void, *const Config) -> c_int;
type ClassifyFn =
    unsafe extern "C" fn(*const c_void, *const *const u8, *mut u32, u32, u32) -> c_int;
type FreeFn = unsafe extern "C" fn(*mut c_void);

/// The opened libraries (EAL initialised) and the ACL functions used.
pub struct RteAcl {
    create: CreateFn,
    add_rules: AddRulesFn,
    build: BuildFn,
    classify: ClassifyFn,
    free: FreeFn,
    // Keeps the functions above (and every context's code) mapped.
    _library: Library,
}

impl std::fmt::Debug for RteAcl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RteAcl")
    }
}

/// EAL, initialised at most once per process (a second `rte_eal_init` fails by design): EAL and
/// the other DPDK libraries stay loaded for the rest of the process, or the reason it could not
/// start.
static EAL: OnceLock<Result<Vec<Library>, String>> = OnceLock::new();

/// DPDK libraries the benchmark opens besides EAL. Each registers tail queues from its
/// initialisers, which EAL allows only before `rte_eal_init` (opening `librte_bpf` after it
/// crashed in `rte_eal_tailq_register`), so all are loaded first; opening one later only takes
/// another reference.
const DPDK_LIBRARIES: [&str; 2] = [LIBRARY, super::dpdk::LIBRARY];

fn init_eal() -> Result<(), String> {
    EAL.get_or_init(|| {
        // EAL pins the thread that initialises it to its lcore's CPU; a thread of its own
        // takes the pinning with it when it ends, so the benchmark's threads keep theirs.
        std::thread::spawn(|| {
            // SAFETY: loading runs librte_eal's initialisers, which register log types, tailq
            // heads and buses: sound at any time, once.
            let library = unsafe { Library::new(EAL_LIBRARY) }.map_err(|e| {
                format!("{EAL_LIBRARY} not loadable ({e}); Debian package librte-eal23 provides it")
            })?;
            let mut loaded = vec![library];
            for name in DPDK_LIBRARIES {
                // SAFETY: as above, before `rte_eal_init`, which is when their initialisers
                // must run. One that is missing is reported when its engine opens it.
                if let Ok(other) = unsafe { Library::new(name) } {
                    loaded.push(other);
                }
            }
            // EAL keeps argv's strings: leaked, they live for the process.
            let mut argv: Vec<*mut c_char> = EAL_ARGUMENTS
                .iter()
                .map(|a| CString::new(*a).expect("no NUL").into_raw())
                .collect();
            // SAFETY: `rte_eal_init` has this C signature in DPDK 22.11's rte_eal.h; `argv`
            // holds `argc` valid NUL-terminated strings that are never freed.
            let status = unsafe {
                let init = *loaded[0]
                    .get::<EalInitFn>(b"rte_eal_init\0")
                    .map_err(|e| e.to_string())?;
                init(argv.len() as c_int, argv.as_mut_ptr())
            };
            if status < 0 {
                return Err(format!(
                    "rte_eal_init({}) returned {status} (its reason is on stderr)",
                    EAL_ARGUMENTS[1..].join(" ")
                ));
            }
            Ok(loaded)
        })
        .join()
        .unwrap_or_else(|_| Err("rte_eal_init's thread panicked".into()))
    })
    .as_ref()
    .map(|_| ())
    .map_err(Clone::clone)
}

impl RteAcl {
    /// Initialises EAL (once) and opens [`LIBRARY`], or says why not.
    pub fn open() -> Result<RteAcl, String> {
        init_eal()?;
        // SAFETY: `init_eal` loaded it before EAL started (its initialisers have run): this
        // takes another reference.
        let library = unsafe { Library::new(LIBRARY) }.map_err(|e| {
            format!("{LIBRARY} not loadable ({e}); Debian package librte-acl23 provides it")
        })?;
        // SAFETY: the symbols are looked up with the C signatures DPDK 22.11 declares for them
        // in rte_acl.h, and copied out as plain function pointers that `_library` keeps valid.
        unsafe {
            Ok(RteAcl {
                create: *library
                    .get::<CreateFn>(b"rte_acl_create\0")
                    .map_err(|e| e.to_string())?,
                add_rules: *library
                    .get::<AddRulesFn>(b"rte_acl_add_rules\0")
                    .map_err(|e| e.to_string())?,
                build: *library
                    .get::<BuildFn>(b"rte_acl_build\0")
                    .map_err(|e| e.to_string())?,
                classify: *library
                    .get::<ClassifyFn>(b"rte_acl_classify\0")
                    .map_err(|e| e.to_string())?,
                free: *library
                    .get::<FreeFn>(b"rte_acl_free\0")
                    .map_err(|e| e.to_string())?,
                _library: library,
            })
        }
    }

    /// One context with a rule per flow (flow `i` is filter `i`; the lower index has the higher
    /// priority, so the first of equal tuples wins as in the other engines), built.
    pub fn context(&self, name: &str, flows: &[Flow]) -> Result<AclContext<'_>, String> {
        let name = CString::new(format!("demux-{name}")).map_err(|e| e.to_string())?;
        let count = u32::try_from(flows.len().max(1)).map_err(|e| e.to_string())?;
        let param = Param {
            name: name.as_ptr(),
            socket_id: SOCKET_ID_ANY,
            rule_size: std::mem::size_of::<Rule>() as u32,
            max_rule_num: count,
        };
        // SAFETY: `param` is a valid `struct rte_acl_param` whose name (copied by the library)
        // outlives the call; `rule_size` is the size of the rules added below.
        let handle = unsafe { (self.create)(&param) };
        if handle.is_null() {
            return Err("rte_acl_create failed (EAL heap exhausted or name in use)".into());
        }
        let context = AclContext {
            library: self,
            handle,
        };
        let rules: Vec<Rule> = flows
            .iter()
            .enumerate()
            .map(|(i, flow)| rule(i, &Tuple::of_flow(flow)))
            .collect();
        // SAFETY: `handle` is a live context created for rules of this size, and `rules` holds
        // `rules.len()` initialised rules (copied by the library).
        let status = unsafe { (self.add_rules)(handle, rules.as_ptr(), rules.len() as u32) };
        if status != 0 {
            return Err(format!("rte_acl_add_rules returned {status}"));
        }
        let config = config();
        // SAFETY: `handle` is live; `config` is a valid `struct rte_acl_config` describing the
        // fields of the rules added.
        let status = unsafe { (self.build)(handle, &config) };
        if status != 0 {
            return Err(format!("rte_acl_build returned {status}"));
        }
        Ok(context)
    }
}

/// The field definitions of [`Rule`] over the key record.
fn config() -> Config {
    let mut defs = [FieldDef::default(); MAX_FIELDS];
    let field = |kind, size, index: usize, input: usize, offset: usize| FieldDef {
        kind,
        size,
        field_index: index as u8,
        input_index: input as u8,
        offset: offset as u32,
    };
    defs[0] = field(FIELD_TYPE_BITMASK, 1, 0, 0, PROTOCOL_AT);
    defs[1] = field(FIELD_TYPE_BITMASK, 4, 1, 1, META_AT);
    for word in 0..4 {
        defs[2 + word] = field(FIELD_TYPE_MASK, 4, 2 + word, 2 + word, SOURCE_AT + 4 * word);
    }
    defs[6] = field(FIELD_TYPE_BITMASK, 2, 6, 6, PORTS_AT);
    defs[7] = field(FIELD_TYPE_BITMASK, 2, 7, 6, PORTS_AT + 2);
    Config {
        num_categories: 1,
        num_fields: FIELD_COUNT as u32,
        defs,
        max_size: 0,
    }
}

/// The family-and-tag word: which family, and the tag or [`super::native_hash::NO_TAG`].
fn meta(tuple: &Tuple) -> u32 {
    u32::from(tuple.v6) << 16 | u32::from(tuple.vlan)
}

/// Flow `index`'s rule: every field exact, the source port wildcarded.
fn rule(index: usize, tuple: &Tuple) -> Rule {
    let exact = |value: u64, mask: u64| Field {
        value,
        mask_range: mask,
    };
    let mut fields = [Field::default(); FIELD_COUNT];
    fields[0] = exact(u64::from(tuple.protocol), 0xff);
    fields[1] = exact(u64::from(meta(tuple)), 0xffff_ffff);
    for word in 0..4 {
        let bytes: [u8; 4] = tuple.source[4 * word..4 * word + 4]
            .try_into()
            .expect("four bytes");
        // MASK fields: the value and its prefix length.
        fields[2 + word] = exact(u64::from(u32::from_be_bytes(bytes)), 32);
    }
    fields[6] = exact(0, 0);
    fields[7] = exact(u64::from(tuple.dst_port), 0xffff);
    Rule {
        data: RuleData {
            category_mask: 1,
            priority: MAX_PRIORITY - index as i32,
            // 0 is "no match".
            userdata: index as u32 + 1,
        },
        fields,
    }
}

/// `tuple` as the key record the rules' fields describe.
fn key_record(tuple: &Tuple) -> [u8; KEY_BYTES] {
    let mut key = [0; KEY_BYTES];
    key[PROTOCOL_AT] = tuple.protocol;
    key[META_AT..META_AT + 4].copy_from_slice(&meta(tuple).to_be_bytes());
    key[SOURCE_AT..SOURCE_AT + 16].copy_from_slice(&tuple.source);
    key[PORTS_AT + 2..PORTS_AT + 4].copy_from_slice(&tuple.dst_port.to_be_bytes());
    key
}

/// A built ACL context.
pub struct AclContext<'l> {
    library: &'l RteAcl,
    handle: *mut c_void,
}

impl std::fmt::Debug for AclContext<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AclContext")
    }
}

impl Drop for AclContext<'_> {
    fn drop(&mut self) {
        // SAFETY: `handle` came from `rte_acl_create` of this library (still open: `library`
        // outlives `self`) and is freed exactly once, here.
        unsafe { (self.library.free)(self.handle) }
    }
}

impl AclContext<'_> {
    /// The index of the flow whose rule matches `tuple`, if any.
    #[inline]
    fn lookup(&self, tuple: &Tuple) -> Option<u32> {
        let key = key_record(tuple);
        let data = [key.as_ptr()];
        let mut result = [0u32; 1];
        // SAFETY: `handle` is a built context; `data` holds one pointer to a key record of
        // `KEY_BYTES`, every field offset the context reads lies inside it; `result` has room
        // for one packet times one category.
        let status = unsafe {
            (self.library.classify)(self.handle, data.as_ptr(), result.as_mut_ptr(), 1, 1)
        };
        if status != 0 {
            return None;
        }
        result[0].checked_sub(1)
    }
}

/// An ACL context over K flows, one classification per packet after parsing.
#[derive(Debug)]
pub struct RteAclDemux<'c, 'l> {
    context: &'c AclContext<'l>,
}

impl<'c, 'l> RteAclDemux<'c, 'l> {
    /// Classifies with `context`.
    pub fn new(context: &'c AclContext<'l>) -> RteAclDemux<'c, 'l> {
        RteAclDemux { context }
    }
}

impl Demux for RteAclDemux<'_, '_> {
    #[inline]
    fn classify(&mut self, arena: &PacketArena, span: PacketSpan) -> Option<u32> {
        let tuple = Tuple::of_packet(arena.data(span))?;
        self.context.lookup(&tuple)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::engines::dpf_engines::merged_trie;
    use crate::bench::flow_filter::dpf_filters;
    use crate::synth::{SynthConfig, generate};
    use dpf::{FilterId, interp};

    /// The same verdict as dpf's interpreter over the flows' filters, on every packet and on
    /// every packet cut at every length up to its headers; skipped (with the reason) where the
    /// library is not installed or EAL cannot start.
    #[test]
    fn agrees_with_dpf_on_whole_and_cut_packets() {
        let library = match RteAcl::open() {
            Ok(library) => library,
            Err(e) => {
                eprintln!("rte-acl unavailable, not checked: {e}");
                return;
            }
        };
        let trace = generate(&SynthConfig {
            packets: 2_000,
            flows: 300,
            ..SynthConfig::default()
        });
        let flows = &trace.flows[..200];
        let filters: Vec<_> = flows
            .iter()
            .enumerate()
            .map(|(i, f)| dpf_filters(f, FilterId(i as u32)))
            .collect();
        let trie = merged_trie(&filters).unwrap();
        let context = library.context("test", flows).unwrap();
        let mut matched = 0;
        for packet in &trace.packets {
            for cut in (0..packet.data.len().min(80)).chain([packet.data.len()]) {
                let data = &packet.data[..cut];
                let want = interp::classify(&trie, &dpf::Packet::whole(data)).map(|FilterId(i)| i);
                let got = Tuple::of_packet(data).and_then(|t| context.lookup(&t));
                assert_eq!(got, want, "cut at {cut}");
                matched += usize::from(got.is_some() && cut == packet.data.len());
            }
        }
        assert!(matched > 500, "{matched}");
    }
}
