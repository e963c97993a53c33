//! The periodic timer: the legacy PIT on IRQ 0 through the 8259 PICs, remapped to vector 32;
//! and the PICs themselves, which also carry the devices' legacy INTx lines (the NIC's).
//!
//! The PIT needs no memory-mapped registers or calibration, which keeps the first kernel
//! small; time slices will want the local APIC timer, and only this module has to change.
use core::sync::atomic::{AtomicU64, Ordering};
use x86_64::instructions::port::Port;

/// Vector of the timer interrupt (IRQ 0 after remapping).
pub const TIMER_VECTOR: u8 = 32;
/// Vectors the PICs use for spurious interrupts (IRQ 7 and IRQ 15 after remapping).
pub const SPURIOUS_VECTORS: [u8; 2] = [39, 47];
/// Timer frequency.
pub const TICKS_PER_SECOND: u32 = exo_abi::syscall::TICKS_PER_SECOND as u32;

const PIT_INPUT_HZ: u32 = 1_193_182;
const PIC_MASTER_COMMAND: u16 = 0x20;
const PIC_MASTER_DATA: u16 = 0x21;
const PIC_SLAVE_COMMAND: u16 = 0xa0;
const PIC_SLAVE_DATA: u16 = 0xa1;
const END_OF_INTERRUPT: u8 = 0x20;

/// Vector of IRQ `irq` (0..16) after remapping.
pub const fn irq_vector(irq: u8) -> u8 {
    TIMER_VECTOR + irq
}

/// The cascade input of the master PIC (the slave's INTR).
const CASCADE_IRQ: u8 = 2;

static TICKS: AtomicU64 = AtomicU64::new(0);

fn outb(port: u16, value: u8) {
    let mut port: Port<u8> = Port::new(port);
    // SAFETY: only called with the PIC and PIT ports below; programming them changes which
    // interrupts arrive, never memory.
    unsafe { port.write(value) };
}

fn inb(port: u16) -> u8 {
    let mut port: Port<u8> = Port::new(port);
    // SAFETY: reading a PIC's mask register has no side effect.
    unsafe { port.read() }
}

/// Lets IRQ `irq` (0..16) through (and the cascade, for the slave's lines). Interrupts
/// reach the CPU only while it runs ring 3 or idles, so the handler never finds kernel state
/// half-changed.
pub fn unmask(irq: u8) {
    let (port, bit) = if irq < 8 {
        (PIC_MASTER_DATA, irq)
    } else {
        unmask(CASCADE_IRQ);
        (PIC_SLAVE_DATA, irq - 8)
    };
    outb(port, inb(port) & !(1 << bit));
}

/// Ends the handling of IRQ `irq` at the PICs (after the device was acknowledged, so a
/// level-triggered line is low again).
pub fn end_of_interrupt(irq: u8) {
    if irq >= 8 {
        outb(PIC_SLAVE_COMMAND, END_OF_INTERRUPT);
    }
    outb(PIC_MASTER_COMMAND, END_OF_INTERRUPT);
}

/// Remaps the PICs to vectors 32..48, masks everything but IRQ 0 and starts the PIT.
pub fn init() {
    // ICW1: initialise, expect ICW4. ICW2: vector offsets. ICW3: cascade on IRQ 2. ICW4: 8086.
    let sequence = [
        (PIC_MASTER_COMMAND, 0x11),
        (PIC_SLAVE_COMMAND, 0x11),
        (PIC_MASTER_DATA, TIMER_VECTOR),
        (PIC_SLAVE_DATA, TIMER_VECTOR + 8),
        (PIC_MASTER_DATA, 0x04),
        (PIC_SLAVE_DATA, 0x02),
        (PIC_MASTER_DATA, 0x01),
        (PIC_SLAVE_DATA, 0x01),
        (PIC_MASTER_DATA, 0xfe), // only IRQ 0 (the timer)
        (PIC_SLAVE_DATA, 0xff),
    ];
    for (port, value) in sequence {
        outb(port, value);
    }
    let divisor = PIT_INPUT_HZ / TICKS_PER_SECOND;
    outb(0x43, 0x36); // channel 0, low then high byte, mode 3 (square wave)
    outb(0x40, (divisor & 0xff) as u8);
    outb(0x40, (divisor >> 8) as u8);
}

/// Called from the trap dispatcher on every timer interrupt (the scheduler charges slices
/// for the ones that interrupt ring 3).
pub fn on_tick() {
    TICKS.fetch_add(1, Ordering::Relaxed);
    outb(PIC_MASTER_COMMAND, END_OF_INTERRUPT);
}

/// Timer interrupts since boot.
pub fn ticks() -> u64 {
    TICKS.load(Ordering::Relaxed)
}
