//! The benchmarks, Linux side: the shared loops and Appel-Li driver of [`bench_common`] over
//! Linux's system calls, signals and processes.
use crate::sys::{self, Fork, SignalInfo, UserContext};
use bench_common::appel_li::{self, Protection, Resume};
use bench_common::loops::{self, rdtsc};
use bench_common::ops::{APPEL_LI_PAGES, MATMUL_N};
use bench_common::protocol::Line;
use bench_common::{Op, measure};
use std::io::{self, Write};
use std::sync::atomic::{AtomicU64, Ordering};

type Result<T> = std::result::Result<T, String>;

const PAGE_BYTES: u64 = 4096;

fn emit(line: Line<'_>) {
    println!("{line}");
}

/// Runs every operation in report order.
pub fn run_all() -> Result<()> {
    emit(Line::Begin { kernel: "linux" });
    sys::set_handler(sys::SIGILL, on_illegal_instruction).map_err(|e| format!("SIGILL: {e}"))?;
    sys::set_handler(sys::SIGSEGV, on_segmentation_fault).map_err(|e| format!("SIGSEGV: {e}"))?;
    let pages = LinuxPages::map().map_err(|e| format!("mapping the Appel-Li region: {e}"))?;
    for op in Op::ALL {
        match op {
            Op::NullSyscall => measure(op, timed_getpid, emit),
            // The host compares exo's self_id with the getpid measured for null_syscall.
            Op::SelfIdVsGetpid => {}
            Op::ExceptionDispatch => measure(op, timed_ud2, emit),
            // The host compares exo's raw-entry trap with the SIGILL round trip above.
            Op::ExceptionDispatchRawEntry => {}
            Op::PctRoundTrip => ping_pong(op, Channel::Pipe)?,
            Op::PctVsEventfd => ping_pong(op, Channel::Eventfd)?,
            Op::AppelLiTrap
            | Op::AppelLiProt1
            | Op::AppelLiProt100
            | Op::AppelLiUnprot100
            | Op::AppelLiAppel1
            | Op::AppelLiAppel2 => measure(
                op,
                |iterations| (appel_li::run(&pages, op, iterations), None),
                emit,
            ),
            Op::Matmul => matmul(),
        }
    }
    emit(Line::Done);
    Ok(())
}

fn timed_getpid(iterations: u64) -> (u64, Option<u64>) {
    let start = rdtsc();
    #[allow(unsafe_code)]
    // SAFETY: getpid with zero arguments has no memory effect.
    unsafe {
        loops::syscall_loop(sys::SYS_GETPID, iterations)
    };
    (rdtsc() - start, None)
}

fn timed_ud2(iterations: u64) -> (u64, Option<u64>) {
    let start = rdtsc();
    #[allow(unsafe_code)]
    // SAFETY: run_all installed on_illegal_instruction, which resumes the loop.
    unsafe {
        loops::ud2_loop(iterations)
    };
    (rdtsc() - start, None)
}

/// SIGILL: step over the benchmark's `ud2`; anything else is a bug: report and exit.
extern "C" fn on_illegal_instruction(_: i32, _: &SignalInfo, context: &mut UserContext) {
    if context.instruction_pointer() == loops::ud2_site() {
        context.set_instruction_pointer(loops::ud2_resume());
    } else {
        fatal(b"linux-init: unexpected SIGILL\n", 70);
    }
}

/// SIGSEGV: the Appel-Li policy decides.
extern "C" fn on_segmentation_fault(_: i32, info: &SignalInfo, context: &mut UserContext) {
    match appel_li::handle_fault(&LinuxPages, info.address, context.instruction_pointer()) {
        Resume::Retry => {}
        Resume::At(address) => context.set_instruction_pointer(address),
        Resume::Unhandled => fatal(b"linux-init: unexpected SIGSEGV\n", 71),
    }
}

/// Reports from a signal handler (raw write only) and ends the process.
fn fatal(message: &[u8], status: u8) -> ! {
    let _ = sys::write(2, message);
    sys::exit(status)
}

/// Base of the Appel-Li region (set once by [`LinuxPages::map`]; read by the handler).
static REGION: AtomicU64 = AtomicU64::new(0);

/// The Appel-Li region: anonymous pages, protected with `mprotect`.
struct LinuxPages;

impl LinuxPages {
    fn map() -> io::Result<LinuxPages> {
        let bytes = APPEL_LI_PAGES as u64 * PAGE_BYTES;
        let base = sys::map_anonymous(bytes)?;
        for page in 0..APPEL_LI_PAGES as u64 {
            // Fault every page in (writable and dirty) so no benchmark fault is a first touch.
            #[allow(unsafe_code)]
            // SAFETY: inside the fresh mapping, which nothing else references.
            unsafe {
                core::ptr::write_volatile((base + page * PAGE_BYTES) as *mut u64, page)
            };
        }
        REGION.store(base, Ordering::Relaxed);
        Ok(LinuxPages)
    }

    fn set(&self, first: usize, count: usize, protection: u64) {
        let address = self.page_address(first);
        if sys::mprotect(address, count as u64 * PAGE_BYTES, protection).is_err() {
            fatal(b"linux-init: mprotect failed\n", 72);
        }
    }
}

impl Protection for LinuxPages {
    fn page_address(&self, page: usize) -> u64 {
        REGION.load(Ordering::Relaxed) + page as u64 * PAGE_BYTES
    }

    fn protect(&self, first: usize, count: usize) {
        self.set(first, count, sys::PROT_NONE);
    }

    fn unprotect(&self, first: usize, count: usize) {
        self.set(first, count, sys::PROT_READ_WRITE);
    }
}

/// What the two processes of a ping-pong talk through.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Channel {
    /// Two pipes, one byte each way.
    Pipe,
    /// Two eventfds, one 8-byte counter each way.
    Eventfd,
}

/// A round trip between this process and a forked partner: write to it, read its answer.
fn ping_pong(op: Op, channel: Channel) -> Result<()> {
    let error = |what: &str, e: io::Error| format!("{}: {what}: {e}", op.name());
    // (our end to write, the partner's end to read) and (partner's to write, ours to read).
    let (there_read, there_write, back_read, back_write) = match channel {
        Channel::Pipe => {
            let (a, b) = sys::pipe().map_err(|e| error("pipe", e))?;
            let (c, d) = sys::pipe().map_err(|e| error("pipe", e))?;
            (a, b, c, d)
        }
        Channel::Eventfd => {
            let there = sys::eventfd().map_err(|e| error("eventfd", e))?;
            let back = sys::eventfd().map_err(|e| error("eventfd", e))?;
            (there, there, back, back)
        }
    };
    let message: [u8; 8] = 1u64.to_ne_bytes();
    let length = match channel {
        Channel::Pipe => 1,
        Channel::Eventfd => 8,
    };
    let _ = io::stdout().flush();
    match sys::fork().map_err(|e| error("fork", e))? {
        Fork::Child => {
            if channel == Channel::Pipe {
                sys::close(there_write);
                sys::close(back_read);
            }
            let mut buffer = [0u8; 8];
            loop {
                match sys::read(there_read, &mut buffer[..length]) {
                    // Pipe: end of file. Eventfd: a value other than 1 means stop.
                    Ok(0) => sys::exit(0),
                    Ok(_) if channel == Channel::Eventfd && buffer != message => sys::exit(0),
                    Ok(_) => {}
                    Err(_) => sys::exit(1),
                }
                if sys::write(back_write, &message[..length]).is_err() {
                    sys::exit(1);
                }
            }
        }
        Fork::Parent { child } => {
            if channel == Channel::Pipe {
                sys::close(there_read);
                sys::close(back_write);
            }
            let mut failed = false;
            measure(
                op,
                |iterations| {
                    let mut buffer = [0u8; 8];
                    let start = rdtsc();
                    for _ in 0..iterations {
                        let sent = sys::write(there_write, &message[..length]);
                        let received = sys::read(back_read, &mut buffer[..length]);
                        failed |= sent.is_err() || received.is_err();
                    }
                    (rdtsc() - start, None)
                },
                emit,
            );
            match channel {
                Channel::Pipe => sys::close(there_write),
                Channel::Eventfd => {
                    let _ = sys::write(there_write, &2u64.to_ne_bytes());
                }
            }
            let (_, status) = sys::wait(child as i64).map_err(|e| error("wait", e))?;
            for fd in [there_write, back_read] {
                sys::close(fd);
            }
            if failed || status != 0 {
                return Err(format!(
                    "{}: a read or write failed (partner status {status:#x})",
                    op.name()
                ));
            }
            Ok(())
        }
    }
}

fn matmul() {
    let n = MATMUL_N;
    let (a, b, mut c) = (
        &bench_common::MATMUL_A,
        &bench_common::MATMUL_B,
        vec![0u64; n * n],
    );
    measure(
        Op::Matmul,
        |iterations| {
            let start = rdtsc();
            for _ in 0..iterations {
                loops::matmul(a, b, &mut c, n);
            }
            (rdtsc() - start, Some(bench_common::checksum(&c)))
        },
        emit,
    );
}
