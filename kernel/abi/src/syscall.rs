//! System-call numbers and the register convention; each call is documented once, here.
//!
//! Convention (x86_64 `syscall`): `rax` holds the number, arguments go in `rdi`, `rsi`, `rdx`,
//! `r10`, `r8`, `r9` (in that order), and the result comes back in `rax`, encoded by
//! [`crate::error::encode_result`]. `rcx` and `r11` are clobbered by the instruction itself; the
//! kernel preserves every other register.

/// A system call the kernel implements. The discriminant is the number user code puts in `rax`.
#[repr(u64)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Syscall {
    /// `exit(status)`: ends the calling environment. `status` 0 means success; the kernel
    /// reports 0..=63 as they are (see [`crate::exit::KernelExit`]). Never returns.
    Exit = 0,
    /// `console_write(pointer, length_bytes) -> length_bytes`: writes bytes to the kernel
    /// console (COM1). The buffer must lie in memory the caller has mapped readable; at most
    /// [`CONSOLE_WRITE_MAX_BYTES`] are written per call and the count written is returned.
    ConsoleWrite = 1,
}

/// Upper bound of one `console_write`, so one call cannot hold the console for long.
pub const CONSOLE_WRITE_MAX_BYTES: u64 = 4096;

impl Syscall {
    /// Every system call, in number order; the kernel's dispatch is checked against it.
    pub const ALL: [Syscall; 2] = [Syscall::Exit, Syscall::ConsoleWrite];

    /// The number user code places in `rax`.
    pub const fn number(self) -> u64 {
        self as u64
    }

    /// Decodes a number from `rax`; `None` for numbers no call has (the kernel answers those
    /// with [`crate::Error::UnknownSyscall`]).
    pub const fn from_number(number: u64) -> Option<Syscall> {
        match number {
            0 => Some(Syscall::Exit),
            1 => Some(Syscall::ConsoleWrite),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_round_trip() {
        for call in Syscall::ALL {
            assert_eq!(Syscall::from_number(call.number()), Some(call));
        }
    }

    #[test]
    fn numbers_are_dense_and_stable() {
        // User binaries built against an older ABI keep working only if numbers never move.
        assert_eq!(Syscall::Exit.number(), 0);
        assert_eq!(Syscall::ConsoleWrite.number(), 1);
        for (index, call) in Syscall::ALL.iter().enumerate() {
            assert_eq!(call.number(), index as u64);
        }
        assert_eq!(Syscall::from_number(Syscall::ALL.len() as u64), None);
        assert_eq!(Syscall::from_number(u64::MAX), None);
    }
}
