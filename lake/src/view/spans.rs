//! `spans`: one row per OTLP span, with its events and links.

use std::sync::{Arc, LazyLock};

use arrow::array::{
    ArrayBuilder, ArrayRef, Int32Builder, Int64Builder, StringBuilder, UInt32Builder,
};
use arrow::datatypes::{DataType, Field, Fields, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::trace::v1::span::{Event, Link};
use prost::Message;

use super::columns::{Attributes, Ids, Times, clamp, item_field, struct_list};
use super::{BlockSource, Common, attributes_type, batch, common_fields, timestamp_type};

static EVENT_FIELDS: LazyLock<Fields> = LazyLock::new(|| {
    Fields::from(vec![
        Field::new("time", timestamp_type(), true),
        Field::new("name", DataType::Utf8, false),
        Field::new("attributes", attributes_type(), false),
        Field::new("dropped_attributes_count", DataType::UInt32, false),
    ])
});

static LINK_FIELDS: LazyLock<Fields> = LazyLock::new(|| {
    Fields::from(vec![
        Field::new("trace_id", DataType::FixedSizeBinary(16), true),
        Field::new("span_id", DataType::FixedSizeBinary(8), true),
        Field::new("trace_state", DataType::Utf8, false),
        Field::new("attributes", attributes_type(), false),
        Field::new("dropped_attributes_count", DataType::UInt32, false),
        Field::new("flags", DataType::UInt32, false),
    ])
});

pub(super) static SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    let mut fields = common_fields();
    fields.extend([
        Field::new("trace_id", DataType::FixedSizeBinary(16), true),
        Field::new("span_id", DataType::FixedSizeBinary(8), true),
        Field::new("parent_span_id", DataType::FixedSizeBinary(8), true),
        Field::new("trace_state", DataType::Utf8, false),
        Field::new("flags", DataType::UInt32, false),
        Field::new("name", DataType::Utf8, false),
        // OTLP's SpanKind: 0 unspecified, 1 internal, 2 server, 3 client, 4 producer, 5 consumer.
        Field::new("kind", DataType::Int32, false),
        Field::new("start_time", timestamp_type(), false),
        Field::new("end_time", timestamp_type(), false),
        Field::new("duration_ns", DataType::Int64, false),
        // OTLP's StatusCode: 0 unset, 1 ok, 2 error.
        Field::new("status_code", DataType::Int32, false),
        Field::new("status_message", DataType::Utf8, false),
        Field::new("attributes", attributes_type(), false),
        Field::new("dropped_attributes_count", DataType::UInt32, false),
        Field::new("events", DataType::List(item_field(&EVENT_FIELDS)), false),
        Field::new("dropped_events_count", DataType::UInt32, false),
        Field::new("links", DataType::List(item_field(&LINK_FIELDS)), false),
        Field::new("dropped_links_count", DataType::UInt32, false),
    ]);
    Arc::new(Schema::new(fields))
});

/// Builders of `spans` rows.
#[derive(Debug)]
pub(super) struct SpanRows {
    common: Common,
    trace_id: Ids,
    span_id: Ids,
    parent_span_id: Ids,
    trace_state: StringBuilder,
    flags: UInt32Builder,
    name: StringBuilder,
    kind: Int32Builder,
    start: Times,
    end: Times,
    duration: Int64Builder,
    status_code: Int32Builder,
    status_message: StringBuilder,
    attributes: Attributes,
    dropped_attributes: UInt32Builder,
    events: Events,
    dropped_events: UInt32Builder,
    links: Links,
    dropped_links: UInt32Builder,
}

impl Default for SpanRows {
    fn default() -> Self {
        SpanRows {
            common: Common::default(),
            trace_id: Ids::new(16),
            span_id: Ids::new(8),
            parent_span_id: Ids::new(8),
            trace_state: StringBuilder::new(),
            flags: UInt32Builder::new(),
            name: StringBuilder::new(),
            kind: Int32Builder::new(),
            start: Times::default(),
            end: Times::default(),
            duration: Int64Builder::new(),
            status_code: Int32Builder::new(),
            status_message: StringBuilder::new(),
            attributes: Attributes::default(),
            dropped_attributes: UInt32Builder::new(),
            events: Events::default(),
            dropped_events: UInt32Builder::new(),
            links: Links::default(),
            dropped_links: UInt32Builder::new(),
        }
    }
}

impl SpanRows {
    pub(super) fn append(
        &mut self,
        payload: &[u8],
        source: &BlockSource,
    ) -> Result<(), prost::DecodeError> {
        let request = ExportTraceServiceRequest::decode(payload)?;
        for (origin, spans) in self.common.scoped(source, &request.resource_spans) {
            for span in spans {
                self.common.append(origin);
                self.trace_id.append(&span.trace_id);
                self.span_id.append(&span.span_id);
                self.parent_span_id.append(&span.parent_span_id);
                self.trace_state.append_value(&span.trace_state);
                self.flags.append_value(span.flags);
                self.name.append_value(&span.name);
                self.kind.append_value(span.kind);
                self.start.append(span.start_time_unix_nano);
                self.end.append(span.end_time_unix_nano);
                self.duration.append_value(
                    clamp(span.end_time_unix_nano).saturating_sub(clamp(span.start_time_unix_nano)),
                );
                let status = span.status.clone().unwrap_or_default();
                self.status_code.append_value(status.code);
                self.status_message.append_value(&status.message);
                self.attributes.append(&span.attributes);
                self.dropped_attributes
                    .append_value(span.dropped_attributes_count);
                self.events.append(&span.events);
                self.dropped_events.append_value(span.dropped_events_count);
                self.links.append(&span.links);
                self.dropped_links.append_value(span.dropped_links_count);
            }
        }
        Ok(())
    }

    pub(super) fn len(&self) -> usize {
        self.flags.len()
    }

    pub(super) fn finish(&mut self) -> RecordBatch {
        let mut columns = self.common.finish();
        columns.extend([
            self.trace_id.finish(),
            self.span_id.finish(),
            self.parent_span_id.finish(),
            Arc::new(self.trace_state.finish()),
            Arc::new(self.flags.finish()),
            Arc::new(self.name.finish()),
            Arc::new(self.kind.finish()),
            self.start.finish(),
            self.end.finish(),
            Arc::new(self.duration.finish()),
            Arc::new(self.status_code.finish()),
            Arc::new(self.status_message.finish()),
            self.attributes.finish(),
            Arc::new(self.dropped_attributes.finish()),
            self.events.finish(),
            Arc::new(self.dropped_events.finish()),
            self.links.finish(),
            Arc::new(self.dropped_links.finish()),
        ]);
        batch(&SCHEMA, columns)
    }
}

/// The `events` column.
#[derive(Debug)]
struct Events {
    offsets: Vec<i32>,
    time: Times,
    name: StringBuilder,
    attributes: Attributes,
    dropped: UInt32Builder,
}

impl Default for Events {
    fn default() -> Self {
        Events {
            offsets: vec![0],
            time: Times::default(),
            name: StringBuilder::new(),
            attributes: Attributes::default(),
            dropped: UInt32Builder::new(),
        }
    }
}

impl Events {
    fn append(&mut self, events: &[Event]) {
        for e in events {
            self.time.append_optional(e.time_unix_nano);
            self.name.append_value(&e.name);
            self.attributes.append(&e.attributes);
            self.dropped.append_value(e.dropped_attributes_count);
        }
        self.offsets.push(self.name.len() as i32);
    }

    fn finish(&mut self) -> ArrayRef {
        let children = vec![
            self.time.finish(),
            Arc::new(self.name.finish()) as ArrayRef,
            self.attributes.finish(),
            Arc::new(self.dropped.finish()),
        ];
        struct_list(&EVENT_FIELDS, &mut self.offsets, children)
    }
}

/// The `links` column.
#[derive(Debug)]
struct Links {
    offsets: Vec<i32>,
    trace_id: Ids,
    span_id: Ids,
    trace_state: StringBuilder,
    attributes: Attributes,
    dropped: UInt32Builder,
    flags: UInt32Builder,
}

impl Default for Links {
    fn default() -> Self {
        Links {
            offsets: vec![0],
            trace_id: Ids::new(16),
            span_id: Ids::new(8),
            trace_state: StringBuilder::new(),
            attributes: Attributes::default(),
            dropped: UInt32Builder::new(),
            flags: UInt32Builder::new(),
        }
    }
}

impl Links {
    fn append(&mut self, links: &[Link]) {
        for l in links {
            self.trace_id.append(&l.trace_id);
            self.span_id.append(&l.span_id);
            self.trace_state.append_value(&l.trace_state);
            self.attributes.append(&l.attributes);
            self.dropped.append_value(l.dropped_attributes_count);
            self.flags.append_value(l.flags);
        }
        self.offsets.push(self.trace_state.len() as i32);
    }

    fn finish(&mut self) -> ArrayRef {
        let children = vec![
            self.trace_id.finish(),
            self.span_id.finish(),
            Arc::new(self.trace_state.finish()) as ArrayRef,
            self.attributes.finish(),
            Arc::new(self.dropped.finish()),
            Arc::new(self.flags.finish()),
        ];
        struct_list(&LINK_FIELDS, &mut self.offsets, children)
    }
}
