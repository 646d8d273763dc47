//! Aggregate views: `log_stats` and `span_stats` equal the same aggregation
//! over the raw rows at every stage (pending, materialized, compacted,
//! reduced, partials compacted), dashboards read the reduced rows, and
//! user definitions are checked.

use std::sync::Arc;

use framelake_lake::compact::{CompactConfig, Compactor};
use framelake_lake::ids::TenantId;
use framelake_lake::tenancy::Tenancy;
use framelake_query::aggregate::{
    self, AggregateDefinition, AggregateRewrite, Reducer, reduced_first,
};
use framelake_query::{Engine, QueryLimits};
use object_store::ObjectStoreExt;
use serde_json::Value;

use crate::Stack;
use crate::data::{T0, logs_over_a_day, traces};
use crate::sql::{days_later, materializer};

const REDUCED: &str = "SELECT time, service_name, severity_number, severity_text, scope_name, count \
     FROM log_stats ORDER BY 1, 2, 3, 4, 5";
const RAW: &str = "SELECT date_bin(INTERVAL '1 minute', time) AS time, service_name, severity_number, \
     severity_text, scope_name, count(*) AS count FROM log_entries GROUP BY 1, 2, 3, 4, 5 \
     ORDER BY 1, 2, 3, 4, 5";
/// Six hours of the day, through a time filter on the reduced rows.
const REDUCED_HOURS: &str = "SELECT date_bin(INTERVAL '1 hour', time) AS hour, service_name, \
     sum(count) AS count FROM log_stats \
     WHERE time >= '2026-01-01T06:00:00Z' AND time < '2026-01-01T12:00:00Z' \
     GROUP BY 1, 2 ORDER BY 1, 2";
const RAW_HOURS: &str = "SELECT date_bin(INTERVAL '1 hour', time) AS hour, service_name, \
     count(*) AS count FROM log_entries \
     WHERE time >= '2026-01-01T06:00:00Z' AND time < '2026-01-01T12:00:00Z' \
     GROUP BY 1, 2 ORDER BY 1, 2";

async fn same_as_raw(stack: &Stack, stage: &str) -> usize {
    let reduced = stack.rows(REDUCED).await;
    assert_eq!(reduced, stack.rows(RAW).await, "{stage}");
    assert_eq!(
        stack.rows(REDUCED_HOURS).await,
        stack.rows(RAW_HOURS).await,
        "{stage}: hours 6 to 12"
    );
    reduced.len()
}

fn maintainers(stack: &Stack) -> (Compactor, Compactor, Reducer) {
    let config = CompactConfig {
        reduced_first: reduced_first(&stack.engine),
        ..CompactConfig::default()
    };
    let events = Arc::new(framelake_lake::compact::EventRewrite::new(Arc::clone(
        &stack.lake,
    )));
    let partials = Arc::new(AggregateRewrite::new(stack.engine.clone()));
    (
        Compactor::new(Arc::clone(&stack.lake), events, config.clone()),
        Compactor::new(Arc::clone(&stack.lake), partials, config),
        Reducer::new(stack.engine.clone()),
    )
}

async fn log_stats_over_a_day_equal_the_raw_rows(stack: Stack) {
    let (events, partials, reducer) = maintainers(&stack);
    let tenant: TenantId = "default".parse().expect("tenant");
    stack
        .send("default", "logs", logs_over_a_day(1, 3000, T0))
        .await;
    let groups = same_as_raw(&stack, "pending blocks").await;
    assert!(groups > 1000, "{groups} minute groups");
    materializer(&stack).pass().await.expect("materializes");
    same_as_raw(&stack, "a level-0 partition").await;
    // Partitions are reduced once compacted; compaction beyond level 1
    // waits for every aggregate to have reduced them.
    events
        .compact(&tenant, "log_entries", 1, days_later(2))
        .await
        .expect("compacts");
    let held = events
        .compact(&tenant, "log_entries", 2, days_later(2))
        .await
        .expect("a pass");
    assert_eq!(held.merged + held.relevelled, 0, "{held:?}");
    same_as_raw(&stack, "a compacted partition not reduced").await;
    let done = reducer.pass().await.expect("reduces");
    assert_eq!((done.sources, done.written), (1, 1), "{done:?}");
    same_as_raw(&stack, "a reduced partition").await;
    stack
        .send("default", "logs", logs_over_a_day(2, 3000, T0))
        .await;
    same_as_raw(&stack, "reduced rows and pending blocks").await;
    materializer(&stack).pass().await.expect("materializes");
    events.pass(days_later(2)).await.expect("compacts");
    reducer.pass().await.expect("reduces");
    events.pass(days_later(2)).await.expect("compacts");
    same_as_raw(&stack, "two reductions").await;
    let stats = |stack: &Stack| {
        let engine = stack.engine.clone();
        let lake = Arc::clone(&stack.lake);
        let tenant = tenant.clone();
        async move {
            let log_stats = &engine.aggregates()[0].storage;
            lake.catalog
                .partitions(&tenant, Some(log_stats))
                .await
                .expect("partitions")
        }
    };
    assert_eq!(
        stats(&stack).await.len(),
        2,
        "one partial partition per reduction"
    );
    let done = partials
        .pass(days_later(2))
        .await
        .expect("compacts partials");
    assert!(done.written >= 1, "{done:?}");
    let merged = stats(&stack).await;
    assert_eq!(merged.len(), 1, "{merged:?}");
    let groups = same_as_raw(&stack, "compacted partials").await;
    assert_eq!(
        merged[0].row_count as usize, groups,
        "partials merged to one row per group"
    );
    // The raw rows are not read any more: with their objects gone, the
    // reduced rows still answer (and the raw view cannot).
    for p in stack
        .lake
        .catalog
        .partitions(&tenant, Some("log_entries"))
        .await
        .expect("partitions")
    {
        stack
            .lake
            .store
            .object_store()
            .delete(&p.path(&tenant))
            .await
            .expect("deleted");
    }
    let reduced: Vec<Value> = stack.rows(REDUCED).await;
    assert_eq!(reduced.len(), groups);
    let total: u64 = reduced
        .iter()
        .map(|r| r["count"].as_u64().expect("a count"))
        .sum();
    assert_eq!(total, 6000);
    // (A count needs only the cached footers; the bodies are gone.)
    let (status, _) = stack
        .query(
            "SELECT count(*) FROM log_entries WHERE body LIKE '%a%'",
            &[],
        )
        .await;
    assert_eq!(status, 500);
}

#[tokio::test(flavor = "multi_thread")]
async fn log_stats_on_sqlite_and_local_files() {
    log_stats_over_a_day_equal_the_raw_rows(
        Stack::embedded(Tenancy::open(), QueryLimits::default()).await,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn log_stats_on_postgres_and_s3() {
    log_stats_over_a_day_equal_the_raw_rows(Stack::cluster("logstats").await).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn span_stats_count_errors_and_percentiles() {
    let stack = Stack::embedded(Tenancy::open(), QueryLimits::default()).await;
    let (events, _, reducer) = maintainers(&stack);
    for i in 0..4 {
        stack
            .send("default", "traces", traces(i + 1, 200, T0))
            .await;
    }
    materializer(&stack).pass().await.expect("materializes");
    events.pass(days_later(2)).await.expect("compacts");
    reducer.pass().await.expect("reduces");
    stack.send("default", "traces", traces(9, 200, T0)).await;
    let reduced = "SELECT name, sum(count) AS spans, sum(errors) AS errors, \
                   min(duration_min_ns) AS fastest, max(duration_max_ns) AS slowest, \
                   sketch_quantile(merge_sketches(durations), 0.5) AS p50, \
                   sketch_count(merge_sketches(durations)) AS sketched \
                   FROM span_stats GROUP BY name ORDER BY name";
    let raw = "SELECT name, count(*) AS spans, count(*) FILTER (WHERE status_code = 2) AS errors, \
               min(duration_ns) AS fastest, max(duration_ns) AS slowest, \
               CAST(median(duration_ns) AS DOUBLE) AS p50, count(*) AS sketched \
               FROM spans GROUP BY name ORDER BY name";
    let (reduced, raw) = (stack.rows(reduced).await, stack.rows(raw).await);
    assert_eq!(reduced.len(), 2);
    for (r, w) in reduced.iter().zip(&raw) {
        for column in ["name", "spans", "errors", "fastest", "slowest", "sketched"] {
            assert_eq!(r[column], w[column], "{column}: {r} vs {w}");
        }
        let (p50, exact) = (
            r["p50"].as_f64().expect("p50"),
            w["p50"].as_f64().expect("median"),
        );
        assert!((p50 - exact).abs() <= exact * 0.011, "p50 {p50} vs {exact}");
    }
    assert_eq!(reduced[0]["spans"], 1000);
}

fn definition(name: &str, transform: &str, merge: &str) -> AggregateDefinition {
    AggregateDefinition {
        name: name.into(),
        source: "log_entries".into(),
        bin_seconds: 60,
        transform: transform.into(),
        merge: merge.into(),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn users_define_their_own_aggregates() {
    let stack = Stack::embedded(Tenancy::open(), QueryLimits::default()).await;
    let errors = definition(
        "errors_per_minute",
        "SELECT date_bin(INTERVAL '1 minute', time) AS time, count(*) AS n \
         FROM log_entries WHERE severity_number >= 17 GROUP BY 1",
        "SELECT time, sum(n) AS n FROM errors_per_minute GROUP BY 1",
    );
    let mut all = aggregate::shipped();
    all.push(errors.clone());
    let engine = Engine::new(Arc::clone(&stack.lake), QueryLimits::default(), all)
        .await
        .expect("plans");
    stack
        .send("default", "logs", logs_over_a_day(3, 600, T0))
        .await;
    materializer(&stack).pass().await.expect("materializes");
    let tenant: TenantId = "default".parse().expect("tenant");
    let compact = CompactConfig {
        reduced_first: reduced_first(&engine),
        ..CompactConfig::default()
    };
    let events = Arc::new(framelake_lake::compact::EventRewrite::new(Arc::clone(
        &stack.lake,
    )));
    Compactor::new(Arc::clone(&stack.lake), events, compact)
        .compact(&tenant, "log_entries", 1, days_later(2))
        .await
        .expect("compacts");
    let done = Reducer::new(engine.clone()).pass().await.expect("reduces");
    assert_eq!(done.written, 2, "log_stats and errors_per_minute: {done:?}");
    let total = |sql: &str| {
        let engine = engine.clone();
        let tenant = tenant.clone();
        let sql = sql.to_owned();
        async move {
            let rows = engine.sql(&tenant, &sql).await.expect("runs");
            let batches: Vec<_> = futures::TryStreamExt::try_collect::<Vec<_>>(rows.stream)
                .await
                .expect("rows");
            arrow::util::pretty::pretty_format_batches(&batches)
                .expect("prints")
                .to_string()
        }
    };
    assert_eq!(
        total("SELECT sum(n) AS n FROM errors_per_minute").await,
        total("SELECT count(*) AS n FROM log_entries WHERE severity_number >= 17").await
    );

    // Definitions that cannot work are refused, saying why.
    let cases = [
        (
            definition("log_entries", "SELECT 1", "SELECT 1"),
            "built-in",
        ),
        (definition("x", "SELEC 1", "SELECT 1"), "x"),
        (
            definition(
                "x",
                "SELECT count(*) AS n FROM log_entries",
                "SELECT n FROM x",
            ),
            "timestamp column `time`",
        ),
        (
            definition(
                "x",
                "SELECT date_bin(INTERVAL '1 minute', time) AS time, count(*) AS n FROM log_entries GROUP BY 1",
                "SELECT time FROM x",
            ),
            "the merge must return the transform's columns",
        ),
        (
            AggregateDefinition {
                source: "nope".into(),
                ..errors.clone()
            },
            "not an event view",
        ),
    ];
    for (definition, message) in cases {
        let name = definition.name.clone();
        let e = Engine::new(
            Arc::clone(&stack.lake),
            QueryLimits::default(),
            vec![definition],
        )
        .await
        .expect_err("refused");
        assert!(e.to_string().contains(message), "{name}: {e}");
    }
    let e = Engine::new(
        Arc::clone(&stack.lake),
        QueryLimits::default(),
        vec![errors.clone(), errors],
    )
    .await
    .expect_err("refused");
    assert!(e.to_string().contains("twice"), "{e}");
}
