//! The kernel's state and the processor: every environment, the capability space and the
//! slice vector, in one [`Kernel`], and finding an environment by id. Each concern of the
//! processor has a module of its own: [`spawn`] (creating environments), [`schedule`] (who
//! runs), [`upcalls`] (frames delivered to user handlers), [`preemption`] (timer ticks and
//! the NIC's interrupt), [`exceptions`], [`ending`] (ending an environment), [`verdict`]
//! (how the run ends), [`quota`] (limits and use), [`net_wait`] (the NIC and blocking for
//! frames), [`pct`] (protected control transfer and donation), [`undo`] (what removed
//! capabilities were used for) and [`revocation`] (repossession at a revocation deadline).
//!
//! One CPU, and kernel code always runs with interrupts off, so one lock around [`Kernel`]
//! serialises everything; entries take it once. A context switch rewrites the entry frame
//! (the [`TrapFrame`] at the top of the entry stack) with another environment's registers and
//! loads its page table: the kernel keeps no per-environment kernel stack.
#![forbid(unsafe_code)]
use crate::arch::{self, trap::Exception, trap::TrapFrame, trap::USER_RFLAGS};
use crate::env::{EnvId, Environment, LoadError, State};
use crate::mm::{code_region, frames, paging};
use alloc::boxed::Box;
use alloc::string::String;
use alloc::vec::Vec;
use exo_abi::cap::{CapHandle, Rights};
use exo_abi::layout::USER_END;
use exo_abi::net::Counter as NetCounter;
use exo_abi::pack::Pack;
use exo_abi::quota::{Limits, Resource};
use exo_abi::upcall::{
    self, EnvStatus, FRAME_ASH_DISABLED, FRAME_ASH_UPCALL, FRAME_PACKET, FRAME_REVOKE,
    FRAME_SLICE_END, FRAME_SLICE_START, OVERSTAY_LIMIT, RepossessedPage, UPCALL_FRAME_BYTES,
    UpcallFrame, UpcallKind,
};
use exo_abi::{Error, KernelExit};
use exo_kernel::cap::{CapSpace, Object, Removed};
use exo_kernel::ended::{EndedRecords, Pinned};
use exo_kernel::slices::SliceVector;
use spin::Mutex;

mod ending;
mod exceptions;
mod net_wait;
mod pct;
mod preemption;
mod quota;
mod revocation;
mod schedule;
mod spawn;
mod undo;
mod upcalls;
mod verdict;

pub use exceptions::user_exception;
pub use preemption::{network_interrupt, timer_tick};
pub use quota::set_boot_apps;
use quota::{cap_limit, machine_limits};
pub use schedule::{Advance, start};
pub use spawn::{SpawnError, spawn_boot};
use upcalls::deliver;
pub use upcalls::is_user_address;

/// Environments alive at once.
pub const MAX_ENVS: usize = 64;
/// Records of ended environments kept besides the boot apps' (older ones are forgotten).
pub const ENDED_RECORDS: usize = 128;
/// Capabilities alive at once.
pub const MAX_CAPS: usize = 8192;
/// Pages all environments together may map through capabilities: each costs kernel heap
/// (its binding and region entries), so this bounds what mappings can take of it.
pub const MAX_PAGE_BINDINGS: u64 = 32_768;
/// Packet filters all environments together may bind.
pub const MAX_FILTERS: u64 = 1024;
/// Handlers all environments together may bind (each holds verified code, its compiled
/// code and pinned region frames).
pub const MAX_HANDLERS: u64 = 64;
/// Rights on a capability to an environment its creator gets.
pub const ENV_ALL: Rights = Rights::GRANT
    .union(Rights::CALL)
    .union(Rights::YIELD)
    .union(Rights::CONTROL);
/// Rights on the capability a child gets to its parent.
pub const PARENT_RIGHTS: Rights = Rights::CALL.union(Rights::YIELD);

/// An environment that has ended, for `env_info` and the final verdict.
#[derive(Debug)]
struct Ended {
    status: EnvStatus,
    ticks_charged: u64,
    overstays: u64,
    repossessed: u64,
    dispatches: u64,
}

/// Everything the kernel knows.
#[derive(Debug)]
pub struct Kernel {
    /// Indexed by [`slot`]: an array, so that index is in bounds by its type.
    envs: [Option<Box<Environment>>; MAX_ENVS],
    /// The id after the last one handed out (see `exo_kernel::env_ids`): wider than an id,
    /// so it cannot wrap.
    next_id: u64,
    pub caps: CapSpace,
    slices: SliceVector,
    /// The environment whose context is in the entry frame (0: none).
    running: EnvId,
    /// The owner of the current slice (charged for the time, even when it donated it).
    slice_owner: EnvId,
    /// Whose page table is loaded (0: the kernel's).
    active_space: EnvId,
    /// Whose x87/MMX/SSE state the registers hold (0: the clean boot state's, nobody's).
    fpu_owner: EnvId,
    ended: EndedRecords<Ended>,
    boot_apps: Vec<EnvId>,
    frames_before: u64,
    /// The limits each boot app gets.
    boot_share: Limits,
    pack: Pack<'static>,
}

static KERNEL: Mutex<Option<Kernel>> = Mutex::new(None);

/// Runs `action` on the kernel state (from an entry; interrupts are off).
pub fn with_kernel<R>(action: impl FnOnce(&mut Kernel) -> R) -> R {
    let mut kernel = KERNEL.lock();
    // Unreachable while empty: the callers are entries from ring 3 (system calls, and traps
    // that interrupted ring 3) and boot after `init`, and ring 3 is first entered by `start`,
    // which boot calls after `init`.
    action(kernel.as_mut().expect("sched::init ran"))
}

/// Sets up the kernel state over the boot pack; `frames_before` is what must be free again
/// when every environment has ended.
pub fn init(pack: Pack<'static>) {
    // Exception frames may go anywhere in the stack every environment keeps (see
    // `Environment::PERMANENT_STACK`); elsewhere they take the checked slow path.
    let (stack_start, stack_end) = Environment::PERMANENT_STACK;
    arch::percpu::set_exception_frame_range(stack_start, stack_end);
    *KERNEL.lock() = Some(Kernel {
        envs: [const { None }; MAX_ENVS],
        next_id: 1,
        caps: CapSpace::new(MAX_CAPS),
        slices: SliceVector::new(),
        running: 0,
        slice_owner: 0,
        active_space: 0,
        fpu_owner: 0,
        ended: EndedRecords::new(ENDED_RECORDS),
        boot_apps: Vec::new(),
        frames_before: frames::free_count()
            + code_region::code_table_frames()
            + code_region::split_table_frames(),
        boot_share: machine_limits(),
        pack,
    });
}

/// Where `id` lives in [`Kernel::envs`]: below `MAX_ENVS`, the array's length, so indexing
/// by it cannot fail. Ids grow, so a slot's next occupant has another id; lookups compare it.
fn slot(id: EnvId) -> usize {
    id as usize % MAX_ENVS
}

impl Kernel {
    pub fn env(&self, id: EnvId) -> Option<&Environment> {
        self.envs[slot(id)].as_deref().filter(|env| env.id == id)
    }

    pub fn env_mut(&mut self, id: EnvId) -> Option<&mut Environment> {
        self.envs[slot(id)]
            .as_deref_mut()
            .filter(|env| env.id == id)
    }

    /// The running environment (an entry from ring 3 always has one).
    pub fn current(&mut self) -> &mut Environment {
        let id = self.running;
        // Unreachable with no environment: ring 3 runs only the context `schedule` (or
        // `pct_enter`/`pct_return`) loaded with `set_running` of an existing environment, and
        // what ends the running one (`end_env`) sets `running` to 0 and then schedules, so no
        // entry finds it gone. Callers use this only before they end or switch anyone.
        self.env_mut(id)
            .expect("an entry from ring 3 has a running environment")
    }

    pub fn running(&self) -> EnvId {
        self.running
    }

    /// The environment an `Env` capability names, with `needed` rights.
    pub fn env_cap(&self, handle: u64, needed: Rights) -> Result<EnvId, Error> {
        // The type first: a capability to something else is the wrong capability, not one
        // with too few rights.
        let capability = self
            .caps
            .lookup(CapHandle(handle), self.running, Rights::empty())?;
        let Object::Env { id } = capability.object else {
            return Err(Error::InvalidCapability);
        };
        if !capability.rights.contains(needed) {
            return Err(Error::Denied);
        }
        Ok(id)
    }

    /// Name of an environment, for logs.
    pub fn name_of(&self, id: EnvId) -> String {
        self.env(id).map(|env| env.name.clone()).unwrap_or_default()
    }
}
