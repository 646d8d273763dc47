//! The syntax tree of a TraceQL query. Printing a tree gives its canonical
//! text, which parses back to the same tree.

use std::fmt;

/// A whole query: a search (spansets of traces) or a metrics query, with
/// its hints (`with(name=value, …)`).
#[derive(Debug, Clone, PartialEq)]
pub struct Query {
    pub body: Body,
    pub hints: Vec<(String, Static)>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Body {
    /// The traces whose spans a spanset expression finds.
    Search(Spanset),
    /// Time series of the spans a spanset expression finds.
    Metrics(Metrics),
}

/// What is evaluated over each trace's spans, giving spansets.
#[derive(Debug, Clone, PartialEq)]
pub enum Spanset {
    /// `{ expr }`: the spans for which `expr` is true (`{}` is every span).
    Filter(Expr),
    /// Two spanset expressions evaluated over the same spans and combined:
    /// `&&`, `||` (trace-level) or a structural relation.
    Binary(SpansetOp, Box<Spanset>, Box<Spanset>),
    /// Stages each fed the spansets of the one before (`a | b | …`), at
    /// least two.
    Pipeline(Vec<Stage>),
}

/// One stage of a pipeline.
#[derive(Debug, Clone, PartialEq)]
pub enum Stage {
    Spanset(Spanset),
    /// `count() > 2`, `avg(duration) > 20ms`: spansets whose aggregate
    /// compares so.
    Scalar(ScalarFilter),
    /// `by(expr)`: each spanset split by the value of `expr`.
    By(Expr),
    /// `coalesce()`: a trace's spansets merged into one.
    Coalesce,
    /// `select(a, b, …)`: fields returned with the spans.
    Select(Vec<Field>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpansetOp {
    And,
    Or,
    /// `>`: right-hand spans whose parent is a left-hand span.
    Child,
    /// `<`: right-hand spans that are the parent of a left-hand span.
    Parent,
    /// `>>`: right-hand spans below a left-hand span.
    Descendant,
    /// `<<`: right-hand spans above a left-hand span.
    Ancestor,
    /// `~`: right-hand spans with a sibling among the left-hand spans.
    Sibling,
    NotChild,
    NotParent,
    NotDescendant,
    NotAncestor,
    NotSibling,
    /// The `&` forms: the spans of both sides that take part in a relation.
    UnionChild,
    UnionParent,
    UnionDescendant,
    UnionAncestor,
    UnionSibling,
}

impl SpansetOp {
    pub fn symbol(self) -> &'static str {
        match self {
            SpansetOp::And => "&&",
            SpansetOp::Or => "||",
            SpansetOp::Child => ">",
            SpansetOp::Parent => "<",
            SpansetOp::Descendant => ">>",
            SpansetOp::Ancestor => "<<",
            SpansetOp::Sibling => "~",
            SpansetOp::NotChild => "!>",
            SpansetOp::NotParent => "!<",
            SpansetOp::NotDescendant => "!>>",
            SpansetOp::NotAncestor => "!<<",
            SpansetOp::NotSibling => "!~",
            SpansetOp::UnionChild => "&>",
            SpansetOp::UnionParent => "&<",
            SpansetOp::UnionDescendant => "&>>",
            SpansetOp::UnionAncestor => "&<<",
            SpansetOp::UnionSibling => "&~",
        }
    }

    /// `&&` and `||` bind less tightly than the structural operators.
    pub(crate) fn precedence(self) -> u8 {
        match self {
            SpansetOp::And | SpansetOp::Or => 1,
            _ => 2,
        }
    }
}

/// `aggregate op value`.
#[derive(Debug, Clone, PartialEq)]
pub struct ScalarFilter {
    pub aggregate: Aggregate,
    pub op: BinaryOp,
    pub value: Static,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Aggregate {
    Count,
    Avg(Expr),
    Min(Expr),
    Max(Expr),
    Sum(Expr),
}

/// A field expression, evaluated per span.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    Static(Static),
    Field(Field),
    Binary(BinaryOp, Box<Expr>, Box<Expr>),
    /// `-x`.
    Negate(Box<Expr>),
    /// `!x`.
    Not(Box<Expr>),
    /// `x != nil`.
    Exists(Box<Expr>),
    /// `x = nil`.
    Missing(Box<Expr>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinaryOp {
    And,
    Or,
    Eq,
    Neq,
    Lt,
    Lte,
    Gt,
    Gte,
    Regex,
    NotRegex,
    Add,
    Sub,
    Mul,
    Div,
    Mod,
    Pow,
}

impl BinaryOp {
    pub fn symbol(self) -> &'static str {
        match self {
            BinaryOp::And => "&&",
            BinaryOp::Or => "||",
            BinaryOp::Eq => "=",
            BinaryOp::Neq => "!=",
            BinaryOp::Lt => "<",
            BinaryOp::Lte => "<=",
            BinaryOp::Gt => ">",
            BinaryOp::Gte => ">=",
            BinaryOp::Regex => "=~",
            BinaryOp::NotRegex => "!~",
            BinaryOp::Add => "+",
            BinaryOp::Sub => "-",
            BinaryOp::Mul => "*",
            BinaryOp::Div => "/",
            BinaryOp::Mod => "%",
            BinaryOp::Pow => "^",
        }
    }

    /// Binding strength, as Tempo's grammar has it: `&&` and `||` alike
    /// (left to right), then comparisons, `+ -`, `* / %`, `^`.
    pub(crate) fn precedence(self) -> u8 {
        match self {
            BinaryOp::And | BinaryOp::Or => 1,
            BinaryOp::Eq
            | BinaryOp::Neq
            | BinaryOp::Lt
            | BinaryOp::Lte
            | BinaryOp::Gt
            | BinaryOp::Gte
            | BinaryOp::Regex
            | BinaryOp::NotRegex => 2,
            BinaryOp::Add | BinaryOp::Sub => 3,
            BinaryOp::Mul | BinaryOp::Div | BinaryOp::Mod => 5,
            BinaryOp::Pow => 6,
        }
    }

    pub fn is_comparison(self) -> bool {
        self.precedence() == 2
    }

    pub fn is_arithmetic(self) -> bool {
        self.precedence() >= 3
    }
}

/// A literal.
#[derive(Debug, Clone, PartialEq)]
pub enum Static {
    Str(String),
    Int(i64),
    Float(f64),
    /// Nanoseconds.
    Duration(i64),
    Bool(bool),
    Status(Status),
    Kind(Kind),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Status {
    Unset,
    Ok,
    Error,
}

impl Status {
    pub const ALL: [Status; 3] = [Status::Error, Status::Ok, Status::Unset];

    pub fn name(self) -> &'static str {
        match self {
            Status::Unset => "unset",
            Status::Ok => "ok",
            Status::Error => "error",
        }
    }

    /// OTLP's `StatusCode`.
    pub fn code(self) -> i32 {
        match self {
            Status::Unset => 0,
            Status::Ok => 1,
            Status::Error => 2,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Unspecified,
    Internal,
    Server,
    Client,
    Producer,
    Consumer,
}

impl Kind {
    pub const ALL: [Kind; 6] = [
        Kind::Unspecified,
        Kind::Internal,
        Kind::Server,
        Kind::Client,
        Kind::Producer,
        Kind::Consumer,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Kind::Unspecified => "unspecified",
            Kind::Internal => "internal",
            Kind::Server => "server",
            Kind::Client => "client",
            Kind::Producer => "producer",
            Kind::Consumer => "consumer",
        }
    }

    /// OTLP's `SpanKind`.
    pub fn code(self) -> i32 {
        match self {
            Kind::Unspecified => 0,
            Kind::Internal => 1,
            Kind::Server => 2,
            Kind::Client => 3,
            Kind::Producer => 4,
            Kind::Consumer => 5,
        }
    }
}

/// What a span has: an attribute or an intrinsic.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Field {
    Attribute(Scope, String),
    Intrinsic(Intrinsic),
}

/// Where an attribute is looked up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scope {
    /// `.x`: the span's, else its resource's (then its events', links').
    Any,
    Span,
    Resource,
    Event,
    Link,
    Instrumentation,
}

impl Scope {
    pub fn prefix(self) -> &'static str {
        match self {
            Scope::Any => ".",
            Scope::Span => "span.",
            Scope::Resource => "resource.",
            Scope::Event => "event.",
            Scope::Link => "link.",
            Scope::Instrumentation => "instrumentation.",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Intrinsic {
    Name,
    Status,
    StatusMessage,
    Duration,
    Kind,
    SpanId,
    ParentId,
    ChildCount,
    TraceId,
    TraceDuration,
    RootName,
    RootServiceName,
    EventName,
    EventTimeSinceStart,
    LinkTraceId,
    LinkSpanId,
    InstrumentationName,
    InstrumentationVersion,
    NestedSetLeft,
    NestedSetRight,
    NestedSetParent,
}

impl Intrinsic {
    /// How it is written: unscoped where TraceQL has an unscoped form.
    pub fn name(self) -> &'static str {
        match self {
            Intrinsic::Name => "name",
            Intrinsic::Status => "status",
            Intrinsic::StatusMessage => "statusMessage",
            Intrinsic::Duration => "duration",
            Intrinsic::Kind => "kind",
            Intrinsic::SpanId => "span:id",
            Intrinsic::ParentId => "span:parentID",
            Intrinsic::ChildCount => "span:childCount",
            Intrinsic::TraceId => "trace:id",
            Intrinsic::TraceDuration => "traceDuration",
            Intrinsic::RootName => "rootName",
            Intrinsic::RootServiceName => "rootServiceName",
            Intrinsic::EventName => "event:name",
            Intrinsic::EventTimeSinceStart => "event:timeSinceStart",
            Intrinsic::LinkTraceId => "link:traceID",
            Intrinsic::LinkSpanId => "link:spanID",
            Intrinsic::InstrumentationName => "instrumentation:name",
            Intrinsic::InstrumentationVersion => "instrumentation:version",
            Intrinsic::NestedSetLeft => "nestedSetLeft",
            Intrinsic::NestedSetRight => "nestedSetRight",
            Intrinsic::NestedSetParent => "nestedSetParent",
        }
    }

    /// The intrinsics of a word without a scope (`name`, `duration`, …).
    pub fn unscoped(word: &str) -> Option<Intrinsic> {
        Some(match word {
            "name" => Intrinsic::Name,
            "status" => Intrinsic::Status,
            "statusMessage" => Intrinsic::StatusMessage,
            "duration" => Intrinsic::Duration,
            "kind" => Intrinsic::Kind,
            "childCount" => Intrinsic::ChildCount,
            "traceDuration" => Intrinsic::TraceDuration,
            "rootName" => Intrinsic::RootName,
            "rootServiceName" => Intrinsic::RootServiceName,
            "nestedSetLeft" => Intrinsic::NestedSetLeft,
            "nestedSetRight" => Intrinsic::NestedSetRight,
            "nestedSetParent" => Intrinsic::NestedSetParent,
            _ => return None,
        })
    }

    /// The intrinsic of `scope:word` (`span:name`, `trace:rootService`, …).
    pub fn scoped(scope: &str, word: &str) -> Option<Intrinsic> {
        Some(match (scope, word) {
            ("span", "name") => Intrinsic::Name,
            ("span", "status") => Intrinsic::Status,
            ("span", "statusMessage") => Intrinsic::StatusMessage,
            ("span", "duration") => Intrinsic::Duration,
            ("span", "kind") => Intrinsic::Kind,
            ("span", "id") => Intrinsic::SpanId,
            ("span", "parentID") => Intrinsic::ParentId,
            ("span", "childCount") => Intrinsic::ChildCount,
            ("trace", "id") => Intrinsic::TraceId,
            ("trace", "duration") => Intrinsic::TraceDuration,
            ("trace", "rootName") => Intrinsic::RootName,
            ("trace", "rootService") => Intrinsic::RootServiceName,
            ("event", "name") => Intrinsic::EventName,
            ("event", "timeSinceStart") => Intrinsic::EventTimeSinceStart,
            ("link", "traceID") => Intrinsic::LinkTraceId,
            ("link", "spanID") => Intrinsic::LinkSpanId,
            ("instrumentation", "name") => Intrinsic::InstrumentationName,
            ("instrumentation", "version") => Intrinsic::InstrumentationVersion,
            _ => return None,
        })
    }

    /// The type of its values.
    pub fn value_type(self) -> Type {
        match self {
            Intrinsic::Name
            | Intrinsic::StatusMessage
            | Intrinsic::SpanId
            | Intrinsic::ParentId
            | Intrinsic::TraceId
            | Intrinsic::RootName
            | Intrinsic::RootServiceName
            | Intrinsic::EventName
            | Intrinsic::LinkTraceId
            | Intrinsic::LinkSpanId
            | Intrinsic::InstrumentationName
            | Intrinsic::InstrumentationVersion => Type::Str,
            Intrinsic::Status => Type::Status,
            Intrinsic::Kind => Type::Kind,
            Intrinsic::Duration | Intrinsic::TraceDuration | Intrinsic::EventTimeSinceStart => {
                Type::Duration
            }
            Intrinsic::ChildCount
            | Intrinsic::NestedSetLeft
            | Intrinsic::NestedSetRight
            | Intrinsic::NestedSetParent => Type::Int,
        }
    }
}

/// The type of a value, as far as a query's text tells.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Type {
    Str,
    Int,
    Float,
    Duration,
    Bool,
    Status,
    Kind,
    /// An attribute: its type is known only per span.
    Any,
}

impl Type {
    pub fn is_numeric(self) -> bool {
        matches!(self, Type::Int | Type::Float | Type::Duration)
    }
}

/// A metrics query: a spanset expression, a function of its spans over
/// time, then second stages.
#[derive(Debug, Clone, PartialEq)]
pub struct Metrics {
    pub spans: Spanset,
    pub function: Function,
    pub by: Vec<Field>,
    pub then: Vec<SecondStage>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Function {
    Rate,
    CountOverTime,
    MinOverTime(Field),
    MaxOverTime(Field),
    SumOverTime(Field),
    AvgOverTime(Field),
    QuantileOverTime(Field, Vec<f64>),
    HistogramOverTime(Field),
    /// `compare({filter}, top, start, end)`: the attribute values of the
    /// spans the filter finds (optionally in `[start, end)`) beside the
    /// others'.
    Compare {
        selection: Expr,
        top: u32,
        window: Option<(i64, i64)>,
    },
}

impl Function {
    pub fn name(&self) -> &'static str {
        match self {
            Function::Rate => "rate",
            Function::CountOverTime => "count_over_time",
            Function::MinOverTime(_) => "min_over_time",
            Function::MaxOverTime(_) => "max_over_time",
            Function::SumOverTime(_) => "sum_over_time",
            Function::AvgOverTime(_) => "avg_over_time",
            Function::QuantileOverTime(..) => "quantile_over_time",
            Function::HistogramOverTime(_) => "histogram_over_time",
            Function::Compare { .. } => "compare",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum SecondStage {
    /// At each step, the `k` series of highest value.
    TopK(u32),
    BottomK(u32),
    /// Only the samples that compare so.
    Filter(BinaryOp, f64),
}

/// Writes text as a double-quoted TraceQL string.
fn quoted(f: &mut fmt::Formatter, text: &str) -> fmt::Result {
    f.write_str("\"")?;
    for c in text.chars() {
        match c {
            '"' => f.write_str("\\\"")?,
            '\\' => f.write_str("\\\\")?,
            '\n' => f.write_str("\\n")?,
            '\r' => f.write_str("\\r")?,
            '\t' => f.write_str("\\t")?,
            c if c.is_control() => write!(f, "\\u{:04x}", u32::from(c))?,
            c => write!(f, "{c}")?,
        }
    }
    f.write_str("\"")
}

/// A duration as TraceQL writes it: the largest unit that divides it.
pub fn duration_text(ns: i64) -> String {
    const UNITS: [(i64, &str); 6] = [
        (3_600_000_000_000, "h"),
        (60_000_000_000, "m"),
        (1_000_000_000, "s"),
        (1_000_000, "ms"),
        (1_000, "us"),
        (1, "ns"),
    ];
    let (size, unit) = UNITS
        .into_iter()
        .find(|(size, _)| ns % size == 0)
        .unwrap_or((1, "ns"));
    format!("{}{unit}", ns / size)
}

/// A float that reads back as a float (`1.0`, not `1`).
fn float_text(v: f64) -> String {
    let text = format!("{v:?}");
    if text.contains(['.', 'e', 'E', 'N', 'n']) {
        text
    } else {
        format!("{text}.0")
    }
}

impl fmt::Display for Static {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            Static::Str(s) => quoted(f, s),
            // Its digits alone are beyond `i64`: `-` applies to a read number.
            Static::Int(i64::MIN) => f.write_str("minInt"),
            Static::Int(i) => write!(f, "{i}"),
            Static::Float(v) => f.write_str(&float_text(*v)),
            Static::Duration(ns) if *ns < 0 => write!(f, "-{}", duration_text(-ns)),
            Static::Duration(ns) => f.write_str(&duration_text(*ns)),
            Static::Bool(b) => write!(f, "{b}"),
            Static::Status(s) => f.write_str(s.name()),
            Static::Kind(k) => f.write_str(k.name()),
        }
    }
}

/// Whether an attribute's name is written without quotes.
fn bare_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name
            .chars()
            .all(|c| !c.is_whitespace() && !"{}()=~!<>&|^,\"\\+-*/%".contains(c))
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            Field::Intrinsic(i) => f.write_str(i.name()),
            Field::Attribute(scope, name) => {
                f.write_str(scope.prefix())?;
                if bare_name(name) {
                    f.write_str(name)
                } else {
                    // Quoted names escape only `"` and `\`.
                    write!(f, "\"{}\"", name.replace('\\', "\\\\").replace('"', "\\\""))
                }
            }
        }
    }
}

impl Expr {
    /// How tightly it binds as an operand (see [`BinaryOp::precedence`]):
    /// `-x` as `+ -`, `!x` above them, `x = nil` as a comparison.
    fn precedence(&self) -> u8 {
        match self {
            Expr::Static(_) | Expr::Field(_) => u8::MAX,
            Expr::Binary(op, ..) => op.precedence(),
            Expr::Negate(_) => 3,
            Expr::Not(_) => 4,
            Expr::Exists(_) | Expr::Missing(_) => 2,
        }
    }

    /// Writes the expression, in parentheses when it binds less tightly
    /// than `min`.
    fn operand(&self, f: &mut fmt::Formatter, min: u8) -> fmt::Result {
        if self.precedence() < min {
            write!(f, "({self})")
        } else {
            write!(f, "{self}")
        }
    }
}

impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            Expr::Static(s) => write!(f, "{s}"),
            Expr::Field(field) => write!(f, "{field}"),
            Expr::Binary(op, lhs, rhs) => {
                // `^` binds right to left, the others left to right.
                let p = op.precedence();
                let (left, right) = if *op == BinaryOp::Pow {
                    (p + 1, p)
                } else {
                    (p, p + 1)
                };
                lhs.operand(f, left)?;
                write!(f, " {} ", op.symbol())?;
                rhs.operand(f, right)
            }
            // Their operands take the operators above them (as they are read).
            Expr::Negate(e) if matches!(**e, Expr::Negate(_)) => write!(f, "-{e}"),
            Expr::Negate(e) => {
                f.write_str("-")?;
                e.operand(f, 4)
            }
            Expr::Not(e) if matches!(**e, Expr::Not(_)) => write!(f, "!{e}"),
            Expr::Not(e) => {
                f.write_str("!")?;
                e.operand(f, 5)
            }
            Expr::Exists(e) => {
                e.operand(f, 3)?;
                f.write_str(" != nil")
            }
            Expr::Missing(e) => {
                e.operand(f, 3)?;
                f.write_str(" = nil")
            }
        }
    }
}

impl fmt::Display for Aggregate {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            Aggregate::Count => f.write_str("count()"),
            Aggregate::Avg(e) => write!(f, "avg({e})"),
            Aggregate::Min(e) => write!(f, "min({e})"),
            Aggregate::Max(e) => write!(f, "max({e})"),
            Aggregate::Sum(e) => write!(f, "sum({e})"),
        }
    }
}

fn list<T: fmt::Display>(f: &mut fmt::Formatter, items: &[T]) -> fmt::Result {
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            f.write_str(", ")?;
        }
        write!(f, "{item}")?;
    }
    Ok(())
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            Stage::Spanset(s) => write!(f, "{s}"),
            Stage::Scalar(s) => write!(f, "{} {} {}", s.aggregate, s.op.symbol(), s.value),
            Stage::By(e) => write!(f, "by({e})"),
            Stage::Coalesce => f.write_str("coalesce()"),
            Stage::Select(fields) => {
                f.write_str("select(")?;
                list(f, fields)?;
                f.write_str(")")
            }
        }
    }
}

impl fmt::Display for Spanset {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            Spanset::Filter(Expr::Static(Static::Bool(true))) => f.write_str("{ }"),
            Spanset::Filter(e) => write!(f, "{{ {e} }}"),
            Spanset::Binary(op, lhs, rhs) => {
                // Operands in parentheses where the reading would differ.
                let operand = |f: &mut fmt::Formatter, s: &Spanset, right: bool| match s {
                    Spanset::Binary(inner, ..)
                        if inner.precedence() < op.precedence()
                            || right && inner.precedence() == op.precedence() =>
                    {
                        write!(f, "({s})")
                    }
                    Spanset::Pipeline(_) => write!(f, "({s})"),
                    _ => write!(f, "{s}"),
                };
                operand(f, lhs, false)?;
                write!(f, " {} ", op.symbol())?;
                operand(f, rhs, true)
            }
            Spanset::Pipeline(stages) => {
                for (i, stage) in stages.iter().enumerate() {
                    if i > 0 {
                        f.write_str(" | ")?;
                    }
                    write!(f, "{stage}")?;
                }
                Ok(())
            }
        }
    }
}

impl fmt::Display for Function {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "{}(", self.name())?;
        match self {
            Function::Rate | Function::CountOverTime => {}
            Function::MinOverTime(field)
            | Function::MaxOverTime(field)
            | Function::SumOverTime(field)
            | Function::AvgOverTime(field)
            | Function::HistogramOverTime(field) => write!(f, "{field}")?,
            Function::QuantileOverTime(field, qs) => {
                write!(f, "{field}")?;
                for q in qs {
                    write!(f, ", {}", float_text(*q))?;
                }
            }
            Function::Compare {
                selection,
                top,
                window,
            } => {
                write!(f, "{}, {top}", Spanset::Filter(selection.clone()))?;
                if let Some((start, end)) = window {
                    write!(f, ", {start}, {end}")?;
                }
            }
        }
        f.write_str(")")
    }
}

impl fmt::Display for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "{} | {}", self.spans, self.function)?;
        if !self.by.is_empty() {
            f.write_str(" by (")?;
            list(f, &self.by)?;
            f.write_str(")")?;
        }
        for stage in &self.then {
            match stage {
                SecondStage::TopK(k) => write!(f, " | topk({k})")?,
                SecondStage::BottomK(k) => write!(f, " | bottomk({k})")?,
                SecondStage::Filter(op, v) => write!(f, " {} {}", op.symbol(), float_text(*v))?,
            }
        }
        Ok(())
    }
}

impl fmt::Display for Query {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match &self.body {
            Body::Search(s) => write!(f, "{s}")?,
            Body::Metrics(m) => write!(f, "{m}")?,
        }
        if !self.hints.is_empty() {
            f.write_str(" with (")?;
            for (i, (name, value)) in self.hints.iter().enumerate() {
                if i > 0 {
                    f.write_str(", ")?;
                }
                write!(f, "{name}={value}")?;
            }
            f.write_str(")")?;
        }
        Ok(())
    }
}
