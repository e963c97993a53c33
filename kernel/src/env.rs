//! Environments: an app's address space, its mappings and how it ended.
//!
//! For now environments run one after another to completion; the `Environment` type is where
//! capabilities, upcall entry points and time slices will attach.
use crate::arch::{self, trap::Exception};
use crate::mm::paging::{AddressSpace, MapError};
use alloc::string::String;
use core::sync::atomic::{AtomicU32, Ordering};
use exo_abi::layout::{USER_BASE, USER_END, USER_STACK_SIZE_BYTES, USER_STACK_TOP};
use exo_kernel::elf::{self, Access, ElfError};
use exo_kernel::user_mappings::{UserMappings, UserRegion};
use spin::Mutex;

/// An environment's identity, unique for the life of the kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EnvId(u32);

impl core::fmt::Display for EnvId {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// How an environment ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExitReason {
    /// It called `exit(status)`.
    Exited {
        /// The status it passed.
        status: u64,
    },
    /// The kernel ended it after a CPU exception or an unusable state.
    Faulted,
}

/// Why an app image could not become an environment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LoadError {
    /// The ELF image was refused.
    Elf(ElfError),
    /// A page could not be mapped.
    Map(MapError),
}

/// A protection domain running one app.
#[derive(Debug)]
pub struct Environment {
    id: EnvId,
    name: String,
    space: AddressSpace,
    mappings: UserMappings,
    entry: u64,
    exit: Option<ExitReason>,
}

static NEXT_ID: AtomicU32 = AtomicU32::new(1);
/// The environment on the CPU (one CPU for now): entries from user mode act on it.
static CURRENT: Mutex<Option<Environment>> = Mutex::new(None);

impl Environment {
    /// Builds an environment from a static ELF image: maps and fills its segments and a
    /// stack in a fresh address space.
    pub fn load(name: &str, image: &[u8]) -> Result<Environment, LoadError> {
        let elf = elf::parse(image, USER_BASE, USER_END).map_err(LoadError::Elf)?;
        let mut env = Environment {
            id: EnvId(NEXT_ID.fetch_add(1, Ordering::Relaxed)),
            name: String::from(name),
            space: AddressSpace::new().ok_or(LoadError::Map(MapError::OutOfMemory))?,
            mappings: UserMappings::new(),
            entry: elf.entry,
            exit: None,
        };
        for segment in &elf.segments {
            env.map_region(segment.page_start(), segment.page_end(), segment.access)?;
            let start = segment.file_offset as usize;
            let file = &image[start..start + segment.file_size_bytes as usize];
            env.space
                .write_user(segment.virtual_address, file)
                .expect("the segment's pages were just mapped");
        }
        env.map_region(
            USER_STACK_TOP - USER_STACK_SIZE_BYTES,
            USER_STACK_TOP,
            Access::READ_WRITE,
        )?;
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

    /// The environment's id.
    pub fn id(&self) -> EnvId {
        self.id
    }

    /// Its entry point.
    pub fn entry(&self) -> u64 {
        self.entry
    }

    /// What it has mapped (to check user pointers against).
    pub fn mappings(&self) -> &UserMappings {
        &self.mappings
    }

    /// Its address space.
    pub fn space(&self) -> &AddressSpace {
        &self.space
    }
}

/// Runs `env` until it exits or faults, then frees it.
pub fn run(env: Environment) -> ExitReason {
    let entry = env.entry;
    let user_ticks_before = arch::timer::user_ticks();
    env.space.activate();
    *CURRENT.lock() = Some(env);
    // SAFETY: the active address space is the environment's: `entry` lies in a segment
    // `elf::parse` found executable and the stack is mapped writable, both user pages of this
    // environment only; boot::kernel_main set up GDT, TSS, per-CPU data and syscalls first.
    unsafe { arch::user::enter_user(entry, USER_STACK_TOP) };
    // Back through resume_kernel, with interrupts off.
    crate::mm::paging::activate_kernel();
    let env = CURRENT.lock().take().expect("the environment that ran");
    arch::interrupts_enable();
    let user_ticks = arch::timer::user_ticks() - user_ticks_before;
    if user_ticks > 0 {
        log!(
            "app {} (env {}): the timer interrupted ring 3 {user_ticks} times",
            env.name,
            env.id
        );
    }
    env.exit
        .expect("an environment leaves only through end_current")
}

/// Calls `action` with the current environment (from a system call or trap).
pub fn with_current<R>(action: impl FnOnce(&mut Environment) -> R) -> R {
    let mut current = CURRENT.lock();
    action(
        current
            .as_mut()
            .expect("an entry from user mode has a current environment"),
    )
}

fn end_current(reason: ExitReason) -> ! {
    with_current(|env| env.exit = Some(reason));
    // SAFETY: we got here from user mode, so `run`'s enter_user call is pending, and the
    // lock taken above is already released.
    unsafe { arch::user::resume_kernel() }
}

/// `exit(status)` from the current environment.
pub fn exit_current(status: u64) -> ! {
    with_current(|env| {
        log!(
            "app {} (env {}) exited with status {status}",
            env.name,
            env.id
        )
    });
    end_current(ExitReason::Exited { status })
}

/// A CPU exception in user mode: report it and end the environment.
pub fn on_user_exception(exception: &Exception) -> ! {
    with_current(|env| log!("app {} (env {}) fault: {exception}", env.name, env.id));
    end_current(ExitReason::Faulted)
}

/// The kernel was about to return to a non-canonical address: end the environment instead.
pub fn on_bad_return_address(rip: u64) -> ! {
    with_current(|env| {
        log!(
            "app {} (env {}) fault: non-canonical return address {rip:#x}",
            env.name,
            env.id
        )
    });
    end_current(ExitReason::Faulted)
}
