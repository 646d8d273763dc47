//! The query engine: one DataFusion session per query, scoped to the caller's
//! tenant, read-only, with a memory and a time limit.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use datafusion::error::DataFusionError;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::execution::disk_manager::{DiskManagerBuilder, DiskManagerMode};
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::physical_plan::RecordBatchStream;
use datafusion::prelude::{SQLOptions, SessionConfig, SessionContext};
use framelake_lake::Lake;
use framelake_lake::ids::TenantId;
use framelake_lake::view::View;
use framelake_lake::view::catalog::CatalogView;
use futures::Stream;

use crate::QueryError;
use crate::table::{CatalogTable, EventTable};

/// What one query may use.
#[derive(Debug, Clone)]
pub struct QueryLimits {
    /// Memory for the query's operators (sorts, joins, aggregations); over it,
    /// the query fails with a clear error rather than spilling.
    pub memory_bytes: usize,
    /// Wall time from planning to the last row.
    pub timeout: Duration,
    /// How many partitions a scan is split into.
    pub target_partitions: usize,
}

impl Default for QueryLimits {
    fn default() -> Self {
        QueryLimits {
            memory_bytes: 1 << 30,
            timeout: Duration::from_secs(60),
            target_partitions: std::thread::available_parallelism().map_or(2, |n| n.get()),
        }
    }
}

/// Answers SQL over the lake.
#[derive(Debug, Clone)]
pub struct Engine {
    lake: Arc<Lake>,
    limits: QueryLimits,
}

/// A running query: its schema and its rows, as they come.
pub struct Rows {
    pub schema: SchemaRef,
    pub stream: SendableRecordBatchStream,
}

impl Engine {
    pub fn new(lake: Arc<Lake>, limits: QueryLimits) -> Self {
        Engine { lake, limits }
    }

    pub fn limits(&self) -> &QueryLimits {
        &self.limits
    }

    /// A session that sees the views of one tenant and nothing else.
    pub fn session(&self, tenant: &TenantId) -> Result<SessionContext, QueryError> {
        let config = SessionConfig::new()
            .with_information_schema(true)
            .with_default_catalog_and_schema("framelake", "public")
            .with_target_partitions(self.limits.target_partitions);
        let runtime = RuntimeEnvBuilder::new()
            .with_memory_limit(self.limits.memory_bytes, 1.0)
            .with_disk_manager_builder(
                DiskManagerBuilder::default().with_mode(DiskManagerMode::Disabled),
            )
            .build_arc()
            .map_err(|e| QueryError::Internal(e.to_string()))?;
        let ctx = SessionContext::new_with_config_rt(config, runtime);
        for view in View::ALL {
            let table = EventTable::new(view, Arc::clone(&self.lake), tenant.clone());
            ctx.register_table(view.name(), Arc::new(table))?;
        }
        for view in CatalogView::ALL {
            let table = CatalogTable::new(view, Arc::clone(&self.lake), tenant.clone());
            ctx.register_table(view.name(), Arc::new(table))?;
        }
        crate::functions::register(&ctx);
        Ok(ctx)
    }

    /// Plans and starts a query of a tenant. DDL, DML and statements (`SET`,
    /// …) are refused: SQL is read-only.
    pub async fn sql(&self, tenant: &TenantId, sql: &str) -> Result<Rows, QueryError> {
        let deadline = tokio::time::Instant::now() + self.limits.timeout;
        let ctx = self.session(tenant)?;
        let options = SQLOptions::new()
            .with_allow_ddl(false)
            .with_allow_dml(false)
            .with_allow_statements(false);
        let plan = async {
            let frame = ctx.sql_with_options(sql, options).await?;
            frame.execute_stream().await
        };
        let stream = match tokio::time::timeout_at(deadline, plan).await {
            Err(_) => return Err(QueryError::Timeout(self.limits.timeout)),
            Ok(Err(e)) => return Err(read_only(e)),
            Ok(Ok(stream)) => stream,
        };
        let schema = stream.schema();
        let stream = Box::pin(Deadline {
            inner: stream,
            sleep: Box::pin(tokio::time::sleep_until(deadline)),
            limit: self.limits.timeout,
            done: false,
        });
        Ok(Rows { schema, stream })
    }
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

/// Ends a stream with a timeout error at its deadline.
struct Deadline {
    inner: SendableRecordBatchStream,
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
        self.inner.as_mut().poll_next(cx)
    }
}

impl RecordBatchStream for Deadline {
    fn schema(&self) -> SchemaRef {
        self.inner.schema()
    }
}
