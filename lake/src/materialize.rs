//! Materialization: blocks become Parquet partitions, off the hot path.
//!
//! A maintainer claims a tenant's pending blocks of one view through the
//! catalog (PostgreSQL row locks keep several maintainers off each other's
//! blocks), decodes them, writes one Parquet object (rows in the order their
//! blocks were received) and records it as a partition in the same
//! transaction that marks the blocks materialized. Queries read a view's
//! partitions and its pending blocks from one catalog snapshot, so every
//! event is seen exactly once, before and after.
//!
//! A block whose stored bytes do not read back (checksum, compression,
//! payload format) or whose object is gone is quarantined: marked in the
//! catalog with the error and left out from then on, so that it neither
//! holds up the rest of its tenant's view nor fails every pass again.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use tokio_util::sync::CancellationToken;

use crate::catalog::{BlockFilter, BlockRecord, PartitionRecord};
use crate::ids::{BlockId, PartitionId, TenantId};
use crate::partition::{self, Encoding, ROW_GROUP_ROWS};
use crate::view::{BlockSource, Rows, View};
use crate::{Error, Lake, Result};

/// How materialization runs.
#[derive(Debug, Clone)]
pub struct MaterializeConfig {
    /// Pause between passes over pending blocks.
    pub interval: Duration,
    /// Most blocks one partition is made of.
    pub max_blocks: usize,
    /// Most rows one partition holds.
    pub max_rows: u64,
    /// Blocks read and decoded at once.
    pub read_ahead: usize,
}

impl Default for MaterializeConfig {
    fn default() -> Self {
        MaterializeConfig {
            interval: Duration::from_secs(1),
            max_blocks: 10_000,
            max_rows: 1_000_000,
            read_ahead: 8,
        }
    }
}

/// What a pass materialized.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Materialized {
    pub partitions: usize,
    pub blocks: usize,
    pub rows: u64,
    /// Blocks quarantined (see the module's documentation).
    pub quarantined: usize,
}

impl Materialized {
    /// Whether the step did anything: claimed blocks went somewhere.
    fn progressed(&self) -> bool {
        self.blocks > 0 || self.quarantined > 0
    }
}

impl std::ops::AddAssign for Materialized {
    fn add_assign(&mut self, other: Self) {
        self.partitions += other.partitions;
        self.blocks += other.blocks;
        self.rows += other.rows;
        self.quarantined += other.quarantined;
    }
}

/// Why writing a partition failed, and the block at fault when one was.
struct Failure {
    block: Option<BlockId>,
    error: Error,
}

impl From<Error> for Failure {
    fn from(error: Error) -> Self {
        Failure { block: None, error }
    }
}

/// Turns pending blocks into Parquet partitions.
#[derive(Debug, Clone)]
pub struct Materializer {
    lake: Arc<Lake>,
    config: MaterializeConfig,
}

impl Materializer {
    pub fn new(lake: Arc<Lake>, config: MaterializeConfig) -> Self {
        Materializer { lake, config }
    }

    /// Materializes what is pending every interval until `stop`.
    pub async fn run(&self, stop: CancellationToken) {
        loop {
            match self.pass().await {
                Ok(done) if done.partitions > 0 => tracing::debug!(?done, "materialized"),
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "materialization pass incomplete; the next one retries")
                }
            }
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(self.config.interval) => {}
            }
        }
    }

    /// Materializes every block pending now, of every tenant and view. A
    /// tenant's view that fails (a block that does not read back, a store
    /// that refuses a write) does not hold up the others: the pass goes on
    /// and returns the first failure at its end.
    pub async fn pass(&self) -> Result<Materialized> {
        let mut done = Materialized::default();
        let mut failed = None;
        for tenant in self.lake.catalog.pending_tenants().await? {
            for view in View::ALL.into_iter().filter(|v| v.eager()) {
                loop {
                    match self.materialize(&tenant, view).await {
                        Ok(step) => {
                            done += step;
                            if !step.progressed() {
                                break;
                            }
                        }
                        Err(e) => {
                            tracing::warn!(%tenant, view = view.name(), error = %e, "materialization failed");
                            failed.get_or_insert(e);
                            break;
                        }
                    }
                }
            }
        }
        match failed {
            Some(e) => Err(e),
            None => Ok(done),
        }
    }

    /// Claims pending blocks of one view of a tenant and writes them as one
    /// partition. Nothing (all zero) when none were pending or another
    /// maintainer took them.
    pub async fn materialize(&self, tenant: &TenantId, view: View) -> Result<Materialized> {
        let filter = BlockFilter {
            kinds: view.kinds().to_vec(),
            ..BlockFilter::default()
        };
        self.materialize_where(tenant, view, &filter).await
    }

    /// Materializes every pending block of a view that a filter selects
    /// (the blocks of some processes over a time range, say): what a query
    /// of an on-demand view (`thread_spans`) read from blocks is then read
    /// from Parquet the next time.
    pub async fn cache(
        &self,
        tenant: &TenantId,
        view: View,
        filter: &BlockFilter,
    ) -> Result<Materialized> {
        let filter = BlockFilter {
            kinds: view.kinds().to_vec(),
            ..filter.clone()
        };
        let mut done = Materialized::default();
        loop {
            let step = self.materialize_where(tenant, view, &filter).await?;
            done += step;
            if !step.progressed() {
                return Ok(done);
            }
        }
    }

    /// Claims pending blocks a filter selects and writes them as one partition.
    async fn materialize_where(
        &self,
        tenant: &TenantId,
        view: View,
        filter: &BlockFilter,
    ) -> Result<Materialized> {
        let mut claim = self
            .lake
            .catalog
            .claim_pending(tenant, filter, self.config.max_blocks)
            .await?;
        let mut rows = 0;
        let keep = claim
            .blocks()
            .iter()
            .take_while(|b| {
                let fits = rows == 0 || rows + u64::from(b.event_count) <= self.config.max_rows;
                rows += u64::from(b.event_count);
                fits
            })
            .count();
        claim.truncate(keep);
        let blocks = claim.blocks().to_vec();
        if blocks.is_empty() {
            return Ok(Materialized::default());
        }
        let (bytes, rows) = match self.write(tenant, view, &blocks).await {
            Ok(written) => written,
            Err(Failure {
                block: Some(block),
                error,
            }) if error.is_block_fault() => {
                tracing::error!(
                    %tenant,
                    view = view.name(),
                    block_id = %block,
                    %error,
                    "block quarantined: its events are left out of the view \
                     (the blocks view shows it, with this error)"
                );
                claim.quarantine(block, &error.to_string()).await?;
                return Ok(Materialized {
                    quarantined: 1,
                    ..Materialized::default()
                });
            }
            Err(failure) => return Err(failure.error),
        };
        let partition = PartitionRecord {
            partition_id: PartitionId::new(),
            view: view.name().to_owned(),
            level: 0,
            min_time: blocks.iter().map(|b| b.min_time).min().unwrap_or_default(),
            max_time: blocks.iter().map(|b| b.max_time).max().unwrap_or_default(),
            min_insert_time: blocks
                .iter()
                .map(|b| b.insert_time)
                .min()
                .unwrap_or_default(),
            max_insert_time: blocks
                .iter()
                .map(|b| b.insert_time)
                .max()
                .unwrap_or_default(),
            row_count: rows,
            size: bytes.len() as u64,
            insert_time: crate::host::now_nanos(),
        };
        let path = partition.path(tenant);
        self.lake.store.put_durable(&path, bytes).await?;
        if !claim.commit(&partition).await? {
            tracing::debug!(%tenant, view = view.name(), "blocks were materialized by another maintainer");
            self.lake.discard(&[path]).await;
            return Ok(Materialized::default());
        }
        Ok(Materialized {
            partitions: 1,
            blocks: blocks.len(),
            rows,
            quarantined: 0,
        })
    }
}

impl Materializer {
    /// Writes the rows of blocks as one Parquet object, streaming: blocks
    /// are read ahead while one blocking task decodes them into batches of
    /// [`BATCH_ROWS`] and encodes those, so memory holds a few blocks, a
    /// batch and the row group being encoded, never the partition's rows.
    async fn write(
        &self,
        tenant: &TenantId,
        view: View,
        blocks: &[BlockRecord],
    ) -> Result<(bytes::Bytes, u64), Failure> {
        // The blocks' stored (LZ4) bytes are about the Parquet's size: one
        // allocation for the output instead of growing it by copies.
        let capacity = blocks.iter().map(|b| b.length as usize).sum();
        let (payloads, mut received) =
            tokio::sync::mpsc::channel::<(BlockRecord, bytes::Bytes)>(self.config.read_ahead);
        // What the rows take from the catalog, asked once per process and
        // stream (the lake keeps them).
        let mut sources = std::collections::HashMap::new();
        for b in blocks {
            sources.insert(b.block_id, self.lake.block_source(tenant, b).await?);
        }
        let encode = tokio::task::spawn_blocking(move || {
            let mut writer = partition::Writer::new(view.schema(), encoding(view), capacity)?;
            let mut rows = Rows::new(view);
            while let Some((block, payload)) = received.blocking_recv() {
                let source = sources
                    .remove(&block.block_id)
                    .unwrap_or_else(|| BlockSource::of(&block));
                rows.append(block.kind, &payload, &source)
                    .map_err(|error| Failure {
                        block: Some(block.block_id),
                        error,
                    })?;
                if rows.len() >= BATCH_ROWS {
                    writer.write(&rows.finish())?;
                }
            }
            if !rows.is_empty() {
                writer.write(&rows.finish())?;
            }
            Ok(writer.finish()?)
        });
        let mut reads = futures::stream::iter(blocks.to_vec())
            .map(|block| {
                let (lake, tenant) = (Arc::clone(&self.lake), tenant.clone());
                async move {
                    match lake.read_block(&tenant, &block).await {
                        Ok(payload) => Ok((block, payload)),
                        Err(error) => Err(Failure {
                            block: Some(block.block_id),
                            error,
                        }),
                    }
                }
            })
            .buffered(self.config.read_ahead);
        let mut read_error = None;
        while let Some(read) = reads.next().await {
            match read {
                // A send fails only when encoding stopped: its error says why.
                Ok(read) => {
                    if payloads.send(read).await.is_err() {
                        break;
                    }
                }
                Err(e) => {
                    read_error = Some(e);
                    break;
                }
            }
        }
        drop(payloads);
        let encoded = encode
            .await
            .map_err(|e| Error::task("parquet encoding", e))?;
        match read_error {
            Some(e) => Err(e),
            None => encoded,
        }
    }
}

/// Rows decoded into one batch before Parquet encodes them.
const BATCH_ROWS: usize = 8192;

/// How materialization writes: zstd level 1 (fast; compaction rewrites it
/// sorted, with zstd 3 and 7 for free text), rows in the order their blocks were received (close
/// to time order).
fn encoding(view: View) -> Encoding {
    Encoding {
        zstd_level: 1,
        free_text_zstd_level: 1,
        trace_ids_per_row_group: match view {
            View::Spans => ROW_GROUP_ROWS as u64 / 4,
            View::LogEntries | View::Measures | View::ThreadSpans => ROW_GROUP_ROWS as u64,
        },
    }
}
