//! OTLP/HTTP: encodings, compression, errors, idempotency and tokens.

use std::io::Write;

use framelake_lake::ids::BlockKind;
use framelake_lake::tenancy::Tenancy;
use framelake_receiver::Limits;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use prost::Message;
use reqwest::StatusCode;

use crate::{Options, TOKENS, TestServer, encode, traces};

const PROTOBUF: &str = "application/x-protobuf";

async fn post(
    server: &TestServer,
    path: &str,
    content_type: &str,
    body: impl Into<reqwest::Body>,
) -> reqwest::Response {
    reqwest::Client::new()
        .post(server.url(path))
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .expect("server answers")
}

/// The message of an OTLP error body (`google.rpc.Status`, field 2).
fn status_message(body: &[u8]) -> String {
    #[derive(Clone, PartialEq, prost::Message)]
    struct Status {
        #[prost(int32, tag = "1")]
        code: i32,
        #[prost(string, tag = "2")]
        message: String,
    }
    Status::decode(body)
        .expect("error body is a protobuf Status")
        .message
}

#[tokio::test]
async fn protobuf_traces_are_stored_as_sent() {
    let server = TestServer::start().await;
    let request = traces(1, 5);
    let response = post(&server, "/v1/traces", PROTOBUF, encode(&request)).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], PROTOBUF);
    let body = response.bytes().await.expect("body");
    assert_eq!(
        ExportTraceServiceResponse::decode(body)
            .expect("response")
            .partial_success,
        None
    );
    let stored: Vec<ExportTraceServiceRequest> =
        server.stored("default", BlockKind::OtlpSpans).await;
    assert_eq!(stored, vec![request]);
}

#[tokio::test]
async fn json_logs_are_stored_with_their_types() {
    let server = TestServer::start().await;
    let json = r#"{"resourceLogs":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"api"}}]},
      "scopeLogs":[{"scope":{"name":"app"},"logRecords":[{"timeUnixNano":"1700000000000000001","severityNumber":17,
      "severityText":"ERROR","body":{"stringValue":"boom"},"traceId":"0102030405060708090a0b0c0d0e0f10","spanId":"0102030405060708",
      "attributes":[{"key":"n","value":{"intValue":"7"}},{"key":"d","value":{"doubleValue":1.5}},{"key":"b","value":{"boolValue":true}},
      {"key":"arr","value":{"arrayValue":{"values":[{"stringValue":"x"},{"intValue":2}]}}},
      {"key":"raw","value":{"bytesValue":"AQID"}}]}]}]}]}"#;
    let response = post(&server, "/v1/logs", "application/json; charset=utf-8", json).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "application/json");
    assert_eq!(response.text().await.expect("body"), "{}");
    let stored: Vec<ExportLogsServiceRequest> = server.stored("default", BlockKind::OtlpLogs).await;
    let record = &stored[0].resource_logs[0].scope_logs[0].log_records[0];
    assert_eq!(record.time_unix_nano, 1_700_000_000_000_000_001);
    assert_eq!(record.severity_number, 17);
    assert_eq!(record.trace_id, (1..=16).collect::<Vec<u8>>());
    let attrs: Vec<String> = record
        .attributes
        .iter()
        .map(|kv| {
            format!(
                "{}={:?}",
                kv.key,
                kv.value.as_ref().and_then(|v| v.value.clone())
            )
        })
        .collect();
    assert_eq!(
        attrs,
        [
            "n=Some(IntValue(7))",
            "d=Some(DoubleValue(1.5))",
            "b=Some(BoolValue(true))",
            "arr=Some(ArrayValue(ArrayValue { values: [AnyValue { value: Some(StringValue(\"x\")) }, AnyValue { value: Some(IntValue(2)) }] }))",
            "raw=Some(BytesValue([1, 2, 3]))",
        ]
    );
}

#[tokio::test]
async fn gzip_zstd_and_deflate_bodies_are_accepted() {
    let server = TestServer::start().await;
    let client = reqwest::Client::new();
    let plain = encode(&traces(1, 3)).to_vec();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&plain).expect("gzip");
    let mut zlib = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    zlib.write_all(&encode(&traces(3, 3))).expect("deflate");
    let bodies = [
        ("gzip", gz.finish().expect("gzip")),
        (
            "zstd",
            zstd::bulk::compress(&encode(&traces(2, 3)), 3).expect("zstd"),
        ),
        ("deflate", zlib.finish().expect("deflate")),
    ];
    for (encoding, body) in bodies {
        let response = client
            .post(server.url("/v1/traces"))
            .header("content-type", PROTOBUF)
            .header("content-encoding", encoding)
            .body(body)
            .send()
            .await
            .expect("answers");
        assert_eq!(response.status(), StatusCode::OK, "{encoding}");
    }
    // Each body stored as sent, once inflated.
    assert_eq!(
        server
            .stored::<ExportTraceServiceRequest>("default", BlockKind::OtlpSpans)
            .await,
        vec![traces(1, 3), traces(2, 3), traces(3, 3)]
    );
}

#[tokio::test]
async fn bad_input_gets_the_status_the_protocol_expects_and_stores_nothing() {
    let limits = Limits {
        max_body_bytes: 64 << 10,
        max_decoded_bytes: 256 << 10,
        ..Limits::default()
    };
    let server = TestServer::with(Options {
        limits,
        ..Options::default()
    })
    .await;
    let client = reqwest::Client::new();

    let response = post(
        &server,
        "/v1/traces",
        PROTOBUF,
        &b"\x0a\xff\xff\xff\x0f\x01"[..],
    )
    .await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert!(
        status_message(&response.bytes().await.expect("body")).contains("invalid OTLP protobuf")
    );

    let response = post(
        &server,
        "/v1/logs",
        "application/json",
        "{\"resourceLogs\": 3}",
    )
    .await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let body: serde_json::Value = response.json().await.expect("JSON status");
    assert!(
        body["message"]
            .as_str()
            .expect("message")
            .contains("invalid OTLP JSON"),
        "{body}"
    );

    let response = post(&server, "/v1/traces", "text/plain", encode(&traces(1, 1))).await;
    assert_eq!(response.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert!(status_message(&response.bytes().await.expect("body")).contains("Content-Type"));

    let response = client
        .post(server.url("/v1/traces"))
        .header("content-type", PROTOBUF)
        .header("content-encoding", "br")
        .body(encode(&traces(1, 1)))
        .send()
        .await
        .expect("answers");
    assert_eq!(response.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);

    let oversized = encode(&traces(1, 2000));
    assert!(oversized.len() > 64 << 10);
    let response = post(&server, "/v1/traces", PROTOBUF, oversized).await;
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);

    let mut bomb = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    bomb.write_all(&vec![0u8; 40 << 20]).expect("gzip");
    let bomb = bomb.finish().expect("gzip");
    assert!(
        bomb.len() < 64 << 10,
        "the bomb fits the wire limit: {}",
        bomb.len()
    );
    let response = client
        .post(server.url("/v1/traces"))
        .header("content-type", PROTOBUF)
        .header("content-encoding", "gzip")
        .body(bomb)
        .send()
        .await
        .expect("answers");
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert!(status_message(&response.bytes().await.expect("body")).contains("after decompression"));

    let mut bad_ids = traces(1, 2);
    bad_ids.resource_spans[0].scope_spans[0].spans[1].span_id = vec![0; 8];
    let response = post(&server, "/v1/traces", PROTOBUF, encode(&bad_ids)).await;
    assert_eq!(response.status(), StatusCode::OK, "valid spans are kept");
    let partial = ExportTraceServiceResponse::decode(response.bytes().await.expect("body"))
        .expect("response")
        .partial_success;
    assert_eq!(partial.expect("partial success").rejected_spans, 1);

    let mut all_bad = traces(2, 1);
    all_bad.resource_spans[0].scope_spans[0].spans[0].trace_id = vec![1; 15];
    let response = post(&server, "/v1/traces", PROTOBUF, encode(&all_bad)).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);

    let stored: Vec<ExportTraceServiceRequest> =
        server.stored("default", BlockKind::OtlpSpans).await;
    assert_eq!(
        stored.len(),
        1,
        "only the partly valid request stored anything"
    );
    assert_eq!(stored[0].resource_spans[0].scope_spans[0].spans.len(), 1);
}

#[tokio::test]
async fn a_request_sent_twice_is_indexed_once() {
    let server = TestServer::start().await;
    let body = encode(&traces(9, 10));
    for _ in 0..2 {
        assert_eq!(
            post(&server, "/v1/traces", PROTOBUF, body.clone())
                .await
                .status(),
            StatusCode::OK
        );
    }
    let (a, b) = tokio::join!(
        post(&server, "/v1/traces", PROTOBUF, body.clone()),
        post(&server, "/v1/traces", PROTOBUF, body)
    );
    assert_eq!((a.status(), b.status()), (StatusCode::OK, StatusCode::OK));
    assert_eq!(server.block_count("default").await, 1);
}

#[tokio::test]
async fn tenants_come_from_the_header_and_stay_apart() {
    let server = TestServer::start().await;
    let client = reqwest::Client::new();
    for (tenant, seed) in [("acme", 1), ("globex", 2)] {
        let response = client
            .post(server.url("/v1/traces"))
            .header("content-type", PROTOBUF)
            .header("x-scope-orgid", tenant)
            .body(encode(&traces(seed, 1)))
            .send()
            .await
            .expect("answers");
        assert_eq!(response.status(), StatusCode::OK);
    }
    let acme: Vec<ExportTraceServiceRequest> = server.stored("acme", BlockKind::OtlpSpans).await;
    assert_eq!(acme, vec![traces(1, 1)]);
    assert_eq!(server.block_count("globex").await, 1);
    assert_eq!(server.block_count("default").await, 0);

    let response = client
        .post(server.url("/v1/traces"))
        .header("content-type", PROTOBUF)
        .header("x-scope-orgid", "../etc")
        .body(encode(&traces(3, 1)))
        .send()
        .await
        .expect("answers");
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn tokens_are_checked_and_bound_to_their_tenant() {
    let tenancy = Tenancy::from_toml(TOKENS).expect("tokens");
    let server = TestServer::with(Options {
        tenancy,
        ..Options::default()
    })
    .await;
    let send = |token: Option<&'static str>, org: Option<&'static str>| {
        let mut request = reqwest::Client::new()
            .post(server.url("/v1/traces"))
            .header("content-type", PROTOBUF)
            .body(encode(&traces(4, 1)));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(org) = org {
            request = request.header("x-scope-orgid", org);
        }
        async move { request.send().await.expect("answers").status() }
    };
    assert_eq!(send(None, None).await, StatusCode::UNAUTHORIZED);
    assert_eq!(send(Some("wrong"), None).await, StatusCode::UNAUTHORIZED);
    assert_eq!(
        send(Some("token-a"), Some("b")).await,
        StatusCode::FORBIDDEN
    );
    assert_eq!(send(Some("reader-a"), None).await, StatusCode::FORBIDDEN);
    assert_eq!(
        server.block_count("a").await + server.block_count("b").await,
        0
    );
    assert_eq!(send(Some("token-a"), None).await, StatusCode::OK);
    assert_eq!(send(Some("token-a"), Some("a")).await, StatusCode::OK);
    assert_eq!(server.block_count("a").await, 1);
    assert_eq!(server.block_count("default").await, 0);
}

#[tokio::test]
async fn ready_answers_when_the_catalog_does() {
    let server = TestServer::start().await;
    let response = reqwest::get(server.url("/ready")).await.expect("answers");
    assert_eq!(response.status(), StatusCode::OK);
}
