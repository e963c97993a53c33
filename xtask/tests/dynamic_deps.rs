//! xtask must start on a machine that has only the Rust toolchain and a C linker: it is what
//! installs everything else. So its binary may need no shared library beyond the C runtime, and
//! nothing it is built from may ask the linker for one (the linker's `--as-needed` drops an
//! unused library from the binary, but linking still fails where the library is missing).
use std::path::Path;
use std::process::Command;

/// The C runtime's shared objects (glibc and the unwinder Rust's std links).
const C_RUNTIME: &[&str] = &[
    "libc.so.6",
    "libm.so.6",
    "libgcc_s.so.1",
    "libpthread.so.0",
    "libdl.so.2",
    "librt.so.1",
    "libutil.so.1",
    "ld-linux-x86-64.so.2",
];

/// The C runtime's libraries as a build script names them to the linker (`-l` names).
const C_RUNTIME_LINK_NAMES: &[&str] = &["c", "m", "gcc_s", "pthread", "dl", "rt", "util"];

/// The `DT_NEEDED` entries of the ELF at `path`.
fn needed(path: &Path) -> Vec<String> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let elf = goblin::elf::Elf::parse(&bytes)
        .unwrap_or_else(|e| panic!("{}: not an ELF file: {e}", path.display()));
    elf.libraries.iter().map(|l| l.to_string()).collect()
}

/// What in `needed` is not part of the C runtime.
fn beyond_c_runtime(needed: &[String]) -> Vec<&str> {
    needed
        .iter()
        .map(String::as_str)
        .filter(|library| !C_RUNTIME.contains(library))
        .collect()
}

#[test]
fn xtask_needs_only_the_c_runtime() {
    let binary = Path::new(env!("CARGO_BIN_EXE_xtask"));
    let needed = needed(binary);
    assert!(
        needed.iter().any(|l| l == "libc.so.6"),
        "{}: no libc among {needed:?}: did the ELF parse read the dynamic section?",
        binary.display()
    );
    let extra = beyond_c_runtime(&needed);
    assert!(
        extra.is_empty(),
        "{} links {extra:?} beyond the C runtime; a fresh machine could not build or start it",
        binary.display()
    );
}

/// Of one build script's `cargo:rustc-link-lib` requests, those for a shared library beyond the
/// C runtime. Static libraries (bpfjit's, compiled from C by its build script) need nothing
/// from the system.
fn system_libraries<'a>(linked_libs: impl IntoIterator<Item = &'a str>) -> Vec<&'a str> {
    linked_libs
        .into_iter()
        .filter(|request| {
            let (kind, name) = request.split_once('=').unwrap_or(("dylib", request));
            let name = name.split_once(':').map_or(name, |(name, _)| name);
            !kind.starts_with("static") && !C_RUNTIME_LINK_NAMES.contains(&name)
        })
        .collect()
}

/// Every crate xtask is built from, as `cargo build -p xtask` resolves them: none may ask to
/// link a system library.
#[test]
fn nothing_xtask_is_built_from_links_a_system_library() {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let output = Command::new(cargo)
        .current_dir(&workspace)
        .args(["build", "-q", "-p", "xtask", "--message-format=json"])
        .output()
        .expect("running cargo build");
    assert!(
        output.status.success(),
        "cargo build -p xtask failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let mut build_scripts = 0;
    let mut offenders = Vec::new();
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        let Ok(message) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if message["reason"] != "build-script-executed" {
            continue;
        }
        build_scripts += 1;
        let requests = message["linked_libs"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|lib| lib.as_str());
        for library in system_libraries(requests) {
            offenders.push(format!("{} asks for -l{library}", message["package_id"]));
        }
    }
    assert!(
        build_scripts > 0,
        "cargo reported no build script: the JSON messages were not read"
    );
    assert!(offenders.is_empty(), "{offenders:#?}");
}

#[test]
fn link_requests_are_judged_by_kind_and_name() {
    assert_eq!(
        system_libraries(["pcap", "static=bpfjit", "dylib=m", "gcc_s", "dylib=ssl"]),
        ["pcap", "dylib=ssl"]
    );
}

#[test]
fn a_system_library_is_noticed() {
    let needed = vec!["libc.so.6".to_string(), "libpcap.so.0.8".to_string()];
    assert_eq!(beyond_c_runtime(&needed), ["libpcap.so.0.8"]);
}
