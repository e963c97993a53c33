//! The periodic timer: the legacy PIT on IRQ 0 through the 8259 PICs, remapped to vector 32.
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
pub const TICKS_PER_SECOND: u32 = 100;

const PIT_INPUT_HZ: u32 = 1_193_182;
const PIC_MASTER_COMMAND: u16 = 0x20;
const PIC_MASTER_DATA: u16 = 0x21;
const PIC_SLAVE_COMMAND: u16 = 0xa0;
const PIC_SLAVE_DATA: u16 = 0xa1;
const END_OF_INTERRUPT: u8 = 0x20;

static TICKS: AtomicU64 = AtomicU64::new(0);

fn outb(port: u16, value: u8) {
    let mut port: Port<u8> = Port::new(port);
    // SAFETY: only called with the PIC and PIT ports below; programming them changes which
    // interrupts arrive, never memory.
    unsafe { port.write(value) };
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
