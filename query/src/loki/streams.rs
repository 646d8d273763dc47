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
        labels.freeze();
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

/// The metadata columns a batch has (a scan reads those a query needs).
struct Metadata {
    scope_name: Option<StringViewArray>,
    scope_version: Option<StringViewArray>,
    scope_attributes: Option<MapArray>,
    attributes: Option<MapArray>,
    severity_number: Option<Int32Array>,
    severity_text: Option<StringViewArray>,
    trace_id: Option<FixedSizeBinaryArray>,
    span_id: Option<FixedSizeBinaryArray>,
    flags: Option<UInt32Array>,
    observed: Option<TimestampNanosecondArray>,
    event_name: Option<StringViewArray>,
    dropped: Option<UInt32Array>,
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
        let optional = |name: &str| batch.column_by_name(name).is_some();
        let columns = if METADATA_COLUMNS.iter().any(|c| optional(c)) {
            fn read<T: Clone + 'static>(
                batch: &RecordBatch,
                name: &str,
            ) -> Result<Option<T>, QueryError> {
                match batch.column_by_name(name) {
                    Some(_) => typed(batch, name).map(Some),
                    None => Ok(None),
                }
            }
            Some(Metadata {
                scope_name: read(batch, "scope_name")?,
                scope_version: read(batch, "scope_version")?,
                scope_attributes: read(batch, "scope_attributes")?,
                attributes: read(batch, "attributes")?,
                severity_number: read(batch, "severity_number")?,
                severity_text: read(batch, "severity_text")?,
                trace_id: read(batch, "trace_id")?,
                span_id: read(batch, "span_id")?,
                flags: read(batch, "flags")?,
                observed: read(batch, "observed_time")?,
                event_name: read(batch, "event_name")?,
                dropped: read(batch, "dropped_attributes_count")?,
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
        let mut labels = Labels::default();
        self.labels_for(row, stream, &Wanted::ALL, &mut labels);
        labels
    }

    /// Makes `labels` a line's labels with only the structured metadata
    /// `wanted` names (what a query does not read is not built), reusing
    /// their memory.
    pub fn labels_for(&self, row: usize, stream: &Stream, wanted: &Wanted, labels: &mut Labels) {
        labels.reset(&stream.labels);
        let Some(m) = &self.columns else {
            return;
        };
        if wanted.is_nothing() {
            return;
        }
        let mut set = |name: &str, value: &dyn Fn() -> String| {
            if wanted.wants(name) {
                labels.set(Category::Metadata, name, value());
            }
        };
        for (name, value) in &stream.metadata {
            set(name, &|| value.clone());
        }
        fn text(a: &Option<StringViewArray>, row: usize) -> Option<&str> {
            let a = a.as_ref()?;
            (a.is_valid(row) && !a.value(row).is_empty()).then(|| a.value(row))
        }
        if let Some(v) = text(&m.scope_name, row) {
            set("scope_name", &|| v.to_owned());
        }
        if let Some(v) = text(&m.scope_version, row) {
            set("scope_version", &|| v.to_owned());
        }
        for map in [&m.scope_attributes, &m.attributes].into_iter().flatten() {
            if map.is_valid(row) {
                for (k, v) in map_texts_where(map, row, |key| wanted.wants_key(key)) {
                    labels.set(Category::Metadata, &sanitize(&k), v);
                }
            }
        }
        let mut set = |name: &str, value: &dyn Fn() -> String| {
            if wanted.wants(name) {
                labels.set(Category::Metadata, name, value());
            }
        };
        let severity = m.severity_number.as_ref().map_or(0, |a| a.value(row));
        if severity != 0 {
            set("severity_number", &|| severity.to_string());
        }
        if let Some(v) = text(&m.severity_text, row) {
            set("severity_text", &|| v.to_owned());
        }
        for (name, ids) in [("trace_id", &m.trace_id), ("span_id", &m.span_id)] {
            if let Some(ids) = ids
                && ids.is_valid(row)
                && ids.value(row).iter().any(|b| *b != 0)
            {
                set(name, &|| hex(ids.value(row)));
            }
        }
        let number = |a: &Option<UInt32Array>| a.as_ref().map_or(0, |a| a.value(row));
        if number(&m.flags) != 0 {
            set("flags", &|| number(&m.flags).to_string());
        }
        if let Some(observed) = &m.observed
            && observed.is_valid(row)
            && observed.value(row) != 0
        {
            set("observed_timestamp", &|| observed.value(row).to_string());
        }
        if let Some(v) = text(&m.event_name, row) {
            set("event_name", &|| v.to_owned());
        }
        if number(&m.dropped) != 0 {
            set("dropped_attributes_count", &|| {
                number(&m.dropped).to_string()
            });
        }
        if !wanted.level {
            return;
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
    }
}

/// The structured metadata a query reads: every field, or those named
/// (with the fields `detected_level` comes from when it is named).
#[derive(Debug, Clone)]
pub struct Wanted {
    /// `None`: all.
    names: Option<Vec<String>>,
    level: bool,
}

impl Wanted {
    pub const ALL: Wanted = Wanted {
        names: None,
        level: true,
    };

    /// `None`: all.
    pub fn new(names: Option<&std::collections::BTreeSet<String>>) -> Self {
        match names {
            None => Wanted::ALL,
            Some(names) => Wanted {
                level: names.contains(DETECTED_LEVEL),
                names: Some(names.iter().cloned().collect()),
            },
        }
    }

    /// The metadata columns (of [`METADATA_COLUMNS`]) these fields come
    /// from: attributes always (any key may be wanted), the others when
    /// their label is (the severity for `detected_level`).
    /// `maps`: the attributes too.
    pub fn columns(&self, maps: bool) -> Vec<&'static str> {
        METADATA_COLUMNS
            .into_iter()
            .filter(|column| match *column {
                "scope_attributes" | "attributes" => maps && !self.is_nothing(),
                "observed_time" => self.wants("observed_timestamp"),
                "severity_number" => self.level || self.wants(column),
                name => self.wants(name),
            })
            .collect()
    }

    fn is_nothing(&self) -> bool {
        self.names.as_ref().is_some_and(Vec::is_empty)
    }

    /// Whether a field of this (label) name is read.
    pub fn wants(&self, name: &str) -> bool {
        match &self.names {
            None => true,
            Some(names) => {
                names.iter().any(|n| n == name) || (self.level && LEVEL_LABELS.contains(&name))
            }
        }
    }

    /// Whether an attribute of this key is read (its label name being the
    /// key sanitized), without building the name.
    fn wants_key(&self, key: &str) -> bool {
        match &self.names {
            None => true,
            Some(names) => {
                names.iter().any(|n| sanitizes_to(key, n))
                    || (self.level && LEVEL_LABELS.iter().any(|n| sanitizes_to(key, n)))
            }
        }
    }
}

/// Whether `sanitize(key) == name`.
fn sanitizes_to(key: &str, name: &str) -> bool {
    let name = match key.as_bytes().first() {
        Some(b'0'..=b'9') => match name.strip_prefix('_') {
            Some(rest) => rest,
            None => return false,
        },
        _ => name,
    };
    let mut names = name.chars();
    for c in key.chars() {
        let c = if c.is_ascii_alphanumeric() || c == '_' {
            c
        } else {
            '_'
        };
        if names.next() != Some(c) {
            return false;
        }
    }
    names.next().is_none()
}

/// Streams by process id, for the rows of a scan.
#[derive(Debug, Default, Clone)]
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attribute_keys_are_wanted_by_their_label_names() {
        for (key, name) in [
            ("took", "took"),
            ("http.status_code", "http_status_code"),
            ("1st-try", "_1st_try"),
            ("é", "_"),
        ] {
            assert_eq!(sanitize(key), name);
            assert!(sanitizes_to(key, name), "{key} → {name}");
        }
        for (key, name) in [
            ("took", "tooks"),
            ("tooks", "took"),
            ("1a", "1a"),
            ("a.b", "a.b"),
        ] {
            assert!(!sanitizes_to(key, name), "{key} is not {name}");
        }
        let names = ["took".to_owned(), DETECTED_LEVEL.to_owned()].into();
        let wanted = Wanted::new(Some(&names));
        assert!(
            wanted.wants_key("took") && wanted.wants_key("level") && !wanted.wants_key("route")
        );
        assert!(Wanted::ALL.wants_key("route"));
        assert!(Wanted::new(Some(&Default::default())).is_nothing());
        // A scan reads the columns of what is wanted.
        assert_eq!(
            wanted.columns(true),
            ["scope_attributes", "attributes", "severity_number"]
        );
        let names = ["trace_id".to_owned(), "observed_timestamp".to_owned()].into();
        assert_eq!(
            Wanted::new(Some(&names)).columns(true),
            [
                "scope_attributes",
                "attributes",
                "trace_id",
                "observed_time"
            ]
        );
        assert!(
            Wanted::new(Some(&Default::default()))
                .columns(true)
                .is_empty()
        );
        assert!(Wanted::new(Some(&names)).columns(false) == ["trace_id", "observed_time"]);
        assert_eq!(Wanted::ALL.columns(true), METADATA_COLUMNS);
    }
}
