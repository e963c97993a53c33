//! How a kernel run ends: the code the kernel writes to QEMU's `isa-debug-exit` device.
//!
//! QEMU exits with `(code << 1) | 1` and the host truncates exit statuses to 8 bits, so codes
//! fit in 0..=127 and a QEMU status is always odd when the kernel chose it. An even status
//! means QEMU stopped for another reason (a triple fault with `-no-reboot` gives 0).

/// Highest app exit status the kernel reports unchanged.
pub const APP_STATUS_MAX: u8 = 63;

/// I/O port of the `isa-debug-exit` device (`-device isa-debug-exit,iobase=0xf4,iosize=0x04`).
pub const DEBUG_EXIT_PORT: u16 = 0xf4;

/// Why the kernel stopped the machine.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KernelExit {
    /// Every app ran and exited with status 0, or the first app that did not exited with this
    /// status (1..=63).
    Exited(u8),
    /// An app exited with a status above [`APP_STATUS_MAX`].
    StatusOutOfRange,
    /// An app took a CPU exception (page fault, general protection...) and was ended.
    AppFaulted,
    /// An app overstayed its end-of-slice upcall too often and the kernel aborted it.
    AppAborted,
    /// The command line named an app the boot pack does not contain.
    AppMissing,
    /// An app in the boot pack is not a loadable ELF for the user half.
    AppInvalid,
    /// The command line could not be parsed.
    BadCommandLine,
    /// The kernel panicked.
    KernelPanic,
}

impl KernelExit {
    /// The code written to the debug-exit port.
    pub const fn code(self) -> u8 {
        match self {
            KernelExit::Exited(status) => {
                if status <= APP_STATUS_MAX {
                    status
                } else {
                    KernelExit::StatusOutOfRange.code()
                }
            }
            KernelExit::StatusOutOfRange => 64,
            KernelExit::AppFaulted => 80,
            KernelExit::AppAborted => 84,
            KernelExit::AppMissing => 81,
            KernelExit::AppInvalid => 82,
            KernelExit::BadCommandLine => 83,
            KernelExit::KernelPanic => 127,
        }
    }

    /// The exit for an app status as the app passed it to `exit`.
    pub const fn from_app_status(status: u64) -> KernelExit {
        if status <= APP_STATUS_MAX as u64 {
            KernelExit::Exited(status as u8)
        } else {
            KernelExit::StatusOutOfRange
        }
    }

    /// Decodes a debug-exit code; `None` for codes the kernel never writes.
    pub const fn from_code(code: u8) -> Option<KernelExit> {
        match code {
            0..=APP_STATUS_MAX => Some(KernelExit::Exited(code)),
            64 => Some(KernelExit::StatusOutOfRange),
            80 => Some(KernelExit::AppFaulted),
            84 => Some(KernelExit::AppAborted),
            81 => Some(KernelExit::AppMissing),
            82 => Some(KernelExit::AppInvalid),
            83 => Some(KernelExit::BadCommandLine),
            127 => Some(KernelExit::KernelPanic),
            _ => None,
        }
    }

    /// The exit status QEMU reports after the kernel writes this code.
    pub const fn qemu_status(self) -> i32 {
        ((self.code() as i32) << 1) | 1
    }

    /// Recovers the kernel's code from QEMU's exit status; `None` when QEMU did not stop
    /// through the debug-exit device (even status) or the code is unknown.
    pub const fn from_qemu_status(status: i32) -> Option<KernelExit> {
        if status & 1 == 0 || status < 0 || status > 255 {
            return None;
        }
        KernelExit::from_code((status >> 1) as u8)
    }

    /// True for the one outcome that means "everything worked".
    pub const fn is_success(self) -> bool {
        matches!(self, KernelExit::Exited(0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_round_trips_through_qemu() {
        for code in 0..=127u8 {
            if let Some(exit) = KernelExit::from_code(code) {
                assert_eq!(exit.code(), code);
                assert_eq!(KernelExit::from_qemu_status(exit.qemu_status()), Some(exit));
                assert!(exit.qemu_status() <= 255);
            }
        }
    }

    #[test]
    fn known_values() {
        assert_eq!(KernelExit::Exited(0).qemu_status(), 1);
        assert_eq!(KernelExit::KernelPanic.qemu_status(), 255);
        assert_eq!(KernelExit::AppFaulted.qemu_status(), 161);
        assert!(KernelExit::Exited(0).is_success());
        assert!(!KernelExit::Exited(1).is_success());
    }

    #[test]
    fn app_statuses() {
        assert_eq!(KernelExit::from_app_status(0), KernelExit::Exited(0));
        assert_eq!(KernelExit::from_app_status(63), KernelExit::Exited(63));
        assert_eq!(
            KernelExit::from_app_status(64),
            KernelExit::StatusOutOfRange
        );
        assert_eq!(
            KernelExit::from_app_status(u64::MAX),
            KernelExit::StatusOutOfRange
        );
        assert_eq!(
            KernelExit::Exited(200).code(),
            KernelExit::StatusOutOfRange.code()
        );
    }

    #[test]
    fn statuses_qemu_did_not_get_from_us() {
        assert_eq!(KernelExit::from_qemu_status(0), None);
        assert_eq!(KernelExit::from_qemu_status(2), None);
        assert_eq!(KernelExit::from_qemu_status(-1), None);
        assert_eq!(KernelExit::from_qemu_status((100 << 1) | 1), None);
    }
}
