//! Renders what the lake holds in the shape the SDK scripts report what they
//! sent, and compares the two field by field.

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::{
    Exemplar, exemplar, exponential_histogram_data_point::Buckets, metric, number_data_point,
};
use serde_json::{Map, Value, json};

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn any(value: &AnyValue) -> Value {
    match &value.value {
        None => Value::Null,
        Some(any_value::Value::StringValue(s)) => json!(s),
        Some(any_value::Value::BoolValue(b)) => json!(b),
        Some(any_value::Value::IntValue(i)) => json!(i),
        Some(any_value::Value::DoubleValue(d)) => json!(d),
        Some(any_value::Value::ArrayValue(a)) => Value::Array(a.values.iter().map(any).collect()),
        Some(any_value::Value::KvlistValue(kv)) => attributes(&kv.values),
        Some(any_value::Value::BytesValue(b)) => json!(hex(b)),
        Some(any_value::Value::StringValueStrindex(i)) => json!(i),
    }
}

pub(crate) fn attributes(kvs: &[KeyValue]) -> Value {
    Value::Object(
        kvs.iter()
            .map(|kv| {
                (
                    kv.key.clone(),
                    kv.value.as_ref().map(any).unwrap_or(Value::Null),
                )
            })
            .collect::<Map<_, _>>(),
    )
}

fn scope(scope: Option<&InstrumentationScope>) -> Value {
    let s = scope.cloned().unwrap_or_default();
    json!({ "name": s.name, "version": s.version })
}

/// Every stored span with its resource attributes.
pub(crate) fn spans(stored: &[ExportTraceServiceRequest]) -> Vec<(Value, Value)> {
    let mut out = Vec::new();
    for request in stored {
        for rs in &request.resource_spans {
            let resource = attributes(&rs.resource.clone().unwrap_or_default().attributes);
            for ss in &rs.scope_spans {
                for span in &ss.spans {
                    let status = span.status.clone().unwrap_or_default();
                    out.push((
                        resource.clone(),
                        json!({
                            "trace_id": hex(&span.trace_id),
                            "span_id": hex(&span.span_id),
                            "parent_span_id": hex(&span.parent_span_id),
                            "name": span.name,
                            "kind": span.kind,
                            "scope": scope(ss.scope.as_ref()),
                            "start_time_unix_nano": span.start_time_unix_nano,
                            "end_time_unix_nano": span.end_time_unix_nano,
                            "attributes": attributes(&span.attributes),
                            "events": span.events.iter().map(|e| json!({
                                "name": e.name, "time_unix_nano": e.time_unix_nano, "attributes": attributes(&e.attributes),
                            })).collect::<Vec<_>>(),
                            "links": span.links.iter().map(|l| json!({
                                "trace_id": hex(&l.trace_id), "span_id": hex(&l.span_id), "attributes": attributes(&l.attributes),
                            })).collect::<Vec<_>>(),
                            "status": { "code": status.code, "message": status.message },
                        }),
                    ));
                }
            }
        }
    }
    out
}

/// Every stored log record with its resource attributes.
pub(crate) fn logs(stored: &[ExportLogsServiceRequest]) -> Vec<(Value, Value)> {
    let mut out = Vec::new();
    for request in stored {
        for rl in &request.resource_logs {
            let resource = attributes(&rl.resource.clone().unwrap_or_default().attributes);
            for sl in &rl.scope_logs {
                for log in &sl.log_records {
                    out.push((
                        resource.clone(),
                        json!({
                            "time_unix_nano": log.time_unix_nano,
                            "observed_time_unix_nano": log.observed_time_unix_nano,
                            "severity_number": log.severity_number,
                            "severity_text": log.severity_text,
                            "body": log.body.as_ref().map(any).unwrap_or(Value::Null),
                            "attributes": attributes(&log.attributes),
                            "trace_id": hex(&log.trace_id),
                            "span_id": hex(&log.span_id),
                            "scope": scope(sl.scope.as_ref()),
                        }),
                    ));
                }
            }
        }
    }
    out
}

fn number(value: &Option<number_data_point::Value>) -> (Value, Value) {
    match value {
        Some(number_data_point::Value::AsInt(i)) => (json!("int"), json!(i)),
        Some(number_data_point::Value::AsDouble(d)) => (json!("double"), json!(d)),
        None => (Value::Null, Value::Null),
    }
}

fn exemplars(exemplars: &[Exemplar]) -> Value {
    exemplars
        .iter()
        .map(|e| {
            let (value_type, value) = match e.value {
                Some(exemplar::Value::AsInt(i)) => (json!("int"), json!(i)),
                Some(exemplar::Value::AsDouble(d)) => (json!("double"), json!(d)),
                None => (Value::Null, Value::Null),
            };
            json!({
                "time_unix_nano": e.time_unix_nano, "value_type": value_type, "value": value,
                "trace_id": hex(&e.trace_id), "span_id": hex(&e.span_id),
                "filtered_attributes": attributes(&e.filtered_attributes),
            })
        })
        .collect()
}

fn buckets(b: &Option<Buckets>) -> Value {
    let b = b.clone().unwrap_or_default();
    json!({ "offset": b.offset, "bucket_counts": b.bucket_counts })
}

/// Every stored metric (one entry per metric per request) with its resource attributes.
pub(crate) fn metrics(stored: &[ExportMetricsServiceRequest]) -> Vec<(Value, Value)> {
    let mut out = Vec::new();
    for request in stored {
        for rm in &request.resource_metrics {
            let resource = attributes(&rm.resource.clone().unwrap_or_default().attributes);
            for sm in &rm.scope_metrics {
                for m in &sm.metrics {
                    let mut rendered = json!({
                        "name": m.name, "description": m.description, "unit": m.unit, "scope": scope(sm.scope.as_ref()),
                    });
                    let fields = match &m.data {
                        Some(metric::Data::Sum(s)) => json!({
                            "type": "sum", "is_monotonic": s.is_monotonic, "aggregation_temporality": s.aggregation_temporality,
                            "points": s.data_points.iter().map(|p| { let (t, v) = number(&p.value); json!({
                                "attributes": attributes(&p.attributes), "start_time_unix_nano": p.start_time_unix_nano,
                                "time_unix_nano": p.time_unix_nano, "value_type": t, "value": v,
                                "exemplars": exemplars(&p.exemplars) }) }).collect::<Vec<_>>(),
                        }),
                        Some(metric::Data::Gauge(g)) => json!({
                            "type": "gauge",
                            "points": g.data_points.iter().map(|p| { let (t, v) = number(&p.value); json!({
                                "attributes": attributes(&p.attributes), "start_time_unix_nano": p.start_time_unix_nano,
                                "time_unix_nano": p.time_unix_nano, "value_type": t, "value": v,
                                "exemplars": exemplars(&p.exemplars) }) }).collect::<Vec<_>>(),
                        }),
                        Some(metric::Data::Histogram(h)) => json!({
                            "type": "histogram", "aggregation_temporality": h.aggregation_temporality,
                            "points": h.data_points.iter().map(|p| json!({
                                "attributes": attributes(&p.attributes), "start_time_unix_nano": p.start_time_unix_nano,
                                "time_unix_nano": p.time_unix_nano, "exemplars": exemplars(&p.exemplars), "count": p.count, "sum": p.sum, "min": p.min, "max": p.max,
                                "bucket_counts": p.bucket_counts, "explicit_bounds": p.explicit_bounds })).collect::<Vec<_>>(),
                        }),
                        Some(metric::Data::ExponentialHistogram(h)) => json!({
                            "type": "exponential_histogram", "aggregation_temporality": h.aggregation_temporality,
                            "points": h.data_points.iter().map(|p| json!({
                                "attributes": attributes(&p.attributes), "start_time_unix_nano": p.start_time_unix_nano,
                                "time_unix_nano": p.time_unix_nano, "exemplars": exemplars(&p.exemplars), "count": p.count, "sum": p.sum, "min": p.min, "max": p.max,
                                "scale": p.scale, "zero_count": p.zero_count,
                                "positive": buckets(&p.positive), "negative": buckets(&p.negative) })).collect::<Vec<_>>(),
                        }),
                        Some(metric::Data::Summary(_)) => json!({ "type": "summary" }),
                        None => json!({ "type": null }),
                    };
                    rendered
                        .as_object_mut()
                        .expect("object")
                        .extend(fields.as_object().expect("object").clone());
                    out.push((resource.clone(), rendered));
                }
            }
        }
    }
    out
}

/// Asserts that every field of `expected` is in `actual` with the same value
/// and type (an integer is not a double). Histogram `sum`, `min`, `max` and
/// `explicit_bounds` are doubles on the wire that scripts may print as
/// integers: they are compared as numbers.
pub(crate) fn assert_matches(expected: &Value, actual: &Value, path: &str) {
    match (expected, actual) {
        (Value::Object(e), Value::Object(a)) => {
            for (key, value) in e {
                let got = a.get(key).unwrap_or_else(|| {
                    panic!("{path}.{key} is missing from what was stored: {actual}")
                });
                assert_matches(value, got, &format!("{path}.{key}"));
            }
        }
        (Value::Array(e), Value::Array(a)) => {
            assert_eq!(
                e.len(),
                a.len(),
                "{path}: lengths differ: sent {expected}, stored {actual}"
            );
            for (i, (e, a)) in e.iter().zip(a).enumerate() {
                assert_matches(e, a, &format!("{path}[{i}]"));
            }
        }
        (Value::Number(e), Value::Number(a))
            if [".sum", ".min", ".max"].iter().any(|k| path.ends_with(k))
                || path.contains(".explicit_bounds[") =>
        {
            assert_eq!(e.as_f64(), a.as_f64(), "{path}");
        }
        _ => assert_eq!(expected, actual, "{path}: sent {expected}, stored {actual}"),
    }
}
