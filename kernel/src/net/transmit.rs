//! Transmit: an app's frame gathered from its memory, checked (`exo_kernel::tx_check`), sent;
//! and the addresses it may send from.
//!
//! One copy, no allocation: the gather list is read onto the stack and every piece checked
//! against the app's mappings first; then a transmit buffer is reserved, each piece is copied
//! from the app's pages straight into it behind the virtio header, the check runs on those
//! bytes (the kernel's copy, which the app cannot change after the check), and the buffer
//! goes to the device, or back to the free list if anything refused. Only a frame that cannot
//! be queued at all (no buffer free for the sender, or longer than a buffer holds) is gathered
//! onto the stack instead, so that it is checked, counted and answered as a queued one would
//! be up to the point of queueing.
use super::arp_answers;
use super::counters::{Counters, bump};
use super::device::{Sender, Unsent};
use super::ring::OwnedPorts;
use super::{NET, Net, physical};
use crate::env::Environment;
use crate::usermem::{self, Readable, UserSlice};
use exo_abi::Error;
use exo_abi::net::{self as abi, Counter};
use exo_abi::syscall::NET_TRANSMIT_MAX_PIECES;
use exo_kernel::tx_check::{self, Privilege, SenderIdentity};

/// Most pieces one call gathers, as an index bound.
const MAX_PIECES: usize = NET_TRANSMIT_MAX_PIECES as usize;
/// Bytes of one gather-list entry: `(address, length_bytes)`, two little-endian `u64`.
const ENTRY_BYTES: usize = 16;

/// `net_transmit(gather, count, raw)` from `env`; `raw`: it holds the raw-transmit right.
/// Timed (`Counter::TransmitCycles`), refusals included: the profile's transmit layer. The
/// net lock is taken once for the whole call, its timing included.
pub fn transmit(
    env: &Environment,
    gather: u64,
    pieces_count: u64,
    raw: bool,
) -> Result<u64, Error> {
    let start = physical::tsc();
    let mut net = NET.lock();
    let result = gather_check_send(env, gather, pieces_count, raw, &mut net);
    let counters = &mut net.counters;
    counters[Counter::TransmitCycles as usize] += physical::tsc().wrapping_sub(start);
    bump(counters, Counter::TransmitCalls);
    result
}

/// Why a frame being written into its transmit buffer was refused.
enum FillRefusal {
    /// A piece could not be copied after all (`BadAddress`).
    Copy(Error),
    /// The transmit check refused it.
    Check(tx_check::TxRefusal),
}

/// The body of [`transmit`].
fn gather_check_send(
    env: &Environment,
    gather: u64,
    pieces_count: u64,
    raw: bool,
    net: &mut Net,
) -> Result<u64, Error> {
    let mut pieces = [None; MAX_PIECES];
    let (pieces, length_bytes) = checked_pieces(env, gather, pieces_count, &mut pieces)?;
    let Net {
        nic,
        counters,
        rings,
        ipv4,
        arrival,
        ..
    } = net;
    let nic = nic.as_mut().ok_or(Error::InvalidArgument)?;
    let mac = nic.mac();
    let ipv4 = *ipv4;
    let ports = OwnedPorts {
        rings,
        owner: env.id,
    };
    let sender = SenderIdentity {
        mac,
        ipv4,
        ports: &ports,
    };
    let privilege = if raw { Privilege::Raw } else { Privilege::App };
    let sent = nic.send_with(
        Sender::Environment(env.id),
        length_bytes as usize,
        |frame| {
            gather_into(pieces, frame).map_err(FillRefusal::Copy)?;
            tx_check::check(frame, &sender, privilege).map_err(FillRefusal::Check)?;
            arp_answers::asked(env.id, frame, mac, ipv4, counters);
            Ok(())
        },
    );
    match sent {
        Ok(()) => {}
        Err(Unsent::Fill(FillRefusal::Copy(error))) => return Err(error),
        Err(Unsent::Fill(FillRefusal::Check(refusal))) => return Err(refused(refusal, counters)),
        // Nothing was written: check it here, so the answer and counts are those of a frame
        // that reached the queue (a refused frame is refused, whether the queue is full or not).
        Err(Unsent::QueueFull) => {
            unqueued(env, pieces, length_bytes, &sender, privilege, counters)?;
            bump(counters, Counter::TxQueueFull);
            return Err(Error::WouldBlock);
        }
        Err(Unsent::TooLong) => {
            unqueued(env, pieces, length_bytes, &sender, privilege, counters)?;
            return Err(Error::InvalidArgument);
        }
        Err(Unsent::Driver) => return Err(Error::InvalidArgument),
    }
    arrival.sent(counters);
    bump(counters, Counter::TxFrames);
    Ok(length_bytes)
}

/// Reads the gather list at `gather` (`pieces_count` entries) onto the stack and checks every
/// piece against `env`'s mappings, in order: `InvalidArgument` for a count of 0 or over
/// [`NET_TRANSMIT_MAX_PIECES`], or for lengths whose sum overflows or passes
/// [`abi::FRAME_MAX_BYTES`]; `BadAddress` for a list or piece not readable. Returns the
/// checked pieces (in `storage`) and the frame's length.
fn checked_pieces<'a, 'e>(
    env: &'e Environment,
    gather: u64,
    pieces_count: u64,
    storage: &'a mut [Option<Readable<'e>>; MAX_PIECES],
) -> Result<(&'a [Option<Readable<'e>>], u64), Error> {
    if pieces_count == 0 || pieces_count > NET_TRANSMIT_MAX_PIECES {
        return Err(Error::InvalidArgument);
    }
    let list = usermem::check_readable(
        env,
        UserSlice::new(gather, pieces_count * ENTRY_BYTES as u64),
    )?;
    // Read whole onto a stack buffer cleared only as far as it needs to be: libnet's stack
    // sends one piece, Cheetah's paths several.
    if pieces_count == 1 {
        parse_list::<ENTRY_BYTES>(env, list, storage)
    } else {
        parse_list::<{ MAX_PIECES * ENTRY_BYTES }>(env, list, storage)
    }
}

/// The body of [`checked_pieces`] once the list is known readable: reads it into a
/// `BYTES`-byte buffer (at least the list's length) and checks its pieces in order.
fn parse_list<'a, 'e, const BYTES: usize>(
    env: &'e Environment,
    list: Readable<'e>,
    storage: &'a mut [Option<Readable<'e>>; MAX_PIECES],
) -> Result<(&'a [Option<Readable<'e>>], u64), Error> {
    let mut buffer = [0u8; BYTES];
    let bytes = buffer
        .get_mut(..list.length_bytes() as usize)
        .ok_or(Error::InvalidArgument)?;
    usermem::read_into(list, bytes)?;
    let mut count = 0;
    let mut length_bytes = 0u64;
    for (slot, entry) in storage.iter_mut().zip(bytes.chunks_exact(ENTRY_BYTES)) {
        let (address, length) = entry.split_at(8);
        let address = u64::from_le_bytes(address.try_into().map_err(|_| Error::InvalidArgument)?);
        let length = u64::from_le_bytes(length.try_into().map_err(|_| Error::InvalidArgument)?);
        // A user length: summed with overflow checked, or 2^64 - 1 wraps to a small one.
        length_bytes = length_bytes
            .checked_add(length)
            .filter(|total| *total <= abi::FRAME_MAX_BYTES)
            .ok_or(Error::InvalidArgument)?;
        *slot = Some(usermem::check_readable(
            env,
            UserSlice::new(address, length),
        )?);
        count += 1;
    }
    Ok((&storage[..count], length_bytes))
}

/// Copies the checked pieces, in order, into `frame` (their lengths' sum exactly).
fn gather_into(pieces: &[Option<Readable<'_>>], frame: &mut [u8]) -> Result<(), Error> {
    let mut rest = frame;
    for piece in pieces.iter().flatten() {
        let (this, after) = rest
            .split_at_mut_checked(piece.length_bytes() as usize)
            .ok_or(Error::InvalidArgument)?;
        usermem::read_into(*piece, this)?;
        rest = after;
    }
    if rest.is_empty() {
        Ok(())
    } else {
        Err(Error::InvalidArgument)
    }
}

/// Counts and logs a frame the transmit check refused: `Denied`.
fn refused(refusal: tx_check::TxRefusal, counters: &mut Counters) -> Error {
    bump(counters, Counter::TxRefused);
    log!("net: transmit refused: {refusal:?}");
    Error::Denied
}

/// A frame of `length_bytes` that cannot be queued (no buffer for the sender, or too long for
/// one), gathered onto the stack and checked as a queued one is: `Err` if copying or the
/// check refuses it (counted), `Ok` if it would have passed (its ARP question recorded, as
/// for a queued one). Kept out of line: the common path never carries its buffer.
#[inline(never)]
fn unqueued<P: tx_check::PortOwner + ?Sized>(
    env: &Environment,
    pieces: &[Option<Readable<'_>>],
    length_bytes: u64,
    sender: &SenderIdentity<'_, P>,
    privilege: Privilege,
    counters: &mut Counters,
) -> Result<(), Error> {
    let mut buffer = [0u8; abi::FRAME_MAX_BYTES as usize];
    let frame = buffer
        .get_mut(..length_bytes as usize)
        .ok_or(Error::InvalidArgument)?;
    gather_into(pieces, frame)?;
    tx_check::check(frame, sender, privilege).map_err(|refusal| refused(refusal, counters))?;
    arp_answers::asked(env.id, frame, sender.mac, sender.ipv4, counters);
    Ok(())
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
