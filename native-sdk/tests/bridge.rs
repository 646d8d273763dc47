//! The `tracing` and `log` bridges: what was recorded through them reads
//! back as framelake spans and logs.

use framelake_native_format::{DescriptorKind, Process, StreamKind};
use framelake_sdk::collect::{Collector, Message};
use tracing_subscriber::layer::SubscriberExt;

use crate::record::{Decoded, decode, events_of, thread_blocks};

/// Runs `f` on a thread named `name`, then collects: what was sent.
fn recorded(name: &str, f: impl FnOnce() + Send + 'static) -> Decoded {
    let mut collector = Collector::new(Process::default());
    std::thread::Builder::new()
        .name(name.into())
        .spawn(f)
        .expect("spawn")
        .join()
        .expect("thread");
    let mut decoded = Decoded::default();
    decode(&collector.collect(), &mut decoded);
    decoded
}

/// The log descriptors sent, as (line, level, target).
fn log_sites(decoded: &Decoded) -> Vec<(u32, u8, String)> {
    let mut sites: Vec<(u32, u8, String)> = decoded
        .descriptors
        .values()
        .filter(|d| d.kind == DescriptorKind::Log)
        .map(|d| {
            assert_eq!(d.file, file!());
            (d.line, d.level, d.target.clone())
        })
        .collect();
    sites.sort();
    sites
}

#[test]
fn tracing_spans_and_events_are_framelake_spans_and_logs() {
    let _one = super::recording();
    let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let at = std::sync::Arc::clone(&lines);
    let decoded = recorded("tracing", move || {
        let layer = framelake_sdk::tracing_bridge::Layer::new();
        let subscriber = tracing_subscriber::registry().with(layer);
        tracing::subscriber::with_default(subscriber, || {
            let mut at = at.lock().expect("lines");
            for level in 1..=2 {
                let load = tracing::info_span!("load", level);
                let _load = load.enter();
                at.push(line!() + 1);
                tracing::warn!(count = 2, level, "missing {} textures", 5 * level);
                let decode = tracing::debug_span!("decode");
                decode.in_scope(|| {
                    at.push(line!() + 1);
                    tracing::error!(path = "a.png", "bad");
                });
            }
            // Fields alone, and a span entered twice.
            at.push(line!() + 1);
            tracing::info!(fps = 59.5);
            let tick = tracing::trace_span!("tick");
            tick.in_scope(|| {});
            tick.in_scope(|| {});
        });
    });
    let events: Vec<String> = thread_blocks(&decoded, "tracing")
        .into_iter()
        .flat_map(|(.., e)| e)
        .collect();
    let load = ["begin load", "begin decode", "end decode", "end load"];
    let tick = ["begin tick", "end tick"];
    assert_eq!(events, [&load[..], &load, &tick, &tick].concat());
    assert_eq!(
        events_of(&decoded, StreamKind::Log),
        [
            "log missing 5 textures count=2 level=1",
            "log bad path=\"a.png\"",
            "log missing 10 textures count=2 level=2",
            "log bad path=\"a.png\"",
            "log fps=59.5",
        ]
    );
    let target = module_path!().to_owned();
    let lines = lines.lock().expect("lines");
    let mut expected = vec![
        (lines[0], 2, target.clone()),
        (lines[1], 1, target.clone()),
        (lines[4], 3, target.clone()),
    ];
    expected.sort();
    assert_eq!(
        log_sites(&decoded),
        expected,
        "one descriptor per call site"
    );
}

#[test]
fn log_records_are_framelake_logs() {
    let _one = super::recording();
    let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let at = std::sync::Arc::clone(&lines);
    let decoded = recorded("log", move || {
        // The process's only logger (this test binary installs no other).
        framelake_sdk::log_bridge::init(log::LevelFilter::Debug).expect("first logger");
        let mut at = at.lock().expect("lines");
        for region in ["eu-1", "us-2"] {
            at.push(line!() + 1);
            log::info!(target: "game::net", "connected to {region}");
        }
        at.push(line!() + 1);
        log::warn!("slow");
        log::trace!("below the level");
    });
    assert_eq!(
        events_of(&decoded, StreamKind::Log),
        ["log connected to eu-1", "log connected to us-2", "log slow"]
    );
    let lines = lines.lock().expect("lines");
    assert_eq!(lines[0], lines[1], "one call site");
    assert_eq!(
        log_sites(&decoded),
        [
            (lines[0], 3, "game::net".to_owned()),
            (lines[2], 2, module_path!().to_owned()),
        ],
        "one descriptor per call site"
    );

    // The sending thread's own dependencies log too (ureq, through `log`):
    // that is not recorded, or each post would log more to post.
    let (endpoint, received) = crate::send::listener(|_| 200);
    let telemetry = framelake_sdk::send::Telemetry::start(
        framelake_sdk::send::this_process(vec![]),
        crate::send::config(endpoint),
    );
    std::thread::spawn(|| log::info!("through the sender"))
        .join()
        .expect("thread");
    std::thread::sleep(std::time::Duration::from_millis(100));
    assert_eq!(telemetry.shutdown().refused, 0);
    let messages: Vec<Message> = received
        .lock()
        .expect("received")
        .iter()
        .map(|(path, body)| match path.as_str() {
            "/v1/native/process" => Message::Process(body.clone()),
            "/v1/native/stream" => Message::Stream(body.clone()),
            _ => Message::Block(body.clone()),
        })
        .collect();
    let mut sent = Decoded::default();
    decode(&messages, &mut sent);
    assert_eq!(
        events_of(&sent, StreamKind::Log),
        ["log through the sender"]
    );
}
