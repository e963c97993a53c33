//! Communication between environments on shared pages: a shared-memory region granted by
//! capability, and pipes (a [`RingPage`] in such a region; wake-up by protected control
//! transfer or by yielding to the peer, which the app chooses).
//!
//! Setting one up: the owner [`SharedPage::create`]s the page, [`SharedPage::grant`]s it to
//! the peer (the handle it returns is the one the peer knows), passes that handle (a PCT
//! argument), and the peer [`SharedPage::attach`]es it at an address of its choosing.
//! Deleting the owner's capability unmaps it from the peer too.
#![allow(unsafe_code)]
use crate::ring::RingPage;
pub use crate::ring::{MESSAGE_HEADER_BYTES, PipeReader, PipeWriter};
use crate::sys;
use core::sync::atomic::AtomicU64;
use exo_abi::Error;
use exo_abi::cap::{CapHandle, Rights};
use exo_abi::syscall::ANY_FRAME;

/// One page mapped readable and writable in this environment.
#[derive(Debug)]
pub struct SharedPage {
    address: u64,
    cap: CapHandle,
}

impl SharedPage {
    /// Allocates a fresh zeroed page and maps it at `address`.
    pub fn create(address: u64) -> Result<SharedPage, Error> {
        let cap = sys::page_alloc(ANY_FRAME)?;
        if let Err(error) = sys::page_map(cap, address, Rights::READ | Rights::WRITE) {
            let _ = sys::cap_delete(cap);
            return Err(error);
        }
        Ok(SharedPage { address, cap })
    }

    /// A page this environment already mapped with [`SharedPage::create`] or
    /// [`SharedPage::attach`] (to keep it in a static as two numbers).
    ///
    /// # Safety
    /// `address` must be where that call mapped the page, and the page must not have been
    /// released here.
    pub unsafe fn from_raw(address: u64, cap: CapHandle) -> SharedPage {
        SharedPage { address, cap }
    }

    /// Maps a page another environment granted (`cap`, as this environment knows it).
    pub fn attach(cap: CapHandle, address: u64) -> Result<SharedPage, Error> {
        sys::page_map(cap, address, Rights::READ | Rights::WRITE)?;
        Ok(SharedPage { address, cap })
    }

    /// Lets the environment `to` names map the page (read and write); returns the handle as
    /// that environment knows it.
    pub fn grant(&self, to: CapHandle) -> Result<CapHandle, Error> {
        sys::cap_grant(self.cap, to, Rights::READ | Rights::WRITE)
    }

    /// Where the page is mapped here.
    pub fn address(&self) -> u64 {
        self.address
    }

    /// The capability this environment holds for it.
    pub fn cap(&self) -> CapHandle {
        self.cap
    }

    /// The page as a ring. A peer that revokes the page makes later accesses fault (the
    /// exception upcall reports them).
    pub fn ring(&self) -> &RingPage {
        // SAFETY: the page is mapped readable and writable for as long as `self` lives (the
        // borrow ties the reference to it), is page-aligned and one page long as `RingPage`
        // is, and every field of `RingPage` is an atomic, valid for any bytes and for
        // concurrent use by the peer.
        unsafe { &*(self.address as *const RingPage) }
    }

    /// The page as 512 shared words (atomics: the peer may use them at the same time).
    pub fn words(&self) -> &[AtomicU64; 512] {
        // SAFETY: as `ring`: mapped, aligned, one page, atomics valid for any bytes.
        unsafe { &*(self.address as *const [AtomicU64; 512]) }
    }

    /// Unmaps the page here; the owner's copy also frees it and unmaps it everywhere.
    pub fn release(self) -> Result<(), Error> {
        sys::cap_delete(self.cap).map(drop)
    }
}
