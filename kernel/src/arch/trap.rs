//! The IDT and the trap entry path: one naked stub per vector pushes a uniform frame, a common
//! stub saves the registers, and `trap_dispatch` decides what happens.
//!
//! A CPU exception in user mode goes to the environment's exception upcall (straight from the
//! stub when [`exception_fast`] can, else through `sched`), or ends the environment with a
//! report; one in kernel mode is a kernel bug and panics with the registers.
use super::{gdt, percpu::PerCpu, timer};
use core::arch::naked_asm;
use core::fmt;
use core::mem::offset_of;
use core::sync::atomic::{AtomicU64, Ordering};
use exo_abi::upcall::{RESUME_RED_ZONE_BYTES, UPCALL_FRAME_BYTES};
use spin::Lazy;
use x86_64::{
    VirtAddr,
    registers::control::Cr2,
    structures::idt::{EntryOptions, InterruptDescriptorTable},
};

/// Registers saved on every trap, lowest address first (the order the stubs push in reverse).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct TrapFrame {
    pub r15: u64,
    pub r14: u64,
    pub r13: u64,
    pub r12: u64,
    pub r11: u64,
    pub r10: u64,
    pub r9: u64,
    pub r8: u64,
    pub rbp: u64,
    pub rdi: u64,
    pub rsi: u64,
    pub rdx: u64,
    pub rcx: u64,
    pub rbx: u64,
    pub rax: u64,
    /// Pushed by the per-vector stub.
    pub vector: u64,
    /// Pushed by the CPU for some exceptions, 0 (pushed by the stub) for the rest.
    pub error_code: u64,
    // Pushed by the CPU.
    pub rip: u64,
    pub cs: u64,
    pub rflags: u64,
    pub rsp: u64,
    pub ss: u64,
}

// The entry stubs push, and `return_to_user` pops, this layout: 15 registers, the vector and
// error code, then the CPU's five words (`trap_common` reads CS at +144 once it has pushed).
const _: () = {
    assert!(core::mem::size_of::<TrapFrame>() == 22 * 8);
    assert!(offset_of!(TrapFrame, r15) == 0 && offset_of!(TrapFrame, rax) == 14 * 8);
    assert!(offset_of!(TrapFrame, vector) == 15 * 8 && offset_of!(TrapFrame, rip) == 17 * 8);
    assert!(offset_of!(TrapFrame, cs) == 144 && offset_of!(TrapFrame, ss) == 21 * 8);
};

impl TrapFrame {
    /// A fresh ring-3 context starting at `entry` with stack pointer `rsp`, every other
    /// register zero (nothing of the kernel leaks), interrupts enabled.
    pub fn user(entry: u64, rsp: u64) -> TrapFrame {
        TrapFrame {
            rip: entry,
            rcx: entry,
            rflags: USER_RFLAGS,
            r11: USER_RFLAGS,
            rsp,
            cs: gdt::USER_CODE_SELECTOR,
            ss: gdt::USER_DATA_SELECTOR,
            vector: super::syscall::SYSCALL_VECTOR,
            ..TrapFrame::default()
        }
    }

    /// Whether the trap interrupted ring 3.
    pub fn interrupted_user(&self) -> bool {
        self.cs & 3 == 3
    }
}

impl fmt::Display for TrapFrame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let rows = [
            [("rax", self.rax), ("rbx", self.rbx), ("rcx", self.rcx)],
            [("rdx", self.rdx), ("rsi", self.rsi), ("rdi", self.rdi)],
            [("rbp", self.rbp), ("rsp", self.rsp), ("r8 ", self.r8)],
            [("r9 ", self.r9), ("r10", self.r10), ("r11", self.r11)],
            [("r12", self.r12), ("r13", self.r13), ("r14", self.r14)],
            [("r15", self.r15), ("rip", self.rip), ("rfl", self.rflags)],
        ];
        for row in rows {
            for (name, value) in row {
                write!(f, "  {name} {value:#018x}")?;
            }
            writeln!(f)?;
        }
        write!(
            f,
            "  cs {:#x} ss {:#x} error {:#x}",
            self.cs, self.ss, self.error_code
        )
    }
}

/// RFLAGS user code starts with: interrupts enabled (bit 9) and the reserved bit 1.
pub const USER_RFLAGS: u64 = 0x202;

/// A CPU exception, decoded for reports.
#[derive(Clone, Copy, Debug)]
pub struct Exception {
    /// Vector 0..32.
    pub vector: u8,
    /// The address that faulted (CR2), for page faults.
    pub fault_address: Option<u64>,
    /// The registers at the time.
    pub frame: TrapFrame,
}

/// NMIs taken so far, and how many of them ran on the NMI's own IST stack.
static NMIS: AtomicU64 = AtomicU64::new(0);
static NMIS_ON_IST: AtomicU64 = AtomicU64::new(0);
/// NMIs already reported (see [`report_nmis`]).
static NMIS_REPORTED: AtomicU64 = AtomicU64::new(0);

/// An NMI: nothing here raises one on purpose (no watchdog, no profiler), so it is a
/// platform's (or a monitor's `inject-nmi`) and is counted and dismissed, whatever ran. It can
/// arrive anywhere, even with the log's lock held, so it only counts; the report comes later
/// from a timer tick that interrupted ring 3, where the kernel holds no lock.
fn nmi(frame: &TrapFrame) {
    NMIS.fetch_add(1, Ordering::Relaxed);
    if gdt::on_nmi_stack(frame as *const TrapFrame as u64) {
        NMIS_ON_IST.fetch_add(1, Ordering::Relaxed);
    }
}

/// Logs the NMIs taken since the last report, if any.
fn report_nmis() {
    let taken = NMIS.load(Ordering::Relaxed);
    if NMIS_REPORTED.swap(taken, Ordering::Relaxed) != taken {
        log!(
            "nmi: {taken} handled, {} on the NMI's IST stack; kept running",
            NMIS_ON_IST.load(Ordering::Relaxed)
        );
    }
}

/// A machine check: the hardware reports an error it could not correct. Whatever ran may have
/// been given corrupt data, so, as Linux does for an uncorrected error, the kernel reports
/// what the banks say and stops; it never hands the exception to an app.
fn machine_check(frame: &TrapFrame) -> ! {
    let on_ist = gdt::on_machine_check_stack(frame as *const TrapFrame as u64);
    let (global_status, bank) = super::protect::machine_check_status();
    match bank {
        Some((index, status)) => panic!(
            "machine check (on its IST stack: {on_ist}): MCG_STATUS {global_status:#x}, bank {index} status {status:#x}, rip {:#x}",
            frame.rip
        ),
        None => panic!(
            "machine check (on its IST stack: {on_ist}): MCG_STATUS {global_status:#x}, no bank holds a valid error, rip {:#x}",
            frame.rip
        ),
    }
}

/// RFLAGS.AC: set, ring 0 may touch user pages despite SMAP.
const RFLAGS_AC: u64 = 1 << 18;

impl Exception {
    /// The architectural name of the exception.
    pub fn name(&self) -> &'static str {
        match self.vector {
            0 => "divide error",
            1 => "debug",
            2 => "non-maskable interrupt",
            3 => "breakpoint",
            4 => "overflow",
            5 => "bound range exceeded",
            6 => "invalid opcode",
            7 => "device not available",
            8 => "double fault",
            10 => "invalid TSS",
            11 => "segment not present",
            12 => "stack-segment fault",
            13 => "general protection fault",
            14 => "page fault",
            16 => "x87 floating-point error",
            17 => "alignment check",
            18 => "machine check",
            19 => "SIMD floating-point error",
            20 => "virtualization exception",
            21 => "control protection exception",
            28 => "hypervisor injection",
            29 => "VMM communication",
            30 => "security exception",
            _ => "reserved exception",
        }
    }
}

impl fmt::Display for Exception {
    /// One line a test can match (`page fault at address 0x... rip 0x...`), then registers.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.name())?;
        if let Some(address) = self.fault_address {
            write!(f, " at address {address:#x}")?;
        }
        write!(
            f,
            " rip {:#x} error {:#x}",
            self.frame.rip, self.frame.error_code
        )?;
        if self.vector == 14 {
            let error = self.frame.error_code;
            write!(
                f,
                " ({} {}, {})",
                if error & 4 != 0 { "user" } else { "kernel" },
                if error & 0x10 != 0 {
                    "fetch"
                } else if error & 2 != 0 {
                    "write"
                } else {
                    "read"
                },
                if error & 1 != 0 {
                    "protection violation"
                } else {
                    "not present"
                },
            )?;
            // Ring 0 on a present user page: SMEP refused a fetch, or SMAP an access made
            // without RFLAGS.AC (the only user pages the kernel touches directly, in the
            // exception fast path, it touches with AC set).
            let user_page = self
                .fault_address
                .is_some_and(|address| address < exo_abi::layout::USER_END);
            if error & 5 == 1 && user_page {
                if error & 0x10 != 0 {
                    write!(f, " SMEP: ring 0 fetched from a user page")?;
                } else if self.frame.rflags & RFLAGS_AC == 0 {
                    write!(f, " SMAP: ring 0 touched a user page with RFLAGS.AC clear")?;
                }
            }
        }
        write!(f, "\n{}", self.frame)
    }
}

/// Saves the general registers, calls `trap_dispatch`, restores them and returns with
/// `iretq`. Entered from a per-vector stub with the vector and an error code pushed.
// SAFETY: entered only by a jump from a per-vector stub (or `exception_fast`'s slow path),
// through interrupt gates (interrupts off) on the stack the TSS or IST gives the vector, with
// the CPU's frame, an error code and the vector on it. It swaps GS exactly when the saved CS
// says ring 3 was interrupted, so the kernel's GS is live from here to the exit; the pushes
// make the [`TrapFrame`] whose layout a const assertion checks, 16-byte aligned for the call.
// Back to ring 3 it leaves through `return_to_user` (which swaps GS back); to ring 0 it pops
// the same registers and `iretq`s without touching GS, as it entered.
#[unsafe(naked)]
extern "C" fn trap_common() {
    naked_asm!(
        // From ring 3, GS still holds the user's base: switch to the kernel's (see percpu).
        "test qword ptr [rsp + 24], 3",
        "jz 2f",
        "swapgs",
        "2:",
        "push rax",
        "push rbx",
        "push rcx",
        "push rdx",
        "push rsi",
        "push rdi",
        "push rbp",
        "push r8",
        "push r9",
        "push r10",
        "push r11",
        "push r12",
        "push r13",
        "push r14",
        "push r15",
        // 22 quadwords on a 16-byte aligned stack: RSP is aligned at the call.
        "mov rdi, rsp",
        "cld",
        "call {dispatch}",
        // Back to ring 3 through the common exit (which may be another environment).
        "test qword ptr [rsp + 144], 3",
        "jnz {return_to_user}",
        "pop r15",
        "pop r14",
        "pop r13",
        "pop r12",
        "pop r11",
        "pop r10",
        "pop r9",
        "pop r8",
        "pop rbp",
        "pop rdi",
        "pop rsi",
        "pop rdx",
        "pop rcx",
        "pop rbx",
        "pop rax",
        "add rsp, 16",
        "iretq",
        dispatch = sym trap_dispatch,
        return_to_user = sym super::syscall::return_to_user,
    )
}

/// Delivers a CPU exception from ring 3 straight to the running environment's exception
/// upcall when it can, Aegis-style: no register save area, no lock, no Rust. Entered from a
/// per-vector stub with the vector and an error code pushed (the layout `trap_common`
/// expects); anything it cannot handle goes on to `trap_common` with that layout intact.
///
/// The fast path writes the [`UpcallFrame`](exo_abi::upcall::UpcallFrame) the slow path
/// (`sched::upcalls::deliver`) would, at the same place (below the red zone of the interrupted `rsp`),
/// and enters the handler the same way (`rsp` = `rdi` = the frame, `rcx` = `rip` = the entry,
/// `r11` = `rflags` = [`USER_RFLAGS`], every other register as the exception left it). It
/// does so only when the running environment has an entry (`percpu::publish_exception_entry`)
/// and the frame lies inside the range set at boot (`percpu::set_exception_frame_range`: the
/// stack every environment keeps mapped user-writable for its whole life), so the stores
/// cannot fault and cannot reach anything but the running environment's own memory (its page
/// table is the one loaded whenever ring 3 runs). Otherwise (no entry, the frame would leave the
/// range, a kernel-mode exception) it takes the slow path, which checks the frame against the
/// environment's mappings, and ends the environment when it does not fit.
// SAFETY: (1) entered only through the IDT from a per-vector stub, with interrupts off
// (interrupt gates) on the kernel entry stack, with the vector and an error code pushed above
// the CPU's frame; the ring is read from the saved CS before anything else, and `swapgs` runs
// only for ring 3, undone on both exits. (2) The 120 bytes stored at `[rcx, rcx + 120)` lie in
// `[frame_min, frame_max + 120)`, which `set_exception_frame_range` promises is mapped
// user-writable in every address space for an environment's whole life; the loaded page
// table is the running environment's whenever ring 3 was interrupted, so the stores touch
// only its own stack and cannot fault (RFLAGS.AC is set for them, so SMAP allows them). (3) `sysretq`
// gets `rcx` = an entry `set_upcall` checked to be a canonical user-half address and `r11` =
// `USER_RFLAGS` (IOPL 0, IF set), so it can only land in ring 3 with interrupts on; `rsp` is
// the user frame, and the kernel stack is abandoned, as every exit to ring 3 does. (4) The
// slow-path exit restores `rax`, `rcx` and GS exactly as they were on entry, so `trap_common`
// sees the layout its own stubs give it.
#[unsafe(naked)]
extern "C" fn exception_fast() {
    naked_asm!(
        // A kernel-mode exception is a bug: the slow path reports it.
        "test qword ptr [rsp + 24], 3",
        "jz {common}",
        "swapgs",
        "push rax",
        "push rcx",
        // [rsp] rcx, +8 rax, +16 vector, +24 error code, +32 rip, +40 cs, +48 rflags,
        // +56 rsp, +64 ss. The frame goes below the red zone; a user rsp too small for it
        // wraps to an address above any published maximum.
        "cmp qword ptr gs:[{entry}], 0",
        "je 3f",
        "mov rcx, [rsp + 56]",
        "sub rcx, {below_rsp}",
        "cmp rcx, gs:[{frame_min}]",
        "jb 3f",
        "cmp rcx, gs:[{frame_max}]",
        "ja 3f",
        // Stores to the user stack: allowed under SMAP only with RFLAGS.AC set (`pushfq`/
        // `popfq` rather than `stac`, which faults on CPUs without SMAP). `sysretq` below
        // loads the user's flags from r11, so AC never reaches ring 3 or other kernel code.
        "pushfq",
        "or qword ptr [rsp], {ac}",
        "popfq",
        "mov rax, [rsp + 16]",
        "mov [rcx], rax",
        "mov rax, [rsp + 24]",
        "mov [rcx + 8], rax",
        "xor eax, eax",
        "cmp qword ptr [rsp + 16], 14",
        "jne 2f",
        "mov rax, cr2",
        "2:",
        "mov [rcx + 16], rax",
        "mov rax, [rsp + 8]",
        "mov [rcx + 24], rax",
        "mov rax, [rsp]",
        "mov [rcx + 32], rax",
        "mov [rcx + 40], rdx",
        "mov [rcx + 48], rsi",
        "mov [rcx + 56], rdi",
        "mov [rcx + 64], r8",
        "mov [rcx + 72], r9",
        "mov [rcx + 80], r10",
        "mov [rcx + 88], r11",
        "mov rax, [rsp + 56]",
        "mov [rcx + 96], rax",
        "mov rax, [rsp + 48]",
        "mov [rcx + 104], rax",
        "mov rax, [rsp + 32]",
        "mov [rcx + 112], rax",
        // Into the handler. The kernel stack needs no unwinding: the next entry starts at
        // the top again (TSS.RSP0, or the syscall stub's load).
        "mov rdi, rcx",
        "mov rcx, gs:[{entry}]",
        "mov r11d, {rflags}",
        "mov rax, [rsp + 8]",
        "swapgs",
        "mov rsp, rdi",
        "sysretq",
        "3:",
        "pop rcx",
        "pop rax",
        "swapgs",
        "jmp {common}",
        common = sym trap_common,
        below_rsp = const RESUME_RED_ZONE_BYTES + UPCALL_FRAME_BYTES,
        frame_min = const offset_of!(PerCpu, exception_frame_min),
        frame_max = const offset_of!(PerCpu, exception_frame_max),
        entry = const offset_of!(PerCpu, exception_entry),
        rflags = const USER_RFLAGS,
        ac = const 1u64 << 18,
    )
}

// The fast path's stores follow the frame layout.
const _: () = {
    use exo_abi::upcall::UpcallFrame as F;
    assert!(offset_of!(F, kind) == 0 && offset_of!(F, error_code) == 8);
    assert!(offset_of!(F, fault_address) == 16 && offset_of!(F, rax) == 24);
    assert!(offset_of!(F, rcx) == 32 && offset_of!(F, rdx) == 40 && offset_of!(F, rsi) == 48);
    assert!(offset_of!(F, rdi) == 56 && offset_of!(F, r8) == 64 && offset_of!(F, r9) == 72);
    assert!(offset_of!(F, r10) == 80 && offset_of!(F, r11) == 88 && offset_of!(F, rsp) == 96);
    assert!(offset_of!(F, rflags) == 104 && offset_of!(F, rip) == 112);
    assert!(UPCALL_FRAME_BYTES == 120);
};

macro_rules! trap_stubs {
    ($($name:ident = $vector:literal $kind:ident via $common:ident),* $(,)?) => {
        $( trap_stubs!(@stub $name $vector $kind $common); )*
        /// Every installed vector and its stub.
        const STUBS: &[(u8, extern "C" fn())] = &[$(($vector, $name)),*];
    };
    // SAFETY (both stubs): installed only as IDT entries, so entered by the CPU with its frame
    // on the stack; each pushes what the CPU did not (an error code of 0, then the vector) so
    // the common path sees one layout, touches no other register and jumps, never returns.
    (@stub $name:ident $vector:literal no_error_code $common:ident) => {
        #[unsafe(naked)]
        extern "C" fn $name() {
            naked_asm!("push 0", "push {v}", "jmp {common}", v = const $vector, common = sym $common)
        }
    };
    (@stub $name:ident $vector:literal error_code $common:ident) => {
        #[unsafe(naked)]
        extern "C" fn $name() {
            naked_asm!("push {v}", "jmp {common}", v = const $vector, common = sym $common)
        }
    };
}

// Exceptions the environment may handle go through the fast path first; NMI (2), double
// fault (8), machine check (18) and device interrupts never do.
trap_stubs! {
    vector_0 = 0 no_error_code via exception_fast,
    vector_1 = 1 no_error_code via exception_fast,
    vector_2 = 2 no_error_code via trap_common,
    vector_3 = 3 no_error_code via exception_fast,
    vector_4 = 4 no_error_code via exception_fast,
    vector_5 = 5 no_error_code via exception_fast,
    vector_6 = 6 no_error_code via exception_fast,
    vector_7 = 7 no_error_code via exception_fast,
    vector_8 = 8 error_code via trap_common,
    vector_9 = 9 no_error_code via exception_fast,
    vector_10 = 10 error_code via exception_fast,
    vector_11 = 11 error_code via exception_fast,
    vector_12 = 12 error_code via exception_fast,
    vector_13 = 13 error_code via exception_fast,
    vector_14 = 14 error_code via exception_fast,
    vector_16 = 16 no_error_code via exception_fast,
    vector_17 = 17 error_code via exception_fast,
    vector_18 = 18 no_error_code via trap_common,
    vector_19 = 19 no_error_code via exception_fast,
    vector_20 = 20 no_error_code via exception_fast,
    vector_21 = 21 error_code via exception_fast,
    vector_28 = 28 no_error_code via exception_fast,
    vector_29 = 29 error_code via exception_fast,
    vector_30 = 30 error_code via exception_fast,
    vector_32 = 32 no_error_code via trap_common,
    vector_33 = 33 no_error_code via trap_common,
    vector_34 = 34 no_error_code via trap_common,
    vector_35 = 35 no_error_code via trap_common,
    vector_36 = 36 no_error_code via trap_common,
    vector_37 = 37 no_error_code via trap_common,
    vector_38 = 38 no_error_code via trap_common,
    vector_39 = 39 no_error_code via trap_common,
    vector_40 = 40 no_error_code via trap_common,
    vector_41 = 41 no_error_code via trap_common,
    vector_42 = 42 no_error_code via trap_common,
    vector_43 = 43 no_error_code via trap_common,
    vector_44 = 44 no_error_code via trap_common,
    vector_45 = 45 no_error_code via trap_common,
    vector_46 = 46 no_error_code via trap_common,
    vector_47 = 47 no_error_code via trap_common,
}

/// # Safety
/// `handler` must be the address of a trap stub above.
unsafe fn install(
    idt: &mut InterruptDescriptorTable,
    vector: u8,
    handler: VirtAddr,
) -> &mut EntryOptions {
    // SAFETY: the caller passes a stub that saves state and returns with iretq, which is
    // what every IDT entry needs; the exception fields are the ones the CPU uses for them.
    unsafe {
        match vector {
            8 => idt.double_fault.set_handler_addr(handler),
            10 => idt.invalid_tss.set_handler_addr(handler),
            11 => idt.segment_not_present.set_handler_addr(handler),
            12 => idt.stack_segment_fault.set_handler_addr(handler),
            13 => idt.general_protection_fault.set_handler_addr(handler),
            14 => idt.page_fault.set_handler_addr(handler),
            17 => idt.alignment_check.set_handler_addr(handler),
            18 => idt.machine_check.set_handler_addr(handler),
            21 => idt.cp_protection_exception.set_handler_addr(handler),
            29 => idt.vmm_communication_exception.set_handler_addr(handler),
            30 => idt.security_exception.set_handler_addr(handler),
            _ => idt[vector].set_handler_addr(handler),
        }
    }
}

static IDT: Lazy<InterruptDescriptorTable> = Lazy::new(|| {
    let mut idt = InterruptDescriptorTable::new();
    for &(vector, stub) in STUBS {
        let address = VirtAddr::new(stub as usize as u64);
        // SAFETY: `stub` is one of the trap stubs generated above.
        let options = unsafe { install(&mut idt, vector, address) };
        if vector == 3 {
            // `int3` is an instruction user code may execute: its exception is delivered.
            options.set_privilege_level(x86_64::PrivilegeLevel::Ring3);
        }
        let ist = match vector {
            8 => Some(gdt::DOUBLE_FAULT_IST_INDEX),
            2 => Some(gdt::NMI_IST_INDEX),
            18 => Some(gdt::MACHINE_CHECK_IST_INDEX),
            _ => None,
        };
        if let Some(index) = ist {
            // SAFETY: the IST slots are set up in the TSS by gdt::init, one per vector and
            // used by nothing else, so a double fault caused by a bad kernel stack, or an NMI
            // or machine check arriving on any stack, still has a good one.
            unsafe { options.set_stack_index(index) };
        }
    }
    idt
});

/// Loads the IDT (after `gdt::init`, whose code selector the entries capture).
pub fn init() {
    IDT.load();
}

extern "C" fn trap_dispatch(frame: &mut TrapFrame) {
    let vector = frame.vector as u8;
    match vector {
        timer::TIMER_VECTOR => {
            timer::on_tick();
            if frame.interrupted_user() {
                report_nmis();
                crate::sched::timer_tick(frame);
            }
        }
        2 => nmi(frame),
        18 => machine_check(frame),
        // The NIC's line first: it may share a vector with a PIC's spurious one.
        vector if crate::net::irq().is_some_and(|irq| timer::irq_vector(irq) == vector) => {
            crate::sched::network_interrupt(frame);
        }
        vector if timer::SPURIOUS_VECTORS.contains(&vector) => {}
        0..32 => {
            let exception = Exception {
                vector,
                fault_address: (vector == 14).then(Cr2::read_raw),
                frame: *frame,
            };
            if frame.interrupted_user() {
                crate::sched::user_exception(frame, &exception);
                return;
            }
            panic!("kernel {exception}");
        }
        _ => panic!("unexpected interrupt vector {vector}\n{frame}"),
    }
}
