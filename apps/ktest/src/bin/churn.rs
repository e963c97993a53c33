//! Scenario: filter churn under traffic. Filters stay bound (the steady port and three quiet
//! ones) while another is bound and unbound [`CYCLES`] times, and the namespace sends frames
//! to the steady and the churn port in rounds until this app says the cycles are done; the
//! churn goes on until the namespace's last datagram (the quit port) has arrived, so every
//! frame arrives while it runs. Afterwards the counts are exact (every frame the kernel took
//! is delivered or counted as dropped once, a ring full when this app fell behind included;
//! every copy delivered was seen here; xtask checks that the kernel took exactly the frames it
//! sent), and the kernel's heap, free frames,
//! its tables, its generated-code pages and this app's charged code bytes are back at their
//! baseline. Each frame taken is also checked with dpf's interpreter against the filters bound
//! when it arrived: all of the ring's while the churn filter may have been bound, all but it
//! for frames found once it had been unbound before the ring was last emptied.
#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(target_os = "none")]
extern crate alloc;

#[cfg(target_os = "none")]
libnet::entry!(app::main);

#[cfg(target_os = "none")]
mod app {
    use alloc::vec::Vec;
    use dpf::trie::Trie;
    use dpf::{Filter, Packet};
    use libnet::abi::Error;
    use libnet::abi::cap::CapHandle;
    use libnet::abi::net::Counter;
    use libnet::abi::quota::{QuotaField, Resource};
    use libnet::abi::usage::Gauge;
    use libnet::net::{self, Ring};
    use libnet::{println, sys};

    /// Bind/unbind cycles at least (more while the namespace is still sending). 20,000 in the
    /// suite: a debug kernel takes 3 to 5 ms of TCG time per cycle, and 100,000 (run once,
    /// README) took 6 minutes of CI's time twice over.
    const CYCLES: u64 = 20_000;
    /// Bound on the cycles, should the quit datagram never come.
    const MAX_CYCLES: u64 = 1_000_000;
    /// Cycles before the baseline is read: whatever the first binds allocate for good (the
    /// shared demux, its tables, the kernel's split pages) is in it.
    const WARM_UP: u64 = 100;
    /// Cycles between progress lines.
    const PROGRESS: u64 = 10_000;
    const STEADY_PORT: u16 = 9300;
    const CHURN_PORT: u16 = 9301;
    const QUIT_PORT: u16 = 9302;
    /// More ports on the steady ring, never sent to: with them the shared demux holds the
    /// steady filters in a templated hash table, so each churn bind or unbind is a patch of
    /// its table (as for an app opening and closing ports), not new code.
    const QUIET_PORTS: [u16; 3] = [9303, 9304, 9305];

    /// The steady and the churn filter's ring: it lives as long as the steady filter, so the
    /// kernel's place in it and this app's stay in step while the churn filter comes and goes.
    static SHARED: Ring<64> = Ring::new();
    static QUIT: Ring<2> = Ring::new();

    fn compiled(port: u16) -> Result<Filter, Error> {
        let expression = alloc::format!("ip and udp dst port {port}");
        let filters = dpf::frontend::compile(&expression, dpf::FilterId(u32::from(port)))
            .map_err(|_| Error::InvalidArgument)?;
        filters.into_iter().next().ok_or(Error::InvalidArgument)
    }

    fn encoded(port: u16) -> Result<Vec<u8>, Error> {
        compiled(port).map(|filter| dpf::wire::encode(&filter))
    }

    /// The app's own check of the demux: the shared ring's filters as dpf's interpreter runs
    /// them, with the churn filter and without it.
    struct Witness {
        with_churn: Trie,
        without_churn: Trie,
        /// Frames checked, and of them found while the churn filter was surely unbound.
        checked: u64,
        checked_unbound: u64,
        /// Frames the filters bound when they arrived do not match.
        mismatched: u64,
    }

    /// Whether the churn filter may have been bound when the frames being drained arrived.
    #[derive(Clone, Copy, PartialEq, Eq)]
    enum Window {
        MaybeBound,
        Unbound,
    }

    impl Witness {
        fn new() -> Result<Witness, Error> {
            let mut with_churn = Trie::new();
            let mut without_churn = Trie::new();
            for port in core::iter::once(STEADY_PORT).chain(QUIET_PORTS) {
                let filter = compiled(port)?;
                with_churn
                    .insert(filter.clone())
                    .map_err(|_| Error::InvalidArgument)?;
                without_churn
                    .insert(filter)
                    .map_err(|_| Error::InvalidArgument)?;
            }
            with_churn
                .insert(compiled(CHURN_PORT)?)
                .map_err(|_| Error::InvalidArgument)?;
            Ok(Witness {
                with_churn,
                without_churn,
                checked: 0,
                checked_unbound: 0,
                mismatched: 0,
            })
        }

        fn check(&mut self, frame: &[u8], window: Window) {
            let trie = match window {
                Window::MaybeBound => &self.with_churn,
                Window::Unbound => &self.without_churn,
            };
            self.checked += 1;
            self.checked_unbound += u64::from(window == Window::Unbound);
            if dpf::interp::classify(trie, &Packet::whole(frame)).is_none() {
                self.mismatched += 1;
                if self.mismatched <= 3 {
                    println!(
                        "churn: witness: a frame the filters bound at its arrival do not match: {} bytes, {:02x?}",
                        frame.len(),
                        &frame[..frame.len().min(48)]
                    );
                }
            }
        }
    }

    fn bind<const N: usize>(filter: &[u8], ring: &Ring<N>) -> Result<net::FilterBinding, Error> {
        let (address, bytes) = ring.region();
        net::filter_bind(filter, address, bytes, CapHandle::NONE)
    }

    /// Frames taken from `ring`: (to the steady port, to the churn port, to others); each
    /// checked by `witness`, when given, as arrived in `window`.
    fn drain<const N: usize>(
        ring: &Ring<N>,
        mut witness: Option<(&mut Witness, Window)>,
    ) -> [u64; 3] {
        let mut taken = [0; 3];
        while let Some((index, length)) = ring.peek() {
            // Ethernet (14) and an option-less IPv4 header (20), then the UDP ports.
            let frame = ring.frame(index, length);
            if let Some((witness, window)) = witness.as_mut() {
                witness.check(frame, *window);
            }
            let port = frame
                .get(36..38)
                .map_or(0, |port| u16::from_be_bytes([port[0], port[1]]));
            taken[match port {
                STEADY_PORT => 0,
                CHURN_PORT => 1,
                _ => 2,
            }] += 1;
            ring.release(index);
        }
        taken
    }

    /// Drains both rings: frames to (steady, churn, quit) ports, and any other; the shared
    /// ring's checked by `witness` as arrived in `window`.
    fn drain_all(witness: &mut Witness, window: Window) -> [u64; 4] {
        let [steady, churn, other] = drain(&SHARED, Some((witness, window)));
        let [_, _, quit] = drain(&QUIT, None);
        [steady, churn, quit, other]
    }

    fn add(total: &mut [u64; 4], got: [u64; 4]) {
        for (total, got) in total.iter_mut().zip(got) {
            *total += got;
        }
    }

    fn counters() -> [u64; Counter::ALL.len()] {
        Counter::ALL.map(|counter| net::counter(counter as u64).unwrap_or(u64::MAX))
    }

    /// The kernel's figures and this app's charged code bytes.
    fn usage() -> [u64; 5] {
        let gauge = |gauge| sys::kernel_usage(gauge).unwrap_or(u64::MAX);
        [
            gauge(Gauge::HeapUsedBytes),
            gauge(Gauge::FramesFree),
            gauge(Gauge::KernelTableFrames),
            gauge(Gauge::JitCodePages),
            sys::env_quota(CapHandle::NONE, Resource::JitCodeBytes, QuotaField::Used)
                .unwrap_or(u64::MAX),
        ]
    }

    /// One bind and unbind of the churn filter, with the rings drained between, and twice
    /// after the unbind: the first time frames may still have come while it was bound, the
    /// second time (after a yield) every frame came after the unbind. The frames taken (see
    /// [`drain_all`]).
    fn cycle(churn: &[u8], witness: &mut Witness) -> Result<[u64; 4], Error> {
        let binding = bind(churn, &SHARED)?;
        let mut taken = drain_all(witness, Window::MaybeBound);
        net::filter_unbind(binding.capability)?;
        add(&mut taken, drain_all(witness, Window::MaybeBound));
        sys::yield_now();
        add(&mut taken, drain_all(witness, Window::Unbound));
        Ok(taken)
    }

    pub fn main() -> u8 {
        let (Ok(steady), Ok(churn), Ok(quit)) = (
            encoded(STEADY_PORT),
            encoded(CHURN_PORT),
            encoded(QUIT_PORT),
        ) else {
            println!("churn: could not compile the filters");
            return 1;
        };
        let Ok(mut witness) = Witness::new() else {
            println!("churn: could not build the witness's tries");
            return 1;
        };
        let refused = sys::kernel_usage_raw(Gauge::ALL.len() as u64);
        let (Ok(_steady), Ok(_quit)) = (bind(&steady, &SHARED), bind(&quit, &QUIT)) else {
            println!("churn: could not bind the steady filters");
            return 1;
        };
        for port in QUIET_PORTS {
            if let Err(error) = encoded(port).and_then(|quiet| bind(&quiet, &SHARED)) {
                println!("churn: binding port {port}: {error:?}");
                return 1;
            }
        }
        for _ in 0..WARM_UP {
            if let Err(error) = cycle(&churn, &mut witness) {
                println!("churn: warm-up cycle: {error:?}");
                return 1;
            }
        }
        // Counted from here, as the frames taken are.
        (witness.checked, witness.checked_unbound, witness.mismatched) = (0, 0, 0);
        let before = usage();
        let counted_before = counters();
        println!("churn: ready; baseline {before:?}");
        let mut taken = [0u64; 4];
        let mut cycles = 0;
        while cycles < MAX_CYCLES && (cycles < CYCLES || taken[2] == 0) {
            match cycle(&churn, &mut witness) {
                Ok(got) => add(&mut taken, got),
                Err(error) => {
                    println!("churn: cycle {cycles}: {error:?}");
                    return 1;
                }
            }
            cycles += 1;
            if cycles == CYCLES {
                println!("churn: {CYCLES} cycles done");
            }
            if cycles % PROGRESS == 0 {
                println!(
                    "churn: {cycles} cycles at tick {}; frames {taken:?}; demux patched {} regenerated {}",
                    sys::ticks(),
                    net::counter(Counter::DemuxPatched as u64).unwrap_or(0),
                    net::counter(Counter::DemuxRegenerated as u64).unwrap_or(0)
                );
            }
        }
        // The quit datagram came after every other frame the namespace sent: all were
        // demultiplexed before it, and the rings were drained after it.
        add(&mut taken, drain_all(&mut witness, Window::Unbound));
        let counted_after = counters();
        let after = usage();
        let delta = |counter: Counter| {
            counted_after[counter as usize].wrapping_sub(counted_before[counter as usize])
        };
        let rx = delta(Counter::RxFrames);
        let delivered = delta(Counter::Delivered);
        let dropped =
            delta(Counter::NoMatch) + delta(Counter::RingFull) + delta(Counter::Malformed);
        let seen: u64 = taken.iter().sum();
        let exact = rx == delivered + dropped && delivered == seen && taken[3] == 0;
        println!(
            "churn: {cycles} bind/unbind cycles under traffic; steady port {} frames, churn port {} while bound, quit {}; rx {rx} = delivered {delivered} + dropped {dropped} (no match {}, ring full {}); seen {seen}; exact: {exact}",
            taken[0],
            taken[1],
            taken[2],
            delta(Counter::NoMatch),
            delta(Counter::RingFull),
        );
        let baseline = before == after;
        println!(
            "churn: heap bytes, free frames, kernel table frames, code pages, charged code bytes: {before:?} -> {after:?}; back to baseline: {baseline}; unknown gauge {refused:?}"
        );
        let ok = exact
            && baseline
            && cycles >= CYCLES
            && taken[1] > 0
            && refused == Err(Error::InvalidArgument);
        println!(
            "churn: witness: {} frames checked with dpf's interpreter against the filters bound when they came ({} after the churn filter was unbound); not matching: {}",
            witness.checked, witness.checked_unbound, witness.mismatched
        );
        let ok = ok && witness.mismatched == 0 && witness.checked == taken[0] + taken[1] + taken[3];
        println!("churn: counts exact and the kernel back to baseline: {ok}");
        u8::from(!ok)
    }
}

#[cfg(not(target_os = "none"))]
fn main() {}
