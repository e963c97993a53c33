//! The UDP round-trip client: no Debian tool reports per-request latency, so xtask sends
//! bounded requests one at a time (each with a sequence number and a per-request timeout),
//! times each reply, and counts losses. Runs inside the namespace ([`super::netns`]).
use std::net::UdpSocket;
use std::time::{Duration, Instant};

/// The payload's size: the ASH paper's 60-byte round trip.
pub const PAYLOAD_BYTES: usize = 60;

/// What one series of round trips measured.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Series {
    /// Round-trip times of the requests answered, in microseconds, in order.
    pub samples_us: Vec<f64>,
    /// Requests sent.
    pub sent: u64,
    /// Requests without a right reply within the timeout.
    pub lost: u64,
}

impl Series {
    /// The `q`-quantile (0..=1) of the answered requests' times (nearest rank), if any.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        if self.samples_us.is_empty() {
            return None;
        }
        let mut sorted = self.samples_us.clone();
        sorted.sort_by(f64::total_cmp);
        let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
        Some(sorted[rank - 1])
    }
}

/// Sends `count` requests to `target` one after another, each waiting at most `timeout`
/// for its own reply (a late reply to an earlier request is skipped), stopping early at
/// `budget`.
pub fn measure(
    target: &str,
    count: u64,
    timeout: Duration,
    budget: Duration,
) -> Result<Series, String> {
    let socket = UdpSocket::bind("0.0.0.0:0").map_err(|error| error.to_string())?;
    socket
        .connect(target)
        .map_err(|error| format!("{target}: {error}"))?;
    let mut series = Series::default();
    let start = Instant::now();
    let mut request = [0u8; PAYLOAD_BYTES];
    let mut reply = [0u8; 2048];
    for sequence in 0..count {
        if start.elapsed() >= budget {
            break;
        }
        request[..8].copy_from_slice(&sequence.to_be_bytes());
        let sent = Instant::now();
        series.sent += 1;
        if socket.send(&request).is_err() {
            series.lost += 1;
            continue;
        }
        let answered = loop {
            let left = timeout.saturating_sub(sent.elapsed());
            if left.is_zero() {
                break false;
            }
            socket
                .set_read_timeout(Some(left))
                .map_err(|error| error.to_string())?;
            match socket.recv(&mut reply) {
                Ok(length) if reply[..length] == request => break true,
                Ok(_) => continue, // an earlier request's late reply
                Err(_) => break false,
            }
        };
        if answered {
            series.samples_us.push(sent.elapsed().as_secs_f64() * 1e6);
        } else {
            series.lost += 1;
        }
    }
    Ok(series)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_by_nearest_rank() {
        let series = Series {
            samples_us: (1..=100).rev().map(f64::from).collect(),
            sent: 100,
            lost: 0,
        };
        assert_eq!(series.quantile(0.5), Some(50.0));
        assert_eq!(series.quantile(0.99), Some(99.0));
        assert_eq!(series.quantile(1.0), Some(100.0));
        assert_eq!(series.quantile(0.0), Some(1.0));
        assert_eq!(Series::default().quantile(0.5), None);
    }

    /// A loopback echo that drops every third request and answers every fifth one twice
    /// (late duplicates): losses are counted, duplicates skipped, every sample timed.
    #[test]
    fn counts_losses_and_skips_duplicates_on_loopback() {
        let server = UdpSocket::bind("127.0.0.1:0").unwrap();
        let address = server.local_addr().unwrap().to_string();
        let echo = std::thread::spawn(move || {
            let mut buffer = [0u8; 2048];
            server
                .set_read_timeout(Some(Duration::from_secs(5)))
                .unwrap();
            for index in 0..30u32 {
                let Ok((length, peer)) = server.recv_from(&mut buffer) else {
                    return;
                };
                if index % 3 == 2 {
                    continue;
                }
                server.send_to(&buffer[..length], peer).unwrap();
                if index % 5 == 0 {
                    server.send_to(&buffer[..length], peer).unwrap();
                }
            }
        });
        let series = measure(
            &address,
            30,
            Duration::from_millis(100),
            Duration::from_secs(20),
        )
        .unwrap();
        echo.join().unwrap();
        assert_eq!(series.sent, 30);
        assert_eq!(series.lost, 10);
        assert_eq!(series.samples_us.len(), 20);
        assert!(
            series
                .samples_us
                .iter()
                .all(|us| *us > 0.0 && *us < 100_000.0)
        );
    }
}
