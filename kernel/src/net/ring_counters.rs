//! An app's own view of the receive counters: how many frames its ring's filters won, how many
//! copies its ring got and how many the kernel dropped because the ring's next slot was still
//! the app's (`net_counter(index, ring)`). The machine-wide counters say that frames were lost;
//! only these say whose.
use super::NET;
use crate::env::EnvId;
use exo_abi::Error;
use exo_abi::net::Counter;

/// `net_counter(index, ring)` from `caller`: counter `index` of the caller's ring starting at
/// `ring`. Only `Delivered`, `RingFull` and `Matched` are kept per ring (`InvalidArgument`
/// for the others); `NotFound` when `ring` is not the start of one of the caller's rings (another
/// app's ring at the same address is not the caller's: nothing about it is told).
pub fn counter_of_ring(caller: EnvId, index: u64, ring: u64) -> Result<u64, Error> {
    let counter = Counter::from_index(index).ok_or(Error::InvalidArgument)?;
    let net = NET.lock();
    let ring = net
        .rings
        .iter()
        .find(|candidate| candidate.owner == caller && candidate.address == ring)
        .ok_or(Error::NotFound)?;
    match counter {
        Counter::Delivered => Ok(ring.delivered),
        Counter::RingFull => Ok(ring.full),
        Counter::Matched => Ok(ring.won),
        _ => Err(Error::InvalidArgument),
    }
}
