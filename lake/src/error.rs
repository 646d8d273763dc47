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
    /// The flush that held a write failed, for the reason given; the write was
    /// not acknowledged. Every write of that flush gets this error.
    #[error("flush failed: {reason}")]
    FlushFailed { reason: String, retryable: bool },
    /// Parquet could not be written, or a stored Parquet object not read.
    #[error("parquet: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),
    /// Rows could not be assembled or sorted.
    #[error("arrow: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
    /// An aggregate view's partitions could not be merged.
    #[error("merging {view}: {reason}")]
    Aggregate { view: String, reason: String },
    /// A fault of framelake itself (a task that panicked, a broken invariant).
    #[error("internal error: {0}")]
    Internal(String),
    /// Local I/O failed.
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
}

impl Error {
    /// Whether the same request may succeed later: storage that is down or
    /// busy, a writer that is behind or restarting. Bad input, corrupt data
    /// and faults of framelake itself are not mended by a retry.
    pub fn is_retryable(&self) -> bool {
        match self {
            // The catalog lists an object the store lacks, or a path or
            // request the store refuses: the same on every try.
            Error::ObjectStore(
                object_store::Error::NotFound { .. }
                | object_store::Error::InvalidPath { .. }
                | object_store::Error::NotSupported { .. }
                | object_store::Error::NotImplemented { .. },
            ) => false,
            Error::ObjectStore(_)
            | Error::Catalog(_)
            | Error::EmbeddedCatalog(_)
            | Error::Overloaded { .. }
            | Error::ShuttingDown
            | Error::Io(_) => true,
            Error::FlushFailed { retryable, .. } => *retryable,
            Error::InvalidInput(_)
            | Error::Migrate(_)
            | Error::Corrupt { .. }
            | Error::Parquet(_)
            | Error::Arrow(_)
            | Error::Aggregate { .. }
            | Error::Internal(_) => false,
        }
    }

    /// Whether an error of reading one block is the block's own, for good:
    /// its bytes do not read back, or its object is gone. Such a block is
    /// quarantined. Storage that is down is not a block fault: the block is
    /// read again later.
    pub fn is_block_fault(&self) -> bool {
        matches!(
            self,
            Error::Corrupt { .. } | Error::ObjectStore(object_store::Error::NotFound { .. })
        )
    }

    /// A blocking or background task that did not finish: cancelled (the
    /// runtime is stopping) or panicked (a fault, named by `what`).
    pub fn task(what: &str, e: tokio::task::JoinError) -> Self {
        if e.is_cancelled() {
            Error::ShuttingDown
        } else {
            Error::Internal(format!("{what} panicked: {e}"))
        }
    }
}

/// Result with the lake's error.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_what_a_retry_can_mend_is_retryable() {
        let down = Error::ObjectStore(object_store::Error::Generic {
            store: "S3",
            source: "connection refused".into(),
        });
        assert!(down.is_retryable());
        let missing = Error::ObjectStore(object_store::Error::NotFound {
            path: "t/segments/1".into(),
            source: "no such key".into(),
        });
        assert!(!missing.is_retryable());
        let corrupt = Error::Corrupt {
            location: "t/segments/1@0".into(),
            reason: "checksum mismatch".into(),
        };
        assert!(!corrupt.is_retryable());
        assert!(!Error::Internal("a task panicked".into()).is_retryable());
        assert!(
            !Error::Parquet(parquet::errors::ParquetError::General("bad".into())).is_retryable()
        );
        // A flush's outcome keeps whether its cause can be retried.
        for retryable in [true, false] {
            let e = Error::FlushFailed {
                reason: "x".into(),
                retryable,
            };
            assert_eq!(e.is_retryable(), retryable);
        }
    }

    #[tokio::test]
    async fn a_panicked_task_is_a_fault_and_a_cancelled_one_a_shutdown() {
        let panicked = tokio::spawn(async { panic!("boom") })
            .await
            .expect_err("the task panics");
        let e = Error::task("encoding", panicked);
        assert!(
            matches!(&e, Error::Internal(m) if m.contains("encoding panicked")),
            "{e}"
        );
        let pending = tokio::spawn(std::future::pending::<()>());
        pending.abort();
        let cancelled = pending.await.expect_err("the task was aborted");
        assert!(matches!(
            Error::task("encoding", cancelled),
            Error::ShuttingDown
        ));
    }
}
