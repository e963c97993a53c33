//! The JIT, the interpreter and the reference agree on every packet, for random filter sets,
//! realistic flow sets and hostile filter descriptions.

use dpf::interp;
use dpf::ir::{
    Atom, CmpOp, Eval, Field, Filter, FilterId, Packet, Shift, Step, UnverifiedFilter, Width,
    reference_classify, reference_matches,
};
use dpf::jit::{self, Demux, ExecutableTrie, Update};
use dpf::program::{AluOp, Insn, Program};
use dpf::trie::Trie;
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};

// ---------- engines ----------

fn executable(trie: &Trie) -> ExecutableTrie {
    let compiled = jit::compile(trie).expect("code generation");
    ExecutableTrie::new(&compiled).expect("mapping")
}

/// Asserts the three engines agree on `packet`; returns the verdict.
fn assert_agree(
    filters: &[Filter],
    trie: &Trie,
    code: &ExecutableTrie,
    packet: &Packet<'_>,
) -> Result<Option<FilterId>, TestCaseError> {
    let expected = reference_classify(filters, packet);
    let interpreted = interp::classify(trie, packet);
    let jitted = code.classify(packet);
    prop_assert_eq!(
        interpreted,
        expected,
        "interpreter vs reference on {:?}",
        packet
    );
    prop_assert_eq!(jitted, expected, "JIT vs reference on {:?}", packet);
    Ok(expected)
}

/// Binds `filters`, skipping those with steps identical to one already bound (refused by
/// design); returns the filters actually bound.
fn bind_all(filters: Vec<Filter>) -> (Vec<Filter>, Trie) {
    let mut trie = Trie::new();
    let mut bound = Vec::new();
    for filter in filters {
        if trie.insert(filter.clone()).is_ok() {
            bound.push(filter);
        }
    }
    (bound, trie)
}

// ---------- filters ----------

fn width() -> impl Strategy<Value = Width> {
    prop_oneof![Just(Width::B1), Just(Width::B2), Just(Width::B4)]
}

fn op() -> impl Strategy<Value = CmpOp> {
    prop_oneof![
        4 => Just(CmpOp::Eq),
        1 => Just(CmpOp::Ne),
        1 => Just(CmpOp::Lt),
        1 => Just(CmpOp::Le),
        1 => Just(CmpOp::Gt),
        1 => Just(CmpOp::Ge),
    ]
}

/// Values from a small alphabet, so random packets built from the same alphabet match often.
fn small_value() -> impl Strategy<Value = u32> {
    prop_oneof![
        Just(0u32),
        Just(1),
        Just(6),
        Just(0x45),
        Just(0x0800),
        Just(0xff),
        Just(0x0101),
        Just(0x0606_0606),
        any::<u32>(),
    ]
}

fn atom() -> impl Strategy<Value = Step> {
    let field = prop_oneof![
        8 => (0u16..48, width()).prop_map(|(offset, width)| Field::Packet { offset, width }),
        1 => Just(Field::WireLen),
        1 => Just(Field::CapturedFromBase),
    ];
    (field, any::<u32>(), prop::bool::ANY, op(), small_value()).prop_map(
        |(field, mask_bits, full_mask, op, value)| {
            let field_max = match field {
                Field::Packet { width, .. } => width.max_value(),
                _ => u32::MAX,
            };
            let mask = if full_mask {
                field_max
            } else {
                mask_bits & field_max
            };
            let value = match op {
                CmpOp::Eq => value & mask,
                _ => value & field_max,
            };
            Step::Test(Atom {
                field,
                mask,
                op,
                value,
            })
        },
    )
}

fn shift() -> impl Strategy<Value = Step> {
    (
        0u16..40,
        prop_oneof![Just(Width::B1), Just(Width::B2)],
        prop_oneof![Just(0x0fu32), Just(0xf0), Just(0x3f), Just(0x07)],
        -4i8..=2,
    )
        .prop_map(|(offset, width, mask, shift)| {
            Step::Shift(Shift {
                offset,
                width,
                mask,
                shift,
            })
        })
}

fn alu_op() -> impl Strategy<Value = AluOp> {
    prop_oneof![
        Just(AluOp::Add),
        Just(AluOp::Sub),
        Just(AluOp::Mul),
        Just(AluOp::Div),
        Just(AluOp::Mod),
        Just(AluOp::And),
        Just(AluOp::Or),
        Just(AluOp::Xor),
        Just(AluOp::Shl),
        Just(AluOp::Shr),
    ]
}

/// One instruction with raw jump distances and slots; [`program`] fits them to its place.
fn raw_insn() -> impl Strategy<Value = Insn> {
    prop_oneof![
        4 => (0u16..48, width()).prop_map(|(offset, width)| Insn::Load { offset, width }),
        2 => (0u16..24, width()).prop_map(|(offset, width)| Insn::LoadIndexed { offset, width }),
        2 => small_value().prop_map(Insn::Const),
        1 => Just(Insn::WireLen),
        2 => Just(Insn::SetX),
        1 => Just(Insn::GetX),
        1 => (0u8..4).prop_map(Insn::Store),
        1 => (0u8..4).prop_map(Insn::Recall),
        3 => (alu_op(), prop_oneof![1u32..40, small_value()]).prop_map(|(op, k)| {
            let k = match op {
                AluOp::Div | AluOp::Mod => k.max(1),
                AluOp::Shl | AluOp::Shr => k % 32,
                _ => k,
            };
            Insn::AluConst(op, k)
        }),
        2 => alu_op().prop_map(Insn::AluX),
        1 => Just(Insn::Neg),
        1 => op().prop_map(Insn::CompareX),
        2 => (op(), small_value(), any::<u8>(), any::<u8>()).prop_map(|(op, value, if_true, if_false)| {
            Insn::Jump { op, value, if_true, if_false }
        }),
        1 => any::<u8>().prop_map(Insn::Ahead),
        2 => any::<u8>().prop_map(Insn::Back),
    ]
}

/// A valid program: random instructions whose jumps are brought inside it, and a small
/// back-edge budget.
fn program() -> impl Strategy<Value = Program> {
    (prop::collection::vec(raw_insn(), 1..24), 0u8..12).prop_map(|(mut insns, back_edges)| {
        let len = insns.len();
        for (pc, insn) in insns.iter_mut().enumerate() {
            let room = (len - pc) as u8;
            match insn {
                Insn::Jump {
                    if_true, if_false, ..
                } => {
                    *if_true %= room;
                    *if_false %= room;
                }
                Insn::Ahead(n) => *n %= room,
                Insn::Back(n) => *n %= pc as u8 + 1,
                _ => {}
            }
        }
        let program = Program { insns, back_edges };
        program.verify().expect("generated programs are valid");
        program
    })
}

fn eval_step() -> impl Strategy<Value = Step> {
    (
        program(),
        any::<u32>(),
        prop::bool::ANY,
        op(),
        small_value(),
    )
        .prop_map(|(program, mask_bits, full_mask, op, value)| {
            let mask = if full_mask { u32::MAX } else { mask_bits };
            let value = if op == CmpOp::Eq { value & mask } else { value };
            Step::Eval(Box::new(Eval {
                program,
                mask,
                op,
                value,
            }))
        })
}

fn random_filter() -> impl Strategy<Value = Filter> {
    (
        0u32..12,
        prop::collection::vec(
            prop_oneof![5 => atom(), 1 => shift(), 1 => eval_step()],
            1..7,
        ),
    )
        .prop_map(|(id, steps)| {
            UnverifiedFilter {
                id: FilterId(id),
                steps,
            }
            .verify()
            .expect("generated filters are valid")
        })
}

const IHL: Step = Step::Shift(Shift {
    offset: 14,
    width: Width::B1,
    mask: 0x0f,
    shift: 2,
});

/// One realistic flow filter: IPv4 TCP/UDP by source host and destination port (with the
/// non-first-fragment test and the header-length shift, as the front end emits them), or IPv6
/// with the same shape.
#[derive(Clone, Copy, Debug)]
struct Flow {
    ipv6: bool,
    protocol: u8,
    host: u32,
    port: u16,
    with_source_port: Option<u16>,
}

impl Flow {
    fn filter(&self, id: u32) -> Filter {
        let mut steps = Vec::new();
        if self.ipv6 {
            steps.push(Step::eq(12, Width::B2, 0x86dd));
            steps.push(Step::eq(20, Width::B1, self.protocol as u32));
            // Source address 2001:db8::<host> at 22..38.
            steps.push(Step::eq(22, Width::B4, 0x2001_0db8));
            steps.push(Step::eq(26, Width::B4, 0));
            steps.push(Step::eq(30, Width::B4, 0));
            steps.push(Step::eq(34, Width::B4, self.host));
            if let Some(port) = self.with_source_port {
                steps.push(Step::eq(54, Width::B2, port as u32));
            }
            steps.push(Step::eq(56, Width::B2, self.port as u32));
        } else {
            steps.push(Step::eq(12, Width::B2, 0x0800));
            steps.push(Step::eq(23, Width::B1, self.protocol as u32));
            steps.push(Step::Test(Atom {
                field: Field::Packet {
                    offset: 20,
                    width: Width::B2,
                },
                mask: 0x1fff,
                op: CmpOp::Eq,
                value: 0,
            }));
            steps.push(Step::eq(26, Width::B4, self.host));
            steps.push(IHL);
            if let Some(port) = self.with_source_port {
                steps.push(Step::eq(14, Width::B2, port as u32));
            }
            steps.push(Step::eq(16, Width::B2, self.port as u32));
        }
        UnverifiedFilter {
            id: FilterId(id),
            steps,
        }
        .verify()
        .expect("flow filters are valid")
    }

    /// A packet of this flow, with `options` 4-byte words of IPv4 options.
    fn packet(&self, options: u8, source_port: u16) -> Vec<u8> {
        let mut p = vec![0u8; 14];
        if self.ipv6 {
            p[12..14].copy_from_slice(&0x86ddu16.to_be_bytes());
            let mut ip = vec![0u8; 40];
            ip[0] = 0x60;
            ip[6] = self.protocol;
            ip[8..12].copy_from_slice(&0x2001_0db8u32.to_be_bytes());
            ip[20..24].copy_from_slice(&self.host.to_be_bytes());
            p.extend_from_slice(&ip);
        } else {
            p[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
            let mut ip = vec![0u8; 20 + 4 * options as usize];
            ip[0] = 0x45 + options;
            ip[9] = self.protocol;
            ip[12..16].copy_from_slice(&self.host.to_be_bytes());
            p.extend_from_slice(&ip);
        }
        let mut transport = vec![0u8; 20];
        transport[0..2].copy_from_slice(&source_port.to_be_bytes());
        transport[2..4].copy_from_slice(&self.port.to_be_bytes());
        p.extend_from_slice(&transport);
        p
    }
}

fn flow() -> impl Strategy<Value = Flow> {
    (
        prop::bool::weighted(0.3),
        prop_oneof![Just(6u8), Just(17)],
        0u32..40,
        prop_oneof![Just(80u16), Just(443), Just(53), 1000u16..1010],
        prop::option::weighted(0.2, prop_oneof![Just(1234u16), Just(5555)]),
    )
        .prop_map(|(ipv6, protocol, host, port, with_source_port)| Flow {
            ipv6,
            protocol,
            host: 0x0a00_0000 + host,
            port,
            with_source_port,
        })
}

/// `flow` as a user would type it (source and destination port only as the flow has them),
/// compiled by the front end.
fn front_end_filters(flow: &Flow, id: u32) -> Vec<Filter> {
    let transport = if flow.protocol == 6 { "tcp" } else { "udp" };
    let host = if flow.ipv6 {
        format!(
            "ip6 and {transport} and src host 2001:db8::{:x}:{:x}",
            flow.host >> 16,
            flow.host & 0xffff
        )
    } else {
        format!(
            "ip and {transport} and src host {}",
            std::net::Ipv4Addr::from(flow.host)
        )
    };
    let source = flow
        .with_source_port
        .map(|p| format!(" and src port {p}"))
        .unwrap_or_default();
    let expression = format!("{host}{source} and dst port {}", flow.port);
    dpf::frontend::compile(&expression, FilterId(id)).expect("flow expressions compile")
}

fn field_bytes(field: Field) -> u32 {
    match field {
        Field::Packet { width, .. } => width.bytes() as u32,
        _ => 4,
    }
}

// ---------- packets ----------

/// Bytes from the same small alphabet as the filter values.
fn random_packet() -> impl Strategy<Value = (Vec<u8>, u32)> {
    let byte = prop_oneof![
        Just(0u8),
        Just(1),
        Just(6),
        Just(8),
        Just(0x45),
        Just(0xff),
        any::<u8>()
    ];
    (prop::collection::vec(byte, 0..96), 0u32..200)
}

/// Stores `value`'s bits under `mask` big-endian at `at`, growing the packet as needed.
fn write_masked(packet: &mut Vec<u8>, at: usize, width: Width, mask: u32, value: u32) {
    let bytes = width.bytes() as usize;
    if packet.len() < at + bytes {
        packet.resize(at + bytes, 0);
    }
    for i in 0..bytes {
        let shift = 8 * (bytes - 1 - i);
        let m = (mask >> shift) as u8;
        let v = (value >> shift) as u8;
        packet[at + i] = (packet[at + i] & !m) | (v & m);
    }
}

/// Rewrites `packet` so that `filter` probably matches: each atom's bytes are set to satisfy it
/// (later steps may undo earlier ones; that is fine, it only has to match often).
fn satisfy(filter: &Filter, packet: &mut Vec<u8>) {
    let mut base = 0usize;
    for step in filter.steps() {
        match *step {
            Step::Eval(_) => {}
            Step::Test(atom) => {
                let Field::Packet { offset, width } = atom.field else {
                    continue;
                };
                let want = match atom.op {
                    CmpOp::Eq | CmpOp::Le | CmpOp::Ge => atom.value,
                    CmpOp::Ne | CmpOp::Gt => atom.value.wrapping_add(1),
                    CmpOp::Lt => atom.value.wrapping_sub(1),
                };
                write_masked(packet, base + offset as usize, width, atom.mask, want);
            }
            Step::Shift(shift) => {
                let at = base + shift.offset as usize;
                if packet.len() < at + shift.width.bytes() as usize {
                    packet.resize(at + shift.width.bytes() as usize, 0);
                }
                let loaded = Packet::whole(packet)
                    .load(at as u32, shift.width)
                    .unwrap_or(0);
                base += shift.amount(loaded) as usize;
            }
        }
    }
}

/// Packets for a filter set: random ones, ones rewritten to hit a filter, and their truncations.
fn packets_for(filters: Vec<Filter>) -> impl Strategy<Value = (Vec<Filter>, Vec<(Vec<u8>, u32)>)> {
    let count = filters.len().max(1);
    let packet = (random_packet(), 0..count, 0usize..4, 0usize..120).prop_map({
        let filters = filters.clone();
        move |((mut data, extra_wire), target, mode, cut)| {
            if mode != 0 && !filters.is_empty() {
                satisfy(&filters[target], &mut data);
            }
            let wire_len = data.len() as u32 + extra_wire;
            if mode == 3 {
                data.truncate(cut.min(data.len()));
            }
            (data, wire_len)
        }
    });
    (Just(filters), prop::collection::vec(packet, 1..24))
}

fn check_set(filters: Vec<Filter>, packets: &[(Vec<u8>, u32)]) -> Result<usize, TestCaseError> {
    let (filters, trie) = bind_all(filters);
    let code = executable(&trie);
    let mut matches = 0;
    for (data, wire_len) in packets {
        let packet = Packet {
            data,
            wire_len: *wire_len,
        };
        if assert_agree(&filters, &trie, &code, &packet)?.is_some() {
            matches += 1;
        }
    }
    Ok(matches)
}

fn config(cases: u32) -> Config {
    Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    }
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn random_filter_sets_agree(
        (filters, packets) in prop::collection::vec(random_filter(), 1..24).prop_flat_map(packets_for)
    ) {
        check_set(filters, &packets)?;
    }

    /// Expression steps alone and after shifts, sharing prefixes: every instruction, loops
    /// that run out of budget, loads and divisions that fail.
    #[test]
    fn programs_agree(
        (filters, packets) in prop::collection::vec(
            (0u32..6, prop::option::of(shift()), prop::collection::vec(eval_step(), 1..3)).prop_map(
                |(id, shift, evals)| {
                    UnverifiedFilter { id: FilterId(id), steps: shift.into_iter().chain(evals).collect() }
                        .verify()
                        .expect("valid")
                },
            ),
            1..8,
        ).prop_flat_map(packets_for)
    ) {
        check_set(filters, &packets)?;
    }

    #[test]
    fn flow_sets_agree(
        uniform in prop::bool::ANY,
        flows in prop::collection::vec(flow(), 1..60),
        random in prop::collection::vec(random_packet(), 0..8),
        picks in prop::collection::vec((0usize..60, 0u8..3, prop_oneof![Just(1234u16), Just(9)], 0usize..80), 1..24),
    ) {
        let mut flows = flows;
        if uniform {
            // One linear chain per host and one shape: the dispatches become templated tables.
            for (i, flow) in flows.iter_mut().enumerate() {
                flow.host = 0x0a00_0000 + i as u32;
                flow.with_source_port = None;
            }
        }
        let filters: Vec<Filter> =
            flows.iter().enumerate().map(|(id, f)| f.filter(id as u32 % 17)).collect();
        let mut packets: Vec<(Vec<u8>, u32)> = random;
        for (pick, options, source_port, cut) in picks {
            let mut data = flows[pick % flows.len()].packet(options, source_port);
            let wire_len = data.len() as u32;
            if cut < data.len() && cut % 3 == 0 {
                data.truncate(cut);
            }
            packets.push((data, wire_len));
        }
        check_set(filters, &packets)?;
    }

    /// Templated tables whose shared body holds ordered tests (on the port, or on the wire
    /// length, which the code keeps in a register of its own), next to shorter catch-all
    /// filters that a table's winner must outscore and that must still win when the table
    /// misses or its body fails, with and without exception keys (a host with two flows).
    #[test]
    fn templated_bodies_with_ordered_tests_and_catch_alls(
        hosts in 4usize..40,
        extra in prop_oneof![
            Just(None),
            (op(), 0u32..2000).prop_map(|(op, value)| Some((Field::Packet { offset: 14, width: Width::B2 }, op, value))),
            (op(), 40u32..120).prop_map(|(op, value)| Some((Field::WireLen, op, value))),
        ],
        catch_all in prop::bool::ANY,
        branching_host in prop::option::of(0usize..40),
        picks in prop::collection::vec((0usize..40, 0u8..2, 0u16..2000, 0usize..70, 0u32..6), 1..32),
    ) {
        let port = |i: usize| 1000 + i as u16;
        let mut filters = Vec::new();
        for i in 0..hosts {
            let flow = Flow { ipv6: false, protocol: 6, host: 0x0a00_0000 + i as u32, port: port(i), with_source_port: None };
            let mut steps = flow.filter(i as u32).steps().to_vec();
            if let Some((field, op, value)) = extra {
                steps.push(Step::Test(Atom { field, mask: u32::MAX >> (32 - 8 * field_bytes(field)), op, value }));
            }
            filters.push(UnverifiedFilter { id: FilterId(i as u32), steps }.verify().expect("valid"));
        }
        if let Some(host) = branching_host.filter(|&h| h < hosts) {
            let flow = Flow { ipv6: false, protocol: 6, host: 0x0a00_0000 + host as u32, port: 7, with_source_port: None };
            filters.push(flow.filter(100));
        }
        if catch_all {
            filters.push(UnverifiedFilter { id: FilterId(200), steps: vec![Step::eq(12, Width::B2, 0x0800), Step::eq(23, Width::B1, 6)] }.verify().expect("valid"));
        }
        let mut packets = Vec::new();
        // The ordered test's value, and one either side, are what tell the conditions apart.
        let near = |value: u32, mode: u32| match mode {
            0 => value.wrapping_sub(1),
            1 => value,
            2 => value + 1,
            _ => value + 7 * mode,
        };
        for (pick, options, other_port, cut, mode) in picks {
            let host = pick % 40;
            let flow = Flow { ipv6: false, protocol: 6, host: 0x0a00_0000 + host as u32, port: if other_port % 3 == 0 { other_port } else { port(host) }, with_source_port: None };
            let source_port = match extra {
                Some((Field::Packet { .. }, _, value)) => near(value, mode) as u16,
                _ => 40000,
            };
            let mut data = flow.packet(options, source_port);
            let wire_len = match extra {
                Some((Field::WireLen, _, value)) => near(value, mode).max(data.len() as u32),
                _ => data.len() as u32 + mode,
            };
            if cut < data.len() && cut % 4 == 0 {
                data.truncate(cut);
            }
            packets.push((data, wire_len));
        }
        check_set(filters, &packets)?;
    }

    /// Flow filters as the front end compiles them (the fragment test before the protocol),
    /// so each protocol's source hosts form a templated table and the protocol dispatch above
    /// them chooses the table with `cmov`s; packets of every flow, with the protocol swapped,
    /// the port changed, IPv4 options, and cut short.
    #[test]
    fn front_end_flow_sets_agree(
        flows in prop::collection::vec(flow(), 1..80),
        unique_hosts in prop::bool::ANY,
        picks in prop::collection::vec((0usize..80, 0u8..2, 0u8..4, 0usize..80), 1..32),
    ) {
        let mut flows = flows;
        if unique_hosts {
            for (i, flow) in flows.iter_mut().enumerate() {
                flow.host = 0x0a00_0000 + i as u32;
            }
        }
        let filters: Vec<Filter> = flows
            .iter()
            .enumerate()
            .flat_map(|(id, flow)| front_end_filters(flow, id as u32))
            .collect();
        let mut packets = Vec::new();
        for (pick, options, change, cut) in picks {
            let mut flow = flows[pick % flows.len()];
            match change {
                1 => flow.protocol ^= 6 ^ 17,
                2 => flow.port ^= 1,
                _ => {}
            }
            let mut data = flow.packet(options, 40000);
            let wire_len = data.len() as u32;
            if change == 3 {
                data.truncate(cut.min(data.len()));
            }
            packets.push((data, wire_len));
        }
        check_set(filters, &packets)?;
    }

    /// Templated bodies that shift the base once or twice (the shifts are an offset in a
    /// register there, not a base saved on the stack), with tests of the bytes captured past
    /// the shifted base, ordered tests and equalities of every width after each shift; packets
    /// satisfying a filter, then with one byte changed or cut anywhere (so every bounds check
    /// after a shift fails somewhere).
    #[test]
    fn templated_bodies_with_shifts_agree(
        keys in 5usize..40,
        first in shift(),
        second in prop::option::of(shift()),
        captured in prop::option::of((op(), 0u32..40)),
        between in prop::option::of((0u16..12, width())),
        after in (0u16..12, width(), op()),
        catch_all in prop::bool::ANY,
        picks in prop::collection::vec((0usize..48, 0u8..4, 0usize..96, any::<u8>()), 1..24),
    ) {
        let mut filters = Vec::new();
        for i in 0..keys as u32 {
            let mut steps = vec![Step::eq(2, Width::B2, 100 + i), first.clone()];
            if let Some((op, value)) = captured {
                steps.push(Step::Test(Atom { field: Field::CapturedFromBase, mask: u32::MAX, op, value }));
            }
            if let Some((offset, width)) = between {
                steps.push(Step::eq(offset, width, (i * 0x0101_0101 + 3) & width.max_value()));
            }
            if let Some(second) = &second {
                steps.push(second.clone());
            }
            let (offset, width, op) = after;
            steps.push(Step::Test(Atom {
                field: Field::Packet { offset, width },
                mask: width.max_value(),
                op,
                value: (i * 7 + 1) & width.max_value(),
            }));
            filters.push(UnverifiedFilter { id: FilterId(i), steps }.verify().expect("valid"));
        }
        if catch_all {
            // A shorter filter under one key: that key's chain branches (code of its own).
            filters.push(UnverifiedFilter { id: FilterId(500), steps: vec![Step::eq(2, Width::B2, 103), first.clone()] }.verify().expect("valid"));
        }
        let mut packets = Vec::new();
        for (pick, mode, cut, byte) in picks {
            let mut data = vec![0u8; 64];
            if let Some(filter) = filters.get(pick) {
                satisfy(filter, &mut data);
            } else {
                data[2..4].copy_from_slice(&(100 + pick as u16).to_be_bytes());
            }
            match mode {
                1 => { let at = cut % data.len(); data[at] ^= byte | 1; }
                2 => data.truncate(cut.min(data.len())),
                3 => data.resize(data.len() + cut % 8, byte),
                _ => {}
            }
            let wire_len = data.len() as u32;
            packets.push((data, wire_len));
        }
        let (bound, trie) = bind_all(filters);
        let compiled = jit::compile(&trie).unwrap();
        prop_assert!(compiled.stats().templated_tables >= 1, "{:?}", compiled.stats());
        let code = ExecutableTrie::new(&compiled).unwrap();
        for (data, wire_len) in &packets {
            assert_agree(&bound, &trie, &code, &Packet { data, wire_len: *wire_len })?;
        }
    }

    #[test]
    fn merged_equals_each_filter_alone(
        (filters, packets) in prop::collection::vec(random_filter(), 1..8).prop_flat_map(packets_for)
    ) {
        for filter in &filters {
            let alone = Trie::from_filters([filter.clone()]).unwrap();
            let code = executable(&alone);
            for (data, wire_len) in &packets {
                let packet = Packet { data, wire_len: *wire_len };
                let expected = reference_matches(filter, &packet).then_some(filter.id());
                prop_assert_eq!(interp::classify(&alone, &packet), expected);
                prop_assert_eq!(code.classify(&packet), expected);
            }
        }
        check_set(filters, &packets)?;
    }

    #[test]
    fn insert_then_remove_restores_verdicts(
        (filters, packets) in prop::collection::vec(random_filter(), 2..20).prop_flat_map(packets_for),
        split in 1usize..19,
    ) {
        let split = split.min(filters.len() - 1);
        let (kept, mut trie) = bind_all(filters[..split].to_vec());
        let before = executable(&trie);
        let verdicts: Vec<_> = packets
            .iter()
            .map(|(data, wire_len)| before.classify(&Packet { data, wire_len: *wire_len }))
            .collect();
        let mut handles = Vec::new();
        let mut all = kept.clone();
        for filter in &filters[split..] {
            if let Ok(handle) = trie.insert(filter.clone()) {
                handles.push(handle);
                all.push(filter.clone());
            }
        }
        let during = executable(&trie);
        for (data, wire_len) in &packets {
            assert_agree(&all, &trie, &during, &Packet { data, wire_len: *wire_len })?;
        }
        // Remove in a scrambled order: reference counts, not insertion order, decide.
        handles.reverse();
        let half = handles.len() / 2;
        handles.rotate_left(half);
        for handle in handles {
            trie.remove(handle).unwrap();
        }
        let after = executable(&trie);
        for ((data, wire_len), verdict) in packets.iter().zip(verdicts) {
            let packet = Packet { data, wire_len: *wire_len };
            prop_assert_eq!(after.classify(&packet), verdict);
            prop_assert_eq!(interp::classify(&trie, &packet), verdict);
        }
        prop_assert_eq!(trie.len(), kept.len());
    }

    #[test]
    fn hostile_descriptions_never_panic(
        raw in prop::collection::vec(
            (any::<u32>(), prop::collection::vec(
                prop_oneof![
                    (any::<u16>(), 0u8..6, any::<u32>(), op(), any::<u32>()).prop_map(|(offset, w, mask, op, value)| {
                        let field = match w {
                            0 => Field::WireLen,
                            1 => Field::CapturedFromBase,
                            _ => Field::Packet { offset, width: Width::from_bytes(1 << (w - 2)).unwrap_or(Width::B4) },
                        };
                        Step::Test(Atom { field, mask, op, value })
                    }),
                    (any::<u16>(), 0u8..3, any::<u32>(), any::<i8>()).prop_map(|(offset, w, mask, shift)| {
                        Step::Shift(Shift { offset, width: Width::from_bytes(1 << w).unwrap_or(Width::B4), mask, shift })
                    }),
                ],
                0..80,
            )),
            1..8,
        ),
        packets in prop::collection::vec(random_packet(), 1..8),
    ) {
        let verified: Vec<Filter> = raw
            .into_iter()
            .filter_map(|(id, steps)| UnverifiedFilter { id: FilterId(id), steps }.verify().ok())
            .collect();
        check_set(verified, &packets)?;
    }
}

/// One change to a live demultiplexer.
#[derive(Clone, Debug)]
enum Change {
    /// Bind this flow (hosts unique per flow, so most binds patch a templated table).
    Bind(Flow, u32),
    /// Unbind the n-th bound filter (modulo how many there are).
    Unbind(usize),
}

fn change() -> impl Strategy<Value = Change> {
    prop_oneof![
        3 => (flow(), 0u32..5000).prop_map(|(flow, id)| Change::Bind(flow, id)),
        1 => any::<usize>().prop_map(Change::Unbind),
    ]
}

/// Runs `changes` through a [`Demux`], checking after each one that the mapped code, the
/// interpreter and the reference agree; returns how many changes were patched.
/// `flow`'s filter as the tests write it, or (`front_end`) as the front end compiles it.
fn flow_filter(flow: &Flow, id: u32, front_end: bool) -> Filter {
    if front_end {
        let mut filters = front_end_filters(flow, id);
        assert_eq!(filters.len(), 1, "one conjunction per flow");
        filters.remove(0)
    } else {
        flow.filter(id)
    }
}

fn run_changes(
    initial: usize,
    changes: &[Change],
    probe_ports: &[u16],
    front_end: bool,
) -> Result<usize, TestCaseError> {
    let start: Vec<Filter> = (0..initial as u32)
        .map(|i| {
            let flow = Flow {
                ipv6: false,
                protocol: if front_end && i % 2 == 1 { 17 } else { 6 },
                host: 0x0b00_0000 + i,
                port: 80,
                with_source_port: None,
            };
            flow_filter(&flow, 10_000 + i, front_end)
        })
        .collect();
    let mut demux = Demux::from_filters(start).unwrap();
    // One mapping for the whole run, kept in step by `sync` (patches written in place).
    let mut code = ExecutableTrie::new(demux.compiled()).unwrap();
    let mut handles = Vec::new();
    let mut flows = Vec::new();
    let mut patched = 0;
    for (n, change) in changes.iter().enumerate() {
        match *change {
            Change::Bind(mut flow, id) => {
                flow.host = 0x0a00_0000 + n as u32;
                if let Ok((handle, update)) = demux.insert(flow_filter(&flow, id, front_end)) {
                    patched += (update == Update::Patched) as usize;
                    handles.push(handle);
                    flows.push(flow);
                }
            }
            Change::Unbind(which) if !handles.is_empty() => {
                let which = which % handles.len();
                let (_, update) = demux.remove(handles.swap_remove(which)).unwrap();
                flows.swap_remove(which);
                patched += (update == Update::Patched) as usize;
            }
            Change::Unbind(_) => {}
        }
        let bound: Vec<Filter> = demux.trie().filters().map(|(_, f)| f.clone()).collect();
        demux.sync(&mut code).unwrap();
        let mut packets: Vec<Vec<u8>> = flows.iter().map(|f| f.packet(1, 7)).collect();
        for &port in probe_ports {
            let mut other = Flow {
                port,
                ..flows.first().copied().unwrap_or(Flow {
                    ipv6: false,
                    protocol: 6,
                    host: 0x0b00_0001,
                    port,
                    with_source_port: None,
                })
            };
            other.host ^= (port & 1) as u32;
            packets.push(other.packet(0, 7));
        }
        for data in &packets {
            assert_agree(&bound, demux.trie(), &code, &Packet::whole(data))?;
        }
    }
    Ok(patched)
}

proptest! {
    #![proptest_config(config(64))]

    #[test]
    fn live_demux_agrees_after_every_patch_or_regeneration(
        initial in 0usize..12,
        changes in prop::collection::vec(change(), 1..40),
        probe_ports in prop::collection::vec(prop_oneof![Just(80u16), Just(443), 1000u16..1010], 1..4),
        front_end in prop::bool::ANY,
    ) {
        run_changes(initial, &changes, &probe_ports, front_end)?;
    }
}

#[test]
fn binds_into_a_templated_table_are_patched() {
    let changes: Vec<Change> = (0..200u32)
        .map(|i| {
            if i % 5 == 4 {
                Change::Unbind(i as usize * 7)
            } else {
                Change::Bind(
                    Flow {
                        ipv6: false,
                        protocol: 6,
                        host: 0,
                        port: 80 + (i % 3) as u16,
                        with_source_port: None,
                    },
                    1000 + i,
                )
            }
        })
        .collect();
    // Also as the front end compiles them, with TCP and UDP flows: the protocol dispatch then
    // chooses between the two tables by `cmov`, and binds still patch them.
    for front_end in [false, true] {
        let changes: Vec<Change> = changes
            .iter()
            .enumerate()
            .map(|(i, change)| match change {
                Change::Bind(flow, id) if front_end => Change::Bind(
                    Flow {
                        protocol: if i % 2 == 0 { 6 } else { 17 },
                        ..*flow
                    },
                    *id,
                ),
                other => other.clone(),
            })
            .collect();
        let patched = run_changes(8, &changes, &[80, 81], front_end).unwrap();
        // Growth of the table and the odd regeneration aside, nearly every change is a patch.
        assert!(patched > 150, "only {patched} of 200 changes patched");
    }
}

/// The generators above must actually produce matches, or the agreement tests prove little.
#[test]
fn generated_packets_match_often() {
    let mut runner = TestRunner::new_with_rng(
        config(1),
        TestRng::from_seed(RngAlgorithm::ChaCha, &[7; 32]),
    );
    let strategy = prop::collection::vec(random_filter(), 1..24).prop_flat_map(packets_for);
    let (mut total, mut matched) = (0, 0);
    for _ in 0..200 {
        let (filters, packets) = strategy.new_tree(&mut runner).unwrap().current();
        total += packets.len();
        matched += check_set(filters, &packets).unwrap();
    }
    let fraction = matched as f64 / total as f64;
    assert!(fraction > 0.25, "only {matched} of {total} packets matched");
}

/// 10,000 flows (IPv4 TCP/UDP and IPv6) with one shape per dispatch (templated tables), and
/// with every fifth flow also naming a source port (shapes differ: per-key code).
#[test]
fn ten_thousand_flows_classify_exactly() {
    for mixed_shapes in [false, true] {
        let mut filters = Vec::new();
        for i in 0..10_000u32 {
            let flow = Flow {
                ipv6: i % 10 == 9,
                protocol: if i % 7 == 0 { 17 } else { 6 },
                host: 0x0a00_0000 + i / 4,
                port: 1000 + (i % 4) as u16,
                with_source_port: (mixed_shapes && i % 5 == 0).then_some(4000),
            };
            filters.push((flow, flow.filter(i)));
        }
        let (bound, trie) = bind_all(filters.iter().map(|(_, f)| f.clone()).collect());
        assert_eq!(bound.len(), 10_000);
        let compiled = jit::compile(&trie).unwrap();
        let stats = compiled.stats();
        if mixed_shapes {
            assert!(stats.hash_tables >= 2, "{stats:?}");
        } else {
            assert!(stats.templated_tables >= 3, "{stats:?}");
        }
        let code = ExecutableTrie::new(&compiled).unwrap();
        for (i, (flow, _)) in filters.iter().enumerate().step_by(37) {
            let data = flow.packet((i % 3) as u8, 4000);
            let packet = Packet::whole(&data);
            assert_eq!(code.classify(&packet), Some(FilterId(i as u32)));
            assert_eq!(interp::classify(&trie, &packet), Some(FilterId(i as u32)));
            let mut other = data.clone();
            let port_at = other.len() - 18;
            other[port_at] ^= 0x40;
            assert_eq!(code.classify(&Packet::whole(&other)), None);
            assert_eq!(reference_classify(&bound, &Packet::whole(&other)), None);
            for cut in [13, 30, data.len() - 17] {
                let short = Packet {
                    data: &data[..cut],
                    wire_len: data.len() as u32,
                };
                assert_eq!(code.classify(&short), reference_classify(&bound, &short));
            }
        }
    }
}

/// One large disjunction whose keys mostly share a shape, with exceptions: some flows name a
/// source port (another shape) and some hosts carry two flows (a chain that branches). The
/// common shape is templated, the exceptions keep code of their own behind the table's miss,
/// and binds of new hosts are still patched.
#[test]
fn templated_table_with_exceptions_classifies_exactly() {
    let flows: Vec<Flow> = (0..2_000u32)
        .map(|i| Flow {
            ipv6: false,
            protocol: 6,
            // Every 11th flow reuses the previous flow's host.
            host: 0x0a00_0000 + if i % 11 == 10 { i - 1 } else { i },
            port: 1000 + (i % 5) as u16,
            with_source_port: (i % 7 == 0).then_some(4000),
        })
        .collect();
    let filters: Vec<Filter> = flows
        .iter()
        .enumerate()
        .map(|(i, f)| f.filter(i as u32))
        .collect();
    let (bound, trie) = bind_all(filters);
    assert_eq!(bound.len(), flows.len());
    let compiled = jit::compile(&trie).unwrap();
    let stats = compiled.stats();
    assert!(stats.templated_tables >= 1, "{stats:?}");
    assert!(stats.hash_tables >= 1, "{stats:?}");
    let code = ExecutableTrie::new(&compiled).unwrap();
    for (i, flow) in flows.iter().enumerate() {
        for source_port in [4000, 7] {
            let data = flow.packet((i % 3) as u8, source_port);
            let packet = Packet::whole(&data);
            let expected = reference_classify(&bound, &packet);
            assert_eq!(code.classify(&packet), expected, "flow {i}");
            assert_eq!(interp::classify(&trie, &packet), expected, "flow {i}");
            let mut other = data.clone();
            let port_at = other.len() - 18;
            other[port_at] ^= 0x40;
            let other = Packet::whole(&other);
            assert_eq!(code.classify(&other), reference_classify(&bound, &other));
        }
    }
    // A new host fits the template: patched, and found.
    let mut demux = Demux::from_filters(bound.iter().cloned()).unwrap();
    let mut code = ExecutableTrie::new(demux.compiled()).unwrap();
    let new = Flow {
        host: 0x0c00_0001,
        ..flows[1]
    };
    let (_, update) = demux.insert(new.filter(5_000)).unwrap();
    assert_eq!(update, Update::Patched);
    demux.sync(&mut code).unwrap();
    let data = new.packet(0, 7);
    assert_eq!(code.classify(&Packet::whole(&data)), Some(FilterId(5_000)));
}

/// Key 0 in a templated dispatch: absent (the probe may meet an all-zero empty slot first),
/// in the table, or an exception with code of its own. Verdicts agree in every case.
#[test]
fn key_zero_in_templated_tables() {
    let flow = |host: u32, port: u16| Flow {
        ipv6: false,
        protocol: 6,
        host,
        port,
        with_source_port: None,
    };
    let any_tcp = UnverifiedFilter {
        id: FilterId(900),
        steps: vec![Step::eq(12, Width::B2, 0x0800), Step::eq(23, Width::B1, 6)],
    }
    .verify()
    .unwrap();
    let mut sets: Vec<Vec<Filter>> = Vec::new();
    // Absent, with a shorter filter below that must still win.
    sets.push(
        (1..=10)
            .map(|h| flow(h, 80).filter(h))
            .chain([any_tcp.clone()])
            .collect(),
    );
    // Present in the table.
    sets.push((0..=10).map(|h| flow(h, 80).filter(h + 1)).collect());
    // An exception: host 0 carries two flows.
    sets.push(
        (1..=10)
            .map(|h| flow(h, 80).filter(h))
            .chain([flow(0, 80).filter(20), flow(0, 443).filter(21), any_tcp])
            .collect(),
    );
    for filters in sets {
        let (bound, trie) = bind_all(filters);
        let code = executable(&trie);
        for host in [0, 1, 5, 11] {
            for port in [0, 80, 443] {
                let data = flow(host, port).packet(0, 7);
                assert_agree(&bound, &trie, &code, &Packet::whole(&data)).unwrap();
            }
        }
    }
}

/// The protocol dispatch above per-protocol templated tables of front-end flow filters becomes
/// one `cmov`-chosen table (IPv4 and IPv6), and every flow's packets still go to their filter,
/// also when some hosts carry several flows (exceptions, reached when the table misses).
#[test]
fn protocol_dispatch_over_templated_tables_selects_by_cmov() {
    for shared_hosts in [false, true] {
        check_protocol_selection(shared_hosts);
    }
}

fn check_protocol_selection(shared_hosts: bool) {
    let flows: Vec<Flow> = (0..400u32)
        .map(|i| Flow {
            ipv6: i % 4 == 3,
            protocol: if i % 3 == 0 { 17 } else { 6 },
            // Every 24th flow reuses the host four flows back (same family and protocol).
            host: 0x0a00_0000
                + if shared_hosts && i % 24 == 23 {
                    i - 4
                } else {
                    i
                },
            port: 1000 + (i % 50) as u16,
            with_source_port: None,
        })
        .collect();
    let filters: Vec<Filter> = flows
        .iter()
        .enumerate()
        .flat_map(|(i, flow)| front_end_filters(flow, i as u32))
        .collect();
    let (bound, trie) = bind_all(filters);
    let compiled = jit::compile(&trie).unwrap();
    assert_eq!(
        compiled.stats().selected_dispatches,
        2,
        "{:?}",
        compiled.stats()
    );
    let code = ExecutableTrie::new(&compiled).unwrap();
    for (i, flow) in flows.iter().enumerate() {
        let data = flow.packet((i % 2) as u8, 4000);
        assert_eq!(
            code.classify(&Packet::whole(&data)),
            Some(FilterId(i as u32))
        );
        let mut other = *flow;
        other.protocol ^= 6 ^ 17;
        let data = other.packet(0, 4000);
        let packet = Packet::whole(&data);
        assert_eq!(code.classify(&packet), reference_classify(&bound, &packet));
        assert_eq!(code.classify(&packet), None);
    }
}

/// A two-byte dispatch (here the ethertype) over templated tables chooses its table by a chain
/// of `cmov` rather than a byte-indexed selector: every flow is found, and packets of another
/// type or with a changed port are not.
#[test]
fn two_byte_dispatch_over_templated_tables_selects_by_cmov() {
    let types = [0x0800u32, 0x0801, 0x0802];
    let mut filters = Vec::new();
    for i in 0..60u32 {
        let steps = vec![
            Step::eq(12, Width::B2, types[i as usize % 3]),
            Step::eq(26, Width::B4, 0x0a00_0000 + i),
            Step::eq(36, Width::B2, 1000 + i),
        ];
        filters.push(
            UnverifiedFilter {
                id: FilterId(i),
                steps,
            }
            .verify()
            .unwrap(),
        );
    }
    let (bound, trie) = bind_all(filters);
    let compiled = jit::compile(&trie).unwrap();
    assert_eq!(
        compiled.stats().selected_dispatches,
        1,
        "{:?}",
        compiled.stats()
    );
    let code = ExecutableTrie::new(&compiled).unwrap();
    for i in 0..60u32 {
        for (ethertype, port, expected) in [
            (types[i as usize % 3], 1000 + i, Some(FilterId(i))),
            (types[(i as usize + 1) % 3], 1000 + i, None),
            (0x86dd, 1000 + i, None),
            (types[i as usize % 3], 999, None),
        ] {
            let mut data = [0u8; 40];
            data[12..14].copy_from_slice(&(ethertype as u16).to_be_bytes());
            data[26..30].copy_from_slice(&(0x0a00_0000 + i).to_be_bytes());
            data[36..38].copy_from_slice(&(port as u16).to_be_bytes());
            for cut in [40, 37] {
                let packet = Packet::whole(&data[..cut]);
                let want = if cut == 40 { expected } else { None };
                assert_eq!(code.classify(&packet), want);
                assert_eq!(reference_classify(&bound, &packet), want);
            }
        }
    }
}

/// A match that did not return (something later might beat it) must survive a later branch
/// that matches with a lower score. Among plain filters the bound check before that branch
/// already skips it; the next test is the case where only the compare with the best held
/// keeps the right answer (a templated table's entries differ in score).
#[test]
fn a_better_earlier_match_beats_a_weaker_later_one() {
    let p = Step::eq(0, Width::B1, 7);
    let one = |offset| Step::eq(offset, Width::B1, 1);
    let filters: Vec<Filter> = [
        vec![p.clone(), one(1), one(2), one(3), one(4)],
        vec![p.clone(), one(1), one(2)],
        vec![p.clone(), one(10), one(11), one(12)],
        vec![p.clone(), one(10)],
    ]
    .into_iter()
    .enumerate()
    .map(|(id, steps)| {
        UnverifiedFilter {
            id: FilterId(id as u32),
            steps,
        }
        .verify()
        .unwrap()
    })
    .collect();
    let (bound, trie) = bind_all(filters);
    let code = executable(&trie);
    let mut data = [0u8; 16];
    data[0] = 7;
    data[1] = 1;
    data[2] = 1;
    data[10] = 1;
    let packet = Packet::whole(&data);
    assert_eq!(reference_classify(&bound, &packet), Some(FilterId(1)));
    assert_eq!(code.classify(&packet), Some(FilterId(1)));
    assert_eq!(interp::classify(&trie, &packet), Some(FilterId(1)));
}

/// The same inside a templated table, whose entries' scores differ (by filter id): an earlier
/// match that did not return (the table might hold a better one) beats the worse entry the
/// packet finds.
#[test]
fn a_better_earlier_match_beats_a_weaker_table_entry() {
    let ip = Step::eq(12, Width::B2, 0x0800);
    let one = |offset| Step::eq(offset, Width::B1, 1);
    let mut sets: Vec<(u32, Vec<Step>)> = vec![
        (5, vec![ip.clone(), one(40), one(41)]),
        (
            20,
            vec![ip.clone(), one(40), one(41), one(42), one(43), one(44)],
        ),
    ];
    for id in [1u32, 2, 3, 9] {
        sets.push((
            id,
            vec![
                ip.clone(),
                Step::eq(26, Width::B4, id),
                Step::eq(36, Width::B2, id),
            ],
        ));
    }
    let filters: Vec<Filter> = sets
        .into_iter()
        .map(|(id, steps)| {
            UnverifiedFilter {
                id: FilterId(id),
                steps,
            }
            .verify()
            .unwrap()
        })
        .collect();
    let (bound, trie) = bind_all(filters);
    let compiled = jit::compile(&trie).unwrap();
    assert!(
        compiled.stats().templated_tables >= 1,
        "{:?}",
        compiled.stats()
    );
    let code = ExecutableTrie::new(&compiled).unwrap();
    let mut data = [0u8; 48];
    data[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
    data[26..30].copy_from_slice(&9u32.to_be_bytes());
    data[36..38].copy_from_slice(&9u16.to_be_bytes());
    data[40] = 1;
    data[41] = 1;
    let packet = Packet::whole(&data);
    assert_eq!(reference_classify(&bound, &packet), Some(FilterId(5)));
    assert_eq!(code.classify(&packet), Some(FilterId(5)));
    assert_eq!(interp::classify(&trie, &packet), Some(FilterId(5)));
}

/// 10,000 flows of distinct hosts (a tenth IPv6, a seventh UDP), as the demux benchmark binds
/// them: the generated tables take at most 32 bytes per filter (packed entries at most two
/// thirds full; measured from the generated code, as the benchmark does), and every flow, a
/// near miss of each and cuts of each classify as the interpreter and the reference say.
#[test]
fn ten_thousand_flow_tables_stay_small_and_exact() {
    let filters: Vec<(Flow, Filter)> = (0..10_000u32)
        .map(|i| {
            let flow = Flow {
                ipv6: i % 10 == 9,
                protocol: if i % 7 == 0 { 17 } else { 6 },
                host: 0x0a00_0000 + i * 7,
                port: 1000 + (i % 50) as u16,
                with_source_port: None,
            };
            (flow, flow.filter(i))
        })
        .collect();
    let (bound, trie) = bind_all(filters.iter().map(|(_, f)| f.clone()).collect());
    let compiled = jit::compile(&trie).unwrap();
    let table_bytes = compiled.code().len() - compiled.data_offset();
    assert!(
        table_bytes <= 32 * 10_000,
        "{table_bytes} bytes of tables for 10,000 flows"
    );
    // Each table too large to be made sparse: packed words (key, parameters, the score's low
    // half), two thirds full.
    let (num, den) = jit::codegen::GENERATED_LOAD;
    let large = |t: &&jit::codegen::TemplateTable| {
        t.keys * 2 * t.entry.size > jit::codegen::SPARSE_TABLE_BYTES
    };
    assert_eq!(compiled.templates().iter().filter(large).count(), 1);
    for table in compiled.templates().iter().filter(large) {
        assert_eq!(
            table.entry.size,
            4 * (table.entry.parameters + 2),
            "{table:?}"
        );
        assert!(table.slots <= (table.keys * den).div_ceil(num), "{table:?}");
        assert!(table.slots * num >= table.keys * den, "{table:?}");
    }
    let code = ExecutableTrie::new(&compiled).unwrap();
    for (i, (flow, _)) in filters.iter().enumerate() {
        let data = flow.packet((i % 3) as u8, 4000);
        let packet = Packet::whole(&data);
        assert_eq!(code.classify(&packet), Some(FilterId(i as u32)), "flow {i}");
        assert_eq!(interp::classify(&trie, &packet), Some(FilterId(i as u32)));
        let mut other = data.clone();
        let port_at = other.len() - 18;
        other[port_at] ^= 0x40;
        assert_eq!(
            code.classify(&Packet::whole(&other)),
            reference_classify(&bound, &Packet::whole(&other))
        );
        if i % 97 == 0 {
            for cut in 0..data.len() {
                let short = Packet {
                    data: &data[..cut],
                    wire_len: data.len() as u32,
                };
                assert_eq!(code.classify(&short), reference_classify(&bound, &short));
            }
        }
    }
}

/// A templated table's entry holds only the score's low half, `u32::MAX - id`, with 0 meaning
/// an empty slot: the filter with id `u32::MAX` (low half 0) keeps code of its own and still
/// wins its packets, in generated code and after patches around it.
#[test]
fn the_last_filter_id_is_not_mistaken_for_an_empty_slot() {
    let flow = |i: u32| Flow {
        ipv6: false,
        protocol: 6,
        host: 0x0a00_0000 + i * 7,
        port: 2000 + i as u16,
        with_source_port: None,
    };
    let ids = |i: u32| if i == 0 { u32::MAX } else { i };
    let filters: Vec<Filter> = (0..200).map(|i| flow(i).filter(ids(i))).collect();
    let (bound, trie) = bind_all(filters.clone());
    let code = executable(&trie);
    // The live demux: generated from all but flow 0's filter, which a patch (or, since its
    // chain cannot be templated, a regeneration) then adds.
    let mut demux = Demux::from_filters(filters[1..].iter().cloned()).unwrap();
    let mut live = ExecutableTrie::new(demux.compiled()).unwrap();
    demux.insert(filters[0].clone()).unwrap();
    demux.sync(&mut live).unwrap();
    for i in 0..200u32 {
        let data = flow(i).packet(0, 4000);
        let packet = Packet::whole(&data);
        assert_eq!(code.classify(&packet), Some(FilterId(ids(i))), "flow {i}");
        assert_eq!(reference_classify(&bound, &packet), Some(FilterId(ids(i))));
        assert_eq!(live.classify(&packet), Some(FilterId(ids(i))));
    }
}

/// Hostile binds into a live templated table: keys that all hash to its last slot, so one
/// probe run grows from the end of the table and wraps to slot 0, up to the fill at which the
/// table is regenerated; then every other one of them unbound (backward-shift deletion inside
/// a wrapped run) and bound again. After each change the mapped code (patched in place), the
/// interpreter and the reference agree on every bound flow, near misses of each (another port,
/// another protocol) and absent keys of the same home (a miss that walks the whole run). For a
/// table of the fewest slots and a large one, alone or chosen by the protocol dispatch above.
#[test]
fn hostile_keys_in_one_wrapping_probe_run_stay_exact() {
    use dpf::jit::hash_table::RangedLayout;
    for (initial, front_end) in [(4u32, false), (4, true), (300, false), (300, true)] {
        let flow = |host: u32, protocol: u8| Flow {
            ipv6: false,
            protocol,
            host,
            port: 80,
            with_source_port: None,
        };
        // Whether `slot` of the table `record` describes holds a key (its score is not 0).
        let occupied = |demux: &Demux, record: &jit::codegen::TemplateTable, slot: usize| {
            let at = record.offset + slot * record.entry.size + record.entry.score_offset;
            demux.compiled().code()[at..at + 4] != [0; 4]
        };
        // Pseudo-random hosts (with the front end a few UDP flows too: a second table), drawn
        // again until the first and the last slot of the TCP table (the one with the most
        // keys) are empty, so the run starts at the end and wraps to slot 0.
        let (mut flows, mut demux, record) = (1u32..)
            .find_map(|seed| {
                let mut flows: Vec<Flow> = (0..initial)
                    .map(|i| flow((i + seed).wrapping_mul(0x9e37_79b9).rotate_left(7), 6))
                    .collect();
                if front_end {
                    flows.extend((0..2u32).map(|i| flow(0x0c00_0000 + i, 17)));
                }
                let filters: Vec<Filter> = flows
                    .iter()
                    .zip(0u32..)
                    .map(|(f, id)| flow_filter(f, id, front_end))
                    .collect();
                let demux = Demux::from_filters(filters).unwrap();
                let record = demux
                    .compiled()
                    .templates()
                    .iter()
                    .max_by_key(|t| t.keys)
                    .unwrap()
                    .clone();
                let ends_empty =
                    !occupied(&demux, &record, 0) && !occupied(&demux, &record, record.slots - 1);
                ends_empty.then_some((flows, demux, record))
            })
            .unwrap();
        let mut code = ExecutableTrie::new(demux.compiled()).unwrap();
        let last = record.slots - 1;
        let hostile: Vec<u32> = (0x5000_0000u32..)
            .filter(|&k| RangedLayout::home(record.slots, record.multiplier, k) == last)
            .take(record.slots)
            .collect();
        let check = |demux: &Demux, code: &ExecutableTrie, flows: &[Flow]| {
            let bound: Vec<Filter> = demux.trie().filters().map(|(_, f)| f.clone()).collect();
            let mut packets: Vec<Vec<u8>> = Vec::new();
            for f in flows {
                packets.push(f.packet(1, 7));
                packets.push(Flow { port: 81, ..*f }.packet(0, 7));
                for protocol in [1u8, 17, 6] {
                    packets.push(Flow { protocol, ..*f }.packet(0, 7));
                }
            }
            for &k in &hostile[hostile.len() - 8..] {
                packets.push(flow(k, 6).packet(0, 7));
                packets.push(flow(k, 17).packet(0, 7));
            }
            for data in &packets {
                assert_agree(&bound, demux.trie(), code, &Packet::whole(data)).unwrap();
            }
        };
        // After each change, the first flows and the newest (every flow at the end of each
        // phase): a sparse table of 300 keys takes 600 hostile ones before it is regenerated.
        let sample = |flows: &[Flow]| -> Vec<Flow> {
            let newest = flows.len().saturating_sub(4).max(8.min(flows.len()));
            flows[..8.min(flows.len())]
                .iter()
                .chain(&flows[newest..])
                .copied()
                .collect()
        };
        check(&demux, &code, &flows);
        // Bind hostile keys up to the fill patches may reach (then the table is regenerated).
        let (num, den) = jit::codegen::PATCHED_LOAD;
        let mut handles = Vec::new();
        let mut run = Vec::new();
        let mut wrapped = false;
        for (keys, (&k, id)) in (record.keys..).zip(hostile.iter().zip(10_000u32..)) {
            if (keys + 1) * den > record.slots * num {
                break;
            }
            let f = flow(k, 6);
            let (handle, update) = demux.insert(flow_filter(&f, id, front_end)).unwrap();
            assert_eq!(
                update,
                Update::Patched,
                "hostile key {} of {record:?}",
                run.len()
            );
            demux.sync(&mut code).unwrap();
            flows.push(f);
            check(&demux, &code, &sample(&flows));
            wrapped |= occupied(&demux, &record, 0);
            handles.push(handle);
            run.push((f, id));
        }
        assert!(
            run.len() >= 3,
            "only {} hostile keys patched into {record:?}",
            run.len()
        );
        assert!(wrapped, "the run did not wrap: {record:?}");
        check(&demux, &code, &flows);
        // Unbind every other patched one (patches: the run closes up across the wrap), then
        // bind them again.
        let mut removed = Vec::new();
        for (i, handle) in handles.into_iter().enumerate() {
            if i % 2 == 0 {
                let (_, update) = demux.remove(handle).unwrap();
                assert_eq!(update, Update::Patched, "removal {i} of a hostile key");
                demux.sync(&mut code).unwrap();
                let (f, id) = run[i];
                flows.retain(|g| g.host != f.host);
                removed.push((f, id));
                check(&demux, &code, &sample(&flows));
                // The removed key's packets must now miss (no stale entry left).
                let data = f.packet(0, 7);
                assert_eq!(code.classify(&Packet::whole(&data)), None);
            }
        }
        for (f, id) in removed {
            demux.insert(flow_filter(&f, id, front_end)).unwrap();
            demux.sync(&mut code).unwrap();
            flows.push(f);
            check(&demux, &code, &sample(&flows));
            let data = f.packet(0, 7);
            assert_eq!(code.classify(&Packet::whole(&data)), Some(FilterId(id)));
        }
        check(&demux, &code, &flows);
        // One more: past the patched fill, the table is generated anew, still exact.
        let f = flow(hostile[run.len()], 6);
        let (_, update) = demux.insert(flow_filter(&f, 20_000, front_end)).unwrap();
        assert_eq!(update, Update::Regenerated);
        demux.sync(&mut code).unwrap();
        flows.push(f);
        check(&demux, &code, &flows);
    }
}
