//! Percentiles: from OTLP histograms, and from mergeable sketches of raw
//! values (what aggregate views keep per minute, so that percentiles over
//! any span of time come from the reduced rows).
//!
//! - `histogram_quantile(q, bucket_counts, explicit_bounds)`: the q-quantile
//!   (0..=1) of an explicit-bucket histogram point, interpolated linearly
//!   within its bucket as Prometheus does; the first bucket's lower and the
//!   last bucket's upper edge are taken as its neighbours' bounds.
//! - `sketch(value)`: an aggregate of numbers into a sketch (BINARY) whose
//!   quantiles are within 1% of the true values (relative error, as
//!   DDSketch); `merge_sketches(sketch)` merges sketches;
//!   `sketch_quantile(sketch, q)` reads a quantile, `sketch_count(sketch)`
//!   how many values it holds.
//!
//! Over raw values DataFusion's `approx_percentile_cont(q) WITHIN GROUP
//! (ORDER BY value)` and `median(value)` work as they are.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, Float64Builder, UInt64Builder};
use arrow::datatypes::{DataType, Float64Type, UInt64Type};
use datafusion::common::{ScalarValue, exec_err, plan_err};
use datafusion::error::Result;
use datafusion::logical_expr::{
    Accumulator, AggregateUDF, ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl,
    Signature, Volatility, create_udaf,
};
use datafusion::prelude::SessionContext;

/// Registers the functions with a session.
pub(crate) fn register(ctx: &SessionContext) {
    ctx.register_udaf(sketch_udaf("sketch", DataType::Float64, false));
    ctx.register_udaf(sketch_udaf("merge_sketches", DataType::Binary, true));
    ctx.register_udf(ScalarUDF::from(Quantile::new(Read::SketchQuantile)));
    ctx.register_udf(ScalarUDF::from(Quantile::new(Read::SketchCount)));
    ctx.register_udf(ScalarUDF::from(Quantile::new(Read::HistogramQuantile)));
}

fn sketch_udaf(name: &str, input: DataType, merging: bool) -> AggregateUDF {
    create_udaf(
        name,
        vec![input],
        Arc::new(DataType::Binary),
        Volatility::Immutable,
        Arc::new(move |_| Ok(Box::new(SketchAccumulator::new(merging)))),
        Arc::new(vec![DataType::Binary]),
    )
}

/// Buckets grow by this factor: a bucket's midpoint is within 1% of any
/// value in it.
const GAMMA: f64 = 1.0202;
/// Sketch format version (first byte).
const VERSION: u8 = 1;

/// A DDSketch-style sketch: counts per logarithmic bucket, for positive and
/// negative values, plus zeros and the exact extremes.
#[derive(Debug, Clone, Default, PartialEq)]
struct Sketch {
    positive: BTreeMap<i32, u64>,
    negative: BTreeMap<i32, u64>,
    zeros: u64,
    min: f64,
    max: f64,
}

impl Sketch {
    fn count(&self) -> u64 {
        self.zeros + self.positive.values().sum::<u64>() + self.negative.values().sum::<u64>()
    }

    fn bucket(magnitude: f64) -> i32 {
        (magnitude.ln() / GAMMA.ln()).ceil() as i32
    }

    /// The value a bucket stands for: within 1% of all it holds.
    fn value(bucket: i32) -> f64 {
        2.0 * GAMMA.powi(bucket) / (GAMMA + 1.0)
    }

    fn add(&mut self, v: f64) {
        if v.is_nan() {
            return;
        }
        if self.count() == 0 {
            (self.min, self.max) = (v, v);
        } else {
            self.min = self.min.min(v);
            self.max = self.max.max(v);
        }
        // Magnitudes below this are zeros: their bucket index would underflow.
        if v.abs() < 1e-300 {
            self.zeros += 1;
        } else if v > 0.0 {
            *self.positive.entry(Self::bucket(v)).or_default() += 1;
        } else {
            *self.negative.entry(Self::bucket(-v)).or_default() += 1;
        }
    }

    fn merge(&mut self, other: &Sketch) {
        if other.count() == 0 {
            return;
        }
        if self.count() == 0 {
            (self.min, self.max) = (other.min, other.max);
        } else {
            self.min = self.min.min(other.min);
            self.max = self.max.max(other.max);
        }
        self.zeros += other.zeros;
        for (b, n) in &other.positive {
            *self.positive.entry(*b).or_default() += n;
        }
        for (b, n) in &other.negative {
            *self.negative.entry(*b).or_default() += n;
        }
    }

    fn quantile(&self, q: f64) -> Option<f64> {
        let total = self.count();
        if total == 0 || !(0.0..=1.0).contains(&q) {
            return None;
        }
        let rank = (q * (total - 1) as f64).floor() as u64;
        // The extremes are kept exactly.
        if rank == 0 {
            return Some(self.min);
        }
        if rank == total - 1 {
            return Some(self.max);
        }
        let mut seen = 0;
        let ascending = self
            .negative
            .iter()
            .rev()
            .map(|(b, n)| (-Self::value(*b), *n))
            .chain(std::iter::once((0.0, self.zeros)))
            .chain(self.positive.iter().map(|(b, n)| (Self::value(*b), *n)));
        for (value, n) in ascending {
            seen += n;
            if seen > rank {
                return Some(value.clamp(self.min, self.max));
            }
        }
        Some(self.max)
    }

    fn encode(&self) -> Vec<u8> {
        let mut out = vec![VERSION];
        out.extend_from_slice(&self.min.to_le_bytes());
        out.extend_from_slice(&self.max.to_le_bytes());
        put_varint(&mut out, self.zeros);
        for store in [&self.positive, &self.negative] {
            put_varint(&mut out, store.len() as u64);
            let mut previous = 0i64;
            for (b, n) in store {
                let delta = i64::from(*b) - previous;
                put_varint(&mut out, ((delta << 1) ^ (delta >> 63)) as u64);
                put_varint(&mut out, *n);
                previous = i64::from(*b);
            }
        }
        out
    }

    fn decode(mut bytes: &[u8]) -> Result<Sketch> {
        let bad = || datafusion::error::DataFusionError::Execution("not a sketch".into());
        let (&version, rest) = bytes.split_first().ok_or_else(bad)?;
        if version != VERSION || rest.len() < 16 {
            return Err(bad());
        }
        let min = f64::from_le_bytes(rest[..8].try_into().map_err(|_| bad())?);
        let max = f64::from_le_bytes(rest[8..16].try_into().map_err(|_| bad())?);
        bytes = &rest[16..];
        let zeros = get_varint(&mut bytes).ok_or_else(bad)?;
        let mut stores = [BTreeMap::new(), BTreeMap::new()];
        for store in &mut stores {
            let len = get_varint(&mut bytes).ok_or_else(bad)?;
            let mut bucket = 0i64;
            for _ in 0..len {
                let zigzag = get_varint(&mut bytes).ok_or_else(bad)?;
                bucket += ((zigzag >> 1) as i64) ^ -((zigzag & 1) as i64);
                let n = get_varint(&mut bytes).ok_or_else(bad)?;
                store.insert(i32::try_from(bucket).map_err(|_| bad())?, n);
            }
        }
        if !bytes.is_empty() {
            return Err(bad());
        }
        let [positive, negative] = stores;
        Ok(Sketch {
            positive,
            negative,
            zeros,
            min,
            max,
        })
    }
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn get_varint(bytes: &mut &[u8]) -> Option<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let (&b, rest) = bytes.split_first()?;
        *bytes = rest;
        v |= u64::from(b & 0x7f) << shift;
        if b < 0x80 {
            return Some(v);
        }
    }
    None
}

/// `sketch` (values in) or `merge_sketches` (sketches in).
#[derive(Debug)]
struct SketchAccumulator {
    sketch: Sketch,
    merging: bool,
}

impl SketchAccumulator {
    fn new(merging: bool) -> Self {
        SketchAccumulator {
            sketch: Sketch::default(),
            merging,
        }
    }

    fn merge_column(&mut self, column: &ArrayRef) -> Result<()> {
        let column = column.as_binary::<i32>();
        for bytes in column.iter().flatten() {
            self.sketch.merge(&Sketch::decode(bytes)?);
        }
        Ok(())
    }
}

impl Accumulator for SketchAccumulator {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        if self.merging {
            return self.merge_column(&values[0]);
        }
        for v in values[0].as_primitive::<Float64Type>().iter().flatten() {
            self.sketch.add(v);
        }
        Ok(())
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        Ok(ScalarValue::Binary(Some(self.sketch.encode())))
    }

    fn size(&self) -> usize {
        std::mem::size_of::<Self>() + (self.sketch.positive.len() + self.sketch.negative.len()) * 32
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        Ok(vec![self.evaluate()?])
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        self.merge_column(&states[0])
    }
}

/// The scalar readers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Read {
    SketchQuantile,
    SketchCount,
    HistogramQuantile,
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct Quantile {
    read: Read,
    signature: Signature,
}

impl Quantile {
    fn new(read: Read) -> Self {
        let arity = match read {
            Read::SketchQuantile => 2,
            Read::SketchCount => 1,
            Read::HistogramQuantile => 3,
        };
        Quantile {
            read,
            signature: Signature::any(arity, Volatility::Immutable),
        }
    }
}

impl ScalarUDFImpl for Quantile {
    fn name(&self) -> &str {
        match self.read {
            Read::SketchQuantile => "sketch_quantile",
            Read::SketchCount => "sketch_count",
            Read::HistogramQuantile => "histogram_quantile",
        }
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, args: &[DataType]) -> Result<DataType> {
        let binary =
            |t: &DataType| matches!(t, DataType::Binary | DataType::BinaryView | DataType::Null);
        let number = |t: &DataType| t.is_numeric() || t.is_null();
        let list = |t: &DataType| {
            matches!(
                t,
                DataType::List(_) | DataType::LargeList(_) | DataType::Null
            )
        };
        match self.read {
            Read::SketchQuantile if binary(&args[0]) && number(&args[1]) => Ok(DataType::Float64),
            Read::SketchCount if binary(&args[0]) => Ok(DataType::UInt64),
            Read::HistogramQuantile if number(&args[0]) && list(&args[1]) && list(&args[2]) => {
                Ok(DataType::Float64)
            }
            Read::SketchQuantile => {
                plan_err!("sketch_quantile(sketch, q) takes a sketch and a number")
            }
            Read::SketchCount => plan_err!("sketch_count(sketch) takes a sketch"),
            Read::HistogramQuantile => plan_err!(
                "histogram_quantile(q, bucket_counts, explicit_bounds) takes a number and two lists"
            ),
        }
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let rows = args.number_rows;
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let cast = |a: &ArrayRef, t: &DataType| arrow::compute::cast(a, t);
        let out: ArrayRef = match self.read {
            Read::SketchQuantile | Read::SketchCount => {
                let sketches = cast(&arrays[0], &DataType::Binary)?;
                let sketches = sketches.as_binary::<i32>();
                if self.read == Read::SketchCount {
                    let mut out = UInt64Builder::with_capacity(rows);
                    for s in sketches.iter() {
                        out.append_option(s.map(Sketch::decode).transpose()?.map(|s| s.count()));
                    }
                    Arc::new(out.finish())
                } else {
                    let q = cast(&arrays[1], &DataType::Float64)?;
                    let q = q.as_primitive::<Float64Type>();
                    let mut out = Float64Builder::with_capacity(rows);
                    for i in 0..rows {
                        if sketches.is_null(i) || q.is_null(i) {
                            out.append_null();
                            continue;
                        }
                        let q = q.value(i);
                        if !(0.0..=1.0).contains(&q) {
                            return exec_err!("sketch_quantile: q must be within 0 and 1, not {q}");
                        }
                        out.append_option(Sketch::decode(sketches.value(i))?.quantile(q));
                    }
                    Arc::new(out.finish())
                }
            }
            Read::HistogramQuantile => {
                let q = cast(&arrays[0], &DataType::Float64)?;
                let q = q.as_primitive::<Float64Type>();
                let counts = cast(
                    &arrays[1],
                    &DataType::List(Arc::new(arrow::datatypes::Field::new_list_field(
                        DataType::UInt64,
                        true,
                    ))),
                )?;
                let bounds = cast(
                    &arrays[2],
                    &DataType::List(Arc::new(arrow::datatypes::Field::new_list_field(
                        DataType::Float64,
                        true,
                    ))),
                )?;
                let (counts, bounds) = (counts.as_list::<i32>(), bounds.as_list::<i32>());
                let mut out = Float64Builder::with_capacity(rows);
                for i in 0..rows {
                    if q.is_null(i) || counts.is_null(i) || bounds.is_null(i) {
                        out.append_null();
                        continue;
                    }
                    let q = q.value(i);
                    if !(0.0..=1.0).contains(&q) {
                        return exec_err!("histogram_quantile: q must be within 0 and 1, not {q}");
                    }
                    let c = counts.value(i);
                    let b = bounds.value(i);
                    let c: Vec<u64> = c
                        .as_primitive::<UInt64Type>()
                        .iter()
                        .map(|v| v.unwrap_or(0))
                        .collect();
                    let b: Vec<f64> = b
                        .as_primitive::<Float64Type>()
                        .iter()
                        .map(|v| v.unwrap_or(f64::NAN))
                        .collect();
                    out.append_option(histogram_quantile(q, &c, &b));
                }
                Arc::new(out.finish())
            }
        };
        Ok(ColumnarValue::Array(out))
    }
}

/// The q-quantile of an explicit-bucket histogram: bucket `i` holds values
/// in `(bounds[i-1], bounds[i]]`; linear interpolation within it. NULL when
/// empty or malformed (counts must be one more than bounds).
fn histogram_quantile(q: f64, counts: &[u64], bounds: &[f64]) -> Option<f64> {
    let total: u64 = counts.iter().sum();
    if total == 0 || counts.len() != bounds.len() + 1 {
        return None;
    }
    if bounds.is_empty() {
        return None;
    }
    let rank = q * total as f64;
    let mut below = 0u64;
    for (i, &n) in counts.iter().enumerate() {
        if n > 0 && (below + n) as f64 >= rank {
            // Edges of the open-ended buckets: the nearest bound.
            let lower = if i == 0 {
                bounds[0].min(0.0)
            } else {
                bounds[i - 1]
            };
            let upper = if i == bounds.len() {
                bounds[i - 1]
            } else {
                bounds[i]
            };
            if i == bounds.len() {
                return Some(upper);
            }
            let within = ((rank - below as f64) / n as f64).clamp(0.0, 1.0);
            return Some(lower + (upper - lower) * within);
        }
        below += n;
    }
    bounds.last().copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sketch_quantiles_are_within_one_percent() {
        let mut sketch = Sketch::default();
        let values: Vec<f64> = (1..=10_000).map(|i| f64::from(i) * 1_000.0).collect();
        for v in &values {
            sketch.add(*v);
        }
        for q in [0.0, 0.5, 0.9, 0.99, 1.0] {
            let exact = values[(q * (values.len() - 1) as f64).floor() as usize];
            let got = sketch.quantile(q).expect("a value");
            assert!(
                (got - exact).abs() <= exact * 0.0101,
                "q {q}: {got} vs {exact}"
            );
        }
        assert_eq!(sketch.quantile(0.0), Some(1_000.0), "the minimum is exact");
        assert_eq!(
            sketch.quantile(1.0),
            Some(10_000_000.0),
            "the maximum is exact"
        );
    }

    #[test]
    fn merged_sketches_equal_one_sketch_of_everything() {
        let (mut a, mut b, mut all) = (Sketch::default(), Sketch::default(), Sketch::default());
        for i in -500..1500 {
            let v = f64::from(i) * 0.37;
            if i % 3 == 0 {
                a.add(v)
            } else {
                b.add(v)
            }
            all.add(v);
        }
        a.merge(&b);
        assert_eq!(a, all);
        let decoded = Sketch::decode(&a.encode()).expect("round trip");
        assert_eq!(decoded, all);
        assert_eq!(decoded.count(), 2000);
        assert!(Sketch::decode(&[9, 9]).is_err());
        assert!(Sketch::decode(&a.encode()[..20]).is_err());
    }

    #[test]
    fn histogram_quantiles_interpolate_within_buckets() {
        // 10 values in (0, 1], 10 in (1, 2], 0 in (2, 4], 5 above 4.
        let counts = [10, 10, 0, 5];
        let bounds = [1.0, 2.0, 4.0];
        assert_eq!(histogram_quantile(0.2, &counts, &bounds), Some(0.5));
        assert_eq!(histogram_quantile(0.6, &counts, &bounds), Some(1.5));
        assert_eq!(histogram_quantile(0.99, &counts, &bounds), Some(4.0));
        assert_eq!(histogram_quantile(0.5, &[0, 0], &[1.0]), None);
        assert_eq!(histogram_quantile(0.5, &[1, 2], &[]), None);
    }
}
