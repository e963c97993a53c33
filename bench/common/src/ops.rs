//! The operations both kernels measure, with the counts both use.
//!
//! Appel & Li (ASPLOS 1991), as the Aegis paper (SOSP 1995, section 7) measured them:
//! - `trap`: take a page-protection fault into a user handler and return (the handler steps
//!   over the faulting load);
//! - `prot1`: read-protect one page (make it inaccessible), one call per page;
//! - `prot100`: read-protect 100 contiguous pages in one call;
//! - `unprot100`: make 100 contiguous protected pages accessible again in one call;
//! - `appel1` (Appel-Li's "prot1+trap+unprot"): read a random protected page; the handler
//!   protects another page (the one unprotected last) and unprotects the faulting page;
//! - `appel2` ("protN+trap+unprot"): protect 100 pages, read each in a random order; the
//!   handler unprotects the faulting page. Reported per page.
//!
//! "One call" is one range call on both kernels: Linux `mprotect`, exo `page_protect_range`.
//!
//! A reported cost is the TSC difference over a whole run divided by its iterations, so it
//! includes the loop's own few instructions, identical on both kernels.

/// Times each operation is measured (the host reports the median).
pub const REPEATS: u32 = 5;

/// Pages in the Appel-Li region.
pub const APPEL_LI_PAGES: usize = 100;

/// Side of the square matrices `matmul` multiplies (u64 entries, wrapping arithmetic).
pub const MATMUL_N: usize = 64;

/// Seed of the page sequence (appel1, appel2) and of the matmul inputs.
pub const SEED: u64 = 0x5eed_0fa9_9e15;

/// One measured operation. The names are the `op=` values of the line protocol and of
/// `target/bench/kernel.json`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Op {
    /// exo's cheapest system call vs Linux `syscall(SYS_getpid)`.
    NullSyscall,
    /// exo's `self_id` (its getpid: the full dispatch path, registers saved and the call
    /// decoded, where `null` returns from the entry stub) vs the same Linux getpid.
    SelfIdVsGetpid,
    /// An invalid-opcode trap (`ud2`) delivered to a user handler that steps over it: exo's
    /// exception upcall vs a Linux SIGILL handler and `rt_sigreturn`.
    ExceptionDispatch,
    /// The same trap delivered to a two-instruction upcall entry on exo (step over the `ud2`,
    /// resume without the kernel): the kernel's share of `exception_dispatch`, without the
    /// library's dispatcher. Compared with the same Linux SIGILL round trip.
    ExceptionDispatchRawEntry,
    /// A round trip between two protection domains: exo's protected control transfer there
    /// and back vs a one-byte pipe ping-pong between two Linux processes.
    PctRoundTrip,
    /// The same exo round trip vs an eventfd ping-pong between two Linux processes.
    PctVsEventfd,
    AppelLiTrap,
    AppelLiProt1,
    AppelLiProt100,
    AppelLiUnprot100,
    AppelLiAppel1,
    AppelLiAppel2,
    /// `MATMUL_N` x `MATMUL_N` integer matrix product, identical machine code on both sides:
    /// measures what the kernel takes from a compute-bound program (timer interrupts, TLB).
    Matmul,
}

impl Op {
    /// Every operation, in report order.
    pub const ALL: [Op; 13] = [
        Op::NullSyscall,
        Op::SelfIdVsGetpid,
        Op::ExceptionDispatch,
        Op::ExceptionDispatchRawEntry,
        Op::PctRoundTrip,
        Op::PctVsEventfd,
        Op::AppelLiTrap,
        Op::AppelLiProt1,
        Op::AppelLiProt100,
        Op::AppelLiUnprot100,
        Op::AppelLiAppel1,
        Op::AppelLiAppel2,
        Op::Matmul,
    ];

    pub const fn name(self) -> &'static str {
        match self {
            Op::NullSyscall => "null_syscall",
            Op::SelfIdVsGetpid => "self_id_vs_getpid",
            Op::ExceptionDispatch => "exception_dispatch",
            Op::ExceptionDispatchRawEntry => "exception_dispatch_raw_entry",
            Op::PctRoundTrip => "pct_round_trip",
            Op::PctVsEventfd => "pct_vs_eventfd",
            Op::AppelLiTrap => "appel_li_trap",
            Op::AppelLiProt1 => "appel_li_prot1",
            Op::AppelLiProt100 => "appel_li_prot100",
            Op::AppelLiUnprot100 => "appel_li_unprot100",
            Op::AppelLiAppel1 => "appel_li_appel1",
            Op::AppelLiAppel2 => "appel_li_appel2",
            Op::Matmul => "matmul",
        }
    }

    pub fn from_name(name: &str) -> Option<Op> {
        Op::ALL.into_iter().find(|op| op.name() == name)
    }

    /// How many operations one timed run performs. The counts keep every run well under a
    /// second of emulated time, and far above the timer's resolution.
    pub const fn iterations(self) -> u64 {
        match self {
            Op::NullSyscall | Op::SelfIdVsGetpid => 100_000,
            Op::ExceptionDispatch | Op::ExceptionDispatchRawEntry | Op::AppelLiTrap => 10_000,
            Op::PctRoundTrip | Op::PctVsEventfd | Op::AppelLiAppel1 => 5_000,
            // Pages: 20 passes over the 100-page region.
            Op::AppelLiProt1 | Op::AppelLiAppel2 => 20 * APPEL_LI_PAGES as u64,
            Op::AppelLiProt100 | Op::AppelLiUnprot100 => 500,
            Op::Matmul => 10,
        }
    }

    /// What one iteration is, for the report.
    pub const fn per(self) -> &'static str {
        match self {
            Op::NullSyscall | Op::SelfIdVsGetpid => "call",
            Op::ExceptionDispatch | Op::ExceptionDispatchRawEntry | Op::AppelLiTrap => "trap",
            Op::PctRoundTrip | Op::PctVsEventfd => "round trip",
            Op::AppelLiProt1 | Op::AppelLiAppel2 => "page",
            Op::AppelLiProt100 | Op::AppelLiUnprot100 => "100-page call",
            Op::AppelLiAppel1 => "fault",
            Op::Matmul => "64x64 product",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_are_unique() {
        for (index, op) in Op::ALL.iter().enumerate() {
            assert_eq!(Op::from_name(op.name()), Some(*op));
            assert!(
                Op::ALL[..index]
                    .iter()
                    .all(|other| other.name() != op.name())
            );
            assert!(op.iterations() > 0);
        }
        assert_eq!(Op::from_name("getpid"), None);
    }

    #[test]
    fn page_counts_are_whole_passes() {
        assert_eq!(Op::AppelLiProt1.iterations() % APPEL_LI_PAGES as u64, 0);
        assert_eq!(Op::AppelLiAppel2.iterations() % APPEL_LI_PAGES as u64, 0);
    }
}
