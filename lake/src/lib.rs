//! framelake's lake: where every payload lands and how it is found again.
//!
//! - [`catalog`]: what is stored, per tenant (PostgreSQL or SQLite).
//! - [`store`]: the object store (S3, local files, memory).
//! - [`segment`]: the versioned object format that holds blocks.
//! - [`writer`]: group commit, the durable write path receivers call.
//! - [`view`]: the SQL views' rows, decoded from stored blocks.
//! - [`materialize`]: blocks into Parquet partitions; [`partition`]: their objects.
//! - [`compact`]: small partitions into fewer, larger, sorted ones.
//! - [`retention`]: old data removed in bulk.
//!
//! A [`Lake`] joins a catalog and a store.

pub mod catalog;
pub mod compact;
mod error;
pub mod host;
pub mod ids;
pub mod materialize;
pub mod partition;
pub mod paths;
pub mod retention;
pub mod seglog;
pub mod segment;
pub mod store;
pub mod tenancy;
pub mod view;
pub mod writer;

use std::sync::Arc;

use bytes::Bytes;
use object_store::ObjectStoreExt;

use crate::catalog::{BlockRecord, Catalog};
pub use crate::error::{Error, Result};
use crate::ids::TenantId;
use crate::paths::SegmentPath;
use crate::store::{S3Options, Store};

/// Where the catalog and the objects are.
#[derive(Debug, Clone)]
pub struct LakeConfig {
    /// `postgres://…` or `sqlite://path`.
    pub database_url: String,
    /// `file://path`, `memory://` or `s3://bucket/prefix`.
    pub object_store_url: String,
    pub s3: S3Options,
}

impl LakeConfig {
    /// The embedded default: SQLite and local files under `data_dir`.
    pub fn embedded(data_dir: &std::path::Path) -> Self {
        LakeConfig {
            database_url: format!("sqlite://{}", data_dir.join("catalog.sqlite").display()),
            object_store_url: format!("file://{}", data_dir.join("objects").display()),
            s3: S3Options::default(),
        }
    }
}

/// A catalog and an object store: the lake.
#[derive(Debug, Clone)]
pub struct Lake {
    pub catalog: Arc<dyn Catalog>,
    pub store: Store,
    /// Native processes and thread names, as their blocks' rows need them:
    /// immutable once recorded, so kept (a bounded map, cleared when full).
    natives: Arc<std::sync::Mutex<NativeCache>>,
}

#[derive(Debug, Default)]
struct NativeCache {
    processes: std::collections::HashMap<(TenantId, ids::ProcessId), Arc<view::NativeProcess>>,
    threads: std::collections::HashMap<(TenantId, ids::StreamId), Arc<str>>,
}

/// Native processes and threads a lake keeps at most (each).
const NATIVE_CACHE_ENTRIES: usize = 16_384;

fn cache_insert<K: std::hash::Hash + Eq, V>(
    map: &mut std::collections::HashMap<K, V>,
    key: K,
    value: V,
) {
    if map.len() >= NATIVE_CACHE_ENTRIES {
        map.clear();
    }
    map.insert(key, value);
}

impl Lake {
    /// Opens the catalog (applying migrations) and the object store.
    pub async fn open(config: &LakeConfig) -> Result<Self> {
        let store = Store::open(&config.object_store_url, &config.s3)?;
        let catalog = catalog::open(&config.database_url).await?;
        Ok(Lake::new(catalog, store))
    }

    pub fn new(catalog: Arc<dyn Catalog>, store: Store) -> Self {
        Lake {
            catalog,
            store,
            natives: Arc::default(),
        }
    }

    /// Reads one block's payload, checking its checksum.
    pub async fn read_block(&self, tenant: &TenantId, block: &BlockRecord) -> Result<Bytes> {
        let (path, start) = match &block.segment_log {
            Some(log) => (
                object_store::path::Path::from(log.object.as_str()),
                log.offset + block.offset,
            ),
            None => (
                SegmentPath::new(tenant.clone(), block.segment_id).to_object_path(),
                block.offset,
            ),
        };
        let range = start..start + u64::from(block.length);
        let stored = self.store.get_range(&path, range).await?;
        let location = format!("{path}@{start}");
        let uncompressed = block.uncompressed_length as usize;
        let (codec, sum) = (block.codec, block.checksum);
        tokio::task::spawn_blocking(move || {
            segment::decode_block(&location, &stored, codec, sum, uncompressed)
        })
        .await
        .map_err(|e| Error::task("block decoding", e))?
    }

    /// A native process, as the rows of its blocks need it.
    pub async fn native_process(
        &self,
        tenant: &TenantId,
        id: &ids::ProcessId,
    ) -> Result<Arc<view::NativeProcess>> {
        let key = (tenant.clone(), *id);
        if let Some(process) = self.natives().processes.get(&key) {
            return Ok(Arc::clone(process));
        }
        let record = self
            .catalog
            .process(tenant, id)
            .await?
            .ok_or_else(|| Error::Corrupt {
                location: format!("process {id}"),
                reason: "a native block's process is not recorded".to_owned(),
            })?;
        let process = Arc::new(view::NativeProcess::of(&record)?);
        cache_insert(&mut self.natives().processes, key, Arc::clone(&process));
        Ok(process)
    }

    /// A native thread stream's name.
    pub async fn thread_name(&self, tenant: &TenantId, id: &ids::StreamId) -> Result<Arc<str>> {
        let key = (tenant.clone(), *id);
        if let Some(name) = self.natives().threads.get(&key) {
            return Ok(Arc::clone(name));
        }
        let record = self
            .catalog
            .stream(tenant, id)
            .await?
            .ok_or_else(|| Error::Corrupt {
                location: format!("stream {id}"),
                reason: "a native block's stream is not recorded".to_owned(),
            })?;
        let name: Arc<str> = record.name.into();
        cache_insert(&mut self.natives().threads, key, Arc::clone(&name));
        Ok(name)
    }

    fn natives(&self) -> std::sync::MutexGuard<'_, NativeCache> {
        self.natives
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// What a block's rows take from the catalog: its record, and for a
    /// native block its process (and thread name).
    pub async fn block_source(
        &self,
        tenant: &TenantId,
        block: &BlockRecord,
    ) -> Result<view::BlockSource> {
        let mut source = view::BlockSource::of(block);
        if is_native(block.kind) {
            source = source.with_native(self.native_process(tenant, &block.process_id).await?);
        }
        if block.kind == ids::BlockKind::NativeThread {
            source = source.with_thread_name(self.thread_name(tenant, &block.stream_id).await?);
        }
        Ok(source)
    }

    /// Deletes the objects whose deletion is due at `now` (see
    /// [`Catalog::garbage`]); returns how many.
    pub async fn delete_garbage(&self, now: i64) -> Result<usize> {
        let mut deleted = 0;
        loop {
            let due = self.catalog.garbage(now, 1000).await?;
            if due.is_empty() {
                return Ok(deleted);
            }
            for g in &due {
                let path = object_store::path::Path::from(g.path.as_str());
                match self.store.object_store().delete(&path).await {
                    // Gone already is fine (an earlier pass that stopped midway).
                    Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            self.catalog.forget_garbage(&due).await?;
            deleted += due.len();
        }
    }

    /// Removes objects that were written but never recorded (another
    /// maintainer won, or the work failed midway). Best effort: one left
    /// behind is unreferenced, never read.
    pub async fn discard(&self, paths: &[object_store::path::Path]) {
        for path in paths {
            if let Err(e) = self.store.object_store().delete(path).await {
                tracing::warn!(error = %e, %path, "removing an unrecorded object");
            }
        }
    }

    /// Reads one block and decodes it into rows of its view.
    pub async fn decode_block(
        &self,
        tenant: &TenantId,
        block: &BlockRecord,
    ) -> Result<arrow::array::RecordBatch> {
        let payload = self.read_block(tenant, block).await?;
        let source = self.block_source(tenant, block).await?;
        let kind = block.kind;
        tokio::task::spawn_blocking(move || view::decode(kind, &payload, &source))
            .await
            .map_err(|e| Error::task("block decoding", e))?
    }
}

/// Whether blocks of `kind` come from a native SDK (their rows need the process).
pub fn is_native(kind: ids::BlockKind) -> bool {
    matches!(
        kind,
        ids::BlockKind::NativeThread | ids::BlockKind::NativeLog | ids::BlockKind::NativeMetric
    )
}
