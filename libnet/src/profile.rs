//! Where an app's time goes, by layer, for `cargo xtask bench net`'s per-layer profile: while
//! switched on, every span the library enters ([`enter`]) charges the TSC cycles since the
//! last switch to the layer that was running, so each cycle of the app lands in exactly one
//! layer (exclusive time). Under `-icount shift=0` a cycle is one guest instruction, except
//! in [`Layer::Wait`], which also holds the time the vCPU halted.
//!
//! Off (the default) a span costs a load and a branch, so the measured rows do not pay for
//! the profile; an app switches it on for a profiled run only ([`start`], [`stop`]).
use crate::sys::tsc;
use core::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};

/// What the app is doing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Layer {
    /// The app's own code (httpd's parsing and lookup): everything outside the other spans.
    App = 0,
    /// libnet's network stack: smoltcp or the Cheetah engine, reading the ring, socket copies.
    Stack = 1,
    /// `net_transmit`, from the system call to its return: the boundary both ways plus the
    /// kernel's transmit (the kernel's own share is `Counter::TransmitCycles`).
    Transmit = 2,
    /// `net_wait`: the boundary, the kernel's scheduling and the halted time.
    Wait = 3,
}

impl Layer {
    /// Every layer, in index order.
    pub const ALL: [Layer; 4] = [Layer::App, Layer::Stack, Layer::Transmit, Layer::Wait];

    /// The name the profile's report uses.
    pub const fn name(self) -> &'static str {
        match self {
            Layer::App => "app",
            Layer::Stack => "stack",
            Layer::Transmit => "transmit",
            Layer::Wait => "wait",
        }
    }
}

static ON: AtomicBool = AtomicBool::new(false);
static CURRENT: AtomicU8 = AtomicU8::new(Layer::App as u8);
static LAST: AtomicU64 = AtomicU64::new(0);
static SUMS: [AtomicU64; Layer::ALL.len()] = [const { AtomicU64::new(0) }; Layer::ALL.len()];
/// Spans entered per layer (how often the layer was switched to).
static ENTRIES: [AtomicU64; Layer::ALL.len()] = [const { AtomicU64::new(0) }; Layer::ALL.len()];

/// Charges the cycles since the last switch to the running layer and makes `to` run; the
/// layer that ran.
fn switch(to: u8) -> u8 {
    let now = tsc();
    let from = CURRENT.swap(to, Ordering::Relaxed);
    let last = LAST.swap(now, Ordering::Relaxed);
    SUMS[usize::from(from)].fetch_add(now.wrapping_sub(last), Ordering::Relaxed);
    from
}

/// A span of one layer; dropping it goes back to the layer that ran before.
#[derive(Debug)]
#[must_use = "the span ends when this is dropped"]
pub struct Span(Option<u8>);

/// Enters `layer` until the returned span is dropped (nothing while the profile is off).
#[inline]
pub fn enter(layer: Layer) -> Span {
    if !ON.load(Ordering::Relaxed) {
        return Span(None);
    }
    ENTRIES[layer as usize].fetch_add(1, Ordering::Relaxed);
    Span(Some(switch(layer as u8)))
}

impl Drop for Span {
    #[inline]
    fn drop(&mut self) {
        // A span entered before `stop` and ended after it charges nothing.
        if let Some(previous) = self.0
            && ON.load(Ordering::Relaxed)
        {
            switch(previous);
        }
    }
}

/// Clears the sums and switches the profile on, in the app's own layer (call it from app
/// code, outside any span).
pub fn start() {
    for (sum, entries) in SUMS.iter().zip(&ENTRIES) {
        sum.store(0, Ordering::Relaxed);
        entries.store(0, Ordering::Relaxed);
    }
    CURRENT.store(Layer::App as u8, Ordering::Relaxed);
    LAST.store(tsc(), Ordering::Relaxed);
    ON.store(true, Ordering::Relaxed);
}

/// Switches the profile off (charging the running layer up to now) and returns each layer's
/// cycles and spans entered, by [`Layer::ALL`] index.
pub fn stop() -> [(u64, u64); Layer::ALL.len()] {
    if ON.load(Ordering::Relaxed) {
        switch(Layer::App as u8);
    }
    ON.store(false, Ordering::Relaxed);
    let mut out = [(0, 0); Layer::ALL.len()];
    for (index, slot) in out.iter_mut().enumerate() {
        *slot = (
            SUMS[index].load(Ordering::Relaxed),
            ENTRIES[index].load(Ordering::Relaxed),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    // One test: the profile is process-wide state.
    #[test]
    fn spans_charge_exclusive_time_only_while_on() {
        let span = enter(Layer::Stack);
        assert!(span.0.is_none(), "off: a span records nothing");
        drop(span);
        start();
        {
            let _stack = enter(Layer::Stack);
            let busy: u64 = (0..20_000u64).map(core::hint::black_box).sum();
            core::hint::black_box(busy);
            let _transmit = enter(Layer::Transmit);
        }
        let sums = stop();
        assert_eq!(sums[Layer::Stack as usize].1, 1);
        assert_eq!(sums[Layer::Transmit as usize].1, 1);
        // The busy loop ran in the stack's span, the transmit span was empty.
        assert!(
            sums[Layer::Stack as usize].0 > sums[Layer::Transmit as usize].0,
            "{sums:?}"
        );
        assert_eq!(sums[Layer::Wait as usize], (0, 0));
        // Back in App after the spans: what ran after them is the app's.
        assert_eq!(CURRENT.load(Ordering::Relaxed), Layer::App as u8);
        let after = enter(Layer::Wait);
        assert!(after.0.is_none(), "stopped: off again");
    }
}
