//! Properties: random bytes never panic the decoder or the verifier; random verified programs
//! on random, truncated and hostile packets never touch memory outside what they may, never
//! exceed their proven cost, and behave the same on every run.
mod common;

use ash::interp::{Machine, Outcome};
use ash::ir::{
    AluOp, ByteOrder, Call, Check, Cond, Insn, LoopCount, Mem, Operand, RawCall, Reg, RegionDecl,
    Rights, Space, Swap, UnverifiedHandler, Verdict, Width,
};
use ash::{Context, wire};
use common::FakeHost;
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, TestRunner};

fn reg(valid_only: bool) -> impl Strategy<Value = Reg> {
    let top: u8 = if valid_only { 12 } else { 14 };
    (0..top).prop_map(Reg)
}

fn imm() -> impl Strategy<Value = u64> {
    prop_oneof![
        Just(0u64),
        Just(1),
        Just(2),
        0u64..80,
        Just(1514),
        Just(0xffff),
        any::<u64>(),
    ]
}

fn operand(valid_only: bool) -> impl Strategy<Value = Operand> {
    prop_oneof![
        reg(valid_only).prop_map(Operand::Reg),
        imm().prop_map(Operand::Imm)
    ]
}

fn width() -> impl Strategy<Value = Width> {
    prop_oneof![
        Just(Width::B1),
        Just(Width::B2),
        Just(Width::B4),
        Just(Width::B8)
    ]
}

fn mem(valid_only: bool, store: bool) -> BoxedStrategy<Mem> {
    let space = if !valid_only {
        prop_oneof![
            Just(Space::Packet),
            Just(Space::Scratch),
            Just(Space::Reply),
            (0u8..3).prop_map(Space::Region),
        ]
        .boxed()
    } else if store {
        // The spaces and regions stores may use.
        prop_oneof![
            Just(Space::Scratch),
            Just(Space::Reply),
            (0u8..2).prop_map(Space::Region)
        ]
        .boxed()
    } else {
        prop_oneof![
            Just(Space::Packet),
            Just(Space::Scratch),
            Just(Space::Reply),
            Just(Space::Region(0)),
            Just(Space::Region(2)),
        ]
        .boxed()
    };
    let offsets = if valid_only { 0u16..9 } else { 0u16..100 };
    (
        space,
        proptest::option::of(reg(valid_only)),
        offsets,
        any::<bool>(),
    )
        .prop_map(|(space, base, offset, runtime)| {
            let check = if runtime || base.is_some() {
                Check::Runtime
            } else {
                Check::Proven
            };
            Mem {
                space,
                base,
                offset,
                check,
            }
        })
        .boxed()
}

fn call(valid_only: bool) -> impl Strategy<Value = RawCall> {
    let region = if valid_only { 0u8..1 } else { 0u8..3 };
    let writable = if valid_only { 0u8..2 } else { 0u8..3 };
    prop_oneof![
        writable.clone().prop_map(|region| Call::Copy { region }),
        writable.prop_map(|region| Call::CopyChecksum { region }),
        Just(Call::Checksum),
        (0u8..8).prop_map(|swap| Call::ReplyBegin { swap: Swap(swap) }),
        Just(Call::ChecksumUpdate),
        Just(Call::Send),
        region.clone().prop_map(|region| Call::AtomicAdd { region }),
        region.prop_map(|region| Call::CompareSwap { region }),
        Just(Call::Wake),
        Just(Call::Upcall),
    ]
    .prop_map(RawCall::from)
}

fn verdict() -> impl Strategy<Value = Verdict> {
    prop_oneof![
        Just(Verdict::Consume),
        Just(Verdict::Deliver),
        Just(Verdict::Drop)
    ]
}

/// One instruction at `index` of a program of `len`; jump targets mostly a little ahead.
fn insn(index: usize, len: usize, valid_only: bool) -> BoxedStrategy<Insn> {
    let ahead = (1usize..6).prop_map(move |skip| (index + skip).min(len) as u16);
    let order = prop_oneof![Just(ByteOrder::Big), Just(ByteOrder::Little)];
    prop_oneof![
        3 => (reg(valid_only), operand(valid_only)).prop_map(|(dst, src)| Insn::Mov { dst, src }),
        3 => (0usize..11, reg(valid_only), operand(valid_only))
            .prop_map(|(op, dst, src)| Insn::Alu { op: AluOp::ALL[op], dst, src }),
        3 => (reg(valid_only), width(), order.clone(), mem(valid_only, false))
            .prop_map(|(dst, width, order, mem)| Insn::Load { dst, width, order, mem }),
        2 => (operand(valid_only), width(), order, mem(valid_only, true))
            .prop_map(|(src, width, order, mem)| Insn::Store { src, width, order, mem }),
        1 => ahead.clone().prop_map(|target| Insn::Jump { target }),
        2 => (0usize..7, reg(valid_only), operand(valid_only), ahead.clone())
            .prop_map(|(cond, a, b, target)| Insn::Branch { cond: Cond::ALL[cond], a, b, target }),
        2 => (0u16..80, ahead).prop_map(|(length, target)| Insn::IfLenLess { length, target }),
        1 => (0u16..4, 1u16..4).prop_map(|(times, body)| Insn::Loop { count: LoopCount::Times(times), body }),
        1 => (reg(valid_only), 1u16..4, 1u16..4).prop_map(|(reg, bound, body)| Insn::Loop {
            count: LoopCount::Reg { reg, bound: Some(bound) },
            body,
        }),
        3 => call(valid_only).prop_map(Insn::Call),
        1 => verdict().prop_map(Insn::Exit),
    ]
    .boxed()
}

fn regions() -> Vec<RegionDecl> {
    vec![
        RegionDecl {
            len: 64,
            rights: Rights::READ_WRITE,
        },
        RegionDecl {
            len: 24,
            rights: Rights::WRITE,
        },
        RegionDecl {
            len: 16,
            rights: Rights::READ,
        },
    ]
}

/// Programs likely to verify: every register written first, then random instructions, then
/// an exit.
fn program() -> impl Strategy<Value = UnverifiedHandler> {
    (1usize..24).prop_flat_map(|body_len| {
        let prologue = 11;
        let len = prologue + body_len + 1;
        let insns: Vec<_> = (0..body_len)
            .map(|i| insn(prologue + i, len - 1, true))
            .collect();
        (insns, proptest::collection::vec(imm(), 11), verdict()).prop_map(
            move |(body, values, last)| {
                let mut code: Vec<Insn> = values
                    .iter()
                    .enumerate()
                    .map(|(i, &value)| Insn::Mov {
                        dst: Reg(i as u8 + 1),
                        src: Operand::Imm(value % 64),
                    })
                    .collect();
                code.extend(body);
                code.push(Insn::Exit(last));
                UnverifiedHandler {
                    regions: regions(),
                    code,
                }
            },
        )
    })
}

/// Arbitrary programs, registers and targets anywhere.
fn any_program() -> impl Strategy<Value = UnverifiedHandler> {
    (0usize..16).prop_flat_map(|len| {
        let insns: Vec<_> = (0..len).map(|i| insn(i, len, false)).collect();
        insns.prop_map(|code| UnverifiedHandler {
            regions: regions(),
            code,
        })
    })
}

/// Packets: random bytes, or a real-looking UDP frame cut anywhere with bytes flipped.
fn packet() -> impl Strategy<Value = Vec<u8>> {
    let udp: Vec<u8> = {
        let mut frame = vec![
            0x52, 0x54, 0, 0x12, 0x34, 0x56, 2, 0, 0, 0, 0, 1, 0x08, 0x00,
        ];
        frame.extend_from_slice(&[
            0x45, 0, 0, 36, 0, 0, 0x40, 0, 64, 17, 0, 0, 10, 0, 2, 2, 10, 0, 2, 15,
        ]);
        frame.extend_from_slice(&[0x9c, 0x40, 0, 7, 0, 16, 0, 0]);
        frame.extend_from_slice(b"exo ash!");
        frame
    };
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..120),
        (
            0..=udp.len(),
            proptest::collection::vec((0usize..50, any::<u8>()), 0..4)
        )
            .prop_map(move |(cut, flips)| {
                let mut frame = udp[..cut].to_vec();
                for (at, value) in flips {
                    if let Some(byte) = frame.get_mut(at) {
                        *byte = value;
                    }
                }
                frame
            }),
    ]
}

fn context() -> impl Strategy<Value = Context> {
    (0u16..50).prop_map(|min_packet_len| Context {
        min_packet_len,
        ..Context::default()
    })
}

proptest! {
    #![proptest_config(Config { cases: 2000, ..Config::default() })]

    #[test]
    fn random_bytes_never_panic_decode_or_verify(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        if let Ok(handler) = wire::decode(&bytes) {
            prop_assert_eq!(wire::encode(&handler), bytes, "decode accepts only canonical bytes");
            let _ = handler.verify(&Context::default());
        }
    }

    #[test]
    fn mutated_encodings_never_panic_decode_or_verify(
        handler in any_program(),
        flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..6),
        cut in any::<usize>(),
    ) {
        let mut bytes = wire::encode(&handler);
        let decoded = wire::decode(&bytes);
        prop_assert_eq!(decoded.as_ref(), Ok(&handler));
        for (at, value) in flips {
            let len = bytes.len();
            bytes[at % len] = value;
        }
        bytes.truncate(cut % (bytes.len() + 1));
        if let Ok(handler) = wire::decode(&bytes) {
            let _ = handler.verify(&Context::default());
        }
    }

    #[test]
    fn arbitrary_programs_never_panic_the_verifier(handler in any_program(), context in context()) {
        let _ = handler.verify(&context);
    }

    #[test]
    fn verified_programs_stay_in_bounds(
        handler in program(),
        context in context(),
        packets in proptest::collection::vec(packet(), 1..6),
    ) {
        if let Ok(handler) = handler.verify(&context) {
            let mut host = FakeHost::for_regions(handler.regions());
            let mut twin = FakeHost::for_regions(handler.regions());
            let mut machine = Machine::new();
            let mut twin_machine = Machine::new();
            for packet in &packets {
                let run = ash::run(&handler, packet, &mut machine, &mut host);
                prop_assert!(host.escapes.is_empty(), "asked the host for {:?}", host.escapes);
                prop_assert!(run.cost <= handler.cost(), "cost {} over proven {}", run.cost, handler.cost());
                if packet.len() < usize::from(context.min_packet_len) {
                    let not_run = matches!(run.outcome, Outcome::Abort { index: 0, .. });
                    prop_assert!(not_run, "ran on a packet shorter than proven");
                }
                if let Outcome::Abort { reason, .. } = run.outcome {
                    prop_assert_ne!(reason, ash::AbortReason::Unverified);
                    prop_assert_ne!(reason, ash::AbortReason::OverBudget);
                }
                let again = ash::run(&handler, packet, &mut twin_machine, &mut twin);
                prop_assert_eq!(run, again);
                prop_assert_eq!(&host.regions, &twin.regions);
                prop_assert_eq!(&host.sent, &twin.sent);
            }
        }
    }
}

proptest! {
    #![proptest_config(Config { cases: 1500, ..Config::default() })]

    /// JIT == interpreter: outcome, counters, cost, region contents and replies, run after
    /// run on the same machines.
    #[test]
    fn jit_equals_interpreter(
        handler in program(),
        context in context(),
        packets in proptest::collection::vec(packet(), 1..6),
    ) {
        if let Ok(handler) = handler.verify(&context) {
            let executable = common::jit_exec::Executable::new(&handler);
            let mut host = FakeHost::for_regions(handler.regions());
            let mut jit_host = FakeHost::for_regions(handler.regions());
            let mut machine = Machine::new();
            let mut jit_machine = Machine::new();
            for packet in &packets {
                let interpreted = ash::run(&handler, packet, &mut machine, &mut host);
                let compiled = executable.run(&handler, packet, &mut jit_machine, &mut jit_host);
                prop_assert_eq!(interpreted, compiled, "on {:?}", packet);
                prop_assert_eq!(&host.regions, &jit_host.regions);
                prop_assert_eq!(&host.sent, &jit_host.sent);
                prop_assert_eq!((host.wakes, &host.upcalls), (jit_host.wakes, &jit_host.upcalls));
                prop_assert!(jit_host.escapes.is_empty());
            }
        }
    }
}

/// The generator behind `verified_programs_stay_in_bounds` must produce verified programs
/// often enough for that property to mean something.
#[test]
fn the_program_generator_mostly_verifies() {
    let mut runner = TestRunner::deterministic();
    let strategy = program();
    let mut verified = 0;
    let mut refusals = std::collections::BTreeMap::new();
    let samples = 1000;
    for _ in 0..samples {
        let handler = strategy.new_tree(&mut runner).unwrap().current();
        match handler.verify(&Context {
            min_packet_len: 40,
            ..Context::default()
        }) {
            Ok(_) => verified += 1,
            Err(error) => *refusals.entry(format!("{:?}", error.rule)).or_insert(0) += 1,
        }
    }
    eprintln!("{verified} of {samples} verified: {refusals:?}");
    assert!(
        verified * 4 > samples,
        "only {verified} of {samples} verified: {refusals:?}"
    );
}
