//! Loki's HTTP query API under `/loki/api/v1/` on the query listener, as
//! Grafana's Loki datasource and Logs Drilldown call it: parameters in the
//! URL or a form body, times as Unix nanoseconds, seconds (with a
//! fraction) or RFC 3339, answers in Loki's (Prometheus-style) JSON.
//! Errors answer `text/plain` with the status Loki gives.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use framelake_lake::host::now_nanos;
use framelake_lake::tenancy::Role;
use framelake_logql::eval::{Category, Selector};
use framelake_logql::{Expr as LogQl, parse_range};
use http::{HeaderMap, HeaderValue, Method, StatusCode, header};

use super::metric::{Series, Steps, Value};
use super::{Direction, LogLine, Loki, bad, parse, parse_selector};
use crate::QueryError;
use crate::http::QueryService;

/// Most steps a range query may have (Loki's limit).
const MAX_POINTS: i64 = 11_000;
/// Lines a log query returns when it names no `limit` (Loki's default).
const DEFAULT_LIMIT: usize = 100;
const HOUR: i64 = 3_600_000_000_000;
/// The header asking for labels split by category.
const ENCODING_FLAGS: &str = "x-loki-response-encoding-flags";
const CATEGORIZE: &str = "categorize-labels";

/// The Loki routes.
pub fn routes() -> Router<Arc<QueryService>> {
    Router::new()
        .route("/loki/api/v1/query", get(query).post(query))
        .route(
            "/loki/api/v1/query_range",
            get(query_range).post(query_range),
        )
        .route("/loki/api/v1/labels", get(labels).post(labels))
        .route("/loki/api/v1/label", get(labels).post(labels))
        .route(
            "/loki/api/v1/label/{name}/values",
            get(label_values).post(label_values),
        )
        .route("/loki/api/v1/series", get(series).post(series))
        .route(
            "/loki/api/v1/index/stats",
            get(index_stats).post(index_stats),
        )
        .route("/loki/api/v1/index/volume", get(volume).post(volume))
        .route(
            "/loki/api/v1/index/volume_range",
            get(volume_range).post(volume_range),
        )
        .route("/loki/api/v1/detected_fields", get(detected_fields))
        .route(
            "/loki/api/v1/detected_field/{name}/values",
            get(detected_field_values),
        )
        .route("/loki/api/v1/detected_labels", get(detected_labels))
        .route("/loki/api/v1/patterns", get(patterns))
        .route("/loki/api/v1/tail", get(tail))
        .route("/loki/api/v1/status/buildinfo", get(buildinfo))
}

/// A Loki error: its status, and the message as `text/plain`.
struct LokiError(QueryError);

impl From<QueryError> for LokiError {
    fn from(e: QueryError) -> Self {
        LokiError(e)
    }
}

impl IntoResponse for LokiError {
    fn into_response(self) -> Response {
        let status = self.0.http_status();
        if status.is_server_error() {
            tracing::warn!(error = %self.0, "Loki query failed");
        }
        let mut response = (status, format!("{}\n", self.0)).into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        response
    }
}

/// A request's parameters: the URL's, and a form body's.
struct Params(Vec<(String, String)>);

impl Params {
    fn new(query: Option<&str>, headers: &HeaderMap, method: &Method, body: &[u8]) -> Self {
        let mut all: Vec<(String, String)> = form_urlencoded::parse(query.unwrap_or("").as_bytes())
            .into_owned()
            .collect();
        let form = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
        if *method == Method::POST && (form || !body.is_empty()) {
            all.extend(form_urlencoded::parse(body).into_owned());
        }
        Params(all)
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, v)| n == name && !v.is_empty())
            .map(|(_, v)| v.as_str())
    }

    fn all(&self, name: &str) -> impl Iterator<Item = &str> {
        self.0
            .iter()
            .filter(move |(n, v)| n == name && !v.is_empty())
            .map(|(_, v)| v.as_str())
    }

    fn time(&self, name: &str) -> Result<Option<i64>, QueryError> {
        self.get(name)
            .map(|v| {
                parse_time(v).ok_or_else(|| {
                    bad(format!(
                        "invalid {name} {v:?}: a time is Unix nanoseconds, seconds or RFC 3339"
                    ))
                })
            })
            .transpose()
    }

    /// `start` and `end`: `end` defaults to now, `start` to `since` (or
    /// `default_since`) before it.
    fn range(&self, default_since: i64) -> Result<(i64, i64), QueryError> {
        let end = self.time("end")?.unwrap_or_else(now_nanos);
        let since = match self.get("since") {
            Some(s) => parse_range(s).ok_or_else(|| bad(format!("invalid since {s:?}")))?,
            None => default_since,
        };
        let start = self.time("start")?.unwrap_or(end - since);
        if end < start {
            return Err(bad(
                "end timestamp must not be before or equal to start time",
            ));
        }
        Ok((start, end))
    }

    fn limit(&self) -> Result<usize, QueryError> {
        match self.get("limit") {
            None => Ok(DEFAULT_LIMIT),
            Some(v) => match v.parse::<i64>() {
                Ok(n) if n > 0 => Ok(n as usize),
                Ok(_) => Err(bad("limit must be a positive value")),
                Err(_) => Err(bad(format!("invalid limit {v:?}"))),
            },
        }
    }

    fn direction(&self) -> Result<Direction, QueryError> {
        match self
            .get("direction")
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            None | Some("backward") => Ok(Direction::Backward),
            Some("forward") => Ok(Direction::Forward),
            Some(other) => Err(bad(format!(
                "invalid direction {other:?}: forward or backward"
            ))),
        }
    }

    fn query(&self) -> Result<&str, QueryError> {
        self.get("query")
            .ok_or_else(|| bad("the query parameter is required"))
    }
}

/// A time as Loki reads one: an integer of at most 10 digits is seconds,
/// a longer one nanoseconds; a number with a fraction is seconds
/// (millisecond precision); else RFC 3339.
pub fn parse_time(value: &str) -> Option<i64> {
    if let Some(seconds) = value
        .contains('.')
        .then(|| value.parse::<f64>().ok())
        .flatten()
    {
        let whole = seconds.trunc();
        let ms = ((seconds - whole) * 1000.0).round();
        return Some(whole as i64 * 1_000_000_000 + ms as i64 * 1_000_000);
    }
    if let Ok(n) = value.parse::<i64>() {
        return Some(if value.trim_start_matches('-').len() <= 10 {
            n.saturating_mul(1_000_000_000)
        } else {
            n
        });
    }
    chrono::DateTime::parse_from_rfc3339(value)
        .ok()
        .and_then(|t| t.timestamp_nanos_opt())
}

/// A step: seconds (with a fraction) or a duration (`15000ms`, `1m`).
pub fn parse_step(value: &str) -> Option<i64> {
    match value.parse::<f64>() {
        Ok(seconds) => Some((seconds * 1e9).round() as i64),
        Err(_) => parse_range(value),
    }
}

/// Loki's default step: the range over 250 points, at least a second.
fn default_step(start: i64, end: i64) -> i64 {
    (((end - start) / 1_000_000_000 / 250).max(1)) * 1_000_000_000
}

/// A Loki API request: its tenant (token checked for reading), its
/// parameters (URL and form body) and whether it asks for categorized labels.
struct Request {
    tenant: framelake_lake::ids::TenantId,
    params: Params,
    categorize: bool,
}

impl axum::extract::FromRequest<Arc<QueryService>> for Request {
    type Rejection = LokiError;

    async fn from_request(
        request: axum::extract::Request,
        service: &Arc<QueryService>,
    ) -> Result<Self, Self::Rejection> {
        let (parts, body) = request.into_parts();
        let body = Bytes::from_request(
            axum::extract::Request::from_parts(parts.clone(), body),
            service,
        )
        .await
        .map_err(|e| QueryError::BadQuery(format!("reading the request body: {e}")))?;
        Ok(self::request(
            service,
            &parts.method,
            parts.uri.query(),
            &parts.headers,
            &body,
        )?)
    }
}

fn request(
    service: &QueryService,
    method: &Method,
    query: Option<&str>,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Request, QueryError> {
    let tenant = service.tenancy.authorize_headers(headers, Role::Read)?;
    let categorize = headers
        .get_all(ENCODING_FLAGS)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|f| f.trim() == CATEGORIZE);
    Ok(Request {
        tenant,
        params: Params::new(query, headers, method, body),
        categorize,
    })
}

fn loki(service: &QueryService) -> Loki {
    Loki::new(service.engine.clone(), service.labels.clone())
}

fn json(body: String) -> Response {
    let mut response = (StatusCode::OK, body).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

async fn query_range(
    State(service): State<Arc<QueryService>>,
    r: Request,
) -> Result<Response, LokiError> {
    let (start, end) = r.params.range(HOUR)?;
    let expr = parse(r.params.query()?)?;
    let loki = loki(&service);
    match expr {
        LogQl::Log(log) => {
            let lines = loki
                .select(
                    &r.tenant,
                    &log,
                    start,
                    end,
                    r.params.limit()?,
                    r.params.direction()?,
                )
                .await?;
            Ok(json(streams_json(&lines, r.categorize)))
        }
        LogQl::Metric(metric) => {
            let steps = range_steps(&r.params, start, end)?;
            let value = loki.evaluate(&r.tenant, &metric, steps).await?;
            Ok(json(matrix_json(value, steps)))
        }
    }
}

async fn query(
    State(service): State<Arc<QueryService>>,
    r: Request,
) -> Result<Response, LokiError> {
    let time = r.params.time("time")?.unwrap_or_else(now_nanos);
    match parse(r.params.query()?)? {
        LogQl::Log(_) => Err(bad(
            "log queries are not supported as an instant query type, please change your query to a range query type",
        )
        .into()),
        LogQl::Metric(metric) => {
            let steps = Steps::instant(time);
            let value = loki(&service).evaluate(&r.tenant, &metric, steps).await?;
            Ok(json(instant_json(value, time)))
        }
    }
}

/// The streams of the metadata endpoints: those `query` selects (all
/// when absent) with logs in the range.
async fn selected(
    service: &QueryService,
    r: &Request,
    query: Option<&str>,
) -> Result<super::streams::StreamIndex, QueryError> {
    let (start, end) = r.params.range(6 * HOUR)?;
    let selector = match query {
        Some(q) => Some(Selector::new(&parse_selector(q)?).map_err(bad)?),
        None => None,
    };
    loki(service)
        .streams(&r.tenant, selector.as_ref(), (start, end))
        .await
}

fn success(data: serde_json::Value) -> Response {
    json(serde_json::json!({"status": "success", "data": data}).to_string())
}

async fn labels(
    State(service): State<Arc<QueryService>>,
    r: Request,
) -> Result<Response, LokiError> {
    let streams = selected(&service, &r, r.params.get("query")).await?;
    let names: std::collections::BTreeSet<&str> = streams
        .all()
        .iter()
        .flat_map(|s| s.labels.iter().map(|l| l.name.as_str()))
        .collect();
    Ok(success(serde_json::json!(names)))
}

async fn label_values(
    State(service): State<Arc<QueryService>>,
    Path(name): Path<String>,
    r: Request,
) -> Result<Response, LokiError> {
    let streams = selected(&service, &r, r.params.get("query")).await?;
    let values: std::collections::BTreeSet<&str> = streams
        .all()
        .iter()
        .filter_map(|s| s.labels.get(&name))
        .collect();
    Ok(success(serde_json::json!(values)))
}

async fn series(
    State(service): State<Arc<QueryService>>,
    r: Request,
) -> Result<Response, LokiError> {
    let matches: Vec<String> = r
        .params
        .all("match[]")
        .chain(r.params.all("match"))
        .map(str::to_owned)
        .collect();
    if matches.is_empty() {
        return Err(bad("at least one match[] selector is required").into());
    }
    let mut sets = std::collections::BTreeSet::new();
    for m in &matches {
        for s in selected(&service, &r, Some(m)).await?.all() {
            sets.insert(s.labels.of(Category::Stream));
        }
    }
    Ok(success(serde_json::json!(sets)))
}

/// `index/stats`: how much a selector's streams hold in the range.
async fn index_stats(
    State(service): State<Arc<QueryService>>,
    r: Request,
) -> Result<Response, LokiError> {
    let (start, end) = r.params.range(HOUR)?;
    let streams = selected(&service, &r, Some(r.params.query()?)).await?;
    let volumes = loki(&service)
        .volume(&r.tenant, &streams, (start, end), None)
        .await?;
    let blocks = if streams.is_empty() {
        0
    } else {
        let filter = framelake_lake::catalog::BlockFilter {
            kinds: framelake_lake::view::View::LogEntries.kinds().to_vec(),
            processes: streams.ids().collect(),
            time_range: Some((start, end)),
            ..Default::default()
        };
        service
            .engine
            .lake()
            .catalog
            .blocks(&r.tenant, &filter)
            .await
            .map_err(QueryError::from)?
            .len()
    };
    let with_lines = volumes.iter().filter(|v| v.lines > 0).count();
    Ok(json(
        serde_json::json!({
            "streams": with_lines,
            "chunks": blocks,
            "bytes": volumes.iter().map(|v| v.bytes).sum::<u64>(),
            "entries": volumes.iter().map(|v| v.lines).sum::<u64>(),
        })
        .to_string(),
    ))
}

/// The labels a volume is keyed by: `targetLabels`, else the selector's.
fn volume_labels(r: &Request, query: &str) -> Result<Vec<String>, QueryError> {
    if let Some(targets) = r.params.get("targetLabels") {
        return Ok(targets
            .split(',')
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(str::to_owned)
            .collect());
    }
    let mut names: Vec<String> = parse_selector(query)?.into_iter().map(|m| m.name).collect();
    names.dedup();
    Ok(names)
}

/// Bytes per label set (the volume labels of each stream) and step.
async fn volumes(
    service: &QueryService,
    r: &Request,
    steps: Option<Steps>,
) -> Result<Vec<Series>, QueryError> {
    let query = r.params.query()?;
    let (start, end) = r.params.range(HOUR)?;
    let names = volume_labels(r, query)?;
    let by_labels = r.params.get("aggregateBy") == Some("labels");
    let streams = selected(service, r, Some(query)).await?;
    let volumes = loki(service)
        .volume(&r.tenant, &streams, (start, end), steps)
        .await?;
    let count = steps.map_or(1, |s| s.count);
    let mut series: BTreeMap<Vec<(String, String)>, Vec<Option<f64>>> = BTreeMap::new();
    for v in volumes {
        let stream = &streams.all()[v.stream];
        let mut keys: Vec<Vec<(String, String)>> = Vec::new();
        if by_labels {
            for name in &names {
                if stream.labels.get(name).is_some() {
                    keys.push(vec![(name.clone(), String::new())]);
                }
            }
        } else {
            keys.push(
                names
                    .iter()
                    .filter_map(|n| Some((n.clone(), stream.labels.get(n)?.to_owned())))
                    .collect(),
            );
        }
        let k = v.step.unwrap_or(0);
        let Some(k) = usize::try_from(k).ok().filter(|k| *k < count) else {
            continue;
        };
        for key in keys {
            let points = series.entry(key).or_insert_with(|| vec![None; count]);
            points[k] = Some(points[k].unwrap_or(0.0) + v.bytes as f64);
        }
    }
    Ok(series
        .into_iter()
        .map(|(labels, points)| Series { labels, points })
        .collect())
}

/// `index/volume`: bytes per label set over the range, largest first.
async fn volume(
    State(service): State<Arc<QueryService>>,
    r: Request,
) -> Result<Response, LokiError> {
    let (_, end) = r.params.range(HOUR)?;
    let mut series = volumes(&service, &r, None).await?;
    let total = |s: &Series| s.points[0].unwrap_or(0.0);
    series.sort_by(|a, b| total(b).total_cmp(&total(a)));
    series.truncate(r.params.limit()?);
    Ok(json(instant_json(Value::Vector(series), end)))
}

/// `index/volume_range`: bytes per label set and step.
async fn volume_range(
    State(service): State<Arc<QueryService>>,
    r: Request,
) -> Result<Response, LokiError> {
    let (start, end) = r.params.range(HOUR)?;
    let steps = range_steps(&r.params, start, end)?;
    let mut series = volumes(&service, &r, Some(steps)).await?;
    let total = |s: &Series| s.points.iter().flatten().sum::<f64>();
    series.sort_by(|a, b| total(b).total_cmp(&total(a)));
    series.truncate(r.params.limit()?);
    Ok(json(matrix_json(Value::Vector(series), steps)))
}

/// The lines `detected_fields` and friends sample: the newest
/// `line_limit` (1000 by default) of the query.
async fn sample(service: &QueryService, r: &Request) -> Result<Vec<LogLine>, QueryError> {
    let (start, end) = r.params.range(HOUR)?;
    let LogQl::Log(log) = parse(r.params.query()?)? else {
        return Err(bad("a log query is expected"));
    };
    let line_limit = match r.params.get("line_limit") {
        Some(v) => v
            .parse::<usize>()
            .map_err(|_| bad(format!("invalid line_limit {v:?}")))?,
        None => 1000,
    };
    loki(service)
        .select(&r.tenant, &log, start, end, line_limit, Direction::Backward)
        .await
}

fn field_limit(params: &Params) -> Result<usize, QueryError> {
    match params.get("limit") {
        Some(_) => params.limit(),
        None => Ok(1000),
    }
}

/// `detected_fields`: the fields of the sampled lines, their type and cardinality.
async fn detected_fields(
    State(service): State<Arc<QueryService>>,
    r: Request,
) -> Result<Response, LokiError> {
    let limit = field_limit(&r.params)?;
    let lines = sample(&service, &r).await?;
    let fields: Vec<serde_json::Value> = super::drilldown::detect_fields(&lines)
        .into_iter()
        .take(limit)
        .map(|(label, field)| {
            let mut f = serde_json::json!({
                "label": label,
                "type": field.kind(),
                "cardinality": field.values.len(),
                "parsers": if field.parsers.is_empty() {
                    serde_json::Value::Null
                } else {
                    serde_json::json!(field.parsers)
                },
            });
            if let Some(path) = field.json_path {
                f["jsonPath"] = serde_json::json!(path);
            }
            f
        })
        .collect();
    Ok(json(
        serde_json::json!({"fields": fields, "limit": limit}).to_string(),
    ))
}

/// `detected_field/<name>/values`: the values of one field of the sampled lines.
async fn detected_field_values(
    State(service): State<Arc<QueryService>>,
    Path(name): Path<String>,
    r: Request,
) -> Result<Response, LokiError> {
    let limit = field_limit(&r.params)?;
    let lines = sample(&service, &r).await?;
    let values: Vec<String> = super::drilldown::detect_fields(&lines)
        .remove(&name)
        .map(|f| f.values.into_iter().take(limit).collect())
        .unwrap_or_default();
    Ok(json(
        serde_json::json!({"values": values, "limit": limit}).to_string(),
    ))
}

/// `detected_labels`: the stream labels of the selected streams and their cardinality.
async fn detected_labels(
    State(service): State<Arc<QueryService>>,
    r: Request,
) -> Result<Response, LokiError> {
    let streams = selected(&service, &r, r.params.get("query")).await?;
    let labels: Vec<serde_json::Value> = super::drilldown::detect_labels(
        streams.all().iter().map(AsRef::as_ref),
    )
    .into_iter()
    .map(|(label, cardinality)| serde_json::json!({"label": label, "cardinality": cardinality}))
    .collect();
    Ok(json(
        serde_json::json!({"detectedLabels": labels}).to_string(),
    ))
}

/// Lines `patterns` reads at most (the newest).
const PATTERN_LINES: usize = 20_000;

/// `patterns`: the patterns of the query's lines, counted per step.
async fn patterns(
    State(service): State<Arc<QueryService>>,
    r: Request,
) -> Result<Response, LokiError> {
    let (start, end) = r.params.range(HOUR)?;
    let steps = range_steps(&r.params, start, end)?;
    let LogQl::Log(log) = parse(r.params.query()?)? else {
        return Err(bad("a log query is expected").into());
    };
    let lines = loki(&service)
        .select(
            &r.tenant,
            &log,
            start,
            end,
            PATTERN_LINES,
            Direction::Backward,
        )
        .await?;
    let data: Vec<serde_json::Value> = super::drilldown::patterns(&lines, start, steps.step, 300)
        .into_iter()
        .map(|p| {
            let samples: Vec<serde_json::Value> = p
                .samples
                .iter()
                .map(|(t, n)| serde_json::json!([t.div_euclid(1_000_000_000), n]))
                .collect();
            serde_json::json!({"pattern": p.pattern, "level": p.level, "samples": samples})
        })
        .collect();
    Ok(success(serde_json::json!(data)))
}

/// The steps of a range request: its `step`, else Loki's default.
fn range_steps(params: &Params, start: i64, end: i64) -> Result<Steps, QueryError> {
    let step = match params.get("step") {
        Some(s) => parse_step(s).ok_or_else(|| {
            bad(format!(
                "invalid step {s:?}: a number of seconds or a duration such as 15s"
            ))
        })?,
        None => default_step(start, end),
    };
    if step <= 0 {
        return Err(bad(
            "zero or negative query resolution step widths are not accepted. Try a positive integer",
        ));
    }
    if (end - start) / step > MAX_POINTS {
        return Err(bad(
            "exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the query resolution (?step=XX)",
        ));
    }
    Ok(Steps::range(start, end, step))
}

/// `tail`: a WebSocket of the query's lines as they are acknowledged.
/// A bad query or time is refused before the upgrade.
async fn tail(
    State(service): State<Arc<QueryService>>,
    ws: axum::extract::ws::WebSocketUpgrade,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Result<Response, LokiError> {
    let r = request(&service, &Method::GET, query.as_deref(), &headers, &[])?;
    let LogQl::Log(expr) = parse(r.params.query()?)? else {
        return Err(bad("tail takes a log query").into());
    };
    let start = r
        .params
        .time("start")?
        .unwrap_or_else(|| now_nanos() - HOUR);
    let limit = r.params.limit()?;
    let delay = match r.params.get("delay_for") {
        None => 0,
        Some(v) => match v.parse::<u64>() {
            Ok(s) if s <= 5 => s,
            _ => return Err(bad("delay_for is a number of seconds from 0 to 5").into()),
        },
    };
    let tail = super::tail::TailQuery {
        expr,
        start,
        limit,
        delay: std::time::Duration::from_secs(delay),
    };
    let loki = loki(&service);
    Ok(ws.on_upgrade(move |socket| follow(socket, loki, r.tenant, tail)))
}

/// Runs a tail into a WebSocket until either side ends it.
async fn follow(
    mut socket: axum::extract::ws::WebSocket,
    loki: Loki,
    tenant: framelake_lake::ids::TenantId,
    query: super::tail::TailQuery,
) {
    use axum::extract::ws::{CloseFrame, Message};
    let (out, mut messages) = tokio::sync::mpsc::channel(super::tail::BUFFER);
    let mut tail = tokio::spawn(super::tail::follow(loki, tenant, query, out));
    let end = loop {
        tokio::select! {
            message = messages.recv() => {
                let Some(message) = message else { continue };
                let text = tail_json(&message);
                if socket.send(Message::Text(text.into())).await.is_err() {
                    break None;
                }
            }
            incoming = socket.recv() => match incoming {
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break None,
                Some(Ok(_)) => {}
            },
            result = &mut tail => {
                break match result {
                    Ok(Ok(())) => None,
                    Ok(Err(e)) => Some(e.to_string()),
                    Err(e) => Some(format!("the tail failed: {e}")),
                };
            }
        }
    };
    tail.abort();
    if let Some(reason) = end {
        tracing::warn!(error = %reason, "Loki tail ended");
        let frame = CloseFrame {
            code: 1011,
            reason: reason.chars().take(120).collect::<String>().into(),
        };
        let _ = socket.send(Message::Close(Some(frame))).await;
    }
}

/// A tail message as Loki writes it: `{"streams": […], "dropped_entries": […]}`.
fn tail_json(message: &super::tail::Message) -> String {
    let mut out = format!(r#"{{"streams":{}"#, streams_result(&message.lines, false));
    if !message.dropped.is_empty() {
        let dropped: Vec<serde_json::Value> = message
            .dropped
            .iter()
            .map(|(labels, time)| serde_json::json!({"labels": labels, "timestamp": time.to_string()}))
            .collect();
        let _ = write!(
            out,
            r#","dropped_entries":{}"#,
            serde_json::Value::from(dropped)
        );
    }
    out.push('}');
    out
}

async fn buildinfo() -> Response {
    json(
        serde_json::json!({
            "version": "3.5.0",
            "revision": concat!("framelake-", env!("CARGO_PKG_VERSION")),
            "branch": "framelake",
            "buildUser": "framelake",
            "buildDate": "",
            "goVersion": "",
        })
        .to_string(),
    )
}

/// Seconds as Loki writes a sample's time: a JSON number, milliseconds
/// as a fraction when there are any.
fn seconds(ns: i64) -> String {
    let s = ns.div_euclid(1_000_000_000);
    let ms = ns.rem_euclid(1_000_000_000) / 1_000_000;
    if ms == 0 {
        s.to_string()
    } else {
        format!("{s}.{ms:03}").trim_end_matches('0').to_owned()
    }
}

/// A sample value as Prometheus writes it: shortest decimal, `NaN`,
/// `+Inf`, `-Inf`.
pub fn float(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v == f64::INFINITY {
        "+Inf".into()
    } else if v == f64::NEG_INFINITY {
        "-Inf".into()
    } else {
        format!("{v}")
    }
}

fn metric_json(labels: &[(String, String)]) -> String {
    let map: BTreeMap<&str, &str> = labels
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    serde_json::to_string(&map).unwrap_or_else(|_| "{}".into())
}

fn matrix_json(value: Value, steps: Steps) -> String {
    let series = match value {
        Value::Vector(series) => series,
        Value::Scalar(points) => vec![Series {
            labels: Vec::new(),
            points: points.into_iter().map(Some).collect(),
        }],
    };
    let mut out = String::from(r#"{"status":"success","data":{"resultType":"matrix","result":["#);
    for (i, s) in series.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let _ = write!(out, r#"{{"metric":{},"values":["#, metric_json(&s.labels));
        let mut first = true;
        for (k, p) in s.points.iter().enumerate() {
            if let Some(v) = p {
                if !first {
                    out.push(',');
                }
                first = false;
                let _ = write!(out, r#"[{},"{}"]"#, seconds(steps.time(k)), float(*v));
            }
        }
        out.push_str("]}");
    }
    out.push_str("]}}");
    out
}

fn instant_json(value: Value, time: i64) -> String {
    match value {
        Value::Scalar(points) => format!(
            r#"{{"status":"success","data":{{"resultType":"scalar","result":[{},"{}"]}}}}"#,
            seconds(time),
            float(points.first().copied().unwrap_or(f64::NAN))
        ),
        Value::Vector(series) => {
            let mut out =
                String::from(r#"{"status":"success","data":{"resultType":"vector","result":["#);
            let mut first = true;
            for s in &series {
                let Some(Some(v)) = s.points.first() else {
                    continue;
                };
                if !first {
                    out.push(',');
                }
                first = false;
                let _ = write!(
                    out,
                    r#"{{"metric":{},"value":[{},"{}"]}}"#,
                    metric_json(&s.labels),
                    seconds(time),
                    float(*v)
                );
            }
            out.push_str("]}}");
            out
        }
    }
}

/// Lines as Loki's `streams`: grouped by their labels (all of them, or
/// with `categorize-labels` the stream labels, each entry then carrying
/// its structured metadata and parsed labels).
pub fn streams_json(lines: &[LogLine], categorize: bool) -> String {
    let mut out = String::from(r#"{"status":"success","data":{"resultType":"streams","result":"#);
    out.push_str(&streams_result(lines, categorize));
    if categorize {
        out.push_str(r#","encodingFlags":["categorize-labels"]"#);
    }
    out.push_str("}}");
    out
}

/// The `result` array of lines as streams.
fn streams_result(lines: &[LogLine], categorize: bool) -> String {
    let mut order: Vec<Vec<(String, String)>> = Vec::new();
    let mut groups: std::collections::HashMap<Vec<(String, String)>, Vec<&LogLine>> =
        std::collections::HashMap::new();
    for line in lines {
        let key = if categorize {
            let mut stream: Vec<(String, String)> =
                line.labels.of(Category::Stream).into_iter().collect();
            stream.sort();
            stream
        } else {
            line.labels.sorted()
        };
        groups
            .entry(key.clone())
            .or_insert_with(|| {
                order.push(key);
                Vec::new()
            })
            .push(line);
    }
    let mut out = String::from("[");
    for (i, key) in order.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let _ = write!(out, r#"{{"stream":{},"values":["#, metric_json(key));
        for (j, line) in groups[key].iter().enumerate() {
            if j > 0 {
                out.push(',');
            }
            let text = serde_json::to_string(&line.line).unwrap_or_default();
            let _ = write!(out, r#"["{}",{}"#, line.time, text);
            if categorize {
                let mut extra = serde_json::Map::new();
                let metadata = line.labels.of(Category::Metadata);
                if !metadata.is_empty() {
                    extra.insert("structuredMetadata".into(), serde_json::json!(metadata));
                }
                let parsed = line.labels.of(Category::Parsed);
                if !parsed.is_empty() {
                    extra.insert("parsed".into(), serde_json::json!(parsed));
                }
                let _ = write!(out, ",{}", serde_json::Value::Object(extra));
            }
            out.push(']');
        }
        out.push_str("]}");
    }
    out.push(']');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_and_steps_as_loki_reads_them() {
        assert_eq!(parse_time("1700000000"), Some(1_700_000_000_000_000_000));
        assert_eq!(
            parse_time("1700000000123456789"),
            Some(1_700_000_000_123_456_789)
        );
        assert_eq!(parse_time("1700000000.5"), Some(1_700_000_000_500_000_000));
        assert_eq!(
            parse_time("2023-11-14T22:13:20.25Z"),
            Some(1_700_000_000_250_000_000)
        );
        assert_eq!(parse_time("yesterday"), None);
        for step in ["60000ms", "1m", "60"] {
            assert_eq!(parse_step(step), Some(60_000_000_000), "{step}");
        }
        assert_eq!(seconds(1_700_000_000_120_000_000), "1700000000.12");
        assert_eq!(seconds(4_000_000_000_000_000_000), "4000000000");
        assert_eq!(float(2.0), "2");
        assert_eq!(float(f64::NEG_INFINITY), "-Inf");
    }
}
