//! Loki's push API: JSON and snappy protobuf pushes become stored OTLP log
//! records; bad pushes get 400 with a message and store nothing.

use std::io::Write;

use framelake_lake::ids::BlockKind;
use framelake_lake::tenancy::Tenancy;
use framelake_receiver::loki::{EntryAdapter, LabelPairAdapter, PushRequest, StreamAdapter};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{KeyValue, any_value};
use prost::Message;
use reqwest::StatusCode;

use crate::{Options, TOKENS, TestServer};

const PUSH: &str = "/loki/api/v1/push";

async fn push(
    server: &TestServer,
    content_type: &str,
    encoding: Option<&str>,
    body: impl Into<reqwest::Body>,
) -> (StatusCode, String) {
    let mut request = reqwest::Client::new()
        .post(server.url(PUSH))
        .header("content-type", content_type)
        .body(body);
    if let Some(encoding) = encoding {
        request = request.header("content-encoding", encoding);
    }
    let response = request.send().await.expect("server answers");
    let status = response.status();
    (status, response.text().await.expect("body"))
}

fn strings(attributes: &[KeyValue]) -> Vec<(String, String)> {
    attributes
        .iter()
        .map(|kv| {
            let value = match kv.value.as_ref().and_then(|v| v.value.clone()) {
                Some(any_value::Value::StringValue(s)) => s,
                Some(any_value::Value::BoolValue(b)) => b.to_string(),
                other => panic!("{}: not a string: {other:?}", kv.key),
            };
            (kv.key.clone(), value)
        })
        .collect()
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// A bad push: content type, content encoding, body, expected status, words of the message.
type BadPush = (
    &'static str,
    Option<&'static str>,
    Vec<u8>,
    StatusCode,
    &'static str,
);

/// Every stored stream: its resource attributes and its (time, line, metadata) entries.
type Streams = Vec<(
    Vec<(String, String)>,
    Vec<(u64, String, Vec<(String, String)>)>,
)>;

async fn stored_streams(server: &TestServer, tenant: &str) -> Streams {
    let stored: Vec<ExportLogsServiceRequest> = server.stored(tenant, BlockKind::OtlpLogs).await;
    let mut out: Streams = stored
        .iter()
        .flat_map(|r| &r.resource_logs)
        .map(|rl| {
            let resource = strings(&rl.resource.clone().unwrap_or_default().attributes);
            let entries = rl
                .scope_logs
                .iter()
                .flat_map(|s| &s.log_records)
                .map(|r| {
                    let Some(any_value::Value::StringValue(line)) =
                        r.body.as_ref().and_then(|b| b.value.clone())
                    else {
                        panic!("a string body");
                    };
                    (r.time_unix_nano, line, strings(&r.attributes))
                })
                .collect();
            (resource, entries)
        })
        .collect();
    out.sort();
    out
}

#[tokio::test]
async fn json_pushes_are_stored_as_log_records() {
    let server = TestServer::start().await;
    let body = r#"{"streams":[
        {"stream":{"job":"api","level":"info"},"values":[
            ["1700000000000000001","first line"],
            ["1700000000000000002","second line",{"trace_id":"abc","user":"u1"}]]},
        {"stream":{"service_name":"web","env":"prod"},"values":[["1700000000000000003","web line"]]}]}"#;
    assert_eq!(
        push(&server, "application/json", None, body).await,
        (StatusCode::NO_CONTENT, String::new())
    );
    assert_eq!(
        stored_streams(&server, "default").await,
        vec![
            (
                // No service name: Loki 3's rule takes it from `job`.
                pairs(&[
                    ("service.name", "api"),
                    ("framelake.loki.push", "true"),
                    ("job", "api"),
                    ("level", "info")
                ]),
                vec![
                    (1_700_000_000_000_000_001, "first line".into(), vec![]),
                    (
                        1_700_000_000_000_000_002,
                        "second line".into(),
                        pairs(&[("trace_id", "abc"), ("user", "u1")])
                    ),
                ]
            ),
            (
                pairs(&[
                    ("service.name", "web"),
                    ("framelake.loki.push", "true"),
                    ("env", "prod")
                ]),
                vec![(1_700_000_000_000_000_003, "web line".into(), vec![])]
            ),
        ]
    );
}

#[tokio::test]
async fn snappy_protobuf_pushes_are_stored_with_structured_metadata() {
    let server = TestServer::start().await;
    let request = PushRequest {
        streams: vec![StreamAdapter {
            labels: r#"{app="shop", level="error"}"#.into(),
            entries: vec![EntryAdapter {
                timestamp: Some(prost_types::Timestamp {
                    seconds: 1_700_000_000,
                    nanos: 5,
                }),
                line: "payment failed".into(),
                structured_metadata: vec![LabelPairAdapter {
                    name: "trace_id".into(),
                    value: "0af7651916cd43dd".into(),
                }],
                parsed: vec![],
            }],
            hash: 0,
        }],
    };
    let body = snap::raw::Encoder::new()
        .compress_vec(&request.encode_to_vec())
        .expect("snappy");
    for encoding in [None, Some("snappy")] {
        assert_eq!(
            push(&server, "application/x-protobuf", encoding, body.clone()).await,
            (StatusCode::NO_CONTENT, String::new())
        );
    }
    // Pushed twice, stored once.
    assert_eq!(server.block_count("default").await, 1);
    assert_eq!(
        stored_streams(&server, "default").await,
        vec![(
            pairs(&[
                ("service.name", "shop"),
                ("framelake.loki.push", "true"),
                ("app", "shop"),
                ("level", "error")
            ]),
            vec![(
                1_700_000_000_000_000_005,
                "payment failed".into(),
                pairs(&[("trace_id", "0af7651916cd43dd")])
            )]
        )]
    );
}

#[tokio::test]
async fn gzip_and_deflate_json_pushes_are_accepted() {
    let server = TestServer::start().await;
    let body =
        r#"{"streams":[{"stream":{"app":"z"},"values":[["1700000000000000000","zipped"]]}]}"#;
    let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gzip.write_all(body.as_bytes()).expect("gzip");
    let mut deflate = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    deflate.write_all(body.as_bytes()).expect("deflate");
    for (encoding, bytes) in [
        ("gzip", gzip.finish().expect("gzip")),
        ("deflate", deflate.finish().expect("deflate")),
    ] {
        assert_eq!(
            push(&server, "application/json", Some(encoding), bytes)
                .await
                .0,
            StatusCode::NO_CONTENT,
            "{encoding}"
        );
    }
    let streams = stored_streams(&server, "default").await;
    assert_eq!(
        streams.len(),
        1,
        "the same push twice is one stream stored once"
    );
    assert_eq!(streams[0].1[0].1, "zipped");
}

#[tokio::test]
async fn bad_pushes_get_400_with_a_message_and_store_nothing() {
    let server = TestServer::start().await;
    let snappy = |bytes: &[u8]| {
        snap::raw::Encoder::new()
            .compress_vec(bytes)
            .expect("snappy")
    };
    let bad_labels = PushRequest {
        streams: vec![StreamAdapter {
            labels: r#"{app="a""#.into(),
            entries: vec![],
            hash: 0,
        }],
    };
    let cases: Vec<BadPush> = vec![
        (
            "application/json",
            None,
            br#"{"streams":[{"stream":{"app":"a"},"values":[[1700000000000000000,"x"]]}]}"#
                .to_vec(),
            StatusCode::BAD_REQUEST,
            "must be a string of nanoseconds",
        ),
        (
            "application/json",
            None,
            br#"{"streams":[{"stream":{"app":"a"},"values":[["soon","x"]]}]}"#.to_vec(),
            StatusCode::BAD_REQUEST,
            "must be a string of nanoseconds",
        ),
        (
            "application/json",
            None,
            br#"{"streams":[{"stream":{"app":"a"},"values":[["1","x",{"n":1}]]}]}"#.to_vec(),
            StatusCode::BAD_REQUEST,
            "must be a string",
        ),
        (
            "application/json",
            None,
            br#"{"streams":[{"stream":{"a.b":"c"},"values":[["1","x"]]}]}"#.to_vec(),
            StatusCode::BAD_REQUEST,
            "invalid label name",
        ),
        (
            "application/json",
            None,
            b"{not json".to_vec(),
            StatusCode::BAD_REQUEST,
            "not a Loki push request",
        ),
        (
            "application/json",
            Some("br"),
            b"{}".to_vec(),
            StatusCode::BAD_REQUEST,
            "unsupported Content-Encoding",
        ),
        (
            "application/x-protobuf",
            None,
            snappy(&bad_labels.encode_to_vec()),
            StatusCode::BAD_REQUEST,
            "stream labels",
        ),
        (
            "application/x-protobuf",
            None,
            b"\xff\xff\xff\xff\xff".to_vec(),
            StatusCode::BAD_REQUEST,
            "not snappy",
        ),
        (
            "application/x-protobuf",
            Some("gzip"),
            snappy(b""),
            StatusCode::BAD_REQUEST,
            "snappy-compressed",
        ),
        (
            "text/plain",
            None,
            b"line".to_vec(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported Content-Type",
        ),
    ];
    for (content_type, encoding, body, status, message) in cases {
        let (got, text) = push(&server, content_type, encoding, body).await;
        assert_eq!(got, status, "{content_type} {encoding:?}: {text}");
        assert!(
            text.contains(message),
            "{content_type}: {text:?} lacks {message:?}"
        );
    }
    assert_eq!(server.block_count("default").await, 0);
}

#[tokio::test]
async fn oversized_snappy_pushes_get_413() {
    let server = TestServer::with(Options {
        limits: framelake_receiver::Limits {
            max_decoded_bytes: 1 << 10,
            ..framelake_receiver::Limits::default()
        },
        ..Options::default()
    })
    .await;
    let body = snap::raw::Encoder::new()
        .compress_vec(&vec![b'a'; 4 << 10])
        .expect("snappy");
    let (status, text) = push(&server, "application/x-protobuf", None, body).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{text}");
    assert_eq!(server.block_count("default").await, 0);
}

#[tokio::test]
async fn pushes_take_tenants_and_tokens_as_every_write() {
    let server = TestServer::with(Options {
        tenancy: Tenancy::from_toml(TOKENS).expect("tokens"),
        ..Options::default()
    })
    .await;
    let send = |token: Option<&'static str>| {
        let mut request = reqwest::Client::new()
            .post(server.url(PUSH))
            .header("content-type", "application/json")
            .body(r#"{"streams":[{"stream":{"app":"a"},"values":[["1","x"]]}]}"#);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        async move { request.send().await.expect("answers").status() }
    };
    assert_eq!(send(None).await, StatusCode::UNAUTHORIZED);
    assert_eq!(send(Some("reader-a")).await, StatusCode::FORBIDDEN);
    assert_eq!(server.block_count("a").await, 0);
    assert_eq!(send(Some("token-a")).await, StatusCode::NO_CONTENT);
    assert_eq!(server.block_count("a").await, 1);
    assert_eq!(server.block_count("default").await, 0);
}
