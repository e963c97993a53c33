//! Console output for apps: `print!`/`println!` over the `console_write` system call, one
//! call per line (up to 512 bytes) so lines of different environments do not interleave.
use core::fmt;

/// The console as a `fmt::Write` sink.
#[derive(Debug, Default)]
pub struct Console;

impl fmt::Write for Console {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        let mut rest = text.as_bytes();
        while !rest.is_empty() {
            let written = crate::sys::console_write(rest).map_err(|_| fmt::Error)?;
            rest = &rest[written..];
        }
        Ok(())
    }
}

/// Bytes `print!` gathers before writing, so that a line up to this long reaches the console
/// in one system call and is not interleaved with other environments' output.
const LINE_BYTES: usize = 512;

/// A stack buffer in front of the console.
struct Buffered {
    bytes: [u8; LINE_BYTES],
    length: usize,
}

impl Buffered {
    fn flush(&mut self) -> fmt::Result {
        // Raw bytes: a flush may fall inside a character, which the console does not mind.
        let mut rest = &self.bytes[..self.length];
        self.length = 0;
        while !rest.is_empty() {
            let written = crate::sys::console_write(rest).map_err(|_| fmt::Error)?;
            rest = &rest[written..];
        }
        Ok(())
    }
}

impl fmt::Write for Buffered {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        for chunk in text.as_bytes().chunks(LINE_BYTES) {
            if self.length + chunk.len() > LINE_BYTES {
                self.flush()?;
            }
            self.bytes[self.length..self.length + chunk.len()].copy_from_slice(chunk);
            self.length += chunk.len();
        }
        Ok(())
    }
}

/// Used by the macros.
pub fn print(args: fmt::Arguments<'_>) {
    let mut buffered = Buffered {
        bytes: [0; LINE_BYTES],
        length: 0,
    };
    // Nothing sensible to do if the console refuses: the app has no other output.
    let _ = fmt::Write::write_fmt(&mut buffered, args);
    let _ = buffered.flush();
}

/// Prints to the console.
#[macro_export]
macro_rules! print {
    ($($arg:tt)*) => { $crate::console::print(format_args!($($arg)*)) };
}

/// Prints a line to the console.
#[macro_export]
macro_rules! println {
    () => { $crate::print!("\n") };
    ($($arg:tt)*) => { $crate::console::print(format_args!("{}\n", format_args!($($arg)*))) };
}
