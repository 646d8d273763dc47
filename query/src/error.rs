//! Query errors and their protocol status, mapped in one place.

use std::time::Duration;

use datafusion::error::DataFusionError;
use http::StatusCode;

/// Why a query failed.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// The SQL does not parse, names what does not exist, or fails on its data
    /// (a bad cast, say): the caller must change it.
    #[error("{0}")]
    BadQuery(String),
    /// The SQL would write or reach outside the caller's data.
    #[error("{0}")]
    ReadOnly(String),
    /// What the request names does not exist (for the caller).
    #[error("{0}")]
    NotFound(String),
    /// The request's content type is not one we take.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// The client accepts no format we produce.
    #[error("{0}")]
    NotAcceptable(String),
    /// No credentials, or credentials we do not know.
    #[error("{0}")]
    Unauthorized(String),
    /// Known credentials that may not do this.
    #[error("{0}")]
    Forbidden(String),
    /// The query needed more memory than a query may use.
    #[error("{0}")]
    ResourcesExhausted(String),
    /// The query ran longer than a query may.
    #[error("query exceeded its time limit of {} s", .0.as_secs_f64())]
    Timeout(Duration),
    /// The catalog or the object store did not answer; the query may be retried.
    #[error("{0}")]
    Unavailable(String),
    /// A configured definition (an aggregate view's) that cannot work.
    #[error("{0}")]
    Config(String),
    /// A bug or an unexpected failure.
    #[error("internal error: {0}")]
    Internal(String),
}

impl QueryError {
    pub fn http_status(&self) -> StatusCode {
        match self {
            QueryError::BadQuery(_) | QueryError::ReadOnly(_) => StatusCode::BAD_REQUEST,
            QueryError::NotFound(_) => StatusCode::NOT_FOUND,
            QueryError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            QueryError::NotAcceptable(_) => StatusCode::NOT_ACCEPTABLE,
            QueryError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            QueryError::Forbidden(_) => StatusCode::FORBIDDEN,
            QueryError::ResourcesExhausted(_) => StatusCode::UNPROCESSABLE_ENTITY,
            QueryError::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
            QueryError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            QueryError::Config(_) | QueryError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

/// How a query error reads to a gRPC (FlightSQL) client: the codes matching
/// [`QueryError::http_status`].
impl From<QueryError> for tonic::Status {
    fn from(e: QueryError) -> Self {
        let message = e.to_string();
        match e {
            QueryError::BadQuery(_)
            | QueryError::ReadOnly(_)
            | QueryError::UnsupportedMediaType(_)
            | QueryError::NotAcceptable(_) => tonic::Status::invalid_argument(message),
            QueryError::NotFound(_) => tonic::Status::not_found(message),
            QueryError::Unauthorized(_) => tonic::Status::unauthenticated(message),
            QueryError::Forbidden(_) => tonic::Status::permission_denied(message),
            QueryError::ResourcesExhausted(_) => tonic::Status::resource_exhausted(message),
            QueryError::Timeout(_) => tonic::Status::deadline_exceeded(message),
            QueryError::Unavailable(_) => tonic::Status::unavailable(message),
            QueryError::Config(_) | QueryError::Internal(_) => tonic::Status::internal(message),
        }
    }
}

impl From<framelake_lake::tenancy::AuthError> for QueryError {
    fn from(e: framelake_lake::tenancy::AuthError) -> Self {
        use framelake_lake::tenancy::AuthError;
        match e {
            AuthError::Unauthenticated(m) => QueryError::Unauthorized(m),
            AuthError::Forbidden(m) => QueryError::Forbidden(m),
            AuthError::BadTenant(m) => QueryError::BadQuery(m),
        }
    }
}

impl From<framelake_lake::Error> for QueryError {
    fn from(e: framelake_lake::Error) -> Self {
        if e.is_retryable() {
            QueryError::Unavailable(e.to_string())
        } else {
            QueryError::Internal(e.to_string())
        }
    }
}

impl From<arrow::error::ArrowError> for QueryError {
    fn from(e: arrow::error::ArrowError) -> Self {
        QueryError::Internal(e.to_string())
    }
}

impl From<DataFusionError> for QueryError {
    fn from(e: DataFusionError) -> Self {
        let message = e.strip_backtrace();
        match e.find_root() {
            DataFusionError::ResourcesExhausted(m) => QueryError::ResourcesExhausted(format!(
                "the query needs more memory than a query may use: {m}"
            )),
            DataFusionError::External(inner) => match inner.downcast_ref::<QueryError>() {
                Some(QueryError::Timeout(limit)) => QueryError::Timeout(*limit),
                _ => match inner.downcast_ref::<framelake_lake::Error>() {
                    Some(lake) if lake.is_retryable() => QueryError::Unavailable(lake.to_string()),
                    Some(lake) => QueryError::Internal(lake.to_string()),
                    None => QueryError::Internal(message),
                },
            },
            DataFusionError::Internal(_)
            | DataFusionError::IoError(_)
            | DataFusionError::ObjectStore(_)
            | DataFusionError::ParquetError(_) => QueryError::Internal(message),
            // Parse and plan errors, unknown tables and columns, bad casts
            // and other failures of the query on its data.
            _ => QueryError::BadQuery(message),
        }
    }
}
