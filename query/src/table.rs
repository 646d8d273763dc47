//! The views as DataFusion tables of one tenant.
//!
//! Event views read, from one catalog snapshot, the view's Parquet partitions
//! and the blocks not yet materialized (decoded as they are read): every
//! acknowledged event exactly once. Time predicates in the SQL
//! (`WHERE time > now() - interval '1 hour'`) become the time range asked of
//! the catalog, so partitions and blocks outside it are never opened.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use async_trait::async_trait;
use datafusion::catalog::Session;
use datafusion::common::stats::Precision;
use datafusion::common::{DFSchema, ScalarValue, Statistics};
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::datasource::physical_plan::parquet::CachedParquetFileReaderFactory;
use datafusion::datasource::physical_plan::{FileGroup, FileScanConfigBuilder, ParquetSource};
use datafusion::datasource::source::DataSourceExec;
use datafusion::datasource::{TableProvider, TableType};
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::memory_pool::MemoryConsumer;
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::utils::conjunction;
use datafusion::logical_expr::{Between, BinaryExpr, Expr, Operator, TableProviderFilterPushDown};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::streaming::{PartitionStream, StreamingTableExec};
use datafusion::physical_plan::union::UnionExec;
use framelake_lake::Lake;
use framelake_lake::catalog::{
    BlockFilter, BlockRecord, PartitionRecord, SnapshotRequest, ViewSnapshot,
};
use framelake_lake::ids::{ProcessId, TenantId};
use framelake_lake::materialize::{MaterializeConfig, Materializer};
use framelake_lake::view::catalog::CatalogView;
use framelake_lake::view::{self, View};

use crate::engine::Warnings;
use futures::StreamExt;

/// Blocks read ahead per scan partition.
const READ_AHEAD: usize = 4;

fn external(e: framelake_lake::Error) -> DataFusionError {
    DataFusionError::External(Box::new(e))
}

/// `log_entries`, `spans` or `measures` of one tenant.
#[derive(Debug)]
pub(crate) struct EventTable {
    view: View,
    /// The view's schema as queries see it (see [`query_schema`]).
    schema: SchemaRef,
    lake: Arc<Lake>,
    tenant: TenantId,
    /// What it reads, when given rather than asked of the catalog at scan.
    fixed: Option<ViewSnapshot>,
    /// For a view decoded on demand: caches the blocks a scan read.
    cache: Option<Cache>,
}

/// Caches, as partitions, the blocks of an on-demand view that scans read
/// (`thread_spans`): the next query of them reads Parquet. One caching task
/// per tenant at a time, in the background: the query that read the blocks
/// does not wait for it. What scans ask while it runs is queued for it, so
/// every block a query read is cached in the end.
#[derive(Debug, Clone)]
pub(crate) struct Cache {
    materializer: Materializer,
    running: Arc<Mutex<Running>>,
}

/// Tenants whose caching task runs, each with the requests queued for it.
type Running = HashMap<TenantId, Vec<(View, BlockFilter)>>;

/// Requests queued per tenant at most; past it they merge into one per view
/// (every pending block of it), which covers them all.
const CACHE_QUEUE: usize = 16;

impl Cache {
    pub(crate) fn new(lake: Arc<Lake>) -> Self {
        Cache {
            materializer: Materializer::new(lake, MaterializeConfig::default()),
            running: Arc::default(),
        }
    }

    fn running(&self) -> std::sync::MutexGuard<'_, Running> {
        self.running
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Caches the pending blocks of a view a filter selects: now, in a task
    /// of its own, or after what the tenant's running task is doing.
    fn start(&self, tenant: &TenantId, view: View, filter: BlockFilter) {
        {
            let mut running = self.running();
            if let Some(queue) = running.get_mut(tenant) {
                queue.push((view, filter));
                if queue.len() > CACHE_QUEUE {
                    let mut merged: Vec<(View, BlockFilter)> = Vec::new();
                    for (view, _) in queue.drain(..) {
                        if !merged.iter().any(|(v, _)| *v == view) {
                            merged.push((view, BlockFilter::default()));
                        }
                    }
                    *queue = merged;
                }
                return;
            }
            running.insert(tenant.clone(), Vec::new());
        }
        let (cache, tenant) = (self.clone(), tenant.clone());
        tokio::spawn(async move {
            let mut next = Some((view, filter));
            while let Some((view, filter)) = next {
                match cache.materializer.cache(&tenant, view, &filter).await {
                    Ok(done) => tracing::debug!(%tenant, view = view.name(), ?done, "cached"),
                    Err(e) => {
                        tracing::warn!(%tenant, view = view.name(), error = %e, "caching failed")
                    }
                }
                let mut running = cache.running();
                let queue = running
                    .get_mut(&tenant)
                    .expect("a running task's tenant is listed");
                next = queue.pop();
                if next.is_none() {
                    running.remove(&tenant);
                }
            }
        });
    }
}

impl EventTable {
    pub(crate) fn new(view: View, lake: Arc<Lake>, tenant: TenantId) -> Self {
        EventTable {
            view,
            schema: query_schema(&view.schema()),
            lake,
            tenant,
            fixed: None,
            cache: None,
        }
    }

    /// Caches the blocks its scans read (see [`Cache`]).
    pub(crate) fn with_cache(mut self, cache: Cache) -> Self {
        self.cache = Some(cache);
        self
    }

    /// The view's rows in these partitions and blocks only.
    pub(crate) fn fixed(
        view: View,
        lake: Arc<Lake>,
        tenant: TenantId,
        snapshot: ViewSnapshot,
    ) -> Self {
        EventTable {
            fixed: Some(snapshot),
            ..EventTable::new(view, lake, tenant)
        }
    }
}

/// A view's schema with its top-level strings as `Utf8View`, which DataFusion
/// filters, compares and groups faster (and reads from Parquet without a copy
/// per value). Stored Parquet and decoded blocks keep plain `Utf8`.
pub(crate) fn query_schema(stored: &Schema) -> SchemaRef {
    let fields: Vec<Field> = stored
        .fields()
        .iter()
        .map(|f| match f.data_type() {
            DataType::Utf8 => f.as_ref().clone().with_data_type(DataType::Utf8View),
            _ => f.as_ref().clone(),
        })
        .collect();
    Arc::new(Schema::new(fields))
}

#[async_trait]
impl TableProvider for EventTable {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> Result<Vec<TableProviderFilterPushDown>> {
        // Time predicates prune partitions and blocks through the catalog; every
        // predicate prunes Parquet row groups and pages. DataFusion still
        // filters the rows.
        Ok(vec![TableProviderFilterPushDown::Inexact; filters.len()])
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let range = time_range(self.view.time_columns(), filters);
        let processes = process_ids(filters, &self.schema);
        let snapshot = match &self.fixed {
            _ if range.is_empty() => ViewSnapshot::default(),
            Some(fixed) => fixed.overlapping(range),
            None => self
                .lake
                .catalog
                .snapshot(
                    &self.tenant,
                    &SnapshotRequest {
                        view: self.view.name(),
                        kinds: self.view.kinds(),
                        processes: &processes,
                        time_range: range.as_filter(),
                        aggregate: None,
                    },
                )
                .await
                .map_err(external)?,
        };
        if !snapshot.quarantined.is_empty() {
            Warnings::raise(
                state.config(),
                quarantine_warning(self.view, &snapshot.quarantined),
            );
        }
        if let Some(cache) = &self.cache
            && !snapshot.blocks.is_empty()
        {
            let filter = BlockFilter {
                processes,
                time_range: range.as_filter(),
                ..BlockFilter::default()
            };
            cache.start(&self.tenant, self.view, filter);
        }
        let mut inputs: Vec<Arc<dyn ExecutionPlan>> = Vec::new();
        if !snapshot.partitions.is_empty() {
            let partitions = &snapshot.partitions;
            inputs.push(parquet(
                state,
                &self.schema,
                &self.tenant,
                partitions,
                projection,
                filters,
                limit,
            )?);
        }
        if !snapshot.blocks.is_empty() || inputs.is_empty() {
            inputs.push(self.blocks(state, snapshot.blocks, projection, limit)?);
        }
        if inputs.len() == 1 {
            return Ok(inputs.remove(0));
        }
        UnionExec::try_new(inputs)
    }
}

/// Reads partitions with DataFusion's Parquet reader: predicates prune row
/// groups and pages by statistics and bloom filters.
pub(crate) fn parquet(
    state: &dyn Session,
    schema: &SchemaRef,
    tenant: &TenantId,
    partitions: &[PartitionRecord],
    projection: Option<&Vec<usize>>,
    filters: &[Expr],
    limit: Option<usize>,
) -> Result<Arc<dyn ExecutionPlan>> {
    // Footers and page indexes from the engine's cache: a query of recent
    // data would otherwise read and decode them again every time.
    let runtime = state.runtime_env();
    let reader = CachedParquetFileReaderFactory::new(
        runtime.object_store(lake_store_url())?,
        runtime.cache_manager.get_file_metadata_cache(),
    );
    // A session may ask for filters evaluated while decoding (late
    // materialization): the other columns are then decoded only for the rows
    // that pass.
    let pushdown = state.config_options().execution.parquet.pushdown_filters;
    let mut source = ParquetSource::new(Arc::clone(schema))
        .with_pushdown_filters(pushdown)
        .with_reorder_filters(pushdown)
        .with_enable_page_index(true)
        .with_bloom_filter_on_read(true)
        .with_parquet_file_reader_factory(Arc::new(reader));
    if let Some(predicate) = conjunction(filters.iter().map(|f| uncast_ids(f.clone(), schema))) {
        let df_schema = DFSchema::try_from(Arc::clone(schema))?;
        // A predicate the Parquet reader cannot use only costs pruning.
        if let Ok(predicate) = state.create_physical_expr(predicate, &df_schema) {
            source = source.with_predicate(predicate);
        }
    }
    // Newest files first: a query of the newest rows (`ORDER BY time DESC
    // LIMIT n`, Loki's backward direction) fills its top n from them, and
    // its dynamic filter then skips the row groups of older files.
    let mut newest_first: Vec<&PartitionRecord> = partitions.iter().collect();
    newest_first.sort_by_key(|p| std::cmp::Reverse(p.max_time));
    let files: Vec<PartitionedFile> = newest_first
        .into_iter()
        .map(|p| {
            // The catalog knows each file's rows: `count(*)` needs no scan.
            let mut statistics = Statistics::new_unknown(schema);
            statistics.num_rows = Precision::Exact(p.row_count as usize);
            PartitionedFile::new(p.path(tenant).to_string(), p.size)
                .with_statistics(Arc::new(statistics))
        })
        .collect();
    let groups = state
        .config()
        .target_partitions()
        .clamp(1, files.len().max(1));
    let mut file_groups = vec![Vec::new(); groups];
    for (i, file) in files.into_iter().enumerate() {
        file_groups[i % groups].push(file);
    }
    let config = FileScanConfigBuilder::new(lake_store_url(), Arc::new(source))
        .with_file_groups(file_groups.into_iter().map(FileGroup::new).collect())
        .with_projection_indices(projection.cloned())?
        .with_limit(limit)
        .build();
    Ok(DataSourceExec::from_data_source(config))
}

/// Given partitions of a view (an aggregate's), read as they are.
#[derive(Debug)]
pub(crate) struct PartitionTable {
    pub(crate) schema: SchemaRef,
    pub(crate) tenant: TenantId,
    pub(crate) partitions: Vec<PartitionRecord>,
}

#[async_trait]
impl TableProvider for PartitionTable {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> Result<Vec<TableProviderFilterPushDown>> {
        Ok(vec![TableProviderFilterPushDown::Inexact; filters.len()])
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        if self.partitions.is_empty() {
            let schema = Arc::clone(&self.schema);
            return Ok(MemorySourceConfig::try_new_exec(
                &[vec![]],
                schema,
                projection.cloned(),
            )?);
        }
        parquet(
            state,
            &self.schema,
            &self.tenant,
            &self.partitions,
            projection,
            filters,
            limit,
        )
    }
}

impl EventTable {
    /// Reads blocks not yet materialized, decoding them as they come.
    fn blocks(
        &self,
        state: &dyn Session,
        blocks: Vec<BlockRecord>,
        projection: Option<&Vec<usize>>,
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let partitions = state
            .config()
            .target_partitions()
            .clamp(1, blocks.len().max(1));
        let mut groups = vec![Vec::new(); partitions];
        for (i, block) in blocks.into_iter().enumerate() {
            groups[i % partitions].push(block);
        }
        let schema = Arc::clone(&self.schema);
        let streams = groups
            .into_iter()
            .map(|blocks| {
                Arc::new(BlockStream {
                    view: self.view,
                    schema: Arc::clone(&schema),
                    lake: Arc::clone(&self.lake),
                    tenant: self.tenant.clone(),
                    blocks,
                }) as Arc<dyn PartitionStream>
            })
            .collect();
        Ok(Arc::new(StreamingTableExec::try_new(
            schema,
            streams,
            projection,
            [],
            false,
            limit,
        )?))
    }
}

/// The processes filters confine rows to (`process_id = X'…'` or
/// `process_id IN (…)`); empty when they do not.
fn process_ids(filters: &[Expr], schema: &Schema) -> Vec<ProcessId> {
    let id = |e: &Expr| match e {
        Expr::Literal(ScalarValue::FixedSizeBinary(16, Some(v)), _) => {
            ProcessId::from_slice(v).ok()
        }
        _ => None,
    };
    let is_process = |e: &Expr| matches!(e, Expr::Column(c) if c.name == "process_id");
    if schema.field_with_name("process_id").is_err() {
        return Vec::new();
    }
    filters
        .iter()
        .find_map(|f| match uncast_ids(f.clone(), schema) {
            Expr::BinaryExpr(BinaryExpr {
                left,
                op: Operator::Eq,
                right,
            }) => {
                if is_process(&left) {
                    Some(vec![id(&right)?])
                } else if is_process(&right) {
                    Some(vec![id(&left)?])
                } else {
                    None
                }
            }
            Expr::InList(list) if !list.negated && is_process(&list.expr) => list
                .list
                .iter()
                .map(|e| id(&uncast_literal(e)?))
                .collect::<Option<Vec<_>>>(),
            _ => None,
        })
        .unwrap_or_default()
}

/// A binary literal of an id's length as a fixed-size one.
fn uncast_literal(e: &Expr) -> Option<Expr> {
    match e {
        Expr::Literal(ScalarValue::Binary(Some(v)) | ScalarValue::BinaryView(Some(v)), _)
            if v.len() == 16 =>
        {
            Some(Expr::Literal(
                ScalarValue::FixedSizeBinary(16, Some(v.clone())),
                None,
            ))
        }
        Expr::Literal(ScalarValue::FixedSizeBinary(16, Some(_)), _) => Some(e.clone()),
        _ => None,
    }
}

/// `trace_id = X'…'` compares the id column cast to binary with a binary
/// literal, which statistics and bloom filters cannot prune with; the same
/// comparison with the literal as a fixed-size id can.
fn uncast_ids(filter: Expr, schema: &Schema) -> Expr {
    use datafusion::common::tree_node::{Transformed, TreeNode};
    let id_column = |e: &Expr| -> Option<(Expr, i32)> {
        let Expr::Cast(cast) = e else { return None };
        let Expr::Column(column) = cast.expr.as_ref() else {
            return None;
        };
        match schema.field_with_name(&column.name).ok()?.data_type() {
            DataType::FixedSizeBinary(n) => Some((cast.expr.as_ref().clone(), *n)),
            _ => None,
        }
    };
    let id_literal = |e: &Expr, n: i32| -> Option<Expr> {
        let Expr::Literal(ScalarValue::Binary(Some(v)) | ScalarValue::BinaryView(Some(v)), _) = e
        else {
            return None;
        };
        (v.len() == n as usize)
            .then(|| Expr::Literal(ScalarValue::FixedSizeBinary(n, Some(v.clone())), None))
    };
    let rewritten = filter.clone().transform_up(|e| {
        let Expr::BinaryExpr(BinaryExpr { left, op, right }) = &e else {
            return Ok(Transformed::no(e));
        };
        if !matches!(op, Operator::Eq | Operator::NotEq) {
            return Ok(Transformed::no(e));
        }
        let pair = id_column(left)
            .and_then(|(c, n)| Some((c, id_literal(right, n)?)))
            .or_else(|| id_column(right).and_then(|(c, n)| Some((c, id_literal(left, n)?))));
        Ok(match pair {
            Some((column, id)) => Transformed::yes(Expr::BinaryExpr(BinaryExpr::new(
                Box::new(column),
                *op,
                Box::new(id),
            ))),
            None => Transformed::no(e),
        })
    });
    rewritten.map(|t| t.data).unwrap_or(filter)
}

/// The URL the lake's object store is registered under in query sessions.
/// A time (Unix nanoseconds) as a literal of the views' timestamps.
pub(crate) fn time_literal(ns: i64) -> Expr {
    Expr::Literal(
        ScalarValue::TimestampNanosecond(Some(ns), Some("UTC".into())),
        None,
    )
}

pub(crate) fn lake_store_url() -> ObjectStoreUrl {
    ObjectStoreUrl::parse("framelake://lake/").expect("a valid URL")
}

/// What decoding a block may build, taken from the query's memory while it
/// decodes: an OTLP payload decodes to prost's structs, at worst one of ~64
/// bytes for every two bytes sent (an empty attribute), so 32 times its
/// size; a native one's events are LZ4 blocks, some times larger decoded.
/// Past the query's memory, the query fails (422) rather than the process.
fn decoding_bytes(block: &BlockRecord) -> usize {
    (block.uncompressed_length as usize).saturating_mul(DECODE_FACTOR)
}

/// See [`decoding_bytes`].
const DECODE_FACTOR: usize = 32;

/// One scan partition: some blocks, read and decoded in turn.
#[derive(Debug)]
struct BlockStream {
    view: View,
    schema: SchemaRef,
    lake: Arc<Lake>,
    tenant: TenantId,
    blocks: Vec<BlockRecord>,
}

impl PartitionStream for BlockStream {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn execute(&self, ctx: Arc<TaskContext>) -> SendableRecordBatchStream {
        let (lake, tenant) = (Arc::clone(&self.lake), self.tenant.clone());
        let schema = Arc::clone(&self.schema);
        let pool = Arc::clone(ctx.memory_pool());
        let view = self.view;
        let batches = futures::stream::iter(self.blocks.clone())
            .map(move |block| {
                let (lake, tenant, schema) =
                    (Arc::clone(&lake), tenant.clone(), Arc::clone(&schema));
                let decoding = MemoryConsumer::new("framelake block decoding").register(&pool);
                let ctx = Arc::clone(&ctx);
                async move {
                    decoding.try_grow(decoding_bytes(&block))?;
                    match lake.decode_block(&tenant, &block).await {
                        Ok(decoded) => cast_to(&schema, decoded).map(Some),
                        // A block that does not read back is left out, said,
                        // and quarantined for the queries that follow.
                        Err(e) if e.is_block_fault() => {
                            let reason = e.to_string();
                            tracing::error!(%tenant, block_id = %block.block_id, error = %reason,
                                "block quarantined: its events are left out of queries");
                            let mut left_out = block.clone();
                            left_out.quarantine = Some(reason.clone());
                            Warnings::raise(
                                ctx.session_config(),
                                quarantine_warning(view, &[left_out]),
                            );
                            lake.catalog
                                .quarantine(&tenant, block.block_id, &reason)
                                .await
                                .map_err(external)?;
                            Ok(None)
                        }
                        Err(e) => Err(external(e)),
                    }
                }
            })
            .buffered(READ_AHEAD)
            .filter_map(|batch| std::future::ready(batch.transpose()));
        Box::pin(RecordBatchStreamAdapter::new(
            Arc::clone(&self.schema),
            batches,
        ))
    }
}

/// A decoded batch in the query schema (strings as views).
pub(crate) fn cast_to(
    schema: &SchemaRef,
    batch: arrow::array::RecordBatch,
) -> Result<arrow::array::RecordBatch> {
    let columns = batch
        .columns()
        .iter()
        .zip(schema.fields())
        .map(|(c, f)| {
            if c.data_type() == f.data_type() {
                Ok(Arc::clone(c))
            } else {
                arrow::compute::cast(c, f.data_type())
            }
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(arrow::array::RecordBatch::try_new(
        Arc::clone(schema),
        columns,
    )?)
}

trait Overlapping {
    fn overlapping(&self, range: TimeRange) -> Self;
}

impl Overlapping for ViewSnapshot {
    /// What of the snapshot overlaps a time range.
    fn overlapping(&self, range: TimeRange) -> ViewSnapshot {
        ViewSnapshot {
            partitions: self
                .partitions
                .iter()
                .filter(|p| range.overlaps(p.min_time, p.max_time))
                .cloned()
                .collect(),
            blocks: self
                .blocks
                .iter()
                .filter(|b| range.overlaps(b.min_time, b.max_time))
                .cloned()
                .collect(),
            reduced: Vec::new(),
            quarantined: self
                .quarantined
                .iter()
                .filter(|b| range.overlaps(b.min_time, b.max_time))
                .cloned()
                .collect(),
        }
    }
}

/// What an answer says of the quarantined blocks of its range.
fn quarantine_warning(view: View, quarantined: &[BlockRecord]) -> String {
    let events: u64 = quarantined.iter().map(|b| u64::from(b.event_count)).sum();
    let reason = quarantined
        .iter()
        .find_map(|b| b.quarantine.as_deref())
        .unwrap_or("unreadable");
    format!(
        "{} quarantined block(s) of {} in the queried range are left out ({events} events): \
         {reason}; SELECT * FROM blocks WHERE quarantine_error IS NOT NULL lists them",
        quarantined.len(),
        view.name(),
    )
}

/// `processes`, `streams` or `blocks` of one tenant, read from the catalog at scan.
#[derive(Debug)]
pub(crate) struct CatalogTable {
    view: CatalogView,
    lake: Arc<Lake>,
    tenant: TenantId,
}

impl CatalogTable {
    pub(crate) fn new(view: CatalogView, lake: Arc<Lake>, tenant: TenantId) -> Self {
        CatalogTable { view, lake, tenant }
    }
}

#[async_trait]
impl TableProvider for CatalogTable {
    fn schema(&self) -> SchemaRef {
        self.view.schema()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let catalog = &self.lake.catalog;
        let batch = match self.view {
            CatalogView::Processes => {
                let records = catalog.processes(&self.tenant).await.map_err(external)?;
                view::catalog::processes(&records).map_err(external)?
            }
            CatalogView::Streams => {
                view::catalog::streams(&catalog.streams(&self.tenant).await.map_err(external)?)
            }
            CatalogView::Blocks => {
                let all = BlockFilter::default();
                view::catalog::blocks(&catalog.blocks(&self.tenant, &all).await.map_err(external)?)
            }
        };
        Ok(MemorySourceConfig::try_new_exec(
            &[vec![batch]],
            self.view.schema(),
            projection.cloned(),
        )?)
    }
}

/// An inclusive range of event times, in nanoseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TimeRange {
    pub(crate) min: i64,
    pub(crate) max: i64,
}

impl TimeRange {
    pub(crate) const ALL: TimeRange = TimeRange {
        min: i64::MIN,
        max: i64::MAX,
    };

    fn intersect(self, other: TimeRange) -> TimeRange {
        TimeRange {
            min: self.min.max(other.min),
            max: self.max.min(other.max),
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.min > self.max
    }

    pub(crate) fn overlaps(&self, min: i64, max: i64) -> bool {
        max >= self.min && min <= self.max
    }

    pub(crate) fn as_filter(&self) -> Option<(i64, i64)> {
        (*self != TimeRange::ALL).then_some((self.min, self.max))
    }
}

/// The time range filters confine rows to, by their time columns.
pub(crate) fn time_range(columns: &[&str], filters: &[Expr]) -> TimeRange {
    filters
        .iter()
        .filter_map(|f| time_bounds(columns, f))
        .fold(TimeRange::ALL, TimeRange::intersect)
}

/// The time range a filter confines rows to, if it is a comparison of one
/// of their time columns with a timestamp.
fn time_bounds(columns: &[&str], filter: &Expr) -> Option<TimeRange> {
    let is_time = |e: &Expr| matches!(e, Expr::Column(c) if columns.contains(&c.name.as_str()));
    match filter {
        Expr::BinaryExpr(BinaryExpr { left, op, right }) => {
            let (op, value) = if is_time(left) {
                (*op, nanos(right)?)
            } else if is_time(right) {
                (op.swap()?, nanos(left)?)
            } else {
                return None;
            };
            let mut range = TimeRange::ALL;
            match op {
                Operator::Gt | Operator::GtEq => range.min = value,
                Operator::Lt | Operator::LtEq => range.max = value,
                Operator::Eq => (range.min, range.max) = (value, value),
                _ => return None,
            }
            Some(range)
        }
        Expr::Between(Between {
            expr,
            negated: false,
            low,
            high,
        }) if is_time(expr) => Some(TimeRange {
            min: nanos(low)?,
            max: nanos(high)?,
        }),
        _ => None,
    }
}

/// A timestamp literal in nanoseconds (saturating).
fn nanos(e: &Expr) -> Option<i64> {
    let Expr::Literal(value, _) = e else {
        return None;
    };
    match value {
        ScalarValue::TimestampNanosecond(Some(v), _) => Some(*v),
        ScalarValue::TimestampMicrosecond(Some(v), _) => Some(v.saturating_mul(1_000)),
        ScalarValue::TimestampMillisecond(Some(v), _) => Some(v.saturating_mul(1_000_000)),
        ScalarValue::TimestampSecond(Some(v), _) => Some(v.saturating_mul(1_000_000_000)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use datafusion::prelude::{col, lit};

    use super::*;

    fn ts(v: i64) -> Expr {
        lit(ScalarValue::TimestampNanosecond(
            Some(v),
            Some("UTC".into()),
        ))
    }

    #[test]
    fn id_comparisons_lose_their_cast() {
        let schema = View::Spans.schema();
        let id = vec![7u8; 16];
        let cast = Expr::Cast(datafusion::logical_expr::Cast::new(
            Box::new(col("trace_id")),
            DataType::Binary,
        ));
        let filter = cast.clone().eq(lit(ScalarValue::Binary(Some(id.clone()))));
        assert_eq!(
            uncast_ids(filter, &schema),
            col("trace_id").eq(lit(ScalarValue::FixedSizeBinary(16, Some(id))))
        );
        // A literal of another length (never equal) stays as it was.
        let short = cast.eq(lit(ScalarValue::Binary(Some(vec![1]))));
        assert_eq!(uncast_ids(short.clone(), &schema), short);
    }

    #[test]
    fn time_predicates_become_block_ranges() {
        let logs = View::LogEntries;
        let range = |e: Expr| time_bounds(logs.time_columns(), &e);
        assert_eq!(
            range(col("time").gt(ts(10))),
            Some(TimeRange {
                min: 10,
                max: i64::MAX
            })
        );
        assert_eq!(
            range(ts(10).gt(col("time"))),
            Some(TimeRange {
                min: i64::MIN,
                max: 10
            })
        );
        assert_eq!(
            range(col("time").eq(ts(7))),
            Some(TimeRange { min: 7, max: 7 })
        );
        assert_eq!(
            range(col("time").between(ts(1), ts(2))),
            Some(TimeRange { min: 1, max: 2 })
        );
        let micros = lit(ScalarValue::TimestampMicrosecond(Some(3), None));
        assert_eq!(
            range(col("time").lt_eq(micros)),
            Some(TimeRange {
                min: i64::MIN,
                max: 3_000
            })
        );
        assert_eq!(range(col("time").not_eq(ts(1))), None);
        assert_eq!(range(col("severity_number").gt(lit(3))), None);
        assert_eq!(range(col("time").not_between(ts(1), ts(2))), None);
        assert_eq!(
            time_bounds(View::Spans.time_columns(), &col("time").gt(ts(1))),
            None
        );
        assert!(time_bounds(View::Spans.time_columns(), &col("end_time").gt(ts(1))).is_some());
        let empty = TimeRange::ALL
            .intersect(TimeRange {
                min: 5,
                max: i64::MAX,
            })
            .intersect(TimeRange {
                min: i64::MIN,
                max: 4,
            });
        assert!(empty.is_empty());
    }
}
