//! Any bytes given to dpf's wire decoder decode or are refused, and whatever decodes is
//! verified or refused, never a panic: this is what the kernel does with an app's filter.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(filter) = dpf::wire::decode(data) {
        let _ = filter.verify();
    }
});
