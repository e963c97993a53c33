//! x86_64 hardware access: boot trampoline, descriptor tables, trap and system-call entry,
//! port I/O, the timer, and the jump to and from ring 3.
//!
//! Most of the kernel's `unsafe` lives under this module; each block argues its safety.

pub mod boot;
pub mod fpu;
pub mod gdt;
pub mod pci;
pub mod percpu;
pub mod protect;
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

/// From kernel code (interrupts off): enables interrupts and sleeps until one has been
/// handled, then disables them again. `sti; hlt` is one step for interrupts (`sti` takes
/// effect after the next instruction), so one that became pending before cannot slip in
/// between and leave the CPU asleep.
pub fn idle_until_interrupt() {
    interrupts::enable_and_hlt();
    interrupts::disable();
}

/// Reads virtual address 0x10, which the kernel never maps (page 0 stays unmapped to catch
/// null dereferences): a self-test of the kernel's own page-fault report. Does not return.
pub fn read_unmapped_kernel_address() {
    // SAFETY: the read faults before it completes and the fault handler panics, so no value
    // is produced and no Rust-visible memory is involved (asm, not a null pointer deref).
    unsafe {
        core::arch::asm!("mov rax, qword ptr [0x10]", out("rax") _, options(nostack, readonly))
    };
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
