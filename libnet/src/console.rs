//! Console output for apps: `print!`/`println!` over the `console_write` system call.
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

/// Used by the macros.
pub fn print(args: fmt::Arguments<'_>) {
    // Nothing sensible to do if the console refuses: the app has no other output.
    let _ = fmt::Write::write_fmt(&mut Console, args);
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
