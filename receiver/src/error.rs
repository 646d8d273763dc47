//! Ingestion errors and their protocol status, mapped in one place per edge:
//! HTTP status (with an OTLP `Status` body) and gRPC status.

use std::time::Duration;

use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};

use crate::otlp::Encoding;

/// Why a request was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// The payload does not parse or breaks the protocol: do not retry.
    #[error("{0}")]
    BadRequest(String),
    /// The content type or content encoding is not one we take.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// The body, or what it decompresses to, is larger than the limit.
    #[error("request body exceeds the limit of {limit} bytes{what}")]
    PayloadTooLarge { limit: usize, what: &'static str },
    /// A record (span, log record, data point) carries more than one may:
    /// the message names the limit. Do not retry.
    #[error("{0}")]
    RecordTooLarge(String),
    /// What the request refers to is not registered (a native block's
    /// stream, a stream's process): register it, then retry.
    #[error("{0}")]
    NotFound(String),
    /// No credentials, or credentials we do not know.
    #[error("{0}")]
    Unauthorized(String),
    /// Known credentials that may not do this.
    #[error("{0}")]
    Forbidden(String),
    /// The receiver holds as many request bodies as it may: the same request
    /// may be retried after `retry_after`.
    #[error("{message}")]
    Overloaded {
        message: String,
        retry_after: Duration,
    },
    /// We cannot take the data now; the same request may be retried later.
    #[error("{message}")]
    Unavailable {
        message: String,
        retry_after: Duration,
    },
    /// A bug or an unexpected failure.
    #[error("internal error: {0}")]
    Internal(String),
}

impl IngestError {
    /// The HTTP status the OTLP/HTTP specification gives this error.
    pub fn http_status(&self) -> StatusCode {
        match self {
            IngestError::BadRequest(_) => StatusCode::BAD_REQUEST,
            IngestError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            IngestError::NotFound(_) => StatusCode::NOT_FOUND,
            IngestError::PayloadTooLarge { .. } | IngestError::RecordTooLarge(_) => {
                StatusCode::PAYLOAD_TOO_LARGE
            }
            IngestError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            IngestError::Forbidden(_) => StatusCode::FORBIDDEN,
            IngestError::Overloaded { .. } => StatusCode::TOO_MANY_REQUESTS,
            IngestError::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            IngestError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The gRPC code the OTLP/gRPC specification gives this error.
    pub fn grpc_code(&self) -> tonic::Code {
        match self {
            IngestError::BadRequest(_)
            | IngestError::UnsupportedMediaType(_)
            | IngestError::RecordTooLarge(_) => tonic::Code::InvalidArgument,
            IngestError::PayloadTooLarge { .. } | IngestError::Overloaded { .. } => {
                tonic::Code::ResourceExhausted
            }
            IngestError::NotFound(_) => tonic::Code::NotFound,
            IngestError::Unauthorized(_) => tonic::Code::Unauthenticated,
            IngestError::Forbidden(_) => tonic::Code::PermissionDenied,
            IngestError::Unavailable { .. } => tonic::Code::Unavailable,
            IngestError::Internal(_) => tonic::Code::Internal,
        }
    }

    /// The OTLP/HTTP response: status, `Retry-After` where retrying helps, and a
    /// `google.rpc.Status` body in the request's encoding.
    pub fn into_http(self, encoding: Encoding) -> Response {
        let status = self.http_status();
        let body = encoding.encode_status(self.grpc_code() as i32, &self.to_string());
        let mut response = (
            status,
            [(header::CONTENT_TYPE, encoding.content_type())],
            body,
        )
            .into_response();
        self.add_retry_after(&mut response);
        response
    }

    /// How long to wait before retrying, for the errors a retry may mend.
    fn retry_after(&self) -> Option<Duration> {
        match self {
            IngestError::Overloaded { retry_after, .. }
            | IngestError::Unavailable { retry_after, .. } => Some(*retry_after),
            _ => None,
        }
    }

    /// The HTTP response of a protocol without a status body (the native
    /// one): the status and the reason as text.
    pub fn into_text(self) -> Response {
        let mut response = (self.http_status(), format!("{self}\n")).into_response();
        self.add_retry_after(&mut response);
        response
    }

    /// `Retry-After` on answers that may be retried later.
    fn add_retry_after(&self, response: &mut Response) {
        if let Some(retry_after) = self.retry_after() {
            let secs = retry_after.as_secs().max(1).to_string();
            response.headers_mut().insert(
                header::RETRY_AFTER,
                HeaderValue::from_str(&secs).expect("digits are a valid header"),
            );
        }
    }
}

impl From<framelake_lake::Error> for IngestError {
    fn from(e: framelake_lake::Error) -> Self {
        if e.is_retryable() {
            IngestError::Unavailable {
                message: format!("storage unavailable, retry later: {e}"),
                retry_after: Duration::from_secs(1),
            }
        } else {
            IngestError::Internal(e.to_string())
        }
    }
}

/// `google.rpc.RetryInfo`: how long a client should wait before retrying.
#[derive(Clone, PartialEq, prost::Message)]
struct RetryInfo {
    #[prost(message, optional, tag = "1")]
    retry_delay: Option<prost_types::Duration>,
}

/// `google.rpc.Status`: the body of OTLP/HTTP error responses, and what
/// `grpc-status-details-bin` carries.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct RpcStatus {
    #[prost(int32, tag = "1")]
    pub(crate) code: i32,
    #[prost(string, tag = "2")]
    pub(crate) message: String,
    #[prost(message, repeated, tag = "3")]
    pub(crate) details: Vec<prost_types::Any>,
}

impl From<IngestError> for tonic::Status {
    /// OTLP clients retry RESOURCE_EXHAUSTED only when the status carries a
    /// `RetryInfo`, so an overload says how long to wait.
    fn from(e: IngestError) -> Self {
        let (code, message) = (e.grpc_code(), e.to_string());
        match e.retry_after() {
            Some(delay) if code == tonic::Code::ResourceExhausted => {
                use prost::Message;
                let info = RetryInfo {
                    retry_delay: Some(prost_types::Duration {
                        seconds: delay.as_secs() as i64,
                        nanos: delay.subsec_nanos() as i32,
                    }),
                };
                let details = RpcStatus {
                    code: code as i32,
                    message: message.clone(),
                    details: vec![prost_types::Any {
                        type_url: "type.googleapis.com/google.rpc.RetryInfo".to_owned(),
                        value: info.encode_to_vec(),
                    }],
                };
                tonic::Status::with_details(code, message, details.encode_to_vec().into())
            }
            _ => tonic::Status::new(code, message),
        }
    }
}

impl IntoResponse for IngestError {
    fn into_response(self) -> Response {
        self.into_http(Encoding::Protobuf)
    }
}
