//! The kernel side of a handler run (`ash::Actions`): the owner's regions through the frames
//! pinned at bind time, replies through the transmit check into an outbox the receive loop
//! sends from, wake-ups and upcalls as deliveries to the owner.
#![forbid(unsafe_code)]
use super::{Ring, physical};
use crate::env::EnvId;
use alloc::vec::Vec;
use exo_abi::layout::PAGE_SIZE_BYTES;

/// Replies queued during a poll (sent after the frame that caused them, outside the NIC's
/// receive callback), owners to wake and handler upcalls to raise.
#[derive(Debug)]
pub struct Outbox {
    pub replies: Vec<Vec<u8>>,
    /// Wakes and upcalls the handlers asked for.
    pub requests: exo_kernel::ash_events::Requests<EnvId>,
    /// Handlers disabled: (owner, handler id, aborts).
    pub disabled: Vec<(EnvId, u32, u64)>,
}

/// Most replies queued before the receive loop sends them (one poll's frames at the most
/// replies a run may send).
const OUTBOX_MAX_REPLIES: usize = super::POLL_BUDGET * ash::ir::MAX_REPLIES_PER_RUN as usize;

/// Most wakes, and most upcalls, queued in one poll (a run may call either in a loop, so the
/// bound is on the queue; what does not fit is dropped and counted).
pub const OUTBOX_MAX_REQUESTS: usize = 4 * super::POLL_BUDGET;

/// One run's host.
pub struct Host<'a> {
    /// Physical address of each page of each region, in the handler's region order.
    pub regions: &'a [Vec<u64>],
    pub owner: EnvId,
    /// The handler's id (what its upcalls name).
    pub handler: u32,
    /// What its replies may be beyond the transmit check's allow list.
    pub privilege: exo_kernel::tx_check::Privilege,
    /// For the owner's claimed ports (the transmit check).
    pub rings: &'a [Ring],
    pub mac: [u8; 6],
    pub ipv4: [u8; 4],
    pub outbox: &'a mut Outbox,
}

impl Host<'_> {
    /// The physical address of byte `offset` of `region`, if the region has it.
    fn physical(&self, region: u8, offset: u32) -> Option<u64> {
        let pages = self.regions.get(usize::from(region))?;
        let page = pages.get((u64::from(offset) / PAGE_SIZE_BYTES) as usize)?;
        Some(page + u64::from(offset) % PAGE_SIZE_BYTES)
    }
}

impl ash::Actions for Host<'_> {
    fn region(
        &mut self,
        region: u8,
        offset: u32,
        len: u32,
        piece: &mut dyn FnMut(&mut [u8]),
    ) -> bool {
        let end = u64::from(offset) + u64::from(len);
        let mut at = u64::from(offset);
        // Check every page first: a range is touched whole or not at all.
        while at < end {
            if self.physical(region, at as u32).is_none() {
                return false;
            }
            at = (at / PAGE_SIZE_BYTES + 1) * PAGE_SIZE_BYTES;
        }
        let mut at = u64::from(offset);
        while at < end {
            let page_end = ((at / PAGE_SIZE_BYTES + 1) * PAGE_SIZE_BYTES).min(end);
            let Some(physical) = self.physical(region, at as u32) else {
                return false;
            };
            physical::with_bytes(physical, (page_end - at) as usize, |bytes| piece(bytes));
            at = page_end;
        }
        true
    }

    fn fetch_add(&mut self, region: u8, offset: u32, value: u64) -> Option<u64> {
        if !offset.is_multiple_of(8) {
            return None;
        }
        let word = physical::word(self.physical(region, offset)?);
        Some(
            word.fetch_add(value, core::sync::atomic::Ordering::AcqRel)
                .wrapping_add(value),
        )
    }

    fn compare_swap(&mut self, region: u8, offset: u32, expected: u64, new: u64) -> Option<u64> {
        if !offset.is_multiple_of(8) {
            return None;
        }
        let word = physical::word(self.physical(region, offset)?);
        let ordering = core::sync::atomic::Ordering::AcqRel;
        Some(
            match word.compare_exchange(
                expected,
                new,
                ordering,
                core::sync::atomic::Ordering::Acquire,
            ) {
                Ok(old) | Err(old) => old,
            },
        )
    }

    fn transmit(&mut self, frame: &[u8]) -> bool {
        if self.outbox.replies.len() >= OUTBOX_MAX_REPLIES {
            return false;
        }
        let sender = exo_kernel::tx_check::SenderIdentity {
            mac: self.mac,
            ipv4: self.ipv4,
            ports: &super::ring::OwnedPorts {
                rings: self.rings,
                owner: self.owner,
            },
        };
        if exo_kernel::tx_check::check(frame, &sender, self.privilege).is_err() {
            return false;
        }
        self.outbox.replies.push(frame.to_vec());
        true
    }

    fn wake(&mut self) {
        self.outbox.requests.wake(self.owner);
    }

    fn upcall(&mut self, argument: u64) {
        self.outbox
            .requests
            .upcall(self.owner, self.handler, argument);
    }
}
