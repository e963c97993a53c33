//! The kernel console: formatted log lines and raw app output on COM1.
//!
//! The lock is taken with interrupts off, so an interrupt handler that logs cannot spin on a
//! lock its own CPU holds; the panic path bypasses the lock entirely.
use crate::arch::serial::Com1;
use core::fmt::{self, Write};
use spin::Mutex;
use x86_64::instructions::interrupts::without_interrupts;

static COM1: Mutex<Com1> = Mutex::new(Com1::new());

/// Programs the UART; logging works from here on.
pub fn init() {
    without_interrupts(|| COM1.lock().init());
}

/// Writes formatted text (used by the `log!` macro).
pub fn write_fmt(args: fmt::Arguments<'_>) {
    without_interrupts(|| {
        // Writing to the UART cannot fail; Com1::write_str always returns Ok.
        let _ = COM1.lock().write_fmt(args);
    });
}

/// Writes raw bytes (an app's console output), unchanged.
pub fn write_bytes(bytes: &[u8]) {
    without_interrupts(|| {
        let mut com1 = COM1.lock();
        for &byte in bytes {
            com1.write_byte(byte);
        }
    });
}

/// Writes from the panic handler without the lock: the panicking context may hold it.
pub fn panic_write(args: fmt::Arguments<'_>) {
    let _ = Com1::new().write_fmt(args);
}

/// Logs one line, prefixed `[exo] `.
macro_rules! log {
    ($($arg:tt)*) => {
        $crate::log::write_fmt(format_args!("[exo] {}\n", format_args!($($arg)*)))
    };
}
