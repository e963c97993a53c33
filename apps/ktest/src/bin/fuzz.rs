//! Scenario: a seeded, bounded system-call fuzzer. It makes 200,000 calls with random and
//! near-valid arguments (its own handles, the same with a wrong generation or index, addresses
//! at the edges of the user half and of its buffers, huge lengths, random rights), while
//! another app works beside it. Afterwards the kernel must still be alive and serving, and
//! when every app has ended the kernel's own end-of-run check finds every frame and every
//! capability returned (it panics otherwise).
//!
//! Left out are the calls that would only end or stall the fuzzer itself, not test the kernel:
//! `exit`, `env_destroy`, `request_pages` (it would repossess its own pages), `set_upcall`
//! (a random exception entry), the blocking PCT calls, and `console_write` (its garbage would
//! fill the log).
#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(target_os = "none")]
libnet::entry!(app::main);

#[cfg(target_os = "none")]
mod app {
    use libnet::abi::Syscall;
    use libnet::abi::cap::CapHandle;
    use libnet::abi::layout::{APP_IMAGE_BASE, USER_BASE, USER_END};
    use libnet::abi::syscall::ANY_FRAME;
    use libnet::{env, println, sys};

    const CALLS: u64 = 200_000;
    const SEED: u64 = 0x9e37_79b9_7f4a_7c15;
    /// Where the fuzzer's page mappings go: a region of its own, away from its image.
    const ARENA: u64 = 0x0000_6000_0000_0000;
    const PAGE: u64 = 4096;

    /// The only memory the fuzzer offers calls that write: nothing else of its own is named.
    static mut SCRATCH: [u8; 2 * 4096] = [0; 2 * 4096];

    const EXCLUDED: [Syscall; 9] = [
        Syscall::Exit,
        Syscall::EnvDestroy,
        Syscall::RequestPages,
        Syscall::SetUpcall,
        Syscall::PctCall,
        Syscall::PctSend,
        Syscall::PctWait,
        Syscall::PctReturn,
        Syscall::ConsoleWrite,
    ];

    /// xorshift64*: small, seeded, good enough to spread arguments.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }

        fn below(&mut self, bound: u64) -> u64 {
            self.next() % bound
        }
    }

    /// Handles the fuzzer has been given, to reuse (and to forge from).
    struct Pool {
        handles: [u64; 64],
        count: usize,
    }

    impl Pool {
        fn add(&mut self, handle: u64) {
            if handle != 0 && handle >> 32 != 0 {
                let slot = if self.count < self.handles.len() {
                    self.count += 1;
                    self.count - 1
                } else {
                    (handle as usize) % self.handles.len()
                };
                self.handles[slot] = handle;
            }
        }

        fn pick(&self, rng: &mut Rng) -> u64 {
            if self.count == 0 {
                return 0;
            }
            self.handles[rng.below(self.count as u64) as usize]
        }
    }

    fn scratch() -> u64 {
        core::ptr::addr_of!(SCRATCH) as u64
    }

    fn argument(rng: &mut Rng, pool: &Pool) -> u64 {
        let handle = pool.pick(rng);
        match rng.below(20) {
            // Small numbers: kinds, queries, resources, fields, counts.
            0..=3 => rng.below(8),
            4 => u64::MAX,
            5 => rng.next(),
            6 | 7 => handle,
            8 => handle ^ (1 << 32),     // wrong generation
            9 => handle.wrapping_add(1), // neighbouring slot
            10 => scratch() + rng.below(2 * PAGE),
            11 => [
                USER_BASE,
                APP_IMAGE_BASE,
                USER_END - 8,
                USER_END,
                0xffff_8000_0000_0000,
            ][rng.below(5) as usize],
            12 => ARENA + rng.below(64) * PAGE,
            13 => ARENA + rng.below(64) * PAGE + 1 + rng.below(PAGE - 1),
            14 => [0, 1, 16, 4095, 4096, 4097, 1 << 20, 1 << 40][rng.below(8) as usize],
            15 => rng.below(1 << 9), // rights bits
            16 => ANY_FRAME,
            _ => rng.below(64),
        }
    }

    pub fn main() -> u8 {
        let mut rng = Rng(SEED);
        let mut pool = Pool {
            handles: [0; 64],
            count: 0,
        };
        pool.add(env::own().raw());
        let callable: [Syscall; Syscall::ALL.len() - EXCLUDED.len()] = {
            let mut calls = [Syscall::Null; Syscall::ALL.len() - EXCLUDED.len()];
            let mut filled = 0;
            for call in Syscall::ALL {
                if !EXCLUDED.contains(&call) && filled < calls.len() {
                    calls[filled] = call;
                    filled += 1;
                }
            }
            calls
        };
        let (mut ok, mut refused) = (0u64, 0u64);
        for _ in 0..CALLS {
            let call = callable[rng.below(callable.len() as u64) as usize];
            let arguments = core::array::from_fn(|_| argument(&mut rng, &pool));
            match sys::syscall5(call, arguments) {
                Ok(value) => {
                    ok += 1;
                    pool.add(value);
                }
                Err(_) => refused += 1,
            }
        }
        // The kernel still serves this app: a page, mapped and written.
        let page = sys::page_alloc(ANY_FRAME);
        let alive = page.is_ok_and(|page| {
            let address = ARENA + 100 * PAGE;
            sys::page_map(
                page,
                address,
                libnet::abi::cap::Rights::READ | libnet::abi::cap::Rights::WRITE,
            )
            .is_ok()
                && libnet::upcall::probe_write(address, 0x5a)
        });
        println!(
            "fuzz: {CALLS} calls, {ok} accepted, {refused} refused; kernel alive and serving: {alive}"
        );
        let _ = CapHandle::NONE;
        u8::from(!alive)
    }
}

#[cfg(not(target_os = "none"))]
fn main() {}
