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
use super::{BlockSource, Common, Origin, attributes_type, batch, common_fields, timestamp_type};

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

pub(super) fn decode(
    payload: &[u8],
    source: &BlockSource,
) -> Result<RecordBatch, prost::DecodeError> {
    let request = ExportTraceServiceRequest::decode(payload)?;
    let mut common = Common::default();
    let mut trace_id = Ids::new(16);
    let mut span_id = Ids::new(8);
    let mut parent_span_id = Ids::new(8);
    let mut trace_state = StringBuilder::new();
    let mut flags = UInt32Builder::new();
    let mut name = StringBuilder::new();
    let mut kind = Int32Builder::new();
    let mut start = Times::default();
    let mut end = Times::default();
    let mut duration = Int64Builder::new();
    let mut status_code = Int32Builder::new();
    let mut status_message = StringBuilder::new();
    let mut attributes = Attributes::default();
    let mut dropped_attributes = UInt32Builder::new();
    let mut events = Events::default();
    let mut dropped_events = UInt32Builder::new();
    let mut links = Links::default();
    let mut dropped_links = UInt32Builder::new();
    for rs in &request.resource_spans {
        let resource = rs.resource.clone().unwrap_or_default();
        let service_name = super::service_name(&resource);
        for ss in &rs.scope_spans {
            let scope = ss.scope.clone().unwrap_or_default();
            let origin = Origin {
                source,
                service_name,
                resource: &resource,
                scope: &scope,
            };
            for span in &ss.spans {
                common.append(&origin);
                trace_id.append(&span.trace_id);
                span_id.append(&span.span_id);
                parent_span_id.append(&span.parent_span_id);
                trace_state.append_value(&span.trace_state);
                flags.append_value(span.flags);
                name.append_value(&span.name);
                kind.append_value(span.kind);
                start.append(span.start_time_unix_nano);
                end.append(span.end_time_unix_nano);
                duration.append_value(
                    clamp(span.end_time_unix_nano).saturating_sub(clamp(span.start_time_unix_nano)),
                );
                let status = span.status.clone().unwrap_or_default();
                status_code.append_value(status.code);
                status_message.append_value(&status.message);
                attributes.append(&span.attributes);
                dropped_attributes.append_value(span.dropped_attributes_count);
                events.append(&span.events);
                dropped_events.append_value(span.dropped_events_count);
                links.append(&span.links);
                dropped_links.append_value(span.dropped_links_count);
            }
        }
    }
    let mut columns = common.finish();
    columns.extend([
        trace_id.finish(),
        span_id.finish(),
        parent_span_id.finish(),
        Arc::new(trace_state.finish()),
        Arc::new(flags.finish()),
        Arc::new(name.finish()),
        Arc::new(kind.finish()),
        start.finish(),
        end.finish(),
        Arc::new(duration.finish()),
        Arc::new(status_code.finish()),
        Arc::new(status_message.finish()),
        attributes.finish(),
        Arc::new(dropped_attributes.finish()),
        events.finish(),
        Arc::new(dropped_events.finish()),
        links.finish(),
        Arc::new(dropped_links.finish()),
    ]);
    Ok(batch(&SCHEMA, columns))
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
