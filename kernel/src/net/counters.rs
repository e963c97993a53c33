//! The network path's counters (`exo_abi::net::Counter`): every frame and every drop counted.
use super::NET;
use exo_abi::Error;
use exo_abi::net::Counter;

/// Every counter, indexed by [`Counter`].
pub(super) type Counters = [u64; Counter::ALL.len()];

/// Counts one `counter` event.
pub(super) fn bump(counters: &mut Counters, counter: Counter) {
    counters[counter as usize] += 1;
}

/// Frames taken from the NIC so far (the `rx_frames` counter).
pub fn received() -> u64 {
    NET.lock().counters[Counter::RxFrames as usize]
}

/// Counts one event of the scheduler's side of the network path (`net_wait`).
pub fn count(counter: Counter) {
    bump(&mut NET.lock().counters, counter);
}

/// `net_counter(index)`.
pub fn counter(index: u64) -> Result<u64, Error> {
    let counter = Counter::from_index(index).ok_or(Error::InvalidArgument)?;
    Ok(NET.lock().counters[counter as usize])
}
