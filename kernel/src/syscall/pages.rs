//! The page calls (`page_alloc`, `page_map`, `page_protect_range`) and the access argument
//! `page_map` and `page_protect` share.
use super::*;

/// The page access that page rights allow.
fn access_of(rights: Rights) -> Access {
    Access {
        read: rights.contains(Rights::READ),
        write: rights.contains(Rights::WRITE),
        execute: rights.contains(Rights::EXECUTE),
    }
}

/// Decodes and checks a `page_map`/`page_protect` access argument.
pub(super) fn page_access(bits: u64) -> Result<(Rights, Access), Error> {
    let rights = Rights::from_bits(bits)
        .filter(|rights| Rights::PAGE_ACCESS.contains(*rights))
        .ok_or(Error::InvalidArgument)?;
    if rights.intersects(Rights::WRITE | Rights::EXECUTE) && !rights.contains(Rights::READ) {
        return Err(Error::InvalidArgument);
    }
    Ok((rights, access_of(rights)))
}

pub(super) fn page_alloc(kernel: &mut Kernel, physical_address: u64) -> Result<u64, Error> {
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
pub(super) fn page_protect_range(
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
    for (page, binding) in env.page_bindings.range(address..address + length) {
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

pub(super) fn page_map(
    kernel: &mut Kernel,
    handle: u64,
    address: u64,
    access: u64,
) -> Result<u64, Error> {
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
    kernel.charge(me, Resource::PageBindings)?;
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
            crate::mm::address_space::MapError::OutOfMemory => Error::OutOfMemory,
            crate::mm::address_space::MapError::TableQuota => Error::Exhausted,
            crate::mm::address_space::MapError::NotUserPage => Error::BadAddress,
            crate::mm::address_space::MapError::AlreadyMapped => Error::AddressInUse,
        });
    }
    env.page_bindings
        .insert(address, PageBinding { cap: handle });
    Ok(0)
}
