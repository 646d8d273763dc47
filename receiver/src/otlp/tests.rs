use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceResponse;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse;
use opentelemetry_proto::tonic::common::v1::any_value;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::metrics::v1::{
    Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, metric,
};
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};

use super::*;

fn tenant() -> TenantId {
    "t".parse().expect("tenant")
}

fn resource(service: &str) -> Resource {
    Resource {
        attributes: vec![KeyValue {
            key: "service.name".to_owned(),
            value: Some(AnyValue {
                value: Some(any_value::Value::StringValue(service.to_owned())),
            }),
            ..Default::default()
        }],
        ..Default::default()
    }
}

fn span(trace: u8, id: u8, start: u64) -> Span {
    Span {
        trace_id: vec![trace; 16],
        span_id: vec![id; 8],
        name: format!("span-{id}"),
        start_time_unix_nano: start,
        end_time_unix_nano: start + 10,
        ..Default::default()
    }
}

fn traces(resources: Vec<(&str, Vec<Span>)>) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: resources
            .into_iter()
            .map(|(service, spans)| ResourceSpans {
                resource: Some(resource(service)),
                scope_spans: vec![ScopeSpans {
                    spans,
                    ..Default::default()
                }],
                ..Default::default()
            })
            .collect(),
    }
}

/// Prepares a protobuf body for the test tenant, with the default compression.
fn protobuf(signal: Signal, body: impl Into<Bytes>) -> Result<Prepared, IngestError> {
    prepare(
        &tenant(),
        signal,
        Encoding::Protobuf,
        body.into(),
        Compression::default(),
        RecordLimits::default(),
    )
}

fn payloads(prepared: &Prepared) -> Vec<Vec<u8>> {
    let batch = prepared.batch.as_ref().expect("blocks to store");
    batch
        .blocks
        .iter()
        .map(|b| {
            b.block
                .codec
                .decompress(&b.block.data, b.block.uncompressed_length as usize)
                .expect("decompresses")
                .to_vec()
        })
        .collect()
}

#[test]
fn each_resource_becomes_a_block_holding_its_bytes_as_sent() {
    let request = traces(vec![
        ("a", vec![span(1, 1, 100), span(1, 2, 50)]),
        ("b", vec![span(2, 3, 7)]),
    ]);
    let body = Bytes::from(request.encode_to_vec());
    let prepared = protobuf(Signal::Traces, body).expect("valid");
    assert_eq!((prepared.events, prepared.rejected), (3, 0));
    let batch = prepared.batch.as_ref().expect("blocks");
    assert_eq!(batch.blocks.len(), 2);
    assert_eq!(
        batch
            .processes
            .iter()
            .map(|p| p.service_name.as_str())
            .collect::<Vec<_>>(),
        ["a", "b"]
    );
    let first = &batch.blocks[0].block;
    assert_eq!(
        (first.event_count, first.min_time, first.max_time),
        (2, 50, 110)
    );
    for (payload, expected) in payloads(&prepared).into_iter().zip(&request.resource_spans) {
        let one = ExportTraceServiceRequest::decode(payload.as_slice()).expect("payload decodes");
        assert_eq!(one.resource_spans, vec![expected.clone()]);
    }
    let response =
        ExportTraceServiceResponse::decode(prepared.response.as_ref()).expect("response");
    assert_eq!(response.partial_success, None);
}

#[test]
fn a_block_time_range_covers_every_span_from_start_to_end() {
    // The first span starts first: its start bounds the range (it once did not).
    let request = traces(vec![("a", vec![span(1, 1, 50), span(1, 2, 100)])]);
    let prepared = protobuf(Signal::Traces, request.encode_to_vec()).expect("valid");
    let block = &prepared.batch.as_ref().expect("blocks").blocks[0].block;
    assert_eq!((block.min_time, block.max_time), (50, 110));
    // The full decode (the path of requests the scan leaves to prost) agrees.
    let mut resource = request.resource_spans[0].clone();
    let summary =
        <ExportTraceServiceRequest as super::signals::OtlpRequest>::index(&mut resource, 0);
    assert_eq!((summary.min_time, summary.max_time), (50, 110));
}

#[test]
fn the_same_request_maps_to_the_same_blocks() {
    let body = Bytes::from(traces(vec![("a", vec![span(1, 1, 100)])]).encode_to_vec());
    let ids = |body: Bytes| {
        let prepared = protobuf(Signal::Traces, body).expect("valid");
        prepared
            .batch
            .expect("blocks")
            .blocks
            .iter()
            .map(|b| b.block.block_id)
            .collect::<Vec<_>>()
    };
    assert_eq!(ids(body.clone()), ids(body.clone()));
    let other_tenant = prepare(
        &"u".parse().expect("tenant"),
        Signal::Traces,
        Encoding::Protobuf,
        body.clone(),
        Compression::default(),
        RecordLimits::default(),
    )
    .expect("valid");
    assert_ne!(
        other_tenant.batch.expect("blocks").blocks[0].block.block_id,
        ids(body)[0],
        "block ids are per tenant"
    );
}

#[test]
fn json_follows_the_otlp_json_rules() {
    let json = r#"{"resourceSpans":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"web"}},
        {"key":"n","value":{"intValue":"42"}}]},
        "scopeSpans":[{"scope":{"name":"s"},"spans":[{"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174",
        "name":"GET /","kind":2,"startTimeUnixNano":"1544712660000000000","endTimeUnixNano":"1544712661000000000",
        "unknownField":true,"attributes":[{"key":"http.status_code","value":{"intValue":200}}]}]}]}]}"#;
    let prepared = prepare(
        &tenant(),
        Signal::Traces,
        Encoding::Json,
        Bytes::from(json),
        Compression::default(),
        RecordLimits::default(),
    )
    .expect("valid JSON");
    let stored = ExportTraceServiceRequest::decode(payloads(&prepared)[0].as_slice())
        .expect("stored as protobuf");
    let span = &stored.resource_spans[0].scope_spans[0].spans[0];
    assert_eq!(
        span.trace_id,
        [
            0x5b, 0x8e, 0xff, 0xf7, 0x98, 0x03, 0x81, 0x03, 0xd2, 0x69, 0xb6, 0x33, 0x81, 0x3f,
            0xc6, 0x0c
        ]
    );
    assert_eq!(span.start_time_unix_nano, 1_544_712_660_000_000_000);
    assert_eq!(span.kind, 2);
    assert_eq!(
        span.attributes[0]
            .value
            .as_ref()
            .and_then(|v| v.value.clone()),
        Some(any_value::Value::IntValue(200))
    );
    assert_eq!(
        prepared.response.as_ref(),
        b"{}",
        "an empty ExportTraceServiceResponse in JSON"
    );
}

#[test]
fn invalid_spans_are_rejected_and_the_rest_kept() {
    let mut zero_trace = span(0, 9, 1);
    zero_trace.trace_id = vec![0; 16];
    let mut short_span = span(3, 8, 1);
    short_span.span_id = vec![1, 2, 3];
    let request = traces(vec![("a", vec![span(1, 1, 5), zero_trace, short_span])]);
    let prepared = protobuf(Signal::Traces, request.encode_to_vec()).expect("partly valid");
    assert_eq!((prepared.events, prepared.rejected), (1, 2));
    let stored =
        ExportTraceServiceRequest::decode(payloads(&prepared)[0].as_slice()).expect("decodes");
    assert_eq!(
        stored.resource_spans[0].scope_spans[0].spans,
        vec![span(1, 1, 5)]
    );
    let response =
        ExportTraceServiceResponse::decode(prepared.response.as_ref()).expect("response");
    let partial = response.partial_success.expect("partial success");
    assert_eq!(partial.rejected_spans, 2);
    assert!(
        partial.error_message.contains("16 bytes"),
        "{}",
        partial.error_message
    );

    let all_bad = traces(vec![("a", vec![short_span_only()])]);
    let err = protobuf(Signal::Traces, all_bad.encode_to_vec()).expect_err("nothing valid");
    assert!(matches!(err, IngestError::BadRequest(_)), "{err}");
}

fn short_span_only() -> Span {
    Span {
        span_id: vec![1],
        ..span(1, 1, 1)
    }
}

#[test]
fn malformed_bodies_are_bad_requests() {
    for (encoding, body) in [
        (Encoding::Protobuf, &b"\x0a\xff\xff\xff\xff\x0f"[..]),
        (Encoding::Protobuf, &b"\x0a\x02\x0a"[..]),
        (Encoding::Json, &b"{\"resourceSpans\": [{"[..]),
        (
            Encoding::Json,
            &b"{\"resourceSpans\":[{\"scopeSpans\":[{\"spans\":[{\"traceId\":\"zz\"}]}]}]}"[..],
        ),
    ] {
        let err = prepare(
            &tenant(),
            Signal::Traces,
            encoding,
            Bytes::from_static(body),
            Compression::default(),
            RecordLimits::default(),
        )
        .expect_err("malformed");
        assert!(
            matches!(err, IngestError::BadRequest(_)),
            "{encoding:?} {body:?}: {err}"
        );
    }
}

#[test]
fn logs_without_a_time_are_indexed_at_their_observed_or_arrival_time() {
    let record = |time, observed| LogRecord {
        time_unix_nano: time,
        observed_time_unix_nano: observed,
        ..Default::default()
    };
    let request = ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: Some(resource("svc")),
            scope_logs: vec![ScopeLogs {
                log_records: vec![record(0, 500), record(700, 0)],
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    let prepared = protobuf(Signal::Logs, request.encode_to_vec()).expect("valid");
    let block = &prepared.batch.as_ref().expect("blocks").blocks[0].block;
    assert_eq!(
        (block.event_count, block.min_time, block.max_time),
        (2, 500, 700)
    );
    let response = ExportLogsServiceResponse::decode(prepared.response.as_ref()).expect("response");
    assert_eq!(response.partial_success, None);
}

#[test]
fn metrics_count_data_points_and_refuse_unnamed_metrics() {
    let gauge = |name: &str, times: &[u64]| Metric {
        name: name.to_owned(),
        data: Some(metric::Data::Gauge(Gauge {
            data_points: times
                .iter()
                .map(|&t| NumberDataPoint {
                    time_unix_nano: t,
                    ..Default::default()
                })
                .collect(),
        })),
        ..Default::default()
    };
    let request = ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: Some(resource("svc")),
            scope_metrics: vec![ScopeMetrics {
                metrics: vec![gauge("cpu", &[30, 10, 20]), gauge("", &[5])],
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    let prepared = protobuf(Signal::Metrics, request.encode_to_vec()).expect("valid");
    assert_eq!((prepared.events, prepared.rejected), (3, 1));
    let block = &prepared.batch.as_ref().expect("blocks").blocks[0].block;
    assert_eq!((block.min_time, block.max_time), (10, 30));
}

#[test]
fn empty_requests_store_nothing_and_succeed() {
    let prepared = protobuf(Signal::Traces, Bytes::new()).expect("empty is valid");
    assert!(prepared.batch.is_none());
    assert_eq!(prepared.events, 0);
}

#[test]
fn times_past_2262_and_spans_ending_before_they_start_are_rejected() {
    let mut backwards = span(2, 2, 100);
    backwards.end_time_unix_nano = 99;
    let mut far = span(3, 3, 100);
    far.end_time_unix_nano = u64::MAX;
    let request = traces(vec![("a", vec![span(1, 1, 5), backwards, far])]);
    let prepared = protobuf(Signal::Traces, request.encode_to_vec()).expect("partly valid");
    assert_eq!((prepared.events, prepared.rejected), (1, 2));
    let response =
        ExportTraceServiceResponse::decode(prepared.response.as_ref()).expect("response");
    let message = response.partial_success.expect("partial").error_message;
    assert!(
        message.contains("2262") && message.contains("end not before its start"),
        "{message}"
    );

    let record = |time: u64| LogRecord {
        time_unix_nano: time,
        ..Default::default()
    };
    let logs = ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            scope_logs: vec![ScopeLogs {
                log_records: vec![
                    record(1),
                    record(i64::MAX as u64 + 1),
                    record(i64::MAX as u64),
                ],
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    let prepared = protobuf(Signal::Logs, logs.encode_to_vec()).expect("partly valid");
    assert_eq!((prepared.events, prepared.rejected), (2, 1));
}
