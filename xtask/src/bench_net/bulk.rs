//! The TCP bulk client: `bytes` through a TCP echo server (apps/echo on exo, socat's `PIPE`
//! on Linux), so the same amount goes each way at once; the reader checks every byte that
//! comes back. Bounded by a deadline on each read and write. Runs inside the namespace.
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// What one transfer measured.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Transfer {
    /// Bytes sent, and received back intact.
    pub bytes: u64,
    pub elapsed: Duration,
}

impl Transfer {
    /// MB/s each way (10^6 bytes).
    pub fn megabytes_per_second(&self) -> f64 {
        self.bytes as f64 / 1e6 / self.elapsed.as_secs_f64()
    }
}

/// The byte at `offset` of the stream: varied, so a lost or repeated segment shows.
fn pattern(offset: u64) -> u8 {
    (offset.wrapping_mul(2_654_435_761) >> 13) as u8
}

/// Sends `bytes` to `target` and reads them back; an error says where it stopped.
pub fn echo(target: &str, bytes: u64, stall: Duration) -> Result<Transfer, String> {
    let address: std::net::SocketAddr = target.parse().map_err(|error| format!("{error}"))?;
    let stream = TcpStream::connect_timeout(&address, stall)
        .map_err(|error| format!("connect {target}: {error}"))?;
    stream
        .set_nodelay(true)
        .map_err(|error| error.to_string())?;
    stream
        .set_read_timeout(Some(stall))
        .and_then(|()| stream.set_write_timeout(Some(stall)))
        .map_err(|error| error.to_string())?;
    let mut writer = stream.try_clone().map_err(|error| error.to_string())?;
    let start = Instant::now();
    let sender = std::thread::spawn(move || -> Result<(), String> {
        let mut chunk = vec![0u8; 64 << 10];
        let mut offset = 0u64;
        while offset < bytes {
            let length = (bytes - offset).min(chunk.len() as u64) as usize;
            for (index, byte) in chunk[..length].iter_mut().enumerate() {
                *byte = pattern(offset + index as u64);
            }
            writer
                .write_all(&chunk[..length])
                .map_err(|error| format!("writing at byte {offset}: {error}"))?;
            offset += length as u64;
        }
        writer
            .shutdown(std::net::Shutdown::Write)
            .map_err(|error| error.to_string())
    });
    let mut reader = stream;
    let mut buffer = vec![0u8; 64 << 10];
    let mut received = 0u64;
    let outcome = loop {
        if received == bytes {
            break Ok(());
        }
        match reader.read(&mut buffer) {
            Ok(0) => {
                break Err(format!(
                    "the server closed after {received} of {bytes} bytes"
                ));
            }
            Ok(length) => {
                for (index, byte) in buffer[..length].iter().enumerate() {
                    if *byte != pattern(received + index as u64) {
                        return Err(format!("byte {} came back wrong", received + index as u64));
                    }
                }
                received += length as u64;
            }
            Err(error) => break Err(format!("reading at byte {received}: {error}")),
        }
    };
    let elapsed = start.elapsed();
    let sent = sender
        .join()
        .unwrap_or_else(|_| Err("the sender panicked".into()));
    outcome?;
    sent?;
    Ok(Transfer { bytes, elapsed })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echoes_and_checks_through_a_loopback_echo() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let server = std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let mut copy = stream.try_clone().unwrap();
            std::io::copy(&mut stream, &mut copy).unwrap();
        });
        let transfer = echo(&address, 3 << 20, Duration::from_secs(10)).unwrap();
        server.join().unwrap();
        assert_eq!(transfer.bytes, 3 << 20);
        assert!(transfer.megabytes_per_second() > 0.0);
    }

    #[test]
    fn a_corrupting_server_is_caught() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap().to_string();
        std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let mut buffer = [0u8; 4096];
            let length = stream.read(&mut buffer).unwrap();
            buffer[0] ^= 1;
            let _ = stream.write_all(&buffer[..length]);
        });
        let error = echo(&address, 1 << 20, Duration::from_secs(5)).unwrap_err();
        assert!(error.contains("came back wrong"), "{error}");
    }
}
