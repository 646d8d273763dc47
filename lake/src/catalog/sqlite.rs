//! The SQLite catalog, for the embedded default: one process, one file.

use std::path::Path;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{ConnectOptions, Sqlite, SqlitePool};

use super::sql::impl_sql_catalog;
use crate::Result;

/// A catalog in one SQLite file.
#[derive(Debug, Clone)]
pub struct SqliteCatalog {
    pool: SqlitePool,
    /// One connection for the writer's group commits (SQLite writes one
    /// transaction at a time anyway). Its page cache stays valid from one
    /// commit to the next: a connection that another one wrote behind has its
    /// cache dropped and reads the pages again (two dozen reads per commit when
    /// commits went round the pool).
    commits: SqlitePool,
}

impl SqliteCatalog {
    /// Opens (creating if needed) the catalog file and applies pending migrations.
    pub async fn open(path: &Path) -> Result<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // A commit is not synced (the WAL is, at each checkpoint): a flush's
            // segment is synced before its commit, and at startup the receiver
            // records stored segments the catalog lacks (`recovery`), so an
            // acknowledged write outlives a power loss without a sync per commit.
            // Safe from corruption in WAL mode.
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true)
            // Statement journals (a multi-row INSERT that may hit a constraint
            // keeps one) in memory, not in a temporary file created and
            // deleted for each statement.
            .pragma("temp_store", "memory")
            .log_statements(tracing::log::LevelFilter::Trace);
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options.clone())
            .await?;
        sqlx::migrate!("./migrations/sqlite").run(&pool).await?;
        let commits = SqlitePoolOptions::new()
            .max_connections(1)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options)
            .await?;
        Ok(SqliteCatalog { pool, commits })
    }
}

// No row locks: a claim checks at commit that its blocks are still pending.
// A transaction's reads share one snapshot in WAL mode.
impl_sql_catalog!(SqliteCatalog, Sqlite, claim_lock: "", snapshot: None::<&str>);
