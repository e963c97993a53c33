//! Links the app at the fixed user address with libnet's generated linker script, and writes
//! the site's 1 MiB file (`big.bin`, see `big_file_byte`) and the benchmark's 100 KiB document
//! (`100k.bin`, the first 100 KiB of the same bytes) into `OUT_DIR`.
fn main() {
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("none") {
        let script = std::env::var("DEP_LIBNET_LINKER_SCRIPT").expect("libnet exports it");
        println!("cargo:rustc-link-arg-bins=-T{script}");
        println!("cargo:rustc-link-arg-bins=--no-pie");
    }
    let out = std::env::var("OUT_DIR").expect("cargo sets OUT_DIR");
    let bytes: Vec<u8> = (0..BIG_FILE_BYTES).map(big_file_byte).collect();
    std::fs::write(format!("{out}/big.bin"), &bytes).expect("OUT_DIR is writable");
    std::fs::write(format!("{out}/100k.bin"), &bytes[..HUNDRED_K_BYTES])
        .expect("OUT_DIR is writable");
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=site");
}

/// Bytes of `big.bin`.
const BIG_FILE_BYTES: usize = 1 << 20;

/// Bytes of `100k.bin`.
const HUNDRED_K_BYTES: usize = 100 * 1024;

/// Byte `index` of `big.bin`: not periodic at any small stride, so a reordered or repeated
/// segment shows. xtask's tap scenario computes the same (`httpd_big_file`).
fn big_file_byte(index: usize) -> u8 {
    let x = (index as u32).wrapping_mul(2_654_435_761);
    (x >> 24) as u8 ^ (index >> 12) as u8
}
