//! The OTLP requests the SQL suite queries: fixed times from
//! 2026-01-01T00:00:00Z, two services, every kind of metric point.

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{
    AnyValue, ArrayValue, InstrumentationScope, KeyValue, any_value::Value,
};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::metrics::v1::summary_data_point::ValueAtQuantile;
use opentelemetry_proto::tonic::metrics::v1::{
    Exemplar, ExponentialHistogram, ExponentialHistogramDataPoint, Gauge, Histogram,
    HistogramDataPoint, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum, Summary,
    SummaryDataPoint, exemplar, exponential_histogram_data_point::Buckets, metric,
    number_data_point,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status, span};
use prost::Message;

/// 2026-01-01T00:00:00Z in nanoseconds.
pub(crate) const T0: u64 = 1_767_225_600_000_000_000;
const SECOND: u64 = 1_000_000_000;

pub(crate) fn kv(key: &str, value: Value) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue { value: Some(value) }),
        ..Default::default()
    }
}

fn s(v: &str) -> Value {
    Value::StringValue(v.to_owned())
}

fn resource(service: &str) -> Option<Resource> {
    Some(Resource {
        attributes: vec![kv("service.name", s(service)), kv("host.name", s("node-1"))],
        ..Default::default()
    })
}

fn scope() -> Option<InstrumentationScope> {
    Some(InstrumentationScope {
        name: "app".into(),
        version: "1.0".into(),
        ..Default::default()
    })
}

fn log(at: u64, severity: i32, text: &str, body: &str, attributes: Vec<KeyValue>) -> LogRecord {
    LogRecord {
        time_unix_nano: at,
        observed_time_unix_nano: at + 1,
        severity_number: severity,
        severity_text: text.into(),
        body: Some(AnyValue {
            value: Some(s(body)),
        }),
        attributes,
        ..Default::default()
    }
}

/// Logs at `base`, `base + 1 s`, … of two services.
pub(crate) fn logs_at(base: u64) -> Vec<u8> {
    let mut traced = log(
        base + 3 * SECOND,
        17,
        "ERROR",
        "payment declined",
        vec![
            kv("http.status_code", Value::IntValue(402)),
            kv("retry", Value::BoolValue(false)),
        ],
    );
    traced.trace_id = (1..=16).collect();
    traced.span_id = (1..=8).collect();
    ExportLogsServiceRequest {
        resource_logs: vec![
            ResourceLogs {
                resource: resource("checkout"),
                scope_logs: vec![ScopeLogs {
                    scope: scope(),
                    log_records: vec![
                        log(
                            base,
                            9,
                            "INFO",
                            "order placed",
                            vec![
                                kv("order.id", Value::IntValue(1001)),
                                kv("amount", Value::DoubleValue(12.5)),
                            ],
                        ),
                        log(
                            base + SECOND,
                            13,
                            "WARN",
                            "slow payment provider",
                            vec![
                                kv("latency_ms", Value::IntValue(950)),
                                kv(
                                    "tags",
                                    Value::ArrayValue(ArrayValue {
                                        values: vec![
                                            AnyValue {
                                                value: Some(s("a")),
                                            },
                                            AnyValue {
                                                value: Some(Value::IntValue(2)),
                                            },
                                        ],
                                    }),
                                ),
                            ],
                        ),
                        traced,
                    ],
                    ..Default::default()
                }],
                ..Default::default()
            },
            ResourceLogs {
                resource: resource("cart"),
                scope_logs: vec![ScopeLogs {
                    scope: scope(),
                    log_records: vec![log(
                        base + 2 * SECOND,
                        9,
                        "INFO",
                        "item added",
                        vec![
                            kv("sku", s("X-1")),
                            kv("raw", Value::BytesValue(vec![0xca, 0xfe])),
                        ],
                    )],
                    ..Default::default()
                }],
                ..Default::default()
            },
        ],
    }
    .encode_to_vec()
}

/// One trace: a server span and its client child with an event and a link.
pub(crate) fn spans_at(base: u64) -> Vec<u8> {
    let trace_id: Vec<u8> = (1..=16).collect();
    let root = Span {
        trace_id: trace_id.clone(),
        span_id: vec![0xaa; 8],
        name: "POST /checkout".into(),
        kind: 2,
        start_time_unix_nano: base,
        end_time_unix_nano: base + 250_000_000,
        attributes: vec![kv("http.method", s("POST"))],
        status: Some(Status {
            message: "declined".into(),
            code: 2,
        }),
        ..Default::default()
    };
    let child = Span {
        trace_id,
        span_id: vec![0xbb; 8],
        parent_span_id: vec![0xaa; 8],
        name: "charge card".into(),
        kind: 3,
        start_time_unix_nano: base + 10_000_000,
        end_time_unix_nano: base + 210_000_000,
        events: vec![span::Event {
            time_unix_nano: base + 20_000_000,
            name: "retry".into(),
            attributes: vec![kv("attempt", Value::IntValue(2))],
            ..Default::default()
        }],
        links: vec![span::Link {
            trace_id: vec![0x42; 16],
            span_id: vec![0x43; 8],
            ..Default::default()
        }],
        ..Default::default()
    };
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: resource("checkout"),
            scope_spans: vec![ScopeSpans {
                scope: scope(),
                spans: vec![root, child],
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
    .encode_to_vec()
}

/// A counter, a gauge, a histogram, an exponential histogram and a summary.
pub(crate) fn metrics_at(base: u64) -> Vec<u8> {
    let number = |value, attributes| NumberDataPoint {
        start_time_unix_nano: base - 60 * SECOND,
        time_unix_nano: base,
        value: Some(value),
        attributes,
        ..Default::default()
    };
    let metric = |name: &str, unit: &str, data| Metric {
        name: name.into(),
        unit: unit.into(),
        data: Some(data),
        ..Default::default()
    };
    let metrics = vec![
        metric(
            "orders",
            "1",
            metric::Data::Sum(Sum {
                data_points: vec![NumberDataPoint {
                    exemplars: vec![Exemplar {
                        time_unix_nano: base,
                        value: Some(exemplar::Value::AsInt(1)),
                        trace_id: (1..=16).collect(),
                        span_id: vec![0xaa; 8],
                        ..Default::default()
                    }],
                    ..number(
                        number_data_point::Value::AsInt(42),
                        vec![kv("region", s("eu"))],
                    )
                }],
                aggregation_temporality: 2,
                is_monotonic: true,
            }),
        ),
        metric(
            "queue.depth",
            "{items}",
            metric::Data::Gauge(Gauge {
                data_points: vec![number(number_data_point::Value::AsDouble(3.5), vec![])],
            }),
        ),
        metric(
            "latency",
            "ms",
            metric::Data::Histogram(Histogram {
                data_points: vec![HistogramDataPoint {
                    start_time_unix_nano: base - 60 * SECOND,
                    time_unix_nano: base,
                    count: 10,
                    sum: Some(740.0),
                    bucket_counts: vec![2, 5, 3],
                    explicit_bounds: vec![50.0, 100.0],
                    min: Some(10.0),
                    max: Some(180.0),
                    ..Default::default()
                }],
                aggregation_temporality: 2,
            }),
        ),
        metric(
            "size",
            "By",
            metric::Data::ExponentialHistogram(ExponentialHistogram {
                data_points: vec![ExponentialHistogramDataPoint {
                    time_unix_nano: base,
                    count: 5,
                    sum: Some(50.0),
                    scale: 1,
                    zero_count: 1,
                    positive: Some(Buckets {
                        offset: 3,
                        bucket_counts: vec![1, 2, 1],
                    }),
                    ..Default::default()
                }],
                aggregation_temporality: 1,
            }),
        ),
        metric(
            "rtt",
            "s",
            metric::Data::Summary(Summary {
                data_points: vec![SummaryDataPoint {
                    time_unix_nano: base,
                    count: 4,
                    sum: 2.0,
                    quantile_values: vec![
                        ValueAtQuantile {
                            quantile: 0.5,
                            value: 0.4,
                        },
                        ValueAtQuantile {
                            quantile: 0.99,
                            value: 0.9,
                        },
                    ],
                    ..Default::default()
                }],
            }),
        ),
    ];
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: resource("checkout"),
            scope_metrics: vec![ScopeMetrics {
                scope: scope(),
                metrics,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
    .encode_to_vec()
}

/// `traces` traces of two spans each (a root and a child) starting at `base`,
/// with ids scattered as real ones are (derived from `seed`).
pub(crate) fn traces(seed: u64, traces: u64, base: u64) -> Vec<u8> {
    let mut next = scattered(seed);
    let spans = (0..traces)
        .flat_map(|i| {
            let trace_id: Vec<u8> = [next().to_be_bytes(), next().to_be_bytes()].concat();
            let root_id = next().to_be_bytes().to_vec();
            let start = base + i * 1_000_000;
            let root = Span {
                trace_id: trace_id.clone(),
                span_id: root_id.clone(),
                name: "GET /item".into(),
                kind: 2,
                start_time_unix_nano: start,
                end_time_unix_nano: start + 5_000_000,
                ..Default::default()
            };
            let child = Span {
                trace_id,
                span_id: next().to_be_bytes().to_vec(),
                parent_span_id: root_id,
                name: "SELECT item".into(),
                kind: 3,
                start_time_unix_nano: start + 1_000_000,
                end_time_unix_nano: start + 4_000_000,
                ..Default::default()
            };
            [root, child]
        })
        .collect();
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: resource("catalog"),
            scope_spans: vec![ScopeSpans {
                scope: scope(),
                spans,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
    .encode_to_vec()
}

/// `n` log records scattered over the day from `base` (derived from `seed`):
/// three services, four severities, two scopes; some share a minute.
pub(crate) fn logs_over_a_day(seed: u64, n: u64, base: u64) -> Vec<u8> {
    let mut next = scattered(seed);
    let severities = [(5, "DEBUG"), (9, "INFO"), (13, "WARN"), (17, "ERROR")];
    let resource_logs = ["checkout", "cart", "search"]
        .into_iter()
        .map(|service| ResourceLogs {
            resource: resource(service),
            scope_logs: ["app", "db"]
                .into_iter()
                .map(|scope_name| ScopeLogs {
                    scope: Some(InstrumentationScope {
                        name: scope_name.into(),
                        ..Default::default()
                    }),
                    log_records: (0..n / 6)
                        .map(|_| {
                            // Minutes of the day, and seconds within them.
                            let at = base + next() % 1440 * 60 * SECOND + next() % 60 * SECOND;
                            let (number, text) = severities[(next() % 4) as usize];
                            log(at, number, text, "work done", Vec::new())
                        })
                        .collect(),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        })
        .collect();
    ExportLogsServiceRequest { resource_logs }.encode_to_vec()
}

/// Numbers that look random (xorshift), the same for the same seed.
fn scattered(seed: u64) -> impl FnMut() -> u64 {
    let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    }
}
