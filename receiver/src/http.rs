//! HTTP ingest on :4318: OTLP/HTTP (`POST /v1/logs`, `/v1/metrics`,
//! `/v1/traces`, protobuf or JSON, optionally gzip, deflate or zstd), the
//! native protocol (`POST /v1/native/{process,stream,block}`), Loki's push
//! API (`POST /loki/api/v1/push`) and `GET /ready`.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use http::{HeaderMap, StatusCode, header};

use crate::admission::Ticket;
use crate::error::IngestError;
use crate::loki;
use crate::native::NativeMessage;
use crate::otlp::{Encoding, Signal};
use crate::{ContentEncoding, Ingest};

/// The OTLP/HTTP routes.
pub fn router(ingest: Arc<Ingest>) -> Router {
    Router::new()
        .route("/v1/logs", post(|s, h, b| export(s, h, b, Signal::Logs)))
        .route(
            "/v1/traces",
            post(|s, h, b| export(s, h, b, Signal::Traces)),
        )
        .route(
            "/v1/metrics",
            post(|s, h, b| export(s, h, b, Signal::Metrics)),
        )
        .route(
            "/v1/native/process",
            post(|s, h, b| native(s, h, b, NativeMessage::Process)),
        )
        .route(
            "/v1/native/stream",
            post(|s, h, b| native(s, h, b, NativeMessage::Stream)),
        )
        .route(
            "/v1/native/block",
            post(|s, h, b| native(s, h, b, NativeMessage::Block)),
        )
        .route("/ready", get(ready))
        .route("/loki/api/v1/push", post(loki_push))
        .with_state(ingest)
}

/// Loki's push route alone, for the query listener (Loki clients push and
/// read at one URL).
pub fn loki_router(ingest: Arc<Ingest>) -> Router {
    Router::new()
        .route("/loki/api/v1/push", post(loki_push))
        .with_state(ingest)
}

/// A Loki push: 204 once stored, else the status and a plain-text reason.
async fn loki_push(State(ingest): State<Arc<Ingest>>, headers: HeaderMap, body: Body) -> Response {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let result = async {
        let tenant = ingest.authorize(&headers)?;
        let format = Encoding::from_content_type(header(header::CONTENT_TYPE.as_str()))?;
        let encoding =
            header(header::CONTENT_ENCODING.as_str()).map(|v| v.trim().to_ascii_lowercase());
        let compression = match (format, encoding.as_deref()) {
            // Protobuf pushes are snappy-compressed whatever the header says.
            (Encoding::Protobuf, None | Some("" | "snappy" | "identity")) => {
                ContentEncoding::Identity
            }
            (Encoding::Protobuf, Some(other)) => {
                return Err(IngestError::BadRequest(format!(
                    "unsupported Content-Encoding {other:?}: a protobuf push is snappy-compressed"
                )));
            }
            (Encoding::Json, encoding) => ContentEncoding::from_header(encoding)
                .map_err(|e| IngestError::BadRequest(e.to_string()))?,
        };
        let (body, mut ticket) = read_body(&ingest, &headers, body).await?;
        let limit = ingest.limits.max_decoded_bytes;
        let (request, ticket) = tokio::task::spawn_blocking(move || {
            let body = compression.decode(body, limit, &mut ticket)?;
            let request = loki::to_otlp(format, &body, limit)?;
            ticket.grow(request.len())?;
            Ok::<_, IngestError>((request, ticket))
        })
        .await
        .map_err(|e| IngestError::Internal(format!("decoding task failed: {e}")))??;
        ingest
            .export(
                tenant,
                Signal::Logs,
                Encoding::Protobuf,
                ContentEncoding::Identity,
                request,
                ticket,
            )
            .await
    }
    .await;
    match result {
        Ok(_) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => {
            if e.http_status().is_server_error() {
                tracing::warn!(error = %e, "Loki push failed");
            }
            e.into_text()
        }
    }
}

async fn export(
    State(ingest): State<Arc<Ingest>>,
    headers: HeaderMap,
    body: Body,
    signal: Signal,
) -> Response {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let encoding = match Encoding::from_content_type(header(header::CONTENT_TYPE.as_str())) {
        Ok(encoding) => encoding,
        Err(e) => return e.into_http(Encoding::Protobuf),
    };
    let result = async {
        let tenant = ingest.authorize(&headers)?;
        let compression = ContentEncoding::from_header(header(header::CONTENT_ENCODING.as_str()))?;
        let (body, ticket) = read_body(&ingest, &headers, body).await?;
        ingest
            .export(tenant, signal, encoding, compression, body, ticket)
            .await
    }
    .await;
    match result {
        Ok(response) => {
            ([(header::CONTENT_TYPE, encoding.content_type())], response).into_response()
        }
        Err(e) => {
            if e.http_status().is_server_error() {
                tracing::warn!(error = %e, ?signal, "export failed");
            }
            e.into_http(encoding)
        }
    }
}

/// A native protocol request: 200 with an empty body once stored, else the
/// status and a plain-text reason (`docs/native-format.md`).
async fn native(
    State(ingest): State<Arc<Ingest>>,
    headers: HeaderMap,
    body: Body,
    message: NativeMessage,
) -> Response {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let result = async {
        let tenant = ingest.authorize(&headers)?;
        let content_type = header(header::CONTENT_TYPE.as_str())
            .and_then(|v| v.split(';').next())
            .map(|v| v.trim().to_ascii_lowercase());
        if content_type.as_deref() != Some(crate::native::CONTENT_TYPE) {
            return Err(IngestError::UnsupportedMediaType(format!(
                "unsupported Content-Type {:?}: use {}",
                content_type.unwrap_or_default(),
                crate::native::CONTENT_TYPE
            )));
        }
        let compression = ContentEncoding::from_header(header(header::CONTENT_ENCODING.as_str()))?;
        let (body, ticket) = read_body(&ingest, &headers, body).await?;
        ingest
            .native(tenant, message, compression, body, ticket)
            .await
    }
    .await;
    match result {
        Ok(()) => StatusCode::OK.into_response(),
        Err(e) => {
            if e.http_status().is_server_error() {
                tracing::warn!(error = %e, ?message, "native request failed");
            }
            e.into_text()
        }
    }
}

/// The whole body, within the limit, once the admission budget took it
/// (its `Content-Length`, else the most a body may be).
async fn read_body(
    ingest: &Ingest,
    headers: &HeaderMap,
    body: Body,
) -> Result<(bytes::Bytes, Ticket), IngestError> {
    let limit = ingest.limits.max_body_bytes;
    let length = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<usize>().ok());
    let ticket = ingest.admit(length.unwrap_or(limit).min(limit))?;
    let body = axum::body::to_bytes(body, limit).await.map_err(|e| {
        if std::error::Error::source(&e).is_some_and(|s| s.is::<http_body_util::LengthLimitError>())
        {
            IngestError::PayloadTooLarge { limit, what: "" }
        } else {
            IngestError::BadRequest(format!("reading the body: {e}"))
        }
    })?;
    Ok((body, ticket))
}

async fn ready(State(ingest): State<Arc<Ingest>>) -> Response {
    match ingest.ready().await {
        Ok(()) => (StatusCode::OK, "ready\n").into_response(),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {e}\n")).into_response(),
    }
}
