//! Generated code in the kernel: dpf's demux code and ash's compiled handlers, instructions on
//! pages mapped read+execute in the kernel's generated-code region; dpf's hash tables on the
//! kernel heap (read+write, no-execute), whose address is written into the code's data fixups.
//!
//! This is one of the kernel's named `unsafe` modules: it runs generated code.
//!
//! Replacing code: the net module swaps a ring's [`KernelCode`] inside a system call, with
//! interrupts off on the one CPU, so no frame is being classified by the old code when it is
//! dropped (unmapped, frames freed). With more CPUs this needs a grace period.
use crate::mm::{code_region, frames};
use alloc::vec;
use alloc::vec::Vec;
use dpf::jit::CompiledTrie;
use exo_kernel::code_space::CodeSpace;
use spin::{Lazy, Mutex};
use x86_64::{PhysAddr, structures::paging::PhysFrame};

const PAGE_BYTES: usize = 4096;

/// The generated-code region's pages: each installed code holds a range, given back when the
/// code is dropped, so binds and unbinds can go on forever.
static CODE_SPACE: Lazy<Mutex<CodeSpace>> = Lazy::new(|| {
    Mutex::new(CodeSpace::new(
        code_region::KERNEL_CODE_START,
        code_region::KERNEL_CODE_SIZE_BYTES / PAGE_BYTES as u64,
        PAGE_BYTES as u64,
    ))
});

/// The generated function (see `dpf::jit::exec::DemuxFn`).
type DemuxFn =
    unsafe extern "sysv64" fn(data: *const u8, captured_len: usize, wire_len: u32) -> u64;

/// One trie's code, mapped and runnable.
#[derive(Debug)]
pub struct KernelCode {
    code_address: u64,
    code_frames: Vec<u64>,
    /// The tables the code reads through its data fixups (written only by
    /// [`KernelCode::write_data`]); `u64` for alignment; never moved or resized while the code
    /// lives.
    tables: Vec<u64>,
    /// Where the tables start in the compiled code.
    data_offset: usize,
    entry: usize,
}

/// Why code could not be installed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InstallError {
    /// The compiled layout is inconsistent (entry, slot or data outside the instructions).
    BadLayout,
    /// No frame or no room in the code region.
    OutOfMemory,
}

/// Pages of the generated-code region held by installed code now (`kernel_usage`).
pub fn code_pages_in_use() -> u64 {
    code_region::KERNEL_CODE_SIZE_BYTES / PAGE_BYTES as u64 - CODE_SPACE.lock().free_pages()
}

/// Reserves `pages` pages of the generated-code region (given back by [`release`]).
fn reserve(pages: usize) -> Result<u64, InstallError> {
    CODE_SPACE
        .lock()
        .allocate(pages as u64)
        .map_err(|_| InstallError::OutOfMemory)
}

/// Frees code frames: writable again through the identity map, then back to the allocator.
fn free_code_frames(code_frames: &[u64]) {
    for &frame in code_frames {
        // The page was split when the frame became code, so this needs no new table.
        let _ = code_region::set_identity_writable(frame, true);
        frames::free(PhysFrame::containing_address(PhysAddr::new(frame)));
    }
}

/// Gives back a range [`reserve`] handed out.
fn release(code_address: u64, pages: usize) {
    // A range this module reserved and has not released: the code space cannot refuse it.
    let _ = CODE_SPACE.lock().free(code_address, pages as u64);
}

/// Copies `image` into fresh frames (the rest of the last one `int3`) and maps them
/// read+execute at `code_address` (reserved for `image`); the frames. On failure nothing is
/// held: the frames are freed and the range released.
fn map(code_address: u64, image: &[u8]) -> Result<Vec<u64>, InstallError> {
    let pages = image.len().div_ceil(PAGE_BYTES);
    let give_back = |frames_held: &[u64]| {
        free_code_frames(frames_held);
        release(code_address, pages);
    };
    let mut code_frames = Vec::with_capacity(pages);
    for chunk in image.chunks(PAGE_BYTES) {
        let Some(frame) = frames::allocate() else {
            give_back(&code_frames);
            return Err(InstallError::OutOfMemory);
        };
        let frame = frame.start_address().as_u64();
        // SAFETY: the frame was just allocated (ours alone) and is identity-mapped
        // writable; the copy stays inside it. It is not mapped executable yet.
        unsafe {
            core::ptr::write_bytes(frame as *mut u8, 0xcc, PAGE_BYTES);
            core::ptr::copy_nonoverlapping(chunk.as_ptr(), frame as *mut u8, chunk.len());
        }
        code_frames.push(frame);
        // Read-only through the identity map from now on (see `code_region`).
        if code_region::set_identity_writable(frame, false).is_err() {
            give_back(&code_frames);
            return Err(InstallError::OutOfMemory);
        }
    }
    if code_region::map_kernel_code(code_address, &code_frames).is_err() {
        give_back(&code_frames);
        return Err(InstallError::OutOfMemory);
    }
    Ok(code_frames)
}

impl KernelCode {
    /// Copies `compiled` into fresh frames, writes the address of a heap copy of its tables
    /// into its data fixups and maps the instructions read+execute.
    pub fn install(compiled: &CompiledTrie) -> Result<KernelCode, InstallError> {
        let code = compiled.code();
        let data_offset = compiled.data_offset();
        let entry = compiled.entry_offset();
        if entry >= data_offset || data_offset > code.len() {
            return Err(InstallError::BadLayout);
        }
        let (instructions, table_bytes) = code.split_at(data_offset);
        let mut tables = vec![0u64; table_bytes.len().div_ceil(8)];
        for (word, chunk) in tables.iter_mut().zip(table_bytes.chunks(8)) {
            let mut bytes = [0u8; 8];
            bytes[..chunk.len()].copy_from_slice(chunk);
            *word = u64::from_le_bytes(bytes);
        }
        let pages = instructions.len().div_ceil(PAGE_BYTES);
        let code_address = reserve(pages)?;
        let mut image = Vec::from(instructions);
        let fixups = compiled.data_fixups();
        let fixups_fit = fixups
            .iter()
            .all(|&at| at.checked_add(8).is_some_and(|end| end <= image.len()));
        if !fixups_fit || (table_bytes.is_empty() && !fixups.is_empty()) {
            release(code_address, pages);
            return Err(InstallError::BadLayout);
        }
        let address = (tables.as_ptr() as u64).to_le_bytes();
        for &at in fixups {
            image[at..at + 8].copy_from_slice(&address);
        }
        let code_frames = map(code_address, &image)?;
        Ok(KernelCode {
            code_address,
            code_frames,
            tables,
            data_offset,
            entry,
        })
    }

    /// Writes `bytes` at `offset` of the compiled code (which must lie in its tables) into
    /// the tables this code reads: a table entry [`dpf::jit::Demux`] patched in place. Called
    /// in a system call with interrupts off on the one CPU, so the code is not running.
    pub fn write_data(&mut self, offset: usize, bytes: &[u8]) -> Result<(), InstallError> {
        let start = offset
            .checked_sub(self.data_offset)
            .ok_or(InstallError::BadLayout)?;
        let end = start
            .checked_add(bytes.len())
            .ok_or(InstallError::BadLayout)?;
        if end > self.tables.len() * 8 {
            return Err(InstallError::BadLayout);
        }
        for (at, &byte) in (start..end).zip(bytes) {
            let shift = 8 * (at % 8);
            let word = &mut self.tables[at / 8];
            *word = (*word & !(0xff << shift)) | (u64::from(byte) << shift);
        }
        Ok(())
    }

    /// Runs the code on `frame` (its captured length is its wire length); nonzero = match.
    pub fn classify(&self, frame: &[u8]) -> u64 {
        // SAFETY: (1) `code_address + entry` is an instruction of the code `install` mapped
        // read+execute, live as long as `self`; its data fixups hold the address of `tables`,
        // which lives as long as `self` and is never resized, so every table address the code
        // forms lies inside it. (2) The bytes are a function dpf's generator produced with the
        // `DemuxFn` signature from a verified trie: it reads only `frame[..len]` (each load is
        // bounds-checked), its tables and its own stack, writes only its stack, clobbers only
        // caller-saved registers and terminates (forward jumps; the hash probe stops at an
        // empty slot of a table at most half full). (3) `frame` is a live slice.
        unsafe {
            let function: DemuxFn =
                core::mem::transmute::<u64, DemuxFn>(self.code_address + self.entry as u64);
            function(frame.as_ptr(), frame.len(), frame.len() as u32)
        }
    }
}

impl Drop for KernelCode {
    fn drop(&mut self) {
        code_region::unmap_kernel_code(self.code_address, self.code_frames.len());
        free_code_frames(&self.code_frames);
        release(self.code_address, self.code_frames.len());
    }
}

/// A compiled ash handler (`ash::jit`), mapped and runnable.
#[derive(Debug)]
pub struct HandlerCode {
    code_address: u64,
    code_frames: Vec<u64>,
}

/// The handler's generated function (see `ash::jit`).
type HandlerFn = unsafe extern "sysv64" fn(frame: *mut ash::jit::Frame) -> u64;

/// The service trampoline the generated code calls for stores, loads outside the packet and
/// actions.
extern "sysv64" fn serve(frame: *mut ash::jit::Frame, index: u64) -> u64 {
    // SAFETY: the generated code passes back the frame `HandlerCode::run` gave it, made from
    // a live `&mut Frame` not otherwise used during the call; `context` is the address of
    // the live `Service` that `run` set, likewise unused meanwhile.
    let frame = unsafe { &mut *frame };
    // SAFETY: as above.
    let service = unsafe { &mut *(frame.context as *mut ash::jit::Service<'_>) };
    service.serve(frame, index)
}

impl HandlerCode {
    /// Copies `compiled` into fresh frames and maps it read+execute.
    pub fn install(compiled: &ash::jit::Compiled) -> Result<HandlerCode, InstallError> {
        let image = compiled.code();
        if image.is_empty() {
            return Err(InstallError::BadLayout);
        }
        let code_address = reserve(image.len().div_ceil(PAGE_BYTES))?;
        let code_frames = map(code_address, image)?;
        Ok(HandlerCode {
            code_address,
            code_frames,
        })
    }

    /// Runs `handler` (the one this code was compiled from) on `packet`.
    pub fn run(
        &self,
        handler: &ash::Handler,
        packet: &[u8],
        machine: &mut ash::Machine,
        actions: &mut dyn ash::Actions,
    ) -> ash::Run {
        ash::jit::run(handler, packet, machine, actions, |frame, service| {
            frame.service = serve as *const () as u64;
            frame.context = service as *mut ash::jit::Service<'_> as u64;
            // SAFETY: (1) `code_address` is the first instruction of the function
            // `ash::jit::compile` generated for `handler` (verified), mapped read+execute by
            // `install` and live as long as `self`. (2) It reads the packet only within
            // `frame.packet_len` bytes (every load checked), reads and writes only the frame
            // and its own stack, calls only `serve`, preserves the callee-saved registers it
            // uses (rbx, r12, r13) and terminates: forward jumps, counted loops, and a cost
            // check against the verified bound on every instruction. (3) `frame` points at
            // `packet`, live for the call.
            unsafe {
                let function = core::mem::transmute::<u64, HandlerFn>(self.code_address);
                function(frame as *mut ash::jit::Frame)
            }
        })
    }
}

impl Drop for HandlerCode {
    fn drop(&mut self) {
        code_region::unmap_kernel_code(self.code_address, self.code_frames.len());
        free_code_frames(&self.code_frames);
        release(self.code_address, self.code_frames.len());
    }
}

/// `test=jit-readonly`: installs the code of a one-filter trie, then writes to its first
/// frame through the identity map. The write must fault (the frame is read-only there while
/// the code lives); the kernel's page-fault report then ends the run in a panic.
pub fn self_test_write_code() {
    let mut trie = dpf::trie::Trie::new();
    let filter = dpf::UnverifiedFilter {
        id: dpf::FilterId(1),
        steps: alloc::vec![dpf::Step::eq(12, dpf::ir::Width::B2, 0x0800)],
    }
    .verify()
    .expect("a one-atom filter verifies");
    trie.insert(filter).expect("an empty trie takes a filter");
    let compiled = dpf::jit::compile(&trie).expect("code for a one-filter trie");
    let code = KernelCode::install(&compiled).expect("installing the code");
    let frame = code.code_frames[0];
    log!("self-test: test=jit-readonly, writing code frame {frame:#x} through the identity map");
    // SAFETY: none, on purpose: this is the write the identity map must refuse. If it were
    // allowed it would only overwrite an `int3`-filled code frame nothing runs afterwards.
    unsafe { core::ptr::write_volatile(frame as *mut u8, 0x90) };
    panic!("self-test: writing generated code through the identity map did not fault");
}
