//! Any text given to the pcap-filter front end compiles or is refused with an error; it never
//! panics, and what compiles verifies.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = dpf::frontend::compile(text, dpf::FilterId(0));
    }
});
