//! The timed loop bodies, in assembly so exo and Linux execute the same bytes: the Rust around
//! them is compiled for two targets (bare metal without SSE, Linux with it), the loops are not.
//!
//! Trap handlers on either kernel resume a faulting loop by comparing the saved instruction
//! pointer with [`ud2_site`] / [`load_site`] and setting it to the matching `*_resume`.
#![allow(unsafe_code)]

core::arch::global_asm!(
    // syscall_loop(number: rdi, iterations: rsi): `iterations` system calls with number
    // `number` and every argument register zero. `syscall` clobbers rcx and r11 only.
    ".pushsection .text.bench_common_syscall_loop, \"ax\"",
    ".global bench_common_syscall_loop",
    "bench_common_syscall_loop:",
    "    mov r8, rdi",
    "    mov r9, rsi",
    "    xor edi, edi",
    "    xor esi, esi",
    "    xor edx, edx",
    "    xor r10d, r10d",
    "    test r9, r9",
    "    jz 2f",
    "1:  mov rax, r8",
    "    syscall",
    "    dec r9",
    "    jnz 1b",
    "2:  ret",
    ".popsection",
    // ud2_loop(iterations: rdi): `iterations` invalid-opcode traps; the handler must resume
    // at bench_common_ud2_resume.
    ".pushsection .text.bench_common_ud2_loop, \"ax\"",
    ".global bench_common_ud2_loop",
    ".global bench_common_ud2_site",
    ".global bench_common_ud2_resume",
    "bench_common_ud2_loop:",
    "    test rdi, rdi",
    "    jz 2f",
    "bench_common_ud2_site:",
    "    ud2",
    "bench_common_ud2_resume:",
    "    dec rdi",
    "    jnz bench_common_ud2_site",
    "2:  ret",
    ".popsection",
    // load_fault_loop(address: rdi, iterations: rsi): `iterations` loads from `address`,
    // which must fault; the handler resumes at bench_common_load_resume.
    ".pushsection .text.bench_common_load_fault_loop, \"ax\"",
    ".global bench_common_load_fault_loop",
    ".global bench_common_load_site",
    ".global bench_common_load_resume",
    "bench_common_load_fault_loop:",
    "    test rsi, rsi",
    "    jz 2f",
    "bench_common_load_site:",
    "    mov rax, qword ptr [rdi]",
    "bench_common_load_resume:",
    "    dec rsi",
    "    jnz bench_common_load_site",
    "2:  ret",
    ".popsection",
    // touch(address: rdi) -> rax: one load (faults are handled by making the page accessible
    // and retrying the instruction).
    ".pushsection .text.bench_common_touch, \"ax\"",
    ".global bench_common_touch",
    "bench_common_touch:",
    "    mov rax, qword ptr [rdi]",
    "    ret",
    ".popsection",
    // matmul(a: rdi, b: rsi, c: rdx, n: rcx): c = a * b, n x n u64 row-major, wrapping; i-k-j
    // order, scalar (no SIMD on either side).
    ".pushsection .text.bench_common_matmul, \"ax\"",
    ".global bench_common_matmul",
    "bench_common_matmul:",
    "    push rbx",
    "    push r12",
    "    push r13",
    "    push r14",
    "    push r15",
    "    mov r8, rcx",
    "    mov rax, r8",
    "    imul rax, r8",
    "    mov r9, rdx",
    "    xor r10d, r10d",
    "10: test rax, rax",
    "    jz 11f",
    "    mov qword ptr [r9], r10",
    "    add r9, 8",
    "    dec rax",
    "    jmp 10b",
    "11: xor r11d, r11d",
    "12: cmp r11, r8",
    "    jae 19f",
    "    mov r12, r11",
    "    imul r12, r8",
    "    lea r13, [rdx + r12 * 8]",
    "    lea r14, [rdi + r12 * 8]",
    "    xor r15d, r15d",
    "13: cmp r15, r8",
    "    jae 18f",
    "    mov r10, qword ptr [r14 + r15 * 8]",
    "    mov rbx, r15",
    "    imul rbx, r8",
    "    lea rbx, [rsi + rbx * 8]",
    "    xor r9d, r9d",
    "14: cmp r9, r8",
    "    jae 17f",
    "    mov rax, qword ptr [rbx + r9 * 8]",
    "    imul rax, r10",
    "    add qword ptr [r13 + r9 * 8], rax",
    "    inc r9",
    "    jmp 14b",
    "17: inc r15",
    "    jmp 13b",
    "18: inc r11",
    "    jmp 12b",
    "19: pop r15",
    "    pop r14",
    "    pop r13",
    "    pop r12",
    "    pop rbx",
    "    ret",
    ".popsection",
);

unsafe extern "C" {
    fn bench_common_syscall_loop(number: u64, iterations: u64);
    fn bench_common_ud2_loop(iterations: u64);
    fn bench_common_load_fault_loop(address: u64, iterations: u64);
    fn bench_common_touch(address: u64) -> u64;
    fn bench_common_matmul(a: *const u64, b: *const u64, c: *mut u64, n: usize);
    static bench_common_ud2_site: u8;
    static bench_common_ud2_resume: u8;
    static bench_common_load_site: u8;
    static bench_common_load_resume: u8;
}

/// The time-stamp counter, after every earlier instruction has completed.
#[inline(always)]
pub fn rdtsc() -> u64 {
    let (low, high): (u32, u32);
    // SAFETY: lfence and rdtsc read no memory and change only the named registers (user mode
    // may read the TSC on both kernels: CR4.TSD is clear).
    unsafe {
        core::arch::asm!("lfence", "rdtsc", out("eax") low, out("edx") high, options(nostack, nomem));
    }
    (u64::from(high) << 32) | u64::from(low)
}

/// Issues `iterations` system calls numbered `number` with all arguments zero.
///
/// # Safety
/// The call, on this kernel, with zero arguments, must not affect memory this program relies
/// on (true of a null call and of Linux `getpid`).
pub unsafe fn syscall_loop(number: u64, iterations: u64) {
    // SAFETY: the loop follows the C ABI and clobbers caller-saved registers only; the calls
    // themselves are the caller's promise.
    unsafe { bench_common_syscall_loop(number, iterations) }
}

/// Executes `ud2` `iterations` times.
///
/// # Safety
/// A handler for invalid-opcode traps must be installed that resumes at [`ud2_resume`] when
/// the trap is at [`ud2_site`].
pub unsafe fn ud2_loop(iterations: u64) {
    // SAFETY: the caller installed the resuming handler; the loop touches no memory.
    unsafe { bench_common_ud2_loop(iterations) }
}

/// Loads from `address` `iterations` times; each load must fault.
///
/// # Safety
/// A page-fault handler must be installed that resumes at [`load_resume`] when the fault is at
/// [`load_site`] (the loaded value is discarded, so any address is sound).
pub unsafe fn load_fault_loop(address: u64, iterations: u64) {
    // SAFETY: the caller installed the resuming handler.
    unsafe { bench_common_load_fault_loop(address, iterations) }
}

/// Loads one word from `address`.
///
/// # Safety
/// `address` must be readable once any fault it takes is handled (the handler makes it so and
/// retries).
pub unsafe fn touch(address: u64) -> u64 {
    // SAFETY: the caller's promise.
    unsafe { bench_common_touch(address) }
}

/// `c = a * b` for `n` x `n` row-major matrices, wrapping (the same product as
/// [`crate::matmul_reference`], computed by the shared assembly).
pub fn matmul(a: &[u64], b: &[u64], c: &mut [u64], n: usize) {
    assert!(a.len() == n * n && b.len() == n * n && c.len() == n * n);
    // SAFETY: the three slices hold n * n elements each, which is all the routine reads or
    // writes; `c` is exclusively borrowed.
    unsafe { bench_common_matmul(a.as_ptr(), b.as_ptr(), c.as_mut_ptr(), n) }
}

/// Address of the `ud2` in [`ud2_loop`].
pub fn ud2_site() -> u64 {
    (&raw const bench_common_ud2_site) as u64
}

/// Where a handler resumes [`ud2_loop`].
pub fn ud2_resume() -> u64 {
    (&raw const bench_common_ud2_resume) as u64
}

/// Address of the faulting load in [`load_fault_loop`].
pub fn load_site() -> u64 {
    (&raw const bench_common_load_site) as u64
}

/// Where a handler resumes [`load_fault_loop`].
pub fn load_resume() -> u64 {
    (&raw const bench_common_load_resume) as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::MATMUL_N;

    #[test]
    fn assembly_matmul_matches_the_reference() {
        const N: usize = MATMUL_N;
        let (a, b) = (&crate::MATMUL_A, &crate::MATMUL_B);
        assert_ne!(a, b);
        let (mut expected, mut actual) = ([0u64; N * N], [7u64; N * N]);
        crate::matmul_reference(a, b, &mut expected, N);
        matmul(a, b, &mut actual, N);
        assert_eq!(crate::checksum(&expected), crate::checksum(&actual));
        assert_eq!(expected, actual);
        // Small and non-square-friendly sizes too.
        for n in [1, 3, 5] {
            let (x, y) = (&a[..n * n], &b[..n * n]);
            let (mut e, mut g) = ([0u64; 25], [1u64; 25]);
            crate::matmul_reference(x, y, &mut e[..n * n], n);
            matmul(x, y, &mut g[..n * n], n);
            assert_eq!(e[..n * n], g[..n * n]);
        }
    }

    #[test]
    fn sites_are_where_the_resumes_say() {
        assert_eq!(ud2_resume() - ud2_site(), 2, "ud2 is two bytes");
        assert_eq!(
            load_resume() - load_site(),
            3,
            "mov rax, [rdi] is three bytes"
        );
    }

    #[test]
    fn loops_with_nothing_to_do_return() {
        // SAFETY: zero iterations execute neither the call, the trap nor the load.
        unsafe {
            syscall_loop(39, 0);
            ud2_loop(0);
            load_fault_loop(0, 0);
        }
        let word = 0x1234u64;
        // SAFETY: a live local.
        assert_eq!(unsafe { touch((&raw const word) as u64) }, 0x1234);
        assert!(rdtsc() <= rdtsc());
    }
}
