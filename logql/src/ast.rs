//! The syntax tree of a LogQL query. `Display` prints the canonical text.

use std::fmt::{self, Display, Formatter};

use crate::units::format_duration;

/// A whole query: lines (a log query) or samples (a metric query).
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    Log(LogExpr),
    Metric(MetricExpr),
}

/// A stream selector and the stages its lines go through.
#[derive(Debug, Clone, PartialEq)]
pub struct LogExpr {
    pub selector: Vec<Matcher>,
    pub pipeline: Vec<Stage>,
}

/// `name op "value"`: of a stream selector, `drop`/`keep`, or a string label filter.
#[derive(Debug, Clone, PartialEq)]
pub struct Matcher {
    pub name: String,
    pub op: MatchOp,
    pub value: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatchOp {
    /// `=` (also `==` in label filters)
    Eq,
    /// `!=`
    Neq,
    /// `=~`: the regular expression matches the whole value.
    Re,
    /// `!~`
    Nre,
}

/// One stage of a log pipeline.
#[derive(Debug, Clone, PartialEq)]
pub enum Stage {
    /// `|= "a" or "b"`, `!~ "re"`, `|> "<_> pattern"`: keeps lines by content.
    LineFilter { op: LineOp, patterns: Vec<String> },
    /// `| json` (every field) or `| json a="x.y", b`.
    Json(Vec<Extraction>),
    /// `| logfmt [--strict] [--keep-empty] [a="key", …]`.
    Logfmt {
        strict: bool,
        keep_empty: bool,
        extractions: Vec<Extraction>,
    },
    /// `| regexp "(?P<name>…)"`: named groups become labels.
    Regexp(String),
    /// `| pattern "<ip> - <_> <status>"`.
    Pattern(String),
    /// `| unpack`: a JSON object of labels and `_entry`, as Promtail's `pack` writes it.
    Unpack,
    /// `| line_format "{{.a}}"`: a Go template that rewrites the line.
    LineFormat(String),
    /// `| label_format a=b, c="{{.d}}"`.
    LabelFormat(Vec<LabelFormat>),
    /// `| status >= 500 and method="GET"`.
    LabelFilter(LabelFilter),
    /// `| drop a, b="x"`: labels removed (by name, or where they match).
    Drop(Vec<LabelSelector>),
    /// `| keep a, b="x"`: only these labels kept.
    Keep(Vec<LabelSelector>),
    /// `| decolorize`: ANSI colour sequences removed from the line.
    Decolorize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineOp {
    /// `|=`
    Contains,
    /// `!=`
    NotContains,
    /// `|~`: the regular expression matches somewhere in the line.
    Regex,
    /// `!~`
    NotRegex,
    /// `|>`: a pattern (`<_>` for anything) matches the line.
    Pattern,
    /// `!>`
    NotPattern,
}

/// A label a parser extracts: `label="expression"`, or `label` (its own name).
#[derive(Debug, Clone, PartialEq)]
pub struct Extraction {
    pub label: String,
    pub expression: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum LabelFormat {
    /// `to=from`: renames a label.
    Rename { to: String, from: String },
    /// `to="{{…}}"`: sets a label from a Go template.
    Template { to: String, template: String },
}

/// A predicate over labels.
#[derive(Debug, Clone, PartialEq)]
pub enum LabelFilter {
    And(Box<LabelFilter>, Box<LabelFilter>),
    Or(Box<LabelFilter>, Box<LabelFilter>),
    /// `a = "x"`, `a =~ "re"`.
    String(Matcher),
    /// `a >= 500`: the label read as a number (a failure sets `__error__`).
    Number {
        name: String,
        op: CmpOp,
        value: f64,
    },
    /// `a > 250ms`: the label read as a duration, in nanoseconds.
    Duration {
        name: String,
        op: CmpOp,
        value: i64,
    },
    /// `a > 20MB`: the label read as a byte size.
    Bytes {
        name: String,
        op: CmpOp,
        value: u64,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmpOp {
    Eq,
    Neq,
    Gt,
    Ge,
    Lt,
    Le,
}

/// A label of `drop` or `keep`: by name, or only where it matches.
#[derive(Debug, Clone, PartialEq)]
pub struct LabelSelector {
    pub name: String,
    pub matcher: Option<(MatchOp, String)>,
}

/// The lines of a range aggregation: `{…} | … [5m] offset 1h`.
#[derive(Debug, Clone, PartialEq)]
pub struct LogRange {
    pub log: LogExpr,
    /// The window, in nanoseconds.
    pub range: i64,
    /// How far back the windows are moved, in nanoseconds.
    pub offset: i64,
    pub unwrap: Option<Unwrap>,
}

/// `| unwrap duration(label) | __error__=""`: the sample value of each line.
#[derive(Debug, Clone, PartialEq)]
pub struct Unwrap {
    pub label: String,
    pub conversion: Conversion,
    /// Label filters after the unwrap (usually on `__error__`).
    pub filters: Vec<LabelFilter>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Conversion {
    /// The label as a number.
    Number,
    /// `duration(…)`, `duration_seconds(…)`: a duration in seconds.
    Duration,
    /// `bytes(…)`: a byte size.
    Bytes,
}

/// An expression whose value is samples.
#[derive(Debug, Clone, PartialEq)]
pub enum MetricExpr {
    /// `count_over_time({…}[5m])`, `quantile_over_time(0.99, … | unwrap x [1m]) by (a)`.
    Range {
        op: RangeOp,
        param: Option<f64>,
        range: Box<LogRange>,
        grouping: Option<Grouping>,
    },
    /// `sum by (a) (…)`, `topk(5, …)`.
    Vector {
        op: VectorOp,
        param: Option<f64>,
        inner: Box<MetricExpr>,
        grouping: Option<Grouping>,
    },
    /// `a / b`, `a > bool 2`, `a * on (x) group_left (y) b`.
    Binary {
        op: BinOp,
        lhs: Box<MetricExpr>,
        rhs: Box<MetricExpr>,
        modifier: BinModifier,
    },
    /// A number.
    Literal(f64),
    /// `vector(1)`: one sample without labels at every step.
    Vector1(f64),
    /// `label_replace(expr, "dst", "replacement", "src", "regex")`.
    LabelReplace {
        inner: Box<MetricExpr>,
        dst: String,
        replacement: String,
        src: String,
        regex: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeOp {
    Rate,
    RateCounter,
    CountOverTime,
    BytesRate,
    BytesOverTime,
    AbsentOverTime,
    SumOverTime,
    AvgOverTime,
    MaxOverTime,
    MinOverTime,
    FirstOverTime,
    LastOverTime,
    StddevOverTime,
    StdvarOverTime,
    QuantileOverTime,
}

impl RangeOp {
    pub const ALL: [RangeOp; 15] = [
        RangeOp::Rate,
        RangeOp::RateCounter,
        RangeOp::CountOverTime,
        RangeOp::BytesRate,
        RangeOp::BytesOverTime,
        RangeOp::AbsentOverTime,
        RangeOp::SumOverTime,
        RangeOp::AvgOverTime,
        RangeOp::MaxOverTime,
        RangeOp::MinOverTime,
        RangeOp::FirstOverTime,
        RangeOp::LastOverTime,
        RangeOp::StddevOverTime,
        RangeOp::StdvarOverTime,
        RangeOp::QuantileOverTime,
    ];

    pub fn name(self) -> &'static str {
        match self {
            RangeOp::Rate => "rate",
            RangeOp::RateCounter => "rate_counter",
            RangeOp::CountOverTime => "count_over_time",
            RangeOp::BytesRate => "bytes_rate",
            RangeOp::BytesOverTime => "bytes_over_time",
            RangeOp::AbsentOverTime => "absent_over_time",
            RangeOp::SumOverTime => "sum_over_time",
            RangeOp::AvgOverTime => "avg_over_time",
            RangeOp::MaxOverTime => "max_over_time",
            RangeOp::MinOverTime => "min_over_time",
            RangeOp::FirstOverTime => "first_over_time",
            RangeOp::LastOverTime => "last_over_time",
            RangeOp::StddevOverTime => "stddev_over_time",
            RangeOp::StdvarOverTime => "stdvar_over_time",
            RangeOp::QuantileOverTime => "quantile_over_time",
        }
    }

    /// Whether the aggregation reads sample values (`unwrap`) rather than
    /// counting lines or bytes; `rate` does either.
    pub fn unwrap(self) -> Option<bool> {
        match self {
            RangeOp::Rate => None,
            RangeOp::CountOverTime
            | RangeOp::BytesRate
            | RangeOp::BytesOverTime
            | RangeOp::AbsentOverTime => Some(false),
            _ => Some(true),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VectorOp {
    Sum,
    Avg,
    Min,
    Max,
    Count,
    Stddev,
    Stdvar,
    Topk,
    Bottomk,
    Sort,
    SortDesc,
}

impl VectorOp {
    pub const ALL: [VectorOp; 11] = [
        VectorOp::Sum,
        VectorOp::Avg,
        VectorOp::Min,
        VectorOp::Max,
        VectorOp::Count,
        VectorOp::Stddev,
        VectorOp::Stdvar,
        VectorOp::Topk,
        VectorOp::Bottomk,
        VectorOp::Sort,
        VectorOp::SortDesc,
    ];

    pub fn name(self) -> &'static str {
        match self {
            VectorOp::Sum => "sum",
            VectorOp::Avg => "avg",
            VectorOp::Min => "min",
            VectorOp::Max => "max",
            VectorOp::Count => "count",
            VectorOp::Stddev => "stddev",
            VectorOp::Stdvar => "stdvar",
            VectorOp::Topk => "topk",
            VectorOp::Bottomk => "bottomk",
            VectorOp::Sort => "sort",
            VectorOp::SortDesc => "sort_desc",
        }
    }
}

/// `by (a, b)` or `without (a)`.
#[derive(Debug, Clone, PartialEq)]
pub struct Grouping {
    pub without: bool,
    pub labels: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinOp {
    Or,
    And,
    Unless,
    Eq,
    Neq,
    Gt,
    Ge,
    Lt,
    Le,
    Add,
    Sub,
    Mul,
    Div,
    Mod,
    Pow,
}

impl BinOp {
    pub fn symbol(self) -> &'static str {
        match self {
            BinOp::Or => "or",
            BinOp::And => "and",
            BinOp::Unless => "unless",
            BinOp::Eq => "==",
            BinOp::Neq => "!=",
            BinOp::Gt => ">",
            BinOp::Ge => ">=",
            BinOp::Lt => "<",
            BinOp::Le => "<=",
            BinOp::Add => "+",
            BinOp::Sub => "-",
            BinOp::Mul => "*",
            BinOp::Div => "/",
            BinOp::Mod => "%",
            BinOp::Pow => "^",
        }
    }

    /// Binding strength: higher binds tighter.
    pub(crate) fn precedence(self) -> u8 {
        match self {
            BinOp::Or => 1,
            BinOp::And | BinOp::Unless => 2,
            BinOp::Eq | BinOp::Neq | BinOp::Gt | BinOp::Ge | BinOp::Lt | BinOp::Le => 3,
            BinOp::Add | BinOp::Sub => 4,
            BinOp::Mul | BinOp::Div | BinOp::Mod => 5,
            BinOp::Pow => 6,
        }
    }

    pub fn is_comparison(self) -> bool {
        self.precedence() == 3
    }

    pub fn is_set(self) -> bool {
        matches!(self, BinOp::Or | BinOp::And | BinOp::Unless)
    }
}

/// What follows a binary operator: `bool`, `on (…)`/`ignoring (…)`,
/// `group_left (…)`/`group_right (…)`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BinModifier {
    pub return_bool: bool,
    pub matching: Option<VectorMatching>,
    pub group: Option<GroupSide>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct VectorMatching {
    /// `on` (true) or `ignoring` (false).
    pub on: bool,
    pub labels: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct GroupSide {
    /// `group_left` (true) or `group_right` (false).
    pub left: bool,
    /// Labels of the "one" side copied into the result.
    pub include: Vec<String>,
}

/// A string as LogQL writes it (double quotes, Go escapes).
fn quoted(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Items as LogQL lists them: `a, b, c`.
fn list<T: Display>(items: &[T]) -> String {
    items
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

impl Display for Expr {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self {
            Expr::Log(e) => e.fmt(f),
            Expr::Metric(e) => e.fmt(f),
        }
    }
}

impl Display for MatchOp {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            MatchOp::Eq => "=",
            MatchOp::Neq => "!=",
            MatchOp::Re => "=~",
            MatchOp::Nre => "!~",
        })
    }
}

impl Display for Matcher {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}{}", self.name, self.op, quoted(&self.value))
    }
}

impl Display for LogExpr {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        let matchers: Vec<String> = self.selector.iter().map(ToString::to_string).collect();
        write!(f, "{{{}}}", matchers.join(", "))?;
        for stage in &self.pipeline {
            write!(f, " {stage}")?;
        }
        Ok(())
    }
}

impl Display for LineOp {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LineOp::Contains => "|=",
            LineOp::NotContains => "!=",
            LineOp::Regex => "|~",
            LineOp::NotRegex => "!~",
            LineOp::Pattern => "|>",
            LineOp::NotPattern => "!>",
        })
    }
}

impl Display for Extraction {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match &self.expression {
            Some(e) => write!(f, "{}={}", self.label, quoted(e)),
            None => f.write_str(&self.label),
        }
    }
}

impl Display for LabelSelector {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match &self.matcher {
            Some((op, value)) => write!(f, "{}{op}{}", self.name, quoted(value)),
            None => f.write_str(&self.name),
        }
    }
}

impl Display for Stage {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self {
            Stage::LineFilter { op, patterns } => {
                let patterns: Vec<String> = patterns.iter().map(|p| quoted(p)).collect();
                write!(f, "{op} {}", patterns.join(" or "))
            }
            Stage::Json(e) if e.is_empty() => f.write_str("| json"),
            Stage::Json(e) => write!(f, "| json {}", list(e)),
            Stage::Logfmt {
                strict,
                keep_empty,
                extractions: e,
            } => {
                f.write_str("| logfmt")?;
                if *strict {
                    f.write_str(" --strict")?;
                }
                if *keep_empty {
                    f.write_str(" --keep-empty")?;
                }
                if !e.is_empty() {
                    write!(f, " {}", list(e))?;
                }
                Ok(())
            }
            Stage::Regexp(re) => write!(f, "| regexp {}", quoted(re)),
            Stage::Pattern(p) => write!(f, "| pattern {}", quoted(p)),
            Stage::Unpack => f.write_str("| unpack"),
            Stage::LineFormat(t) => write!(f, "| line_format {}", quoted(t)),
            Stage::LabelFormat(list) => {
                let items: Vec<String> = list
                    .iter()
                    .map(|l| match l {
                        LabelFormat::Rename { to, from } => format!("{to}={from}"),
                        LabelFormat::Template { to, template } => {
                            format!("{to}={}", quoted(template))
                        }
                    })
                    .collect();
                write!(f, "| label_format {}", items.join(", "))
            }
            Stage::LabelFilter(filter) => write!(f, "| {filter}"),
            Stage::Drop(list) => write!(f, "| drop {}", self::list(list)),
            Stage::Keep(list) => write!(f, "| keep {}", self::list(list)),
            Stage::Decolorize => f.write_str("| decolorize"),
        }
    }
}

impl Display for CmpOp {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CmpOp::Eq => "==",
            CmpOp::Neq => "!=",
            CmpOp::Gt => ">",
            CmpOp::Ge => ">=",
            CmpOp::Lt => "<",
            CmpOp::Le => "<=",
        })
    }
}

impl Display for LabelFilter {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        // `and` binds tighter than `or`, both associate to the left: an `or`
        // under an `and`, and a right operand of its own kind, need parentheses.
        match self {
            LabelFilter::And(a, b) => {
                match **a {
                    LabelFilter::Or(..) => write!(f, "({a})")?,
                    _ => write!(f, "{a}")?,
                }
                match **b {
                    LabelFilter::Or(..) | LabelFilter::And(..) => write!(f, " and ({b})"),
                    _ => write!(f, " and {b}"),
                }
            }
            LabelFilter::Or(a, b) => match **b {
                LabelFilter::Or(..) => write!(f, "{a} or ({b})"),
                _ => write!(f, "{a} or {b}"),
            },
            LabelFilter::String(m) => m.fmt(f),
            LabelFilter::Number { name, op, value } => write!(f, "{name}{op}{value}"),
            LabelFilter::Duration { name, op, value } => {
                write!(f, "{name}{op}{}", format_duration(*value))
            }
            LabelFilter::Bytes { name, op, value } => write!(f, "{name}{op}{value}B"),
        }
    }
}

impl Display for LogRange {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        self.log.fmt(f)?;
        if let Some(u) = &self.unwrap {
            match u.conversion {
                Conversion::Number => write!(f, " | unwrap {}", u.label)?,
                Conversion::Duration => write!(f, " | unwrap duration({})", u.label)?,
                Conversion::Bytes => write!(f, " | unwrap bytes({})", u.label)?,
            }
            for filter in &u.filters {
                write!(f, " | {filter}")?;
            }
        }
        write!(f, " [{}]", format_duration(self.range))?;
        if self.offset != 0 {
            write!(f, " offset {}", format_duration(self.offset))?;
        }
        Ok(())
    }
}

impl Display for Grouping {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        let word = if self.without { "without" } else { "by" };
        write!(f, "{word} ({})", list(&self.labels))
    }
}

impl Display for MetricExpr {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self {
            MetricExpr::Range {
                op,
                param,
                range,
                grouping,
            } => {
                write!(f, "{}(", op.name())?;
                if let Some(p) = param {
                    write!(f, "{p}, ")?;
                }
                write!(f, "{range})")?;
                if let Some(g) = grouping {
                    write!(f, " {g}")?;
                }
                Ok(())
            }
            MetricExpr::Vector {
                op,
                param,
                inner,
                grouping,
            } => {
                f.write_str(op.name())?;
                if let Some(g) = grouping {
                    write!(f, " {g} ")?;
                }
                f.write_str("(")?;
                if let Some(p) = param {
                    write!(f, "{p}, ")?;
                }
                write!(f, "{inner})")
            }
            MetricExpr::Binary {
                op,
                lhs,
                rhs,
                modifier,
            } => {
                // Parentheses where the reading would differ: `^` binds
                // right to left, the others left to right.
                let operand = |f: &mut Formatter<'_>, e: &MetricExpr, right: bool| {
                    let parens = match e {
                        MetricExpr::Binary { op: inner, .. } => {
                            inner.precedence() < op.precedence()
                                || inner.precedence() == op.precedence()
                                    && right != (*op == BinOp::Pow)
                        }
                        MetricExpr::Literal(v) => *v < 0.0,
                        _ => false,
                    };
                    if parens {
                        write!(f, "({e})")
                    } else {
                        write!(f, "{e}")
                    }
                };
                operand(f, lhs, false)?;
                write!(f, " {}", op.symbol())?;
                if modifier.return_bool {
                    f.write_str(" bool")?;
                }
                if let Some(m) = &modifier.matching {
                    let word = if m.on { "on" } else { "ignoring" };
                    write!(f, " {word} ({})", list(&m.labels))?;
                }
                if let Some(g) = &modifier.group {
                    let word = if g.left { "group_left" } else { "group_right" };
                    write!(f, " {word} ({})", list(&g.include))?;
                }
                f.write_str(" ")?;
                operand(f, rhs, true)
            }
            MetricExpr::Literal(v) => write!(f, "{v}"),
            MetricExpr::Vector1(v) => write!(f, "vector({v})"),
            MetricExpr::LabelReplace {
                inner,
                dst,
                replacement,
                src,
                regex,
            } => write!(
                f,
                "label_replace({inner}, {}, {}, {}, {})",
                quoted(dst),
                quoted(replacement),
                quoted(src),
                quoted(regex)
            ),
        }
    }
}
