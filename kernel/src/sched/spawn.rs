//! Creating environments: the boot apps, and children spawned with a share of their parent's
//! limits.
use super::*;

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

impl Kernel {
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
        let id = exo_kernel::env_ids::allocate(self.next_id, MAX_ENVS, |id| {
            self.envs[slot(id)].is_some()
        })
        .ok_or(SpawnError::Exhausted)?;
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
        self.next_id = u64::from(id) + 1;
        self.envs[slot(id)] = Some(Box::new(env));
        Ok((id, to_child))
    }
}
