//! Records of environments that have ended, kept so their creators can still ask how they
//! ended (`env_info`) and the run's verdict can be given, in bounded memory.
//!
//! Records the verdict needs (boot apps) are pinned and never dropped; of the others at most
//! [`EndedRecords::capacity`] are kept, the oldest dropped first. Ids are never reused, so a
//! dropped record can only make an old query answer "unknown", never another's status.
use alloc::collections::VecDeque;

/// The bounded list; `T` is the record, found by its id.
#[derive(Debug)]
pub struct EndedRecords<T> {
    pinned: VecDeque<(u32, T)>,
    recent: VecDeque<(u32, T)>,
    capacity: usize,
    dropped: u64,
}

impl<T> EndedRecords<T> {
    /// Keeps at most `capacity` unpinned records.
    pub const fn new(capacity: usize) -> EndedRecords<T> {
        EndedRecords {
            pinned: VecDeque::new(),
            recent: VecDeque::new(),
            capacity,
            dropped: 0,
        }
    }

    /// Unpinned records kept at most.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Adds the record of `id`; `pinned` ones are never dropped.
    pub fn push(&mut self, id: u32, record: T, pinned: Pinned) {
        if pinned == Pinned::Yes {
            self.pinned.push_back((id, record));
            return;
        }
        if self.recent.len() == self.capacity {
            self.recent.pop_front();
            self.dropped += 1;
        }
        if self.capacity > 0 {
            self.recent.push_back((id, record));
        }
    }

    /// The record of `id`, if kept.
    pub fn get(&self, id: u32) -> Option<&T> {
        self.pinned
            .iter()
            .chain(self.recent.iter())
            .find(|(record_id, _)| *record_id == id)
            .map(|(_, record)| record)
    }

    /// Records dropped so far.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Records kept now.
    pub fn len(&self) -> usize {
        self.pinned.len() + self.recent.len()
    }

    /// Whether none is kept.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Whether a record must outlive the bound.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pinned {
    Yes,
    No,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_pinned_and_the_most_recent() {
        let mut records = EndedRecords::new(3);
        records.push(1, "boot", Pinned::Yes);
        for id in 2..10 {
            records.push(id, "child", Pinned::No);
        }
        assert_eq!(records.get(1), Some(&"boot"));
        assert_eq!(records.get(2), None);
        assert_eq!(records.get(6), None);
        assert_eq!(records.get(7), Some(&"child"));
        assert_eq!(records.get(9), Some(&"child"));
        assert_eq!((records.len(), records.dropped()), (4, 5));
    }

    #[test]
    fn zero_capacity_keeps_only_pinned() {
        let mut records = EndedRecords::new(0);
        records.push(1, 1, Pinned::No);
        records.push(2, 2, Pinned::Yes);
        assert_eq!((records.get(1), records.get(2)), (None, Some(&2)));
        assert!(!records.is_empty());
    }
}
