//! Tempo's HTTP API for Grafana's Tempo datasource, over the `spans` view:
//! traces by id (OTLP, as protobuf or JSON). See [`http`] for the routes.

mod filter;
pub mod http;
mod metrics;
pub mod proto;
mod search;
mod tags;
mod trace;

use datafusion::prelude::col;
use framelake_lake::ids::TenantId;
use futures::StreamExt;
use opentelemetry_proto::tonic::trace::v1::ResourceSpans;

pub use self::trace::parse_trace_id;
use self::trace::{COLUMNS, TraceBuilder};
use crate::table::time_literal;
use crate::{Engine, QueryError};

/// The spans of a trace, by resource and scope; `None` when it has none.
/// With a range (Unix nanoseconds, inclusive), only the spans overlapping
/// it.
pub async fn trace(
    engine: &Engine,
    tenant: &TenantId,
    id: [u8; 16],
    range: Option<(i64, i64)>,
) -> Result<Option<Vec<ResourceSpans>>, QueryError> {
    let mut rows = engine
        .run(tenant, move |ctx| async move {
            let mut predicate = col("trace_id").eq(filter::trace_id(id));
            if let Some((start, end)) = range {
                predicate = predicate
                    .and(col("start_time").lt_eq(time_literal(end)))
                    .and(col("end_time").gt_eq(time_literal(start)));
            }
            Ok(ctx
                .table("spans")
                .await?
                .filter(predicate)?
                .select_columns(&COLUMNS)?)
        })
        .await?;
    let mut trace = TraceBuilder::default();
    while let Some(batch) = rows.stream.next().await {
        trace.add(&batch?)?;
    }
    Ok(trace.finish())
}
