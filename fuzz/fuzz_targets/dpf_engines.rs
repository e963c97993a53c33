//! dpf's JIT, its interpreter and the reference evaluator agree on every packet for any
//! filter set that verifies. Input: a count of filters, each as a length byte and that many
//! bytes of wire encoding, then the packet.
#![no_main]
use dpf::ir::{FilterId, Packet, reference_classify};
use dpf::jit::{self, ExecutableTrie};
use dpf::trie::Trie;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&count, mut rest)) = data.split_first() else {
        return;
    };
    let mut trie = Trie::new();
    let mut bound = Vec::new();
    for index in 0..(count % 8) {
        let Some((&length, tail)) = rest.split_first() else {
            return;
        };
        let length = usize::from(length).min(tail.len());
        let (encoded, tail) = tail.split_at(length);
        rest = tail;
        let Ok(mut unverified) = dpf::wire::decode(encoded) else {
            continue;
        };
        unverified.id = FilterId(u32::from(index) + 1);
        let Ok(filter) = unverified.verify() else {
            continue;
        };
        if trie.insert(filter.clone()).is_ok() {
            bound.push(filter);
        }
    }
    let packet = Packet {
        data: rest,
        wire_len: rest.len() as u32,
    };
    let expected = reference_classify(&bound, &packet);
    assert_eq!(
        dpf::interp::classify(&trie, &packet),
        expected,
        "interpreter"
    );
    let compiled = jit::compile(&trie).expect("code generation for a verified trie");
    let code = ExecutableTrie::new(&compiled).expect("mapping the code");
    assert_eq!(code.classify(&packet), expected, "JIT");
});
