//! Compaction: a view's small partitions become fewer, larger ones, sorted
//! for the questions asked of them.
//!
//! Partitions climb levels by insert-time window: materialization makes
//! level 0 (a second or so of inserts), compaction gathers a closed minute's
//! level-0 partitions into level 1, a closed hour's level-1 partitions into
//! level 2, a closed day's level-2 partitions into level 3. Within a window,
//! consecutive partitions are packed into outputs of at most `max_rows`; a
//! partition alone in its group moves up a level as it is (nothing to merge),
//! except at level 0, whose partitions are always rewritten sorted and
//! compressed harder.
//!
//! A maintainer claims a level's partitions through the catalog (PostgreSQL
//! row locks keep others off them), writes the outputs, then commits the
//! replacement in one transaction: the outputs are recorded, the inputs
//! removed, their blocks re-pointed and the aggregates that had reduced every
//! input carried over. Queries that listed the inputs before the commit may
//! still be reading them, so their objects are deleted `delete_delay` later.

use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;

use arrow::array::RecordBatch;
use arrow::compute::{SortColumn, concat_batches, lexsort_to_indices, take_record_batch};
use async_trait::async_trait;
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use tokio_util::sync::CancellationToken;

use crate::catalog::{PartitionChange, PartitionFilter, PartitionRecord, Replacement};
use crate::host::now_nanos;
use crate::ids::{PartitionId, TenantId};
use crate::partition::{self, Encoding, ROW_GROUP_ROWS};
use crate::view::View;
use crate::{Error, Lake, Result};

const SECOND: i64 = 1_000_000_000;

/// The insert-time window each level gathers: level 1 a minute, level 2 an
/// hour, level 3 a day.
pub const LEVEL_WINDOWS: [i64; 3] = [60 * SECOND, 3600 * SECOND, 86_400 * SECOND];

/// How compaction runs.
#[derive(Debug, Clone)]
pub struct CompactConfig {
    /// Pause between passes.
    pub interval: Duration,
    /// How long after a window ends its partitions are compacted (so that
    /// blocks inserted at its end have been materialized).
    pub grace: Duration,
    /// Most rows one output holds.
    pub max_rows: u64,
    /// Most partitions one claim takes.
    pub claim_limit: usize,
    /// How long replaced objects stay readable: longer than a query runs.
    pub delete_delay: Duration,
    /// Aggregate views that must have reduced a view's partitions before
    /// they are merged beyond level 1: view name -> aggregate names.
    pub reduced_first: HashMap<String, Vec<String>>,
}

impl Default for CompactConfig {
    fn default() -> Self {
        CompactConfig {
            interval: Duration::from_secs(10),
            grace: Duration::from_secs(30),
            max_rows: 1_000_000,
            claim_limit: 1000,
            delete_delay: Duration::from_secs(600),
            reduced_first: HashMap::new(),
        }
    }
}

/// What a pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Compacted {
    /// Partitions replaced by merged ones.
    pub merged: usize,
    /// Merged partitions written.
    pub written: usize,
    /// Partitions moved up a level as they were.
    pub relevelled: usize,
    /// Replaced objects deleted.
    pub deleted: usize,
}

impl std::ops::AddAssign for Compacted {
    fn add_assign(&mut self, other: Self) {
        self.merged += other.merged;
        self.written += other.written;
        self.relevelled += other.relevelled;
        self.deleted += other.deleted;
    }
}

/// Merges partitions of a view into one Parquet object.
#[async_trait]
pub trait Rewrite: Send + Sync + Debug {
    /// The views whose partitions it merges.
    fn views(&self) -> Vec<String>;

    /// The rows of `inputs` (partitions of one view of a tenant), merged and
    /// written as one Parquet object; returns its bytes and row count.
    async fn rewrite(
        &self,
        tenant: &TenantId,
        view: &str,
        inputs: &[PartitionRecord],
    ) -> Result<(Bytes, u64)>;
}

/// Reads a partition's rows.
pub async fn read_partition(
    lake: &Lake,
    tenant: &TenantId,
    partition: &PartitionRecord,
) -> Result<Vec<RecordBatch>> {
    let bytes = lake.store.get(&partition.path(tenant)).await?;
    tokio::task::spawn_blocking(move || partition::read(bytes))
        .await
        .map_err(|e| Error::task("parquet decoding", e))?
}

/// Merges the event views (`log_entries`, `spans`, `measures`): rows sorted
/// by the view's [`sort key`](View::sort_key), zstd level 3.
#[derive(Debug, Clone)]
pub struct EventRewrite {
    lake: Arc<Lake>,
}

impl EventRewrite {
    pub fn new(lake: Arc<Lake>) -> Self {
        EventRewrite { lake }
    }
}

#[async_trait]
impl Rewrite for EventRewrite {
    fn views(&self) -> Vec<String> {
        View::ALL.iter().map(|v| v.name().to_owned()).collect()
    }

    async fn rewrite(
        &self,
        tenant: &TenantId,
        view: &str,
        inputs: &[PartitionRecord],
    ) -> Result<(Bytes, u64)> {
        let view = View::ALL
            .into_iter()
            .find(|v| v.name() == view)
            .ok_or_else(|| Error::InvalidInput(format!("no event view {view:?}")))?;
        let batches: Vec<Vec<RecordBatch>> = futures::stream::iter(inputs.to_vec())
            .map(|p| {
                let lake = Arc::clone(&self.lake);
                let tenant = tenant.clone();
                async move { read_partition(&lake, &tenant, &p).await }
            })
            .buffered(4)
            .try_collect()
            .await?;
        tokio::task::spawn_blocking(move || {
            let sorted = sort(view, batches.into_iter().flatten())?;
            let encoding = Encoding {
                zstd_level: 3,
                free_text_zstd_level: 7,
                trace_ids_per_row_group: match view {
                    View::Spans => ROW_GROUP_ROWS as u64 / 4,
                    View::LogEntries | View::Measures | View::ThreadSpans => ROW_GROUP_ROWS as u64,
                },
            };
            partition::write(view.schema(), &sorted, encoding)
        })
        .await
        .map_err(|e| Error::task("compaction", e))?
    }
}

/// A view's rows in the order of its sort key, as row-group-sized batches.
fn sort(view: View, batches: impl Iterator<Item = RecordBatch>) -> Result<Vec<RecordBatch>> {
    let all = concat_batches(&view.schema(), &batches.collect::<Vec<_>>())?;
    let keys = view
        .sort_key()
        .iter()
        .map(|name| {
            let column = all
                .column_by_name(name)
                .ok_or_else(|| Error::Internal(format!("{} has no column {name}", view.name())))?;
            Ok(SortColumn {
                values: Arc::clone(column),
                options: None,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let order = lexsort_to_indices(&keys, None)?;
    let sorted = take_record_batch(&all, &order)?;
    drop(all);
    Ok((0..sorted.num_rows())
        .step_by(ROW_GROUP_ROWS)
        .map(|start| sorted.slice(start, ROW_GROUP_ROWS.min(sorted.num_rows() - start)))
        .collect())
}

/// Groups partitions (of one view and level) into what to merge: by
/// insert-time window, then consecutive partitions up to `max_rows` together.
pub fn plan(
    partitions: &[PartitionRecord],
    window: i64,
    max_rows: u64,
) -> Vec<Vec<PartitionRecord>> {
    let mut sorted = partitions.to_vec();
    sorted.sort_by_key(|p| (p.min_insert_time, p.partition_id));
    let mut groups: Vec<Vec<PartitionRecord>> = Vec::new();
    let mut rows = 0;
    for p in sorted {
        let same_window = groups.last().and_then(|g| g.first()).is_some_and(|first| {
            first.min_insert_time.div_euclid(window) == p.min_insert_time.div_euclid(window)
        });
        match groups.last_mut() {
            Some(group) if same_window && rows + p.row_count <= max_rows => {
                rows += p.row_count;
                group.push(p);
            }
            _ => {
                rows = p.row_count;
                groups.push(vec![p]);
            }
        }
    }
    groups
}

/// Compacts partitions, and deletes the objects compaction replaced once
/// their time has come.
#[derive(Debug, Clone)]
pub struct Compactor {
    lake: Arc<Lake>,
    rewrite: Arc<dyn Rewrite>,
    config: CompactConfig,
}

impl Compactor {
    pub fn new(lake: Arc<Lake>, rewrite: Arc<dyn Rewrite>, config: CompactConfig) -> Self {
        Compactor {
            lake,
            rewrite,
            config,
        }
    }

    /// Compacts every interval until `stop`.
    pub async fn run(&self, stop: CancellationToken) {
        loop {
            match self.pass(now_nanos()).await {
                Ok(done) if done != Compacted::default() => tracing::debug!(?done, "compacted"),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "compaction failed; retrying"),
            }
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(self.config.interval) => {}
            }
        }
    }

    /// Compacts every closed window of every tenant and view as of `now`,
    /// then deletes the replaced objects that are due.
    pub async fn pass(&self, now: i64) -> Result<Compacted> {
        let mut done = Compacted::default();
        for view in self.rewrite.views() {
            for tenant in self.lake.catalog.partition_tenants(&view).await? {
                for level in 1..=LEVEL_WINDOWS.len() as i16 {
                    loop {
                        let step = self.compact(&tenant, &view, level, now).await?;
                        done += step;
                        if step.merged + step.relevelled == 0 {
                            break;
                        }
                    }
                }
            }
        }
        done.deleted = self.lake.delete_garbage(now).await?;
        Ok(done)
    }

    /// Claims partitions of `view` one level below `level`, in windows of
    /// `level` closed as of `now`, and moves them to `level`. Nothing (all
    /// zero) when there were none or another maintainer changed them first.
    pub async fn compact(
        &self,
        tenant: &TenantId,
        view: &str,
        level: i16,
        now: i64,
    ) -> Result<Compacted> {
        let window = LEVEL_WINDOWS[level as usize - 1];
        let closed = (now - self.config.grace.as_nanos() as i64).div_euclid(window) * window;
        let filter = PartitionFilter {
            view: view.to_owned(),
            min_level: level - 1,
            max_level: level - 1,
            inserted_before: Some(closed),
            not_reduced_into: None,
            reduced_into: if level > 1 {
                self.config
                    .reduced_first
                    .get(view)
                    .cloned()
                    .unwrap_or_default()
            } else {
                Vec::new()
            },
            limit: self.config.claim_limit,
        };
        let claim = self.lake.catalog.claim_partitions(tenant, &filter).await?;
        let mut change = PartitionChange {
            delete_after: now_nanos() + self.config.delete_delay.as_nanos() as i64,
            ..PartitionChange::default()
        };
        let mut written = Vec::new();
        let mut done = Compacted::default();
        for group in plan(claim.partitions(), window, self.config.max_rows) {
            if let [alone] = group.as_slice()
                && alone.level > 0
            {
                change.relevels.push((alone.partition_id, level));
                done.relevelled += 1;
                continue;
            }
            let (bytes, rows) = match self.rewrite.rewrite(tenant, view, &group).await {
                Ok(out) => out,
                Err(e) => {
                    self.lake.discard(&written).await;
                    return Err(e);
                }
            };
            let output = PartitionRecord {
                partition_id: PartitionId::new(),
                view: view.to_owned(),
                level,
                min_time: group.iter().map(|p| p.min_time).min().unwrap_or_default(),
                max_time: group.iter().map(|p| p.max_time).max().unwrap_or_default(),
                min_insert_time: group
                    .iter()
                    .map(|p| p.min_insert_time)
                    .min()
                    .unwrap_or_default(),
                max_insert_time: group
                    .iter()
                    .map(|p| p.max_insert_time)
                    .max()
                    .unwrap_or_default(),
                row_count: rows,
                size: bytes.len() as u64,
                insert_time: now_nanos(),
            };
            let path = output.path(tenant);
            if let Err(e) = self.lake.store.put_durable(&path, bytes).await {
                self.lake.discard(&written).await;
                return Err(e);
            }
            written.push(path);
            done.merged += group.len();
            done.written += 1;
            change.replacements.push(Replacement {
                inputs: group.iter().map(|p| p.partition_id).collect(),
                output,
            });
        }
        if done.merged + done.relevelled == 0 {
            return Ok(Compacted::default());
        }
        if !claim.commit(&change).await? {
            tracing::debug!(%tenant, view, level, "partitions were changed by another maintainer");
            self.lake.discard(&written).await;
            return Ok(Compacted::default());
        }
        Ok(done)
    }
}
