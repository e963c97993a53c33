//! A single-producer, single-consumer byte ring in one shared page: the data path of a pipe.
//!
//! Layout ([`RingPage`], exactly one page): the producer's count of bytes written (`head`) and
//! the consumer's count of bytes read (`tail`), each on its own cache line, then
//! [`RING_DATA_BYTES`] of data. The counts run freely (64 bits never wrap in practice); a
//! byte's place is its count modulo the capacity. Only the producer stores `head`, only the
//! consumer stores `tail`; each publishes with `Release` after moving the bytes, and reads the
//! other's with `Acquire`, so two environments that map the page need nothing else.
//!
//! The peer is not trusted: it can store any count. A `head` more than a ring's worth ahead of
//! `tail` (or behind it) is impossible for an honest peer; such a ring reads as empty, writes
//! as full, and the pipe ends report it as corrupt (`Unrecognized`), never indexing outside
//! the data area.
//!
//! Pipes frame messages on it ([`PipeWriter`], [`PipeReader`]): a 4-byte length, then the
//! bytes, each message published whole.
use core::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use exo_abi::Error;

/// Bytes of data a ring holds.
pub const RING_DATA_BYTES: usize = 4096 - 128;

/// The shared page.
#[derive(Debug)]
#[repr(C, align(4096))]
pub struct RingPage {
    head: AtomicU64,
    _head_line: [u64; 7],
    tail: AtomicU64,
    _tail_line: [u64; 7],
    data: [AtomicU8; RING_DATA_BYTES],
}

const _: () = assert!(core::mem::size_of::<RingPage>() == 4096);

/// Bytes a ring holds between `tail` and `head`; `None` when the counts are impossible (more
/// than the ring holds: a corrupt or hostile peer).
pub const fn used_bytes(head: u64, tail: u64) -> Option<usize> {
    let used = head.wrapping_sub(tail);
    if used > RING_DATA_BYTES as u64 {
        None
    } else {
        Some(used as usize)
    }
}

/// Bytes a producer may still write; `None` for impossible counts.
pub const fn free_bytes(head: u64, tail: u64) -> Option<usize> {
    match used_bytes(head, tail) {
        Some(used) => Some(RING_DATA_BYTES - used),
        None => None,
    }
}

/// Where `length` bytes starting at count `at` lie in the data area: the part up to the end
/// of the area, and the part wrapped to its start, as `(offset, length)` pairs.
pub const fn segments(at: u64, length: usize) -> ((usize, usize), (usize, usize)) {
    let offset = (at % RING_DATA_BYTES as u64) as usize;
    let first = if length < RING_DATA_BYTES - offset {
        length
    } else {
        RING_DATA_BYTES - offset
    };
    ((offset, first), (0, length - first))
}

impl RingPage {
    /// An empty ring (for host tests; a shared page starts zeroed, which is the same).
    pub const fn new() -> RingPage {
        RingPage {
            head: AtomicU64::new(0),
            _head_line: [0; 7],
            tail: AtomicU64::new(0),
            _tail_line: [0; 7],
            data: [const { AtomicU8::new(0) }; RING_DATA_BYTES],
        }
    }

    /// Producer: copies as much of `bytes` as fits; returns how many (0 when full).
    pub fn write(&self, bytes: &[u8]) -> usize {
        let head = self.head.load(Ordering::Relaxed);
        let tail = self.tail.load(Ordering::Acquire);
        let Some(free) = free_bytes(head, tail) else {
            return 0;
        };
        let length = bytes.len().min(free);
        let ((offset, first), (_, second)) = segments(head, length);
        for (slot, byte) in self.data[offset..offset + first].iter().zip(bytes) {
            slot.store(*byte, Ordering::Relaxed);
        }
        for (slot, byte) in self.data[..second].iter().zip(&bytes[first..length]) {
            slot.store(*byte, Ordering::Relaxed);
        }
        self.head.store(head + length as u64, Ordering::Release);
        length
    }

    /// Producer: writes all of `bytes` or nothing (message framing); false when it does not fit.
    pub fn write_all_or_nothing(&self, bytes: &[u8]) -> bool {
        let head = self.head.load(Ordering::Relaxed);
        if free_bytes(head, self.tail.load(Ordering::Acquire)).is_none_or(|free| free < bytes.len())
        {
            return false;
        }
        self.write(bytes) == bytes.len()
    }

    /// Consumer: copies up to `buffer.len()` bytes out; returns how many (0 when empty).
    pub fn read(&self, buffer: &mut [u8]) -> usize {
        let length = self.peek(buffer);
        self.tail.fetch_add(length as u64, Ordering::Release);
        length
    }

    /// Consumer: copies up to `buffer.len()` bytes out without consuming them.
    pub fn peek(&self, buffer: &mut [u8]) -> usize {
        let tail = self.tail.load(Ordering::Relaxed);
        let head = self.head.load(Ordering::Acquire);
        let Some(used) = used_bytes(head, tail) else {
            return 0;
        };
        let length = buffer.len().min(used);
        let ((offset, first), (_, second)) = segments(tail, length);
        for (byte, slot) in buffer.iter_mut().zip(&self.data[offset..offset + first]) {
            *byte = slot.load(Ordering::Relaxed);
        }
        for (byte, slot) in buffer[first..length].iter_mut().zip(&self.data[..second]) {
            *byte = slot.load(Ordering::Relaxed);
        }
        length
    }

    /// Bytes waiting to be read; `None` when the peer left impossible counts.
    pub fn used(&self) -> Option<usize> {
        used_bytes(
            self.head.load(Ordering::Acquire),
            self.tail.load(Ordering::Acquire),
        )
    }

    /// Bytes written since the ring was created (how many times it wrapped: this over the
    /// capacity).
    pub fn written_total(&self) -> u64 {
        self.head.load(Ordering::Acquire)
    }
}

impl Default for RingPage {
    fn default() -> RingPage {
        RingPage::new()
    }
}

/// The writing end of a pipe: messages framed by a 4-byte length, each written whole.
#[derive(Debug)]
pub struct PipeWriter<'page> {
    ring: &'page RingPage,
}

/// The reading end of a pipe.
#[derive(Debug)]
pub struct PipeReader<'page> {
    ring: &'page RingPage,
}

/// Bytes of the length word before each message.
pub const MESSAGE_HEADER_BYTES: usize = 4;

impl<'page> PipeWriter<'page> {
    /// The writing end over a ring (a shared page's: `SharedPage::ring`).
    pub fn new(ring: &'page RingPage) -> PipeWriter<'page> {
        PipeWriter { ring }
    }

    /// Sends one message whole; `Err(WouldBlock)` when the ring is too full for it now (wake
    /// the reader and try again), `Err(InvalidArgument)` when it can never fit.
    pub fn send(&self, message: &[u8]) -> Result<(), Error> {
        if message.len() + MESSAGE_HEADER_BYTES > RING_DATA_BYTES {
            return Err(Error::InvalidArgument);
        }
        let header = (message.len() as u32).to_le_bytes();
        let used = self.ring.used().ok_or(Error::Unrecognized)?;
        if RING_DATA_BYTES - used < MESSAGE_HEADER_BYTES + message.len() {
            return Err(Error::WouldBlock);
        }
        // Room for both was checked; only this end writes, so both go in.
        self.ring.write(&header);
        self.ring.write(message);
        Ok(())
    }
}

impl<'page> PipeReader<'page> {
    /// The reading end over a ring.
    pub fn new(ring: &'page RingPage) -> PipeReader<'page> {
        PipeReader { ring }
    }

    /// Receives the next message into `buffer`; its length, or `Err(WouldBlock)` when none is
    /// there, or `Err(InvalidArgument)` when `buffer` is too small (the message stays).
    pub fn receive(&self, buffer: &mut [u8]) -> Result<usize, Error> {
        let used = self.ring.used().ok_or(Error::Unrecognized)?;
        let mut header = [0u8; MESSAGE_HEADER_BYTES];
        if self.ring.peek(&mut header) < MESSAGE_HEADER_BYTES {
            return Err(Error::WouldBlock);
        }
        let length = u32::from_le_bytes(header) as usize;
        if length > buffer.len() {
            return Err(Error::InvalidArgument);
        }
        if used < MESSAGE_HEADER_BYTES + length {
            // The writer publishes a message whole, so this is a corrupt ring.
            return Err(Error::Unrecognized);
        }
        self.ring.read(&mut header);
        Ok(self.ring.read(&mut buffer[..length]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    extern crate std;
    use std::boxed::Box;
    use std::vec::Vec;

    #[test]
    fn index_arithmetic() {
        assert_eq!(free_bytes(0, 0), Some(RING_DATA_BYTES));
        assert_eq!(free_bytes(RING_DATA_BYTES as u64, 0), Some(0));
        assert_eq!(used_bytes(10_005, 10_000), Some(5));
        assert_eq!(segments(0, 10), ((0, 10), (0, 0)));
        let end = RING_DATA_BYTES as u64;
        assert_eq!(segments(end - 3, 10), ((RING_DATA_BYTES - 3, 3), (0, 7)));
        assert_eq!(segments(end, 4), ((0, 4), (0, 0)));
        assert_eq!(segments(3 * end - 1, 1), ((RING_DATA_BYTES - 1, 1), (0, 0)));
        assert_eq!(
            segments(5, RING_DATA_BYTES),
            ((5, RING_DATA_BYTES - 5), (0, 5))
        );
    }

    /// A hostile peer's counts never make either end index outside the ring or panic.
    #[test]
    fn impossible_counts_are_corruption_not_panics() {
        let mut buffer = std::vec![0u8; 2 * RING_DATA_BYTES];
        for (head, tail) in [
            (RING_DATA_BYTES as u64 + 1, 0),
            (u64::MAX, 0),
            (0, 1),
            (5, 10),
        ] {
            let ring = RingPage::new();
            ring.head.store(head, Ordering::Relaxed);
            ring.tail.store(tail, Ordering::Relaxed);
            assert_eq!(ring.used(), None, "{head} {tail}");
            assert_eq!(ring.peek(&mut buffer), 0);
            assert_eq!(ring.read(&mut buffer), 0);
            assert_eq!(ring.write(&[1; 64]), 0);
            assert!(!ring.write_all_or_nothing(&[1]));
            assert_eq!(PipeWriter::new(&ring).send(b"x"), Err(Error::Unrecognized));
            assert_eq!(
                PipeReader::new(&ring).receive(&mut buffer),
                Err(Error::Unrecognized)
            );
        }
        // A header that claims more than was written is corrupt, not a read past the data.
        let ring = RingPage::new();
        ring.write(&(100u32).to_le_bytes());
        assert_eq!(
            PipeReader::new(&ring).receive(&mut buffer),
            Err(Error::Unrecognized)
        );
    }

    #[test]
    fn full_and_empty() {
        let ring = Box::new(RingPage::new());
        let mut buffer = [0u8; 64];
        assert_eq!(ring.read(&mut buffer), 0);
        let big: Vec<u8> = (0..RING_DATA_BYTES + 100).map(|i| i as u8).collect();
        assert_eq!(ring.write(&big), RING_DATA_BYTES);
        assert_eq!(ring.write(&[1]), 0);
        assert!(!ring.write_all_or_nothing(&[1]));
        assert_eq!(ring.used(), Some(RING_DATA_BYTES));
        assert_eq!(ring.read(&mut buffer), 64);
        assert_eq!(&buffer[..], &big[..64]);
        assert!(ring.write_all_or_nothing(&[7; 64]));
        assert!(!ring.write_all_or_nothing(&[7; 1]));
    }

    #[test]
    fn pipe_messages_keep_order_across_wraps() {
        let ring = Box::new(RingPage::new());
        let (writer, reader) = (PipeWriter::new(&ring), PipeReader::new(&ring));
        let mut buffer = [0u8; 600];
        assert_eq!(reader.receive(&mut buffer), Err(Error::WouldBlock));
        assert_eq!(
            writer.send(&[0; RING_DATA_BYTES - MESSAGE_HEADER_BYTES + 1]),
            Err(Error::InvalidArgument)
        );
        let (mut sent, mut received, mut full) = (0u64, 0u64, 0);
        let message =
            |n: u64| -> Vec<u8> { (0..1 + n * 37 % 500).map(|i| (n + i) as u8).collect() };
        while received < 2000 {
            match writer.send(&message(sent)) {
                Ok(()) => sent += 1,
                Err(Error::WouldBlock) => {
                    full += 1;
                    // Too small a buffer leaves the message where it is.
                    if message(received).len() > 1 {
                        assert_eq!(
                            reader.receive(&mut buffer[..1]),
                            Err(Error::InvalidArgument)
                        );
                    }
                    while let Ok(length) = reader.receive(&mut buffer) {
                        assert_eq!(&buffer[..length], &message(received)[..]);
                        received += 1;
                    }
                }
                Err(error) => panic!("{error:?}"),
            }
        }
        assert!(full > 100);
        assert!(ring.written_total() > 50 * RING_DATA_BYTES as u64);
    }

    #[test]
    fn stream_survives_many_wraps() {
        let ring = Box::new(RingPage::new());
        let mut written = 0u32;
        let mut read = 0u32;
        let mut chunk = 1usize;
        let mut buffer = [0u8; 1000];
        while read < 100_000 {
            let bytes: Vec<u8> = (0..chunk as u32).map(|i| (written + i) as u8).collect();
            written += ring.write(&bytes) as u32;
            let count = ring.read(&mut buffer[..chunk.min(700)]);
            for (i, byte) in buffer[..count].iter().enumerate() {
                assert_eq!(*byte, (read + i as u32) as u8);
            }
            read += count as u32;
            chunk = chunk * 7 % 997 + 1;
        }
        assert!(ring.written_total() > 20 * RING_DATA_BYTES as u64);
    }
}
