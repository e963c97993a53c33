//! The orchestrator: builds apps, packs them, builds the kernel, runs QEMU, reads the exit code.
fn main() {}
