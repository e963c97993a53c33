//! The front end tests a multi-word address's last word first (libpcap's gen_bcmp order), so a
//! trie of many IPv6 host filters dispatches on the word that varies most.

use dpf::ir::{Field, Step, Width};
use dpf::{FilterId, frontend};

fn word_offsets(expr: &str) -> Vec<u16> {
    let filters = frontend::compile(expr, FilterId(0)).expect("compiles");
    filters[0]
        .steps()
        .iter()
        .filter_map(|step| match step {
            Step::Test(atom) => match atom.field {
                Field::Packet {
                    offset,
                    width: Width::B4,
                } => Some(offset),
                _ => None,
            },
            _ => None,
        })
        .collect()
}

#[test]
fn an_ipv6_host_is_tested_low_word_first() {
    assert_eq!(
        word_offsets("ip6 and src host 2001:db8:5::1:2"),
        vec![34, 30, 26, 22]
    );
}

#[test]
fn an_ipv4_host_is_one_word() {
    assert_eq!(word_offsets("ip and src host 10.1.2.3"), vec![26]);
}
