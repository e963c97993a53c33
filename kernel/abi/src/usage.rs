//! What the kernel reports of its own resources (`kernel_usage`): how a test sees that churn
//! or a fuzzer left the kernel's heap, frames and generated code as it found them. Figures of
//! the whole machine, like the network counters; they name no environment's data.

/// One figure `kernel_usage` reports.
#[repr(u64)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Gauge {
    /// Bytes of the kernel heap allocated now.
    HeapUsedBytes = 0,
    /// Physical frames free now.
    FramesFree = 1,
    /// Frames the kernel took for page tables it keeps for its life (the generated-code
    /// region's, and splits of the identity map): taken once, never given back.
    KernelTableFrames = 2,
    /// Pages of the generated-code region held by installed code now.
    JitCodePages = 3,
}

impl Gauge {
    /// Every gauge, in number order.
    pub const ALL: [Gauge; 4] = [
        Gauge::HeapUsedBytes,
        Gauge::FramesFree,
        Gauge::KernelTableFrames,
        Gauge::JitCodePages,
    ];

    /// Decodes a gauge number.
    pub const fn from_number(number: u64) -> Option<Gauge> {
        if number < Gauge::ALL.len() as u64 {
            Some(Gauge::ALL[number as usize])
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gauges_round_trip() {
        for (index, gauge) in Gauge::ALL.into_iter().enumerate() {
            assert_eq!(gauge as u64, index as u64);
            assert_eq!(Gauge::from_number(index as u64), Some(gauge));
        }
        assert_eq!(Gauge::from_number(Gauge::ALL.len() as u64), None);
        assert_eq!(Gauge::from_number(u64::MAX), None);
    }
}
