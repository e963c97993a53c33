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
    /// The writing end over a shared page's ring.
    pub fn new(page: &'page SharedPage) -> PipeWriter<'page> {
        PipeWriter { ring: page.ring() }
    }

    /// Sends one message whole; `Err(WouldBlock)` when the ring is too full for it now (wake
    /// the reader and try again), `Err(InvalidArgument)` when it can never fit.
    pub fn send(&self, message: &[u8]) -> Result<(), Error> {
        if message.len() + MESSAGE_HEADER_BYTES > crate::ring::RING_DATA_BYTES {
            return Err(Error::InvalidArgument);
        }
        let header = (message.len() as u32).to_le_bytes();
        if crate::ring::RING_DATA_BYTES - self.ring.used() < MESSAGE_HEADER_BYTES + message.len() {
            return Err(Error::WouldBlock);
        }
        // Room for both was checked; only this end writes, so both go in.
        self.ring.write(&header);
        self.ring.write(message);
        Ok(())
    }
}

impl<'page> PipeReader<'page> {
    /// The reading end over a shared page's ring.
    pub fn new(page: &'page SharedPage) -> PipeReader<'page> {
        PipeReader { ring: page.ring() }
    }

    /// Receives the next message into `buffer`; its length, or `Err(WouldBlock)` when none is
    /// there, or `Err(InvalidArgument)` when `buffer` is too small (the message stays).
    pub fn receive(&self, buffer: &mut [u8]) -> Result<usize, Error> {
        let mut header = [0u8; MESSAGE_HEADER_BYTES];
        if self.ring.peek(&mut header) < MESSAGE_HEADER_BYTES {
            return Err(Error::WouldBlock);
        }
        let length = u32::from_le_bytes(header) as usize;
        if length > buffer.len() {
            return Err(Error::InvalidArgument);
        }
        if self.ring.used() < MESSAGE_HEADER_BYTES + length {
            // The writer publishes a message whole, so this is a corrupt ring.
            return Err(Error::Unrecognized);
        }
        self.ring.read(&mut header);
        Ok(self.ring.read(&mut buffer[..length]))
    }
}
