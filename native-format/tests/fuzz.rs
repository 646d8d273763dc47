//! The fuzz target's body (`fuzz/decode.rs`, run by `cargo fuzz`) over
//! every golden vector cut at every length and with each byte flipped: the
//! decoders refuse what is malformed or read exactly what is there; they
//! never panic.

use framelake_native_format::{self as format, Codec, FormatError, Process, Stream};

#[path = "../fuzz/decode.rs"]
mod body;

fn vector(name: &str) -> Vec<u8> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors");
    std::fs::read(path.join(name)).expect("a golden vector")
}

/// Events that are the original's but for at most one (a flipped byte
/// inside an event's ticks or value changes that event alone).
fn at_most_one_differs(got: &[String], original: &[String]) -> bool {
    got.len() == original.len() && got.iter().zip(original).filter(|(a, b)| a != b).count() <= 1
}

/// Cuts and flips of `bytes`, each decoded by the fuzz body and judged.
fn mutations(bytes: &[u8], judge: impl Fn(&str, &body::Outcomes)) {
    for n in 0..bytes.len() {
        judge(&format!("cut at {n}"), &body::decode(&bytes[..n]));
    }
    for i in 0..bytes.len() {
        let mut flipped = bytes.to_vec();
        flipped[i] ^= 0xff;
        judge(&format!("byte {i} flipped"), &body::decode(&flipped));
    }
}

fn ok<T: std::fmt::Debug>(r: &Result<T, FormatError>) -> &T {
    r.as_ref().expect("the golden vector decodes")
}

#[test]
fn decoders_refuse_or_read_exactly_every_cut_and_flip_of_the_golden_vectors() {
    // A block message: every cut is refused (its lengths no longer add
    // up); a flip is refused or changes one event at most.
    let block = vector("block.bin");
    let original = ok(&body::decode(&block).block).clone();
    assert_eq!(original.len(), 9);
    mutations(&block, |what, out| match &out.block {
        Ok(events) if what.starts_with("cut") => panic!("{what}: decoded {events:?}"),
        Ok(events) => assert!(at_most_one_differs(events, &original), "{what}: {events:?}"),
        Err(_) => {}
    });

    // The same block compressed: cuts are refused, flips never panic.
    let (header, payload) = format::decode_block(&block).expect("decodes");
    let lz4 = format::encode_block(
        &format::BlockHeader {
            codec: Codec::Lz4,
            ..header
        },
        &payload,
    );
    assert_eq!(ok(&body::decode(&lz4).block), &original);
    mutations(&lz4, |what, out| {
        if what.starts_with("cut") {
            assert!(out.block.is_err(), "{what}");
        }
    });

    // A bare payload: a cut between events is the events before it, any
    // other cut is refused; a flip is refused or changes one event at most.
    let payload = vector("block-payload.bin");
    assert_eq!(ok(&body::decode(&payload).payload), &original);
    mutations(&payload, |what, out| match &out.payload {
        Ok(events) if what.starts_with("cut") => {
            assert!(original.starts_with(events), "{what}: {events:?}")
        }
        Ok(events) => assert!(at_most_one_differs(events, &original), "{what}: {events:?}"),
        Err(_) => {}
    });

    // Processes and streams: every cut refused; what a flip leaves
    // decodable encodes back to the same bytes (or to the original ones:
    // reserved fields are read and ignored).
    type Encode = fn(&body::Outcomes) -> Option<Vec<u8>>;
    let process: Encode = |o| o.process.as_ref().ok().map(Process::encode);
    let stream: Encode = |o| o.stream.as_ref().ok().map(Stream::encode);
    for (name, encode) in [("process.bin", process), ("stream.bin", stream)] {
        let bytes = vector(name);
        assert_eq!(encode(&body::decode(&bytes)), Some(bytes.clone()));
        for n in 0..bytes.len() {
            assert!(
                encode(&body::decode(&bytes[..n])).is_none(),
                "{name} cut at {n}"
            );
        }
        for i in 0..bytes.len() {
            let mut flipped = bytes.clone();
            flipped[i] ^= 0xff;
            if let Some(again) = encode(&body::decode(&flipped)) {
                assert!(
                    again == flipped || again == bytes,
                    "{name} byte {i} flipped"
                );
            }
        }
    }
}
