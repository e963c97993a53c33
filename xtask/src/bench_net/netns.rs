//! Runs xtask's own clients (the UDP round-trip client, the TCP bulk client) inside the
//! bench's network namespace: a thread joins it with `setns`, which moves only that thread,
//! so sockets it opens live in the namespace while the rest of xtask stays outside.
use crate::Result;
use std::fs::File;
use std::os::fd::AsRawFd;

/// Runs `work` on a new thread in network namespace `namespace` (`/run/netns/NAME`); its
/// result.
pub fn run_in<T: Send + 'static>(
    namespace: &str,
    work: impl FnOnce() -> std::result::Result<T, String> + Send + 'static,
) -> Result<T> {
    let path = format!("/run/netns/{namespace}");
    let handle = File::open(&path).map_err(|error| format!("{path}: {error}"))?;
    let thread = std::thread::spawn(move || -> std::result::Result<T, String> {
        enter(&handle).map_err(|error| format!("setns {path}: {error}"))?;
        work()
    });
    Ok(thread
        .join()
        .map_err(|_| "the namespace client panicked".to_string())??)
}

#[allow(unsafe_code)]
fn enter(namespace: &File) -> std::io::Result<()> {
    // SAFETY: setns takes a file descriptor we own (open for the call's duration) and a
    // namespace type; it changes only this thread's network namespace, touching no memory.
    let result = unsafe { libc::setns(namespace.as_raw_fd(), libc::CLONE_NEWNET) };
    if result == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}
