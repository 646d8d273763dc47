//! What a hostile client must not be able to do to the real binary: crash it,
//! exhaust its memory, or make it store a retry twice. Each test asserts the
//! documented status, that the server still answers `/ready`, and that its
//! peak resident memory stayed under a stated bound.

use std::time::Duration;

use crate::{Server, data_dir_args};

/// Peak resident memory of a process (`VmHWM`), in bytes.
pub(crate) fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc status");
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc status");
    kib * 1024
}

/// Asserts the server is up and peaked under `max_bytes` of resident memory.
pub(crate) async fn assert_alive_within(server: &Server, max_bytes: u64) {
    for port in [server.http_port, server.query_port] {
        let ready = reqwest::get(format!("http://127.0.0.1:{port}/ready"))
            .await
            .unwrap_or_else(|e| panic!("/ready on {port}: {e}; log:\n{}", server.log_text()));
        assert!(
            ready.status().is_success(),
            "/ready on {port}: {}",
            ready.status()
        );
    }
    let peak = peak_rss(server.pid());
    assert!(
        peak < max_bytes,
        "peak RSS {} MB over the bound of {} MB",
        peak >> 20,
        max_bytes >> 20
    );
}

/// Status and body of `POST /api/v1/sql` with the SQL as the body.
async fn post_sql(server: &Server, sql: &str) -> (u16, String) {
    let response = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{}/api/v1/sql", server.query_port))
        .header("content-type", "application/sql")
        .body(sql.to_owned())
        .timeout(Duration::from_secs(120))
        .send()
        .await
        .unwrap_or_else(|e| panic!("query listener: {e}; log:\n{}", server.log_text()));
    let status = response.status().as_u16();
    (status, response.text().await.expect("body"))
}

/// A LogQL instant query, as a form body.
async fn post_loki(server: &Server, query: &str) -> (u16, String) {
    let response = reqwest::Client::new()
        .post(format!(
            "http://127.0.0.1:{}/loki/api/v1/query",
            server.query_port
        ))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!(
            "time=1700000000&query={}",
            query.replace('+', "%2B").replace(' ', "%20")
        ))
        .timeout(Duration::from_secs(120))
        .send()
        .await
        .unwrap_or_else(|e| panic!("query listener: {e}; log:\n{}", server.log_text()));
    let status = response.status().as_u16();
    (status, response.text().await.expect("body"))
}

pub(crate) const LOGS_EXPORT: &str = "/opentelemetry.proto.collector.logs.v1.LogsService/Export";

/// One OTLP/gRPC export of an encoded request, as a tenant.
pub(crate) async fn grpc_export(
    server: &Server,
    path: &'static str,
    tenant: &str,
    request: bytes::Bytes,
) -> Result<bytes::Bytes, tonic::Status> {
    let channel = tonic::transport::Endpoint::from_shared(server.grpc_url())
        .expect("endpoint")
        .connect()
        .await
        .expect("gRPC connects");
    let mut client = tonic::client::Grpc::new(channel);
    client.ready().await.expect("gRPC ready");
    let mut call = tonic::Request::new(request);
    call.metadata_mut()
        .insert("x-scope-orgid", tenant.parse().expect("ascii tenant"));
    let path = http::uri::PathAndQuery::from_static(path);
    client
        .unary::<bytes::Bytes, bytes::Bytes, _>(call, path, framelake_receiver::grpc::RawCodec)
        .await
        .map(|response| response.into_inner())
}

fn chain(terms: usize, op: &str) -> String {
    vec!["1"; terms].join(op)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deep_and_wide_queries_are_answered_or_refused_never_a_crash() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = Server::start("serve", &data_dir_args(dir.path()), &dir.path().join("log")).await;

    // As deep as a query may nest: answered, through planning and execution.
    let (status, body) = post_sql(&server, &format!("SELECT {} AS n", chain(1000, "+"))).await;
    assert_eq!((status, body.as_str()), (200, r#"[{"n":1000}]"#));
    let ors = (0..999)
        .map(|i| format!("a = {i}"))
        .collect::<Vec<_>>()
        .join(" OR ");
    let (status, body) = post_sql(
        &server,
        &format!("SELECT count(*) AS n FROM (SELECT 7 AS a UNION ALL SELECT 2000) WHERE {ors}"),
    )
    .await;
    assert_eq!((status, body.as_str()), (200, r#"[{"n":1}]"#));

    // Deeper: refused with 400, whatever the operator; the server stays up.
    for sql in [
        format!("SELECT {}", chain(2000, "+")),
        format!("SELECT {}", chain(400_000, "+")),
        format!("SELECT 1 WHERE {}", vec!["true"; 5000].join(" AND ")),
        format!("SELECT 'a' {}", vec!["|| 'a'"; 5000].join(" ")),
        format!("SELECT 1 WHERE {}", vec!["1 = 1"; 5000].join(" OR ")),
    ] {
        let (status, body) = post_sql(&server, &sql).await;
        assert_eq!(status, 400, "{}…: {body}", &sql[..40]);
        assert!(body.contains("expression nested too deeply"), "{body}");
    }
    // Longer than a query may be (a body over 2 MB is refused before, with 413).
    let (status, body) = post_sql(&server, &format!("SELECT '{}'", "x".repeat(3 << 19))).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("bytes a query may be"), "{body}");
    // Wide is not deep: 5,000 columns.
    let columns: Vec<String> = (0..5_000).map(|i| format!("{i} + 1 AS c{i}")).collect();
    let wide = format!("SELECT count(*) AS n FROM (SELECT {})", columns.join(", "));
    let (status, body) = post_sql(&server, &wide).await;
    assert_eq!((status, body.as_str()), (200, r#"[{"n":1}]"#));

    // LogQL too: a chain is answered, nesting past the parser's depth is
    // refused with 400, and the server stays up.
    let (status, body) =
        post_loki(&server, &format!("vector(1){}", " + vector(1)".repeat(250))).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(r#""251""#), "{body}");
    let at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_nanos();
    let pushed = reqwest::Client::new()
        .post(format!(
            "http://127.0.0.1:{}/loki/api/v1/push",
            server.http_port
        ))
        .header("content-type", "application/json")
        .body(format!(
            r#"{{"streams":[{{"stream":{{"app":"a"}},"values":[["{at}","level=info x=1"]]}}]}}"#
        ))
        .send()
        .await
        .expect("push");
    assert_eq!(pushed.status().as_u16(), 204);
    let chain = format!(r#"x="1"{}"#, r#" or x="1""#.repeat(250));
    for query in [
        format!(r#"{{app="a"}} | logfmt | {chain}"#),
        format!(r#"sum(count_over_time({{app="a"}} | logfmt | {chain} [1h]))"#),
    ] {
        let response = reqwest::Client::new()
            .post(format!(
                "http://127.0.0.1:{}/loki/api/v1/query_range",
                server.query_port
            ))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!(
                "start={}&end={}&query={}",
                at - 3_600_000_000_000,
                at + 60_000_000_000,
                query
                    .replace('+', "%2B")
                    .replace(' ', "%20")
                    .replace('"', "%22")
                    .replace('{', "%7B")
                    .replace('}', "%7D")
                    .replace('|', "%7C")
                    .replace('=', "%3D")
                    .replace('[', "%5B")
                    .replace(']', "%5D")
            ))
            .send()
            .await
            .unwrap_or_else(|e| panic!("query listener: {e}; log:\n{}", server.log_text()));
        assert_eq!(response.status().as_u16(), 200, "{query}");
        let body = response.text().await.expect("body");
        assert!(
            body.contains("level=info x=1") || body.contains(r#""1"]"#),
            "{body}"
        );
    }
    for deep in [
        format!("{}vector(1){}", "(".repeat(100_000), ")".repeat(100_000)),
        format!("{}vector(1)", "-".repeat(100_000)),
        format!("vector(1){}", " + vector(1)".repeat(300)),
    ] {
        let (status, body) = post_loki(&server, &deep).await;
        assert_eq!(status, 400, "{body}");
        assert!(
            body.contains("nests deeper") || body.contains("operations inside one another"),
            "{body}"
        );
    }
    assert_alive_within(&server, 1 << 30).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn functions_cannot_build_more_than_a_call_may() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = Server::start("serve", &data_dir_args(dir.path()), &dir.path().join("log")).await;
    for (sql, function) in [
        ("SELECT length(repeat('x', 1500000000))", "repeat"),
        (
            "SELECT cardinality(array_repeat(1, 1100000000))",
            "array_repeat",
        ),
        ("SELECT cardinality(range(1, 2000000000))", "range"),
        (
            "SELECT cardinality(generate_series(TIMESTAMP '1970-01-01', TIMESTAMP '2200-01-01', INTERVAL '1 second'))",
            "generate_series",
        ),
        ("SELECT length(lpad('x', 1500000000))", "lpad"),
        (
            "SELECT length(replace(repeat('ab', 200000), '', repeat('y', 2000)))",
            "replace",
        ),
        (
            "SELECT length(regexp_replace(repeat('ab', 200000), '', repeat('y', 2000), 'g'))",
            "regexp_replace",
        ),
        // Each step under the bound, the chain over it: the output check stops it.
        (
            "WITH a AS (SELECT repeat('x', 100000000) AS s) SELECT length(concat(s, s, s)) FROM a",
            "concat",
        ),
        (
            "WITH a AS (SELECT repeat('x', 100000000) AS s) SELECT length(s || s || s) FROM a",
            "concat_op",
        ),
    ] {
        let (status, body) = post_sql(&server, sql).await;
        assert_eq!(status, 422, "{sql}: {body}");
        assert!(
            body.contains("one function call may build"),
            "{sql}: {body}"
        );
        assert!(body.contains(&format!("{function}(")), "{sql}: {body}");
    }
    // Within the bound, the same functions answer.
    let (status, body) = post_sql(
        &server,
        "SELECT length(repeat('x', 1000000)) AS a, cardinality(range(1, 1001)) AS b, \
         length(replace('abab', 'b', 'yy')) AS c, 'x' || 1 || 'y' AS d, 'x' || NULL AS e",
    )
    .await;
    assert_eq!(
        (status, body.as_str()),
        (200, r#"[{"a":1000000,"b":1000,"c":6,"d":"x1y","e":null}]"#)
    );
    // The operator keeps its name in result columns.
    let (status, body) = post_sql(&server, "SELECT 'a' || 'b'").await;
    assert_eq!(
        (status, body.as_str()),
        (200, r#"[{"Utf8(\"a\") || Utf8(\"b\")":"ab"}]"#)
    );
    assert_alive_within(&server, 1536 << 20).await;
}

/// An OTLP/JSON log request whose records carry no timestamps (OTLP allows it).
fn untimed_logs() -> String {
    let records: Vec<_> = (0..5)
        .map(|i| serde_json::json!({ "severityText": "INFO", "body": { "stringValue": format!("untimed {i}") } }))
        .collect();
    serde_json::json!({ "resourceLogs": [{
        "resource": { "attributes": [{ "key": "service.name", "value": { "stringValue": "retrier" } }] },
        "scopeLogs": [{ "logRecords": records }]
    }]})
    .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_request_without_timestamps_is_stored_once() {
    use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
    use prost::Message;

    let dir = tempfile::tempdir().expect("temp dir");
    let server = Server::start("serve", &data_dir_args(dir.path()), &dir.path().join("log")).await;
    let json = untimed_logs();
    let request: ExportLogsServiceRequest = serde_json::from_str(&json).expect("OTLP JSON");
    let client = reqwest::Client::new();
    for (tenant, content_type, body) in [
        ("json", "application/json", json.clone().into_bytes()),
        (
            "protobuf",
            "application/x-protobuf",
            request.encode_to_vec(),
        ),
    ] {
        for _ in 0..2 {
            let response = client
                .post(format!("{}/v1/logs", server.http_url()))
                .header("content-type", content_type)
                .header("x-scope-orgid", tenant)
                .body(body.clone())
                .send()
                .await
                .expect("ingest answers");
            assert_eq!(response.status(), 200);
            // A retry comes later than the first try.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    for _ in 0..2 {
        grpc_export(&server, LOGS_EXPORT, "grpc", request.encode_to_vec().into())
            .await
            .expect("gRPC export");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for tenant in ["json", "protobuf", "grpc"] {
        let rows = server
            .sql(
                tenant,
                "SELECT count(*) AS n, count(DISTINCT body) AS d FROM log_entries",
            )
            .await;
        assert_eq!(rows, [serde_json::json!({ "n": 5, "d": 5 })], "{tenant}");
    }
}

/// `field` as a length-delimited protobuf field holding `inner`.
fn wrap(field: u32, inner: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(inner.len() + 16);
    prost::encoding::encode_key(field, prost::encoding::WireType::LengthDelimited, &mut out);
    prost::encoding::encode_varint(inner.len() as u64, &mut out);
    out.extend_from_slice(inner);
    out
}

/// An OTLP log request of one record with `empty` empty attributes: two
/// bytes each on the wire, a decoded value of dozens each.
fn attribute_bomb(empty: usize) -> Vec<u8> {
    let mut record = Vec::with_capacity(2 * empty + 16);
    record.extend_from_slice(&[0x09, 1, 0, 0, 0, 0, 0, 0, 0]); // time_unix_nano = 1
    for _ in 0..empty {
        record.extend_from_slice(&[0x32, 0x00]);
    }
    wrap(1, &wrap(2, &wrap(2, &record)))
}

fn gzip(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(data).expect("gzip");
    encoder.finish().expect("gzip")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_record_of_millions_of_attributes_is_refused_before_it_is_stored() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = Server::start("serve", &data_dir_args(dir.path()), &dir.path().join("log")).await;
    let bomb = attribute_bomb(31_500_000);
    let compressed = gzip(&bomb);
    assert!(
        compressed.len() < 1 << 20,
        "{} bytes gzipped",
        compressed.len()
    );
    let response = reqwest::Client::new()
        .post(format!("{}/v1/logs", server.http_url()))
        .header("content-type", "application/x-protobuf")
        .header("content-encoding", "gzip")
        .body(compressed.clone())
        .send()
        .await
        .expect("ingest answers");
    assert_eq!(response.status(), 413);
    let status = response.bytes().await.expect("body");
    let status = String::from_utf8_lossy(&status);
    assert!(
        status.contains("a log record of 63000009 bytes") && status.contains("--max-record-bytes"),
        "{status}"
    );
    // Under the size a record may be, over the values it may carry.
    for request in [attribute_bomb(400_000), attribute_bomb(10_001)] {
        let grpc = grpc_export(&server, LOGS_EXPORT, "default", request.into())
            .await
            .expect_err("refused");
        assert_eq!(grpc.code(), tonic::Code::InvalidArgument, "{grpc}");
        assert!(
            grpc.message().contains("more than the 10000 attributes")
                && grpc.message().contains("--max-record-values"),
            "{grpc}"
        );
    }
    grpc_export(
        &server,
        LOGS_EXPORT,
        "default",
        attribute_bomb(10_000).into(),
    )
    .await
    .expect("at the limit");
    let rows = server
        .sql("default", "SELECT count(*) AS n FROM log_entries")
        .await;
    assert_eq!(rows, [serde_json::json!({ "n": 1 })]);
    assert_alive_within(&server, 512 << 20).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_id_that_is_not_ascii_is_refused_not_taken_for_the_default() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = Server::start("serve", &data_dir_args(dir.path()), &dir.path().join("log")).await;
    let tenant = http::HeaderValue::from_bytes("tenant-é".as_bytes()).expect("obs-text");
    let client = reqwest::Client::new();
    let ingest = client
        .post(format!("{}/v1/logs", server.http_url()))
        .header("content-type", "application/json")
        .header("x-scope-orgid", tenant.clone())
        .body(untimed_logs())
        .send()
        .await
        .expect("ingest answers");
    assert_eq!(ingest.status(), 400);
    let body = ingest.text().await.expect("body");
    assert!(body.contains("X-Scope-OrgID"), "{body}");
    let query = client
        .post(format!("http://127.0.0.1:{}/api/v1/sql", server.query_port))
        .header("content-type", "application/sql")
        .header("x-scope-orgid", tenant)
        .body("SELECT 1")
        .send()
        .await
        .expect("query answers");
    assert_eq!(query.status(), 400);
    let rows = server
        .sql("default", "SELECT count(*) AS n FROM log_entries")
        .await;
    assert_eq!(rows, [serde_json::json!({ "n": 0 })]);
}

/// CPU time a process has used (user and system), in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("/proc stat");
    let fields: Vec<&str> = stat[stat.rfind(')').expect("comm") + 2..]
        .split(' ')
        .collect();
    fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime")
}

/// Registers a native process that says it started in 1970 (ticks are
/// nanoseconds since then) with one thread, and a block of one span
/// beginning at each of `spans`.
async fn native_process_of_1970(server: &Server, spans: &[i64]) -> String {
    use framelake_native_format::{
        self as format, BlockHeader, Codec, Descriptor, DescriptorKind, Event, PayloadParts,
        Process, Stream, StreamKind,
    };
    let process = Process {
        process_id: [7; 16],
        start_time: 0,
        start_ticks: 0,
        tick_frequency: 1_000_000_000,
        exe: "game".to_owned(),
        ..Process::default()
    };
    let thread = Stream {
        kind: StreamKind::Thread,
        stream_id: [8; 16],
        process_id: process.process_id,
        thread_id: 1,
        name: "main".into(),
        properties: Vec::new(),
    };
    let mut messages = vec![("process", process.encode()), ("stream", thread.encode())];
    // A one-second span at each time given.
    for (sequence, &begin) in spans.iter().enumerate() {
        let end = begin + 1_000_000_000;
        // Descriptor ids are addresses: 8-aligned, not zero.
        let descriptor = Descriptor {
            id: 8,
            kind: DescriptorKind::Span,
            level: 0,
            line: 1,
            name: "frame".into(),
            target: "game".into(),
            file: "game.rs".into(),
            unit: String::new(),
        };
        let mut events = Vec::new();
        format::encode_event(
            &Event::SpanBegin {
                descriptor: 8,
                ticks: begin,
            },
            &mut events,
        );
        format::encode_event(
            &Event::SpanEnd {
                descriptor: 8,
                ticks: end,
            },
            &mut events,
        );
        let payload = PayloadParts {
            descriptors: vec![descriptor],
            open_spans: Vec::new(),
            events: &events,
        }
        .encode();
        let header = BlockHeader {
            codec: Codec::Lz4,
            stream_id: thread.stream_id,
            process_id: process.process_id,
            sequence: sequence as u64,
            begin_ticks: begin,
            end_ticks: end,
            calibration_ticks: end,
            calibration_time: end,
            event_count: 2,
        };
        messages.push(("block", format::encode_block(&header, &payload)));
    }
    let client = reqwest::Client::new();
    for (path, body) in messages {
        let response = client
            .post(format!("{}/v1/native/{path}", server.http_url()))
            .header("content-type", framelake_receiver::native::CONTENT_TYPE)
            .body(body)
            .send()
            .await
            .expect("ingest answers");
        let status = response.status();
        assert_eq!(
            status,
            200,
            "{path}: {}",
            response.text().await.unwrap_or_default()
        );
    }
    format!(
        "http://127.0.0.1:{}/api/v1/perfetto?process_id={}",
        server.query_port,
        "07".repeat(16)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_perfetto_export_walks_the_stored_data_not_the_whole_range() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = Server::start("serve", &data_dir_args(dir.path()), &dir.path().join("log")).await;
    // Nothing stored: the default range (1970 to now) answers at once.
    let url = native_process_of_1970(&server, &[]).await;
    let response = reqwest::Client::new()
        .get(&url)
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .expect("answers");
    assert_eq!(response.status(), 200);
    assert!(!response.bytes().await.expect("the whole trace").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_abandoned_perfetto_export_stops_with_its_client() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = Server::start("serve", &data_dir_args(dir.path()), &dir.path().join("log")).await;
    // Spans in 1970 and in 2026: 56 years of stored data to walk.
    let url = native_process_of_1970(&server, &[1_000_000_000, 1_780_000_000_000_000_000]).await;
    let export = reqwest::Client::new()
        .get(format!("{url}&begin=0"))
        .timeout(Duration::from_secs(2))
        .send()
        .await;
    if let Ok(response) = export {
        assert_eq!(response.status(), 200);
        // The client reads for two seconds, then goes away.
        assert!(response.bytes().await.is_err(), "a 56-year trace in 2 s");
    }
    assert_idle_after_client_left(&server).await;
    assert_alive_within(&server, 512 << 20).await;
}

/// A query that computes for minutes before its only row.
const LONG_QUERY: &str = "SELECT count(*) AS n FROM generate_series(1, 100000000000)";

/// Asserts the server spends (next to) no CPU once a client has gone.
async fn assert_idle_after_client_left(server: &Server) {
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = cpu_ticks(server.pid());
    tokio::time::sleep(Duration::from_secs(3)).await;
    let used = cpu_ticks(server.pid()) - before;
    // A query still running keeps a core or two busy (300 to 600 ticks in 3 s).
    assert!(
        used < 100,
        "{used} ticks of CPU in 3 s after the client left"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_stops_when_its_http_client_goes_away() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = Server::start("serve", &data_dir_args(dir.path()), &dir.path().join("log")).await;
    let gone = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{}/api/v1/sql", server.query_port))
        .header("content-type", "application/sql")
        .body(LONG_QUERY)
        .timeout(Duration::from_secs(2))
        .send()
        .await;
    assert!(gone.is_err(), "the query cannot finish in 2 s");
    assert_idle_after_client_left(&server).await;
    assert_alive_within(&server, 512 << 20).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_stops_when_its_flightsql_client_goes_away() {
    use arrow_flight::sql::client::FlightSqlServiceClient;
    use futures::StreamExt;

    let dir = tempfile::tempdir().expect("temp dir");
    let server = Server::start("serve", &data_dir_args(dir.path()), &dir.path().join("log")).await;
    let channel =
        tonic::transport::Endpoint::from_shared(format!("http://127.0.0.1:{}", server.flight_port))
            .expect("endpoint")
            .connect()
            .await
            .expect("FlightSQL connects");
    let mut client = FlightSqlServiceClient::new(channel);
    let info = client
        .execute(LONG_QUERY.to_owned(), None)
        .await
        .expect("planned");
    let ticket = info.endpoint[0].ticket.clone().expect("a ticket");
    let mut rows = client.do_get(ticket).await.expect("streams");
    let first = tokio::time::timeout(Duration::from_secs(2), rows.next()).await;
    assert!(first.is_err(), "the query cannot finish in 2 s");
    drop(rows);
    drop(client);
    assert_idle_after_client_left(&server).await;
    assert_alive_within(&server, 512 << 20).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_ends_at_its_time_limit_even_in_a_join_that_makes_rows_for_minutes() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut args = data_dir_args(dir.path());
    args.extend(["--query-timeout-s".to_owned(), "1".to_owned()]);
    let server = Server::start("serve", &args, &dir.path().join("log")).await;
    for sql in [
        "SELECT count(*) FROM generate_series(1, 200000) a CROSS JOIN generate_series(1, 200000) b",
        "SELECT a.value FROM generate_series(1, 30000) a CROSS JOIN generate_series(1, 30000) b \
         ORDER BY a.value + b.value DESC LIMIT 3",
    ] {
        let started = std::time::Instant::now();
        let (status, body) = post_sql(&server, sql).await;
        let took = started.elapsed();
        assert_eq!(status, 504, "{body}");
        assert!(body.contains("time limit of 1 s"), "{body}");
        // The answer comes at the limit (a poll of the join used to hold it
        // for tens of seconds), and the aborted query frees its threads.
        assert!(took < Duration::from_secs(4), "answered after {took:?}");
        let (status, body) = post_sql(&server, "SELECT 1 AS one").await;
        assert_eq!((status, body.as_str()), (200, r#"[{"one":1}]"#));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_block_that_decodes_to_gigabytes_fails_its_queries_not_the_server() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut args = data_dir_args(dir.path());
    // Left pending: queries decode it themselves.
    args.extend(["--materialize-interval-ms".to_owned(), "0".to_owned()]);
    let server = Server::start("serve", &args, &dir.path().join("log")).await;
    // 3,300 records of 9,000 empty attributes each, every one within the
    // limits: 60 MB that prost would decode to gigabytes.
    let mut record = vec![0x09, 1, 0, 0, 0, 0, 0, 0, 0];
    for _ in 0..9_000 {
        record.extend_from_slice(&[0x32, 0x00]);
    }
    // Request { resource_logs: [{ scope_logs: [{ log_records: [3,300 of them] }] }] }
    let scope_logs = wrap(2, &record).repeat(3_300);
    let body = gzip(&wrap(1, &wrap(2, &scope_logs)));
    let client = reqwest::Client::new();
    let response = client
        .post(format!("{}/v1/logs", server.http_url()))
        .header("content-type", "application/x-protobuf")
        .header("content-encoding", "gzip")
        .body(body)
        .send()
        .await
        .expect("ingest answers");
    let status = response.status();
    assert_eq!(
        status,
        200,
        "within every limit: {}",
        response.text().await.unwrap_or_default()
    );
    let counts = (0..4).map(|_| {
        let (client, port) = (client.clone(), server.query_port);
        tokio::spawn(async move {
            let response = client
                .post(format!("http://127.0.0.1:{port}/api/v1/sql"))
                .header("content-type", "application/sql")
                .body("SELECT count(*) FROM log_entries")
                .send()
                .await
                .expect("query answers");
            (
                response.status().as_u16(),
                response.text().await.expect("body"),
            )
        })
    });
    for count in futures::future::join_all(counts).await {
        let (status, body) = count.expect("client");
        assert_eq!(status, 422, "{body}");
        assert!(body.contains("memory"), "{body}");
    }
    assert_alive_within(&server, 1536 << 20).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decompression_bombs_are_refused_on_every_endpoint() {
    use std::io::Write;

    let dir = tempfile::tempdir().expect("temp dir");
    let server = Server::start("serve", &data_dir_args(dir.path()), &dir.path().join("log")).await;
    // 80 MiB of zeros: past the 64 MiB a body may decompress to.
    let zeros = vec![0u8; 80 << 20];
    let mut deflate = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
    deflate.write_all(&zeros).expect("deflate");
    let bombs = [
        ("gzip", bytes::Bytes::from(gzip(&zeros))),
        ("deflate", deflate.finish().expect("deflate").into()),
        (
            "zstd",
            zstd::bulk::compress(&zeros, 1).expect("zstd").into(),
        ),
    ];
    let client = reqwest::Client::new();
    let otlp = ["application/x-protobuf", "application/json"];
    let native = [framelake_receiver::native::CONTENT_TYPE];
    let endpoints = ["logs", "traces", "metrics"]
        .iter()
        .flat_map(|signal| otlp.map(|t| (format!("/v1/{signal}"), t)))
        .chain(
            ["process", "stream", "block"]
                .iter()
                .flat_map(|m| native.map(|t| (format!("/v1/native/{m}"), t))),
        );
    for (path, content_type) in endpoints {
        for (encoding, bomb) in &bombs {
            assert!(bomb.len() < 1 << 20, "{encoding}: {} bytes", bomb.len());
            let response = client
                .post(format!("{}{path}", server.http_url()))
                .header("content-type", content_type)
                .header("content-encoding", *encoding)
                .body(bomb.clone())
                .send()
                .await
                .expect("ingest answers");
            let status = response.status();
            let body = response.text().await.unwrap_or_default();
            assert_eq!(status, 413, "{path} {content_type} {encoding}: {body}");
            assert!(body.contains("after decompression"), "{path}: {body}");
        }
    }
    // gRPC: each service, each message encoding it takes.
    let grpc = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .expect("HTTP/2 client");
    for service in [
        "logs.v1.LogsService",
        "trace.v1.TraceService",
        "metrics.v1.MetricsService",
    ] {
        for (encoding, bomb) in bombs.iter().filter(|(e, _)| *e != "deflate") {
            let mut framed = vec![1u8];
            framed.extend_from_slice(&(bomb.len() as u32).to_be_bytes());
            framed.extend_from_slice(bomb);
            let response = grpc
                .post(format!(
                    "{}/opentelemetry.proto.collector.{service}/Export",
                    server.grpc_url()
                ))
                .header("content-type", "application/grpc")
                .header("grpc-encoding", *encoding)
                .header("te", "trailers")
                .body(framed)
                .send()
                .await
                .expect("gRPC answers");
            let status = response.headers().get("grpc-status").cloned();
            assert_eq!(
                status.as_ref().and_then(|s| s.to_str().ok()),
                Some("8"),
                "{service} {encoding}: RESOURCE_EXHAUSTED"
            );
        }
    }
    let rows = server
        .sql("default", "SELECT count(*) AS n FROM log_entries")
        .await;
    assert_eq!(rows, [serde_json::json!({ "n": 0 })]);
    assert_alive_within(&server, 768 << 20).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_that_inflate_are_refused_retryably_before_memory_runs_out() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut args = data_dir_args(dir.path());
    args.extend(["--max-inflight-bytes".to_owned(), (256 << 20).to_string()]);
    let server = Server::start("serve", &args, &dir.path().join("log")).await;
    // 60 KiB on the wire, 60 MiB once inflated (not even OTLP: it is refused
    // once decoded, if it gets that far).
    let body = bytes::Bytes::from(gzip(&vec![0u8; 60 << 20]));
    let client = reqwest::Client::new();
    let sends = (0..64).map(|_| {
        let (client, body, url) = (client.clone(), body.clone(), server.http_url());
        tokio::spawn(async move {
            let response = client
                .post(format!("{url}/v1/logs"))
                .header("content-type", "application/x-protobuf")
                .header("content-encoding", "gzip")
                .body(body)
                .send()
                .await
                .expect("ingest answers");
            let retry_after = response.headers().get("retry-after").cloned();
            (response.status().as_u16(), retry_after)
        })
    });
    let mut statuses = std::collections::BTreeMap::new();
    for send in futures::future::join_all(sends).await {
        let (status, retry_after) = send.expect("sender");
        if status == 429 {
            assert_eq!(retry_after.expect("Retry-After on 429"), "1");
        }
        *statuses.entry(status).or_insert(0) += 1;
    }
    assert!(statuses.get(&429).is_some_and(|&n| n > 0), "{statuses:?}");
    assert!(
        statuses.keys().all(|s| [400, 429].contains(s)),
        "{statuses:?}"
    );

    // gRPC, the same message compressed: RESOURCE_EXHAUSTED with a retry
    // delay, which OTLP clients retry on (errors come as headers alone).
    let grpc = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .expect("HTTP/2 client");
    let mut framed = vec![1u8];
    framed.extend_from_slice(&(body.len() as u32).to_be_bytes());
    framed.extend_from_slice(&body);
    let framed = bytes::Bytes::from(framed);
    let calls = (0..64).map(|_| {
        let (grpc, framed, url) = (grpc.clone(), framed.clone(), server.grpc_url());
        tokio::spawn(async move {
            let response = grpc
                .post(format!("{url}{LOGS_EXPORT}"))
                .header("content-type", "application/grpc")
                .header("grpc-encoding", "gzip")
                .header("te", "trailers")
                .body(framed)
                .send()
                .await
                .expect("gRPC answers");
            let header = |name: &str| {
                let value = response.headers().get(name)?;
                Some(value.to_str().expect("ascii").to_owned())
            };
            (header("grpc-status"), header("grpc-status-details-bin"))
        })
    });
    let mut codes = std::collections::BTreeMap::new();
    for call in futures::future::join_all(calls).await {
        let (status, details) = call.expect("caller");
        let status = status.expect("an error status");
        if status == "8" {
            assert!(
                details.is_some(),
                "RESOURCE_EXHAUSTED carries a retry delay"
            );
        }
        *codes.entry(status).or_insert(0) += 1;
    }
    // 8: RESOURCE_EXHAUSTED; 3: INVALID_ARGUMENT (zeros are no OTLP).
    assert!(codes.get("8").is_some_and(|&n| n > 0), "{codes:?}");
    assert!(codes.keys().all(|c| c == "8" || c == "3"), "{codes:?}");
    // A well-formed request still goes through.
    let response = client
        .post(format!("{}/v1/logs", server.http_url()))
        .header("content-type", "application/json")
        .body(untimed_logs())
        .send()
        .await
        .expect("ingest answers");
    assert_eq!(response.status(), 200);
    assert_alive_within(&server, 1 << 30).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_ending_before_they_start_and_times_past_2262_are_rejected_items() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = Server::start("serve", &data_dir_args(dir.path()), &dir.path().join("log")).await;
    let span = |id: &str, start: &str, end: &str| {
        serde_json::json!({ "traceId": "0102030405060708090a0b0c0d0e0f10", "spanId": id,
            "name": id, "startTimeUnixNano": start, "endTimeUnixNano": end })
    };
    let traces = serde_json::json!({ "resourceSpans": [{ "scopeSpans": [{ "spans": [
        span("0000000000000001", "1700000000000000000", "1700000000000000500"),
        span("0000000000000002", "1700000000000000500", "1700000000000000000"),
        span("0000000000000003", "1700000000000000000", "18446744073709551615"),
    ]}]}]});
    let response = reqwest::Client::new()
        .post(format!("{}/v1/traces", server.http_url()))
        .header("content-type", "application/json")
        .body(traces.to_string())
        .send()
        .await
        .expect("ingest answers");
    assert_eq!(response.status(), 200);
    let answer: serde_json::Value = response.json().await.expect("JSON");
    let partial = &answer["partialSuccess"];
    assert_eq!(
        partial["rejectedSpans"].to_string().trim_matches('"'),
        "2",
        "{answer}"
    );
    let message = partial["errorMessage"].as_str().expect("a message");
    assert!(
        message.contains("2262") && message.contains("end not before its start"),
        "{message}"
    );
    let rows = server
        .sql("default", "SELECT name, duration_ns FROM spans")
        .await;
    assert_eq!(
        rows,
        [serde_json::json!({ "name": "0000000000000001", "duration_ns": 500 })]
    );
}
