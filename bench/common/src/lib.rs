//! One source for both sides of `cargo xtask bench kernel`: exo's `kbench` app and the static
//! `/init` booted on Debian's Linux kernel run the same loops from here.
//!
//! - [`ops`]: the operations, their iteration counts and how many times each is repeated;
//! - [`protocol`]: the `BENCH ...` lines a guest prints on its console and the host parses;
//! - [`loops`]: the timed bodies in assembly (system call, trap, page access, matmul), so
//!   both kernels execute byte-identical user code;
//! - [`appel_li`]: the Appel-Li page-protection benchmarks over a kernel's protect calls;
//! - [`Lcg`]: the pseudo-random sequence the Appel-Li benchmarks walk pages in.
//!
//! no_std and allocation-free: it links into a bare-metal app as well as into a Linux binary.
#![no_std]
#![deny(unsafe_code)]

#[cfg(target_arch = "x86_64")]
pub mod appel_li;
#[cfg(target_arch = "x86_64")]
pub mod loops;
pub mod ops;
pub mod protocol;

pub use ops::Op;
use protocol::{Line, Sample};

/// The measuring discipline both kernels follow for one operation: a warm-up run of a tenth of
/// the iterations (at least one), then [`ops::REPEATS`] timed runs, each reported as a
/// [`Line::Sample`]. `timed(iterations)` performs the operation that many times and returns the
/// TSC ticks it took and, for computing operations, a checksum of the result.
pub fn measure(
    op: Op,
    mut timed: impl FnMut(u64) -> (u64, Option<u64>),
    mut emit: impl FnMut(Line<'_>),
) {
    let iterations = op.iterations();
    timed((iterations / 10).max(1));
    for repeat in 0..ops::REPEATS {
        let (cycles, check) = timed(iterations);
        emit(Line::Sample(Sample {
            op,
            repeat,
            iterations,
            cycles,
            check,
        }));
    }
}

/// A 64-bit linear congruential generator (Knuth's MMIX constants): the same seed gives the
/// same page sequence on both kernels.
#[derive(Clone, Debug)]
pub struct Lcg {
    state: u64,
}

impl Lcg {
    pub const fn new(seed: u64) -> Lcg {
        Lcg { state: seed }
    }

    pub const fn next_u64(&mut self) -> u64 {
        self.state = self
            .state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.state
    }

    /// A value in `0..bound` (`bound` > 0), from the high bits (the low bits of an LCG are
    /// weak).
    pub fn below(&mut self, bound: u64) -> u64 {
        ((u128::from(self.next_u64() >> 32) * u128::from(bound)) >> 32) as u64
    }

    /// Shuffles `items` in place (Fisher-Yates).
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for index in (1..items.len()).rev() {
            let other = self.below(index as u64 + 1) as usize;
            items.swap(index, other);
        }
    }
}

/// A matrix of the benchmark's deterministic input, computed at compile time for the statics
/// below.
pub const fn matrix<const CELLS: usize>(seed: u64) -> [u64; CELLS] {
    let mut random = Lcg::new(seed);
    let mut cells = [0u64; CELLS];
    let mut index = 0;
    while index < CELLS {
        cells[index] = random.next_u64() >> 40;
        index += 1;
    }
    cells
}

/// The left matmul operand ([`ops::MATMUL_N`] squared cells, row-major).
pub static MATMUL_A: [u64; ops::MATMUL_N * ops::MATMUL_N] = matrix(1);
/// The right matmul operand.
pub static MATMUL_B: [u64; ops::MATMUL_N * ops::MATMUL_N] = matrix(2);

/// A checksum of a result matrix, printed with the matmul sample so the host can check both
/// kernels computed the same product.
pub fn checksum(matrix: &[u64]) -> u64 {
    matrix.iter().fold(0xcbf2_9ce4_8422_2325, |hash, cell| {
        (hash ^ cell).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// The product the assembly matmul must compute: `c = a * b` (n x n, row-major, wrapping).
pub fn matmul_reference(a: &[u64], b: &[u64], c: &mut [u64], n: usize) {
    assert!(a.len() == n * n && b.len() == n * n && c.len() == n * n);
    c.fill(0);
    for i in 0..n {
        for k in 0..n {
            let left = a[i * n + k];
            for j in 0..n {
                c[i * n + j] = c[i * n + j].wrapping_add(left.wrapping_mul(b[k * n + j]));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lcg_below_stays_in_range_and_shuffle_is_a_permutation() {
        let mut random = Lcg::new(7);
        for bound in 1..200 {
            assert!(random.below(bound) < bound);
        }
        let mut pages = [0u32; 100];
        for (index, page) in pages.iter_mut().enumerate() {
            *page = index as u32;
        }
        random.shuffle(&mut pages);
        let mut seen = [false; 100];
        for page in pages {
            assert!(!seen[page as usize]);
            seen[page as usize] = true;
        }
        assert_ne!(pages[..10], [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    }
}
