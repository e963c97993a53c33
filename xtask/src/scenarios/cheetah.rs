//! The `cheetah-*` clients: httpd's pages with each Cheetah technique, ab, and (for all of
//! them) a lossy layer-2 client; then the engine's counters must show each technique at work.
use super::httpd::{ab_thousand, bad_input_and_churn, curl, same, site_and_keep_alive};
use super::{CLIENT_DEADLINE, Session, udp};
use std::time::Duration;

/// A client at layer 2 from an address the namespace does not have (so its kernel neither
/// answers nor resets what comes back). First: a handshake, `GET /100k.bin` with
/// `Connection: close`, the first sending of the 3rd, 8th and 20th to 22nd data segments
/// lost and the 3rd's first retransmission too; it keeps what arrives out of order, ACKs
/// cumulatively and checks the body's SHA-256. Then a connection with a zero window: no data
/// may come, only probes, until it opens the window. Bounded: 40 s in all.
const SCAPY_LOSSY_CLIENT: &str = r#"
import hashlib, sys, time
from scapy.all import Ether, IP, TCP, Raw, conf, get_if_hwaddr
conf.verb = 0
tap, guest, me = "tap0", "10.0.2.15", "10.0.2.99"
eth = Ether(src=get_if_hwaddr(tap), dst="52:54:00:12:34:56")
sock = conf.L2socket(iface=tap, filter="tcp and src host 10.0.2.15 and dst host 10.0.2.99")
deadline = time.time() + 40

def segments(seconds):
    until = min(time.time() + seconds, deadline)
    while time.time() < until:
        p = sock.recv()
        if p is not None and IP in p and TCP in p:
            ip, t = p[IP], p[TCP]
            length = ip.len - ip.ihl * 4 - t.dataofs * 4
            yield t, bytes(t)[t.dataofs * 4:t.dataofs * 4 + length]

def send(sport, flags, seq, ack, window, data=b""):
    segment = TCP(sport=sport, dport=80, flags=flags, seq=seq, ack=ack, window=window)
    sock.send(eth/IP(src=me, dst=guest)/segment/Raw(data) if data else eth/IP(src=me, dst=guest)/segment)

def handshake(sport, window):
    sock.send(eth/IP(src=me, dst=guest)/TCP(sport=sport, dport=80, flags="S", seq=1000, window=window, options=[("MSS", 1460)]))
    for t, _ in segments(5):
        if t.flags.S and t.flags.A and t.dport == sport:
            send(sport, "A", 1001, t.seq + 1, window)
            return t.seq + 1
    sys.exit("no SYN-ACK")

def fetch(sport, window, lose, lose_again):
    rcv = handshake(sport, window)
    start = time.time()
    request = b"GET /100k.bin HTTP/1.1\r\nHost: exo\r\nConnection: close\r\n\r\n"
    send(sport, "PA", 1001, rcv, window, request)
    seq = 1001 + len(request)
    pieces, body, seen, index, again, retransmitted, fin, probes = {}, b"", set(), 0, set(), 0, None, 0
    for t, data in segments(25):
        if t.dport != sport:
            continue
        if window == 0:
            if data:
                sys.exit("data into a zero window")
            if t.seq == (rcv - 1) % 2**32:
                probes += 1
                if probes == 2:
                    window = 65535
                    send(sport, "A", seq, rcv, window)
            continue
        if not data and not t.flags.F:
            continue
        if t.seq in seen:
            retransmitted += 1
            if t.seq in lose_again and t.seq not in again:
                again.add(t.seq)
                continue
        else:
            seen.add(t.seq)
            index += 1
            if index - 1 in lose_again:
                lose_again = lose_again | {t.seq}
            if index - 1 in lose:
                continue
        if data:
            pieces[t.seq] = data
        if t.flags.F:
            fin = (t.seq + len(data)) % 2**32
        while rcv in pieces:
            data = pieces.pop(rcv)
            body += data
            rcv = (rcv + len(data)) % 2**32
        if fin is not None and rcv == fin:
            rcv = (rcv + 1) % 2**32
        send(sport, "A", seq, rcv, window)
        if fin is not None and rcv == (fin + 1) % 2**32:
            break
    else:
        sys.exit("transfer on port %d did not finish: %d bytes" % (sport, len(body)))
    send(sport, "FA", seq, rcv, window)
    head, _, content = body.partition(b"\r\n\r\n")
    if hashlib.sha256(content).hexdigest() != sys.argv[1]:
        sys.exit("port %d: wrong body (%d bytes)" % (sport, len(content)))
    return time.time() - start, retransmitted, probes

elapsed, retransmitted, _ = fetch(45000, 65535, {2, 7, 19, 20, 21}, {2})
if retransmitted < 6:
    sys.exit("only %d retransmissions seen" % retransmitted)
zero_elapsed, _, probes = fetch(45001, 0, set(), set())
print("lossy %.2f s, %d retransmissions seen; zero window: %d probes, then %.2f s" % (elapsed, retransmitted, probes, zero_elapsed))
"#;

/// The clients of one `cheetah-*` scenario: the techniques named in the ready line, every
/// page byte-identical, 100 requests on one kept-alive connection, `ab -n 1000 -c 10`
/// without failures; then (for `all`) the lossy client, the bad input and the churn; then
/// the engine's counters must show each technique on at work.
fn cheetah_clients(session: &mut Session<'_>, techniques: &str) -> Result<(), String> {
    for ready in ["ashd: ready", "httpd: ready"] {
        session.wait_for(ready, Duration::from_secs(60))?;
    }
    let ready = session.wait_for("httpd: ready", Duration::from_secs(1))?;
    if !ready.trim_end().ends_with(&format!("cheetah={techniques}")) {
        return Err(format!(
            "ready line {ready:?} does not name cheetah={techniques}"
        ));
    }
    let site = site_and_keep_alive(session, &format!("cheetah={techniques}"))?;
    ab_thousand(session, &format!("cheetah={techniques}"))?;
    let all = techniques == "prebuilt,cache,piggyback";
    if all {
        let digest = sha256_hex(&site[6].1)?;
        let lossy = session.client(
            "/usr/bin/python3",
            &["-c", SCAPY_LOSSY_CLIENT, &digest],
            CLIENT_DEADLINE * 3,
            None,
        )?;
        eprintln!(
            "cheetah={techniques}: {}",
            String::from_utf8_lossy(&lossy).trim()
        );
        bad_input_and_churn(session, &format!("cheetah={techniques}"))?;
    }
    let got = curl(session, "/")?;
    same("curl / at the end", &got, &site[0].1)?;
    for port in [9180, 9003] {
        udp(session, port, b"quit", false)?;
    }
    let line = session.wait_for("httpd: cheetah=", Duration::from_secs(30))?;
    let counter = |name: &str| -> Result<u64, String> {
        let key = format!("{name}: ");
        let at = line
            .find(&key)
            .ok_or_else(|| format!("no {name} in {line:?}"))?;
        line[at + key.len()..]
            .split(|c: char| !c.is_ascii_digit())
            .next()
            .and_then(|digits| digits.parse().ok())
            .ok_or_else(|| format!("{name} unreadable in {line:?}"))
    };
    let prebuilt = techniques.contains("prebuilt");
    let cache = techniques.contains("cache");
    let piggyback = techniques.contains("piggyback");
    if (counter("sums_stored")? > 0) != prebuilt {
        return Err(format!(
            "stored sums do not follow prebuilt={prebuilt}: {line}"
        ));
    }
    if (counter("bytes_copied")? > 0) == cache {
        return Err(format!("copies do not follow cache={cache}: {line}"));
    }
    if (counter("fins_piggybacked")? > 0) != piggyback {
        return Err(format!(
            "FINs on data do not follow piggyback={piggyback}: {line}"
        ));
    }
    if all && counter("segments_retransmitted")? == 0 {
        return Err(format!(
            "no retransmission counted after the lossy client: {line}"
        ));
    }
    eprintln!("cheetah={techniques}: {}", crate::qemu::app_text(&line));
    Ok(())
}

/// The SHA-256 of `bytes` in hex (by `sha256sum`, as the fetch scenario checks).
fn sha256_hex(bytes: &[u8]) -> Result<String, String> {
    use std::io::Write;
    let mut child = std::process::Command::new("sha256sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .map_err(|error| format!("sha256sum: {error}"))?;
    child
        .stdin
        .take()
        .ok_or("sha256sum: no stdin")?
        .write_all(bytes)
        .map_err(|error| format!("sha256sum: {error}"))?;
    let output = child
        .wait_with_output()
        .map_err(|error| format!("sha256sum: {error}"))?;
    Ok(String::from_utf8_lossy(&output.stdout)
        .split_whitespace()
        .next()
        .unwrap_or("")
        .to_string())
}

pub(super) fn cheetah_prebuilt_clients(session: &mut Session<'_>) -> Result<(), String> {
    cheetah_clients(session, "prebuilt")
}

pub(super) fn cheetah_cache_clients(session: &mut Session<'_>) -> Result<(), String> {
    cheetah_clients(session, "cache")
}

pub(super) fn cheetah_piggyback_clients(session: &mut Session<'_>) -> Result<(), String> {
    cheetah_clients(session, "piggyback")
}

pub(super) fn cheetah_all_clients(session: &mut Session<'_>) -> Result<(), String> {
    cheetah_clients(session, "prebuilt,cache,piggyback")
}
