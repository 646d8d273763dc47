//! The native format against its golden vectors (`tests/vectors/`), and the
//! decoder's refusals. `FRAMELAKE_BLESS=1` rewrites the vectors (only when
//! the format's version changes).

use std::path::PathBuf;

use framelake_native_format::{
    BLOCK_HEADER_LEN, BlockHeader, Codec, Descriptor, DescriptorKind, Event, Payload, PayloadParts,
    Process, Stream, StreamKind, decode_block, encode_block, encode_event,
};

const SPAN_FRAME: u64 = 0x1000;
const SPAN_UPDATE: u64 = 0x1008;
const LOG_LOADED: u64 = 0x2000;
const METRIC_FPS: u64 = 0x3000;
const METRIC_MEMORY: u64 = 0x3008;
const INSTANT_HITCH: u64 = 0x4000;

fn vector(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/vectors")
        .join(name)
}

/// Compares `bytes` with the checked-in vector (or writes it when blessing).
fn golden(name: &str, bytes: &[u8]) {
    let path = vector(name);
    if std::env::var_os("FRAMELAKE_BLESS").is_some() {
        std::fs::write(&path, bytes).expect("write vector");
        return;
    }
    let expected = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(
        hex(bytes),
        hex(&expected),
        "{name} differs from its golden vector"
    );
}

fn hex(bytes: &[u8]) -> String {
    bytes
        .chunks(16)
        .map(|row| {
            row.iter()
                .map(|b| format!("{b:02x}"))
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn process() -> Process {
    Process {
        process_id: [0x11; 16],
        parent_process_id: [0; 16],
        start_time: 1_700_000_000_000_000_000,
        start_ticks: 1_000_000,
        tick_frequency: 3_000_000_000,
        exe: "game.exe".into(),
        username: "player".into(),
        computer: "rig-7".into(),
        distro: "Windows 11".into(),
        cpu_brand: "AMD Ryzen 9".into(),
        properties: vec![("service.name".into(), "game".into())],
    }
}

fn stream() -> Stream {
    Stream {
        kind: StreamKind::Thread,
        stream_id: [0x22; 16],
        process_id: [0x11; 16],
        thread_id: 4242,
        name: "main".into(),
        properties: vec![],
    }
}

fn descriptor(id: u64, kind: DescriptorKind, name: &str, level: u8, unit: &str) -> Descriptor {
    Descriptor {
        id,
        kind,
        level,
        line: 40 + (id as u32 & 0xff),
        name: name.into(),
        target: "game::loop".into(),
        file: "src/loop.rs".into(),
        unit: unit.into(),
    }
}

fn descriptors() -> Vec<Descriptor> {
    vec![
        descriptor(SPAN_FRAME, DescriptorKind::Span, "frame", 0, ""),
        descriptor(SPAN_UPDATE, DescriptorKind::Span, "update", 0, ""),
        descriptor(LOG_LOADED, DescriptorKind::Log, "level {} loaded", 3, ""),
        descriptor(METRIC_FPS, DescriptorKind::Metric, "fps", 0, "1/s"),
        descriptor(METRIC_MEMORY, DescriptorKind::Metric, "memory", 0, "By"),
        descriptor(INSTANT_HITCH, DescriptorKind::Instant, "hitch", 0, ""),
    ]
}

/// One of every kind of event; the block starts inside an open `frame` span.
fn events() -> Vec<Event<'static>> {
    vec![
        Event::Frame {
            number: 7,
            ticks: 2_000_000,
        },
        Event::SpanBegin {
            descriptor: SPAN_UPDATE,
            ticks: 2_000_100,
        },
        Event::Log {
            descriptor: LOG_LOADED,
            ticks: 2_000_150,
            message: "level 3 loaded",
        },
        Event::Instant {
            descriptor: INSTANT_HITCH,
            ticks: 2_000_180,
        },
        Event::SpanEnd {
            descriptor: SPAN_UPDATE,
            ticks: 2_000_200,
        },
        Event::MetricFloat {
            descriptor: METRIC_FPS,
            ticks: 2_000_300,
            value: 59.5,
        },
        Event::MetricInt {
            descriptor: METRIC_MEMORY,
            ticks: 2_000_310,
            value: -1,
        },
        Event::Extension {
            kind: 3,
            bytes: b"future",
        },
        Event::SpanEnd {
            descriptor: SPAN_FRAME,
            ticks: 2_000_400,
        },
    ]
}

fn payload() -> Vec<u8> {
    let mut events_bytes = Vec::new();
    for e in events() {
        encode_event(&e, &mut events_bytes);
    }
    PayloadParts {
        descriptors: descriptors(),
        open_spans: vec![(SPAN_FRAME, 1_999_000)],
        events: &events_bytes,
    }
    .encode()
}

fn header(codec: Codec) -> BlockHeader {
    BlockHeader {
        codec,
        stream_id: [0x22; 16],
        process_id: [0x11; 16],
        sequence: 3,
        begin_ticks: 1_999_000,
        end_ticks: 2_000_400,
        calibration_ticks: 2_000_500,
        calibration_time: 1_700_000_000_000_333_500,
        event_count: events().len() as u32,
    }
}

#[test]
fn messages_match_their_golden_vectors_and_decode_back() {
    let process = process();
    golden("process.bin", &process.encode());
    assert_eq!(Process::decode(&process.encode()), Ok(process));

    let stream = stream();
    golden("stream.bin", &stream.encode());
    assert_eq!(Stream::decode(&stream.encode()), Ok(stream));

    let payload = payload();
    golden("block-payload.bin", &payload);
    let block = encode_block(&header(Codec::None), &payload);
    golden("block.bin", &block);

    let (decoded_header, decoded_payload) = decode_block(&block).expect("decodes");
    assert_eq!(decoded_header, header(Codec::None));
    assert_eq!(decoded_payload, payload);
    let parsed = Payload::parse(&decoded_payload).expect("parses");
    assert_eq!(parsed.open_spans, vec![(SPAN_FRAME, 1_999_000)]);
    assert_eq!(parsed.descriptors.len(), 6);
    assert_eq!(parsed.descriptors[&LOG_LOADED], descriptors()[2]);
    let events: Vec<Event<'_>> = parsed.events().collect::<Result<_, _>>().expect("events");
    assert_eq!(events, self::events());
    assert_eq!(parsed.event_count, events.len());
}

#[test]
fn lz4_blocks_inflate_to_the_same_payload() {
    // LZ4 output is not canonical (compressors differ): an LZ4 block is
    // checked by what it inflates to.
    let payload = payload();
    let block = encode_block(&header(Codec::Lz4), &payload);
    let (h, inflated) = decode_block(&block).expect("decodes");
    assert_eq!(h.codec, Codec::Lz4);
    assert_eq!(inflated, payload);
    assert!(block.len() < encode_block(&header(Codec::None), &payload).len());
}

/// The decoder's answer for a block built from `payload`.
fn refusal(payload: &[u8]) -> String {
    let block = encode_block(&header(Codec::None), payload);
    let (_, payload) = decode_block(&block).expect("the frame is fine");
    Payload::parse(&payload).expect_err("refused").to_string()
}

fn with_events(open: Vec<(u64, i64)>, events: &[Event<'_>]) -> Vec<u8> {
    let mut bytes = Vec::new();
    for e in events {
        encode_event(e, &mut bytes);
    }
    PayloadParts {
        descriptors: descriptors(),
        open_spans: open,
        events: &bytes,
    }
    .encode()
}

#[test]
fn malformed_blocks_are_refused_with_the_reason() {
    let block = encode_block(&header(Codec::None), &payload());
    let err = |bytes: &[u8]| decode_block(bytes).expect_err("refused").to_string();

    assert!(
        err(&block[..block.len() - 1]).contains("payload"),
        "truncated"
    );
    let mut longer = block.clone();
    longer.push(0);
    assert!(err(&longer).contains("1 bytes after"), "{}", err(&longer));
    let mut magic = block.clone();
    magic[0] = b'X';
    assert!(err(&magic).contains("magic"));
    let mut version = block.clone();
    version[4] = 2;
    assert_eq!(
        err(&version),
        "block version: 2; this server reads version 1"
    );
    let mut codec = block.clone();
    codec[6] = 9;
    assert!(err(&codec).contains("unknown codec 9"));
    let mut lz4 = encode_block(&header(Codec::Lz4), &payload());
    let last = lz4.len() - 1;
    lz4[last] ^= 0xff;
    lz4.truncate(last - 3);
    assert!(decode_block(&lz4).is_err(), "corrupt LZ4 is refused");
    // A short LZ4 payload claiming a large size is refused before inflating.
    let mut claims = encode_block(&header(Codec::Lz4), &payload());
    let at = BLOCK_HEADER_LEN - 8;
    claims[at..at + 4].copy_from_slice(&(32u32 << 20).to_le_bytes());
    assert!(
        err(&claims).contains("cannot inflate from"),
        "{}",
        err(&claims)
    );

    // Payloads: every event must be whole, known and well nested.
    let end_update = Event::SpanEnd {
        descriptor: SPAN_UPDATE,
        ticks: 5,
    };
    assert!(refusal(&with_events(vec![], &[end_update])).contains("none is open"));
    assert!(
        refusal(&with_events(vec![(SPAN_FRAME, 1)], &[end_update])).contains("innermost"),
        "ends another span"
    );
    let unknown = Event::SpanBegin {
        descriptor: 0x9990,
        ticks: 1,
    };
    assert!(refusal(&with_events(vec![], &[unknown])).contains("not in the block"));
    let wrong_kind = Event::MetricInt {
        descriptor: LOG_LOADED,
        ticks: 1,
        value: 1,
    };
    assert!(refusal(&with_events(vec![], &[wrong_kind])).contains("not a Metric"));
    let mut cut = with_events(vec![], &[wrong_kind]);
    cut.truncate(cut.len() - 8);
    assert!(refusal(&cut).contains("cut short"), "{}", refusal(&cut));
    let mut bad_utf8 = with_events(
        vec![],
        &[Event::Log {
            descriptor: LOG_LOADED,
            ticks: 1,
            message: "ok",
        }],
    );
    let at = bad_utf8.len() - 8;
    bad_utf8[at] = 0xff;
    assert!(refusal(&bad_utf8).contains("UTF-8"));
    let deep: Vec<Event<'_>> = (0..1025)
        .map(|t| Event::SpanBegin {
            descriptor: SPAN_FRAME,
            ticks: t,
        })
        .collect();
    assert!(refusal(&with_events(vec![], &deep)).contains("deeper"));
}

#[test]
fn process_and_stream_messages_refuse_bad_bytes() {
    let process = process().encode();
    assert!(Process::decode(&process[..process.len() - 2]).is_err());
    let mut kind = stream().encode();
    kind[6] = 9;
    assert_eq!(
        Stream::decode(&kind).expect_err("refused").to_string(),
        "stream kind: unknown kind 9"
    );
    let mut utf8 = stream().encode();
    // The name "main" follows magic, version, kind, two ids, the thread id and its length.
    utf8[4 + 2 + 2 + 32 + 8 + 4] = 0xff;
    assert!(
        Stream::decode(&utf8)
            .expect_err("refused")
            .to_string()
            .contains("UTF-8")
    );
}
