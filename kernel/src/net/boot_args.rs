//! Boot arguments: the command line's `arg=` words, handed to the boot apps they name.
use super::NET;
use crate::env::{EnvId, Environment};
use crate::usermem::UserSlice;
use alloc::string::String;
use alloc::vec::Vec;
use exo_abi::Error;
use exo_abi::net as abi;

/// `arg=` words: for the boot app at this 1-based position (`arg=K:HEX`), or every app.
pub(super) fn parse(arguments: &[&str]) -> Vec<(Option<usize>, String)> {
    arguments
        .iter()
        .map(|word| match word.split_once(':') {
            Some((position, hex)) => (position.parse().ok(), String::from(hex)),
            None => (None, String::from(*word)),
        })
        .collect()
}

/// Boot: the app at 1-based command-line `position` runs as `id` (it gets the `arg=K:` words
/// with K = `position`).
pub fn boot_app(position: usize, id: EnvId) {
    NET.lock().boot_apps.push((id, position));
}

/// `boot_argument(index, buffer, length)` into `env`.
pub fn boot_argument(env: &mut Environment, index: u64, buffer: UserSlice) -> Result<u64, Error> {
    let mut decoded = [0u8; 1024];
    let length = {
        let net = NET.lock();
        let position = net
            .boot_apps
            .iter()
            .find(|(id, _)| *id == env.id)
            .map(|(_, position)| *position);
        let (_, word) = net
            .arguments
            .iter()
            .filter(|(only, _)| only.is_none() || *only == position)
            .nth(usize::try_from(index).map_err(|_| Error::InvalidArgument)?)
            .ok_or(Error::NotFound)?;
        abi::hex_decode(word.as_bytes(), &mut decoded).ok_or(Error::InvalidArgument)?
    };
    if (length as u64) > buffer.length_bytes() {
        return Err(Error::InvalidArgument);
    }
    crate::usermem::write_bytes(env, buffer.address(), &decoded[..length])?;
    Ok(length as u64)
}
