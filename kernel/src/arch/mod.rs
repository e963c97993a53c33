//! x86_64 hardware access: boot trampoline, descriptor tables, trap and system-call entry,
//! port I/O, the timer, and the jump to and from ring 3.
//!
//! Most of the kernel's `unsafe` lives under this module; each block argues its safety.

pub mod boot;
pub mod gdt;
pub mod percpu;
pub mod serial;
pub mod stack;
pub mod syscall;
pub mod timer;
pub mod trap;
pub mod user;

use exo_abi::KernelExit;
use x86_64::instructions::{hlt, interrupts, port::Port};

/// Masks maskable interrupts on this CPU.
pub fn interrupts_disable() {
    interrupts::disable();
}

/// Unmasks maskable interrupts on this CPU.
pub fn interrupts_enable() {
    interrupts::enable();
}

/// Sleeps until the next interrupt (interrupts must be enabled to ever wake up).
pub fn wait_for_interrupt() {
    hlt();
}

/// Stops the machine with `exit` as QEMU's status (`isa-debug-exit`); halts forever if the
/// device is absent (real hardware, or QEMU started without it).
pub fn exit_qemu(exit: KernelExit) -> ! {
    let mut port: Port<u32> = Port::new(exo_abi::exit::DEBUG_EXIT_PORT);
    // SAFETY: port 0xf4 is the isa-debug-exit device xtask configures; writing it stops QEMU
    // and touches no memory. Without the device the write is ignored.
    unsafe { port.write(u32::from(exit.code())) };
    interrupts::disable();
    loop {
        hlt();
    }
}
