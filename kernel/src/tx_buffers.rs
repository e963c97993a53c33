//! The NIC's transmit buffers while frames are on the device: which buffers are free, which
//! descriptor token holds which buffer, and how many each environment holds. `net_transmit`
//! does not wait for the device to send a frame, so a buffer stays the device's until its
//! token comes back, and an environment that sends faster than the device drains must meet a
//! limit of its own (its share) before it meets everyone's (no buffer left). A buffer is
//! reserved (taken, counted against the sender) while the kernel writes a frame into it, so
//! the frame is copied and checked in place; a refused frame releases it.

/// On whose behalf a frame is sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sender {
    /// An environment's `net_transmit` (its id): limited to the share.
    Environment(u32),
    /// The kernel itself (handler replies): limited by the buffers left, not by a share.
    Kernel,
}

/// The sender holds its share of the buffers, or none is free: the device has not yet sent
/// enough of what it was given. Trying again later can succeed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QueueFull;

/// A buffer taken for one frame from a sender by [`TxBuffers::reserve`]: neither free nor on
/// the device, counted against the sender's share, until [`TxBuffers::commit`] puts it on the
/// device or [`TxBuffers::release`] frees it again. Not `Copy`: each reservation ends once.
#[derive(Debug, PartialEq, Eq)]
#[must_use = "a reservation holds its buffer until committed or released"]
pub struct Reservation {
    /// Index of the buffer (into the caller's table of buffers).
    pub buffer: u8,
    sender: Sender,
}

/// A buffer on the device under a token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InFlight {
    pub buffer: u8,
    /// Bytes queued from it (what completing the token must name again).
    pub length_bytes: u16,
    pub sender: Sender,
}

/// `commit` refused: its token is already on the device or past the table (the driver handed
/// out one descriptor twice). The reservation comes back, still held.
#[derive(Debug, PartialEq, Eq)]
pub struct CommitRefused(pub u16, pub Reservation);

/// `BUFFERS` transmit buffers (at most 256) and the device's `TOKENS` descriptor tokens.
#[derive(Debug)]
pub struct TxBuffers<const BUFFERS: usize, const TOKENS: usize> {
    /// Free buffer indices: the first `free_count`.
    free: [u8; BUFFERS],
    free_count: usize,
    in_flight: [Option<InFlight>; TOKENS],
    /// Buffers each environment holds (reserved or on the device), for those holding any:
    /// the first `senders_count` (a few at a time, so a scan is short).
    senders: [(u32, u16); BUFFERS],
    senders_count: usize,
    /// The most buffers one environment may hold.
    share: usize,
}

impl<const BUFFERS: usize, const TOKENS: usize> TxBuffers<BUFFERS, TOKENS> {
    const FITS: () = assert!(BUFFERS <= 256 && BUFFERS <= u16::MAX as usize);

    /// Every buffer free; an environment may hold at most `share` of them.
    pub fn new(share: usize) -> Self {
        let () = Self::FITS;
        let mut free = [0u8; BUFFERS];
        for (index, slot) in free.iter_mut().enumerate() {
            *slot = index as u8;
        }
        TxBuffers {
            free,
            free_count: BUFFERS,
            in_flight: [None; TOKENS],
            senders: [(0, 0); BUFFERS],
            senders_count: 0,
            share,
        }
    }

    /// Takes a free buffer for `sender`'s next frame, or [`QueueFull`] (nothing taken).
    pub fn reserve(&mut self, sender: Sender) -> Result<Reservation, QueueFull> {
        if self.free_count == 0 {
            return Err(QueueFull);
        }
        if let Sender::Environment(env) = sender {
            match self.sender_position(env) {
                Some(position) if usize::from(self.senders[position].1) >= self.share => {
                    return Err(QueueFull);
                }
                Some(position) => self.senders[position].1 += 1,
                // The share may be 0 (no environment may send).
                None if self.share == 0 => return Err(QueueFull),
                None => {
                    // Fewer environments than buffers hold any: there is room.
                    self.senders[self.senders_count] = (env, 1);
                    self.senders_count += 1;
                }
            }
        }
        self.free_count -= 1;
        Ok(Reservation {
            buffer: self.free[self.free_count],
            sender,
        })
    }

    /// Frees a reserved buffer that will not be sent: the frame was refused after all.
    pub fn release(&mut self, reservation: Reservation) {
        self.give_back(reservation.buffer, reservation.sender);
    }

    /// Puts the reserved buffer on the device under `token`, `length_bytes` queued.
    pub fn commit(
        &mut self,
        reservation: Reservation,
        token: u16,
        length_bytes: u16,
    ) -> Result<(), CommitRefused> {
        match self.in_flight.get_mut(usize::from(token)) {
            Some(slot @ None) => {
                *slot = Some(InFlight {
                    buffer: reservation.buffer,
                    length_bytes,
                    sender: reservation.sender,
                });
                Ok(())
            }
            _ => Err(CommitRefused(token, reservation)),
        }
    }

    /// The device is done with `token`: what it held, its buffer free again; `None` for a
    /// token not on the device.
    pub fn complete(&mut self, token: u16) -> Option<InFlight> {
        let in_flight = self.in_flight.get_mut(usize::from(token))?.take()?;
        self.give_back(in_flight.buffer, in_flight.sender);
        Some(in_flight)
    }

    /// Buffers not free now: on the device or reserved.
    pub fn in_flight(&self) -> usize {
        BUFFERS - self.free_count
    }

    /// Buffers `env`'s frames hold now (on the device or reserved).
    pub fn held_by(&self, env: u32) -> usize {
        self.sender_position(env)
            .map_or(0, |position| usize::from(self.senders[position].1))
    }

    /// Returns `buffer`, held for `sender`, to the free list.
    fn give_back(&mut self, buffer: u8, sender: Sender) {
        self.free[self.free_count] = buffer;
        self.free_count += 1;
        if let Sender::Environment(env) = sender
            && let Some(position) = self.sender_position(env)
        {
            self.senders[position].1 -= 1;
            if self.senders[position].1 == 0 {
                self.senders_count -= 1;
                self.senders[position] = self.senders[self.senders_count];
            }
        }
    }

    fn sender_position(&self, env: u32) -> Option<usize> {
        self.senders[..self.senders_count]
            .iter()
            .position(|(holder, _)| *holder == env)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;

    type Buffers = TxBuffers<8, 16>;

    /// Reserves and commits under the next token of `next_token`; the buffer, or why not.
    fn send(buffers: &mut Buffers, sender: Sender, next_token: &mut u16) -> Result<u8, QueueFull> {
        let reservation = buffers.reserve(sender)?;
        let buffer = reservation.buffer;
        buffers
            .commit(reservation, *next_token, 100)
            .expect("a fresh token");
        *next_token += 1;
        Ok(buffer)
    }

    /// A flooder stops at its share; another environment and the kernel still get buffers;
    /// once every buffer is out, everyone is refused, and a completion lets one more through.
    #[test]
    fn a_flooder_stops_at_its_share_and_the_rest_stays_for_others() {
        let mut buffers = Buffers::new(4);
        let mut token = 0;
        let flooder = Sender::Environment(7);
        for _ in 0..4 {
            send(&mut buffers, flooder, &mut token).expect("within the share");
        }
        assert_eq!(send(&mut buffers, flooder, &mut token), Err(QueueFull));
        assert_eq!(buffers.held_by(7), 4);
        let victim = Sender::Environment(8);
        for _ in 0..3 {
            send(&mut buffers, victim, &mut token).expect("the flooder left these");
        }
        send(&mut buffers, Sender::Kernel, &mut token).expect("the last buffer");
        for sender in [flooder, victim, Sender::Kernel, Sender::Environment(9)] {
            assert_eq!(send(&mut buffers, sender, &mut token), Err(QueueFull));
        }
        assert_eq!(buffers.in_flight(), 8);
        let done = buffers.complete(0).expect("token 0 is on the device");
        assert_eq!(done.sender, flooder);
        assert_eq!(buffers.held_by(7), 3);
        assert_eq!(send(&mut buffers, victim, &mut token), Ok(done.buffer));
    }

    /// No buffer is handed out while the device holds it, through any order of completions.
    #[test]
    fn no_buffer_is_reused_while_on_the_device() {
        let mut buffers = Buffers::new(8);
        let mut token = 0;
        let mut on_device: Vec<(u16, u8)> = Vec::new();
        // A fixed pseudo-random order of sends and completions.
        let mut state = 0x2545_f491_u32;
        for _ in 0..2000 {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            if !state.is_multiple_of(3) {
                let this_token = token % 16;
                if on_device.iter().any(|(queued, _)| *queued == this_token) {
                    continue;
                }
                let mut next = this_token;
                match send(&mut buffers, Sender::Environment(state % 3), &mut next) {
                    Ok(buffer) => {
                        assert!(on_device.iter().all(|(_, held)| *held != buffer));
                        on_device.push((this_token, buffer));
                        token += 1;
                    }
                    Err(QueueFull) => assert_eq!(on_device.len(), 8),
                }
            } else if !on_device.is_empty() {
                let (queued, buffer) = on_device.remove(state as usize % on_device.len());
                assert_eq!(
                    buffers.complete(queued).map(|done| done.buffer),
                    Some(buffer)
                );
            }
            assert_eq!(buffers.in_flight(), on_device.len());
        }
        let held: usize = (0..3).map(|env| buffers.held_by(env)).sum();
        assert_eq!(held, on_device.len());
    }

    /// A token completed twice, never queued, or past the table comes back as `None`; a token
    /// committed twice is refused and the reservation comes back, still held until released;
    /// the books are unchanged by either.
    #[test]
    fn unknown_and_repeated_tokens_change_nothing() {
        let mut buffers = Buffers::new(8);
        assert_eq!(buffers.complete(3), None);
        assert_eq!(buffers.complete(u16::MAX), None);
        let reservation = buffers.reserve(Sender::Environment(1)).expect("free");
        buffers.commit(reservation, 3, 60).expect("fresh");
        let again = buffers.reserve(Sender::Environment(1)).expect("free");
        let Err(CommitRefused(3, again)) = buffers.commit(again, 3, 60) else {
            panic!("token 3 is on the device");
        };
        let Err(CommitRefused(99, again)) = buffers.commit(again, 99, 60) else {
            panic!("token 99 is past the table");
        };
        assert_eq!((buffers.in_flight(), buffers.held_by(1)), (2, 2));
        buffers.release(again);
        assert_eq!((buffers.in_flight(), buffers.held_by(1)), (1, 1));
        assert!(buffers.complete(3).is_some());
        assert_eq!(buffers.complete(3), None);
        assert_eq!((buffers.in_flight(), buffers.held_by(1)), (0, 0));
    }

    /// A reservation takes its buffer and counts against the sender's share until it ends:
    /// nobody else gets that buffer meanwhile, and released reservations (refused frames)
    /// leave every buffer free and the share whole, however many there were.
    #[test]
    fn reservations_hold_their_buffer_until_released() {
        let mut buffers = Buffers::new(4);
        let held = buffers.reserve(Sender::Environment(5)).expect("free");
        let other = buffers.reserve(Sender::Kernel).expect("free");
        assert_ne!(held.buffer, other.buffer);
        assert_eq!((buffers.in_flight(), buffers.held_by(5)), (2, 1));
        buffers.release(other);
        for _ in 0..1000 {
            let refused = buffers
                .reserve(Sender::Environment(5))
                .expect("within the share");
            assert_ne!(refused.buffer, held.buffer);
            buffers.release(refused);
        }
        buffers.release(held);
        assert_eq!((buffers.in_flight(), buffers.held_by(5)), (0, 0));
        let mut token = 0;
        for _ in 0..4 {
            send(&mut buffers, Sender::Environment(5), &mut token).expect("the whole share");
        }
        assert_eq!(
            buffers.reserve(Sender::Environment(5)).map(|r| r.buffer),
            Err(QueueFull)
        );
    }
}
