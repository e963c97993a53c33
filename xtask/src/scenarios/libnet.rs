//! The `libnet-tap` and `libnet-load` clients: apps with their own TCP/IP stacks served
//! byte for byte, and under load without a frame lost.
use super::fetch::FetchServer;
use super::httpd::{
    ab_thousand, bad_input_and_churn, curl, httpd_site, report_field, same, site_and_keep_alive,
    tcp_echo_mib,
};
use super::{CLIENT_DEADLINE, Session, ping_three, udp};
use crate::topology::GUEST_ADDRESS;
use std::time::{Duration, Instant};

/// Time allowed for the libnet scenario: its clients move a few MiB through TCG.
pub(super) const LIBNET_TAP_TIMEOUT: Duration = Duration::from_secs(240);

/// The `libnet-tap` clients, in order; each bounded in count and time.
pub(super) fn libnet_clients(session: &mut Session<'_>) -> Result<(), String> {
    let fetch_server = FetchServer::start(session)?;
    for ready in ["ashd: ready", "echo: ready", "httpd: ready"] {
        session.wait_for(ready, Duration::from_secs(60))?;
    }
    ping_three(session, "")?;
    let site = site_and_keep_alive(session, "libnet-tap")?;
    let about = &site[2].1;
    let url = format!("http://{GUEST_ADDRESS}/about.html");
    let head = session.client(
        "curl",
        &["-s", "-S", "-I", "--max-time", "10", &url],
        CLIENT_DEADLINE,
        None,
    )?;
    let head = String::from_utf8_lossy(&head);
    let length = format!("Content-Length: {}\r\n", about.len());
    if !head.starts_with("HTTP/1.1 200 OK\r\n")
        || !head.contains(&length)
        || !head.ends_with("\r\n\r\n")
    {
        return Err(format!("HEAD: {head:?}"));
    }
    let missing = format!("http://{GUEST_ADDRESS}/no-such-page");
    let code = session.client(
        "curl",
        &[
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--max-time",
            "10",
            &missing,
        ],
        CLIENT_DEADLINE,
        None,
    )?;
    if code != b"404" {
        return Err(format!(
            "missing page: status {}",
            String::from_utf8_lossy(&code)
        ));
    }
    let target = format!("TCP:{GUEST_ADDRESS}:80");
    let bad = session.client(
        "socat",
        &["-t", "5", "-T", "10", "-", &target],
        CLIENT_DEADLINE,
        Some(b"NONSENSE\r\n\r\n"),
    )?;
    if !bad.starts_with(b"HTTP/1.1 400 Bad Request\r\n") {
        return Err(format!(
            "garbage request: {:?}",
            String::from_utf8_lossy(&bad)
        ));
    }
    // TCP echo: 1 MiB through the echo app, byte-identical.
    tcp_echo_mib(session, "libnet-tap", 0x5555)?;
    let payload: Vec<u8> = (0..1000u32).map(|i| (i * 13 + 5) as u8).collect();
    let echoed = udp(session, 7007, &payload, true)?;
    same("UDP echo", &echoed, &payload)?;
    bad_input_and_churn(session, "libnet-tap")?;
    // httpd still serves, byte-identical.
    let got = curl(session, "/")?;
    same("curl / after the bad input", &got, &site[0].1)?;
    fetch_server.check(session)?;
    for port in [9107, 9180, 9003] {
        udp(session, port, b"quit", false)?;
    }
    Ok(())
}

/// The drop and retransmission counters of an app's end-of-run line (`NAME: done: ...
/// device DeviceCounters { ... }`) that must be 0 after a clean run: every way a frame is
/// lost on the way in or out of the stack, and every segment the stack sent twice (smoltcp's
/// retransmission timeout is at least 1 s, so one is a stall). The peer's retransmissions
/// (`rx_peer_retransmits`) are printed, not required to be 0: Linux's timeout is 200 ms, which
/// an emulated guest on a loaded host can outlast without losing anything.
const LOSS_COUNTERS: &[&str] = &[
    "rx_malformed",
    "rx_bad_checksum",
    "tx_refused",
    "tx_failed",
    "tx_retransmits",
    "rx_ring_full",
];

/// Counter `name` of a `DeviceCounters { name: N, ... }` in `line`.
pub(super) fn device_counter(line: &str, name: &str) -> Option<u64> {
    let at = line.find(&format!(" {name}: "))? + name.len() + 3;
    let digits: String = line[at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

/// Waits for `app`'s end-of-run line and checks it lost nothing and sent nothing twice.
fn no_loss(session: &mut Session<'_>, app: &str) -> Result<(), String> {
    let line = session.wait_for(&format!("{app}: done:"), Duration::from_secs(30))?;
    let mut report = Vec::new();
    for name in LOSS_COUNTERS {
        let value = device_counter(&line, name).ok_or(format!("no {name} in {line:?}"))?;
        if value != 0 {
            return Err(format!("{app}: {name} = {value}, wanted 0: {line}"));
        }
        report.push(format!("{name} 0"));
    }
    let frames = ["rx_frames", "tx_frames", "rx_peer_retransmits"]
        .map(|name| device_counter(&line, name).unwrap_or(0));
    eprintln!(
        "libnet: {app}: {} frames in, {} out; {}; the peer sent {} segments again",
        frames[0],
        frames[1],
        report.join(", "),
        frames[2]
    );
    Ok(())
}

/// The `libnet-load` clients: the 1 MiB file with curl (download), 1 MiB through echo with
/// socat (upload and download), then ab and wrk against httpd's front page; httpd and echo
/// must then report no frame lost and no segment they sent twice.
pub(super) fn load_clients(session: &mut Session<'_>) -> Result<(), String> {
    for ready in ["ashd: ready", "httpd: ready", "echo: ready"] {
        session.wait_for(ready, Duration::from_secs(60))?;
    }
    let site = httpd_site()?;
    let (_, big) = site
        .iter()
        .find(|(path, _)| *path == "/big.bin")
        .ok_or("no /big.bin in the site")?;
    let start = Instant::now();
    let got = curl(session, "/big.bin")?;
    same("curl /big.bin", &got, big)?;
    eprintln!(
        "libnet-load: curl /big.bin: {} bytes identical in {:.2} s",
        got.len(),
        start.elapsed().as_secs_f64()
    );
    tcp_echo_mib(session, "libnet-load", 0x3c3c)?;
    let url = format!("http://{GUEST_ADDRESS}/");
    ab_thousand(session, "libnet-load")?;
    let wrk = session.client(
        "wrk",
        &["-t1", "-c16", "-d5s", "--timeout", "5s", &url],
        CLIENT_DEADLINE,
        None,
    )?;
    let wrk = String::from_utf8_lossy(&wrk);
    if wrk.contains("Socket errors") || wrk.contains("Non-2xx") {
        return Err(format!("wrk: {wrk}"));
    }
    eprintln!(
        "libnet-load: wrk -t1 -c16 -d5s: {}; {}",
        report_field(&wrk, "Requests/sec:"),
        wrk.lines()
            .find(|line| line.contains("requests in"))
            .unwrap_or("")
            .trim()
    );
    let got = curl(session, "/")?;
    same("curl / after the load", &got, &site[0].1)?;
    for port in [9180, 9107, 9003] {
        udp(session, port, b"quit", false)?;
    }
    no_loss(session, "httpd")?;
    no_loss(session, "echo")
}
