//! The JIT on the edges the random programs rarely hit exactly: a runtime-checked packet load
//! of every width at every address around the end of packets of every short length, each
//! byte order. Each compared with the interpreter (libnet's tests do the same for the stock
//! handlers on their frames).
mod common;

use ash::builder::{Builder, R0, R1, R2};
use ash::interp::Machine;
use ash::ir::{AluOp, Mem, Width};
use ash::{Context, Verdict};
use common::FakeHost;
use common::jit_exec::Executable;

#[test]
fn packet_loads_at_every_address_near_the_end() {
    let packet: Vec<u8> = (0..40u8)
        .map(|b| b.wrapping_mul(73).wrapping_add(5))
        .collect();
    for width in [Width::B1, Width::B2, Width::B4, Width::B8] {
        for little in [false, true] {
            for back in 0..12u64 {
                // r1 = length - back, then load at r1 and keep the value in scratch.
                let mut b = Builder::new();
                b.mov(R1, R0).alu(AluOp::Sub, R1, back);
                if little {
                    b.load_le(R2, width, Mem::packet_at(R1, 0));
                } else {
                    b.load(R2, width, Mem::packet_at(R1, 0));
                }
                b.store_le(R2, Width::B8, Mem::scratch(0))
                    .mov(R1, R2)
                    .call(ash::ir::Call::Upcall)
                    .exit(Verdict::Consume);
                let handler = b.finish().unwrap().verify(&Context::default()).unwrap();
                let executable = Executable::new(&handler);
                for len in 0..packet.len() {
                    let mut host = FakeHost::default();
                    let mut jit_host = FakeHost::default();
                    let interpreted =
                        ash::run(&handler, &packet[..len], &mut Machine::new(), &mut host);
                    let compiled = executable.run(
                        &handler,
                        &packet[..len],
                        &mut Machine::new(),
                        &mut jit_host,
                    );
                    assert_eq!(
                        interpreted, compiled,
                        "{width:?} little {little} back {back} len {len}"
                    );
                    assert_eq!(host.upcalls, jit_host.upcalls, "the loaded value");
                }
            }
        }
    }
}

#[test]
fn division_and_remainder_agree() {
    for (a, b) in [
        (100u64, 7u64),
        (7, 100),
        (u64::MAX, 3),
        (0, 5),
        (12345678901234, 1),
    ] {
        for op in [AluOp::Div, AluOp::Mod] {
            let mut b_ = Builder::new();
            b_.mov(R1, a).mov(R2, b).alu(op, R1, R2);
            b_.call(ash::ir::Call::Upcall).exit(Verdict::Consume);
            let handler = b_.finish().unwrap().verify(&Context::default()).unwrap();
            let executable = Executable::new(&handler);
            let mut host = FakeHost::default();
            let mut jit_host = FakeHost::default();
            ash::run(&handler, &[0; 20], &mut Machine::new(), &mut host);
            executable.run(&handler, &[0; 20], &mut Machine::new(), &mut jit_host);
            assert_eq!(host.upcalls, jit_host.upcalls, "{a} {op:?} {b}");
            let expected = if op == AluOp::Div { a / b } else { a % b };
            assert_eq!(host.upcalls, vec![expected]);
        }
    }
}
