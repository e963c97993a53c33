//! The NIC's transmit buffers while frames are on the device: which buffers are free, which
//! descriptor token holds which buffer, and how many each environment holds. `net_transmit`
//! does not wait for the device to send a frame, so a buffer stays the device's until its
//! token comes back, and an environment that sends faster than the device drains must meet a
//! limit of its own (its share) before it meets everyone's (no buffer left).

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

/// The buffer a frame from a sender may be written to, found by [`TxBuffers::reserve`]:
/// still free until [`TxBuffers::commit`] records it on the device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
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
/// out one descriptor twice), or its reservation is not the last one made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CommitRefused(pub u16);

/// `BUFFERS` transmit buffers (at most 256) and the device's `TOKENS` descriptor tokens.
#[derive(Debug)]
pub struct TxBuffers<const BUFFERS: usize, const TOKENS: usize> {
    /// Free buffer indices: the first `free_count`.
    free: [u8; BUFFERS],
    free_count: usize,
    in_flight: [Option<InFlight>; TOKENS],
    /// Buffers each environment holds, for those holding any: the first `senders_count`
    /// (a few at a time, so a scan is short).
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

    /// The buffer `sender`'s next frame may use, or [`QueueFull`].
    pub fn reserve(&self, sender: Sender) -> Result<Reservation, QueueFull> {
        if self.free_count == 0 {
            return Err(QueueFull);
        }
        if let Sender::Environment(env) = sender
            && self.held_by(env) >= self.share
        {
            return Err(QueueFull);
        }
        Ok(Reservation {
            buffer: self.free[self.free_count - 1],
            sender,
        })
    }

    /// Records the reserved buffer on the device under `token`, `length_bytes` queued. The
    /// reservation must be the last one made, with no commit or completion since.
    pub fn commit(
        &mut self,
        reservation: Reservation,
        token: u16,
        length_bytes: u16,
    ) -> Result<(), CommitRefused> {
        let slot = self
            .in_flight
            .get_mut(usize::from(token))
            .ok_or(CommitRefused(token))?;
        let last_free = self.free_count.checked_sub(1).map(|index| self.free[index]);
        if slot.is_some() || last_free != Some(reservation.buffer) {
            return Err(CommitRefused(token));
        }
        *slot = Some(InFlight {
            buffer: reservation.buffer,
            length_bytes,
            sender: reservation.sender,
        });
        self.free_count -= 1;
        if let Sender::Environment(env) = reservation.sender {
            match self.sender_position(env) {
                Some(position) => self.senders[position].1 += 1,
                None => {
                    // Fewer environments than buffers hold any: there is room.
                    self.senders[self.senders_count] = (env, 1);
                    self.senders_count += 1;
                }
            }
        }
        Ok(())
    }

    /// The device is done with `token`: what it held, its buffer free again; `None` for a
    /// token not on the device.
    pub fn complete(&mut self, token: u16) -> Option<InFlight> {
        let in_flight = self.in_flight.get_mut(usize::from(token))?.take()?;
        self.free[self.free_count] = in_flight.buffer;
        self.free_count += 1;
        if let Sender::Environment(env) = in_flight.sender
            && let Some(position) = self.sender_position(env)
        {
            self.senders[position].1 -= 1;
            if self.senders[position].1 == 0 {
                self.senders_count -= 1;
                self.senders[position] = self.senders[self.senders_count];
            }
        }
        Some(in_flight)
    }

    /// Buffers on the device now.
    pub fn in_flight(&self) -> usize {
        BUFFERS - self.free_count
    }

    /// Buffers `env`'s frames hold on the device now.
    pub fn held_by(&self, env: u32) -> usize {
        self.sender_position(env)
            .map_or(0, |position| usize::from(self.senders[position].1))
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
        buffers
            .commit(reservation, *next_token, 100)
            .expect("a fresh token");
        *next_token += 1;
        Ok(reservation.buffer)
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
    /// committed twice is refused; the books are unchanged by either.
    #[test]
    fn unknown_and_repeated_tokens_change_nothing() {
        let mut buffers = Buffers::new(8);
        assert_eq!(buffers.complete(3), None);
        assert_eq!(buffers.complete(u16::MAX), None);
        let reservation = buffers.reserve(Sender::Environment(1)).expect("free");
        buffers.commit(reservation, 3, 60).expect("fresh");
        let again = buffers.reserve(Sender::Environment(1)).expect("free");
        assert_eq!(buffers.commit(again, 3, 60), Err(CommitRefused(3)));
        assert_eq!(buffers.commit(again, 99, 60), Err(CommitRefused(99)));
        assert_eq!(buffers.in_flight(), 1);
        assert!(buffers.complete(3).is_some());
        assert_eq!(buffers.complete(3), None);
        assert_eq!((buffers.in_flight(), buffers.held_by(1)), (0, 0));
    }
}
