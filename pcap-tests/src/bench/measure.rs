//! Timing: warm up, then several trials of replaying packets already in memory, each long
//! enough to dwarf the clock's resolution; ns per packet as median, min and max over trials.

use std::hint::black_box;
use std::time::{Duration, Instant};

use super::engines::{Demux, Tally};
use super::packets::{PacketArena, PacketSpan};

/// Median, min and max of a set of samples.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Summary {
    /// The middle sample (mean of the two middle ones for an even count).
    pub median: f64,
    /// Smallest sample.
    pub min: f64,
    /// Largest sample.
    pub max: f64,
}

impl Summary {
    /// Summarises `samples`; `None` if there are none.
    pub fn of(samples: &[f64]) -> Option<Summary> {
        if samples.is_empty() {
            return None;
        }
        let mut sorted = samples.to_vec();
        sorted.sort_by(f64::total_cmp);
        let n = sorted.len();
        let median = if n % 2 == 1 {
            sorted[n / 2]
        } else {
            (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
        };
        Some(Summary {
            median,
            min: sorted[0],
            max: sorted[n - 1],
        })
    }
}

/// How long and how often to measure.
#[derive(Clone, Copy, Debug)]
pub struct TrialPlan {
    /// Timed trials after the warm-up.
    pub trials: usize,
    /// Each trial replays the packets as many times as it takes to last at least this long.
    pub min_trial: Duration,
}

/// A measurement: the verdicts of one replay and the time per packet over the trials.
#[derive(Clone, Copy, Debug)]
pub struct Measurement {
    /// What one replay of the packets found.
    pub tally: Tally,
    /// Nanoseconds per packet.
    pub ns_per_packet: Summary,
}

/// Replays `spans` through `engine`: one untimed replay (warm-up, and the verdicts), one timed
/// replay to size the trials, then `plan.trials` timed trials.
pub fn measure(
    engine: &mut dyn Demux,
    arena: &PacketArena,
    spans: &[PacketSpan],
    plan: TrialPlan,
) -> Measurement {
    assert!(!spans.is_empty(), "nothing to replay");
    let tally = engine.replay(arena, spans);
    let start = Instant::now();
    black_box(engine.replay(arena, black_box(spans)));
    let once = start.elapsed().max(Duration::from_nanos(1));
    let repeats = (plan.min_trial.as_nanos() / once.as_nanos()).clamp(1, 1_000_000) as usize;
    let mut samples = Vec::with_capacity(plan.trials);
    for _ in 0..plan.trials.max(1) {
        let start = Instant::now();
        for _ in 0..repeats {
            black_box(engine.replay(arena, black_box(spans)));
        }
        let elapsed = start.elapsed();
        samples.push(elapsed.as_nanos() as f64 / (repeats * spans.len()) as f64);
    }
    Measurement {
        tally,
        ns_per_packet: Summary::of(&samples).expect("at least one trial"),
    }
}

/// How many packets a slow engine replays per trial: enough for `budget` at the speed
/// `pilot_ns_per_packet` measured on a sample, at least `floor` (or all there are).
pub fn capped_packets(
    available: usize,
    pilot_ns_per_packet: f64,
    budget: Duration,
    floor: usize,
) -> usize {
    let affordable = (budget.as_nanos() as f64 / pilot_ns_per_packet.max(0.001)) as usize;
    affordable.max(floor).min(available)
}

/// Median of `samples` in microseconds from durations.
pub fn median_us(samples: &[Duration]) -> f64 {
    let us: Vec<f64> = samples.iter().map(|d| d.as_nanos() as f64 / 1e3).collect();
    Summary::of(&us).map_or(f64::NAN, |s| s.median)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_median_min_max() {
        let s = Summary::of(&[5.0, 1.0, 3.0]).unwrap();
        assert_eq!((s.median, s.min, s.max), (3.0, 1.0, 5.0));
        let s = Summary::of(&[4.0, 1.0, 3.0, 2.0]).unwrap();
        assert_eq!(s.median, 2.5);
        assert!(Summary::of(&[]).is_none());
    }

    #[test]
    fn caps_follow_the_budget_within_bounds() {
        // 1 us per packet, 10 ms budget: 10,000 packets.
        assert_eq!(
            capped_packets(100_000, 1_000.0, Duration::from_millis(10), 2_000),
            10_000
        );
        // Never below the floor, never above what there is.
        assert_eq!(
            capped_packets(100_000, 1e9, Duration::from_millis(10), 2_000),
            2_000
        );
        assert_eq!(
            capped_packets(5_000, 1.0, Duration::from_millis(10), 2_000),
            5_000
        );
        assert_eq!(median_us(&[Duration::from_micros(3)]), 3.0);
    }

    struct EveryOther;
    impl Demux for EveryOther {
        fn classify(&mut self, _: &PacketArena, span: PacketSpan) -> Option<u32> {
            span.captured_len
                .is_multiple_of(2)
                .then_some(span.captured_len)
        }
    }

    #[test]
    fn measurement_reports_the_replays_verdicts() {
        let packets: Vec<_> = (1..=10)
            .map(|n| crate::trace::TracePacket {
                data: vec![0; n],
                wire_len: n as u32,
                ts_sec: 0,
                ts_nsec: 0,
            })
            .collect();
        let arena = PacketArena::new(&packets);
        let m = measure(
            &mut EveryOther,
            &arena,
            arena.spans(),
            TrialPlan {
                trials: 3,
                min_trial: Duration::from_micros(100),
            },
        );
        assert_eq!(m.tally.matches, 5);
        assert_eq!(m.tally.filter_index_sum, 2 + 4 + 6 + 8 + 10);
        assert!(m.ns_per_packet.min <= m.ns_per_packet.median);
        assert!(m.ns_per_packet.median <= m.ns_per_packet.max);
    }
}
