//! Who asked whom: the ARP requests apps sent, so that the replies reach the apps that asked
//! and only them. A libnet stack that connects out must learn its neighbour's MAC, but the
//! reply is not addressed to a port the stack owns, and a filter for every ARP reply would let
//! an app hear about every neighbour anyone asks after (which is why it takes a monitor
//! capability). The binding here is narrower: the transmit check has just allowed an app's ARP
//! request (from the host's own addresses), the request names the neighbour asked about, and a
//! reply from that neighbour to the host's addresses is then copied to the app that asked.
//!
//! The table is bounded by construction: each app holds at most [`PER_APP`] questions (a new
//! one replaces its own oldest, so a flood of requests churns only the flooder's entries), and
//! there is room for [`PER_APP`] questions of every environment that can exist at once. A
//! question expires after [`LIFETIME_TICKS`].

/// An environment, as the scheduler numbers it.
pub type Owner = u32;

/// Questions one app may have open at once.
pub const PER_APP: usize = 4;
/// How long a question waits for its reply (3 s at 100 Hz; smoltcp asks again each second).
pub const LIFETIME_TICKS: u64 = 300;

/// Bytes of an Ethernet + ARP-for-IPv4 frame.
const ARP_FRAME_BYTES: usize = 14 + 28;
/// Ethernet, IPv4, 6- and 4-byte addresses.
const ARP_ETHERNET_IPV4: [u8; 6] = [0, 1, 8, 0, 6, 4];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Question {
    owner: Owner,
    /// The IPv4 address asked about.
    target: [u8; 4],
    /// When it was asked (for replacing the oldest) and until when it waits.
    asked_at: u64,
    expires_at: u64,
}

/// What [`Questions::record`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Recorded {
    /// A new question.
    New,
    /// The same question again: its lifetime starts over.
    Renewed,
    /// The app had [`PER_APP`] open questions: its oldest made room.
    ReplacedOwnOldest,
    /// No room (only if more environments than the table was sized for ask at once).
    NoRoom,
}

/// The open questions.
#[derive(Debug)]
pub struct Questions<const SLOTS: usize> {
    slots: [Option<Question>; SLOTS],
}

impl<const SLOTS: usize> Questions<SLOTS> {
    /// No questions.
    pub const fn new() -> Self {
        Questions {
            slots: [None; SLOTS],
        }
    }

    /// Records that `owner` asked about `target` at `now`.
    pub fn record(&mut self, owner: Owner, target: [u8; 4], now: u64) -> Recorded {
        let question = Question {
            owner,
            target,
            asked_at: now,
            expires_at: now.saturating_add(LIFETIME_TICKS),
        };
        let live = |slot: &Option<Question>| slot.filter(|question| now < question.expires_at);
        if let Some(slot) = self.slots.iter_mut().find(|slot| {
            live(slot).is_some_and(|open| open.owner == owner && open.target == target)
        }) {
            *slot = Some(question);
            return Recorded::Renewed;
        }
        let own = self
            .slots
            .iter()
            .filter(|slot| live(slot).is_some_and(|open| open.owner == owner))
            .count();
        if own >= PER_APP {
            let oldest = self
                .slots
                .iter_mut()
                .filter(|slot| live(slot).is_some_and(|open| open.owner == owner))
                .min_by_key(|slot| slot.map_or(0, |open| open.asked_at));
            if let Some(slot) = oldest {
                *slot = Some(question);
                return Recorded::ReplacedOwnOldest;
            }
        }
        match self.slots.iter_mut().find(|slot| live(slot).is_none()) {
            Some(slot) => {
                *slot = Some(question);
                Recorded::New
            }
            None => Recorded::NoRoom,
        }
    }

    /// Calls `asker` for every app with an open question about `sender` at `now`.
    pub fn askers(&self, sender: [u8; 4], now: u64, mut asker: impl FnMut(Owner)) {
        for question in self.slots.iter().flatten() {
            if question.target == sender && now < question.expires_at {
                asker(question.owner);
            }
        }
    }

    /// Forgets `owner`'s questions (it ended).
    pub fn forget(&mut self, owner: Owner) {
        for slot in self.slots.iter_mut() {
            if slot.is_some_and(|question| question.owner == owner) {
                *slot = None;
            }
        }
    }

    /// Open questions at `now`.
    pub fn open(&self, now: u64) -> usize {
        self.slots
            .iter()
            .flatten()
            .filter(|question| now < question.expires_at)
            .count()
    }
}

impl<const SLOTS: usize> Default for Questions<SLOTS> {
    fn default() -> Self {
        Self::new()
    }
}

/// The address an untagged ARP request from the host's own `mac` and `ipv4` asks about.
pub fn request_target(frame: &[u8], mac: [u8; 6], ipv4: [u8; 4]) -> Option<[u8; 4]> {
    let arp = arp_for(frame, 1)?;
    (arp[8..14] == mac && arp[14..18] == ipv4).then(|| arp[24..28].try_into().expect("4 bytes"))
}

/// The sender of an untagged ARP reply to the host's own `mac` and `ipv4`.
pub fn reply_sender(frame: &[u8], mac: [u8; 6], ipv4: [u8; 4]) -> Option<[u8; 4]> {
    let arp = arp_for(frame, 2)?;
    (frame[..6] == mac && arp[18..24] == mac && arp[24..28] == ipv4)
        .then(|| arp[14..18].try_into().expect("4 bytes"))
}

/// The ARP body of an untagged Ethernet/IPv4 ARP frame with operation `operation`.
fn arp_for(frame: &[u8], operation: u8) -> Option<&[u8]> {
    if frame.len() < ARP_FRAME_BYTES || frame[12..14] != [0x08, 0x06] {
        return None;
    }
    let arp = &frame[14..ARP_FRAME_BYTES];
    (arp[..6] == ARP_ETHERNET_IPV4 && arp[6..8] == [0, operation]).then_some(arp)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAC: [u8; 6] = [0x52, 0x54, 0, 0x12, 0x34, 0x56];
    const HOST: [u8; 4] = [10, 0, 2, 15];
    const PEER_MAC: [u8; 6] = [2, 0, 0, 0, 0, 2];
    const PEER: [u8; 4] = [10, 0, 2, 2];

    fn arp(operation: u8, from: ([u8; 6], [u8; 4]), to: ([u8; 6], [u8; 4])) -> [u8; 42] {
        let mut frame = [0u8; 42];
        frame[..6].copy_from_slice(if operation == 1 { &[0xff; 6] } else { &to.0 });
        frame[6..12].copy_from_slice(&from.0);
        frame[12..14].copy_from_slice(&[8, 6]);
        frame[14..20].copy_from_slice(&ARP_ETHERNET_IPV4);
        frame[21] = operation;
        frame[22..28].copy_from_slice(&from.0);
        frame[28..32].copy_from_slice(&from.1);
        frame[32..38].copy_from_slice(if operation == 1 { &[0; 6] } else { &to.0 });
        frame[38..42].copy_from_slice(&to.1);
        frame
    }

    fn askers<const N: usize>(questions: &Questions<N>, sender: [u8; 4], now: u64) -> Vec<u32> {
        let mut owners = Vec::new();
        questions.askers(sender, now, |owner| owners.push(owner));
        owners
    }

    #[test]
    fn requests_and_replies_are_read_only_for_the_hosts_addresses() {
        let request = arp(1, (MAC, HOST), ([0; 6], PEER));
        assert_eq!(request_target(&request, MAC, HOST), Some(PEER));
        // From another address, or a reply: not a question.
        assert_eq!(request_target(&request, MAC, [10, 0, 2, 16]), None);
        assert_eq!(
            request_target(&arp(2, (MAC, HOST), (PEER_MAC, PEER)), MAC, HOST),
            None
        );
        let reply = arp(2, (PEER_MAC, PEER), (MAC, HOST));
        assert_eq!(reply_sender(&reply, MAC, HOST), Some(PEER));
        // To another address or MAC, a request, cut short, or tagged: not an answer.
        assert_eq!(reply_sender(&reply, MAC, [10, 0, 2, 16]), None);
        assert_eq!(reply_sender(&reply, PEER_MAC, HOST), None);
        assert_eq!(
            reply_sender(&arp(1, (PEER_MAC, PEER), (MAC, HOST)), MAC, HOST),
            None
        );
        assert_eq!(reply_sender(&reply[..41], MAC, HOST), None);
        let mut tagged = reply;
        tagged[12..14].copy_from_slice(&[0x81, 0]);
        assert_eq!(reply_sender(&tagged, MAC, HOST), None);
    }

    #[test]
    fn only_the_app_that_asked_hears_and_only_for_a_while() {
        let mut questions = Questions::<16>::new();
        assert_eq!(questions.record(7, PEER, 100), Recorded::New);
        assert_eq!(askers(&questions, PEER, 101), vec![7]);
        assert_eq!(askers(&questions, [10, 0, 2, 3], 101), Vec::<u32>::new());
        assert_eq!(
            askers(&questions, PEER, 100 + LIFETIME_TICKS),
            Vec::<u32>::new()
        );
        assert_eq!(questions.record(7, PEER, 150), Recorded::Renewed);
        assert_eq!(askers(&questions, PEER, 100 + LIFETIME_TICKS), vec![7]);
        assert_eq!(questions.record(8, PEER, 150), Recorded::New);
        assert_eq!(askers(&questions, PEER, 151), vec![7, 8]);
        questions.forget(7);
        assert_eq!(askers(&questions, PEER, 151), vec![8]);
    }

    #[test]
    fn a_flood_of_requests_churns_only_the_flooders_questions() {
        let mut questions = Questions::<{ 3 * PER_APP }>::new();
        assert_eq!(questions.record(1, PEER, 0), Recorded::New);
        assert_eq!(questions.record(2, [10, 0, 2, 9], 0), Recorded::New);
        for index in 0..10_000u32 {
            let target = [10, 1, (index >> 8) as u8, index as u8];
            let recorded = questions.record(3, target, 1 + u64::from(index) / 100);
            assert_ne!(recorded, Recorded::NoRoom);
        }
        assert_eq!(questions.open(50), 2 + PER_APP);
        assert_eq!(askers(&questions, PEER, 50), vec![1]);
        assert_eq!(askers(&questions, [10, 0, 2, 9], 50), vec![2]);
        // The other apps can still ask.
        assert_eq!(questions.record(2, [10, 0, 2, 10], 50), Recorded::New);
    }

    #[test]
    fn a_full_table_refuses_rather_than_evicting_another_app() {
        let mut questions = Questions::<2>::new();
        assert_eq!(questions.record(1, PEER, 0), Recorded::New);
        assert_eq!(questions.record(2, PEER, 0), Recorded::New);
        assert_eq!(questions.record(3, PEER, 0), Recorded::NoRoom);
        assert_eq!(askers(&questions, PEER, 1), vec![1, 2]);
        // Expired questions make room.
        assert_eq!(questions.record(3, PEER, LIFETIME_TICKS), Recorded::New);
    }
}
