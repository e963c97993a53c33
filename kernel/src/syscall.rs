//! The system-call table: the one place a call number becomes kernel behaviour.
//!
//! Numbers and their contracts are in `exo_abi::syscall`; every argument is untrusted until
//! the handler checks it (capabilities against the capability space, pointers against the
//! caller's mappings, numbers against their ranges).
//!
//! The calls with most to check have modules of their own: [`filters`] (binding filters and
//! handlers, and the capabilities they live by) and [`pages`] (allocating, mapping and
//! protecting pages).
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

mod filters;
mod pages;

use filters::{ash_bind, filter_bind, filter_unbind};
use pages::{page_access, page_alloc, page_map, page_protect_range};

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
            env.page_bindings.remove(a0).ok_or(Error::NotMapped)?;
            env.space.unmap_borrowed(a0);
            env.mappings.remove(a0);
            Ok(0)
        }
        Syscall::PageProtect => {
            if net::ash_pinned(me, a0) {
                return Err(Error::AddressInUse);
            }
            let (rights, access) = page_access(a1)?;
            let binding = kernel
                .current()
                .page_bindings
                .get(a0)
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
                crate::mm::code_region::code_table_frames()
                    + crate::mm::code_region::split_table_frames()
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
