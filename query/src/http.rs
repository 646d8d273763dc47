//! HTTP SQL on :8080: `POST /api/v1/sql`; Perfetto traces of native
//! processes: `GET /api/v1/perfetto` (see [`crate::perfetto`]); Loki's and
//! Tempo's APIs ([`crate::loki::http`], [`crate::tempo::http`]).
//!
//! The body is `{"sql": "…"}` (`application/json`) or the SQL itself
//! (`application/sql`, `text/plain`). The response format follows `Accept`:
//! `application/json` (an array of row objects; the default),
//! `application/x-ndjson`, `text/csv` or `application/vnd.apache.arrow.stream`.
//! Rows stream as the query produces them, as fast as the client reads.
//! Errors are JSON `{"error": "…"}` with a status saying whose fault it is.
//! An answer that leaves data out (quarantined blocks) says so in a
//! `Framelake-Warning` header per warning.

use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::util::display::{ArrayFormatter, FormatOptions};
use axum::Router;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::Bytes;
use framelake_lake::tenancy::{Role, Tenancy};
use futures::StreamExt;
use http::{HeaderMap, HeaderValue, header};

use crate::engine::Warnings;
use crate::{Engine, QueryError};

/// What the query listener serves with.
#[derive(Debug)]
pub struct QueryService {
    pub engine: Engine,
    pub tenancy: Tenancy,
    /// How logs look to Loki's API (which resource attributes are labels).
    pub labels: crate::loki::streams::LabelMapping,
}

/// The routes of the query listener.
pub fn router(service: Arc<QueryService>) -> Router {
    // The longest SQL a query may be, with room for JSON's escapes (a longer
    // text in it is refused by the parser, with a clear message).
    let max_body = service.engine.limits().sql.max_bytes.saturating_mul(2);
    Router::new()
        .route("/api/v1/sql", post(sql))
        .route("/api/v1/perfetto", get(perfetto))
        .route("/ready", get(|| async { "ready\n" }))
        .merge(crate::loki::http::routes())
        .merge(crate::tempo::http::routes())
        .layer(DefaultBodyLimit::max(max_body))
        .with_state(service)
}

impl IntoResponse for QueryError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "error": self.to_string() }).to_string();
        let mut response = (self.http_status(), body).into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        response
    }
}

#[derive(serde::Deserialize)]
struct SqlRequest {
    sql: String,
}

async fn sql(
    State(service): State<Arc<QueryService>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    match run(&service, &headers, &body).await {
        Ok(response) => response,
        Err(e) => {
            if e.http_status().is_server_error() {
                tracing::warn!(error = %e, "query failed");
            }
            e.into_response()
        }
    }
}

async fn run(
    service: &QueryService,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Response, QueryError> {
    let value = |name| {
        headers
            .get(name)
            .and_then(|v: &HeaderValue| v.to_str().ok())
    };
    let tenant = service.tenancy.authorize_headers(headers, Role::Read)?;
    let format = Format::from_accept(value(header::ACCEPT))?;
    let sql = request_sql(value(header::CONTENT_TYPE), body)?;
    let mut rows = service.engine.sql(&tenant, &sql).await?;
    let warnings = Arc::clone(&rows.warnings);
    let mut encoder = Encoder::new(format, &rows.schema)?;
    // The first batch is awaited before answering, so that errors of the
    // query's start still get their status; later ones end the stream.
    let first = match rows.stream.next().await {
        Some(batch) => Some(encoder.write(&batch?)?),
        None => None,
    };
    let rest = futures::stream::unfold(
        (rows.stream, Some(encoder)),
        |(mut stream, mut encoder)| async move {
            let enc = encoder.as_mut()?;
            let chunk = match stream.next().await {
                Some(Ok(batch)) => enc.write(&batch),
                Some(Err(e)) => Err(QueryError::from(e)),
                None => {
                    let last = enc.finish();
                    encoder = None;
                    last
                }
            };
            if let Err(e) = &chunk {
                tracing::warn!(error = %e, "query failed while streaming its rows");
                encoder = None;
            }
            Some((chunk.map_err(std::io::Error::other), (stream, encoder)))
        },
    );
    let body = futures::stream::iter(first.map(Ok)).chain(rest);
    let mut response = Response::new(Body::from_stream(body));
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(format.content_type()),
    );
    for warning in warnings.all() {
        if let Ok(value) = HeaderValue::from_str(&Warnings::header_value(&warning)) {
            h.append(Warnings::HEADER, value);
        }
    }
    Ok(response)
}

/// `GET /api/v1/perfetto?process_id=…&begin=…&end=…`: a native process's
/// Perfetto trace over a time range (Unix nanoseconds or RFC 3339; from the
/// process's start and until now when left out), streamed.
async fn perfetto(
    State(service): State<Arc<QueryService>>,
    headers: HeaderMap,
    uri: http::Uri,
) -> Response {
    let trace = async {
        let tenant = service.tenancy.authorize_headers(&headers, Role::Read)?;
        let request = trace_request(&service.engine, &tenant, &uri).await?;
        let chunks = crate::perfetto::export(&service.engine, &tenant, request).await?;
        let mut response = Response::new(Body::from_stream(chunks));
        let h = response.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/octet-stream"),
        );
        let disposition = format!(
            "attachment; filename=\"{}.perfetto-trace\"",
            request.process_id
        );
        if let Ok(v) = HeaderValue::from_str(&disposition) {
            h.insert(header::CONTENT_DISPOSITION, v);
        }
        Ok::<_, QueryError>(response)
    };
    trace.await.unwrap_or_else(IntoResponse::into_response)
}

/// The trace a query string asks for.
async fn trace_request(
    engine: &Engine,
    tenant: &framelake_lake::ids::TenantId,
    uri: &http::Uri,
) -> Result<crate::perfetto::TraceRequest, QueryError> {
    let bad = |m: String| QueryError::BadQuery(m);
    let axum::extract::Query(pairs) =
        axum::extract::Query::<Vec<(String, String)>>::try_from_uri(uri)
            .map_err(|e| bad(e.body_text()))?;
    let mut process_id = None;
    let (mut begin, mut end) = (None, None);
    for (key, value) in pairs {
        match key.as_str() {
            "process_id" => {
                let bytes = hex_id(&value).ok_or_else(|| {
                    bad(format!("process_id must be 32 hex digits, got {value:?}"))
                })?;
                process_id = Some(framelake_lake::ids::ProcessId(bytes));
            }
            "begin" => begin = Some(parse_time("begin", &value)?),
            "end" => end = Some(parse_time("end", &value)?),
            other => {
                return Err(bad(format!(
                    "unknown parameter {other:?} (process_id, begin, end)"
                )));
            }
        }
    }
    let process_id = process_id.ok_or_else(|| bad("process_id is required".to_owned()))?;
    let begin = match begin {
        Some(b) => b,
        None => match engine.lake().native_process(tenant, &process_id).await {
            Ok(p) => p.process.start_time,
            Err(_) => {
                return Err(QueryError::NotFound(format!(
                    "no native process {process_id}"
                )));
            }
        },
    };
    let end = end.unwrap_or_else(framelake_lake::host::now_nanos);
    Ok(crate::perfetto::TraceRequest {
        process_id,
        begin,
        end,
    })
}

fn hex_id(text: &str) -> Option<[u8; 16]> {
    let text = text.trim();
    if text.len() != 32 {
        return None;
    }
    let mut id = [0u8; 16];
    for (i, byte) in id.iter_mut().enumerate() {
        *byte = u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(id)
}

/// Unix nanoseconds, or an RFC 3339 time.
fn parse_time(name: &str, value: &str) -> Result<i64, QueryError> {
    if let Ok(nanos) = value.parse::<i64>() {
        return Ok(nanos);
    }
    chrono::DateTime::parse_from_rfc3339(value)
        .ok()
        .and_then(|t| t.timestamp_nanos_opt())
        .ok_or_else(|| {
            QueryError::BadQuery(format!(
                "{name} must be Unix nanoseconds or an RFC 3339 time, got {value:?}"
            ))
        })
}

fn request_sql(content_type: Option<&str>, body: &[u8]) -> Result<String, QueryError> {
    let media = content_type
        .unwrap_or("application/json")
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    let sql = match media.as_str() {
        "application/json" => {
            serde_json::from_slice::<SqlRequest>(body)
                .map_err(|e| {
                    QueryError::BadQuery(format!("request body: expected {{\"sql\": \"…\"}}: {e}"))
                })?
                .sql
        }
        "application/sql" | "text/plain" => String::from_utf8(body.to_vec())
            .map_err(|_| QueryError::BadQuery("the SQL is not valid UTF-8".into()))?,
        other => {
            return Err(QueryError::UnsupportedMediaType(format!(
                "content type {other:?}: send application/json ({{\"sql\": \"…\"}}) or application/sql"
            )));
        }
    };
    if sql.trim().is_empty() {
        return Err(QueryError::BadQuery("no SQL given".into()));
    }
    Ok(sql)
}

/// A response format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Json,
    NdJson,
    Csv,
    Arrow,
}

impl Format {
    const ALL: [Format; 4] = [Format::Json, Format::NdJson, Format::Csv, Format::Arrow];

    fn content_type(self) -> &'static str {
        match self {
            Format::Json => "application/json",
            Format::NdJson => "application/x-ndjson",
            Format::Csv => "text/csv",
            Format::Arrow => "application/vnd.apache.arrow.stream",
        }
    }

    /// The first format `Accept` names that we produce (JSON for none or `*/*`).
    fn from_accept(accept: Option<&str>) -> Result<Format, QueryError> {
        let Some(accept) = accept else {
            return Ok(Format::Json);
        };
        for media in accept.split(',') {
            let media = media
                .split(';')
                .next()
                .unwrap_or_default()
                .trim()
                .to_ascii_lowercase();
            if media == "*/*" || media == "application/*" {
                return Ok(Format::Json);
            }
            if let Some(f) = Format::ALL.into_iter().find(|f| f.content_type() == media) {
                return Ok(f);
            }
            if media == "text/*" {
                return Ok(Format::Csv);
            }
        }
        Err(QueryError::NotAcceptable(format!(
            "Accept {accept:?}: results come as {}",
            Format::ALL.map(Format::content_type).join(", ")
        )))
    }
}

/// Turns batches into response bytes in one format.
enum Encoder {
    Json(arrow::json::Writer<Vec<u8>, arrow::json::writer::JsonArray>),
    NdJson(arrow::json::Writer<Vec<u8>, arrow::json::writer::LineDelimited>),
    /// Whether the header line is still to be written.
    Csv {
        header: bool,
        schema: SchemaRef,
    },
    Arrow(arrow::ipc::writer::StreamWriter<Vec<u8>>),
}

fn encode_error(e: arrow::error::ArrowError) -> QueryError {
    QueryError::Internal(format!("encoding the result: {e}"))
}

impl Encoder {
    fn new(format: Format, schema: &SchemaRef) -> Result<Self, QueryError> {
        let json = || {
            arrow::json::WriterBuilder::new()
                .with_explicit_nulls(true)
                .with_encoder_factory(Arc::new(AttributesAsObjects))
        };
        Ok(match format {
            Format::Json => Encoder::Json(json().build(Vec::new())),
            Format::NdJson => Encoder::NdJson(json().build(Vec::new())),
            Format::Csv => Encoder::Csv {
                header: true,
                schema: Arc::clone(schema),
            },
            Format::Arrow => Encoder::Arrow(
                arrow::ipc::writer::StreamWriter::try_new(Vec::new(), schema)
                    .map_err(encode_error)?,
            ),
        })
    }

    fn write(&mut self, batch: &RecordBatch) -> Result<Bytes, QueryError> {
        if let Encoder::Csv { header, .. } = self {
            let builder = arrow::csv::WriterBuilder::new().with_header(std::mem::take(header));
            let mut writer = builder.build(Vec::new());
            writer.write(&as_text(batch)?).map_err(encode_error)?;
            return Ok(writer.into_inner().into());
        }
        match self {
            Encoder::Json(w) => w.write(batch).map_err(encode_error)?,
            Encoder::NdJson(w) => w.write(batch).map_err(encode_error)?,
            Encoder::Csv { .. } => {}
            Encoder::Arrow(w) => w.write(batch).map_err(encode_error)?,
        }
        Ok(self.take())
    }

    fn finish(&mut self) -> Result<Bytes, QueryError> {
        match self {
            Encoder::Json(w) => w.finish().map_err(encode_error)?,
            Encoder::NdJson(w) => w.finish().map_err(encode_error)?,
            // A result without rows still has its header line.
            Encoder::Csv {
                header: true,
                schema,
            } => {
                let empty = RecordBatch::new_empty(Arc::clone(schema));
                return self.write(&empty);
            }
            Encoder::Csv { .. } => {}
            Encoder::Arrow(w) => w.finish().map_err(encode_error)?,
        }
        Ok(self.take())
    }

    fn take(&mut self) -> Bytes {
        let buffer = match self {
            Encoder::Json(w) => w.get_mut(),
            Encoder::NdJson(w) => w.get_mut(),
            Encoder::Csv { .. } => return Bytes::new(),
            Encoder::Arrow(w) => w.get_mut(),
        };
        Bytes::from(std::mem::take(buffer))
    }
}

/// CSV holds flat values only: ids become hex, nested values their text.
fn as_text(batch: &RecordBatch) -> Result<RecordBatch, QueryError> {
    let flat = |t: &DataType| {
        !matches!(
            t,
            DataType::Map(..)
                | DataType::List(_)
                | DataType::LargeList(_)
                | DataType::FixedSizeList(..)
                | DataType::Struct(_)
                | DataType::FixedSizeBinary(_)
                | DataType::Binary
                | DataType::LargeBinary
                | DataType::BinaryView
                | DataType::Union(..)
                | DataType::Dictionary(..)
        )
    };
    if batch.schema().fields().iter().all(|f| flat(f.data_type())) {
        return Ok(batch.clone());
    }
    let options = FormatOptions::default();
    let mut fields = Vec::new();
    let mut columns: Vec<ArrayRef> = Vec::new();
    for (field, column) in batch.schema().fields().iter().zip(batch.columns()) {
        if flat(field.data_type()) {
            fields.push(field.as_ref().clone());
            columns.push(Arc::clone(column));
        } else {
            let formatter =
                ArrayFormatter::try_new(column.as_ref(), &options).map_err(encode_error)?;
            let text: StringArray = (0..column.len())
                .map(|i| column.is_valid(i).then(|| formatter.value(i).to_string()))
                .collect();
            fields.push(Field::new(field.name(), DataType::Utf8, true));
            columns.push(Arc::new(text));
        }
    }
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).map_err(encode_error)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_picks_the_first_format_we_produce() {
        assert_eq!(Format::from_accept(None).ok(), Some(Format::Json));
        assert_eq!(
            Format::from_accept(Some("text/csv")).ok(),
            Some(Format::Csv)
        );
        assert_eq!(
            Format::from_accept(Some("application/xml, application/x-ndjson;q=0.9")).ok(),
            Some(Format::NdJson)
        );
        assert_eq!(
            Format::from_accept(Some("application/vnd.apache.arrow.stream")).ok(),
            Some(Format::Arrow)
        );
        assert_eq!(Format::from_accept(Some("*/*")).ok(), Some(Format::Json));
        assert!(matches!(
            Format::from_accept(Some("application/xml")),
            Err(QueryError::NotAcceptable(_))
        ));
    }

    #[test]
    fn sql_comes_as_json_or_as_text() {
        assert_eq!(
            request_sql(None, br#"{"sql": "SELECT 1"}"#).ok().as_deref(),
            Some("SELECT 1")
        );
        assert_eq!(
            request_sql(Some("application/sql; charset=utf-8"), b"SELECT 2")
                .ok()
                .as_deref(),
            Some("SELECT 2")
        );
        assert!(matches!(
            request_sql(None, b"SELECT 1"),
            Err(QueryError::BadQuery(_))
        ));
        assert!(matches!(
            request_sql(None, br#"{"sql": " "}"#),
            Err(QueryError::BadQuery(_))
        ));
        assert!(matches!(
            request_sql(Some("application/xml"), b"<q/>"),
            Err(QueryError::UnsupportedMediaType(_))
        ));
    }
}

/// Attribute maps in JSON results are objects of plain values
/// (`{"http.method": "GET", "retries": 2}`), as `attributes_json` writes
/// them, not maps of typed-value structs.
#[derive(Debug)]
struct AttributesAsObjects;

impl arrow::json::writer::EncoderFactory for AttributesAsObjects {
    fn make_default_encoder<'a>(
        &self,
        field: &'a arrow::datatypes::FieldRef,
        array: &'a dyn arrow::array::Array,
        _options: &'a arrow::json::writer::EncoderOptions,
    ) -> Result<Option<arrow::json::writer::NullableEncoder<'a>>, arrow::error::ArrowError> {
        if !crate::functions::is_attributes(field.data_type()) {
            return Ok(None);
        }
        let Some(map) = array.as_any().downcast_ref::<arrow::array::MapArray>() else {
            return Ok(None);
        };
        let encoder = AttributesEncoder { map };
        Ok(Some(arrow::json::writer::NullableEncoder::new(
            Box::new(encoder),
            arrow::array::Array::nulls(map).cloned(),
        )))
    }
}

struct AttributesEncoder<'a> {
    map: &'a arrow::array::MapArray,
}

impl arrow::json::writer::Encoder for AttributesEncoder<'_> {
    fn encode(&mut self, idx: usize, out: &mut Vec<u8>) {
        let value = crate::functions::map_json(self.map, idx);
        // Writing a serde_json value into a Vec cannot fail.
        let _ = serde_json::to_writer(out, &value);
    }
}
