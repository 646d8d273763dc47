//! OTLP/JSON requests from untrusted bytes: decoded, checked against the
//! record limits and stored as protobuf, or refused; never a panic.
#![no_main]

#[path = "../prepare.rs"]
mod prepare;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    prepare::prepare_every_signal(data, framelake_receiver::otlp::Encoding::Json);
});
