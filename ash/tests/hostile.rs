//! Hostile programs: one per rule the verifier enforces, each refused with the instruction it
//! names; and the runtime checks that abort what the verifier leaves to run time.
mod common;

use ash::builder::{Builder, R0, R1, R2, R3, R4, R5};
use ash::interp::{AbortReason, Machine, Outcome};
use ash::ir::{
    AluOp, Call, Check, Cond, Insn, LoopCount, MAX_INSTRUCTIONS, Mem, Operand, RawCall, Reg,
    RegionDecl, Rights, Space, UnverifiedHandler, Verdict, Width,
};
use ash::{At, Context, Rule, VerifyError};
use common::FakeHost;

fn program(code: Vec<Insn>) -> UnverifiedHandler {
    UnverifiedHandler {
        regions: vec![
            RegionDecl {
                len: 64,
                rights: Rights::READ,
            },
            RegionDecl {
                len: 64,
                rights: Rights::WRITE,
            },
        ],
        code,
    }
}

fn refusal(code: Vec<Insn>) -> VerifyError {
    refusal_in(program(code), &Context::default())
}

fn refusal_in(handler: UnverifiedHandler, context: &Context) -> VerifyError {
    match handler.verify(context) {
        Ok(_) => panic!("hostile program verified"),
        Err(error) => error,
    }
}

fn at(index: usize, rule: Rule) -> VerifyError {
    VerifyError {
        at: At::Insn(index),
        rule,
    }
}

const EXIT: Insn = Insn::Exit(Verdict::Drop);
const fn mov(reg: u8, value: u64) -> Insn {
    Insn::Mov {
        dst: Reg(reg),
        src: Operand::Imm(value),
    }
}

#[test]
fn a_sane_program_verifies() {
    // The baseline every hostile program below differs from in one instruction.
    let handler = program(vec![mov(1, 1), EXIT]).verify(&Context::default());
    assert!(handler.is_ok());
}

#[test]
fn backward_jump() {
    let code = vec![mov(1, 0), Insn::Jump { target: 0 }, EXIT];
    assert_eq!(refusal(code), at(1, Rule::BackwardJump));
    let code = vec![
        Insn::Branch {
            cond: Cond::Eq,
            a: R0,
            b: Operand::Imm(0),
            target: 0,
        },
        EXIT,
    ];
    assert_eq!(refusal(code), at(0, Rule::BackwardJump));
}

#[test]
fn unbounded_loop() {
    let code = vec![
        mov(1, 1_000_000),
        Insn::Loop {
            count: LoopCount::Reg {
                reg: R1,
                bound: None,
            },
            body: 1,
        },
        mov(2, 0),
        EXIT,
    ];
    assert_eq!(refusal(code), at(1, Rule::UnboundedLoop));
}

#[test]
fn loops_past_their_limits() {
    let too_many = vec![
        Insn::Loop {
            count: LoopCount::Times(ash::ir::MAX_LOOP_ITERATIONS + 1),
            body: 1,
        },
        mov(2, 0),
        EXIT,
    ];
    assert_eq!(refusal(too_many), at(0, Rule::BadLoop));
    let empty = vec![
        Insn::Loop {
            count: LoopCount::Times(2),
            body: 0,
        },
        EXIT,
    ];
    assert_eq!(refusal(empty), at(0, Rule::BadLoop));
    let past_end = vec![
        Insn::Loop {
            count: LoopCount::Times(2),
            body: 5,
        },
        EXIT,
    ];
    assert_eq!(refusal(past_end), at(0, Rule::BadLoop));
    let mut nested = Vec::new();
    for depth in 0..5u16 {
        nested.push(Insn::Loop {
            count: LoopCount::Times(2),
            body: 5 - depth,
        });
    }
    nested.push(mov(1, 0));
    nested.push(EXIT);
    assert_eq!(refusal(nested), at(4, Rule::BadLoop));
}

#[test]
fn nested_loops_cost_their_product() {
    // 40 x 40 x 40 iterations of a 3-instruction body: over the default budget.
    let mut code = vec![mov(1, 0)];
    for _ in 0..3 {
        code.push(Insn::Loop {
            count: LoopCount::Times(40),
            body: 0,
        });
    }
    code.push(Insn::Alu {
        op: AluOp::Add,
        dst: R1,
        src: Operand::Imm(1),
    });
    code.push(EXIT);
    // patch the bodies: each loop runs to the add (inclusive)
    code[1] = Insn::Loop {
        count: LoopCount::Times(40),
        body: 3,
    };
    code[2] = Insn::Loop {
        count: LoopCount::Times(40),
        body: 2,
    };
    code[3] = Insn::Loop {
        count: LoopCount::Times(40),
        body: 1,
    };
    assert_eq!(
        refusal(code.clone()),
        VerifyError {
            at: At::Program,
            rule: Rule::OverBudget
        }
    );
    code[1] = Insn::Loop {
        count: LoopCount::Times(4),
        body: 3,
    };
    let handler = program(code).verify(&Context::default()).unwrap();
    // 1 + (1 + 4 * (1 + 40 * (1 + 40))) + 1
    assert_eq!(handler.cost(), 1 + 1 + 4 * (1 + 40 * (1 + 40)) + 1);
}

#[test]
fn out_of_packet() {
    let load = |offset| Insn::Load {
        dst: R1,
        width: Width::B4,
        order: ash::ir::ByteOrder::Big,
        mem: Mem::packet(offset),
    };
    // Nothing proves any length: a proven load of byte 0 is already out.
    assert_eq!(refusal(vec![load(0), EXIT]), at(0, Rule::OutOfPacket));
    // The filter proves 34 bytes: 30..34 is in, 31..35 is not.
    let context = Context {
        min_packet_len: 34,
        ..Context::default()
    };
    assert!(program(vec![load(30), EXIT]).verify(&context).is_ok());
    assert_eq!(
        refusal_in(program(vec![load(31), EXIT]), &context),
        at(0, Rule::OutOfPacket)
    );
    // A guard proves it on the fall-through path only.
    let guarded = vec![
        Insn::IfLenLess {
            length: 40,
            target: 2,
        },
        load(36),
        EXIT,
    ];
    assert!(program(guarded).verify(&Context::default()).is_ok());
    let wrong_side = vec![
        Insn::IfLenLess {
            length: 40,
            target: 2,
        },
        EXIT,
        load(36),
        EXIT,
    ];
    assert_eq!(refusal(wrong_side), at(2, Rule::OutOfPacket));
    // A join of a guarded and an unguarded path is unguarded.
    let joined = vec![
        Insn::Branch {
            cond: Cond::Eq,
            a: R0,
            b: Operand::Imm(7),
            target: 2,
        },
        Insn::IfLenLess {
            length: 40,
            target: 3,
        },
        load(36),
        EXIT,
    ];
    assert_eq!(refusal(joined), at(2, Rule::OutOfPacket));
    // A runtime-checked access can never reach past the longest frame.
    let far = Insn::Load {
        dst: R1,
        width: Width::B2,
        order: ash::ir::ByteOrder::Big,
        mem: Mem {
            space: Space::Packet,
            base: Some(R0),
            offset: 1517,
            check: Check::Runtime,
        },
    };
    assert_eq!(refusal(vec![far, EXIT]), at(0, Rule::OutOfPacket));
}

#[test]
fn out_of_region() {
    let load = |space, offset| Insn::Load {
        dst: R1,
        width: Width::B8,
        order: ash::ir::ByteOrder::Little,
        mem: Mem {
            space,
            base: None,
            offset,
            check: Check::Proven,
        },
    };
    assert!(
        program(vec![load(Space::Region(0), 56), EXIT])
            .verify(&Context::default())
            .is_ok()
    );
    assert_eq!(
        refusal(vec![load(Space::Region(0), 57), EXIT]),
        at(0, Rule::OutOfRegion)
    );
    assert_eq!(
        refusal(vec![load(Space::Scratch, 250), EXIT]),
        at(0, Rule::OutOfRegion)
    );
    assert_eq!(
        refusal(vec![load(Space::Reply, 1511), EXIT]),
        at(0, Rule::OutOfRegion)
    );
    assert_eq!(
        refusal(vec![load(Space::Region(2), 0), EXIT]),
        at(0, Rule::UndeclaredRegion)
    );
    let atomic = Insn::Call(RawCall::from(Call::AtomicAdd { region: 9 }));
    assert_eq!(
        refusal(vec![mov(1, 0), mov(2, 0), atomic, EXIT]),
        at(2, Rule::UndeclaredRegion)
    );
}

#[test]
fn store_to_read_only_region_or_packet() {
    let store = |space| Insn::Store {
        src: Operand::Imm(1),
        width: Width::B1,
        order: ash::ir::ByteOrder::Big,
        mem: Mem {
            space,
            base: None,
            offset: 0,
            check: Check::Proven,
        },
    };
    assert!(
        program(vec![store(Space::Region(1)), EXIT])
            .verify(&Context::default())
            .is_ok()
    );
    assert_eq!(
        refusal(vec![store(Space::Region(0)), EXIT]),
        at(0, Rule::ReadOnly)
    );
    let context = Context {
        min_packet_len: 60,
        ..Context::default()
    };
    assert_eq!(
        refusal_in(program(vec![store(Space::Packet), EXIT]), &context),
        at(0, Rule::ReadOnly)
    );
    let copy = Insn::Call(RawCall::from(Call::Copy { region: 0 }));
    assert_eq!(
        refusal(vec![mov(1, 0), mov(2, 0), mov(3, 0), copy, EXIT]),
        at(3, Rule::ReadOnly)
    );
    let add = Insn::Call(RawCall::from(Call::AtomicAdd { region: 0 }));
    assert_eq!(
        refusal(vec![mov(1, 0), mov(2, 0), add, EXIT]),
        at(2, Rule::ReadOnly)
    );
    // Write-only region 1: neither loaded nor used atomically.
    let load = Insn::Load {
        dst: R1,
        width: Width::B1,
        order: ash::ir::ByteOrder::Big,
        mem: Mem::region(1, 0),
    };
    assert_eq!(refusal(vec![load, EXIT]), at(0, Rule::NotReadable));
    let cas = Insn::Call(RawCall::from(Call::CompareSwap { region: 1 }));
    assert_eq!(
        refusal(vec![mov(1, 0), mov(2, 0), mov(3, 0), cas, EXIT]),
        at(3, Rule::NotReadable)
    );
}

#[test]
fn too_long() {
    let mut code = vec![mov(1, 0); MAX_INSTRUCTIONS];
    code.push(EXIT);
    assert_eq!(
        refusal(code),
        VerifyError {
            at: At::Program,
            rule: Rule::TooLong
        }
    );
}

#[test]
fn uninitialised_register() {
    let add = Insn::Alu {
        op: AluOp::Add,
        dst: R2,
        src: Operand::Reg(R1),
    };
    assert_eq!(
        refusal(vec![mov(2, 0), add, EXIT]),
        at(1, Rule::UninitializedRegister)
    );
    // Written on one path only.
    let code = vec![
        Insn::Branch {
            cond: Cond::Eq,
            a: R0,
            b: Operand::Imm(0),
            target: 2,
        },
        mov(1, 0),
        mov(2, 0),
        add,
        EXIT,
    ];
    assert_eq!(refusal(code), at(3, Rule::UninitializedRegister));
    // A call's arguments are reads.
    let send = Insn::Call(RawCall::from(Call::Send));
    assert_eq!(
        refusal(vec![send, EXIT]),
        at(0, Rule::UninitializedRegister)
    );
    // A loop's count register too.
    let counted = Insn::Loop {
        count: LoopCount::Reg {
            reg: R5,
            bound: Some(3),
        },
        body: 1,
    };
    assert_eq!(
        refusal(vec![counted, mov(1, 0), EXIT]),
        at(0, Rule::UninitializedRegister)
    );
    // Out-of-range register names are their own rule.
    assert_eq!(refusal(vec![mov(12, 0), EXIT]), at(0, Rule::BadRegister));
}

#[test]
fn division_by_zero() {
    let div = |src| Insn::Alu {
        op: AluOp::Div,
        dst: R1,
        src,
    };
    assert_eq!(
        refusal(vec![mov(1, 9), div(Operand::Imm(0)), EXIT]),
        at(1, Rule::DivisionByZero)
    );
    // A register divisor must be proven non-zero ...
    let loaded = vec![
        mov(1, 9),
        Insn::Mov {
            dst: R2,
            src: Operand::Reg(R0),
        },
        div(Operand::Reg(R2)),
        EXIT,
    ];
    assert_eq!(refusal(loaded), at(2, Rule::DivisionByZero));
    // ... by a branch, on the path the branch proves it ...
    let guarded = vec![
        mov(1, 9),
        Insn::Mov {
            dst: R2,
            src: Operand::Reg(R0),
        },
        Insn::Branch {
            cond: Cond::Eq,
            a: R2,
            b: Operand::Imm(0),
            target: 4,
        },
        div(Operand::Reg(R2)),
        EXIT,
    ];
    assert!(program(guarded).verify(&Context::default()).is_ok());
    // ... and a later write forgets the proof.
    let forgotten = vec![
        mov(1, 9),
        Insn::Mov {
            dst: R2,
            src: Operand::Reg(R0),
        },
        Insn::Branch {
            cond: Cond::Eq,
            a: R2,
            b: Operand::Imm(0),
            target: 5,
        },
        Insn::Alu {
            op: AluOp::Sub,
            dst: R2,
            src: Operand::Imm(1),
        },
        Insn::Alu {
            op: AluOp::Mod,
            dst: R1,
            src: Operand::Reg(R2),
        },
        EXIT,
    ];
    assert_eq!(refusal(forgotten), at(4, Rule::DivisionByZero));
    // Inside a loop the back edge counts: zeroed at the end of the body, unsafe at its start.
    let looped = vec![
        mov(1, 9),
        mov(2, 3),
        Insn::Loop {
            count: LoopCount::Times(2),
            body: 2,
        },
        div(Operand::Reg(R2)),
        mov(2, 0),
        EXIT,
    ];
    assert_eq!(refusal(looped), at(3, Rule::DivisionByZero));
}

#[test]
fn bad_call() {
    let unknown = Insn::Call(RawCall {
        function: 200,
        argument: 0,
    });
    assert_eq!(refusal(vec![unknown, EXIT]), at(0, Rule::BadCall));
    let stray_argument = Insn::Call(RawCall {
        function: 8,
        argument: 1,
    });
    assert_eq!(refusal(vec![stray_argument, EXIT]), at(0, Rule::BadCall));
    let bad_swap = Insn::Call(RawCall {
        function: 3,
        argument: 0x80,
    });
    assert_eq!(refusal(vec![bad_swap, EXIT]), at(0, Rule::BadCall));
}

#[test]
fn bad_jump_target() {
    assert_eq!(
        refusal(vec![Insn::Jump { target: 9 }, EXIT]),
        at(0, Rule::BadJumpTarget)
    );
    // Into a loop body from outside it.
    let into = vec![
        Insn::Jump { target: 2 },
        Insn::Loop {
            count: LoopCount::Times(2),
            body: 1,
        },
        mov(1, 0),
        EXIT,
    ];
    assert_eq!(refusal(into), at(0, Rule::BadJumpTarget));
    // Out of a loop body past its end.
    let out = vec![
        Insn::Loop {
            count: LoopCount::Times(2),
            body: 1,
        },
        Insn::Jump { target: 3 },
        mov(1, 0),
        EXIT,
    ];
    assert_eq!(refusal(out), at(1, Rule::BadJumpTarget));
}

#[test]
fn falls_off_the_end_and_unreachable_code() {
    assert_eq!(refusal(vec![mov(1, 0)]), at(0, Rule::FallsOffEnd));
    assert_eq!(
        refusal(vec![]),
        VerifyError {
            at: At::Program,
            rule: Rule::FallsOffEnd
        }
    );
    assert_eq!(
        refusal(vec![EXIT, mov(1, 0), EXIT]),
        at(1, Rule::Unreachable)
    );
}

#[test]
fn proven_access_through_a_register_is_refused() {
    let load = Insn::Load {
        dst: R1,
        width: Width::B1,
        order: ash::ir::ByteOrder::Big,
        mem: Mem {
            space: Space::Scratch,
            base: Some(R0),
            offset: 0,
            check: Check::Proven,
        },
    };
    assert_eq!(refusal(vec![load, EXIT]), at(0, Rule::UnprovenAccess));
}

#[test]
fn bad_region_declarations() {
    for (len, rights) in [
        (0, Rights::READ),
        (ash::ir::MAX_REGION_BYTES + 1, Rights::READ),
        (8, Rights(4)),
    ] {
        let handler = UnverifiedHandler {
            regions: vec![RegionDecl { len, rights }],
            code: vec![EXIT],
        };
        let error = refusal_in(handler, &Context::default());
        assert_eq!(
            error,
            VerifyError {
                at: At::Region(0),
                rule: Rule::BadRegion
            }
        );
    }
}

fn run(handler: UnverifiedHandler, packet: &[u8]) -> (Outcome, FakeHost) {
    let handler = handler.verify(&Context::default()).unwrap();
    let mut host = FakeHost::for_regions(handler.regions());
    let mut machine = Machine::new();
    let outcome = ash::run(&handler, packet, &mut machine, &mut host).outcome;
    assert!(host.escapes.is_empty());
    (outcome, host)
}

#[test]
fn runtime_checks_abort_with_index_and_reason() {
    // A packet load at r0 (the length) is one past the end.
    let mut b = Builder::new();
    b.load(R1, Width::B1, Mem::packet_at(R0, 0))
        .exit(Verdict::Consume);
    let (outcome, _) = run(b.finish().unwrap(), &[0; 20]);
    assert_eq!(
        outcome,
        Outcome::Abort {
            index: 0,
            reason: AbortReason::PacketBounds
        }
    );
    // ... and one before it is fine.
    let mut b = Builder::new();
    b.load(R1, Width::B1, Mem::packet_at(R0, 0))
        .exit(Verdict::Consume);
    let mut code = b.finish().unwrap();
    code.code.insert(
        0,
        Insn::Alu {
            op: AluOp::Sub,
            dst: R0,
            src: Operand::Imm(1),
        },
    );
    let (outcome, _) = run(code, &[0; 20]);
    assert_eq!(outcome, Outcome::Exit(Verdict::Consume));
    // A region store past its end, at an address from the packet.
    let mut b = Builder::new();
    let region = b.region(16, Rights::READ_WRITE);
    b.mov(R1, 12u64)
        .store_le(R0, Width::B8, Mem::region_at(region, R1, 0))
        .exit(Verdict::Consume);
    let (outcome, host) = run(b.finish().unwrap(), &[0; 20]);
    assert_eq!(
        outcome,
        Outcome::Abort {
            index: 1,
            reason: AbortReason::RegionBounds
        }
    );
    assert!(host.regions[0].iter().all(|&byte| byte == 0));
    // A copy whose source runs past the packet.
    let mut b = Builder::new();
    let region = b.region(64, Rights::WRITE);
    b.mov(R1, 0u64)
        .mov(R2, 10u64)
        .mov(R3, 11u64)
        .call(Call::Copy { region })
        .exit(Verdict::Consume);
    let (outcome, host) = run(b.finish().unwrap(), &[7; 20]);
    assert_eq!(
        outcome,
        Outcome::Abort {
            index: 3,
            reason: AbortReason::PacketBounds
        }
    );
    assert!(
        host.regions[0].iter().all(|&byte| byte == 0),
        "nothing copied before the check"
    );
    // A misaligned atomic.
    let mut b = Builder::new();
    let region = b.region(64, Rights::READ_WRITE);
    b.mov(R1, 4u64)
        .mov(R2, 1u64)
        .call(Call::AtomicAdd { region })
        .exit(Verdict::Consume);
    let (outcome, _) = run(b.finish().unwrap(), &[0; 20]);
    assert_eq!(
        outcome,
        Outcome::Abort {
            index: 2,
            reason: AbortReason::Misaligned
        }
    );
    // A reply longer than the buffer, a swap without the headers it needs.
    let mut b = Builder::new();
    b.mov(R1, 1519u64).call(Call::Send).exit(Verdict::Consume);
    let (outcome, _) = run(b.finish().unwrap(), &[0; 20]);
    assert_eq!(
        outcome,
        Outcome::Abort {
            index: 1,
            reason: AbortReason::ReplyLength
        }
    );
    let mut b = Builder::new();
    b.reply_begin(ash::ir::Swap::PORTS).exit(Verdict::Consume);
    let (outcome, _) = run(b.finish().unwrap(), &[0; 60]);
    assert_eq!(
        outcome,
        Outcome::Abort {
            index: 0,
            reason: AbortReason::NotSwappable
        }
    );
}

#[test]
fn a_packet_shorter_than_the_filter_proved_is_not_run() {
    let load = Insn::Load {
        dst: R1,
        width: Width::B4,
        order: ash::ir::ByteOrder::Big,
        mem: Mem::packet(30),
    };
    let context = Context {
        min_packet_len: 34,
        ..Context::default()
    };
    let handler = program(vec![load, Insn::Exit(Verdict::Consume)])
        .verify(&context)
        .unwrap();
    let mut host = FakeHost::for_regions(handler.regions());
    let mut machine = Machine::new();
    let short = ash::run(&handler, &[0; 33], &mut machine, &mut host).outcome;
    assert_eq!(
        short,
        Outcome::Abort {
            index: 0,
            reason: AbortReason::PacketBounds
        }
    );
    let fits = ash::run(&handler, &[0; 34], &mut machine, &mut host).outcome;
    assert_eq!(fits, Outcome::Exit(Verdict::Consume));
}

#[test]
fn loops_run_their_count_and_bound() {
    // r1 += 1, min(r2, 5) times.
    for (requested, expected) in [(0u64, 0u64), (3, 3), (9, 5)] {
        let mut b = Builder::new();
        let region = b.region(8, Rights::READ_WRITE);
        b.mov(R1, 0u64).mov(R2, requested);
        b.repeat(
            LoopCount::Reg {
                reg: R2,
                bound: Some(5),
            },
            |b| {
                b.alu(AluOp::Add, R1, 1u64);
            },
        );
        b.store_le(R1, Width::B8, Mem::region(region, 0))
            .exit(Verdict::Consume);
        let (outcome, host) = run(b.finish().unwrap(), &[0; 20]);
        assert_eq!(outcome, Outcome::Exit(Verdict::Consume));
        assert_eq!(host.read_u64(0, 0), expected, "requested {requested}");
    }
    // Nested: 3 x 4, with a branch to the end of the inner body ("continue").
    let mut b = Builder::new();
    let region = b.region(8, Rights::READ_WRITE);
    b.mov(R1, 0u64).mov(R4, 0u64);
    b.repeat(LoopCount::Times(3), |b| {
        b.repeat(LoopCount::Times(4), |b| {
            let skip = b.label();
            b.alu(AluOp::Add, R4, 1u64)
                .branch(Cond::AnyBits, R4, 1u64, skip)
                .alu(AluOp::Add, R1, 1u64)
                .bind(skip);
        });
    });
    let handler_end = b.label();
    b.bind(handler_end);
    b.store_le(R1, Width::B8, Mem::region(region, 0))
        .exit(Verdict::Consume);
    let (_, host) = run(b.finish().unwrap(), &[0; 20]);
    assert_eq!(host.read_u64(0, 0), 6, "half of 12 iterations");
    let _ = R5;
}

#[test]
fn compare_swap_is_a_remote_lock() {
    let mut b = Builder::new();
    let region = b.region(8, Rights::READ_WRITE);
    b.mov(R1, 0u64)
        .mov(R2, 0u64)
        .mov(R3, 42u64)
        .call(Call::CompareSwap { region });
    b.store_le(R0, Width::B8, Mem::scratch(0))
        .exit(Verdict::Consume);
    let handler = b.finish().unwrap().verify(&Context::default()).unwrap();
    let mut host = FakeHost::for_regions(handler.regions());
    let mut machine = Machine::new();
    ash::run(&handler, &[0; 20], &mut machine, &mut host);
    assert_eq!(host.read_u64(0, 0), 42, "free lock taken");
    host.regions[0].copy_from_slice(&7u64.to_le_bytes());
    ash::run(&handler, &[0; 20], &mut machine, &mut host);
    assert_eq!(host.read_u64(0, 0), 7, "held lock left alone");
}
