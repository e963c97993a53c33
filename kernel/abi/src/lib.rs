//! The contract between the exo kernel and user code: syscall numbers, error codes, shared layouts.
//!
//! Everything here is plain data and pure functions, so the kernel, libnet, the apps and the
//! host tooling (xtask) all agree on one definition, and the encodings are tested on the host.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

pub mod cap;
pub mod error;
pub mod exit;
pub mod layout;
pub mod net;
pub mod pack;
pub mod quota;
pub mod syscall;
pub mod upcall;
pub mod usage;

pub use error::Error;
pub use exit::KernelExit;
pub use syscall::Syscall;
