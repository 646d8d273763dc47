//! `log_entries`: one row per OTLP log record.

use std::sync::{Arc, LazyLock};

use arrow::array::{Int32Builder, StringBuilder, UInt32Builder};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use prost::Message;

use super::columns::{Attributes, Ids, Times, any_text};
use super::{BlockSource, Common, Origin, attributes_type, batch, common_fields, timestamp_type};

pub(super) static SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    let mut fields = common_fields();
    fields.extend([
        // The record's time, else its observed time, else (neither set) about
        // when it arrived.
        Field::new("time", timestamp_type(), false),
        Field::new("observed_time", timestamp_type(), true),
        Field::new("severity_number", DataType::Int32, false),
        Field::new("severity_text", DataType::Utf8, false),
        // String bodies as they are, other values as JSON.
        Field::new("body", DataType::Utf8, true),
        Field::new("event_name", DataType::Utf8, false),
        Field::new("trace_id", DataType::FixedSizeBinary(16), true),
        Field::new("span_id", DataType::FixedSizeBinary(8), true),
        Field::new("flags", DataType::UInt32, false),
        Field::new("attributes", attributes_type(), false),
        Field::new("dropped_attributes_count", DataType::UInt32, false),
    ]);
    Arc::new(Schema::new(fields))
});

pub(super) fn decode(
    payload: &[u8],
    source: &BlockSource,
) -> Result<RecordBatch, prost::DecodeError> {
    let request = ExportLogsServiceRequest::decode(payload)?;
    let mut common = Common::default();
    let mut time = Times::default();
    let mut observed = Times::default();
    let mut severity_number = Int32Builder::new();
    let mut severity_text = StringBuilder::new();
    let mut body = StringBuilder::new();
    let mut event_name = StringBuilder::new();
    let mut trace_id = Ids::new(16);
    let mut span_id = Ids::new(8);
    let mut flags = UInt32Builder::new();
    let mut attributes = Attributes::default();
    let mut dropped = UInt32Builder::new();
    for rl in &request.resource_logs {
        let resource = rl.resource.clone().unwrap_or_default();
        let service_name = super::service_name(&resource);
        for sl in &rl.scope_logs {
            let scope = sl.scope.clone().unwrap_or_default();
            let origin = Origin {
                source,
                service_name,
                resource: &resource,
                scope: &scope,
            };
            for record in &sl.log_records {
                common.append(&origin);
                let t = match (record.time_unix_nano, record.observed_time_unix_nano) {
                    (0, 0) => u64::try_from(source.max_time).unwrap_or(0),
                    (0, o) => o,
                    (t, _) => t,
                };
                time.append(t);
                observed.append_optional(record.observed_time_unix_nano);
                severity_number.append_value(record.severity_number);
                severity_text.append_value(&record.severity_text);
                body.append_option(any_text(record.body.as_ref()));
                event_name.append_value(&record.event_name);
                trace_id.append(&record.trace_id);
                span_id.append(&record.span_id);
                flags.append_value(record.flags);
                attributes.append(&record.attributes);
                dropped.append_value(record.dropped_attributes_count);
            }
        }
    }
    let mut columns = common.finish();
    columns.extend([
        time.finish(),
        observed.finish(),
        Arc::new(severity_number.finish()),
        Arc::new(severity_text.finish()),
        Arc::new(body.finish()),
        Arc::new(event_name.finish()),
        trace_id.finish(),
        span_id.finish(),
        Arc::new(flags.finish()),
        attributes.finish(),
        Arc::new(dropped.finish()),
    ]);
    Ok(batch(&SCHEMA, columns))
}
