use arrow::array::{
    Array, AsArray, FixedSizeBinaryArray, Float64Array, Int32Array, Int64Array, ListArray,
    MapArray, StringArray, StructArray, TimestampNanosecondArray, UInt64Array,
};
use arrow::datatypes::UInt64Type;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{
    AnyValue, ArrayValue, InstrumentationScope, KeyValue, any_value::Value,
};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::metrics::v1::{
    ExponentialHistogram, ExponentialHistogramDataPoint, Histogram, HistogramDataPoint, Metric,
    NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum, exponential_histogram_data_point::Buckets,
    metric, number_data_point,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status, span};
use prost::Message;

use super::*;

fn kv(key: &str, value: Value) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue { value: Some(value) }),
        ..Default::default()
    }
}

fn resource() -> Option<Resource> {
    Some(Resource {
        attributes: vec![kv("service.name", Value::StringValue("checkout".into()))],
        ..Default::default()
    })
}

fn scope() -> Option<InstrumentationScope> {
    Some(InstrumentationScope {
        name: "lib".into(),
        version: "1.2".into(),
        ..Default::default()
    })
}

fn source() -> BlockSource {
    BlockSource {
        block_id: BlockId::of(&[b"b"]),
        process_id: ProcessId::of(&[b"p"]),
        stream_id: StreamId::of(&[b"s"]),
        max_time: 5_000,
        native: None,
        thread_name: None,
    }
}

fn column<'a, T: 'static>(batch: &'a RecordBatch, name: &str) -> &'a T {
    batch
        .column_by_name(name)
        .unwrap_or_else(|| panic!("column {name}"))
        .as_any()
        .downcast_ref::<T>()
        .unwrap_or_else(|| panic!("type of {name}"))
}

/// The typed value of `key` in row `row` of a map column, as (field name, text).
fn attribute(map: &MapArray, row: usize, key: &str) -> Option<(String, String)> {
    let entries = map.value(row);
    let keys = entries.column(0).as_string::<i32>();
    let values = entries.column(1).as_any().downcast_ref::<StructArray>()?;
    let i = (0..keys.len()).find(|&i| keys.value(i) == key)?;
    values.columns().iter().enumerate().find_map(|(c, col)| {
        col.is_valid(i).then(|| {
            let text = arrow::util::display::array_value_to_string(col, i).expect("display");
            (VALUE_FIELDS[c].name().clone(), text)
        })
    })
}

#[test]
fn log_records_keep_every_field_and_typed_attributes() {
    let record = LogRecord {
        time_unix_nano: 1_000,
        observed_time_unix_nano: 2_000,
        severity_number: 17,
        severity_text: "ERROR".into(),
        body: Some(AnyValue {
            value: Some(Value::StringValue("disk full".into())),
        }),
        attributes: vec![
            kv("http.status", Value::IntValue(507)),
            kv("ratio", Value::DoubleValue(0.5)),
            kv("retry", Value::BoolValue(true)),
            kv("raw", Value::BytesValue(vec![0xab, 0x01])),
            kv(
                "tags",
                Value::ArrayValue(ArrayValue {
                    values: vec![AnyValue {
                        value: Some(Value::StringValue("a".into())),
                    }],
                }),
            ),
        ],
        trace_id: vec![1; 16],
        span_id: vec![2; 8],
        event_name: "disk.full".into(),
        ..Default::default()
    };
    let untimed = LogRecord {
        body: Some(AnyValue {
            value: Some(Value::IntValue(3)),
        }),
        ..Default::default()
    };
    let request = ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: resource(),
            scope_logs: vec![ScopeLogs {
                scope: scope(),
                log_records: vec![record, untimed],
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    let batch = decode(BlockKind::OtlpLogs, &request.encode_to_vec(), &source()).expect("decodes");
    assert_eq!(batch.schema(), View::LogEntries.schema());
    assert_eq!(batch.num_rows(), 2);
    let time = column::<TimestampNanosecondArray>(&batch, "time");
    assert_eq!(
        (time.value(0), time.value(1)),
        (1_000, 5_000),
        "untimed: block's latest time"
    );
    let observed = column::<TimestampNanosecondArray>(&batch, "observed_time");
    assert!(observed.is_null(1));
    let body = column::<StringArray>(&batch, "body");
    assert_eq!((body.value(0), body.value(1)), ("disk full", "3"));
    assert_eq!(
        column::<StringArray>(&batch, "service_name").value(0),
        "checkout"
    );
    assert_eq!(
        column::<StringArray>(&batch, "scope_version").value(1),
        "1.2"
    );
    assert_eq!(column::<Int32Array>(&batch, "severity_number").value(0), 17);
    let trace_id = column::<FixedSizeBinaryArray>(&batch, "trace_id");
    assert_eq!(trace_id.value(0), &[1; 16]);
    assert!(trace_id.is_null(1), "no trace id is null");
    let attributes = column::<MapArray>(&batch, "attributes");
    let get = |key| attribute(attributes, 0, key);
    assert_eq!(get("http.status"), Some(("int".into(), "507".into())));
    assert_eq!(get("ratio"), Some(("double".into(), "0.5".into())));
    assert_eq!(get("retry"), Some(("bool".into(), "true".into())));
    assert_eq!(get("raw"), Some(("bytes".into(), "ab01".into())));
    assert_eq!(get("tags"), Some(("json".into(), r#"["a"]"#.into())));
    assert_eq!(attributes.value_length(1), 0);
    let resource = column::<MapArray>(&batch, "resource_attributes");
    assert_eq!(
        attribute(resource, 1, "service.name"),
        Some(("str".into(), "checkout".into()))
    );
}

#[test]
fn spans_keep_events_links_and_status() {
    let span = Span {
        trace_id: vec![7; 16],
        span_id: vec![8; 8],
        name: "GET /cart".into(),
        kind: 2,
        start_time_unix_nano: 1_000,
        end_time_unix_nano: 4_500,
        attributes: vec![kv("http.method", Value::StringValue("GET".into()))],
        events: vec![span::Event {
            time_unix_nano: 2_000,
            name: "retry".into(),
            attributes: vec![kv("attempt", Value::IntValue(2))],
            dropped_attributes_count: 1,
        }],
        links: vec![span::Link {
            trace_id: vec![9; 16],
            span_id: vec![3; 8],
            trace_state: "k=v".into(),
            ..Default::default()
        }],
        status: Some(Status {
            message: "boom".into(),
            code: 2,
        }),
        dropped_links_count: 4,
        ..Default::default()
    };
    let request = ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: resource(),
            scope_spans: vec![ScopeSpans {
                scope: scope(),
                spans: vec![span],
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    let batch = decode(BlockKind::OtlpSpans, &request.encode_to_vec(), &source()).expect("decodes");
    assert_eq!(batch.schema(), View::Spans.schema());
    assert_eq!(column::<Int64Array>(&batch, "duration_ns").value(0), 3_500);
    assert!(column::<FixedSizeBinaryArray>(&batch, "parent_span_id").is_null(0));
    assert_eq!(column::<Int32Array>(&batch, "status_code").value(0), 2);
    assert_eq!(
        column::<StringArray>(&batch, "status_message").value(0),
        "boom"
    );
    let events = column::<ListArray>(&batch, "events").value(0);
    let events = events.as_struct();
    assert_eq!(events.len(), 1);
    assert_eq!(
        events
            .column_by_name("name")
            .expect("name")
            .as_string::<i32>()
            .value(0),
        "retry"
    );
    let event_attributes = events.column_by_name("attributes").expect("attributes");
    let event_attributes = event_attributes
        .as_any()
        .downcast_ref::<MapArray>()
        .expect("map");
    assert_eq!(
        attribute(event_attributes, 0, "attempt"),
        Some(("int".into(), "2".into()))
    );
    let links = column::<ListArray>(&batch, "links").value(0);
    let link_trace = links
        .as_struct()
        .column_by_name("trace_id")
        .expect("trace_id");
    assert_eq!(link_trace.as_fixed_size_binary().value(0), &[9; 16]);
    assert_eq!(
        column::<arrow::array::UInt32Array>(&batch, "dropped_links_count").value(0),
        4
    );
}

#[test]
fn metric_points_keep_values_buckets_and_exemplars() {
    let sum = Metric {
        name: "requests".into(),
        unit: "1".into(),
        data: Some(metric::Data::Sum(Sum {
            data_points: vec![NumberDataPoint {
                time_unix_nano: 10,
                value: Some(number_data_point::Value::AsInt(9_007_199_254_740_993)),
                exemplars: vec![opentelemetry_proto::tonic::metrics::v1::Exemplar {
                    value: Some(
                        opentelemetry_proto::tonic::metrics::v1::exemplar::Value::AsDouble(1.5),
                    ),
                    trace_id: vec![5; 16],
                    ..Default::default()
                }],
                ..Default::default()
            }],
            aggregation_temporality: 2,
            is_monotonic: true,
        })),
        ..Default::default()
    };
    let histogram = Metric {
        name: "latency".into(),
        data: Some(metric::Data::Histogram(Histogram {
            data_points: vec![HistogramDataPoint {
                time_unix_nano: 20,
                count: 6,
                sum: Some(12.0),
                bucket_counts: vec![1, 2, 3],
                explicit_bounds: vec![1.0, 5.0],
                ..Default::default()
            }],
            aggregation_temporality: 1,
        })),
        ..Default::default()
    };
    let exponential = Metric {
        name: "size".into(),
        data: Some(metric::Data::ExponentialHistogram(ExponentialHistogram {
            data_points: vec![ExponentialHistogramDataPoint {
                time_unix_nano: 30,
                count: 3,
                scale: 2,
                zero_count: 1,
                positive: Some(Buckets {
                    offset: -1,
                    bucket_counts: vec![1, 1],
                }),
                ..Default::default()
            }],
            aggregation_temporality: 2,
        })),
        ..Default::default()
    };
    let request = ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: resource(),
            scope_metrics: vec![ScopeMetrics {
                scope: scope(),
                metrics: vec![sum, histogram, exponential],
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    let batch =
        decode(BlockKind::OtlpMetrics, &request.encode_to_vec(), &source()).expect("decodes");
    assert_eq!(batch.schema(), View::Measures.schema());
    assert_eq!(batch.num_rows(), 3);
    let kind = column::<StringArray>(&batch, "type");
    assert_eq!(
        (kind.value(0), kind.value(1), kind.value(2)),
        ("sum", "histogram", "exponential_histogram")
    );
    assert_eq!(
        column::<Int64Array>(&batch, "int_value").value(0),
        9_007_199_254_740_993,
        "integers keep all 64 bits"
    );
    assert!(column::<Float64Array>(&batch, "value").is_null(1));
    let buckets = column::<ListArray>(&batch, "bucket_counts");
    assert!(buckets.is_null(0));
    assert_eq!(
        buckets
            .value(1)
            .as_primitive::<UInt64Type>()
            .values()
            .to_vec(),
        vec![1, 2, 3]
    );
    assert_eq!(column::<UInt64Array>(&batch, "count").value(1), 6);
    let positive = column::<ListArray>(&batch, "positive_bucket_counts");
    assert_eq!(positive.value(2).len(), 2);
    assert_eq!(column::<Int32Array>(&batch, "positive_offset").value(2), -1);
    let negative = column::<ListArray>(&batch, "negative_bucket_counts");
    assert!(
        negative.is_valid(2) && negative.value(2).is_empty(),
        "absent range: empty"
    );
    let exemplars = column::<ListArray>(&batch, "exemplars");
    let first = exemplars.value(0);
    let value = first.as_struct().column_by_name("value").expect("value");
    assert_eq!(
        value
            .as_primitive::<arrow::datatypes::Float64Type>()
            .value(0),
        1.5
    );
    assert!(exemplars.value(1).is_empty());
}

#[test]
fn a_corrupt_block_is_an_error_naming_it() {
    let err = decode(BlockKind::OtlpLogs, b"\x0a\xff", &source()).expect_err("corrupt");
    assert!(matches!(err, Error::Corrupt { .. }), "{err}");
    assert!(
        err.to_string().contains(&source().block_id.to_string()),
        "{err}"
    );
}

fn logs_of(bodies: &[&str]) -> Vec<u8> {
    let records = bodies
        .iter()
        .enumerate()
        .map(|(i, body)| LogRecord {
            time_unix_nano: 1_000 + i as u64,
            body: Some(AnyValue {
                value: Some(Value::StringValue((*body).to_owned())),
            }),
            attributes: vec![kv("i", Value::IntValue(i as i64))],
            ..Default::default()
        })
        .collect();
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: resource(),
            scope_logs: vec![ScopeLogs {
                scope: scope(),
                log_records: records,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
    .encode_to_vec()
}

#[test]
fn blocks_append_into_one_batch_and_a_bad_block_appends_nothing() {
    let (first, second) = (logs_of(&["a", "b"]), logs_of(&["c"]));
    let mut rows = Rows::new(View::LogEntries);
    rows.append(BlockKind::OtlpLogs, &first, &source())
        .expect("decodes");
    let corrupt = rows
        .append(BlockKind::OtlpLogs, b"\x0a\xff", &source())
        .expect_err("corrupt");
    assert!(matches!(corrupt, Error::Corrupt { .. }), "{corrupt}");
    let other_view = rows
        .append(BlockKind::OtlpSpans, &first, &source())
        .expect_err("a span block is not a log row");
    assert!(
        other_view.to_string().contains("log_entries"),
        "{other_view}"
    );
    rows.append(BlockKind::OtlpLogs, &second, &source())
        .expect("decodes");
    assert_eq!(rows.len(), 3);
    let batch = rows.finish();
    let separately = arrow::compute::concat_batches(
        &View::LogEntries.schema(),
        &[
            decode(BlockKind::OtlpLogs, &first, &source()).expect("decodes"),
            decode(BlockKind::OtlpLogs, &second, &source()).expect("decodes"),
        ],
    )
    .expect("same schema");
    assert_eq!(batch, separately);
    assert!(rows.is_empty(), "finish starts afresh");
    assert_eq!(rows.finish().num_rows(), 0);
}
