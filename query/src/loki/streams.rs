//! How the lake's logs look to Loki: stream labels and structured metadata,
//! the mapping Loki 3 applies to OpenTelemetry logs.
//!
//! - An OTLP resource's attributes that Loki 3 promotes (`service.name`,
//!   `k8s.pod.name`, …, and any configured extras) are its stream labels,
//!   dots and other characters as underscores (`service_name`); a resource
//!   without `service.name` is `service_name="unknown_service"`.
//! - Everything else is structured metadata of each line: the resource's
//!   other attributes, the scope (`scope_name`, `scope_version`, its
//!   attributes), the record's attributes, `severity_text`,
//!   `severity_number`, `trace_id`, `span_id`, `flags`, `observed_timestamp`,
//!   `event_name`, `dropped_attributes_count`; and `detected_level`.
//! - A native process is treated as its resource (the attributes it
//!   describes itself with).
//! - A stream pushed through Loki's push API keeps its labels exactly, and
//!   its lines' structured metadata as pushed.
//! - `detected_level` is Loki 3's: a level label or field of the line
//!   (`level`, `severity`, …), else the OTLP severity, else a level word in
//!   the line; `unknown` when none.

use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, FixedSizeBinaryArray, Int32Array, MapArray, RecordBatch, StringViewArray,
    TimestampNanosecondArray, UInt32Array,
};
use framelake_lake::catalog::ProcessRecord;
use framelake_lake::ids::ProcessId;
use framelake_lake::view::LOKI_PUSH_ATTRIBUTE;
use framelake_logql::eval::{
    Category, LEVEL_LABELS, Labels, detect_level, normalize_level, sanitize, severity_level,
};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};

use crate::QueryError;
use crate::functions::map_texts_where;

/// The resource attributes Loki 3 makes stream labels by default.
pub const DEFAULT_PROMOTED: [&str; 18] = [
    "service.name",
    "service.namespace",
    "service.instance.id",
    "deployment.environment",
    "deployment.environment.name",
    "cloud.region",
    "cloud.availability_zone",
    "k8s.cluster.name",
    "k8s.namespace.name",
    "k8s.pod.name",
    "k8s.container.name",
    "container.name",
    "k8s.replicaset.name",
    "k8s.deployment.name",
    "k8s.statefulset.name",
    "k8s.daemonset.name",
    "k8s.cronjob.name",
    "k8s.job.name",
];

/// The label of a line's level, as Loki 3 detects it.
pub const DETECTED_LEVEL: &str = "detected_level";

/// Which resource attributes are stream labels.
#[derive(Debug, Clone)]
pub struct LabelMapping {
    promoted: Vec<String>,
}

impl Default for LabelMapping {
    fn default() -> Self {
        LabelMapping::new(&[])
    }
}

/// A stream: a process (OTLP resource, native process or pushed stream)
/// as Loki sees it.
#[derive(Debug, Clone)]
pub struct Stream {
    pub process_id: ProcessId,
    /// Its stream labels.
    pub labels: Labels,
    /// The resource attributes that are structured metadata of its lines.
    pub metadata: Vec<(String, String)>,
    /// Pushed through Loki's push API (no OTLP fields to map).
    pub pushed: bool,
    /// The level its labels give every line, if any.
    pub level: Option<&'static str>,
}

impl LabelMapping {
    /// Loki 3's default promotions and these extra resource attributes.
    pub fn new(extra: &[String]) -> Self {
        let mut promoted: Vec<String> = DEFAULT_PROMOTED.iter().map(|s| s.to_string()).collect();
        promoted.extend(
            extra
                .iter()
                .filter(|e| !promoted.contains(e))
                .cloned()
                .collect::<Vec<_>>(),
        );
        LabelMapping { promoted }
    }

    /// The stream of a process.
    pub fn stream(&self, record: &ProcessRecord) -> Result<Stream, QueryError> {
        let attributes = framelake_lake::view::catalog::process_attributes(record)?;
        let pushed = attributes.iter().any(|kv| {
            kv.key == LOKI_PUSH_ATTRIBUTE
                && matches!(
                    kv.value.as_ref().and_then(|v| v.value.as_ref()),
                    Some(any_value::Value::BoolValue(true))
                )
        });
        let mut labels = Labels::default();
        let mut metadata = Vec::new();
        labels.set(
            Category::Stream,
            "service_name",
            record.service_name.clone(),
        );
        for kv in &attributes {
            if kv.key == LOKI_PUSH_ATTRIBUTE || kv.key == "service.name" {
                continue;
            }
            let mut flat = Vec::new();
            flatten(&kv.key, kv.value.as_ref(), &mut flat);
            if pushed || self.promoted.contains(&kv.key) {
                for (name, value) in flat {
                    labels.set(Category::Stream, &name, value);
                }
            } else {
                metadata.extend(flat);
            }
        }
        let level = LEVEL_LABELS
            .iter()
            .find_map(|l| labels.get(l))
            .map(normalize_level);
        Ok(Stream {
            process_id: record.process_id,
            labels,
            metadata,
            pushed,
            level,
        })
    }
}

/// An attribute as label names and values: nested maps flattened with `_`
/// (as Loki does), arrays as JSON, bytes as hex.
fn flatten(key: &str, value: Option<&AnyValue>, out: &mut Vec<(String, String)>) {
    use any_value::Value;
    let name = sanitize(key);
    match value.and_then(|v| v.value.as_ref()) {
        Some(Value::KvlistValue(list)) => {
            for KeyValue { key, value, .. } in &list.values {
                flatten(&format!("{name}_{key}"), value.as_ref(), out);
            }
        }
        other => out.push((name, any_text(other))),
    }
}

fn any_text(value: Option<&any_value::Value>) -> String {
    use any_value::Value;
    match value {
        None => String::new(),
        Some(Value::StringValue(s)) => s.clone(),
        Some(Value::IntValue(i)) => i.to_string(),
        Some(Value::DoubleValue(d)) => d.to_string(),
        Some(Value::BoolValue(b)) => b.to_string(),
        Some(Value::BytesValue(b)) => hex(b),
        Some(other) => any_json(other).to_string(),
    }
}

fn any_json(value: &any_value::Value) -> serde_json::Value {
    use any_value::Value;
    use serde_json::Value as Json;
    match value {
        Value::StringValue(s) => Json::String(s.clone()),
        Value::IntValue(i) => Json::from(*i),
        Value::DoubleValue(d) => serde_json::Number::from_f64(*d).map_or(Json::Null, Json::Number),
        Value::BoolValue(b) => Json::Bool(*b),
        Value::BytesValue(b) => Json::String(hex(b)),
        // An index into a profile's string table (profiles only).
        Value::StringValueStrindex(i) => Json::from(*i),
        Value::ArrayValue(a) => Json::Array(
            a.values
                .iter()
                .map(|v| v.value.as_ref().map_or(Json::Null, any_json))
                .collect(),
        ),
        Value::KvlistValue(l) => Json::Object(
            l.values
                .iter()
                .map(|kv| {
                    let v = kv.value.as_ref().and_then(|v| v.value.as_ref());
                    (kv.key.clone(), v.map_or(Json::Null, any_json))
                })
                .collect(),
        ),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The `log_entries` columns a line's structured metadata comes from.
pub const METADATA_COLUMNS: [&str; 12] = [
    "scope_name",
    "scope_version",
    "scope_attributes",
    "attributes",
    "severity_number",
    "severity_text",
    "trace_id",
    "span_id",
    "flags",
    "observed_time",
    "event_name",
    "dropped_attributes_count",
];

/// A batch of `log_entries` rows, read as Loki lines.
pub struct LineBatch {
    pub len: usize,
    time: TimestampNanosecondArray,
    body: Option<StringViewArray>,
    process: FixedSizeBinaryArray,
    columns: Option<Metadata>,
}

struct Metadata {
    scope_name: StringViewArray,
    scope_version: StringViewArray,
    scope_attributes: MapArray,
    attributes: MapArray,
    severity_number: Int32Array,
    severity_text: StringViewArray,
    trace_id: FixedSizeBinaryArray,
    span_id: FixedSizeBinaryArray,
    flags: UInt32Array,
    observed: TimestampNanosecondArray,
    event_name: StringViewArray,
    dropped: UInt32Array,
}

fn column<'a>(batch: &'a RecordBatch, name: &str) -> Result<&'a ArrayRef, QueryError> {
    batch
        .column_by_name(name)
        .ok_or_else(|| QueryError::Internal(format!("log scan without column {name}")))
}

fn typed<T: Clone + 'static>(batch: &RecordBatch, name: &str) -> Result<T, QueryError> {
    column(batch, name)?
        .as_any()
        .downcast_ref::<T>()
        .cloned()
        .ok_or_else(|| QueryError::Internal(format!("log column {name} of an unexpected type")))
}

impl LineBatch {
    /// Reads `time`, `process_id`, and `body` and the metadata columns when
    /// the batch has them.
    pub fn new(batch: &RecordBatch) -> Result<Self, QueryError> {
        let body = match batch.column_by_name("body") {
            Some(_) => Some(typed(batch, "body")?),
            None => None,
        };
        let columns = if batch.column_by_name("attributes").is_some() {
            Some(Metadata {
                scope_name: typed(batch, "scope_name")?,
                scope_version: typed(batch, "scope_version")?,
                scope_attributes: typed(batch, "scope_attributes")?,
                attributes: typed(batch, "attributes")?,
                severity_number: typed(batch, "severity_number")?,
                severity_text: typed(batch, "severity_text")?,
                trace_id: typed(batch, "trace_id")?,
                span_id: typed(batch, "span_id")?,
                flags: typed(batch, "flags")?,
                observed: typed(batch, "observed_time")?,
                event_name: typed(batch, "event_name")?,
                dropped: typed(batch, "dropped_attributes_count")?,
            })
        } else {
            None
        };
        Ok(LineBatch {
            len: batch.num_rows(),
            time: typed(batch, "time")?,
            body,
            process: typed(batch, "process_id")?,
            columns,
        })
    }

    pub fn time(&self, row: usize) -> i64 {
        self.time.value(row)
    }

    /// The line (empty for a record without a body).
    pub fn line(&self, row: usize) -> &str {
        match &self.body {
            Some(b) if b.is_valid(row) => b.value(row),
            _ => "",
        }
    }

    pub fn process(&self, row: usize) -> &[u8] {
        self.process.value(row)
    }

    /// A line's labels: its stream's, and its structured metadata when the
    /// batch has the columns (with `detected_level`).
    pub fn labels(&self, row: usize, stream: &Stream) -> Labels {
        self.labels_for(row, stream, None)
    }

    /// A line's labels with only the structured metadata `wanted` names
    /// (all when `None`): what a query does not read is not built.
    pub fn labels_for(
        &self,
        row: usize,
        stream: &Stream,
        wanted: Option<&std::collections::BTreeSet<String>>,
    ) -> Labels {
        let mut labels = stream.labels.clone();
        let Some(m) = &self.columns else {
            return labels;
        };
        let level_wanted = wanted.is_none_or(|w| w.contains(DETECTED_LEVEL));
        let want = |name: &str| {
            wanted
                .is_none_or(|w| w.contains(name) || (level_wanted && LEVEL_LABELS.contains(&name)))
        };
        if wanted.is_some_and(|w| w.is_empty()) {
            return labels;
        }
        let mut set = |name: &str, value: &dyn Fn() -> String| {
            if want(name) {
                labels.set(Category::Metadata, name, value());
            }
        };
        for (name, value) in &stream.metadata {
            set(name, &|| value.clone());
        }
        let text = |a: &StringViewArray| {
            (a.is_valid(row) && !a.value(row).is_empty()).then(|| a.value(row).to_owned())
        };
        if let Some(v) = text(&m.scope_name) {
            set("scope_name", &|| v.clone());
        }
        if let Some(v) = text(&m.scope_version) {
            set("scope_version", &|| v.clone());
        }
        for map in [&m.scope_attributes, &m.attributes] {
            if map.is_valid(row) {
                for (k, v) in map_texts_where(map, row, |key| want(&sanitize(key))) {
                    set(&sanitize(&k), &|| v.clone());
                }
            }
        }
        let severity = m.severity_number.value(row);
        if severity != 0 {
            set("severity_number", &|| severity.to_string());
        }
        if let Some(v) = text(&m.severity_text) {
            set("severity_text", &|| v.clone());
        }
        for (name, ids) in [("trace_id", &m.trace_id), ("span_id", &m.span_id)] {
            if ids.is_valid(row) && ids.value(row).iter().any(|b| *b != 0) {
                set(name, &|| hex(ids.value(row)));
            }
        }
        if m.flags.value(row) != 0 {
            set("flags", &|| m.flags.value(row).to_string());
        }
        if m.observed.is_valid(row) && m.observed.value(row) != 0 {
            set("observed_timestamp", &|| m.observed.value(row).to_string());
        }
        if let Some(v) = text(&m.event_name) {
            set("event_name", &|| v.clone());
        }
        if m.dropped.value(row) != 0 {
            set("dropped_attributes_count", &|| {
                m.dropped.value(row).to_string()
            });
        }
        if !level_wanted {
            return labels;
        }
        let level = stream
            .level
            .or_else(|| {
                LEVEL_LABELS
                    .iter()
                    .find_map(|l| labels.get(l))
                    .map(normalize_level)
                    .filter(|l| *l != "unknown")
            })
            .or_else(|| (severity != 0).then(|| severity_level(severity)))
            .unwrap_or_else(|| detect_level(self.line(row)));
        if labels.get(DETECTED_LEVEL).is_none() {
            labels.set(Category::Metadata, DETECTED_LEVEL, level.to_owned());
        }
        labels
    }
}

/// Streams by process id, for the rows of a scan.
#[derive(Debug, Default)]
pub struct StreamIndex {
    streams: Vec<Arc<Stream>>,
    by_id: std::collections::HashMap<ProcessId, usize>,
    /// Every stream with logs in the range is here: a scan of the range
    /// needs no filter on processes.
    pub complete: bool,
    /// The service names of these streams, when the streams are exactly
    /// those of the range with these names: a scan filters on the
    /// `service_name` column instead of on processes.
    pub services: Option<Vec<String>>,
}

impl StreamIndex {
    pub fn new(streams: Vec<Stream>) -> Self {
        let by_id = streams
            .iter()
            .enumerate()
            .map(|(i, s)| (s.process_id, i))
            .collect();
        StreamIndex {
            streams: streams.into_iter().map(Arc::new).collect(),
            by_id,
            complete: false,
            services: None,
        }
    }

    pub fn get(&self, process: &[u8]) -> Option<(usize, &Arc<Stream>)> {
        let id = ProcessId::from_slice(process).ok()?;
        let i = *self.by_id.get(&id)?;
        Some((i, &self.streams[i]))
    }

    pub fn all(&self) -> &[Arc<Stream>] {
        &self.streams
    }

    pub fn ids(&self) -> impl Iterator<Item = ProcessId> + '_ {
        self.streams.iter().map(|s| s.process_id)
    }

    pub fn is_empty(&self) -> bool {
        self.streams.is_empty()
    }
}
