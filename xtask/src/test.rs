//! `cargo xtask test`: host tests, then every QEMU scenario, then one summary line
//! (`N passed, N failed`) counting host test cases and scenarios together.
use crate::qemu::{Accel, Echo, Qemu};
use crate::scenarios::{self, Network, SCENARIOS, Scenario, Session};
use crate::topology::{self, Topology};
use crate::{Result, TestArgs, image, setup};
use std::ffi::OsString;
use std::io::{BufRead, BufReader};
use std::process::{Command, ExitCode, Stdio};

#[derive(Debug, Default)]
struct Tally {
    passed: u64,
    failed: u64,
}

/// Scenarios run on instruction-counted virtual time under TCG: each guest instruction advances
/// the clock by 2^3 ns and an idle guest skips ahead to its next timer. Timer-driven behaviour
/// (slices, overstay penalties, revocation deadlines) then depends only on the guest's own work,
/// not on how loaded the host is: a descheduled QEMU no longer wakes to a burst of late ticks.
fn deterministic_time(accel: Accel) -> Vec<OsString> {
    match accel {
        Accel::Tcg => vec!["-icount".into(), "shift=3,sleep=off".into()],
        // KVM runs on the host's clock; -icount is a TCG feature.
        Accel::Kvm => Vec::new(),
    }
}

pub fn run(args: &TestArgs) -> Result<ExitCode> {
    setup::ensure_target()?;
    setup::ensure_qemu()?;
    setup::ensure_packages(setup::HOST_TEST_PACKAGES)?;
    let mut tally = Tally::default();
    if !args.no_host {
        host_tests(&mut tally)?;
    }
    let accel = setup::usable_accel(args.boot.accel);
    // A build failure fails the run, but still ends with the summary line.
    match image::build(image::Profile::from_release(args.build.release)) {
        Ok(image) => {
            let (passed, failed) =
                crate::replay::run_scenarios(&image.kernel, args.scenario.as_deref(), args.verbose);
            tally.passed += passed;
            tally.failed += failed;
            for scenario in SCENARIOS {
                if args
                    .scenario
                    .as_deref()
                    .is_some_and(|filter| !scenario.name.contains(filter))
                {
                    continue;
                }
                let (run, clients) = match scenario.network {
                    Network::None => {
                        let run = Qemu {
                            kernel: &image.kernel,
                            append: scenario.cmdline,
                            accel,
                            timeout: scenario.timeout,
                            netdev: None,
                            tap: None,
                            echo: Echo::Quiet,
                        }
                        .run_with(&deterministic_time(accel))?;
                        (run, Ok(()))
                    }
                    Network::NoneInjecting { after, inject } => scenarios::monitor::run(
                        &image.kernel,
                        (scenario.cmdline, scenario.timeout),
                        accel,
                        (after, inject),
                        &deterministic_time(accel),
                    )?,
                    Network::Tap { clients } => {
                        setup::ensure_packages(setup::TAP_TEST_PACKAGES)?;
                        run_with_clients(&image.kernel, scenario, accel, clients, &[])?
                    }
                };
                // A client's failure says more than the stopped machine's.
                let verdict = clients
                    .map_err(|detail| scenarios::Failure {
                        kind: scenarios::FailureKind::Client,
                        detail,
                    })
                    .and_then(|()| scenarios::judge(scenario, &run));
                let (passed, line) = scenarios::assess(scenario, &verdict);
                println!(
                    "scenario {} ({:.2} s, `{}`): {line}",
                    scenario.name,
                    run.elapsed.as_secs_f64(),
                    scenario.cmdline
                );
                if !passed || args.verbose {
                    for line in run.serial.lines() {
                        println!("    | {line}");
                    }
                }
                if passed {
                    tally.passed += 1;
                } else {
                    tally.failed += 1;
                }
            }
        }
        Err(error) => {
            println!("building the boot image failed: {error}");
            tally.failed += 1;
        }
    }
    println!("{} passed, {} failed", tally.passed, tally.failed);
    Ok(if tally.failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Boots `scenario` on a tap device in a fresh namespace and runs `clients` there while it
/// runs; the namespace is removed afterwards, whatever happened (and on Ctrl-C, which also
/// ends the test run).
pub fn run_with_clients(
    kernel: &std::path::Path,
    scenario: &Scenario,
    accel: Accel,
    clients: fn(&mut Session<'_>) -> std::result::Result<(), String>,
    extra: &[OsString],
) -> Result<(crate::qemu::Run, std::result::Result<(), String>)> {
    let topology = Topology::create()?;
    let (sender, lines) = std::sync::mpsc::channel::<String>();
    let failed = std::sync::atomic::AtomicBool::new(false);
    let (run, clients) = std::thread::scope(|scope| {
        let client_thread = scope.spawn(|| {
            let mut session = Session {
                topology: &topology,
                lines,
                seen: Vec::new(),
            };
            let result = clients(&mut session);
            if result.is_err() {
                failed.store(true, std::sync::atomic::Ordering::SeqCst);
            }
            result
        });
        let run = Qemu {
            kernel,
            append: scenario.cmdline,
            accel,
            timeout: scenario.timeout,
            netdev: None,
            tap: Some(crate::qemu::TapNetdev {
                namespace: &topology.namespace,
                ifname: topology::TAP,
                offloads: true,
            }),
            echo: Echo::Quiet,
        }
        .run_until(
            extra,
            move |line| {
                let _ = sender.send(line.to_string());
            },
            &failed,
        );
        let clients = client_thread
            .join()
            .unwrap_or_else(|_| Err("the client thread panicked".into()));
        (run, clients)
    });
    drop(topology);
    if topology::interrupt::interrupted() {
        return Err("interrupted (Ctrl-C); the network namespace was removed".into());
    }
    Ok((run?, clients))
}

/// Runs `cargo test --workspace`, passing its output through, and adds its counts.
fn host_tests(tally: &mut Tally) -> Result<()> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut child = Command::new(cargo)
        .current_dir(image::workspace_root())
        .args(["test", "--workspace"])
        .stdout(Stdio::piped())
        .spawn()?;
    let (mut passed, mut failed) = (0, 0);
    for line in BufReader::new(child.stdout.take().expect("piped")).lines() {
        let line = line?;
        println!("{line}");
        if let Some((p, f)) = parse_test_result(&line) {
            passed += p;
            failed += f;
        }
    }
    let status = child.wait()?;
    if !status.success() && failed == 0 {
        // It failed without a failing test: a build error. Count it, or it would vanish.
        println!("cargo test --workspace failed ({status}) before reporting a failing test");
        failed = 1;
    }
    tally.passed += passed;
    tally.failed += failed;
    Ok(())
}

/// Reads `test result: ok. 12 passed; 0 failed; ...` into (passed, failed).
fn parse_test_result(line: &str) -> Option<(u64, u64)> {
    let rest = line.trim().strip_prefix("test result: ")?;
    let count = |label: &str| -> Option<u64> {
        rest.split(';')
            .find_map(|part| part.trim().strip_suffix(label))
            .and_then(|number| number.trim().rsplit(' ').next()?.parse().ok())
    };
    Some((count(" passed")?, count(" failed")?))
}

#[cfg(test)]
mod tests {
    use super::parse_test_result;

    #[test]
    fn reads_cargo_test_summaries() {
        let line = "test result: ok. 17 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.00s";
        assert_eq!(parse_test_result(line), Some((17, 0)));
        let failing =
            "test result: FAILED. 3 passed; 2 failed; 0 ignored; 0 measured; 0 filtered out";
        assert_eq!(parse_test_result(failing), Some((3, 2)));
        assert_eq!(parse_test_result("running 3 tests"), None);
    }
}
