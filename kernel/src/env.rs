//! Environments: an app's address space, what it mapped, its saved registers, its upcall
//! entries and its accounting. The scheduler (`sched`) owns them all.
use crate::arch::fpu::FpuState;
use crate::arch::trap::TrapFrame;
use crate::mm::address_space::{AddressSpace, MapError};
use alloc::string::String;
use alloc::vec::Vec;
use exo_abi::cap::CapHandle;
use exo_abi::layout::{USER_BASE, USER_END, USER_STACK_SIZE_BYTES, USER_STACK_TOP};
use exo_abi::quota::Limits;
use exo_abi::upcall::{RepossessedPage, UpcallKind};
use exo_kernel::elf::{self, Access, ElfError};
use exo_kernel::user_mappings::{UserMappings, UserRegion};

/// An environment's identity, unique for the life of the kernel (ids are never reused).
pub type EnvId = u32;

/// Why an app image could not become an environment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LoadError {
    /// The ELF image was refused.
    Elf(ElfError),
    /// A page could not be mapped.
    Map(MapError),
}

/// What an environment is doing, as far as scheduling and PCT are concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// Has a context and may run.
    Runnable,
    /// Gave up its context in `pct_wait`: runs only when called (at its PCT entry).
    Receiving,
    /// Blocked in `pct_call` on this environment, which runs on the caller's slices.
    Calling(EnvId),
    /// Running a PCT activation, for this synchronous caller (`None`: an async send).
    Serving(Option<EnvId>),
    /// Blocked in `net_wait` until frames reach its rings, the kernel has taken more than
    /// `rx_frames_seen` frames from the NIC, or the timer reaches `deadline_tick`.
    NetWaiting {
        deadline_tick: u64,
        rx_frames_seen: u64,
    },
}

pub use exo_kernel::page_bindings::{PageBinding, PageBindings};

/// A pending visible revocation: the kernel asked for pages back.
#[derive(Clone, Debug)]
pub struct Revocation {
    /// Pages asked for.
    pub count: u64,
    /// Root page capabilities held at the request and deleted since.
    pub returned: u64,
    /// Timer tick after which the kernel takes the rest.
    pub deadline_tick: u64,
    /// The root page capabilities held when the request was made (raw handles, sorted), not
    /// yet given back: only deleting one of these answers the request. A page allocated
    /// afterwards and deleted gives nothing back.
    pub held: Vec<u64>,
}

impl Revocation {
    /// Counts `handle`'s deletion if it is one of the pages held at the request.
    pub fn page_deleted(&mut self, handle: CapHandle) {
        if let Ok(index) = self.held.binary_search(&handle.raw()) {
            self.held.remove(index);
            self.returned += 1;
        }
    }
}

/// A protection domain running one app.
#[derive(Debug)]
pub struct Environment {
    pub id: EnvId,
    pub name: String,
    pub space: AddressSpace,
    pub mappings: UserMappings,
    /// Pages mapped with `page_map`, by virtual address.
    pub page_bindings: PageBindings,
    /// Saved registers while not running.
    pub context: TrapFrame,
    pub state: State,
    /// While `Calling` from inside a PCT activation (a nested call): the `Serving` it returns
    /// to when its callee returns (`Some(None)`: serving an asynchronous send).
    pub nested_in: Option<Option<EnvId>>,
    /// Upcall entries, by [`UpcallKind`]; 0 = none.
    pub upcalls: [u64; UpcallKind::COUNT],
    /// Stack top PCT activations start on.
    pub pct_stack: u64,
    /// An end-of-slice upcall was delivered and not yet answered with `yield`. It stays set
    /// across an overstay: the environment is still in that handler, so the kernel writes no
    /// second frame and counts the next slice's end as another overstay.
    pub slice_end_pending: bool,
    pub overstays: u64,
    /// Slices still to be skipped for overstaying.
    pub penalty: u64,
    pub ticks_charged: u64,
    /// Times the scheduler switched to it.
    pub dispatches: u64,
    pub revocation: Option<Revocation>,
    /// A revocation upcall waits for the next time the environment runs.
    pub revoke_upcall_pending: bool,
    /// What the kernel repossessed and the environment has not read yet.
    pub repossessed: Vec<RepossessedPage>,
    pub repossessed_total: u64,
    /// Copies delivered to its packet rings since its last `net_wait` returned.
    pub net_delivered: u64,
    /// Copies delivered since its last packet upcall (counted only with a `Packet` entry):
    /// nonzero means one is due.
    pub packet_upcall_due: u64,
    /// Its x87/MMX/SSE registers while another environment runs (see `arch::fpu`).
    pub fpu: alloc::boxed::Box<FpuState>,
    /// The environment that spawned it (`None` for a boot app).
    pub parent: Option<EnvId>,
    /// Its console output is at the start of a line (the kernel marks each of its lines).
    pub console_at_line_start: bool,
    /// How much of each resource it may hold, itself and through its children.
    pub limits: Limits,
    /// What of its limits it gave its live children.
    pub reserved: Limits,
    /// Handlers of its disabled since it last ran, with their aborts (counted only with an
    /// `AshDisabled` entry): one upcall each, one per dispatch.
    pub ash_disabled_due: Vec<(u32, u64)>,
    /// Upcalls its handlers raised, not yet delivered (kept only with a `Packet` entry): one
    /// per dispatch, each naming its handler and carrying its argument.
    pub handler_upcalls_due: exo_kernel::ash_events::UpcallsDue,
}

impl Environment {
    /// Its `pct_call` has ended (the callee returned or ended): back to running, or to the
    /// activation it called from.
    pub fn call_ended(&mut self) {
        self.state = match self.nested_in.take() {
            Some(serving) => State::Serving(serving),
            None => State::Runnable,
        };
    }

    /// Builds an environment from a static ELF image: maps and fills its segments and a
    /// stack in a fresh address space. Its context starts at the ELF entry.
    pub fn load(id: EnvId, name: &str, image: &[u8]) -> Result<Environment, LoadError> {
        let elf = elf::parse(image, USER_BASE, USER_END).map_err(LoadError::Elf)?;
        let mut env = Environment {
            id,
            name: String::from(name),
            space: AddressSpace::new().ok_or(LoadError::Map(MapError::OutOfMemory))?,
            mappings: UserMappings::new(),
            page_bindings: PageBindings::new(),
            context: TrapFrame::user(elf.entry, USER_STACK_TOP),
            state: State::Runnable,
            upcalls: [0; UpcallKind::COUNT],
            pct_stack: 0,
            slice_end_pending: false,
            nested_in: None,
            overstays: 0,
            penalty: 0,
            ticks_charged: 0,
            dispatches: 0,
            revocation: None,
            revoke_upcall_pending: false,
            repossessed: Vec::new(),
            repossessed_total: 0,
            net_delivered: 0,
            packet_upcall_due: 0,
            fpu: alloc::boxed::Box::new(FpuState::clean()),
            parent: None,
            console_at_line_start: true,
            limits: Limits([u64::MAX; exo_abi::quota::RESOURCES]),
            reserved: Limits::default(),
            ash_disabled_due: Vec::new(),
            handler_upcalls_due: exo_kernel::ash_events::UpcallsDue::new(),
        };
        for segment in &elf.segments {
            env.map_region(segment.page_start(), segment.page_end(), segment.access)?;
            let start = segment.file_offset as usize;
            let file = &image[start..start + segment.file_size_bytes as usize];
            env.space
                .write_user(segment.virtual_address, file)
                .expect("the segment's pages were just mapped");
        }
        let (stack_start, stack_end) = Environment::PERMANENT_STACK;
        env.map_region(stack_start, stack_end, Access::READ_WRITE)?;
        Ok(env)
    }

    fn map_region(&mut self, start: u64, end: u64, access: Access) -> Result<(), LoadError> {
        for page in (start..end).step_by(exo_abi::layout::PAGE_SIZE_BYTES as usize) {
            self.space
                .map_user_page(page, access)
                .map_err(LoadError::Map)?;
        }
        self.mappings
            .insert(UserRegion { start, end, access })
            .map_err(|_| LoadError::Map(MapError::AlreadyMapped))
    }

    /// The initial stack, `[start, end)`: mapped readable and writable at load and never
    /// unmapped or protected while the environment lives (`page_unmap` and `page_protect` only
    /// touch `page_map` bindings, and `page_map` cannot overlap it). The trap fast path relies
    /// on this to write exception frames there without checking the mappings.
    pub const PERMANENT_STACK: (u64, u64) =
        (USER_STACK_TOP - USER_STACK_SIZE_BYTES, USER_STACK_TOP);

    /// The entry registered for `kind` (0 = none).
    pub fn upcall(&self, kind: UpcallKind) -> u64 {
        self.upcalls[kind as usize]
    }
}
