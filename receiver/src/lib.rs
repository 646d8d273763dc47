//! framelake's receivers: OTLP over gRPC (:4317) and HTTP (:4318).
//!
//! Every request is authorized ([`Tenancy`]), bounded in size, decoded and
//! validated ([`otlp`]), and handed to the lake's group-commit [`Writer`]; it is
//! acknowledged only once its blocks are stored and committed.

pub mod admission;
mod decompress;
pub mod error;
pub mod grpc;
pub mod http;
pub mod loki;
pub mod native;
pub mod otlp;
pub mod recovery;

use std::sync::Arc;

use bytes::Bytes;
use framelake_lake::Lake;
use framelake_lake::ids::TenantId;
use framelake_lake::segment::Compression;
use framelake_lake::tenancy::{AuthError, Role, Tenancy};
use framelake_lake::writer::Writer;

use crate::admission::{Admission, Ticket};
pub use crate::decompress::ContentEncoding;
use crate::error::IngestError;
use crate::otlp::{Encoding, RecordLimits, Signal};

/// Largest body prepared on the async worker that received it (see [`Ingest::export`]).
const INLINE_BODY_BYTES: usize = 128 << 10;

/// Size limits of requests.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest body on the wire (compressed or not).
    pub max_body_bytes: usize,
    /// Largest body once decompressed.
    pub max_decoded_bytes: usize,
    /// What one record may carry.
    pub record: RecordLimits,
    /// Bytes of request bodies held at once, as received and decompressed.
    pub max_inflight_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body_bytes: 16 << 20,
            max_decoded_bytes: 64 << 20,
            record: RecordLimits::default(),
            max_inflight_bytes: 512 << 20,
        }
    }
}

/// What the receivers share: the lake, its writer, the authenticator and limits.
#[derive(Debug)]
pub struct Ingest {
    pub lake: Arc<Lake>,
    pub writer: Arc<Writer>,
    pub tenancy: Tenancy,
    pub limits: Limits,
    /// How stored blocks are compressed.
    pub compression: Compression,
    admission: Admission,
}

/// What JSON decoding may build per `{` of the body, at most: an OTLP object
/// decodes to a struct of a few dozen bytes (a `KeyValue` ~70, a log record ~200).
const JSON_BYTES_PER_OBJECT: usize = 128;

impl Ingest {
    pub fn new(
        lake: Arc<Lake>,
        writer: Arc<Writer>,
        tenancy: Tenancy,
        limits: Limits,
        compression: Compression,
    ) -> Self {
        Ingest {
            lake,
            writer,
            tenancy,
            admission: Admission::new(limits.max_inflight_bytes),
            limits,
            compression,
        }
    }

    /// Admits a request whose body takes `bytes` as received (see [`admission`]).
    pub fn admit(&self, bytes: usize) -> Result<Ticket, IngestError> {
        self.admission.admit(bytes)
    }

    /// The tenant a request writes to.
    pub fn authorize(&self, headers: &::http::HeaderMap) -> Result<TenantId, IngestError> {
        self.tenancy
            .authorize_headers(headers, Role::Write)
            .map_err(|e| match e {
                AuthError::Unauthenticated(m) => IngestError::Unauthorized(m),
                AuthError::Forbidden(m) => IngestError::Forbidden(m),
                AuthError::BadTenant(m) => IngestError::BadRequest(m),
            })
    }

    /// Stores one OTLP export request durably and returns the encoded response.
    /// `body` is as received; `compression` says how to decode it.
    pub async fn export(
        &self,
        tenant: TenantId,
        signal: Signal,
        encoding: Encoding,
        compression: ContentEncoding,
        body: Bytes,
        mut ticket: Ticket,
    ) -> Result<Bytes, IngestError> {
        let (limit, block_compression) = (self.limits.max_decoded_bytes, self.compression);
        let record_limits = self.limits.record;
        // A small protobuf body takes well under the ~500 µs an async worker may
        // block (the scan and compression run at over 400 MB/s), less than handing it to
        // the blocking pool and back costs; JSON, compressed and large bodies go there.
        let inline = encoding == Encoding::Protobuf
            && compression == ContentEncoding::Identity
            && body.len() <= INLINE_BODY_BYTES;
        let prepare = move || {
            let body = compression.decode(body, limit, &mut ticket)?;
            if encoding == Encoding::Json {
                let objects = body.iter().filter(|&&b| b == b'{').count();
                ticket.grow(objects.saturating_mul(JSON_BYTES_PER_OBJECT))?;
            }
            // The ticket is given back once the body is prepared: its blocks are
            // then the writer's to count (`--max-pending-bytes`).
            otlp::prepare(
                &tenant,
                signal,
                encoding,
                body,
                block_compression,
                record_limits,
            )
        };
        let prepared = if inline {
            prepare()?
        } else {
            tokio::task::spawn_blocking(prepare)
                .await
                .map_err(|e| IngestError::Internal(format!("decoding task failed: {e}")))??
        };
        if let Some(batch) = prepared.batch {
            self.writer.write(batch).await?;
        }
        Ok(prepared.response)
    }

    /// Whether the receiver can take writes: the catalog answers.
    pub async fn ready(&self) -> Result<(), IngestError> {
        Ok(self.lake.catalog.ping().await?)
    }
}
