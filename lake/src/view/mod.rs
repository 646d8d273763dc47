//! The SQL views' rows: their Arrow schemas, and the decoding of stored blocks
//! into them (for materialization and for reading blocks not yet materialized).
//!
//! Every view has the columns of the process and stream a row came from, and
//! of its OTLP resource and scope, beside its own. Attributes are typed maps
//! (see [`attributes_type`]).

pub mod catalog;
mod columns;
mod logs;
mod measures;
mod native;
mod spans;
mod thread_spans;

use std::sync::{Arc, LazyLock};

use arrow::array::{ArrayBuilder, ArrayRef, FixedSizeBinaryBuilder, StringBuilder, UInt32Array};
use arrow::datatypes::{DataType, Field, SchemaRef};
use arrow::record_batch::RecordBatch;
use opentelemetry_proto::tonic::common::v1::InstrumentationScope;
use opentelemetry_proto::tonic::resource::v1::Resource;

use self::columns::Attributes;
pub use self::columns::{VALUE_FIELDS, attributes_type, timestamp_type};
pub use self::thread_spans::span_id;
use crate::ids::{BlockId, BlockKind, ProcessId, StreamId};
use crate::{Error, Result};

/// The resource attribute (`true`) of a stream pushed through Loki's push
/// API: its other attributes are the stream's labels as sent
/// (`service.name` for `service_name`), which Loki queries read back as
/// they were.
pub const LOKI_PUSH_ATTRIBUTE: &str = "framelake.loki.push";

/// A view of events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum View {
    LogEntries,
    Spans,
    Measures,
    ThreadSpans,
}

impl View {
    pub const ALL: [View; 4] = [
        View::LogEntries,
        View::Spans,
        View::Measures,
        View::ThreadSpans,
    ];

    /// Whether the maintainer materializes its blocks as they arrive. CPU
    /// traces (`thread_spans`) are the bulk of native data and mostly never
    /// read: their blocks are decoded when a query reads them, and cached
    /// as partitions then.
    pub fn eager(self) -> bool {
        !matches!(self, View::ThreadSpans)
    }

    /// The name SQL knows it by.
    pub fn name(self) -> &'static str {
        match self {
            View::LogEntries => "log_entries",
            View::Spans => "spans",
            View::Measures => "measures",
            View::ThreadSpans => "thread_spans",
        }
    }

    /// The kinds of blocks whose events it shows.
    pub fn kinds(self) -> &'static [BlockKind] {
        match self {
            View::LogEntries => &[BlockKind::OtlpLogs, BlockKind::NativeLog],
            View::Spans => &[BlockKind::OtlpSpans],
            View::Measures => &[BlockKind::OtlpMetrics, BlockKind::NativeMetric],
            View::ThreadSpans => &[BlockKind::NativeThread],
        }
    }

    /// The columns whose values lie within their block's event time range
    /// (so a predicate on them prunes blocks and partitions).
    pub fn time_columns(self) -> &'static [&'static str] {
        match self {
            View::LogEntries | View::Measures => &["time"],
            View::Spans => &["start_time", "end_time"],
            View::ThreadSpans => &["begin", "end"],
        }
    }

    /// The order compaction writes its rows in. Spans by trace (a trace id
    /// lookup reads one row group of a file). Logs by service, then stream,
    /// then time: row group statistics on the service are tight, a stream's
    /// resource columns are runs, its times deltas (sorting by time alone
    /// interleaves streams: 3% more bytes than insert order, against 12%
    /// fewer this way). Metrics by name first, for the same reasons.
    pub fn sort_key(self) -> &'static [&'static str] {
        match self {
            View::LogEntries => &["service_name", "stream_id", "time"],
            View::Spans => &["trace_id", "start_time"],
            View::Measures => &["name", "service_name", "stream_id", "time"],
            View::ThreadSpans => &["process_id", "stream_id", "begin"],
        }
    }

    /// The view showing a kind of block's events.
    pub fn of(kind: BlockKind) -> View {
        match kind {
            BlockKind::OtlpLogs | BlockKind::NativeLog => View::LogEntries,
            BlockKind::OtlpSpans => View::Spans,
            BlockKind::OtlpMetrics | BlockKind::NativeMetric => View::Measures,
            BlockKind::NativeThread => View::ThreadSpans,
        }
    }

    pub fn schema(self) -> SchemaRef {
        match self {
            View::LogEntries => Arc::clone(&logs::SCHEMA),
            View::Spans => Arc::clone(&spans::SCHEMA),
            View::Measures => Arc::clone(&measures::SCHEMA),
            View::ThreadSpans => Arc::clone(&thread_spans::SCHEMA),
        }
    }
}

/// What a block's rows take from its catalog record.
#[derive(Debug, Clone)]
pub struct BlockSource {
    pub block_id: BlockId,
    pub process_id: ProcessId,
    pub stream_id: StreamId,
    /// The block's latest event time: the time of a log record without one
    /// (the receiver indexed it at its arrival, within this range).
    pub max_time: i64,
    /// A native block's process (its clock, service and attributes).
    pub native: Option<Arc<NativeProcess>>,
    /// A native thread block's thread name.
    pub thread_name: Option<Arc<str>>,
}

/// A native process, as its blocks' rows need it.
#[derive(Debug)]
pub struct NativeProcess {
    pub process: framelake_native_format::Process,
    pub service_name: String,
}

impl NativeProcess {
    /// From its catalog record (the process message as sent).
    pub fn of(record: &crate::catalog::ProcessRecord) -> Result<Self> {
        let process =
            framelake_native_format::Process::decode(&record.properties).map_err(|e| {
                Error::Corrupt {
                    location: format!("process {}", record.process_id),
                    reason: e.to_string(),
                }
            })?;
        Ok(NativeProcess {
            process,
            service_name: record.service_name.clone(),
        })
    }
}

impl BlockSource {
    pub fn of(block: &crate::catalog::BlockRecord) -> Self {
        BlockSource {
            block_id: block.block_id,
            process_id: block.process_id,
            stream_id: block.stream_id,
            max_time: block.max_time,
            native: None,
            thread_name: None,
        }
    }

    pub fn with_native(mut self, process: Arc<NativeProcess>) -> Self {
        self.native = Some(process);
        self
    }

    pub fn with_thread_name(mut self, name: Arc<str>) -> Self {
        self.thread_name = Some(name);
        self
    }
}

/// Decodes a stored block (its uncompressed payload) into rows of its view.
pub fn decode(kind: BlockKind, payload: &[u8], source: &BlockSource) -> Result<RecordBatch> {
    let mut rows = Rows::new(View::of(kind));
    rows.append(kind, payload, source)?;
    Ok(rows.finish())
}

/// Rows of one view being built from the blocks appended to it: several
/// blocks make one batch (fewer, larger arrays for Parquet to encode).
#[derive(Debug)]
pub struct Rows(RowBuilders);

#[derive(Debug)]
enum RowBuilders {
    Logs(Box<logs::LogRows>),
    Spans(Box<spans::SpanRows>),
    Measures(Box<measures::MeasureRows>),
    ThreadSpans(Box<thread_spans::ThreadSpanRows>),
}

impl Rows {
    pub fn new(view: View) -> Self {
        Rows(match view {
            View::LogEntries => RowBuilders::Logs(Box::default()),
            View::Spans => RowBuilders::Spans(Box::default()),
            View::Measures => RowBuilders::Measures(Box::default()),
            View::ThreadSpans => RowBuilders::ThreadSpans(Box::default()),
        })
    }

    /// Appends a stored block's rows (its uncompressed payload). A block that
    /// does not decode is refused whole: nothing of it is appended.
    pub fn append(&mut self, kind: BlockKind, payload: &[u8], source: &BlockSource) -> Result<()> {
        let invalid = |e: prost::DecodeError| Error::Corrupt {
            location: format!("{} block {}", kind.name(), source.block_id),
            reason: e.to_string(),
        };
        let native = |e: String| Error::Corrupt {
            location: format!("{} block {}", kind.name(), source.block_id),
            reason: e,
        };
        match (&mut self.0, kind) {
            (RowBuilders::Logs(rows), BlockKind::OtlpLogs) => {
                rows.append(payload, source).map_err(invalid)
            }
            (RowBuilders::Spans(rows), BlockKind::OtlpSpans) => {
                rows.append(payload, source).map_err(invalid)
            }
            (RowBuilders::Measures(rows), BlockKind::OtlpMetrics) => {
                rows.append_request(payload, source).map_err(invalid)
            }
            (RowBuilders::Logs(rows), BlockKind::NativeLog) => {
                rows.append_native(payload, source).map_err(native)
            }
            (RowBuilders::Measures(rows), BlockKind::NativeMetric) => {
                rows.append_native(payload, source).map_err(native)
            }
            (RowBuilders::ThreadSpans(rows), BlockKind::NativeThread) => {
                rows.append_native(payload, source).map_err(native)
            }
            _ => Err(Error::Corrupt {
                location: format!("block {}", source.block_id),
                reason: format!(
                    "a {} block is not a row of {}",
                    kind.name(),
                    self.view().name()
                ),
            }),
        }
    }

    pub fn view(&self) -> View {
        match self.0 {
            RowBuilders::Logs(_) => View::LogEntries,
            RowBuilders::Spans(_) => View::Spans,
            RowBuilders::Measures(_) => View::Measures,
            RowBuilders::ThreadSpans(_) => View::ThreadSpans,
        }
    }

    /// Rows appended since the last [`Rows::finish`].
    pub fn len(&self) -> usize {
        match &self.0 {
            RowBuilders::Logs(rows) => rows.len(),
            RowBuilders::Spans(rows) => rows.len(),
            RowBuilders::Measures(rows) => rows.len(),
            RowBuilders::ThreadSpans(rows) => rows.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The rows appended so far, as one batch; starts afresh.
    pub fn finish(&mut self) -> RecordBatch {
        match &mut self.0 {
            RowBuilders::Logs(rows) => rows.finish(),
            RowBuilders::Spans(rows) => rows.finish(),
            RowBuilders::Measures(rows) => rows.finish(),
            RowBuilders::ThreadSpans(rows) => rows.finish(),
        }
    }
}

/// The columns every view starts with: where a row came from.
fn common_fields() -> Vec<Field> {
    vec![
        Field::new("process_id", DataType::FixedSizeBinary(16), false),
        Field::new("stream_id", DataType::FixedSizeBinary(16), false),
        Field::new("service_name", DataType::Utf8, false),
        Field::new("resource_attributes", attributes_type(), false),
        Field::new("scope_name", DataType::Utf8, false),
        Field::new("scope_version", DataType::Utf8, false),
        Field::new("scope_attributes", attributes_type(), false),
    ]
}

/// The columns of [`common_fields`]. Their values are the same for every
/// row of a resource and scope in a block (an origin): each origin is built
/// once, and the rows take their values from it when the batch is finished
/// (copying arrays, not appending a resource's attributes row by row).
#[derive(Debug, Default)]
struct Common {
    origins: Origins,
    rows: Vec<u32>,
}

/// One row per origin.
#[derive(Debug)]
struct Origins {
    process_id: FixedSizeBinaryBuilder,
    stream_id: FixedSizeBinaryBuilder,
    service_name: StringBuilder,
    resource_attributes: Attributes,
    scope_name: StringBuilder,
    scope_version: StringBuilder,
    scope_attributes: Attributes,
}

impl Default for Origins {
    fn default() -> Self {
        Origins {
            process_id: FixedSizeBinaryBuilder::new(16),
            stream_id: FixedSizeBinaryBuilder::new(16),
            service_name: StringBuilder::new(),
            resource_attributes: Attributes::default(),
            scope_name: StringBuilder::new(),
            scope_version: StringBuilder::new(),
            scope_attributes: Attributes::default(),
        }
    }
}

/// A resource's group of an OTLP request (`ResourceLogs`, …) and its scopes.
trait OtlpResource {
    type Scope: OtlpScope;
    fn resource(&self) -> Option<&Resource>;
    fn scopes(&self) -> &[Self::Scope];
}

/// A scope's group of an OTLP request (`ScopeLogs`, …) and its items.
trait OtlpScope {
    type Item;
    fn scope(&self) -> Option<&InstrumentationScope>;
    fn items(&self) -> &[Self::Item];
}

macro_rules! otlp_groups {
    ($resource:path, $scopes:ident, $scope:path, $items:ident, $item:path) => {
        impl OtlpResource for $resource {
            type Scope = $scope;
            fn resource(&self) -> Option<&Resource> {
                self.resource.as_ref()
            }
            fn scopes(&self) -> &[$scope] {
                &self.$scopes
            }
        }
        impl OtlpScope for $scope {
            type Item = $item;
            fn scope(&self) -> Option<&InstrumentationScope> {
                self.scope.as_ref()
            }
            fn items(&self) -> &[$item] {
                &self.$items
            }
        }
    };
}

otlp_groups!(
    opentelemetry_proto::tonic::logs::v1::ResourceLogs,
    scope_logs,
    opentelemetry_proto::tonic::logs::v1::ScopeLogs,
    log_records,
    opentelemetry_proto::tonic::logs::v1::LogRecord
);
otlp_groups!(
    opentelemetry_proto::tonic::trace::v1::ResourceSpans,
    scope_spans,
    opentelemetry_proto::tonic::trace::v1::ScopeSpans,
    spans,
    opentelemetry_proto::tonic::trace::v1::Span
);
otlp_groups!(
    opentelemetry_proto::tonic::metrics::v1::ResourceMetrics,
    scope_metrics,
    opentelemetry_proto::tonic::metrics::v1::ScopeMetrics,
    metrics,
    opentelemetry_proto::tonic::metrics::v1::Metric
);

/// What an absent resource or scope reads as.
static NO_RESOURCE: LazyLock<Resource> = LazyLock::new(Resource::default);
static NO_SCOPE: LazyLock<InstrumentationScope> = LazyLock::new(InstrumentationScope::default);

/// The resource and scope of the rows being appended.
struct Origin<'a> {
    source: &'a BlockSource,
    service_name: &'a str,
    resource: &'a Resource,
    scope: &'a InstrumentationScope,
}

impl Common {
    /// Records an origin; rows of it are appended with the index returned.
    fn origin(&mut self, origin: &Origin<'_>) -> u32 {
        let o = &mut self.origins;
        let index = o.service_name.len() as u32;
        let append_id = |b: &mut FixedSizeBinaryBuilder, id: &[u8; 16]| {
            b.append_value(id).expect("16-byte id");
        };
        append_id(&mut o.process_id, origin.source.process_id.as_bytes());
        append_id(&mut o.stream_id, origin.source.stream_id.as_bytes());
        o.service_name.append_value(origin.service_name);
        o.resource_attributes.append(&origin.resource.attributes);
        o.scope_name.append_value(&origin.scope.name);
        o.scope_version.append_value(&origin.scope.version);
        o.scope_attributes.append(&origin.scope.attributes);
        index
    }

    /// The items of every resource and scope of an OTLP request, each group
    /// with its origin, recorded.
    fn scoped<'a, R: OtlpResource>(
        &mut self,
        source: &BlockSource,
        resources: &'a [R],
    ) -> Vec<(u32, &'a [<R::Scope as OtlpScope>::Item])> {
        let mut groups = Vec::new();
        for r in resources {
            let resource = r.resource().unwrap_or(&NO_RESOURCE);
            let service_name = service_name(resource);
            for s in r.scopes() {
                let origin = self.origin(&Origin {
                    source,
                    service_name,
                    resource,
                    scope: s.scope().unwrap_or(&NO_SCOPE),
                });
                groups.push((origin, s.items()));
            }
        }
        groups
    }

    /// Appends a row of an origin.
    fn append(&mut self, origin: u32) {
        self.rows.push(origin);
    }

    fn finish(&mut self) -> Vec<ArrayRef> {
        let o = &mut self.origins;
        let origins: [ArrayRef; 7] = [
            Arc::new(o.process_id.finish()),
            Arc::new(o.stream_id.finish()),
            Arc::new(o.service_name.finish()),
            o.resource_attributes.finish(),
            Arc::new(o.scope_name.finish()),
            Arc::new(o.scope_version.finish()),
            o.scope_attributes.finish(),
        ];
        let rows = UInt32Array::from(std::mem::take(&mut self.rows));
        origins
            .iter()
            .map(|column| {
                arrow::compute::take(column, &rows, None).expect("origin indices are in range")
            })
            .collect()
    }
}

/// The `service.name` of a resource, or OTLP's `unknown_service`.
pub fn service_name(resource: &Resource) -> &str {
    use opentelemetry_proto::tonic::common::v1::any_value::Value;
    resource
        .attributes
        .iter()
        .find(|kv| kv.key == "service.name")
        .and_then(|kv| match kv.value.as_ref()?.value.as_ref()? {
            Value::StringValue(s) if !s.is_empty() => Some(s.as_str()),
            _ => None,
        })
        .unwrap_or("unknown_service")
}

fn batch(schema: &SchemaRef, columns: Vec<ArrayRef>) -> RecordBatch {
    RecordBatch::try_new(Arc::clone(schema), columns).expect("columns match the view's schema")
}

#[cfg(test)]
mod tests;
