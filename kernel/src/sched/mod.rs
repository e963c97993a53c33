//! The kernel's state and the processor: every environment, the capability space, the slice
//! vector, who runs, upcall delivery, and how the run ends. Its other concerns have modules
//! of their own: [`quota`] (limits and use), [`net_wait`] (the NIC and blocking for frames),
//! [`pct`] (protected control transfer and donation) and [`revocation`] (undoing removed
//! capabilities, repossession).
//!
//! One CPU, and kernel code always runs with interrupts off, so one lock around [`Kernel`]
//! serialises everything; entries take it once. A context switch rewrites the entry frame
//! (the [`TrapFrame`] at the top of the entry stack) with another environment's registers and
//! loads its page table: the kernel keeps no per-environment kernel stack.
#![forbid(unsafe_code)]
use crate::arch::{self, trap::Exception, trap::TrapFrame, trap::USER_RFLAGS};
use crate::env::{EnvId, Environment, LoadError, State};
use crate::mm::{frames, paging};
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
use exo_kernel::elf::Access;
use exo_kernel::ended::{EndedRecords, Pinned};
use exo_kernel::slices::SliceVector;
use spin::Mutex;

mod net_wait;
mod pct;
mod quota;
mod revocation;

pub use quota::set_boot_apps;
use quota::{cap_limit, machine_limits};

/// Environments alive at once.
pub const MAX_ENVS: usize = 64;
/// Records of ended environments kept besides the boot apps' (older ones are forgotten).
pub const ENDED_RECORDS: usize = 128;
/// Capabilities alive at once.
pub const MAX_CAPS: usize = 8192;
/// Pages all environments together may map through capabilities: each costs kernel heap
/// (its binding and region entries), so this bounds what mappings can take of it.
pub const MAX_MAPPINGS: u64 = 32_768;
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
    envs: Vec<Option<Box<Environment>>>,
    next_id: EnvId,
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
        envs: (0..MAX_ENVS).map(|_| None).collect(),
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
            + paging::code_table_frames()
            + paging::split_table_frames(),
        boot_share: machine_limits(),
        pack,
    });
}

/// Why an environment could not be created.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SpawnError {
    NotFound,
    Invalid(LoadError),
    Exhausted,
}

impl From<SpawnError> for Error {
    fn from(error: SpawnError) -> Error {
        match error {
            SpawnError::NotFound => Error::NotFound,
            SpawnError::Invalid(LoadError::Map(_)) => Error::OutOfMemory,
            SpawnError::Invalid(LoadError::Elf(_)) => Error::InvalidArgument,
            SpawnError::Exhausted => Error::Exhausted,
        }
    }
}

/// Creates a boot app (no parent). A `monitor` app starts with a root network monitor
/// capability (`MONITOR | GRANT`) in `rdx`, where a spawned child finds its argument.
pub fn spawn_boot(name: &str, monitor: bool) -> Result<EnvId, SpawnError> {
    with_kernel(|kernel| {
        let (id, _) = kernel.spawn(name, None, 0, None)?;
        kernel.boot_apps.push(id);
        if monitor {
            let cap = kernel
                .caps
                .create(
                    id,
                    Object::NetMonitor,
                    Rights::MONITOR | Rights::RAW_TRANSMIT | Rights::GRANT,
                )
                .map_err(|_| SpawnError::Exhausted)?;
            if let Some(env) = kernel.env_mut(id) {
                env.context.rdx = cap.raw();
            }
        }
        Ok(id)
    })
}

/// Enters the first environment; never returns.
pub fn start() -> ! {
    let mut frame = TrapFrame::default();
    with_kernel(|kernel| kernel.schedule(&mut frame, Advance::NextSlice));
    arch::user::enter_first(&frame)
}

/// What one attempt at scheduling did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Pick {
    /// Someone's context is in the frame.
    Ran,
    /// The one picked was ended instead of run; pick again.
    Ended,
    /// Nobody can run.
    Nobody,
}

/// Whether to move the slice cursor when scheduling.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Advance {
    /// Keep the current slice if its owner (or whom it calls) can run.
    SameSlice,
    /// Move on to the next slice.
    NextSlice,
}

/// A timer interrupt in ring 3: charge the slice, enforce deadlines, end the slice.
pub fn timer_tick(frame: &mut TrapFrame) {
    with_kernel(|kernel| kernel.timer_tick(frame));
}

/// The NIC's interrupt: acknowledged at the device and the PIC in any mode; from ring 3 its
/// frames are taken at once, while idling (kernel mode, kernel lock held) the idle loop takes
/// them when the interrupt has returned.
pub fn network_interrupt(frame: &mut TrapFrame) {
    crate::net::acknowledge_interrupt();
    if let Some(irq) = crate::net::irq() {
        arch::timer::end_of_interrupt(irq);
    }
    if frame.interrupted_user() {
        with_kernel(|kernel| kernel.network_interrupt(frame));
    }
}

/// A CPU exception in ring 3: deliver it to the environment's handler, or end it.
pub fn user_exception(frame: &mut TrapFrame, exception: &Exception) {
    with_kernel(|kernel| kernel.user_exception(frame, exception));
}

fn slot(id: EnvId) -> usize {
    id as usize % MAX_ENVS
}

fn upcall_frame_bytes(upcall: &UpcallFrame) -> [u8; UPCALL_FRAME_BYTES as usize] {
    let words = [
        upcall.kind,
        upcall.error_code,
        upcall.fault_address,
        upcall.rax,
        upcall.rcx,
        upcall.rdx,
        upcall.rsi,
        upcall.rdi,
        upcall.r8,
        upcall.r9,
        upcall.r10,
        upcall.r11,
        upcall.rsp,
        upcall.rflags,
        upcall.rip,
    ];
    let mut bytes = [0u8; UPCALL_FRAME_BYTES as usize];
    for (chunk, word) in bytes.chunks_exact_mut(8).zip(words) {
        chunk.copy_from_slice(&word.to_le_bytes());
    }
    bytes
}

/// Writes an upcall frame for the context in `frame` on its stack and redirects it to
/// `entry`. Fails (changing nothing) when the frame does not fit in writable user memory.
fn deliver(
    env: &mut Environment,
    frame: &mut TrapFrame,
    entry: u64,
    kind: u64,
    error_code: u64,
    fault_address: u64,
) -> Result<(), Error> {
    let at = upcall::frame_address(frame.rsp).ok_or(Error::BadAddress)?;
    let upcall = UpcallFrame {
        kind,
        error_code,
        fault_address,
        rax: frame.rax,
        rcx: frame.rcx,
        rdx: frame.rdx,
        rsi: frame.rsi,
        rdi: frame.rdi,
        r8: frame.r8,
        r9: frame.r9,
        r10: frame.r10,
        r11: frame.r11,
        rsp: frame.rsp,
        rflags: frame.rflags,
        rip: frame.rip,
    };
    crate::usermem::write_bytes(env, at, &upcall_frame_bytes(&upcall))?;
    frame.rip = entry;
    frame.rcx = entry;
    frame.rflags = USER_RFLAGS;
    frame.r11 = USER_RFLAGS;
    frame.rsp = at;
    frame.rdi = at;
    Ok(())
}

/// Whether `address` may be an entry point or stack top (user half; canonical).
pub fn is_user_address(address: u64) -> bool {
    address != 0 && exo_abi::layout::range_is_user(address, 0) && address < USER_END
}

/// The status an exception ends an environment with.
fn access_of(rights: Rights) -> Access {
    Access {
        read: rights.contains(Rights::READ),
        write: rights.contains(Rights::WRITE),
        execute: rights.contains(Rights::EXECUTE),
    }
}

/// Decodes and checks a `page_map`/`page_protect` access argument.
pub fn page_access(bits: u64) -> Result<(Rights, Access), Error> {
    let rights = Rights::from_bits(bits)
        .filter(|rights| Rights::PAGE_ACCESS.contains(*rights))
        .ok_or(Error::InvalidArgument)?;
    if rights.intersects(Rights::WRITE | Rights::EXECUTE) && !rights.contains(Rights::READ) {
        return Err(Error::InvalidArgument);
    }
    Ok((rights, access_of(rights)))
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
        self.env_mut(id)
            .expect("an entry from ring 3 has a running environment")
    }

    pub fn running(&self) -> EnvId {
        self.running
    }

    /// Creates an environment from the app `name` with one slice. Returns its id and, with a
    /// parent, the parent's capability to it.
    pub fn spawn(
        &mut self,
        name: &str,
        parent: Option<EnvId>,
        argument: u64,
        requested: Option<&Limits>,
    ) -> Result<(EnvId, CapHandle), SpawnError> {
        let image = self.pack.find(name).ok_or(SpawnError::NotFound)?;
        if self.envs.iter().all(Option::is_some) {
            return Err(SpawnError::Exhausted);
        }
        let limits = match parent {
            Some(parent) => {
                let left = self.available(parent).ok_or(SpawnError::Exhausted)?;
                exo_kernel::quota::child_limits(&left, requested)
                    .map_err(|_| SpawnError::Exhausted)?
            }
            None => self.boot_share,
        };
        let mut id = self.next_id;
        while self.envs[slot(id)].is_some() {
            id += 1;
        }
        let mut env = Environment::load(id, name, image).map_err(SpawnError::Invalid)?;
        env.parent = parent;
        env.limits = limits;
        env.space.set_table_limit(limits.get(Resource::PageTables));
        if self.slices.acquire(id).is_none() {
            return Err(SpawnError::Exhausted);
        }
        self.caps
            .set_limit(id, cap_limit(&limits, &Limits::default()));
        let caps = (|| {
            let own = self.caps.create(id, Object::Env { id }, ENV_ALL)?;
            let (to_parent, to_child) = match parent {
                Some(parent) => (
                    self.caps
                        .create(id, Object::Env { id: parent }, PARENT_RIGHTS)?,
                    self.caps.create(parent, Object::Env { id }, ENV_ALL)?,
                ),
                None => (CapHandle::NONE, CapHandle::NONE),
            };
            Ok::<_, exo_kernel::cap::CapError>((own, to_parent, to_child))
        })();
        let Ok((own, to_parent, to_child)) = caps else {
            self.slices.release_all(id);
            self.caps.delete_owned_by(id, &mut |_| {});
            self.caps.forget(id);
            return Err(SpawnError::Exhausted);
        };
        if let Some(parent) = parent {
            self.reserve(parent, &limits, true);
        }
        env.context.rdi = to_parent.raw();
        env.context.rsi = own.raw();
        env.context.rdx = argument;
        self.next_id = id + 1;
        self.envs[slot(id)] = Some(Box::new(env));
        Ok((id, to_child))
    }

    /// The environment that actually runs when `owner`'s slice comes up: itself, or the
    /// callee it is blocked on (PCT runs on the caller's time). `None` if nothing can run.
    fn resolve(envs: &[Option<Box<Environment>>], owner: EnvId) -> Option<EnvId> {
        let mut id = owner;
        for _ in 0..MAX_ENVS {
            let env = envs[slot(id)].as_deref().filter(|env| env.id == id)?;
            match env.state {
                State::Runnable | State::Serving(_) => return Some(id),
                State::Receiving | State::NetWaiting { .. } => return None,
                State::Calling(callee) => id = callee,
            }
        }
        None
    }

    /// Makes `id` the running environment (0: none): loads its page table and publishes its
    /// exception entry to the trap fast path (`arch::trap`). Every change of `running` goes
    /// through here.
    fn set_running(&mut self, id: EnvId) {
        self.running = id;
        self.switch_fpu(id);
        let mut entry = 0;
        if let Some(env) = self.envs[slot(id)].as_deref().filter(|env| env.id == id) {
            if self.active_space != id {
                env.space.activate();
                self.active_space = id;
            }
            entry = env.upcall(UpcallKind::Exception);
        }
        arch::percpu::publish_exception_entry(entry);
    }

    /// Makes the x87/MMX/SSE registers `id`'s: saves the previous owner's (if it still
    /// exists) and loads `id`'s. With no environment running (0) the registers stay as they
    /// are, the last owner's.
    fn switch_fpu(&mut self, id: EnvId) {
        if id == 0 || id == self.fpu_owner {
            return;
        }
        let owner = self.fpu_owner;
        if let Some(previous) = self.envs[slot(owner)]
            .as_deref_mut()
            .filter(|env| env.id == owner)
        {
            previous.fpu.save();
        }
        if let Some(next) = self.envs[slot(id)].as_deref().filter(|env| env.id == id) {
            next.fpu.restore();
            self.fpu_owner = id;
        }
    }

    /// Publishes the running environment's exception entry again (after `set_upcall`).
    pub fn republish_exception_entry(&self) {
        let entry = self
            .env(self.running)
            .map_or(0, |env| env.upcall(UpcallKind::Exception));
        arch::percpu::publish_exception_entry(entry);
    }

    /// Picks who runs next and loads its context into `frame` (the running environment's
    /// context must already be saved, or it must have ended). Ends the run when nothing can
    /// run any more.
    pub fn schedule(&mut self, frame: &mut TrapFrame, mut advance: Advance) {
        loop {
            match self.try_schedule(frame, advance) {
                Pick::Ran => return,
                // An environment was ended on its way in: pick again, in this loop, not by
                // recursion (every environment could fail so, and the entry stack is small).
                Pick::Ended => {
                    advance = Advance::SameSlice;
                    continue;
                }
                Pick::Nobody => {}
            }
            if !self.any_net_waiting() {
                self.finish_or_end_waiters(frame);
                return;
            }
            self.idle();
            advance = Advance::NextSlice;
        }
    }

    /// Tries to pick who runs next and runs it.
    fn try_schedule(&mut self, frame: &mut TrapFrame, advance: Advance) -> Pick {
        let mut choice = None;
        if advance == Advance::SameSlice
            && let (_, Some(owner)) = self.slices.current()
            && let Some(runner) = Kernel::resolve(&self.envs, owner)
        {
            choice = Some((owner, runner, false));
        }
        if choice.is_none() {
            let envs = &mut self.envs;
            choice = self
                .slices
                .advance(|owner| {
                    let Some(runner) = Kernel::resolve(envs, owner) else {
                        return false;
                    };
                    let Some(env) = envs[slot(owner)].as_deref_mut() else {
                        return false;
                    };
                    if env.penalty > 0 {
                        env.penalty -= 1;
                        return false;
                    }
                    runner != 0
                })
                .and_then(|(_, owner)| {
                    Kernel::resolve(&self.envs, owner).map(|runner| (owner, runner, true))
                });
        }
        let Some((owner, runner, new_slice)) = choice else {
            return Pick::Nobody;
        };
        self.slice_owner = owner;
        if self.run(frame, runner, new_slice && runner == owner) {
            Pick::Ran
        } else {
            Pick::Ended
        }
    }

    /// Loads `id`'s context and page table; at a slice start, delivers the upcalls it is due.
    /// `false` when an upcall frame did not fit and `id` was ended instead (nothing runs yet).
    fn run(&mut self, frame: &mut TrapFrame, id: EnvId, slice_start: bool) -> bool {
        self.set_running(id);
        let env = self.env_mut(id).expect("scheduled environments exist");
        *frame = env.context;
        if env.state != State::Runnable {
            return true;
        }
        env.dispatches += 1;
        let mut undeliverable = false;
        if env.revoke_upcall_pending {
            env.revoke_upcall_pending = false;
            let entry = env.upcall(UpcallKind::Revoke);
            if let (Some(revocation), true) = (env.revocation.as_ref(), entry != 0) {
                let wanted = revocation.count.saturating_sub(revocation.returned);
                undeliverable |= deliver(
                    env,
                    frame,
                    entry,
                    FRAME_REVOKE,
                    wanted,
                    revocation.deadline_tick,
                )
                .is_err();
            }
        }
        if env.packet_upcall_due > 0 {
            let entry = env.upcall(UpcallKind::Packet);
            let copies = core::mem::take(&mut env.packet_upcall_due);
            if entry != 0 {
                undeliverable |= deliver(env, frame, entry, FRAME_PACKET, copies, 0).is_err();
            }
        }
        if let Some(upcall) = env.handler_upcalls_due.take_oldest() {
            let entry = env.upcall(UpcallKind::Packet);
            if entry != 0 {
                undeliverable |= deliver(
                    env,
                    frame,
                    entry,
                    FRAME_ASH_UPCALL,
                    u64::from(upcall.handler),
                    upcall.argument,
                )
                .is_err();
            }
        }
        if !env.ash_disabled_due.is_empty() {
            let (id, aborts) = env.ash_disabled_due.remove(0);
            let entry = env.upcall(UpcallKind::AshDisabled);
            if entry != 0 {
                undeliverable |=
                    deliver(env, frame, entry, FRAME_ASH_DISABLED, u64::from(id), aborts).is_err();
            }
        }
        let entry = env.upcall(UpcallKind::SliceStart);
        if slice_start && entry != 0 {
            undeliverable |= deliver(env, frame, entry, FRAME_SLICE_START, 0, 0).is_err();
        }
        if undeliverable {
            self.end_undeliverable(frame, id);
            return false;
        }
        true
    }

    /// Ends `id`, whose upcall frame did not fit below its stack pointer.
    fn end_undeliverable(&mut self, frame: &TrapFrame, id: EnvId) {
        if let Some(env) = self.env(id) {
            log!(
                "app {} (env {id}): no room for an upcall frame below rsp {:#x}: aborted",
                env.name,
                frame.rsp
            );
        }
        self.end_env(id, EnvStatus::Aborted);
    }

    /// Ends `id` (see [`Self::end_undeliverable`]) and runs someone else.
    fn abort_undeliverable(&mut self, frame: &mut TrapFrame, id: EnvId) {
        self.end_undeliverable(frame, id);
        self.schedule(frame, Advance::SameSlice);
    }

    /// Nothing can run: environments left are all waiting for PCT calls that nobody can make
    /// any more. End them, then end the run.
    fn finish_or_end_waiters(&mut self, frame: &mut TrapFrame) {
        let waiting: Vec<EnvId> = self.envs.iter().flatten().map(|env| env.id).collect();
        for id in waiting {
            if let Some(env) = self.env(id) {
                log!(
                    "app {} (env {id}) waits for calls nobody is left to make: ended",
                    env.name
                );
            }
            self.end_env(id, EnvStatus::Aborted);
        }
        let _ = frame;
        self.finish();
    }

    /// Every environment has ended: check nothing leaked and stop the machine with the
    /// verdict of the boot apps (the first that did not exit 0, in command-line order).
    fn finish(&mut self) -> ! {
        paging::activate_kernel();
        self.active_space = 0;
        // The generated-code region's page tables are the kernel's (see `paging`).
        let frames_after =
            frames::free_count() + paging::code_table_frames() + paging::split_table_frames();
        assert_eq!(
            self.frames_before,
            frames_after,
            "environments leaked {} frames",
            self.frames_before.abs_diff(frames_after)
        );
        assert!(self.caps.is_empty(), "capabilities outlived their holders");
        for &id in &self.boot_apps {
            let status = self.ended.get(id).map(|ended| ended.status);
            let exit = match status {
                Some(EnvStatus::Exited(0)) => continue,
                Some(EnvStatus::Exited(status)) => KernelExit::from_app_status(u64::from(status)),
                Some(EnvStatus::Faulted(_)) => KernelExit::AppFaulted,
                Some(EnvStatus::Aborted) | Some(EnvStatus::Running) | None => {
                    KernelExit::AppAborted
                }
            };
            arch::exit_qemu(exit);
        }
        log!(
            "all apps exited with status 0; {} frames free",
            frames::free_count()
        );
        arch::exit_qemu(KernelExit::Exited(0))
    }

    /// Ends environment `id`: frees its slices, capabilities (undoing what was derived from
    /// them elsewhere) and memory, and wakes a PCT caller waiting on it with `PeerGone`.
    pub fn end_env(&mut self, id: EnvId, status: EnvStatus) {
        let Some(env) = self.envs[slot(id)].take_if(|env| env.id == id) else {
            return;
        };
        match status {
            EnvStatus::Exited(code) => {
                log!("app {} (env {id}) exited with status {code}", env.name)
            }
            EnvStatus::Aborted => log!("app {} (env {id}) aborted", env.name),
            EnvStatus::Faulted(_) | EnvStatus::Running => {}
        }
        if env.ticks_charged > 0 {
            log!(
                "app {} (env {id}): the timer interrupted ring 3 {} times",
                env.name,
                env.ticks_charged
            );
        }
        if self.active_space == id {
            paging::activate_kernel();
            self.active_space = 0;
        }
        // Its packet rings are its pages: the kernel stops writing them before they go.
        crate::net::release(id);
        self.slices.release_all(id);
        let mut removed = Vec::new();
        self.caps.delete_owned_by(id, &mut |r| removed.push(r));
        self.undo(&removed);
        // Everything it paid for went with what it held; its limits go back to its parent.
        self.caps.forget(id);
        if let Some(parent) = env.parent {
            self.reserve(parent, &env.limits, false);
        }
        let serving = match env.state {
            State::Serving(caller) => caller,
            State::Calling(_) => env.nested_in.flatten(),
            State::Runnable | State::Receiving | State::NetWaiting { .. } => None,
        };
        if let Some(caller) = serving
            && let Some(caller) = self.env_mut(caller)
            && caller.state == State::Calling(id)
        {
            caller.call_ended();
            caller.context.rax = exo_abi::error::encode_result(Err(Error::PeerGone));
        }
        let pinned = if self.boot_apps.contains(&id) {
            Pinned::Yes
        } else {
            Pinned::No
        };
        self.ended.push(
            id,
            Ended {
                status,
                ticks_charged: env.ticks_charged,
                overstays: env.overstays,
                repossessed: env.repossessed_total,
                dispatches: env.dispatches,
            },
            pinned,
        );
        if self.running == id {
            self.set_running(0);
        }
        drop(env);
    }

    /// Status and accounting of an environment, alive or ended.
    pub fn env_info(&self, id: EnvId, query: upcall::EnvQuery) -> u64 {
        use upcall::EnvQuery;
        if let Some(env) = self.env(id) {
            return match query {
                EnvQuery::Status => EnvStatus::Running.encode(),
                EnvQuery::TicksCharged => env.ticks_charged,
                EnvQuery::Overstays => env.overstays,
                EnvQuery::Slices => self.slices.count(id) as u64,
                EnvQuery::Repossessed => env.repossessed_total,
                EnvQuery::Dispatches => env.dispatches,
            };
        }
        let Some(ended) = self.ended.get(id) else {
            // Forgotten (see ENDED_RECORDS): it ended, how is no longer known.
            return match query {
                EnvQuery::Status => EnvStatus::Aborted.encode(),
                _ => 0,
            };
        };
        match query {
            EnvQuery::Status => ended.status.encode(),
            EnvQuery::TicksCharged => ended.ticks_charged,
            EnvQuery::Overstays => ended.overstays,
            EnvQuery::Slices => 0,
            EnvQuery::Repossessed => ended.repossessed,
            EnvQuery::Dispatches => ended.dispatches,
        }
    }

    fn timer_tick(&mut self, frame: &mut TrapFrame) {
        // NAPI's other half: frames left over by the last poll, and `net_wait` deadlines.
        self.poll_network();
        let now = arch::timer::ticks();
        let owner = self.slice_owner;
        if let Some(env) = self.env_mut(owner) {
            env.ticks_charged += 1;
        }
        self.enforce_deadlines(now);
        let id = self.running;
        let Some(env) = self.env_mut(id) else {
            // The running environment lost everything in a repossession? It still exists;
            // only a bug gets here.
            self.schedule(frame, Advance::NextSlice);
            return;
        };
        if env.slice_end_pending {
            env.overstays += 1;
            log!(
                "app {} (env {id}) overstayed its end-of-slice upcall ({}/{OVERSTAY_LIMIT})",
                env.name,
                env.overstays
            );
            if env.overstays >= OVERSTAY_LIMIT {
                log!("app {} (env {id}) overstayed too often", env.name);
                self.end_env(id, EnvStatus::Aborted);
            } else {
                env.penalty += 1;
                env.context = *frame;
            }
            self.schedule(frame, Advance::NextSlice);
            return;
        }
        let entry = env.upcall(exo_abi::upcall::UpcallKind::SliceEnd);
        if entry != 0 && id == owner && env.state == State::Runnable {
            if deliver(env, frame, entry, FRAME_SLICE_END, 0, 0).is_ok() {
                env.slice_end_pending = true;
            } else {
                self.abort_undeliverable(frame, id);
            }
            return;
        }
        env.context = *frame;
        self.schedule(frame, Advance::NextSlice);
    }

    fn user_exception(&mut self, frame: &mut TrapFrame, exception: &Exception) {
        let id = self.running;
        let env = self.current();
        let entry = env.upcall(UpcallKind::Exception);
        let deliverable = !matches!(exception.vector, 2 | 8 | 18);
        if entry != 0 && deliverable {
            let fault_address = exception.fault_address.unwrap_or(0);
            if deliver(
                env,
                frame,
                entry,
                u64::from(exception.vector),
                frame.error_code,
                fault_address,
            )
            .is_ok()
            {
                return;
            }
            log!(
                "app {} (env {id}): exception frame does not fit below rsp {:#x}",
                env.name,
                frame.rsp
            );
        }
        log!("app {} (env {id}) fault: {exception}", env.name);
        self.end_env(id, EnvStatus::Faulted(exception.vector));
        self.schedule(frame, Advance::SameSlice);
    }

    /// Ends the running environment and runs someone else.
    pub fn end_running(&mut self, frame: &mut TrapFrame, status: EnvStatus) {
        let id = self.running;
        self.end_env(id, status);
        self.schedule(frame, Advance::SameSlice);
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
