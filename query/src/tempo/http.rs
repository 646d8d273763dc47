//! Tempo's HTTP routes on the query listener, as Grafana's Tempo datasource
//! calls them: `GET /api/echo` (its "Save & test"), `/api/status/buildinfo`,
//! and a trace by id at `/api/v2/traces/<id>` (a `TraceByIDResponse`) and
//! `/api/traces/<id>` (a bare `Trace`), as protobuf for `Accept:
//! application/protobuf` and OTLP JSON otherwise; tag discovery at
//! `/api/v2/search/tags` and `/api/v2/search/tag/<tag>/values` (with a `q`
//! filter) and their first versions, over the last hour unless `start` and
//! `end` say otherwise. Errors answer `text/plain` with the status Tempo
//! gives.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, RawQuery, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use framelake_lake::tenancy::Role;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use prost::Message;

use framelake_lake::host::now_nanos;
use framelake_traceql::{Body, Expr, Field, Scope};

use super::metrics::{self, Steps};
use super::proto::{Trace, TraceByIdResponse};
use super::{filter, parse_trace_id, search, tags};
use crate::QueryError;
use crate::http::QueryService;

/// The Tempo routes.
pub fn routes() -> Router<Arc<QueryService>> {
    Router::new()
        .route("/api/echo", get(echo))
        .route("/api/status/buildinfo", get(buildinfo))
        .route("/api/v2/traces/{id}", get(trace_v2))
        .route("/api/traces/{id}", get(trace_v1))
        .route("/api/search", get(search))
        .route("/api/metrics/query_range", get(metrics_range))
        .route("/api/metrics/query", get(metrics_instant))
        .route("/api/v2/search/tags", get(tags_v2))
        .route("/api/search/tags", get(tags_v1))
        .route("/api/v2/search/tag/{tag}/values", get(tag_values_v2))
        .route("/api/search/tag/{tag}/values", get(tag_values_v1))
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

/// How far back tag discovery looks when the request names no range.
const DEFAULT_TAG_RANGE: i64 = 3_600_000_000_000;

/// Names or values a tag request lists when it names no `limit`.
const DEFAULT_TAG_LIMIT: usize = 5000;

/// A tag request's range (the last hour by default) and limit.
fn tag_window(query: Option<&str>) -> Result<((i64, i64), usize), TempoError> {
    let now = now_nanos();
    let range = match range(query)? {
        None => (now - DEFAULT_TAG_RANGE, now),
        Some((start, end)) => (start, end.min(i64::MAX - 1)),
    };
    let limit = match param(query, "limit").filter(|v| !v.is_empty()) {
        None => DEFAULT_TAG_LIMIT,
        Some(v) => v
            .parse::<usize>()
            .ok()
            .filter(|l| *l > 0)
            .ok_or_else(|| bad(format!("invalid limit: {v:?}")))?,
    };
    Ok((range, limit))
}

fn json_ok(body: serde_json::Value) -> Response {
    with_type(body.to_string(), "application/json")
}

async fn tags_v2(
    State(service): State<Arc<QueryService>>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Result<Response, TempoError> {
    let tenant = service.tenancy.authorize_headers(&headers, Role::Read)?;
    let (range, limit) = tag_window(query.as_deref())?;
    let wanted = param(query.as_deref(), "scope").filter(|s| !s.is_empty() && s != "none");
    let mut scopes = Vec::new();
    if wanted.as_deref().is_none_or(|s| s != "intrinsic") {
        for (scope, names) in tags::names(&service.engine, &tenant, range, limit).await? {
            if wanted.as_deref().is_none_or(|w| w == scope) {
                scopes.push(serde_json::json!({ "name": scope, "tags": names }));
            }
        }
    }
    if wanted.as_deref().is_none_or(|s| s == "intrinsic") {
        scopes.push(serde_json::json!({ "name": "intrinsic", "tags": tags::INTRINSICS }));
    }
    Ok(json_ok(
        serde_json::json!({ "scopes": scopes, "metrics": {} }),
    ))
}

async fn tags_v1(
    State(service): State<Arc<QueryService>>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Result<Response, TempoError> {
    let tenant = service.tenancy.authorize_headers(&headers, Role::Read)?;
    let (range, limit) = tag_window(query.as_deref())?;
    let scope = param(query.as_deref(), "scope").unwrap_or_default();
    let mut names: Vec<String> = if scope == "intrinsic" {
        tags::INTRINSICS.iter().map(|s| (*s).to_owned()).collect()
    } else {
        tags::names(&service.engine, &tenant, range, limit)
            .await?
            .into_iter()
            .filter(|(s, _)| {
                if scope.is_empty() || scope == "none" {
                    matches!(*s, "span" | "resource")
                } else {
                    *s == scope
                }
            })
            .flat_map(|(_, names)| names)
            .collect()
    };
    names.sort();
    names.dedup();
    names.truncate(limit);
    Ok(json_ok(
        serde_json::json!({ "tagNames": names, "metrics": {} }),
    ))
}

/// A tag as the values endpoints name it: a scoped attribute or an
/// intrinsic (`resource.service.name`, `name`, `span:status`).
fn tag_field(tag: &str) -> Result<Field, TempoError> {
    match framelake_traceql::parse_filter(&format!("{{ {tag} != nil }}")) {
        Ok(Expr::Exists(e)) => match *e {
            Expr::Field(field) => Ok(field),
            _ => Err(bad(format!("invalid tag {tag:?}"))),
        },
        _ => Err(bad(format!("invalid tag {tag:?}"))),
    }
}

/// A `q` filter as a predicate; none (every span) when it does not parse
/// or needs more than a span's row, as Tempo takes a bad `q`.
fn tag_filter(query: Option<&str>) -> Option<datafusion::logical_expr::Expr> {
    let q = param(query, "q")?;
    let expr = framelake_traceql::parse_filter(&q).ok()?;
    filter::predicate(&expr)
}

async fn tag_values_v2(
    State(service): State<Arc<QueryService>>,
    Path(tag): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Result<Response, TempoError> {
    let tenant = service.tenancy.authorize_headers(&headers, Role::Read)?;
    let field = tag_field(&tag)?;
    let (range, limit) = tag_window(query.as_deref())?;
    let filter = tag_filter(query.as_deref());
    let values = tags::values(&service.engine, &tenant, &field, filter, range, limit)
        .await?
        .unwrap_or_default();
    let values: Vec<serde_json::Value> = values
        .into_iter()
        .map(|(kind, value)| serde_json::json!({ "type": kind, "value": value }))
        .collect();
    Ok(json_ok(
        serde_json::json!({ "tagValues": values, "metrics": {} }),
    ))
}

async fn tag_values_v1(
    State(service): State<Arc<QueryService>>,
    Path(tag): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Result<Response, TempoError> {
    let tenant = service.tenancy.authorize_headers(&headers, Role::Read)?;
    // The first version names attributes without a scope.
    let field = Field::Attribute(Scope::Any, tag);
    let (range, limit) = tag_window(query.as_deref())?;
    let values = tags::values(&service.engine, &tenant, &field, None, range, limit)
        .await?
        .unwrap_or_default();
    let values: Vec<String> = values.into_iter().map(|(_, v)| v).collect();
    Ok(json_ok(
        serde_json::json!({ "tagValues": values, "metrics": {} }),
    ))
}

/// Traces a search returns when it names no `limit`, spans per spanset
/// when it names no `spss` (Tempo's defaults).
const DEFAULT_SEARCH_LIMIT: usize = 20;
const DEFAULT_SPSS: usize = 3;

/// A positive count parameter.
fn count(query: Option<&str>, name: &str, default: usize) -> Result<usize, TempoError> {
    match param(query, name).filter(|v| !v.is_empty()) {
        None => Ok(default),
        Some(v) => v
            .parse::<usize>()
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| bad(format!("invalid {name}: {v:?}"))),
    }
}

async fn search(
    State(service): State<Arc<QueryService>>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Result<Response, TempoError> {
    let tenant = service.tenancy.authorize_headers(&headers, Role::Read)?;
    let query = query.as_deref();
    let q = param(query, "q").filter(|q| !q.trim().is_empty());
    let tags = param(query, "tags").filter(|t| !t.trim().is_empty());
    let text = match (q, tags) {
        (Some(_), Some(_)) => {
            return Err(bad(
                "invalid request: can't specify tags and q in the same query",
            ));
        }
        (Some(q), None) => q,
        (None, Some(tags)) => legacy_tags(&tags)?,
        (None, None) => "{}".to_owned(),
    };
    let parsed =
        framelake_traceql::parse(&text).map_err(|e| bad(format!("invalid TraceQL query: {e}")))?;
    let Body::Search(spans) = parsed.body else {
        return Err(bad(
            "invalid TraceQL query: a metrics query is asked of /api/metrics/query_range",
        ));
    };
    let (range, _) = tag_window(query)?;
    let request = search::Search {
        spans,
        range,
        limit: count(query, "limit", DEFAULT_SEARCH_LIMIT)?,
        spss: count(query, "spss", DEFAULT_SPSS)?,
        durations: legacy_durations(query)?,
    };
    let answer = search::search(&service.engine, &tenant, &request).await?;
    Ok(json_ok(answer))
}

/// A time parameter: Unix seconds (with a fraction) or nanoseconds.
fn time_param(query: Option<&str>, name: &str) -> Result<Option<i64>, TempoError> {
    let Some(v) = param(query, name).filter(|v| !v.is_empty()) else {
        return Ok(None);
    };
    let parsed = match v.parse::<i64>() {
        Ok(n) if n.abs() > 100_000_000_000_000 => Some(n),
        _ => v
            .parse::<f64>()
            .ok()
            .filter(|s| s.is_finite() && s.abs() < 9e9)
            .map(|s| (s * 1e9).round() as i64),
    };
    parsed
        .map(Some)
        .ok_or_else(|| bad(format!("could not parse '{name}' parameter: {v:?}")))
}

/// A metrics query's text, range (the last hour by default) and query.
fn metrics_request(
    query: Option<&str>,
) -> Result<(framelake_traceql::Metrics, i64, i64), TempoError> {
    let text = param(query, "q").unwrap_or_default();
    let parsed =
        framelake_traceql::parse(&text).map_err(|e| bad(format!("invalid TraceQL query: {e}")))?;
    let Body::Metrics(metrics) = parsed.body else {
        return Err(bad(
            "invalid TraceQL query: a metrics query ends with a metrics function (| rate(), …)",
        ));
    };
    let end = time_param(query, "end")?.unwrap_or_else(now_nanos);
    let start = time_param(query, "start")?.unwrap_or(end - DEFAULT_TAG_RANGE);
    if end <= start {
        return Err(bad("end must be greater than start"));
    }
    Ok((metrics, start, end))
}

async fn metrics_range(
    State(service): State<Arc<QueryService>>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Result<Response, TempoError> {
    let tenant = service.tenancy.authorize_headers(&headers, Role::Read)?;
    let query = query.as_deref();
    let (m, start, end) = metrics_request(query)?;
    let step = match param(query, "step").filter(|v| !v.is_empty()) {
        None => Steps::default_step(start, end),
        Some(v) => v
            .parse::<f64>()
            .ok()
            .map(|s| (s * 1e9) as i64)
            .or_else(|| framelake_logql::parse_duration(&v))
            .filter(|ns| *ns > 0)
            .ok_or_else(|| bad(format!("invalid step: {v:?}")))?,
    };
    let steps = Steps::range(start, end, step);
    if steps.count > 11_000 {
        return Err(bad("too many steps: ask a longer step or a shorter range"));
    }
    let series = metrics::evaluate(&service.engine, &tenant, &m, steps).await?;
    let series = metrics::second_stages(&m.then, series);
    let series: Vec<serde_json::Value> = series
        .iter()
        .map(|(labels, points)| {
            let samples: Vec<serde_json::Value> = points
                .iter()
                .enumerate()
                .filter_map(|(k, p)| {
                    let at = (steps.start + (k as i64 + 1) * steps.step) / 1_000_000;
                    p.map(|v| serde_json::json!({ "timestampMs": at.to_string(), "value": v }))
                })
                .collect();
            serde_json::json!({
                "labels": metrics::labels_json(&m.function, labels),
                "samples": samples,
            })
        })
        .collect();
    Ok(json_ok(
        serde_json::json!({ "series": series, "metrics": {} }),
    ))
}

async fn metrics_instant(
    State(service): State<Arc<QueryService>>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Result<Response, TempoError> {
    let tenant = service.tenancy.authorize_headers(&headers, Role::Read)?;
    let (m, start, end) = metrics_request(query.as_deref())?;
    let steps = Steps::instant(start, end);
    let series = metrics::evaluate(&service.engine, &tenant, &m, steps).await?;
    let series = metrics::second_stages(&m.then, series);
    let series: Vec<serde_json::Value> = series
        .iter()
        .filter_map(|(labels, points)| {
            let value = points.first().copied().flatten()?;
            Some(serde_json::json!({
                "labels": metrics::labels_json(&m.function, labels),
                "value": value,
            }))
        })
        .collect();
    Ok(json_ok(
        serde_json::json!({ "series": series, "metrics": {} }),
    ))
}

/// The first version's `tags` (logfmt `key=value` pairs, each an attribute
/// of the span or its resource) as a TraceQL filter.
fn legacy_tags(tags: &str) -> Result<String, TempoError> {
    let quoted = |text: &str| text.replace('\\', "\\\\").replace('"', "\\\"");
    let mut conditions = Vec::new();
    for pair in tags.split_whitespace() {
        let (key, value) = pair
            .split_once('=')
            .filter(|(k, _)| !k.is_empty())
            .ok_or_else(|| bad(format!("invalid tags: {pair:?} is not key=value")))?;
        let value = value.trim_matches('"');
        conditions.push(format!(".\"{}\" = \"{}\"", quoted(key), quoted(value)));
    }
    Ok(format!("{{ {} }}", conditions.join(" && ")))
}

/// The first version's `minDuration` and `maxDuration` of a trace.
fn legacy_durations(query: Option<&str>) -> Result<(i64, i64), TempoError> {
    let duration = |name: &str, default: i64| -> Result<i64, TempoError> {
        match param(query, name).filter(|v| !v.is_empty()) {
            None => Ok(default),
            Some(v) => framelake_logql::parse_duration(&v)
                .filter(|ns| *ns >= 0)
                .ok_or_else(|| bad(format!("invalid {name}: {v:?}"))),
        }
    };
    let (min, max) = (
        duration("minDuration", 0)?,
        duration("maxDuration", i64::MAX)?,
    );
    if max < min {
        return Err(bad("invalid maxDuration: must be greater than minDuration"));
    }
    Ok((min, max))
}
