//! Materialization: blocks become Parquet partitions, off the hot path.
//!
//! A maintainer claims a tenant's pending blocks of one view through the
//! catalog (PostgreSQL row locks keep several maintainers off each other's
//! blocks), decodes them, writes one Parquet object (rows in the order their
//! blocks were received) and records it as a partition in the same
//! transaction that marks the blocks materialized. Queries read a view's
//! partitions and its pending blocks from one catalog snapshot, so every
//! event is seen exactly once, before and after.

use std::sync::Arc;
use std::time::Duration;

use arrow::array::RecordBatch;
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use object_store::ObjectStoreExt;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use tokio_util::sync::CancellationToken;

use crate::catalog::PartitionRecord;
use crate::ids::{PartitionId, TenantId};
use crate::view::View;
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
}

impl std::ops::AddAssign for Materialized {
    fn add_assign(&mut self, other: Self) {
        self.partitions += other.partitions;
        self.blocks += other.blocks;
        self.rows += other.rows;
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
                Err(e) => tracing::warn!(error = %e, "materialization failed; retrying"),
            }
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(self.config.interval) => {}
            }
        }
    }

    /// Materializes every block pending now, of every tenant and view.
    pub async fn pass(&self) -> Result<Materialized> {
        let mut done = Materialized::default();
        for tenant in self.lake.catalog.pending_tenants().await? {
            for view in View::ALL {
                loop {
                    let step = self.materialize(&tenant, view).await?;
                    done += step;
                    if step.blocks == 0 {
                        break;
                    }
                }
            }
        }
        Ok(done)
    }

    /// Claims pending blocks of one view of a tenant and writes them as one
    /// partition. Nothing (all zero) when none were pending or another
    /// maintainer took them.
    pub async fn materialize(&self, tenant: &TenantId, view: View) -> Result<Materialized> {
        let mut claim = self
            .lake
            .catalog
            .claim_pending(tenant, view.kinds(), self.config.max_blocks)
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
        let batches: Vec<RecordBatch> = futures::stream::iter(blocks.clone())
            .map(|block| async move { self.lake.decode_block(tenant, &block).await })
            .buffered(self.config.read_ahead)
            .try_collect()
            .await?;
        let (bytes, rows) = tokio::task::spawn_blocking(move || write_parquet(view, &batches))
            .await
            .map_err(|e| Error::FlushFailed(format!("parquet task: {e}")))??;
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
            insert_time: crate::writer::now_nanos(),
        };
        let path = partition.path(tenant);
        self.lake.store.put_durable(&path, bytes).await?;
        if !claim.commit(&partition).await? {
            tracing::debug!(%tenant, view = view.name(), "blocks were materialized by another maintainer");
            if let Err(e) = self.lake.store.object_store().delete(&path).await {
                tracing::warn!(error = %e, %path, "removing an unused partition object");
            }
            return Ok(Materialized::default());
        }
        Ok(Materialized {
            partitions: 1,
            blocks: blocks.len(),
            rows,
        })
    }
}

/// Rows per Parquet row group.
const ROW_GROUP_ROWS: usize = 128 * 1024;

/// Writes a view's rows as one Parquet file, in the order their blocks were
/// received (close to time order): zstd level 1 (fast; compaction rewrites
/// partitions smaller), statistics per page, bloom filters on trace ids (so a
/// trace id lookup skips row groups without it).
fn write_parquet(view: View, batches: &[RecordBatch]) -> Result<(Bytes, u64)> {
    let parquet_error =
        |e: parquet::errors::ParquetError| Error::FlushFailed(format!("parquet: {e}"));
    let schema = view.schema();
    let mut properties = WriterProperties::builder()
        .set_compression(Compression::ZSTD(
            ZstdLevel::try_new(1).map_err(parquet_error)?,
        ))
        .set_statistics_enabled(EnabledStatistics::Page)
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS));
    if schema.column_with_name("trace_id").is_some() {
        // Sized for the ids a row group holds (the default, a million at 5%,
        // is ~0.8 MB per row group, which a lookup reads for every one).
        let distinct = match view {
            View::Spans => ROW_GROUP_ROWS / 4,
            View::LogEntries | View::Measures => ROW_GROUP_ROWS,
        };
        properties = properties
            .set_column_bloom_filter_enabled("trace_id".into(), true)
            .set_column_bloom_filter_max_ndv("trace_id".into(), distinct as u64)
            .set_column_bloom_filter_fpp("trace_id".into(), 0.01);
    }
    let mut out = Vec::new();
    let mut writer =
        ArrowWriter::try_new(&mut out, schema, Some(properties.build())).map_err(parquet_error)?;
    for batch in batches {
        writer.write(batch).map_err(parquet_error)?;
    }
    writer.close().map_err(parquet_error)?;
    let rows = batches.iter().map(|b| b.num_rows() as u64).sum();
    Ok((out.into(), rows))
}
