//! The native protocol's endpoints (`docs/native-format.md`): process and
//! stream registrations become catalog rows, committed through the same
//! group commit as blocks; blocks are checked whole by the strict decoder
//! and stored as sent, with ids derived from their content.

use bytes::Bytes;
use framelake_lake::catalog::{ProcessRecord, Source, StreamRecord};
use framelake_lake::ids::{BlockId, BlockKind, ProcessId, StreamId, TenantId};
use framelake_lake::segment::{Compression, EncodedBlock};
use framelake_lake::writer::{PendingBlock, WriteBatch};
use framelake_native_format::{self as format, Clock, Process, Stream, StreamKind};

use crate::admission::Ticket;
use crate::error::IngestError;
use crate::{ContentEncoding, Ingest};

/// Version of the native block payload format: a block message as sent.
pub const NATIVE_PAYLOAD_FORMAT: i16 = 1;

/// The media type of native messages.
pub const CONTENT_TYPE: &str = "application/x-framelake-native";

/// What a native request registers or stores.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NativeMessage {
    Process,
    Stream,
    Block,
}

fn malformed(e: format::FormatError) -> IngestError {
    IngestError::BadRequest(format!("invalid native message: {e}"))
}

/// The block kind of a stream kind.
pub fn block_kind(kind: StreamKind) -> BlockKind {
    match kind {
        StreamKind::Thread => BlockKind::NativeThread,
        StreamKind::Log => BlockKind::NativeLog,
        StreamKind::Metric => BlockKind::NativeMetric,
    }
}

impl Ingest {
    /// Registers a native process or stream, or stores a native block,
    /// durably; `body` is as received.
    pub async fn native(
        &self,
        tenant: TenantId,
        message: NativeMessage,
        compression: ContentEncoding,
        body: Bytes,
        mut ticket: Ticket,
    ) -> Result<(), IngestError> {
        let limit = self.limits.max_decoded_bytes;
        let (body, ticket) = match compression {
            ContentEncoding::Identity => (compression.decode(body, limit, &mut ticket)?, ticket),
            // Inflating takes milliseconds per megabyte: off the ingest runtime's
            // threads, which answer every other client.
            _ => tokio::task::spawn_blocking(move || {
                compression
                    .decode(body, limit, &mut ticket)
                    .map(|body| (body, ticket))
            })
            .await
            .map_err(|e| IngestError::Internal(format!("decompressing a body: {e}")))??,
        };
        let batch = match message {
            NativeMessage::Process => self.process_batch(tenant, body)?,
            NativeMessage::Stream => self.stream_batch(tenant, body).await?,
            NativeMessage::Block => self.block_batch(tenant, body).await?,
        };
        // The block is the writer's to count from here.
        drop(ticket);
        self.writer.write(batch).await?;
        Ok(())
    }

    fn process_batch(&self, tenant: TenantId, body: Bytes) -> Result<WriteBatch, IngestError> {
        let process = Process::decode(&body).map_err(malformed)?;
        let service_name = process
            .properties
            .iter()
            .find(|(k, _)| k == "service.name")
            .map(|(_, v)| v.clone())
            .or_else(|| {
                std::path::Path::new(&process.exe)
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
            })
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "unknown_service".to_owned());
        Ok(WriteBatch {
            tenant,
            processes: vec![ProcessRecord {
                process_id: ProcessId(process.process_id),
                source: Source::Native,
                service_name,
                properties: body,
                insert_time: 0,
            }],
            streams: Vec::new(),
            blocks: Vec::new(),
        })
    }

    async fn stream_batch(&self, tenant: TenantId, body: Bytes) -> Result<WriteBatch, IngestError> {
        let stream = Stream::decode(&body).map_err(malformed)?;
        let process_id = ProcessId(stream.process_id);
        self.native_process(&tenant, &process_id).await?;
        Ok(WriteBatch {
            tenant,
            processes: Vec::new(),
            streams: vec![StreamRecord {
                stream_id: StreamId(stream.stream_id),
                process_id,
                kind: block_kind(stream.kind),
                name: stream.name,
                insert_time: 0,
            }],
            blocks: Vec::new(),
        })
    }

    async fn block_batch(&self, tenant: TenantId, body: Bytes) -> Result<WriteBatch, IngestError> {
        let checked = body.clone();
        let header = tokio::task::spawn_blocking(move || {
            let (header, payload) = format::decode_block(&checked).map_err(malformed)?;
            let parsed = format::Payload::parse(&payload).map_err(malformed)?;
            if parsed.event_count != header.event_count as usize {
                return Err(IngestError::BadRequest(format!(
                    "invalid native message: block event_count says {}, its payload holds {}",
                    header.event_count, parsed.event_count
                )));
            }
            Ok(header)
        })
        .await
        .map_err(|e| IngestError::Internal(format!("checking a block: {e}")))??;
        let stream_id = StreamId(header.stream_id);
        let stream = self
            .lake
            .catalog
            .stream(&tenant, &stream_id)
            .await?
            .ok_or_else(|| {
                IngestError::NotFound(format!(
                    "stream {stream_id} is not registered: POST /v1/native/stream first"
                ))
            })?;
        if stream.process_id.0 != header.process_id {
            return Err(IngestError::BadRequest(format!(
                "block of stream {stream_id} names process {}, the stream's is {}",
                ProcessId(header.process_id),
                stream.process_id
            )));
        }
        let process = self.native_process(&tenant, &stream.process_id).await?;
        let clock = Clock::of(&process, header.calibration_ticks, header.calibration_time);
        let (min_time, max_time) = (clock.time(header.begin_ticks), clock.time(header.end_ticks));
        let kind = stream.kind;
        let block_id = BlockId::of_timed(
            min_time,
            &[
                tenant.as_str().as_bytes(),
                &kind.code().to_le_bytes(),
                &body,
            ],
        );
        // The payload is LZ4 already: stored as it came.
        let data = Compression::None
            .compress(&body)
            .map_err(|e| IngestError::Internal(format!("storing a block: {e}")))?;
        Ok(WriteBatch {
            tenant,
            processes: Vec::new(),
            streams: Vec::new(),
            blocks: vec![PendingBlock {
                block: EncodedBlock {
                    block_id,
                    kind,
                    codec: Compression::None.codec(),
                    data,
                    uncompressed_length: body.len() as u32,
                    event_count: header.event_count,
                    min_time,
                    max_time,
                },
                format: NATIVE_PAYLOAD_FORMAT,
                process_id: stream.process_id,
                stream_id,
            }],
        })
    }

    /// A registered native process, or why not.
    async fn native_process(
        &self,
        tenant: &TenantId,
        id: &ProcessId,
    ) -> Result<Process, IngestError> {
        let record = self
            .lake
            .catalog
            .process(tenant, id)
            .await?
            .ok_or_else(|| {
                IngestError::NotFound(format!(
                    "process {id} is not registered: POST /v1/native/process first"
                ))
            })?;
        if record.source != Source::Native {
            return Err(IngestError::BadRequest(format!(
                "process {id} is not a native process"
            )));
        }
        Process::decode(&record.properties)
            .map_err(|e| IngestError::Internal(format!("stored process {id}: {e}")))
    }
}
