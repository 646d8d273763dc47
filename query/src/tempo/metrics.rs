//! TraceQL metrics: series of the spans a filter finds, per step, as Tempo
//! answers `/api/metrics/query_range` and `/api/metrics/query`.
//!
//! The filter is the scan's predicate and the scan groups its spans by step
//! and by the `by()` fields: counts for `rate` and `count_over_time`, the
//! aggregates of `*_over_time`, counts per power-of-two bucket for
//! `quantile_over_time` and `histogram_over_time` (as Tempo buckets them).
//! A step `k` holds the spans starting in `(start + k·step, start +
//! (k+1)·step]`, its sample stamped at the step's end.

use std::collections::BTreeMap;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{DataType, Float64Type, Int64Type};
use datafusion::functions::math::expr_fn::{ceil, log2, power};
use datafusion::functions_aggregate::expr_fn::{avg, count, max, min, sum};
use datafusion::logical_expr::{Expr as Df, cast};
use datafusion::prelude::{col, lit};
use framelake_lake::ids::TenantId;
use framelake_traceql::{BinaryOp, Field, Function, Intrinsic, Metrics, SecondStage, Spanset};
use futures::StreamExt;
use serde_json::{Value, json};

use super::filter::{self, attribute};
use super::search::field_value;
use crate::table::time_literal;
use crate::{Engine, QueryError};

/// Steps of a query: `count` steps of `step` nanoseconds after `start`.
#[derive(Debug, Clone, Copy)]
pub(super) struct Steps {
    pub start: i64,
    pub step: i64,
    pub count: i64,
}

impl Steps {
    /// The steps of a range query, aligned to multiples of `step`.
    pub(super) fn range(start: i64, end: i64, step: i64) -> Steps {
        let step = step.max(1);
        let first = start.div_euclid(step) * step;
        let last = end.div_euclid(step) * step + if end.rem_euclid(step) == 0 { 0 } else { step };
        Steps {
            start: first,
            step,
            count: ((last - first) / step).max(1),
        }
    }

    /// One step over `(start, end]`.
    pub(super) fn instant(start: i64, end: i64) -> Steps {
        Steps {
            start,
            step: (end - start).max(1),
            count: 1,
        }
    }

    /// A step for a range when the request names none: a 240th of it, in
    /// whole 5 s (or 1 s), at least 1 s.
    pub(super) fn default_step(start: i64, end: i64) -> i64 {
        const SECOND: i64 = 1_000_000_000;
        let raw = (end - start) / 240;
        let five = raw / (5 * SECOND) * 5 * SECOND;
        if five >= 5 * SECOND {
            five
        } else {
            (raw / SECOND * SECOND).max(SECOND)
        }
    }
}

fn unsupported(what: impl std::fmt::Display) -> QueryError {
    QueryError::BadQuery(format!("{what} is not supported in metrics queries yet"))
}

/// A numeric field's value per span: durations in seconds.
fn numeric(field: &Field) -> Result<Df, QueryError> {
    match field {
        Field::Intrinsic(Intrinsic::Duration) => {
            Ok(cast(col("duration_ns"), DataType::Float64) / lit(1e9))
        }
        Field::Attribute(scope, key) => {
            let value = attribute(*scope, key).ok_or_else(|| unsupported(field))?;
            Ok(datafusion::functions::core::expr_fn::coalesce(vec![
                datafusion::functions::core::expr_fn::get_field(value.clone(), "double"),
                cast(
                    datafusion::functions::core::expr_fn::get_field(value, "int"),
                    DataType::Float64,
                ),
            ]))
        }
        other => Err(unsupported(other)),
    }
}

/// A `by()` field's value per span.
fn grouping(field: &Field) -> Result<Df, QueryError> {
    match field {
        // From its column, as an attribute's typed fields.
        Field::Attribute(framelake_traceql::Scope::Resource, key)
            if key == filter::SERVICE_NAME =>
        {
            Ok(datafusion::functions::core::expr_fn::named_struct(vec![
                lit("str"),
                col("service_name"),
            ]))
        }
        Field::Attribute(scope, key) => attribute(*scope, key).ok_or_else(|| unsupported(field)),
        Field::Intrinsic(i) => Ok(col(match i {
            Intrinsic::Name => "name",
            Intrinsic::Status => "status_code",
            Intrinsic::Kind => "kind",
            Intrinsic::StatusMessage => "status_message",
            Intrinsic::InstrumentationName => "scope_name",
            Intrinsic::InstrumentationVersion => "scope_version",
            _ => return Err(unsupported(format!("by({field})"))),
        })),
    }
}

/// What each step and group holds.
#[derive(Default)]
struct Cell {
    count: f64,
    value: f64,
    /// Counts per power-of-two bucket (quantiles and histograms).
    buckets: BTreeMap<u64, f64>,
}

type Labels = Vec<(String, Option<Value>)>;

/// The series of a metrics query, each with a value per step (`None`: no
/// spans).
pub(super) async fn evaluate(
    engine: &Engine,
    tenant: &TenantId,
    metrics: &Metrics,
    steps: Steps,
) -> Result<Vec<(Labels, Vec<Option<f64>>)>, QueryError> {
    let Spanset::Filter(expr) = &metrics.spans else {
        return Err(unsupported(&metrics.spans));
    };
    let predicate = filter::predicate(expr).ok_or_else(|| unsupported(format!("{{ {expr} }}")))?;
    let (value, log2_buckets) = match &metrics.function {
        Function::Rate | Function::CountOverTime => (None, false),
        Function::MinOverTime(f)
        | Function::MaxOverTime(f)
        | Function::SumOverTime(f)
        | Function::AvgOverTime(f) => (Some(numeric(f)?), false),
        // Buckets of durations (nanoseconds) only.
        Function::QuantileOverTime(f, _) | Function::HistogramOverTime(f) => {
            if *f != Field::Intrinsic(Intrinsic::Duration) {
                return Err(unsupported(&metrics.function));
            }
            (Some(numeric(f)?), true)
        }
        Function::Compare { .. } => return Err(unsupported("compare()")),
    };
    let mut groups = Vec::new();
    for field in &metrics.by {
        groups.push(grouping(field)?);
    }
    let function = metrics.function.clone();
    let end = steps.start + steps.step * steps.count;
    let mut rows = engine
        .run(tenant, move |ctx| async move {
            let k = ((cast(col("start_time"), DataType::Int64) - lit(steps.start + 1))
                / lit(steps.step))
            .alias("k");
            let mut keys = vec![k];
            for (i, g) in groups.into_iter().enumerate() {
                keys.push(g.alias(format!("b{i}")));
            }
            let mut aggregates = vec![count(lit(1)).alias("n")];
            if let Some(v) = value.clone() {
                if log2_buckets {
                    // Durations bucketed in nanoseconds, as Tempo does.
                    let ns = v * lit(1e9);
                    keys.push(power(lit(2.0), ceil(log2(ns))).alias("bucket"));
                } else {
                    aggregates.push(
                        match function {
                            Function::MinOverTime(_) => min(v),
                            Function::MaxOverTime(_) => max(v),
                            Function::SumOverTime(_) => sum(v),
                            _ => avg(v),
                        }
                        .alias("v"),
                    );
                }
            }
            let mut frame = ctx.table("spans").await?.filter(
                col("start_time")
                    .gt(time_literal(steps.start))
                    .and(col("start_time").lt_eq(time_literal(end)))
                    .and(predicate),
            )?;
            if let Some(v) = value.filter(|_| log2_buckets) {
                // Values below 2 (ns) have no bucket.
                frame = frame.filter((v * lit(1e9)).gt_eq(lit(2.0)))?;
            }
            Ok(frame.aggregate(keys, aggregates)?)
        })
        .await?;
    let mut cells: BTreeMap<String, (Labels, BTreeMap<i64, Cell>)> = BTreeMap::new();
    while let Some(batch) = rows.stream.next().await {
        read_cells(&batch?, &metrics.by, log2_buckets, &mut cells)?;
    }
    Ok(series(&metrics.function, cells, steps))
}

fn read_cells(
    batch: &RecordBatch,
    by: &[Field],
    log2_buckets: bool,
    cells: &mut BTreeMap<String, (Labels, BTreeMap<i64, Cell>)>,
) -> Result<(), QueryError> {
    let ks = batch
        .column_by_name("k")
        .ok_or_else(|| QueryError::Internal("metrics rows lack k".into()))?;
    let ks = arrow::compute::cast(ks, &DataType::Int64)?;
    let ks = ks.as_primitive::<Int64Type>();
    let counts = batch
        .column_by_name("n")
        .ok_or_else(|| QueryError::Internal("metrics rows lack n".into()))?;
    let counts = arrow::compute::cast(counts, &DataType::Float64)?;
    let counts = counts.as_primitive::<Float64Type>();
    let values = match batch.column_by_name("v") {
        Some(v) => Some(arrow::compute::cast(v, &DataType::Float64)?),
        None => None,
    };
    let buckets = match batch.column_by_name("bucket").filter(|_| log2_buckets) {
        Some(b) => Some(arrow::compute::cast(b, &DataType::Float64)?),
        None => None,
    };
    for row in 0..batch.num_rows() {
        let labels: Labels = by
            .iter()
            .enumerate()
            .map(|(i, field)| {
                let value = batch
                    .column_by_name(&format!("b{i}"))
                    .and_then(|c| field_value(c.as_ref(), field, row));
                (field.to_string(), value)
            })
            .collect();
        let key = serde_json::to_string(&labels.iter().map(|(_, v)| v).collect::<Vec<_>>())
            .unwrap_or_default();
        let entry = cells
            .entry(key)
            .or_insert_with(|| (labels, BTreeMap::new()));
        let cell = entry.1.entry(ks.value(row)).or_default();
        let n = counts.value(row);
        cell.count += n;
        if let Some(v) = &values {
            let v = v.as_primitive::<Float64Type>();
            if v.is_valid(row) {
                cell.value = v.value(row);
            }
        }
        if let Some(b) = &buckets {
            let b = b.as_primitive::<Float64Type>();
            if b.is_valid(row) {
                *cell.buckets.entry(b.value(row) as u64).or_default() += n;
            }
        }
    }
    Ok(())
}

/// Tempo's quantile of power-of-two buckets: the bucket where the rank
/// falls, interpolated between its bounds on a log scale.
fn log2_quantile(q: f64, buckets: &BTreeMap<u64, f64>) -> f64 {
    let total: f64 = buckets.values().sum();
    if total <= 0.0 {
        return 0.0;
    }
    let target = (q * total).ceil().max(1.0);
    let mut before = 0.0;
    let mut previous: Option<u64> = None;
    for (&bound, &n) in buckets {
        if before + n >= target {
            if before + n == target {
                return bound as f64;
            }
            let interpolated = (target - before) / n;
            let hi = (bound as f64).log2();
            let lo = previous.map_or(hi - 1.0, |p| (p as f64).log2());
            return 2f64.powf(lo + (hi - lo) * interpolated);
        }
        before += n;
        previous = Some(bound);
    }
    buckets.keys().last().map_or(0.0, |b| *b as f64)
}

fn series(
    function: &Function,
    cells: BTreeMap<String, (Labels, BTreeMap<i64, Cell>)>,
    steps: Steps,
) -> Vec<(Labels, Vec<Option<f64>>)> {
    let seconds = steps.step as f64 / 1e9;
    let mut out = Vec::new();
    for (_, (labels, by_step)) in cells {
        let points = |value: &dyn Fn(&Cell) -> Option<f64>| -> Vec<Option<f64>> {
            (0..steps.count)
                .map(|k| by_step.get(&k).and_then(value))
                .collect()
        };
        match function {
            Function::Rate => out.push((labels, points(&|c| Some(c.count / seconds)))),
            Function::CountOverTime => out.push((labels, points(&|c| Some(c.count)))),
            Function::QuantileOverTime(_, qs) => {
                for q in qs {
                    let mut labels = labels.clone();
                    labels.push(("p".to_owned(), Some(json!({ "doubleValue": q }))));
                    // Bucket bounds are nanoseconds; quantiles are seconds.
                    let values = points(&|c| {
                        (!c.buckets.is_empty()).then(|| log2_quantile(*q, &c.buckets) / 1e9)
                    });
                    out.push((labels, values));
                }
            }
            Function::HistogramOverTime(_) => {
                let bounds: std::collections::BTreeSet<u64> = by_step
                    .values()
                    .flat_map(|c| c.buckets.keys().copied())
                    .collect();
                for bound in bounds {
                    let mut labels = labels.clone();
                    labels.push((
                        "__bucket".to_owned(),
                        Some(json!({ "doubleValue": bound as f64 / 1e9 })),
                    ));
                    out.push((labels, points(&|c| c.buckets.get(&bound).copied())));
                }
            }
            _ => out.push((labels, points(&|c| Some(c.value)))),
        }
    }
    out
}

/// Second stages: a filter keeps the samples that compare so; `topk` and
/// `bottomk` keep, at each step, the series of the highest or lowest
/// values.
pub(super) fn second_stages(
    stages: &[SecondStage],
    mut series: Vec<(Labels, Vec<Option<f64>>)>,
) -> Vec<(Labels, Vec<Option<f64>>)> {
    for stage in stages {
        match *stage {
            SecondStage::Filter(op, against) => {
                for (_, points) in &mut series {
                    for p in points.iter_mut() {
                        if let Some(v) = *p {
                            let keep = match op {
                                BinaryOp::Eq => v == against,
                                BinaryOp::Neq => v != against,
                                BinaryOp::Lt => v < against,
                                BinaryOp::Lte => v <= against,
                                BinaryOp::Gt => v > against,
                                _ => v >= against,
                            };
                            if !keep {
                                *p = None;
                            }
                        }
                    }
                }
            }
            SecondStage::TopK(k) | SecondStage::BottomK(k) => {
                let top = matches!(stage, SecondStage::TopK(_));
                let steps = series.first().map_or(0, |(_, p)| p.len());
                let mut kept = vec![vec![false; steps]; series.len()];
                for step in 0..steps {
                    let mut ranked: Vec<(usize, f64)> = series
                        .iter()
                        .enumerate()
                        .filter_map(|(i, (_, p))| p[step].map(|v| (i, v)))
                        .collect();
                    ranked.sort_by(|a, b| {
                        let order = a.1.total_cmp(&b.1);
                        if top { order.reverse() } else { order }
                    });
                    for (i, _) in ranked.into_iter().take(k as usize) {
                        kept[i][step] = true;
                    }
                }
                for ((_, points), kept) in series.iter_mut().zip(kept) {
                    for (p, keep) in points.iter_mut().zip(kept) {
                        if !keep {
                            *p = None;
                        }
                    }
                }
            }
        }
    }
    series.retain(|(_, p)| p.iter().any(Option::is_some));
    series
}

/// A series' labels as OTLP key-values: nil values left out, or, when
/// every one is nil, the first kept without a value; `__name__` when the
/// query groups by nothing.
pub(super) fn labels_json(function: &Function, labels: &Labels) -> Value {
    if labels.is_empty() {
        return json!([{ "key": "__name__", "value": { "stringValue": function.name() } }]);
    }
    let present: Vec<Value> = labels
        .iter()
        .filter_map(|(k, v)| v.as_ref().map(|v| json!({ "key": k, "value": v })))
        .collect();
    if present.is_empty() {
        return json!([{ "key": labels[0].0, "value": {} }]);
    }
    Value::Array(present)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_align_and_default_as_tempo_does() {
        const S: i64 = 1_000_000_000;
        let steps = Steps::range(61 * S, 179 * S, 60 * S);
        assert_eq!((steps.start, steps.step, steps.count), (60 * S, 60 * S, 2));
        let steps = Steps::range(60 * S, 180 * S, 60 * S);
        assert_eq!((steps.start, steps.count), (60 * S, 2));
        assert_eq!(Steps::default_step(0, 3600 * S), 15 * S);
        assert_eq!(Steps::default_step(0, 600 * S), 2 * S);
        assert_eq!(Steps::default_step(0, 10 * S), S);
    }

    #[test]
    fn quantiles_interpolate_between_power_of_two_bounds() {
        let buckets = BTreeMap::from([(4u64, 1.0), (8, 2.0), (16, 1.0)]);
        assert_eq!(log2_quantile(0.25, &buckets), 4.0);
        assert_eq!(log2_quantile(0.75, &buckets), 8.0);
        // Rank 2 of 4 falls halfway into the bucket (4, 8].
        assert!((log2_quantile(0.5, &buckets) - 2f64.powf(2.5)).abs() < 1e-9);
        assert_eq!(log2_quantile(1.0, &buckets), 16.0);
        assert_eq!(log2_quantile(0.5, &BTreeMap::new()), 0.0);
    }

    #[test]
    fn top_k_keeps_the_highest_series_at_each_step() {
        let series = vec![
            (vec![("a".to_owned(), None)], vec![Some(1.0), Some(5.0)]),
            (vec![("b".to_owned(), None)], vec![Some(3.0), Some(2.0)]),
            (vec![("c".to_owned(), None)], vec![Some(2.0), None]),
        ];
        let top = second_stages(&[SecondStage::TopK(1)], series.clone());
        let points: Vec<_> = top.iter().map(|(_, p)| p.clone()).collect();
        assert_eq!(points, vec![vec![None, Some(5.0)], vec![Some(3.0), None]]);
        let filtered = second_stages(&[SecondStage::Filter(BinaryOp::Gt, 2.5)], series);
        let points: Vec<_> = filtered.iter().map(|(_, p)| p.clone()).collect();
        assert_eq!(points, vec![vec![None, Some(5.0)], vec![Some(3.0), None]]);
    }
}
