//! The native protocol's endpoints over real sockets: the SDK's sending
//! thread end to end, registrations before blocks, content ids, and
//! refusals with the status the protocol gives them.

use std::time::{Duration, Instant};

use framelake_lake::catalog::Source;
use framelake_lake::ids::{BlockKind, ProcessId, StreamId, TenantId};
use framelake_native_format::{
    self as format, BlockHeader, Codec, Descriptor, DescriptorKind, Event, PayloadParts, Process,
    Stream, StreamKind,
};
use framelake_receiver::Limits;
use reqwest::StatusCode;

use crate::TestServer;

static WORK: framelake_sdk::Descriptor = framelake_sdk::Descriptor {
    kind: DescriptorKind::Span,
    level: 0,
    line: 7,
    name: "work",
    target: "native_test",
    file: "native.rs",
    unit: "",
};

async fn post(
    server: &TestServer,
    path: &str,
    tenant: &str,
    body: Vec<u8>,
) -> (StatusCode, String) {
    let response = reqwest::Client::new()
        .post(server.url(path))
        .header("content-type", "application/x-framelake-native")
        .header("x-scope-orgid", tenant)
        .body(body)
        .send()
        .await
        .expect("sent");
    (response.status(), response.text().await.expect("body"))
}

fn tenant(name: &str) -> TenantId {
    name.parse().expect("tenant")
}

#[tokio::test(flavor = "multi_thread")]
async fn the_sdk_sends_to_the_receiver_and_everything_is_indexed() {
    let server = TestServer::start().await;
    let process = framelake_sdk::send::this_process(vec![("service.name".into(), "game".into())]);
    let process_id = ProcessId(process.process_id);
    let telemetry = framelake_sdk::send::Telemetry::start(
        process,
        framelake_sdk::send::Config {
            endpoint: format!("http://{}", server.http),
            interval: Duration::from_millis(20),
            ..Default::default()
        },
    );
    std::thread::Builder::new()
        .name("game-main".into())
        .spawn(|| {
            for frame in 0..10 {
                framelake_sdk::frame(frame);
                framelake_sdk::span_begin(&WORK);
                framelake_sdk::span_end(&WORK);
            }
        })
        .expect("spawn")
        .join()
        .expect("thread");
    let t = tenant("default");
    let started = Instant::now();
    // The thread's blocks, and the metric stream's (each completed
    // frame's duration).
    let blocks = loop {
        let (blocks, metrics): (Vec<_>, Vec<_>) = server
            .blocks("default")
            .await
            .into_iter()
            .partition(|b| b.kind == BlockKind::NativeThread);
        let events: u32 = blocks.iter().map(|b| b.event_count).sum();
        let frames: u32 = metrics.iter().map(|b| b.event_count).sum();
        if events >= 30 && frames >= 9 {
            assert!(metrics.iter().all(|b| b.kind == BlockKind::NativeMetric));
            assert_eq!(frames, 9, "9 frames completed");
            break blocks;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{events} events arrived: {blocks:?} {metrics:?} {:?}",
            telemetry.stats()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let stats = telemetry.stats();
    drop(telemetry);
    assert_eq!(stats.refused, 0, "{stats:?}");
    let process = server
        .lake
        .catalog
        .process(&t, &process_id)
        .await
        .expect("process");
    let process = process.expect("the process is registered");
    assert_eq!(process.source, Source::Native);
    assert_eq!(process.service_name, "game");
    let streams = server.lake.catalog.streams(&t).await.expect("streams");
    let thread = streams
        .iter()
        .find(|s| s.name == "game-main")
        .expect("the thread's stream");
    assert_eq!(thread.kind, BlockKind::NativeThread);
    assert!(
        blocks
            .iter()
            .all(|b| b.kind == BlockKind::NativeThread && b.stream_id == thread.stream_id)
    );
    assert_eq!(
        blocks.iter().map(|b| b.event_count).sum::<u32>(),
        30,
        "10 frames, 10 spans"
    );
    // Times from ticks: within this test's run.
    let now = framelake_lake::host::now_nanos();
    for b in &blocks {
        assert!(
            b.min_time <= b.max_time && b.max_time <= now + 1_000_000_000,
            "{b:?}"
        );
        assert!(b.min_time > now - 60_000_000_000, "{b:?}");
    }
    // Stored as sent: the block reads back and decodes.
    let payload = server.lake.read_block(&t, &blocks[0]).await.expect("reads");
    let (header, _) = format::decode_block(&payload).expect("a native block");
    assert_eq!(StreamId(header.stream_id), thread.stream_id);
}

fn block_of(process: &Process, stream: &Stream, events: &[Event<'_>], sequence: u64) -> Vec<u8> {
    let mut bytes = Vec::new();
    for e in events {
        format::encode_event(e, &mut bytes);
    }
    let payload = PayloadParts {
        descriptors: vec![Descriptor {
            id: 0x1000,
            kind: DescriptorKind::Span,
            level: 0,
            line: 1,
            name: "update".into(),
            target: "t".into(),
            file: "f.rs".into(),
            unit: String::new(),
        }],
        open_spans: vec![],
        events: &bytes,
    }
    .encode();
    format::encode_block(
        &BlockHeader {
            codec: Codec::Lz4,
            stream_id: stream.stream_id,
            process_id: process.process_id,
            sequence,
            begin_ticks: 2_000,
            end_ticks: 3_000,
            calibration_ticks: 1_000_000_000,
            calibration_time: process.start_time + 1_000_000_000,
            event_count: events.len() as u32,
        },
        &payload,
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn registrations_come_first_retries_count_once_and_bad_blocks_are_refused() {
    let server = TestServer::start().await;
    let process = Process {
        process_id: [3; 16],
        start_time: 1_700_000_000_000_000_000,
        start_ticks: 1_000,
        // Unknown: estimated from the block's calibration point (1 tick per ns).
        tick_frequency: 0,
        exe: "/games/bin/space.exe".into(),
        ..Process::default()
    };
    let stream = Stream {
        kind: StreamKind::Thread,
        stream_id: [4; 16],
        process_id: [3; 16],
        thread_id: 12,
        name: "render".into(),
        properties: vec![],
    };
    let events = [
        Event::SpanBegin {
            descriptor: 0x1000,
            ticks: 2_000,
        },
        Event::SpanEnd {
            descriptor: 0x1000,
            ticks: 3_000,
        },
    ];
    let block = block_of(&process, &stream, &events, 0);

    // Out of order: the stream needs its process, the block its stream.
    let (status, text) = post(&server, "/v1/native/block", "acme", block.clone()).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{text}");
    assert!(text.contains("not registered"), "{text}");
    let (status, _) = post(&server, "/v1/native/stream", "acme", stream.encode()).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(
        post(&server, "/v1/native/process", "acme", process.encode())
            .await
            .0,
        StatusCode::OK
    );
    assert_eq!(
        post(&server, "/v1/native/stream", "acme", stream.encode())
            .await
            .0,
        StatusCode::OK
    );
    // Another tenant does not see them.
    assert_eq!(
        post(&server, "/v1/native/block", "other", block.clone())
            .await
            .0,
        StatusCode::NOT_FOUND
    );

    // Stored once, however often it is sent.
    for _ in 0..2 {
        let (status, text) = post(&server, "/v1/native/block", "acme", block.clone()).await;
        assert_eq!(status, StatusCode::OK, "{text}");
    }
    let t = tenant("acme");
    let blocks = server.blocks("acme").await;
    assert_eq!(blocks.len(), 1, "a retried block is indexed once");
    let b = &blocks[0];
    assert_eq!((b.kind, b.event_count), (BlockKind::NativeThread, 2));
    // 1 tick per ns, estimated: ticks 2000..3000 are 1000..2000 ns after the start.
    assert_eq!(
        (b.min_time, b.max_time),
        (process.start_time + 1_000, process.start_time + 2_000)
    );
    let recorded = server
        .lake
        .catalog
        .process(&t, &ProcessId([3; 16]))
        .await
        .expect("process");
    assert_eq!(
        recorded.expect("recorded").service_name,
        "space",
        "the executable's name"
    );

    // Refused with the reason, nothing stored.
    let bad_nesting = block_of(
        &process,
        &stream,
        &[Event::SpanEnd {
            descriptor: 0x1000,
            ticks: 5,
        }],
        1,
    );
    let mut truncated = block.clone();
    truncated.truncate(truncated.len() - 3);
    // Magic (4 bytes), version (u16), then the codec (u16).
    let mut corrupted = block.clone();
    corrupted[6] = 9;
    for (body, reason) in [
        (bad_nesting, "none is open"),
        (truncated, "payload"),
        (corrupted, "codec"),
        (b"FLNB\x02\x00".to_vec(), "version"),
    ] {
        let (status, text) = post(&server, "/v1/native/block", "acme", body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{text}");
        assert!(text.contains(reason), "{reason}: {text}");
    }
    let oversized = vec![0u8; Limits::default().max_body_bytes + 1];
    let (status, text) = post(&server, "/v1/native/block", "acme", oversized).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{text}");
    let response = reqwest::Client::new()
        .post(server.url("/v1/native/block"))
        .header("content-type", "application/json")
        .header("x-scope-orgid", "acme")
        .body(block)
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(
        server.block_count("acme").await,
        1,
        "nothing refused was stored"
    );
}
