//! The GDT and TSS: segments for ring 0 and ring 3, the stack the CPU switches to on an
//! interrupt from user mode (RSP0), and known-good stacks (IST) for double faults, NMIs and
//! machine checks, which may arrive while the current stack is unusable. Every stack sits
//! above an unmapped guard page.
//!
//! Order matters: kernel code, kernel data, user data, user code is what `STAR` expects.
use super::stack::Stack;
use spin::Lazy;
use x86_64::{
    instructions::{
        segmentation::{CS, DS, ES, SS, Segment},
        tables::load_tss,
    },
    structures::{
        gdt::{Descriptor, GlobalDescriptorTable, SegmentSelector},
        tss::TaskStateSegment,
    },
};

/// IST slot (1-based in hardware, 0-based here) used by the double-fault handler.
pub const DOUBLE_FAULT_IST_INDEX: u16 = 0;
/// IST slot of the NMI handler: an NMI can arrive anywhere, even on the first instruction of
/// `syscall` before the stack switch.
pub const NMI_IST_INDEX: u16 = 1;
/// IST slot of the machine-check handler.
pub const MACHINE_CHECK_IST_INDEX: u16 = 2;

/// Stack for entries from ring 3: interrupts (via TSS.RSP0) and `syscall` (via per-CPU data).
/// Its size is the bound `exo_kernel::stack_budget`'s tests prove the filter walks fit in.
static ENTRY_STACK: Stack<{ exo_kernel::stack_budget::ENTRY_STACK_BYTES }> = Stack::new();
/// Bytes of each IST stack (double fault, NMI, machine check): their handlers only report.
const IST_STACK_BYTES: usize = 16 * 1024;
static DOUBLE_FAULT_STACK: Stack<IST_STACK_BYTES> = Stack::new();
static NMI_STACK: Stack<IST_STACK_BYTES> = Stack::new();
static MACHINE_CHECK_STACK: Stack<IST_STACK_BYTES> = Stack::new();

static TSS: Lazy<TaskStateSegment> = Lazy::new(|| {
    let mut tss = TaskStateSegment::new();
    tss.privilege_stack_table[0] = ENTRY_STACK.top();
    tss.interrupt_stack_table[usize::from(DOUBLE_FAULT_IST_INDEX)] = DOUBLE_FAULT_STACK.top();
    tss.interrupt_stack_table[usize::from(NMI_IST_INDEX)] = NMI_STACK.top();
    tss.interrupt_stack_table[usize::from(MACHINE_CHECK_IST_INDEX)] = MACHINE_CHECK_STACK.top();
    tss
});

/// Whether `address` lies on the NMI's IST stack (what the NMI handler checks it runs on).
pub fn on_nmi_stack(address: u64) -> bool {
    let top = NMI_STACK.top().as_u64();
    (top - IST_STACK_BYTES as u64..top).contains(&address)
}

/// Whether `address` lies on the machine check's IST stack.
pub fn on_machine_check_stack(address: u64) -> bool {
    let top = MACHINE_CHECK_STACK.top().as_u64();
    (top - IST_STACK_BYTES as u64..top).contains(&address)
}

/// The guard pages below these stacks, which the kernel's page tables leave unmapped.
pub fn stack_guard_pages() -> [u64; 4] {
    [
        ENTRY_STACK.guard_page(),
        DOUBLE_FAULT_STACK.guard_page(),
        NMI_STACK.guard_page(),
        MACHINE_CHECK_STACK.guard_page(),
    ]
}

/// The ring-3 data selector (GDT index 3, RPL 3); `init` checks the GDT agrees.
pub const USER_DATA_SELECTOR: u64 = 0x1b;
/// The ring-3 code selector (GDT index 4, RPL 3); `init` checks the GDT agrees.
pub const USER_CODE_SELECTOR: u64 = 0x23;

/// Segment selectors, with the requested privilege level already in the low bits.
#[derive(Clone, Copy, Debug)]
pub struct Selectors {
    /// Ring-0 code.
    pub kernel_code: SegmentSelector,
    /// Ring-0 data.
    pub kernel_data: SegmentSelector,
    /// Ring-3 data (also the stack segment for `sysretq`/`iretq`).
    pub user_data: SegmentSelector,
    /// Ring-3 64-bit code.
    pub user_code: SegmentSelector,
    tss: SegmentSelector,
}

static GDT: Lazy<(GlobalDescriptorTable, Selectors)> = Lazy::new(|| {
    let mut gdt = GlobalDescriptorTable::new();
    let kernel_code = gdt.append(Descriptor::kernel_code_segment());
    let kernel_data = gdt.append(Descriptor::kernel_data_segment());
    let user_data = gdt.append(Descriptor::user_data_segment());
    let user_code = gdt.append(Descriptor::user_code_segment());
    let tss = gdt.append(Descriptor::tss_segment(&TSS));
    let selectors = Selectors {
        kernel_code,
        kernel_data,
        user_data,
        user_code,
        tss,
    };
    (gdt, selectors)
});

/// The selectors of the loaded GDT.
pub fn selectors() -> Selectors {
    GDT.1
}

/// Top of the stack entries from ring 3 run on.
pub fn entry_stack_top() -> x86_64::VirtAddr {
    ENTRY_STACK.top()
}

/// Loads the GDT and TSS and reloads every segment register.
pub fn init() {
    let (gdt, selectors) = &*GDT;
    assert_eq!(u64::from(selectors.user_data.0), USER_DATA_SELECTOR);
    assert_eq!(u64::from(selectors.user_code.0), USER_CODE_SELECTOR);
    gdt.load();
    // SAFETY: the selectors come from the GDT just loaded (a 64-bit code segment and a data
    // segment at ring 0), so the CPU keeps running the same code with the same stack, and the
    // TSS descriptor points at a static TSS that lives forever.
    unsafe {
        CS::set_reg(selectors.kernel_code);
        SS::set_reg(selectors.kernel_data);
        DS::set_reg(selectors.kernel_data);
        ES::set_reg(selectors.kernel_data);
        load_tss(selectors.tss);
    }
}
