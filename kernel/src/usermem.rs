//! User memory: a pointer from user space is an allegation until checked.
//!
//! A [`UserSlice`] is what user code claims; [`read_chunks`] checks the claim against the
//! environment's mappings before one byte is copied, then copies through the environment's
//! own page table, never through whatever address space happens to be active.
//! [`check_readable`] splits the two: the check first, giving a [`Readable`] that is the
//! only way to [`read_into`] a kernel buffer of the caller's (one copy, no bounce buffer).
#![forbid(unsafe_code)]
use crate::env::Environment;
use exo_abi::Error;
use exo_kernel::elf::Access;

/// A user-supplied `(pointer, length)` pair, not yet checked.
#[derive(Clone, Copy, Debug)]
pub struct UserSlice {
    address: u64,
    length_bytes: u64,
}

impl UserSlice {
    /// Records the claim; nothing is checked yet.
    pub const fn new(address: u64, length_bytes: u64) -> UserSlice {
        UserSlice {
            address,
            length_bytes,
        }
    }

    /// The claimed address.
    pub const fn address(&self) -> u64 {
        self.address
    }

    /// The claimed length.
    pub const fn length_bytes(&self) -> u64 {
        self.length_bytes
    }

    /// The first `length_bytes` of the claim (or all of it, if shorter).
    pub const fn truncate(self, length_bytes: u64) -> UserSlice {
        UserSlice {
            address: self.address,
            length_bytes: if length_bytes < self.length_bytes {
                length_bytes
            } else {
                self.length_bytes
            },
        }
    }
}

/// Size of the kernel buffer user bytes pass through.
const CHUNK_BYTES: usize = 256;

/// Checks that `slice` is readable user memory of `env`, then hands its bytes to `sink` in
/// chunks. Fails with `BadAddress` before anything is copied if any byte is not readable.
pub fn read_chunks(
    env: &Environment,
    slice: UserSlice,
    mut sink: impl FnMut(&[u8]),
) -> Result<(), Error> {
    env.mappings
        .check(slice.address, slice.length_bytes, Access::READ)?;
    let mut buffer = [0u8; CHUNK_BYTES];
    let mut done = 0u64;
    while done < slice.length_bytes {
        let chunk = (slice.length_bytes - done).min(CHUNK_BYTES as u64) as usize;
        env.space
            .read_user(slice.address + done, &mut buffer[..chunk])?;
        sink(&buffer[..chunk]);
        done += chunk as u64;
    }
    Ok(())
}

/// A [`UserSlice`] of one environment whose mappings say it is readable: only
/// [`check_readable`] makes one, and it copies from that environment only.
#[derive(Clone, Copy, Debug)]
pub struct Readable<'a> {
    env: &'a Environment,
    slice: UserSlice,
}

impl Readable<'_> {
    /// Its length in bytes.
    pub const fn length_bytes(&self) -> u64 {
        self.slice.length_bytes
    }
}

/// Checks that `slice` is readable user memory of `env`; nothing is copied.
pub fn check_readable(env: &Environment, slice: UserSlice) -> Result<Readable<'_>, Error> {
    env.mappings
        .check(slice.address, slice.length_bytes, Access::READ)?;
    Ok(Readable { env, slice })
}

/// Copies `readable` straight into `destination` (its length exactly), page by page through
/// its environment's page table. `InvalidArgument` if the lengths differ; `BadAddress` if a
/// page is not mapped after all (the copy may then be partial).
pub fn read_into(readable: Readable<'_>, destination: &mut [u8]) -> Result<(), Error> {
    if destination.len() as u64 != readable.slice.length_bytes {
        return Err(Error::InvalidArgument);
    }
    readable
        .env
        .space
        .read_user(readable.slice.address, destination)
}

/// Checks that `[address, address + bytes.len())` is writable user memory of `env`, then
/// copies `bytes` there. Nothing is written unless all of it is writable.
pub fn write_bytes(env: &mut Environment, address: u64, bytes: &[u8]) -> Result<(), Error> {
    env.mappings
        .check(address, bytes.len() as u64, Access::READ_WRITE)?;
    env.space.write_user(address, bytes)
}
