//! httpd's site and the HTTP clients that check it, shared by the libnet and cheetah
//! scenarios: curl, byte comparison, ab, and the bad input and connection churn.
use super::{CLIENT_DEADLINE, Session};
use crate::topology::GUEST_ADDRESS;
use std::time::Instant;

/// Byte `index` of httpd's `big.bin` (as `apps/httpd/build.rs` writes it).
pub(super) fn httpd_big_file_byte(index: usize) -> u8 {
    let x = (index as u32).wrapping_mul(2_654_435_761);
    (x >> 24) as u8 ^ (index >> 12) as u8
}

/// The site httpd embeds: path and the bytes it must serve.
pub fn httpd_site() -> Result<Vec<(&'static str, Vec<u8>)>, String> {
    let site = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../apps/httpd/site");
    let read = |name: &str| {
        std::fs::read(site.join(name))
            .map_err(|error| format!("reading the site's {name}: {error}"))
    };
    Ok(vec![
        ("/", read("index.html")?),
        ("/index.html", read("index.html")?),
        ("/about.html", read("about.html")?),
        ("/style.css", read("style.css")?),
        ("/logo.svg", read("logo.svg")?),
        ("/1k.html", read("1k.html")?),
        (
            "/100k.bin",
            (0..100 << 10).map(httpd_big_file_byte).collect(),
        ),
        ("/big.bin", (0..1 << 20).map(httpd_big_file_byte).collect()),
    ])
}

/// httpd's bad input from scapy (bad checksums, resets, a SYN flood, impossible flags), then
/// 20 clients gone mid-response and 300 connections in a row; `label` names the run.
pub(super) fn bad_input_and_churn(session: &Session<'_>, label: &str) -> Result<(), String> {
    let sent = session.client(
        "/usr/bin/python3",
        &["-c", SCAPY_BAD_INPUT],
        CLIENT_DEADLINE * 2,
        None,
    )?;
    if !sent.starts_with(b"sent") {
        return Err("scapy did not send the bad input".into());
    }
    let style =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../apps/httpd/site/style.css");
    let start = Instant::now();
    let churned = session.client(
        "/usr/bin/python3",
        &["-c", PYTHON_CONNECTION_CHURN, &style.to_string_lossy()],
        CLIENT_DEADLINE * 6,
        None,
    )?;
    if !churned.starts_with(b"churned") {
        return Err("the connection churn did not finish".into());
    }
    eprintln!(
        "{label}: 20 clients gone mid-response, then 300 connections in a row, in {:.2} s",
        start.elapsed().as_secs_f64()
    );
    Ok(())
}

/// The line of a client's report that starts with `name` (trimmed; empty if none).
pub(super) fn report_field(text: &str, name: &str) -> String {
    text.lines()
        .find(|line| line.trim_start().starts_with(name))
        .unwrap_or("")
        .trim()
        .to_string()
}

/// `ab -n 1000 -c 10` on httpd's front page: every request complete, none failed; `label`
/// names the run in what is printed.
pub(super) fn ab_thousand(session: &Session<'_>, label: &str) -> Result<(), String> {
    let url = format!("http://{GUEST_ADDRESS}/");
    let ab = session.client(
        "ab",
        &["-n", "1000", "-c", "10", "-s", "10", &url],
        CLIENT_DEADLINE * 4,
        None,
    )?;
    let ab = String::from_utf8_lossy(&ab);
    if !report_field(&ab, "Complete requests:").ends_with(" 1000")
        || !report_field(&ab, "Failed requests:").ends_with(" 0")
    {
        return Err(format!("ab: {ab}"));
    }
    eprintln!(
        "{label}: ab -n 1000 -c 10: {}; {}",
        report_field(&ab, "Requests per second:"),
        report_field(&ab, "Time per request:")
    );
    Ok(())
}

/// `curl` of `path` on httpd; the body.
pub(super) fn curl(session: &Session<'_>, path: &str) -> Result<Vec<u8>, String> {
    let url = format!("http://{GUEST_ADDRESS}{path}");
    session.client(
        "curl",
        &["-s", "-S", "--max-time", "30", &url],
        CLIENT_DEADLINE * 3,
        None,
    )
}

/// Checks a served body against the expected bytes.
pub(super) fn same(what: &str, got: &[u8], wanted: &[u8]) -> Result<(), String> {
    if got == wanted {
        return Ok(());
    }
    let first = got.iter().zip(wanted).position(|(a, b)| a != b);
    Err(format!(
        "{what}: got {} bytes, wanted {} (first difference at {first:?})",
        got.len(),
        wanted.len()
    ))
}

/// Bad input sent with scapy: segments to httpd's port with bad checksums (each dropped and
/// counted by the stack's device), a reset storm against the port with random sequence
/// numbers, a SYN flood from many source ports, and impossible flag combinations (SYN+FIN,
/// SYN+RST, a lone FIN, FIN+PSH+URG, no flags); bounded in count and rate. A SYN to a port no
/// app owns must go unanswered.
const SCAPY_BAD_INPUT: &str = r#"
import random
from scapy.all import IP, TCP, send, conf
conf.verb = 0
random.seed(12)
guest = "10.0.2.15"
send(IP(dst=guest)/TCP(sport=40000, dport=80, flags="S", seq=1000, chksum=0xdead), count=20, inter=0.01)
send([IP(dst=guest)/TCP(sport=random.randint(1024, 65535), dport=80, flags="R", seq=random.randint(0, 2**32 - 1)) for _ in range(100)], inter=0.005)
send([IP(dst=guest)/TCP(sport=20000 + i, dport=80, flags="S", seq=random.randint(0, 2**32 - 1)) for i in range(200)], inter=0.005)
for flags in ["SF", "SR", "F", "FPU", ""]:
    send(IP(dst=guest)/TCP(sport=41000, dport=80, flags=flags, seq=random.randint(0, 2**32 - 1)), count=10, inter=0.005)
# A port nobody owns: no stack answers (the kernel drops what no filter claims).
from scapy.all import sr1
if sr1(IP(dst=guest)/TCP(sport=42000, dport=8081, flags="S"), timeout=1) is not None:
    raise SystemExit("an answer for an unowned port")
print("sent")
"#;

/// Clients that misbehave at the socket level: 20 that ask for the 1 MiB file and close after
/// reading 10,000 bytes of it (their unread data makes the close a reset), then 300
/// connections opened, used for one request and closed in a row, each answer checked.
const PYTHON_CONNECTION_CHURN: &str = r#"
import socket, sys
guest = ("10.0.2.15", 80)
for _ in range(20):
    s = socket.create_connection(guest, timeout=10)
    s.sendall(b"GET /big.bin HTTP/1.1\r\nHost: exo\r\n\r\n")
    got = 0
    while got < 10000:
        chunk = s.recv(4096)
        if not chunk:
            sys.exit("closed early")
        got += len(chunk)
    s.close()
style = open(sys.argv[1], "rb").read()
for i in range(300):
    s = socket.create_connection(guest, timeout=10)
    s.sendall(b"GET /style.css HTTP/1.1\r\nHost: exo\r\nConnection: close\r\n\r\n")
    data = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    s.close()
    if not data.startswith(b"HTTP/1.1 200 OK\r\n") or not data.endswith(style):
        sys.exit("connection %d: %r" % (i, data[:100]))
print("churned")
"#;

/// Every page of the site by curl, byte-identical, then 100 requests on one connection that curl
/// keeps alive (it says how many connections it opened each time). Returns the site.
pub(super) fn site_and_keep_alive(
    session: &Session<'_>,
    label: &str,
) -> Result<Vec<(&'static str, Vec<u8>)>, String> {
    let site = httpd_site()?;
    for (path, body) in &site {
        let start = Instant::now();
        let got = curl(session, path)?;
        same(&format!("curl {path}"), &got, body)?;
        eprintln!(
            "{label}: curl {path}: {} bytes identical in {:.2} s",
            got.len(),
            start.elapsed().as_secs_f64()
        );
    }
    let url = format!("http://{GUEST_ADDRESS}/about.html");
    let mut arguments = vec![
        "-s",
        "-S",
        "--max-time",
        "60",
        "-w",
        "connects=%{num_connects}\n",
    ];
    for _ in 0..100 {
        arguments.push(&url);
    }
    let start = Instant::now();
    let kept = session.client("curl", &arguments, CLIENT_DEADLINE * 4, None)?;
    let about = &site[2].1;
    let mut wanted = Vec::new();
    for index in 0..100 {
        wanted.extend_from_slice(about);
        wanted.extend_from_slice(if index == 0 {
            b"connects=1\n"
        } else {
            b"connects=0\n"
        });
    }
    same("100 requests on one kept-alive connection", &kept, &wanted)?;
    eprintln!(
        "{label}: 100 keep-alive requests on one connection in {:.2} s",
        start.elapsed().as_secs_f64()
    );
    Ok(site)
}

/// 1 MiB (the big file's bytes, xored with `pattern`) through the TCP echo app on port 7 with
/// socat, byte-identical.
pub(super) fn tcp_echo_mib(
    session: &Session<'_>,
    label: &str,
    pattern: usize,
) -> Result<(), String> {
    let stream: Vec<u8> = (0..1usize << 20)
        .map(|i| httpd_big_file_byte(i ^ pattern))
        .collect();
    let target = format!("TCP:{GUEST_ADDRESS}:7");
    let start = Instant::now();
    let echoed = session.client(
        "socat",
        &["-t", "30", "-T", "30", "-", &target],
        CLIENT_DEADLINE * 4,
        Some(&stream),
    )?;
    same("TCP echo of 1 MiB", &echoed, &stream)?;
    eprintln!(
        "{label}: TCP echo of {} bytes identical in {:.2} s",
        echoed.len(),
        start.elapsed().as_secs_f64()
    );
    Ok(())
}
