//! Loki clients push and read at one URL. A process that runs the query
//! role without a receiver forwards `POST /loki/api/v1/push` to a
//! receiver's ingest listener (`--receiver-url`), headers (tenant, token,
//! content type and encoding) and body as they came, and answers with the
//! receiver's answer; without a receiver URL it says where to push.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;

/// The headers a push carries on to the receiver.
const FORWARDED: [&str; 5] = [
    "content-type",
    "content-encoding",
    "authorization",
    "x-scope-orgid",
    "user-agent",
];

#[derive(Clone)]
struct Receiver {
    url: Option<String>,
    client: reqwest::Client,
}

/// The push route of a query process; `receiver` is the ingest listener's
/// base URL, if any. Bodies up to `max_body` bytes (the receiver's limit).
pub(crate) fn loki_push(receiver: Option<String>, max_body: usize) -> Router {
    let state = Receiver {
        url: receiver.map(|u| u.trim_end_matches('/').to_owned()),
        client: reqwest::Client::new(),
    };
    Router::new()
        .route("/loki/api/v1/push", post(push))
        .layer(DefaultBodyLimit::max(max_body))
        .with_state(state)
}

async fn push(State(receiver): State<Receiver>, headers: HeaderMap, body: Bytes) -> Response {
    let Some(url) = &receiver.url else {
        return (
            StatusCode::NOT_FOUND,
            "this process runs the query role without a receiver: push to a receiver's \
             ingest listener (/loki/api/v1/push on :4318), or start it with --receiver-url\n",
        )
            .into_response();
    };
    let mut request = receiver
        .client
        .post(format!("{url}/loki/api/v1/push"))
        .body(body);
    for name in FORWARDED {
        for value in headers.get_all(name) {
            request = request.header(name, value);
        }
    }
    match request.send().await {
        Ok(answer) => {
            let status =
                StatusCode::from_u16(answer.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
            let mut forwarded = HeaderMap::new();
            for name in ["content-type", "retry-after"] {
                if let Some(v) = answer.headers().get(name) {
                    forwarded.insert(name, v.clone());
                }
            }
            let body = answer.bytes().await.unwrap_or_default();
            (status, forwarded, body).into_response()
        }
        // Not stored: the client retries, as it does with an unavailable receiver.
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("the receiver at {url} did not answer: {e}\n"),
        )
            .into_response(),
    }
}
