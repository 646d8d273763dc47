//! `framelake-bench querybench`: the read path measured on realistic OTLP data, in
//! this process (no network in the figures): materialization rate, bytes at
//! rest, the log questions of the anchors (over framelake's views and, as the
//! reference, plain DataFusion over the same Parquet files), trace-by-id
//! latency, and freshness.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use arrow::array::Array;
use datafusion::prelude::{ParquetReadOptions, SessionContext};
use framelake_lake::compact::{CompactConfig, Compactor, EventRewrite};
use framelake_lake::materialize::{MaterializeConfig, Materialized, Materializer};
use framelake_lake::tenancy::Tenancy;
use framelake_lake::view::View;
use framelake_lake::writer::{Writer, WriterConfig};
use framelake_lake::{Lake, LakeConfig};
use framelake_query::aggregate::{self, AggregateRewrite, Reducer};
use framelake_query::{Engine, QueryLimits};
use framelake_receiver::otlp::{Encoding, Signal};
use framelake_receiver::{ContentEncoding, Ingest, Limits};
use futures::{StreamExt, TryStreamExt};

use crate::clock;

use crate::loadgen::generate::Generator;

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Log records to ingest.
    #[arg(long, default_value_t = 6_400_000)]
    logs: usize,
    /// Spans to ingest.
    #[arg(long, default_value_t = 2_000_000)]
    spans: usize,
    /// Events per request.
    #[arg(long, default_value_t = 512)]
    batch: usize,
    /// Runs of each query (the median is printed).
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Folder for the lake (a fresh temporary one by default).
    #[arg(long)]
    dir: Option<std::path::PathBuf>,
    /// Query the lake already in --dir (from an earlier run) instead of filling one.
    #[arg(long, requires = "dir")]
    reuse: bool,
    /// With --reuse: run only the LogQL questions whose name holds this text
    /// (to profile one of them).
    #[arg(long, requires = "reuse")]
    logql: Option<String>,
}

/// Bytes at rest per row of a view's partitions.
fn bytes_per_row(partitions: &[framelake_lake::catalog::PartitionRecord], view: &str) -> f64 {
    let (bytes, rows) = partitions
        .iter()
        .filter(|p| p.view == view)
        .fold((0, 0), |(b, r), p| (b + p.size, r + p.row_count));
    bytes as f64 / rows.max(1) as f64
}

pub(crate) async fn run(args: Args) -> anyhow::Result<()> {
    let temp = tempfile::tempdir()?;
    let dir = args.dir.clone().unwrap_or_else(|| temp.path().to_owned());
    let lake = Arc::new(Lake::open(&LakeConfig::embedded(&dir)).await?);
    let writer = Arc::new(Writer::start(Arc::clone(&lake), WriterConfig::default()));
    let ingest = Arc::new(Ingest::new(
        Arc::clone(&lake),
        Arc::clone(&writer),
        Tenancy::open(),
        Limits::default(),
        framelake_lake::segment::Compression::Lz4,
    ));
    let tenant: framelake_lake::ids::TenantId = "default".parse()?;
    println!("host CPU: {}", clock::cpu_model());

    // Ingest, through the receiver's own path (validation, blocks, group commit).
    let fill = if args.reuse {
        vec![]
    } else {
        vec![(Signal::Logs, args.logs), (Signal::Traces, args.spans)]
    };
    for (signal, count) in fill {
        ingest_all(&ingest, &tenant, signal, count, args.batch, false).await?;
    }

    // Materialization, alone in this process now that the writer is idle,
    // one view after the other (the anchor counts log rows).
    let materializer = Materializer::new(Arc::clone(&lake), MaterializeConfig::default());
    let mut materialized = Vec::new();
    for view in [View::LogEntries, View::Spans] {
        let (cpu, wall) = (clock::process_seconds(), Instant::now());
        let mut done = Materialized::default();
        loop {
            let step = materializer.materialize(&tenant, view).await?;
            if step.blocks == 0 {
                break;
            }
            done += step;
        }
        materialized.push((
            view,
            done,
            clock::process_seconds() - cpu,
            wall.elapsed().as_secs_f64(),
        ));
    }
    let rows: u64 = materialized.iter().map(|(_, done, _, _)| done.rows).sum();
    let partitions = lake.catalog.partitions(&tenant, None).await?;
    if !args.reuse {
        println!();
        println!(
            "| materialization | rows | partitions | CPU s | wall s | rows per CPU-s | B/row at rest |"
        );
        println!("|---|---:|---:|---:|---:|---:|---:|");
        for (view, done, cpu, wall) in materialized {
            println!(
                "| {} | {} | {} | {cpu:.2} | {wall:.2} | {:.0} | {:.1} |",
                view.name(),
                done.rows,
                done.partitions,
                done.rows as f64 / cpu,
                bytes_per_row(&partitions, view.name()),
            );
        }
    }

    // Compaction and reduction, as maintainers do them once the windows
    // closed: partitions merged (spans sorted by trace id, logs by time,
    // zstd 3, free text zstd 7), reduced into the aggregate views, merged up to days.
    let engine = Engine::new(
        Arc::clone(&lake),
        QueryLimits::default(),
        framelake_query::aggregate::shipped(),
    )
    .await?;
    if !args.reuse {
        let config = CompactConfig {
            reduced_first: aggregate::reduced_first(&engine),
            ..CompactConfig::default()
        };
        let events = Compactor::new(
            Arc::clone(&lake),
            Arc::new(EventRewrite::new(Arc::clone(&lake))),
            config.clone(),
        );
        let partials = Compactor::new(
            Arc::clone(&lake),
            Arc::new(AggregateRewrite::new(engine.clone())),
            config,
        );
        let reducer = Reducer::new(engine.clone());
        let later = framelake_lake::host::now_nanos() + 2 * 86_400 * 1_000_000_000;
        let (cpu, wall) = (clock::process_seconds(), Instant::now());
        let compacted = events.pass(later).await?;
        let (compact_cpu, compact_wall) =
            (clock::process_seconds() - cpu, wall.elapsed().as_secs_f64());
        let (cpu, wall) = (clock::process_seconds(), Instant::now());
        let reduced = reducer.pass().await.map_err(|e| anyhow::anyhow!("{e}"))?;
        let (reduce_cpu, reduce_wall) =
            (clock::process_seconds() - cpu, wall.elapsed().as_secs_f64());
        events.pass(later).await?;
        partials.pass(later).await?;
        let partitions = lake.catalog.partitions(&tenant, None).await?;
        let at_rest = |view: &str| bytes_per_row(&partitions, view);
        println!();
        println!(
            "| maintenance after materialization | partitions in → out | CPU s | wall s | rows per CPU-s | B/row at rest (log / span) |"
        );
        println!("|---|---:|---:|---:|---:|---|");
        println!(
            "| compaction (sort, zstd 3, free text zstd 7) | {} → {} | {compact_cpu:.2} | {compact_wall:.2} | {:.0} | {:.1} / {:.1} |",
            compacted.merged,
            compacted.written,
            rows as f64 / compact_cpu,
            at_rest("log_entries"),
            at_rest("spans"),
        );
        println!(
            "| reduction into log_stats, span_stats | {} → {} | {reduce_cpu:.2} | {reduce_wall:.2} | {:.0} | — |",
            reduced.sources,
            reduced.written,
            rows as f64 / reduce_cpu,
        );
    }

    let json = json_tenant(&lake, &ingest, args.logs, args.batch).await?;
    if let Some(only) = &args.logql {
        return logql_questions(&engine, &tenant, &json, args.runs, only).await;
    }
    // The log questions: framelake's views against plain DataFusion over the same files.
    let mut config = datafusion::prelude::SessionConfig::new();
    // Partition files are in a folder per day.
    config
        .options_mut()
        .execution
        .listing_table_ignore_subdirectory = false;
    let plain = SessionContext::new_with_config(config);
    let files = dir.join("objects/tenants/default/views");
    for view in ["log_entries", "spans"] {
        let path = files.join(view);
        if !path.exists() {
            continue; // none of this view's rows were sent
        }
        plain
            .register_parquet(
                view,
                path.to_str().context("path")?,
                ParquetReadOptions::default().file_extension(".parquet"),
            )
            .await?;
    }
    let questions = [
        (
            "count LIKE",
            "SELECT count(*) FROM log_entries WHERE body LIKE '%slow query%'",
        ),
        (
            "newest 1000 matching",
            "SELECT time, service_name, body FROM log_entries WHERE body LIKE '%slow query%' ORDER BY time DESC LIMIT 1000",
        ),
        (
            "count by service",
            "SELECT service_name, count(*) FROM log_entries GROUP BY service_name",
        ),
        ("count all", "SELECT count(*) FROM log_entries"),
        (
            "count per hour and service",
            "SELECT date_bin(INTERVAL '1 hour', time) AS hour, service_name, count(*) FROM log_entries GROUP BY 1, 2",
        ),
    ];
    println!();
    let held = lake.catalog.partitions(&tenant, None).await?;
    let rows_of = |view: &str| -> u64 {
        held.iter()
            .filter(|p| p.view == view)
            .map(|p| p.row_count)
            .sum()
    };
    println!(
        "| question over {} log rows | framelake s | plain DataFusion s | ratio |",
        rows_of("log_entries")
    );
    println!("|---|---:|---:|---:|");
    for (name, sql) in questions {
        // Alternated, so that the host's drift falls on both alike.
        let (mut ours, mut theirs) = (Vec::new(), Vec::new());
        for run in 0..=args.runs {
            let started = Instant::now();
            let rows = engine
                .sql(&tenant, sql)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            rows.stream.try_collect::<Vec<_>>().await?;
            let ours_s = started.elapsed().as_secs_f64();
            let started = Instant::now();
            plain.sql(sql).await?.collect().await?;
            // The first run of each warms the caches, as a dashboard's second look.
            if run > 0 {
                ours.push(ours_s);
                theirs.push(started.elapsed().as_secs_f64());
            }
        }
        let (ours, theirs) = (clock::median(ours), clock::median(theirs));
        println!(
            "| {name} | {ours:.3} | {theirs:.3} | {:.2} |",
            theirs / ours
        );
    }
    // Dashboards read the reduced rows.
    let dashboard = "SELECT date_bin(INTERVAL '1 hour', time) AS hour, service_name, sum(count) FROM log_stats GROUP BY 1, 2";
    let reduced = time_runs(args.runs, || async {
        let rows = engine
            .sql(&tenant, dashboard)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        rows.stream.try_collect::<Vec<_>>().await?;
        Ok(())
    })
    .await?;
    println!("| count per hour and service, from `log_stats` | {reduced:.3} | — | — |");

    logql_questions(&engine, &tenant, &json, args.runs, "").await?;

    // Trace by id: a sample of ids, each looked up.
    let sample = engine
        .sql(&tenant, "SELECT DISTINCT trace_id FROM spans LIMIT 50")
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let batches: Vec<_> = sample.stream.try_collect().await?;
    let mut ids = Vec::new();
    for b in &batches {
        let column = b
            .column(0)
            .as_any()
            .downcast_ref::<arrow::array::FixedSizeBinaryArray>()
            .context("ids")?;
        ids.extend((0..column.len()).map(|i| column.value(i).to_vec()));
    }
    let mut ours = Vec::new();
    let mut theirs = Vec::new();
    for id in &ids {
        let hex: String = id.iter().map(|b| format!("{b:02x}")).collect();
        let sql = format!("SELECT * FROM spans WHERE trace_id = X'{hex}'");
        let started = Instant::now();
        let rows = engine
            .sql(&tenant, &sql)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let found: usize = rows
            .stream
            .try_collect::<Vec<_>>()
            .await?
            .iter()
            .map(|b| b.num_rows())
            .sum();
        ours.push(started.elapsed().as_secs_f64());
        anyhow::ensure!(found > 0, "trace {hex} not found");
        let started = Instant::now();
        plain.sql(&sql).await?.collect().await?;
        theirs.push(started.elapsed().as_secs_f64());
    }
    let p99 = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[(v.len() * 99 / 100).min(v.len() - 1)]
    };
    if !ids.is_empty() {
        println!();
        println!(
            "| trace by id over {} spans ({} lookups) | framelake p50 / p99 s | plain DataFusion p50 / p99 s |",
            rows_of("spans"),
            ids.len()
        );
        println!("|---|---:|---:|");
        println!(
            "| `WHERE trace_id = X'…'` | {:.3} / {:.3} | {:.3} / {:.3} |",
            clock::median(ours.clone()),
            p99(ours),
            clock::median(theirs.clone()),
            p99(theirs)
        );
    }

    // Freshness: acknowledged, then visible to the next query (in a tenant
    // of its own: the lake's questions stay those of the hour it was
    // filled, for --reuse).
    let tenant: framelake_lake::ids::TenantId = "freshness".parse()?;
    let mut waits = Vec::new();
    for i in 0..20 {
        let mut generator = Generator::new(1_000_000 + i);
        let mut request = generator.logs(1);
        let marker = format!("freshness-marker-{i}-{}", std::process::id());
        request.resource_logs[0].scope_logs[0].log_records[0].body =
            Some(opentelemetry_proto::tonic::common::v1::AnyValue {
                value: Some(
                    opentelemetry_proto::tonic::common::v1::any_value::Value::StringValue(
                        marker.clone(),
                    ),
                ),
            });
        let body = prost::Message::encode_to_vec(&request);
        let ticket = ingest
            .admit(body.len())
            .map_err(|e| anyhow::anyhow!("ingest: {e}"))?;
        ingest
            .export(
                tenant.clone(),
                Signal::Logs,
                Encoding::Protobuf,
                ContentEncoding::Identity,
                body.into(),
                ticket,
            )
            .await
            .map_err(|e| anyhow::anyhow!("ingest: {e}"))?;
        let acked = Instant::now();
        let sql = format!(
            "SELECT count(*) FROM log_entries WHERE time > now() - interval '5 seconds' AND body = '{marker}'"
        );
        loop {
            let rows = engine
                .sql(&tenant, &sql)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            let batches: Vec<_> = rows.stream.try_collect().await?;
            let count = arrow::array::AsArray::as_primitive::<arrow::datatypes::Int64Type>(
                batches[0].column(0),
            )
            .value(0);
            if count == 1 {
                break;
            }
            anyhow::ensure!(
                acked.elapsed() < Duration::from_secs(10),
                "not visible after 10 s"
            );
        }
        waits.push(acked.elapsed().as_secs_f64());
    }
    println!();
    println!("| freshness (acknowledged → returned by SQL, 20 trials) | p50 s | max s |");
    println!("|---|---:|---:|");
    println!(
        "| without waiting for materialization | {:.3} | {:.3} |",
        clock::median(waits.clone()),
        waits.iter().copied().fold(0.0, f64::max)
    );
    writer.shutdown().await;
    Ok(())
}

async fn time_runs<F, Fut>(runs: usize, mut f: F) -> anyhow::Result<f64>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    f().await?; // warm-up: caches, as a dashboard's second look
    let mut times = Vec::new();
    for _ in 0..runs {
        let started = Instant::now();
        f().await?;
        times.push(started.elapsed().as_secs_f64());
    }
    Ok(clock::median(times))
}

/// Lines Loki read for each of the anchor's questions (host B).
const LOKI_LINES: f64 = 1_630_000.0;

/// The log questions in LogQL through the Loki API's engine, each beside
/// the same question in hand-written SQL over the same views (run
/// alternately), and Loki's lines per second on the same questions.
/// Ingests `count` events of a signal for a tenant through the receiver's
/// path (log lines as JSON when `json`), 64 requests at a time.
async fn ingest_all(
    ingest: &Arc<Ingest>,
    tenant: &framelake_lake::ids::TenantId,
    signal: Signal,
    count: usize,
    batch: usize,
    json: bool,
) -> anyhow::Result<()> {
    let started = Instant::now();
    let requests = count.div_ceil(batch);
    futures::stream::iter(0..requests)
        .map(|i| {
            let ingest = Arc::clone(ingest);
            let tenant = tenant.clone();
            async move {
                let mut generator = Generator::new(i as u64 + 1);
                let body = match signal {
                    Signal::Traces => prost::Message::encode_to_vec(&generator.spans(batch)),
                    _ => prost::Message::encode_to_vec(&generator.logs_as(batch, json)),
                };
                let ticket = ingest
                    .admit(body.len())
                    .map_err(|e| anyhow::anyhow!("ingest: {e}"))?;
                ingest
                    .export(
                        tenant,
                        signal,
                        Encoding::Protobuf,
                        ContentEncoding::Identity,
                        body.into(),
                        ticket,
                    )
                    .await
                    .map_err(|e| anyhow::anyhow!("ingest: {e}"))
            }
        })
        .buffer_unordered(64)
        .try_collect::<Vec<_>>()
        .await?;
    println!(
        "ingested {} {signal:?} for tenant {tenant} in {:.1} s",
        requests * batch,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// The tenant whose log lines are JSON (for LogQL's `json` parser): the
/// same records as the default tenant's, filled, materialized and compacted
/// when the lake does not have it yet.
async fn json_tenant(
    lake: &Arc<Lake>,
    ingest: &Arc<Ingest>,
    logs: usize,
    batch: usize,
) -> anyhow::Result<framelake_lake::ids::TenantId> {
    let tenant: framelake_lake::ids::TenantId = "json".parse()?;
    if !lake
        .catalog
        .partitions(&tenant, Some(View::LogEntries.name()))
        .await?
        .is_empty()
    {
        return Ok(tenant);
    }
    ingest_all(ingest, &tenant, Signal::Logs, logs, batch, true).await?;
    let materializer = Materializer::new(Arc::clone(lake), MaterializeConfig::default());
    while materializer
        .materialize(&tenant, View::LogEntries)
        .await?
        .blocks
        > 0
    {}
    let events = Compactor::new(
        Arc::clone(lake),
        Arc::new(EventRewrite::new(Arc::clone(lake))),
        CompactConfig::default(),
    );
    events
        .pass(framelake_lake::host::now_nanos() + 2 * 86_400 * 1_000_000_000)
        .await?;
    Ok(tenant)
}

/// The end of the hour holding all of a tenant's log lines (just after the
/// newest), how many there are, and that hour as an SQL predicate on `time`.
async fn hour_of(
    engine: &Engine,
    tenant: &framelake_lake::ids::TenantId,
) -> anyhow::Result<(i64, f64, String)> {
    let bounds = engine
        .sql(
            tenant,
            "SELECT arrow_cast(max(time), 'Int64') AS t, count(*) AS n FROM log_entries",
        )
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .stream
        .try_collect::<Vec<_>>()
        .await?;
    let column = |i: usize| -> anyhow::Result<i64> {
        let batch = bounds.first().context("bounds")?;
        let c = arrow::compute::cast(batch.column(i), &arrow::datatypes::DataType::Int64)?;
        Ok(c.as_any()
            .downcast_ref::<arrow::array::Int64Array>()
            .context("int64")?
            .value(0))
    };
    let at = column(0)? + 1;
    let hour = 3_600_000_000_000i64;
    let window = format!(
        "time > arrow_cast({}, 'Timestamp(Nanosecond, Some(\"UTC\"))') AND time <= arrow_cast({at}, 'Timestamp(Nanosecond, Some(\"UTC\"))')",
        at - hour
    );
    Ok((at, column(1)? as f64, window))
}

async fn logql_questions(
    engine: &Engine,
    tenant: &framelake_lake::ids::TenantId,
    json: &framelake_lake::ids::TenantId,
    runs: usize,
    only: &str,
) -> anyhow::Result<()> {
    use framelake_query::loki::metric::Steps;
    use framelake_query::loki::{Direction, Loki};
    let loki = Loki::new(engine.clone(), Default::default());
    // Every line of a tenant is within the hour before `at`.
    let hour = 3_600_000_000_000i64;
    let (at, lines, window) = hour_of(engine, tenant).await?;
    let (json_at, json_lines, json_window) = hour_of(engine, json).await?;
    let metadata = "time, process_id, body, scope_name, scope_version, scope_attributes, attributes, \
         severity_number, severity_text, trace_id, span_id, flags, observed_time, event_name, \
         dropped_attributes_count";
    // (question, LogQL, SQL twin, Loki's seconds on host B for its 1.63M lines,
    // the tenant asked)
    let questions = [
        (
            "line filter, count per stream",
            r#"count_over_time({service_name="checkout"} |= "slow query" [1h])"#.to_owned(),
            format!(
                "SELECT process_id, count(*) FROM log_entries WHERE service_name = 'checkout' AND body LIKE '%slow query%' AND {window} GROUP BY process_id"
            ),
            Some(5.0),
            tenant,
        ),
        (
            "count by service",
            r#"sum by (service_name) (count_over_time({service_name=~".+"}[1h]))"#.to_owned(),
            format!(
                "SELECT service_name, count(*) FROM log_entries WHERE {window} GROUP BY service_name"
            ),
            Some(7.5),
            tenant,
        ),
        (
            "count all",
            r#"sum(count_over_time({service_name=~".+"}[1h]))"#.to_owned(),
            format!("SELECT count(*) FROM log_entries WHERE {window}"),
            Some(6.5),
            tenant,
        ),
        (
            "newest 1000 matching",
            r#"{service_name=~".+"} |= "slow query""#.to_owned(),
            format!(
                "SELECT {metadata} FROM log_entries WHERE body LIKE '%slow query%' AND {window} ORDER BY time DESC LIMIT 1000"
            ),
            Some(0.71),
            tenant,
        ),
        (
            "logfmt parser, numeric filter",
            r#"sum(count_over_time({service_name=~".+"} | logfmt | took >= 500ms [1h]))"#
                .to_owned(),
            format!(
                "SELECT count(*) FROM log_entries WHERE {window} AND CAST(regexp_match(body, 'took=([0-9]+)ms')[1] AS BIGINT) >= 500"
            ),
            None,
            tenant,
        ),
        (
            "json parser, numeric filter, JSON lines",
            r#"sum(count_over_time({service_name=~".+"} | json | status >= 500 [1h]))"#.to_owned(),
            format!(
                "SELECT count(*) FROM log_entries WHERE {json_window} AND CAST(regexp_match(body, '\"status\":([0-9]+)')[1] AS BIGINT) >= 500"
            ),
            None,
            json,
        ),
    ];
    println!();
    println!(
        "| LogQL over {lines} log rows | LogQL s | SQL twin s | LogQL / SQL | lines/s | Loki lines/s (host B) | × Loki |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for (name, logql, sql, loki_s, tenant) in questions.into_iter().filter(|q| q.0.contains(only)) {
        let (at, lines) = if tenant == json {
            (json_at, json_lines)
        } else {
            (at, lines)
        };
        let expr = framelake_query::loki::parse(&logql).map_err(|e| anyhow::anyhow!("{e}"))?;
        let (mut ours, mut twin) = (Vec::new(), Vec::new());
        for run in 0..=runs {
            let started = Instant::now();
            match &expr {
                framelake_logql::Expr::Log(log) => {
                    let got = loki
                        .select(
                            tenant,
                            log,
                            at - hour + 1,
                            at + 1,
                            1000,
                            Direction::Backward,
                        )
                        .await
                        .map_err(|e| anyhow::anyhow!("{e}"))?;
                    anyhow::ensure!(got.len() == 1000, "{name}: {} lines", got.len());
                }
                framelake_logql::Expr::Metric(metric) => {
                    loki.evaluate(tenant, metric, Steps::instant(at))
                        .await
                        .map_err(|e| anyhow::anyhow!("{e}"))?;
                }
            }
            let ours_s = started.elapsed().as_secs_f64();
            let started = Instant::now();
            let rows = engine
                .sql(tenant, &sql)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            rows.stream.try_collect::<Vec<_>>().await?;
            if run > 0 {
                ours.push(ours_s);
                twin.push(started.elapsed().as_secs_f64());
            }
        }
        let (ours, twin) = (clock::median(ours), clock::median(twin));
        let (loki_rate, times) = match loki_s {
            Some(s) => (
                format!("{:.0}", LOKI_LINES / s),
                format!("{:.0}", (lines / ours) / (LOKI_LINES / s)),
            ),
            None => ("—".to_owned(), "—".to_owned()),
        };
        println!(
            "| `{}` ({name}) | {ours:.3} | {twin:.3} | {:.2} | {:.0} | {loki_rate} | {times} |",
            logql.replace('|', "\\|"),
            ours / twin,
            lines / ours,
        );
    }
    Ok(())
}
