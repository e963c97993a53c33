//! The filter and handler binding calls (`filter_bind`, `ash_bind`, `filter_unbind`): each
//! binding made in `net` and the capability it lives by made here, or neither.
use super::*;

/// Rights on the capability `filter_bind` returns: unbind (`CONTROL`) and pass it on.
pub const BINDING_RIGHTS: Rights = Rights::CONTROL.union(Rights::GRANT);

/// `filter_bind`: binds, then makes the binding's capability (derived from the monitor
/// capability for a monitor filter, so revoking that one unbinds it; a root otherwise).
pub(super) fn filter_bind(
    kernel: &mut Kernel,
    frame: &TrapFrame,
) -> Result<(u32, CapHandle), Error> {
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
pub(super) fn ash_bind(kernel: &mut Kernel, frame: &TrapFrame) -> Result<(u32, CapHandle), Error> {
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
pub(super) fn filter_unbind(kernel: &mut Kernel, handle: u64) -> Result<u64, Error> {
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
