//! The boot command line (QEMU `-append`): which apps start, and kernel self-tests.
//!
//! Grammar: space-separated `key=value` words. `apps=a,b` names apps from the boot pack, run
//! in order; `test=panic`, `test=hang` and `test=kernel-fault` make the kernel misbehave on purpose so the harness
//! can prove it notices. Unknown words are an error: a typo must not silently boot defaults.

use alloc::vec::Vec;

/// App started when the command line names none.
pub const DEFAULT_APP: &str = "hello";

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
}

/// Parses a command line.
pub fn parse(cmdline: &str) -> Result<BootCommand<'_>, CmdlineError<'_>> {
    let mut command = BootCommand {
        apps: Vec::new(),
        self_test: None,
        monitors: Vec::new(),
        arguments: Vec::new(),
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
            Some(("test", "panic")) => command.self_test = Some(SelfTest::Panic),
            Some(("test", "hang")) => command.self_test = Some(SelfTest::Hang),
            Some(("test", "kernel-fault")) => command.self_test = Some(SelfTest::KernelFault),
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
