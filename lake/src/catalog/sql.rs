//! The SQL both backends share. The statements are the same text (QueryBuilder
//! writes each backend's placeholders) and the code is generic over the
//! database; what differs per backend is its [`Backend`] implementation: how
//! a claim locks rows, how a transaction reads one snapshot, and how the
//! writer's rows are committed.

use std::collections::{BTreeSet, HashSet};
use std::fmt;
use std::future::Future;
use std::sync::Arc;

use async_trait::async_trait;
use sqlx::{
    Database, Encode, Executor, FromRow, IntoArguments, Pool, QueryBuilder, Transaction, Type,
};

use super::{
    BlockFilter, BlockRecord, BlockingCommits, Catalog, Claim, Expired, Garbage, LogLocation,
    PartitionChange, PartitionClaim, PartitionFilter, PartitionRecord, ProcessRecord,
    SegmentRecord, SnapshotRequest, Source, StreamRecord, TenantCommit, ViewSnapshot,
};
use crate::ids::{BlockId, BlockKind, PartitionId, ProcessId, SegmentId, StreamId, TenantId};
use crate::paths::SegmentPath;
use crate::segment::Codec;
use crate::{Error, Result};

/// Rows per multi-row INSERT: 16 binds a row stays under both backends' bind limits.
pub(crate) const INSERT_CHUNK: usize = 1000;

/// The writer's inserts, up to their values: both backends' commits use them.
pub(crate) const INSERT_PROCESSES: &str =
    "INSERT INTO processes (tenant, process_id, source, service_name, properties, insert_time)";
pub(crate) const INSERT_STREAMS: &str =
    "INSERT INTO streams (tenant, stream_id, process_id, kind, name, insert_time)";
pub(crate) const INSERT_SEGMENTS: &str = "INSERT INTO segments (tenant, segment_id, size, \
     block_count, insert_time, object, object_offset)";
pub(crate) const INSERT_BLOCKS: &str = "INSERT INTO blocks (tenant, block_id, kind, format, \
     process_id, stream_id, segment_id, byte_offset, byte_length, uncompressed_length, codec, \
     checksum, event_count, min_time, max_time, insert_time)";

/// A database a catalog lives in: what differs from one backend to the other.
pub trait Backend: Database<Arguments: IntoArguments<Self>> {
    /// Ends the SELECT that claims blocks or partitions: row locks, if the
    /// backend has them (the claim then holds its transaction until it
    /// commits); without, a claim checks at commit that nothing was taken
    /// meanwhile.
    const CLAIM_LOCK: &'static str;
    /// The statement, if any, that gives a transaction one snapshot for all its reads.
    const SNAPSHOT: Option<&'static str>;
    /// What the writer's commits use besides the pool.
    type Commits: fmt::Debug + Send + Sync + 'static;

    /// [`Catalog::commit`].
    fn commit(
        pool: &Pool<Self>,
        commits: &Self::Commits,
        rows: &[TenantCommit],
    ) -> impl Future<Output = Result<u64>> + Send;

    /// [`Catalog::blocking_commits`].
    fn blocking_commits(commits: &Self::Commits) -> Option<Arc<dyn BlockingCommits>>;

    /// The rows a statement changed.
    fn rows_affected(result: &Self::QueryResult) -> u64;
}

/// A catalog in a SQL database: [`PostgresCatalog`](super::PostgresCatalog)
/// or [`SqliteCatalog`](super::SqliteCatalog).
pub struct SqlCatalog<DB: Backend> {
    pool: Pool<DB>,
    commits: DB::Commits,
}

impl<DB: Backend> SqlCatalog<DB> {
    pub(super) fn new(pool: Pool<DB>, commits: DB::Commits) -> Self {
        SqlCatalog { pool, commits }
    }
}

impl<DB: Backend> fmt::Debug for SqlCatalog<DB> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqlCatalog")
            .field("pool", &self.pool)
            .field("commits", &self.commits)
            .finish()
    }
}

/// Row types as the shared statements read them.
#[derive(FromRow)]
struct RawBlock {
    block_id: Vec<u8>,
    kind: i16,
    format: i16,
    process_id: Vec<u8>,
    stream_id: Vec<u8>,
    segment_id: Vec<u8>,
    byte_offset: i64,
    byte_length: i64,
    uncompressed_length: i64,
    codec: i16,
    checksum: i64,
    event_count: i64,
    min_time: i64,
    max_time: i64,
    insert_time: i64,
    segment_object: Option<String>,
    segment_offset: Option<i64>,
    quarantine_error: Option<String>,
}

#[derive(FromRow)]
struct RawPartition {
    partition_id: Vec<u8>,
    view_name: String,
    level: i16,
    min_time: i64,
    max_time: i64,
    min_insert_time: i64,
    max_insert_time: i64,
    row_count: i64,
    size: i64,
    insert_time: i64,
}

#[derive(FromRow)]
struct RawProcess {
    process_id: Vec<u8>,
    source: i16,
    service_name: String,
    properties: Vec<u8>,
    insert_time: i64,
}

#[derive(FromRow)]
struct RawStream {
    stream_id: Vec<u8>,
    process_id: Vec<u8>,
    kind: i16,
    name: String,
    insert_time: i64,
}

#[derive(FromRow)]
struct RawSegment {
    segment_id: Vec<u8>,
    size: i64,
    block_count: i32,
    insert_time: i64,
    object: Option<String>,
    object_offset: i64,
}

#[derive(FromRow)]
struct RawSegmentObject {
    segment_id: Vec<u8>,
    object: Option<String>,
}

#[derive(FromRow)]
struct RawGarbage {
    tenant: String,
    path: String,
}

/// A column narrowed to what the record holds, or an error naming it.
fn narrow<T: TryFrom<i64>>(v: i64, what: &str) -> Result<T> {
    T::try_from(v).map_err(|_| Error::InvalidInput(format!("catalog {what} out of range: {v}")))
}

impl TryFrom<RawBlock> for BlockRecord {
    type Error = Error;

    fn try_from(r: RawBlock) -> Result<Self> {
        Ok(BlockRecord {
            block_id: BlockId::from_slice(&r.block_id)?,
            kind: BlockKind::from_code(r.kind)?,
            format: r.format,
            process_id: ProcessId::from_slice(&r.process_id)?,
            stream_id: StreamId::from_slice(&r.stream_id)?,
            segment_id: SegmentId::from_slice(&r.segment_id)?,
            offset: narrow(r.byte_offset, "block offset")?,
            length: narrow(r.byte_length, "block length")?,
            uncompressed_length: narrow(r.uncompressed_length, "uncompressed length")?,
            codec: Codec::from_code(narrow(i64::from(r.codec), "codec")?)?,
            checksum: r.checksum as u64,
            event_count: narrow(r.event_count, "event count")?,
            min_time: r.min_time,
            max_time: r.max_time,
            insert_time: r.insert_time,
            segment_log: r.segment_object.map(|object| LogLocation {
                object,
                offset: r.segment_offset.unwrap_or(0) as u64,
            }),
            quarantine: r.quarantine_error,
        })
    }
}

impl TryFrom<RawPartition> for PartitionRecord {
    type Error = Error;

    fn try_from(r: RawPartition) -> Result<Self> {
        Ok(PartitionRecord {
            partition_id: PartitionId::from_slice(&r.partition_id)?,
            view: r.view_name,
            level: r.level,
            min_time: r.min_time,
            max_time: r.max_time,
            min_insert_time: r.min_insert_time,
            max_insert_time: r.max_insert_time,
            row_count: narrow(r.row_count, "row count")?,
            size: narrow(r.size, "partition size")?,
            insert_time: r.insert_time,
        })
    }
}

impl TryFrom<RawProcess> for ProcessRecord {
    type Error = Error;

    fn try_from(r: RawProcess) -> Result<Self> {
        Ok(ProcessRecord {
            process_id: ProcessId::from_slice(&r.process_id)?,
            source: Source::from_code(r.source)?,
            service_name: r.service_name,
            properties: r.properties.into(),
            insert_time: r.insert_time,
        })
    }
}

impl TryFrom<RawStream> for StreamRecord {
    type Error = Error;

    fn try_from(r: RawStream) -> Result<Self> {
        Ok(StreamRecord {
            stream_id: StreamId::from_slice(&r.stream_id)?,
            process_id: ProcessId::from_slice(&r.process_id)?,
            kind: BlockKind::from_code(r.kind)?,
            name: r.name,
            insert_time: r.insert_time,
        })
    }
}

impl TryFrom<RawSegment> for SegmentRecord {
    type Error = Error;

    fn try_from(r: RawSegment) -> Result<Self> {
        Ok(SegmentRecord {
            segment_id: SegmentId::from_slice(&r.segment_id)?,
            size: narrow(r.size, "segment size")?,
            block_count: narrow(i64::from(r.block_count), "block count")?,
            insert_time: r.insert_time,
            log: r.object.map(|object| LogLocation {
                object,
                offset: r.object_offset as u64,
            }),
        })
    }
}

/// Rows read as records.
fn records<R, T: TryFrom<R, Error = Error>>(rows: Vec<R>) -> Result<Vec<T>> {
    rows.into_iter().map(T::try_from).collect()
}

/// Tenant names as read from a one-column query.
fn tenants(rows: Vec<(String,)>) -> Result<Vec<TenantId>> {
    rows.into_iter().map(|(t,)| t.parse()).collect()
}

/// The columns [`RawBlock`] reads, of a tenant's blocks.
const SELECT_BLOCKS: &str = "SELECT block_id, kind, format, process_id, stream_id, segment_id, \
     byte_offset, byte_length, uncompressed_length, codec, checksum, event_count, min_time, \
     max_time, insert_time, \
     (SELECT s.object FROM segments s WHERE s.tenant = blocks.tenant \
      AND s.segment_id = blocks.segment_id) AS segment_object, \
     (SELECT s.object_offset FROM segments s WHERE s.tenant = blocks.tenant \
      AND s.segment_id = blocks.segment_id) AS segment_offset, quarantine_error \
     FROM blocks WHERE tenant = ";
/// The order blocks are listed and claimed in: oldest insert first, in segment order.
const BLOCK_ORDER: &str = " ORDER BY insert_time, segment_id, byte_offset";
/// The columns [`RawPartition`] reads, of a tenant's partitions.
const SELECT_PARTITIONS: &str = "SELECT partition_id, view_name, level, min_time, max_time, \
     min_insert_time, max_insert_time, row_count, size, insert_time FROM partitions WHERE tenant = ";
/// The order partitions are listed and claimed in: oldest insert first.
const PARTITION_ORDER: &str = " ORDER BY min_insert_time, partition_id";
/// The columns [`RawProcess`] reads, of a tenant's processes.
const SELECT_PROCESSES: &str = "SELECT process_id, source, service_name, properties, insert_time \
     FROM processes WHERE tenant = ";
/// The columns [`RawStream`] reads, of a tenant's streams.
const SELECT_STREAMS: &str =
    "SELECT stream_id, process_id, kind, name, insert_time FROM streams WHERE tenant = ";
/// The filter of partitions an aggregate has not reduced yet (bind the aggregate's view next).
const NOT_REDUCED_INTO: &str = " AND NOT EXISTS (SELECT 1 FROM reductions r \
     WHERE r.tenant = partitions.tenant AND r.partition_id = partitions.partition_id \
     AND r.target = ";

/// Blocks of a tenant: of these kinds (all when empty), of these processes
/// (all when empty), overlapping a time range, only those not yet in a
/// partition.
fn blocks_query<DB: Backend>(
    tenant: &TenantId,
    kinds: &[BlockKind],
    processes: &[ProcessId],
    time_range: Option<(i64, i64)>,
    inserted_after: Option<i64>,
    pending: bool,
) -> QueryBuilder<DB>
where
    for<'t> &'t str: Encode<'t, DB> + Type<DB>,
    for<'t> &'t [u8]: Encode<'t, DB> + Type<DB>,
    for<'t> i64: Encode<'t, DB> + Type<DB>,
    for<'t> i16: Encode<'t, DB> + Type<DB>,
{
    let mut q = QueryBuilder::new(SELECT_BLOCKS);
    q.push_bind(tenant.as_str());
    push_kinds(&mut q, kinds);
    if !processes.is_empty() {
        q.push(" AND process_id IN (");
        let mut list = q.separated(", ");
        for process in processes {
            list.push_bind(process.as_bytes().as_slice());
        }
        q.push(")");
    }
    if let Some((min, max)) = time_range {
        q.push(" AND max_time >= ").push_bind(min);
        q.push(" AND min_time <= ").push_bind(max);
    }
    if let Some(after) = inserted_after {
        q.push(" AND insert_time > ").push_bind(after);
    }
    if pending {
        q.push(" AND partition_id IS NULL");
    }
    q
}

/// ` AND kind IN (…)` of a blocks query, unless `kinds` is empty (all).
fn push_kinds<DB: Backend>(q: &mut QueryBuilder<DB>, kinds: &[BlockKind])
where
    for<'t> i16: Encode<'t, DB> + Type<DB>,
{
    if kinds.is_empty() {
        return;
    }
    q.push(" AND kind IN (");
    let mut list = q.separated(", ");
    for kind in kinds {
        list.push_bind(kind.code());
    }
    q.push(")");
}

/// Partitions of a tenant: of one view (all when `None`), overlapping a
/// time range, all of whose rows were inserted before a time.
fn partitions_query<DB: Backend>(
    tenant: &TenantId,
    view: Option<&str>,
    time_range: Option<(i64, i64)>,
    inserted_before: Option<i64>,
) -> QueryBuilder<DB>
where
    for<'t> &'t str: Encode<'t, DB> + Type<DB>,
    for<'t> i64: Encode<'t, DB> + Type<DB>,
{
    let mut q = QueryBuilder::new(SELECT_PARTITIONS);
    q.push_bind(tenant.as_str());
    if let Some(view) = view {
        q.push(" AND view_name = ").push_bind(view);
    }
    if let Some((min, max)) = time_range {
        q.push(" AND max_time >= ").push_bind(min);
        q.push(" AND min_time <= ").push_bind(max);
    }
    if let Some(cutoff) = inserted_before {
        q.push(" AND max_insert_time < ").push_bind(cutoff);
    }
    q
}

/// A multi-row insert of partitions.
fn insert_partitions<'a, DB: Backend>(
    tenant: &'a str,
    partitions: impl IntoIterator<Item = &'a PartitionRecord>,
) -> QueryBuilder<DB>
where
    for<'t> &'t str: Encode<'t, DB> + Type<DB>,
    for<'t> &'t [u8]: Encode<'t, DB> + Type<DB>,
    for<'t> i64: Encode<'t, DB> + Type<DB>,
    for<'t> i16: Encode<'t, DB> + Type<DB>,
{
    let mut q = QueryBuilder::new(
        "INSERT INTO partitions (tenant, partition_id, view_name, level, min_time, max_time, \
         min_insert_time, max_insert_time, row_count, size, insert_time) ",
    );
    q.push_values(partitions, |mut b, p| {
        b.push_bind(tenant)
            .push_bind(p.partition_id.as_bytes().as_slice())
            .push_bind(p.view.as_str())
            .push_bind(p.level)
            .push_bind(p.min_time)
            .push_bind(p.max_time)
            .push_bind(p.min_insert_time)
            .push_bind(p.max_insert_time)
            .push_bind(p.row_count as i64)
            .push_bind(p.size as i64)
            .push_bind(p.insert_time);
    });
    q
}

/// A multi-row insert of objects to delete after a time, skipping those already queued.
fn insert_garbage<'a, DB: Backend>(
    tenant: &'a str,
    paths: &'a [String],
    delete_after: i64,
) -> QueryBuilder<DB>
where
    for<'t> &'t str: Encode<'t, DB> + Type<DB>,
    for<'t> i64: Encode<'t, DB> + Type<DB>,
{
    let mut q = QueryBuilder::new("INSERT INTO garbage (tenant, path, delete_after) ");
    q.push_values(paths, |mut b, path| {
        b.push_bind(tenant)
            .push_bind(path.as_str())
            .push_bind(delete_after);
    });
    q.push(" ON CONFLICT DO NOTHING");
    q
}

/// `column IN (…ids)`.
fn push_ids<DB: Backend>(q: &mut QueryBuilder<DB>, column: &str, ids: &[PartitionId])
where
    for<'t> &'t [u8]: Encode<'t, DB> + Type<DB>,
{
    q.push(" ").push(column).push(" IN (");
    let mut list = q.separated(", ");
    for id in ids {
        list.push_bind(id.as_bytes().as_slice());
    }
    q.push(")");
}

/// Marks a pending block quarantined, with the reason.
async fn quarantine_block<DB: Backend>(
    conn: &mut DB::Connection,
    tenant: &TenantId,
    block: BlockId,
    reason: &str,
) -> Result<()>
where
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'t> &'t str: Encode<'t, DB> + Type<DB>,
    for<'t> &'t [u8]: Encode<'t, DB> + Type<DB>,
{
    let mut q = QueryBuilder::<DB>::new("UPDATE blocks SET quarantine_error = ");
    q.push_bind(reason)
        .push(" WHERE tenant = ")
        .push_bind(tenant.as_str())
        .push(" AND block_id = ")
        .push_bind(block.as_bytes().as_slice())
        .push(" AND partition_id IS NULL");
    q.build().execute(&mut *conn).await?;
    Ok(())
}

/// Runs a claiming query: in a transaction it keeps when the backend locks
/// the rows, on the pool otherwise.
async fn claim_rows<DB: Backend, R>(
    pool: &Pool<DB>,
    q: &mut QueryBuilder<DB>,
) -> Result<(Option<Transaction<'static, DB>>, Vec<R>)>
where
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'r> R: FromRow<'r, DB::Row> + Send + Unpin,
{
    q.push(DB::CLAIM_LOCK);
    if DB::CLAIM_LOCK.is_empty() {
        Ok((None, q.build_query_as().fetch_all(pool).await?))
    } else {
        let mut tx = pool.begin().await?;
        let rows = q.build_query_as().fetch_all(&mut *tx).await?;
        Ok((Some(tx), rows))
    }
}

#[async_trait]
impl<DB: Backend> Catalog for SqlCatalog<DB>
where
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'t> &'t str: Encode<'t, DB> + Type<DB>,
    for<'t> &'t [u8]: Encode<'t, DB> + Type<DB>,
    for<'t> i64: Encode<'t, DB> + Type<DB>,
    for<'t> i16: Encode<'t, DB> + Type<DB>,
    for<'r> (String,): FromRow<'r, DB::Row>,
    for<'r> (Vec<u8>,): FromRow<'r, DB::Row>,
    for<'r> (i64,): FromRow<'r, DB::Row>,
    for<'r> RawBlock: FromRow<'r, DB::Row>,
    for<'r> RawPartition: FromRow<'r, DB::Row>,
    for<'r> RawProcess: FromRow<'r, DB::Row>,
    for<'r> RawStream: FromRow<'r, DB::Row>,
    for<'r> RawSegment: FromRow<'r, DB::Row>,
    for<'r> RawSegmentObject: FromRow<'r, DB::Row>,
    for<'r> RawGarbage: FromRow<'r, DB::Row>,
{
    async fn commit(&self, commits: &[TenantCommit]) -> Result<u64> {
        DB::commit(&self.pool, &self.commits, commits).await
    }

    fn blocking_commits(&self) -> Option<Arc<dyn BlockingCommits>> {
        DB::blocking_commits(&self.commits)
    }

    async fn blocks(&self, tenant: &TenantId, filter: &BlockFilter) -> Result<Vec<BlockRecord>> {
        let mut q = blocks_query(
            tenant,
            &filter.kinds,
            &filter.processes,
            filter.time_range,
            filter.inserted_after,
            false,
        );
        q.push(BLOCK_ORDER);
        records::<RawBlock, _>(q.build_query_as().fetch_all(&self.pool).await?)
    }

    async fn tenants(&self) -> Result<Vec<TenantId>> {
        tenants(
            sqlx::query_as("SELECT DISTINCT tenant FROM segments ORDER BY tenant")
                .fetch_all(&self.pool)
                .await?,
        )
    }

    async fn expire(&self, tenant: &TenantId, cutoff: i64) -> Result<Expired> {
        let mut tx = self.pool.begin().await?;
        let mut q = partitions_query(tenant, None, None, Some(cutoff));
        q.push(PARTITION_ORDER);
        let partitions: Vec<PartitionRecord> =
            records::<RawPartition, _>(q.build_query_as().fetch_all(&mut *tx).await?)?;
        let mut q = QueryBuilder::<DB>::new("DELETE FROM reductions WHERE tenant = ");
        q.push_bind(tenant.as_str())
            .push(" AND partition_id IN (SELECT partition_id FROM partitions WHERE tenant = ")
            .push_bind(tenant.as_str())
            .push(" AND max_insert_time < ")
            .push_bind(cutoff)
            .push(")");
        q.build().execute(&mut *tx).await?;
        let mut q = QueryBuilder::<DB>::new("DELETE FROM partitions WHERE tenant = ");
        q.push_bind(tenant.as_str())
            .push(" AND max_insert_time < ")
            .push_bind(cutoff);
        q.build().execute(&mut *tx).await?;
        let mut q = QueryBuilder::<DB>::new("DELETE FROM blocks WHERE tenant = ");
        q.push_bind(tenant.as_str())
            .push(" AND insert_time < ")
            .push_bind(cutoff);
        let blocks = DB::rows_affected(&q.build().execute(&mut *tx).await?);
        let mut q =
            QueryBuilder::<DB>::new("SELECT segment_id, object FROM segments WHERE tenant = ");
        q.push_bind(tenant.as_str())
            .push(" AND insert_time < ")
            .push_bind(cutoff);
        let rows: Vec<RawSegmentObject> = q.build_query_as().fetch_all(&mut *tx).await?;
        let mut segments = Vec::with_capacity(rows.len());
        let mut own_objects = Vec::new();
        let mut logs = BTreeSet::new();
        for r in rows {
            let id = SegmentId::from_slice(&r.segment_id)?;
            segments.push(id);
            match r.object {
                Some(log) => {
                    logs.insert(log);
                }
                None => own_objects.push(
                    SegmentPath::new(tenant.clone(), id)
                        .to_object_path()
                        .to_string(),
                ),
            }
        }
        let mut q = QueryBuilder::<DB>::new("DELETE FROM segments WHERE tenant = ");
        q.push_bind(tenant.as_str())
            .push(" AND insert_time < ")
            .push_bind(cutoff);
        q.build().execute(&mut *tx).await?;
        // A log goes once none of its segments is left (a log holds one
        // hour, so in practice with the last of them).
        let mut empty_logs = Vec::new();
        for log in logs {
            let mut q = QueryBuilder::<DB>::new("SELECT 1 FROM segments WHERE tenant = ");
            q.push_bind(tenant.as_str())
                .push(" AND object = ")
                .push_bind(log.as_str())
                .push(" LIMIT 1");
            if q.build().fetch_optional(&mut *tx).await?.is_none() {
                empty_logs.push(log);
            }
        }
        // Their objects, queued for deletion now: a process that stops
        // before deleting them leaves the queue to the next pass.
        let paths: Vec<String> = partitions
            .iter()
            .map(|p| p.path(tenant).to_string())
            .chain(own_objects)
            .chain(empty_logs)
            .collect();
        for chunk in paths.chunks(INSERT_CHUNK) {
            insert_garbage(tenant.as_str(), chunk, i64::MIN)
                .build()
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(Expired {
            partitions,
            segments,
            blocks,
        })
    }

    async fn pending_tenants(&self) -> Result<Vec<TenantId>> {
        tenants(
            sqlx::query_as(
                "SELECT DISTINCT tenant FROM blocks WHERE partition_id IS NULL \
                 AND quarantine_error IS NULL ORDER BY tenant",
            )
            .fetch_all(&self.pool)
            .await?,
        )
    }

    async fn quarantine(&self, tenant: &TenantId, block: BlockId, reason: &str) -> Result<()> {
        let mut conn = self.pool.acquire().await?;
        quarantine_block::<DB>(&mut conn, tenant, block, reason).await
    }

    async fn claim_pending(
        &self,
        tenant: &TenantId,
        filter: &BlockFilter,
        limit: usize,
    ) -> Result<Box<dyn Claim>> {
        let mut q = blocks_query(
            tenant,
            &filter.kinds,
            &filter.processes,
            filter.time_range,
            filter.inserted_after,
            true,
        );
        q.push(" AND quarantine_error IS NULL")
            .push(BLOCK_ORDER)
            .push(" LIMIT ")
            .push_bind(limit as i64);
        let (tx, rows) = claim_rows::<DB, RawBlock>(&self.pool, &mut q).await?;
        Ok(Box::new(SqlClaim {
            pool: self.pool.clone(),
            tx,
            tenant: tenant.clone(),
            rows: records::<_, BlockRecord>(rows)?,
        }))
    }

    async fn snapshot(
        &self,
        tenant: &TenantId,
        request: &SnapshotRequest<'_>,
    ) -> Result<ViewSnapshot> {
        let mut tx = self.pool.begin().await?;
        if let Some(statement) = DB::SNAPSHOT {
            sqlx::query(statement).execute(&mut *tx).await?;
        }
        let mut q = partitions_query(tenant, Some(request.view), request.time_range, None);
        if let Some((target, _)) = request.aggregate {
            q.push(NOT_REDUCED_INTO).push_bind(target).push(")");
        }
        q.push(PARTITION_ORDER);
        let partitions = records::<RawPartition, _>(q.build_query_as().fetch_all(&mut *tx).await?)?;
        let mut q = blocks_query(
            tenant,
            request.kinds,
            request.processes,
            request.time_range,
            None,
            true,
        );
        q.push(BLOCK_ORDER);
        let (quarantined, blocks) =
            records::<RawBlock, BlockRecord>(q.build_query_as().fetch_all(&mut *tx).await?)?
                .into_iter()
                .partition(|b| b.quarantine.is_some());
        let reduced = match request.aggregate {
            Some((target, time_range)) => {
                let mut q = partitions_query(tenant, Some(target), time_range, None);
                q.push(PARTITION_ORDER);
                records::<RawPartition, _>(q.build_query_as().fetch_all(&mut *tx).await?)?
            }
            None => Vec::new(),
        };
        tx.commit().await?;
        Ok(ViewSnapshot {
            partitions,
            blocks,
            reduced,
            quarantined,
        })
    }

    async fn partition_tenants(&self, view: &str) -> Result<Vec<TenantId>> {
        let mut q =
            QueryBuilder::<DB>::new("SELECT DISTINCT tenant FROM partitions WHERE view_name = ");
        q.push_bind(view).push(" ORDER BY tenant");
        tenants(q.build_query_as().fetch_all(&self.pool).await?)
    }

    async fn claim_partitions(
        &self,
        tenant: &TenantId,
        filter: &PartitionFilter,
    ) -> Result<Box<dyn PartitionClaim>> {
        let mut q = partitions_query(tenant, Some(&filter.view), None, None);
        q.push(" AND level >= ").push_bind(filter.min_level);
        q.push(" AND level <= ").push_bind(filter.max_level);
        if let Some(before) = filter.inserted_before {
            q.push(" AND min_insert_time < ").push_bind(before);
        }
        if let Some(target) = &filter.not_reduced_into {
            q.push(NOT_REDUCED_INTO)
                .push_bind(target.as_str())
                .push(")");
        }
        if !filter.reduced_into.is_empty() {
            q.push(
                " AND (SELECT count(*) FROM reductions r WHERE r.tenant = partitions.tenant \
                 AND r.partition_id = partitions.partition_id AND r.target IN (",
            );
            let mut list = q.separated(", ");
            for target in &filter.reduced_into {
                list.push_bind(target.as_str());
            }
            q.push(")) = ").push_bind(filter.reduced_into.len() as i64);
        }
        q.push(PARTITION_ORDER)
            .push(" LIMIT ")
            .push_bind(filter.limit as i64);
        let (tx, rows) = claim_rows::<DB, RawPartition>(&self.pool, &mut q).await?;
        Ok(Box::new(SqlClaim {
            pool: self.pool.clone(),
            tx,
            tenant: tenant.clone(),
            rows: records::<_, PartitionRecord>(rows)?,
        }))
    }

    async fn garbage(&self, now: i64, limit: usize) -> Result<Vec<Garbage>> {
        let mut q =
            QueryBuilder::<DB>::new("SELECT tenant, path FROM garbage WHERE delete_after <= ");
        q.push_bind(now)
            .push(" ORDER BY delete_after LIMIT ")
            .push_bind(limit as i64);
        q.build_query_as::<RawGarbage>()
            .fetch_all(&self.pool)
            .await?
            .into_iter()
            .map(|r| {
                Ok(Garbage {
                    tenant: r.tenant.parse()?,
                    path: r.path,
                })
            })
            .collect()
    }

    async fn forget_garbage(&self, deleted: &[Garbage]) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        for chunk in deleted.chunks(INSERT_CHUNK) {
            let mut q = QueryBuilder::<DB>::new("DELETE FROM garbage WHERE (tenant, path) IN (");
            let mut list = q.separated(", ");
            for g in chunk {
                list.push("(")
                    .push_bind_unseparated(g.tenant.as_str())
                    .push_unseparated(", ")
                    .push_bind_unseparated(g.path.as_str())
                    .push_unseparated(")");
            }
            q.push(")");
            q.build().execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn partitions(
        &self,
        tenant: &TenantId,
        view: Option<&str>,
    ) -> Result<Vec<PartitionRecord>> {
        let mut q = partitions_query(tenant, view, None, None);
        q.push(PARTITION_ORDER);
        records::<RawPartition, _>(q.build_query_as().fetch_all(&self.pool).await?)
    }

    async fn processes(&self, tenant: &TenantId) -> Result<Vec<ProcessRecord>> {
        let mut q = QueryBuilder::<DB>::new(SELECT_PROCESSES);
        q.push_bind(tenant.as_str())
            .push(" ORDER BY insert_time, process_id");
        records::<RawProcess, _>(q.build_query_as().fetch_all(&self.pool).await?)
    }

    async fn active_processes(
        &self,
        tenant: &TenantId,
        kinds: &[BlockKind],
        time_range: (i64, i64),
    ) -> Result<Vec<ProcessRecord>> {
        let mut q = QueryBuilder::<DB>::new(SELECT_PROCESSES);
        q.push_bind(tenant.as_str())
            .push(" AND process_id IN (SELECT process_id FROM blocks WHERE tenant = ")
            .push_bind(tenant.as_str());
        push_kinds(&mut q, kinds);
        q.push(" AND max_time >= ")
            .push_bind(time_range.0)
            .push(" AND min_time <= ")
            .push_bind(time_range.1)
            .push(") ORDER BY insert_time, process_id");
        records::<RawProcess, _>(q.build_query_as().fetch_all(&self.pool).await?)
    }

    async fn process(&self, tenant: &TenantId, id: &ProcessId) -> Result<Option<ProcessRecord>> {
        let mut q = QueryBuilder::<DB>::new(SELECT_PROCESSES);
        q.push_bind(tenant.as_str())
            .push(" AND process_id = ")
            .push_bind(id.as_bytes().as_slice());
        let row: Option<RawProcess> = q.build_query_as().fetch_optional(&self.pool).await?;
        row.map(ProcessRecord::try_from).transpose()
    }

    async fn streams(&self, tenant: &TenantId) -> Result<Vec<StreamRecord>> {
        let mut q = QueryBuilder::<DB>::new(SELECT_STREAMS);
        q.push_bind(tenant.as_str())
            .push(" ORDER BY insert_time, stream_id");
        records::<RawStream, _>(q.build_query_as().fetch_all(&self.pool).await?)
    }

    async fn stream(&self, tenant: &TenantId, id: &StreamId) -> Result<Option<StreamRecord>> {
        let mut q = QueryBuilder::<DB>::new(SELECT_STREAMS);
        q.push_bind(tenant.as_str())
            .push(" AND stream_id = ")
            .push_bind(id.as_bytes().as_slice());
        let row: Option<RawStream> = q.build_query_as().fetch_optional(&self.pool).await?;
        row.map(StreamRecord::try_from).transpose()
    }

    async fn segments(&self, tenant: &TenantId) -> Result<Vec<SegmentRecord>> {
        let mut q = QueryBuilder::<DB>::new(
            "SELECT segment_id, size, block_count, insert_time, object, object_offset \
             FROM segments WHERE tenant = ",
        );
        q.push_bind(tenant.as_str())
            .push(" ORDER BY insert_time, segment_id");
        records::<RawSegment, _>(q.build_query_as().fetch_all(&self.pool).await?)
    }

    async fn known_segments(
        &self,
        tenant: &TenantId,
        segments: &[SegmentId],
    ) -> Result<HashSet<SegmentId>> {
        let mut known = HashSet::new();
        for chunk in segments.chunks(INSERT_CHUNK) {
            let mut q = QueryBuilder::<DB>::new("SELECT segment_id FROM segments WHERE tenant = ");
            q.push_bind(tenant.as_str()).push(" AND segment_id IN (");
            let mut list = q.separated(", ");
            for id in chunk {
                list.push_bind(id.as_bytes().as_slice());
            }
            q.push(")");
            for (id,) in q
                .build_query_as::<(Vec<u8>,)>()
                .fetch_all(&self.pool)
                .await?
            {
                known.insert(SegmentId::from_slice(&id)?);
            }
        }
        Ok(known)
    }

    async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }
}

/// Rows a maintainer claimed: blocks to materialize, partitions to compact or reduce.
struct SqlClaim<DB: Backend, T> {
    pool: Pool<DB>,
    /// The transaction holding the rows' locks, if the backend locks rows.
    tx: Option<Transaction<'static, DB>>,
    tenant: TenantId,
    rows: Vec<T>,
}

impl<DB: Backend, T> SqlClaim<DB, T> {
    /// The transaction the claim commits in: the one holding its row locks, or a new one.
    async fn begin(
        tx: Option<Transaction<'static, DB>>,
        pool: &Pool<DB>,
    ) -> Result<Transaction<'static, DB>> {
        Ok(match tx {
            Some(tx) => tx,
            None => pool.begin().await?,
        })
    }
}

impl<DB: Backend, T> fmt::Debug for SqlClaim<DB, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqlClaim")
            .field("tenant", &self.tenant)
            .field("rows", &self.rows.len())
            .field("locked", &self.tx.is_some())
            .finish()
    }
}

#[async_trait]
impl<DB: Backend> Claim for SqlClaim<DB, BlockRecord>
where
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'t> &'t str: Encode<'t, DB> + Type<DB>,
    for<'t> &'t [u8]: Encode<'t, DB> + Type<DB>,
    for<'t> i64: Encode<'t, DB> + Type<DB>,
    for<'t> i16: Encode<'t, DB> + Type<DB>,
{
    fn blocks(&self) -> &[BlockRecord] {
        &self.rows
    }

    fn truncate(&mut self, n: usize) {
        self.rows.truncate(n);
    }

    async fn commit(self: Box<Self>, partition: &PartitionRecord) -> Result<bool> {
        let mut tx = Self::begin(self.tx, &self.pool).await?;
        let tenant = self.tenant.as_str();
        insert_partitions::<DB>(tenant, [partition])
            .build()
            .execute(&mut *tx)
            .await?;
        let mut updated = 0;
        for chunk in self.rows.chunks(INSERT_CHUNK) {
            let mut q = QueryBuilder::<DB>::new("UPDATE blocks SET partition_id = ");
            q.push_bind(partition.partition_id.as_bytes().as_slice())
                .push(" WHERE tenant = ")
                .push_bind(tenant)
                .push(" AND partition_id IS NULL AND block_id IN (");
            let mut list = q.separated(", ");
            for block in chunk {
                list.push_bind(block.block_id.as_bytes().as_slice());
            }
            q.push(")");
            updated += DB::rows_affected(&q.build().execute(&mut *tx).await?);
        }
        if updated != self.rows.len() as u64 {
            // Another maintainer materialized some of them first.
            tx.rollback().await?;
            return Ok(false);
        }
        tx.commit().await?;
        Ok(true)
    }

    async fn quarantine(self: Box<Self>, block: BlockId, reason: &str) -> Result<()> {
        // In the claim's transaction: its row locks end with it.
        let mut tx = Self::begin(self.tx, &self.pool).await?;
        quarantine_block::<DB>(&mut tx, &self.tenant, block, reason).await?;
        tx.commit().await?;
        Ok(())
    }
}

#[async_trait]
impl<DB: Backend> PartitionClaim for SqlClaim<DB, PartitionRecord>
where
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'t> &'t str: Encode<'t, DB> + Type<DB>,
    for<'t> &'t [u8]: Encode<'t, DB> + Type<DB>,
    for<'t> i64: Encode<'t, DB> + Type<DB>,
    for<'t> i16: Encode<'t, DB> + Type<DB>,
    for<'r> (i64,): FromRow<'r, DB::Row>,
{
    fn partitions(&self) -> &[PartitionRecord] {
        &self.rows
    }

    async fn commit(self: Box<Self>, change: &PartitionChange) -> Result<bool> {
        let mut tx = Self::begin(self.tx, &self.pool).await?;
        let tenant = self.tenant.as_str();
        // Writes come before the checks: once a write holds SQLite's
        // lock, what the checks read is current.
        for r in &change.replacements {
            let mut q = QueryBuilder::<DB>::new("DELETE FROM partitions WHERE tenant = ");
            q.push_bind(tenant).push(" AND");
            push_ids(&mut q, "partition_id", &r.inputs);
            if DB::rows_affected(&q.build().execute(&mut *tx).await?) != r.inputs.len() as u64 {
                tx.rollback().await?;
                return Ok(false);
            }
            insert_partitions::<DB>(tenant, [&r.output])
                .build()
                .execute(&mut *tx)
                .await?;
            let mut q = QueryBuilder::<DB>::new("UPDATE blocks SET partition_id = ");
            q.push_bind(r.output.partition_id.as_bytes().as_slice())
                .push(" WHERE tenant = ")
                .push_bind(tenant)
                .push(" AND");
            push_ids(&mut q, "partition_id", &r.inputs);
            q.build().execute(&mut *tx).await?;
            // Aggregates that reduced every input have reduced the output.
            let mut q = QueryBuilder::<DB>::new(
                "INSERT INTO reductions (tenant, target, partition_id) SELECT tenant, target, ",
            );
            q.push_bind(r.output.partition_id.as_bytes().as_slice())
                .push(" FROM reductions WHERE tenant = ")
                .push_bind(tenant)
                .push(" AND");
            push_ids(&mut q, "partition_id", &r.inputs);
            q.push(" GROUP BY tenant, target HAVING count(*) = ")
                .push_bind(r.inputs.len() as i64);
            q.build().execute(&mut *tx).await?;
            let mut q = QueryBuilder::<DB>::new("DELETE FROM reductions WHERE tenant = ");
            q.push_bind(tenant).push(" AND");
            push_ids(&mut q, "partition_id", &r.inputs);
            q.build().execute(&mut *tx).await?;
            let garbage: Vec<String> = self
                .rows
                .iter()
                .filter(|p| r.inputs.contains(&p.partition_id))
                .map(|p| p.path(&self.tenant).to_string())
                .collect();
            insert_garbage::<DB>(tenant, &garbage, change.delete_after)
                .build()
                .execute(&mut *tx)
                .await?;
        }
        for (id, level) in &change.relevels {
            let mut q = QueryBuilder::<DB>::new("UPDATE partitions SET level = ");
            q.push_bind(*level)
                .push(" WHERE tenant = ")
                .push_bind(tenant)
                .push(" AND partition_id = ")
                .push_bind(id.as_bytes().as_slice());
            if DB::rows_affected(&q.build().execute(&mut *tx).await?) != 1 {
                tx.rollback().await?;
                return Ok(false);
            }
        }
        for r in &change.reductions {
            insert_partitions::<DB>(tenant, [&r.output])
                .build()
                .execute(&mut *tx)
                .await?;
            let mut q =
                QueryBuilder::<DB>::new("INSERT INTO reductions (tenant, target, partition_id) ");
            q.push_values(&r.sources, |mut b, id| {
                b.push_bind(tenant)
                    .push_bind(r.output.view.as_str())
                    .push_bind(id.as_bytes().as_slice());
            });
            q.push(" ON CONFLICT DO NOTHING");
            let recorded = DB::rows_affected(&q.build().execute(&mut *tx).await?);
            let mut q = QueryBuilder::<DB>::new("SELECT count(*) FROM partitions WHERE tenant = ");
            q.push_bind(tenant).push(" AND");
            push_ids(&mut q, "partition_id", &r.sources);
            let (present,): (i64,) = q.build_query_as().fetch_one(&mut *tx).await?;
            // Another maintainer reduced or replaced one of them first.
            if recorded != r.sources.len() as u64 || present != r.sources.len() as i64 {
                tx.rollback().await?;
                return Ok(false);
            }
        }
        tx.commit().await?;
        Ok(true)
    }
}
