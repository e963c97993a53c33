//! The capability space: every capability of every environment, who holds it, what it names,
//! what it allows, and what was derived from it.
//!
//! A handle is an index and a generation ([`CapHandle`]). A lookup succeeds only if the slot
//! is live, has the handle's generation and belongs to the caller, so a handle cannot be
//! forged (wrong generation or owner), kept after `cap_revoke` or `cap_delete` (the generation
//! moves on when a slot is freed) or borrowed from another environment. Grants derive children
//! with equal or fewer rights; revoking (`cap_revoke`) or deleting a capability removes its
//! whole subtree, and the kernel undoes what the removed capabilities were used for (mappings)
//! from the list it gets back. "Revocation" elsewhere in the kernel is visible revocation, the
//! kernel asking an environment to give resources back (`request_pages`), not this.
use alloc::collections::BTreeMap;
use alloc::vec::Vec;
pub use exo_abi::cap::{CapHandle, Rights};

/// What a capability names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Object {
    /// A physical page (frame address). The root capability owns the frame: deleting it
    /// frees the frame.
    Page {
        /// Physical address of the frame.
        frame: u64,
    },
    /// An environment, by id.
    Env {
        /// The environment's id.
        id: u32,
    },
    /// The right to monitor the network (bind filters that claim no port). The boot
    /// command line's `monitor=APP` gives each such app a root.
    NetMonitor,
    /// A bound packet filter, by the id `filter_bind` returned. The binding lasts as long as
    /// the capability `filter_bind` made for it: removing that one (deleted, revoked with its
    /// parent, its holder ended) unbinds the filter; removing a granted copy does not.
    FilterBinding {
        /// The filter id.
        id: u32,
    },
    /// An application-specific safe handler bound to a filter, by the id `ash_bind`
    /// returned. Derived from the filter binding's capability; removing the capability
    /// `ash_bind` made unbinds the handler.
    AshHandler {
        /// The handler id.
        id: u32,
    },
}

/// A live capability.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Capability {
    /// The environment holding it.
    pub owner: u32,
    /// What it names.
    pub object: Object,
    /// What it allows.
    pub rights: Rights,
    /// The capability it was derived from; `None` for a root.
    pub parent: Option<u32>,
    /// The environment charged for it: its creator, or whoever granted or derived it (never
    /// a receiver, so nobody can fill another's quota by granting to it).
    pub payer: u32,
    children: Vec<u32>,
}

impl Capability {
    /// Whether this is the root of its derivation tree (it owns the object).
    pub fn is_root(&self) -> bool {
        self.parent.is_none()
    }

    /// Whether it owns a frame (the root capability of a page).
    fn holds_frame(&self) -> bool {
        self.is_root() && matches!(self.object, Object::Page { .. })
    }
}

/// Why a capability operation was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CapError {
    /// No live capability of the caller under this handle.
    Invalid,
    /// The capability lacks a right, or more rights were asked for than it has.
    Denied,
    /// The table is full.
    Full,
    /// The payer's quota of capabilities or frames is used up.
    Quota,
}

impl From<CapError> for exo_abi::Error {
    fn from(error: CapError) -> exo_abi::Error {
        match error {
            CapError::Invalid => exo_abi::Error::InvalidCapability,
            CapError::Denied => exo_abi::Error::Denied,
            CapError::Full | CapError::Quota => exo_abi::Error::Exhausted,
        }
    }
}

#[derive(Clone, Debug)]
struct Slot {
    generation: u32,
    capability: Option<Capability>,
}

/// A removed capability, reported so the kernel can undo its uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Removed {
    /// The handle it had (now stale).
    pub handle: CapHandle,
    /// Who held it.
    pub owner: u32,
    /// What it named.
    pub object: Object,
    /// Whether it was a root (owned its object).
    pub root: bool,
}

/// What one payer holds and may hold.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CapUsage {
    /// Capabilities charged to it.
    pub capabilities: u64,
    /// Root page capabilities charged to it: frames it holds.
    pub frames: u64,
}

#[derive(Clone, Copy, Debug)]
struct Account {
    used: CapUsage,
    limit: CapUsage,
}

/// All capabilities in the system.
#[derive(Debug)]
pub struct CapSpace {
    slots: Vec<Slot>,
    free: Vec<u32>,
    capacity: usize,
    /// Payers with limits; a payer without an account is the kernel's own and unlimited.
    accounts: BTreeMap<u32, Account>,
    /// Slots retired because their generation ran out (neither live nor free).
    retired: usize,
}

impl CapSpace {
    /// An empty space holding at most `capacity` capabilities at once.
    pub fn new(capacity: usize) -> CapSpace {
        // Slot 0 is never handed out, so the handle 0 means "none".
        let slots = alloc::vec![Slot {
            generation: 0,
            capability: None,
        }];
        CapSpace {
            slots,
            free: Vec::new(),
            capacity,
            accounts: BTreeMap::new(),
            retired: 0,
        }
    }

    /// Limits what `payer` may be charged for from now on (what it holds already counts).
    pub fn set_limit(&mut self, payer: u32, limit: CapUsage) {
        let used = self.usage(payer);
        self.accounts.insert(payer, Account { used, limit });
    }

    /// What `payer` is charged for.
    pub fn usage(&self, payer: u32) -> CapUsage {
        match self.accounts.get(&payer) {
            Some(account) => account.used,
            None => {
                let mut used = CapUsage::default();
                for capability in self
                    .slots
                    .iter()
                    .filter_map(|slot| slot.capability.as_ref())
                {
                    if capability.payer == payer {
                        used.capabilities += 1;
                        used.frames += u64::from(capability.holds_frame());
                    }
                }
                used
            }
        }
    }

    /// Drops `payer`'s account (it ended, and everything it paid for went with it).
    pub fn forget(&mut self, payer: u32) {
        self.accounts.remove(&payer);
    }

    /// Live capabilities.
    pub fn len(&self) -> usize {
        self.slots.len() - 1 - self.free.len() - self.retired
    }

    /// True when no capability is live.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn handle_of(&self, index: u32) -> CapHandle {
        CapHandle::new(index, self.slots[index as usize].generation)
    }

    fn insert(&mut self, capability: Capability) -> Result<u32, CapError> {
        let frame = u64::from(capability.holds_frame());
        if let Some(account) = self.accounts.get(&capability.payer) {
            let used = account.used;
            if used.capabilities >= account.limit.capabilities
                || used.frames + frame > account.limit.frames
            {
                return Err(CapError::Quota);
            }
        }
        let payer = capability.payer;
        let index = self.insert_slot(capability)?;
        if let Some(account) = self.accounts.get_mut(&payer) {
            account.used.capabilities += 1;
            account.used.frames += frame;
        }
        Ok(index)
    }

    fn insert_slot(&mut self, capability: Capability) -> Result<u32, CapError> {
        if let Some(index) = self.free.pop() {
            self.slots[index as usize].capability = Some(capability);
            return Ok(index);
        }
        if self.slots.len() > self.capacity {
            return Err(CapError::Full);
        }
        let index = u32::try_from(self.slots.len()).map_err(|_| CapError::Full)?;
        self.slots.push(Slot {
            generation: 1,
            capability: Some(capability),
        });
        Ok(index)
    }

    /// Creates a root capability (a fresh object) for `owner`.
    pub fn create(
        &mut self,
        owner: u32,
        object: Object,
        rights: Rights,
    ) -> Result<CapHandle, CapError> {
        let index = self.insert(Capability {
            owner,
            object,
            rights,
            parent: None,
            payer: owner,
            children: Vec::new(),
        })?;
        Ok(self.handle_of(index))
    }

    /// The capability `handle` names if `owner` holds it and it has every right in `needed`.
    /// This is the check on every system call: an index, a compare and a mask.
    pub fn lookup(
        &self,
        handle: CapHandle,
        owner: u32,
        needed: Rights,
    ) -> Result<&Capability, CapError> {
        let slot = self
            .slots
            .get(handle.index() as usize)
            .filter(|slot| slot.generation == handle.generation() && handle.index() != 0)
            .ok_or(CapError::Invalid)?;
        let capability = slot
            .capability
            .as_ref()
            .filter(|capability| capability.owner == owner)
            .ok_or(CapError::Invalid)?;
        if capability.rights.contains(needed) {
            Ok(capability)
        } else {
            Err(CapError::Denied)
        }
    }

    /// Derives a capability with `rights` for `receiver` from `owner`'s `handle`, which
    /// needs `GRANT` and must hold every right asked for.
    pub fn grant(
        &mut self,
        handle: CapHandle,
        owner: u32,
        receiver: u32,
        rights: Rights,
    ) -> Result<CapHandle, CapError> {
        let source = self.lookup(handle, owner, Rights::GRANT)?;
        if !source.rights.contains(rights) {
            return Err(CapError::Denied);
        }
        let object = source.object;
        let parent = handle.index();
        let index = self.insert(Capability {
            owner: receiver,
            object,
            rights,
            parent: Some(parent),
            payer: owner,
            children: Vec::new(),
        })?;
        if let Some(source) = self.slots[parent as usize].capability.as_mut() {
            source.children.push(index);
        }
        Ok(self.handle_of(index))
    }

    /// Creates a capability to a new `object` for `owner`, derived from `owner`'s `parent`
    /// (which needs every right in `needed`): it lives no longer than `parent`, so revoking or
    /// deleting `parent` removes it too. This is how a resource obtained through a capability
    /// (a monitor filter bound with a monitor capability) goes when that capability goes.
    pub fn derive(
        &mut self,
        parent: CapHandle,
        owner: u32,
        needed: Rights,
        object: Object,
        rights: Rights,
    ) -> Result<CapHandle, CapError> {
        self.lookup(parent, owner, needed)?;
        let index = self.insert(Capability {
            owner,
            object,
            rights,
            parent: Some(parent.index()),
            payer: owner,
            children: Vec::new(),
        })?;
        if let Some(source) = self.slots[parent.index() as usize].capability.as_mut() {
            source.children.push(index);
        }
        Ok(self.handle_of(index))
    }

    /// Removes everything derived from `handle` (not `handle` itself), reporting each removed
    /// capability to `removed`. Returns how many were removed.
    pub fn revoke(
        &mut self,
        handle: CapHandle,
        owner: u32,
        removed: &mut impl FnMut(Removed),
    ) -> Result<usize, CapError> {
        self.lookup(handle, owner, Rights::empty())?;
        let children = match self.slots[handle.index() as usize].capability.as_mut() {
            Some(capability) => core::mem::take(&mut capability.children),
            None => Vec::new(),
        };
        Ok(children
            .into_iter()
            .map(|child| self.remove_subtree(child, removed))
            .sum())
    }

    /// Removes `handle` and everything derived from it.
    pub fn delete(
        &mut self,
        handle: CapHandle,
        owner: u32,
        removed: &mut impl FnMut(Removed),
    ) -> Result<usize, CapError> {
        self.lookup(handle, owner, Rights::empty())?;
        Ok(self.delete_index(handle.index(), removed))
    }

    /// Removes every capability `owner` holds, and their descendants (the environment ended).
    pub fn delete_owned_by(&mut self, owner: u32, removed: &mut impl FnMut(Removed)) -> usize {
        let mut count = 0;
        for index in 1..self.slots.len() as u32 {
            let owned = self.slots[index as usize]
                .capability
                .as_ref()
                .is_some_and(|capability| capability.owner == owner);
            if owned {
                count += self.delete_index(index, removed);
            }
        }
        count
    }

    /// Handles of `owner`'s root page capabilities, newest slot first (repossession order).
    pub fn owned_page_roots(&self, owner: u32) -> Vec<CapHandle> {
        (1..self.slots.len() as u32)
            .rev()
            .filter(|&index| {
                self.slots[index as usize]
                    .capability
                    .as_ref()
                    .is_some_and(|capability| {
                        capability.owner == owner
                            && capability.is_root()
                            && matches!(capability.object, Object::Page { .. })
                    })
            })
            .map(|index| self.handle_of(index))
            .collect()
    }

    fn delete_index(&mut self, index: u32, removed: &mut impl FnMut(Removed)) -> usize {
        // Unlink from the parent first, so the parent's list never names a freed slot.
        let parent = self.slots[index as usize]
            .capability
            .as_ref()
            .and_then(|capability| capability.parent);
        if let Some(parent) = parent
            && let Some(parent) = self.slots[parent as usize].capability.as_mut()
        {
            parent.children.retain(|&child| child != index);
        }
        self.remove_subtree(index, removed)
    }

    /// Removes `index` and everything derived from it, parents before children. Iterative: a
    /// derivation chain can be as deep as there are slots (an app granting to itself over and
    /// over), far deeper than the kernel stack could recurse.
    fn remove_subtree(&mut self, index: u32, removed: &mut impl FnMut(Removed)) -> usize {
        let mut pending = alloc::vec![index];
        let mut count = 0;
        while let Some(index) = pending.pop() {
            let handle = self.handle_of(index);
            let slot = &mut self.slots[index as usize];
            let Some(capability) = slot.capability.take() else {
                continue;
            };
            // A slot whose generation would wrap is retired, never reused: a handle kept from
            // 2^32 lives ago must not name whatever holds the slot then.
            if slot.generation < u32::MAX {
                slot.generation += 1;
                self.free.push(index);
            } else {
                self.retired += 1;
            }
            if let Some(account) = self.accounts.get_mut(&capability.payer) {
                account.used.capabilities -= 1;
                account.used.frames -= u64::from(capability.holds_frame());
            }
            removed(Removed {
                handle,
                owner: capability.owner,
                object: capability.object,
                root: capability.is_root(),
            });
            count += 1;
            // Reversed so the first child is removed first, as a depth-first walk would.
            pending.extend(capability.children.into_iter().rev());
        }
        count
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: u32 = 1;
    const B: u32 = 2;
    const C: u32 = 3;
    const PAGE: Object = Object::Page { frame: 0x5000 };

    fn all_page() -> Rights {
        Rights::PAGE_ACCESS | Rights::GRANT
    }

    #[test]
    fn lookup_checks_owner_generation_and_rights() {
        let mut space = CapSpace::new(16);
        let handle = space.create(A, PAGE, all_page()).unwrap();
        assert_eq!(space.lookup(handle, A, Rights::READ).unwrap().object, PAGE);
        assert_eq!(
            space.lookup(handle, B, Rights::READ),
            Err(CapError::Invalid)
        );
        assert_eq!(space.lookup(handle, A, Rights::CALL), Err(CapError::Denied));
        let forged = CapHandle::new(handle.index(), handle.generation() + 1);
        assert_eq!(
            space.lookup(forged, A, Rights::READ),
            Err(CapError::Invalid)
        );
        for raw in [0, 1 << 32, u64::MAX, CapHandle::new(99, 1).raw()] {
            assert_eq!(
                space.lookup(CapHandle(raw), A, Rights::empty()),
                Err(CapError::Invalid)
            );
        }
    }

    #[test]
    fn payers_are_limited_and_receivers_never_charged() {
        let mut space = CapSpace::new(64);
        space.set_limit(
            A,
            CapUsage {
                capabilities: 4,
                frames: 2,
            },
        );
        let first = space.create(A, PAGE, all_page()).unwrap();
        let _second = space.create(A, PAGE, all_page()).unwrap();
        assert_eq!(
            space.create(A, PAGE, all_page()),
            Err(CapError::Quota),
            "frames"
        );
        // Grants to B are A's to pay for; B's own limit is untouched.
        space.set_limit(
            B,
            CapUsage {
                capabilities: 1,
                frames: 0,
            },
        );
        let to_b = space.grant(first, A, B, Rights::READ).unwrap();
        let _again = space.grant(first, A, B, Rights::READ).unwrap();
        assert_eq!(
            space.grant(first, A, B, Rights::READ),
            Err(CapError::Quota),
            "capabilities"
        );
        assert_eq!(
            space.usage(A),
            CapUsage {
                capabilities: 4,
                frames: 2
            }
        );
        assert_eq!(space.usage(B), CapUsage::default());
        assert_eq!(
            exo_abi::Error::from(CapError::Quota),
            exo_abi::Error::Exhausted
        );
        // Removal refunds the payer.
        space.delete(to_b, B, &mut |_| {}).unwrap();
        assert_eq!(space.usage(A).capabilities, 3);
        space.delete(first, A, &mut |_| {}).unwrap();
        assert_eq!(
            space.usage(A),
            CapUsage {
                capabilities: 1,
                frames: 1
            }
        );
        assert!(space.create(A, PAGE, all_page()).is_ok());
    }

    #[test]
    fn a_slot_is_retired_before_its_generation_wraps() {
        let mut space = CapSpace::new(16);
        let first = space.create(A, PAGE, all_page()).unwrap();
        space.slots[first.index() as usize].generation = u32::MAX - 1;
        let old = CapHandle::new(first.index(), u32::MAX - 1);
        space.delete(old, A, &mut |_| {}).unwrap();
        let last = space.create(A, PAGE, all_page()).unwrap();
        assert_eq!(
            last,
            CapHandle::new(first.index(), u32::MAX),
            "reused once more"
        );
        space.delete(last, A, &mut |_| {}).unwrap();
        let next = space.create(A, PAGE, all_page()).unwrap();
        assert_ne!(
            next.index(),
            first.index(),
            "retired, not wrapped to an old generation"
        );
        assert_eq!(
            space.lookup(old, A, Rights::empty()),
            Err(CapError::Invalid)
        );
    }

    /// A chain of grants as deep as the space, each from the previous, deleted from its root
    /// on a stack as small as the kernel's entry stack (64 KiB): the delete must not recurse.
    #[test]
    fn a_chain_as_deep_as_the_space_is_deleted_on_a_small_stack() {
        let deleted = std::thread::Builder::new()
            .stack_size(64 * 1024)
            .spawn(|| {
                let mut space = CapSpace::new(8192);
                let root = space.create(A, PAGE, all_page()).unwrap();
                let (mut tip, mut held) = (root, 1);
                while let Ok(next) = space.grant(tip, A, A, all_page()) {
                    tip = next;
                    held += 1;
                }
                assert!(held >= 8191, "the space holds {held}");
                let mut order = Vec::new();
                let count = space
                    .delete(root, A, &mut |removed| order.push(removed.handle))
                    .unwrap();
                assert_eq!(order.first(), Some(&root), "parents before children");
                assert_eq!(order.last(), Some(&tip));
                assert_eq!(
                    space.lookup(tip, A, Rights::empty()),
                    Err(CapError::Invalid)
                );
                // Every slot is free again.
                assert!(space.create(A, PAGE, all_page()).is_ok());
                assert_eq!(count, held);
                count
            })
            .unwrap()
            .join()
            .expect("the delete overflowed its stack");
        assert!(deleted >= 8191);
    }

    #[test]
    fn grants_never_add_rights() {
        let mut space = CapSpace::new(16);
        let root = space.create(A, PAGE, all_page()).unwrap();
        let read_only = space.grant(root, A, B, Rights::READ).unwrap();
        assert_eq!(space.lookup(read_only, B, Rights::READ).unwrap().owner, B);
        assert_eq!(
            space.lookup(read_only, B, Rights::WRITE),
            Err(CapError::Denied)
        );
        // B cannot pass it on: no GRANT.
        assert_eq!(
            space.grant(read_only, B, C, Rights::READ),
            Err(CapError::Denied)
        );
        let middle = space
            .grant(root, A, B, Rights::READ | Rights::GRANT)
            .unwrap();
        assert_eq!(
            space.grant(middle, B, C, Rights::READ | Rights::WRITE),
            Err(CapError::Denied)
        );
        assert!(space.grant(middle, B, C, Rights::READ).is_ok());
        // Granting someone else's handle is refused.
        assert_eq!(
            space.grant(root, B, C, Rights::READ),
            Err(CapError::Invalid)
        );
    }

    #[test]
    fn revoke_removes_all_descendants_and_only_them() {
        let mut space = CapSpace::new(16);
        let root = space.create(A, PAGE, all_page()).unwrap();
        let b = space.grant(root, A, B, all_page()).unwrap();
        let c = space.grant(b, B, C, Rights::READ).unwrap();
        let sibling = space.grant(root, A, C, Rights::READ).unwrap();
        let mut removed = Vec::new();
        assert_eq!(space.revoke(b, B, &mut |r| removed.push(r)), Ok(1));
        assert_eq!(removed[0].handle, c);
        assert_eq!(space.lookup(c, C, Rights::READ), Err(CapError::Invalid));
        assert!(space.lookup(b, B, Rights::READ).is_ok());
        removed.clear();
        assert_eq!(space.revoke(root, A, &mut |r| removed.push(r)), Ok(2));
        let handles: Vec<_> = removed.iter().map(|r| r.handle).collect();
        assert!(handles.contains(&b) && handles.contains(&sibling));
        assert!(space.lookup(root, A, Rights::READ).is_ok());
        assert_eq!(space.len(), 1);
    }

    #[test]
    fn delete_reports_roots_and_stale_handles_stay_stale() {
        let mut space = CapSpace::new(16);
        let root = space.create(A, PAGE, all_page()).unwrap();
        let child = space.grant(root, A, B, Rights::READ).unwrap();
        let mut removed = Vec::new();
        assert_eq!(space.delete(root, A, &mut |r| removed.push(r)), Ok(2));
        assert!(removed.iter().any(|r| r.root && r.handle == root));
        assert!(removed.iter().any(|r| !r.root && r.handle == child));
        // Slots are reused with a new generation: the old handles stay refused.
        let again = space.create(A, PAGE, all_page()).unwrap();
        assert_ne!(again, root);
        assert_eq!(space.lookup(root, A, Rights::READ), Err(CapError::Invalid));
        assert_eq!(space.lookup(child, B, Rights::READ), Err(CapError::Invalid));
        assert_eq!(space.delete(root, A, &mut |_| {}), Err(CapError::Invalid));
    }

    #[test]
    fn deleting_a_child_unlinks_it_from_its_parent() {
        let mut space = CapSpace::new(16);
        let root = space.create(A, PAGE, all_page()).unwrap();
        let child = space.grant(root, A, B, Rights::READ).unwrap();
        assert_eq!(space.delete(child, B, &mut |_| {}), Ok(1));
        // The slot is reused by an unrelated capability; revoking root must not touch it.
        let unrelated = space.create(C, PAGE, all_page()).unwrap();
        assert_eq!(unrelated.index(), child.index());
        assert_eq!(space.revoke(root, A, &mut |_| {}), Ok(0));
        assert!(space.lookup(unrelated, C, Rights::READ).is_ok());
    }

    #[test]
    fn an_ending_environment_loses_everything_it_holds_and_granted() {
        let mut space = CapSpace::new(16);
        let a_page = space.create(A, PAGE, all_page()).unwrap();
        let to_b = space.grant(a_page, A, B, Rights::READ).unwrap();
        let b_page = space
            .create(B, Object::Page { frame: 0x6000 }, all_page())
            .unwrap();
        let env = space
            .create(A, Object::Env { id: B }, Rights::CONTROL)
            .unwrap();
        let mut removed = Vec::new();
        assert_eq!(space.delete_owned_by(A, &mut |r| removed.push(r)), 3);
        assert_eq!(space.lookup(to_b, B, Rights::READ), Err(CapError::Invalid));
        assert_eq!(
            space.lookup(env, A, Rights::empty()),
            Err(CapError::Invalid)
        );
        assert!(space.lookup(b_page, B, Rights::READ).is_ok());
        assert_eq!(space.owned_page_roots(B), [b_page]);
    }

    #[test]
    fn the_monitor_right_is_granted_and_revoked_like_any_right() {
        let mut space = CapSpace::new(16);
        let root = space
            .create(A, Object::NetMonitor, Rights::MONITOR | Rights::GRANT)
            .unwrap();
        let child = space.grant(root, A, B, Rights::MONITOR).unwrap();
        let capability = space.lookup(child, B, Rights::MONITOR).unwrap();
        assert_eq!(capability.object, Object::NetMonitor);
        // Without GRANT the child cannot pass it on; a page capability is not a monitor one.
        assert_eq!(
            space.grant(child, B, C, Rights::MONITOR),
            Err(CapError::Denied)
        );
        let page = space.create(A, PAGE, all_page()).unwrap();
        assert_eq!(
            space.lookup(page, A, Rights::MONITOR),
            Err(CapError::Denied)
        );
        assert_eq!(space.revoke(root, A, &mut |_| {}), Ok(1));
        assert_eq!(
            space.lookup(child, B, Rights::MONITOR),
            Err(CapError::Invalid)
        );
    }

    #[test]
    fn a_derived_object_goes_with_its_parent() {
        let mut space = CapSpace::new(16);
        let monitor = space
            .create(A, Object::NetMonitor, Rights::MONITOR | Rights::GRANT)
            .unwrap();
        let binding_rights = Rights::CONTROL | Rights::GRANT;
        let binding = Object::FilterBinding { id: 7 };
        // Deriving needs the parent's right, and the parent must be the caller's.
        assert_eq!(
            space.derive(monitor, A, Rights::CALL, binding, binding_rights),
            Err(CapError::Denied)
        );
        assert_eq!(
            space.derive(monitor, B, Rights::MONITOR, binding, binding_rights),
            Err(CapError::Invalid)
        );
        let own = space
            .derive(monitor, A, Rights::MONITOR, binding, binding_rights)
            .unwrap();
        assert_eq!(
            space.lookup(own, A, Rights::CONTROL).unwrap().object,
            binding
        );
        let copy = space.grant(own, A, B, Rights::CONTROL).unwrap();
        let mut removed = Vec::new();
        assert_eq!(space.revoke(monitor, A, &mut |r| removed.push(r)), Ok(2));
        assert!(
            removed
                .iter()
                .any(|r| r.handle == own && r.object == binding)
        );
        assert_eq!(
            space.lookup(copy, B, Rights::CONTROL),
            Err(CapError::Invalid)
        );
        assert!(space.lookup(monitor, A, Rights::MONITOR).is_ok());
    }

    #[test]
    fn the_table_is_bounded() {
        let mut space = CapSpace::new(2);
        space.create(A, PAGE, all_page()).unwrap();
        let second = space.create(A, PAGE, all_page()).unwrap();
        assert_eq!(space.create(A, PAGE, all_page()), Err(CapError::Full));
        space.delete(second, A, &mut |_| {}).unwrap();
        assert!(space.create(A, PAGE, all_page()).is_ok());
    }
}
