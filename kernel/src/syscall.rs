//! The system-call table: the one place a call number becomes kernel behaviour.
//!
//! Numbers and their contracts are in `exo_abi::syscall`; every argument is untrusted until
//! the handler checks it.
#![forbid(unsafe_code)]
use crate::arch::syscall::SyscallFrame;
use crate::usermem::{self, UserSlice};
use crate::{env, log};
use exo_abi::syscall::CONSOLE_WRITE_MAX_BYTES;
use exo_abi::{Error, Syscall, error::encode_result};

/// Runs the call `frame` describes and leaves the encoded result in `frame.rax`.
pub fn dispatch(frame: &mut SyscallFrame) {
    let result = match Syscall::from_number(frame.rax) {
        Some(Syscall::Exit) => env::exit_current(frame.rdi),
        Some(Syscall::ConsoleWrite) => console_write(UserSlice::new(frame.rdi, frame.rsi)),
        None => Err(Error::UnknownSyscall),
    };
    frame.rax = encode_result(result);
}

fn console_write(text: UserSlice) -> Result<u64, Error> {
    let text = text.truncate(CONSOLE_WRITE_MAX_BYTES);
    env::with_current(|env| usermem::read_chunks(env, text, log::write_bytes))?;
    Ok(text.length_bytes())
}
