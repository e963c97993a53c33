//! Transmit: an app's frame gathered from its memory, checked (`exo_kernel::tx_check`), sent;
//! and the addresses it may send from.
use super::counters::bump;
use super::device::{SendRefusal, Sender};
use super::ring::owned_ports;
use super::{NET, Net, arp_answers, physical};
use crate::env::Environment;
use crate::usermem::UserSlice;
use alloc::vec::Vec;
use exo_abi::Error;
use exo_abi::net::{self as abi, Counter};

/// `net_transmit(gather, count, raw)` from `env`; `raw`: it holds the raw-transmit right.
/// Timed (`Counter::TransmitCycles`), refusals included: the profile's transmit layer.
pub fn transmit(
    env: &Environment,
    gather: u64,
    pieces_count: u64,
    raw: bool,
) -> Result<u64, Error> {
    let start = physical::tsc();
    let result = gather_check_send(env, gather, pieces_count, raw);
    let cycles = physical::tsc().wrapping_sub(start);
    let counters = &mut NET.lock().counters;
    counters[Counter::TransmitCycles as usize] += cycles;
    bump(counters, Counter::TransmitCalls);
    result
}

/// The body of [`transmit`].
fn gather_check_send(
    env: &Environment,
    gather: u64,
    pieces_count: u64,
    raw: bool,
) -> Result<u64, Error> {
    if pieces_count == 0 || pieces_count > exo_abi::syscall::NET_TRANSMIT_MAX_PIECES {
        return Err(Error::InvalidArgument);
    }
    let frame = {
        let mut pieces = Vec::new();
        crate::usermem::read_chunks(env, UserSlice::new(gather, pieces_count * 16), |chunk| {
            pieces.extend_from_slice(chunk)
        })?;
        let mut frame = Vec::new();
        for piece in pieces.chunks_exact(16) {
            let address = u64::from_le_bytes(piece[..8].try_into().expect("8 bytes"));
            let length = u64::from_le_bytes(piece[8..].try_into().expect("8 bytes"));
            // A user length: summed with overflow checked, or 2^64 - 1 wraps to a small one.
            if (frame.len() as u64)
                .checked_add(length)
                .is_none_or(|total| total > abi::FRAME_MAX_BYTES)
            {
                return Err(Error::InvalidArgument);
            }
            crate::usermem::read_chunks(env, UserSlice::new(address, length), |chunk| {
                frame.extend_from_slice(chunk)
            })?;
        }
        frame
    };
    let mut net = NET.lock();
    let Net {
        nic,
        counters,
        rings,
        ipv4,
        arrival,
        ..
    } = &mut *net;
    let nic = nic.as_mut().ok_or(Error::InvalidArgument)?;
    let ports = owned_ports(rings, env.id);
    let sender = exo_kernel::tx_check::SenderIdentity {
        mac: nic.mac(),
        ipv4: *ipv4,
        ports: &ports,
    };
    if let Err(refusal) = exo_kernel::tx_check::check(
        &frame,
        &sender,
        if raw {
            exo_kernel::tx_check::Privilege::Raw
        } else {
            exo_kernel::tx_check::Privilege::App
        },
    ) {
        bump(counters, Counter::TxRefused);
        log!("net: transmit refused: {refusal:?}");
        return Err(Error::Denied);
    }
    arp_answers::asked(env.id, &frame, nic.mac(), *ipv4, counters);
    match nic.send(&frame, Sender::Environment(env.id)) {
        Ok(()) => {}
        Err(SendRefusal::QueueFull) => {
            bump(counters, Counter::TxQueueFull);
            return Err(Error::WouldBlock);
        }
        Err(SendRefusal::Refused) => return Err(Error::InvalidArgument),
    }
    arrival.sent(counters);
    bump(counters, Counter::TxFrames);
    Ok(frame.len() as u64)
}

/// `net_mac()`.
pub fn mac() -> Result<u64, Error> {
    let net = NET.lock();
    let mac = net.nic.as_ref().ok_or(Error::InvalidArgument)?.mac();
    let mut bytes = [0u8; 8];
    bytes[..6].copy_from_slice(&mac);
    Ok(u64::from_le_bytes(bytes))
}

/// `net_ipv4()`.
pub fn ipv4() -> Result<u64, Error> {
    let net = NET.lock();
    net.nic.as_ref().ok_or(Error::InvalidArgument)?;
    Ok(u64::from(u32::from_le_bytes(net.ipv4)))
}
