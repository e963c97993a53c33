//! Scenario: x87/MMX and SSE registers do not leak between environments. The parent leaves a
//! secret in MMX register 0 and SSE register 0 and blocks waiting for a child it spawned; the
//! child reads both (it must see its own clean state, not the secret), uses SSE itself, and
//! exits; the parent then finds its own secret still in place.
#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(target_os = "none")]
libnet::entry!(app::main);

#[cfg(target_os = "none")]
mod app {
    use libnet::abi::upcall::EnvStatus;
    use libnet::{env, println, sys};

    const SECRET: u64 = 0x5ec2_e7f0_0d15_ea5e;
    const CHILD: u64 = 1;

    /// Writes `value` into `mm0` and `xmm0` (low quadword). The kernel and this app are built
    /// soft-float: nothing else touches these registers.
    fn plant(value: u64) {
        #[allow(unsafe_code)]
        // SAFETY: moves between a general register and mm0/xmm0 only; no memory access.
        unsafe {
            core::arch::asm!("movq mm0, {0}", "movq xmm0, {0}", in(reg) value, options(nostack, nomem));
        }
    }

    /// Reads `mm0` and the low quadword of `xmm0`.
    fn read() -> (u64, u64) {
        let (mmx, sse): (u64, u64);
        #[allow(unsafe_code)]
        // SAFETY: as in `plant`.
        unsafe {
            core::arch::asm!(
                "movq {0}, mm0",
                "movq {1}, xmm0",
                "emms",
                out(reg) mmx,
                out(reg) sse,
                options(nostack, nomem),
            );
        }
        (mmx, sse)
    }

    pub fn main() -> u8 {
        if env::argument() == CHILD {
            let (mmx, sse) = read();
            let clean = mmx != SECRET && sse != SECRET;
            println!(
                "fpuspy child: sees the parent's secret: MMX {}, SSE {}",
                mmx == SECRET,
                sse == SECRET
            );
            // The child's own use must not reach the parent either.
            plant(!SECRET);
            return u8::from(!clean);
        }
        plant(SECRET);
        let child = sys::spawn("fpuspy", CHILD).expect("spawn");
        let status = sys::wait(child);
        let (mmx, sse) = read();
        let kept = mmx == SECRET && sse == SECRET;
        println!("fpuspy: child {status:?}; the parent's registers kept: {kept}");
        u8::from(!(kept && status == Ok(EnvStatus::Exited(0))))
    }
}

#[cfg(not(target_os = "none"))]
fn main() {}
