//! The system-call table: the one place a call number becomes kernel behaviour.
//!
//! Numbers and their contracts are in `exo_abi::syscall`; every argument is untrusted until
//! the handler checks it (capabilities against the capability space, pointers against the
//! caller's mappings, numbers against their ranges).
#![forbid(unsafe_code)]
use crate::arch::trap::TrapFrame;
use crate::env::PageBinding;
use crate::sched::{self, Kernel};
use crate::usermem::{self, UserSlice};
use crate::{arch, log, net};
use alloc::vec::Vec;
use exo_abi::cap::{CapHandle, Rights};
use exo_abi::layout::PAGE_SIZE_BYTES;
use exo_abi::quota::{LIMITS_BYTES, Limits, QuotaField, Resource};
use exo_abi::syscall::{ANY_FRAME, CONSOLE_WRITE_MAX_BYTES, PAGE_PROTECT_RANGE_MAX_PAGES};
use exo_abi::upcall::{EnvQuery, EnvStatus, REPOSSESSED_PAGE_BYTES, UpcallKind};
use exo_abi::{Error, Syscall, error::encode_result};
use exo_kernel::cap::Object;
use exo_kernel::elf::Access;
use exo_kernel::user_mappings::{RegionError, UserRegion};

/// Most revocation deadline a `request_pages` may set, in ticks.
const DEADLINE_MAX_TICKS: u64 = 1000;

/// What a call did with the entry frame.
enum Flow {
    /// Return this result to the caller in `rax`.
    Return(Result<u64, Error>),
    /// The frame now holds another context (or the caller's, with its results set).
    Switched,
}

/// Runs the call `frame` describes; leaves the encoded result in `frame.rax`, or another
/// environment's context in `frame`.
pub fn dispatch(frame: &mut TrapFrame) {
    sched::with_kernel(|kernel| {
        let flow = match Syscall::from_number(frame.rax) {
            Some(call) => call_of(kernel, frame, call),
            None => Flow::Return(Err(Error::UnknownSyscall)),
        };
        if let Flow::Return(result) = flow {
            frame.rax = encode_result(result);
        }
    });
}

fn switched(result: Result<(), Error>) -> Flow {
    match result {
        Ok(()) => Flow::Switched,
        Err(error) => Flow::Return(Err(error)),
    }
}

fn call_of(kernel: &mut Kernel, frame: &mut TrapFrame, call: Syscall) -> Flow {
    let [a0, a1, a2] = [frame.rdi, frame.rsi, frame.rdx];
    match call {
        Syscall::Exit => {
            let status = u8::try_from(a0).unwrap_or(u8::MAX);
            kernel.end_running(frame, EnvStatus::Exited(status));
            Flow::Switched
        }
        Syscall::Yield => {
            let target = match a0 {
                0 => None,
                handle => match kernel.env_cap(handle, Rights::YIELD) {
                    Ok(id) => Some(id),
                    Err(error) => return Flow::Return(Err(error)),
                },
            };
            switched(kernel.yield_to(frame, target))
        }
        Syscall::PctCall | Syscall::PctSend => match kernel.env_cap(a0, Rights::CALL) {
            Ok(callee) => switched(kernel.pct_enter(frame, callee, call == Syscall::PctCall)),
            Err(error) => Flow::Return(Err(error)),
        },
        Syscall::PctReturn => switched(kernel.pct_return(frame)),
        Syscall::NetWait => match kernel.net_wait(frame, a0, a1) {
            Ok(Some(copies)) => Flow::Return(Ok(copies)),
            Ok(None) => Flow::Switched,
            Err(error) => Flow::Return(Err(error)),
        },
        Syscall::PctWait => switched(kernel.pct_wait(frame)),
        Syscall::EnvDestroy => match kernel.env_cap(a0, Rights::CONTROL) {
            Ok(id) if id == kernel.running() => {
                kernel.end_running(frame, EnvStatus::Aborted);
                Flow::Switched
            }
            Ok(id) if kernel.env(id).is_some() => {
                kernel.end_env(id, EnvStatus::Aborted);
                Flow::Return(Ok(0))
            }
            Ok(_) => Flow::Return(Err(Error::PeerGone)),
            Err(error) => Flow::Return(Err(error)),
        },
        Syscall::FilterBind => match filter_bind(kernel, frame) {
            Ok((id, capability)) => {
                // The second result travels in `rdi` (see the ABI).
                frame.rdi = capability.raw();
                Flow::Return(Ok(u64::from(id)))
            }
            Err(error) => Flow::Return(Err(error)),
        },
        Syscall::AshBind => match ash_bind(kernel, frame) {
            Ok((id, capability)) => {
                frame.rdi = capability.raw();
                Flow::Return(Ok(u64::from(id)))
            }
            Err(error) => Flow::Return(Err(error)),
        },
        _ => Flow::Return(simple_call(kernel, call, a0, a1, a2, frame.r10)),
    }
}

/// Calls that return to their caller.
fn simple_call(
    kernel: &mut Kernel,
    call: Syscall,
    a0: u64,
    a1: u64,
    a2: u64,
    a3: u64,
) -> Result<u64, Error> {
    let me = kernel.running();
    match call {
        Syscall::ConsoleWrite => {
            let text = UserSlice::new(a0, a1).truncate(CONSOLE_WRITE_MAX_BYTES);
            console_write(kernel.current(), text)?;
            Ok(text.length_bytes())
        }
        // Handled in the entry stub; reaches here only if the stub changes.
        Syscall::Null => Ok(0),
        Syscall::SelfId => Ok(u64::from(me)),
        Syscall::Ticks => Ok(arch::timer::ticks()),
        Syscall::SetUpcall => set_upcall(kernel, a0, a1, a2),
        Syscall::Spawn => spawn(kernel, a0, a1, a2, a3),
        Syscall::EnvQuota => env_quota(kernel, a0, a1, a2),
        Syscall::KernelUsage => kernel_usage(a0),
        Syscall::EnvInfo => {
            let id = kernel.env_cap(a0, Rights::CONTROL)?;
            let query = EnvQuery::from_number(a1).ok_or(Error::InvalidArgument)?;
            Ok(kernel.env_info(id, query))
        }
        Syscall::PageAlloc => page_alloc(kernel, a0),
        Syscall::PageMap => page_map(kernel, a0, a1, a2),
        Syscall::PageUnmap => {
            if net::ash_pinned(me, a0) {
                return Err(Error::AddressInUse);
            }
            let env = kernel.current();
            env.page_bindings.remove(&a0).ok_or(Error::NotMapped)?;
            env.space.unmap_borrowed(a0);
            env.mappings.remove(a0);
            Ok(0)
        }
        Syscall::PageProtect => {
            if net::ash_pinned(me, a0) {
                return Err(Error::AddressInUse);
            }
            let (rights, access) = page_access(a1)?;
            let binding = *kernel
                .current()
                .page_bindings
                .get(&a0)
                .ok_or(Error::NotMapped)?;
            kernel.caps.lookup(binding.cap, me, rights)?;
            let env = kernel.current();
            env.space.protect_borrowed(a0, access);
            env.mappings.set_access(a0, access);
            Ok(0)
        }
        Syscall::PageProtectRange => page_protect_range(kernel, a0, a1, a2),
        Syscall::CapGrant => {
            let rights = Rights::from_bits(a2).ok_or(Error::InvalidArgument)?;
            let receiver = kernel.env_cap(a1, Rights::empty())?;
            if kernel.env(receiver).is_none() {
                return Err(Error::PeerGone);
            }
            Ok(kernel
                .caps
                .grant(CapHandle(a0), me, receiver, rights)?
                .raw())
        }
        Syscall::CapRevoke | Syscall::CapDelete => {
            let handle = CapHandle(a0);
            let capability = kernel.caps.lookup(handle, me, Rights::empty())?;
            let gives_back_page =
                capability.is_root() && matches!(capability.object, Object::Page { .. });
            let mut removed = Vec::new();
            let count = if call == Syscall::CapRevoke {
                kernel.caps.revoke(handle, me, &mut |r| removed.push(r))?
            } else {
                kernel.caps.delete(handle, me, &mut |r| removed.push(r))?
            };
            kernel.undo(&removed);
            if call == Syscall::CapDelete
                && gives_back_page
                && let Some(revocation) = kernel.current().revocation.as_mut()
            {
                revocation.page_deleted(handle);
            }
            Ok(count as u64)
        }
        Syscall::CapRights => Ok(kernel
            .caps
            .lookup(CapHandle(a0), me, Rights::empty())?
            .rights
            .bits()),
        Syscall::SliceAcquire => kernel.acquire_slice(me).map(|slice| slice as u64),
        Syscall::RequestPages => {
            let id = kernel.env_cap(a0, Rights::CONTROL)?;
            if a1 == 0 || a2 > DEADLINE_MAX_TICKS {
                return Err(Error::InvalidArgument);
            }
            let mut held: Vec<u64> = kernel
                .caps
                .owned_page_roots(id)
                .into_iter()
                .map(CapHandle::raw)
                .collect();
            held.sort_unstable();
            let env = kernel.env_mut(id).ok_or(Error::PeerGone)?;
            env.revocation = Some(crate::env::Revocation {
                count: a1,
                returned: 0,
                deadline_tick: arch::timer::ticks() + a2,
                held,
            });
            env.revoke_upcall_pending = true;
            Ok(0)
        }
        Syscall::Repossessed => {
            let env = kernel.current();
            let count = (env.repossessed.len() as u64).min(a1);
            let bytes = count
                .checked_mul(REPOSSESSED_PAGE_BYTES)
                .ok_or(Error::InvalidArgument)?;
            env.mappings.check(a0, bytes, Access::READ_WRITE)?;
            let mut buffer = Vec::with_capacity(bytes as usize);
            for page in env.repossessed.iter().take(count as usize) {
                buffer.extend_from_slice(&page.cap.to_le_bytes());
                buffer.extend_from_slice(&page.address.to_le_bytes());
            }
            usermem::write_bytes(env, a0, &buffer)?;
            env.repossessed.drain(..count as usize);
            let _ = a3;
            Ok(count)
        }
        Syscall::FilterUnbind => filter_unbind(kernel, a0),
        Syscall::NetCounter if a1 == 0 => net::counter(a0),
        Syscall::NetCounter => net::counter_of_ring(me, a0, a1),
        Syscall::NetTransmit => {
            // Any failure of a named capability (forged, revoked, wrong object or rights) is
            // `Denied`, as for the monitor capability of `filter_bind`.
            let raw = a2 != 0;
            if raw
                && !kernel
                    .caps
                    .lookup(CapHandle(a2), me, Rights::RAW_TRANSMIT)
                    .is_ok_and(|capability| capability.object == Object::NetMonitor)
            {
                return Err(Error::Denied);
            }
            net::transmit(kernel.current(), a0, a1, raw)
        }
        Syscall::NetMac => net::mac(),
        Syscall::NetIpv4 => net::ipv4(),
        Syscall::BootArgument => net::boot_argument(kernel.current(), a0, UserSlice::new(a1, a2)),
        Syscall::AshCounter => {
            let capability = kernel.caps.lookup(CapHandle(a0), me, Rights::empty())?;
            let Object::AshHandler { id } = capability.object else {
                return Err(Error::InvalidCapability);
            };
            net::ash_counter(id, a1)
        }
        Syscall::Exit
        | Syscall::Yield
        | Syscall::PctCall
        | Syscall::PctSend
        | Syscall::PctReturn
        | Syscall::PctWait
        | Syscall::FilterBind
        | Syscall::AshBind
        | Syscall::NetWait
        | Syscall::EnvDestroy => unreachable!("handled in call_of"),
    }
}

/// Rights on the capability `filter_bind` returns: unbind (`CONTROL`) and pass it on.
pub const BINDING_RIGHTS: Rights = Rights::CONTROL.union(Rights::GRANT);

/// `filter_bind`: binds, then makes the binding's capability (derived from the monitor
/// capability for a monitor filter, so revoking that one unbinds it; a root otherwise).
fn filter_bind(kernel: &mut Kernel, frame: &TrapFrame) -> Result<(u32, CapHandle), Error> {
    let me = kernel.running();
    let monitor_handle = CapHandle(frame.r8);
    // Checked only for a filter that claims no port (a monitor filter); any failure (none,
    // forged, revoked, wrong object or rights) is `Denied`.
    let monitor = kernel
        .caps
        .lookup(monitor_handle, me, Rights::MONITOR)
        .is_ok_and(|capability| capability.object == Object::NetMonitor);
    kernel.charge(me, Resource::Filters)?;
    let code_budget = kernel.code_budget(me);
    let binding = net::filter_bind(
        kernel.current(),
        UserSlice::new(frame.rdi, frame.rsi),
        UserSlice::new(frame.rdx, frame.r10),
        monitor,
        code_budget,
    )?;
    let object = Object::FilterBinding { id: binding.id };
    let capability = if binding.monitor {
        kernel
            .caps
            .derive(monitor_handle, me, Rights::MONITOR, object, BINDING_RIGHTS)
    } else {
        kernel.caps.create(me, object, BINDING_RIGHTS)
    };
    match capability {
        Ok(capability) => {
            net::attach_capability(binding.id, capability);
            Ok((binding.id, capability))
        }
        Err(error) => {
            net::unbind(binding.id);
            Err(error.into())
        }
    }
}

/// `ash_bind(binding_cap, handler, length, regions, count)`: binds, then makes the handler's
/// capability, derived from the binding's so that unbinding the filter removes it.
fn ash_bind(kernel: &mut Kernel, frame: &TrapFrame) -> Result<(u32, CapHandle), Error> {
    let me = kernel.running();
    let binding = CapHandle(frame.rdi);
    let capability = kernel.caps.lookup(binding, me, Rights::empty())?;
    let Object::FilterBinding { id: filter } = capability.object else {
        return Err(Error::InvalidCapability);
    };
    if !capability.rights.contains(Rights::CONTROL) {
        return Err(Error::Denied);
    }
    if frame.r8 > ash::ir::MAX_REGIONS as u64 {
        return Err(Error::InvalidArgument);
    }
    kernel.charge(me, Resource::Handlers)?;
    let code_budget = kernel.code_budget(me);
    let id = net::ash_bind(
        kernel.current(),
        filter,
        UserSlice::new(frame.rsi, frame.rdx),
        UserSlice::new(frame.r10, frame.r8 * 8),
        code_budget,
    )?;
    let object = Object::AshHandler { id };
    match kernel
        .caps
        .derive(binding, me, Rights::CONTROL, object, BINDING_RIGHTS)
    {
        Ok(capability) => {
            net::ash_attach_capability(id, capability);
            Ok((id, capability))
        }
        Err(error) => {
            net::ash_unbind(id);
            Err(error.into())
        }
    }
}

/// `filter_unbind(binding_cap)`: deletes the capability the binding lives by, with every copy
/// granted from it; `Kernel::undo` then unbinds the filter.
fn filter_unbind(kernel: &mut Kernel, handle: u64) -> Result<u64, Error> {
    let me = kernel.running();
    let handle = CapHandle(handle);
    // The type first, as for environments: another object is the wrong capability.
    let capability = kernel.caps.lookup(handle, me, Rights::empty())?;
    let Object::FilterBinding { id } = capability.object else {
        return Err(Error::InvalidCapability);
    };
    if !capability.rights.contains(Rights::CONTROL) {
        return Err(Error::Denied);
    }
    // The binding is gone only if its ring was dropped for want of memory (see `net::unbind`):
    // then the capability presented is all that is left to delete.
    let (primary, holder) = net::binding_capability(id).unwrap_or((handle, me));
    let mut removed = Vec::new();
    kernel
        .caps
        .delete(primary, holder, &mut |r| removed.push(r))?;
    kernel.undo(&removed);
    Ok(0)
}

fn set_upcall(kernel: &mut Kernel, kind: u64, entry: u64, stack: u64) -> Result<u64, Error> {
    let kind = UpcallKind::from_number(kind).ok_or(Error::InvalidArgument)?;
    if entry != 0 && !sched::is_user_address(entry) {
        return Err(Error::InvalidArgument);
    }
    let stack_ok = match kind {
        UpcallKind::Pct => {
            entry == 0 || (sched::is_user_address(stack) && stack.is_multiple_of(16))
        }
        _ => stack == 0,
    };
    if !stack_ok {
        return Err(Error::InvalidArgument);
    }
    let env = kernel.current();
    env.upcalls[kind as usize] = entry;
    if kind == UpcallKind::Pct {
        env.pct_stack = stack;
    }
    kernel.republish_exception_entry();
    Ok(0)
}

/// An app's console output, every line marked `NAME| ` so that no app can print a line that
/// looks like the kernel's (`[exo] ...`): what the test judges read as the kernel's word.
fn console_write(env: &mut crate::env::Environment, text: UserSlice) -> Result<(), Error> {
    let mut at_line_start = env.console_at_line_start;
    let result = {
        let env = &*env;
        usermem::read_chunks(env, text, |chunk| {
            for line in chunk.split_inclusive(|&byte| byte == b'\n') {
                if at_line_start {
                    log::write_bytes(env.name.as_bytes());
                    log::write_bytes(b"| ");
                }
                log::write_bytes(line);
                at_line_start = line.last() == Some(&b'\n');
            }
        })
    };
    env.console_at_line_start = at_line_start;
    result
}

/// `kernel_usage(gauge)`.
fn kernel_usage(gauge: u64) -> Result<u64, Error> {
    Ok(
        match exo_abi::usage::Gauge::from_number(gauge).ok_or(Error::InvalidArgument)? {
            exo_abi::usage::Gauge::HeapUsedBytes => crate::mm::heap::used_bytes(),
            exo_abi::usage::Gauge::FramesFree => crate::mm::frames::free_count(),
            exo_abi::usage::Gauge::KernelTableFrames => {
                crate::mm::paging::code_table_frames() + crate::mm::paging::split_table_frames()
            }
            exo_abi::usage::Gauge::JitCodePages => net::jit::code_pages_in_use(),
        },
    )
}

/// `env_quota(env_cap, resource, field)`.
fn env_quota(kernel: &mut Kernel, env_cap: u64, resource: u64, field: u64) -> Result<u64, Error> {
    let resource = Resource::from_number(resource).ok_or(Error::InvalidArgument)?;
    let field = QuotaField::from_number(field).ok_or(Error::InvalidArgument)?;
    let id = match env_cap {
        0 => kernel.running(),
        handle => kernel.env_cap(handle, Rights::CONTROL)?,
    };
    let env = kernel.env(id).ok_or(Error::PeerGone)?;
    Ok(match field {
        QuotaField::Limit => env.limits.get(resource),
        QuotaField::Reserved => env.reserved.get(resource),
        QuotaField::Used => kernel.used(id).ok_or(Error::PeerGone)?.get(resource),
    })
}

fn spawn(
    kernel: &mut Kernel,
    pointer: u64,
    length: u64,
    argument: u64,
    limits_pointer: u64,
) -> Result<u64, Error> {
    let requested = match limits_pointer {
        0 => None,
        address => {
            let mut bytes = [0u8; LIMITS_BYTES];
            let mut filled = 0;
            usermem::read_chunks(
                kernel.current(),
                UserSlice::new(address, LIMITS_BYTES as u64),
                |chunk| {
                    bytes[filled..filled + chunk.len()].copy_from_slice(chunk);
                    filled += chunk.len();
                },
            )?;
            Some(Limits::decode(&bytes))
        }
    };
    if length == 0 || length > exo_abi::pack::NAME_MAX_BYTES as u64 {
        return Err(Error::InvalidArgument);
    }
    let mut name = [0u8; exo_abi::pack::NAME_MAX_BYTES];
    let mut filled = 0;
    usermem::read_chunks(kernel.current(), UserSlice::new(pointer, length), |chunk| {
        name[filled..filled + chunk.len()].copy_from_slice(chunk);
        filled += chunk.len();
    })?;
    let name = core::str::from_utf8(&name[..filled]).map_err(|_| Error::InvalidArgument)?;
    let parent = kernel.running();
    let (id, cap) = kernel.spawn(name, Some(parent), argument, requested.as_ref())?;
    log!(
        "app {} (env {parent}) spawned {name} (env {id})",
        kernel.name_of(parent)
    );
    Ok(cap.raw())
}

/// The page access that page rights allow.
fn access_of(rights: Rights) -> Access {
    Access {
        read: rights.contains(Rights::READ),
        write: rights.contains(Rights::WRITE),
        execute: rights.contains(Rights::EXECUTE),
    }
}

/// Decodes and checks a `page_map`/`page_protect` access argument.
fn page_access(bits: u64) -> Result<(Rights, Access), Error> {
    let rights = Rights::from_bits(bits)
        .filter(|rights| Rights::PAGE_ACCESS.contains(*rights))
        .ok_or(Error::InvalidArgument)?;
    if rights.intersects(Rights::WRITE | Rights::EXECUTE) && !rights.contains(Rights::READ) {
        return Err(Error::InvalidArgument);
    }
    Ok((rights, access_of(rights)))
}

fn page_alloc(kernel: &mut Kernel, physical_address: u64) -> Result<u64, Error> {
    let frame = if physical_address == ANY_FRAME {
        crate::mm::frames::allocate().ok_or(Error::OutOfMemory)?
    } else {
        crate::mm::frames::allocate_at(physical_address).ok_or(Error::AddressInUse)?
    };
    let address = frame.start_address().as_u64();
    crate::mm::paging::zero_frame(address);
    let me = kernel.running();
    match kernel.caps.create(
        me,
        Object::Page { frame: address },
        Rights::PAGE_ACCESS | Rights::GRANT,
    ) {
        Ok(handle) => Ok(handle.raw()),
        Err(error) => {
            crate::mm::frames::free(frame);
            Err(error.into())
        }
    }
}

/// `page_protect_range`: every page is checked (a `page_map` binding whose capability holds
/// the rights) before any changes; then one pass over the page tables and one TLB flush.
fn page_protect_range(
    kernel: &mut Kernel,
    address: u64,
    pages: u64,
    access: u64,
) -> Result<u64, Error> {
    let (rights, access) = page_access(access)?;
    if pages == 0
        || pages > PAGE_PROTECT_RANGE_MAX_PAGES
        || !address.is_multiple_of(PAGE_SIZE_BYTES)
    {
        return Err(Error::InvalidArgument);
    }
    let length = pages * PAGE_SIZE_BYTES;
    if !exo_abi::layout::range_is_user(address, length) {
        return Err(Error::BadAddress);
    }
    let me = kernel.running();
    let env = kernel.env(me).expect("the caller is running");
    if (0..pages).any(|page| net::ash_pinned(me, address + page * PAGE_SIZE_BYTES)) {
        return Err(Error::AddressInUse);
    }
    let mut expected = address;
    for (&page, binding) in env.page_bindings.range(address..address + length) {
        if page != expected {
            return Err(Error::NotMapped);
        }
        kernel.caps.lookup(binding.cap, me, rights)?;
        expected += PAGE_SIZE_BYTES;
    }
    if expected != address + length {
        return Err(Error::NotMapped);
    }
    let env = kernel.current();
    env.space.protect_borrowed_range(address, pages, access);
    env.mappings
        .set_access_within(address, address + length, access);
    Ok(0)
}

fn page_map(kernel: &mut Kernel, handle: u64, address: u64, access: u64) -> Result<u64, Error> {
    let (rights, access) = page_access(access)?;
    if !address.is_multiple_of(PAGE_SIZE_BYTES) {
        return Err(Error::InvalidArgument);
    }
    if !exo_abi::layout::range_is_user(address, PAGE_SIZE_BYTES) {
        return Err(Error::BadAddress);
    }
    let me = kernel.running();
    let handle = CapHandle(handle);
    let capability = kernel.caps.lookup(handle, me, Rights::empty())?;
    let Object::Page { frame } = capability.object else {
        return Err(Error::InvalidCapability);
    };
    if !capability.rights.contains(rights) {
        return Err(Error::Denied);
    }
    kernel.charge(me, Resource::Mappings)?;
    let env = kernel.current();
    env.mappings
        .insert(UserRegion {
            start: address,
            end: address + PAGE_SIZE_BYTES,
            access,
        })
        .map_err(|error| match error {
            RegionError::Overlap => Error::AddressInUse,
            RegionError::OutOfMemory => Error::OutOfMemory,
        })?;
    if let Err(error) = env.space.map_borrowed(address, frame, access) {
        env.mappings.remove(address);
        return Err(match error {
            crate::mm::paging::MapError::OutOfMemory => Error::OutOfMemory,
            crate::mm::paging::MapError::TableQuota => Error::Exhausted,
            crate::mm::paging::MapError::NotUserPage => Error::BadAddress,
            crate::mm::paging::MapError::AlreadyMapped => Error::AddressInUse,
        });
    }
    env.page_bindings
        .insert(address, PageBinding { cap: handle });
    Ok(0)
}
