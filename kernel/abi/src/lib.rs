//! The contract between the exo kernel and user code: syscall numbers, error codes, shared layouts.
#![no_std]
#![forbid(unsafe_code)]
