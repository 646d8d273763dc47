//! OTLP protobuf requests from untrusted bytes: the scanner, the limits
//! check and prost's fallback refuse what is malformed, never panic, and
//! store only what reads back.
#![no_main]

#[path = "../prepare.rs"]
mod prepare;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    prepare::prepare_every_signal(data, framelake_receiver::otlp::Encoding::Protobuf);
});
