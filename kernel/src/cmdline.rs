//! The boot command line (QEMU `-append`): which apps start, and kernel self-tests.
//!
//! Grammar: space-separated `key=value` words. `apps=a,b` names apps from the boot pack, run
//! in order; `test=panic`, `test=hang`, `test=kernel-fault`, `test=stack-overflow`, `test=jit-readonly`, `test=jit-out-of-frames`, `test=smap`, `test=smep` and `test=monitor-unbind-fails` make the kernel misbehave on purpose so the harness
//! can prove it notices; `ipv4=A.B.C.D` is the host's IPv4 address, which apps share
//! (default [`DEFAULT_IPV4`]). Unknown words are an error: a typo must not silently boot
//! defaults.

use alloc::vec::Vec;

/// App started when the command line names none.
pub const DEFAULT_APP: &str = "hello";

/// The host's IPv4 address when the command line names none (QEMU's usual guest address).
pub const DEFAULT_IPV4: [u8; 4] = [10, 0, 2, 15];

/// A deliberate kernel misbehaviour, for testing the test harness.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SelfTest {
    /// Panic after boot.
    Panic,
    /// Spin forever with interrupts on (the harness's timeout must catch it).
    Hang,
    /// Read an unmapped kernel address: the kernel's own page fault must be reported and
    /// end in a panic.
    KernelFault,
    /// Recurse in the kernel until the stack runs out: the guard page below it must fault
    /// (a double fault, reported on its own stack) rather than let the stack grow over
    /// whatever lies below.
    StackOverflow,
    /// Write to a frame of generated code through the identity map: it must fault.
    JitReadOnly,
    /// Install generated code with the frame allocator drained to 0, 1, 2, ... frames: each
    /// refusal must be an error that holds nothing, until one fits.
    JitOutOfFrames,
    /// Read a user page from ring 0 without `stac`: SMAP must refuse, and the page-fault
    /// report say so.
    Smap,
    /// Call into a user page from ring 0: SMEP must refuse, and the report say so.
    Smep,
    /// Unbind a monitor filter with no frame left for the ring's new code: the ring, and its
    /// port-claiming filters with it, must go.
    MonitorUnbindFails,
}

/// What the command line asked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BootCommand<'a> {
    /// Apps to run, in order.
    pub apps: Vec<&'a str>,
    /// Self-test to run instead of the apps, if any.
    pub self_test: Option<SelfTest>,
    /// Apps that start with a root network monitor capability (`monitor=a,b`): they may bind
    /// monitor filters and grant the right on.
    pub monitors: Vec<&'a str>,
    /// Arguments for the apps (`arg=HEX` for every app, `arg=K:HEX` for the K-th boot app;
    /// hex so they may contain spaces), in order.
    pub arguments: Vec<&'a str>,
    /// The host's IPv4 address (`ipv4=A.B.C.D`).
    pub ipv4: [u8; 4],
}

/// Why a command line was refused, with the offending word.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CmdlineError<'a> {
    /// A word that is not `key=value` with a known key.
    UnknownWord(&'a str),
    /// `test=` with an unknown value.
    UnknownSelfTest(&'a str),
    /// `apps=` with an empty name in its list.
    EmptyAppName,
    /// `ipv4=` with something other than four dot-separated decimal bytes.
    BadIpv4(&'a str),
}

/// Parses dotted-quad IPv4 (`10.0.2.15`): exactly four decimal numbers 0..=255, no leading
/// `+`, no empty parts.
pub fn parse_ipv4(text: &str) -> Option<[u8; 4]> {
    let mut address = [0u8; 4];
    let mut parts = text.split('.');
    for byte in &mut address {
        let part = parts.next()?;
        if part.is_empty() || part.len() > 3 || !part.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        *byte = part.parse().ok()?;
    }
    parts.next().is_none().then_some(address)
}

/// Parses a command line.
pub fn parse(cmdline: &str) -> Result<BootCommand<'_>, CmdlineError<'_>> {
    let mut command = BootCommand {
        apps: Vec::new(),
        self_test: None,
        monitors: Vec::new(),
        arguments: Vec::new(),
        ipv4: DEFAULT_IPV4,
    };
    for word in cmdline.split_ascii_whitespace() {
        match word.split_once('=') {
            Some(("apps", list)) => {
                for name in list.split(',') {
                    if name.is_empty() {
                        return Err(CmdlineError::EmptyAppName);
                    }
                    command.apps.push(name);
                }
            }
            Some(("monitor", list)) => command.monitors.extend(list.split(',')),
            Some(("arg", hex)) => command.arguments.push(hex),
            Some(("ipv4", text)) => {
                command.ipv4 = parse_ipv4(text).ok_or(CmdlineError::BadIpv4(text))?;
            }
            Some(("test", "panic")) => command.self_test = Some(SelfTest::Panic),
            Some(("test", "hang")) => command.self_test = Some(SelfTest::Hang),
            Some(("test", "kernel-fault")) => command.self_test = Some(SelfTest::KernelFault),
            Some(("test", "stack-overflow")) => command.self_test = Some(SelfTest::StackOverflow),
            Some(("test", "jit-readonly")) => command.self_test = Some(SelfTest::JitReadOnly),
            Some(("test", "jit-out-of-frames")) => {
                command.self_test = Some(SelfTest::JitOutOfFrames)
            }
            Some(("test", "smap")) => command.self_test = Some(SelfTest::Smap),
            Some(("test", "smep")) => command.self_test = Some(SelfTest::Smep),
            Some(("test", "monitor-unbind-fails")) => {
                command.self_test = Some(SelfTest::MonitorUnbindFails)
            }
            Some(("test", other)) => return Err(CmdlineError::UnknownSelfTest(other)),
            _ => return Err(CmdlineError::UnknownWord(word)),
        }
    }
    if command.apps.is_empty() {
        command.apps.push(DEFAULT_APP);
    }
    Ok(command)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_line_runs_the_default_app() {
        let command = parse("").unwrap();
        assert_eq!(command.apps, [DEFAULT_APP]);
        assert_eq!(command.self_test, None);
        assert_eq!(parse("  \t ").unwrap(), command);
    }

    #[test]
    fn apps_in_order() {
        assert_eq!(parse("apps=fault,hello").unwrap().apps, ["fault", "hello"]);
        assert_eq!(parse("apps=a apps=b").unwrap().apps, ["a", "b"]);
    }

    #[test]
    fn monitor_rights_and_app_arguments() {
        let command =
            parse("apps=netmon,netmon monitor=netmon arg=1:7463 arg=2:756470 arg=61").unwrap();
        assert_eq!(command.monitors, ["netmon"]);
        assert_eq!(command.arguments, ["1:7463", "2:756470", "61"]);
        assert_eq!(parse("monitor=a,b").unwrap().monitors, ["a", "b"]);
    }

    #[test]
    fn self_tests() {
        assert_eq!(
            parse("test=panic").unwrap().self_test,
            Some(SelfTest::Panic)
        );
        assert_eq!(
            parse("apps=hello test=hang").unwrap().self_test,
            Some(SelfTest::Hang)
        );
        assert_eq!(
            parse("test=boom"),
            Err(CmdlineError::UnknownSelfTest("boom"))
        );
    }

    #[test]
    fn host_ipv4_address() {
        assert_eq!(parse("").unwrap().ipv4, DEFAULT_IPV4);
        assert_eq!(parse("ipv4=192.168.7.2").unwrap().ipv4, [192, 168, 7, 2]);
        assert_eq!(parse_ipv4("0.0.0.0"), Some([0; 4]));
        assert_eq!(parse_ipv4("255.255.255.255"), Some([255; 4]));
        for bad in [
            "",
            "10.0.2",
            "10.0.2.15.1",
            "10.0.2.256",
            "10..2.15",
            "10.0.2.+1",
            "a.b.c.d",
            "10.0.2.0015",
            " 10.0.2.15",
        ] {
            assert_eq!(parse_ipv4(bad), None, "{bad:?}");
        }
        assert_eq!(parse("ipv4=10.0.2"), Err(CmdlineError::BadIpv4("10.0.2")));
    }

    #[test]
    fn mistakes_are_refused() {
        assert_eq!(
            parse("app=hello"),
            Err(CmdlineError::UnknownWord("app=hello"))
        );
        assert_eq!(parse("quiet"), Err(CmdlineError::UnknownWord("quiet")));
        assert_eq!(parse("apps=a,,b"), Err(CmdlineError::EmptyAppName));
        assert_eq!(parse("apps="), Err(CmdlineError::EmptyAppName));
    }
}
