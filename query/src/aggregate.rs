//! Aggregate views: incremental data reduction defined in SQL.
//!
//! An aggregate view reduces an event view into rows of partial aggregates
//! per time bin (`transform`, SQL over the event view) and merges partial
//! rows into final ones (`merge`, SQL over the aggregate view itself, with
//! the same columns). The maintainer reduces each compacted partition of the
//! event view once (a [`Reducer`] pass) into a partition of the aggregate,
//! recorded in the same catalog transaction as the fact that the source
//! partition is reduced; the aggregate's own partitions are compacted by
//! merging ([`AggregateRewrite`]). A query of the aggregate reads, from one
//! catalog snapshot, its partitions and the source rows not reduced yet
//! (pending blocks, partitions not reduced), which it reduces on the fly:
//! every event counted once, at any moment.
//!
//! Shipped: `log_stats` (log records per minute by service, severity and
//! scope) and `span_stats` (spans, errors and durations per minute by
//! service and span name, with a duration sketch for percentiles). Users add
//! theirs in the configuration file:
//!
//! ```toml
//! [[aggregates]]
//! name = "checkout_errors"
//! source = "log_entries"
//! bin_seconds = 60
//! transform = "SELECT date_bin(INTERVAL '1 minute', time) AS time, count(*) AS n FROM log_entries WHERE severity_number >= 17 GROUP BY 1"
//! merge = "SELECT time, sum(n) AS n FROM checkout_errors GROUP BY 1"
//! ```
//!
//! The transform's rows must have a `time` column holding the start of their
//! bin, of `bin_seconds` width, which queries' time predicates prune by.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{AsArray, RecordBatch};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimestampNanosecondType};
use async_trait::async_trait;
use bytes::Bytes;
use datafusion::catalog::Session;
use datafusion::datasource::{TableProvider, TableType};
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::prelude::SessionContext;
use framelake_lake::Lake;
use framelake_lake::catalog::{
    PartitionChange, PartitionFilter, PartitionRecord, Reduction, SnapshotRequest, ViewSnapshot,
};
use framelake_lake::compact::Rewrite;
use framelake_lake::host::now_nanos;
use framelake_lake::ids::{PartitionId, TenantId};
use framelake_lake::partition::{self, Encoding, ROW_GROUP_ROWS};
use framelake_lake::view::View;
use framelake_lake::view::catalog::CatalogView;
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use crate::QueryError;
use crate::engine::Engine;
use crate::table::{EventTable, PartitionTable, TimeRange, time_range};

const SECOND: i64 = 1_000_000_000;

/// An aggregate view as configured.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AggregateDefinition {
    /// The name SQL knows it by.
    pub name: String,
    /// The event view it reduces: `log_entries`, `spans` or `measures`.
    pub source: String,
    /// Width of its time bins, in seconds [default: 60].
    #[serde(default = "default_bin_seconds")]
    pub bin_seconds: u64,
    /// SQL over `source`: partial aggregates, with a `time` column.
    pub transform: String,
    /// SQL over `name`: partial rows merged, with the transform's columns.
    pub merge: String,
}

fn default_bin_seconds() -> u64 {
    60
}

/// The aggregate views every framelake has.
pub fn shipped() -> Vec<AggregateDefinition> {
    vec![
        AggregateDefinition {
            name: "log_stats".into(),
            source: "log_entries".into(),
            bin_seconds: 60,
            transform: "SELECT date_bin(INTERVAL '1 minute', time) AS time, service_name, \
                        severity_number, severity_text, scope_name, count(*) AS count \
                        FROM log_entries GROUP BY 1, 2, 3, 4, 5"
                .into(),
            merge: "SELECT time, service_name, severity_number, severity_text, scope_name, \
                    sum(count) AS count FROM log_stats GROUP BY 1, 2, 3, 4, 5"
                .into(),
        },
        AggregateDefinition {
            name: "span_stats".into(),
            source: "spans".into(),
            bin_seconds: 60,
            transform: "SELECT date_bin(INTERVAL '1 minute', start_time) AS time, service_name, \
                        name, count(*) AS count, count(*) FILTER (WHERE status_code = 2) AS errors, \
                        sum(duration_ns) AS duration_sum_ns, min(duration_ns) AS duration_min_ns, \
                        max(duration_ns) AS duration_max_ns, sketch(duration_ns) AS durations \
                        FROM spans GROUP BY 1, 2, 3"
                .into(),
            merge: "SELECT time, service_name, name, sum(count) AS count, sum(errors) AS errors, \
                    sum(duration_sum_ns) AS duration_sum_ns, min(duration_min_ns) AS duration_min_ns, \
                    max(duration_max_ns) AS duration_max_ns, merge_sketches(durations) AS durations \
                    FROM span_stats GROUP BY 1, 2, 3"
                .into(),
        },
    ]
}

/// The partial rows' table in the sessions that merge them.
const REDUCED: &str = "__reduced";

/// An aggregate view, planned.
#[derive(Debug, Clone)]
pub struct Aggregate {
    pub definition: AggregateDefinition,
    pub source: View,
    /// The name its partitions are kept under: its name and a hash of its
    /// definition, so that a changed definition starts afresh.
    pub storage: String,
    /// Its stored rows (partial and merged alike; every column nullable).
    pub partial: SchemaRef,
    /// Its rows as queries see them.
    pub schema: SchemaRef,
}

impl Aggregate {
    /// Checks a definition and works out its schemas.
    pub(crate) async fn plan(
        engine: &Engine,
        definition: AggregateDefinition,
    ) -> Result<Aggregate, QueryError> {
        let bad =
            |what: String| QueryError::Config(format!("aggregate {:?}: {what}", definition.name));
        let builtin = View::ALL
            .iter()
            .map(|v| v.name())
            .chain(CatalogView::ALL.iter().map(|v| v.name()))
            .chain([crate::engine::FRAMES]);
        if definition.name.is_empty()
            || !definition
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            return Err(bad("a name is letters, digits and '_'".into()));
        }
        if builtin.clone().any(|n| n == definition.name) {
            return Err(bad("the name is a built-in view's".into()));
        }
        let source = View::ALL
            .into_iter()
            .find(|v| v.name() == definition.source)
            .ok_or_else(|| {
                bad(format!(
                    "source {:?} is not an event view",
                    definition.source
                ))
            })?;
        if definition.bin_seconds == 0 {
            return Err(bad("bin_seconds must be positive".into()));
        }
        let tenant: TenantId = "default"
            .parse()
            .map_err(|e| QueryError::Internal(format!("{e}")))?;
        let plan = |e: DataFusionError| bad(e.strip_backtrace());
        let ctx = engine.bare_session()?;
        let empty = EventTable::fixed(
            source,
            Arc::clone(engine.lake()),
            tenant.clone(),
            ViewSnapshot::default(),
        );
        ctx.register_table(source.name(), Arc::new(empty))
            .map_err(plan)?;
        let transformed = ctx.sql(&definition.transform).await.map_err(plan)?;
        let partial = nullable(transformed.schema().as_arrow());
        match partial.field_with_name("time").map(|f| f.data_type()) {
            Ok(DataType::Timestamp(_, _)) => {}
            _ => {
                return Err(bad(
                    "the transform must return a timestamp column `time`".into()
                ));
            }
        }
        let reduced = PartitionTable {
            schema: Arc::clone(&partial),
            tenant,
            partitions: Vec::new(),
        };
        ctx.register_table(REDUCED, Arc::new(reduced))
            .map_err(plan)?;
        let merged = merged(&ctx, &definition).await.map_err(plan)?;
        let schema = Arc::new(merged.schema().as_arrow().clone());
        let types = |s: &Schema| -> Vec<(String, DataType)> {
            s.fields()
                .iter()
                .map(|f| (f.name().clone(), f.data_type().clone()))
                .collect()
        };
        if types(&schema) != types(&partial) {
            return Err(bad(format!(
                "the merge must return the transform's columns, of the same types: {:?} vs {:?}",
                types(&schema),
                types(&partial)
            )));
        }
        let storage = format!(
            "{}-{:08x}",
            definition.name,
            xxhash_rust::xxh3::xxh3_64(
                format!(
                    "{}\n{}\n{}\n{}",
                    definition.source,
                    definition.bin_seconds,
                    definition.transform,
                    definition.merge
                )
                .as_bytes()
            ) as u32
        );
        Ok(Aggregate {
            definition,
            source,
            storage,
            partial,
            schema,
        })
    }

    fn bin(&self) -> i64 {
        i64::try_from(self.definition.bin_seconds)
            .unwrap_or(i64::MAX / SECOND)
            .saturating_mul(SECOND)
    }

    /// Rows in the stored schema.
    fn conform(&self, batches: Vec<RecordBatch>) -> DfResult<Vec<RecordBatch>> {
        batches
            .into_iter()
            .map(|b| {
                Ok(RecordBatch::try_new(
                    Arc::clone(&self.partial),
                    b.columns().to_vec(),
                )?)
            })
            .collect()
    }

    /// Its rows as one Parquet object (zstd 3), and their count.
    async fn encode(&self, batches: Vec<RecordBatch>) -> Result<(Bytes, u64), QueryError> {
        let batches = self.conform(batches)?;
        let schema = Arc::clone(&self.partial);
        tokio::task::spawn_blocking(move || {
            let encoding = Encoding {
                zstd_level: 3,
                free_text_zstd_level: 3,
                trace_ids_per_row_group: ROW_GROUP_ROWS as u64,
            };
            partition::write(schema, &batches, encoding)
        })
        .await
        .map_err(|e| QueryError::Internal(format!("parquet task: {e}")))?
        .map_err(QueryError::from)
    }

    /// Writes rows as one of its partitions (not yet recorded).
    async fn write(
        &self,
        lake: &Lake,
        tenant: &TenantId,
        batches: Vec<RecordBatch>,
        sources: &[PartitionRecord],
        level: i16,
    ) -> Result<PartitionRecord, QueryError> {
        let (min, max) = time_extent(&batches).unwrap_or_else(|| {
            (
                sources.iter().map(|p| p.min_time).min().unwrap_or_default(),
                sources.iter().map(|p| p.max_time).max().unwrap_or_default(),
            )
        });
        let (bytes, rows) = self.encode(batches).await?;
        let record = PartitionRecord {
            partition_id: PartitionId::new(),
            view: self.storage.clone(),
            level,
            min_time: min,
            max_time: max,
            min_insert_time: sources
                .iter()
                .map(|p| p.min_insert_time)
                .min()
                .unwrap_or_default(),
            max_insert_time: sources
                .iter()
                .map(|p| p.max_insert_time)
                .max()
                .unwrap_or_default(),
            row_count: rows,
            size: bytes.len() as u64,
            insert_time: now_nanos(),
        };
        lake.store.put_durable(&record.path(tenant), bytes).await?;
        Ok(record)
    }
}

/// A schema with every field nullable.
fn nullable(schema: &Schema) -> SchemaRef {
    Arc::new(Schema::new(
        schema
            .fields()
            .iter()
            .map(|f| f.as_ref().clone().with_nullable(true))
            .collect::<Vec<Field>>(),
    ))
}

/// Earliest and latest `time` of rows.
fn time_extent(batches: &[RecordBatch]) -> Option<(i64, i64)> {
    let mut extent: Option<(i64, i64)> = None;
    for batch in batches {
        let column = batch.column_by_name("time")?;
        let column = arrow::compute::cast(
            column,
            &DataType::Timestamp(arrow::datatypes::TimeUnit::Nanosecond, None),
        )
        .ok()?;
        let column = column.as_primitive::<TimestampNanosecondType>();
        if let (Some(min), Some(max)) = (arrow::compute::min(column), arrow::compute::max(column)) {
            extent = Some(extent.map_or((min, max), |(a, b)| (a.min(min), b.max(max))));
        }
    }
    extent
}

/// The merge over stored partial rows (`__reduced`) and source rows
/// transformed as they are read, in a session that has both tables.
async fn merged(
    ctx: &SessionContext,
    definition: &AggregateDefinition,
) -> DfResult<datafusion::dataframe::DataFrame> {
    let rows = ctx
        .table(REDUCED)
        .await?
        .union(ctx.sql(&definition.transform).await?)?;
    ctx.register_table(&definition.name, rows.into_view())?;
    ctx.sql(&definition.merge).await
}

/// A session over given rows of one tenant: the source view's `snapshot`
/// (its partitions and blocks), and the aggregate's `reduced` partitions.
fn session_over(
    engine: &Engine,
    ctx: SessionContext,
    aggregate: &Aggregate,
    tenant: &TenantId,
    snapshot: ViewSnapshot,
) -> DfResult<SessionContext> {
    let reduced = PartitionTable {
        schema: Arc::clone(&aggregate.partial),
        tenant: tenant.clone(),
        partitions: snapshot.reduced.clone(),
    };
    let source = EventTable::fixed(
        aggregate.source,
        Arc::clone(engine.lake()),
        tenant.clone(),
        snapshot,
    );
    ctx.register_table(aggregate.source.name(), Arc::new(source))?;
    ctx.register_table(REDUCED, Arc::new(reduced))?;
    Ok(ctx)
}

/// An aggregate view of one tenant.
#[derive(Debug)]
pub(crate) struct AggregateTable {
    aggregate: Aggregate,
    engine: Engine,
    tenant: TenantId,
}

impl AggregateTable {
    pub(crate) fn new(aggregate: Aggregate, engine: Engine, tenant: TenantId) -> Self {
        AggregateTable {
            aggregate,
            engine,
            tenant,
        }
    }
}

#[async_trait]
impl TableProvider for AggregateTable {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.aggregate.schema)
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> DfResult<Vec<TableProviderFilterPushDown>> {
        Ok(vec![TableProviderFilterPushDown::Inexact; filters.len()])
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let aggregate = &self.aggregate;
        let range = time_range(&["time"], filters);
        // A bin starting at t holds events of [t, t + bin).
        let source_range = TimeRange {
            min: range.min,
            max: range.max.saturating_add(aggregate.bin() - 1),
        };
        let snapshot = if range.is_empty() {
            ViewSnapshot::default()
        } else {
            self.engine
                .lake()
                .catalog
                .snapshot(
                    &self.tenant,
                    &SnapshotRequest {
                        view: aggregate.source.name(),
                        kinds: aggregate.source.kinds(),
                        processes: &[],
                        time_range: source_range.as_filter(),
                        aggregate: Some((&aggregate.storage, range.as_filter())),
                    },
                )
                .await
                .map_err(|e| DataFusionError::External(Box::new(e)))?
        };
        let ctx = SessionContext::new_with_config_rt(
            state.config().clone(),
            Arc::clone(state.runtime_env()),
        );
        crate::engine::register_functions(&ctx);
        let ctx = session_over(&self.engine, ctx, aggregate, &self.tenant, snapshot)?;
        let merged = merged(&ctx, &aggregate.definition).await?;
        merged
            .into_view()
            .scan(state, projection, filters, limit)
            .await
    }
}

/// What a reduction pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Reduced {
    /// Source partitions reduced.
    pub sources: usize,
    /// Aggregate partitions written.
    pub written: usize,
}

/// Reduces compacted partitions of event views into the aggregates' own.
#[derive(Debug, Clone)]
pub struct Reducer {
    engine: Engine,
    /// Most source partitions reduced into one aggregate partition.
    pub claim_limit: usize,
}

impl Reducer {
    pub fn new(engine: Engine) -> Self {
        Reducer {
            engine,
            claim_limit: 64,
        }
    }

    /// Reduces every interval until `stop`.
    pub async fn run(&self, interval: std::time::Duration, stop: CancellationToken) {
        loop {
            match self.pass().await {
                Ok(done) if done.written > 0 => tracing::debug!(?done, "reduced"),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "reduction failed; retrying"),
            }
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(interval) => {}
            }
        }
    }

    /// Reduces what every aggregate has not reduced yet, of every tenant.
    pub async fn pass(&self) -> Result<Reduced, QueryError> {
        let mut done = Reduced::default();
        for aggregate in self.engine.aggregates() {
            let catalog = &self.engine.lake().catalog;
            for tenant in catalog.partition_tenants(aggregate.source.name()).await? {
                loop {
                    let step = self.reduce(&tenant, aggregate).await?;
                    done.sources += step.sources;
                    done.written += step.written;
                    if step.sources == 0 {
                        break;
                    }
                }
            }
        }
        Ok(done)
    }

    /// Claims compacted source partitions the aggregate has not reduced and
    /// reduces them into one partition of the aggregate.
    pub async fn reduce(
        &self,
        tenant: &TenantId,
        aggregate: &Aggregate,
    ) -> Result<Reduced, QueryError> {
        let lake = self.engine.lake();
        let filter = PartitionFilter {
            view: aggregate.source.name().to_owned(),
            min_level: 1,
            max_level: i16::MAX,
            not_reduced_into: Some(aggregate.storage.clone()),
            limit: self.claim_limit,
            ..PartitionFilter::default()
        };
        let claim = lake.catalog.claim_partitions(tenant, &filter).await?;
        let sources = claim.partitions().to_vec();
        if sources.is_empty() {
            return Ok(Reduced::default());
        }
        let snapshot = ViewSnapshot {
            partitions: sources.clone(),
            ..ViewSnapshot::default()
        };
        let ctx = session_over(
            &self.engine,
            self.engine.bare_session()?,
            aggregate,
            tenant,
            snapshot,
        )?;
        let batches = ctx
            .sql(&aggregate.definition.transform)
            .await?
            .collect()
            .await?;
        let output = aggregate.write(lake, tenant, batches, &sources, 0).await?;
        let change = PartitionChange {
            reductions: vec![Reduction {
                output: output.clone(),
                sources: sources.iter().map(|p| p.partition_id).collect(),
            }],
            ..PartitionChange::default()
        };
        if !claim.commit(&change).await? {
            tracing::debug!(%tenant, aggregate = aggregate.definition.name, "reduced by another maintainer first");
            lake.discard(&[output.path(tenant)]).await;
            return Ok(Reduced::default());
        }
        Ok(Reduced {
            sources: sources.len(),
            written: 1,
        })
    }
}

/// Compacts aggregates' partitions: their rows merged by the aggregate's
/// `merge`.
#[derive(Debug, Clone)]
pub struct AggregateRewrite {
    engine: Engine,
}

impl AggregateRewrite {
    pub fn new(engine: Engine) -> Self {
        AggregateRewrite { engine }
    }
}

#[async_trait]
impl Rewrite for AggregateRewrite {
    fn views(&self) -> Vec<String> {
        self.engine
            .aggregates()
            .iter()
            .map(|a| a.storage.clone())
            .collect()
    }

    async fn rewrite(
        &self,
        tenant: &TenantId,
        view: &str,
        inputs: &[PartitionRecord],
    ) -> framelake_lake::Result<(Bytes, u64)> {
        let failed = |reason: String| framelake_lake::Error::Aggregate {
            view: view.to_owned(),
            reason,
        };
        let aggregate = self
            .engine
            .aggregates()
            .iter()
            .find(|a| a.storage == view)
            .ok_or_else(|| failed("not an aggregate".into()))?;
        let snapshot = ViewSnapshot {
            reduced: inputs.to_vec(),
            ..ViewSnapshot::default()
        };
        let batches = async {
            let ctx = session_over(
                &self.engine,
                self.engine.bare_session()?,
                aggregate,
                tenant,
                snapshot,
            )?;
            Ok::<_, QueryError>(merged(&ctx, &aggregate.definition).await?.collect().await?)
        }
        .await
        .map_err(|e| failed(e.to_string()))?;
        aggregate
            .encode(batches)
            .await
            .map_err(|e| failed(e.to_string()))
    }
}

/// Which aggregates must reduce each event view's partitions before they are
/// merged beyond level 1 (see [`framelake_lake::compact::CompactConfig`]).
pub fn reduced_first(engine: &Engine) -> HashMap<String, Vec<String>> {
    let mut map: HashMap<String, Vec<String>> = HashMap::new();
    for a in engine.aggregates() {
        map.entry(a.source.name().to_owned())
            .or_default()
            .push(a.storage.clone());
    }
    map
}
