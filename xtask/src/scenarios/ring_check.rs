//! The check that no frame reaches a ring whose filter does not match it, judged outside the
//! kernel: what the namespace sends into the tap is captured (tcpdump, bounded in count and
//! time), the filters the guest printed (`ashd: ring R filter HEX`, their wire form) are
//! replayed over the capture with hosted dpf's interpreter, and the count each ring should
//! have won must equal what the kernel says it won (`ashd: ring R: matched M ...`).
//!
//! The replay places frames as the guest gets and the kernel's demux places them: frames
//! shorter than 60 bytes padded with zeros to 60, as QEMU's tap backend does; frames longer
//! than a slot malformed, reaching nothing; port-claiming filters merged into one trie whose
//! winner names its ring; a ring's monitor filters (no claim) are a trie of
//! their own, and a frame reaches the ring when either names it (once). ashd asks no ARP
//! questions, so the kernel's copies of ARP answers to askers play no part.
use super::Session;
use crate::topology::{TAP, Topology};
use dpf::trie::Trie;
use dpf::{Filter, FilterId, Packet};
use exo_abi::net::{FRAME_MAX_BYTES, FRAME_MIN_BYTES};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Most frames the capture keeps (tcpdump's `-c`): the floods send about 9,000.
const CAPTURE_MAX_FRAMES: &str = "200000";
/// The tap's transmit queue, in frames: longer than the longest flood (1,500 frames), so that
/// while the guest lags behind a flood the frames wait instead of being dropped after the
/// capture saw them (with the default queue of 1,000, one run's guest took 8,553 of the 9,191
/// frames captured).
const TAP_QUEUE_FRAMES: &str = "20000";
/// Shortest frame QEMU's tap backend hands the guest: shorter ones are padded with zeros to
/// this length (the kernel under Debian's QEMU 7.2 counts none of scapy's 1-, 6- and 13-byte
/// runts as malformed), so the replay pads them too.
const QEMU_PADDED_BYTES: usize = 60;
/// tcpdump's capture buffer (`-B`, KiB): room for a whole flood while it writes the file.
const CAPTURE_BUFFER_KIB: &str = "32768";
/// Time tcpdump has to say it is listening, and to stop.
const CAPTURE_START: Duration = Duration::from_secs(10);

/// tcpdump in the namespace, writing every frame sent into the tap to a file; killed on drop.
pub struct Capture {
    child: Child,
    file: PathBuf,
    log: PathBuf,
    /// The tap's dropped-transmit count when the capture started.
    dropped_before: u64,
}

/// Frames the tap dropped for a full queue since it was made (its `tx_dropped`).
fn tap_dropped(topology: &Topology) -> Result<u64, String> {
    let path = format!("/sys/class/net/{TAP}/statistics/tx_dropped");
    let output = topology
        .run("cat", &[&path], Duration::from_secs(5), None)
        .map_err(|error| format!("reading {path}: {error}"))?;
    String::from_utf8_lossy(&output.stdout)
        .trim()
        .parse()
        .map_err(|_| format!("{path} holds no count"))
}

impl Capture {
    /// Makes the tap's queue [`TAP_QUEUE_FRAMES`] long, starts tcpdump on the tap, outgoing
    /// direction only (the namespace's frames to the guest, not the guest's replies), and
    /// waits until it is listening.
    pub fn start(topology: &Topology) -> Result<Capture, String> {
        let queue = ["link", "set", TAP, "txqueuelen", TAP_QUEUE_FRAMES];
        let output = topology
            .run("ip", &queue, Duration::from_secs(5), None)
            .map_err(|error| format!("ip {}: {error}", queue.join(" ")))?;
        if !output.status.success() {
            return Err(format!(
                "ip {}: {}",
                queue.join(" "),
                String::from_utf8_lossy(&output.stderr)
            ));
        }
        let dropped_before = tap_dropped(topology)?;
        let base = std::env::temp_dir().join(format!("{}-flood", topology.namespace));
        let file = base.with_extension("pcap");
        let log = base.with_extension("tcpdump.log");
        let stderr = std::fs::File::create(&log)
            .map_err(|error| format!("creating {}: {error}", log.display()))?;
        let file_name = file.to_string_lossy().into_owned();
        let child = Command::new("ip")
            .args(["netns", "exec", &topology.namespace, "tcpdump"])
            // Outgoing only, numbers only, each frame written as it comes and handed over as
            // it arrives (not held in a block a stop would lose), a buffer for whole floods.
            .args(["-i", TAP, "-Q", "out", "-n", "-U", "--immediate-mode"])
            .args(["-s", "65535", "-B", CAPTURE_BUFFER_KIB])
            .args(["-c", CAPTURE_MAX_FRAMES, "-Z", "root", "-w", &file_name])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .map_err(|error| format!("starting tcpdump: {error}"))?;
        let mut capture = Capture {
            child,
            file,
            log,
            dropped_before,
        };
        let start = Instant::now();
        loop {
            let said = std::fs::read_to_string(&capture.log).unwrap_or_default();
            if said.contains("listening on") {
                return Ok(capture);
            }
            if let Ok(Some(status)) = capture.child.try_wait() {
                return Err(format!("tcpdump exited ({status}): {said}"));
            }
            if start.elapsed() > CAPTURE_START {
                return Err(format!(
                    "tcpdump not listening after {CAPTURE_START:?}: {said}"
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops tcpdump and reads what it wrote (it writes each frame as it comes, `-U`). A frame
    /// the tap dropped after the capture saw it never reached the guest, and which one it was
    /// is not known: then there is nothing exact to compare, which is an error.
    pub fn finish(mut self, topology: &Topology) -> Result<Vec<Vec<u8>>, String> {
        self.stop()?;
        let said = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lost = said
            .lines()
            .find_map(|line| line.strip_suffix(" packets dropped by kernel"))
            .and_then(|count| count.trim().parse::<u64>().ok())
            .ok_or_else(|| format!("tcpdump did not say what it dropped: {said}"))?;
        if lost != 0 {
            return Err(format!(
                "tcpdump lost {lost} frames (its buffer was full): the capture is not what the guest got"
            ));
        }
        let dropped = tap_dropped(topology)?.saturating_sub(self.dropped_before);
        if dropped != 0 {
            return Err(format!(
                "the tap dropped {dropped} captured frames for a full queue: the capture is not what the guest got"
            ));
        }
        let frames = pcap_tests::trace::read_trace(&self.file)
            .map_err(|error| format!("reading the capture {}: {error}", self.file.display()))?;
        Ok(frames.into_iter().map(|frame| frame.data).collect())
    }
}

impl Capture {
    /// Asks tcpdump to stop (SIGINT: it then prints what it captured and dropped) and waits
    /// for it, at most [`CAPTURE_START`]; killed if it does not.
    fn stop(&mut self) -> Result<(), String> {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-INT", &pid]).status();
        let start = Instant::now();
        while start.elapsed() < CAPTURE_START {
            if let Ok(Some(_)) = self.child.try_wait() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        Err(format!("tcpdump did not stop within {CAPTURE_START:?}"))
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.file);
        let _ = std::fs::remove_file(&self.log);
    }
}

/// One filter the guest bound, and the ring it feeds.
#[derive(Clone, Debug)]
pub struct BoundFilter {
    pub ring: usize,
    pub filter: Filter,
}

/// Decodes lowercase hex.
fn hex_bytes(hex: &str) -> Result<Vec<u8>, String> {
    let mut bytes = vec![0; hex.len() / 2];
    match exo_abi::net::hex_decode(hex.as_bytes(), &mut bytes) {
        Some(length) if length == bytes.len() => Ok(bytes),
        _ => Err(format!("not hex: {hex:?}")),
    }
}

/// The filters in the guest's `ashd: ring R filter HEX` lines, in the order bound (their ids
/// follow it, as the kernel's do).
pub fn bound_filters(lines: &[String]) -> Result<Vec<BoundFilter>, String> {
    let mut bound = Vec::new();
    for line in lines {
        let Some((_, rest)) = line.split_once("ashd: ring ") else {
            continue;
        };
        let Some((ring, hex)) = rest.split_once(" filter ") else {
            continue;
        };
        let ring = ring
            .parse()
            .map_err(|_| format!("no ring number in {line:?}"))?;
        let mut unverified = dpf::wire::decode(&hex_bytes(hex.trim())?)
            .map_err(|error| format!("undecodable filter in {line:?}: {error:?}"))?;
        unverified.id = FilterId(1 + bound.len() as u32);
        let filter = unverified
            .verify()
            .map_err(|error| format!("unverifiable filter in {line:?}: {error:?}"))?;
        bound.push(BoundFilter { ring, filter });
    }
    if bound.is_empty() {
        return Err("the guest printed no bound filter".into());
    }
    Ok(bound)
}

/// What the kernel says each ring's filters won (`ashd: ring R: matched M ...`).
pub fn kernel_matched(lines: &[String]) -> Result<BTreeMap<usize, u64>, String> {
    let mut matched = BTreeMap::new();
    for line in lines {
        let Some((_, rest)) = line.split_once("ashd: ring ") else {
            continue;
        };
        let Some((ring, counts)) = rest.split_once(": matched ") else {
            continue;
        };
        let parse = |text: &str| {
            text.parse::<u64>()
                .map_err(|_| format!("no count in {line:?}"))
        };
        let count = counts.split_whitespace().next().unwrap_or("");
        matched.insert(parse(ring)? as usize, parse(count)?);
    }
    Ok(matched)
}

/// How many of `frames` reach each ring of `bound`, placed as the kernel's demux places
/// them (see the module's doc). Every ring of `bound` has an entry, 0 included.
pub fn expected_per_ring(
    bound: &[BoundFilter],
    frames: &[Vec<u8>],
) -> Result<BTreeMap<usize, u64>, String> {
    let mut shared = Trie::new();
    let mut ring_of_claim = BTreeMap::new();
    let mut monitors: BTreeMap<usize, Trie> = BTreeMap::new();
    let mut expected = BTreeMap::new();
    for entry in bound {
        expected.insert(entry.ring, 0u64);
        let trie = if dpf::claim::claim(&entry.filter).is_some() {
            ring_of_claim.insert(entry.filter.id(), entry.ring);
            &mut shared
        } else {
            monitors.entry(entry.ring).or_default()
        };
        trie.insert(entry.filter.clone())
            .map_err(|error| format!("the kernel bound a filter dpf refuses: {error:?}"))?;
    }
    for frame in frames {
        let mut padded = frame.clone();
        padded.resize(frame.len().max(QEMU_PADDED_BYTES), 0);
        if !(FRAME_MIN_BYTES..=FRAME_MAX_BYTES).contains(&(padded.len() as u64)) {
            continue;
        }
        let packet = Packet::whole(&padded);
        let winner =
            dpf::interp::classify(&shared, &packet).and_then(|id| ring_of_claim.get(&id).copied());
        for (ring, count) in expected.iter_mut() {
            let monitored = monitors
                .get(ring)
                .is_some_and(|trie| dpf::interp::classify(trie, &packet).is_some());
            if monitored || winner == Some(*ring) {
                *count += 1;
            }
        }
    }
    Ok(expected)
}

/// Ends the capture once the guest has printed its per-ring counts, and compares: the
/// capture holds as many frames as the kernel took from the NIC (else the two saw different
/// streams), and each ring won exactly what hosted dpf says it should. A summary line.
pub fn compare(session: &mut Session<'_>, capture: Capture) -> Result<String, String> {
    let received_line = session.wait_for("ashd: frames received ", Duration::from_secs(30))?;
    session.wait_for("not matching: ", Duration::from_secs(30))?;
    let frames = capture.finish(session.topology)?;
    let received: u64 = received_line
        .split_once("ashd: frames received ")
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .and_then(|count| count.parse().ok())
        .ok_or_else(|| format!("no count in {received_line:?}"))?;
    if received != frames.len() as u64 {
        return Err(format!(
            "the kernel took {received} frames from the NIC, the capture holds {}",
            frames.len()
        ));
    }
    let bound = bound_filters(&session.seen)?;
    let expected = expected_per_ring(&bound, &frames)?;
    let kernel = kernel_matched(&session.seen)?;
    if kernel.keys().ne(expected.keys()) {
        return Err(format!(
            "the guest reported rings {:?}, it bound filters to rings {:?}",
            kernel.keys().collect::<Vec<_>>(),
            expected.keys().collect::<Vec<_>>()
        ));
    }
    if kernel != expected {
        return Err(format!(
            "per ring, the kernel's filters won {kernel:?}; hosted dpf over the {} captured frames says {expected:?}",
            frames.len()
        ));
    }
    Ok(format!(
        "{} captured frames; per ring, kernel and hosted dpf agree: {expected:?}",
        frames.len()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn compiled(expression: &str, ring: usize, bound: &mut Vec<BoundFilter>) {
        for filter in dpf::frontend::compile(expression, FilterId(0)).unwrap() {
            let mut unverified = filter.into_unverified();
            unverified.id = FilterId(1 + bound.len() as u32);
            bound.push(BoundFilter {
                ring,
                filter: unverified.verify().unwrap(),
            });
        }
    }

    /// An Ethernet/IPv4/UDP frame to `port` (no options), padded to 60 bytes.
    fn udp_to(port: u16) -> Vec<u8> {
        let mut frame = vec![0u8; 60];
        frame[12..14].copy_from_slice(&[0x08, 0x00]);
        frame[14] = 0x45;
        frame[16..18].copy_from_slice(&46u16.to_be_bytes());
        frame[23] = 17;
        frame[26..30].copy_from_slice(&[10, 0, 2, 2]);
        frame[30..34].copy_from_slice(&[10, 0, 2, 15]);
        frame[34..36].copy_from_slice(&4000u16.to_be_bytes());
        frame[36..38].copy_from_slice(&port.to_be_bytes());
        frame
    }

    #[test]
    fn frames_reach_only_the_rings_whose_filters_match() {
        let mut bound = Vec::new();
        compiled("arp", 0, &mut bound);
        compiled("ip and udp dst port 7", 1, &mut bound);
        compiled("ip and udp dst port 9003", 2, &mut bound);
        let mut arp = vec![0u8; 42];
        arp[12..14].copy_from_slice(&[0x08, 0x06]);
        let frames = vec![
            udp_to(7),
            udp_to(7),
            udp_to(9003),
            udp_to(80),
            arp,
            vec![0u8; 13],
            vec![0u8; FRAME_MAX_BYTES as usize + 1],
        ];
        let expected = expected_per_ring(&bound, &frames).unwrap();
        assert_eq!(expected, BTreeMap::from([(0, 1), (1, 2), (2, 1)]));
    }

    #[test]
    fn the_guests_lines_are_read_back() {
        let filter = &dpf::frontend::compile("ip and udp dst port 7", FilterId(0)).unwrap()[0];
        let hex: String = dpf::wire::encode(filter)
            .iter()
            .map(|byte| format!("{byte:02x}"))
            .collect();
        let lines = vec![
            format!("ashd: ring 2 filter {hex}"),
            "ashd: ring 2: matched 17 delivered 3 full 1".to_string(),
            "ashd: ready".to_string(),
        ];
        let bound = bound_filters(&lines).unwrap();
        assert_eq!(bound.len(), 1);
        assert_eq!(bound[0].ring, 2);
        assert_eq!(bound[0].filter.steps(), filter.steps());
        assert_eq!(kernel_matched(&lines).unwrap(), BTreeMap::from([(2, 17)]));
        assert!(bound_filters(&["ashd: ring 1 filter zz".to_string()]).is_err());
    }
}
