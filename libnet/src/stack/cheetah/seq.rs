//! TCP sequence numbers: 32-bit values compared modulo 2^32 (RFC 793, 3.3), so that a
//! connection keeps working when its numbers wrap.
use core::cmp::Ordering;
use core::ops::{Add, Sub};

/// A sequence number.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Seq(pub u32);

impl Seq {
    /// Whether `self` comes before `other` (less than half the space behind it).
    pub fn before(self, other: Seq) -> bool {
        (self.0.wrapping_sub(other.0) as i32) < 0
    }

    /// Whether `self` comes before or is `other`.
    pub fn before_eq(self, other: Seq) -> bool {
        !other.before(self)
    }

    /// Whether `self` is in `[start, start + length)`.
    pub fn within(self, start: Seq, length: u32) -> bool {
        self.0.wrapping_sub(start.0) < length
    }

    /// The later of two.
    pub fn max(self, other: Seq) -> Seq {
        if self.before(other) { other } else { self }
    }
}

impl PartialOrd for Seq {
    fn partial_cmp(&self, other: &Seq) -> Option<Ordering> {
        Some(if self == other {
            Ordering::Equal
        } else if self.before(*other) {
            Ordering::Less
        } else {
            Ordering::Greater
        })
    }
}

impl Add<u32> for Seq {
    type Output = Seq;
    fn add(self, count: u32) -> Seq {
        Seq(self.0.wrapping_add(count))
    }
}

impl Sub for Seq {
    /// The distance from `other` forward to `self`.
    type Output = u32;
    fn sub(self, other: Seq) -> u32 {
        self.0.wrapping_sub(other.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_holds_across_the_wrap() {
        let late = Seq(u32::MAX - 10);
        let early = late + 100;
        assert_eq!(early.0, 89);
        assert!(late.before(early));
        assert!(!early.before(late));
        assert!(late.before_eq(late));
        assert_eq!(early - late, 100);
        assert!(Seq(5).within(late, 100));
        assert!(!early.within(late, 100));
        assert_eq!(late.max(early), early);
        assert!(late < early);
    }
}
