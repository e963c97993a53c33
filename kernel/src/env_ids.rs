//! Environment ids: handed out in increasing order and never reused, so a capability that
//! names an ended environment can never name a later one. When the ids run out, spawning
//! fails rather than wrapping round to ids that stale capabilities still name.

/// The id a new environment gets: the first from `next` (the one after the last handed out)
/// whose table slot is free (`slot_taken`), trying at most `slots` ids, which is enough when
/// the table has a free slot (ids map to slots round robin). `None` when the table is full or
/// the ids run out (past `u32::MAX`). Id 0 means "no environment" and is never handed out.
pub fn allocate(next: u64, slots: usize, slot_taken: impl Fn(u32) -> bool) -> Option<u32> {
    let first = next.max(1);
    (first..first.saturating_add(slots as u64))
        .map_while(|candidate| u32::try_from(candidate).ok())
        .find(|&id| !slot_taken(id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_grow_skip_taken_slots_and_never_are_zero() {
        assert_eq!(allocate(0, 4, |_| false), Some(1));
        assert_eq!(allocate(5, 4, |id| id % 4 != 3), Some(7));
        assert_eq!(allocate(5, 4, |_| true), None);
    }

    /// After 2^32 - 1 environments the next spawn is refused: no id comes round again.
    #[test]
    fn the_last_id_is_handed_out_once_and_then_none() {
        let last = u64::from(u32::MAX);
        assert_eq!(allocate(last, 64, |_| false), Some(u32::MAX));
        assert_eq!(allocate(last + 1, 64, |_| false), None);
        // Its slot taken, the search stops at the end of the ids instead of wrapping to 1.
        assert_eq!(allocate(last, 64, |id| id == u32::MAX), None);
    }
}
