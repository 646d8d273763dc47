//! Block messages (and bare payloads, processes, streams) from untrusted
//! bytes: the decoders refuse what is malformed, they never panic.
#![no_main]

// The body is shared with the stable test, which reads every outcome.
#[allow(dead_code)]
#[path = "../decode.rs"]
mod decode;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    std::hint::black_box(decode::decode(data));
});
