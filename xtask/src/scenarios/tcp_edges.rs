//! The `libnet-tcp-edges` clients: TCP edge cases played segment by segment by scapy
//! (`tcp_edges.py`) against libnet's echo.
use super::{CLIENT_DEADLINE, Session, udp};
use crate::topology::TAP;
use std::time::{Duration, Instant};

/// The scapy client of `libnet-tcp-edges`, segment by segment (see the script).
const SCAPY_TCP_EDGES: &str = include_str!("tcp_edges.py");

/// The `libnet-tcp-edges` clients: the edge cases against the first echo, then both echos
/// told to quit; the probing echo must have asked after the first one was ready.
pub(super) fn tcp_edge_clients(session: &mut Session<'_>) -> Result<(), String> {
    for ready in ["ashd: ready", "echo: ready tcp 7", "echo: ready tcp 8"] {
        session.wait_for(ready, Duration::from_secs(60))?;
    }
    let position = |session: &Session<'_>, text: &str| {
        session.seen.iter().position(|line| line.contains(text))
    };
    match (
        position(session, "echo: ready tcp 7"),
        position(session, "another app's ring"),
    ) {
        (Some(ready), Some(probe)) if ready < probe => {}
        order => {
            return Err(format!(
                "the probing echo asked before the first echo was ready (lines {order:?})"
            ));
        }
    }
    let start = Instant::now();
    let report = session.client(
        "/usr/bin/python3",
        &["-c", SCAPY_TCP_EDGES, TAP],
        CLIENT_DEADLINE * 4,
        None,
    )?;
    let report = String::from_utf8_lossy(&report);
    if !report.contains("edges done") {
        return Err(format!("tcp edges: {report}"));
    }
    for line in report.lines() {
        eprintln!("libnet-tcp-edges: {line}");
    }
    eprintln!(
        "libnet-tcp-edges: the edge cases took {:.2} s",
        start.elapsed().as_secs_f64()
    );
    for port in [9107, 9108, 9003] {
        udp(session, port, b"quit", false)?;
    }
    Ok(())
}
