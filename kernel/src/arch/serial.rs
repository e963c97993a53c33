//! COM1, the 16550 UART at 0x3f8: the kernel's log and the apps' console.
use x86_64::instructions::port::Port;

const COM1_BASE: u16 = 0x3f8;

/// The COM1 transmitter. Stateless apart from the UART itself, so the panic path can make a
/// fresh one instead of taking a lock another context may hold.
#[derive(Debug)]
pub struct Com1 {
    data: Port<u8>,
    line_status: Port<u8>,
}

impl Com1 {
    /// A handle to COM1 (does not reprogram it).
    pub const fn new() -> Com1 {
        Com1 {
            data: Port::new(COM1_BASE),
            line_status: Port::new(COM1_BASE + 5),
        }
    }

    /// Programs 115200 baud, 8N1, FIFOs on, interrupts off.
    pub fn init(&mut self) {
        let registers: [(u16, u8); 7] = [
            (1, 0x00), // no UART interrupts: the kernel polls
            (3, 0x80), // DLAB on to set the divisor
            (0, 0x01), // divisor 1 = 115200 baud
            (1, 0x00),
            (3, 0x03), // 8 data bits, no parity, 1 stop bit, DLAB off
            (2, 0xc7), // FIFOs on and cleared, 14-byte threshold
            (4, 0x03), // DTR and RTS
        ];
        for (offset, value) in registers {
            let mut port: Port<u8> = Port::new(COM1_BASE + offset);
            // SAFETY: these are COM1's own registers; programming them affects only the UART.
            unsafe { port.write(value) };
        }
    }

    /// Sends one byte, waiting for room in the transmitter.
    pub fn write_byte(&mut self, byte: u8) {
        // SAFETY: reading the line status register of COM1 has no side effect on memory.
        while unsafe { self.line_status.read() } & 0x20 == 0 {
            core::hint::spin_loop();
        }
        // SAFETY: writing the data register transmits the byte; no memory is touched.
        unsafe { self.data.write(byte) };
    }
}

impl core::fmt::Write for Com1 {
    fn write_str(&mut self, text: &str) -> core::fmt::Result {
        for byte in text.bytes() {
            self.write_byte(byte);
        }
        Ok(())
    }
}
