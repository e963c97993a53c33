//! ARP replies to an app's own requests reach its stack, and only the apps that asked
//! (`exo_kernel::arp_questions` holds the bookkeeping and says why). [`asked`] runs after the
//! transmit check has allowed a frame; [`mark_askers`] runs in the demux, before the ring
//! copies, and marks the stack ring of each app that asked about the reply's sender: the
//! ring of the app's with a port-claiming filter (a libnet stack has one), which gets a copy
//! like any other. Lock order: `NET`, then this module's table.
use super::counters::{Counters, bump};
use super::ring::Ring;
use crate::env::EnvId;
use exo_abi::net::Counter;
use exo_kernel::arp_questions::{PER_APP, Questions, Recorded, reply_sender, request_target};
use spin::Mutex;

/// Room for [`PER_APP`] questions of every environment that can exist at once.
static QUESTIONS: Mutex<Questions<{ crate::sched::MAX_ENVS * PER_APP }>> =
    Mutex::new(Questions::new());

/// `owner` sent `frame` (the transmit check allowed it): if it is an ARP request from the
/// host's addresses, the question is recorded.
pub(super) fn asked(
    owner: EnvId,
    frame: &[u8],
    mac: [u8; 6],
    ipv4: [u8; 4],
    counters: &mut Counters,
) {
    let Some(target) = request_target(frame, mac, ipv4) else {
        return;
    };
    let now = crate::arch::timer::ticks();
    if QUESTIONS.lock().record(owner, target, now) == Recorded::NoRoom {
        bump(counters, Counter::ArpQuestionsUnrecorded);
    }
}

/// If `frame` is an ARP reply to the host's addresses, marks the stack ring of every app that
/// asked about its sender for a copy.
pub(super) fn mark_askers(
    frame: &[u8],
    mac: [u8; 6],
    ipv4: [u8; 4],
    rings: &mut [Ring],
    counters: &mut Counters,
) {
    let Some(sender) = reply_sender(frame, mac, ipv4) else {
        return;
    };
    let now = crate::arch::timer::ticks();
    QUESTIONS.lock().askers(sender, now, |owner| {
        let stack_ring = rings.iter_mut().find(|ring| {
            ring.owner == owner && ring.filters.iter().any(|bound| bound.claim.is_some())
        });
        if let Some(ring) = stack_ring {
            ring.matched = true;
            bump(counters, Counter::ArpAnswersToAskers);
        }
    });
}

/// `owner` ended: its questions go.
pub(super) fn forget(owner: EnvId) {
    QUESTIONS.lock().forget(owner);
}
