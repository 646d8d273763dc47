//! TraceQL field expressions as DataFusion predicates over `spans`, so that
//! a scan evaluates them while decoding: span and resource attributes by
//! their OTLP type (a string literal meets string values only, a number
//! integers and doubles, a boolean booleans), span intrinsics as columns.
//! As in Tempo, a comparison with an attribute a span lacks is false
//! (`!=` included), and regular expressions match the whole value.
//! Expressions that need more than the span's row (trace intrinsics,
//! events, links, arithmetic on attributes) have no predicate.

use datafusion::common::ScalarValue;
use datafusion::functions::core::expr_fn::{coalesce, get_field};
use datafusion::functions::regex::expr_fn::regexp_like;
use datafusion::logical_expr::{Expr as Df, cast, not};
use datafusion::prelude::{col, lit};
use framelake_traceql::{BinaryOp, Expr, Field, Intrinsic, Scope, Static};

/// The resource attribute `spans` has a column of.
pub(super) const SERVICE_NAME: &str = "service.name";

/// An attribute's value: the struct of its typed fields, NULL when absent.
pub(super) fn attribute(scope: Scope, key: &str) -> Option<Df> {
    let of = |column: &str| get_field(col(column), key);
    Some(match scope {
        Scope::Span => of("attributes"),
        Scope::Resource => of("resource_attributes"),
        Scope::Instrumentation => of("scope_attributes"),
        // The span's, else its resource's.
        Scope::Any => coalesce(vec![of("attributes"), of("resource_attributes")]),
        Scope::Event | Scope::Link => return None,
    })
}

/// A typed value of an expression.
enum Value {
    /// An attribute's struct of typed fields.
    Attribute(Df),
    Str(Df),
    /// Integers, doubles and durations (nanoseconds), compared as doubles.
    Number(Df),
    Bool(Df),
    /// OTLP's status code.
    Status(Df),
    /// OTLP's span kind.
    Kind(Df),
}

fn value(expr: &Expr) -> Option<Value> {
    Some(match expr {
        Expr::Static(s) => match s {
            Static::Str(s) => Value::Str(lit(s.clone())),
            Static::Int(i) => Value::Number(lit(*i as f64)),
            Static::Float(v) => Value::Number(lit(*v)),
            Static::Duration(ns) => Value::Number(lit(*ns as f64)),
            Static::Bool(b) => Value::Bool(lit(*b)),
            Static::Status(s) => Value::Status(lit(s.code())),
            Static::Kind(k) => Value::Kind(lit(k.code())),
        },
        // The resource's service name has a column of its own.
        Expr::Field(Field::Attribute(Scope::Resource, key)) if key == SERVICE_NAME => {
            Value::Str(col("service_name"))
        }
        Expr::Field(Field::Attribute(scope, key)) => Value::Attribute(attribute(*scope, key)?),
        Expr::Field(Field::Intrinsic(i)) => match i {
            Intrinsic::Name => Value::Str(col("name")),
            Intrinsic::StatusMessage => Value::Str(col("status_message")),
            Intrinsic::Status => Value::Status(col("status_code")),
            Intrinsic::Kind => Value::Kind(col("kind")),
            Intrinsic::Duration => Value::Number(cast(col("duration_ns"), double())),
            Intrinsic::InstrumentationName => Value::Str(col("scope_name")),
            Intrinsic::InstrumentationVersion => Value::Str(col("scope_version")),
            // Nested-set numbers are not kept: a root's parent is -1 (as
            // in Tempo), any other span's a positive number, so that
            // `nestedSetParent < 0` finds roots.
            Intrinsic::NestedSetParent => Value::Number(
                datafusion::logical_expr::when(col("parent_span_id").is_null(), lit(-1.0))
                    .otherwise(lit(1.0))
                    .ok()?,
            ),
            _ => return None,
        },
        _ => Value::Bool(predicate(expr)?),
    })
}

fn double() -> datafusion::arrow::datatypes::DataType {
    datafusion::arrow::datatypes::DataType::Float64
}

/// An attribute's value as text, number or boolean (NULL when of another
/// type).
fn typed(attribute: Df, as_: &Value) -> Df {
    match as_ {
        Value::Str(_) => get_field(attribute, "str"),
        Value::Number(_) => coalesce(vec![
            get_field(attribute.clone(), "double"),
            cast(get_field(attribute, "int"), double()),
        ]),
        _ => get_field(attribute, "bool"),
    }
}

fn compare(op: BinaryOp, l: Df, r: Df) -> Df {
    match op {
        BinaryOp::Eq => l.eq(r),
        BinaryOp::Neq => l.not_eq(r),
        BinaryOp::Lt => l.lt(r),
        BinaryOp::Lte => l.lt_eq(r),
        BinaryOp::Gt => l.gt(r),
        _ => l.gt_eq(r),
    }
}

/// The predicate of a field expression evaluated per span, if it has one.
pub(super) fn predicate(expr: &Expr) -> Option<Df> {
    match expr {
        Expr::Static(Static::Bool(b)) => Some(lit(*b)),
        Expr::Static(_) => None,
        // A boolean attribute alone.
        Expr::Field(Field::Attribute(scope, key)) => {
            Some(get_field(attribute(*scope, key)?, "bool").is_true())
        }
        Expr::Field(_) => None,
        Expr::Not(e) => Some(not(predicate(e)?)),
        Expr::Exists(e) | Expr::Missing(e) => {
            let present = match e.as_ref() {
                Expr::Field(Field::Attribute(scope, key)) => attribute(*scope, key)?.is_not_null(),
                Expr::Field(Field::Intrinsic(_)) => lit(true),
                _ => return None,
            };
            Some(if matches!(expr, Expr::Exists(_)) {
                present
            } else {
                not(present)
            })
        }
        Expr::Negate(_) => None,
        Expr::Binary(op, l, r) => binary(*op, l, r),
    }
}

fn binary(op: BinaryOp, l: &Expr, r: &Expr) -> Option<Df> {
    match op {
        BinaryOp::And => return Some(predicate(l)?.and(predicate(r)?)),
        BinaryOp::Or => return Some(predicate(l)?.or(predicate(r)?)),
        BinaryOp::Regex | BinaryOp::NotRegex => {
            let Expr::Static(Static::Str(pattern)) = r else {
                return None;
            };
            let text = match value(l)? {
                Value::Str(e) => e,
                Value::Attribute(a) => get_field(a, "str"),
                _ => return Some(lit(false)),
            };
            let matched = regexp_like(text.clone(), lit(format!("^(?s:{pattern})$")), None);
            // A value that is absent or not text matches neither way.
            return Some(if op == BinaryOp::Regex {
                matched.is_true()
            } else {
                text.is_not_null().and(not(matched))
            });
        }
        op if op.is_arithmetic() => return None,
        _ => {}
    }
    // An attribute is read as the type of what it meets.
    let (l, r) = match (value(l)?, value(r)?) {
        (Value::Attribute(_), Value::Attribute(_)) => return None,
        // Attributes are never a status or a kind.
        (Value::Attribute(_), Value::Status(_) | Value::Kind(_))
        | (Value::Status(_) | Value::Kind(_), Value::Attribute(_)) => return Some(lit(false)),
        (Value::Attribute(a), other) => (kind(&other, typed(a, &other)), other),
        (other, Value::Attribute(a)) => {
            let typed = kind(&other, typed(a, &other));
            (other, typed)
        }
        pair => pair,
    };
    if std::mem::discriminant(&l) != std::mem::discriminant(&r) {
        // Values of types that never meet: no span matches.
        return Some(lit(false));
    }
    Some(compare(op, operand(l), operand(r)))
}

/// `expr` as a value of the same kind as `like`.
fn kind(like: &Value, expr: Df) -> Value {
    match like {
        Value::Attribute(_) => Value::Attribute(expr),
        Value::Str(_) => Value::Str(expr),
        Value::Number(_) => Value::Number(expr),
        Value::Bool(_) => Value::Bool(expr),
        Value::Status(_) => Value::Status(expr),
        Value::Kind(_) => Value::Kind(expr),
    }
}

fn operand(v: Value) -> Df {
    match v {
        Value::Attribute(e)
        | Value::Str(e)
        | Value::Number(e)
        | Value::Bool(e)
        | Value::Status(e)
        | Value::Kind(e) => e,
    }
}

/// A scalar of the views' trace ids.
pub(super) fn trace_id(id: [u8; 16]) -> Df {
    lit(ScalarValue::FixedSizeBinary(16, Some(id.to_vec())))
}
