//! `processes`, `streams` and `blocks`: what the catalog records, as rows.

use std::sync::{Arc, LazyLock};

use arrow::array::{
    ArrayRef, FixedSizeBinaryBuilder, Int64Builder, StringBuilder, TimestampNanosecondBuilder,
    UInt32Builder,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message;

use super::columns::Attributes;
use super::{attributes_type, batch, timestamp_type};
use crate::catalog::{BlockRecord, ProcessRecord, Source, StreamRecord};
use crate::{Error, Result};

/// A catalog view.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CatalogView {
    Processes,
    Streams,
    Blocks,
}

impl CatalogView {
    pub const ALL: [CatalogView; 3] = [
        CatalogView::Processes,
        CatalogView::Streams,
        CatalogView::Blocks,
    ];

    pub fn name(self) -> &'static str {
        match self {
            CatalogView::Processes => "processes",
            CatalogView::Streams => "streams",
            CatalogView::Blocks => "blocks",
        }
    }

    pub fn schema(self) -> SchemaRef {
        match self {
            CatalogView::Processes => Arc::clone(&PROCESSES),
            CatalogView::Streams => Arc::clone(&STREAMS),
            CatalogView::Blocks => Arc::clone(&BLOCKS),
        }
    }
}

fn id(name: &str) -> Field {
    Field::new(name, DataType::FixedSizeBinary(16), false)
}

static PROCESSES: LazyLock<SchemaRef> = LazyLock::new(|| {
    Arc::new(Schema::new(vec![
        id("process_id"),
        // Where its telemetry comes from: `otlp` (an OpenTelemetry resource).
        Field::new("source", DataType::Utf8, false),
        Field::new("service_name", DataType::Utf8, false),
        // For OTLP, the resource's attributes.
        Field::new("attributes", attributes_type(), false),
        Field::new("insert_time", timestamp_type(), false),
    ]))
});

static STREAMS: LazyLock<SchemaRef> = LazyLock::new(|| {
    Arc::new(Schema::new(vec![
        id("stream_id"),
        id("process_id"),
        // The kind of blocks it holds: otlp.logs, otlp.spans or otlp.metrics.
        Field::new("kind", DataType::Utf8, false),
        Field::new("name", DataType::Utf8, false),
        Field::new("insert_time", timestamp_type(), false),
    ]))
});

static BLOCKS: LazyLock<SchemaRef> = LazyLock::new(|| {
    Arc::new(Schema::new(vec![
        id("block_id"),
        Field::new("kind", DataType::Utf8, false),
        id("process_id"),
        id("stream_id"),
        id("segment_id"),
        Field::new("offset", DataType::Int64, false),
        Field::new("size", DataType::UInt32, false),
        Field::new("uncompressed_size", DataType::UInt32, false),
        Field::new("event_count", DataType::UInt32, false),
        Field::new("min_time", timestamp_type(), false),
        Field::new("max_time", timestamp_type(), false),
        Field::new("insert_time", timestamp_type(), false),
        // Why the block is quarantined (left out of materialization and
        // queries: its bytes do not read back); NULL for a sound block.
        Field::new("quarantine_error", DataType::Utf8, true),
    ]))
});

fn ids() -> FixedSizeBinaryBuilder {
    FixedSizeBinaryBuilder::new(16)
}

fn append_id(b: &mut FixedSizeBinaryBuilder, id: &[u8; 16]) {
    b.append_value(id).expect("16-byte id");
}

fn times() -> TimestampNanosecondBuilder {
    TimestampNanosecondBuilder::new().with_timezone("UTC")
}

/// What a process says of itself, as OTLP attributes: an OTLP resource's
/// attributes, or a native process's description
/// (`processes.attributes`).
pub fn process_attributes(r: &ProcessRecord) -> Result<Vec<KeyValue>> {
    let corrupt = |reason: String| Error::Corrupt {
        location: format!("process {}", r.process_id),
        reason,
    };
    Ok(match r.source {
        Source::Otlp => {
            Resource::decode(&r.properties[..])
                .map_err(|e| corrupt(e.to_string()))?
                .attributes
        }
        Source::Native => {
            let p = framelake_native_format::Process::decode(&r.properties)
                .map_err(|e| corrupt(e.to_string()))?;
            super::native::attributes(&p)
        }
    })
}

/// The `processes` rows of these records.
pub fn processes(records: &[ProcessRecord]) -> Result<RecordBatch> {
    let (mut id, mut source, mut service) = (ids(), StringBuilder::new(), StringBuilder::new());
    let (mut attributes, mut insert) = (Attributes::default(), times());
    for r in records {
        append_id(&mut id, r.process_id.as_bytes());
        source.append_value(match r.source {
            Source::Otlp => "otlp",
            Source::Native => "native",
        });
        attributes.append(&process_attributes(r)?);
        service.append_value(&r.service_name);
        insert.append_value(r.insert_time);
    }
    Ok(batch(
        &PROCESSES,
        vec![
            Arc::new(id.finish()),
            Arc::new(source.finish()),
            Arc::new(service.finish()),
            attributes.finish(),
            Arc::new(insert.finish()),
        ],
    ))
}

/// The `streams` rows of these records.
pub fn streams(records: &[StreamRecord]) -> RecordBatch {
    let (mut id, mut process, mut kind, mut name, mut insert) = (
        ids(),
        ids(),
        StringBuilder::new(),
        StringBuilder::new(),
        times(),
    );
    for r in records {
        append_id(&mut id, r.stream_id.as_bytes());
        append_id(&mut process, r.process_id.as_bytes());
        kind.append_value(r.kind.name());
        name.append_value(&r.name);
        insert.append_value(r.insert_time);
    }
    batch(
        &STREAMS,
        vec![
            Arc::new(id.finish()),
            Arc::new(process.finish()),
            Arc::new(kind.finish()),
            Arc::new(name.finish()),
            Arc::new(insert.finish()),
        ],
    )
}

/// The `blocks` rows of these records.
pub fn blocks(records: &[BlockRecord]) -> RecordBatch {
    let (mut id, mut process, mut stream, mut segment) = (ids(), ids(), ids(), ids());
    let mut kind = StringBuilder::new();
    let mut offset = Int64Builder::new();
    let (mut size, mut uncompressed, mut events) = (
        UInt32Builder::new(),
        UInt32Builder::new(),
        UInt32Builder::new(),
    );
    let (mut min, mut max, mut insert) = (times(), times(), times());
    let mut quarantine = StringBuilder::new();
    for r in records {
        append_id(&mut id, r.block_id.as_bytes());
        kind.append_value(r.kind.name());
        append_id(&mut process, r.process_id.as_bytes());
        append_id(&mut stream, r.stream_id.as_bytes());
        append_id(&mut segment, r.segment_id.as_bytes());
        offset.append_value(r.offset as i64);
        size.append_value(r.length);
        uncompressed.append_value(r.uncompressed_length);
        events.append_value(r.event_count);
        min.append_value(r.min_time);
        max.append_value(r.max_time);
        insert.append_value(r.insert_time);
        quarantine.append_option(r.quarantine.as_deref());
    }
    let columns: Vec<ArrayRef> = vec![
        Arc::new(id.finish()),
        Arc::new(kind.finish()),
        Arc::new(process.finish()),
        Arc::new(stream.finish()),
        Arc::new(segment.finish()),
        Arc::new(offset.finish()),
        Arc::new(size.finish()),
        Arc::new(uncompressed.finish()),
        Arc::new(events.finish()),
        Arc::new(min.finish()),
        Arc::new(max.finish()),
        Arc::new(insert.finish()),
        Arc::new(quarantine.finish()),
    ];
    batch(&BLOCKS, columns)
}
