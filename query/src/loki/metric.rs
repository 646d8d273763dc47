//! Metric queries once the lines are read: range aggregations over the
//! windows `(t - range, t]` at each step `t = start + k·step`, then vector
//! aggregations, binary operators and `label_replace`, as Loki (and
//! Prometheus) define them.
//!
//! Samples are accumulated per series into the elementary intervals the
//! windows' bounds cut time into (at most two per step), so a sample is
//! touched once however much windows overlap; each window then combines
//! its intervals.

use std::collections::{BTreeMap, HashMap};

use framelake_logql::{BinModifier, BinOp, Grouping, RangeOp, VectorOp};

/// A label set, sorted by name.
pub type LabelSet = Vec<(String, String)>;

/// The steps of a query: `start`, `start + step`, … up to `end` (one step
/// for an instant query).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Steps {
    pub start: i64,
    pub step: i64,
    pub count: usize,
}

impl Steps {
    /// The steps of a range query; `step` > 0.
    pub fn range(start: i64, end: i64, step: i64) -> Self {
        let count = if end < start {
            0
        } else {
            ((end - start) / step) as usize + 1
        };
        Steps { start, step, count }
    }

    /// The one step of an instant query.
    pub fn instant(time: i64) -> Self {
        Steps {
            start: time,
            step: 0,
            count: 1,
        }
    }

    pub fn time(&self, k: usize) -> i64 {
        self.start + self.step * k as i64
    }

    pub fn end(&self) -> i64 {
        self.time(self.count.saturating_sub(1))
    }
}

/// The windows of a range aggregation over these steps.
#[derive(Debug, Clone, Copy)]
pub struct Windows {
    start: i64,
    step: i64,
    range: i64,
    /// `range = q·step + r`.
    q: i64,
    r: i64,
    count: usize,
}

impl Windows {
    pub fn new(steps: Steps, range: i64) -> Self {
        // An instant query's single window: as steps of its range.
        let step = if steps.step == 0 {
            range.max(1)
        } else {
            steps.step
        };
        Windows {
            start: steps.start,
            step,
            range,
            q: range / step,
            r: range % step,
            count: steps.count,
        }
    }

    /// The times (inclusive) whose samples some window holds.
    pub fn span(&self) -> (i64, i64) {
        let last = self.start + self.step * (self.count as i64 - 1).max(0);
        (self.start - self.range + 1, last)
    }

    /// The elementary interval of a time.
    fn interval(&self, t: i64) -> i64 {
        let u = t - self.start;
        let m = div_ceil(u, self.step);
        if self.r == 0 {
            m
        } else if u <= m * self.step - self.r {
            2 * m - 1
        } else {
            2 * m
        }
    }

    /// The interval of every time the windows hold, when there is one
    /// window of one interval (an instant query).
    pub fn single_interval(&self) -> Option<i64> {
        (self.count == 1 && self.q == 1 && self.r == 0).then_some(0)
    }

    /// [`Windows::interval`] as a DataFusion expression of a time column
    /// (nanoseconds since the epoch, `offset` added), for plans that count
    /// per interval themselves.
    pub fn interval_expr(
        &self,
        time: datafusion::prelude::Expr,
        offset: i64,
    ) -> datafusion::prelude::Expr {
        use datafusion::logical_expr::{cast, when};
        use datafusion::prelude::lit;
        // Kept positive before dividing: scanned times are after start - range.
        let k = self.q + 1;
        let shifted = cast(time, arrow::datatypes::DataType::Int64)
            + lit(offset - self.start + k * self.step);
        let m = (shifted.clone() + lit(self.step - 1)) / lit(self.step) - lit(k);
        if self.r == 0 {
            return m;
        }
        let u = shifted - lit(k * self.step);
        let bound = m.clone() * lit(self.step) - lit(self.r);
        when(u.lt_eq(bound), m.clone() * lit(2i64) - lit(1i64))
            .otherwise(m * lit(2i64))
            .unwrap_or_else(|e| {
                datafusion::prelude::Expr::Literal(
                    datafusion::common::ScalarValue::Utf8(Some(e.to_string())),
                    None,
                )
            })
    }

    /// The intervals window `k` is made of.
    fn window(&self, k: usize) -> std::ops::RangeInclusive<i64> {
        let k = k as i64;
        if self.r == 0 {
            k - self.q + 1..=k
        } else {
            2 * (k - self.q)..=2 * k
        }
    }
}

fn div_ceil(a: i64, b: i64) -> i64 {
    let d = a.div_euclid(b);
    if a.rem_euclid(b) == 0 { d } else { d + 1 }
}

/// What one interval (then one window) holds of a series' samples.
#[derive(Debug, Clone)]
struct Acc {
    count: u64,
    sum: f64,
    sumsq: f64,
    min: f64,
    max: f64,
    first: (i64, f64),
    last: (i64, f64),
    /// Every sample, for the functions that need them all.
    values: Option<Vec<(i64, f64)>>,
}

impl Acc {
    fn new(keep: bool) -> Self {
        Acc {
            count: 0,
            sum: 0.0,
            sumsq: 0.0,
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
            first: (i64::MAX, 0.0),
            last: (i64::MIN, 0.0),
            values: keep.then(Vec::new),
        }
    }

    fn add(&mut self, t: i64, v: f64) {
        self.count += 1;
        self.sum += v;
        self.sumsq += v * v;
        self.min = self.min.min(v);
        self.max = self.max.max(v);
        if t < self.first.0 {
            self.first = (t, v);
        }
        if t >= self.last.0 {
            self.last = (t, v);
        }
        if let Some(values) = &mut self.values {
            values.push((t, v));
        }
    }

    fn merge(&mut self, other: &Acc) {
        self.count += other.count;
        self.sum += other.sum;
        self.sumsq += other.sumsq;
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
        if other.first.0 < self.first.0 {
            self.first = other.first;
        }
        if other.last.0 >= self.last.0 {
            self.last = other.last;
        }
        if let (Some(a), Some(b)) = (&mut self.values, &other.values) {
            a.extend_from_slice(b);
        }
    }
}

/// A range aggregation being accumulated: samples per series.
pub struct RangeAgg {
    op: RangeOp,
    param: Option<f64>,
    windows: Windows,
    /// Whether the samples are unwrapped values (else lines).
    unwrapped: bool,
    keep: bool,
    series: Vec<(LabelSet, HashMap<i64, Acc>)>,
    index: HashMap<LabelSet, usize>,
}

impl RangeAgg {
    pub fn new(op: RangeOp, param: Option<f64>, windows: Windows, unwrapped: bool) -> Self {
        RangeAgg {
            op,
            param,
            windows,
            unwrapped,
            keep: matches!(op, RangeOp::QuantileOverTime | RangeOp::RateCounter),
            series: Vec::new(),
            index: HashMap::new(),
        }
    }

    /// The id of a series, for [`RangeAgg::add`].
    pub fn series(&mut self, labels: LabelSet) -> usize {
        if let Some(&i) = self.index.get(&labels) {
            return i;
        }
        self.series.push((labels.clone(), HashMap::new()));
        self.index.insert(labels, self.series.len() - 1);
        self.series.len() - 1
    }

    /// Adds a sample of a series at a time (already shifted by `offset`).
    pub fn add(&mut self, series: usize, t: i64, v: f64) {
        let interval = self.windows.interval(t);
        let keep = self.keep;
        self.series[series]
            .1
            .entry(interval)
            .or_insert_with(|| Acc::new(keep))
            .add(t, v);
    }

    /// Adds `count` samples of a series in one interval, summing to `sum`
    /// (lines counted per interval by the scan; count and byte functions).
    pub fn add_interval(&mut self, series: usize, interval: i64, count: u64, sum: f64) {
        let keep = self.keep;
        let acc = self.series[series]
            .1
            .entry(interval)
            .or_insert_with(|| Acc::new(keep));
        acc.count += count;
        acc.sum += sum;
    }

    /// Adds what another aggregation of the same function and windows holds
    /// (the lines of other batches).
    pub fn merge(&mut self, other: RangeAgg) {
        for (labels, intervals) in other.series {
            let id = self.series(labels);
            let mine = &mut self.series[id].1;
            for (interval, acc) in intervals {
                match mine.get_mut(&interval) {
                    Some(a) => a.merge(&acc),
                    None => {
                        mine.insert(interval, acc);
                    }
                }
            }
        }
    }

    /// The series and their value at each step (`None` where the window is empty).
    pub fn finish(self) -> Vec<(LabelSet, Vec<Option<f64>>)> {
        let seconds = self.windows.range as f64 / 1e9;
        let mut out = Vec::with_capacity(self.series.len());
        for (labels, intervals) in self.series {
            let mut points = Vec::with_capacity(self.windows.count);
            for k in 0..self.windows.count {
                let mut acc = Acc::new(self.keep);
                for i in self.windows.window(k) {
                    if let Some(a) = intervals.get(&i) {
                        acc.merge(a);
                    }
                }
                points.push((acc.count > 0).then(|| {
                    value(
                        self.op,
                        self.param,
                        self.unwrapped,
                        &mut acc,
                        seconds,
                        self.windows,
                        k,
                    )
                }));
            }
            if points.iter().any(Option::is_some) {
                out.push((labels, points));
            }
        }
        // In the order of their labels, however the lines came.
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }
}

fn value(
    op: RangeOp,
    param: Option<f64>,
    unwrapped: bool,
    acc: &mut Acc,
    seconds: f64,
    windows: Windows,
    k: usize,
) -> f64 {
    let n = acc.count as f64;
    let variance = || (acc.sumsq / n - (acc.sum / n).powi(2)).max(0.0);
    match op {
        RangeOp::CountOverTime => n,
        RangeOp::Rate if unwrapped => acc.sum / seconds,
        RangeOp::Rate => n / seconds,
        RangeOp::BytesOverTime | RangeOp::SumOverTime => acc.sum,
        RangeOp::BytesRate => acc.sum / seconds,
        RangeOp::AvgOverTime => acc.sum / n,
        RangeOp::MinOverTime => acc.min,
        RangeOp::MaxOverTime => acc.max,
        RangeOp::FirstOverTime => acc.first.1,
        RangeOp::LastOverTime => acc.last.1,
        RangeOp::StdvarOverTime => variance(),
        RangeOp::StddevOverTime => variance().sqrt(),
        RangeOp::AbsentOverTime => 1.0,
        RangeOp::QuantileOverTime => {
            let mut values: Vec<f64> = acc
                .values
                .as_ref()
                .map(|v| v.iter().map(|(_, v)| *v).collect())
                .unwrap_or_default();
            quantile(param.unwrap_or(0.5), &mut values)
        }
        RangeOp::RateCounter => {
            let end = windows.start + windows.step * k as i64;
            let mut samples = acc.values.take().unwrap_or_default();
            samples.sort_by_key(|(t, _)| *t);
            counter_rate(&samples, end - windows.range, end)
        }
    }
}

/// Prometheus's quantile: linear interpolation between the closest ranks.
pub fn quantile(q: f64, values: &mut [f64]) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    if q < 0.0 {
        return f64::NEG_INFINITY;
    }
    if q > 1.0 {
        return f64::INFINITY;
    }
    values.sort_by(f64::total_cmp);
    let rank = q * (values.len() - 1) as f64;
    let lower = rank.floor() as usize;
    let upper = (lower + 1).min(values.len() - 1);
    let weight = rank - rank.floor();
    values[lower] * (1.0 - weight) + values[upper] * weight
}

/// Prometheus's extrapolated rate of a counter (resets counted) over the
/// window `(from, to]`, per second.
fn counter_rate(samples: &[(i64, f64)], from: i64, to: i64) -> f64 {
    if samples.len() < 2 {
        return 0.0;
    }
    let (first, last) = (samples[0], samples[samples.len() - 1]);
    let mut increase = last.1 - first.1;
    for pair in samples.windows(2) {
        if pair[1].1 < pair[0].1 {
            increase += pair[0].1;
        }
    }
    let sampled = (last.0 - first.0) as f64 / 1e9;
    let to_start = (first.0 - from) as f64 / 1e9;
    let to_end = (to - last.0) as f64 / 1e9;
    let average = sampled / (samples.len() - 1) as f64;
    let threshold = average * 1.1;
    let mut extrapolate = sampled;
    let mut to_start = to_start;
    if increase > 0.0 && first.1 >= 0.0 {
        let to_zero = sampled * (first.1 / increase);
        to_start = to_start.min(to_zero);
    }
    extrapolate += if to_start < threshold {
        to_start
    } else {
        average / 2.0
    };
    extrapolate += if to_end < threshold {
        to_end
    } else {
        average / 2.0
    };
    let range = (to - from) as f64 / 1e9;
    increase * (extrapolate / sampled) / range
}

/// A query's value: a scalar at each step, or series.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Scalar(Vec<f64>),
    Vector(Vec<Series>),
}

/// A series: labels and a value at each step (or none).
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub labels: LabelSet,
    pub points: Vec<Option<f64>>,
}

/// Labels kept by a grouping (`by` keeps those named, `without` the rest).
pub fn group_labels(labels: &LabelSet, grouping: Option<&Grouping>) -> LabelSet {
    match grouping {
        None => Vec::new(),
        Some(g) if g.without => labels
            .iter()
            .filter(|(n, _)| !g.labels.contains(n))
            .cloned()
            .collect(),
        Some(g) => labels
            .iter()
            .filter(|(n, _)| g.labels.contains(n))
            .cloned()
            .collect(),
    }
}

/// A vector aggregation at each step.
pub fn aggregate(
    op: VectorOp,
    param: Option<f64>,
    grouping: Option<&Grouping>,
    series: Vec<Series>,
    steps: usize,
) -> Vec<Series> {
    match op {
        VectorOp::Topk | VectorOp::Bottomk => {
            let k = param.unwrap_or(1.0).max(0.0) as usize;
            let mut keep: Vec<Vec<bool>> = vec![vec![false; steps]; series.len()];
            let mut groups: BTreeMap<LabelSet, Vec<usize>> = BTreeMap::new();
            for (i, s) in series.iter().enumerate() {
                groups
                    .entry(group_labels(&s.labels, grouping))
                    .or_default()
                    .push(i);
            }
            for members in groups.values() {
                for step in 0..steps {
                    let mut present: Vec<(usize, f64)> = members
                        .iter()
                        .filter_map(|&i| Some((i, series[i].points.get(step).copied()??)))
                        .collect();
                    present.sort_by(|a, b| {
                        let o = a.1.total_cmp(&b.1);
                        if op == VectorOp::Topk { o.reverse() } else { o }
                    });
                    for (i, _) in present.into_iter().take(k) {
                        if let Some(kept) = keep[i].get_mut(step) {
                            *kept = true;
                        }
                    }
                }
            }
            series
                .into_iter()
                .zip(keep)
                .map(|(mut s, keep)| {
                    for (p, k) in s.points.iter_mut().zip(keep) {
                        if !k {
                            *p = None;
                        }
                    }
                    s
                })
                .filter(|s| s.points.iter().any(Option::is_some))
                .collect()
        }
        VectorOp::Sort | VectorOp::SortDesc => {
            let mut series = series;
            let last = |s: &Series| s.points.iter().rev().find_map(|p| *p).unwrap_or(f64::NAN);
            series.sort_by(|a, b| {
                let o = last(a).total_cmp(&last(b));
                if op == VectorOp::SortDesc {
                    o.reverse()
                } else {
                    o
                }
            });
            series
        }
        _ => {
            let mut groups: BTreeMap<LabelSet, Vec<Vec<f64>>> = BTreeMap::new();
            for s in &series {
                let values = groups
                    .entry(group_labels(&s.labels, grouping))
                    .or_insert_with(|| vec![Vec::new(); steps]);
                for (step, p) in s.points.iter().enumerate() {
                    if let Some(v) = p {
                        values[step].push(*v);
                    }
                }
            }
            groups
                .into_iter()
                .map(|(labels, values)| Series {
                    labels,
                    points: values
                        .into_iter()
                        .map(|v| (!v.is_empty()).then(|| reduce(op, &v)))
                        .collect(),
                })
                .filter(|s| s.points.iter().any(Option::is_some))
                .collect()
        }
    }
}

fn reduce(op: VectorOp, v: &[f64]) -> f64 {
    let n = v.len() as f64;
    let sum: f64 = v.iter().sum();
    let variance = || {
        let mean = sum / n;
        v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n
    };
    match op {
        VectorOp::Sum => sum,
        VectorOp::Avg => sum / n,
        VectorOp::Min => v.iter().copied().fold(f64::INFINITY, f64::min),
        VectorOp::Max => v.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        VectorOp::Count => n,
        VectorOp::Stdvar => variance(),
        VectorOp::Stddev => variance().sqrt(),
        VectorOp::Topk | VectorOp::Bottomk | VectorOp::Sort | VectorOp::SortDesc => f64::NAN,
    }
}

/// `op` on two numbers; comparisons give 1 or 0.
fn arithmetic(op: BinOp, a: f64, b: f64) -> f64 {
    match op {
        BinOp::Add => a + b,
        BinOp::Sub => a - b,
        BinOp::Mul => a * b,
        BinOp::Div => a / b,
        BinOp::Mod => a % b,
        BinOp::Pow => a.powf(b),
        BinOp::Eq => f64::from(u8::from(a == b)),
        BinOp::Neq => f64::from(u8::from(a != b)),
        BinOp::Gt => f64::from(u8::from(a > b)),
        BinOp::Ge => f64::from(u8::from(a >= b)),
        BinOp::Lt => f64::from(u8::from(a < b)),
        BinOp::Le => f64::from(u8::from(a <= b)),
        BinOp::And | BinOp::Or | BinOp::Unless => f64::NAN,
    }
}

/// The value a comparison keeps (the left one, or 0/1 with `bool`), or
/// an arithmetic result.
fn combine(op: BinOp, return_bool: bool, a: f64, b: f64, keep: f64) -> Option<f64> {
    let v = arithmetic(op, a, b);
    if op.is_comparison() && !return_bool {
        (v == 1.0).then_some(keep)
    } else {
        Some(v)
    }
}

fn signature(labels: &LabelSet, modifier: &BinModifier) -> LabelSet {
    match &modifier.matching {
        Some(m) if m.on => labels
            .iter()
            .filter(|(n, _)| m.labels.contains(n))
            .cloned()
            .collect(),
        Some(m) => labels
            .iter()
            .filter(|(n, _)| !m.labels.contains(n))
            .cloned()
            .collect(),
        None => labels.clone(),
    }
}

/// A binary operation.
pub fn binary(
    op: BinOp,
    modifier: &BinModifier,
    lhs: Value,
    rhs: Value,
    steps: usize,
) -> Result<Value, String> {
    let bool_ = modifier.return_bool;
    Ok(match (lhs, rhs) {
        (Value::Scalar(a), Value::Scalar(b)) => {
            if op.is_comparison() && !bool_ {
                return Err("comparisons between scalars must use the bool modifier".into());
            }
            Value::Scalar(
                a.iter()
                    .zip(&b)
                    .map(|(x, y)| arithmetic(op, *x, *y))
                    .collect(),
            )
        }
        (Value::Vector(v), Value::Scalar(s)) => {
            Value::Vector(with_scalar(v, &s, |x, s| combine(op, bool_, x, s, x)))
        }
        (Value::Scalar(s), Value::Vector(v)) => {
            Value::Vector(with_scalar(v, &s, |x, s| combine(op, bool_, s, x, x)))
        }
        (Value::Vector(l), Value::Vector(r)) => Value::Vector(vectors(op, modifier, l, r, steps)?),
    })
}

/// Each series' points combined with a scalar at the same step; series
/// left without a point are dropped.
fn with_scalar(
    series: Vec<Series>,
    scalar: &[f64],
    f: impl Fn(f64, f64) -> Option<f64>,
) -> Vec<Series> {
    series
        .into_iter()
        .map(|mut series| {
            for (p, s) in series.points.iter_mut().zip(scalar) {
                *p = p.and_then(|x| f(x, *s));
            }
            series
        })
        .filter(|s| s.points.iter().any(Option::is_some))
        .collect()
}

fn vectors(
    op: BinOp,
    modifier: &BinModifier,
    lhs: Vec<Series>,
    rhs: Vec<Series>,
    steps: usize,
) -> Result<Vec<Series>, String> {
    let sig = |s: &Series| signature(&s.labels, modifier);
    if op.is_set() {
        let mut right: HashMap<LabelSet, Vec<bool>> = HashMap::new();
        for s in &rhs {
            let present = right.entry(sig(s)).or_insert_with(|| vec![false; steps]);
            for (p, r) in present.iter_mut().zip(&s.points) {
                *p |= r.is_some();
            }
        }
        let mut out = Vec::new();
        let mut left: HashMap<LabelSet, Vec<bool>> = HashMap::new();
        for mut s in lhs {
            let key = sig(&s);
            let matched = right.get(&key);
            let present = left.entry(key).or_insert_with(|| vec![false; steps]);
            for (step, p) in s.points.iter_mut().enumerate() {
                present[step] |= p.is_some();
                let has = matched.is_some_and(|m| m[step]);
                let keep = match op {
                    BinOp::And => has,
                    BinOp::Unless => !has,
                    _ => true,
                };
                if !keep {
                    *p = None;
                }
            }
            out.push(s);
        }
        if op == BinOp::Or {
            for mut s in rhs {
                if let Some(present) = left.get(&sig(&s)) {
                    for (p, l) in s.points.iter_mut().zip(present) {
                        if *l {
                            *p = None;
                        }
                    }
                }
                out.push(s);
            }
        }
        return Ok(out
            .into_iter()
            .filter(|s| s.points.iter().any(Option::is_some))
            .collect());
    }
    let (many, one, left_many) = match &modifier.group {
        Some(g) if !g.left => (rhs, lhs, false),
        _ => (lhs, rhs, true),
    };
    let mut index: HashMap<LabelSet, usize> = HashMap::new();
    for (i, s) in one.iter().enumerate() {
        if index.insert(sig(s), i).is_some() {
            return Err(format!(
                "found duplicate series for the match group {:?} on the {} side of the operation: many-to-many matching not allowed: matching labels must be unique on one side",
                labels_text(&sig(s)),
                if left_many { "right" } else { "left" }
            ));
        }
    }
    let mut seen: HashMap<LabelSet, ()> = HashMap::new();
    let mut out = Vec::new();
    for s in &many {
        let key = sig(s);
        let Some(&j) = index.get(&key) else {
            continue;
        };
        if modifier.group.is_none() && seen.insert(key.clone(), ()).is_some() {
            return Err(format!(
                "found duplicate series for the match group {:?} on the left side of the operation: many-to-many matching not allowed",
                labels_text(&key)
            ));
        }
        let other = &one[j];
        let mut labels = match &modifier.group {
            Some(g) => {
                let mut labels = s.labels.clone();
                for name in &g.include {
                    labels.retain(|(n, _)| n != name);
                    if let Some(v) = other.labels.iter().find(|(n, _)| n == name) {
                        labels.push(v.clone());
                    }
                }
                labels
            }
            None => match &modifier.matching {
                Some(_) => key.clone(),
                None => s.labels.clone(),
            },
        };
        if modifier.group.is_none() && op.is_comparison() && !modifier.return_bool {
            labels = s.labels.clone();
        }
        labels.sort();
        let points = (0..steps)
            .map(|step| {
                let (a, b) = match (s.points[step], other.points[step]) {
                    (Some(a), Some(b)) => (a, b),
                    _ => return None,
                };
                let (l, r) = if left_many { (a, b) } else { (b, a) };
                combine(op, modifier.return_bool, l, r, l)
            })
            .collect();
        out.push(Series { labels, points });
    }
    Ok(out
        .into_iter()
        .filter(|s| s.points.iter().any(Option::is_some))
        .collect())
}

/// `{a="b", c="d"}`.
pub fn labels_text(labels: &LabelSet) -> String {
    let inner = labels
        .iter()
        .map(|(n, v)| format!("{n}={v:?}"))
        .collect::<Vec<_>>()
        .join(", ");
    format!("{{{inner}}}")
}

/// `label_replace`: where `src` matches `regex` (anchored), `dst` becomes
/// `replacement` with `$1`… expanded (removed when empty).
pub fn label_replace(
    series: Vec<Series>,
    dst: &str,
    replacement: &str,
    src: &str,
    regex: &regex::Regex,
) -> Vec<Series> {
    series
        .into_iter()
        .map(|mut s| {
            let value = s
                .labels
                .iter()
                .find(|(n, _)| n == src)
                .map_or("", |(_, v)| v.as_str())
                .to_owned();
            if let Some(c) = regex.captures(&value) {
                let mut out = String::new();
                c.expand(replacement, &mut out);
                s.labels.retain(|(n, _)| n != dst);
                if !out.is_empty() {
                    s.labels.push((dst.to_owned(), out));
                }
                s.labels.sort();
            }
            s
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 1_000_000_000;

    #[test]
    fn windows_cover_their_range_whatever_the_step() {
        // For every (range, step) pair, each window's intervals hold exactly
        // the times in (t - range, t].
        for (range, step) in [(60, 15), (15, 15), (10, 15), (45, 20), (7, 3), (5, 60)] {
            let steps = Steps::range(1000 * S, 1200 * S, step * S);
            let w = Windows::new(steps, range * S);
            for k in 0..steps.count {
                let t = steps.time(k);
                let intervals = w.window(k);
                for x in (t - range * S - 2 * S..=t + 2 * S).step_by(S as usize / 2) {
                    let inside = x > t - range * S && x <= t;
                    assert_eq!(
                        intervals.contains(&w.interval(x)),
                        inside,
                        "range {range} step {step} window {k} time {x}"
                    );
                }
            }
        }
    }

    #[test]
    fn range_aggregations_by_hand() {
        // Samples at 1..=6 s, value = second; steps 2, 4, 6 with range 3 s.
        let steps = Steps::range(2 * S, 6 * S, 2 * S);
        let run = |op: RangeOp, param: Option<f64>| {
            let mut agg = RangeAgg::new(op, param, Windows::new(steps, 3 * S), true);
            let id = agg.series(vec![("a".into(), "b".into())]);
            for t in 1..=6 {
                agg.add(id, t * S, t as f64);
            }
            agg.finish().remove(0).1
        };
        // Windows: (-1, 2] = {1, 2}; (1, 4] = {2, 3, 4}; (3, 6] = {4, 5, 6}.
        assert_eq!(
            run(RangeOp::CountOverTime, None),
            [Some(2.0), Some(3.0), Some(3.0)]
        );
        assert_eq!(
            run(RangeOp::SumOverTime, None),
            [Some(3.0), Some(9.0), Some(15.0)]
        );
        assert_eq!(
            run(RangeOp::AvgOverTime, None),
            [Some(1.5), Some(3.0), Some(5.0)]
        );
        assert_eq!(
            run(RangeOp::MaxOverTime, None),
            [Some(2.0), Some(4.0), Some(6.0)]
        );
        assert_eq!(
            run(RangeOp::FirstOverTime, None),
            [Some(1.0), Some(2.0), Some(4.0)]
        );
        assert_eq!(run(RangeOp::Rate, None), [Some(1.0), Some(3.0), Some(5.0)]);
        assert_eq!(
            run(RangeOp::QuantileOverTime, Some(0.5)),
            [Some(1.5), Some(3.0), Some(5.0)]
        );
        let stdvar = run(RangeOp::StdvarOverTime, None);
        assert!((stdvar[1].unwrap_or(0.0) - 2.0 / 3.0).abs() < 1e-9);
    }

    fn series(labels: &[(&str, &str)], points: &[Option<f64>]) -> Series {
        Series {
            labels: labels
                .iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect(),
            points: points.to_vec(),
        }
    }

    #[test]
    fn vector_aggregations_and_binary_operators() {
        let v = vec![
            series(&[("app", "a"), ("level", "info")], &[Some(1.0), Some(2.0)]),
            series(&[("app", "a"), ("level", "error")], &[Some(3.0), None]),
            series(&[("app", "b"), ("level", "info")], &[Some(5.0), Some(7.0)]),
        ];
        let by_app = Grouping {
            without: false,
            labels: vec!["app".into()],
        };
        let sum = aggregate(VectorOp::Sum, None, Some(&by_app), v.clone(), 2);
        assert_eq!(
            sum,
            vec![
                series(&[("app", "a")], &[Some(4.0), Some(2.0)]),
                series(&[("app", "b")], &[Some(5.0), Some(7.0)]),
            ]
        );
        let top = aggregate(VectorOp::Topk, Some(1.0), None, v.clone(), 2);
        assert_eq!(top.len(), 1);
        assert_eq!(top[0].points, vec![Some(5.0), Some(7.0)]);
        // sum by (app) / on(app) group_left count by (app, level)
        let ratio = binary(
            BinOp::Gt,
            &BinModifier::default(),
            Value::Vector(sum.clone()),
            Value::Scalar(vec![4.5, 4.5]),
            2,
        )
        .expect("a comparison");
        assert_eq!(
            ratio,
            Value::Vector(vec![series(&[("app", "b")], &[Some(5.0), Some(7.0)])])
        );
        let added = binary(
            BinOp::Add,
            &BinModifier::default(),
            Value::Vector(sum.clone()),
            Value::Vector(sum),
            2,
        )
        .expect("one-to-one");
        let Value::Vector(added) = added else {
            panic!("a vector")
        };
        assert_eq!(added[0].points, vec![Some(8.0), Some(4.0)]);
    }
}
