//! Loki's query API over the lake: LogQL compiled onto DataFusion scans of
//! `log_entries`, with the rest of a query run on the lines they return.
//!
//! - A stream selector is matched against the catalog's processes (their
//!   labels by [`streams::LabelMapping`]) that have log blocks in the
//!   range: the scan reads `process_id IN (…)` only, which prunes blocks
//!   and partitions before any is opened, besides the time range.
//! - Line filters before the first stage that rewrites the line become the
//!   scan's own predicates (`LIKE`, `regexp_like`); a log query whose
//!   remaining stages drop no line also hands the scan its order and limit.
//! - The other stages run line by line ([`framelake_logql::eval`]), then
//!   range aggregations accumulate per series ([`metric`]) and vector
//!   aggregations and binary operators combine whole series.
//!
//! Scans run through [`Engine::run`]: tenant scoping, pending blocks,
//! memory and time limits are those of SQL.

pub mod drilldown;
pub mod http;
pub mod metric;
pub mod streams;
pub mod tail;

use std::collections::BTreeSet;
use std::sync::Arc;

use datafusion::common::ScalarValue;
use datafusion::logical_expr::{Expr, SortExpr};
use datafusion::prelude::{col, lit};
use framelake_lake::ids::{ProcessId, TenantId};
use framelake_lake::view::View;
use framelake_logql::eval::{Category, ERROR, Labels, Pipeline, Row, Selector, Unwrapper};
use framelake_logql::{
    Expr as LogQl, LineOp, LogExpr, LogRange, MatchOp, Matcher, MetricExpr, RangeOp, Stage,
};
use futures::StreamExt;
use futures::future::BoxFuture;

use self::metric::{LabelSet, RangeAgg, Series, Steps, Value, Windows};
use self::streams::{LabelMapping, LineBatch, METADATA_COLUMNS, Stream, StreamIndex, Wanted};
use crate::table::time_literal;
use crate::{Engine, QueryError};

/// Most series a metric query may answer with (Loki's default).
pub const MAX_SERIES: usize = 500;

/// The order of a log query's lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Forward,
    Backward,
}

/// A line a log query returns.
#[derive(Debug, Clone)]
pub struct LogLine {
    pub stream: Arc<Stream>,
    pub time: i64,
    pub line: String,
    pub labels: Labels,
}

/// What a stream holds in a range (or one step of it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Volume {
    /// The stream's index in the [`StreamIndex`] asked about.
    pub stream: usize,
    /// The step, when asked per step.
    pub step: Option<i64>,
    pub bytes: u64,
    pub lines: u64,
}

/// Runs LogQL for one tenant.
#[derive(Debug, Clone)]
pub struct Loki {
    engine: Engine,
    mapping: Arc<LabelMapping>,
}

fn bad(e: impl std::fmt::Display) -> QueryError {
    QueryError::BadQuery(e.to_string())
}

/// The predicate of a scan of some streams over a time range (inclusive):
/// the range, and the streams' processes unless they are every process
/// with logs in it.
fn scan_predicate(streams: &StreamIndex, range: (i64, i64)) -> Expr {
    let mut predicate = col("time")
        .gt_eq(time_literal(range.0))
        .and(col("time").lt_eq(time_literal(range.1)));
    if streams.complete {
        return predicate;
    }
    if let Some(services) = &streams.services {
        let names: Vec<Expr> = services.iter().map(|s| lit(s.clone())).collect();
        return predicate.and(col("service_name").in_list(names, false));
    }
    {
        let ids: Vec<Expr> = streams
            .ids()
            .map(|id| {
                lit(ScalarValue::FixedSizeBinary(
                    16,
                    Some(id.as_bytes().to_vec()),
                ))
            })
            .collect();
        predicate = predicate.and(col("process_id").in_list(ids, false));
    }
    predicate
}

/// The scan predicate of a line filter, if it has one: `|=` and `!=` as
/// `LIKE`, `|~` and `!~` as `regexp_like` (a line without a body is empty).
fn line_predicate(op: LineOp, patterns: &[String]) -> Option<Expr> {
    let negated = matches!(op, LineOp::NotContains | LineOp::NotRegex);
    let any = patterns
        .iter()
        .map(|p| match op {
            LineOp::Contains | LineOp::NotContains => {
                let escaped = p
                    .replace('\\', "\\\\")
                    .replace('%', "\\%")
                    .replace('_', "\\_");
                Some(Expr::Like(datafusion::logical_expr::Like::new(
                    false,
                    Box::new(col("body")),
                    Box::new(lit(format!("%{escaped}%"))),
                    Some('\\'),
                    false,
                )))
            }
            LineOp::Regex | LineOp::NotRegex => {
                Some(datafusion::functions::regex::expr_fn::regexp_like(
                    col("body"),
                    lit(p.clone()),
                    None,
                ))
            }
            LineOp::Pattern | LineOp::NotPattern => None,
        })
        .collect::<Option<Vec<_>>>()?
        .into_iter()
        .reduce(Expr::or)?;
    Some(if negated {
        col("body").is_null().or(Expr::Not(Box::new(any)))
    } else {
        any.and(col("body").is_not_null())
    })
}

/// A pipeline split into the scan's predicates and the stages left to run
/// line by line.
struct Split {
    predicates: Vec<Expr>,
    rest: Vec<Stage>,
}

fn split(pipeline: &[Stage]) -> Split {
    let mut predicates = Vec::new();
    let mut rest = Vec::new();
    let mut rewritten = false;
    for stage in pipeline {
        match stage {
            Stage::LineFilter { op, patterns } if !rewritten => {
                match line_predicate(*op, patterns) {
                    Some(p) => predicates.push(p),
                    None => rest.push(stage.clone()),
                }
            }
            Stage::LineFormat(_) | Stage::Unpack | Stage::Decolorize => {
                rewritten = true;
                rest.push(stage.clone());
            }
            _ => rest.push(stage.clone()),
        }
    }
    // `drop __error__` is a no-op when nothing before it can fail.
    let fails = |s: &Stage| {
        matches!(
            s,
            Stage::Json(_)
                | Stage::Logfmt { .. }
                | Stage::Unpack
                | Stage::LineFormat(_)
                | Stage::LabelFormat(_)
                | Stage::LabelFilter(_)
        )
    };
    if !rest.iter().any(fails) {
        rest.retain(|s| !matches!(s, Stage::Drop(list) if list.iter().all(|l| l.name.starts_with("__error"))));
    }
    Split { predicates, rest }
}

/// Whether a stage may drop lines.
fn filters(stage: &Stage) -> bool {
    matches!(stage, Stage::LineFilter { .. } | Stage::LabelFilter(_))
}

/// Lines' labels by stream, time and line (lines alike in all three have a
/// label set each).
type LinesLabels = std::collections::HashMap<(ProcessId, i64, String), Vec<Labels>>;

/// A log query's first window holds about this many lines per line asked.
const WINDOW_LINES: u64 = 8;

/// What a scan reads besides `time` and `process_id`.
#[derive(Debug, Clone)]
struct Columns {
    body: bool,
    /// Those of the metadata columns.
    metadata: Vec<&'static str>,
}

impl Columns {
    /// The line and all its structured metadata.
    fn all() -> Self {
        Columns {
            body: true,
            metadata: METADATA_COLUMNS.to_vec(),
        }
    }
}

/// How a scan orders its rows: newest first or not, and how many.
type Order = Option<(Direction, Option<usize>)>;

impl Loki {
    pub fn new(engine: Engine, mapping: LabelMapping) -> Self {
        Loki {
            engine,
            mapping: Arc::new(mapping),
        }
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The streams with logs in a time range (inclusive) that a selector
    /// matches (every stream when `None`).
    pub async fn streams(
        &self,
        tenant: &TenantId,
        selector: Option<&Selector>,
        range: (i64, i64),
    ) -> Result<StreamIndex, QueryError> {
        let records = self
            .engine
            .lake()
            .catalog
            .active_processes(tenant, View::LogEntries.kinds(), range)
            .await?;
        let mut streams = Vec::new();
        for record in &records {
            let stream = self.mapping.stream(record)?;
            if selector.is_none_or(|s| s.matches(&stream.labels)) {
                streams.push(stream);
            }
        }
        let complete = streams.len() == records.len();
        let services: BTreeSet<&str> = streams
            .iter()
            .filter_map(|s| s.labels.get("service_name"))
            .collect();
        let by_service = records
            .iter()
            .filter(|r| services.contains(r.service_name.as_str()))
            .count()
            == streams.len();
        let services: Option<Vec<String>> =
            by_service.then(|| services.iter().map(|s| s.to_string()).collect());
        let mut index = StreamIndex::new(streams);
        index.complete = complete;
        index.services = services;
        Ok(index)
    }

    /// Scans the lines of some streams in a time range (inclusive).
    async fn scan(
        &self,
        tenant: &TenantId,
        streams: &StreamIndex,
        range: (i64, i64),
        predicates: Vec<Expr>,
        columns: Columns,
        order: Order,
    ) -> Result<crate::Rows, QueryError> {
        let scope = scan_predicate(streams, range);
        let mut names = vec!["time", "process_id"];
        if columns.body {
            names.push("body");
        }
        names.extend(columns.metadata);
        self.engine
            .run(tenant, move |ctx| async move {
                // Time and line filters are evaluated first, and the other
                // columns decoded only for the lines that pass them.
                ctx.state_ref()
                    .write()
                    .config_mut()
                    .options_mut()
                    .execution
                    .parquet
                    .pushdown_filters = true;
                let mut predicate = scope;
                for p in predicates {
                    predicate = predicate.and(p);
                }
                let mut frame = ctx
                    .table(View::LogEntries.name())
                    .await?
                    .filter(predicate)?
                    .select_columns(&names)?;
                if let Some((direction, limit)) = order {
                    frame = frame.sort(vec![SortExpr::new(
                        col("time"),
                        direction == Direction::Forward,
                        false,
                    )])?;
                    if let Some(limit) = limit {
                        frame = frame.limit(0, Some(limit))?;
                    }
                }
                Ok(frame)
            })
            .await
    }

    /// Lines and their bytes per stream (its index in `streams`) in a time
    /// range (inclusive), and per step when `steps` is given (the step `k`
    /// of a line at `t` being the first at or after `t`).
    pub async fn volume(
        &self,
        tenant: &TenantId,
        streams: &StreamIndex,
        range: (i64, i64),
        steps: Option<Steps>,
    ) -> Result<Vec<Volume>, QueryError> {
        use datafusion::arrow::datatypes::DataType;
        use datafusion::functions_aggregate::expr_fn::{count, sum};
        use datafusion::logical_expr::cast;
        if streams.is_empty() {
            return Ok(Vec::new());
        }
        let scope = scan_predicate(streams, range);
        let mut rows = self
            .engine
            .run(tenant, move |ctx| async move {
                let mut group = vec![col("process_id")];
                if let Some(steps) = steps {
                    let step = steps.step.max(1);
                    group.push(
                        ((cast(col("time"), DataType::Int64) - lit(steps.start - step + 1))
                            / lit(step))
                        .alias("k"),
                    );
                }
                let bytes = datafusion::functions::string::expr_fn::octet_length(col("body"));
                Ok(ctx
                    .table(View::LogEntries.name())
                    .await?
                    .filter(scope)?
                    .aggregate(
                        group,
                        vec![
                            cast(sum(bytes), DataType::Int64).alias("bytes"),
                            count(lit(1)).alias("lines"),
                        ],
                    )?)
            })
            .await?;
        let mut out = Vec::new();
        while let Some(batch) = rows.stream.next().await {
            let batch = batch?;
            let column = |name: &str| {
                batch
                    .column_by_name(name)
                    .ok_or_else(|| QueryError::Internal(format!("volume without {name}")))
            };
            let ids = column("process_id")?
                .as_any()
                .downcast_ref::<arrow::array::FixedSizeBinaryArray>()
                .ok_or_else(|| QueryError::Internal("volume ids".into()))?;
            let int64 = |name: &str| -> Result<arrow::array::Int64Array, QueryError> {
                column(name)?
                    .as_any()
                    .downcast_ref::<arrow::array::Int64Array>()
                    .cloned()
                    .ok_or_else(|| QueryError::Internal(format!("volume {name} not Int64")))
            };
            let (bytes, lines) = (int64("bytes")?, int64("lines")?);
            let k = match batch.column_by_name("k") {
                Some(_) => Some(int64("k")?),
                None => None,
            };
            for i in 0..batch.num_rows() {
                let Some((stream, _)) = streams.get(ids.value(i)) else {
                    continue;
                };
                out.push(Volume {
                    stream,
                    step: k.as_ref().map(|k| k.value(i)),
                    bytes: bytes.value(i).max(0) as u64,
                    lines: lines.value(i).max(0) as u64,
                });
            }
        }
        Ok(out)
    }

    /// Lines per stream and window interval (`interval`, `lines`, and
    /// `bytes` when `bytes`), counted by the scan.
    #[allow(clippy::too_many_arguments)]
    async fn interval_counts(
        &self,
        tenant: &TenantId,
        streams: &StreamIndex,
        range: (i64, i64),
        predicates: Vec<Expr>,
        windows: &Windows,
        offset: i64,
        bytes: bool,
        keys: Keys,
    ) -> Result<crate::Rows, QueryError> {
        use datafusion::arrow::datatypes::DataType;
        use datafusion::functions_aggregate::expr_fn::{count, sum};
        use datafusion::logical_expr::cast;
        let scope = scan_predicate(streams, range);
        let interval = windows.interval_expr(col("time"), offset);
        let mut group = match keys {
            Keys::Stream => vec![col("process_id")],
            Keys::Service => vec![col("service_name")],
            Keys::Nothing => Vec::new(),
        };
        // An instant query's one window needs no interval per line: its
        // interval is added to the counts (a constant key would make them a
        // grouped aggregation).
        let single = windows.single_interval();
        if single.is_none() {
            group.push(interval.alias("interval"));
        }
        self.engine
            .run(tenant, move |ctx| async move {
                let mut predicate = scope;
                for p in predicates {
                    predicate = predicate.and(p);
                }
                let mut counts = vec![count(lit(1)).alias("lines")];
                if bytes {
                    let size = datafusion::functions::string::expr_fn::octet_length(col("body"));
                    counts.push(cast(sum(size), DataType::Int64).alias("bytes"));
                }
                let mut names: Vec<Expr> = group
                    .iter()
                    .map(|g| col(g.schema_name().to_string()))
                    .collect();
                let counted = ctx
                    .table(View::LogEntries.name())
                    .await?
                    .filter(predicate)?
                    .aggregate(group, counts)?;
                let Some(k) = single else {
                    return Ok(counted);
                };
                names.push(lit(k).alias("interval"));
                names.push(col("lines"));
                if bytes {
                    names.push(col("bytes"));
                }
                Ok(counted.select(names)?)
            })
            .await
    }

    /// The lines of a log query in `[start, end)`, in `direction`, at most `limit`.
    pub async fn select(
        &self,
        tenant: &TenantId,
        expr: &LogExpr,
        start: i64,
        end: i64,
        limit: usize,
        direction: Direction,
    ) -> Result<Vec<LogLine>, QueryError> {
        if end <= start || limit == 0 {
            return Ok(Vec::new());
        }
        let selector = Selector::new(&expr.selector).map_err(bad)?;
        let streams = self
            .streams(tenant, Some(&selector), (start, end - 1))
            .await?;
        if streams.is_empty() {
            return Ok(Vec::new());
        }
        let Split { predicates, rest } = split(&expr.pipeline);
        let pipeline = Pipeline::new(&rest).map_err(bad)?;
        let range = (start, end - 1);
        if rest.iter().any(filters) {
            // Stages may drop lines: read them in order until `limit` pass.
            let rows = self
                .scan(
                    tenant,
                    &streams,
                    range,
                    predicates,
                    Columns::all(),
                    Some((direction, None)),
                )
                .await?;
            return Self::lines(rows, &streams, &pipeline, limit).await;
        }
        // The scan finds the lines (its order and limit), reading their time,
        // stream and line only; their structured metadata is read for the
        // time they span. It looks first at a window at the range's end (its
        // start, forward) the catalog says holds a few times `limit` lines,
        // 16 times wider each time it finds fewer: the lines a window finds
        // come before any in the next. The first window's metadata is read
        // beside it: it is all that is needed when the window finds enough.
        let (first, last) = range;
        let mut width = self
            .first_width(tenant, range, direction, limit as u64 * WINDOW_LINES)
            .await?;
        let window = match direction {
            Direction::Backward => (last - width + 1, last),
            Direction::Forward => (first, first + width - 1),
        };
        let (mut found, mut labels) = futures::try_join!(
            self.found(tenant, &streams, window, &predicates, direction, limit),
            self.metadata(tenant, &streams, window, &predicates),
        )?;
        let mut scanned = window;
        while found.len() < limit && scanned != range {
            width = width.saturating_mul(16);
            let window = match direction {
                Direction::Backward => (scanned.0.saturating_sub(width).max(first), scanned.0 - 1),
                Direction::Forward => (scanned.1 + 1, scanned.1.saturating_add(width).min(last)),
            };
            let more = self
                .found(
                    tenant,
                    &streams,
                    window,
                    &predicates,
                    direction,
                    limit - found.len(),
                )
                .await?;
            found.extend(more);
            scanned = (scanned.0.min(window.0), scanned.1.max(window.1));
            if found.len() >= limit || scanned == range {
                let (Some(oldest), Some(newest)) = (
                    found.iter().map(|(_, t, _)| *t).min(),
                    found.iter().map(|(_, t, _)| *t).max(),
                ) else {
                    return Ok(Vec::new());
                };
                labels = self
                    .metadata(tenant, &streams, (oldest, newest), &predicates)
                    .await?;
            }
        }
        let mut lines = Vec::with_capacity(found.len());
        for (stream, time, line) in found {
            let key = (stream.process_id, time, line);
            let line_labels = labels
                .get_mut(&key)
                .and_then(Vec::pop)
                .unwrap_or_else(|| stream.labels.clone());
            let mut row = Row {
                time,
                line: key.2,
                labels: line_labels,
            };
            if pipeline.process(&mut row) {
                lines.push(LogLine {
                    stream,
                    time: row.time,
                    line: row.line,
                    labels: row.labels,
                });
            }
        }
        Ok(lines)
    }

    /// The first `limit` lines of a time range (inclusive) in `direction`,
    /// with their stream: the time, stream and line of each only.
    async fn found(
        &self,
        tenant: &TenantId,
        streams: &StreamIndex,
        window: (i64, i64),
        predicates: &[Expr],
        direction: Direction,
        limit: usize,
    ) -> Result<Vec<(Arc<Stream>, i64, String)>, QueryError> {
        let narrow = Columns {
            body: true,
            metadata: Vec::new(),
        };
        let order = Some((direction, Some(limit)));
        let mut rows = self
            .scan(tenant, streams, window, predicates.to_vec(), narrow, order)
            .await?;
        let mut found = Vec::new();
        while let Some(batch) = rows.stream.next().await {
            let batch = LineBatch::new(&batch?)?;
            for i in 0..batch.len {
                if let Some((_, stream)) = streams.get(batch.process(i)) {
                    found.push((Arc::clone(stream), batch.time(i), batch.line(i).to_owned()));
                }
            }
        }
        Ok(found)
    }

    /// The labels (with all structured metadata) of the lines of a time range
    /// (inclusive), by stream, time and line.
    async fn metadata(
        &self,
        tenant: &TenantId,
        streams: &StreamIndex,
        window: (i64, i64),
        predicates: &[Expr],
    ) -> Result<LinesLabels, QueryError> {
        let mut rows = self
            .scan(
                tenant,
                streams,
                window,
                predicates.to_vec(),
                Columns::all(),
                None,
            )
            .await?;
        let mut labels = LinesLabels::new();
        while let Some(batch) = rows.stream.next().await {
            let batch = LineBatch::new(&batch?)?;
            for i in 0..batch.len {
                if let Some((_, stream)) = streams.get(batch.process(i)) {
                    labels
                        .entry((stream.process_id, batch.time(i), batch.line(i).to_owned()))
                        .or_default()
                        .push(batch.labels(i, stream));
                }
            }
        }
        Ok(labels)
    }

    /// The lines of a scan that pass a pipeline, at most `limit`.
    async fn lines(
        mut rows: crate::Rows,
        streams: &StreamIndex,
        pipeline: &Pipeline,
        limit: usize,
    ) -> Result<Vec<LogLine>, QueryError> {
        let mut lines = Vec::new();
        while let Some(batch) = rows.stream.next().await {
            let batch = LineBatch::new(&batch?)?;
            for i in 0..batch.len {
                let Some((_, stream)) = streams.get(batch.process(i)) else {
                    continue;
                };
                let mut row = Row {
                    time: batch.time(i),
                    line: batch.line(i).to_owned(),
                    labels: batch.labels(i, stream),
                };
                if pipeline.process(&mut row) {
                    lines.push(LogLine {
                        stream: Arc::clone(stream),
                        time: row.time,
                        line: row.line,
                        labels: row.labels,
                    });
                    if lines.len() == limit {
                        return Ok(lines);
                    }
                }
            }
        }
        Ok(lines)
    }

    /// A metric query's value at each step.
    pub async fn evaluate(
        &self,
        tenant: &TenantId,
        expr: &MetricExpr,
        steps: Steps,
    ) -> Result<Value, QueryError> {
        let mut names = BTreeSet::new();
        grouping_names(expr, &mut names);
        let value = self.eval(tenant, expr, steps, &names).await?;
        if matches!(&value, Value::Vector(series) if series.len() > MAX_SERIES) {
            return Err(bad(format!(
                "maximum number of series ({MAX_SERIES}) reached for a single query; \
                 consider aggregating by fewer labels (sum by (…))"
            )));
        }
        Ok(value)
    }

    fn eval<'a>(
        &'a self,
        tenant: &'a TenantId,
        expr: &'a MetricExpr,
        steps: Steps,
        names: &'a BTreeSet<String>,
    ) -> BoxFuture<'a, Result<Value, QueryError>> {
        Box::pin(Grown(Box::pin(async move {
            Ok(match expr {
                MetricExpr::Literal(v) => Value::Scalar(vec![*v; steps.count]),
                MetricExpr::Vector1(v) => Value::Vector(vec![Series {
                    labels: Vec::new(),
                    points: vec![Some(*v); steps.count],
                }]),
                MetricExpr::Range {
                    op,
                    param,
                    range,
                    grouping,
                } => Value::Vector(
                    self.range(
                        tenant,
                        *op,
                        *param,
                        range,
                        grouping.as_ref(),
                        steps,
                        names,
                        Keys::Stream,
                        None,
                    )
                    .await?,
                ),
                MetricExpr::Vector {
                    op,
                    param,
                    inner,
                    grouping,
                } => {
                    let series = match pushed_down(*op, inner, grouping.as_ref()) {
                        Some((range_op, range, keys, outer)) => {
                            self.range(
                                tenant, range_op, None, range, None, steps, names, keys, outer,
                            )
                            .await?
                        }
                        None => match self.eval(tenant, inner, steps, names).await? {
                            Value::Vector(series) => series,
                            Value::Scalar(_) => {
                                return Err(bad(format!(
                                    "{} expects a vector, not a scalar",
                                    op.name()
                                )));
                            }
                        },
                    };
                    Value::Vector(metric::aggregate(
                        *op,
                        *param,
                        grouping.as_ref(),
                        series,
                        steps.count,
                    ))
                }
                MetricExpr::Binary {
                    op,
                    lhs,
                    rhs,
                    modifier,
                } => {
                    let l = self.eval(tenant, lhs, steps, names).await?;
                    let r = self.eval(tenant, rhs, steps, names).await?;
                    metric::binary(*op, modifier, l, r, steps.count).map_err(bad)?
                }
                MetricExpr::LabelReplace {
                    inner,
                    dst,
                    replacement,
                    src,
                    regex,
                } => {
                    let Value::Vector(series) = self.eval(tenant, inner, steps, names).await?
                    else {
                        return Err(bad("label_replace expects a vector"));
                    };
                    let re = framelake_logql::eval::anchored(regex).map_err(bad)?;
                    Value::Vector(metric::label_replace(series, dst, replacement, src, &re))
                }
            })
        })))
    }

    /// A range aggregation's series.
    #[allow(clippy::too_many_arguments)]
    async fn range(
        &self,
        tenant: &TenantId,
        op: RangeOp,
        param: Option<f64>,
        range: &LogRange,
        grouping: Option<&framelake_logql::Grouping>,
        steps: Steps,
        names: &BTreeSet<String>,
        keys: Keys,
        outer: Outer<'_>,
    ) -> Result<Vec<Series>, QueryError> {
        let windows = Windows::new(steps, range.range);
        let (from, to) = windows.span();
        let (from, to) = (from - range.offset, to - range.offset);
        let selector = Selector::new(&range.log.selector).map_err(bad)?;
        let streams = self.streams(tenant, Some(&selector), (from, to)).await?;
        let Split { predicates, rest } = split(&range.log.pipeline);
        let pipeline = Pipeline::new(&rest).map_err(bad)?;
        let unwrap = range
            .unwrap
            .as_ref()
            .map(Unwrapper::new)
            .transpose()
            .map_err(bad)?;
        // Lines need labels of their own when stages run, values are
        // unwrapped, or the query groups by a label some stream lacks
        // (structured metadata).
        let by = grouping.filter(|g| !g.without).map(|g| g.labels.iter());
        let metadata = names
            .iter()
            .chain(by.into_iter().flatten())
            .any(|name| streams.all().iter().any(|s| s.labels.get(name).is_none()));
        let per_line = !rest.is_empty() || unwrap.is_some() || metadata;
        let bytes = matches!(op, RangeOp::BytesOverTime | RangeOp::BytesRate);
        let absent = op == RangeOp::AbsentOverTime;
        let counting = if absent { RangeOp::CountOverTime } else { op };
        let mut agg = RangeAgg::new(counting, param, windows, unwrap.is_some());
        if !streams.is_empty() && !per_line {
            // Lines counted (and their bytes summed) per stream (or per what
            // the enclosing sum keeps) and interval by the scan itself.
            let mut rows = self
                .interval_counts(
                    tenant,
                    &streams,
                    (from, to),
                    predicates,
                    &windows,
                    range.offset,
                    bytes,
                    keys,
                )
                .await?;
            let mut by_stream: Vec<Option<usize>> = vec![None; streams.all().len()];
            while let Some(batch) = rows.stream.next().await {
                let batch = batch?;
                let column = |name: &str| {
                    batch.column_by_name(name).ok_or_else(|| {
                        QueryError::Internal(format!("interval counts without {name}"))
                    })
                };
                let ids = match keys {
                    Keys::Stream => Some(
                        column("process_id")?
                            .as_any()
                            .downcast_ref::<arrow::array::FixedSizeBinaryArray>()
                            .cloned()
                            .ok_or_else(|| QueryError::Internal("interval count ids".into()))?,
                    ),
                    _ => None,
                };
                let services = match keys {
                    Keys::Service => Some(arrow::compute::cast(
                        column("service_name")?,
                        &arrow::datatypes::DataType::Utf8,
                    )?),
                    _ => None,
                };
                let int64 = |name: &str| -> Result<arrow::array::Int64Array, QueryError> {
                    column(name)?
                        .as_any()
                        .downcast_ref::<arrow::array::Int64Array>()
                        .cloned()
                        .ok_or_else(|| {
                            QueryError::Internal(format!("interval count {name} not Int64"))
                        })
                };
                let (intervals, lines) = (int64("interval")?, int64("lines")?);
                let sizes = if bytes { Some(int64("bytes")?) } else { None };
                for i in 0..batch.num_rows() {
                    let id = match (&ids, &services) {
                        (Some(ids), _) => {
                            let Some((index, stream)) = streams.get(ids.value(i)) else {
                                continue;
                            };
                            *by_stream[index].get_or_insert_with(|| {
                                let mut labels = stream.labels.sorted();
                                if let Some(g) = grouping {
                                    labels = metric::group_labels(&labels, Some(g));
                                }
                                if let Some(g) = outer {
                                    labels = metric::group_labels(&labels, g);
                                }
                                agg.series(labels)
                            })
                        }
                        (None, Some(services)) => {
                            use arrow::array::AsArray;
                            let service = services.as_string::<i32>().value(i).to_owned();
                            agg.series(vec![("service_name".to_owned(), service)])
                        }
                        (None, None) => agg.series(Vec::new()),
                    };
                    let n = lines.value(i).max(0) as u64;
                    let sum = sizes.as_ref().map_or(n as f64, |s| s.value(i) as f64);
                    agg.add_interval(id, intervals.value(i), n, sum);
                }
            }
        } else if !streams.is_empty() {
            // The structured metadata the query reads; all of it when a
            // template reads every label or a grouping keeps all but some.
            let without = |g: Option<&framelake_logql::Grouping>| g.is_some_and(|g| g.without);
            let wanted = pipeline
                .reads()
                .filter(|_| !without(grouping) && !outer.flatten().is_some_and(|g| g.without))
                .map(|mut w| {
                    w.extend(names.iter().cloned());
                    if let Some(u) = &unwrap {
                        w.extend(u.reads());
                    }
                    for g in grouping.into_iter().chain(outer.flatten()) {
                        w.extend(g.labels.iter().cloned());
                    }
                    w
                });
            // When the answer keeps only some labels (an aggregation by them,
            // or of everything), parsers extract only those and what later
            // stages read.
            let grouped = |g: Option<&framelake_logql::Grouping>| g.is_none_or(|g| !g.without);
            let keeps_some = match (grouping, outer) {
                (Some(g), _) => !g.without,
                (None, Some(g)) => grouped(g),
                (None, None) => false,
            };
            let pipeline = match (&wanted, keeps_some) {
                (Some(w), true) => pipeline.with_hints(w.clone()),
                _ => pipeline,
            };
            // When every label read is one a parser sets before anything
            // reads it, lines are first read without their attributes: a
            // line whose parsers set them all needs none (the parsed values
            // replace any attribute of the same name). If a line does not,
            // the lines are read again with them.
            let parsed: Vec<String> = match &wanted {
                Some(w)
                    if !w.is_empty()
                        && !w.contains(streams::DETECTED_LEVEL)
                        && w.iter().all(|n| {
                            pipeline.parsed_first(n)
                                && streams.all().iter().all(|s| s.labels.get(n).is_none())
                        }) =>
                {
                    w.iter().cloned().collect()
                }
                _ => Vec::new(),
            };
            let mut lines = PerLine {
                streams,
                pipeline,
                unwrap,
                wanted: Wanted::new(wanted.as_ref()),
                parsed,
                names: names.clone(),
                grouping: grouping.cloned(),
                outer: outer.map(|g| g.cloned()),
                bytes,
                offset: range.offset,
                agg: (counting, param, windows),
            };
            let span = (from, to);
            let mut partial = None;
            if !lines.parsed.is_empty() {
                partial = self
                    .run_lines(tenant, span, &predicates, lines.clone())
                    .await?;
                lines.parsed.clear();
            }
            if partial.is_none() {
                partial = self.run_lines(tenant, span, &predicates, lines).await?;
            }
            agg.merge(
                partial.ok_or_else(|| {
                    QueryError::Internal("a range aggregation read no lines".into())
                })?,
            );
        }
        let series: Vec<Series> = agg
            .finish()
            .into_iter()
            .map(|(labels, points)| Series { labels, points })
            .collect();
        if !absent {
            return Ok(series);
        }
        let points: Vec<Option<f64>> = (0..steps.count)
            .map(|k| (!series.iter().any(|s| s.points[k].is_some())).then_some(1.0))
            .collect();
        if points.iter().all(Option::is_none) {
            return Ok(Vec::new());
        }
        let mut labels: LabelSet = range
            .log
            .selector
            .iter()
            .filter(|m| m.op == MatchOp::Eq)
            .map(|m| (m.name.clone(), m.value.clone()))
            .collect();
        labels.sort();
        labels.dedup_by(|a, b| a.0 == b.0);
        Ok(vec![Series { labels, points }])
    }
}

impl Loki {
    /// The width of the window at a range's end (its start, forward) that
    /// holds about `lines` lines, as the catalog tells (its partitions and
    /// pending blocks, each one's lines spread evenly over its time); the
    /// whole range when it holds fewer.
    async fn first_width(
        &self,
        tenant: &TenantId,
        range: (i64, i64),
        direction: Direction,
        lines: u64,
    ) -> Result<i64, QueryError> {
        let view = View::LogEntries;
        let snapshot = self
            .engine
            .lake()
            .catalog
            .snapshot(
                tenant,
                &framelake_lake::catalog::SnapshotRequest {
                    view: view.name(),
                    kinds: view.kinds(),
                    processes: &[],
                    time_range: Some(range),
                    aggregate: None,
                },
            )
            .await?;
        let spans: Vec<(i64, i64, f64)> = snapshot
            .partitions
            .iter()
            .map(|p| (p.min_time, p.max_time, p.row_count as f64))
            .chain(
                snapshot
                    .blocks
                    .iter()
                    .map(|b| (b.min_time, b.max_time, f64::from(b.event_count))),
            )
            .collect();
        // The lines of the spans in `[from, to]`.
        let within = |from: i64, to: i64| -> f64 {
            spans
                .iter()
                .map(|&(min, max, n)| {
                    let overlap = (to.min(max) - from.max(min) + 1).max(0) as f64;
                    n * overlap / (max - min + 1) as f64
                })
                .sum()
        };
        let window = |width: i64| match direction {
            Direction::Backward => (range.1 - width + 1, range.1),
            Direction::Forward => (range.0, range.0 + width - 1),
        };
        let full = range.1 - range.0 + 1;
        // The narrowest width holding them, to the nanosecond.
        let (mut low, mut high) = (1, full);
        while low < high {
            let mid = low + (high - low) / 2;
            let (from, to) = window(mid);
            if within(from, to) >= lines as f64 {
                high = mid;
            } else {
                low = mid + 1;
            }
        }
        Ok(high)
    }

    /// A range aggregation of lines read one by one (in `range`, inclusive),
    /// batches on as many threads as the machine has, each into a partial
    /// aggregation; `None` when a line needed the attributes the scan left
    /// out (see [`PerLine::parsed`]).
    async fn run_lines(
        &self,
        tenant: &TenantId,
        range: (i64, i64),
        predicates: &[Expr],
        lines: PerLine,
    ) -> Result<Option<RangeAgg>, QueryError> {
        let columns = Columns {
            body: true,
            metadata: lines.wanted.columns(lines.parsed.is_empty()),
        };
        let rows = self
            .scan(
                tenant,
                &lines.streams,
                range,
                predicates.to_vec(),
                columns,
                None,
            )
            .await?;
        let (op, param, windows) = lines.agg;
        let mut agg = RangeAgg::new(op, param, windows, lines.unwrap.is_some());
        let lines = Arc::new(lines);
        let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
        let mut partials = rows
            .stream
            .map(|batch| {
                let lines = Arc::clone(&lines);
                async move {
                    let batch = batch?;
                    tokio::task::spawn_blocking(move || lines.aggregate(&batch))
                        .await
                        .map_err(|e| QueryError::Internal(format!("a LogQL task failed: {e}")))?
                }
            })
            .buffer_unordered(threads);
        while let Some(partial) = partials.next().await {
            match partial? {
                Some(partial) => agg.merge(partial),
                None => return Ok(None),
            }
        }
        Ok(Some(agg))
    }
}

/// What running a range aggregation's lines one by one needs, shared by
/// the threads that do it.
#[derive(Clone)]
struct PerLine {
    streams: StreamIndex,
    pipeline: Pipeline,
    unwrap: Option<Unwrapper>,
    wanted: Wanted,
    /// Labels every line's parsers must set when the scan leaves out the
    /// attributes (empty when it reads them).
    parsed: Vec<String>,
    names: BTreeSet<String>,
    grouping: Option<framelake_logql::Grouping>,
    outer: Option<Option<framelake_logql::Grouping>>,
    bytes: bool,
    offset: i64,
    /// The aggregation's function, parameter and windows.
    agg: (RangeOp, Option<f64>, Windows),
}

impl PerLine {
    /// The aggregation of one batch's lines; `None` when a line's parsers
    /// did not set one of [`PerLine::parsed`].
    fn aggregate(&self, batch: &arrow::array::RecordBatch) -> Result<Option<RangeAgg>, QueryError> {
        let (op, param, windows) = self.agg;
        let mut agg = RangeAgg::new(op, param, windows, self.unwrap.is_some());
        let batch = LineBatch::new(batch)?;
        let (grouping, outer) = (
            self.grouping.as_ref(),
            self.outer.as_ref().map(Option::as_ref),
        );
        // One row reused, its line's buffer with it.
        let mut row = Row {
            time: 0,
            line: String::new(),
            labels: Labels::default(),
        };
        // Lines come in runs of one stream.
        let mut last: Option<(&[u8], &Arc<Stream>)> = None;
        let mut last_series: Option<(LabelSet, usize)> = None;
        for i in 0..batch.len {
            let process = batch.process(i);
            let stream = match last {
                Some((id, stream)) if id == process => stream,
                _ => {
                    let Some((_, stream)) = self.streams.get(process) else {
                        continue;
                    };
                    last = Some((process, stream));
                    stream
                }
            };
            let t = batch.time(i) + self.offset;
            row.time = batch.time(i);
            row.line.clear();
            row.line.push_str(batch.line(i));
            batch.labels_for(i, stream, &self.wanted, &mut row.labels);
            let kept = self.pipeline.process(&mut row);
            let parsed = |name: &String| {
                row.labels
                    .label(name)
                    .is_some_and(|l| l.category == Category::Parsed)
            };
            if !self.parsed.iter().all(parsed) {
                return Ok(None);
            }
            if !kept {
                continue;
            }
            let v = match &self.unwrap {
                Some(u) => match u.sample(&mut row.labels) {
                    Some(v) => v,
                    None => continue,
                },
                None if self.bytes => row.line.len() as f64,
                None => 1.0,
            };
            let labels = match (outer, grouping) {
                // Straight to the enclosing aggregation's group.
                (Some(g), None) if !g.is_some_and(|g| g.without) => {
                    line_error(&row.labels)?;
                    let mut kept: LabelSet = g
                        .map(|g| {
                            row.labels
                                .iter()
                                .filter(|l| g.labels.contains(&l.name))
                                .map(|l| (l.name.clone(), l.value.clone()))
                                .collect()
                        })
                        .unwrap_or_default();
                    kept.sort();
                    kept
                }
                _ => {
                    let labels = series_labels(&row.labels, &self.names, grouping)?;
                    match outer {
                        Some(g) => metric::group_labels(&labels, g),
                        None => labels,
                    }
                }
            };
            // Runs of lines go to one series: its id is kept.
            let id = match &last_series {
                Some((kept, id)) if *kept == labels => *id,
                _ => {
                    let id = agg.series(labels.clone());
                    last_series = Some((labels, id));
                    id
                }
            };
            agg.add(id, t, v);
        }
        Ok(Some(agg))
    }
}

/// What a whole-stream count is grouped by in the scan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Keys {
    /// Each stream (process): the range aggregation's own series.
    Stream,
    /// `service_name` (a column of the view): `sum by (service_name)`.
    Service,
    /// Nothing: `sum` without grouping.
    Nothing,
}

/// A vector aggregation the range aggregation inside it can do itself: the
/// sum of counts, rates, byte counts or unwrapped sums (and the max of
/// maxima, the min of minima) of several series in each window is that of
/// their samples together, so lines are accumulated straight into the
/// aggregation's groups: the range aggregation's series (one per line's
/// labels after a parser, often) are never built. Whole-stream counts of a
/// `sum` without grouping or `by (service_name)` are even counted by the scan
/// per what the sum keeps.
fn pushed_down<'a>(
    op: framelake_logql::VectorOp,
    inner: &'a MetricExpr,
    grouping: Option<&'a framelake_logql::Grouping>,
) -> Option<(RangeOp, &'a LogRange, Keys, Outer<'a>)> {
    use framelake_logql::VectorOp;
    let MetricExpr::Range {
        op: range_op,
        range,
        grouping: None,
        ..
    } = inner
    else {
        return None;
    };
    let fits = match op {
        VectorOp::Sum => matches!(
            range_op,
            RangeOp::CountOverTime
                | RangeOp::Rate
                | RangeOp::BytesOverTime
                | RangeOp::BytesRate
                | RangeOp::SumOverTime
        ),
        VectorOp::Max => *range_op == RangeOp::MaxOverTime,
        VectorOp::Min => *range_op == RangeOp::MinOverTime,
        _ => false,
    };
    if !fits {
        return None;
    }
    let keys = match (op, grouping) {
        (VectorOp::Sum, None) => Keys::Nothing,
        (VectorOp::Sum, Some(g)) if !g.without && g.labels == ["service_name"] => Keys::Service,
        _ => Keys::Stream,
    };
    Some((*range_op, range, keys, Some(grouping)))
}

/// The grouping of an enclosing aggregation done by a range aggregation
/// (`Some(None)`: everything in one group).
type Outer<'a> = Option<Option<&'a framelake_logql::Grouping>>;

/// A line still carrying `__error__` fails a metric query, as in Loki.
fn line_error(labels: &Labels) -> Result<(), QueryError> {
    let Some(error) = labels.error() else {
        return Ok(());
    };
    let mut all = labels.sorted();
    all.retain(|(n, _)| n != ERROR && !n.starts_with("__error_details"));
    Err(bad(format!(
        "pipeline error: '{error}' for series: '{}'.\nUse a label filter to intentionally skip \
         this error. (e.g | __error__!=\"{error}\").\nTo skip all potential errors you can \
         match empty errors.(e.g __error__=\"\")\nThe label filter can also be specified \
         after unwrap. (e.g | unwrap latency | __error__=\"\" )",
        metric::labels_text(&all)
    )))
}

/// A line's series: its stream and parsed labels, and the structured
/// metadata the query groups by; or what a range aggregation's own
/// grouping keeps. A line still carrying `__error__` fails the query, as in
/// Loki.
fn series_labels(
    labels: &Labels,
    names: &BTreeSet<String>,
    grouping: Option<&framelake_logql::Grouping>,
) -> Result<LabelSet, QueryError> {
    line_error(labels)?;
    let mut set: LabelSet = labels
        .iter()
        .filter(|l| l.category != Category::Metadata || names.contains(&l.name))
        .map(|l| (l.name.clone(), l.value.clone()))
        .collect();
    set.sort();
    Ok(match grouping {
        Some(g) => {
            if !g.without {
                // `by` reads structured metadata too.
                let mut kept: LabelSet = labels
                    .iter()
                    .filter(|l| g.labels.contains(&l.name))
                    .map(|l| (l.name.clone(), l.value.clone()))
                    .collect();
                kept.sort();
                kept
            } else {
                metric::group_labels(&set, Some(g))
            }
        }
        None => set,
    })
}

/// The label names a query groups or matches by (`by (…)`, `on (…)`,
/// `group_left (…)`, `label_replace`'s source): structured metadata of
/// these names joins a series' labels.
fn grouping_names(expr: &MetricExpr, names: &mut BTreeSet<String>) {
    let mut add = |g: Option<&framelake_logql::Grouping>| {
        if let Some(g) = g.filter(|g| !g.without) {
            names.extend(g.labels.iter().cloned());
        }
    };
    match expr {
        MetricExpr::Range { grouping, .. } => add(grouping.as_ref()),
        MetricExpr::Vector {
            inner, grouping, ..
        } => {
            add(grouping.as_ref());
            grouping_names(inner, names);
        }
        MetricExpr::Binary {
            lhs, rhs, modifier, ..
        } => {
            if let Some(m) = modifier.matching.as_ref().filter(|m| m.on) {
                names.extend(m.labels.iter().cloned());
            }
            if let Some(g) = &modifier.group {
                names.extend(g.include.iter().cloned());
            }
            grouping_names(lhs, names);
            grouping_names(rhs, names);
        }
        MetricExpr::LabelReplace { inner, src, .. } => {
            names.insert(src.clone());
            grouping_names(inner, names);
        }
        MetricExpr::Literal(_) | MetricExpr::Vector1(_) => {}
    }
}

/// Parses a query, errors as Loki words them (with the position).
pub fn parse(query: &str) -> Result<LogQl, QueryError> {
    framelake_logql::parse(query).map_err(bad)
}

/// Parses a stream selector (`{app="a"}`) as the metadata endpoints take it.
pub fn parse_selector(query: &str) -> Result<Vec<Matcher>, QueryError> {
    match parse(query)? {
        LogQl::Log(log) => Ok(log.selector),
        LogQl::Metric(_) => Err(bad(format!(
            "{query:?} is not a stream selector: a log query ({{…}}) is expected"
        ))),
    }
}

/// A future polled on a stack grown as needed: evaluating an expression
/// polls its operands' futures inside its own, as deep as the expression.
struct Grown<'a, T>(BoxFuture<'a, T>);

impl<T> std::future::Future for Grown<'_, T> {
    type Output = T;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<T> {
        stacker::maybe_grow(256 * 1024, 2 * 1024 * 1024, || self.0.as_mut().poll(cx))
    }
}
