//! Links the bare-metal kernel at 1 MiB with its own linker script and embeds the boot pack.
//!
//! xtask sets `EXO_PACK` to the pack it built from the apps; without it (clippy, host builds)
//! an empty pack is embedded so the kernel still compiles.
use std::{env, fs, path::PathBuf};

fn main() {
    let manifest_dir = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("set by cargo"));
    let linker_script = manifest_dir.join("kernel.ld");
    println!("cargo:rerun-if-changed={}", linker_script.display());
    println!("cargo:rerun-if-env-changed=EXO_PACK");

    if env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("none") {
        println!("cargo:rustc-link-arg-bins=-T{}", linker_script.display());
        println!("cargo:rustc-link-arg-bins=--no-pie");
    }

    let pack = match env::var_os("EXO_PACK") {
        Some(path) => PathBuf::from(path),
        None => {
            let path = out_dir.join("empty.pack");
            let mut bytes = Vec::new();
            exo_abi::pack::write_pack(&[], &mut |chunk| bytes.extend_from_slice(chunk))
                .expect("an empty pack is valid");
            fs::write(&path, bytes).expect("write empty pack");
            path
        }
    };
    println!("cargo:rerun-if-changed={}", pack.display());
    println!("cargo:rustc-env=EXO_PACK_PATH={}", pack.display());
}
