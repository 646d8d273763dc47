//! Tag discovery: the attribute names of spans in a time range by scope,
//! and the values of an attribute or intrinsic, typed as Tempo types them
//! (`string`, `int`, `float`, `bool`, `keyword`).

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Float64Type, Int64Type};
use datafusion::logical_expr::Expr as Df;
use datafusion::prelude::col;
use framelake_lake::ids::TenantId;
use framelake_traceql::{Field, Intrinsic, Kind, Status};
use futures::StreamExt;

use super::filter::attribute;
use crate::table::time_literal;
use crate::{Engine, QueryError};

/// The intrinsics Tempo lists under the `intrinsic` scope.
pub(super) const INTRINSICS: [&str; 20] = [
    "duration",
    "kind",
    "name",
    "status",
    "statusMessage",
    "traceDuration",
    "rootServiceName",
    "rootName",
    "span:status",
    "span:statusMessage",
    "span:duration",
    "span:name",
    "span:kind",
    "trace:rootName",
    "trace:rootService",
    "trace:duration",
    "event:name",
    "event:timeSinceStart",
    "instrumentation:name",
    "instrumentation:version",
];

/// The attribute scopes and the SQL of their names' source.
const SCOPES: [(&str, &str); 5] = [
    (
        "resource",
        "SELECT unnest(map_keys(resource_attributes)) AS k FROM spans WHERE {range}",
    ),
    (
        "span",
        "SELECT unnest(map_keys(attributes)) AS k FROM spans WHERE {range}",
    ),
    (
        "event",
        "SELECT unnest(map_keys(e['attributes'])) AS k FROM (SELECT unnest(events) AS e FROM spans WHERE {range})",
    ),
    (
        "link",
        "SELECT unnest(map_keys(l['attributes'])) AS k FROM (SELECT unnest(links) AS l FROM spans WHERE {range})",
    ),
    (
        "instrumentation",
        "SELECT unnest(map_keys(scope_attributes)) AS k FROM spans WHERE {range}",
    ),
];

/// The attribute names of spans starting in `range` (inclusive), by scope,
/// at most `limit` per scope, sorted.
pub(super) async fn names(
    engine: &Engine,
    tenant: &TenantId,
    range: (i64, i64),
    limit: usize,
) -> Result<Vec<(&'static str, Vec<String>)>, QueryError> {
    let window = format!(
        "start_time >= to_timestamp_nanos({}) AND start_time <= to_timestamp_nanos({})",
        range.0, range.1
    );
    let mut out = Vec::new();
    for (scope, sql) in SCOPES {
        let sql = format!(
            "SELECT DISTINCT k FROM ({}) WHERE k IS NOT NULL LIMIT {limit}",
            sql.replace("{range}", &window)
        );
        let mut rows = engine.sql(tenant, &sql).await?;
        let mut names = Vec::new();
        while let Some(batch) = rows.stream.next().await {
            let batch = batch?;
            let keys = cast(batch.column(0), &DataType::Utf8)?;
            let keys = keys.as_string::<i32>();
            names.extend(keys.iter().flatten().map(str::to_owned));
        }
        names.sort();
        out.push((scope, names));
    }
    Ok(out)
}

/// What the values of a tag are read from.
enum Source {
    /// Fixed keywords.
    Keywords(Vec<&'static str>),
    /// Values Tempo does not list (durations).
    Nothing,
    /// A column or attribute of spans, of root spans only when `roots`.
    Spans { value: Df, roots: bool },
}

fn source(field: &Field) -> Option<Source> {
    Some(match field {
        Field::Attribute(scope, key) => Source::Spans {
            value: attribute(*scope, key)?,
            roots: false,
        },
        Field::Intrinsic(i) => match i {
            Intrinsic::Status => Source::Keywords(Status::ALL.map(Status::name).to_vec()),
            Intrinsic::Kind => Source::Keywords(Kind::ALL.map(Kind::name).to_vec()),
            Intrinsic::Duration | Intrinsic::TraceDuration | Intrinsic::EventTimeSinceStart => {
                Source::Nothing
            }
            Intrinsic::Name => Source::Spans {
                value: col("name"),
                roots: false,
            },
            Intrinsic::StatusMessage => Source::Spans {
                value: col("status_message"),
                roots: false,
            },
            Intrinsic::RootName => Source::Spans {
                value: col("name"),
                roots: true,
            },
            Intrinsic::RootServiceName => Source::Spans {
                value: col("service_name"),
                roots: true,
            },
            Intrinsic::InstrumentationName => Source::Spans {
                value: col("scope_name"),
                roots: false,
            },
            Intrinsic::InstrumentationVersion => Source::Spans {
                value: col("scope_version"),
                roots: false,
            },
            _ => return None,
        },
    })
}

/// The values of a tag on spans starting in `range` (inclusive) that pass
/// `filter`, with their types, sorted without regard to case; at most
/// `limit`. `None` when the tag is not one whose values are listed.
pub(super) async fn values(
    engine: &Engine,
    tenant: &TenantId,
    field: &Field,
    filter: Option<Df>,
    range: (i64, i64),
    limit: usize,
) -> Result<Option<Vec<(&'static str, String)>>, QueryError> {
    let (value, roots) = match source(field) {
        None => return Ok(None),
        Some(Source::Nothing) => return Ok(Some(Vec::new())),
        Some(Source::Keywords(words)) => {
            return Ok(Some(
                words
                    .into_iter()
                    .map(|w| ("keyword", w.to_owned()))
                    .collect(),
            ));
        }
        Some(Source::Spans { value, roots }) => (value, roots),
    };
    let mut rows = engine
        .run(tenant, move |ctx| async move {
            let mut predicate = col("start_time")
                .gt_eq(time_literal(range.0))
                .and(col("start_time").lt_eq(time_literal(range.1)));
            if roots {
                predicate = predicate.and(col("parent_span_id").is_null());
            }
            if let Some(filter) = filter {
                predicate = predicate.and(filter);
            }
            Ok(ctx
                .table("spans")
                .await?
                .filter(predicate)?
                .select(vec![value.alias("v")])?
                .filter(col("v").is_not_null())?
                .distinct()?
                .limit(0, Some(limit))?)
        })
        .await?;
    let mut out = Vec::new();
    while let Some(batch) = rows.stream.next().await {
        typed_values(&batch?, &mut out)?;
    }
    out.sort_by(|a, b| {
        a.1.to_lowercase()
            .cmp(&b.1.to_lowercase())
            .then_with(|| a.cmp(b))
    });
    out.dedup();
    Ok(Some(out))
}

/// The values of a batch's column: text, or attributes' typed fields.
fn typed_values(
    batch: &RecordBatch,
    out: &mut Vec<(&'static str, String)>,
) -> Result<(), QueryError> {
    let column = batch.column(0);
    let DataType::Struct(_) = column.data_type() else {
        let text = cast(column, &DataType::Utf8)?;
        out.extend(
            text.as_string::<i32>()
                .iter()
                .flatten()
                .map(|v| ("string", v.to_owned())),
        );
        return Ok(());
    };
    let fields = column.as_struct();
    let field = |name: &str| fields.column_by_name(name).cloned();
    let (Some(strs), Some(ints), Some(doubles), Some(bools)) =
        (field("str"), field("int"), field("double"), field("bool"))
    else {
        return Err(QueryError::Internal("attribute values lack a type".into()));
    };
    let strs = cast(&strs, &DataType::Utf8)?;
    let strs = strs.as_string::<i32>();
    let ints = ints.as_primitive::<Int64Type>();
    let doubles = doubles.as_primitive::<Float64Type>();
    let bools = bools.as_boolean();
    for i in 0..fields.len() {
        if fields.is_null(i) {
            continue;
        }
        if strs.is_valid(i) {
            out.push(("string", strs.value(i).to_owned()));
        } else if ints.is_valid(i) {
            out.push(("int", ints.value(i).to_string()));
        } else if doubles.is_valid(i) {
            out.push(("float", doubles.value(i).to_string()));
        } else if bools.is_valid(i) {
            out.push(("bool", bools.value(i).to_string()));
        }
    }
    Ok(())
}
