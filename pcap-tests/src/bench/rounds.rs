//! Interleaved measurement: every (engine, K) cell of a phase gets one timed trial per round,
//! round-robin, for many rounds, and reports the median over rounds and its spread.
//!
//! Back-to-back trials of one engine drift with whatever else the shared host runs; taking one
//! trial of every cell per round spreads that drift over all cells alike, so the ratio of two
//! cells' medians stays meaningful when their absolute times do not. Each round starts at
//! another cell, so no cell always runs first (after a pause, with cold caches).

use std::hint::black_box;
use std::time::{Duration, Instant};

use indicatif::ProgressBar;

use super::engines::{Demux, Tally};
use super::measure::Summary;
use super::packets::{PacketArena, PacketSpan};

/// One (engine, K) measured in the rounds.
pub struct Cell<'a> {
    /// Engine name as in the table.
    pub engine: &'static str,
    /// Filters bound.
    pub filters: usize,
    /// The demultiplexer.
    pub demux: Box<dyn Demux + 'a>,
    /// Packets replayed per trial (a prefix of the trace for slow engines).
    pub packets: usize,
    /// Replays per trial, sized so one trial lasts about the plan's minimum.
    pub repeats: usize,
    /// What the warm-up replay found (checked against the reference by the caller).
    pub tally: Tally,
    /// ns/packet, one per round.
    pub samples: Vec<f64>,
}

impl std::fmt::Debug for Cell<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cell")
            .field("engine", &self.engine)
            .field("filters", &self.filters)
            .field("packets", &self.packets)
            .field("samples", &self.samples.len())
            .finish()
    }
}

impl<'a> Cell<'a> {
    /// A cell replaying the first `packets` packets (at least one) through `demux`.
    pub fn new(
        engine: &'static str,
        filters: usize,
        demux: Box<dyn Demux + 'a>,
        packets: usize,
    ) -> Cell<'a> {
        Cell {
            engine,
            filters,
            demux,
            packets: packets.max(1),
            repeats: 1,
            tally: Tally::default(),
            samples: Vec::new(),
        }
    }

    /// Median, min and max over the rounds, and the interquartile range.
    pub fn summary(&self) -> Option<(Summary, f64)> {
        let summary = Summary::of(&self.samples)?;
        Some((summary, iqr(&self.samples)))
    }
}

/// Interquartile range (nearest-rank quartiles); 0 for fewer than 4 samples.
pub fn iqr(samples: &[f64]) -> f64 {
    if samples.len() < 4 {
        return 0.0;
    }
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    sorted[(3 * n) / 4] - sorted[n / 4]
}

/// How many rounds and how long each trial.
#[derive(Clone, Copy, Debug)]
pub struct RoundPlan {
    /// Rounds (each cell gets one trial per round).
    pub rounds: usize,
    /// A trial replays the cell's packets as often as it takes to last about this long.
    pub min_trial: Duration,
}

fn replay_repeated(cell: &mut Cell<'_>, arena: &PacketArena, spans: &[PacketSpan]) -> Duration {
    let start = Instant::now();
    for _ in 0..cell.repeats {
        black_box(cell.demux.replay(arena, black_box(spans)));
    }
    start.elapsed()
}

/// Warms every cell up (its verdicts go to [`Cell::tally`]), sizes its trials, then runs
/// `plan.rounds` rounds, one trial of every cell per round, starting each round one cell later.
pub fn run_rounds(
    cells: &mut [Cell<'_>],
    arena: &PacketArena,
    plan: RoundPlan,
    progress: &ProgressBar,
) {
    let all = arena.spans();
    for cell in cells.iter_mut() {
        let spans = &all[..cell.packets.min(all.len())];
        cell.tally = cell.demux.replay(arena, spans);
        cell.repeats = 1;
        let once = replay_repeated(cell, arena, spans).max(Duration::from_nanos(1));
        cell.repeats = (plan.min_trial.as_nanos() / once.as_nanos()).clamp(1, 1_000_000) as usize;
        cell.samples = Vec::with_capacity(plan.rounds);
    }
    let n = cells.len();
    progress.inc_length(plan.rounds.max(1) as u64);
    for round in 0..plan.rounds.max(1) {
        progress.set_message(format!("round {}/{} of {n} cells", round + 1, plan.rounds));
        for i in 0..n {
            let cell = &mut cells[(round + i) % n];
            let spans = &all[..cell.packets.min(all.len())];
            let elapsed = replay_repeated(cell, arena, spans);
            cell.samples
                .push(elapsed.as_nanos() as f64 / (cell.repeats * spans.len()) as f64);
        }
        progress.inc(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iqr_of_known_samples() {
        assert_eq!(iqr(&[1.0, 2.0, 3.0]), 0.0);
        // Sorted 1..=8: quartiles at ranks 2 and 6 -> 3 and 7.
        assert_eq!(iqr(&[8.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0]), 4.0);
    }

    struct Count;
    impl Demux for Count {
        fn classify(&mut self, _: &PacketArena, span: PacketSpan) -> Option<u32> {
            (span.captured_len > 2).then_some(1)
        }
    }

    #[test]
    fn every_cell_gets_one_sample_per_round_and_its_tally() {
        let packets: Vec<_> = (1..=5)
            .map(|n| crate::trace::TracePacket {
                data: vec![0; n],
                wire_len: n as u32,
                ts_sec: 0,
                ts_nsec: 0,
            })
            .collect();
        let arena = PacketArena::new(&packets);
        let mut cells = vec![
            Cell::new("a", 1, Box::new(Count), 5),
            Cell::new("b", 1, Box::new(Count), 3),
        ];
        run_rounds(
            &mut cells,
            &arena,
            RoundPlan {
                rounds: 11,
                min_trial: Duration::from_micros(50),
            },
            &ProgressBar::hidden(),
        );
        assert!(cells.iter().all(|c| c.samples.len() == 11));
        assert_eq!(cells[0].tally.matches, 3);
        assert_eq!(cells[1].tally.matches, 1);
        let (s, spread) = cells[0].summary().unwrap();
        assert!(s.min <= s.median && s.median <= s.max && spread >= 0.0);
    }

    /// Logs which cell replayed, in order.
    struct Logged<'l>(u32, &'l std::cell::RefCell<Vec<u32>>);
    impl Demux for Logged<'_> {
        fn classify(&mut self, _: &PacketArena, _: PacketSpan) -> Option<u32> {
            None
        }
        fn replay(&mut self, _: &PacketArena, _: &[PacketSpan]) -> Tally {
            self.1.borrow_mut().push(self.0);
            Tally::default()
        }
    }

    #[test]
    fn rounds_interleave_cells_and_rotate_who_goes_first() {
        let packets = vec![crate::trace::TracePacket {
            data: vec![0; 60],
            wire_len: 60,
            ts_sec: 0,
            ts_nsec: 0,
        }];
        let arena = PacketArena::new(&packets);
        let log = std::cell::RefCell::new(Vec::new());
        let mut cells: Vec<Cell<'_>> = (0..3)
            .map(|i| Cell::new("x", 1, Box::new(Logged(i, &log)), 1))
            .collect();
        // A trial far shorter than one replay: one replay per trial.
        run_rounds(
            &mut cells,
            &arena,
            RoundPlan {
                rounds: 4,
                min_trial: Duration::from_nanos(1),
            },
            &ProgressBar::hidden(),
        );
        drop(cells);
        let log = log.into_inner();
        // Warm-up and sizing: two replays per cell, cell by cell.
        assert_eq!(&log[..6], &[0, 0, 1, 1, 2, 2]);
        assert_eq!(&log[6..], &[0, 1, 2, 1, 2, 0, 2, 0, 1, 0, 1, 2]);
    }
}
