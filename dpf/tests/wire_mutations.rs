//! `dpf::wire` against hostile bytes that look like real filters: encodings of front-end
//! filters, mutated (bytes flipped, cut, spliced, lengths inflated), never panic the decoder
//! or the verifier, and whatever still verifies compiles and runs the same in the JIT and the
//! interpreter. Random bytes alone (the unit tests) rarely get past the header; these do.

use dpf::interp;
use dpf::ir::{FilterId, Packet, reference_classify};
use dpf::jit::{self, ExecutableTrie};
use dpf::trie::Trie;
use proptest::prelude::*;
use proptest::test_runner::Config;

/// Expressions covering the front end's shapes: ports, hosts, shifts past IPv4 options,
/// VLAN tags, IPv6, expressions with arithmetic.
const EXPRESSIONS: &[&str] = &[
    "udp dst port 53",
    "tcp and src host 10.0.2.2 and dst port 80",
    "vlan 7 and udp port 9",
    "ip6 and tcp dst port 443",
    "ip[2:2] - ((ip[0] & 0xf) << 2) > 100",
    "icmp or arp",
    "ip and udp dst port 7001 or 7004",
];

#[derive(Clone, Debug)]
enum Mutation {
    Flip { at: usize, mask: u8 },
    Cut(usize),
    Splice { at: usize, bytes: Vec<u8> },
    Word { at: usize, value: u32 },
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), 1u8..=255).prop_map(|(at, mask)| Mutation::Flip { at, mask }),
        any::<usize>().prop_map(Mutation::Cut),
        (any::<usize>(), prop::collection::vec(any::<u8>(), 1..12))
            .prop_map(|(at, bytes)| Mutation::Splice { at, bytes }),
        (
            any::<usize>(),
            prop_oneof![Just(0u32), Just(u32::MAX), Just(0xffff), any::<u32>()]
        )
            .prop_map(|(at, value)| Mutation::Word { at, value }),
    ]
}

fn apply(bytes: &mut Vec<u8>, mutation: &Mutation) {
    if bytes.is_empty() {
        return;
    }
    match mutation {
        Mutation::Flip { at, mask } => {
            let at = at % bytes.len();
            bytes[at] ^= mask;
        }
        Mutation::Cut(at) => bytes.truncate(at % bytes.len()),
        Mutation::Splice { at, bytes: more } => {
            let at = at % bytes.len();
            bytes.splice(at..at, more.iter().copied());
        }
        Mutation::Word { at, value } => {
            let at = at % bytes.len();
            for (offset, byte) in value.to_le_bytes().into_iter().enumerate() {
                if let Some(slot) = bytes.get_mut(at + offset) {
                    *slot = byte;
                }
            }
        }
    }
}

proptest! {
    #![proptest_config(Config { cases: 512, failure_persistence: None, ..Config::default() })]

    #[test]
    fn mutated_encodings_never_panic_and_what_verifies_runs_alike(
        expression in 0..EXPRESSIONS.len(),
        mutations in prop::collection::vec(mutation(), 1..6),
        packets in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..128), 1..6),
    ) {
        let filters = dpf::frontend::compile(EXPRESSIONS[expression], FilterId(1))
            .expect("the expressions compile");
        let mut bytes = dpf::wire::encode(&filters[0]);
        for mutation in &mutations {
            apply(&mut bytes, mutation);
        }
        let Ok(unverified) = dpf::wire::decode(&bytes) else {
            return Ok(());
        };
        let Ok(filter) = unverified.verify() else {
            return Ok(());
        };
        // What verifies round-trips, and the engines agree on it.
        let again = dpf::wire::decode(&dpf::wire::encode(&filter))
            .expect("a verified filter's encoding decodes")
            .verify()
            .expect("and verifies");
        prop_assert_eq!(&again, &filter);
        let mut trie = Trie::new();
        trie.insert(filter).expect("one filter fits");
        let compiled = jit::compile(&trie).expect("code generation");
        let code = ExecutableTrie::new(&compiled).expect("mapping");
        let filters: Vec<_> = trie.filters().map(|(_, filter)| filter.clone()).collect();
        for packet in &packets {
            let view = Packet::whole(packet);
            let expected = reference_classify(&filters, &view);
            prop_assert_eq!(interp::classify(&trie, &view), expected, "interpreter on {:?}", packet);
            prop_assert_eq!(code.classify(&view), expected, "JIT on {:?}", packet);
        }
    }
}
