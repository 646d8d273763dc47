//! OTLP requests, whatever the transport: decoding (protobuf or JSON), validation,
//! indexing, and the blocks the lake stores.
//!
//! A request is split per resource: each resource becomes one block, the payload
//! an export request holding just that resource. Valid protobuf resources are
//! stored as the exact bytes the client sent; JSON, and resources that lost
//! invalid items, are encoded once as protobuf.

mod scan;
mod schema;
mod signals;
mod wire;

use bytes::Bytes;
use framelake_lake::catalog::{ProcessRecord, Source, StreamRecord};
use framelake_lake::host::now_nanos;
use framelake_lake::ids::{BlockId, BlockKind, ProcessId, StreamId, TenantId};
use framelake_lake::segment::{Compression, EncodedBlock};
use framelake_lake::writer::{PendingBlock, WriteBatch};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message;

pub use self::scan::RecordLimits;
use self::signals::{OtlpRequest, Summary};
use crate::error::{IngestError, RpcStatus};

/// Version of the OTLP block payload format: an export request of one resource, protobuf.
pub const OTLP_PAYLOAD_FORMAT: i16 = 1;

/// The three OTLP signals.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    Logs,
    Traces,
    Metrics,
}

impl Signal {
    /// The kind of block the signal is stored as.
    pub fn kind(self) -> BlockKind {
        match self {
            Signal::Logs => BlockKind::OtlpLogs,
            Signal::Traces => BlockKind::OtlpSpans,
            Signal::Metrics => BlockKind::OtlpMetrics,
        }
    }
}

/// How an OTLP message is encoded on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Protobuf,
    Json,
}

impl Encoding {
    /// The encoding a `Content-Type` names, parameters ignored.
    pub fn from_content_type(value: Option<&str>) -> Result<Self, IngestError> {
        let essence = value
            .and_then(|v| v.split(';').next())
            .map(|v| v.trim().to_ascii_lowercase());
        match essence.as_deref() {
            Some("application/x-protobuf") | Some("application/protobuf") => Ok(Encoding::Protobuf),
            Some("application/json") => Ok(Encoding::Json),
            other => Err(IngestError::UnsupportedMediaType(format!(
                "unsupported Content-Type {:?}: use application/x-protobuf or application/json",
                other.unwrap_or("")
            ))),
        }
    }

    /// The `Content-Type` of responses in this encoding.
    pub fn content_type(self) -> &'static str {
        match self {
            Encoding::Protobuf => "application/x-protobuf",
            Encoding::Json => "application/json",
        }
    }

    /// An OTLP error body.
    pub fn encode_status(self, code: i32, message: &str) -> Vec<u8> {
        match self {
            Encoding::Protobuf => RpcStatus {
                code,
                message: message.to_owned(),
                details: Vec::new(),
            }
            .encode_to_vec(),
            Encoding::Json => serde_json::json!({ "code": code, "message": message })
                .to_string()
                .into_bytes(),
        }
    }

    fn encode<M: Message + serde::Serialize>(self, message: &M) -> Bytes {
        match self {
            Encoding::Protobuf => message.encode_to_vec().into(),
            Encoding::Json => {
                // OTLP/JSON leaves unset fields out rather than writing null.
                let mut value = serde_json::to_value(message).expect("OTLP responses serialize");
                drop_nulls(&mut value);
                serde_json::to_vec(&value)
                    .expect("JSON values serialize")
                    .into()
            }
        }
    }
}

fn drop_nulls(value: &mut serde_json::Value) {
    if let serde_json::Value::Object(map) = value {
        map.retain(|_, v| !v.is_null());
        map.values_mut().for_each(drop_nulls);
    }
}

/// A request ready for the writer, and what to answer once it is stored.
#[derive(Debug)]
pub struct Prepared {
    /// The blocks to store; `None` when nothing valid was sent.
    pub batch: Option<WriteBatch>,
    pub events: u64,
    pub rejected: u64,
    /// The encoded export response (with partial success when something was rejected).
    pub response: Bytes,
}

/// Decodes, validates and indexes an OTLP request body (already decompressed)
/// into the blocks to store. CPU-bound: call it off the async workers.
pub fn prepare(
    tenant: &TenantId,
    signal: Signal,
    encoding: Encoding,
    body: Bytes,
    compression: Compression,
    limits: RecordLimits,
) -> Result<Prepared, IngestError> {
    let (tenant, c) = (tenant, compression);
    match signal {
        Signal::Logs => prepare_as::<ExportLogsServiceRequest>(tenant, encoding, body, c, limits),
        Signal::Traces => {
            prepare_as::<ExportTraceServiceRequest>(tenant, encoding, body, c, limits)
        }
        Signal::Metrics => {
            prepare_as::<ExportMetricsServiceRequest>(tenant, encoding, body, c, limits)
        }
    }
}

fn prepare_as<R: OtlpRequest>(
    tenant: &TenantId,
    encoding: Encoding,
    body: Bytes,
    compression: Compression,
    limits: RecordLimits,
) -> Result<Prepared, IngestError> {
    let now = now_nanos() as u64;
    let scanned = match encoding {
        Encoding::Protobuf => scan::scan(R::SHAPE, &body, now, limits)?,
        Encoding::Json => None,
    };
    let resources = match scanned {
        Some(scanned) => scanned
            .into_iter()
            .map(|s| {
                let resource = s
                    .resource
                    .map(Resource::decode)
                    .transpose()
                    .map_err(|e| IngestError::BadRequest(format!("invalid OTLP resource: {e}")))?
                    .unwrap_or_default();
                Ok(Indexed {
                    summary: s.summary,
                    payload: body.slice_ref(s.entry),
                    resource,
                })
            })
            .collect::<Result<Vec<_>, IngestError>>()?,
        None => {
            if encoding == Encoding::Protobuf {
                // Before prost builds anything.
                scan::check_records(R::SHAPE, &body, limits)?;
            }
            let indexed = decode_and_index::<R>(encoding, body, now)?;
            if encoding == Encoding::Json {
                for resource in &indexed {
                    scan::check_records(R::SHAPE, &resource.payload, limits)?;
                }
            }
            indexed
        }
    };
    let kind = R::KIND;
    let (mut events, mut rejected) = (0u64, 0u64);
    let mut batch = WriteBatch {
        tenant: tenant.clone(),
        processes: Vec::new(),
        streams: Vec::new(),
        blocks: Vec::new(),
    };
    for Indexed {
        summary,
        payload,
        resource,
    } in resources
    {
        rejected += summary.rejected;
        if summary.events == 0 {
            continue;
        }
        events += summary.events;
        let (process, stream) = process_and_stream(&resource, kind);
        let (process_id, stream_id) = (process.process_id, stream.stream_id);
        let block_id = BlockId::of_timed(
            summary.id_time(),
            &[
                tenant.as_str().as_bytes(),
                &kind.code().to_le_bytes(),
                &payload,
            ],
        );
        let data = compression
            .compress(&payload)
            .map_err(|e| IngestError::Internal(format!("compressing a block: {e}")))?;
        batch.processes.push(process);
        batch.streams.push(stream);
        batch.blocks.push(PendingBlock {
            block: EncodedBlock {
                block_id,
                kind,
                codec: compression.codec(),
                data,
                uncompressed_length: payload.len() as u32,
                event_count: u32::try_from(summary.events).unwrap_or(u32::MAX),
                min_time: summary.min_time,
                max_time: summary.max_time,
            },
            format: OTLP_PAYLOAD_FORMAT,
            process_id,
            stream_id,
        });
    }
    if events == 0 && rejected > 0 {
        return Err(IngestError::BadRequest(format!(
            "all {rejected} {} were invalid ({RULES})",
            R::ITEMS
        )));
    }
    let message = if rejected > 0 {
        format!("{rejected} {} rejected: {RULES}", R::ITEMS)
    } else {
        String::new()
    };
    let response = encoding.encode(&R::response(rejected, message));
    Ok(Prepared {
        batch: (!batch.blocks.is_empty()).then_some(batch),
        events,
        rejected,
        response,
    })
}

/// What makes an item invalid, for partial-success messages.
const RULES: &str = "trace ids must be 16 bytes and span ids 8 bytes, not all zero; \
     times at most 2262-04-11 (signed 64-bit nanoseconds), a span's end not before its start; \
     metric names non-empty";

/// One resource of a request: what indexing learnt, the payload to store (an
/// export request of just this resource) and the resource itself.
struct Indexed {
    summary: Summary,
    payload: Bytes,
    resource: Resource,
}

/// The general path: decodes the request with prost (or serde for JSON), drops
/// invalid items, and stores each resource as sent when nothing of it was
/// dropped, else encoded anew.
fn decode_and_index<R: OtlpRequest>(
    encoding: Encoding,
    body: Bytes,
    now: u64,
) -> Result<Vec<Indexed>, IngestError> {
    let (request, raw) = match encoding {
        Encoding::Protobuf => {
            let request = R::decode(body.as_ref())
                .map_err(|e| IngestError::BadRequest(format!("invalid OTLP protobuf: {e}")))?;
            (request, Some(body))
        }
        Encoding::Json => {
            let request: R = serde_json::from_slice(&body)
                .map_err(|e| IngestError::BadRequest(format!("invalid OTLP JSON: {e}")))?;
            (request, None)
        }
    };
    let resources = request.into_resources();
    // Where each resource lies in the body, to store it as sent.
    let ranges = raw
        .as_ref()
        .and_then(|raw| wire::field_ranges(raw, 1))
        .filter(|ranges| ranges.len() == resources.len());
    Ok(resources
        .into_iter()
        .enumerate()
        .map(|(i, mut items)| {
            let summary = R::index(&mut items, now);
            let resource = R::resource(&items).cloned().unwrap_or_default();
            let payload = match (&raw, &ranges) {
                (Some(raw), Some(ranges)) if summary.rejected == 0 => raw.slice(ranges[i].clone()),
                _ => R::from_resource(items).encode_to_vec().into(),
            };
            Indexed {
                summary,
                payload,
                resource,
            }
        })
        .collect())
}

/// The process an OTLP resource is (its id derives from its encoding) and the
/// stream of one signal of it; insert times are left to the writer.
pub fn process_and_stream(resource: &Resource, kind: BlockKind) -> (ProcessRecord, StreamRecord) {
    let properties = resource.encode_to_vec();
    let process_id = ProcessId::of(&[b"otlp", &properties]);
    let stream_id = StreamId::of(&[process_id.as_bytes(), &kind.code().to_le_bytes()]);
    (
        ProcessRecord {
            process_id,
            source: Source::Otlp,
            service_name: framelake_lake::view::service_name(resource).to_owned(),
            properties: properties.into(),
            insert_time: 0,
        },
        StreamRecord {
            stream_id,
            process_id,
            kind,
            name: kind.name().to_owned(),
            insert_time: 0,
        },
    )
}

/// The resource of a stored OTLP block (format 1: an export request of one
/// resource); `None` for native blocks, which have none.
pub fn block_resource(
    kind: BlockKind,
    payload: &[u8],
) -> Result<Option<Resource>, prost::DecodeError> {
    let resource = match kind {
        BlockKind::OtlpLogs => ExportLogsServiceRequest::decode(payload)?
            .resource_logs
            .into_iter()
            .next()
            .and_then(|r| r.resource),
        BlockKind::OtlpSpans => ExportTraceServiceRequest::decode(payload)?
            .resource_spans
            .into_iter()
            .next()
            .and_then(|r| r.resource),
        BlockKind::OtlpMetrics => ExportMetricsServiceRequest::decode(payload)?
            .resource_metrics
            .into_iter()
            .next()
            .and_then(|r| r.resource),
        BlockKind::NativeThread | BlockKind::NativeLog | BlockKind::NativeMetric => {
            return Ok(None);
        }
    };
    Ok(Some(resource.unwrap_or_default()))
}

#[cfg(test)]
mod tests;
