//! Native SDK logs and metrics in `log_entries` and `measures`, next to OTLP
//! ones: sent by the SDK's own thread to the real receiver, read pending
//! (decoded on the fly) and materialized.

use std::sync::Arc;
use std::time::{Duration, Instant};

use framelake_lake::materialize::{MaterializeConfig, Materializer};
use framelake_lake::tenancy::Tenancy;
use framelake_query::QueryLimits;
use framelake_sdk::{Descriptor, DescriptorKind};
use serde_json::json;

use crate::Stack;

static LOADED: Descriptor = Descriptor {
    kind: DescriptorKind::Log,
    level: 2,
    line: 42,
    name: "level {} loaded in {} ms",
    target: "game::levels",
    file: "src/levels.rs",
    unit: "",
};

static FRAME_TIME: Descriptor = Descriptor {
    kind: DescriptorKind::Metric,
    level: 0,
    line: 7,
    name: "frame_time",
    target: "game::loop",
    file: "src/loop.rs",
    unit: "ms",
};

static ENTITIES: Descriptor = Descriptor {
    kind: DescriptorKind::Metric,
    level: 0,
    line: 8,
    name: "entities",
    target: "game::loop",
    file: "src/loop.rs",
    unit: "{entity}",
};

#[tokio::test(flavor = "multi_thread")]
async fn native_logs_and_metrics_are_rows_of_the_event_views() {
    let stack = Stack::embedded(Tenancy::open(), QueryLimits::default()).await;
    let before = framelake_lake::host::now_nanos();
    let telemetry = framelake_sdk::send::Telemetry::start(
        framelake_sdk::send::this_process(vec![("service.name".into(), "space-game".into())]),
        framelake_sdk::send::Config {
            endpoint: stack.ingest_url.clone(),
            interval: Duration::from_millis(20),
            ..Default::default()
        },
    );
    std::thread::spawn(|| {
        framelake_sdk::log(&LOADED, format_args!("level {} loaded in {} ms", 3, 250));
        framelake_sdk::float_metric(&FRAME_TIME, 16.5);
        framelake_sdk::int_metric(&ENTITIES, 1200);
    })
    .join()
    .expect("game thread");
    let logs = "SELECT service_name, severity_number, severity_text, body, scope_name, \
                attr(attributes, 'code.file.path') AS file, attr_int(attributes, 'code.line.number') AS line, \
                attr(resource_attributes, 'service.name') AS service, arrow_cast(time, 'Int64') AS time_ns FROM log_entries";
    let started = Instant::now();
    while stack.rows(logs).await.is_empty() {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the log arrived"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let measures =
        "SELECT name, unit, type, value, int_value, scope_name FROM measures ORDER BY name";
    while stack.rows(measures).await.len() < 2 {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the metrics arrived"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(telemetry);
    let after = framelake_lake::host::now_nanos();

    let check = |stage: &str, log: &[serde_json::Value], metrics: &[serde_json::Value]| {
        assert_eq!(log.len(), 1, "{stage}: {log:?}");
        let row = &log[0];
        assert_eq!(row["service_name"], "space-game", "{stage}");
        assert_eq!(row["severity_number"], 13, "{stage}: warn");
        assert_eq!(row["severity_text"], "WARN", "{stage}");
        assert_eq!(row["body"], "level 3 loaded in 250 ms", "{stage}");
        assert_eq!(row["scope_name"], "game::levels", "{stage}");
        assert_eq!(row["file"], "src/levels.rs", "{stage}");
        assert_eq!(row["line"], 42, "{stage}");
        assert_eq!(row["service"], "space-game", "{stage}");
        assert_eq!(
            metrics,
            [
                json!({"name": "entities", "unit": "{entity}", "type": "gauge", "value": 1200.0, "int_value": 1200, "scope_name": "game::loop"}),
                json!({"name": "frame_time", "unit": "ms", "type": "gauge", "value": 16.5, "int_value": null, "scope_name": "game::loop"}),
            ],
            "{stage}"
        );
    };
    let (log, metrics) = (stack.rows(logs).await, stack.rows(measures).await);
    check("pending", &log, &metrics);
    // Its time, from ticks by the process's clock: within the test's run.
    let time = log[0]["time_ns"].as_i64().expect("nanoseconds");
    assert!(
        before <= time && time <= after,
        "{before} <= {time} <= {after}"
    );

    let done = Materializer::new(Arc::clone(&stack.lake), MaterializeConfig::default())
        .pass()
        .await
        .expect("materializes");
    assert!(done.rows >= 3, "{done:?}");
    check(
        "materialized",
        &stack.rows(logs).await,
        &stack.rows(measures).await,
    );
}

/// A native client without the SDK (as the C++ one will be): its messages
/// encoded with the format module, ticks at 1 GHz from `START`.
mod client {
    use framelake_native_format::{
        self as format, BlockHeader, Codec, Descriptor, DescriptorKind, Event, PayloadParts,
        Process, Stream, StreamKind,
    };

    /// The processes' start, Unix nanoseconds (tick 0).
    pub(crate) const START: i64 = 1_700_000_000_000_000_000;

    pub(crate) fn process(id: u8, service: &str) -> Process {
        Process {
            process_id: [id; 16],
            parent_process_id: [0; 16],
            start_time: START,
            start_ticks: 0,
            tick_frequency: 1_000_000_000,
            exe: "/opt/game/bin/game".into(),
            username: "player".into(),
            computer: "rig".into(),
            distro: "linux".into(),
            cpu_brand: "test cpu".into(),
            properties: vec![("service.name".into(), service.into())],
        }
    }

    pub(crate) fn thread(process: &Process, id: u8, name: &str) -> Stream {
        Stream {
            kind: StreamKind::Thread,
            stream_id: [id; 16],
            process_id: process.process_id,
            thread_id: u64::from(id),
            name: name.into(),
            properties: Vec::new(),
        }
    }

    pub(crate) fn span(id: u64, name: &str, line: u32) -> Descriptor {
        Descriptor {
            id,
            kind: DescriptorKind::Span,
            level: 0,
            line,
            name: name.into(),
            target: "game::loop".into(),
            file: "src/loop.rs".into(),
            unit: String::new(),
        }
    }

    /// The event beginning a span of descriptor `d`.
    pub(crate) fn begin(d: &Descriptor, ticks: i64) -> Event<'static> {
        Event::SpanBegin {
            descriptor: d.id,
            ticks,
        }
    }

    /// The event ending the innermost open span (of descriptor `d`).
    pub(crate) fn end(d: &Descriptor, ticks: i64) -> Event<'static> {
        Event::SpanEnd {
            descriptor: d.id,
            ticks,
        }
    }

    /// A block of a stream: its descriptors, the spans open at its start
    /// and its events; cut at its last event, one tick per nanosecond.
    pub(crate) fn block(
        stream: &Stream,
        sequence: u64,
        descriptors: Vec<Descriptor>,
        open_spans: Vec<(u64, i64)>,
        events: &[Event<'_>],
    ) -> Vec<u8> {
        block_calibrated(stream, sequence, descriptors, open_spans, events, None)
    }

    /// As [`block`], with the nanoseconds since the start read when the block
    /// was cut (the calibration point a process without a frequency is read with).
    pub(crate) fn block_calibrated(
        stream: &Stream,
        sequence: u64,
        descriptors: Vec<Descriptor>,
        open_spans: Vec<(u64, i64)>,
        events: &[Event<'_>],
        cut_at_nanos: Option<i64>,
    ) -> Vec<u8> {
        let mut bytes = Vec::new();
        for e in events {
            format::encode_event(e, &mut bytes);
        }
        let ticks = |e: &Event<'_>| match *e {
            Event::SpanBegin { ticks, .. }
            | Event::SpanEnd { ticks, .. }
            | Event::Frame { ticks, .. }
            | Event::Instant { ticks, .. }
            | Event::Log { ticks, .. }
            | Event::MetricInt { ticks, .. }
            | Event::MetricFloat { ticks, .. } => ticks,
            Event::Extension { .. } => 0,
        };
        let end = events.iter().map(ticks).max().unwrap_or(0);
        let begin = open_spans
            .iter()
            .map(|&(_, t)| t)
            .chain(events.iter().map(ticks))
            .min()
            .unwrap_or(0);
        let header = BlockHeader {
            codec: Codec::Lz4,
            stream_id: stream.stream_id,
            process_id: stream.process_id,
            sequence,
            begin_ticks: begin,
            end_ticks: end,
            calibration_ticks: end,
            calibration_time: START + cut_at_nanos.unwrap_or(end),
            event_count: events.len() as u32,
        };
        let payload = PayloadParts {
            descriptors,
            open_spans,
            events: &bytes,
        }
        .encode();
        format::encode_block(&header, &payload)
    }
}

/// `GET /api/v1/perfetto?{query}`, read back with Perfetto's protos
/// (`conformance/python/perfetto_slices.py`).
async fn perfetto(stack: &Stack, query: &str) -> serde_json::Value {
    let response = stack
        .client
        .get(format!("{}/api/v1/perfetto?{query}", stack.query_url))
        .send()
        .await
        .expect("query listener answers");
    assert_eq!(response.status(), 200, "{query}");
    let file = tempfile::NamedTempFile::new().expect("temp file");
    std::fs::write(file.path(), response.bytes().await.expect("trace")).expect("written");
    let script = framelake_testkit::workspace_root().join("conformance/python/perfetto_slices.py");
    let output = std::process::Command::new(framelake_testkit::venv_python())
        .arg(script)
        .arg(file.path())
        .output()
        .expect("python runs (scripts/test makes the venv)");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("JSON")
}

impl Stack {
    /// Posts a native message; panics unless it is stored.
    async fn native(&self, path: &str, body: Vec<u8>) {
        let response = self
            .client
            .post(format!("{}/v1/native/{path}", self.ingest_url))
            .header("content-type", "application/x-framelake-native")
            .body(body)
            .send()
            .await
            .expect("receiver answers");
        assert_eq!(response.status(), 200, "{:?}", response.text().await);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn thread_spans_are_decoded_on_demand_and_cached() {
    use framelake_native_format::Event;
    let stack = Stack::embedded(Tenancy::open(), QueryLimits::default()).await;
    let (game, loader) = (
        client::process(1, "space-game"),
        client::process(2, "loader"),
    );
    let (main, io) = (
        client::thread(&game, 11, "main"),
        client::thread(&loader, 21, "io"),
    );
    let (frame, update, render, draw) = (
        client::span(8, "frame", 10),
        client::span(16, "update", 20),
        client::span(24, "render", 30),
        client::span(32, "draw", 40),
    );
    let (begin, end) = (client::begin, client::end);
    // Block 0 ends inside `render`, block 1 starts with it open: each block
    // reports the spans it holds the end of.
    let first = client::block(
        &main,
        0,
        vec![frame.clone(), update.clone(), render.clone()],
        vec![],
        &[
            begin(&frame, 0),
            begin(&update, 100),
            end(&update, 400),
            begin(&render, 500),
        ],
    );
    let second = client::block(
        &main,
        1,
        vec![frame.clone(), render.clone(), draw.clone()],
        vec![(frame.id, 0), (render.id, 500)],
        &[
            begin(&draw, 600),
            end(&draw, 900),
            end(&render, 1_000),
            end(&frame, 2_000),
        ],
    );
    let io_block = client::block(
        &io,
        0,
        vec![client::span(8, "read", 50)],
        vec![],
        &[
            begin(&client::span(8, "read", 50), 10),
            end(&client::span(8, "read", 50), 60),
        ],
    );
    for (process, streams) in [(&game, vec![&main]), (&loader, vec![&io])] {
        stack.native("process", process.encode()).await;
        for s in streams {
            stack.native("stream", s.encode()).await;
        }
    }
    // The SDK's frame durations, in ticks, in the process's metric stream.
    let metrics = framelake_native_format::Stream {
        kind: framelake_native_format::StreamKind::Metric,
        name: "metrics".into(),
        ..client::thread(&game, 12, "")
    };
    stack.native("stream", metrics.encode()).await;
    let frame_duration = framelake_native_format::Descriptor {
        kind: framelake_sdk::DescriptorKind::Metric,
        name: "frame.duration".into(),
        unit: "ticks".into(),
        ..client::span(40, "", 0)
    };
    let frames = [(0, 2_000), (2_000, 16_000_000), (16_002_000, 40_000_000)];
    let frame_metrics: Vec<Event<'_>> = frames
        .iter()
        .map(|&(ticks, value)| Event::MetricInt {
            descriptor: frame_duration.id,
            ticks,
            value,
        })
        .collect();
    let frame_block = client::block(&metrics, 0, vec![frame_duration], vec![], &frame_metrics);
    for block in [first, second, io_block, frame_block] {
        stack.native("block", block).await;
    }

    let game_spans = "SELECT thread_name, service_name, name, depth, target, file, line, \
        arrow_cast(begin, 'Int64') - 1700000000000000000 AS b, \
        arrow_cast(\"end\", 'Int64') - 1700000000000000000 AS e, duration_ns \
        FROM thread_spans WHERE process_id = X'01010101010101010101010101010101' ORDER BY begin";
    let expected = vec![
        json!({"thread_name": "main", "service_name": "space-game", "name": "frame", "depth": 0, "target": "game::loop", "file": "src/loop.rs", "line": 10, "b": 0, "e": 2000, "duration_ns": 2000}),
        json!({"thread_name": "main", "service_name": "space-game", "name": "update", "depth": 1, "target": "game::loop", "file": "src/loop.rs", "line": 20, "b": 100, "e": 400, "duration_ns": 300}),
        json!({"thread_name": "main", "service_name": "space-game", "name": "render", "depth": 1, "target": "game::loop", "file": "src/loop.rs", "line": 30, "b": 500, "e": 1000, "duration_ns": 500}),
        json!({"thread_name": "main", "service_name": "space-game", "name": "draw", "depth": 2, "target": "game::loop", "file": "src/loop.rs", "line": 40, "b": 600, "e": 900, "duration_ns": 300}),
    ];
    assert_eq!(stack.rows(game_spans).await, expected, "pending blocks");
    let parents = "SELECT c.name AS child, p.name AS parent FROM thread_spans c \
        LEFT JOIN thread_spans p ON c.parent = p.id AND c.stream_id = p.stream_id \
        ORDER BY c.begin";
    let family = vec![
        json!({"child": "frame", "parent": null}),
        json!({"child": "read", "parent": null}),
        json!({"child": "update", "parent": "frame"}),
        json!({"child": "render", "parent": "frame"}),
        json!({"child": "draw", "parent": "render"}),
    ];
    assert_eq!(stack.rows(parents).await, family, "parents across blocks");

    // The slowest frames of a process, and where they are.
    assert_eq!(
        stack
            .rows(
                "SELECT service_name, arrow_cast(begin, 'Int64') - 1700000000000000000 AS b, \
                 arrow_cast(\"end\", 'Int64') - 1700000000000000000 AS e, duration_ns FROM frames \
                 WHERE process_id = X'01010101010101010101010101010101' ORDER BY duration_ns DESC LIMIT 2"
            )
            .await,
        vec![
            json!({"service_name": "space-game", "b": 16_002_000, "e": 56_002_000, "duration_ns": 40_000_000}),
            json!({"service_name": "space-game", "b": 2_000, "e": 16_002_000, "duration_ns": 16_000_000}),
        ]
    );
    assert_eq!(
        stack
            .rows("SELECT DISTINCT unit FROM measures WHERE name = 'frame.duration'")
            .await,
        vec![json!({"unit": "ns"})]
    );
    assert_eq!(
        stack
            .rows(
                "SELECT count(*) AS n FROM frames WHERE begin > \
                 arrow_cast(1700000000000010000, 'Timestamp(Nanosecond, Some(\"UTC\"))')"
            )
            .await,
        vec![json!({"n": 1})]
    );

    // The process's Perfetto trace, read with Perfetto's protos.
    let trace = perfetto(
        &stack,
        "process_id=01010101010101010101010101010101&begin=1700000000000000000&end=1700000000100000000",
    )
    .await;
    assert_eq!(trace["errors"], json!([]), "{trace}");
    let track = |name: &str| {
        trace["tracks"]
            .as_array()
            .expect("tracks")
            .iter()
            .find(|t| t["name"] == name)
            .unwrap_or_else(|| panic!("track {name}: {trace}"))
            .clone()
    };
    assert_eq!(track("space-game")["kind"], "process");
    let slices: Vec<(String, u64, u64, u64)> = track("main")["slices"]
        .as_array()
        .expect("slices")
        .iter()
        .map(|s| {
            let n = |k: &str| s[k].as_u64().expect("number");
            (
                s["name"].as_str().expect("name").to_owned(),
                n("ts") - 1_700_000_000_000_000_000,
                n("dur"),
                n("depth"),
            )
        })
        .collect();
    let slice = |name: &str, ts, dur, depth| (name.to_owned(), ts, dur, depth);
    assert_eq!(
        slices,
        [
            slice("frame", 0, 2000, 0),
            slice("update", 100, 300, 1),
            slice("render", 500, 500, 1),
            slice("draw", 600, 300, 2),
        ]
    );
    assert_eq!(track("main")["slices"][1]["args"]["target"], "game::loop");
    let frames = track("Frames")["slices"].clone();
    assert_eq!(frames.as_array().expect("frames").len(), 3, "{frames}");
    assert_eq!(frames[2]["dur"], 40_000_000);
    // The other process's thread is not in it.
    assert!(
        trace["tracks"]
            .as_array()
            .expect("tracks")
            .iter()
            .all(|t| t["name"] != "io")
    );
    // A range that ends before the draw began: the spans open then, cut nowhere.
    let early = perfetto(
        &stack,
        "process_id=01010101010101010101010101010101&begin=1700000000000000000&end=1700000000000000550",
    )
    .await;
    let names: Vec<&str> = early["tracks"]
        .as_array()
        .expect("tracks")
        .iter()
        .filter(|t| t["name"] == "main")
        .flat_map(|t| t["slices"].as_array().expect("slices"))
        .map(|s| s["name"].as_str().expect("name"))
        .collect();
    assert_eq!(names, ["frame", "update", "render"]);
    for (query, status) in [
        ("process_id=09090909090909090909090909090909", 404),
        ("process_id=0909", 400),
        ("begin=1", 400),
        (
            "process_id=01010101010101010101010101010101&begin=yesterday",
            400,
        ),
        (
            "process_id=01010101010101010101010101010101&begin=5&end=4",
            400,
        ),
        ("process_id=01010101010101010101010101010101&pid=4", 400),
    ] {
        let response = stack
            .client
            .get(format!("{}/api/v1/perfetto?{query}", stack.query_url))
            .send()
            .await
            .expect("query listener answers");
        assert_eq!(response.status(), status, "{query}");
        let body: serde_json::Value = response.json().await.expect("JSON error");
        assert!(body["error"].is_string(), "{query}: {body}");
    }

    // The scans cached what they read as partitions, in the background.
    let tenant: framelake_lake::ids::TenantId = "default".parse().expect("tenant");
    let started = Instant::now();
    loop {
        let cached = stack
            .lake
            .catalog
            .partitions(&tenant, Some("thread_spans"))
            .await
            .expect("catalog answers");
        if cached.iter().map(|p| p.row_count).sum::<u64>() == 5 {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "{cached:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(stack.rows(game_spans).await, expected, "cached");
    assert_eq!(stack.rows(parents).await, family, "cached");

    // Process and time filters reach the catalog and the Parquet reader.
    let count = |filter: &str| {
        let sql = format!("SELECT count(*) AS n FROM thread_spans WHERE {filter}");
        let stack = &stack;
        async move { stack.rows(&sql).await[0]["n"].clone() }
    };
    assert_eq!(
        count("process_id = X'02020202020202020202020202020202'").await,
        1
    );
    assert_eq!(
        count("process_id IN (X'02020202020202020202020202020202', X'09090909090909090909090909090909')").await,
        1
    );
    assert_eq!(
        count("begin >= arrow_cast(1700000000000000550, 'Timestamp(Nanosecond, Some(\"UTC\"))')")
            .await,
        1,
        "draw only"
    );
}

/// A process that sends no tick frequency gets one estimated per block, and
/// estimates differ: here the second block's puts `render` 3 ns before
/// `update` (the first block's) ends. The Perfetto trace still nests as the
/// thread did: `render` beside `update`, not inside it.
#[tokio::test(flavor = "multi_thread")]
async fn a_trace_nests_as_the_thread_did_when_block_clocks_disagree() {
    let stack = Stack::embedded(Tenancy::open(), QueryLimits::default()).await;
    let game = framelake_native_format::Process {
        tick_frequency: 0,
        ..client::process(3, "cpu-without-frequency")
    };
    let main = client::thread(&game, 31, "main");
    let (frame, update, render) = (
        client::span(8, "frame", 10),
        client::span(16, "update", 20),
        client::span(24, "render", 30),
    );
    let (begin, end) = (client::begin, client::end);
    // Block 0: 400 ticks in 400 ns. Block 1: 1000 ticks in 970 ns.
    let first = client::block(
        &main,
        0,
        vec![frame.clone(), update.clone()],
        vec![],
        &[begin(&frame, 0), begin(&update, 100), end(&update, 400)],
    );
    let second = client::block_calibrated(
        &main,
        1,
        vec![frame.clone(), render.clone()],
        vec![(frame.id, 0)],
        &[begin(&render, 410), end(&render, 900), end(&frame, 1_000)],
        Some(970),
    );
    stack.native("process", game.encode()).await;
    stack.native("stream", main.encode()).await;
    stack.native("block", first).await;
    stack.native("block", second).await;

    let of_game = "process_id = X'03030303030303030303030303030303'";
    let rows = stack
        .rows(&format!(
            "SELECT name, arrow_cast(begin, 'Int64') - 1700000000000000000 AS b, \
             arrow_cast(\"end\", 'Int64') - 1700000000000000000 AS e, depth \
             FROM thread_spans WHERE {of_game} ORDER BY begin, depth"
        ))
        .await;
    assert_eq!(
        rows,
        vec![
            json!({"name": "frame", "b": 0, "e": 970, "depth": 0}),
            json!({"name": "update", "b": 100, "e": 400, "depth": 1}),
            json!({"name": "render", "b": 397, "e": 873, "depth": 1}),
        ],
        "the second block's clock puts render's begin before update's end"
    );
    let trace = perfetto(
        &stack,
        "process_id=03030303030303030303030303030303&begin=1700000000000000000&end=1700000000000001000",
    )
    .await;
    assert_eq!(trace["errors"], json!([]), "{trace}");
    let slices: Vec<serde_json::Value> = trace["tracks"]
        .as_array()
        .expect("tracks")
        .iter()
        .filter(|t| t["name"] == "main")
        .flat_map(|t| t["slices"].as_array().expect("slices"))
        .map(|s| {
            json!({
                "name": s["name"],
                "b": s["ts"].as_i64().expect("ts") - 1_700_000_000_000_000_000,
                "dur": s["dur"],
                "depth": s["depth"],
            })
        })
        .collect();
    assert_eq!(
        slices,
        vec![
            json!({"name": "frame", "b": 0, "dur": 970, "depth": 0}),
            // Ends where its next sibling begins, 3 ns short of its own end.
            json!({"name": "update", "b": 100, "dur": 297, "depth": 1}),
            json!({"name": "render", "b": 397, "dur": 476, "depth": 1}),
        ]
    );
}

/// Native ingest takes a token with the write role and stores for its
/// tenant; the Perfetto export takes one with the read role and serves only
/// its tenant's processes.
#[tokio::test(flavor = "multi_thread")]
async fn native_ingest_and_perfetto_hold_tokens_and_tenants() {
    let stack = Stack::embedded(
        Tenancy::from_toml(crate::TOKENS).expect("tokens"),
        QueryLimits::default(),
    )
    .await;
    let game = client::process(1, "space-game");
    let main = client::thread(&game, 11, "main");
    let frame = client::span(8, "frame", 10);
    let block = client::block(
        &main,
        0,
        vec![frame.clone()],
        vec![],
        &[client::begin(&frame, 0), client::end(&frame, 1_000)],
    );
    let post = |path: &str, body: Vec<u8>, token: Option<&str>| {
        let mut request = stack
            .client
            .post(format!("{}/v1/native/{path}", stack.ingest_url))
            .header("content-type", "application/x-framelake-native")
            .body(body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        async move {
            let response = request.send().await.expect("receiver answers");
            response.status().as_u16()
        }
    };
    assert_eq!(post("process", game.encode(), None).await, 401);
    assert_eq!(post("process", game.encode(), Some("reader-a")).await, 403);
    assert_eq!(post("process", game.encode(), Some("nope")).await, 401);
    for (path, body) in [
        ("process", game.encode()),
        ("stream", main.encode()),
        ("block", block),
    ] {
        assert_eq!(post(path, body, Some("writer-a")).await, 200, "{path}");
    }

    let export = |token: Option<&str>, org: Option<&str>| {
        let mut request = stack.client.get(format!(
            "{}/api/v1/perfetto?process_id={}",
            stack.query_url,
            hex(&[1; 16])
        ));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(org) = org {
            request = request.header("x-scope-orgid", org);
        }
        async move {
            let response = request.send().await.expect("query listener answers");
            let status = response.status().as_u16();
            (status, response.bytes().await.expect("body"))
        }
    };
    let (status, trace) = export(Some("reader-a"), None).await;
    assert_eq!(status, 200);
    assert!(
        trace.windows(5).any(|w| w == b"frame"),
        "the trace names the span"
    );
    assert_eq!(export(None, None).await.0, 401);
    assert_eq!(export(Some("writer-a"), None).await.0, 403);
    // Tenant b has no such process; it cannot ask for tenant a's.
    assert_eq!(export(Some("reader-b"), None).await.0, 404);
    assert_eq!(export(Some("reader-b"), Some("a")).await.0, 403);
    let (rows, _) = stack
        .rows_and_warnings(
            "SELECT count(*) AS n FROM processes",
            &[("authorization", "Bearer reader-b")],
        )
        .await;
    assert_eq!(rows, vec![serde_json::json!({ "n": 0 })]);
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
