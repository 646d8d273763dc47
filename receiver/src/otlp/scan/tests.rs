//! The fast path against prost: the schema tables match the OTLP descriptors,
//! valid requests index exactly as the prost path does, and no mutation of a
//! valid request is accepted by the scanner but refused by prost.

use std::collections::{HashMap, HashSet};

use bytes::Bytes;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{
    AnyValue, ArrayValue, EntityRef, InstrumentationScope, KeyValue, KeyValueList, any_value,
};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::metrics::v1::exponential_histogram_data_point::Buckets;
use opentelemetry_proto::tonic::metrics::v1::summary_data_point::ValueAtQuantile;
use opentelemetry_proto::tonic::metrics::v1::{
    Exemplar, ExponentialHistogram, ExponentialHistogramDataPoint, Gauge, Histogram,
    HistogramDataPoint, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum,
    SummaryDataPoint, exemplar, metric, number_data_point,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status, span};
use prost::Message;
use prost_types::field_descriptor_proto::{Label, Type};
use prost_types::{DescriptorProto, FileDescriptorSet};

use super::*;
use crate::otlp::signals::OtlpRequest;
use crate::otlp::wire::Kind;
use crate::otlp::{Encoding, decode_and_index};

fn kv(key: &str, value: any_value::Value) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue { value: Some(value) }),
        ..Default::default()
    }
}

/// Attributes of every type OTLP has, nested.
fn attributes(n: u64) -> Vec<KeyValue> {
    use any_value::Value::{
        ArrayValue as Array, BoolValue, BytesValue, DoubleValue, IntValue, KvlistValue, StringValue,
    };
    vec![
        kv("s", StringValue(format!("value-{n}"))),
        kv("b", BoolValue(n.is_multiple_of(2))),
        kv("i", IntValue(-(n as i64))),
        kv("d", DoubleValue(n as f64 / 3.0)),
        kv("bytes", BytesValue(vec![0, 1, 2, n as u8])),
        kv(
            "array",
            Array(ArrayValue {
                values: vec![
                    AnyValue {
                        value: Some(StringValue("x".to_owned())),
                    },
                    AnyValue {
                        value: Some(IntValue(3)),
                    },
                ],
            }),
        ),
        kv(
            "map",
            KvlistValue(KeyValueList {
                values: vec![kv("inner", BoolValue(true))],
            }),
        ),
    ]
}

fn resource(service: &str) -> Resource {
    Resource {
        attributes: vec![kv(
            "service.name",
            any_value::Value::StringValue(service.to_owned()),
        )],
        dropped_attributes_count: 1,
        entity_refs: vec![EntityRef {
            schema_url: "https://opentelemetry.io/schemas/1.30.0".to_owned(),
            r#type: "service".to_owned(),
            id_keys: vec!["service.name".to_owned()],
            description_keys: vec!["service.version".to_owned()],
        }],
    }
}

fn scope() -> InstrumentationScope {
    InstrumentationScope {
        name: "lib".to_owned(),
        version: "1.2".to_owned(),
        attributes: attributes(0),
        dropped_attributes_count: 2,
    }
}

fn traces() -> ExportTraceServiceRequest {
    let span = |i: u8| Span {
        trace_id: vec![i + 1; 16],
        span_id: vec![i + 2; 8],
        trace_state: "k=v".to_owned(),
        parent_span_id: if i.is_multiple_of(2) {
            vec![]
        } else {
            vec![9; 8]
        },
        flags: 0x301,
        name: format!("span {i}"),
        kind: 2,
        start_time_unix_nano: 1_000 + u64::from(i) * 10,
        end_time_unix_nano: 1_005 + u64::from(i) * 30,
        attributes: attributes(u64::from(i)),
        dropped_attributes_count: 3,
        events: vec![span::Event {
            time_unix_nano: 1_002,
            name: "exception".to_owned(),
            attributes: attributes(7),
            dropped_attributes_count: 0,
        }],
        dropped_events_count: 4,
        links: vec![span::Link {
            trace_id: vec![7; 16],
            span_id: vec![8; 8],
            trace_state: "a=b".to_owned(),
            attributes: attributes(8),
            dropped_attributes_count: 5,
            flags: 1,
        }],
        dropped_links_count: 6,
        status: Some(Status {
            message: "boom".to_owned(),
            code: 2,
        }),
    };
    ExportTraceServiceRequest {
        resource_spans: vec![
            ResourceSpans {
                resource: Some(resource("a")),
                scope_spans: vec![ScopeSpans {
                    scope: Some(scope()),
                    spans: (0..4).map(span).collect(),
                    schema_url: "s".to_owned(),
                }],
                schema_url: "r".to_owned(),
            },
            ResourceSpans {
                resource: None,
                scope_spans: vec![ScopeSpans {
                    spans: vec![span(9)],
                    ..Default::default()
                }],
                ..Default::default()
            },
        ],
    }
}

fn logs() -> ExportLogsServiceRequest {
    let record = |i: u64| LogRecord {
        time_unix_nano: if i == 0 { 0 } else { 500 + i },
        observed_time_unix_nano: 400 + i,
        severity_number: 9,
        severity_text: "INFO".to_owned(),
        body: Some(AnyValue {
            value: Some(any_value::Value::KvlistValue(KeyValueList {
                values: attributes(i),
            })),
        }),
        attributes: attributes(i),
        dropped_attributes_count: 1,
        flags: 1,
        trace_id: if i == 1 { vec![] } else { vec![3; 16] },
        span_id: if i == 1 { vec![] } else { vec![4; 8] },
        event_name: "login".to_owned(),
    };
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: Some(resource("l")),
            scope_logs: vec![ScopeLogs {
                scope: Some(scope()),
                log_records: (0..3).map(record).collect(),
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        }],
    }
}

fn metrics() -> ExportMetricsServiceRequest {
    let exemplar = Exemplar {
        filtered_attributes: attributes(1),
        time_unix_nano: 77,
        span_id: vec![1; 8],
        trace_id: vec![2; 16],
        value: Some(exemplar::Value::AsDouble(1.5)),
    };
    let number = |t: u64| NumberDataPoint {
        attributes: attributes(t),
        start_time_unix_nano: 1,
        time_unix_nano: t,
        exemplars: vec![exemplar.clone()],
        flags: 1,
        value: Some(number_data_point::Value::AsInt(-4)),
    };
    let metric = |name: &str, data| Metric {
        name: name.to_owned(),
        description: "d".to_owned(),
        unit: "ms".to_owned(),
        metadata: attributes(2),
        data: Some(data),
    };
    let metrics = vec![
        metric(
            "gauge",
            metric::Data::Gauge(Gauge {
                data_points: vec![number(30), number(10)],
            }),
        ),
        metric(
            "sum",
            metric::Data::Sum(Sum {
                data_points: vec![number(20)],
                aggregation_temporality: 2,
                is_monotonic: true,
            }),
        ),
        metric(
            "histogram",
            metric::Data::Histogram(Histogram {
                data_points: vec![HistogramDataPoint {
                    attributes: attributes(3),
                    start_time_unix_nano: 1,
                    time_unix_nano: 40,
                    count: 6,
                    sum: Some(12.5),
                    bucket_counts: vec![1, 2, 3],
                    explicit_bounds: vec![1.0, 5.0],
                    exemplars: vec![exemplar.clone()],
                    flags: 0,
                    min: Some(0.5),
                    max: Some(9.0),
                }],
                aggregation_temporality: 1,
            }),
        ),
        metric(
            "exponential",
            metric::Data::ExponentialHistogram(ExponentialHistogram {
                data_points: vec![ExponentialHistogramDataPoint {
                    attributes: attributes(4),
                    start_time_unix_nano: 1,
                    time_unix_nano: 50,
                    count: 7,
                    sum: Some(3.0),
                    scale: -2,
                    zero_count: 1,
                    positive: Some(Buckets {
                        offset: -3,
                        bucket_counts: vec![1, 300, 2],
                    }),
                    negative: Some(Buckets {
                        offset: 2,
                        bucket_counts: vec![4],
                    }),
                    flags: 0,
                    exemplars: vec![exemplar.clone()],
                    min: Some(-1.0),
                    max: Some(8.0),
                    zero_threshold: 0.001,
                }],
                aggregation_temporality: 2,
            }),
        ),
        metric(
            "summary",
            metric::Data::Summary(opentelemetry_proto::tonic::metrics::v1::Summary {
                data_points: vec![SummaryDataPoint {
                    attributes: attributes(5),
                    start_time_unix_nano: 1,
                    time_unix_nano: 5,
                    count: 3,
                    sum: 9.0,
                    quantile_values: vec![ValueAtQuantile {
                        quantile: 0.5,
                        value: 2.0,
                    }],
                    flags: 0,
                }],
            }),
        ),
        Metric {
            name: "no data yet".to_owned(),
            ..Default::default()
        },
    ];
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: Some(resource("m")),
            scope_metrics: vec![ScopeMetrics {
                scope: Some(scope()),
                metrics,
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        }],
    }
}

const NOW: u64 = 1_000_000;

type Index = Vec<(Summary, Vec<u8>, Resource)>;

fn fast<R: OtlpRequest>(body: &[u8]) -> Option<Index> {
    let scanned = scan(R::SHAPE, body, NOW, RecordLimits::default()).expect("within limits")?;
    Some(
        scanned
            .into_iter()
            .map(|s| {
                let resource = s
                    .resource
                    .map(|r| Resource::decode(r).expect("a scanned resource decodes"))
                    .unwrap_or_default();
                (s.summary, s.entry.to_vec(), resource)
            })
            .collect(),
    )
}

fn slow<R: OtlpRequest>(body: &[u8]) -> Option<Index> {
    let indexed =
        decode_and_index::<R>(Encoding::Protobuf, Bytes::copy_from_slice(body), NOW).ok()?;
    Some(
        indexed
            .into_iter()
            .map(|i| (i.summary, i.payload.to_vec(), i.resource))
            .collect(),
    )
}

fn samples() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("traces", traces().encode_to_vec()),
        ("logs", logs().encode_to_vec()),
        ("metrics", metrics().encode_to_vec()),
    ]
}

fn both(signal: &str, body: &[u8]) -> (Option<Index>, Option<Index>) {
    match signal {
        "traces" => (
            fast::<ExportTraceServiceRequest>(body),
            slow::<ExportTraceServiceRequest>(body),
        ),
        "logs" => (
            fast::<ExportLogsServiceRequest>(body),
            slow::<ExportLogsServiceRequest>(body),
        ),
        _ => (
            fast::<ExportMetricsServiceRequest>(body),
            slow::<ExportMetricsServiceRequest>(body),
        ),
    }
}

#[test]
fn valid_requests_index_as_prost_does() {
    for (signal, body) in samples() {
        let (fast, slow) = both(signal, &body);
        let fast = fast.unwrap_or_else(|| panic!("the fast path takes a valid {signal} request"));
        assert_eq!(Some(&fast), slow.as_ref(), "{signal}");
        assert!(fast.iter().all(|(s, _, _)| s.events > 0), "{signal}");
    }
    let (fast, _) = both("metrics", &metrics().encode_to_vec());
    let summary = fast.expect("valid")[0].0;
    assert_eq!(
        (summary.events, summary.min_time, summary.max_time),
        (6, 5, 50),
        "six data points from 5 to 50"
    );
}

#[test]
fn invalid_items_and_unusual_shapes_go_to_prost() {
    let mut bad_id = traces();
    bad_id.resource_spans[0].scope_spans[0].spans[1].span_id = vec![0; 8];
    let mut unnamed = metrics();
    unnamed.resource_metrics[0].scope_metrics[0].metrics[0].name = String::new();
    let mut bad_log = logs();
    bad_log.resource_logs[0].scope_logs[0].log_records[0].trace_id = vec![1; 3];
    // A `resource` field sent twice: prost merges the two.
    let mut resource_spans = ResourceSpans {
        resource: Some(resource("a")),
        ..traces().resource_spans[1].clone()
    }
    .encode_to_vec();
    prost::encoding::message::encode(1, &resource("b"), &mut resource_spans);
    let mut merged = Vec::new();
    prost::encoding::encode_key(1, prost::encoding::WireType::LengthDelimited, &mut merged);
    prost::encoding::encode_varint(resource_spans.len() as u64, &mut merged);
    merged.extend(resource_spans);
    for (signal, body) in [
        ("traces", bad_id.encode_to_vec()),
        ("metrics", unnamed.encode_to_vec()),
        ("logs", bad_log.encode_to_vec()),
        ("traces", merged),
    ] {
        let (fast, slow) = both(signal, &body);
        assert!(fast.is_none(), "{signal}: left to prost");
        assert!(slow.is_some(), "{signal}: prost takes it");
    }
}

/// A small deterministic generator for mutations.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn mutate(rng: &mut XorShift, body: &[u8]) -> Vec<u8> {
    let mut out = body.to_vec();
    for _ in 0..1 + rng.below(3) {
        let at = rng.below(out.len());
        match rng.below(6) {
            0 => out[at] ^= 1 << rng.below(8),
            1 => out[at] = rng.next() as u8,
            2 => out.truncate(at),
            3 => out.insert(at, rng.next() as u8),
            4 => out[at] = [0x80, 0xff, 0xc3, 0x0a, 0x12, 0x00][rng.below(6)],
            _ => {
                let len = rng.below(16).min(out.len() - at);
                out.drain(at..at + len);
            }
        }
        if out.is_empty() {
            break;
        }
    }
    out
}

#[test]
fn no_mutation_is_accepted_by_the_scanner_and_refused_by_prost() {
    let mut rng = XorShift(0x5eed_1234_abcd_0001);
    let mut accepted = 0;
    for (signal, body) in samples() {
        for _ in 0..4_000 {
            let mutated = mutate(&mut rng, &body);
            let (fast, slow) = both(signal, &mutated);
            if let Some(fast) = fast {
                accepted += 1;
                assert_eq!(
                    Some(fast),
                    slow,
                    "{signal}: the scanner accepted bytes prost reads otherwise: {mutated:02x?}"
                );
            }
        }
    }
    // Some mutations (in a string's letters, a timestamp) stay valid.
    assert!(accepted > 100, "only {accepted} mutations stayed valid");
}

fn descriptors() -> HashMap<String, DescriptorProto> {
    fn add(prefix: &str, message: &DescriptorProto, into: &mut HashMap<String, DescriptorProto>) {
        let name = format!("{prefix}.{}", message.name());
        for nested in &message.nested_type {
            add(&name, nested, into);
        }
        into.insert(name, message.clone());
    }
    let set = FileDescriptorSet::decode(opentelemetry_proto::DESCRIPTORS)
        .expect("opentelemetry-proto's descriptors decode");
    let mut messages = HashMap::new();
    for file in &set.file {
        for message in &file.message_type {
            add(file.package(), message, &mut messages);
        }
    }
    messages
}

#[test]
fn the_schemas_match_the_otlp_descriptors() {
    let messages = descriptors();
    let mut todo: Vec<&Schema> = vec![&TRACES_REQUEST, &LOGS_REQUEST, &METRICS_REQUEST];
    let mut seen = HashSet::new();
    while let Some(schema) = todo.pop() {
        if !seen.insert(schema.name) {
            continue;
        }
        let message = messages
            .get(schema.name)
            .unwrap_or_else(|| panic!("{} is not an OTLP message", schema.name));
        let ours: HashSet<u32> = schema.fields().map(|(n, _)| n).collect();
        let theirs: HashSet<u32> = message.field.iter().map(|f| f.number() as u32).collect();
        assert_eq!(ours, theirs, "the field numbers of {}", schema.name);
        for field in &message.field {
            let (_, kind) = schema
                .fields()
                .find(|(n, _)| *n == field.number() as u32)
                .expect("compared above");
            let repeated = field.label() == Label::Repeated;
            let what = format!("{}.{} ({:?})", schema.name, field.name(), field.r#type());
            let ty = field.r#type();
            let varint = matches!(
                ty,
                Type::Int32
                    | Type::Int64
                    | Type::Uint32
                    | Type::Uint64
                    | Type::Sint32
                    | Type::Sint64
                    | Type::Bool
                    | Type::Enum
            );
            let i64 = matches!(ty, Type::Fixed64 | Type::Sfixed64 | Type::Double);
            let i32 = matches!(ty, Type::Fixed32 | Type::Sfixed32 | Type::Float);
            match (ty, kind) {
                (Type::Message, Kind::Msg(inner) | Kind::Visit(inner)) => {
                    assert_eq!(
                        inner.name,
                        field.type_name().trim_start_matches('.'),
                        "{what}"
                    );
                    todo.push(inner);
                }
                (Type::String, Kind::Str) | (Type::Bytes, Kind::Bytes) => {}
                (_, Kind::Varint) if varint && !repeated => {}
                (_, Kind::RepeatedVarint) if varint && repeated => {}
                (_, Kind::I64) if i64 && !repeated => {}
                (_, Kind::RepeatedI64) if i64 && repeated => {}
                (_, Kind::I32) if i32 && !repeated => {}
                (_, kind) => panic!("{what} is not {kind:?}"),
            }
        }
    }
    assert!(seen.len() > 30, "every message reachable from the requests");
}

/// A log request of one record with `empty` empty attributes (two bytes each
/// on the wire), and a second record after it.
fn log_with_empty_attributes(empty: usize, valid_ids: bool) -> Vec<u8> {
    let record = LogRecord {
        time_unix_nano: 1,
        span_id: if valid_ids { vec![] } else { vec![0; 3] },
        attributes: vec![KeyValue::default(); empty],
        ..Default::default()
    };
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            scope_logs: vec![ScopeLogs {
                log_records: vec![record, LogRecord::default()],
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
    .encode_to_vec()
}

#[test]
fn a_record_over_its_limits_is_refused_before_anything_decodes_it() {
    let limits = RecordLimits {
        max_bytes: 1 << 20,
        max_values: 1000,
    };
    let shape = <ExportLogsServiceRequest as OtlpRequest>::SHAPE;
    let at_limit = log_with_empty_attributes(1000, true);
    let scanned = scan(shape, &at_limit, NOW, limits).expect("at the limit");
    assert_eq!(scanned.expect("fast path")[0].summary.events, 2);
    for valid_ids in [true, false] {
        let over = log_with_empty_attributes(1001, valid_ids);
        let err = scan(shape, &over, NOW, limits).expect_err("over the limit");
        assert!(
            matches!(&err, IngestError::RecordTooLarge(m) if m.contains("1000 attributes") && m.contains("--max-record-values")),
            "{err}"
        );
        // The check prost's path runs first reads past an invalid record.
        let err = check_records(shape, &over, limits).expect_err("over the limit");
        assert!(matches!(err, IngestError::RecordTooLarge(_)), "{err}");
    }
    let small = RecordLimits {
        max_bytes: 100,
        max_values: 1000,
    };
    let err = scan(shape, &at_limit, NOW, small).expect_err("too many bytes");
    assert!(
        matches!(&err, IngestError::RecordTooLarge(m) if m.contains("--max-record-bytes")),
        "{err}"
    );
}

#[test]
fn data_points_are_records_of_their_own() {
    let point = |attributes: usize| NumberDataPoint {
        attributes: vec![KeyValue::default(); attributes],
        ..Default::default()
    };
    let request = |points: Vec<NumberDataPoint>| {
        ExportMetricsServiceRequest {
            resource_metrics: vec![ResourceMetrics {
                scope_metrics: vec![ScopeMetrics {
                    metrics: vec![Metric {
                        name: "m".into(),
                        data: Some(metric::Data::Gauge(Gauge {
                            data_points: points,
                        })),
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        }
        .encode_to_vec()
    };
    let limits = RecordLimits {
        max_bytes: 1 << 20,
        max_values: 100,
    };
    let shape = <ExportMetricsServiceRequest as OtlpRequest>::SHAPE;
    // 50 points of 100 attributes: 5000 in the metric, 100 in each record.
    let many = request((0..50).map(|_| point(100)).collect());
    let scanned = scan(shape, &many, NOW, limits).expect("each point within");
    assert_eq!(scanned.expect("fast path")[0].summary.events, 50);
    let over = request(vec![point(1), point(101)]);
    let err = scan(shape, &over, NOW, limits).expect_err("one point over");
    assert!(
        matches!(&err, IngestError::RecordTooLarge(m) if m.contains("data point")),
        "{err}"
    );
}
