//! A bound on what one call of a scalar function may build.
//!
//! DataFusion counts the memory of sorts, joins and aggregations against a
//! query's pool, but not the arrays scalar functions return:
//! `repeat('x', 1500000000)` or `array_repeat(1, 1100000000)` allocate
//! gigabytes in one call, and `s || s` nested a few times doubles whatever it
//! is given. Every scalar function of a session is wrapped so that
//! - the functions whose output grows with an argument's value rather than
//!   with its input (`repeat`, `lpad`, `rpad`, `array_repeat`,
//!   `array_resize`, `range`, `generate_series`, `replace`,
//!   `regexp_replace`) are refused before they run when their output would
//!   pass the bound, and
//! - any function's output over the bound fails the query, so no chain of
//!   calls can build on it.
//!
//! The bound is per call (one batch of rows), [`QueryLimits::function_bytes`](crate::QueryLimits);
//! the `||` operator on strings is planned as a bounded call too ([`crate::concat`]).

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray};
use arrow::compute::kernels::length::length;
use arrow::datatypes::FieldRef;
use arrow::datatypes::{DataType, Int64Type, IntervalMonthDayNano, TimeUnit};
use datafusion::common::config::ConfigOptions;
use datafusion::common::{ExprSchema, ScalarValue};
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::interval_arithmetic::Interval;
use datafusion::logical_expr::preimage::PreimageResult;
use datafusion::logical_expr::simplify::{ExprSimplifyResult, SimplifyContext};
use datafusion::logical_expr::sort_properties::{ExprProperties, SortProperties};
use datafusion::logical_expr::udf_eq::UdfEq;
use datafusion::logical_expr::{
    ColumnarValue, Documentation, Expr, ExpressionPlacement, ReturnFieldArgs, ScalarFunctionArgs,
    ScalarUDF, ScalarUDFImpl, Signature, StructFieldMapping,
};
use datafusion::prelude::SessionContext;

/// Wraps every scalar function registered in `ctx` in the bound.
pub(crate) fn bound_functions(ctx: &SessionContext, max_bytes: usize) {
    let state = ctx.state();
    let mut seen = std::collections::HashSet::new();
    for function in state.scalar_functions().values() {
        if seen.insert(function.name().to_owned()) {
            ctx.register_udf(bounded(Arc::clone(function.inner()), max_bytes));
        }
    }
}

/// A scalar function within the bound.
pub(crate) fn bounded(inner: Arc<dyn ScalarUDFImpl>, max_bytes: usize) -> ScalarUDF {
    ScalarUDF::new_from_shared_impl(Arc::new(Bounded {
        inner: inner.into(),
        max_bytes,
    }))
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct Bounded {
    inner: UdfEq<Arc<dyn ScalarUDFImpl>>,
    max_bytes: usize,
}

impl Bounded {
    fn refuse(&self, bytes: u128) -> DataFusionError {
        DataFusionError::ResourcesExhausted(format!(
            "{}() would build {} MB, more than the {} MB one function call may build \
             (--query-function-bytes)",
            self.inner.name(),
            bytes / 1_000_000,
            self.max_bytes / 1_000_000
        ))
    }
}

/// A value per row of an argument: a number it holds or its length.
enum PerRow {
    Same(u128),
    Each(Vec<u128>),
}

impl PerRow {
    fn get(&self, row: usize) -> u128 {
        match self {
            PerRow::Same(v) => *v,
            PerRow::Each(values) => values.get(row).copied().unwrap_or(0),
        }
    }
}

/// Rows a call produces: one for scalars only, else the batch's.
fn rows(args: &ScalarFunctionArgs) -> usize {
    if args
        .args
        .iter()
        .all(|a| matches!(a, ColumnarValue::Scalar(_)))
    {
        1
    } else {
        args.number_rows
    }
}

/// An integer argument per row, through `f` (`None` for null).
fn integers(value: &ColumnarValue, f: impl Fn(Option<i64>) -> u128) -> Result<PerRow> {
    Ok(match value {
        ColumnarValue::Scalar(s) => PerRow::Same(match s.cast_to(&DataType::Int64)? {
            ScalarValue::Int64(v) => f(v),
            _ => f(None),
        }),
        ColumnarValue::Array(a) => each_integer(a, f)?,
    })
}

fn each_integer(array: &ArrayRef, f: impl Fn(Option<i64>) -> u128) -> Result<PerRow> {
    let array = arrow::compute::cast(array, &DataType::Int64)?;
    Ok(PerRow::Each(
        array.as_primitive::<Int64Type>().iter().map(f).collect(),
    ))
}

/// An argument as integers per row (negative and null as 0).
fn ints(value: &ColumnarValue) -> Result<PerRow> {
    integers(value, |v| v.unwrap_or(0).max(0) as u128)
}

/// An argument's byte length per row (strings and binaries).
fn lengths(value: &ColumnarValue) -> Result<PerRow> {
    Ok(match value {
        ColumnarValue::Scalar(s) => PerRow::Same(match s {
            ScalarValue::Utf8(Some(v))
            | ScalarValue::LargeUtf8(Some(v))
            | ScalarValue::Utf8View(Some(v)) => v.len() as u128,
            ScalarValue::Binary(Some(v))
            | ScalarValue::LargeBinary(Some(v))
            | ScalarValue::BinaryView(Some(v)) => v.len() as u128,
            _ => 0,
        }),
        ColumnarValue::Array(a) => each_integer(&length(a)?, |v| v.unwrap_or(0).max(0) as u128)?,
    })
}

/// The bytes a row of an argument takes (at least one).
fn row_bytes(value: &ColumnarValue, rows: usize) -> PerRow {
    PerRow::Same(
        match value {
            ColumnarValue::Scalar(s) => s.size() as u128,
            ColumnarValue::Array(a) => (a.get_array_memory_size() / rows.max(1)) as u128,
        }
        .max(1),
    )
}

/// Times of a `range`/`generate_series` argument in nanoseconds per row.
fn nanos(value: &ColumnarValue) -> Result<PerRow> {
    let factor: i128 = match value.data_type() {
        DataType::Date32 => 86_400_000_000_000,
        DataType::Date64 => 1_000_000,
        DataType::Timestamp(unit, _) => match unit {
            TimeUnit::Second => 1_000_000_000,
            TimeUnit::Millisecond => 1_000_000,
            TimeUnit::Microsecond => 1_000,
            TimeUnit::Nanosecond => 1,
        },
        _ => 1,
    };
    let signed = |v: i64| (v as i128 * factor + (1i128 << 100)) as u128;
    Ok(match value {
        ColumnarValue::Scalar(s) => {
            let array = s.to_array()?;
            let array = arrow::compute::cast(&array, &DataType::Int64)?;
            let v = array.as_primitive::<Int64Type>();
            PerRow::Same(if v.is_null(0) {
                1 << 100
            } else {
                signed(v.value(0))
            })
        }
        ColumnarValue::Array(a) => {
            let a: ArrayRef = arrow::compute::cast(a, &DataType::Int64)?;
            let v = a.as_primitive::<Int64Type>();
            PerRow::Each(v.iter().map(|v| signed(v.unwrap_or(0))).collect())
        }
    })
}

/// A `range` step in nanoseconds per row (a month as its shortest, 28 days).
fn step_nanos(value: &ColumnarValue) -> PerRow {
    let of = |v: Option<IntervalMonthDayNano>| {
        v.map_or(1, |v| {
            let ns = (v.months as i128 * 28 + v.days as i128) * 86_400_000_000_000
                + v.nanoseconds as i128;
            ns.unsigned_abs().max(1)
        })
    };
    match value {
        ColumnarValue::Scalar(ScalarValue::IntervalMonthDayNano(v)) => PerRow::Same(of(*v)),
        ColumnarValue::Array(a) if matches!(a.data_type(), DataType::Interval(_)) => {
            match a.as_primitive_opt::<arrow::datatypes::IntervalMonthDayNanoType>() {
                Some(v) => PerRow::Each(v.iter().map(of).collect()),
                None => PerRow::Same(1),
            }
        }
        _ => PerRow::Same(1),
    }
}

/// Elements of `range(start, stop, step)` per row (integers or times).
fn range_elements(args: &[ColumnarValue], rows: usize) -> Result<u128> {
    let times = !matches!(args[0].data_type(), DataType::Int64 | DataType::Null);
    let (start, stop, step) = match (args.len(), times) {
        (1, false) => (PerRow::Same(0), ints(&args[0])?, PerRow::Same(1)),
        (2, false) => (
            signed_ints(&args[0])?,
            signed_ints(&args[1])?,
            PerRow::Same(1),
        ),
        (_, false) => (
            signed_ints(&args[0])?,
            signed_ints(&args[1])?,
            abs_ints(&args[2])?,
        ),
        (3, true) => (nanos(&args[0])?, nanos(&args[1])?, step_nanos(&args[2])),
        // Not a call the function takes: it says why.
        (_, true) => return Ok(0),
    };
    // Signed bounds are shifted alike, so their distance is kept.
    Ok((0..rows).fold(0u128, |total, row| {
        let (a, b) = (start.get(row), stop.get(row));
        total.saturating_add(a.abs_diff(b) / step.get(row).max(1) + 1)
    }))
}

/// Signed integers per row, shifted alike to keep their distances.
fn signed_ints(value: &ColumnarValue) -> Result<PerRow> {
    integers(value, |v| (v.unwrap_or(0) as i128 + (1i128 << 100)) as u128)
}

fn abs_ints(value: &ColumnarValue) -> Result<PerRow> {
    integers(value, |v| v.map_or(1, |v| v.unsigned_abs() as u128))
}

/// The text of a string argument at `row`, if it is one.
fn text(value: &ColumnarValue, row: usize) -> Option<String> {
    match value {
        ColumnarValue::Scalar(s) => match s {
            ScalarValue::Utf8(v) | ScalarValue::LargeUtf8(v) | ScalarValue::Utf8View(v) => {
                v.clone()
            }
            _ => None,
        },
        ColumnarValue::Array(a) => {
            let a = arrow::compute::cast(a, &DataType::Utf8).ok()?;
            let a = a.as_string::<i32>();
            (row < a.len() && a.is_valid(row)).then(|| a.value(row).to_owned())
        }
    }
}

/// What `replace(s, from, to)` builds: exact when the simple bound (every
/// position a match) passes `max`.
fn replace_bytes(args: &[ColumnarValue], rows: usize, max: u128) -> Result<u128> {
    let (s, from, to) = (lengths(&args[0])?, lengths(&args[1])?, lengths(&args[2])?);
    let bound = |row: usize, matches: u128| {
        s.get(row)
            .saturating_add(matches.saturating_mul(to.get(row)))
    };
    let simple = (0..rows).fold(0u128, |total, row| {
        total.saturating_add(bound(row, s.get(row) / from.get(row).max(1) + 1))
    });
    if simple <= max {
        return Ok(simple);
    }
    let mut exact = 0;
    for row in 0..rows {
        let matches = match (text(&args[0], row), text(&args[1], row)) {
            (Some(s), Some(from)) if from.is_empty() => s.chars().count() as u128 + 1,
            (Some(s), Some(from)) => s.matches(from.as_str()).count() as u128,
            _ => 0,
        };
        exact = bound(row, matches).saturating_add(exact);
    }
    Ok(exact)
}

/// What `regexp_replace(s, pattern, replacement[, flags])` builds: exact
/// (matches counted) when the simple bound (every position a match, each
/// group reference as long as `s`) passes `max`.
fn regexp_replace_bytes(args: &[ColumnarValue], rows: usize, max: u128) -> Result<u128> {
    let (s, replacement) = (lengths(&args[0])?, lengths(&args[2])?);
    let global = |row: usize| {
        args.get(3)
            .and_then(|f| text(f, row))
            .is_some_and(|f| f.contains('g'))
    };
    let references =
        |row: usize| text(&args[2], row).map_or(0, |r| r.matches(['$', '\\']).count() as u128);
    let bound = |row: usize, matches: u128| {
        let each = replacement
            .get(row)
            .saturating_add(references(row).saturating_mul(s.get(row)));
        s.get(row).saturating_add(matches.saturating_mul(each))
    };
    let simple = (0..rows).fold(0u128, |total, row| {
        total.saturating_add(bound(row, if global(row) { s.get(row) + 1 } else { 1 }))
    });
    if simple <= max {
        return Ok(simple);
    }
    let mut exact = 0;
    for row in 0..rows {
        let (Some(s), Some(pattern)) = (text(&args[0], row), text(&args[1], row)) else {
            continue;
        };
        // An invalid pattern: the function itself says why.
        let Ok(re) = regex::Regex::new(&pattern) else {
            return Ok(0);
        };
        let matches = if global(row) {
            re.find_iter(&s).count() as u128
        } else {
            u128::from(re.is_match(&s))
        };
        exact = bound(row, matches).saturating_add(exact);
    }
    Ok(exact)
}

/// What a call would build, for the functions whose output grows with an
/// argument's value; `None` for the others.
fn estimate(name: &str, args: &ScalarFunctionArgs, max: u128) -> Result<Option<u128>> {
    let (values, rows) = (&args.args, rows(args));
    let sum = |a: PerRow, b: PerRow| {
        (0..rows).fold(0u128, |total, r| {
            total.saturating_add(a.get(r).saturating_mul(b.get(r)))
        })
    };
    Ok(Some(match (name, values.len()) {
        ("repeat", 2) => sum(lengths(&values[0])?, ints(&values[1])?),
        ("lpad" | "rpad", 2..) => sum(ints(&values[1])?, PerRow::Same(4)),
        ("array_repeat", 2) => sum(ints(&values[1])?, row_bytes(&values[0], rows)),
        ("array_resize", 2..) => sum(ints(&values[1])?, PerRow::Same(8)),
        ("range" | "generate_series", 1..=3) => range_elements(values, rows)?.saturating_mul(8),
        ("replace", 3) => replace_bytes(values, rows, max)?,
        ("regexp_replace", 3..=4) => regexp_replace_bytes(values, rows, max)?,
        _ => return Ok(None),
    }))
}

fn output_bytes(value: &ColumnarValue) -> usize {
    match value {
        ColumnarValue::Array(a) => a.get_array_memory_size(),
        ColumnarValue::Scalar(s) => s.size(),
    }
}

#[warn(clippy::missing_trait_methods)] // Delegates: every method must reach the inner function.
impl ScalarUDFImpl for Bounded {
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let max = self.max_bytes as u128;
        if let Some(bytes) = estimate(self.inner.name(), &args, max)?
            && bytes > max
        {
            return Err(self.refuse(bytes));
        }
        let output = self.inner.invoke_with_args(args)?;
        let bytes = output_bytes(&output);
        if bytes > self.max_bytes {
            return Err(self.refuse(bytes as u128));
        }
        Ok(output)
    }

    fn name(&self) -> &str {
        self.inner.name()
    }

    fn display_name(&self, args: &[Expr]) -> Result<String> {
        #[expect(deprecated)]
        self.inner.display_name(args)
    }

    fn schema_name(&self, args: &[Expr]) -> Result<String> {
        self.inner.schema_name(args)
    }

    fn signature(&self) -> &Signature {
        self.inner.signature()
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        self.inner.return_type(arg_types)
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        self.inner.return_field_from_args(args)
    }

    fn is_nullable(&self, args: &[Expr], schema: &dyn ExprSchema) -> bool {
        #[expect(deprecated)]
        self.inner.is_nullable(args, schema)
    }

    fn is_strict(&self) -> bool {
        self.inner.is_strict()
    }

    fn with_updated_config(&self, config: &ConfigOptions) -> Option<ScalarUDF> {
        let updated = self.inner.with_updated_config(config)?;
        Some(bounded(Arc::clone(updated.inner()), self.max_bytes))
    }

    fn aliases(&self) -> &[String] {
        self.inner.aliases()
    }

    fn simplify(&self, args: Vec<Expr>, info: &SimplifyContext) -> Result<ExprSimplifyResult> {
        self.inner.simplify(args, info)
    }

    fn preimage(
        &self,
        args: &[Expr],
        lit_expr: &Expr,
        info: &SimplifyContext,
    ) -> Result<PreimageResult> {
        self.inner.preimage(args, lit_expr, info)
    }

    fn conditional_arguments<'a>(
        &self,
        args: &'a [Expr],
    ) -> Option<(Vec<&'a Expr>, Vec<&'a Expr>)> {
        self.inner.conditional_arguments(args)
    }

    fn short_circuits(&self) -> bool {
        self.inner.short_circuits()
    }

    fn evaluate_bounds(&self, input: &[&Interval]) -> Result<Interval> {
        self.inner.evaluate_bounds(input)
    }

    fn propagate_constraints(
        &self,
        interval: &Interval,
        inputs: &[&Interval],
    ) -> Result<Option<Vec<Interval>>> {
        self.inner.propagate_constraints(interval, inputs)
    }

    fn struct_field_mapping(
        &self,
        literal_args: &[Option<ScalarValue>],
    ) -> Option<StructFieldMapping> {
        self.inner.struct_field_mapping(literal_args)
    }

    fn output_ordering(&self, inputs: &[ExprProperties]) -> Result<SortProperties> {
        self.inner.output_ordering(inputs)
    }

    fn preserves_lex_ordering(&self, inputs: &[ExprProperties]) -> Result<bool> {
        self.inner.preserves_lex_ordering(inputs)
    }

    fn strictly_order_preserving(&self, inputs: &[ExprProperties]) -> Result<bool> {
        self.inner.strictly_order_preserving(inputs)
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        self.inner.coerce_types(arg_types)
    }

    fn documentation(&self) -> Option<&Documentation> {
        self.inner.documentation()
    }

    fn placement(&self, args: &[ExpressionPlacement]) -> ExpressionPlacement {
        self.inner.placement(args)
    }
}
