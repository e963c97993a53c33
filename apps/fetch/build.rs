//! Links the app at the fixed user address with libnet's generated linker script.
fn main() {
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("none") {
        let script = std::env::var("DEP_LIBNET_LINKER_SCRIPT").expect("libnet exports it");
        println!("cargo:rustc-link-arg-bins=-T{script}");
        println!("cargo:rustc-link-arg-bins=--no-pie");
    }
}
