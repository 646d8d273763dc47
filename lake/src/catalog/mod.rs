//! The catalog: what the lake holds, per tenant. One interface, two backends:
//! PostgreSQL for clusters and SQLite for the embedded default.
//!
//! Times are nanoseconds since the Unix epoch (UTC) in 64-bit integers; ids are
//! 16 raw bytes. Schema changes are numbered migrations under `migrations/`,
//! one set per backend, applied when the catalog opens.

mod postgres;
mod sql;
mod sqlite;

use std::fmt::Debug;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;

pub use self::postgres::PostgresCatalog;
pub use self::sql::{Backend, SqlCatalog};
pub use self::sqlite::SqliteCatalog;
use crate::ids::{BlockId, BlockKind, PartitionId, ProcessId, SegmentId, StreamId, TenantId};
use crate::segment::{Codec, IndexEntry};
use crate::{Error, Result};

/// Where telemetry of a process came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(i16)]
pub enum Source {
    /// An OpenTelemetry resource.
    Otlp = 1,
    /// A process of a native SDK (its properties: the process message as sent).
    Native = 2,
}

impl Source {
    pub(crate) fn from_code(code: i16) -> Result<Self> {
        match code {
            1 => Ok(Source::Otlp),
            2 => Ok(Source::Native),
            other => Err(Error::InvalidInput(format!(
                "unknown process source {other}"
            ))),
        }
    }
}

/// A process: a native process, or an OTLP resource.
#[derive(Debug, Clone, PartialEq)]
pub struct ProcessRecord {
    pub process_id: ProcessId,
    pub source: Source,
    pub service_name: String,
    /// The process description as sent (for OTLP, the encoded `Resource`).
    pub properties: Bytes,
    pub insert_time: i64,
}

/// A stream of a process: a thread, or one OTLP signal of a resource.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamRecord {
    pub stream_id: StreamId,
    pub process_id: ProcessId,
    pub kind: BlockKind,
    pub name: String,
    pub insert_time: i64,
}

/// A segment: an object of its own, or a record of a log object.
#[derive(Debug, Clone, PartialEq)]
pub struct SegmentRecord {
    pub segment_id: SegmentId,
    pub size: u64,
    pub block_count: u32,
    pub insert_time: i64,
    /// The log holding the segment and where the segment starts in it; `None`
    /// when the segment is an object of its own ([`SegmentPath`](crate::paths::SegmentPath)).
    pub log: Option<LogLocation>,
}

/// Where a segment lies in a log object (`seglog.rs`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLocation {
    /// The log's object key.
    pub object: String,
    /// Offset of the segment's first byte in the log.
    pub offset: u64,
}

/// A block: a byte range of a segment holding one kind of payload.
#[derive(Debug, Clone, PartialEq)]
pub struct BlockRecord {
    pub block_id: BlockId,
    pub kind: BlockKind,
    /// Version of the payload format for this kind.
    pub format: i16,
    pub process_id: ProcessId,
    pub stream_id: StreamId,
    pub segment_id: SegmentId,
    pub offset: u64,
    pub length: u32,
    pub uncompressed_length: u32,
    pub codec: Codec,
    pub checksum: u64,
    pub event_count: u32,
    pub min_time: i64,
    pub max_time: i64,
    pub insert_time: i64,
    /// Where the block's segment lies when it is a record of a log, as
    /// [`SegmentRecord::log`] (`offset` stays relative to the segment). Read
    /// from the catalog; the writer's rows leave it to their segment.
    pub segment_log: Option<LogLocation>,
    /// Why the block is quarantined: its stored bytes do not read back
    /// (checksum, compression, payload format) or its object is gone.
    /// Materialization and queries leave a quarantined block out.
    pub quarantine: Option<String>,
}

impl BlockRecord {
    /// The row of a block a segment's index lists, with what the index does not hold.
    pub fn of_entry(
        entry: &IndexEntry,
        segment_id: SegmentId,
        format: i16,
        process_id: ProcessId,
        stream_id: StreamId,
        insert_time: i64,
    ) -> Self {
        BlockRecord {
            block_id: entry.block_id,
            kind: entry.kind,
            format,
            process_id,
            stream_id,
            segment_id,
            offset: entry.offset,
            length: entry.length,
            uncompressed_length: entry.uncompressed_length,
            codec: entry.codec,
            checksum: entry.checksum,
            event_count: entry.event_count,
            min_time: entry.min_time,
            max_time: entry.max_time,
            insert_time,
            segment_log: None,
            quarantine: None,
        }
    }
}

/// Everything one flush writes for one tenant, committed atomically.
#[derive(Debug, Clone)]
pub struct TenantCommit {
    pub tenant: TenantId,
    pub segment: SegmentRecord,
    pub processes: Vec<ProcessRecord>,
    pub streams: Vec<StreamRecord>,
    pub blocks: Vec<BlockRecord>,
}

/// A Parquet partition: rows of one view, materialized from blocks or
/// compacted from partitions.
#[derive(Debug, Clone, PartialEq)]
pub struct PartitionRecord {
    pub partition_id: PartitionId,
    /// The view's name (`log_entries`, …).
    pub view: String,
    /// 0 when materialized from blocks; compaction makes higher levels.
    pub level: i16,
    /// Event time range of its rows.
    pub min_time: i64,
    pub max_time: i64,
    /// Insert time range of the blocks its rows came from.
    pub min_insert_time: i64,
    pub max_insert_time: i64,
    pub row_count: u64,
    /// Bytes of the Parquet object.
    pub size: u64,
    pub insert_time: i64,
}

impl PartitionRecord {
    /// Where its object is.
    pub fn path(&self, tenant: &TenantId) -> object_store::path::Path {
        crate::paths::partition_path(tenant, &self.view, self.min_insert_time, self.partition_id)
    }
}

/// What a query reads of a view, as of one moment: its partitions and the
/// blocks not yet in one. Every event is in exactly one of them.
///
/// Asked for an aggregate view's data, `reduced` holds the aggregate's own
/// partitions, and `partitions` only the view's partitions it has not
/// reduced: every event is then counted in exactly one of the three.
#[derive(Debug, Clone, Default)]
pub struct ViewSnapshot {
    pub partitions: Vec<PartitionRecord>,
    pub blocks: Vec<BlockRecord>,
    pub reduced: Vec<PartitionRecord>,
    /// Blocks of the range that are quarantined: their events are missing
    /// from the answer, which should say so.
    pub quarantined: Vec<BlockRecord>,
}

/// What [`Catalog::snapshot`] reads.
#[derive(Debug, Clone, Default)]
pub struct SnapshotRequest<'a> {
    /// The view whose partitions are read.
    pub view: &'a str,
    /// The block kinds its pending rows come from.
    pub kinds: &'a [BlockKind],
    /// Only blocks of these processes; all when empty (partitions mix
    /// processes: their rows are pruned by the Parquet statistics).
    pub processes: &'a [ProcessId],
    /// Only partitions and blocks overlapping this event time range.
    pub time_range: Option<(i64, i64)>,
    /// An aggregate view of `view` and the time range of its rows to read:
    /// the view's partitions it reduced are left out.
    pub aggregate: Option<(&'a str, Option<(i64, i64)>)>,
}

/// Which partitions [`Catalog::claim_partitions`] claims.
#[derive(Debug, Clone, Default)]
pub struct PartitionFilter {
    pub view: String,
    /// Levels, inclusive.
    pub min_level: i16,
    pub max_level: i16,
    /// Only partitions whose earliest rows were inserted before this time.
    pub inserted_before: Option<i64>,
    /// Only partitions this aggregate view has not reduced yet.
    pub not_reduced_into: Option<String>,
    /// Only partitions every one of these aggregate views has reduced.
    pub reduced_into: Vec<String>,
    /// At most this many, oldest insert first.
    pub limit: usize,
}

/// New partitions replacing claimed ones: the claimed partitions' blocks
/// point to it afterwards, and the aggregates that had reduced every one of
/// them count it as reduced.
#[derive(Debug, Clone)]
pub struct Replacement {
    pub inputs: Vec<PartitionId>,
    pub output: PartitionRecord,
}

/// An aggregate view's new partition, holding what it reduced of the claimed
/// partitions `sources` (of the view it aggregates).
#[derive(Debug, Clone)]
pub struct Reduction {
    pub output: PartitionRecord,
    pub sources: Vec<PartitionId>,
}

/// What a maintainer did with the partitions it claimed, committed at once.
#[derive(Debug, Clone, Default)]
pub struct PartitionChange {
    pub replacements: Vec<Replacement>,
    /// Claimed partitions moved to another level as they are.
    pub relevels: Vec<(PartitionId, i16)>,
    pub reductions: Vec<Reduction>,
    /// When the replaced partitions' objects may be deleted (no query that
    /// listed them can still be reading).
    pub delete_after: i64,
}

/// Partitions claimed by one maintainer, for compaction or reduction.
#[async_trait]
pub trait PartitionClaim: Send + Debug {
    /// The claimed partitions, oldest insert first.
    fn partitions(&self) -> &[PartitionRecord];

    /// Commits the change. `false` (and nothing recorded) when another
    /// maintainer changed one of the partitions first.
    async fn commit(self: Box<Self>, change: &PartitionChange) -> Result<bool>;
}

/// An object to delete, once its time has come.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Garbage {
    pub tenant: TenantId,
    pub path: String,
}

/// Blocks claimed for materialization by one maintainer.
#[async_trait]
pub trait Claim: Send + Debug {
    /// The claimed blocks, oldest insert first.
    fn blocks(&self) -> &[BlockRecord];

    /// Keeps only the first `n` blocks in the claim (the rest stay pending).
    fn truncate(&mut self, n: usize);

    /// Records the partition that holds the claimed blocks' rows. `false` (and
    /// nothing recorded) when another maintainer materialized some of them first.
    async fn commit(self: Box<Self>, partition: &PartitionRecord) -> Result<bool>;

    /// Quarantines one of the claimed blocks (see [`BlockRecord::quarantine`])
    /// and gives the others back, pending.
    async fn quarantine(self: Box<Self>, block: BlockId, reason: &str) -> Result<()>;
}

/// [`Catalog::commit`] in the calling thread (see [`Catalog::blocking_commits`]).
pub trait BlockingCommits: Debug + Send + Sync {
    fn commit(&self, commits: &[TenantCommit]) -> Result<u64>;
}

/// What [`Catalog::expire`] removed from the catalog: the objects to delete.
#[derive(Debug, Clone, Default)]
pub struct Expired {
    pub partitions: Vec<PartitionRecord>,
    pub segments: Vec<SegmentId>,
    pub blocks: u64,
}

/// Which blocks to list.
#[derive(Debug, Clone, Default)]
pub struct BlockFilter {
    /// Only these kinds; all when empty.
    pub kinds: Vec<BlockKind>,
    /// Only blocks of these processes; all when empty.
    pub processes: Vec<ProcessId>,
    /// Only blocks whose event time range overlaps `[min_time, max_time]`.
    pub time_range: Option<(i64, i64)>,
    /// Only blocks inserted after this time (exclusive).
    pub inserted_after: Option<i64>,
}

/// The catalog interface. Every call is scoped to one tenant, except `commit`,
/// whose parts each name theirs.
#[async_trait]
pub trait Catalog: Debug + Send + Sync {
    /// Records segments with their processes, streams and blocks in one transaction.
    /// Known processes, streams and blocks are left as they are (idempotent);
    /// returns how many blocks were new.
    async fn commit(&self, commits: &[TenantCommit]) -> Result<u64>;

    /// For a catalog in this process (SQLite), [`Catalog::commit`] in the
    /// calling thread, which may block: a flush writes its segment and commits
    /// its rows in one thread, with no hand-off per statement. `None` for
    /// catalogs reached over the network, which `commit` serves. The writer
    /// asks once, at start.
    fn blocking_commits(&self) -> Option<Arc<dyn BlockingCommits>>;

    /// Lists blocks of a tenant, oldest insert first, in segment order.
    async fn blocks(&self, tenant: &TenantId, filter: &BlockFilter) -> Result<Vec<BlockRecord>>;

    /// Tenants with stored segments.
    async fn tenants(&self) -> Result<Vec<TenantId>>;

    /// Removes, in one transaction, a tenant's partitions, blocks and segments
    /// inserted before `cutoff` (partitions: all of whose rows were), and says
    /// which objects to delete.
    async fn expire(&self, tenant: &TenantId, cutoff: i64) -> Result<Expired>;

    /// Tenants with blocks not yet materialized (and not quarantined).
    async fn pending_tenants(&self) -> Result<Vec<TenantId>>;

    /// Quarantines a pending block (see [`BlockRecord::quarantine`]).
    async fn quarantine(&self, tenant: &TenantId, block: BlockId, reason: &str) -> Result<()>;

    /// Claims up to `limit` blocks of a tenant that the filter selects, not
    /// yet materialized nor quarantined, oldest first. Blocks another maintainer has claimed
    /// are skipped where the backend can tell (PostgreSQL row locks).
    async fn claim_pending(
        &self,
        tenant: &TenantId,
        filter: &BlockFilter,
        limit: usize,
    ) -> Result<Box<dyn Claim>>;

    /// The partitions of a view and its blocks not yet materialized, overlapping
    /// a time range, read in one snapshot (see [`ViewSnapshot`]).
    async fn snapshot(
        &self,
        tenant: &TenantId,
        request: &SnapshotRequest<'_>,
    ) -> Result<ViewSnapshot>;

    /// Tenants with partitions of a view.
    async fn partition_tenants(&self, view: &str) -> Result<Vec<TenantId>>;

    /// Claims partitions of a tenant. Partitions another maintainer has
    /// claimed are skipped where the backend can tell (PostgreSQL row locks);
    /// elsewhere the commit checks.
    async fn claim_partitions(
        &self,
        tenant: &TenantId,
        filter: &PartitionFilter,
    ) -> Result<Box<dyn PartitionClaim>>;

    /// Objects whose deletion is due at `now`, at most `limit`.
    async fn garbage(&self, now: i64, limit: usize) -> Result<Vec<Garbage>>;

    /// Forgets objects that were deleted.
    async fn forget_garbage(&self, deleted: &[Garbage]) -> Result<()>;

    /// Lists the partitions of a tenant (of one view, or all).
    async fn partitions(
        &self,
        tenant: &TenantId,
        view: Option<&str>,
    ) -> Result<Vec<PartitionRecord>>;

    /// Lists the processes of a tenant.
    async fn processes(&self, tenant: &TenantId) -> Result<Vec<ProcessRecord>>;

    /// Lists the processes of a tenant with blocks of these kinds (any
    /// kind when empty) whose events overlap a time range (inclusive).
    async fn active_processes(
        &self,
        tenant: &TenantId,
        kinds: &[BlockKind],
        time_range: (i64, i64),
    ) -> Result<Vec<ProcessRecord>>;

    /// One process of a tenant, if recorded.
    async fn process(&self, tenant: &TenantId, id: &ProcessId) -> Result<Option<ProcessRecord>>;

    /// Lists the streams of a tenant.
    async fn streams(&self, tenant: &TenantId) -> Result<Vec<StreamRecord>>;

    /// One stream of a tenant, if recorded.
    async fn stream(&self, tenant: &TenantId, id: &StreamId) -> Result<Option<StreamRecord>>;

    /// Lists the segments of a tenant.
    async fn segments(&self, tenant: &TenantId) -> Result<Vec<SegmentRecord>>;

    /// Which of these segments of a tenant the catalog records.
    async fn known_segments(
        &self,
        tenant: &TenantId,
        segments: &[SegmentId],
    ) -> Result<std::collections::HashSet<SegmentId>>;

    /// Checks that the database answers.
    async fn ping(&self) -> Result<()>;
}

/// Opens the catalog a URL names (`postgres://…` or `sqlite://…`) and applies migrations.
pub async fn open(url: &str) -> Result<Arc<dyn Catalog>> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Arc::new(PostgresCatalog::connect(url).await?))
    } else if let Some(path) = url.strip_prefix("sqlite://") {
        Ok(Arc::new(
            SqliteCatalog::open(std::path::Path::new(path)).await?,
        ))
    } else {
        Err(Error::InvalidInput(format!(
            "database url {url:?}: expected postgres://… or sqlite://path"
        )))
    }
}
