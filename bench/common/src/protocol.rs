//! The line protocol a guest prints on its console, one measurement per line:
//!
//! ```text
//! BENCH begin kernel=linux
//! BENCH op=null_syscall repeat=0 iters=100000 cycles=30912345
//! BENCH op=matmul repeat=0 iters=10 cycles=18874410 check=0x9c1e22a3b4f50d17
//! BENCH op=pct_round_trip unavailable="primitive not implemented"
//! BENCH done
//! ```
//!
//! `cycles` is the difference of two `rdtsc` readings around the whole run of `iters`
//! operations (guest instructions under `-icount shift=0`, TSC ticks otherwise). The marker may
//! follow other text on the line (a console shared with kernel messages). [`Line`]'s `Display`
//! writes exactly what [`parse_line`] reads.
use crate::Op;
use core::fmt;

/// What starts every protocol line.
pub const MARKER: &str = "BENCH ";

/// One protocol line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Line<'a> {
    /// The guest starts measuring; `kernel` names it (`exo`, `linux`).
    Begin { kernel: &'a str },
    /// One timed run.
    Sample(Sample),
    /// This kernel cannot run `op`; `reason` says why (no number is made up for it).
    Unavailable { op: Op, reason: &'a str },
    /// Every operation was run.
    Done,
}

/// One timed run of `iterations` operations.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sample {
    pub op: Op,
    /// Which of the [`crate::ops::REPEATS`] runs this is.
    pub repeat: u32,
    pub iterations: u64,
    /// TSC ticks for the whole run.
    pub cycles: u64,
    /// A checksum of the result, for operations that compute one (matmul).
    pub check: Option<u64>,
}

impl Sample {
    /// Cycles per operation.
    pub fn per_iteration(&self) -> f64 {
        self.cycles as f64 / self.iterations as f64
    }
}

impl fmt::Display for Line<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(MARKER)?;
        match self {
            Line::Begin { kernel } => write!(f, "begin kernel={kernel}"),
            Line::Sample(sample) => {
                write!(
                    f,
                    "op={} repeat={} iters={} cycles={}",
                    sample.op.name(),
                    sample.repeat,
                    sample.iterations,
                    sample.cycles
                )?;
                match sample.check {
                    Some(check) => write!(f, " check={check:#018x}"),
                    None => Ok(()),
                }
            }
            Line::Unavailable { op, reason } => {
                write!(f, "op={} unavailable=\"{reason}\"", op.name())
            }
            Line::Done => f.write_str("done"),
        }
    }
}

/// Why a line that carries the marker could not be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParseError<'a> {
    /// `op=` names no operation.
    UnknownOp(&'a str),
    /// A field the line's kind needs is absent.
    MissingField(&'static str),
    /// A field's value is not a number (or not a valid one: zero iterations).
    BadNumber { field: &'static str, value: &'a str },
    /// A quoted value has no closing quote, or a field has no `=`.
    Malformed(&'a str),
    /// The word after the marker is none of `begin`, `op=`, `done`.
    UnknownKind(&'a str),
}

impl fmt::Display for ParseError<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParseError::UnknownOp(name) => write!(f, "unknown op {name:?}"),
            ParseError::MissingField(field) => write!(f, "missing field {field}"),
            ParseError::BadNumber { field, value } => write!(f, "bad {field}={value:?}"),
            ParseError::Malformed(text) => write!(f, "malformed field at {text:?}"),
            ParseError::UnknownKind(word) => write!(f, "unknown line kind {word:?}"),
        }
    }
}

/// The `key=value` fields of a line; values may be `"quoted text"`.
struct Fields<'a> {
    rest: &'a str,
}

impl<'a> Iterator for Fields<'a> {
    type Item = Result<(&'a str, &'a str), ParseError<'a>>;

    fn next(&mut self) -> Option<Self::Item> {
        let text = self.rest.trim_start();
        if text.is_empty() {
            return None;
        }
        let Some((key, after)) = text.split_once('=') else {
            self.rest = "";
            return Some(Err(ParseError::Malformed(text)));
        };
        if key.contains(char::is_whitespace) {
            self.rest = "";
            return Some(Err(ParseError::Malformed(text)));
        }
        let value = if let Some(quoted) = after.strip_prefix('"') {
            let Some(end) = quoted.find('"') else {
                self.rest = "";
                return Some(Err(ParseError::Malformed(text)));
            };
            self.rest = &quoted[end + 1..];
            &quoted[..end]
        } else {
            let end = after.find(char::is_whitespace).unwrap_or(after.len());
            self.rest = &after[end..];
            &after[..end]
        };
        Some(Ok((key, value)))
    }
}

fn number<'a>(field: &'static str, value: &'a str) -> Result<u64, ParseError<'a>> {
    let parsed = match value.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => value.parse(),
    };
    parsed.map_err(|_| ParseError::BadNumber { field, value })
}

/// Reads one console line: `None` when it carries no protocol marker, else the line or why it
/// is malformed. Unknown extra fields are ignored (newer guests may add some).
pub fn parse_line(line: &str) -> Option<Result<Line<'_>, ParseError<'_>>> {
    let start = line.find(MARKER)?;
    let body = line[start + MARKER.len()..].trim_end();
    Some(parse_body(body))
}

fn parse_body(body: &str) -> Result<Line<'_>, ParseError<'_>> {
    if body == "done" {
        return Ok(Line::Done);
    }
    if let Some(rest) = body.strip_prefix("begin") {
        let mut kernel = None;
        for field in (Fields { rest }) {
            let (key, value) = field?;
            if key == "kernel" {
                kernel = Some(value);
            }
        }
        return Ok(Line::Begin {
            kernel: kernel.ok_or(ParseError::MissingField("kernel"))?,
        });
    }
    if !body.starts_with("op=") {
        let word = body.split_whitespace().next().unwrap_or("");
        return Err(ParseError::UnknownKind(word));
    }
    let (mut op, mut repeat, mut iterations, mut cycles, mut check, mut unavailable) =
        (None, None, None, None, None, None);
    for field in (Fields { rest: body }) {
        let (key, value) = field?;
        match key {
            "op" => op = Some(Op::from_name(value).ok_or(ParseError::UnknownOp(value))?),
            "repeat" => {
                let value = number("repeat", value)?;
                repeat = Some(u32::try_from(value).map_err(|_| ParseError::BadNumber {
                    field: "repeat",
                    value: "",
                })?);
            }
            "iters" => iterations = Some(number("iters", value)?),
            "cycles" => cycles = Some(number("cycles", value)?),
            "check" => check = Some(number("check", value)?),
            "unavailable" => unavailable = Some(value),
            _ => {}
        }
    }
    let op = op.ok_or(ParseError::MissingField("op"))?;
    if let Some(reason) = unavailable {
        return Ok(Line::Unavailable { op, reason });
    }
    let iterations = iterations.ok_or(ParseError::MissingField("iters"))?;
    if iterations == 0 {
        return Err(ParseError::BadNumber {
            field: "iters",
            value: "0",
        });
    }
    Ok(Line::Sample(Sample {
        op,
        repeat: repeat.ok_or(ParseError::MissingField("repeat"))?,
        iterations,
        cycles: cycles.ok_or(ParseError::MissingField("cycles"))?,
        check,
    }))
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::string::ToString;

    fn sample(op: Op, check: Option<u64>) -> Sample {
        Sample {
            op,
            repeat: 3,
            iterations: 100_000,
            cycles: 30_912_345,
            check,
        }
    }

    #[test]
    fn every_line_kind_round_trips() {
        let lines = [
            Line::Begin { kernel: "linux" },
            Line::Sample(sample(Op::NullSyscall, None)),
            Line::Sample(sample(Op::Matmul, Some(0x9c1e_22a3_b4f5_0d17))),
            Line::Unavailable {
                op: Op::PctRoundTrip,
                reason: "primitive not implemented",
            },
            Line::Done,
        ];
        for line in lines {
            let text = line.to_string();
            assert_eq!(parse_line(&text), Some(Ok(line)), "{text}");
        }
    }

    #[test]
    fn reads_the_documented_examples() {
        let line = parse_line("BENCH op=null_syscall repeat=0 iters=100000 cycles=30912345");
        let Some(Ok(Line::Sample(sample))) = line else {
            panic!("{line:?}");
        };
        assert_eq!(sample.op, Op::NullSyscall);
        assert_eq!(sample.per_iteration(), 309.12345);
    }

    #[test]
    fn finds_the_marker_after_other_console_output() {
        let line = "[    1.234] random: crng init done BENCH done";
        assert_eq!(parse_line(line), Some(Ok(Line::Done)));
        assert_eq!(parse_line("BENCH done\r"), Some(Ok(Line::Done)));
        assert_eq!(parse_line("Linux version 6.1"), None);
        assert_eq!(parse_line("BENCHMARK op=x"), None);
    }

    #[test]
    fn ignores_unknown_fields() {
        let line = parse_line("BENCH op=matmul repeat=1 iters=10 cycles=5 extra=\"a b\" more=1");
        assert!(matches!(
            line,
            Some(Ok(Line::Sample(Sample { cycles: 5, .. })))
        ));
    }

    #[test]
    fn reports_what_is_wrong() {
        let error = |text| parse_line(text).unwrap().unwrap_err();
        assert_eq!(
            error("BENCH op=getpid repeat=0 iters=1 cycles=1"),
            ParseError::UnknownOp("getpid")
        );
        assert_eq!(
            error("BENCH op=matmul repeat=0 iters=1"),
            ParseError::MissingField("cycles")
        );
        assert_eq!(
            error("BENCH op=matmul repeat=0 iters=x cycles=1"),
            ParseError::BadNumber {
                field: "iters",
                value: "x"
            }
        );
        assert!(matches!(
            error("BENCH op=matmul repeat=0 iters=0 cycles=1"),
            ParseError::BadNumber { field: "iters", .. }
        ));
        assert!(matches!(
            error("BENCH op=matmul unavailable=\"open"),
            ParseError::Malformed(_)
        ));
        assert!(matches!(
            error("BENCH op=matmul junk"),
            ParseError::Malformed(_)
        ));
        assert_eq!(error("BENCH hello"), ParseError::UnknownKind("hello"));
        assert_eq!(error("BENCH begin"), ParseError::MissingField("kernel"));
    }
}
