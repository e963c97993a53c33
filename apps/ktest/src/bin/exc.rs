//! Scenario: CPU exceptions go straight to the app's handler in ring 3 and the app resumes
//! itself: divide error, breakpoint, invalid opcode, general protection, and page faults used
//! three ways at user level (demand paging, an Appel-Li protection trap, copy-on-write).
//! Then the fallback: children whose stack cannot take an exception frame (unmapped, the frame
//! would cross the bottom of the stack, read-only memory) are ended with a report while this
//! app goes on.
#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(target_os = "none")]
libnet::entry!(app::main);

#[cfg(target_os = "none")]
#[allow(unsafe_code)]
mod app {
    use core::sync::atomic::{AtomicU64, Ordering};
    use libnet::abi::cap::Rights;
    use libnet::abi::layout::{USER_STACK_SIZE_BYTES, USER_STACK_TOP};
    use libnet::abi::syscall::ANY_FRAME;
    use libnet::abi::upcall::EnvStatus;
    use libnet::upcall::Frame;
    use libnet::{env, println, sys, upcall};

    /// Child modes: the stack pointer a child takes an exception with.
    const UNMAPPED_STACK: u64 = 1;
    const STACK_BOTTOM_EDGE: u64 = 2;
    const READ_ONLY_STACK: u64 = 3;
    /// What a child exits with if its exception was (wrongly) delivered and resumed.
    const DELIVERED_STATUS: u64 = 99;

    const DEMAND: u64 = 0x0000_4000_0000_0000;
    const APPEL_LI: u64 = 0x0000_4000_0010_0000;
    const COW: u64 = 0x0000_4000_0020_0000;
    const COW_SCRATCH: u64 = 0x0000_4000_0030_0000;
    const RW: Rights = Rights::READ.union(Rights::WRITE);

    static COUNTS: [AtomicU64; 32] = [const { AtomicU64::new(0) }; 32];

    fn count(vector: usize) -> u64 {
        COUNTS[vector].load(Ordering::Relaxed)
    }

    fn handler(frame: &mut Frame) -> bool {
        COUNTS[frame.kind as usize].fetch_add(1, Ordering::Relaxed);
        match frame.kind {
            0 => frame.rip += 3,  // div rcx
            3 => {}               // int3 is a trap: rip is already past it
            6 => frame.rip += 2,  // ud2
            13 => frame.rip += 1, // hlt
            14 => return page_fault(frame.fault_address, frame.error_code),
            _ => return false,
        }
        true
    }

    fn page_fault(address: u64, error_code: u64) -> bool {
        let page = address & !0xfff;
        let write = error_code & 2 != 0;
        let present = error_code & 1 != 0;
        match page {
            DEMAND if !present => {
                let cap = sys::page_alloc(ANY_FRAME).expect("page_alloc");
                sys::page_map(cap, DEMAND, RW).is_ok()
            }
            APPEL_LI => sys::page_protect(APPEL_LI, RW).is_ok(),
            COW if write && present => {
                // Copy the shared read-only page into a private one, then swap it in.
                let private = sys::page_alloc(ANY_FRAME).expect("page_alloc");
                sys::page_map(private, COW_SCRATCH, RW).expect("map scratch");
                // SAFETY: both pages are mapped (COW readable, scratch writable), 4 KiB each.
                unsafe {
                    core::ptr::copy_nonoverlapping(COW as *const u8, COW_SCRATCH as *mut u8, 4096)
                };
                sys::page_unmap(COW_SCRATCH).expect("unmap scratch");
                sys::page_unmap(COW).expect("unmap shared");
                sys::page_map(private, COW, RW).is_ok()
            }
            _ => false,
        }
    }

    /// Writes `value` at `address`; a fault is answered by the handler, which maps or
    /// opens the page, so the write completes.
    fn touch_write(address: u64, value: u64) {
        // SAFETY: the addresses are pages this app manages itself (mapped, or mapped by its
        // own fault handler on first touch), never memory Rust owns.
        unsafe { core::ptr::write_volatile(address as *mut u64, value) };
    }

    /// Reads the u64 at `address` (see `touch_write`).
    fn touch_read(address: u64) -> u64 {
        // SAFETY: as touch_write.
        unsafe { core::ptr::read_volatile(address as *const u64) }
    }

    /// A child: a handler is installed, but the exception comes with a stack pointer below
    /// which no upcall frame fits, so the kernel must end this environment.
    fn bad_stack_child(mode: u64) -> ! {
        let rsp = match mode {
            UNMAPPED_STACK => 0x0000_5000_0000_0000,
            // The frame (248 bytes below rsp) would start 48 bytes below the stack.
            STACK_BOTTOM_EDGE => USER_STACK_TOP - USER_STACK_SIZE_BYTES + 200,
            // Inside this app's code: mapped, readable, not writable.
            _ => (bad_stack_child as *const () as u64 & !0xfff) + 2048,
        };
        // SAFETY: the exception never returns here (the kernel ends the environment); if it
        // were delivered and resumed, the next instructions exit without touching the stack.
        unsafe {
            core::arch::asm!(
                "mov rsp, {rsp}",
                "ud2",
                "mov eax, {exit}",
                "mov edi, {status}",
                "syscall",
                rsp = in(reg) rsp,
                exit = const libnet::abi::Syscall::Exit as u64,
                status = const DELIVERED_STATUS,
                options(noreturn)
            )
        }
    }

    pub fn main() -> u8 {
        upcall::install(false);
        upcall::on_exception(handler);
        let mode = env::argument();
        if mode != 0 {
            bad_stack_child(mode);
        }

        // SAFETY: int3 traps to the handler, which resumes after it.
        unsafe { core::arch::asm!("int3") };
        let kept: u64;
        // SAFETY: ud2 faults; the handler resumes 2 bytes on; r8 and r9 are declared.
        unsafe {
            core::arch::asm!("mov r8, 0x1234", "mov r9, 0x5678", "ud2", "add r8, r9",
                out("r8") kept, out("r9") _)
        };
        // SAFETY: `div rcx` (3 bytes) with rcx = 0 faults; the handler resumes after it.
        unsafe {
            core::arch::asm!("xor edx, edx", "mov eax, 7", ".byte 0x48, 0xf7, 0xf1",
                in("rcx") 0u64, out("rax") _, out("rdx") _)
        };
        // SAFETY: hlt in ring 3 is a general protection fault; the handler skips it.
        unsafe { core::arch::asm!("hlt") };
        println!(
            "exceptions: divide {}, breakpoint {}, invalid opcode {}, general protection {}; registers kept: {}",
            count(0),
            count(3),
            count(6),
            count(13),
            kept == 0x1234 + 0x5678
        );

        // Demand paging: the first write faults, the handler maps a page, the write retries.
        touch_write(DEMAND, 0xdead_beef);
        let demand = touch_read(DEMAND) == 0xdead_beef;

        // Appel-Li: an inaccessible page; a touch traps, the handler opens it, the read retries.
        let cap = sys::page_alloc(ANY_FRAME).expect("page_alloc");
        sys::page_map(cap, APPEL_LI, RW).expect("map");
        touch_write(APPEL_LI, 42);
        sys::page_protect(APPEL_LI, Rights::empty()).expect("protect none");
        let before = count(14);
        let appel = touch_read(APPEL_LI) == 42 && count(14) == before + 1;

        // Copy-on-write: a page mapped read-only; the first write gets a private copy.
        let shared = sys::page_alloc(ANY_FRAME).expect("page_alloc");
        sys::page_map(shared, COW_SCRATCH, RW).expect("map");
        touch_write(COW_SCRATCH + 8, 7);
        sys::page_unmap(COW_SCRATCH).expect("unmap");
        sys::page_map(shared, COW, Rights::READ).expect("map read-only");
        touch_write(COW, 9);
        let cow = touch_read(COW + 8) == 7 && touch_read(COW) == 9;
        println!(
            "user-level page faults: demand paging {demand}, appel-li {appel}, copy-on-write {cow} ({} page faults)",
            count(14)
        );

        let mut children = [Ok(EnvStatus::Running); 3];
        for (status, mode) in
            children
                .iter_mut()
                .zip([UNMAPPED_STACK, STACK_BOTTOM_EDGE, READ_ONLY_STACK])
        {
            *status = sys::spawn("exc", mode).and_then(sys::wait);
        }
        let contained = children == [Ok(EnvStatus::Faulted(6)); 3];
        println!(
            "exception stack unusable (unmapped, bottom edge, read-only): {children:?}; contained: {contained}"
        );

        let all = [count(0), count(3), count(6), count(13)] == [1; 4]
            && kept == 0x1234 + 0x5678
            && demand
            && appel
            && cow
            && contained;
        if all { 0 } else { 1 }
    }
}

#[cfg(not(target_os = "none"))]
fn main() {}
