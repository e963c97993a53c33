//! Frames of one TCP port taken from smoltcp's way for libnet's own engine ([`super::cheetah`]):
//! the device copies each verified frame for the port into a bounded queue (they are requests
//! and ACKs, small) and gives its ring slot back at once; the app hands the queue to the engine.
use alloc::collections::VecDeque;
use alloc::vec::Vec;

/// Frames queued at most (as many as the ring holds); beyond, they are dropped and counted
/// (TCP recovers).
pub const DIVERT_QUEUE_FRAMES: usize = super::device::RX_SLOTS;

/// The diverted port's queue.
#[derive(Debug)]
pub struct Diverted {
    port: u16,
    pub(crate) frames: VecDeque<Vec<u8>>,
    /// Frames dropped for a full queue.
    pub(crate) dropped: u64,
    /// Frames diverted in all.
    pub(crate) taken: u64,
}

impl Diverted {
    pub fn new(port: u16) -> Diverted {
        Diverted {
            port,
            frames: VecDeque::new(),
            dropped: 0,
            taken: 0,
        }
    }

    /// Takes `frame` (a verified Ethernet frame) if it is IPv4 TCP to the port; whether it did.
    pub fn take(&mut self, frame: &[u8]) -> bool {
        if !is_tcp_to(frame, self.port) {
            return false;
        }
        if self.frames.len() >= DIVERT_QUEUE_FRAMES {
            self.dropped += 1;
        } else {
            self.frames.push_back(frame.to_vec());
            self.taken += 1;
        }
        true
    }
}

/// Whether `frame` is an unfragmented IPv4 TCP segment to `port` (offsets checked, since the
/// device verified the headers' lengths).
fn is_tcp_to(frame: &[u8], port: u16) -> bool {
    if frame.len() < 14 + 20 + 4 || frame[12..14] != [0x08, 0x00] || frame[14 + 9] != 6 {
        return false;
    }
    let header = usize::from(frame[14] & 0x0f) * 4;
    let at = 14 + header;
    frame.len() >= at + 4 && u16::from_be_bytes([frame[at + 2], frame[at + 3]]) == port
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(port: u16) -> Vec<u8> {
        let mut bytes = Vec::new();
        etherparse::PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
            .ipv4([10, 0, 2, 2], [10, 0, 2, 15], 64)
            .tcp(40000, port, 1, 1000)
            .write(&mut bytes, b"x")
            .unwrap();
        bytes
    }

    #[test]
    fn only_its_port_is_taken_and_a_full_queue_drops() {
        let mut diverted = Diverted::new(80);
        assert!(!diverted.take(&frame(81)));
        for _ in 0..DIVERT_QUEUE_FRAMES + 3 {
            assert!(diverted.take(&frame(80)));
        }
        assert_eq!(diverted.frames.len(), DIVERT_QUEUE_FRAMES);
        assert_eq!(diverted.dropped, 3);
        let mut udp = frame(80);
        udp[14 + 9] = 17;
        assert!(!diverted.take(&udp));
    }
}
