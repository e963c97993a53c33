//! The x87/MMX/SSE register file belongs to the environment that is running: the kernel
//! (built soft-float) never touches it, and saves and restores it whenever another
//! environment starts running, so no register value crosses from one application to another.
//! SSE is enabled (CR4.OSFXSR, unmasked SIMD exceptions reported as #XM) so applications may
//! use it.
//!
//! One of the kernel's named `unsafe` modules: control registers and `fxsave`/`fxrstor`.
use x86_64::registers::control::{Cr0, Cr0Flags, Cr4, Cr4Flags};

/// An `fxsave` image of the whole register file (512 bytes, 16-byte aligned).
#[derive(Clone)]
#[repr(C, align(16))]
pub struct FpuState([u8; 512]);

impl core::fmt::Debug for FpuState {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("FpuState")
    }
}

impl FpuState {
    /// The state after `fninit` with SSE's default control word: x87 control word 0x037f,
    /// every register empty and zero, MXCSR 0x1f80 (all exceptions masked). Every
    /// environment starts from it.
    pub fn clean() -> FpuState {
        let mut image = [0u8; 512];
        image[0..2].copy_from_slice(&0x037fu16.to_le_bytes());
        image[24..28].copy_from_slice(&0x1f80u32.to_le_bytes());
        FpuState(image)
    }

    /// Saves the CPU's register file here.
    pub fn save(&mut self) {
        // SAFETY: `self.0` is 512 writable bytes, 16-byte aligned (`repr(align(16))`), as
        // `fxsave64` requires; it writes only those bytes. CR4.OSFXSR is set by `init`.
        unsafe {
            core::arch::asm!("fxsave64 [{}]", in(reg) self.0.as_mut_ptr(), options(nostack));
        }
    }

    /// Loads the CPU's register file from here.
    pub fn restore(&self) {
        // SAFETY: `self.0` is 512 readable, 16-byte aligned bytes holding either `clean()` or
        // an image `fxsave64` wrote, whose MXCSR has no reserved bit set, so `fxrstor64`
        // cannot fault; it changes only the x87/MMX/SSE registers, which kernel code never
        // uses.
        unsafe {
            core::arch::asm!("fxrstor64 [{}]", in(reg) self.0.as_ptr(), options(nostack, readonly));
        }
    }
}

/// Enables the x87 unit and SSE for ring 3: no emulation (CR0.EM clear), `wait` honours TS
/// (CR0.MP), TS clear (no lazy switching: the state is switched eagerly); CR4.OSFXSR and
/// CR4.OSXMMEXCPT. Then loads the clean state.
pub fn init() {
    // SAFETY: these bits only change how x87/SSE instructions behave; nothing in the kernel
    // executes one, and user code runs only after this.
    unsafe {
        Cr0::update(|flags| {
            flags.remove(Cr0Flags::EMULATE_COPROCESSOR | Cr0Flags::TASK_SWITCHED);
            flags.insert(Cr0Flags::MONITOR_COPROCESSOR);
        });
        Cr4::update(|flags| flags.insert(Cr4Flags::OSFXSR | Cr4Flags::OSXMMEXCPT_ENABLE));
    }
    FpuState::clean().restore();
}
