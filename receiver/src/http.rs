//! OTLP/HTTP on :4318: `POST /v1/logs`, `/v1/metrics`, `/v1/traces`, protobuf or
//! JSON, optionally gzip, deflate or zstd; and `GET /ready`.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use http::{HeaderMap, StatusCode, header};

use crate::error::IngestError;
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
        .route("/ready", get(ready))
        .with_state(ingest)
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
        let tenant = ingest.authorize(
            header(header::AUTHORIZATION.as_str()),
            header("x-scope-orgid"),
        )?;
        let compression = ContentEncoding::from_header(header(header::CONTENT_ENCODING.as_str()))?;
        let limit = ingest.limits.max_body_bytes;
        let body = axum::body::to_bytes(body, limit).await.map_err(|e| {
            if std::error::Error::source(&e)
                .is_some_and(|s| s.is::<http_body_util::LengthLimitError>())
            {
                IngestError::PayloadTooLarge { limit, what: "" }
            } else {
                IngestError::BadRequest(format!("reading the body: {e}"))
            }
        })?;
        ingest
            .export(tenant, signal, encoding, compression, body)
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

async fn ready(State(ingest): State<Arc<Ingest>>) -> Response {
    match ingest.ready().await {
        Ok(()) => (StatusCode::OK, "ready\n").into_response(),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {e}\n")).into_response(),
    }
}
