//! The XDP way: one eBPF program parses the headers, builds the flow tuple on its stack and
//! calls a hash-map lookup helper with it, on rbpf's x86_64 JIT. The map is a `hashbrown` map
//! from tuple to filter index; its address is in the program as a 64-bit immediate, as a map
//! reference is in a loaded XDP program.
//!
//! The program reads exactly the bytes [`super::native_hash`] reads, each behind a check
//! against the captured length in the record's header (rbpf's JIT checks nothing itself).
#![allow(unsafe_code)]

use hashbrown::HashMap;
use rbpf::EbpfVmRaw;

use super::Demux;
use crate::bench::cbpf_to_ebpf::{EbpfInsn, RECORD_HEADER_BYTES, encode};
use crate::bench::packets::{PacketArena, PacketSpan};
use crate::synth::Flow;

/// The tuple as the program lays it out on its stack: tag (u16, `0xffff` for none), family
/// (0 IPv4, 1 IPv6), protocol, destination port (u16), two bytes of padding, source address
/// (IPv4 in the first four bytes). Integers in host order.
pub const KEY_BYTES: usize = 24;

/// The map the helper searches.
pub type FlowMap = HashMap<[u8; KEY_BYTES], u32>;

/// Helper number of the lookup.
const LOOKUP_HELPER: u32 = 1;

/// The key of `flow`, as the program would build it from one of its packets.
pub fn key_of(flow: &Flow) -> [u8; KEY_BYTES] {
    let mut key = [0u8; KEY_BYTES];
    key[0..2].copy_from_slice(&flow.vlan.unwrap_or(0xffff).to_le_bytes());
    key[3] = flow.transport.protocol_number();
    key[4..6].copy_from_slice(&flow.dst_port.to_le_bytes());
    match flow.src {
        std::net::IpAddr::V4(a) => key[8..12].copy_from_slice(&a.octets()),
        std::net::IpAddr::V6(a) => {
            key[2] = 1;
            key[8..24].copy_from_slice(&a.octets());
        }
    }
    key
}

/// The map for flows `0..K`, flow `i` being filter `i`.
pub fn flow_map(flows: &[Flow]) -> FlowMap {
    let mut map = FlowMap::with_capacity(flows.len());
    for (i, flow) in flows.iter().enumerate() {
        map.entry(key_of(flow)).or_insert(i as u32);
    }
    map
}

/// The helper for rbpf's interpreter (the tests' cross-check).
#[cfg(test)]
fn lookup(key: u64, map: u64, _: u64, _: u64, _: u64) -> u64 {
    lookup_inner(key, map)
}

/// The helper rbpf's JIT calls: rbpf's JIT calls helpers with the stack 8 bytes off the 16-byte
/// alignment the System V ABI promises (compiled Rust then faults on an aligned SSE spill), so
/// this realigns it and calls [`lookup_inner`] with the same first two arguments.
#[unsafe(naked)]
extern "sysv64" fn lookup_aligned(key: u64, map: u64, _: u64, _: u64, _: u64) -> u64 {
    // rdi and rsi (key, map) are passed through untouched; rbp keeps the caller's rsp.
    core::arch::naked_asm!(
        "push rbp",
        "mov rbp, rsp",
        "and rsp, -16",
        "call {inner}",
        "mov rsp, rbp",
        "pop rbp",
        "ret",
        inner = sym lookup_inner,
    )
}

/// `bpf_map_lookup_elem` for [`FlowMap`]: `map` is the map's address, `key` points at
/// [`KEY_BYTES`] on the program's stack; returns the filter index plus one, 0 on a miss.
extern "sysv64" fn lookup_inner(key: u64, map: u64) -> u64 {
    // SAFETY: only programs from `program` call this helper; they pass the address of a live
    // `FlowMap` (the one `EbpfMap` borrows for as long as it runs them) and of the key they
    // built in their own stack frame, KEY_BYTES long.
    let (map, key) = unsafe { (&*(map as *const FlowMap), &*(key as *const [u8; KEY_BYTES])) };
    map.get(key).map_or(0, |&i| u64::from(i) + 1)
}

/// A tiny assembler with forward labels, for the one program below.
#[derive(Default)]
struct Asm {
    insns: Vec<EbpfInsn>,
    /// (instruction index, label) of jumps to patch.
    fixups: Vec<(usize, usize)>,
    labels: Vec<Option<usize>>,
}

const R0: u8 = 0;
const R1: u8 = 1;
const R2: u8 = 2;
const R3: u8 = 3;
const R4: u8 = 4;
const R5: u8 = 5;
const R6: u8 = 6;
const R7: u8 = 7;
const R8: u8 = 8;
const R9: u8 = 9;
const R10: u8 = 10;

impl Asm {
    fn op(&mut self, code: u8, dst: u8, src: u8, off: i16, imm: i32) {
        self.insns.push(EbpfInsn {
            code,
            dst,
            src,
            off,
            imm,
        });
    }
    fn label(&mut self) -> usize {
        self.labels.push(None);
        self.labels.len() - 1
    }
    fn bind(&mut self, label: usize) {
        self.labels[label] = Some(self.insns.len());
    }
    fn jump(&mut self, code: u8, dst: u8, src: u8, imm: i32, label: usize) {
        self.fixups.push((self.insns.len(), label));
        self.op(code, dst, src, 0, imm);
    }
    fn mov_imm(&mut self, dst: u8, imm: i32) {
        self.op(0xb7, dst, 0, 0, imm);
    }
    fn mov(&mut self, dst: u8, src: u8) {
        self.op(0xbf, dst, src, 0, 0);
    }
    fn add_imm(&mut self, dst: u8, imm: i32) {
        self.op(0x07, dst, 0, 0, imm);
    }
    fn add(&mut self, dst: u8, src: u8) {
        self.op(0x0f, dst, src, 0, 0);
    }
    fn and_imm(&mut self, dst: u8, imm: i32) {
        self.op(0x57, dst, 0, 0, imm);
    }
    fn be16(&mut self, dst: u8) {
        self.op(0xdc, dst, 0, 0, 16);
    }
    /// `dst = *(size *)(src + off)`; `size` is 1, 2, 4 or 8.
    fn load(&mut self, size: u8, dst: u8, src: u8, off: i16) {
        let code = match size {
            1 => 0x71,
            2 => 0x69,
            4 => 0x61,
            _ => 0x79,
        };
        self.op(code, dst, src, off, 0);
    }
    /// `*(size *)(dst + off) = src`.
    fn store(&mut self, size: u8, dst: u8, off: i16, src: u8) {
        let code = match size {
            1 => 0x73,
            2 => 0x6b,
            4 => 0x63,
            _ => 0x7b,
        };
        self.op(code, dst, src, off, 0);
    }
    /// Packet byte `off` from the pointer in `base` (the record's start plus an offset).
    fn load_packet(&mut self, size: u8, dst: u8, base: u8, off: i16) {
        self.load(size, dst, base, off + RECORD_HEADER_BYTES as i16);
    }
    /// Jumps to `label` unless `end` (in `scratch`, from `from + end`) is within the capture.
    fn need(&mut self, from: Option<u8>, end: i32, label: usize) {
        match from {
            Some(reg) => {
                self.mov(R8, reg);
                self.add_imm(R8, end);
            }
            None => self.mov_imm(R8, end),
        }
        // jgt r8, r7: past the captured length.
        self.jump(0x2d, R8, R7, 0, label);
    }
    fn finish(mut self) -> Vec<EbpfInsn> {
        for &(at, label) in &self.fixups {
            let target = self.labels[label].expect("every label bound");
            self.insns[at].off = (target as isize - at as isize - 1) as i16;
        }
        self.insns
    }
}

/// The program: parse, build the key at `r10 - 24`, call the lookup with the map at `map`.
pub fn program(map: u64) -> Vec<EbpfInsn> {
    let mut a = Asm::default();
    let (miss, ipv4, ipv6, lookup_key) = (a.label(), a.label(), a.label(), a.label());
    a.mov(R6, R1);
    a.load(4, R7, R6, 0); // captured length
    a.mov_imm(R0, 0);
    for off in [-24, -16, -8] {
        a.store(8, R10, off, R0);
    }
    a.need(None, 14, miss);
    a.load_packet(2, R2, R6, 12);
    a.be16(R2);
    a.mov_imm(R3, 0xffff);
    a.mov_imm(R9, 14);
    let untagged = a.label();
    let tagged = a.label();
    for tpid in [0x8100, 0x88a8, 0x9100] {
        a.jump(0x15, R2, 0, tpid, tagged);
    }
    a.jump(0x05, 0, 0, 0, untagged);
    a.bind(tagged);
    a.need(None, 18, miss);
    a.load_packet(2, R3, R6, 14);
    a.be16(R3);
    a.and_imm(R3, 0x0fff);
    a.load_packet(2, R2, R6, 16);
    a.be16(R2);
    a.mov_imm(R9, 18);
    a.bind(untagged);
    a.store(2, R10, -24, R3);
    a.jump(0x15, R2, 0, 0x0800, ipv4);
    a.jump(0x15, R2, 0, 0x86dd, ipv6);
    a.jump(0x05, 0, 0, 0, miss);

    a.bind(ipv4);
    a.need(Some(R9), 16, miss);
    a.mov(R4, R6);
    a.add(R4, R9);
    a.load_packet(2, R5, R4, 6);
    a.be16(R5);
    a.and_imm(R5, 0x1fff);
    a.jump(0x55, R5, 0, 0, miss); // a later fragment
    a.load_packet(1, R5, R4, 9);
    a.store(1, R10, -21, R5);
    a.load_packet(4, R5, R4, 12);
    a.store(4, R10, -16, R5);
    a.load_packet(1, R5, R4, 0);
    a.and_imm(R5, 0x0f);
    a.op(0x67, R5, 0, 0, 2); // lsh r5, 2
    a.add(R5, R9);
    a.need(Some(R5), 4, miss);
    a.mov(R4, R6);
    a.add(R4, R5);
    a.load_packet(2, R5, R4, 2);
    a.be16(R5);
    a.store(2, R10, -20, R5);
    a.jump(0x05, 0, 0, 0, lookup_key);

    a.bind(ipv6);
    a.need(Some(R9), 44, miss);
    a.mov(R4, R6);
    a.add(R4, R9);
    a.op(0x72, R10, 0, -22, 1); // stb [r10-22], 1: IPv6
    a.load_packet(1, R5, R4, 6);
    a.store(1, R10, -21, R5);
    a.load_packet(2, R5, R4, 42);
    a.be16(R5);
    a.store(2, R10, -20, R5);
    a.load_packet(8, R5, R4, 8);
    a.store(8, R10, -16, R5);
    a.load_packet(8, R5, R4, 16);
    a.store(8, R10, -8, R5);

    a.bind(lookup_key);
    a.mov(R1, R10);
    a.add_imm(R1, -(KEY_BYTES as i32));
    // lddw r2, map
    a.op(0x18, R2, 0, 0, map as u32 as i32);
    a.op(0x00, 0, 0, 0, (map >> 32) as u32 as i32);
    a.op(0x85, 0, 0, 0, LOOKUP_HELPER as i32);
    a.op(0x95, 0, 0, 0, 0);
    a.bind(miss);
    a.mov_imm(R0, 0);
    a.op(0x95, 0, 0, 0, 0);
    a.finish()
}

/// The encoded program for `map` (kept alive as long as the VM made from it).
pub fn encoded_program(map: &FlowMap) -> Vec<u8> {
    encode(&program(map as *const FlowMap as u64))
}

/// Verifies (rbpf's verifier), registers the helper and JIT-compiles `code`, which must come
/// from [`encoded_program`].
pub fn load(code: &[u8]) -> Result<EbpfVmRaw<'_>, String> {
    let mut vm = EbpfVmRaw::new(Some(code)).map_err(|e| format!("rbpf verifier: {e}"))?;
    // SAFETY: rbpf's JIT calls a helper as System V code (arguments in rdi, rsi, rdx, rcx,
    // r8, result in rax), whatever Rust type it is given, so handing it the System V
    // trampoline under the `fn` type rbpf asks for makes it call exactly what it expects; the
    // pointer is never called from Rust.
    let aligned: rbpf::Helper = unsafe {
        std::mem::transmute::<extern "sysv64" fn(u64, u64, u64, u64, u64) -> u64, rbpf::Helper>(
            lookup_aligned,
        )
    };
    vm.register_helper(LOOKUP_HELPER, aligned)
        .map_err(|e| format!("rbpf helper: {e}"))?;
    vm.jit_compile().map_err(|e| format!("rbpf jit: {e}"))?;
    Ok(vm)
}

/// One eBPF program and its map, over a copy of the arena (rbpf wants `&mut [u8]`).
pub struct EbpfMap<'m, 'p> {
    vm: EbpfVmRaw<'p>,
    map: &'m FlowMap,
    bytes: Vec<u8>,
}

impl std::fmt::Debug for EbpfMap<'_, '_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EbpfMap")
            .field("flows", &self.map.len())
            .finish()
    }
}

impl<'m, 'p> EbpfMap<'m, 'p> {
    /// Runs `vm` (loaded by [`load`] from [`encoded_program`]`(map)`) over a copy of `arena`.
    ///
    /// # Safety
    ///
    /// `vm` must have been loaded from `encoded_program(map)` for this very `map`: the
    /// program holds the map's address.
    pub unsafe fn new(vm: EbpfVmRaw<'p>, map: &'m FlowMap, arena: &PacketArena) -> Self {
        EbpfMap {
            vm,
            map,
            bytes: arena.bytes().to_vec(),
        }
    }
}

impl Demux for EbpfMap<'_, '_> {
    #[inline]
    fn classify(&mut self, _arena: &PacketArena, span: PacketSpan) -> Option<u32> {
        let record = &mut self.bytes[span.record..span.record + span.record_len()];
        if !super::dpdk::record_is_whole(record) {
            return None;
        }
        // SAFETY: the program checks every load against the record's captured length (checked
        // whole above), writes only its stack, and calls only `lookup` with the map `new` was
        // given, which `self` borrows.
        let found = unsafe { self.vm.execute_program_jit(record) }.unwrap_or(0);
        found.checked_sub(1).map(|i| i as u32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::engines::native_hash::NativeHash;
    use crate::synth::{SynthConfig, generate};

    /// rbpf's interpreter checks every access, so a program that strayed would fail here
    /// rather than read out of bounds; its verdicts, the JIT's and native-hash's must agree.
    #[test]
    fn the_program_agrees_with_native_hash_interpreted_and_jitted() {
        let trace = generate(&SynthConfig {
            packets: 3_000,
            flows: 200,
            ..SynthConfig::default()
        });
        let flows = &trace.flows[..150];
        let map = flow_map(flows);
        let code = encoded_program(&map);
        let arena = PacketArena::new(&trace.packets);
        let mut native = NativeHash::new(flows);
        let mut interpreted = EbpfVmRaw::new(Some(&code)).unwrap();
        interpreted.register_helper(LOOKUP_HELPER, lookup).unwrap();
        let vm = load(&code).unwrap();
        // SAFETY: loaded from `encoded_program(&map)`.
        let mut jitted = unsafe { EbpfMap::new(vm, &map, &arena) };
        let mut bytes = arena.bytes().to_vec();
        let mut matched = 0;
        for &span in arena.spans() {
            let want = native.classify(&arena, span);
            let record = &mut bytes[span.record..span.record + span.record_len()];
            let got = interpreted
                .execute_program(record)
                .unwrap()
                .checked_sub(1)
                .map(|i| i as u32);
            assert_eq!(got, want);
            assert_eq!(jitted.classify(&arena, span), want);
            matched += usize::from(want.is_some());
        }
        assert!(matched > 1_000, "{matched}");
    }
}
