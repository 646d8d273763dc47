//! The lake's error type.

/// Errors of the lake: storage, catalog, format and capacity.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The caller gave something the lake cannot take (bad tenant, bad URL, bad config).
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// The object store failed; the write may be retried.
    #[error("object store: {0}")]
    ObjectStore(#[from] object_store::Error),
    /// The catalog database failed; the write may be retried.
    #[error("catalog: {0}")]
    Catalog(#[from] sqlx::Error),
    /// The embedded catalog's writer connection failed; the write may be retried.
    #[error("catalog: {0}")]
    EmbeddedCatalog(#[from] rusqlite::Error),
    /// A catalog migration failed at startup.
    #[error("catalog migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// Stored bytes do not match their checksum or format.
    #[error("corrupt data in {location}: {reason}")]
    Corrupt { location: String, reason: String },
    /// The writer has more pending data than its memory budget allows; retry later.
    #[error("writer is behind: {pending_bytes} bytes pending, budget {budget_bytes}")]
    Overloaded {
        pending_bytes: usize,
        budget_bytes: usize,
    },
    /// The writer is shutting down and takes no new data.
    #[error("writer is shutting down")]
    ShuttingDown,
    /// A flush failed; the data of this write was not acknowledged.
    #[error("flush failed: {0}")]
    FlushFailed(String),
    /// Local I/O failed.
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
}

impl Error {
    /// Whether a client should retry the same request later.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Error::ObjectStore(_)
                | Error::Catalog(_)
                | Error::EmbeddedCatalog(_)
                | Error::Overloaded { .. }
                | Error::ShuttingDown
                | Error::FlushFailed(_)
                | Error::Io(_)
        )
    }
}

/// Result with the lake's error.
pub type Result<T, E = Error> = std::result::Result<T, E>;
