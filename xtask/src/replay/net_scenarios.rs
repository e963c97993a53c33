//! The QEMU scenarios that need traffic (`net-*` in `cargo xtask test`): frames generated
//! here and injected through [`replay_frames`], with netmon apps binding the expressions, and
//! each run judged from the counts the apps and the kernel report.
use super::{Outcome, replay_frames};
use crate::qemu::{Echo, app_text};
use std::time::Instant;

/// A frame: Ethernet II + IPv4 + UDP (or TCP) with `destination_port`, from 10.0.0.1.
fn transport_frame(protocol: u8, destination_port: u16, payload_bytes: usize) -> Vec<u8> {
    let mut frame = vec![
        0x52, 0x54, 0, 0x12, 0x34, 0x56, 0x02, 0, 0, 0, 0, 1, 0x08, 0x00,
    ];
    let transport_bytes = if protocol == 6 { 20 } else { 8 };
    let total = (20 + transport_bytes + payload_bytes) as u16;
    frame.extend_from_slice(&[0x45, 0]);
    frame.extend_from_slice(&total.to_be_bytes());
    frame.extend_from_slice(&[0, 0, 0x40, 0, 64, protocol, 0, 0, 10, 0, 0, 1, 10, 0, 2, 15]);
    frame.extend_from_slice(&40000u16.to_be_bytes());
    frame.extend_from_slice(&destination_port.to_be_bytes());
    frame.resize(frame.len() + transport_bytes - 4, 0);
    frame.resize(frame.len() + payload_bytes, 0xab);
    frame
}

/// Traffic for the test scenarios: `counts[i]` UDP frames to port 7001 + i, interleaved, plus
/// TCP port 80 frames nobody binds, runts, frames with bad IPv4 headers and cut-off frames.
fn scenario_frames(counts: &[usize], runts: usize) -> Vec<Vec<u8>> {
    let mut frames = Vec::new();
    let most = counts.iter().copied().max().unwrap_or(0);
    for round in 0..most {
        for (index, count) in counts.iter().enumerate() {
            if round < *count {
                frames.push(transport_frame(17, 7001 + index as u16, round % 200));
            }
        }
        if round % 4 == 0 {
            frames.push(transport_frame(6, 80, 10));
        }
        if round % 16 == 0 {
            let mut bad = transport_frame(17, 7001, 4);
            bad[14] = 0x42; // IHL 2: shorter than an IPv4 header
            frames.push(bad);
            let mut cut = transport_frame(17, 7001, 0);
            cut.truncate(14 + 20 + 2); // the destination port is missing
            frames.push(cut);
        }
        if round < runts {
            frames.push(vec![0xff; 1 + round % 13]);
        }
    }
    frames
}

/// A QEMU scenario with traffic: what netmon binds, what is injected, how it is judged.
struct NetScenario {
    name: &'static str,
    expressions: &'static [&'static str],
    /// UDP frames to port 7001, 7002, ...
    counts: &'static [usize],
    runts: usize,
    /// Apps booted beside the monitors.
    companions: &'static [&'static str],
    /// More kernel command-line words.
    boot_words: &'static str,
    judge: fn(&Outcome) -> std::result::Result<(), String>,
}

/// The numbers in the first serial line that starts with `prefix`, in order.
fn numbers_after(serial: &str, prefix: &str) -> Vec<u64> {
    serial
        .lines()
        .find_map(|line| app_text(line).strip_prefix(prefix))
        .map(|rest| {
            rest.split(|c: char| !c.is_ascii_digit())
                .filter_map(|word| word.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

fn app_count(outcome: &Outcome, index: usize) -> (u64, u64) {
    let (_, received, hosted) = &outcome.apps[index];
    (*received, *hosted)
}

const NET_SCENARIOS: &[NetScenario] = &[
    NetScenario {
        // Three apps bind 16 ports each (32 port-claiming conjunctions: IPv4 and IPv6), all
        // merged into the kernel's one shared demux: each app gets exactly its ports' frames,
        // and once a port table exists binds only patch a table entry (no new code).
        name: "net-shared-demux",
        expressions: &[
            "udp dst port 7001 or 7004 or 7007 or 7010 or 7013 or 7016 or 7019 or 7022 or 7025 or 7028 or 7031 or 7034 or 7037 or 7040 or 7043 or 7046",
            "udp dst port 7002 or 7005 or 7008 or 7011 or 7014 or 7017 or 7020 or 7023 or 7026 or 7029 or 7032 or 7035 or 7038 or 7041 or 7044 or 7047",
            "udp dst port 7003 or 7006 or 7009 or 7012 or 7015 or 7018 or 7021 or 7024 or 7027 or 7030 or 7033 or 7036 or 7039 or 7042 or 7045 or 7048",
        ],
        counts: &[10; 48],
        runts: 0,
        companions: &[],
        boot_words: "",
        judge: |outcome| {
            outcome.verdict()?;
            for app in 0..3 {
                if app_count(outcome, app).0 != 160 {
                    return Err(format!(
                        "app {app} got {} frames, not its 16 ports x 10",
                        app_count(outcome, app).0
                    ));
                }
            }
            let patched = outcome.counter("demux_patched");
            let regenerated = outcome.counter("demux_regenerated");
            // 96 binds, then three releases: a few regenerations while each port dispatch is
            // still a compare chain, patches after.
            if patched < 60 || regenerated * 3 > patched {
                return Err(format!(
                    "shared demux: {patched} changes patched, {regenerated} regenerated (want most patched); kernel {:?}",
                    outcome.kernel
                ));
            }
            Ok(())
        },
    },
    NetScenario {
        // Two apps with disjoint filters each get exactly their frames; runts, bad headers and
        // cut-off frames are counted and crash nothing.
        name: "net-two-filters",
        expressions: &["udp dst port 7001", "udp dst port 7002"],
        counts: &[300, 200],
        runts: 7,
        companions: &[],
        boot_words: "",
        judge: |outcome| {
            outcome.verdict()?;
            if app_count(outcome, 0).0 != 300 || app_count(outcome, 1).0 != 200 {
                return Err("the apps did not get exactly their 300 and 200 frames".into());
            }
            match outcome.kernel.get("malformed") {
                Some(7) => Ok(()),
                other => Err(format!("expected 7 malformed (the runts), got {other:?}")),
            }
        },
    },
    NetScenario {
        // The monitor right is a capability: netmon starts with a root one (`monitor=netmon`),
        // grants itself a derived one and binds a monitor filter with it, revokes it (which
        // unbinds that filter: its binding capability derives from the monitor capability)
        // and is refused (`Denied`) the same binding; then binds with the root and gets all.
        name: "net-monitor-capability",
        expressions: &["revoked:udp"],
        counts: &[100],
        runts: 0,
        companions: &[],
        boot_words: "",
        judge: |outcome| {
            outcome.verdict()?;
            let checked = outcome
                .serial
                .contains("netmon: bound with a granted monitor capability")
                && outcome
                    .serial
                    .contains("netmon: revoking the monitor capability unbound its filters")
                && outcome.serial.contains("netmon: after revoke: Denied")
                && outcome
                    .serial
                    .contains("]: filter 0 \"udp\": revoke check Ok(())");
            // `verdict` holds it to hosted dpf's count; at least the 100 injected.
            if !checked || app_count(outcome, 0).0 < 100 {
                return Err(format!(
                    "revoke check passed {checked}, monitor got {} frames (want 100 or more)",
                    app_count(outcome, 0).0
                ));
            }
            Ok(())
        },
    },
    NetScenario {
        // One app never drains its ring: the kernel drops and counts, the other app gets all.
        name: "net-ring-full",
        expressions: &["stall:udp dst port 7001", "udp dst port 7002"],
        counts: &[200, 200],
        runts: 0,
        companions: &[],
        boot_words: "",
        judge: |outcome| {
            outcome.no_loss()?;
            let (stalled, _) = app_count(outcome, 0);
            let (other, other_hosted) = app_count(outcome, 1);
            let ring_full = outcome.counter("ring_full");
            // netmon's rings hold 128 frames.
            if stalled != 0 || ring_full != 200 - 128 || other != other_hosted {
                return Err(format!(
                    "stalled app took {stalled}, ring_full {ring_full} (want {}), other app {other} of {other_hosted}",
                    200 - 128
                ));
            }
            Ok(())
        },
    },
    NetScenario {
        // One app unbinds while frames keep arriving; the other keeps getting all of its own.
        name: "net-unbind-under-traffic",
        expressions: &["unbind-after=50:udp dst port 7001", "udp dst port 7002"],
        counts: &[300, 300],
        runts: 0,
        companions: &[],
        boot_words: "",
        judge: |outcome| {
            outcome.no_loss()?;
            let (unbound, hosted) = app_count(outcome, 0);
            let (other, other_hosted) = app_count(outcome, 1);
            if !(50..hosted).contains(&unbound) || other != other_hosted {
                return Err(format!(
                    "unbinding app took {unbound} of {hosted}, other app {other} of {other_hosted}"
                ));
            }
            Ok(())
        },
    },
    NetScenario {
        // Port ownership: the first app owns UDP port 7001, the third's bind of the same port
        // is refused (`AddressInUse`) while the second binds 7002 beside it; once the first
        // unbinds under traffic, the third binds 7001 and gets the rest of its frames.
        name: "net-port-ownership",
        expressions: &[
            "unbind-after=50:udp dst port 7001",
            "udp dst port 7002",
            "claimed:udp dst port 7001",
        ],
        counts: &[300, 300],
        runts: 0,
        companions: &[],
        boot_words: "",
        judge: |outcome| {
            outcome.no_loss()?;
            let (first, hosted) = app_count(outcome, 0);
            let (second, second_hosted) = app_count(outcome, 1);
            let (third, _) = app_count(outcome, 2);
            let refused = outcome.serial.contains(
                "]: filter 0 \"udp dst port 7001\": AddressInUse, waiting for the owner to unbind",
            );
            let rebound = outcome.serial.contains("]: filter 0 bound once released");
            // Every instance's transmit from a port it does not own, and of an ethertype off
            // the allow list, was refused (4 counted refusals each: MAC, IPv4, port,
            // ethertype); the owners' transmits from their own ports went out.
            let spoofed = outcome.serial.matches("source port Err(Denied)").count();
            let unlisted = outcome
                .serial
                .matches(
                    "unlisted ethertype Err(Denied), raw through a forged capability Err(Denied)",
                )
                .count();
            let own_port_sent = outcome
                .serial
                .contains("]: transmit from owned port Udp 7002: Ok(42)");
            if spoofed != 3
                || unlisted != 3
                || !own_port_sent
                || outcome.kernel.get("tx_refused") != Some(&12)
            {
                return Err(format!(
                    "spoofed source ports refused {spoofed} of 3, unlisted ethertypes {unlisted} of 3, own port sent {own_port_sent}, tx_refused {:?} (want 12)",
                    outcome.kernel.get("tx_refused")
                ));
            }
            if !refused
                || !rebound
                || !(50..hosted).contains(&first)
                || third == 0
                || first + third > hosted
                || second != second_hosted
            {
                return Err(format!(
                    "refused {refused}, rebound {rebound}; port 7001: first app {first}, third {third} of {hosted}; port 7002: {second} of {second_hosted}"
                ));
            }
            Ok(())
        },
    },
    NetScenario {
        // Bindings are capabilities: the first app checks `filter_unbind` refuses bad
        // capabilities (none, an environment's, forged, a copy without CONTROL), unbinds
        // through a granted copy and by deleting its capabilities, which are stale after; its
        // ring gets nothing more, and the port it claimed is free: the third app, refused at
        // first (`AddressInUse`), binds it and gets the rest.
        name: "net-binding-capability",
        expressions: &[
            "revoke-after=50:udp dst port 7001",
            "udp dst port 7002",
            "claimed:udp dst port 7001",
        ],
        counts: &[300, 300],
        runts: 0,
        companions: &[],
        boot_words: "",
        judge: |outcome| {
            outcome.no_loss()?;
            let (first, hosted) = app_count(outcome, 0);
            let (second, second_hosted) = app_count(outcome, 1);
            let (third, _) = app_count(outcome, 2);
            let checks = outcome
                .serial
                .contains("]: binding capability checks passed");
            let silent = outcome
                .serial
                .contains("]: filter 0 received 0 after unbinding");
            let refused = outcome.serial.contains(
                "]: filter 0 \"udp dst port 7001\": AddressInUse, waiting for the owner to unbind",
            );
            let rebound = outcome.serial.contains("]: filter 0 bound once released");
            if !checks
                || !silent
                || !refused
                || !rebound
                || !(50..hosted).contains(&first)
                || third == 0
                || first + third > hosted
                || second != second_hosted
            {
                return Err(format!(
                    "checks {checks}, nothing after unbinding {silent}, refused {refused}, rebound {rebound}; port 7001: first app {first}, third {third} of {hosted}; port 7002: {second} of {second_hosted}"
                ));
            }
            Ok(())
        },
    },
    NetScenario {
        // Receive without spinning: the first app blocks in `net_wait` and wakes when its
        // frames arrive (interrupt-driven receive), the second never waits and learns of its
        // frames by packet upcall, and a computing app beside them keeps the processor: it is
        // charged most ticks, the waiter almost none. No frame is lost.
        name: "net-wait-blocks",
        expressions: &["udp dst port 7001", "upcall:udp dst port 7002"],
        counts: &[300, 300],
        runts: 0,
        companions: &["spin"],
        boot_words: "",
        judge: |outcome| {
            outcome.verdict()?;
            let spin = numbers_after(&outcome.serial, "spin: ");
            let waiter = numbers_after(&outcome.serial, "netmon[1]: net_wait returned ");
            let upcalled = numbers_after(&outcome.serial, "netmon[2]: net_wait returned ");
            let (
                [rounds, spin_charged, spin_ticks],
                [_, with_frames, _, waiter_charged],
                [_, _, upcalls, _],
            ) = (spin.as_slice(), waiter.as_slice(), upcalled.as_slice())
            else {
                return Err(format!(
                    "reports missing: spin {spin:?}, waiter {waiter:?}, upcall app {upcalled:?}"
                ));
            };
            let counter = |name: &str| outcome.counter(name);
            if *rounds == 0
                || spin_charged * 2 < *spin_ticks
                || *with_frames == 0
                || waiter_charged * 4 > *spin_charged
                || *upcalls == 0
                || counter("interrupts") == 0
                || counter("waits_blocked") == 0
                || counter("waits_woken") == 0
            {
                return Err(format!(
                    "spin: {rounds} rounds, charged {spin_charged} of {spin_ticks} ticks; waiter woken with frames {with_frames} times, charged {waiter_charged}; packet upcalls {upcalls}; interrupts {}, waits blocked {}, woken {}",
                    counter("interrupts"),
                    counter("waits_blocked"),
                    counter("waits_woken")
                ));
            }
            Ok(())
        },
    },
    NetScenario {
        // A VLAN-tagged filter that pins ethertype, protocol and destination port claims that
        // port like an untagged one: the second app's untagged bind of the same port is
        // refused (`AddressInUse`) while the first lives, so nobody gets the (untagged) frames
        // to that port.
        name: "net-vlan-claim",
        expressions: &["vlan and udp dst port 7001", "claimed:udp dst port 7001"],
        counts: &[100],
        runts: 0,
        companions: &[],
        boot_words: "",
        judge: |outcome| {
            outcome.no_loss()?;
            let refused = outcome.serial.contains(
                "]: filter 0 \"udp dst port 7001\": AddressInUse, waiting for the owner to unbind",
            );
            let sent = outcome
                .serial
                .contains("]: transmit from owned port Udp 7001: Ok(42)");
            // The second app may bind once the first has ended (after the traffic): it must
            // have received none of the frames to the port.
            let (tagged, untagged) = (app_count(outcome, 0).0, app_count(outcome, 1).0);
            if !refused || !sent || tagged != 0 || untagged != 0 {
                return Err(format!(
                    "untagged bind refused {refused}, tagged owner sent from its port {sent}; received: tagged owner {tagged}, untagged {untagged}"
                ));
            }
            Ok(())
        },
    },
    NetScenario {
        // The host's IPv4 address is a boot parameter: booted with 192.168.7.2, netmon learns
        // it (`net_ipv4`), transmits from it and is refused the default 10.0.2.15.
        name: "net-ipv4-parameter",
        expressions: &["udp dst port 7001"],
        counts: &[100],
        runts: 0,
        companions: &[],
        boot_words: "ipv4=192.168.7.2",
        judge: |outcome| {
            outcome.verdict()?;
            let configured = outcome
                .serial
                .contains("]: IPv4 192.168.7.2; transmit from 10.0.2.15: Err(Denied)");
            let sent = outcome
                .serial
                .contains("]: transmit from owned port Udp 7001: Ok(42)");
            if !configured || !sent {
                return Err(format!(
                    "default address refused {configured}, configured address sent {sent}"
                ));
            }
            Ok(())
        },
    },
];

/// Runs the scenarios that need traffic (for `cargo xtask test`); returns (passed, failed).
pub fn run_scenarios(kernel: &std::path::Path, filter: Option<&str>, verbose: bool) -> (u64, u64) {
    let (mut passed, mut failed) = (0, 0);
    for scenario in NET_SCENARIOS {
        if filter.is_some_and(|filter| !scenario.name.contains(filter)) {
            continue;
        }
        let start = Instant::now();
        let expressions: Vec<String> = scenario.expressions.iter().map(|e| e.to_string()).collect();
        let frames = scenario_frames(scenario.counts, scenario.runts);
        let sent = frames.len();
        let result = replay_frames(
            kernel,
            frames,
            &expressions,
            scenario.companions,
            scenario.boot_words,
            20_000,
            false,
            Echo::Quiet,
        )
        .map_err(|error| error.to_string())
        .and_then(|outcome| {
            outcome.clean_exit()?;
            (scenario.judge)(&outcome).map(|()| outcome)
        });
        let seconds = start.elapsed().as_secs_f64();
        match result {
            Ok(outcome) => {
                passed += 1;
                println!(
                    "scenario {} ({seconds:.2} s, {sent} frames injected): ok; kernel {:?}",
                    scenario.name, outcome.kernel
                );
                if verbose {
                    for line in outcome.serial.lines() {
                        println!("    | {line}");
                    }
                }
            }
            Err(problem) => {
                failed += 1;
                println!(
                    "scenario {} ({seconds:.2} s): FAILED: {problem}",
                    scenario.name
                );
            }
        }
    }
    (passed, failed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_frames_match_what_they_claim() {
        let frames = scenario_frames(&[3, 2], 2);
        let port = |port: u16| {
            let filters =
                dpf::frontend::compile(&format!("udp dst port {port}"), dpf::FilterId(0)).unwrap();
            frames
                .iter()
                .filter(|f| dpf::frontend::matches_any(&filters, &dpf::Packet::whole(f)))
                .count()
        };
        assert_eq!(port(7001), 3);
        assert_eq!(port(7002), 2);
        assert_eq!(frames.iter().filter(|f| f.len() < 14).count(), 2);
        assert_eq!(
            numbers_after("x\nspin: 5 rounds; ticks charged 3 of 9\n", "spin: "),
            [5, 3, 9]
        );
    }
}
