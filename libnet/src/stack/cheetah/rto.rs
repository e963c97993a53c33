//! The retransmission timeout (RFC 6298): a smoothed round-trip time and its variation from
//! samples (Karn's rule is the caller's: no sample from a retransmitted segment), doubled on
//! each timeout. Unlike smoltcp's fixed 1 s floor, the minimum is 200 ms (Linux's), so one
//! lost segment on a fast link costs a fifth of a second, not a second.

/// Smallest timeout, ms.
pub const MIN_RTO_MS: u64 = 200;
/// Largest timeout, ms (RFC 6298 (2.5) allows 60 s).
pub const MAX_RTO_MS: u64 = 60_000;
/// Before any sample (RFC 6298 (2.1)).
pub const INITIAL_RTO_MS: u64 = 1_000;
/// The clock's granularity G, ms (the kernel's tick).
pub const CLOCK_GRANULARITY_MS: u64 = 10;

/// The estimator of one connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rto {
    /// Smoothed RTT and its variation, in ms scaled by 8 and 4 (as in Jacobson's code).
    srtt8: Option<u64>,
    rttvar4: u64,
    /// Current timeout before backoff.
    base_ms: u64,
    /// Timeouts since the last new acknowledgement (each doubles the timeout).
    backoff: u32,
}

impl Default for Rto {
    fn default() -> Self {
        Rto {
            srtt8: None,
            rttvar4: 0,
            base_ms: INITIAL_RTO_MS,
            backoff: 0,
        }
    }
}

impl Rto {
    /// Takes a round-trip sample (ms).
    pub fn sample(&mut self, rtt_ms: u64) {
        match self.srtt8 {
            None => {
                // (2.2): SRTT = R, RTTVAR = R/2.
                self.srtt8 = Some(rtt_ms * 8);
                self.rttvar4 = rtt_ms * 2;
            }
            Some(srtt8) => {
                // (2.3): RTTVAR = 3/4 RTTVAR + 1/4 |SRTT - R|; SRTT = 7/8 SRTT + 1/8 R.
                let srtt = srtt8 / 8;
                let delta = srtt.abs_diff(rtt_ms);
                self.rttvar4 = self.rttvar4 - self.rttvar4 / 4 + delta;
                self.srtt8 = Some(srtt8 - srtt8 / 8 + rtt_ms);
            }
        }
        let srtt = self.srtt8.unwrap_or(0) / 8;
        let variation = (self.rttvar4).max(CLOCK_GRANULARITY_MS);
        self.base_ms = (srtt + variation).clamp(MIN_RTO_MS, MAX_RTO_MS);
        self.backoff = 0;
    }

    /// The timeout now, with backoff.
    pub fn timeout_ms(&self) -> u64 {
        self.base_ms
            .saturating_mul(1u64 << self.backoff.min(16))
            .min(MAX_RTO_MS)
    }

    /// A timeout fired (5.5): the next one is twice as long.
    pub fn back_off(&mut self) {
        self.backoff = self.backoff.saturating_add(1);
    }

    /// New data was acknowledged: the backoff ends (the next sample will refine the base).
    pub fn acknowledged(&mut self) {
        self.backoff = 0;
    }

    /// Timeouts in a row.
    pub fn backoffs(&self) -> u32 {
        self.backoff
    }

    /// The smoothed round-trip time, if sampled.
    pub fn srtt_ms(&self) -> Option<u64> {
        self.srtt8.map(|srtt8| srtt8 / 8)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_at_one_second_and_follows_the_samples() {
        let mut rto = Rto::default();
        assert_eq!(rto.timeout_ms(), 1_000);
        rto.sample(100);
        // SRTT 100, RTTVAR 50: 100 + 4 * 50 = 300.
        assert_eq!(rto.srtt_ms(), Some(100));
        assert_eq!(rto.timeout_ms(), 300);
        for _ in 0..50 {
            rto.sample(100);
        }
        // The variation decays; the floor holds.
        assert_eq!(rto.timeout_ms(), MIN_RTO_MS);
        rto.sample(1_000);
        assert!(rto.timeout_ms() > 1_000, "{}", rto.timeout_ms());
    }

    #[test]
    fn backs_off_to_the_ceiling_and_recovers() {
        let mut rto = Rto::default();
        rto.sample(10);
        assert_eq!(rto.timeout_ms(), MIN_RTO_MS);
        rto.back_off();
        assert_eq!(rto.timeout_ms(), 2 * MIN_RTO_MS);
        for _ in 0..40 {
            rto.back_off();
        }
        assert_eq!(rto.timeout_ms(), MAX_RTO_MS);
        rto.acknowledged();
        assert_eq!(rto.timeout_ms(), MIN_RTO_MS);
    }
}
