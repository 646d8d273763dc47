//! OTLP/gRPC on :4317: the `Export` methods of the logs, metrics and trace
//! services, answered here rather than by tonic's server codec: the message
//! is read as it arrives, taken from the admission budget as soon as its
//! length is known, inflated off the ingest runtime's threads, and kept as
//! raw bytes, so the gRPC and HTTP receivers share one decoding path and
//! store valid resources exactly as sent.

use std::convert::Infallible;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::routing::post;
use bytes::{Buf, BufMut, Bytes, BytesMut};
use http::{HeaderMap, HeaderValue};
use http_body_util::{BodyExt, StreamBody};
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::{Code, Status};

use crate::error::IngestError;
use crate::otlp::{Encoding, Signal};
use crate::{ContentEncoding, Ingest};

/// The OTLP gRPC services, as routes for `tonic::transport::Server::add_routes`.
pub fn routes(ingest: Arc<Ingest>) -> tonic::service::Routes {
    let router = Router::new()
        .route(
            "/opentelemetry.proto.collector.logs.v1.LogsService/Export",
            post(|s, r| export(s, r, Signal::Logs)),
        )
        .route(
            "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
            post(|s, r| export(s, r, Signal::Traces)),
        )
        .route(
            "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export",
            post(|s, r| export(s, r, Signal::Metrics)),
        )
        .with_state(ingest);
    tonic::service::Routes::from(router)
}

async fn export(
    State(ingest): State<Arc<Ingest>>,
    request: http::Request<Body>,
    signal: Signal,
) -> http::Response<tonic::body::Body> {
    match receive(&ingest, request, signal).await {
        Ok(response) => answer(response),
        Err(e) => {
            if matches!(e.grpc_code(), Code::Unavailable | Code::Internal) {
                tracing::warn!(error = %e, ?signal, "export failed");
            }
            Status::from(e).into_http()
        }
    }
}

/// Reads, admits, decodes and stores one unary call's message; its response.
async fn receive(
    ingest: &Ingest,
    request: http::Request<Body>,
    signal: Signal,
) -> Result<Bytes, IngestError> {
    let (parts, mut body) = request.into_parts();
    let headers = &parts.headers;
    let tenant = ingest.authorize(headers)?;
    let encoding = message_encoding(headers)?;
    let limits = &ingest.limits;
    // The 5-byte prefix (compressed flag, length), then the message.
    let mut buf = BytesMut::new();
    let mut admitted = None;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| IngestError::BadRequest(format!("reading the call: {e}")))?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        buf.extend_from_slice(&data);
        if admitted.is_none() && buf.len() >= PREFIX {
            let compressed = buf[0] == 1;
            let length = u32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]) as usize;
            let limit = if compressed {
                limits.max_body_bytes
            } else {
                limits.max_decoded_bytes
            };
            if length > limit {
                return Err(IngestError::PayloadTooLarge { limit, what: "" });
            }
            let compression = match (compressed, encoding) {
                (false, _) => ContentEncoding::Identity,
                (true, ContentEncoding::Identity) => {
                    return Err(IngestError::BadRequest(
                        "a compressed message without grpc-encoding".to_owned(),
                    ));
                }
                (true, encoding) => encoding,
            };
            let ticket = ingest.admit(PREFIX + length)?;
            buf.reserve(PREFIX + length - buf.len());
            admitted = Some((PREFIX + length, compression, ticket));
        }
        if let Some((total, ..)) = &admitted
            && buf.len() > *total
        {
            return Err(IngestError::BadRequest(
                "a unary call with more than one message".to_owned(),
            ));
        }
    }
    let Some((total, compression, ticket)) = admitted.filter(|(total, ..)| buf.len() == *total)
    else {
        return Err(IngestError::BadRequest(
            "the call's message is cut short".to_owned(),
        ));
    };
    debug_assert_eq!(buf.len(), total);
    let message = buf.freeze().slice(PREFIX..);
    ingest
        .export(
            tenant,
            signal,
            Encoding::Protobuf,
            compression,
            message,
            ticket,
        )
        .await
}

/// Bytes before each gRPC message: a compressed flag and a big-endian length.
const PREFIX: usize = 5;

/// The `grpc-encoding` of the call's messages.
fn message_encoding(headers: &HeaderMap) -> Result<ContentEncoding, IngestError> {
    match headers.get("grpc-encoding").map(HeaderValue::as_bytes) {
        None | Some(b"identity") => Ok(ContentEncoding::Identity),
        Some(b"gzip") => Ok(ContentEncoding::Gzip),
        Some(b"zstd") => Ok(ContentEncoding::Zstd),
        Some(other) => Err(IngestError::UnsupportedMediaType(format!(
            "unsupported grpc-encoding {:?}: use gzip, zstd or identity",
            String::from_utf8_lossy(other)
        ))),
    }
}

/// A unary call's successful answer: the message, then `grpc-status: 0`.
fn answer(message: Bytes) -> http::Response<tonic::body::Body> {
    let mut framed = BytesMut::with_capacity(PREFIX + message.len());
    framed.put_u8(0);
    framed.put_u32(message.len() as u32);
    framed.put(message);
    let mut trailers = HeaderMap::new();
    trailers.insert("grpc-status", HeaderValue::from_static("0"));
    let frames = [
        Ok::<_, Infallible>(http_body::Frame::data(framed.freeze())),
        Ok(http_body::Frame::trailers(trailers)),
    ];
    let mut response = http::Response::new(tonic::body::Body::new(StreamBody::new(
        futures::stream::iter(frames),
    )));
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
    response
}

/// A codec that passes message bytes through untouched (also used by clients such as the load generator).
#[derive(Debug, Clone, Copy, Default)]
pub struct RawCodec;

impl Codec for RawCodec {
    type Encode = Bytes;
    type Decode = Bytes;
    type Encoder = RawCodec;
    type Decoder = RawCodec;

    fn encoder(&mut self) -> Self::Encoder {
        RawCodec
    }

    fn decoder(&mut self) -> Self::Decoder {
        RawCodec
    }
}

impl Encoder for RawCodec {
    type Item = Bytes;
    type Error = Status;

    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put(item);
        Ok(())
    }
}

impl Decoder for RawCodec {
    type Item = Bytes;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, Status> {
        Ok(Some(src.copy_to_bytes(src.remaining())))
    }
}
