//! Error codes a system call returns, and how a result travels in one register.
//!
//! A result is one `u64` in `rax`: values below [`ERROR_BASE`] are successes; the top 4095
//! values are errors, `-code` in two's complement (the convention Linux uses, so a failing call
//! is recognisable in a register dump).

/// The smallest raw value that encodes an error; successful values must stay below it.
pub const ERROR_BASE: u64 = u64::MAX - 4094;

/// Why a system call failed.
#[repr(u16)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Error {
    /// `rax` held a number no system call has.
    UnknownSyscall = 1,
    /// A user pointer did not lie entirely inside memory the caller has mapped with the
    /// access the call needs.
    BadAddress = 2,
    /// An argument was out of the range the call accepts.
    InvalidArgument = 3,
    /// The kernel could not find the memory to complete the call.
    OutOfMemory = 4,
    /// A capability handle that names nothing this environment holds: forged, stale (its
    /// capability was revoked or deleted) or another environment's.
    InvalidCapability = 5,
    /// The capability is genuine but lacks a right the call needs, or the call asked for
    /// more rights than the capability carries.
    Denied = 6,
    /// The target cannot take the call now (a PCT target that is not waiting for calls; the
    /// NIC's transmit queue, holding frames it has not yet sent). Trying again later can
    /// succeed.
    WouldBlock = 7,
    /// A named thing does not exist (an app name not in the boot pack).
    NotFound = 8,
    /// The environment a capability names has ended (also: the callee of a PCT ended
    /// before returning).
    PeerGone = 9,
    /// The virtual address is already mapped.
    AddressInUse = 10,
    /// Nothing the call can act on is mapped at the virtual address.
    NotMapped = 11,
    /// A fixed-size kernel table (time slices, capabilities, environments) is full.
    Exhausted = 12,
    /// A code this version of the ABI does not know (decoded from a newer kernel).
    Unrecognized = 4095,
}

impl Error {
    /// Every error, for exhaustive round-trip tests.
    pub const ALL: [Error; 13] = [
        Error::UnknownSyscall,
        Error::BadAddress,
        Error::InvalidArgument,
        Error::OutOfMemory,
        Error::InvalidCapability,
        Error::Denied,
        Error::WouldBlock,
        Error::NotFound,
        Error::PeerGone,
        Error::AddressInUse,
        Error::NotMapped,
        Error::Exhausted,
        Error::Unrecognized,
    ];

    /// The positive code (1..=4095).
    pub const fn code(self) -> u16 {
        self as u16
    }

    /// The error with this code, if this ABI version knows it.
    pub const fn from_code(code: u16) -> Option<Error> {
        match code {
            1 => Some(Error::UnknownSyscall),
            2 => Some(Error::BadAddress),
            3 => Some(Error::InvalidArgument),
            4 => Some(Error::OutOfMemory),
            5 => Some(Error::InvalidCapability),
            6 => Some(Error::Denied),
            7 => Some(Error::WouldBlock),
            8 => Some(Error::NotFound),
            9 => Some(Error::PeerGone),
            10 => Some(Error::AddressInUse),
            11 => Some(Error::NotMapped),
            12 => Some(Error::Exhausted),
            4095 => Some(Error::Unrecognized),
            _ => None,
        }
    }
}

/// Encodes a result for `rax`. A success value at or above [`ERROR_BASE`] cannot be told from
/// an error, so it is reported as [`Error::InvalidArgument`] rather than silently misread.
pub const fn encode_result(result: Result<u64, Error>) -> u64 {
    match result {
        Ok(value) if value < ERROR_BASE => value,
        Ok(_) => encode_error(Error::InvalidArgument),
        Err(error) => encode_error(error),
    }
}

const fn encode_error(error: Error) -> u64 {
    (error.code() as u64).wrapping_neg()
}

/// Decodes `rax` after a system call.
pub const fn decode_result(raw: u64) -> Result<u64, Error> {
    if raw < ERROR_BASE {
        return Ok(raw);
    }
    let code = raw.wrapping_neg() as u16;
    match Error::from_code(code) {
        Some(error) => Err(error),
        None => Err(Error::Unrecognized),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_round_trip() {
        for error in Error::ALL {
            assert_eq!(Error::from_code(error.code()), Some(error));
            assert_eq!(decode_result(encode_result(Err(error))), Err(error));
        }
    }

    #[test]
    fn error_encoding_is_negative_code() {
        assert_eq!(encode_result(Err(Error::UnknownSyscall)), u64::MAX);
        assert_eq!(encode_result(Err(Error::BadAddress)), (-2i64) as u64);
        assert_eq!(encode_result(Err(Error::Unrecognized)), ERROR_BASE);
    }

    #[test]
    fn successes_round_trip_up_to_the_error_range() {
        for value in [0, 1, 4096, ERROR_BASE - 1] {
            assert_eq!(decode_result(encode_result(Ok(value))), Ok(value));
        }
    }

    #[test]
    fn success_values_in_the_error_range_are_refused() {
        assert_eq!(
            decode_result(encode_result(Ok(ERROR_BASE))),
            Err(Error::InvalidArgument)
        );
        assert_eq!(
            decode_result(encode_result(Ok(u64::MAX))),
            Err(Error::InvalidArgument)
        );
    }

    #[test]
    fn unknown_codes_decode_as_unrecognized() {
        assert_eq!(decode_result(u64::MAX - 99), Err(Error::Unrecognized));
        assert_eq!(Error::from_code(0), None);
        assert_eq!(Error::from_code(100), None);
    }
}
