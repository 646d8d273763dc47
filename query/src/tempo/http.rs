//! Tempo's HTTP routes on the query listener, as Grafana's Tempo datasource
//! calls them: `GET /api/echo` (its "Save & test"), `/api/status/buildinfo`,
//! and a trace by id at `/api/v2/traces/<id>` (a `TraceByIDResponse`) and
//! `/api/traces/<id>` (a bare `Trace`), as protobuf for `Accept:
//! application/protobuf` and OTLP JSON otherwise. Errors answer
//! `text/plain` with the status Tempo gives.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, RawQuery, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use framelake_lake::tenancy::Role;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use prost::Message;

use super::parse_trace_id;
use super::proto::{Trace, TraceByIdResponse};
use crate::QueryError;
use crate::http::QueryService;

/// The Tempo routes.
pub fn routes() -> Router<Arc<QueryService>> {
    Router::new()
        .route("/api/echo", get(echo))
        .route("/api/status/buildinfo", get(buildinfo))
        .route("/api/v2/traces/{id}", get(trace_v2))
        .route("/api/traces/{id}", get(trace_v1))
}

/// An error as Tempo answers it: its status, the message as text.
struct TempoError(StatusCode, String);

impl From<QueryError> for TempoError {
    fn from(e: QueryError) -> Self {
        TempoError(e.http_status(), e.to_string())
    }
}

impl From<framelake_lake::tenancy::AuthError> for TempoError {
    fn from(e: framelake_lake::tenancy::AuthError) -> Self {
        QueryError::from(e).into()
    }
}

fn bad(message: impl Into<String>) -> TempoError {
    TempoError(StatusCode::BAD_REQUEST, message.into())
}

impl IntoResponse for TempoError {
    fn into_response(self) -> Response {
        if self.0.is_server_error() {
            tracing::warn!(error = %self.1, "Tempo query failed");
        }
        let mut response = (self.0, format!("{}\n", self.1)).into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        response
    }
}

fn with_type(body: impl IntoResponse, content_type: &'static str) -> Response {
    let mut response = body.into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

/// "Save & test": the token is checked as for every read.
async fn echo(
    State(service): State<Arc<QueryService>>,
    headers: HeaderMap,
) -> Result<&'static str, TempoError> {
    service.tenancy.authorize_headers(&headers, Role::Read)?;
    Ok("echo")
}

async fn buildinfo() -> Response {
    with_type(
        serde_json::json!({
            "version": "2.8.0",
            "revision": concat!("framelake-", env!("CARGO_PKG_VERSION")),
            "branch": "framelake",
            "buildDate": "",
            "buildUser": "framelake",
            "goVersion": "",
        })
        .to_string(),
        "application/json",
    )
}

/// A parameter of the URL's query.
fn param(query: Option<&str>, name: &str) -> Option<String> {
    form_urlencoded::parse(query.unwrap_or("").as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// `start` and `end` (Unix seconds) as a range of nanoseconds, if either is
/// given.
fn range(query: Option<&str>) -> Result<Option<(i64, i64)>, TempoError> {
    let seconds = |name: &str| -> Result<Option<i64>, TempoError> {
        match param(query, name).filter(|v| !v.is_empty()) {
            None => Ok(None),
            Some(v) => v
                .parse::<i64>()
                .ok()
                .filter(|s| (0..=9_000_000_000).contains(s))
                .map(|s| Some(s * 1_000_000_000))
                .ok_or_else(|| bad(format!("invalid {name}: {v:?} is not Unix seconds"))),
        }
    };
    let (start, end) = (seconds("start")?, seconds("end")?);
    if start.is_none() && end.is_none() {
        return Ok(None);
    }
    let (start, end) = (start.unwrap_or(0), end.unwrap_or(i64::MAX));
    if start > end {
        return Err(bad(format!(
            "http parameter start must be before end. received start={} end={}",
            start / 1_000_000_000,
            end / 1_000_000_000
        )));
    }
    Ok(Some((start, end)))
}

async fn trace_v2(
    State(service): State<Arc<QueryService>>,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Result<Response, TempoError> {
    lookup(&service, &id, query.as_deref(), &headers, true).await
}

async fn trace_v1(
    State(service): State<Arc<QueryService>>,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Result<Response, TempoError> {
    lookup(&service, &id, query.as_deref(), &headers, false).await
}

async fn lookup(
    service: &QueryService,
    id: &str,
    query: Option<&str>,
    headers: &HeaderMap,
    v2: bool,
) -> Result<Response, TempoError> {
    let tenant = service.tenancy.authorize_headers(headers, Role::Read)?;
    let id = parse_trace_id(id).map_err(bad)?;
    let range = range(query)?;
    let Some(resource_spans) = super::trace(&service.engine, &tenant, id, range).await? else {
        return Err(TempoError(
            StatusCode::NOT_FOUND,
            "trace not found".to_owned(),
        ));
    };
    let trace = Trace { resource_spans };
    let protobuf = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/protobuf"));
    if protobuf {
        let body = if v2 {
            TraceByIdResponse {
                trace: Some(trace),
                metrics: None,
                status: 0,
                message: String::new(),
            }
            .encode_to_vec()
        } else {
            trace.encode_to_vec()
        };
        return Ok(with_type(body, "application/protobuf"));
    }
    // OTLP JSON; the bare trace of the first version names its resource
    // spans `batches`, as Tempo's does.
    let body = if v2 {
        serde_json::json!({ "trace": trace })
    } else {
        serde_json::json!({ "batches": trace.resource_spans })
    };
    Ok(with_type(body.to_string(), "application/json"))
}
