//! The SQLite catalog, for the embedded default: one process, one file.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::{TransactionBehavior, params};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteQueryResult,
    SqliteSynchronous,
};
use sqlx::{ConnectOptions, Sqlite, SqlitePool};

use super::sql::{
    Backend, INSERT_BLOCKS, INSERT_PROCESSES, INSERT_SEGMENTS, INSERT_STREAMS, SqlCatalog,
};
use super::{BlockingCommits, TenantCommit};
use crate::{Error, Result};

/// How long a statement waits for another connection's write lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// A catalog in one SQLite file.
pub type SqliteCatalog = SqlCatalog<Sqlite>;

impl SqlCatalog<Sqlite> {
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
            .busy_timeout(BUSY_TIMEOUT)
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
        let commits = rusqlite::Connection::open(path)?;
        commits.busy_timeout(BUSY_TIMEOUT)?;
        // As the pool's connections (see above); WAL mode is the file's.
        commits.execute_batch(
            "PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON; PRAGMA temp_store = MEMORY;",
        )?;
        Ok(SqlCatalog::new(pool, Arc::new(Mutex::new(commits))))
    }
}

// No row locks: a claim checks at commit that its rows are still as it read
// them. A transaction's reads share one snapshot in WAL mode.
impl Backend for Sqlite {
    const CLAIM_LOCK: &'static str = "";
    const SNAPSHOT: Option<&'static str> = None;
    /// The writer's group commits, on a connection of their own used in the
    /// calling thread ([`Catalog::blocking_commits`](super::Catalog::blocking_commits)):
    /// a flush writes its segment and commits its rows in one blocking task,
    /// where sqlx's connections run each statement on a worker thread (two
    /// thread wake-ups per statement, a dozen per commit). Being one
    /// connection, its page cache also stays valid from one commit to the next
    /// (a connection that another one wrote behind reads its pages again).
    type Commits = Arc<Mutex<rusqlite::Connection>>;

    /// Commits on a blocking thread (the writer commits in its own, through
    /// [`Backend::blocking_commits`]).
    async fn commit(_: &SqlitePool, conn: &Self::Commits, commits: &[TenantCommit]) -> Result<u64> {
        let (conn, commits) = (Arc::clone(conn), commits.to_vec());
        tokio::task::spawn_blocking(move || commit_on(&conn, &commits))
            .await
            .map_err(|e| Error::task("catalog commit", e))?
    }

    fn blocking_commits(conn: &Self::Commits) -> Option<Arc<dyn BlockingCommits>> {
        Some(Arc::new(Commits(Arc::clone(conn))))
    }

    fn rows_affected(result: &SqliteQueryResult) -> u64 {
        result.rows_affected()
    }
}

/// The writer's commits on the catalog's own connection, in the calling thread.
#[derive(Debug)]
struct Commits(Arc<Mutex<rusqlite::Connection>>);

impl BlockingCommits for Commits {
    fn commit(&self, commits: &[TenantCommit]) -> Result<u64> {
        commit_on(&self.0, commits)
    }
}

/// One transaction, taking the write lock at its start (a deferred one that
/// finds another writer at its first insert cannot wait for it); statements
/// prepared once per connection.
fn commit_on(conn: &Mutex<rusqlite::Connection>, commits: &[TenantCommit]) -> Result<u64> {
    let mut conn = conn
        .lock()
        .map_err(|_| Error::Internal("catalog commit connection poisoned".to_owned()))?;
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let mut new_blocks = 0;
    {
        let mut processes = tx.prepare_cached(&format!(
            "{INSERT_PROCESSES} VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT DO NOTHING"
        ))?;
        let mut streams = tx.prepare_cached(&format!(
            "{INSERT_STREAMS} VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT DO NOTHING"
        ))?;
        let mut segments = tx.prepare_cached(&format!(
            "{INSERT_SEGMENTS} VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"
        ))?;
        let mut blocks = tx.prepare_cached(&format!(
            "{INSERT_BLOCKS} VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, \
                 ?14, ?15, ?16) ON CONFLICT DO NOTHING"
        ))?;
        for c in commits {
            let tenant = c.tenant.as_str();
            for p in &c.processes {
                processes.execute(params![
                    tenant,
                    p.process_id.as_bytes().as_slice(),
                    p.source as i16,
                    p.service_name,
                    p.properties.as_ref(),
                    p.insert_time,
                ])?;
            }
            for s in &c.streams {
                streams.execute(params![
                    tenant,
                    s.stream_id.as_bytes().as_slice(),
                    s.process_id.as_bytes().as_slice(),
                    s.kind.code(),
                    s.name,
                    s.insert_time,
                ])?;
            }
            let s = &c.segment;
            segments.execute(params![
                tenant,
                s.segment_id.as_bytes().as_slice(),
                s.size as i64,
                s.block_count,
                s.insert_time,
                s.log.as_ref().map(|l| l.object.as_str()),
                s.log.as_ref().map_or(0, |l| l.offset as i64),
            ])?;
            for r in &c.blocks {
                new_blocks += blocks.execute(params![
                    tenant,
                    r.block_id.as_bytes().as_slice(),
                    r.kind.code(),
                    r.format,
                    r.process_id.as_bytes().as_slice(),
                    r.stream_id.as_bytes().as_slice(),
                    r.segment_id.as_bytes().as_slice(),
                    r.offset as i64,
                    r.length,
                    r.uncompressed_length,
                    r.codec.code(),
                    r.checksum as i64,
                    r.event_count,
                    r.min_time,
                    r.max_time,
                    r.insert_time,
                ])? as u64;
            }
        }
    }
    tx.commit()?;
    Ok(new_blocks)
}
