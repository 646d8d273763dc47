//! `log_entries`: one row per OTLP log record.

use std::sync::{Arc, LazyLock};

use arrow::array::{ArrayBuilder, Int32Builder, StringBuilder, UInt32Builder};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use prost::Message;

use super::columns::{Attributes, Ids, Times, any_text};
use super::{
    BlockSource, Common, Origin, attributes_type, batch, common_fields, native, timestamp_type,
};

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

/// Builders of `log_entries` rows.
#[derive(Debug)]
pub(super) struct LogRows {
    common: Common,
    time: Times,
    observed: Times,
    severity_number: Int32Builder,
    severity_text: StringBuilder,
    body: StringBuilder,
    event_name: StringBuilder,
    trace_id: Ids,
    span_id: Ids,
    flags: UInt32Builder,
    attributes: Attributes,
    dropped: UInt32Builder,
}

impl Default for LogRows {
    fn default() -> Self {
        LogRows {
            common: Common::default(),
            time: Times::default(),
            observed: Times::default(),
            severity_number: Int32Builder::new(),
            severity_text: StringBuilder::new(),
            body: StringBuilder::new(),
            event_name: StringBuilder::new(),
            trace_id: Ids::new(16),
            span_id: Ids::new(8),
            flags: UInt32Builder::new(),
            attributes: Attributes::default(),
            dropped: UInt32Builder::new(),
        }
    }
}

impl LogRows {
    pub(super) fn append(
        &mut self,
        payload: &[u8],
        source: &BlockSource,
    ) -> Result<(), prost::DecodeError> {
        let request = ExportLogsServiceRequest::decode(payload)?;
        for (origin, records) in self.common.scoped(source, &request.resource_logs) {
            for record in records {
                self.common.append(origin);
                let t = match (record.time_unix_nano, record.observed_time_unix_nano) {
                    (0, 0) => u64::try_from(source.max_time).unwrap_or(0),
                    (0, o) => o,
                    (t, _) => t,
                };
                self.time.append(t);
                self.observed
                    .append_optional(record.observed_time_unix_nano);
                self.severity_number.append_value(record.severity_number);
                self.severity_text.append_value(&record.severity_text);
                self.body.append_option(any_text(record.body.as_ref()));
                self.event_name.append_value(&record.event_name);
                self.trace_id.append(&record.trace_id);
                self.span_id.append(&record.span_id);
                self.flags.append_value(record.flags);
                self.attributes.append(&record.attributes);
                self.dropped.append_value(record.dropped_attributes_count);
            }
        }
        Ok(())
    }

    /// Appends a native log block's records.
    pub(super) fn append_native(
        &mut self,
        payload: &[u8],
        source: &BlockSource,
    ) -> Result<(), String> {
        use framelake_native_format::Event;
        use opentelemetry_proto::tonic::common::v1::InstrumentationScope;
        use opentelemetry_proto::tonic::common::v1::any_value::Value;
        let opened = native::open(payload, source)?;
        let parsed = opened.parse()?;
        let mut origins = std::collections::HashMap::new();
        for event in parsed.events() {
            let Ok(Event::Log {
                descriptor,
                ticks,
                message,
            }) = event
            else {
                continue;
            };
            let d = &parsed.descriptors[&descriptor];
            let origin = *origins.entry(d.target.as_str()).or_insert_with(|| {
                self.common.origin(&Origin {
                    source,
                    service_name: &opened.process.service_name,
                    resource: &opened.resource,
                    scope: &InstrumentationScope {
                        name: d.target.clone(),
                        ..Default::default()
                    },
                })
            });
            self.common.append(origin);
            let (number, text) = native::severity(d.level);
            self.time.append(opened.clock.time(ticks).max(0) as u64);
            self.observed.append_optional(0);
            self.severity_number.append_value(number);
            self.severity_text.append_value(text);
            self.body.append_value(message);
            self.event_name.append_value("");
            self.trace_id.append(&[]);
            self.span_id.append(&[]);
            self.flags.append_value(0);
            self.attributes.append(&[
                native::kv("code.file.path", Value::StringValue(d.file.clone())),
                native::kv("code.line.number", Value::IntValue(i64::from(d.line))),
            ]);
            self.dropped.append_value(0);
        }
        Ok(())
    }

    pub(super) fn len(&self) -> usize {
        self.flags.len()
    }

    pub(super) fn finish(&mut self) -> RecordBatch {
        let mut columns = self.common.finish();
        columns.extend([
            self.time.finish(),
            self.observed.finish(),
            Arc::new(self.severity_number.finish()),
            Arc::new(self.severity_text.finish()),
            Arc::new(self.body.finish()),
            Arc::new(self.event_name.finish()),
            self.trace_id.finish(),
            self.span_id.finish(),
            Arc::new(self.flags.finish()),
            self.attributes.finish(),
            Arc::new(self.dropped.finish()),
        ]);
        batch(&SCHEMA, columns)
    }
}
