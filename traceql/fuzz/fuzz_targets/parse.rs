//! TraceQL from untrusted text: the parser refuses it with a position, or its
//! tree prints and parses back the same.
#![no_main]

#[path = "../parse.rs"]
mod parse;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    parse::check(data);
});
