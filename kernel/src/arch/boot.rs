//! The PVH entry: QEMU jumps here in 32-bit protected mode with paging off; this trampoline
//! identity-maps the first 4 GiB, enters long mode and calls `boot::kernel_main`.
//!
//! QEMU finds the entry through the `.note.Xen` ELF note (type 18, XEN_ELFNOTE_PHYS32_ENTRY)
//! and passes the physical address of `hvm_start_info` in `ebx`.

core::arch::global_asm!(
    r#"
    .section .note.Xen, "a", @note
    .balign 4
    .long 4                         /* name size: "Xen\0" */
    .long 8                         /* descriptor size */
    .long 18                        /* XEN_ELFNOTE_PHYS32_ENTRY */
    .asciz "Xen"
    .balign 4
    .quad pvh_entry32
    .balign 4

    .section .text.boot, "ax"
    .code32
    .global pvh_entry32
pvh_entry32:
    cli
    mov edi, ebx                    /* hvm_start_info: first argument of kernel_main */
    mov esp, offset boot_stack_top

    /* PML4[0] -> PDPT; PDPT[0..4] -> four page directories of 2 MiB pages = 4 GiB. */
    mov eax, offset boot_pdpt
    or eax, 0x3
    mov dword ptr [boot_pml4], eax
    xor ecx, ecx
2:
    mov eax, ecx
    shl eax, 12
    add eax, offset boot_pd
    or eax, 0x3
    mov dword ptr [boot_pdpt + ecx * 8], eax
    inc ecx
    cmp ecx, 4
    jne 2b

    xor ecx, ecx
3:
    mov eax, ecx
    shl eax, 21                     /* low 32 bits of the 2 MiB page address */
    or eax, 0x83                    /* present, writable, huge */
    mov dword ptr [boot_pd + ecx * 8], eax
    mov eax, ecx
    shr eax, 11                     /* high bits: which GiB boundary is crossed */
    mov dword ptr [boot_pd + ecx * 8 + 4], eax
    inc ecx
    cmp ecx, 2048
    jne 3b

    mov eax, cr4
    or eax, 0x20                    /* PAE */
    mov cr4, eax
    mov eax, offset boot_pml4
    mov cr3, eax
    mov ecx, 0xc0000080             /* EFER */
    rdmsr
    or eax, 0x900                   /* LME | NXE */
    wrmsr
    mov eax, cr0
    or eax, 0x80000001              /* PG | PE */
    mov cr0, eax

    lgdt [boot_gdt_pointer]
    mov eax, offset pvh_entry64
    push 0x08
    push eax
    retf

    .code64
pvh_entry64:
    mov ax, 0x10
    mov ds, ax
    mov es, ax
    mov ss, ax
    xor eax, eax
    mov fs, ax
    mov gs, ax
    lea rsp, [rip + boot_stack_top]
    xor ebp, ebp
    call {kernel_main}
4:
    cli
    hlt
    jmp 4b

    .section .rodata.boot, "a"
    .balign 8
boot_gdt:
    .quad 0
    .quad 0x00af9a000000ffff        /* 0x08: 64-bit code */
    .quad 0x00cf92000000ffff        /* 0x10: data */
boot_gdt_end:
boot_gdt_pointer:
    .word boot_gdt_end - boot_gdt - 1
    .long boot_gdt

    .section .bss.boot, "aw", @nobits
    .balign 4096
boot_pml4:
    .skip 4096
boot_pdpt:
    .skip 4096
boot_pd:
    .skip 4096 * 4
    .global boot_stack_guard
boot_stack_guard:
    .skip 4096
boot_stack_bottom:
    .skip 512 * 1024
boot_stack_top:
    "#,
    kernel_main = sym crate::boot::kernel_main,
);

use exo_kernel::pvh::{
    self, MEMMAP_ENTRY_BYTES, MemoryRegion, START_INFO_BYTES, StartInfo, StartInfoError,
};

/// Most memory map entries kept; QEMU reports fewer than ten.
const REGIONS_MAX: usize = 64;
/// Longest command line kept; the rest is cut off (and then fails to parse, loudly).
const CMDLINE_MAX_BYTES: usize = 1024;

/// What the boot loader told us, copied out of its memory so those frames can be reused.
#[derive(Debug)]
pub struct BootInfo {
    /// Decoded `hvm_start_info`.
    pub start_info: StartInfo,
    regions: [MemoryRegion; REGIONS_MAX],
    region_count: usize,
    cmdline: [u8; CMDLINE_MAX_BYTES],
    cmdline_length: usize,
}

impl BootInfo {
    /// The memory map.
    pub fn memory_map(&self) -> &[MemoryRegion] {
        &self.regions[..self.region_count]
    }

    /// The command line bytes, without the terminating NUL.
    pub fn cmdline(&self) -> &[u8] {
        &self.cmdline[..self.cmdline_length]
    }
}

/// Reads boot-loader data at physical `address`.
///
/// # Safety
/// `address..address + buffer.len()` must be RAM below 4 GiB (identity-mapped by the boot
/// tables) that nothing writes concurrently.
unsafe fn read_physical(address: u64, buffer: &mut [u8]) {
    // SAFETY: forwarded from the caller; the buffer is a distinct kernel object.
    unsafe {
        core::ptr::copy_nonoverlapping(address as *const u8, buffer.as_mut_ptr(), buffer.len());
    }
}

/// Copies the start info, memory map and command line out of the boot loader's memory.
/// Must run before the frame allocator can hand those frames out.
pub fn collect(start_info_address: u64) -> Result<BootInfo, StartInfoError> {
    let mut raw = [0u8; START_INFO_BYTES];
    // SAFETY: QEMU's PVH loader passes the address of its hvm_start_info in low RAM.
    unsafe { read_physical(start_info_address, &mut raw) };
    let start_info = pvh::parse_start_info(&raw)?;

    let mut info = BootInfo {
        start_info,
        regions: [MemoryRegion {
            start: 0,
            length_bytes: 0,
            kind: pvh::MemoryKind::Reserved(0),
        }; REGIONS_MAX],
        region_count: (start_info.memmap_entries as usize).min(REGIONS_MAX),
        cmdline: [0; CMDLINE_MAX_BYTES],
        cmdline_length: 0,
    };
    for index in 0..info.region_count {
        let mut entry = [0u8; MEMMAP_ENTRY_BYTES];
        let address = start_info.memmap_address + (index * MEMMAP_ENTRY_BYTES) as u64;
        // SAFETY: the memory map lies in low RAM, as the start info that points at it.
        unsafe { read_physical(address, &mut entry) };
        info.regions[index] = pvh::parse_memmap_entry(&entry);
    }
    if start_info.cmdline_address != 0 {
        // Byte by byte up to the NUL, so nothing past the string is touched.
        while info.cmdline_length < CMDLINE_MAX_BYTES {
            let mut byte = [0u8; 1];
            let address = start_info.cmdline_address + info.cmdline_length as u64;
            // SAFETY: the command line is a NUL-terminated string the PVH loader put in low
            // RAM; the loop stops at its NUL.
            unsafe { read_physical(address, &mut byte) };
            if byte[0] == 0 {
                break;
            }
            info.cmdline[info.cmdline_length] = byte[0];
            info.cmdline_length += 1;
        }
    }
    Ok(info)
}
