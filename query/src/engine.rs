//! The query engine: one DataFusion session per query, scoped to the caller's
//! tenant, read-only, with a memory and a time limit.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use datafusion::catalog::TableProvider;
use datafusion::catalog::view::ViewTable;
use datafusion::common::ScalarValue;
use datafusion::datasource::provider_as_source;
use datafusion::error::DataFusionError;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::execution::cache::cache_manager::{CacheManagerConfig, FileMetadataCache};
use datafusion::execution::cache::default_cache::DefaultCache;
use datafusion::execution::disk_manager::{DiskManagerBuilder, DiskManagerMode};
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::execution::session_state::SessionStateBuilder;
use datafusion::physical_plan::RecordBatchStream;
use datafusion::prelude::{DataFrame, SQLOptions, SessionConfig, SessionContext};
use framelake_lake::Lake;
use framelake_lake::ids::TenantId;
use framelake_lake::view::View;
use framelake_lake::view::catalog::CatalogView;
use futures::{Stream, StreamExt};

use crate::QueryError;
use crate::aggregate::{Aggregate, AggregateDefinition, AggregateTable};
use crate::parse::{self, SqlBounds};
use crate::table::{Cache, CatalogTable, EventTable};

/// What one query may use.
#[derive(Debug, Clone)]
pub struct QueryLimits {
    /// Memory for the query's operators (sorts, joins, aggregations); over it,
    /// the query fails with a clear error rather than spilling.
    pub memory_bytes: usize,
    /// Wall time from planning to the last row.
    pub timeout: Duration,
    /// What one call of a scalar function may build (one batch of its
    /// output): functions such as `repeat` are refused before they run
    /// past it, any other fails the query once its output does.
    pub function_bytes: usize,
    /// How many partitions a scan is split into.
    pub target_partitions: usize,
    /// How large and deep a query's SQL may be.
    pub sql: SqlBounds,
}

impl Default for QueryLimits {
    fn default() -> Self {
        QueryLimits {
            memory_bytes: 1 << 30,
            timeout: Duration::from_secs(60),
            function_bytes: 256 << 20,
            target_partitions: std::thread::available_parallelism().map_or(2, |n| n.get()),
            sql: SqlBounds::default(),
        }
    }
}

/// Memory for the Parquet metadata of partitions (footers and page
/// indexes: a few hundred KB per partition; least recently used goes).
const METADATA_CACHE_BYTES: usize = 256 << 20;

/// Answers SQL over the lake.
#[derive(Debug, Clone)]
pub struct Engine {
    lake: Arc<Lake>,
    limits: QueryLimits,
    aggregates: Arc<Vec<Aggregate>>,
    /// Parquet footers and page indexes of partitions, shared by every
    /// query (partition objects never change: a path is one content).
    metadata: Arc<FileMetadataCache>,
    /// Caches what scans of on-demand views decode.
    cache: Cache,
    threads: Arc<QueryThreads>,
}

/// The threads queries plan and run on, apart from the listeners'. A
/// DataFusion operator may compute for seconds in one poll (a join's batch,
/// a sort taking its input): on the listeners' threads that held up every
/// other request, and the timer that ends a query at its time limit, whose
/// answer came many seconds late. Here the listener answers at the limit and
/// the query's tasks are aborted, to end at their next yield.
#[derive(Debug)]
struct QueryThreads(Option<tokio::runtime::Runtime>);

impl QueryThreads {
    fn start(threads: usize, stack_bytes: usize) -> Result<Self, QueryError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads.max(1))
            .thread_name("framelake-query")
            .thread_stack_size(stack_bytes)
            .enable_all()
            .build()
            .map_err(|e| QueryError::Internal(format!("starting the query threads: {e}")))?;
        Ok(QueryThreads(Some(runtime)))
    }

    /// Runs `task` on the query threads; aborted when the handle is dropped.
    fn spawn<T: Send + 'static>(
        &self,
        task: impl Future<Output = T> + Send + 'static,
    ) -> AbortOnDrop<T> {
        let runtime = self
            .0
            .as_ref()
            .expect("the query threads live until dropped");
        AbortOnDrop(runtime.spawn(task))
    }
}

impl Drop for QueryThreads {
    /// Dropped from async code too, where waiting for threads is not allowed.
    fn drop(&mut self) {
        if let Some(runtime) = self.0.take() {
            runtime.shutdown_background();
        }
    }
}

/// A task aborted when its handle is dropped.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl<T> AbortOnDrop<T> {
    /// The task's result, or a timeout at `deadline` (the task is then aborted).
    async fn until(
        mut self,
        deadline: tokio::time::Instant,
        limit: Duration,
    ) -> Result<T, QueryError> {
        match tokio::time::timeout_at(deadline, &mut self.0).await {
            Err(_) => Err(QueryError::Timeout(limit)),
            Ok(Err(e)) => Err(QueryError::Internal(format!("a query task failed: {e}"))),
            Ok(Ok(result)) => Ok(result),
        }
    }
}

/// The frames view's name.
pub const FRAMES: &str = "frames";

/// `frames`: one row per frame of a native process, from the SDK's
/// `frame.duration` metric (`measures`, always sent, never sampled): when
/// it began and ended. Filters on its columns reach `measures` (a time
/// filter on `begin` prunes partitions).
fn frames(measures: Arc<dyn TableProvider>) -> Result<Arc<dyn TableProvider>, DataFusionError> {
    use datafusion::logical_expr::{LogicalPlanBuilder, cast};
    use datafusion::prelude::{col, lit};
    let duration = cast(
        col("int_value"),
        DataType::Duration(arrow::datatypes::TimeUnit::Nanosecond),
    );
    let plan = LogicalPlanBuilder::scan("measures", provider_as_source(measures), None)?
        .filter(
            col("name")
                .eq(lit("frame.duration"))
                .and(col("unit").eq(lit("ns"))),
        )?
        .project([
            col("process_id"),
            col("service_name"),
            col("time").alias("begin"),
            (col("time") + duration).alias("end"),
            col("int_value").alias("duration_ns"),
        ])?
        .build()?;
    Ok(Arc::new(ViewTable::new(plan, None)))
}

/// A planned query.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub schema: SchemaRef,
    /// One field per parameter, in order.
    pub parameters: SchemaRef,
}

/// A running query: its schema and its rows, as they come.
pub struct Rows {
    pub schema: SchemaRef,
    pub stream: SendableRecordBatchStream,
    /// What the answer leaves out (quarantined blocks of the range): APIs
    /// pass these on beside the rows. Scans raise them as they plan (before
    /// the first row), and as they meet a block that does not read back.
    pub warnings: Arc<Warnings>,
}

/// Warnings a query raises, kept in its session's configuration.
#[derive(Debug, Default)]
pub struct Warnings(Mutex<Vec<String>>);

impl Warnings {
    /// Adds a warning, once.
    pub(crate) fn push(&self, warning: String) {
        let mut all = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if !all.contains(&warning) {
            all.push(warning);
        }
    }

    /// Adds a warning to those of a session, if it keeps them.
    pub(crate) fn raise(config: &SessionConfig, warning: String) {
        if let Some(warnings) = config.get_extension::<Warnings>() {
            warnings.push(warning);
        }
    }

    /// The header (HTTP) and metadata (FlightSQL) key that carries each
    /// warning of an answer.
    pub const HEADER: &'static str = "framelake-warning";

    /// A warning as a header value: visible ASCII, anything else as `?`.
    pub fn header_value(warning: &str) -> String {
        warning
            .chars()
            .map(|c| {
                if c.is_ascii_graphic() || c == ' ' {
                    c
                } else {
                    '?'
                }
            })
            .collect()
    }

    /// The warnings raised so far.
    pub fn all(&self) -> Vec<String> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

impl Engine {
    /// An engine with these aggregate views (besides the event and catalog
    /// views); fails on a definition that cannot work.
    pub async fn new(
        lake: Arc<Lake>,
        limits: QueryLimits,
        aggregates: Vec<AggregateDefinition>,
    ) -> Result<Self, QueryError> {
        let mut engine = Engine {
            cache: Cache::new(Arc::clone(&lake)),
            lake,
            limits: limits.clone(),
            aggregates: Arc::new(Vec::new()),
            metadata: Arc::new(
                DefaultCache::new(METADATA_CACHE_BYTES).with_name("framelake partition metadata"),
            ),
            threads: Arc::new(QueryThreads::start(
                limits.target_partitions,
                limits.sql.thread_stack_bytes(),
            )?),
        };
        let mut planned: Vec<Aggregate> = Vec::new();
        for definition in aggregates {
            if planned.iter().any(|a| a.definition.name == definition.name) {
                return Err(QueryError::Config(format!(
                    "aggregate {:?} is defined twice",
                    definition.name
                )));
            }
            planned.push(Aggregate::plan(&engine, definition).await?);
        }
        engine.aggregates = Arc::new(planned);
        Ok(engine)
    }

    pub fn limits(&self) -> &QueryLimits {
        &self.limits
    }

    pub fn lake(&self) -> &Arc<Lake> {
        &self.lake
    }

    /// The aggregate views.
    pub fn aggregates(&self) -> &[Aggregate] {
        &self.aggregates
    }

    /// A session with the functions and the limits, but no tables.
    pub(crate) fn bare_session(&self) -> Result<SessionContext, QueryError> {
        let mut config = SessionConfig::new()
            .with_information_schema(true)
            .with_default_catalog_and_schema("framelake", "public")
            .with_target_partitions(self.limits.target_partitions);
        // Joins answer in batches of the usual size: a cross join otherwise
        // builds left rows x a right batch at once, one poll of many seconds
        // that no time limit can cut short.
        config.options_mut().execution.enforce_batch_size_in_joins = true;
        let config = config.with_extension(Arc::new(Warnings::default()));
        let runtime = RuntimeEnvBuilder::new()
            .with_memory_limit(self.limits.memory_bytes, 1.0)
            .with_cache_manager(
                CacheManagerConfig::default()
                    .with_file_metadata_cache(Some(Arc::clone(&self.metadata)))
                    .with_metadata_cache_limit(METADATA_CACHE_BYTES),
            )
            .with_disk_manager_builder(
                DiskManagerBuilder::default().with_mode(DiskManagerMode::Disabled),
            )
            .build_arc()
            .map_err(|e| QueryError::Internal(e.to_string()))?;
        runtime.register_object_store(
            crate::table::lake_store_url().as_ref(),
            Arc::clone(self.lake.store.object_store()),
        );
        let state = SessionStateBuilder::new()
            .with_config(config)
            .with_runtime_env(runtime)
            .with_default_features()
            .with_physical_optimizer_rule(Arc::new(crate::yielding::YieldingJoins))
            .build();
        let mut ctx = SessionContext::new_with_state(state);
        register_functions(&ctx);
        crate::bounded::bound_functions(&ctx, self.limits.function_bytes);
        crate::concat::register(&mut ctx, self.limits.function_bytes)?;
        Ok(ctx)
    }

    /// A session that sees the views of one tenant and nothing else.
    pub fn session(&self, tenant: &TenantId) -> Result<SessionContext, QueryError> {
        let ctx = self.bare_session()?;
        for view in View::ALL {
            let mut table = EventTable::new(view, Arc::clone(&self.lake), tenant.clone());
            if !view.eager() {
                table = table.with_cache(self.cache.clone());
            }
            let table = Arc::new(table);
            if view == View::Measures {
                ctx.register_table(FRAMES, frames(Arc::clone(&table) as _)?)?;
            }
            ctx.register_table(view.name(), table)?;
        }
        for view in CatalogView::ALL {
            let table = CatalogTable::new(view, Arc::clone(&self.lake), tenant.clone());
            ctx.register_table(view.name(), Arc::new(table))?;
        }
        for aggregate in self.aggregates.iter() {
            let table = AggregateTable::new(aggregate.clone(), self.clone(), tenant.clone());
            ctx.register_table(aggregate.definition.name.as_str(), Arc::new(table))?;
        }
        Ok(ctx)
    }

    /// Plans and starts a query of a tenant. DDL, DML and statements (`SET`,
    /// …) are refused: SQL is read-only.
    pub async fn sql(&self, tenant: &TenantId, sql: &str) -> Result<Rows, QueryError> {
        self.sql_with(tenant, sql, Vec::new()).await
    }

    /// Plans a query without running it: its result schema and the types of
    /// its parameters (`$1`, `$2`, … or `?`, in order; NULL type when unknown).
    pub async fn prepare(&self, tenant: &TenantId, sql: &str) -> Result<Prepared, QueryError> {
        let deadline = tokio::time::Instant::now() + self.limits.timeout;
        let (ctx, sql, bounds) = (self.session(tenant)?, sql.to_owned(), self.limits.sql);
        let planning = self.threads.spawn(async move {
            let frame = plan(&ctx, &sql, bounds).await?;
            let types = frame.logical_plan().get_parameter_types()?;
            Ok::<_, QueryError>((frame.schema().as_arrow().clone(), types))
        });
        let (schema, types) = planning.until(deadline, self.limits.timeout).await??;
        let mut parameters: Vec<(usize, Field)> = types
            .into_iter()
            .map(|(name, t)| {
                let index = name.trim_start_matches('$').parse().unwrap_or(usize::MAX);
                (index, Field::new(name, t.unwrap_or(DataType::Null), true))
            })
            .collect();
        parameters.sort_by_key(|(index, _)| *index);
        Ok(Prepared {
            schema: Arc::new(schema),
            parameters: Arc::new(Schema::new(
                parameters.into_iter().map(|(_, f)| f).collect::<Vec<_>>(),
            )),
        })
    }

    /// Plans and starts a query with values for its parameters (`$1`, … or `?`).
    pub async fn sql_with(
        &self,
        tenant: &TenantId,
        sql: &str,
        parameters: Vec<ScalarValue>,
    ) -> Result<Rows, QueryError> {
        let (sql, bounds) = (sql.to_owned(), self.limits.sql);
        self.run(tenant, move |ctx| async move {
            let mut frame = plan(&ctx, &sql, bounds).await?;
            if !parameters.is_empty() {
                frame = frame.with_param_values(parameters)?;
            }
            Ok(frame)
        })
        .await
    }

    /// Plans (with `plan`, given a session of the tenant) and starts a
    /// query, under the same limits as SQL: the APIs that build their plans
    /// themselves (LogQL) run through here.
    pub async fn run<P, F>(&self, tenant: &TenantId, plan: P) -> Result<Rows, QueryError>
    where
        P: FnOnce(SessionContext) -> F + Send + 'static,
        F: Future<Output = Result<DataFrame, QueryError>> + Send,
    {
        let deadline = tokio::time::Instant::now() + self.limits.timeout;
        let ctx = self.session(tenant)?;
        let warnings = ctx
            .copied_config()
            .get_extension::<Warnings>()
            .expect("sessions keep warnings");
        let planning = self
            .threads
            .spawn(async move { Ok::<_, QueryError>(plan(ctx).await?.execute_stream().await?) });
        let mut stream = planning.until(deadline, self.limits.timeout).await??;
        let schema = stream.schema();
        // The rows are computed on the query threads and handed over one batch at a time.
        let (batches, received) = tokio::sync::mpsc::channel(1);
        let driver = self.threads.spawn(async move {
            while let Some(batch) = stream.next().await {
                if batches.send(batch).await.is_err() {
                    break;
                }
            }
        });
        let stream = Box::pin(Deadline {
            received,
            _driver: driver,
            schema: Arc::clone(&schema),
            sleep: Box::pin(tokio::time::sleep_until(deadline)),
            limit: self.limits.timeout,
            done: false,
        });
        Ok(Rows {
            schema,
            stream,
            warnings,
        })
    }
}

/// Registers framelake's SQL functions with a session.
pub(crate) fn register_functions(ctx: &SessionContext) {
    crate::functions::register(ctx);
    crate::quantiles::register(ctx);
}

/// Plans a query's SQL: parsed within the bounds of [`crate::parse`], then
/// refused if it would write.
async fn plan(ctx: &SessionContext, sql: &str, bounds: SqlBounds) -> Result<DataFrame, QueryError> {
    let state = ctx.state();
    let statement = parse::statement(&state, &parse::number_placeholders(sql)?, bounds)?;
    let plan = state
        .statement_to_plan(statement)
        .await
        .map_err(read_only)?;
    read_only_options().verify_plan(&plan).map_err(read_only)?;
    Ok(ctx.execute_logical_plan(plan).await?)
}

fn read_only_options() -> SQLOptions {
    SQLOptions::new()
        .with_allow_ddl(false)
        .with_allow_dml(false)
        .with_allow_statements(false)
}

/// DataFusion refuses writes with a plan error; say plainly why.
fn read_only(e: DataFusionError) -> QueryError {
    let message = e.strip_backtrace();
    let refused = [
        "DDL not supported",
        "DML not supported",
        "Statement not supported",
    ];
    if refused.iter().any(|r| message.contains(r)) {
        QueryError::ReadOnly(format!(
            "SQL is read-only here: only queries may run ({message})"
        ))
    } else {
        e.into()
    }
}

/// The rows of a query running on the query threads, ended with a timeout
/// error at its deadline (when the query is aborted).
struct Deadline {
    received: tokio::sync::mpsc::Receiver<datafusion::error::Result<RecordBatch>>,
    _driver: AbortOnDrop<()>,
    schema: SchemaRef,
    sleep: Pin<Box<tokio::time::Sleep>>,
    limit: Duration,
    done: bool,
}

impl Stream for Deadline {
    type Item = datafusion::error::Result<RecordBatch>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.done {
            return Poll::Ready(None);
        }
        if self.sleep.as_mut().poll(cx).is_ready() {
            self.done = true;
            let error = QueryError::Timeout(self.limit);
            return Poll::Ready(Some(Err(DataFusionError::External(Box::new(error)))));
        }
        self.received.poll_recv(cx)
    }
}

impl RecordBatchStream for Deadline {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }
}
