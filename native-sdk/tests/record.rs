//! Events recorded through the public API, collected and decoded back with
//! the strict decoder. One test: the buffers are the process's.

use std::collections::HashMap;

use framelake_native_format::{self as format, Event, Payload, Process, Stream, StreamKind};
use framelake_sdk::collect::{Collector, Message};
use framelake_sdk::{Descriptor, DescriptorKind};

static UPDATE: Descriptor = Descriptor {
    kind: DescriptorKind::Span,
    level: 0,
    line: 10,
    name: "update",
    target: "game",
    file: "game.rs",
    unit: "",
};

/// A block as the test sees it: sequence, open spans, events.
pub(crate) type Block = (u64, Vec<(u64, i64)>, Vec<String>);

/// What a batch of messages says, decoded: streams by id, and each block's
/// stream, open spans and events (owned).
#[derive(Default)]
pub(crate) struct Decoded {
    processes: usize,
    streams: HashMap<format::Id, Stream>,
    blocks: Vec<(format::Id, Block)>,
    /// The descriptors the blocks carried, by id.
    pub(crate) descriptors: HashMap<u64, format::Descriptor>,
}

impl Decoded {
    /// The descriptor named `name` (there must be one).
    pub(crate) fn named(&self, name: &str) -> &format::Descriptor {
        let mut named = self.descriptors.values().filter(|d| d.name == name);
        let d = named.next().expect("a descriptor of that name");
        assert!(named.next().is_none(), "one descriptor named {name}");
        d
    }
}

pub(crate) fn decode(messages: &[Message], into: &mut Decoded) {
    for m in messages {
        match m {
            Message::Process(b) => {
                Process::decode(b).expect("process");
                into.processes += 1;
            }
            Message::Stream(b) => {
                let s = Stream::decode(b).expect("stream");
                into.streams.insert(s.stream_id, s);
            }
            Message::Block(b) => {
                let (header, payload) = format::decode_block(b).expect("block");
                assert!(
                    into.streams.contains_key(&header.stream_id),
                    "a stream is sent before its blocks"
                );
                let parsed = Payload::parse(&payload).expect("a valid payload");
                for d in parsed.descriptors.values() {
                    into.descriptors.insert(d.id, d.clone());
                }
                let events = parsed
                    .events()
                    .map(|e| {
                        let name = |id: u64| parsed.descriptors[&id].name.clone();
                        match e.expect("event") {
                            Event::SpanBegin { descriptor, .. } => {
                                format!("begin {}", name(descriptor))
                            }
                            Event::SpanEnd { descriptor, .. } => {
                                format!("end {}", name(descriptor))
                            }
                            Event::Frame { number, .. } => format!("frame {number}"),
                            Event::Log { message, .. } => format!("log {message}"),
                            Event::MetricFloat {
                                descriptor, value, ..
                            } => {
                                format!("{} {value}", name(descriptor))
                            }
                            other => format!("{other:?}"),
                        }
                    })
                    .collect();
                assert_eq!(parsed.event_count as u32, header.event_count);
                into.blocks.push((
                    header.stream_id,
                    (header.sequence, parsed.open_spans.clone(), events),
                ));
            }
        }
    }
}

pub(crate) fn thread_blocks(d: &Decoded, name: &str) -> Vec<Block> {
    d.blocks
        .iter()
        .filter(|(id, _)| d.streams[id].kind == StreamKind::Thread && d.streams[id].name == name)
        .map(|(_, block)| block.clone())
        .collect()
}

pub(crate) fn events_of(d: &Decoded, kind: StreamKind) -> Vec<String> {
    d.blocks
        .iter()
        .filter(|(id, _)| d.streams[id].kind == kind)
        .flat_map(|(_, (.., events))| events.clone())
        .collect()
}

#[test]
fn threads_record_and_the_collector_sends_self_contained_blocks() {
    let _one = super::recording();
    let mut collector = Collector::new(Process {
        process_id: [7; 16],
        exe: "test".into(),
        ..Process::default()
    });
    let mut decoded = Decoded::default();

    // A thread that begins a span, logs and measures, and goes idle inside the span.
    let (go_on, wait) = std::sync::mpsc::channel::<()>();
    let (parked, is_parked) = std::sync::mpsc::channel::<()>();
    let worker = std::thread::Builder::new()
        .name("worker".into())
        .spawn(move || {
            framelake_sdk::frame(1);
            framelake_sdk::span_begin(&UPDATE);
            let level = 3;
            framelake_sdk::info!("level {level} loaded");
            framelake_sdk::fmetric!("fps", "1/s", 59.5);
            parked.send(()).expect("parked");
            wait.recv().expect("go on");
            framelake_sdk::span_end(&UPDATE);
            {
                framelake_sdk::span_scope!("scoped");
            }
        })
        .expect("spawn");
    is_parked.recv().expect("parked");

    // Idle threads are flushed: what it published so far arrives.
    decode(&collector.collect(), &mut decoded);
    assert_eq!(decoded.processes, 1);
    let worker_blocks = thread_blocks(&decoded, "worker");
    assert_eq!(
        worker_blocks,
        vec![(
            0,
            vec![],
            vec!["frame 1".to_owned(), "begin update".to_owned()]
        )]
    );
    assert_eq!(events_of(&decoded, StreamKind::Log), ["log level 3 loaded"]);
    assert_eq!(events_of(&decoded, StreamKind::Metric), ["fps 59.5"]);

    // The next block carries the open span: it decodes on its own.
    go_on.send(()).expect("go on");
    worker.join().expect("worker");
    let mut next = Decoded {
        streams: decoded.streams.clone(),
        ..Decoded::default()
    };
    decode(&collector.collect(), &mut next);
    let blocks = thread_blocks(&next, "worker");
    assert_eq!(blocks.len(), 1, "{blocks:?}");
    let (sequence, open, events) = &blocks[0];
    assert_eq!(*sequence, 1);
    assert_eq!(open.len(), 1, "update was open");
    assert_eq!(events, &["end update", "begin scoped", "end scoped"]);
    assert_eq!(next.processes, 0, "the process is sent once");
    assert!(
        next.streams.len() == decoded.streams.len(),
        "no stream twice"
    );

    // A thread's buffer rolls over into new chunks; nothing is lost or reordered.
    let many = 20_000;
    std::thread::Builder::new()
        .name("busy".into())
        .spawn(move || {
            for _ in 0..many {
                framelake_sdk::span_begin(&UPDATE);
                framelake_sdk::span_end(&UPDATE);
            }
        })
        .expect("spawn")
        .join()
        .expect("busy");
    let mut busy = Decoded {
        streams: next.streams.clone(),
        ..Decoded::default()
    };
    decode(&collector.collect(), &mut busy);
    let events: Vec<String> = thread_blocks(&busy, "busy")
        .into_iter()
        .flat_map(|(.., e)| e)
        .collect();
    assert_eq!(events.len(), 2 * many);
    assert!(
        events
            .chunks(2)
            .all(|p| p == ["begin update", "end update"])
    );
    assert_eq!(framelake_sdk::dropped_events(), 0);
    // Ended threads are forgotten once taken: nothing more to send.
    let after: Vec<Message> = collector.collect();
    assert!(
        after.iter().all(|m| !matches!(m, Message::Block(_))),
        "{after:?}"
    );
}

static OTHER: Descriptor = Descriptor {
    name: "other",
    line: 11,
    ..UPDATE
};

/// Runs `steps` on a thread named `name`, collecting after each step: what
/// each collection sent of the thread.
pub(crate) fn stepwise(
    collector: &mut Collector,
    name: &str,
    steps: Vec<fn()>,
) -> (Vec<Block>, Decoded) {
    let (step, next) = std::sync::mpsc::channel::<fn()>();
    let (done, stepped) = std::sync::mpsc::channel::<()>();
    let thread = std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            for f in next {
                f();
                done.send(()).expect("stepped");
            }
        })
        .expect("spawn");
    let mut decoded = Decoded::default();
    for f in steps {
        step.send(f).expect("step");
        stepped.recv().expect("stepped");
        decode(&collector.collect(), &mut decoded);
    }
    drop(step);
    thread.join().expect("thread");
    (thread_blocks(&decoded, name), decoded)
}

#[test]
fn blocks_stay_well_nested_whatever_the_program_does() {
    let _one = super::recording();
    let mut collector = Collector::new(Process::default());
    let (blocks, _) = stepwise(
        &mut collector,
        "nesting",
        vec![
            || framelake_sdk::span_begin(&UPDATE),
            // A block inside a long span carries it (and its descriptor).
            || {
                framelake_sdk::span_scope!("scoped");
            },
            // An end without its begin is dropped; an end closes the spans
            // left open inside its own.
            || {
                framelake_sdk::span_end(&OTHER);
                framelake_sdk::span_begin(&OTHER);
                framelake_sdk::span_begin(&OTHER);
                framelake_sdk::span_end(&UPDATE);
            },
        ],
    );
    let owned = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let opens: Vec<usize> = blocks.iter().map(|(_, open, _)| open.len()).collect();
    let events: Vec<Vec<String>> = blocks.iter().map(|(.., e)| e.clone()).collect();
    assert_eq!(opens, [0, 1, 1]);
    assert_eq!(
        events,
        [
            owned(&["begin update"]),
            owned(&["begin scoped", "end scoped"]),
            owned(&[
                "begin other",
                "begin other",
                "end other",
                "end other",
                "end update"
            ]),
        ]
    );
}

#[test]
fn switched_off_at_run_time_nothing_is_recorded_and_spans_stay_whole() {
    let _one = super::recording();
    /// Switches recording back on, even when the test fails.
    struct On;
    impl Drop for On {
        fn drop(&mut self) {
            framelake_sdk::set_enabled(true);
        }
    }
    let _on = On;
    let mut collector = Collector::new(Process::default());
    let (blocks, decoded) = stepwise(
        &mut collector,
        "switched",
        vec![
            || {
                // Begun while on: it ends, though recording is off by then.
                let update = framelake_sdk::SpanGuard::begin(&UPDATE);
                framelake_sdk::set_enabled(false);
                assert!(!framelake_sdk::is_enabled());
                framelake_sdk::info!("hidden");
                framelake_sdk::fmetric!("hidden", "", 1.0);
                framelake_sdk::frame(9);
                framelake_sdk::span_begin(&OTHER);
                drop(update);
                framelake_sdk::set_enabled(true);
                framelake_sdk::info!("shown");
            },
            || {
                // Begun while off: nothing, though recording is on at its end.
                framelake_sdk::set_enabled(false);
                let other = framelake_sdk::SpanGuard::begin(&OTHER);
                framelake_sdk::set_enabled(true);
                drop(other);
                framelake_sdk::span_scope!("scoped");
            },
        ],
    );
    let events: Vec<String> = blocks.into_iter().flat_map(|(.., e)| e).collect();
    assert_eq!(
        events,
        ["begin update", "end update", "begin scoped", "end scoped"]
    );
    assert_eq!(events_of(&decoded, StreamKind::Log), ["log shown"]);
    assert!(events_of(&decoded, StreamKind::Metric).is_empty());
    assert_eq!(framelake_sdk::dropped_events(), 0, "off is not dropped");
}
