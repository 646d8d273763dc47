//! Compaction: small partitions merged into larger ones sorted for their
//! questions, every row once, with several maintainers at once, and replaced
//! objects kept until no query can be reading them.

use std::sync::Arc;

use arrow::array::{Array, FixedSizeBinaryArray};
use framelake_lake::Lake;
use framelake_lake::compact::{CompactConfig, Compactor, EventRewrite, read_partition};
use framelake_lake::ids::TenantId;
use framelake_lake::tenancy::Tenancy;
use framelake_query::QueryLimits;
use framelake_query::aggregate::Reducer;
use object_store::ObjectStoreExt;
use serde_json::json;

use crate::Stack;
use crate::data::{T0, traces};
use crate::sql::{compactor, days_later, materializer};

const SECOND: u64 = 1_000_000_000;

/// Twelve requests of 50 traces, each materialized on its own: twelve
/// level-0 partitions of 100 spans.
async fn twelve_partitions(stack: &Stack) {
    for i in 0..12 {
        stack
            .send("default", "traces", traces(i + 1, 50, T0 + i * SECOND))
            .await;
        materializer(stack).pass().await.expect("materializes");
    }
}

async fn spans_once(stack: &Stack) {
    let sql = "SELECT count(*) AS n, count(DISTINCT span_id) AS ids, \
               count(DISTINCT trace_id) AS traces FROM spans";
    assert_eq!(
        stack.rows(sql).await,
        vec![json!({ "n": 1200, "ids": 1200, "traces": 600 })]
    );
}

/// Each partition's spans are in trace id order.
async fn sorted_by_trace(lake: &Lake, tenant: &TenantId) {
    for p in lake
        .catalog
        .partitions(tenant, Some("spans"))
        .await
        .expect("partitions")
    {
        let batches = read_partition(lake, tenant, &p).await.expect("readable");
        let ids: Vec<Vec<u8>> = batches
            .iter()
            .flat_map(|b| {
                let column = b
                    .column_by_name("trace_id")
                    .expect("trace_id")
                    .as_any()
                    .downcast_ref::<FixedSizeBinaryArray>()
                    .expect("16 bytes");
                (0..column.len())
                    .map(|i| column.value(i).to_vec())
                    .collect::<Vec<_>>()
            })
            .collect();
        assert_eq!(ids.len() as u64, p.row_count);
        assert!(
            ids.is_sorted(),
            "partition {} is not in trace order",
            p.partition_id
        );
    }
}

async fn two_compactors_merge_each_partition_once(stack: Stack) {
    twelve_partitions(&stack).await;
    let tenant: TenantId = "default".parse().expect("tenant");
    let before = stack
        .lake
        .catalog
        .partitions(&tenant, Some("spans"))
        .await
        .expect("partitions");
    assert_eq!(before.len(), 12);
    let config = CompactConfig {
        max_rows: 300,
        claim_limit: 4,
        ..CompactConfig::default()
    };
    let compactor = || {
        let events = Arc::new(EventRewrite::new(Arc::clone(&stack.lake)));
        Compactor::new(Arc::clone(&stack.lake), events, config.clone())
    };
    let (a, b) = (compactor(), compactor());
    let later = days_later(2);
    let (a, b) = tokio::join!(a.pass(later), b.pass(later));
    let (a, b) = (a.expect("first maintainer"), b.expect("second maintainer"));
    // A maintainer that lost a race leaves the rest to the next pass.
    compactor().pass(later).await.expect("compacts the rest");
    let after = stack
        .lake
        .catalog
        .partitions(&tenant, Some("spans"))
        .await
        .expect("partitions");
    assert!(after.iter().all(|p| p.level == 3), "{after:?}");
    assert!(after.iter().all(|p| p.row_count <= 300), "{after:?}");
    assert_eq!(after.iter().map(|p| p.row_count).sum::<u64>(), 1200);
    assert!(
        after.len() >= 4 && after.len() < 12,
        "{after:?} after {a:?} {b:?}"
    );
    spans_once(&stack).await;
    sorted_by_trace(&stack.lake, &tenant).await;
    // Every replaced object is gone (its deletion was due by `later`).
    for p in &before {
        let gone = stack.lake.store.object_store().head(&p.path(&tenant)).await;
        assert!(
            matches!(gone, Err(object_store::Error::NotFound { .. })),
            "{}: {gone:?}",
            p.partition_id
        );
    }
    // Every block points to a partition that holds its rows.
    let blocks = stack
        .lake
        .catalog
        .blocks(&tenant, &Default::default())
        .await
        .expect("blocks");
    assert_eq!(blocks.len(), 12);
    let pending = stack.lake.catalog.pending_tenants().await.expect("pending");
    assert!(pending.is_empty(), "{pending:?}");
    // Two reducers at once: each compacted partition reduced once.
    let reducers = [
        Reducer::new(stack.engine.clone()),
        Reducer::new(stack.engine.clone()),
    ];
    let (a, b) = tokio::join!(reducers[0].pass(), reducers[1].pass());
    let (a, b) = (a.expect("first reducer"), b.expect("second reducer"));
    assert_eq!(a.sources + b.sources, after.len(), "{a:?} {b:?}");
    assert_eq!(
        stack.rows("SELECT sum(count) AS n FROM span_stats").await,
        vec![json!({ "n": 1200 })]
    );
    // A trace is found whole, in one row group of one file.
    let one = "SELECT count(*) AS n FROM spans WHERE trace_id = \
               (SELECT trace_id FROM spans ORDER BY span_id LIMIT 1)";
    assert_eq!(stack.rows(one).await, vec![json!({ "n": 2 })]);
}

#[tokio::test(flavor = "multi_thread")]
async fn two_compactors_on_sqlite_and_local_files() {
    two_compactors_merge_each_partition_once(
        Stack::embedded(Tenancy::open(), QueryLimits::default()).await,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn two_compactors_on_postgres_and_s3() {
    two_compactors_merge_each_partition_once(Stack::cluster("compactors").await).await;
}

/// Replaced objects outlive the queries that may have listed them: they are
/// deleted once their delay has passed, not at the compaction.
#[tokio::test(flavor = "multi_thread")]
async fn replaced_objects_are_deleted_after_their_delay() {
    let stack = Stack::embedded(Tenancy::open(), QueryLimits::default()).await;
    twelve_partitions(&stack).await;
    let tenant: TenantId = "default".parse().expect("tenant");
    let before = stack
        .lake
        .catalog
        .partitions(&tenant, Some("spans"))
        .await
        .expect("partitions");
    let compactor = compactor(&stack);
    let done = compactor
        .compact(&tenant, "spans", 1, days_later(2))
        .await
        .expect("compacts");
    assert_eq!((done.merged, done.deleted), (12, 0), "{done:?}");
    let exists = |p: &framelake_lake::catalog::PartitionRecord| {
        let path = p.path(&tenant);
        let store = Arc::clone(stack.lake.store.object_store());
        async move { store.head(&path).await.is_ok() }
    };
    for p in &before {
        assert!(exists(p).await, "deleted too early: {}", p.partition_id);
    }
    spans_once(&stack).await;
    // Now: nothing is due yet (and no window of now is closed).
    let now = compactor
        .pass(framelake_lake::host::now_nanos())
        .await
        .expect("a pass");
    assert_eq!(now.deleted, 0, "{now:?}");
    for p in &before {
        assert!(exists(p).await, "deleted too early: {}", p.partition_id);
    }
    let delay = CompactConfig::default().delete_delay.as_nanos() as i64;
    let later = compactor
        .pass(framelake_lake::host::now_nanos() + delay + SECOND as i64)
        .await
        .expect("a pass");
    assert_eq!(later.deleted, 12, "{later:?}");
    for p in &before {
        assert!(!exists(p).await, "not deleted: {}", p.partition_id);
    }
    spans_once(&stack).await;
}
