//! Bring-up order and the boot policy: what runs, in which order, and how the run ends.
#![forbid(unsafe_code)]
use crate::arch::{self, gdt, percpu, timer};
use crate::mm::{frames, heap, paging};
use crate::protection_test::Provoke;
use crate::sched::{self, SpawnError};
use exo_abi::{KernelExit, pack::Pack};
use exo_kernel::cmdline::{self, SelfTest};
use exo_kernel::pvh::MemoryKind;

/// Low memory the frame allocator never hands out (real-mode structures, BIOS, boot data).
const LOW_MEMORY_END: u64 = 1 << 20;
/// Timer ticks to wait for at boot, proving interrupts arrive.
const BOOT_TICKS: u64 = 2;

/// The Rust entry, called by the PVH trampoline in long mode on the boot stack.
pub extern "C" fn kernel_main(start_info_address: u64) -> ! {
    crate::log::init();
    log!("exo booting");
    let boot = arch::boot::collect(start_info_address)
        .unwrap_or_else(|error| panic!("not booted through PVH: {error:?}"));

    let image = paging::kernel_image();
    let free = frames::init(
        boot.memory_map(),
        &[(0, LOW_MEMORY_END), (image.start, image.end)],
    );
    let ram_end = boot
        .memory_map()
        .iter()
        .filter(|region| matches!(region.kind, MemoryKind::Ram | MemoryKind::AcpiReclaimable))
        .map(|region| region.end())
        .max()
        .unwrap_or(0);
    log!(
        "PVH start info v{}: {} memory regions, RAM up to {ram_end:#x}, {} KiB free, kernel {:#x}..{:#x}",
        boot.start_info.version,
        boot.memory_map().len(),
        free * 4,
        image.start,
        image.end
    );

    gdt::init();
    arch::trap::init();
    percpu::init(gdt::entry_stack_top());
    arch::syscall::init();
    arch::fpu::init();
    let protections = arch::protect::init();
    log!(
        "cpu: SMEP {}, SMAP {}, UMIP {}",
        on(protections.smep),
        on(protections.smap),
        on(protections.umip)
    );
    paging::init(ram_end);
    heap::init();
    log!(
        "paging: kernel page tables active (W^X image), heap {} KiB",
        heap::HEAP_SIZE_BYTES / 1024
    );

    timer::init();
    arch::interrupts_enable();
    while timer::ticks() < BOOT_TICKS {
        arch::wait_for_interrupt();
    }
    log!(
        "timer: {} Hz, {} ticks",
        timer::TICKS_PER_SECOND,
        timer::ticks()
    );
    // Kernel code runs with interrupts off from here on (they come back in ring 3 and in the
    // idle loop): the NIC's handler takes the net lock, which boot takes too.
    arch::interrupts_disable();

    let Ok(line) = core::str::from_utf8(boot.cmdline()) else {
        log!("command line is not UTF-8");
        arch::exit_qemu(KernelExit::BadCommandLine);
    };
    let command = match cmdline::parse(line) {
        Ok(command) => command,
        Err(error) => {
            log!("bad command line {line:?}: {error:?}");
            arch::exit_qemu(KernelExit::BadCommandLine);
        }
    };
    log!("command line {line:?}: apps {:?}", command.apps);
    crate::net::init(&command.arguments, command.ipv4);
    match command.self_test {
        Some(SelfTest::Panic) => panic!("self-test: test=panic asked the kernel to panic"),
        Some(SelfTest::Hang) => {
            log!("self-test: test=hang, spinning with the timer on");
            arch::interrupts_enable();
            loop {
                arch::wait_for_interrupt();
            }
        }
        Some(SelfTest::KernelFault) => {
            arch::read_unmapped_kernel_address();
            panic!("self-test: reading an unmapped kernel address did not fault");
        }
        Some(SelfTest::JitReadOnly) => crate::net::jit::self_test_write_code(),
        Some(SelfTest::JitOutOfFrames) => crate::net::jit_exhaustion::self_test(),
        Some(SelfTest::Smap) => crate::protection_test::run(Provoke::Smap, protections),
        Some(SelfTest::Smep) => crate::protection_test::run(Provoke::Smep, protections),
        Some(SelfTest::MonitorUnbindFails) => crate::net::unbind_failure::self_test(),
        Some(SelfTest::StackOverflow) => {
            log!("self-test: test=stack-overflow, recursing until the stack's guard page");
            let depth = recurse(0);
            panic!("self-test: recursed {depth} deep without reaching a guard page");
        }
        None => {}
    }

    let pack = Pack::parse(crate::BOOT_PACK)
        .unwrap_or_else(|error| panic!("embedded boot pack is corrupt: {error:?}"));
    log!("boot pack: {} apps", pack.len());
    sched::init(pack);
    sched::set_boot_apps(command.apps.len());
    for (position, &name) in command.apps.iter().enumerate() {
        match sched::spawn_boot(name, command.monitors.contains(&name)) {
            Ok(id) => {
                crate::net::boot_app(position + 1, id);
                log!("app {name}: env {id} ready")
            }
            Err(SpawnError::NotFound) => {
                log!("app {name}: not in the boot pack");
                arch::exit_qemu(KernelExit::AppMissing);
            }
            Err(error) => {
                log!("app {name}: cannot load: {error:?}");
                arch::exit_qemu(KernelExit::AppInvalid);
            }
        }
    }
    // The environments run until every one has ended; the last one out stops the machine.
    sched::start()
}

/// How the boot log names a protection's state.
fn on(enabled: bool) -> &'static str {
    if enabled { "on" } else { "absent" }
}

/// Recurses with a frame of a page, `test=stack-overflow`'s way to run off the stack. Stops
/// (and so fails the self-test) only past any stack the kernel has.
#[inline(never)]
fn recurse(depth: u64) -> u64 {
    let frame = core::hint::black_box([depth; 512]);
    if depth > 1 << 14 {
        return depth;
    }
    recurse(depth + 1) + frame[0] % 2
}
