//! The per-layer profile of `bench net`: where exo's guest instructions go for one request
//! (httpd, both paths) and one KB of TCP bulk (echo). The server's profile port
//! (`libnet::stack::profile_port`) is switched on around one extra run after the measured
//! rows (so they do not pay for it) and answers with libnet's per-layer TSC sums and the
//! kernel's timed counters; under `-icount shift=0` a TSC cycle is a guest instruction, and
//! QMP's instruction count over the same run gives the total the layers are part of.
use std::collections::BTreeMap;

/// One profiled run: which server, what it did, and each layer's guest instructions per unit.
#[derive(Clone, Debug, PartialEq)]
pub struct Profile {
    pub server: String,
    pub case: String,
    /// "request" or "KB".
    pub unit: &'static str,
    pub units: f64,
    /// Guest instructions over the run per unit (QMP).
    pub total: f64,
    /// Layer name and instructions per unit, in the order printed; the last is what no layer
    /// timed.
    pub layers: Vec<(&'static str, f64)>,
    /// Counts per unit that explain the layers (frames in and out, interrupts, waits).
    pub events: Vec<(&'static str, f64)>,
}

/// The `key=value` pairs of a `stop` reply.
pub fn parse(reply: &str) -> Result<BTreeMap<String, u64>, String> {
    let rest = reply
        .strip_prefix("profile ")
        .ok_or_else(|| format!("not a profile: {reply:?}"))?;
    rest.split_whitespace()
        .map(|pair| {
            let (key, value) = pair
                .split_once('=')
                .ok_or_else(|| format!("no '=' in {pair:?}"))?;
            let value = value
                .parse::<u64>()
                .map_err(|error| format!("{pair:?}: {error}"))?;
            Ok((key.to_string(), value))
        })
        .collect()
}

/// The layers of one run from its `stop` reply, the guest instructions over it and its units.
pub fn layers(
    server: &str,
    case: &str,
    unit: &'static str,
    units: f64,
    instructions: u64,
    sums: &BTreeMap<String, u64>,
) -> Result<Profile, String> {
    let get = |key: &str| {
        sums.get(key)
            .copied()
            .ok_or_else(|| format!("the profile has no {key}"))
    };
    let rx_poll = get("kernel_rx_poll_cycles")?;
    let demux = get("kernel_demux_cycles")?;
    let delivery = get("kernel_delivery_cycles")?;
    let kernel_transmit = get("kernel_transmit_cycles")?;
    let transmit = get("transmit_cycles")?;
    let stack = get("stack_cycles")?;
    let app = get("app_cycles")?;
    let per = |cycles: f64| cycles / units.max(1.0);
    let timed = [
        (
            "virtio rx driver (receive poll less demux and delivery)",
            rx_poll as f64 - demux as f64 - delivery as f64,
        ),
        ("dpf demux (classify)", demux as f64),
        (
            "ring delivery (handlers, copies into rings)",
            delivery as f64,
        ),
        (
            "net_transmit boundary (syscall in and out, from the app)",
            transmit as f64 - kernel_transmit as f64,
        ),
        (
            "transmit check + virtio tx (kernel net_transmit)",
            kernel_transmit as f64,
        ),
        (
            "libnet stack (smoltcp / Cheetah engine, ring reads)",
            stack as f64,
        ),
        ("the app itself (httpd / echo)", app as f64),
    ];
    let accounted: f64 = timed.iter().map(|(_, cycles)| cycles).sum();
    let mut layers: Vec<(&'static str, f64)> = timed
        .iter()
        .map(|(name, cycles)| (*name, per(*cycles)))
        .collect();
    layers.push((
        "rest: net_wait, scheduler, timer and interrupt entry, idle apps (total less the above)",
        per(instructions as f64 - accounted),
    ));
    let events = [
        ("frames in", "kernel_rx_frames"),
        ("frames out", "kernel_tx_frames"),
        ("net_transmit calls", "kernel_transmit_calls"),
        ("NIC interrupts", "kernel_interrupts"),
        ("net_wait calls", "wait_spans"),
        ("net_waits that blocked", "kernel_waits_blocked"),
    ]
    .into_iter()
    .map(|(name, key)| Ok((name, per(get(key)? as f64))))
    .collect::<Result<Vec<_>, String>>()?;
    Ok(Profile {
        server: server.to_string(),
        case: case.to_string(),
        unit,
        units,
        total: per(instructions as f64),
        layers,
        events,
    })
}

/// The profiles as a Markdown table: one column per profiled run.
pub fn table(profiles: &[Profile]) -> String {
    if profiles.is_empty() {
        return String::new();
    }
    let mut out = String::from("| layer |");
    for profile in profiles {
        out.push_str(&format!(
            " {} {} (per {}) |",
            profile.server, profile.case, profile.unit
        ));
    }
    out.push_str("\n|---|");
    out.push_str(&"---|".repeat(profiles.len()));
    out.push('\n');
    let mut line = |name: &str, value: &dyn Fn(&Profile) -> Option<f64>| {
        out.push_str(&format!("| {name} |"));
        for profile in profiles {
            match value(profile) {
                Some(value) => out.push_str(&format!(" {value:.0} |")),
                None => out.push_str(" - |"),
            }
        }
        out.push('\n');
    };
    line("guest instructions, total (QMP)", &|p| Some(p.total));
    for (index, (name, _)) in profiles[0].layers.iter().enumerate() {
        line(name, &|p| p.layers.get(index).map(|(_, value)| *value));
    }
    for (index, (name, _)) in profiles[0].events.iter().enumerate() {
        let name = format!("{name} (count)");
        let mut cells = format!("| {name} |");
        for profile in profiles {
            match profile.events.get(index) {
                Some((_, value)) => cells.push_str(&format!(" {value:.2} |")),
                None => cells.push_str(" - |"),
            }
        }
        out.push_str(&cells);
        out.push('\n');
    }
    out
}

/// The profiles as JSON, one object per run.
pub fn json(profiles: &[Profile]) -> String {
    let objects: Vec<serde_json::Value> = profiles
        .iter()
        .map(|profile| {
            let layers: serde_json::Map<String, serde_json::Value> = profile
                .layers
                .iter()
                .map(|(name, value)| (name.to_string(), serde_json::json!(value)))
                .collect();
            let events: serde_json::Map<String, serde_json::Value> = profile
                .events
                .iter()
                .map(|(name, value)| (name.to_string(), serde_json::json!(value)))
                .collect();
            serde_json::json!({
                "server": profile.server,
                "case": profile.case,
                "unit": profile.unit,
                "units": profile.units,
                "instructions_per_unit": profile.total,
                "layers_per_unit": layers,
                "events_per_unit": events,
            })
        })
        .collect();
    serde_json::to_string_pretty(&objects).unwrap_or_else(|_| "[]".into()) + "\n"
}

#[cfg(test)]
mod tests {
    use super::*;

    const REPLY: &str = "profile app_cycles=1000 app_spans=10 stack_cycles=4000 stack_spans=20 transmit_cycles=3000 transmit_spans=30 wait_cycles=99999 wait_spans=5 kernel_rx_poll_cycles=6000 kernel_demux_cycles=500 kernel_delivery_cycles=1500 kernel_transmit_cycles=2000 kernel_transmit_calls=30 kernel_rx_frames=40 kernel_tx_frames=30 kernel_interrupts=7 kernel_waits_blocked=4 kernel_arrival_to_send_cycles=1";

    #[test]
    fn layers_split_the_total_and_the_rest_is_what_none_timed() {
        let sums = parse(REPLY).unwrap();
        let profile = layers("httpd", "/1k.html c16", "request", 10.0, 20_000, &sums).unwrap();
        let values: Vec<f64> = profile.layers.iter().map(|(_, value)| *value).collect();
        // rx driver 6000-500-1500, demux, delivery, boundary 3000-2000, kernel tx, stack, app.
        assert_eq!(
            values,
            [400.0, 50.0, 150.0, 100.0, 200.0, 400.0, 100.0, 600.0]
        );
        assert_eq!(profile.total, 2000.0);
        assert_eq!(values.iter().sum::<f64>(), profile.total);
        assert_eq!(profile.events[0], ("frames in", 4.0));
        let table = table(&[profile]);
        assert!(table.contains("| dpf demux (classify) | 50 |"), "{table}");
        assert!(json(&[]).starts_with("[]"));
    }

    #[test]
    fn a_reply_that_is_not_a_profile_or_lacks_a_counter_is_an_error() {
        assert!(parse("profile started").is_err());
        assert!(parse("hello").is_err());
        let sums = parse("profile app_cycles=1").unwrap();
        assert!(layers("httpd", "c", "request", 1.0, 1, &sums).is_err());
    }
}
