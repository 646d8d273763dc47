//! TraceQL search: the traces whose spans a spanset expression finds,
//! newest first, as Tempo answers `/api/search`.
//!
//! Each filter of the query becomes a predicate of the scan. A first scan
//! finds the traces with a span passing any filter in the range, newest
//! first, a page at a time; a second reads those traces' spans (the
//! relations between spans, and every filter's result per span) and the
//! query is evaluated trace by trace: `&&`/`||` between spansets, the
//! structural operators, pipelines with filters, aggregates and `select`.

use std::collections::HashMap;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Float64Type, Int32Type, Int64Type, TimestampNanosecondType};
use datafusion::functions_aggregate::expr_fn::max;
use datafusion::logical_expr::{Expr as Df, SortExpr};
use datafusion::prelude::{col, lit};
use framelake_lake::ids::TenantId;
use framelake_traceql::{
    Aggregate, BinaryOp, Expr, Field, Intrinsic, ScalarFilter, Spanset, SpansetOp, Stage, Static,
};
use futures::StreamExt;
use serde_json::{Value, json};

use super::filter::{self, attribute};
use crate::table::time_literal;
use crate::{Engine, QueryError};

/// What a search asks.
pub(super) struct Search {
    pub spans: Spanset,
    pub range: (i64, i64),
    pub limit: usize,
    /// Spans listed per spanset.
    pub spss: usize,
    /// Bounds of the trace's duration (nanoseconds, inclusive), from the
    /// first version's `minDuration` and `maxDuration`.
    pub durations: (i64, i64),
}

impl Trace {
    /// From its first span's start to its last span's end.
    fn duration(&self) -> i64 {
        let start = self.spans.iter().map(|s| s.start).min().unwrap_or(0);
        let end = self.spans.iter().map(|s| s.end).max().unwrap_or(start);
        end - start
    }
}

/// The filters of a query, in order, and the fields its results show.
struct Plan {
    /// Each filter as a boolean of atoms.
    filters: Vec<Node>,
    /// Each filter's predicate on the scan that finds candidate traces.
    scans: Vec<Df>,
    /// The atoms a span's row answers, as predicates.
    atoms: Vec<Df>,
    shown: Vec<Field>,
}

/// A filter as `&&`, `||` and `!` of atoms: comparisons a span's row
/// answers, and comparisons of the trace's intrinsics.
enum Node {
    And(Box<Node>, Box<Node>),
    Or(Box<Node>, Box<Node>),
    Not(Box<Node>),
    Const(bool),
    /// The atom of this index of [`Plan::atoms`].
    Row(usize),
    /// `traceDuration`, `rootName` or `rootServiceName` compared with a value.
    Trace(Intrinsic, BinaryOp, Static),
}

/// What a trace's intrinsics are.
struct TraceFacts<'a> {
    duration: i64,
    root_name: Option<&'a str>,
    root_service: Option<&'a str>,
}

impl Node {
    fn has_trace_atoms(&self) -> bool {
        match self {
            Node::And(l, r) | Node::Or(l, r) => l.has_trace_atoms() || r.has_trace_atoms(),
            Node::Not(n) => n.has_trace_atoms(),
            Node::Trace(..) => true,
            Node::Const(_) | Node::Row(_) => false,
        }
    }

    fn eval(&self, atoms: &[bool], facts: &TraceFacts) -> bool {
        match self {
            Node::And(l, r) => l.eval(atoms, facts) && r.eval(atoms, facts),
            Node::Or(l, r) => l.eval(atoms, facts) || r.eval(atoms, facts),
            Node::Not(n) => !n.eval(atoms, facts),
            Node::Const(b) => *b,
            Node::Row(i) => atoms[*i],
            Node::Trace(intrinsic, op, value) => trace_atom(*intrinsic, *op, value, facts),
        }
    }
}

/// A comparison of a trace intrinsic; false when the trace lacks it (no
/// root yet) or the types never meet.
fn trace_atom(intrinsic: Intrinsic, op: BinaryOp, value: &Static, facts: &TraceFacts) -> bool {
    use std::cmp::Ordering;
    let ordering = |o: Ordering| match op {
        BinaryOp::Eq => o == Ordering::Equal,
        BinaryOp::Neq => o != Ordering::Equal,
        BinaryOp::Lt => o == Ordering::Less,
        BinaryOp::Lte => o != Ordering::Greater,
        BinaryOp::Gt => o == Ordering::Greater,
        BinaryOp::Gte => o != Ordering::Less,
        _ => false,
    };
    match intrinsic {
        Intrinsic::TraceDuration => {
            let against = match value {
                Static::Duration(ns) | Static::Int(ns) => *ns as f64,
                Static::Float(v) => *v,
                _ => return false,
            };
            (facts.duration as f64)
                .partial_cmp(&against)
                .is_some_and(ordering)
        }
        _ => {
            let text = match intrinsic {
                Intrinsic::RootName => facts.root_name,
                _ => facts.root_service,
            };
            let (Some(text), Static::Str(against)) = (text, value) else {
                return false;
            };
            match op {
                BinaryOp::Regex | BinaryOp::NotRegex => {
                    let matched =
                        framelake_traceql::anchored(against).is_ok_and(|re| re.is_match(text));
                    matched == (op == BinaryOp::Regex)
                }
                _ => ordering(text.cmp(against.as_str())),
            }
        }
    }
}

/// The trace intrinsics a search reads from its spans.
fn is_trace_intrinsic(expr: &Expr) -> Option<Intrinsic> {
    match expr {
        Expr::Field(Field::Intrinsic(
            i @ (Intrinsic::TraceDuration | Intrinsic::RootName | Intrinsic::RootServiceName),
        )) => Some(*i),
        _ => None,
    }
}

/// The mirror of a comparison (`5 < x` is `x > 5`).
fn mirrored(op: BinaryOp) -> BinaryOp {
    match op {
        BinaryOp::Lt => BinaryOp::Gt,
        BinaryOp::Lte => BinaryOp::Gte,
        BinaryOp::Gt => BinaryOp::Lt,
        BinaryOp::Gte => BinaryOp::Lte,
        other => other,
    }
}

fn unsupported(what: impl std::fmt::Display) -> QueryError {
    QueryError::BadQuery(format!("{what} is not supported in searches yet"))
}

impl Plan {
    fn new(spans: &Spanset) -> Result<Self, QueryError> {
        let mut plan = Plan {
            filters: Vec::new(),
            scans: Vec::new(),
            atoms: Vec::new(),
            shown: Vec::new(),
        };
        plan.walk(spans)?;
        Ok(plan)
    }

    fn walk(&mut self, spans: &Spanset) -> Result<(), QueryError> {
        match spans {
            Spanset::Filter(e) => {
                let node = self
                    .node(e)
                    .ok_or_else(|| unsupported(format!("{{ {e} }}")))?;
                // A filter of trace intrinsics may pass any span's trace.
                let scan = if node.has_trace_atoms() {
                    lit(true)
                } else {
                    filter::predicate(e).unwrap_or_else(|| lit(true))
                };
                self.filters.push(node);
                self.scans.push(scan);
                fields(e, &mut self.shown);
            }
            Spanset::Binary(_, l, r) => {
                self.walk(l)?;
                self.walk(r)?;
            }
            Spanset::Pipeline(stages) => {
                for stage in stages {
                    match stage {
                        Stage::Spanset(s) => self.walk(s)?,
                        Stage::Scalar(s) => {
                            let duration = Expr::Field(Field::Intrinsic(Intrinsic::Duration));
                            if aggregated(&s.aggregate).is_some_and(|e| *e != duration) {
                                return Err(unsupported(&s.aggregate));
                            }
                        }
                        Stage::Select(fields) => {
                            for f in fields {
                                if !self.shown.contains(f) {
                                    self.shown.push(f.clone());
                                }
                            }
                        }
                        Stage::By(e) => return Err(unsupported(format!("by({e})"))),
                        Stage::Coalesce => return Err(unsupported("coalesce()")),
                    }
                }
            }
        }
        Ok(())
    }
}

impl Plan {
    /// A filter's expression as atoms; `None` when an atom is neither a
    /// row's nor a trace's.
    fn node(&mut self, expr: &Expr) -> Option<Node> {
        Some(match expr {
            Expr::Binary(BinaryOp::And, l, r) => {
                Node::And(Box::new(self.node(l)?), Box::new(self.node(r)?))
            }
            Expr::Binary(BinaryOp::Or, l, r) => {
                Node::Or(Box::new(self.node(l)?), Box::new(self.node(r)?))
            }
            Expr::Not(e) => Node::Not(Box::new(self.node(e)?)),
            Expr::Static(Static::Bool(b)) => Node::Const(*b),
            Expr::Binary(op, l, r) => match (is_trace_intrinsic(l), is_trace_intrinsic(r)) {
                (Some(i), None) => match r.as_ref() {
                    Expr::Static(v) => Node::Trace(i, *op, v.clone()),
                    _ => return None,
                },
                (None, Some(i)) => match l.as_ref() {
                    Expr::Static(v) => Node::Trace(i, mirrored(*op), v.clone()),
                    _ => return None,
                },
                (Some(_), Some(_)) => return None,
                (None, None) => self.row(expr)?,
            },
            other => self.row(other)?,
        })
    }

    fn row(&mut self, expr: &Expr) -> Option<Node> {
        self.atoms.push(filter::predicate(expr)?);
        Some(Node::Row(self.atoms.len() - 1))
    }
}

fn aggregated(a: &Aggregate) -> Option<&Expr> {
    match a {
        Aggregate::Count => None,
        Aggregate::Avg(e) | Aggregate::Min(e) | Aggregate::Max(e) | Aggregate::Sum(e) => Some(e),
    }
}

/// The attributes and intrinsics an expression reads.
fn fields(expr: &Expr, out: &mut Vec<Field>) {
    match expr {
        Expr::Static(_) => {}
        Expr::Field(f) => {
            if !out.contains(f) {
                out.push(f.clone());
            }
        }
        Expr::Binary(_, l, r) => {
            fields(l, out);
            fields(r, out);
        }
        Expr::Negate(e) | Expr::Not(e) | Expr::Exists(e) | Expr::Missing(e) => fields(e, out),
    }
}

/// A span of a trace, as the evaluation reads it.
struct SpanRow {
    id: [u8; 8],
    parent: Option<[u8; 8]>,
    start: i64,
    end: i64,
    name: String,
    service: String,
    error: bool,
    /// Whether it passes each filter (once its trace is read).
    passes: Vec<bool>,
    /// The answers of its row to the plan's atoms.
    atoms: Vec<bool>,
    /// The values of the shown fields it has.
    shown: Vec<(String, Value)>,
}

/// The spans of one trace and their relations.
struct Trace {
    id: [u8; 16],
    spans: Vec<SpanRow>,
    /// Each span's parent's index.
    parents: Vec<Option<usize>>,
}

impl Trace {
    fn link(&mut self) {
        let index: HashMap<[u8; 8], usize> = self
            .spans
            .iter()
            .enumerate()
            .map(|(i, s)| (s.id, i))
            .collect();
        self.parents = self
            .spans
            .iter()
            .map(|s| s.parent.and_then(|p| index.get(&p).copied()))
            .collect();
    }

    /// Which filters each span passes, given its row's answers and the
    /// trace's intrinsics.
    fn judge(&mut self, filters: &[Node]) {
        let root = self.spans.iter().find(|s| s.parent.is_none());
        let facts = TraceFacts {
            duration: self.duration(),
            root_name: root.map(|r| r.name.as_str()),
            root_service: root.map(|r| r.service.as_str()),
        };
        let passes: Vec<Vec<bool>> = self
            .spans
            .iter()
            .map(|s| filters.iter().map(|f| f.eval(&s.atoms, &facts)).collect())
            .collect();
        for (span, passes) in self.spans.iter_mut().zip(passes) {
            span.passes = passes;
        }
    }

    fn ancestors(&self, mut i: usize) -> impl Iterator<Item = usize> + '_ {
        let mut steps = 0;
        std::iter::from_fn(move || {
            let p = self.parents[i]?;
            // A cycle of ids never loops forever.
            steps += 1;
            if steps > self.spans.len() {
                return None;
            }
            i = p;
            Some(p)
        })
    }
}

type Set = Vec<bool>;

fn any(set: &Set) -> bool {
    set.iter().any(|b| *b)
}

/// The spans a spanset expression finds among `input` (none: the trace
/// does not match).
fn evaluate(spans: &Spanset, trace: &Trace, input: &Set, next: &mut usize) -> Set {
    match spans {
        Spanset::Filter(_) => {
            let i = *next;
            *next += 1;
            trace
                .spans
                .iter()
                .zip(input)
                .map(|(s, &inside)| inside && s.passes[i])
                .collect()
        }
        Spanset::Binary(op, l, r) => {
            let l = evaluate(l, trace, input, next);
            let r = evaluate(r, trace, input, next);
            relate(*op, &l, &r, trace)
        }
        Spanset::Pipeline(stages) => {
            let mut current = input.clone();
            for stage in stages {
                match stage {
                    // A stage after an empty one is not evaluated, but its
                    // filters keep their numbers.
                    Stage::Spanset(s) if !any(&current) => *next += count_filters(s),
                    Stage::Spanset(s) => current = evaluate(s, trace, &current, next),
                    Stage::Scalar(f) => {
                        if any(&current) && !scalar(f, trace, &current) {
                            current = vec![false; current.len()];
                        }
                    }
                    Stage::Select(_) | Stage::By(_) | Stage::Coalesce => {}
                }
            }
            current
        }
    }
}

/// How many filters a spanset expression holds.
fn count_filters(spans: &Spanset) -> usize {
    match spans {
        Spanset::Filter(_) => 1,
        Spanset::Binary(_, l, r) => count_filters(l) + count_filters(r),
        Spanset::Pipeline(stages) => stages
            .iter()
            .map(|s| match s {
                Stage::Spanset(s) => count_filters(s),
                _ => 0,
            })
            .sum(),
    }
}

/// `&&`, `||` and the structural relations between two spansets.
fn relate(op: SpansetOp, l: &Set, r: &Set, trace: &Trace) -> Set {
    let n = l.len();
    let children_of = |set: &Set| -> Set {
        // Spans whose parent is in `set`.
        (0..n)
            .map(|i| trace.parents[i].is_some_and(|p| set[p]))
            .collect()
    };
    let parents_of = |set: &Set| -> Set {
        let mut out = vec![false; n];
        for i in (0..n).filter(|&i| set[i]) {
            if let Some(p) = trace.parents[i] {
                out[p] = true;
            }
        }
        out
    };
    let descendants_of =
        |set: &Set| -> Set { (0..n).map(|i| trace.ancestors(i).any(|a| set[a])).collect() };
    let ancestors_of = |set: &Set| -> Set {
        let mut out = vec![false; n];
        for i in (0..n).filter(|&i| set[i]) {
            for a in trace.ancestors(i) {
                out[a] = true;
            }
        }
        out
    };
    let siblings_of = |set: &Set| -> Set {
        (0..n)
            .map(|i| {
                trace.parents[i].is_some_and(|p| {
                    (0..n).any(|j| j != i && set[j] && trace.parents[j] == Some(p))
                })
            })
            .collect()
    };
    let and = |a: &Set, b: &Set| -> Set { a.iter().zip(b).map(|(x, y)| *x && *y).collect() };
    let or = |a: &Set, b: &Set| -> Set { a.iter().zip(b).map(|(x, y)| *x || *y).collect() };
    let without = |a: &Set, b: &Set| -> Set { a.iter().zip(b).map(|(x, y)| *x && !*y).collect() };
    // The right-hand spans so related to a left-hand one, and the left-hand
    // spans so related to a right-hand one (for the union forms).
    let (related, reverse): (Set, Set) = match op {
        SpansetOp::And => {
            return if any(l) && any(r) {
                or(l, r)
            } else {
                vec![false; n]
            };
        }
        SpansetOp::Or => return or(l, r),
        SpansetOp::Child | SpansetOp::NotChild | SpansetOp::UnionChild => {
            (children_of(l), parents_of(r))
        }
        SpansetOp::Parent | SpansetOp::NotParent | SpansetOp::UnionParent => {
            (parents_of(l), children_of(r))
        }
        SpansetOp::Descendant | SpansetOp::NotDescendant | SpansetOp::UnionDescendant => {
            (descendants_of(l), ancestors_of(r))
        }
        SpansetOp::Ancestor | SpansetOp::NotAncestor | SpansetOp::UnionAncestor => {
            (ancestors_of(l), descendants_of(r))
        }
        SpansetOp::Sibling | SpansetOp::NotSibling | SpansetOp::UnionSibling => {
            (siblings_of(l), siblings_of(r))
        }
    };
    match op {
        SpansetOp::Child
        | SpansetOp::Parent
        | SpansetOp::Descendant
        | SpansetOp::Ancestor
        | SpansetOp::Sibling => and(r, &related),
        SpansetOp::UnionChild
        | SpansetOp::UnionParent
        | SpansetOp::UnionDescendant
        | SpansetOp::UnionAncestor
        | SpansetOp::UnionSibling => or(&and(r, &related), &and(l, &reverse)),
        _ => without(r, &related),
    }
}

/// Whether a spanset's aggregate compares as asked.
fn scalar(filter: &ScalarFilter, trace: &Trace, set: &Set) -> bool {
    let durations = || {
        trace
            .spans
            .iter()
            .zip(set)
            .filter(|(_, inside)| **inside)
            .map(|(s, _)| (s.end - s.start) as f64)
    };
    let value = match &filter.aggregate {
        Aggregate::Count => set.iter().filter(|b| **b).count() as f64,
        Aggregate::Sum(_) => durations().sum(),
        Aggregate::Avg(_) => {
            let (sum, n) = durations().fold((0.0, 0.0), |(s, n), d| (s + d, n + 1.0));
            sum / n
        }
        Aggregate::Min(_) => durations().fold(f64::INFINITY, f64::min),
        Aggregate::Max(_) => durations().fold(f64::NEG_INFINITY, f64::max),
    };
    let against = match filter.value {
        Static::Int(i) => i as f64,
        Static::Float(v) => v,
        Static::Duration(ns) => ns as f64,
        _ => return false,
    };
    match filter.op {
        BinaryOp::Eq => value == against,
        BinaryOp::Neq => value != against,
        BinaryOp::Lt => value < against,
        BinaryOp::Lte => value <= against,
        BinaryOp::Gt => value > against,
        _ => value >= against,
    }
}

/// A field's value column, and the key it is shown under (without scope).
fn shown_column(field: &Field) -> Option<(Df, String)> {
    Some(match field {
        Field::Attribute(scope, key) => (attribute(*scope, key)?, key.clone()),
        Field::Intrinsic(i) => {
            let column = match i {
                Intrinsic::Status => "status_code",
                Intrinsic::Kind => "kind",
                Intrinsic::StatusMessage => "status_message",
                _ => return None,
            };
            (col(column), i.name().to_owned())
        }
    })
}

/// A field's value in a row as OTLP JSON, `None` when the span lacks it.
pub(super) fn field_value(column: &dyn Array, field: &Field, row: usize) -> Option<Value> {
    if column.is_null(row) {
        return None;
    }
    Some(match field {
        Field::Intrinsic(Intrinsic::Status) => {
            let code = column.as_primitive::<Int32Type>().value(row);
            let name = framelake_traceql::Status::ALL
                .into_iter()
                .find(|s| s.code() == code)
                .map_or("unset", framelake_traceql::Status::name);
            json!({ "stringValue": name })
        }
        Field::Intrinsic(Intrinsic::Kind) => {
            let code = column.as_primitive::<Int32Type>().value(row);
            let name = framelake_traceql::Kind::ALL
                .into_iter()
                .find(|k| k.code() == code)
                .map_or("unspecified", framelake_traceql::Kind::name);
            json!({ "stringValue": name })
        }
        Field::Intrinsic(_) => {
            let text = cast(&column.slice(row, 1), &DataType::Utf8).ok()?;
            json!({ "stringValue": text.as_string::<i32>().value(0) })
        }
        Field::Attribute(..) => {
            let fields = column.as_struct();
            let get = |name: &str| fields.column_by_name(name).filter(|c| c.is_valid(row));
            if let Some(s) = get("str") {
                let s = cast(&s.slice(row, 1), &DataType::Utf8).ok()?;
                json!({ "stringValue": s.as_string::<i32>().value(0) })
            } else if let Some(i) = get("int") {
                json!({ "intValue": i.as_primitive::<Int64Type>().value(row).to_string() })
            } else if let Some(d) = get("double") {
                json!({ "doubleValue": d.as_primitive::<Float64Type>().value(row) })
            } else if let Some(b) = get("bool") {
                json!({ "boolValue": b.as_boolean().value(row) })
            } else {
                return None;
            }
        }
    })
}

/// The ids of the traces with a span passing a filter in the range, newest
/// first, from `offset`, at most `page`.
async fn candidates(
    engine: &Engine,
    tenant: &TenantId,
    plan: &Plan,
    range: (i64, i64),
    offset: usize,
    page: usize,
) -> Result<Vec<[u8; 16]>, QueryError> {
    let passing = plan
        .scans
        .iter()
        .cloned()
        .reduce(Df::or)
        .unwrap_or_else(|| lit(true));
    let mut rows = engine
        .run(tenant, move |ctx| async move {
            Ok(ctx
                .table("spans")
                .await?
                .filter(
                    col("start_time")
                        .gt_eq(time_literal(range.0))
                        .and(col("start_time").lt_eq(time_literal(range.1)))
                        .and(passing),
                )?
                .aggregate(
                    vec![col("trace_id")],
                    vec![max(col("start_time")).alias("newest")],
                )?
                .sort(vec![
                    SortExpr::new(col("newest"), false, false),
                    SortExpr::new(col("trace_id"), true, false),
                ])?
                .limit(offset, Some(page))?)
        })
        .await?;
    let mut ids = Vec::new();
    while let Some(batch) = rows.stream.next().await {
        let batch = batch?;
        let column = batch.column(0).as_fixed_size_binary();
        for i in 0..batch.num_rows() {
            if let Ok(id) = <[u8; 16]>::try_from(column.value(i)) {
                ids.push(id);
            }
        }
    }
    Ok(ids)
}

/// The spans of some traces, with each filter's result and the shown
/// fields.
async fn traces(
    engine: &Engine,
    tenant: &TenantId,
    plan: &Plan,
    ids: &[[u8; 16]],
) -> Result<Vec<Trace>, QueryError> {
    let shown: Vec<(Df, String, Field)> = plan
        .shown
        .iter()
        .filter_map(|f| shown_column(f).map(|(e, k)| (e, k, f.clone())))
        .collect();
    let mut select = vec![
        col("trace_id"),
        col("span_id"),
        col("parent_span_id"),
        col("start_time"),
        col("end_time"),
        col("name"),
        col("service_name"),
        col("status_code"),
    ];
    for (i, f) in plan.atoms.iter().enumerate() {
        select.push(f.clone().is_true().alias(format!("a{i}")));
    }
    for (i, (e, ..)) in shown.iter().enumerate() {
        select.push(e.clone().alias(format!("s{i}")));
    }
    let list: Vec<Df> = ids.iter().map(|id| filter::trace_id(*id)).collect();
    let mut rows = engine
        .run(tenant, move |ctx| async move {
            Ok(ctx
                .table("spans")
                .await?
                .filter(col("trace_id").in_list(list, false))?
                .select(select)?)
        })
        .await?;
    let mut by_id: HashMap<[u8; 16], Trace> = HashMap::new();
    let atoms = plan.atoms.len();
    while let Some(batch) = rows.stream.next().await {
        add_rows(&batch?, atoms, &shown, &mut by_id)?;
    }
    let mut out: Vec<Trace> = by_id.into_values().collect();
    for t in &mut out {
        t.link();
        t.judge(&plan.filters);
    }
    Ok(out)
}

fn add_rows(
    batch: &RecordBatch,
    atoms: usize,
    shown: &[(Df, String, Field)],
    by_id: &mut HashMap<[u8; 16], Trace>,
) -> Result<(), QueryError> {
    let c = |i: usize| batch.column(i);
    let trace_ids = c(0).as_fixed_size_binary();
    let span_ids = c(1).as_fixed_size_binary();
    let parents = c(2).as_fixed_size_binary();
    let starts = c(3).as_primitive::<TimestampNanosecondType>();
    let ends = c(4).as_primitive::<TimestampNanosecondType>();
    let names = cast(c(5), &DataType::Utf8)?;
    let names = names.as_string::<i32>();
    let services = cast(c(6), &DataType::Utf8)?;
    let services = services.as_string::<i32>();
    let codes = c(7).as_primitive::<Int32Type>();
    for row in 0..batch.num_rows() {
        let (Ok(trace), Ok(id)) = (
            <[u8; 16]>::try_from(trace_ids.value(row)),
            <[u8; 8]>::try_from(span_ids.value(row)),
        ) else {
            continue;
        };
        let parent = (parents.is_valid(row))
            .then(|| <[u8; 8]>::try_from(parents.value(row)).ok())
            .flatten()
            .filter(|p| p.iter().any(|b| *b != 0));
        let answers = (0..atoms)
            .map(|a| {
                let column = c(8 + a).as_boolean();
                column.is_valid(row) && column.value(row)
            })
            .collect();
        let shown = shown
            .iter()
            .enumerate()
            .filter_map(|(i, (_, key, field))| {
                field_value(c(8 + atoms + i).as_ref(), field, row).map(|v| (key.clone(), v))
            })
            .collect();
        by_id
            .entry(trace)
            .or_insert_with(|| Trace {
                id: trace,
                spans: Vec::new(),
                parents: Vec::new(),
            })
            .spans
            .push(SpanRow {
                id,
                parent,
                start: starts.value(row),
                end: ends.value(row),
                name: names.value(row).to_owned(),
                service: services.value(row).to_owned(),
                error: codes.value(row) == 2,
                passes: Vec::new(),
                atoms: answers,
                shown,
            });
    }
    Ok(())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A trace's search metadata, Tempo's `TraceSearchMetadata`.
fn metadata(trace: &Trace, set: &Set, spss: usize) -> (i64, Value) {
    let start = trace.spans.iter().map(|s| s.start).min().unwrap_or(0);
    let end = trace.spans.iter().map(|s| s.end).max().unwrap_or(start);
    let root = trace
        .spans
        .iter()
        .zip(&trace.parents)
        .find(|(s, _)| s.parent.is_none())
        .map(|(s, _)| s);
    let mut matched: Vec<&SpanRow> = trace
        .spans
        .iter()
        .zip(set)
        .filter(|(_, inside)| **inside)
        .map(|(s, _)| s)
        .collect();
    matched.sort_by_key(|s| s.start);
    let spans: Vec<Value> = matched
        .iter()
        .take(spss)
        .map(|s| {
            let mut span = json!({
                "spanID": hex(&s.id),
                "name": s.name,
                "startTimeUnixNano": s.start.to_string(),
                "durationNanos": (s.end - s.start).max(0).to_string(),
            });
            if !s.shown.is_empty() {
                span["attributes"] = s
                    .shown
                    .iter()
                    .map(|(key, value)| json!({ "key": key, "value": value }))
                    .collect();
            }
            span
        })
        .collect();
    let spanset = json!({ "spans": spans, "matched": matched.len() });
    let mut stats: std::collections::BTreeMap<&str, (u32, u32)> = Default::default();
    for s in &trace.spans {
        let entry = stats.entry(&s.service).or_default();
        entry.0 += 1;
        entry.1 += u32::from(s.error);
    }
    let service_stats: serde_json::Map<String, Value> = stats
        .into_iter()
        .map(|(service, (spans, errors))| {
            let mut stat = json!({ "spanCount": spans });
            if errors > 0 {
                stat["errorCount"] = json!(errors);
            }
            (service.to_owned(), stat)
        })
        .collect();
    let id = hex(&trace.id);
    let trimmed = id.trim_start_matches('0');
    let mut out = json!({
        "traceID": if trimmed.is_empty() { "0" } else { trimmed },
        "rootServiceName": root.map_or("<root span not yet received>", |r| r.service.as_str()),
        "startTimeUnixNano": start.to_string(),
        "spanSet": spanset,
        "spanSets": [spanset],
        "serviceStats": service_stats,
    });
    if let Some(root) = root.filter(|r| !r.name.is_empty()) {
        out["rootTraceName"] = json!(root.name);
    }
    let ms = (end - start).max(0) / 1_000_000;
    if ms > 0 {
        out["durationMs"] = json!(ms.min(i64::from(u32::MAX)));
    }
    (start, out)
}

/// The answer of `/api/search`: Tempo's `SearchResponse` as JSON.
pub(super) async fn search(
    engine: &Engine,
    tenant: &TenantId,
    search: &Search,
) -> Result<Value, QueryError> {
    let plan = Plan::new(&search.spans)?;
    let page = (search.limit * 4).max(100);
    let mut found: Vec<(i64, Value)> = Vec::new();
    let mut inspected = 0usize;
    let mut offset = 0;
    while found.len() < search.limit {
        let ids = candidates(engine, tenant, &plan, search.range, offset, page).await?;
        offset += ids.len();
        inspected += ids.len();
        for trace in traces(engine, tenant, &plan, &ids).await? {
            let duration = trace.duration();
            if duration < search.durations.0 || duration > search.durations.1 {
                continue;
            }
            let all = vec![true; trace.spans.len()];
            let set = evaluate(&search.spans, &trace, &all, &mut 0);
            if any(&set) {
                found.push(metadata(&trace, &set, search.spss));
            }
        }
        if ids.len() < page {
            break;
        }
    }
    found.sort_by_key(|t| std::cmp::Reverse(t.0));
    found.truncate(search.limit);
    let traces: Vec<Value> = found.into_iter().map(|(_, t)| t).collect();
    Ok(json!({
        "traces": traces,
        "metrics": {
            "inspectedTraces": inspected,
            "completedJobs": 1,
            "totalJobs": 1,
        },
    }))
}
