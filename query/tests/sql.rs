//! The SQL suite (`tests/sql/*.slt`, sqllogictest) over the HTTP SQL API, on
//! both backends, and time pruning.

use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use arrow::datatypes::DataType;
use arrow::util::display::{ArrayFormatter, FormatOptions};
use std::sync::Arc;

use framelake_lake::catalog::BlockFilter;
use framelake_lake::compact::{CompactConfig, Compactor, EventRewrite};
use framelake_lake::materialize::{MaterializeConfig, Materializer};
use framelake_lake::tenancy::Tenancy;
use framelake_query::QueryLimits;
use framelake_query::aggregate::Reducer;
use object_store::ObjectStoreExt;
use sqllogictest::{DBOutput, DefaultColumnType};

use crate::Stack;
use crate::data::{T0, logs_at, metrics_at, spans_at};

/// A sqllogictest connection: each statement goes to `POST /api/v1/sql` and
/// comes back as Arrow, printed value by value.
struct HttpDb<'a> {
    stack: &'a Stack,
}

#[derive(Debug)]
struct QueryFailed(String);

impl std::fmt::Display for QueryFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for QueryFailed {}

#[async_trait::async_trait]
impl sqllogictest::AsyncDB for HttpDb<'_> {
    type Error = QueryFailed;
    type ColumnType = DefaultColumnType;

    async fn run(&mut self, sql: &str) -> Result<DBOutput<DefaultColumnType>, QueryFailed> {
        let accept = [("accept", "application/vnd.apache.arrow.stream")];
        let (status, body) = self.stack.query(sql, &accept).await;
        if status != 200 {
            return Err(QueryFailed(format!(
                "HTTP {status}: {}",
                String::from_utf8_lossy(&body)
            )));
        }
        let reader = arrow::ipc::reader::StreamReader::try_new(std::io::Cursor::new(body), None)
            .map_err(|e| QueryFailed(e.to_string()))?;
        let types = reader
            .schema()
            .fields()
            .iter()
            .map(|f| match f.data_type() {
                t if t.is_integer() => DefaultColumnType::Integer,
                t if t.is_floating() => DefaultColumnType::FloatingPoint,
                _ => DefaultColumnType::Text,
            })
            .collect();
        let options = FormatOptions::default().with_null("NULL");
        let mut rows = Vec::new();
        for batch in reader {
            let batch = batch.map_err(|e| QueryFailed(e.to_string()))?;
            let formatters = batch
                .columns()
                .iter()
                .map(|c| ArrayFormatter::try_new(c.as_ref(), &options))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| QueryFailed(e.to_string()))?;
            for row in 0..batch.num_rows() {
                rows.push(
                    formatters
                        .iter()
                        .zip(batch.columns())
                        .map(|(f, c)| {
                            let text = f.value(row).to_string();
                            let is_text =
                                matches!(c.data_type(), DataType::Utf8 | DataType::Utf8View);
                            if is_text && text.is_empty() && c.is_valid(row) {
                                "(empty)".to_owned()
                            } else {
                                text
                            }
                        })
                        .collect(),
                );
            }
        }
        Ok(DBOutput::Rows { types, rows })
    }

    async fn shutdown(&mut self) {}

    async fn sleep(duration: std::time::Duration) {
        tokio::time::sleep(duration).await;
    }
}

use arrow::array::Array;

fn suite_files() -> Vec<PathBuf> {
    let dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets it"))
        .join("tests/sql");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("tests/sql")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "slt"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no .slt files in {}", dir.display());
    files
}

/// Sends the suite's data, runs every `.slt` file over the blocks as
/// received, materializes them into Parquet partitions, and runs the files
/// again: the same answers, every event once.
async fn run_suite(stack: &Stack) {
    stack.send("default", "logs", logs_at(T0)).await;
    stack.send("default", "traces", spans_at(T0)).await;
    stack.send("default", "metrics", metrics_at(T0)).await;
    // Another tenant's rows, which the suite must never see.
    stack.send("other", "logs", logs_at(T0)).await;
    run_files(stack).await;
    let done = materializer(stack).pass().await.expect("materializes");
    assert_eq!(done.rows, 11 + 4, "{done:?}");
    assert!(
        stack
            .lake
            .catalog
            .pending_tenants()
            .await
            .expect("catalog")
            .is_empty()
    );
    run_files(stack).await;
    // Compacted up to whole days: sorted, merged, the same answers.
    let done = compactor(stack)
        .pass(days_later(2))
        .await
        .expect("compacts");
    assert!(done.written >= 3, "{done:?}");
    let tenant = "default".parse().expect("tenant");
    let partitions = stack
        .lake
        .catalog
        .partitions(&tenant, None)
        .await
        .expect("partitions");
    assert!(partitions.iter().all(|p| p.level == 3), "{partitions:?}");
    run_files(stack).await;
    // Reduced into the aggregate views: they read their own partitions.
    let done = Reducer::new(stack.engine.clone())
        .pass()
        .await
        .expect("reduces");
    assert_eq!(
        done.written, 3,
        "log_stats and span_stats, log_stats of the other tenant: {done:?}"
    );
    run_files(stack).await;
}

pub(crate) fn materializer(stack: &Stack) -> Materializer {
    Materializer::new(Arc::clone(&stack.lake), MaterializeConfig::default())
}

pub(crate) fn compactor(stack: &Stack) -> Compactor {
    let events = Arc::new(EventRewrite::new(Arc::clone(&stack.lake)));
    Compactor::new(Arc::clone(&stack.lake), events, CompactConfig::default())
}

/// A moment `days` from now, when every window of now is closed.
pub(crate) fn days_later(days: i64) -> i64 {
    framelake_lake::host::now_nanos() + days * 86_400_000_000_000
}

async fn run_files(stack: &Stack) {
    for file in suite_files() {
        let mut runner = sqllogictest::Runner::new(|| async { Ok(HttpDb { stack }) });
        if let Err(e) = runner.run_file_async(&file).await {
            panic!("{}: {e}", file.display());
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn sql_suite_on_sqlite_and_local_files() {
    let stack = Stack::embedded(Tenancy::open(), QueryLimits::default()).await;
    run_suite(&stack).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sql_suite_on_postgres_and_s3() {
    let stack = Stack::cluster("sqlsuite").await;
    run_suite(&stack).await;
}

fn now_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_nanos() as u64
}

/// A query for the last hour reads only blocks of the last hour: with the
/// older segment gone from the store, it still answers; a query over all
/// time does not.
#[tokio::test(flavor = "multi_thread")]
async fn time_predicates_leave_older_blocks_unread() {
    let stack = Stack::embedded(Tenancy::open(), QueryLimits::default()).await;
    stack.send("default", "logs", logs_at(T0)).await;
    let tenant = "default".parse().expect("tenant");
    let old = stack
        .lake
        .catalog
        .blocks(&tenant, &BlockFilter::default())
        .await
        .expect("blocks");
    stack
        .send("default", "logs", logs_at(now_nanos() - 10_000_000_000))
        .await;
    // The old blocks' bytes overwritten: reading one would fail its checksum.
    let objects = stack
        ._dir
        .as_ref()
        .expect("local files")
        .path()
        .join("objects");
    for block in &old {
        let log = block
            .segment_log
            .as_ref()
            .expect("local files keep segments in logs");
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(objects.join(&log.object))
            .expect("log");
        std::os::unix::fs::FileExt::write_all_at(
            &file,
            &vec![0; block.length as usize],
            log.offset + block.offset,
        )
        .expect("overwrites");
    }

    let recent = "SELECT count(*) AS n FROM log_entries WHERE time > now() - interval '1 hour'";
    assert_eq!(
        stack.rows(recent).await,
        vec![serde_json::json!({ "n": 4 })]
    );
    let spans = "SELECT count(*) AS n FROM log_entries WHERE time BETWEEN now() - interval '1 hour' AND now()";
    assert_eq!(stack.rows(spans).await, vec![serde_json::json!({ "n": 4 })]);
    let empty = "SELECT count(*) AS n FROM log_entries WHERE time > now() AND time < now() - interval '1 day'";
    assert_eq!(stack.rows(empty).await, vec![serde_json::json!({ "n": 0 })]);

    // Without a time predicate the old blocks are read: they fail their
    // checksum, and the answer leaves them out and says so.
    let (rows, warnings) = stack
        .rows_and_warnings("SELECT count(*) AS n FROM log_entries", &[])
        .await;
    assert_eq!(rows, vec![serde_json::json!({ "n": 4 })]);
    assert!(
        warnings.iter().any(|w| w.contains("checksum mismatch")),
        "{warnings:?}"
    );
}

/// The same with Parquet partitions: a query for the last hour opens only the
/// partitions of the last hour.
#[tokio::test(flavor = "multi_thread")]
async fn time_predicates_leave_older_partitions_unread() {
    let stack = Stack::embedded(Tenancy::open(), QueryLimits::default()).await;
    stack.send("default", "logs", logs_at(T0)).await;
    materializer(&stack).pass().await.expect("materializes");
    stack
        .send("default", "logs", logs_at(now_nanos() - 10_000_000_000))
        .await;
    materializer(&stack).pass().await.expect("materializes");
    let tenant = "default".parse().expect("tenant");
    let partitions = stack
        .lake
        .catalog
        .partitions(&tenant, None)
        .await
        .expect("partitions");
    assert_eq!(partitions.len(), 2, "{partitions:?}");
    let old = partitions
        .iter()
        .find(|p| p.max_time < (now_nanos() - 3_600_000_000_000) as i64)
        .expect("the old partition");
    stack
        .lake
        .store
        .object_store()
        .delete(&old.path(&tenant))
        .await
        .expect("deleted");

    let recent = "SELECT count(*) AS n FROM log_entries WHERE time > now() - interval '1 hour'";
    assert_eq!(
        stack.rows(recent).await,
        vec![serde_json::json!({ "n": 4 })]
    );
    let (status, body) = stack.query("SELECT count(*) FROM log_entries", &[]).await;
    assert_eq!(status, 500, "{}", String::from_utf8_lossy(&body));
}

/// Acknowledged rows show exactly once whether their blocks are pending,
/// materialized, or some of each.
#[tokio::test(flavor = "multi_thread")]
async fn fresh_rows_show_once_before_and_after_materialization_and_compaction() {
    let stack = Stack::embedded(Tenancy::open(), QueryLimits::default()).await;
    let count = "SELECT count(*) AS n, count(DISTINCT time) AS times FROM log_entries";
    let expect = |n: u64| vec![serde_json::json!({ "n": n, "times": n })];
    stack.send("default", "logs", logs_at(T0)).await;
    assert_eq!(stack.rows(count).await, expect(4), "pending blocks");
    materializer(&stack).pass().await.expect("materializes");
    assert_eq!(stack.rows(count).await, expect(4), "a partition");
    stack
        .send("default", "logs", logs_at(T0 + 60_000_000_000))
        .await;
    assert_eq!(
        stack.rows(count).await,
        expect(8),
        "a partition and pending blocks"
    );
    materializer(&stack).pass().await.expect("materializes");
    assert_eq!(stack.rows(count).await, expect(8), "two partitions");
    assert_eq!(
        materializer(&stack)
            .pass()
            .await
            .expect("nothing to do")
            .partitions,
        0
    );
    let done = compactor(&stack)
        .pass(days_later(2))
        .await
        .expect("compacts");
    assert!(done.merged >= 2 && done.written >= 1, "{done:?}");
    assert_eq!(stack.rows(count).await, expect(8), "a compacted partition");
    stack
        .send("default", "logs", logs_at(T0 + 120_000_000_000))
        .await;
    assert_eq!(
        stack.rows(count).await,
        expect(12),
        "a compacted partition and pending blocks"
    );
    materializer(&stack).pass().await.expect("materializes");
    assert_eq!(
        stack.rows(count).await,
        expect(12),
        "compacted and materialized partitions"
    );
}

/// A tenant whose stored block no longer reads back (its bytes changed on
/// disk) has it quarantined, loudly, and holds up no one else.
#[tokio::test(flavor = "multi_thread")]
async fn a_block_that_does_not_read_back_holds_up_no_other_tenant() {
    let stack = Stack::embedded(Tenancy::open(), QueryLimits::default()).await;
    // Tenants are materialized in name order: the broken one comes first.
    stack.send("a-broken", "logs", logs_at(T0)).await;
    stack.send("b-fine", "logs", logs_at(T0)).await;
    let logs = files_under(&stack.data_dir().join("objects/tenants/a-broken/logs"));
    assert_eq!(logs.len(), 1, "one segment log of a-broken: {logs:?}");
    // Past the record and segment headers, into the block.
    let mut bytes = std::fs::read(&logs[0]).expect("log bytes");
    for b in &mut bytes[160..200] {
        *b ^= 0xff;
    }
    std::fs::write(&logs[0], bytes).expect("log rewritten");
    let done = materializer(&stack)
        .pass()
        .await
        .expect("the pass succeeds");
    assert_eq!(done.quarantined, 1, "{done:?}");
    let pending = stack.lake.catalog.pending_tenants().await.expect("catalog");
    assert!(pending.is_empty(), "{pending:?}");
    let count = "SELECT count(*) AS n FROM log_entries";
    let (rows, warnings) = stack
        .rows_and_warnings(count, &[("x-scope-orgid", "b-fine")])
        .await;
    assert_eq!(
        rows,
        vec![serde_json::json!({ "n": 4 })],
        "b-fine's rows, from Parquet"
    );
    assert!(warnings.is_empty(), "{warnings:?}");
    let (rows, warnings) = stack
        .rows_and_warnings(count, &[("x-scope-orgid", "a-broken")])
        .await;
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    // Its other events, and the quarantined block's in the blocks view.
    let left_out = "SELECT CAST(sum(event_count) AS BIGINT) AS n FROM blocks \
                    WHERE quarantine_error IS NOT NULL";
    let (quarantined, _) = stack
        .rows_and_warnings(left_out, &[("x-scope-orgid", "a-broken")])
        .await;
    let n = |rows: &[serde_json::Value]| rows[0]["n"].as_u64().expect("a count");
    assert!(n(&quarantined) > 0, "{quarantined:?}");
    assert_eq!(n(&rows) + n(&quarantined), 4);
}

/// The files in a folder and every folder below it.
fn files_under(dir: &std::path::Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).expect("a folder") {
        let path = entry.expect("an entry").path();
        if path.is_dir() {
            files.extend(files_under(&path));
        } else {
            files.push(path);
        }
    }
    files
}

/// Two maintainers on one PostgreSQL: each block lands in exactly one partition.
#[tokio::test(flavor = "multi_thread")]
async fn two_maintainers_on_postgres_make_each_partition_once() {
    let stack = Stack::cluster("maintainers").await;
    for i in 0..8 {
        stack
            .send("default", "logs", logs_at(T0 + i * 60_000_000_000))
            .await;
    }
    let config = MaterializeConfig {
        max_blocks: 2,
        ..MaterializeConfig::default()
    };
    let a = Materializer::new(Arc::clone(&stack.lake), config.clone());
    let b = Materializer::new(Arc::clone(&stack.lake), config);
    let (a, b) = tokio::join!(a.pass(), b.pass());
    let (a, b) = (a.expect("first maintainer"), b.expect("second maintainer"));
    assert_eq!(a.rows + b.rows, 32, "{a:?} {b:?}");
    assert_eq!(a.blocks + b.blocks, 16, "{a:?} {b:?}");
    let tenant = "default".parse().expect("tenant");
    let partitions = stack
        .lake
        .catalog
        .partitions(&tenant, None)
        .await
        .expect("partitions");
    assert_eq!(partitions.len(), a.partitions + b.partitions);
    assert_eq!(partitions.iter().map(|p| p.row_count).sum::<u64>(), 32);
    assert!(
        stack
            .lake
            .catalog
            .pending_tenants()
            .await
            .expect("catalog")
            .is_empty()
    );
    let count = "SELECT count(*) AS n, count(DISTINCT time) AS times FROM log_entries";
    assert_eq!(
        stack.rows(count).await,
        vec![serde_json::json!({ "n": 32, "times": 32 })]
    );
}

async fn retention_removes_old_data_in_bulk(stack: Stack) {
    use framelake_lake::retention::{self, Retention};
    let (default, kept): (framelake_lake::ids::TenantId, framelake_lake::ids::TenantId) = (
        "default".parse().expect("tenant"),
        "kept".parse().expect("tenant"),
    );
    stack.send("default", "logs", logs_at(T0)).await;
    stack.send("kept", "logs", logs_at(T0)).await;
    materializer(&stack).pass().await.expect("materializes");
    let old_partition = stack
        .lake
        .catalog
        .partitions(&default, None)
        .await
        .expect("partitions");
    let old_segments = stack
        .lake
        .catalog
        .segments(&default)
        .await
        .expect("segments");
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let cutoff = framelake_lake::host::now_nanos();
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    stack
        .send("default", "logs", logs_at(T0 + 60_000_000_000))
        .await;

    let retention = Retention {
        default_days: 1,
        per_tenant: Retention::parse_per_tenant("kept=30").expect("valid"),
        ..Retention::default()
    };
    let day = 86_400 * 1_000_000_000;
    let removed = retention::expire(&stack.lake, &retention, cutoff + day)
        .await
        .expect("expires");
    assert_eq!(
        (removed.partitions, removed.segments, removed.blocks),
        (1, 1, 2),
        "{removed:?}"
    );
    // A segment of its own goes with its rows; a log once none of its
    // segments is left (here the newer one shares it).
    let segment_object = |s: &framelake_lake::catalog::SegmentRecord| match &s.log {
        Some(log) => object_store::path::Path::from(log.object.as_str()),
        None => {
            framelake_lake::paths::SegmentPath::new(default.clone(), s.segment_id).to_object_path()
        }
    };
    let newer = stack
        .lake
        .catalog
        .segments(&default)
        .await
        .expect("segments");
    let logs: Vec<_> = newer
        .iter()
        .filter(|s| s.log.is_some())
        .map(segment_object)
        .collect();
    for path in old_partition
        .iter()
        .map(|p| p.path(&default))
        .chain(old_segments.iter().map(segment_object))
        .filter(|path| !logs.contains(path))
    {
        let gone = stack.lake.store.object_store().head(&path).await;
        assert!(
            matches!(gone, Err(object_store::Error::NotFound { .. })),
            "{path}: {gone:?}"
        );
    }
    for log in &logs {
        assert!(
            stack.lake.store.object_store().head(log).await.is_ok(),
            "{log} is kept"
        );
    }
    let count = "SELECT count(*) AS n, min(time) AS first FROM log_entries";
    assert_eq!(
        stack.rows(count).await,
        vec![serde_json::json!({ "n": 4, "first": "2026-01-01T00:01:00Z" })]
    );
    let (_, body) = stack.query(count, &[("x-scope-orgid", "kept")]).await;
    let kept_rows: serde_json::Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(kept_rows[0]["n"], 4, "a tenant kept 30 days keeps its rows");
    assert_eq!(
        stack
            .lake
            .catalog
            .partitions(&kept, None)
            .await
            .expect("partitions")
            .len(),
        1
    );
    // A second pass finds nothing more.
    let again = retention::expire(&stack.lake, &retention, cutoff + day)
        .await
        .expect("expires");
    assert_eq!(again, retention::Removed::default());
    // Later, the newer segments go too, and with them the logs they were in.
    let later = framelake_lake::host::now_nanos() + day + 1;
    retention::expire(&stack.lake, &retention, later)
        .await
        .expect("expires");
    for log in &logs {
        let gone = stack.lake.store.object_store().head(log).await;
        assert!(
            matches!(gone, Err(object_store::Error::NotFound { .. })),
            "{log}: {gone:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn retention_on_sqlite_and_local_files() {
    retention_removes_old_data_in_bulk(
        Stack::embedded(Tenancy::open(), QueryLimits::default()).await,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn retention_on_postgres_and_s3() {
    retention_removes_old_data_in_bulk(Stack::cluster("retention").await).await;
}
