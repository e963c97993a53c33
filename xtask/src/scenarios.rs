//! The QEMU scenarios `cargo xtask test` runs: a typed table, and how a run is judged.
//!
//! To add one, append a [`Scenario`] to [`SCENARIOS`]: the kernel command line (which apps,
//! which self-test), the kernel exit expected, and text the serial output must contain. A
//! scenario whose point is to prove the harness catches a broken kernel says so with
//! [`Expect::HarnessFailure`]: it passes only if the run is judged failed for that reason.
use crate::qemu::{KERNEL_MARK, Outcome, Run};
use crate::topology::{GUEST_ADDRESS, TAP, Topology};
use exo_abi::KernelExit;
use std::fmt;
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

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
        // kernel stays up, every frame is accounted for exactly once, and the UDP echo and
        // ping are still answered correctly afterwards.
        name: "net-flood",
        cmdline: "apps=ashd monitor=ashd arg=7365727665",
        exit: KernelExit::Exited(0),
        serial: &[
            "ashd: ready",
            "balanced true",
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

/// The guest woke its app with frames (a `net_wait` that returned a non-zero count).
fn woken_by_frames(session: &Session<'_>) -> Option<String> {
    session
        .seen
        .iter()
        .find(|line| line.contains("ashd: woke (Ok(") && !line.contains("ashd: woke (Ok(0))"))
        .cloned()
}

/// The `ash-tap` clients, in order; each bounded in count and time.
fn ash_clients(session: &mut Session<'_>) -> Result<(), String> {
    session.wait_for("ashd: ready", Duration::from_secs(60))?;
    let arping = session.client(
        "arping",
        &["-c", "3", "-w", "10", "-I", TAP, GUEST_ADDRESS],
        CLIENT_DEADLINE,
        None,
    )?;
    let arping = String::from_utf8_lossy(&arping);
    if !arping.contains("Received 3 response(s)") {
        return Err(format!("arping: {arping}"));
    }
    let ping = session.client(
        "ping",
        &["-c", "3", "-i", "0.2", "-W", "2", GUEST_ADDRESS],
        CLIENT_DEADLINE,
        None,
    )?;
    let ping = String::from_utf8_lossy(&ping);
    if !ping.contains("3 received") {
        return Err(format!("ping: {ping}"));
    }
    let payload: Vec<u8> = (0..300u32).map(|i| (i * 7 + 3) as u8).collect();
    let echoed = udp(session, 7, &payload, true)?;
    if echoed != payload {
        return Err(format!(
            "UDP echo: sent {} bytes, got back {echoed:?}",
            payload.len()
        ));
    }
    let mut total = 0u64;
    for addend in [5u64, 7, 30] {
        total += addend;
        let reply = udp(session, 9000, &addend.to_be_bytes(), true)?;
        if reply != total.to_be_bytes() {
            return Err(format!(
                "remote increment by {addend}: reply {reply:?}, wanted {total}"
            ));
        }
    }
    session.drain();
    if let Some(line) = woken_by_frames(session) {
        return Err(format!(
            "the app was woken while its handlers answered: {line}"
        ));
    }
    for _ in 0..4 {
        udp(session, 9001, b"abort me", false)?;
    }
    session.wait_for("disabled Ok(1)", Duration::from_secs(20))?;
    // The others are unaffected.
    let echoed = udp(session, 7, b"still here", true)?;
    if echoed != b"still here" {
        return Err(format!(
            "UDP echo after the failing handler was disabled: {echoed:?}"
        ));
    }
    // Message vectoring: the payload lands in slot 5 (the second page of the app's buffer
    // region), its checksum verified while copying; the handler wakes the app.
    let mut vectored = 5u32.to_be_bytes().to_vec();
    vectored.extend((0..1000u32).map(|i| (i * 7 + 3) as u8));
    udp(session, 9002, &vectored, false)?;
    session.wait_for("ashd: vectored slot 5", Duration::from_secs(20))?;
    // A handler's upcall carries its argument (here the datagram's first eight bytes).
    udp(
        session,
        9007,
        &0x1122_3344_5566_7788u64.to_be_bytes(),
        false,
    )?;
    session.wait_for("ashd: upcall from handler", Duration::from_secs(20))?;
    udp(session, 9003, b"quit", false)?;
    Ok(())
}

/// Malformed frames sent at layer 2 with scapy on the tap device: runts, IPv4 headers with
/// impossible header lengths, total lengths and option lengths, tiny and overlapping
/// fragments, IPv6 with a truncated header and a wrong payload length, stacks of VLAN tags
/// (802.1Q, 802.1ad, 0x9100), 802.3/LLC frames, and ARP with wrong address lengths; bounded in
/// count and rate. Every one must be counted (malformed, unmatched, or taken by a handler).
const SCAPY_MALFORMED: &str = r#"
from scapy.all import Ether, Dot1Q, Dot1AD, IP, IPv6, UDP, TCP, ICMP, ARP, LLC, Raw, fragment, sendp, conf
conf.verb = 0
guest, tap = "10.0.2.15", "tap0"
mac = "52:54:00:12:34:56"
eth = Ether(dst=mac)
frames = []
frames += [Raw(bytes(range(n))) for n in (1, 6, 13)]                   # runts
frames += [eth/IP(dst=guest, ihl=ihl)/UDP(dport=7)/(b"x" * 8) for ihl in (0, 1, 4, 15)]
frames += [eth/IP(dst=guest, len=n)/UDP(dport=7)/(b"y" * 16) for n in (0, 19, 21, 65535)]
frames += [eth/IP(dst=guest, options=b"\x44\x00\x05\x00")/UDP(dport=7)/b"o"]
frames += [eth/f for f in fragment(IP(dst=guest)/UDP(dport=7)/(b"f" * 200), fragsize=8)]
frames += [eth/IP(dst=guest, frag=1, flags="MF")/(b"overlap" * 4) for _ in range(5)]
frames += [eth/IPv6(dst="fe80::1", plen=n)/UDP(dport=7)/b"6" for n in (0, 1, 9000)]
frames += [Ether(dst=mac, type=0x86dd)/Raw(b"\x60\x00\x00")]
frames += [eth/Dot1Q(vlan=1)/Dot1Q(vlan=2)/Dot1Q(vlan=3)/IP(dst=guest)/UDP(dport=7)/b"q"]
frames += [eth/Dot1AD(vlan=5)/Dot1Q(vlan=6)/IP(dst=guest)/UDP(dport=7)/b"ad"]
frames += [Ether(dst=mac, type=0x9100)/Raw(b"\x00\x07\x08\x00" + bytes(IP(dst=guest)/UDP(dport=7)/b"old"))]
frames += [Ether(dst=mac, type=0x8100)/Raw(b"\x00")]                   # a cut tag
frames += [Ether(dst=mac)/LLC(dsap=0x42, ssap=0x42, ctrl=3)/Raw(b"stp" * 10)]
frames += [eth/ARP(pdst=guest, hwlen=9, plen=2)]
frames += [eth/IP(dst=guest)/TCP(dport=80, dataofs=1)/b"t", eth/IP(dst=guest)/ICMP(type=8)/b""]
sendp(frames * 5, iface=tap, inter=0.002)
print("sent", len(frames) * 5)
"#;

/// The `net-flood` clients: bounded floods, then the services checked byte for byte.
fn flood_clients(session: &mut Session<'_>) -> Result<(), String> {
    session.wait_for("ashd: ready", Duration::from_secs(60))?;
    let floods: [&[&str]; 6] = [
        // UDP to the echo handler's port: every one answered by the kernel.
        &["-2", "-p", "7", "-d", "120", "-c", "1500", "-i", "u300"],
        // SYNs to a port nobody owns: matched by no filter, counted, dropped.
        &["-S", "-p", "80", "-c", "1500", "-i", "u200"],
        // Every TCP flag at once.
        &[
            "-F", "-S", "-R", "-P", "-A", "-U", "-X", "-Y", "-p", "7", "-c", "500", "-i", "u300",
        ],
        // ICMP echo: answered by the ICMP handler.
        &["-1", "-c", "1000", "-i", "u300"],
        // UDP in 16-byte fragments: no fragment claims a port.
        &[
            "-2", "-f", "-p", "7", "-d", "200", "-c", "300", "-i", "u500",
        ],
        // UDP with bad checksums.
        &["-2", "-b", "-p", "7", "-d", "64", "-c", "500", "-i", "u300"],
    ];
    for flood in floods {
        let mut arguments = flood.to_vec();
        arguments.extend(["-q", GUEST_ADDRESS]);
        // hping3's exit status says whether replies came, which depends on the flood: what
        // matters is that it ran to its count within its time.
        session
            .topology
            .run("hping3", &arguments, Duration::from_secs(30), None)
            .map_err(|error| format!("hping3 {}: {error}", arguments.join(" ")))?;
    }
    let sent = session.client(
        "/usr/bin/python3",
        &["-c", SCAPY_MALFORMED],
        CLIENT_DEADLINE * 2,
        None,
    )?;
    if !sent.starts_with(b"sent") {
        return Err(format!(
            "scapy did not send the malformed frames: {}",
            String::from_utf8_lossy(&sent)
        ));
    }
    let payload: Vec<u8> = (0..300u32).map(|i| (i * 13 + 1) as u8).collect();
    let echoed = udp(session, 7, &payload, true)?;
    if echoed != payload {
        return Err(format!(
            "UDP echo after the floods: sent {} bytes, got back {echoed:?}",
            payload.len()
        ));
    }
    let ping = session.client(
        "ping",
        &["-c", "3", "-i", "0.2", "-W", "2", GUEST_ADDRESS],
        CLIENT_DEADLINE,
        None,
    )?;
    let ping = String::from_utf8_lossy(&ping);
    if !ping.contains("3 received") {
        return Err(format!("ping after the floods: {ping}"));
    }
    udp(session, 9003, b"quit", false)?;
    Ok(())
}

/// Time allowed for the churn scenario: 100,000 binds and unbinds through TCG (a debug
/// kernel takes a few milliseconds for each pair).
const CHURN_TIMEOUT: Duration = Duration::from_secs(900);

/// Frames one round of the churn clients sends to each port.
const CHURN_ROUND_FRAMES: u64 = 500;
/// Most rounds (at about a second each) before the clients give up on the churn finishing.
const CHURN_MAX_ROUNDS: u64 = 800;

/// The guest's MAC, from the kernel's `net: virtio-net ... MAC [52, 54, ...]` line.
fn guest_mac(line: &str) -> Result<String, String> {
    let bytes = line
        .split_once("MAC [")
        .and_then(|(_, rest)| rest.split_once(']'))
        .map(|(bytes, _)| bytes.split(", ").collect::<Vec<_>>().join(":"))
        .ok_or_else(|| format!("no MAC in {line:?}"))?;
    if bytes.len() != 17 {
        return Err(format!("not a MAC: {bytes:?}"));
    }
    Ok(bytes)
}

/// The `filter-churn` clients: the guest's MAC as a static neighbour (no ARP responder runs),
/// then rounds of hping3 to the steady port and to the churn port, each bounded in count and
/// rate, until the app says its cycles are done (at most [`CHURN_MAX_ROUNDS`]); then the quit
/// datagram, which ends the churn, and the check that the kernel took every frame sent.
fn churn_clients(session: &mut Session<'_>) -> Result<(), String> {
    let nic = session.wait_for("MAC [", Duration::from_secs(60))?;
    let mac = guest_mac(&nic)?;
    session.client(
        "ip",
        &[
            "neigh",
            "replace",
            GUEST_ADDRESS,
            "lladdr",
            &mac,
            "dev",
            TAP,
        ],
        CLIENT_DEADLINE,
        None,
    )?;
    session.wait_for("churn: ready", Duration::from_secs(120))?;
    let count = CHURN_ROUND_FRAMES.to_string();
    let mut steady = 0;
    for _ in 0..CHURN_MAX_ROUNDS {
        for port in ["9300", "9301"] {
            let arguments = [
                "-2",
                "-p",
                port,
                "-d",
                "32",
                "-c",
                &count,
                "-i",
                "u1000",
                "-q",
                GUEST_ADDRESS,
            ];
            // Nothing answers UDP here, so hping3's status says nothing: what matters is the
            // count, which the app checks.
            session
                .topology
                .run("hping3", &arguments, Duration::from_secs(30), None)
                .map_err(|error| format!("hping3 {}: {error}", arguments.join(" ")))?;
        }
        steady += CHURN_ROUND_FRAMES;
        session.drain();
        if session.seen.iter().any(|line| line.contains("cycles done")) {
            break;
        }
    }
    // The quit datagram, again if it was lost (the app counts every copy it sees).
    // Every frame sent (to both ports, and the quit the app saw) was taken by the kernel.
    let done = format!("rx {} = delivered", 2 * steady + 1);
    let mut last = Err(String::new());
    for _ in 0..3 {
        udp(session, 9302, b"quit", false)?;
        last = session.wait_for(&done, Duration::from_secs(20));
        if last.is_ok() {
            break;
        }
    }
    last.map(drop)
}

/// Time allowed for the libnet scenario: its clients move a few MiB through TCG.
const LIBNET_TAP_TIMEOUT: Duration = Duration::from_secs(240);

/// Byte `index` of httpd's `big.bin` (as `apps/httpd/build.rs` writes it).
fn httpd_big_file_byte(index: usize) -> u8 {
    let x = (index as u32).wrapping_mul(2_654_435_761);
    (x >> 24) as u8 ^ (index >> 12) as u8
}

/// The site httpd embeds: path and the bytes it must serve.
pub fn httpd_site() -> Result<Vec<(&'static str, Vec<u8>)>, String> {
    let site = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../apps/httpd/site");
    let read = |name: &str| {
        std::fs::read(site.join(name))
            .map_err(|error| format!("reading the site's {name}: {error}"))
    };
    Ok(vec![
        ("/", read("index.html")?),
        ("/index.html", read("index.html")?),
        ("/about.html", read("about.html")?),
        ("/style.css", read("style.css")?),
        ("/logo.svg", read("logo.svg")?),
        ("/1k.html", read("1k.html")?),
        (
            "/100k.bin",
            (0..100 << 10).map(httpd_big_file_byte).collect(),
        ),
        ("/big.bin", (0..1 << 20).map(httpd_big_file_byte).collect()),
    ])
}

/// httpd's bad input from scapy (bad checksums, resets, a SYN flood, impossible flags), then
/// 20 clients gone mid-response and 300 connections in a row; `label` names the run.
fn bad_input_and_churn(session: &Session<'_>, label: &str) -> Result<(), String> {
    let sent = session.client(
        "/usr/bin/python3",
        &["-c", SCAPY_BAD_INPUT],
        CLIENT_DEADLINE * 2,
        None,
    )?;
    if !sent.starts_with(b"sent") {
        return Err("scapy did not send the bad input".into());
    }
    let style =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../apps/httpd/site/style.css");
    let start = Instant::now();
    let churned = session.client(
        "/usr/bin/python3",
        &["-c", PYTHON_CONNECTION_CHURN, &style.to_string_lossy()],
        CLIENT_DEADLINE * 6,
        None,
    )?;
    if !churned.starts_with(b"churned") {
        return Err("the connection churn did not finish".into());
    }
    eprintln!(
        "{label}: 20 clients gone mid-response, then 300 connections in a row, in {:.2} s",
        start.elapsed().as_secs_f64()
    );
    Ok(())
}

/// For a tap scenario whose app needs the NIC but no peer: nothing to send.
fn no_clients(_session: &mut Session<'_>) -> Result<(), String> {
    Ok(())
}

/// The line of a client's report that starts with `name` (trimmed; empty if none).
fn report_field(text: &str, name: &str) -> String {
    text.lines()
        .find(|line| line.trim_start().starts_with(name))
        .unwrap_or("")
        .trim()
        .to_string()
}

/// `ab -n 1000 -c 10` on httpd's front page: every request complete, none failed; `label`
/// names the run in what is printed.
fn ab_thousand(session: &Session<'_>, label: &str) -> Result<(), String> {
    let url = format!("http://{GUEST_ADDRESS}/");
    let ab = session.client(
        "ab",
        &["-n", "1000", "-c", "10", "-s", "10", &url],
        CLIENT_DEADLINE * 4,
        None,
    )?;
    let ab = String::from_utf8_lossy(&ab);
    if !report_field(&ab, "Complete requests:").ends_with(" 1000")
        || !report_field(&ab, "Failed requests:").ends_with(" 0")
    {
        return Err(format!("ab: {ab}"));
    }
    eprintln!(
        "{label}: ab -n 1000 -c 10: {}; {}",
        report_field(&ab, "Requests per second:"),
        report_field(&ab, "Time per request:")
    );
    Ok(())
}

/// `curl` of `path` on httpd; the body.
fn curl(session: &Session<'_>, path: &str) -> Result<Vec<u8>, String> {
    let url = format!("http://{GUEST_ADDRESS}{path}");
    session.client(
        "curl",
        &["-s", "-S", "--max-time", "30", &url],
        CLIENT_DEADLINE * 3,
        None,
    )
}

/// Checks a served body against the expected bytes.
fn same(what: &str, got: &[u8], wanted: &[u8]) -> Result<(), String> {
    if got == wanted {
        return Ok(());
    }
    let first = got.iter().zip(wanted).position(|(a, b)| a != b);
    Err(format!(
        "{what}: got {} bytes, wanted {} (first difference at {first:?})",
        got.len(),
        wanted.len()
    ))
}

/// Bad input sent with scapy: segments to httpd's port with bad checksums (each dropped and
/// counted by the stack's device), a reset storm against the port with random sequence
/// numbers, a SYN flood from many source ports, and impossible flag combinations (SYN+FIN,
/// SYN+RST, a lone FIN, FIN+PSH+URG, no flags); bounded in count and rate. A SYN to a port no
/// app owns must go unanswered.
const SCAPY_BAD_INPUT: &str = r#"
import random
from scapy.all import IP, TCP, send, conf
conf.verb = 0
random.seed(12)
guest = "10.0.2.15"
send(IP(dst=guest)/TCP(sport=40000, dport=80, flags="S", seq=1000, chksum=0xdead), count=20, inter=0.01)
send([IP(dst=guest)/TCP(sport=random.randint(1024, 65535), dport=80, flags="R", seq=random.randint(0, 2**32 - 1)) for _ in range(100)], inter=0.005)
send([IP(dst=guest)/TCP(sport=20000 + i, dport=80, flags="S", seq=random.randint(0, 2**32 - 1)) for i in range(200)], inter=0.005)
for flags in ["SF", "SR", "F", "FPU", ""]:
    send(IP(dst=guest)/TCP(sport=41000, dport=80, flags=flags, seq=random.randint(0, 2**32 - 1)), count=10, inter=0.005)
# A port nobody owns: no stack answers (the kernel drops what no filter claims).
from scapy.all import sr1
if sr1(IP(dst=guest)/TCP(sport=42000, dport=8081, flags="S"), timeout=1) is not None:
    raise SystemExit("an answer for an unowned port")
print("sent")
"#;

/// Clients that misbehave at the socket level: 20 that ask for the 1 MiB file and close after
/// reading 10,000 bytes of it (their unread data makes the close a reset), then 300
/// connections opened, used for one request and closed in a row, each answer checked.
const PYTHON_CONNECTION_CHURN: &str = r#"
import socket, sys
guest = ("10.0.2.15", 80)
for _ in range(20):
    s = socket.create_connection(guest, timeout=10)
    s.sendall(b"GET /big.bin HTTP/1.1\r\nHost: exo\r\n\r\n")
    got = 0
    while got < 10000:
        chunk = s.recv(4096)
        if not chunk:
            sys.exit("closed early")
        got += len(chunk)
    s.close()
style = open(sys.argv[1], "rb").read()
for i in range(300):
    s = socket.create_connection(guest, timeout=10)
    s.sendall(b"GET /style.css HTTP/1.1\r\nHost: exo\r\nConnection: close\r\n\r\n")
    data = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    s.close()
    if not data.startswith(b"HTTP/1.1 200 OK\r\n") or not data.endswith(style):
        sys.exit("connection %d: %r" % (i, data[:100]))
print("churned")
"#;

/// The `libnet-tap` clients, in order; each bounded in count and time.
fn libnet_clients(session: &mut Session<'_>) -> Result<(), String> {
    let fetch_server = FetchServer::start(session)?;
    for ready in ["ashd: ready", "echo: ready", "httpd: ready"] {
        session.wait_for(ready, Duration::from_secs(60))?;
    }
    let ping = session.client(
        "ping",
        &["-c", "3", "-i", "0.2", "-W", "2", GUEST_ADDRESS],
        CLIENT_DEADLINE,
        None,
    )?;
    if !String::from_utf8_lossy(&ping).contains("3 received") {
        return Err(format!("ping: {}", String::from_utf8_lossy(&ping)));
    }
    let site = httpd_site()?;
    for (path, body) in &site {
        let start = Instant::now();
        let got = curl(session, path)?;
        same(&format!("curl {path}"), &got, body)?;
        eprintln!(
            "libnet-tap: curl {path}: {} bytes identical in {:.2} s",
            got.len(),
            start.elapsed().as_secs_f64()
        );
    }
    // 100 requests on one connection: curl reuses it, and says how many it opened each time.
    let url = format!("http://{GUEST_ADDRESS}/about.html");
    let mut arguments = vec![
        "-s",
        "-S",
        "--max-time",
        "60",
        "-w",
        "connects=%{num_connects}\n",
    ];
    for _ in 0..100 {
        arguments.push(&url);
    }
    let start = Instant::now();
    let kept = session.client("curl", &arguments, CLIENT_DEADLINE * 4, None)?;
    let about = &site[2].1;
    let mut wanted = Vec::new();
    for index in 0..100 {
        wanted.extend_from_slice(about);
        wanted.extend_from_slice(if index == 0 {
            b"connects=1\n"
        } else {
            b"connects=0\n"
        });
    }
    same("100 requests on one kept-alive connection", &kept, &wanted)?;
    eprintln!(
        "libnet-tap: 100 keep-alive requests on one connection in {:.2} s",
        start.elapsed().as_secs_f64()
    );
    let head = session.client(
        "curl",
        &["-s", "-S", "-I", "--max-time", "10", &url],
        CLIENT_DEADLINE,
        None,
    )?;
    let head = String::from_utf8_lossy(&head);
    let length = format!("Content-Length: {}\r\n", about.len());
    if !head.starts_with("HTTP/1.1 200 OK\r\n")
        || !head.contains(&length)
        || !head.ends_with("\r\n\r\n")
    {
        return Err(format!("HEAD: {head:?}"));
    }
    let missing = format!("http://{GUEST_ADDRESS}/no-such-page");
    let code = session.client(
        "curl",
        &[
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--max-time",
            "10",
            &missing,
        ],
        CLIENT_DEADLINE,
        None,
    )?;
    if code != b"404" {
        return Err(format!(
            "missing page: status {}",
            String::from_utf8_lossy(&code)
        ));
    }
    let target = format!("TCP:{GUEST_ADDRESS}:80");
    let bad = session.client(
        "socat",
        &["-t", "5", "-T", "10", "-", &target],
        CLIENT_DEADLINE,
        Some(b"NONSENSE\r\n\r\n"),
    )?;
    if !bad.starts_with(b"HTTP/1.1 400 Bad Request\r\n") {
        return Err(format!(
            "garbage request: {:?}",
            String::from_utf8_lossy(&bad)
        ));
    }
    // TCP echo: 1 MiB through the echo app, byte-identical.
    let stream: Vec<u8> = (0..1usize << 20)
        .map(|i| httpd_big_file_byte(i ^ 0x5555))
        .collect();
    let target = format!("TCP:{GUEST_ADDRESS}:7");
    let start = Instant::now();
    let echoed = session.client(
        "socat",
        &["-t", "30", "-T", "30", "-", &target],
        CLIENT_DEADLINE * 4,
        Some(&stream),
    )?;
    same("TCP echo of 1 MiB", &echoed, &stream)?;
    eprintln!(
        "libnet-tap: TCP echo of {} bytes identical in {:.2} s",
        echoed.len(),
        start.elapsed().as_secs_f64()
    );
    let payload: Vec<u8> = (0..1000u32).map(|i| (i * 13 + 5) as u8).collect();
    let echoed = udp(session, 7007, &payload, true)?;
    same("UDP echo", &echoed, &payload)?;
    bad_input_and_churn(session, "libnet-tap")?;
    // httpd still serves, byte-identical.
    let got = curl(session, "/")?;
    same("curl / after the bad input", &got, &site[0].1)?;
    fetch_server.check(session)?;
    for port in [9107, 9180, 9003] {
        udp(session, port, b"quit", false)?;
    }
    Ok(())
}

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
fn fetch_clients(session: &mut Session<'_>) -> Result<(), String> {
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
struct FetchServer {
    directory: std::path::PathBuf,
    bytes: usize,
    digest: String,
    _server: crate::topology::Background,
}

impl FetchServer {
    fn start(session: &Session<'_>) -> Result<FetchServer, String> {
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
    fn check(&self, session: &mut Session<'_>) -> Result<(), String> {
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

/// The drop and retransmission counters of an app's end-of-run line (`NAME: done: ...
/// device DeviceCounters { ... }`) that must be 0 after a clean run: every way a frame is
/// lost on the way in or out of the stack, and every segment the stack sent twice (smoltcp's
/// retransmission timeout is at least 1 s, so one is a stall). The peer's retransmissions
/// (`rx_peer_retransmits`) are printed, not required to be 0: Linux's timeout is 200 ms, which
/// an emulated guest on a loaded host can outlast without losing anything.
const LOSS_COUNTERS: &[&str] = &[
    "rx_malformed",
    "rx_bad_checksum",
    "tx_refused",
    "tx_failed",
    "tx_retransmits",
    "rx_ring_full",
];

/// Counter `name` of a `DeviceCounters { name: N, ... }` in `line`.
fn device_counter(line: &str, name: &str) -> Option<u64> {
    let at = line.find(&format!(" {name}: "))? + name.len() + 3;
    let digits: String = line[at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

/// Waits for `app`'s end-of-run line and checks it lost nothing and sent nothing twice.
fn no_loss(session: &mut Session<'_>, app: &str) -> Result<(), String> {
    let line = session.wait_for(&format!("{app}: done:"), Duration::from_secs(30))?;
    let mut report = Vec::new();
    for name in LOSS_COUNTERS {
        let value = device_counter(&line, name).ok_or(format!("no {name} in {line:?}"))?;
        if value != 0 {
            return Err(format!("{app}: {name} = {value}, wanted 0: {line}"));
        }
        report.push(format!("{name} 0"));
    }
    let frames = ["rx_frames", "tx_frames", "rx_peer_retransmits"]
        .map(|name| device_counter(&line, name).unwrap_or(0));
    eprintln!(
        "libnet: {app}: {} frames in, {} out; {}; the peer sent {} segments again",
        frames[0],
        frames[1],
        report.join(", "),
        frames[2]
    );
    Ok(())
}

/// The `libnet-load` clients: the 1 MiB file with curl (download), 1 MiB through echo with
/// socat (upload and download), then ab and wrk against httpd's front page; httpd and echo
/// must then report no frame lost and no segment they sent twice.
fn load_clients(session: &mut Session<'_>) -> Result<(), String> {
    for ready in ["ashd: ready", "httpd: ready", "echo: ready"] {
        session.wait_for(ready, Duration::from_secs(60))?;
    }
    let site = httpd_site()?;
    let (_, big) = site
        .iter()
        .find(|(path, _)| *path == "/big.bin")
        .ok_or("no /big.bin in the site")?;
    let start = Instant::now();
    let got = curl(session, "/big.bin")?;
    same("curl /big.bin", &got, big)?;
    eprintln!(
        "libnet-load: curl /big.bin: {} bytes identical in {:.2} s",
        got.len(),
        start.elapsed().as_secs_f64()
    );
    let stream: Vec<u8> = (0..1usize << 20)
        .map(|i| httpd_big_file_byte(i ^ 0x3c3c))
        .collect();
    let target = format!("TCP:{GUEST_ADDRESS}:7");
    let start = Instant::now();
    let echoed = session.client(
        "socat",
        &["-t", "30", "-T", "30", "-", &target],
        CLIENT_DEADLINE * 4,
        Some(&stream),
    )?;
    same("TCP echo of 1 MiB", &echoed, &stream)?;
    eprintln!(
        "libnet-load: socat echo of {} bytes identical in {:.2} s",
        echoed.len(),
        start.elapsed().as_secs_f64()
    );
    let url = format!("http://{GUEST_ADDRESS}/");
    ab_thousand(session, "libnet-load")?;
    let wrk = session.client(
        "wrk",
        &["-t1", "-c16", "-d5s", "--timeout", "5s", &url],
        CLIENT_DEADLINE,
        None,
    )?;
    let wrk = String::from_utf8_lossy(&wrk);
    if wrk.contains("Socket errors") || wrk.contains("Non-2xx") {
        return Err(format!("wrk: {wrk}"));
    }
    eprintln!(
        "libnet-load: wrk -t1 -c16 -d5s: {}; {}",
        report_field(&wrk, "Requests/sec:"),
        wrk.lines()
            .find(|line| line.contains("requests in"))
            .unwrap_or("")
            .trim()
    );
    let got = curl(session, "/")?;
    same("curl / after the load", &got, &site[0].1)?;
    for port in [9180, 9107, 9003] {
        udp(session, port, b"quit", false)?;
    }
    no_loss(session, "httpd")?;
    no_loss(session, "echo")
}

/// The scapy client of `libnet-tcp-edges`, segment by segment (see the script).
const SCAPY_TCP_EDGES: &str = include_str!("tcp_edges.py");

/// The `libnet-tcp-edges` clients: the edge cases against the first echo, then both echos
/// told to quit; the probing echo must have asked after the first one was ready.
fn tcp_edge_clients(session: &mut Session<'_>) -> Result<(), String> {
    for ready in ["ashd: ready", "echo: ready tcp 7", "echo: ready tcp 8"] {
        session.wait_for(ready, Duration::from_secs(60))?;
    }
    let position = |session: &Session<'_>, text: &str| {
        session.seen.iter().position(|line| line.contains(text))
    };
    match (
        position(session, "echo: ready tcp 7"),
        position(session, "another app's ring"),
    ) {
        (Some(ready), Some(probe)) if ready < probe => {}
        order => {
            return Err(format!(
                "the probing echo asked before the first echo was ready (lines {order:?})"
            ));
        }
    }
    let start = Instant::now();
    let report = session.client(
        "/usr/bin/python3",
        &["-c", SCAPY_TCP_EDGES, TAP],
        CLIENT_DEADLINE * 4,
        None,
    )?;
    let report = String::from_utf8_lossy(&report);
    if !report.contains("edges done") {
        return Err(format!("tcp edges: {report}"));
    }
    for line in report.lines() {
        eprintln!("libnet-tcp-edges: {line}");
    }
    eprintln!(
        "libnet-tcp-edges: the edge cases took {:.2} s",
        start.elapsed().as_secs_f64()
    );
    for port in [9107, 9108, 9003] {
        udp(session, port, b"quit", false)?;
    }
    Ok(())
}

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
    let site = httpd_site()?;
    for (path, body) in &site {
        let start = Instant::now();
        let got = curl(session, path)?;
        same(&format!("curl {path}"), &got, body)?;
        eprintln!(
            "cheetah={techniques}: curl {path}: {} bytes identical in {:.2} s",
            got.len(),
            start.elapsed().as_secs_f64()
        );
    }
    let url = format!("http://{GUEST_ADDRESS}/about.html");
    let mut arguments = vec![
        "-s",
        "-S",
        "--max-time",
        "60",
        "-w",
        "connects=%{num_connects}\n",
    ];
    for _ in 0..100 {
        arguments.push(&url);
    }
    let start = Instant::now();
    let kept = session.client("curl", &arguments, CLIENT_DEADLINE * 4, None)?;
    let mut wanted = Vec::new();
    for index in 0..100 {
        wanted.extend_from_slice(&site[2].1);
        wanted.extend_from_slice(if index == 0 {
            b"connects=1\n"
        } else {
            b"connects=0\n"
        });
    }
    same("100 requests on one kept-alive connection", &kept, &wanted)?;
    eprintln!(
        "cheetah={techniques}: 100 keep-alive requests on one connection in {:.2} s",
        start.elapsed().as_secs_f64()
    );
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

fn cheetah_prebuilt_clients(session: &mut Session<'_>) -> Result<(), String> {
    cheetah_clients(session, "prebuilt")
}

fn cheetah_cache_clients(session: &mut Session<'_>) -> Result<(), String> {
    cheetah_clients(session, "cache")
}

fn cheetah_piggyback_clients(session: &mut Session<'_>) -> Result<(), String> {
    cheetah_clients(session, "piggyback")
}

fn cheetah_all_clients(session: &mut Session<'_>) -> Result<(), String> {
    cheetah_clients(session, "prebuilt,cache,piggyback")
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
