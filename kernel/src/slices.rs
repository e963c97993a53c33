//! The processor as a vector of time slices: each slot belongs to at most one environment,
//! the timer walks the vector round robin, and an environment with more slots gets more time.
//!
//! Only the policy is here (who owns which slot, who runs next); the kernel decides what
//! "eligible" means (alive, not blocked, not serving a penalty) through a closure.

/// Slots in the vector.
pub const SLICES: usize = 32;

/// The slice vector.
#[derive(Clone, Debug)]
pub struct SliceVector {
    owners: [Option<u32>; SLICES],
    cursor: usize,
}

impl Default for SliceVector {
    fn default() -> SliceVector {
        SliceVector::new()
    }
}

impl SliceVector {
    /// No slot taken; the cursor before slot 0.
    pub const fn new() -> SliceVector {
        SliceVector {
            owners: [None; SLICES],
            cursor: SLICES - 1,
        }
    }

    /// Gives `owner` the first free slot (slots taken in creation order interleave owners,
    /// so an owner's slots end up dispersed). `None` when the vector is full.
    pub fn acquire(&mut self, owner: u32) -> Option<usize> {
        let index = self.owners.iter().position(Option::is_none)?;
        self.owners[index] = Some(owner);
        Some(index)
    }

    /// Frees every slot `owner` holds.
    pub fn release_all(&mut self, owner: u32) {
        for slot in &mut self.owners {
            if *slot == Some(owner) {
                *slot = None;
            }
        }
    }

    /// Slots `owner` holds.
    pub fn count(&self, owner: u32) -> usize {
        self.owners
            .iter()
            .filter(|&&slot| slot == Some(owner))
            .count()
    }

    /// The slot the cursor is on and its owner.
    pub fn current(&self) -> (usize, Option<u32>) {
        (self.cursor, self.owners[self.cursor])
    }

    /// Advances the cursor to the next slot whose owner `eligible` accepts (it may be called
    /// for one owner several times and may have side effects, e.g. consuming a penalty).
    /// Two full turns are tried, so an owner that skips one turn still runs if it is alone.
    pub fn advance(&mut self, mut eligible: impl FnMut(u32) -> bool) -> Option<(usize, u32)> {
        for _ in 0..2 * SLICES {
            self.cursor = (self.cursor + 1) % SLICES;
            if let Some(owner) = self.owners[self.cursor]
                && eligible(owner)
            {
                return Some((self.cursor, owner));
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_robin_in_proportion_to_slots() {
        let mut slices = SliceVector::new();
        slices.acquire(1).unwrap();
        slices.acquire(2).unwrap();
        slices.acquire(1).unwrap();
        assert_eq!(slices.count(1), 2);
        let mut runs = [0u32; 3];
        for _ in 0..300 {
            let (_, owner) = slices.advance(|_| true).unwrap();
            runs[owner as usize] += 1;
        }
        assert_eq!(runs, [0, 200, 100]);
    }

    #[test]
    fn ineligible_owners_are_skipped_and_a_lone_penalized_owner_still_runs() {
        let mut slices = SliceVector::new();
        slices.acquire(1).unwrap();
        slices.acquire(2).unwrap();
        assert_eq!(slices.advance(|owner| owner == 2).unwrap().1, 2);
        assert_eq!(slices.advance(|owner| owner == 2).unwrap().1, 2);
        let mut penalty = 1;
        let mut only_one = |owner: u32| {
            if owner != 1 {
                return false;
            }
            if penalty > 0 {
                penalty -= 1;
                return false;
            }
            true
        };
        assert_eq!(slices.advance(&mut only_one).unwrap().1, 1);
        assert_eq!(slices.advance(|_| false), None);
    }

    #[test]
    fn slots_are_bounded_and_released() {
        let mut slices = SliceVector::new();
        for _ in 0..SLICES {
            slices.acquire(7).unwrap();
        }
        assert_eq!(slices.acquire(8), None);
        slices.release_all(7);
        assert_eq!(slices.count(7), 0);
        assert_eq!(slices.acquire(8), Some(0));
        assert_eq!(slices.current().1, None);
    }
}
