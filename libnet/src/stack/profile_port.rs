//! An app's profile port (httpd's and echo's `profile=PORT`): how `cargo xtask bench net`
//! splits a server's guest instructions by layer. A datagram `start` clears libnet's per-layer sums
//! (`libnet::profile`), switches them on and notes the kernel's network counters; `stop`
//! switches them off and answers with one line of `key=value` pairs: each libnet layer's
//! cycles and spans, and how much each kernel counter of the profile moved in between. Off
//! until asked, so the rows measured without it pay nothing for it.
use super::{Mode, NetError, Stack, UdpSocket};
use crate::profile::{self, Layer};
use alloc::format;
use alloc::string::String;
use exo_abi::net::Counter;

/// The kernel counters the profile reports (the layers the kernel times, and what they are
/// divided by).
const KERNEL: [Counter; 10] = [
    Counter::RxPollCycles,
    Counter::DemuxCycles,
    Counter::DeliveryCycles,
    Counter::TransmitCycles,
    Counter::TransmitCalls,
    Counter::RxFrames,
    Counter::TxFrames,
    Counter::Interrupts,
    Counter::WaitsBlocked,
    Counter::ArrivalToSendCycles,
];

/// The profile port's socket and the kernel counters at `start`.
#[derive(Debug)]
pub struct ProfilePort {
    socket: UdpSocket,
    kernel_at_start: [u64; KERNEL.len()],
}

fn kernel_now() -> [u64; KERNEL.len()] {
    KERNEL.map(|counter| crate::net::counter(counter as u64).unwrap_or(0))
}

impl ProfilePort {
    /// Binds `port` (non-blocking).
    pub fn bind(stack: &Stack, port: u16) -> Result<ProfilePort, NetError> {
        let mut socket = UdpSocket::bind(stack, port)?;
        socket.set_mode(Mode::NonBlocking);
        Ok(ProfilePort {
            socket,
            kernel_at_start: [0; KERNEL.len()],
        })
    }

    /// Answers the datagrams waiting; whether there were any. Called from app code, outside
    /// any libnet span.
    pub fn serve(&mut self, buffer: &mut [u8]) -> bool {
        let mut any = false;
        while let Ok((count, (address, port))) = self.socket.recv_from(buffer) {
            any = true;
            let reply = match &buffer[..count] {
                b"start" => {
                    self.kernel_at_start = kernel_now();
                    profile::start();
                    String::from("profile started")
                }
                b"stop" => self.report(),
                _ => String::from("profile: start or stop"),
            };
            // A lost reply is the client's to retry; the profile has no state to lose.
            let _ = self.socket.send_to(reply.as_bytes(), address, port);
        }
        any
    }

    /// Stops the profile; the line the client parses.
    fn report(&self) -> String {
        let layers = profile::stop();
        let kernel = kernel_now();
        let mut line = String::from("profile");
        for layer in Layer::ALL {
            let (cycles, spans) = layers[layer as usize];
            line.push_str(&format!(
                " {}_cycles={cycles} {}_spans={spans}",
                layer.name(),
                layer.name()
            ));
        }
        for (index, counter) in KERNEL.iter().enumerate() {
            line.push_str(&format!(
                " kernel_{}={}",
                counter.name(),
                kernel[index].wrapping_sub(self.kernel_at_start[index])
            ));
        }
        line
    }
}
