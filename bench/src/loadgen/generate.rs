//! Realistic OTLP requests: every one unique, shaped like a service mesh's
//! spans and an application's logs (names, routes, status codes, user ids, and
//! trace context on most log records).

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status, status};

const SERVICES: [&str; 6] = [
    "checkout", "cart", "payments", "catalog", "frontend", "shipping",
];
const ROUTES: [&str; 8] = [
    "/api/cart",
    "/api/cart/{id}",
    "/api/checkout",
    "/api/products",
    "/api/products/{id}",
    "/api/users/{id}",
    "/api/shipping/quote",
    "/healthz",
];
const METHODS: [&str; 4] = ["GET", "GET", "POST", "PUT"];
/// HTTP statuses of JSON log lines: one in five a server error.
const STATUSES: [u16; 10] = [200, 200, 200, 200, 201, 204, 302, 404, 500, 503];
const SPAN_NAMES: [&str; 8] = [
    "HTTP GET",
    "HTTP POST",
    "SELECT orders",
    "INSERT order_items",
    "redis GET",
    "grpc.payments/Charge",
    "render template",
    "kafka publish",
];
const MESSAGES: [&str; 6] = [
    "request completed",
    "cache miss for product",
    "payment authorized",
    "retrying upstream call",
    "user session refreshed",
    "slow query detected",
];

/// A small, fast generator (xorshift), seeded per worker.
#[derive(Debug, Clone)]
pub(crate) struct Generator {
    state: u64,
    /// Nanoseconds; advances with every request.
    clock: u64,
}

fn kv(key: &str, value: any_value::Value) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue { value: Some(value) }),
        ..Default::default()
    }
}

fn s(v: &str) -> any_value::Value {
    any_value::Value::StringValue(v.to_owned())
}

impl Generator {
    pub(crate) fn new(seed: u64) -> Self {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        Generator {
            state: seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1,
            clock: now,
        }
    }

    fn next(&mut self) -> u64 {
        let mut x = self.state;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.state = x;
        x
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[(self.next() % items.len() as u64) as usize]
    }

    fn resource(&mut self) -> Resource {
        let service = self.pick(&SERVICES);
        let pod = self.next() % 4;
        Resource {
            attributes: vec![
                kv("service.name", s(service)),
                kv("service.version", s("2.14.1")),
                kv("deployment.environment", s("production")),
                kv("host.name", s(&format!("node-{}", pod + 10))),
                kv("k8s.pod.name", s(&format!("{service}-7d9f8b-{pod}"))),
                kv("telemetry.sdk.language", s("rust")),
            ],
            ..Default::default()
        }
    }

    fn scope() -> InstrumentationScope {
        InstrumentationScope {
            name: "loadgen".to_owned(),
            version: "1.0.0".to_owned(),
            ..Default::default()
        }
    }

    /// The same log records as a Loki push of one stream: snappy-compressed
    /// protobuf `PushRequest`, the resource's attributes as labels, each
    /// record's line, time and trace context (structured metadata).
    pub(crate) fn loki_push(&mut self, count: usize) -> Vec<u8> {
        use framelake_receiver::loki::{
            EntryAdapter, LabelPairAdapter, PushRequest, StreamAdapter,
        };
        let request = self.logs(count);
        let resource = &request.resource_logs[0];
        let text = |v: &Option<AnyValue>| match v.as_ref().and_then(|v| v.value.as_ref()) {
            Some(any_value::Value::StringValue(s)) => s.clone(),
            Some(any_value::Value::IntValue(i)) => i.to_string(),
            _ => String::new(),
        };
        let labels = resource
            .resource
            .as_ref()
            .map(|r| {
                let pairs: Vec<String> = r
                    .attributes
                    .iter()
                    .map(|kv| format!("{}={:?}", kv.key.replace('.', "_"), text(&kv.value)))
                    .collect();
                format!("{{{}}}", pairs.join(", "))
            })
            .unwrap_or_default();
        let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
        let entries = resource.scope_logs[0]
            .log_records
            .iter()
            .map(|r| EntryAdapter {
                timestamp: Some(prost_types::Timestamp {
                    seconds: (r.time_unix_nano / 1_000_000_000) as i64,
                    nanos: (r.time_unix_nano % 1_000_000_000) as i32,
                }),
                line: text(&r.body),
                structured_metadata: if r.trace_id.is_empty() {
                    Vec::new()
                } else {
                    vec![
                        LabelPairAdapter {
                            name: "trace_id".into(),
                            value: hex(&r.trace_id),
                        },
                        LabelPairAdapter {
                            name: "span_id".into(),
                            value: hex(&r.span_id),
                        },
                    ]
                },
                parsed: Vec::new(),
            })
            .collect();
        let push = PushRequest {
            streams: vec![StreamAdapter {
                labels,
                entries,
                hash: 0,
            }],
        };
        snap::raw::Encoder::new()
            .compress_vec(&prost::Message::encode_to_vec(&push))
            .expect("snappy compresses any input")
    }

    /// A request of `count` spans in traces of 8 spans each.
    pub(crate) fn spans(&mut self, count: usize) -> ExportTraceServiceRequest {
        let mut spans = Vec::with_capacity(count);
        let mut trace_id = Vec::new();
        let mut root = Vec::new();
        for i in 0..count {
            if i % 8 == 0 {
                trace_id = [self.next().to_le_bytes(), self.next().to_le_bytes()].concat();
                root = self.next().to_le_bytes().to_vec();
            }
            self.clock += 1_000 + self.next() % 50_000;
            let span_id = if i % 8 == 0 {
                root.clone()
            } else {
                self.next().to_le_bytes().to_vec()
            };
            let duration = 20_000 + self.next() % 30_000_000;
            let status_code = if self.next().is_multiple_of(50) {
                500
            } else {
                200
            };
            let route = self.pick(&ROUTES);
            spans.push(Span {
                trace_id: trace_id.clone(),
                span_id,
                parent_span_id: if i % 8 == 0 { Vec::new() } else { root.clone() },
                name: self.pick(&SPAN_NAMES).to_owned(),
                kind: if i % 8 == 0 {
                    SpanKind::Server as i32
                } else {
                    SpanKind::Client as i32
                },
                start_time_unix_nano: self.clock,
                end_time_unix_nano: self.clock + duration,
                attributes: vec![
                    kv("http.request.method", s(self.pick(&METHODS))),
                    kv("http.route", s(route)),
                    kv(
                        "http.response.status_code",
                        any_value::Value::IntValue(status_code),
                    ),
                    kv(
                        "user.id",
                        any_value::Value::IntValue((self.next() % 100_000) as i64),
                    ),
                ],
                status: (status_code == 500).then(|| Status {
                    code: status::StatusCode::Error as i32,
                    message: "upstream returned 500".to_owned(),
                }),
                ..Default::default()
            });
        }
        ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some(self.resource()),
                scope_spans: vec![ScopeSpans {
                    scope: Some(Self::scope()),
                    spans,
                    ..Default::default()
                }],
                ..Default::default()
            }],
        }
    }

    /// A request of `count` log records, most with trace context; their
    /// lines logfmt (`… user=N took=Nms route=R`).
    pub(crate) fn logs(&mut self, count: usize) -> ExportLogsServiceRequest {
        self.logs_as(count, false)
    }

    /// The same with JSON lines (`{"msg": …, "user": N, "status": N,
    /// "took_ms": N, "route": R}`) when `json`.
    pub(crate) fn logs_as(&mut self, count: usize, json: bool) -> ExportLogsServiceRequest {
        let mut records = Vec::with_capacity(count);
        for _ in 0..count {
            self.clock += 1_000 + self.next() % 50_000;
            let severity = [9, 9, 9, 9, 13, 17][(self.next() % 6) as usize];
            let traced = !self.next().is_multiple_of(4);
            let message = self.pick(&MESSAGES);
            let (user, took, route) =
                (self.next() % 100_000, self.next() % 900, self.pick(&ROUTES));
            let body = if json {
                let status = STATUSES[(self.next() % STATUSES.len() as u64) as usize];
                format!(
                    r#"{{"msg":"{message}","user":{user},"status":{status},"took_ms":{took},"route":"{route}"}}"#
                )
            } else {
                format!("{message} user={user} took={took}ms route={route}")
            };
            records.push(LogRecord {
                time_unix_nano: self.clock,
                observed_time_unix_nano: self.clock + 150_000,
                severity_number: severity,
                severity_text: match severity {
                    9 => "INFO",
                    13 => "WARN",
                    _ => "ERROR",
                }
                .to_owned(),
                body: Some(AnyValue {
                    value: Some(s(&body)),
                }),
                attributes: vec![
                    kv("code.function", s("handle_request")),
                    kv(
                        "thread.id",
                        any_value::Value::IntValue((self.next() % 64) as i64),
                    ),
                ],
                trace_id: if traced {
                    [self.next().to_le_bytes(), self.next().to_le_bytes()].concat()
                } else {
                    Vec::new()
                },
                span_id: if traced {
                    self.next().to_le_bytes().to_vec()
                } else {
                    Vec::new()
                },
                ..Default::default()
            });
        }
        ExportLogsServiceRequest {
            resource_logs: vec![ResourceLogs {
                resource: Some(self.resource()),
                scope_logs: vec![ScopeLogs {
                    scope: Some(Self::scope()),
                    log_records: records,
                    ..Default::default()
                }],
                ..Default::default()
            }],
        }
    }
}
