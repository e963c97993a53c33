//! The kernel's network counters in the demonstration's report: the last `[exo] net
//! counters:` line the kernel printed (it prints one whenever an app with rings ends), as a
//! table of what came in, where it went, what was dropped and why, and what went out.
use std::collections::BTreeMap;

/// Rows of the table: a label, and the counters (by the kernel's names) summed into it.
const ROWS: &[(&str, &[&str])] = &[
    ("received from the NIC", &["rx_frames"]),
    ("delivered (copies into app rings)", &["delivered"]),
    (
        "  of which ARP replies to apps that asked",
        &["arp_answers_to_askers"],
    ),
    ("taken by handlers in the kernel", &["ash_consumed"]),
    ("dropped: no filter matched", &["no_match"]),
    ("dropped: ring full", &["ring_full"]),
    ("dropped: malformed", &["malformed"]),
    ("dropped by handlers", &["ash_dropped"]),
    ("dropped: handler aborted", &["ash_aborts"]),
    ("transmitted", &["tx_frames"]),
    ("  of which handler replies", &["ash_replies"]),
    (
        "refused by the transmit check",
        &["tx_refused", "ash_replies_refused"],
    ),
    (
        "handler replies with no room to send",
        &["ash_replies_dropped"],
    ),
];

/// The counters of the last `net counters:` line in `serial`.
pub fn last_counters(serial: &str) -> Option<BTreeMap<String, u64>> {
    let line = serial
        .lines()
        .rev()
        .find(|line| line.contains("[exo] net counters:"))?;
    let (_, list) = line.split_once("net counters:")?;
    let mut counters = BTreeMap::new();
    for pair in list.split_whitespace() {
        let (name, value) = pair.split_once('=')?;
        counters.insert(name.to_string(), value.parse().ok()?);
    }
    Some(counters)
}

/// The report's lines: the table, then whether every received frame is accounted for once
/// (true when no frame reaches two rings, as with the demonstration's disjoint filters).
pub fn report(counters: &BTreeMap<String, u64>) -> Result<Vec<String>, String> {
    let value = |name: &str| {
        counters
            .get(name)
            .copied()
            .ok_or(format!("the kernel printed no {name}"))
    };
    let mut lines = vec![format!(
        "{:<44} {:>10}",
        "kernel network counters", "frames"
    )];
    for (label, names) in ROWS {
        let mut sum = 0;
        for name in *names {
            sum += value(name)?;
        }
        lines.push(format!("{label:<44} {sum:>10}"));
    }
    let accounted: u64 = [
        "malformed",
        "no_match",
        "ash_consumed",
        "ash_dropped",
        "ash_aborts",
        "delivered",
        "ring_full",
    ]
    .iter()
    .map(|name| value(name))
    .sum::<Result<u64, String>>()?;
    lines.push(format!(
        "every received frame accounted for once: {}",
        accounted == value("rx_frames")?
    ));
    Ok(lines)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SERIAL: &str = "[exo] net counters: rx_frames=1 delivered=1\n\
        httpd| httpd: done\n\
        [exo] net counters: rx_frames=10 delivered=6 no_match=1 ring_full=1 malformed=1 tx_refused=2 tx_frames=7 ash_consumed=1 ash_dropped=0 ash_aborts=0 ash_replies=3 ash_replies_refused=1 ash_replies_dropped=0 arp_answers_to_askers=1\n";

    #[test]
    fn the_last_line_counts_and_every_row_is_filled() {
        let counters = last_counters(SERIAL).unwrap();
        assert_eq!(counters["rx_frames"], 10);
        let lines = report(&counters).unwrap();
        let row = |label: &str| {
            lines
                .iter()
                .find(|line| line.starts_with(label))
                .unwrap()
                .split_whitespace()
                .last()
                .unwrap()
                .to_string()
        };
        assert_eq!(row("received from the NIC"), "10");
        assert_eq!(row("refused by the transmit check"), "3");
        assert_eq!(row("dropped: ring full"), "1");
        assert_eq!(
            lines.last().unwrap(),
            "every received frame accounted for once: true"
        );
    }

    #[test]
    fn a_missing_counter_or_line_is_an_error() {
        assert!(last_counters("no counters here").is_none());
        let mut counters = last_counters(SERIAL).unwrap();
        counters.remove("ring_full");
        assert!(report(&counters).unwrap_err().contains("ring_full"));
        counters.insert("ring_full".into(), 2);
        assert!(
            report(&counters)
                .unwrap()
                .last()
                .unwrap()
                .ends_with("false")
        );
    }
}
