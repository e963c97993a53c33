//! The QEMU scenarios `cargo xtask test` runs: a typed table, and how a run is judged.
//!
//! To add one, append a [`Scenario`] to [`SCENARIOS`]: the kernel command line (which apps,
//! which self-test), the kernel exit expected, and text the serial output must contain. A
//! scenario whose point is to prove the harness catches a broken kernel says so with
//! [`Expect::HarnessFailure`]: it passes only if the run is judged failed for that reason.
//! The clients of a tap scenario (what runs in the network namespace meanwhile) live in a
//! module of their own under `scenarios/`, one per topic; this file keeps the table, the
//! harness they share and the judge.

mod ash;
mod cheetah;
mod churn;
mod fetch;
mod flood;
mod httpd;
mod libnet;
pub mod monitor;
mod ring_check;
mod tcp_edges;

use crate::qemu::{KERNEL_MARK, Outcome, Run};
use crate::topology::{GUEST_ADDRESS, Topology};
use ash::ash_clients;
use cheetah::{
    cheetah_all_clients, cheetah_cache_clients, cheetah_piggyback_clients, cheetah_prebuilt_clients,
};
use churn::{CHURN_TIMEOUT, churn_clients};
use exo_abi::KernelExit;
use fetch::fetch_clients;
use flood::flood_clients;
pub use httpd::httpd_site;
use libnet::{LIBNET_TAP_TIMEOUT, libnet_clients, load_clients};
use std::fmt;
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};
use tcp_edges::tcp_edge_clients;

/// Time allowed by default. A boot takes well under a second under TCG; the margin is for
/// loaded CI machines.
const TIMEOUT: Duration = Duration::from_secs(30);

/// What the harness expects of its own verdict.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expect {
    /// The run meets the expectations below.
    Pass,
    /// The run fails, for this reason: a self-test of the harness.
    HarnessFailure(FailureKind),
}

/// Why a run failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailureKind {
    /// The kernel panicked.
    KernelPanic,
    /// The machine did not stop in time.
    Timeout,
    /// QEMU stopped without the kernel choosing an exit code.
    NoDebugExit,
    /// The kernel exited with another code than expected.
    WrongExit,
    /// Expected serial text is missing.
    MissingSerial,
    /// A client in the network namespace did not get what it should have.
    Client,
}

/// A failed run: the kind, and a human explanation.
#[derive(Clone, Debug)]
pub struct Failure {
    pub kind: FailureKind,
    pub detail: String,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}: {}", self.kind, self.detail)
    }
}

/// One boot of the kernel and what it must show.
#[derive(Clone, Copy, Debug)]
pub struct Scenario {
    pub name: &'static str,
    /// Kernel command line (`-append`).
    pub cmdline: &'static str,
    /// The kernel exit expected.
    pub exit: KernelExit,
    /// Substrings the serial output must contain.
    pub serial: &'static [&'static str],
    pub timeout: Duration,
    pub expect: Expect,
    /// The NIC and what runs on the other side of it.
    pub network: Network,
}

/// The network a scenario's machine sees.
#[derive(Clone, Copy, Debug)]
pub enum Network {
    /// No NIC.
    None,
    /// A virtio-net NIC on a tap device in a fresh network namespace (`topology`); `clients`
    /// runs inside it while the guest runs, and the scenario fails if it does. Such runs use
    /// the host's clock (no `-icount`): the clients are real programs.
    Tap {
        clients: fn(&mut Session<'_>) -> Result<(), String>,
    },
    /// No NIC; QEMU's monitor injects `inject` (NMIs, a machine check) once a serial line
    /// contains `after` ([`monitor`]).
    NoneInjecting {
        after: &'static str,
        inject: monitor::Inject,
    },
}

/// What a scenario's clients see: the namespace, and the guest's serial lines as they come.
pub struct Session<'a> {
    pub topology: &'a Topology,
    pub lines: Receiver<String>,
    /// Every line received so far.
    pub seen: Vec<String>,
}

impl Session<'_> {
    /// Waits up to `timeout` for a serial line containing `text`; the line.
    pub fn wait_for(&mut self, text: &str, timeout: Duration) -> Result<String, String> {
        if let Some(line) = self.seen.iter().find(|line| line.contains(text)) {
            return Ok(line.clone());
        }
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.contains(text) {
                        return Ok(line);
                    }
                }
                Err(_) => return Err(format!("no serial line with {text:?} within {timeout:?}")),
            }
        }
    }

    /// Takes the lines that arrived meanwhile.
    pub fn drain(&mut self) {
        while let Ok(line) = self.lines.try_recv() {
            self.seen.push(line);
        }
    }

    /// Runs a client in the namespace (see `Topology::run`); its stdout, or why not (a
    /// non-zero exit included).
    pub fn client(
        &self,
        program: &str,
        arguments: &[&str],
        deadline: Duration,
        input: Option<&[u8]>,
    ) -> Result<Vec<u8>, String> {
        let output = self
            .topology
            .run(program, arguments, deadline, input)
            .map_err(|error| error.to_string())?;
        if !output.status.success() {
            return Err(format!(
                "{program} {} failed ({}): {}{}",
                arguments.join(" "),
                output.status,
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            ));
        }
        Ok(output.stdout)
    }
}

pub const SCENARIOS: &[Scenario] = &[
    Scenario {
        // ash_bind and ash_counter refuse every bad argument; deleting a handler's
        // capability or unbinding its filter ends the handler; a page_map'ped region page is
        // pinned, and revoking it unbinds the handler and tells the app.
        name: "ash-bind-refusals",
        cmdline: "apps=ashd",
        exit: KernelExit::Exited(0),
        serial: &[
            "ash refusals: capabilities Err(InvalidCapability)/Err(InvalidCapability)/Err(InvalidCapability), garbage Err(InvalidArgument), verifier Err(InvalidArgument), regions Err(InvalidArgument)/Err(InvalidArgument)/Err(BadAddress)/Err(BadAddress)/Err(AddressInUse)/Err(InvalidArgument), second Err(AddressInUse), quota Err(Exhausted); all as expected: true",
            "instruction 1 refused: BackwardJump",
            "ashd: pinned page: unmap Err(AddressInUse), protect Err(AddressInUse); page deleted Ok(1), handler then Err(InvalidCapability), upcall named it: true",
            "unbound: a region page was revoked",
            "[exo] app ashd (env 1) exited with status 0",
        ],
        timeout: TAP_TIMEOUT,
        expect: Expect::Pass,
        network: Network::Tap {
            clients: |_| Ok(()),
        },
    },
    Scenario {
        // Real clients in a namespace, answered by handlers in the kernel while the app that
        // bound them sleeps: arping (ARP responder), ping (ICMP echo), socat (UDP echo,
        // byte-identical; remote increment, its counter read by the app afterwards); a
        // handler whose runtime check fails is aborted, counted and disabled, the others
        // unaffected; a message-vectoring handler copies a datagram into the app's buffer,
        // checksum verified in the same pass, and wakes it; a handler's upcall reaches the app
        // with the argument the handler passed.
        name: "ash-tap",
        cmdline: "apps=ashd monitor=ashd arg=7365727665",
        exit: KernelExit::Exited(0),
        serial: &[
            "ashd: ready",
            "ashd: handler \"ip and udp dst port 9000\": runs 3 aborts 0 replies 3 refused 0 disabled 0",
            "ashd: handler \"ip and udp dst port 9001\": runs 4 aborts 4 replies 0 refused 0 disabled 1",
            "remote counter 42",
            "disabled after 4 aborts (last at instruction 0: PacketBounds)",
            "disabled after 4 aborts; it is the failing one: true",
            "ashd: vectored slot 5: 1000 bytes, as sent: true",
            "ashd: handler \"ip and udp dst port 9002\": runs 1 aborts 0 replies 0 refused 0 disabled 0",
            "with argument 0x1122334455667788; it is the upcalling one: true",
            "[exo] app ashd (env 1) exited with status 0",
        ],
        timeout: TAP_TIMEOUT,
        expect: Expect::Pass,
        network: Network::Tap {
            clients: ash_clients,
        },
    },
    Scenario {
        // Floods from the namespace (hping3: UDP, SYN, impossible TCP flags, ICMP echo, tiny
        // fragments, bad checksums; scapy: malformed headers of every layer, VLAN stacks,
        // runts, LLC; bounded in count and rate) while the ASHs serve: the
        // kernel stays up, every frame is accounted for exactly once, every ring won exactly
        // the frames hosted dpf says its filters match in a capture of what was sent (and
        // ashd found no frame in a ring that its filters do not match), and the UDP echo and
        // ping are still answered correctly afterwards.
        name: "net-flood",
        cmdline: "apps=ashd monitor=ashd arg=7365727665",
        exit: KernelExit::Exited(0),
        serial: &[
            "ashd: ready",
            "balanced true",
            "not matching: 0",
            "[exo] app ashd (env 1) exited with status 0",
        ],
        timeout: TAP_TIMEOUT,
        expect: Expect::Pass,
        network: Network::Tap {
            clients: flood_clients,
        },
    },
    Scenario {
        // Filter churn under traffic: one filter is bound and unbound 100,000 times beside
        // steady ones while the namespace sends to both (hping3, in rounds until the cycles
        // are done); the counts are exact, the kernel took every frame sent, and
        // the kernel's heap, free frames, tables and code pages are back at their baseline.
        name: "filter-churn",
        cmdline: "apps=churn",
        exit: KernelExit::Exited(0),
        serial: &[
            "churn: ready",
            "exact: true",
            "back to baseline: true; unknown gauge Err(InvalidArgument)",
            "after the churn filter was unbound); not matching: 0",
            "churn: counts exact and the kernel back to baseline: true",
            "[exo] app churn (env 1) exited with status 0",
        ],
        timeout: CHURN_TIMEOUT,
        expect: Expect::Pass,
        network: Network::Tap {
            clients: churn_clients,
        },
    },
    Scenario {
        // Three apps with their own TCP/IP stacks (libnet over smoltcp) on one IP, beside the
        // ARP and ICMP handlers: fetch GETs 1 MiB from a server in the namespace meanwhile; curl gets every page of httpd byte-identical (also 100
        // requests on one kept-alive connection, HEAD, 404, 400), socat echoes 1 MiB over TCP
        // and a datagram over UDP through echo; then bad input (segments with bad checksums,
        // a reset storm, a SYN flood, clients gone mid-response, 300 connections in a row) and
        // httpd serves the next curl correctly. At the end
        // both stacks hold no socket, filter or ring slot.
        name: "libnet-tap",
        cmdline: "apps=ashd,echo,httpd,fetch monitor=ashd arg=1:7365727665 arg=2:7463703d37207564703d3730303720717569743d39313037 arg=3:706f72743d383020717569743d39313830 arg=4:687474703a2f2f31302e302e322e323a383030302f646174612e62696e",
        exit: KernelExit::Exited(0),
        serial: &[
            "echo: left: sockets 0 filters 0 ring slots 0",
            "httpd: left: sockets 0 filters 0 ring slots 0",
            "rx_bad_checksum: 20,",
            "[exo] app httpd (env 3) exited with status 0",
            "[exo] app echo (env 2) exited with status 0",
            "fetch: left: sockets 0 filters 0 ring slots 0;",
            "[exo] app fetch (env 4) exited with status 0",
        ],
        timeout: LIBNET_TAP_TIMEOUT,
        expect: Expect::Pass,
        network: Network::Tap {
            clients: libnet_clients,
        },
    },
    Scenario {
        // A client on its own stack, without a monitor capability: fetch connects out from an
        // ephemeral port to `python3 -m http.server` in the namespace (the reply to its ARP
        // request copied to its stack's ring because it asked), GETs 1 MiB and prints its
        // length and SHA-256, which must be the file's; at the end its stack holds no socket
        // or port filter. Meanwhile echo floods 600 ARP requests for other addresses (fetch
        // asks after 4 s, when the flood's questions would fill the kernel's table if an app's
        // were not capped) and never gets a copy of fetch's reply, nor of the unsolicited
        // replies scapy sends.
        name: "libnet-fetch",
        cmdline: "apps=ashd,echo,fetch monitor=ashd arg=1:7365727665 arg=2:7463703d37207564703d3730303720717569743d39313037206172705f666c6f6f643d363030 arg=3:687474703a2f2f31302e302e322e323a383030302f646174612e62696e arg=3:776169743d343030",
        exit: KernelExit::Exited(0),
        serial: &[
            "echo: ARP flood: 600 of 600 requests sent",
            "fetch: waited 400 ticks",
            "fetch: left: sockets 0 filters 0 ring slots 0;",
            "arp_questions_unrecorded=0",
            "[exo] app fetch (env 3) exited with status 0",
            "[exo] app echo (env 2) exited with status 0",
        ],
        timeout: LIBNET_TAP_TIMEOUT,
        expect: Expect::Pass,
        network: Network::Tap {
            clients: fetch_clients,
        },
    },
    Scenario {
        // Load on httpd's stack (a pool of 20 listening sockets): curl of the 1 MiB file, 1 MiB
        // through echo's stack with socat, `ab -n 1000 -c 10` and `wrk -t1 -c16 -d5s` on the
        // front page, every request answered; the figures are printed, and httpd and echo
        // must report no frame dropped anywhere and no segment they sent twice.
        name: "libnet-load",
        cmdline: "apps=ashd,httpd,echo monitor=ashd arg=1:7365727665 arg=2:706f72743d383020717569743d3931383020706f6f6c3d3230 arg=3:7463703d37207564703d3730303720717569743d39313037",
        exit: KernelExit::Exited(0),
        serial: &[
            "httpd: left: sockets 0 filters 0 ring slots 0",
            "echo: left: sockets 0 filters 0 ring slots 0",
            "[exo] app httpd (env 2) exited with status 0",
            "[exo] app echo (env 3) exited with status 0",
        ],
        timeout: LIBNET_TAP_TIMEOUT,
        expect: Expect::Pass,
        network: Network::Tap {
            clients: load_clients,
        },
    },
    Scenario {
        // TCP edge cases from a client scapy plays segment by segment (`tcp_edges.py`):
        // out-of-window data ahead and behind (never delivered), reordered and overlapping
        // segments (echo sends back exactly the stream), a zero window (echo's stack
        // persists with probes, then sends everything intact when the window opens), a reset
        // (nothing echoed after it; the next connection works and closes), a SYN to a port
        // nobody owns (no answer). A second echo (`probe=1`) first asks the kernel about the
        // first one's ring, at the address of its own: not told.
        name: "libnet-tcp-edges",
        cmdline: "apps=ashd,echo,echo monitor=ashd arg=1:7365727665 arg=2:7463703d37207564703d3730303720717569743d39313037 arg=3:7463703d38207564703d3830303820717569743d393130382070726f62653d31",
        exit: KernelExit::Exited(0),
        serial: &[
            "echo: ring counters: another app's ring Err(NotFound)",
            "echo: ring counters: own delivered true, own ring full Ok(0), not kept per ring Err(InvalidArgument), inside the ring Err(NotFound)",
            "echo: left: sockets 0 filters 0 ring slots 0",
            "[exo] app echo (env 2) exited with status 0",
            "[exo] app echo (env 3) exited with status 0",
        ],
        timeout: LIBNET_TAP_TIMEOUT,
        expect: Expect::Pass,
        network: Network::Tap {
            clients: tcp_edge_clients,
        },
    },
    Scenario {
        // httpd with Cheetah's techniques, one at a time (each of these four scenarios is one
        // set; `none`, smoltcp's path, is libnet-tap's and libnet-load's): curl gets every page
        // byte-identical (1 MiB and 100 KiB included), 100 requests on one kept-alive
        // connection, `ab -n 1000 -c 10` with no failure; the engine's counters show the
        // technique at work (stored sums; no copy; no bare FIN).
        name: "cheetah-prebuilt",
        cmdline: "apps=ashd,httpd monitor=ashd arg=1:7365727665 arg=2:706f72743d383020717569743d3931383020706f6f6c3d323020636865657461683d7072656275696c74",
        exit: KernelExit::Exited(0),
        serial: &[
            "httpd: ready on port 80, 8 paths, cheetah=prebuilt",
            "httpd: left: sockets 0 filters 0 ring slots 0",
            "[exo] app httpd (env 2) exited with status 0",
        ],
        timeout: LIBNET_TAP_TIMEOUT,
        expect: Expect::Pass,
        network: Network::Tap {
            clients: cheetah_prebuilt_clients,
        },
    },
    Scenario {
        name: "cheetah-cache",
        cmdline: "apps=ashd,httpd monitor=ashd arg=1:7365727665 arg=2:706f72743d383020717569743d3931383020706f6f6c3d323020636865657461683d6361636865",
        exit: KernelExit::Exited(0),
        serial: &[
            "httpd: ready on port 80, 8 paths, cheetah=cache",
            "httpd: left: sockets 0 filters 0 ring slots 0",
            "[exo] app httpd (env 2) exited with status 0",
        ],
        timeout: LIBNET_TAP_TIMEOUT,
        expect: Expect::Pass,
        network: Network::Tap {
            clients: cheetah_cache_clients,
        },
    },
    Scenario {
        name: "cheetah-piggyback",
        cmdline: "apps=ashd,httpd monitor=ashd arg=1:7365727665 arg=2:706f72743d383020717569743d3931383020706f6f6c3d323020636865657461683d70696767796261636b",
        exit: KernelExit::Exited(0),
        serial: &[
            "httpd: ready on port 80, 8 paths, cheetah=piggyback",
            "httpd: left: sockets 0 filters 0 ring slots 0",
            "[exo] app httpd (env 2) exited with status 0",
        ],
        timeout: LIBNET_TAP_TIMEOUT,
        expect: Expect::Pass,
        network: Network::Tap {
            clients: cheetah_piggyback_clients,
        },
    },
    Scenario {
        // All three together, as the others; then a scapy client that loses segments (and a
        // first retransmission) gets /100k.bin byte-identical from the cache's retransmissions
        // well within smoltcp's 1 s floor per loss, a client with a zero window gets probes
        // and no data until it opens it, and the bad input and connection churn of
        // libnet-tap (bad checksums, resets, a SYN flood, impossible flags, clients gone
        // mid-response, 300 connections in a row) leave it serving correctly.
        name: "cheetah-all",
        cmdline: "apps=ashd,httpd monitor=ashd arg=1:7365727665 arg=2:706f72743d383020717569743d3931383020706f6f6c3d323020636865657461683d616c6c",
        exit: KernelExit::Exited(0),
        serial: &[
            "httpd: ready on port 80, 8 paths, cheetah=prebuilt,cache,piggyback",
            "rx_bad_checksum: 20,",
            "httpd: left: sockets 0 filters 0 ring slots 0",
            "[exo] app httpd (env 2) exited with status 0",
        ],
        timeout: LIBNET_TAP_TIMEOUT,
        expect: Expect::Pass,
        network: Network::Tap {
            clients: cheetah_all_clients,
        },
    },
    Scenario {
        // Monitor filters need a monitor capability (`monitor=netmon` is not given here, so
        // netmon starts without one); a garbage filter encoding is refused before anything
        // else.
        name: "net-monitor-right",
        cmdline: "apps=netmon arg=746370",
        exit: KernelExit::Exited(3),
        serial: &[
            "netmon[1]: garbage filter: Err(InvalidArgument)",
            "netmon[1]: binding filter 0 \"tcp\": Denied",
        ],
        timeout: TIMEOUT,
        expect: Expect::Pass,
        network: Network::None,
    },
    Scenario {
        // httpd asked for a listening pool its heap cannot hold (300 sockets of 20 KiB of
        // buffers each, 6 MiB against libnet's 4 MiB heap): the bind is `Exhausted`, an error
        // value httpd reports and exits on, not an allocation panic; the kernel and the exit
        // accounting carry on as for any failing app.
        name: "httpd-pool-exhausted",
        cmdline: "apps=httpd arg=1:706f72743d383020706f6f6c3d333030",
        exit: KernelExit::Exited(3),
        serial: &[
            "httpd: port 80: Exhausted",
            "[exo] app httpd (env 1) exited with status 3",
        ],
        timeout: LIBNET_TAP_TIMEOUT,
        expect: Expect::Pass,
        network: Network::Tap {
            clients: no_clients,
        },
    },
    Scenario {
        name: "hello",
        cmdline: "apps=hello",
        exit: KernelExit::Exited(0),
        serial: &[
            "timer: 100 Hz",
            "hello from ring 3",
            "bad pointers: kernel Err(BadAddress), unmapped Err(BadAddress); unknown call: Err(UnknownSyscall)",
            "[exo] app hello (env 1) exited with status 0",
        ],
        timeout: TIMEOUT,
        expect: Expect::Pass,
        network: Network::None,
    },
    Scenario {
        // Two environments in a row: the first one's frames come back and are reused
        // (the kernel asserts no frame leaked).
        name: "hello-twice",
        cmdline: "apps=hello,hello",
        exit: KernelExit::Exited(0),
        serial: &[
            "[exo] app hello (env 2) exited with status 0",
            "all apps exited with status 0",
        ],
        timeout: TIMEOUT,
        expect: Expect::Pass,
        network: Network::None,
    },
    Scenario {
        name: "fault",
        cmdline: "apps=fault",
        exit: KernelExit::AppFaulted,
        serial: &[
            "fault: reading unmapped address 0x5555dead0000",
            "[exo] app fault (env 1) fault: page fault at address 0x5555dead0000 rip 0x80002",
            "(user read, not present)",
        ],
        timeout: TIMEOUT,
        expect: Expect::Pass,
        network: Network::None,
    },
    Scenario {
        // Timer interrupts taken in ring 3 return to user code intact.
        name: "ring3-timer",
        cmdline: "apps=busy",
        exit: KernelExit::Exited(0),
        serial: &[
            "busy: 2000000 rounds twice, results agree: true",
            "[exo] app busy (env 1): the timer interrupted ring 3",
        ],
        timeout: TIMEOUT,
        expect: Expect::Pass,
        network: Network::None,
    },
    Scenario {
        // Exceptions reach the app's ring-3 handler, which resumes itself; user-level page
        // fault handling: demand paging, an Appel-Li protection trap, copy-on-write. An
        // exception whose frame cannot be written (stack unmapped, crossing the stack's
        // bottom, read-only) ends that app with a report; the kernel and the others go on.
        name: "user-exceptions",
        cmdline: "apps=exc",
        exit: KernelExit::Exited(0),
        serial: &[
            "exceptions: divide 1, breakpoint 1, invalid opcode 1, general protection 1; registers kept: true",
            "user-level page faults: demand paging true, appel-li true, copy-on-write true",
            "[exo] app exc (env 2): exception frame does not fit below rsp 0x500000000000",
            "[exo] app exc (env 3): exception frame does not fit below rsp 0x7ffffffb00c8",
            "exception stack unusable (unmapped, bottom edge, read-only): [Ok(Faulted(6)), Ok(Faulted(6)), Ok(Faulted(6))]; contained: true",
            "[exo] app exc (env 1) exited with status 0",
        ],
        timeout: TIMEOUT,
        expect: Expect::Pass,
        network: Network::None,
    },
    Scenario {
        // No access to kernel memory or another environment's pages; forged, foreign and
        // revoked capabilities refused; grants never add rights.
        name: "isolation",
        cmdline: "apps=isolate",
        exit: KernelExit::Exited(0),
        serial: &[
            "isolation: kernel memory unreadable [true, true, true], own code unwritable true",
            "isolation: forged capabilities [Err(InvalidCapability), Err(InvalidCapability), Err(InvalidCapability), Err(InvalidCapability)], mapping over the kernel Err(BadAddress)",
            "isolation: other's address unmapped, grant read 0xfeed, write refused true, more rights Err(Denied), regrant Err(Denied), foreign handle Err(InvalidCapability)",
            "isolation: revoked Ok(1), after revocation unmapped, stale handle Err(InvalidCapability)",
            "[exo] app isolate (env 1) exited with status 0",
        ],
        timeout: TIMEOUT,
        expect: Expect::Pass,
        network: Network::None,
    },
    Scenario {
        // Every kind of bad argument is refused with its error code; the kernel survives.
        name: "bad-arguments",
        cmdline: "apps=badargs",
        exit: KernelExit::Exited(0),
        serial: &[
            "badargs child: set_upcall(pct, 0) Ok(()); pct_wait without an entry InvalidArgument",
            "badargs: pct_call into a child whose pct entry is zero: 200 refused, 0 entered; child Ok(Exited(0))",
            "bad calls refused with the right error; kernel intact: true",
            "[exo] app badargs (env 1) exited with status 0",
        ],
        timeout: TIMEOUT,
        expect: Expect::Pass,
        network: Network::None,
    },
    Scenario {
        // The top user page is never mappable (sysretq to a non-canonical RCX), a self-grant
        // chain as deep as the capability space is deleted without recursion, and lengths
        // from user space are summed without overflow.
        name: "hostile-caps-and-top-page",
        cmdline: "apps=hostile",
        exit: KernelExit::Exited(0),
        serial: &[
            "[exo] cpu: SMEP on, SMAP on, UMIP on",
            "hostile: sgdt in ring 3 faults: true",
            "hostile: top user page map Err(BadAddress), refused: true",
            "then Exhausted",
            "whole chain: true",
            "hostile: transmit of a wrapping length Err(InvalidArgument), refused: true",
            "then Exhausted; at the mapping quota: true",
            "hostile: kernel intact after the attacks: true",
            "[exo] app hostile (env 1) exited with status 0",
        ],
        timeout: Duration::from_secs(120),
        expect: Expect::Pass,
        network: Network::None,
    },
    Scenario {
        // Work with interrupts off grows with what a call removes, not with what the caller
        // holds: deleting a page mapped once costs about the same beside 64 and 4,096 other
        // mappings (TSC under -icount: instructions, compared between two sizes); a 1 MiB
        // console_write is cut to the per-call bound.
        name: "interrupts-off-bounds",
        cmdline: "apps=stalls",
        exit: KernelExit::Exited(0),
        serial: &[
            "beside 4096: bounded true",
            "stalls: a 1 MiB console_write wrote Ok(512): cut to the bound true",
            "[exo] app stalls (env 1) exited with status 0",
        ],
        timeout: TIMEOUT,
        expect: Expect::Pass,
        network: Network::None,
    },
    Scenario {
        // Per-environment quotas: a hog exhausts each of its resources and gets Exhausted at
        // its own limit; its parent, the victim, keeps what it did not give away.
        name: "quotas",
        cmdline: "apps=quota",
        exit: KernelExit::Exited(0),
        serial: &[
            "quota hog: every resource stopped at its limit with Exhausted: true",
            "quota: greedy spawn Err(Exhausted); hog Ok(Exited(0)); reserved for it 64, after it 0; victim maps true, acquires a slice true",
            "[exo] app quota (env 1) exited with status 0",
        ],
        timeout: TIMEOUT,
        expect: Expect::Pass,
        network: Network::None,
    },
    Scenario {
        // The network's quotas: a hog binds filters, then handlers, until each is Exhausted
        // at the limit its parent gave it; others until their JIT code bytes run out (filters'
        // and handlers' code both charged); the parent, their victim, still binds meanwhile.
        name: "net-quotas",
        cmdline: "apps=netquota",
        exit: KernelExit::Exited(0),
        serial: &[
            "netquota hog: filters 6/6 then Exhausted, handlers 3/3 then Exhausted; at its limits: true",
            "netquota: hog stopped at its own limits, victim unaffected: true",
            "netquota code hog: 4 filters then Exhausted, handler Err(Exhausted); code",
            "netquota: the JIT code quota stops each hog at its budget, victim unaffected, code back to 0: true",
            "[exo] app netquota (env 1) exited with status 0",
        ],
        timeout: TAP_TIMEOUT,
        expect: Expect::Pass,
        network: Network::Tap {
            clients: |_| Ok(()),
        },
    },
    Scenario {
        // Transmit faster than the NIC drains (net_transmit does not wait for the device): a
        // flooder's every call is queued or WouldBlock, the victim's frames are all queued at
        // the first attempt meanwhile (the flooder holds at most its share of the transmit
        // buffers), and the kernel's counters balance with what both saw. First every kind of
        // refused frame, more times than there are transmit buffers: none may keep one. The
        // flooder's spoofed frames sent into its full share are still Denied, counted refused.
        name: "net-transmit-flood",
        cmdline: "apps=txflood",
        exit: KernelExit::Exited(0),
        serial: &[
            "refusals as they should be: true",
            " queue full, 0 other errors",
            " denied, 0 otherwise",
            "txflood: every call Ok or WouldBlock, counters balance, the victim's frames all queued at once: true",
            "[exo] app txflood (env 1) exited with status 0",
        ],
        timeout: TAP_TIMEOUT,
        expect: Expect::Pass,
        network: Network::Tap {
            clients: |_| Ok(()),
        },
    },
    Scenario {
        // 200,000 seeded random and near-valid system calls beside a working app: the kernel
        // stays up, the other app is unaffected, and at the end every frame and capability is
        // back (the kernel's end-of-run check).
        name: "syscall-fuzzer",
        cmdline: "apps=fuzz,heap",
        exit: KernelExit::Exited(0),
        serial: &[
            "fuzz: 200000 calls,",
            "kernel alive and serving: true",
            "heap: 10000 boxes true, 512 KiB vector true",
            "(intact true, 2 refusals); allocation after freeing: true",
            "[exo] app fuzz (env 1) exited with status 0",
            "[exo] app heap (env 2) exited with status 0",
        ],
        timeout: Duration::from_secs(120),
        expect: Expect::Pass,
        network: Network::None,
    },
    Scenario {
        // Every child ends for an undeliverable upcall in one scheduling decision, one after
        // another: a loop, not a recursion off the end of the kernel's entry stack.
        name: "undeliverable-chain",
        cmdline: "apps=undeliver",
        exit: KernelExit::Exited(0),
        serial: &[
            "children ended for an undeliverable upcall",
            "[exo] app undeliver (env 1) exited with status 0",
        ],
        timeout: TIMEOUT,
        expect: Expect::Pass,
        network: Network::None,
    },
    Scenario {
        // x87/MMX and SSE state is saved and restored per environment: nothing leaks.
        name: "fpu-isolation",
        cmdline: "apps=fpuspy",
        exit: KernelExit::Exited(0),
        serial: &[
            "fpuspy child: sees the parent's secret: MMX false, SSE false",
            "fpuspy: child Ok(Exited(0)); the parent's registers kept: true",
            "[exo] app fpuspy (env 1) exited with status 0",
        ],
        timeout: TIMEOUT,
        expect: Expect::Pass,
        network: Network::None,
    },
    Scenario {
        // Synchronous and asynchronous protected control transfer, and its refusals.
        name: "pct",
        cmdline: "apps=pct",
        exit: KernelExit::Exited(0),
        serial: &[
            "pct nesting: 100/100 calls through a second server correct",
            "pct: 1000/1000 calls correct",
            "async send delivered true",
            "pct refusals: without CALL Err(Denied), not waiting Err(WouldBlock), destroyed Err(PeerGone) (Ok(Aborted))",
            "[exo] app pct (env 1) exited with status 0",
        ],
        timeout: TIMEOUT,
        expect: Expect::Pass,
        network: Network::None,
    },
    Scenario {
        // Time slices: two slices get about twice the time of one; slice starts are upcalled.
        name: "slice-fairness",
        cmdline: "apps=sched",
        exit: KernelExit::Exited(0),
        serial: &[
            "slice ticks: ok",
            "[exo] app sched (env 1) exited with status 0",
        ],
        timeout: TIMEOUT,
        expect: Expect::Pass,
        network: Network::None,
    },
    Scenario {
        // A crashing child and one that overstays its end-of-slice upcall are ended; a
        // computing child and the parent go on.
        name: "fault-containment",
        cmdline: "apps=contain",
        exit: KernelExit::Exited(0),
        serial: &[
            "[exo] app fault (env 2) fault: page fault at address 0x5555dead0000",
            "[exo] app contain (env 3) overstayed its end-of-slice upcall (1/3)",
            "[exo] app contain (env 3) overstayed too often",
            "containment: crasher Ok(Faulted(14)), hog Ok(Aborted) after Ok(3) overstays, worker Ok(Exited(0))",
            "[exo] app contain (env 1) exited with status 0",
        ],
        timeout: TIMEOUT,
        expect: Expect::Pass,
        network: Network::None,
    },
    Scenario {
        // The libnet heap on pages it maps itself: small and large allocations, reuse of
        // freed pages, out of memory as an error.
        name: "heap",
        cmdline: "apps=heap",
        exit: KernelExit::Exited(0),
        serial: &[
            "heap: 10000 boxes true, 512 KiB vector true",
            "heap: freed pages reused without new ones: true; 8 MiB refused: true;",
            "(intact true, 2 refusals); allocation after freeing: true",
            "[exo] app heap (env 1) exited with status 0",
        ],
        timeout: TIMEOUT,
        expect: Expect::Pass,
        network: Network::None,
    },
    Scenario {
        // Pipes, a shared counter and LRPC on granted pages, woken by PCT.
        name: "pipe",
        cmdline: "apps=pipe",
        exit: KernelExit::Exited(0),
        serial: &[
            "pipe: 3000/3000 messages in order and intact (0 bad), ring wrapped",
            "shared memory: counter 20000 (server saw 20000), expected 20000",
            "lrpc: 1000/1000 calls correct",
            "[exo] app pipe (env 1) exited with status 0",
        ],
        timeout: TIMEOUT,
        expect: Expect::Pass,
        network: Network::None,
    },
    Scenario {
        // Yield to a named environment: it runs next; a plain yield goes round robin.
        name: "yield-to",
        cmdline: "apps=yieldto",
        exit: KernelExit::Exited(0),
        serial: &[
            "another ran 0 times",
            "[exo] app yieldto (env 1) exited with status 0",
        ],
        timeout: TIMEOUT,
        expect: Expect::Pass,
        network: Network::None,
    },
    Scenario {
        // Ended environments' records are bounded: old ones are forgotten, recent ones kept.
        name: "ended-records",
        cmdline: "apps=records",
        exit: KernelExit::Exited(0),
        serial: &[
            "records: 160/160 children exited 7; the last 128 still known: 128, the 32 before forgotten: 32 (first's dispatches Ok(0))",
            "[exo] app records (env 1) exited with status 0",
        ],
        timeout: TIMEOUT,
        expect: Expect::Pass,
        network: Network::None,
    },
    Scenario {
        // Visible revocation: a cooperative app gives pages back, a stubborn one is
        // repossessed after the deadline and reads what it lost.
        name: "revocation",
        cmdline: "apps=reclaim",
        exit: KernelExit::Exited(0),
        serial: &[
            "pager cooperative: gave back 3 pages, repossessed 0",
            "revocation deadline: asked 3, given back 0, repossessed 3",
            "pager stubborn: gave back 0 pages, repossessed 3, repossessed pages unmapped: true",
            "pager heap: default policy gave back 3 of 6 free heap pages, oldest first true, repossessed 0, heap works after true",
            "pager dodger: deleted 3 fresh pages, repossessed 3, repossessed pages unmapped: true",
            "revocation: repossessed from cooperative Ok(0), from stubborn Ok(3), from heap default Ok(0), from dodger Ok(3)",
            "[exo] app reclaim (env 1) exited with status 0",
        ],
        timeout: TIMEOUT,
        expect: Expect::Pass,
        network: Network::None,
    },
    Scenario {
        // The kernel's own page fault is reported with its registers, then panics.
        name: "kernel-fault",
        cmdline: "test=kernel-fault",
        exit: KernelExit::KernelPanic,
        serial: &[
            "kernel panic at",
            "kernel page fault at address 0x10 rip 0x",
            "(kernel read, not present)",
        ],
        timeout: TIMEOUT,
        expect: Expect::Pass,
        network: Network::None,
    },
    Scenario {
        // The kernel's stacks have unmapped guard pages: running off the boot stack faults,
        // and the fault, with no stack left to push onto, is a double fault reported on its
        // own IST stack.
        name: "kernel-stack-guard",
        cmdline: "test=stack-overflow",
        exit: KernelExit::KernelPanic,
        serial: &["[exo] kernel panic at", "double fault"],
        timeout: TIMEOUT,
        expect: Expect::Pass,
        network: Network::None,
    },
    Scenario {
        // Generated code is read-only through the kernel's identity map of RAM while it
        // lives: a write to it faults.
        name: "jit-code-readonly",
        cmdline: "test=jit-readonly",
        exit: KernelExit::KernelPanic,
        serial: &[
            "[exo] self-test: test=jit-readonly, writing code frame",
            "(kernel write, protection violation)",
        ],
        timeout: TIMEOUT,
        expect: Expect::Pass,
        network: Network::None,
    },
    Scenario {
        // Installing generated code with the frame allocator drained to 0, 1, 2, ... frames:
        // every refusal is OutOfMemory with nothing held (the kernel panics and names what
        // was held otherwise), until one fits; frames and code pages back afterwards.
        name: "jit-out-of-frames",
        cmdline: "test=jit-out-of-frames",
        exit: KernelExit::Exited(0),
        serial: &[
            "[exo] self-test: 0 frames left: refused (OutOfMemory), 0 page tables made, nothing held",
            "[exo] self-test: 1 frames left: refused (OutOfMemory)",
            "frames left: installed",
            "[exo] self-test: jit-out-of-frames: ",
        ],
        timeout: TIMEOUT,
        expect: Expect::Pass,
        network: Network::None,
    },
    Scenario {
        // NMIs from QEMU's monitor while an app computes: each is taken on the NMI's own IST
        // stack, counted and dismissed (not handed to the app as its exception), and the app
        // finishes its work.
        name: "nmi-on-its-stack",
        cmdline: "apps=spin",
        exit: KernelExit::Exited(0),
        serial: &[
            "[exo] nmi: 3 handled, 3 on the NMI's IST stack; kept running",
            "[exo] app spin (env 1) exited with status 0",
        ],
        timeout: TIMEOUT,
        expect: Expect::Pass,
        network: Network::NoneInjecting {
            after: "[exo] app spin: env 1 ready",
            inject: monitor::Inject::Nmis(3),
        },
    },
    Scenario {
        // An uncorrected machine check from QEMU's monitor while an app computes: taken on
        // its own IST stack, the banks' report logged, and the kernel stops (as Linux does
        // for an error it cannot correct), never handing it to the app.
        name: "machine-check-on-its-stack",
        cmdline: "apps=spin",
        exit: KernelExit::KernelPanic,
        serial: &[
            "machine check (on its IST stack: true): MCG_STATUS 0x",
            "bank 1 status 0xb200000000000000",
        ],
        timeout: TIMEOUT,
        expect: Expect::Pass,
        network: Network::NoneInjecting {
            after: "[exo] app spin: env 1 ready",
            inject: monitor::Inject::MachineCheck,
        },
    },
    Scenario {
        // A monitor unbind whose new code finds no frame takes its ring down, and the ring's
        // port-claiming filters with it (kernel-built ring, allocator drained by the kernel).
        name: "monitor-unbind-fails",
        cmdline: "test=monitor-unbind-fails",
        exit: KernelExit::Exited(0),
        serial: &[
            "[exo] net: unbinding filter 1: could not regenerate the ring's code; ring 0x500000000000 unbound",
            "[exo] self-test: monitor-unbind-fails: the ring went, and with it its 2 claims: 0 rings, no port owned, 0 filters in the shared demux",
        ],
        timeout: TIMEOUT,
        expect: Expect::Pass,
        network: Network::None,
    },
    Scenario {
        // SMAP: the kernel reads a user page from ring 0 without stac; the CPU refuses and
        // the kernel's page-fault report names SMAP (-cpu max has it).
        name: "smap-refuses-kernel-reads",
        cmdline: "test=smap",
        exit: KernelExit::KernelPanic,
        serial: &[
            "[exo] self-test: test=smap (SMAP on), reading user page 0x400000000000 from ring 0 without stac",
            "kernel page fault at address 0x400000000000",
            "(kernel read, protection violation) SMAP: ring 0 touched a user page with RFLAGS.AC clear",
        ],
        timeout: TIMEOUT,
        expect: Expect::Pass,
        network: Network::None,
    },
    Scenario {
        // SMEP: the kernel calls into a user page; the fetch faults and the report names SMEP.
        name: "smep-refuses-kernel-fetches",
        cmdline: "test=smep",
        exit: KernelExit::KernelPanic,
        serial: &[
            "[exo] self-test: test=smep (SMEP on), calling user page 0x400000000000 from ring 0",
            "kernel page fault at address 0x400000000000 rip 0x400000000000",
            "(kernel fetch, protection violation) SMEP: ring 0 fetched from a user page",
        ],
        timeout: TIMEOUT,
        expect: Expect::Pass,
        network: Network::None,
    },
    Scenario {
        // A malformed host address is refused before anything boots.
        name: "bad-ipv4",
        cmdline: "apps=hello ipv4=10.0.2",
        exit: KernelExit::BadCommandLine,
        serial: &["BadIpv4(\"10.0.2\")"],
        timeout: TIMEOUT,
        expect: Expect::Pass,
        network: Network::None,
    },
    Scenario {
        name: "missing-app",
        cmdline: "apps=nosuch",
        exit: KernelExit::AppMissing,
        serial: &["[exo] app nosuch: not in the boot pack"],
        timeout: TIMEOUT,
        expect: Expect::Pass,
        network: Network::None,
    },
    Scenario {
        // The kernel panics before running hello: the expectations of a good run are not met,
        // and the harness must say so because of the panic.
        name: "harness-detects-panic",
        cmdline: "apps=hello test=panic",
        exit: KernelExit::Exited(0),
        serial: &["hello from ring 3"],
        timeout: TIMEOUT,
        expect: Expect::HarnessFailure(FailureKind::KernelPanic),
        network: Network::None,
    },
    Scenario {
        name: "harness-detects-hang",
        cmdline: "apps=hello test=hang",
        exit: KernelExit::Exited(0),
        serial: &["hello from ring 3"],
        timeout: Duration::from_secs(3),
        expect: Expect::HarnessFailure(FailureKind::Timeout),
        network: Network::None,
    },
];

/// Time allowed for a scenario with real clients (they run on the host's clock).
const TAP_TIMEOUT: Duration = Duration::from_secs(90);
/// Longest any one client may run.
const CLIENT_DEADLINE: Duration = Duration::from_secs(15);

/// One UDP datagram to the guest, the reply (if `expect_reply`) on stdout.
fn udp(
    session: &Session<'_>,
    port: u16,
    payload: &[u8],
    expect_reply: bool,
) -> Result<Vec<u8>, String> {
    let target = format!("UDP:{GUEST_ADDRESS}:{port}");
    // `-t 1`: after sending, wait a second for the answer; `-T 3`: give up when nothing moves.
    let arguments: &[&str] = if expect_reply {
        &["-t", "1", "-T", "3", "-", &target]
    } else {
        &["-u", "-t", "0.2", "-", &target]
    };
    session.client("socat", arguments, CLIENT_DEADLINE, Some(payload))
}

/// Three pings of the guest from the namespace (bounded: 0.2 s apart, 2 s each); all three
/// must be answered. Returns ping's summary line; `what` says when, in the error.
pub(crate) fn ping_three(session: &mut Session<'_>, what: &str) -> Result<String, String> {
    let ping = session.client(
        "ping",
        &["-c", "3", "-i", "0.2", "-W", "2", GUEST_ADDRESS],
        CLIENT_DEADLINE,
        None,
    )?;
    let ping = String::from_utf8_lossy(&ping);
    let summary = ping
        .lines()
        .find(|line| line.contains("received"))
        .unwrap_or("no summary")
        .to_string();
    if ping.contains("3 received") {
        Ok(summary)
    } else {
        Err(format!("ping{what}: {ping}"))
    }
}

/// For a tap scenario whose app needs the NIC but no peer: nothing to send.
fn no_clients(_session: &mut Session<'_>) -> Result<(), String> {
    Ok(())
}

/// Judges a run against the scenario's expectations of a good run.
pub fn judge(scenario: &Scenario, run: &Run) -> Result<(), Failure> {
    let failure = |kind, detail: String| Err(Failure { kind, detail });
    match run.outcome {
        Outcome::Timeout(_) => return failure(FailureKind::Timeout, run.outcome.to_string()),
        Outcome::NoDebugExit(_) | Outcome::UnknownCode(_) => {
            return failure(FailureKind::NoDebugExit, run.outcome.to_string());
        }
        Outcome::Kernel(KernelExit::KernelPanic) if scenario.exit != KernelExit::KernelPanic => {
            let message = run
                .serial
                .lines()
                .find(|line| line.trim_start().starts_with("[exo] kernel panic"))
                .unwrap_or("(no panic message on serial)");
            return failure(FailureKind::KernelPanic, message.trim().to_string());
        }
        Outcome::Kernel(exit) if exit != scenario.exit => {
            return failure(
                FailureKind::WrongExit,
                format!("expected {:?}, got {exit:?}", scenario.exit),
            );
        }
        Outcome::Kernel(_) => {}
    }
    for expected in scenario.serial {
        // The kernel's word (`[exo] ...`) counts only at the start of a line: an app's lines
        // all start with its name.
        let found = if expected.starts_with(KERNEL_MARK) {
            run.serial
                .lines()
                .any(|line| line.trim_start().starts_with(expected))
        } else {
            run.serial.contains(expected)
        };
        if !found {
            return failure(
                FailureKind::MissingSerial,
                format!("no {expected:?} in serial output"),
            );
        }
    }
    Ok(())
}

/// Whether the verdict is the one the scenario expects, with a line to print.
pub fn assess(scenario: &Scenario, verdict: &Result<(), Failure>) -> (bool, String) {
    match (scenario.expect, verdict) {
        (Expect::Pass, Ok(())) => (true, "ok".into()),
        (Expect::Pass, Err(failure)) => (false, format!("FAILED: {failure}")),
        (Expect::HarnessFailure(kind), Err(failure)) if failure.kind == kind => {
            (true, format!("ok (failed as expected: {failure})"))
        }
        (Expect::HarnessFailure(kind), Err(failure)) => (
            false,
            format!("FAILED: expected the harness to report {kind:?}, it reported {failure}"),
        ),
        (Expect::HarnessFailure(kind), Ok(())) => (
            false,
            format!("FAILED: expected the harness to report {kind:?}, the run passed"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(outcome: Outcome, serial: &str) -> Run {
        Run {
            outcome,
            serial: serial.into(),
            elapsed: Duration::ZERO,
        }
    }

    const GOOD: Scenario = Scenario {
        name: "t",
        cmdline: "",
        exit: KernelExit::Exited(0),
        serial: &["hello"],
        timeout: TIMEOUT,
        expect: Expect::Pass,
        network: Network::None,
    };

    fn kind(verdict: Result<(), Failure>) -> Option<FailureKind> {
        verdict.err().map(|failure| failure.kind)
    }

    #[test]
    fn judges_each_way_a_run_can_end() {
        let ok = Outcome::Kernel(KernelExit::Exited(0));
        assert_eq!(kind(judge(&GOOD, &run(ok, "x hello y"))), None);
        assert_eq!(
            kind(judge(&GOOD, &run(ok, "x"))),
            Some(FailureKind::MissingSerial)
        );
        let panic = Outcome::Kernel(KernelExit::KernelPanic);
        assert_eq!(
            kind(judge(&GOOD, &run(panic, "hello"))),
            Some(FailureKind::KernelPanic)
        );
        let wrong = Outcome::Kernel(KernelExit::Exited(3));
        assert_eq!(
            kind(judge(&GOOD, &run(wrong, "hello"))),
            Some(FailureKind::WrongExit)
        );
        let timeout = Outcome::Timeout(TIMEOUT);
        assert_eq!(
            kind(judge(&GOOD, &run(timeout, "hello"))),
            Some(FailureKind::Timeout)
        );
        let triple_fault = Outcome::NoDebugExit(Some(0));
        assert_eq!(
            kind(judge(&GOOD, &run(triple_fault, "hello"))),
            Some(FailureKind::NoDebugExit)
        );
    }

    #[test]
    fn expected_failures_pass_only_for_their_reason() {
        let panic_test = Scenario {
            expect: Expect::HarnessFailure(FailureKind::KernelPanic),
            ..GOOD
        };
        let panicked = judge(
            &panic_test,
            &run(Outcome::Kernel(KernelExit::KernelPanic), ""),
        );
        assert!(assess(&panic_test, &panicked).0);
        let passed = judge(
            &panic_test,
            &run(Outcome::Kernel(KernelExit::Exited(0)), "hello"),
        );
        assert!(!assess(&panic_test, &passed).0);
        let hung = judge(&panic_test, &run(Outcome::Timeout(TIMEOUT), ""));
        assert!(!assess(&panic_test, &hung).0);
    }

    /// An app cannot pass for the kernel: a kernel expectation needs a line the kernel began.
    #[test]
    fn only_the_kernel_speaks_for_the_kernel() {
        let kernel_says = Scenario {
            serial: &["[exo] app victim (env 2) exited with status 0"],
            ..GOOD
        };
        let ok = Outcome::Kernel(KernelExit::Exited(0));
        let genuine = "hog| working\n[exo] app victim (env 2) exited with status 0\n";
        assert_eq!(kind(judge(&kernel_says, &run(ok, genuine))), None);
        let forged = "hog| [exo] app victim (env 2) exited with status 0\n";
        assert_eq!(
            kind(judge(&kernel_says, &run(ok, forged))),
            Some(FailureKind::MissingSerial)
        );
        assert_eq!(
            crate::qemu::app_text("hog| netmon[1]: ready"),
            "netmon[1]: ready"
        );
        assert_eq!(crate::qemu::app_text("[exo] a| b"), "[exo] a| b");
    }

    #[test]
    fn scenario_names_are_unique() {
        for (index, scenario) in SCENARIOS.iter().enumerate() {
            assert!(
                SCENARIOS[..index]
                    .iter()
                    .all(|other| other.name != scenario.name)
            );
        }
    }
}
