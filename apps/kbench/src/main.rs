//! The exo side of `cargo xtask bench kernel`: runs every operation of [`bench_common::ops`]
//! with the loops and measuring discipline Linux's `/init` uses (`bench/linux-init`), over
//! exo's primitives, and prints `BENCH` lines. An operation whose primitive the kernel does
//! not offer is reported as unavailable, never as a number.
//!
//! - `null_syscall`: the `null` call (answered in the kernel's entry stub);
//!   `self_id_vs_getpid`: `self_id` (the full dispatch path);
//! - `exception_dispatch`: `ud2` delivered to the exception upcall; libnet's entry runs the
//!   handler below, which steps over it, and resumes the code without entering the kernel;
//!   `exception_dispatch_raw_entry`: the same trap to a two-instruction entry of our own
//!   (step over, jump to libnet's resume), which leaves the kernel's share;
//! - `pct_round_trip`: `pct_call` to a second kbench environment serving an echo at its PCT
//!   entry (`pct::serve`), and its `pct_return`;
//! - Appel-Li: 100 pages from `page_alloc` mapped with `page_map`, protected with
//!   `page_protect` (one page) or `page_protect_range` (more), faults through the same
//!   exception upcall;
//! - `matmul`: the shared assembly, inputs from `bench_common`'s statics.
#![cfg_attr(target_os = "none", no_std, no_main)]
#![deny(unsafe_code)]

#[cfg(target_os = "none")]
libnet::entry!(app::main);

#[cfg(target_os = "none")]
mod app {
    use bench_common::appel_li::{self, Protection, Resume};
    use bench_common::loops::{self, rdtsc};
    use bench_common::ops::{APPEL_LI_PAGES, MATMUL_N};
    use bench_common::protocol::Line;
    use bench_common::{MATMUL_A, MATMUL_B, Op, measure};
    use libnet::abi::Syscall;
    use libnet::abi::cap::{CapHandle, Rights};
    use libnet::abi::syscall::ANY_FRAME;
    use libnet::abi::upcall::UpcallKind;
    use libnet::upcall::Frame;
    use libnet::{Error, env, pct, println, sys, upcall};

    /// `spawn` argument that makes a kbench environment the PCT server.
    const PCT_SERVER: u64 = 1;
    /// Where the Appel-Li region is mapped (PML4 slot 128, far from image and stack).
    const REGION: u64 = 0x0000_4000_0000_0000;
    const PAGE_BYTES: u64 = 4096;
    const INVALID_OPCODE: u64 = 6;
    const PAGE_FAULT: u64 = 14;
    const READ_WRITE: Rights = Rights::READ.union(Rights::WRITE);

    fn emit(line: Line<'_>) {
        println!("{line}");
    }

    pub fn main() -> u8 {
        if env::argument() == PCT_SERVER {
            pct::serve(|_caller, arguments| arguments);
        }
        upcall::install(false);
        upcall::on_exception(on_exception);
        emit(Line::Begin { kernel: "exo" });
        let pages = match ExoPages::map() {
            Ok(pages) => pages,
            Err(error) => {
                println!("kbench: mapping the Appel-Li region: {error:?}");
                return 1;
            }
        };
        let mut status = 0;
        for op in Op::ALL {
            match op {
                Op::NullSyscall => measure(op, |n| timed_syscalls(Syscall::Null, n), emit),
                Op::SelfIdVsGetpid => measure(op, |n| timed_syscalls(Syscall::SelfId, n), emit),
                Op::ExceptionDispatch => measure(op, timed_ud2, emit),
                Op::ExceptionDispatchRawEntry => {
                    let raw = raw_exception_entry as *const () as u64;
                    if let Err(error) = sys::set_upcall(UpcallKind::Exception, raw, 0) {
                        println!("kbench: set_upcall: {error:?}");
                        return 1;
                    }
                    measure(op, timed_ud2, emit);
                    // Back to libnet's entry, which the Appel-Li faults go through.
                    upcall::install(false);
                }
                Op::PctRoundTrip => {
                    if let Err(error) = pct_round_trip() {
                        println!("kbench: pct_round_trip: {error:?}");
                        status = 1;
                    }
                }
                // The host compares exo's pct_round_trip with Linux's eventfd round trip.
                Op::PctVsEventfd => {}
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
        status
    }

    fn timed_syscalls(call: Syscall, iterations: u64) -> (u64, Option<u64>) {
        let start = rdtsc();
        #[allow(unsafe_code)]
        // SAFETY: `null` and `self_id` with zero arguments change nothing the program uses.
        unsafe {
            loops::syscall_loop(call.number(), iterations)
        };
        (rdtsc() - start, None)
    }

    fn timed_ud2(iterations: u64) -> (u64, Option<u64>) {
        let start = rdtsc();
        #[allow(unsafe_code)]
        // SAFETY: `on_exception` (installed in main) resumes the loop after each ud2.
        unsafe {
            loops::ud2_loop(iterations)
        };
        (rdtsc() - start, None)
    }

    /// An exception upcall entry for the benchmark's `ud2` only: the kernel enters with
    /// `rdi` = the frame; step its `rip` over the two-byte instruction and resume.
    #[allow(unsafe_code)]
    #[unsafe(naked)]
    extern "C" fn raw_exception_entry() {
        core::arch::naked_asm!(
            "add qword ptr [rdi + {rip}], 2",
            "jmp {resume}",
            rip = const core::mem::offset_of!(Frame, rip),
            resume = sym upcall::resume,
        )
    }

    /// The app's exception handler (after libnet's probes): the benchmark's traps only.
    fn on_exception(frame: &mut Frame) -> bool {
        match frame.kind {
            INVALID_OPCODE if frame.rip == loops::ud2_site() => {
                frame.rip = loops::ud2_resume();
                true
            }
            PAGE_FAULT => match appel_li::handle_fault(&ExoPages, frame.fault_address, frame.rip) {
                Resume::Retry => true,
                Resume::At(address) => {
                    frame.rip = address;
                    true
                }
                Resume::Unhandled => false,
            },
            _ => false,
        }
    }

    /// Spawns the echo server, times round trips to it, and ends it.
    fn pct_round_trip() -> Result<(), Error> {
        let server = sys::spawn("kbench", PCT_SERVER)?;
        // Until the server reaches pct_wait it takes no calls.
        let ready = loop {
            match sys::pct_call(server, [0; 5]) {
                Err(Error::WouldBlock) => sys::yield_now(),
                other => break other,
            }
        };
        let mut result = ready.map(drop);
        if result.is_ok() {
            measure(
                Op::PctRoundTrip,
                |iterations| {
                    let start = rdtsc();
                    for index in 0..iterations {
                        let echoed = sys::pct_call(server, [index, 0, 0, 0, 0]);
                        if echoed.map(|values| values[0]) != Ok(index) {
                            result = Err(echoed.err().unwrap_or(Error::Unrecognized));
                        }
                    }
                    (rdtsc() - start, None)
                },
                emit,
            );
        }
        sys::env_destroy(server)?;
        result
    }

    /// The Appel-Li region: pages this app allocated and maps itself.
    struct ExoPages;

    impl ExoPages {
        fn map() -> Result<ExoPages, Error> {
            for page in 0..APPEL_LI_PAGES {
                let frame: CapHandle = sys::page_alloc(ANY_FRAME)?;
                sys::page_map(frame, ExoPages.page_address(page), READ_WRITE)?;
                // Touch it, as Linux's side does (exo maps eagerly: no first-touch fault).
                #[allow(unsafe_code)]
                // SAFETY: just mapped readable and writable; no Rust reference points there.
                unsafe {
                    core::ptr::write_volatile(ExoPages.page_address(page) as *mut u64, page as u64)
                };
            }
            Ok(ExoPages)
        }

        fn set(&self, first: usize, count: usize, access: Rights) {
            let address = self.page_address(first);
            let result = match count {
                1 => sys::page_protect(address, access),
                _ => sys::page_protect_range(address, count as u64, access),
            };
            if let Err(error) = result {
                println!("kbench: page protection failed: {error:?}");
                sys::exit(72);
            }
        }
    }

    impl Protection for ExoPages {
        fn page_address(&self, page: usize) -> u64 {
            REGION + page as u64 * PAGE_BYTES
        }

        fn protect(&self, first: usize, count: usize) {
            self.set(first, count, Rights::empty());
        }

        fn unprotect(&self, first: usize, count: usize) {
            self.set(first, count, READ_WRITE);
        }
    }

    /// The shared 64x64 product; the result lives on the stack (32 KiB of the 64 KiB exo
    /// gives).
    fn matmul() {
        let mut c = [0u64; MATMUL_N * MATMUL_N];
        measure(
            Op::Matmul,
            |iterations| {
                let start = rdtsc();
                for _ in 0..iterations {
                    loops::matmul(&MATMUL_A, &MATMUL_B, &mut c, MATMUL_N);
                }
                (rdtsc() - start, Some(bench_common::checksum(&c)))
            },
            emit,
        );
    }
}

#[cfg(not(target_os = "none"))]
fn main() {}
