//! The `libnet-fetch` clients, and the HTTP server in the namespace that the guest's fetch
//! app downloads from (also used by `libnet-tap`).
use super::httpd::httpd_big_file_byte;
use super::libnet::device_counter;
use super::{CLIENT_DEADLINE, Session, udp};
use crate::topology::TAP;
use std::time::Duration;

/// Unsolicited ARP replies to the guest's address, from a neighbour nobody asked about and
/// from the server's address before fetch asks: no stack may get a copy.
const SCAPY_UNSOLICITED_ARP: &str = r#"
import sys
from scapy.all import ARP, Ether, conf, get_if_hwaddr, sendp, srp1
conf.verb = 0
tap = sys.argv[1]
mine = get_if_hwaddr(tap)
answer = srp1(Ether(dst="ff:ff:ff:ff:ff:ff") / ARP(op=1, psrc="10.0.2.2", pdst="10.0.2.15"), iface=tap, timeout=3)
if answer is None:
    sys.exit("no ARP answer for the guest")
guest_mac = answer[ARP].hwsrc
for sender in ["10.0.2.77", "10.0.2.2"]:
    sendp(Ether(src=mine, dst=guest_mac) / ARP(op=2, hwsrc=mine, psrc=sender, hwdst=guest_mac, pdst="10.0.2.15"), iface=tap, count=5, inter=0.02)
print("sent")
"#;

/// The `libnet-fetch` clients: unsolicited ARP replies, an HTTP server in the namespace for
/// the guest's `fetch`, whose report must name the served file's length and SHA-256; then
/// fetch must have had the reply to its ARP request and echo (which asked only about others)
/// none.
pub(super) fn fetch_clients(session: &mut Session<'_>) -> Result<(), String> {
    session.wait_for("ashd: ready", Duration::from_secs(60))?;
    let sent = session.client(
        "/usr/bin/python3",
        &["-c", SCAPY_UNSOLICITED_ARP, TAP],
        CLIENT_DEADLINE,
        None,
    )?;
    if !sent.starts_with(b"sent") {
        return Err("scapy did not send the unsolicited replies".into());
    }
    let served = FetchServer::start(session)?;
    served.check(session)?;
    let fetch = session.wait_for("fetch: left:", Duration::from_secs(30))?;
    if device_counter(&fetch, "rx_arp").is_none_or(|count| count == 0) {
        return Err(format!("fetch's stack got no ARP reply: {fetch}"));
    }
    session.wait_for("echo: ready", Duration::from_secs(30))?;
    for port in [9107, 9003] {
        udp(session, port, b"quit", false)?;
    }
    let echo = session.wait_for("echo: done:", Duration::from_secs(30))?;
    if device_counter(&echo, "rx_arp") != Some(0) {
        return Err(format!("echo got an ARP reply it did not ask for: {echo}"));
    }
    eprintln!(
        "libnet-fetch: ARP replies from the ring: fetch {:?}, echo 0",
        device_counter(&fetch, "rx_arp")
    );
    Ok(())
}

/// `python3 -m http.server` in the namespace serving 1 MiB for `fetch`; removed on drop.
pub(super) struct FetchServer {
    directory: std::path::PathBuf,
    bytes: usize,
    digest: String,
    _server: crate::topology::Background,
}

impl FetchServer {
    pub(super) fn start(session: &Session<'_>) -> Result<FetchServer, String> {
        let directory = std::env::temp_dir().join(format!("exo-fetch-{}", std::process::id()));
        std::fs::create_dir_all(&directory).map_err(|error| error.to_string())?;
        let file = directory.join("data.bin");
        let data: Vec<u8> = (0..1usize << 20)
            .map(|i| httpd_big_file_byte(i ^ 0xa5a5))
            .collect();
        std::fs::write(&file, &data).map_err(|error| error.to_string())?;
        let digest = std::process::Command::new("sha256sum")
            .arg(&file)
            .output()
            .map_err(|error| format!("sha256sum: {error}"))?;
        let digest = String::from_utf8_lossy(&digest.stdout)
            .split_whitespace()
            .next()
            .unwrap_or("")
            .to_string();
        let directory_text = directory.to_string_lossy().to_string();
        let server = session
            .topology
            .spawn(
                "/usr/bin/python3",
                &[
                    "-m",
                    "http.server",
                    "8000",
                    "--bind",
                    crate::topology::HOST_ADDRESS,
                    "--directory",
                    &directory_text,
                ],
            )
            .map_err(|error| error.to_string())?;
        Ok(FetchServer {
            directory,
            bytes: data.len(),
            digest,
            _server: server,
        })
    }

    /// Waits for fetch's report and its end, and checks the report.
    pub(super) fn check(&self, session: &mut Session<'_>) -> Result<(), String> {
        let line = session.wait_for("fetch: http://", Duration::from_secs(120))?;
        let wanted = format!("body {} bytes, sha256 {},", self.bytes, self.digest);
        if !line.contains("\"HTTP/1.0 200 OK\"") || !line.contains(&wanted) {
            return Err(format!("fetch reported {line:?}, wanted {wanted:?}"));
        }
        eprintln!("libnet: {}", crate::qemu::app_text(&line));
        session.wait_for("fetch: left:", Duration::from_secs(30))?;
        Ok(())
    }
}

impl Drop for FetchServer {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.directory);
    }
}
