//! OTLP/gRPC on :4317: the `Export` methods of the logs, metrics and trace
//! services. Messages stay raw bytes through tonic (a pass-through codec), so
//! the gRPC and HTTP receivers share one decoding path and store valid
//! resources exactly as sent.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::routing::post;
use bytes::{Buf, BufMut, Bytes};
use tonic::codec::{Codec, CompressionEncoding, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::server::Grpc;
use tonic::{Code, Status};

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
    request: http::Request<axum::body::Body>,
    signal: Signal,
) -> http::Response<tonic::body::Body> {
    let mut grpc = Grpc::new(RawCodec)
        .accept_compressed(CompressionEncoding::Gzip)
        .accept_compressed(CompressionEncoding::Zstd)
        .max_decoding_message_size(ingest.limits.max_decoded_bytes);
    let service = tower::service_fn(move |request: tonic::Request<Bytes>| {
        let ingest = Arc::clone(&ingest);
        async move {
            let metadata = request.metadata();
            let value = |name: &str| metadata.get(name).and_then(|v| v.to_str().ok());
            let org_id = framelake_lake::tenancy::Tenancy::header_text(
                metadata.get("x-scope-orgid").map(|v| v.as_encoded_bytes()),
            );
            let tenant = ingest.authorize(value("authorization"), org_id.as_deref())?;
            let body = request.into_inner();
            let response = ingest
                .export(
                    tenant,
                    signal,
                    Encoding::Protobuf,
                    ContentEncoding::Identity,
                    body,
                )
                .await
                .inspect_err(|e| {
                    if matches!(e.grpc_code(), Code::Unavailable | Code::Internal) {
                        tracing::warn!(error = %e, ?signal, "export failed");
                    }
                })?;
            Ok::<_, Status>(tonic::Response::new(response))
        }
    });
    let mut response = grpc.unary(service, request).await;
    // tonic refuses a message over the size limit with OUT_OF_RANGE before our
    // code runs; OTLP clients expect RESOURCE_EXHAUSTED (not retryable) for it.
    let status = response.headers().get("grpc-status");
    if status.is_some_and(|s| s.as_bytes() == b"11") {
        response
            .headers_mut()
            .insert("grpc-status", http::HeaderValue::from_static("8"));
    }
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
