//! Batch sampling as the server sees it: which thread blocks arrive, what
//! they hold, and what was counted as dropped.

use std::collections::{BTreeSet, HashMap};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use framelake_native_format::{
    self as format, BlockHeader, Event, Payload, Process, Stream, StreamKind,
};
use framelake_sdk::collect::{Collector, Dropped, FramePolicy, Message, Sampling};
use framelake_sdk::send::{Config, Telemetry, this_process};
use framelake_sdk::{Descriptor, DescriptorKind};

const fn descriptor(kind: DescriptorKind, name: &'static str) -> Descriptor {
    Descriptor {
        kind,
        level: 0,
        line: 1,
        name,
        target: "sample",
        file: "sample.rs",
        unit: "",
    }
}

static FRAME: Descriptor = descriptor(DescriptorKind::Span, "frame");
static OUTER: Descriptor = descriptor(DescriptorKind::Span, "outer");
static INNER: Descriptor = descriptor(DescriptorKind::Span, "inner");
static HITCH: Descriptor = descriptor(DescriptorKind::Instant, "hitch");

/// A block as it arrived: its stream's name and kind, its header, the spans
/// it carries open, and its events as text with their ticks.
#[derive(Debug)]
struct Arrived {
    stream: String,
    kind: StreamKind,
    header: BlockHeader,
    open: Vec<String>,
    events: Vec<(String, i64)>,
}

/// Streams registered so far.
type Streams = HashMap<format::Id, Stream>;

/// Decodes messages in order (each block must decode on its own).
fn decode<'a>(
    streams: &mut Streams,
    bodies: impl IntoIterator<Item = (&'a str, &'a [u8])>,
) -> Vec<Arrived> {
    let mut blocks = Vec::new();
    for (path, body) in bodies {
        match path {
            "/v1/native/stream" => {
                let s = Stream::decode(body).expect("a stream");
                streams.insert(s.stream_id, s);
            }
            "/v1/native/block" => {
                let (header, payload) = format::decode_block(body).expect("a block");
                let stream = &streams[&header.stream_id];
                let parsed = Payload::parse(&payload).expect("decodes alone");
                let name = |id: u64| parsed.descriptors[&id].name.clone();
                let events = parsed
                    .events()
                    .map(|e| match e.expect("an event") {
                        Event::SpanBegin { descriptor, ticks } => {
                            (format!("begin {}", name(descriptor)), ticks)
                        }
                        Event::SpanEnd { descriptor, ticks } => {
                            (format!("end {}", name(descriptor)), ticks)
                        }
                        Event::Frame { number, ticks } => (format!("frame {number}"), ticks),
                        Event::Instant { descriptor, ticks } => {
                            (format!("instant {}", name(descriptor)), ticks)
                        }
                        Event::Log { message, ticks, .. } => (format!("log {message}"), ticks),
                        Event::MetricInt {
                            descriptor,
                            value,
                            ticks,
                        } => (format!("{} {value}", name(descriptor)), ticks),
                        other => panic!("unexpected {other:?}"),
                    })
                    .collect();
                blocks.push(Arrived {
                    stream: stream.name.clone(),
                    kind: stream.kind,
                    header,
                    open: parsed.open_spans.iter().map(|&(id, _)| name(id)).collect(),
                    events,
                });
            }
            _ => {}
        }
    }
    blocks
}

fn collected(streams: &mut Streams, messages: &[Message]) -> Vec<Arrived> {
    decode(streams, messages.iter().map(|m| (m.path(), m.body())))
}

fn of<'a>(blocks: &'a [Arrived], stream: &str) -> Vec<&'a Arrived> {
    blocks.iter().filter(|b| b.stream == stream).collect()
}

fn spin(d: Duration) {
    let until = Instant::now() + d;
    while Instant::now() < until {
        std::hint::spin_loop();
    }
}

/// The policy as documented, over the frames' durations: slow frames.
fn slow_frames(durations: &[i64], policy: &FramePolicy) -> BTreeSet<u64> {
    let mut average: Option<f64> = None;
    let weight = 2.0 / (f64::from(policy.average_frames) + 1.0);
    let mut slow = BTreeSet::new();
    for (n, &d) in durations.iter().enumerate() {
        let d = d as f64;
        if average.is_some_and(|a| d > policy.slow_ratio * a) {
            slow.insert(n as u64);
        }
        average = Some(average.map_or(d, |a| a + weight * (d - a)));
    }
    slow
}

#[test]
fn only_the_blocks_of_slow_and_marked_frames_arrive() {
    let _one = super::recording();
    let (endpoint, received) = super::send::listener(|_| 200);
    let policy = FramePolicy {
        slow_ratio: 3.0,
        average_frames: 20,
        heartbeat: 0.0,
        seed: 1,
        ring_bytes: 16 << 20,
    };
    let telemetry = Telemetry::start(
        this_process(vec![]),
        Config {
            sampling: Sampling::Frames(policy),
            ..super::send::config(endpoint)
        },
    );
    // The game thread marks 40 frames (10 and 25 slow) then frame 40 and
    // ends; a worker runs a job in each frame and marks an instant in 17.
    let frames = 40u64;
    let (to_worker, jobs) = mpsc::channel::<u64>();
    let (job_done, wait_job) = mpsc::channel::<()>();
    let worker = std::thread::Builder::new()
        .name("worker".into())
        .spawn(move || {
            for n in jobs {
                {
                    framelake_sdk::span_scope!("job");
                    spin(Duration::from_micros(200));
                }
                if n == 17 {
                    framelake_sdk::instant(&HITCH);
                }
                job_done.send(()).expect("done");
            }
        })
        .expect("spawn");
    let game = std::thread::Builder::new()
        .name("game".into())
        .spawn(move || {
            let mut starts = Vec::new();
            for n in 0..frames {
                starts.push(framelake_sdk::ticks::now());
                framelake_sdk::frame(n);
                let _frame = framelake_sdk::SpanGuard::begin(&FRAME);
                to_worker.send(n).expect("job");
                wait_job.recv().expect("job done");
                let slow = n == 10 || n == 25;
                spin(Duration::from_millis(if slow { 60 } else { 2 }));
                framelake_sdk::info!("frame {n}");
                framelake_sdk::imetric!("frame.number", "", n as i64);
            }
            starts.push(framelake_sdk::ticks::now());
            framelake_sdk::frame(frames);
            starts
        })
        .expect("spawn");
    let starts = game.join().expect("game");
    let ended = framelake_sdk::ticks::now();
    worker.join().expect("worker");
    // Flushes: the game thread ended, so its frame 40 (only the marker,
    // one tick long) is judged too.
    let stats = telemetry.shutdown();
    let seen = received.lock().expect("seen").clone();
    let blocks = decode(
        &mut Streams::new(),
        seen.iter().map(|(p, b)| (p.as_str(), b.as_slice())),
    );

    let frame_of = |ticks: i64| starts.partition_point(|&s| s <= ticks) as u64 - 1;
    let metrics: Vec<&(String, i64)> = of(&blocks, "metrics")
        .into_iter()
        .flat_map(|b| b.events.iter())
        .collect();
    // Every frame's duration (sampled out or not), at its marker's tick: the
    // time from its marker to the next one, exactly.
    let durations_sent: Vec<(i64, i64)> = metrics
        .iter()
        .filter_map(|(m, ticks)| {
            let value = m.strip_prefix("frame.duration ")?;
            Some((*ticks, value.parse().expect("ticks")))
        })
        .collect();
    assert_eq!(durations_sent.len(), frames as usize);
    for (n, &(at, duration)) in durations_sent.iter().enumerate() {
        assert_eq!(frame_of(at), n as u64);
        match durations_sent.get(n + 1) {
            Some(&(next, _)) => assert_eq!(duration, next - at, "frame {n}"),
            // The last frame ends at the marker of frame 40, taken between
            // the start the test noted and the thread's end.
            None => assert!(
                (starts[frames as usize]..=ended).contains(&(at + duration)),
                "frame {n}"
            ),
        }
    }

    // The frames the policy keeps, from the durations it was given (the
    // test's own clock readings would differ by any preemption between a
    // reading and the marker).
    let durations: Vec<i64> = durations_sent.iter().map(|&(_, d)| d).collect();
    let slow = slow_frames(&durations, &policy);
    assert!(slow.contains(&10) && slow.contains(&25), "{slow:?}");
    let mut expected = slow.clone();
    expected.insert(17);

    let mut arrived = 0;
    for thread in ["game", "worker"] {
        let mut kept = BTreeSet::new();
        for b in of(&blocks, thread) {
            assert_eq!(b.kind, StreamKind::Thread);
            let (first, last) = (b.events[0].1, b.events[b.events.len() - 1].1);
            let n = frame_of(first);
            assert_eq!(frame_of(last), n, "{thread}: a block is one frame's");
            assert_eq!((b.header.begin_ticks, b.header.end_ticks), (first, last));
            assert_eq!(b.header.sequence, n, "{thread}: gaps are dropped blocks");
            assert!(b.open.is_empty(), "no span crosses a frame here");
            let names: Vec<&str> = b.events.iter().map(|(e, _)| e.as_str()).collect();
            let expected_events: &[&str] = match (thread, n) {
                ("game", _) => &[&format!("frame {n}"), "begin frame", "end frame"],
                (_, 17) => &["begin job", "end job", "instant hitch"],
                _ => &["begin job", "end job"],
            };
            assert_eq!(names, expected_events, "{thread} frame {n}");
            assert!(kept.insert(n), "{thread}: one block per frame");
        }
        assert_eq!(kept, expected, "{thread}: the slow and the marked frames");
        arrived += kept.len() as u64;
    }
    // Blocks cut: one per frame per thread, and the game's frame 40.
    assert_eq!(
        stats.sampled_out_blocks,
        2 * frames + 1 - arrived,
        "{stats:?}"
    );
    assert_eq!(
        (
            stats.ring_dropped_blocks,
            stats.dropped_blocks,
            stats.refused
        ),
        (0, 0, 0)
    );
    let logs: Vec<String> = of(&blocks, "log")
        .iter()
        .flat_map(|b| b.events.iter().map(|(e, _)| e.clone()))
        .collect();
    let want_logs: Vec<String> = (0..frames).map(|n| format!("log frame {n}")).collect();
    assert_eq!(logs, want_logs, "logs are always sent");
    let numbers: Vec<&str> = metrics
        .iter()
        .filter(|(m, _)| m.starts_with("frame.number"))
        .map(|(m, _)| m.as_str())
        .collect();
    let want: Vec<String> = (0..frames).map(|n| format!("frame.number {n}")).collect();
    assert_eq!(numbers, want, "metrics are always sent");
    // A block's header spans its events, in whatever order they came.
    for b in of(&blocks, "metrics").into_iter().chain(of(&blocks, "log")) {
        let ticks = || b.events.iter().map(|&(_, t)| t);
        let range = (ticks().min(), ticks().max());
        assert_eq!(
            range,
            (Some(b.header.begin_ticks), Some(b.header.end_ticks))
        );
    }
    let game = of(&blocks, "game");
    for b in &game {
        let n = frame_of(b.events[0].1) as usize;
        assert_eq!(durations_sent[n].0, b.events[0].1, "at the marker's tick");
        if let Some(next) = game
            .iter()
            .find(|b| frame_of(b.events[0].1) as usize == n + 1)
        {
            assert_eq!(durations_sent[n].1, next.events[0].1 - b.events[0].1);
        }
    }
}

#[test]
fn before_frames_everything_is_sent_and_the_ring_is_bounded() {
    let _one = super::recording();
    let mut collector = Collector::with_sampling(
        Process::default(),
        Sampling::Frames(FramePolicy {
            heartbeat: 0.0,
            ring_bytes: 16_000,
            ..FramePolicy::default()
        }),
    );
    let mut streams = Streams::new();
    let spans = |n| {
        for _ in 0..n {
            framelake_sdk::span_begin(&INNER);
            framelake_sdk::span_end(&INNER);
        }
    };
    let run = |name: &str, f: Box<dyn FnOnce() + Send>| {
        std::thread::Builder::new()
            .name(name.into())
            .spawn(f)
            .expect("spawn")
            .join()
            .expect("thread");
    };

    // No frame marked yet: everything is sent.
    run("loader", Box::new(move || spans(100)));
    let blocks = collected(&mut streams, &collector.collect());
    let loader = of(&blocks, "loader");
    assert_eq!(loader.len(), 1);
    assert_eq!(loader[0].events.len(), 200);

    // Frame 0 holds 4002 events (64 KB) when the ring takes 16 KB: they
    // are dropped undecided. Frame 1 is marked: its block arrives, and
    // carries the span begun in frame 0.
    let (go_on, wait) = mpsc::channel::<()>();
    let (parked, is_parked) = mpsc::channel::<()>();
    let game = std::thread::Builder::new()
        .name("game2".into())
        .spawn(move || {
            framelake_sdk::frame(0);
            framelake_sdk::span_begin(&OUTER);
            spans(2000);
            parked.send(()).expect("parked");
            wait.recv().expect("go on");
            framelake_sdk::frame(1);
            framelake_sdk::instant(&HITCH);
            framelake_sdk::span_end(&OUTER);
            framelake_sdk::frame(2);
        })
        .expect("spawn");
    is_parked.recv().expect("parked");
    assert!(of(&collected(&mut streams, &collector.collect()), "game2").is_empty());
    assert_eq!(
        collector.dropped(),
        Dropped {
            sampled_out: 0,
            ring_full: 1
        }
    );
    go_on.send(()).expect("go on");
    game.join().expect("game");
    let blocks = collected(&mut streams, &collector.collect());
    let game = of(&blocks, "game2");
    assert_eq!(game.len(), 1, "{blocks:?}");
    let b = game[0];
    assert_eq!(b.header.sequence, 1, "block 0 was dropped");
    assert_eq!(b.open, ["outer"]);
    let names: Vec<&str> = b.events.iter().map(|(e, _)| e.as_str()).collect();
    assert_eq!(names, ["frame 1", "instant hitch", "end outer"]);
    assert!(
        b.header.begin_ticks < b.events[0].1,
        "the block begins with the span it carries"
    );
    // Frame 2 (the thread's last) is judged when the thread ends: not kept.
    assert_eq!(
        collector.dropped(),
        Dropped {
            sampled_out: 1,
            ring_full: 1
        }
    );

    // Frames ended with their thread: what comes next is sent.
    run("after", Box::new(move || spans(3)));
    let blocks = collected(&mut streams, &collector.collect());
    assert_eq!(of(&blocks, "after")[0].events.len(), 6);
}
