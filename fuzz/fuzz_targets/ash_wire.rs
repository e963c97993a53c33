//! Any bytes given to ash's wire decoder decode or are refused, and whatever decodes is
//! verified or refused (for every guard length), never a panic: what the kernel does with an
//! app's handler.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&guard, bytes)) = data.split_first() else {
        return;
    };
    if let Ok(handler) = ash::wire::decode(bytes) {
        let context = ash::verify::Context {
            min_packet_len: u16::from(guard),
            ..ash::verify::Context::default()
        };
        let _ = handler.verify(&context);
    }
});
