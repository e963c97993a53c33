//! Guest instructions from QEMU itself: under `-icount`, QMP's `query-replay` returns the
//! raw instruction counter (`icount`), which advances only while the vCPU executes guest
//! code; time the guest spends halted (idle) moves the virtual clock through a separate
//! bias and leaves it alone. Reading it before and after a measurement gives the guest's
//! busy instructions, whatever the system (exo or Linux) and without its cooperation.
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

/// A QMP connection, past its capabilities negotiation.
#[derive(Debug)]
pub struct Qmp {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
}

impl Qmp {
    /// Connects to the `-qmp unix:PATH,server=on,wait=off` socket, retrying while QEMU starts.
    pub fn connect(path: &Path, within: Duration) -> Result<Qmp, String> {
        let start = Instant::now();
        let stream = loop {
            match UnixStream::connect(path) {
                Ok(stream) => break stream,
                Err(error) if start.elapsed() >= within => {
                    return Err(format!("QMP socket {}: {error}", path.display()));
                }
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        };
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .map_err(|error| error.to_string())?;
        let writer = stream.try_clone().map_err(|error| error.to_string())?;
        let mut qmp = Qmp {
            reader: BufReader::new(stream),
            writer,
        };
        let greeting = qmp.line()?;
        if !greeting.contains("\"QMP\"") {
            return Err(format!("not a QMP greeting: {greeting}"));
        }
        qmp.execute("qmp_capabilities")?;
        Ok(qmp)
    }

    fn line(&mut self) -> Result<String, String> {
        let mut line = String::new();
        self.reader
            .read_line(&mut line)
            .map_err(|error| format!("reading QMP: {error}"))?;
        if line.is_empty() {
            return Err("QMP closed".into());
        }
        Ok(line)
    }

    /// Runs a command without arguments; its `return` value (events on the way are skipped).
    pub fn execute(&mut self, command: &str) -> Result<serde_json::Value, String> {
        writeln!(self.writer, "{{\"execute\": \"{command}\"}}")
            .map_err(|error| format!("writing QMP: {error}"))?;
        loop {
            let line = self.line()?;
            let value: serde_json::Value =
                serde_json::from_str(&line).map_err(|error| format!("QMP {line:?}: {error}"))?;
            if let Some(result) = value.get("return") {
                return Ok(result.clone());
            }
            if let Some(error) = value.get("error") {
                return Err(format!("QMP {command}: {error}"));
            }
        }
    }

    /// Guest instructions executed since the machine started.
    pub fn instructions(&mut self) -> Result<u64, String> {
        icount(&self.execute("query-replay")?)
    }
}

/// `icount` from a `query-replay` reply.
pub fn icount(reply: &serde_json::Value) -> Result<u64, String> {
    reply
        .get("icount")
        .and_then(serde_json::Value::as_u64)
        .ok_or_else(|| format!("no icount in {reply} (is -icount on?)"))
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_the_instruction_counter() {
        let reply = serde_json::json!({"icount": 86326403u64, "mode": "none"});
        assert_eq!(super::icount(&reply), Ok(86_326_403));
        assert!(super::icount(&serde_json::json!({"mode": "none"})).is_err());
    }
}
