//! The `filter-churn` clients: traffic in bounded rounds while the guest binds and unbinds
//! filters, then the check that the kernel took every frame sent.
use super::{CLIENT_DEADLINE, Session, udp};
use crate::topology::{GUEST_ADDRESS, TAP};
use std::time::Duration;

/// Time allowed for the churn scenario: 100,000 binds and unbinds through TCG (a debug
/// kernel takes a few milliseconds for each pair).
pub(super) const CHURN_TIMEOUT: Duration = Duration::from_secs(900);

/// Frames one round of the churn clients sends to each port.
const CHURN_ROUND_FRAMES: u64 = 500;
/// Most rounds (at about a second each) before the clients give up on the churn finishing.
const CHURN_MAX_ROUNDS: u64 = 800;

/// The guest's MAC, from the kernel's `net: virtio-net ... MAC [52, 54, ...]` line.
fn guest_mac(line: &str) -> Result<String, String> {
    let bytes = line
        .split_once("MAC [")
        .and_then(|(_, rest)| rest.split_once(']'))
        .map(|(bytes, _)| bytes.split(", ").collect::<Vec<_>>().join(":"))
        .ok_or_else(|| format!("no MAC in {line:?}"))?;
    if bytes.len() != 17 {
        return Err(format!("not a MAC: {bytes:?}"));
    }
    Ok(bytes)
}

/// The `filter-churn` clients: the guest's MAC as a static neighbour (no ARP responder runs),
/// then rounds of hping3 to the steady port and to the churn port, each bounded in count and
/// rate, until the app says its cycles are done (at most [`CHURN_MAX_ROUNDS`]); then the quit
/// datagram, which ends the churn, and the check that the kernel took every frame sent.
pub(super) fn churn_clients(session: &mut Session<'_>) -> Result<(), String> {
    let nic = session.wait_for("MAC [", Duration::from_secs(60))?;
    let mac = guest_mac(&nic)?;
    session.client(
        "ip",
        &[
            "neigh",
            "replace",
            GUEST_ADDRESS,
            "lladdr",
            &mac,
            "dev",
            TAP,
        ],
        CLIENT_DEADLINE,
        None,
    )?;
    session.wait_for("churn: ready", Duration::from_secs(120))?;
    let count = CHURN_ROUND_FRAMES.to_string();
    let mut steady = 0;
    for _ in 0..CHURN_MAX_ROUNDS {
        for port in ["9300", "9301"] {
            let arguments = [
                "-2",
                "-p",
                port,
                "-d",
                "32",
                "-c",
                &count,
                "-i",
                "u1000",
                "-q",
                GUEST_ADDRESS,
            ];
            // Nothing answers UDP here, so hping3's status says nothing: what matters is the
            // count, which the app checks.
            session
                .topology
                .run("hping3", &arguments, Duration::from_secs(30), None)
                .map_err(|error| format!("hping3 {}: {error}", arguments.join(" ")))?;
        }
        steady += CHURN_ROUND_FRAMES;
        session.drain();
        if session.seen.iter().any(|line| line.contains("cycles done")) {
            break;
        }
    }
    // The quit datagram, again if it was lost (the app counts every copy it sees).
    // Every frame sent (to both ports, and the quit the app saw) was taken by the kernel.
    let done = format!("rx {} = delivered", 2 * steady + 1);
    let mut last = Err(String::new());
    for _ in 0..3 {
        udp(session, 9302, b"quit", false)?;
        last = session.wait_for(&done, Duration::from_secs(20));
        if last.is_ok() {
            break;
        }
    }
    last.map(drop)
}
