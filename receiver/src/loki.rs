//! Loki's push API, `POST /loki/api/v1/push`, for the shippers and logging
//! libraries that speak it (Promtail, Alloy, Fluent Bit, Vector,
//! `winston-loki`, `python-logging-loki`, …).
//!
//! A push is either a snappy-compressed (block format) protobuf
//! `logproto.PushRequest` or JSON (optionally gzip or deflate). Each stream
//! becomes an OTLP resource whose attributes are its labels (`service_name`
//! as `service.name`, the name the lake's views read; a stream without one
//! gets the name Loki 3 gives it) and `framelake.loki.push` (`true`, which
//! tells Loki queries to read every attribute back as a label); each entry a log record whose body is the
//! line and whose attributes are its structured metadata. The request then
//! takes the OTLP path: the same validation, limits, durability and
//! idempotence (a retried push is stored once).

use std::collections::BTreeMap;

use bytes::Bytes;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message;

use framelake_lake::view::LOKI_PUSH_ATTRIBUTE;

use crate::error::IngestError;
use crate::otlp::Encoding;

/// `logproto.PushRequest`.
#[derive(Clone, PartialEq, Message)]
pub struct PushRequest {
    #[prost(message, repeated, tag = "1")]
    pub streams: Vec<StreamAdapter>,
}

/// `logproto.StreamAdapter`: a stream's labels (`{a="b"}`) and entries.
#[derive(Clone, PartialEq, Message)]
pub struct StreamAdapter {
    #[prost(string, tag = "1")]
    pub labels: String,
    #[prost(message, repeated, tag = "2")]
    pub entries: Vec<EntryAdapter>,
    #[prost(uint64, tag = "3")]
    pub hash: u64,
}

/// `logproto.EntryAdapter`.
#[derive(Clone, PartialEq, Message)]
pub struct EntryAdapter {
    #[prost(message, optional, tag = "1")]
    pub timestamp: Option<prost_types::Timestamp>,
    #[prost(string, tag = "2")]
    pub line: String,
    #[prost(message, repeated, tag = "3")]
    pub structured_metadata: Vec<LabelPairAdapter>,
    /// Labels a querier parsed; ignored on push, as Loki does.
    #[prost(message, repeated, tag = "4")]
    pub parsed: Vec<LabelPairAdapter>,
}

/// `logproto.LabelPairAdapter`.
#[derive(Clone, PartialEq, Message)]
pub struct LabelPairAdapter {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(string, tag = "2")]
    pub value: String,
}

/// The labels Loki 3 takes a stream's `service_name` from, in order, when the
/// stream has none.
const SERVICE_NAME_FROM: [&str; 12] = [
    "service_name",
    "service",
    "app",
    "application",
    "name",
    "app_kubernetes_io_name",
    "container",
    "container_name",
    "k8s_container_name",
    "component",
    "workload",
    "job",
];

/// The service name of streams that name none (Loki 3's).
const UNKNOWN_SERVICE: &str = "unknown_service";

/// One stream of a push: its labels and entries.
struct Stream {
    labels: BTreeMap<String, String>,
    entries: Vec<Entry>,
}

/// An entry: its time (ns since the epoch), line and structured metadata.
type Entry = (u64, String, Vec<(String, String)>);

/// A push body (already decompressed for JSON; snappy block format around a
/// `PushRequest` for protobuf) as the OTLP request it is stored as. `limit`
/// bounds the snappy output.
pub fn to_otlp(format: Encoding, body: &[u8], limit: usize) -> Result<Bytes, IngestError> {
    let streams = match format {
        Encoding::Protobuf => protobuf_streams(body, limit)?,
        Encoding::Json => json_streams(body)?,
    };
    let request = ExportLogsServiceRequest {
        resource_logs: streams.into_iter().map(resource_logs).collect(),
    };
    Ok(Bytes::from(request.encode_to_vec()))
}

fn bad(message: impl Into<String>) -> IngestError {
    IngestError::BadRequest(message.into())
}

fn protobuf_streams(body: &[u8], limit: usize) -> Result<Vec<Stream>, IngestError> {
    let length = snap::raw::decompress_len(body)
        .map_err(|e| bad(format!("the body is not snappy (block format): {e}")))?;
    if length > limit {
        return Err(IngestError::PayloadTooLarge {
            limit,
            what: " after decompression",
        });
    }
    let decoded = snap::raw::Decoder::new()
        .decompress_vec(body)
        .map_err(|e| bad(format!("the body is not snappy (block format): {e}")))?;
    let request = PushRequest::decode(decoded.as_slice())
        .map_err(|e| bad(format!("the body is not a PushRequest: {e}")))?;
    request
        .streams
        .into_iter()
        .map(|s| {
            let labels = labels(&s.labels)?;
            let entries = s
                .entries
                .into_iter()
                .map(|e| {
                    let t = e.timestamp.unwrap_or_default();
                    let ns = u64::try_from(t.seconds)
                        .ok()
                        .and_then(|s| s.checked_mul(1_000_000_000))
                        .and_then(|s| s.checked_add(u64::try_from(t.nanos).ok()?))
                        .ok_or_else(|| {
                            bad(format!(
                                "stream {}: timestamp {}s {}ns is out of range",
                                s.labels, t.seconds, t.nanos
                            ))
                        })?;
                    let metadata = e
                        .structured_metadata
                        .into_iter()
                        .map(|p| (p.name, p.value))
                        .collect();
                    Ok((ns, e.line, metadata))
                })
                .collect::<Result<_, IngestError>>()?;
            Ok(Stream { labels, entries })
        })
        .collect()
}

fn labels(text: &str) -> Result<BTreeMap<String, String>, IngestError> {
    let labels = framelake_logql::parse_labels(text)
        .map_err(|e| bad(format!("stream labels {text:?}: {e}")))?;
    if labels.is_empty() {
        return Err(bad(format!(
            "stream labels {text:?}: at least one label is required"
        )));
    }
    Ok(labels.into_iter().collect())
}

fn json_streams(body: &[u8]) -> Result<Vec<Stream>, IngestError> {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Push {
        streams: Vec<JsonStream>,
    }
    #[derive(serde::Deserialize)]
    struct JsonStream {
        stream: BTreeMap<String, String>,
        values: Vec<Vec<serde_json::Value>>,
    }
    let push: Push = serde_json::from_slice(body)
        .map_err(|e| bad(format!("the body is not a Loki push request: {e}")))?;
    push.streams
        .into_iter()
        .map(|s| {
            if s.stream.is_empty() {
                return Err(bad(
                    "a stream without labels: at least one label is required",
                ));
            }
            for name in s.stream.keys() {
                let valid = name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
                    && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
                if !valid {
                    return Err(bad(format!("invalid label name {name:?}")));
                }
            }
            let entries = s
                .values
                .into_iter()
                .map(|v| entry(&s.stream, v))
                .collect::<Result<_, _>>()?;
            Ok(Stream {
                labels: s.stream,
                entries,
            })
        })
        .collect()
}

/// `["<ns>", "<line>"]` or `["<ns>", "<line>", {"key": "value", …}]`.
fn entry(
    stream: &BTreeMap<String, String>,
    value: Vec<serde_json::Value>,
) -> Result<Entry, IngestError> {
    let at = || format!("stream {stream:?}");
    let mut fields = value.into_iter();
    let (Some(time), Some(line)) = (fields.next(), fields.next()) else {
        return Err(bad(format!("{}: an entry is [\"<ns>\", \"<line>\"]", at())));
    };
    let ns = match &time {
        serde_json::Value::String(s) => s.parse::<u64>().ok(),
        _ => None,
    }
    .ok_or_else(|| {
        bad(format!(
            "{}: timestamp {time} must be a string of nanoseconds since the epoch",
            at()
        ))
    })?;
    let serde_json::Value::String(line) = line else {
        return Err(bad(format!("{}: the line must be a string", at())));
    };
    let metadata = match fields.next() {
        None => Vec::new(),
        Some(serde_json::Value::Object(map)) => map
            .into_iter()
            .map(|(k, v)| match v {
                serde_json::Value::String(s) => Ok((k, s)),
                other => Err(bad(format!(
                    "{}: structured metadata {k:?} must be a string, not {other}",
                    at()
                ))),
            })
            .collect::<Result<_, _>>()?,
        Some(other) => {
            return Err(bad(format!(
                "{}: the third element of an entry is an object of structured metadata, not {other}",
                at()
            )));
        }
    };
    if fields.next().is_some() {
        return Err(bad(format!("{}: an entry has at most 3 elements", at())));
    }
    Ok((ns, line, metadata))
}

fn string_attribute(key: &str, value: String) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value)),
        }),
        ..KeyValue::default()
    }
}

fn resource_logs(stream: Stream) -> ResourceLogs {
    let service = SERVICE_NAME_FROM
        .iter()
        .find_map(|name| stream.labels.get(*name))
        .cloned()
        .unwrap_or_else(|| UNKNOWN_SERVICE.to_owned());
    let marker = KeyValue {
        key: LOKI_PUSH_ATTRIBUTE.to_owned(),
        value: Some(AnyValue {
            value: Some(any_value::Value::BoolValue(true)),
        }),
        ..KeyValue::default()
    };
    let attributes = [string_attribute("service.name", service), marker]
        .into_iter()
        .chain(
            stream
                .labels
                .into_iter()
                .filter(|(name, _)| name != "service_name")
                .map(|(name, value)| string_attribute(&name, value)),
        )
        .collect();
    ResourceLogs {
        resource: Some(Resource {
            attributes,
            ..Resource::default()
        }),
        scope_logs: vec![ScopeLogs {
            log_records: stream
                .entries
                .into_iter()
                .map(|(time, line, metadata)| LogRecord {
                    time_unix_nano: time,
                    body: Some(AnyValue {
                        value: Some(any_value::Value::StringValue(line)),
                    }),
                    attributes: metadata
                        .into_iter()
                        .map(|(k, v)| string_attribute(&k, v))
                        .collect(),
                    ..LogRecord::default()
                })
                .collect(),
            ..ScopeLogs::default()
        }],
        ..ResourceLogs::default()
    }
}
