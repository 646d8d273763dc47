//! TraceQL's parser: precedence as Tempo's grammar has it (`|` lowest, then
//! `&&`/`||` alike, then comparisons and structural operators, `+ -`, `!`,
//! `* / %`, `^`), and the checks Tempo makes before running a query (types
//! that can meet, filters that are true or false, regular expressions that
//! compile, quantiles in `[0, 1]`).

use std::fmt;

use crate::ast::*;
use crate::lexer::{Tok, Token, tokens};

/// Where a query stops making sense, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    pub line: usize,
    pub col: usize,
    pub message: String,
}

impl ParseError {
    pub(crate) fn at(line: usize, col: usize, message: String) -> Self {
        ParseError { line, col, message }
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "parse error at line {}, col {}: {}",
            self.line, self.col, self.message
        )
    }
}

impl std::error::Error for ParseError {}

/// Parses a TraceQL query.
pub fn parse(query: &str) -> Result<Query, ParseError> {
    let mut p = Parser {
        tokens: tokens(query)?,
        pos: 0,
        depth: 0,
    };
    let body = p.body()?;
    let mut hints = Vec::new();
    while p.is_ident("with") {
        p.hints(&mut hints)?;
    }
    p.expect_eof()?;
    let depth = match &body {
        Body::Search(s) => spanset_depth(s),
        Body::Metrics(m) => spanset_depth(&m.spans).max(match &m.function {
            Function::Compare { selection, .. } => expr_depth(selection),
            _ => 1,
        }),
    };
    if depth > MAX_TREE_DEPTH {
        return Err(ParseError::at(
            1,
            1,
            format!("the query holds more than {MAX_TREE_DEPTH} operations inside one another"),
        ));
    }
    Ok(Query { body, hints })
}

fn expr_depth(expr: &Expr) -> usize {
    1 + match expr {
        Expr::Static(_) | Expr::Field(_) => 0,
        Expr::Binary(_, l, r) => expr_depth(l).max(expr_depth(r)),
        Expr::Negate(e) | Expr::Not(e) | Expr::Exists(e) | Expr::Missing(e) => expr_depth(e),
    }
}

fn spanset_depth(spans: &Spanset) -> usize {
    1 + match spans {
        Spanset::Filter(e) => expr_depth(e),
        Spanset::Binary(_, l, r) => spanset_depth(l).max(spanset_depth(r)),
        Spanset::Pipeline(stages) => {
            stages
                .iter()
                .map(|stage| match stage {
                    Stage::Spanset(s) => spanset_depth(s),
                    Stage::By(e) => expr_depth(e),
                    Stage::Scalar(ScalarFilter {
                        aggregate:
                            Aggregate::Avg(e)
                            | Aggregate::Min(e)
                            | Aggregate::Max(e)
                            | Aggregate::Sum(e),
                        ..
                    }) => expr_depth(e),
                    Stage::Scalar(_) | Stage::Coalesce | Stage::Select(_) => 1,
                })
                .max()
                .unwrap_or(0)
        }
    }
}

/// Parses a spanset filter alone (`{ … }`), as the tag value endpoints take
/// one to narrow their values.
pub fn parse_filter(query: &str) -> Result<Expr, ParseError> {
    let mut p = Parser {
        tokens: tokens(query)?,
        pos: 0,
        depth: 0,
    };
    p.expect_sym("{")?;
    let expr = p.filter_body()?;
    p.expect_eof()?;
    Ok(expr)
}

const METRICS_FUNCTIONS: [&str; 9] = [
    "rate",
    "count_over_time",
    "min_over_time",
    "max_over_time",
    "sum_over_time",
    "avg_over_time",
    "quantile_over_time",
    "histogram_over_time",
    "compare",
];

/// How many labels a metrics query may group by.
const MAX_GROUP_BY: usize = 5;

/// How deep a query's tree may be: every operation holds its operands, so
/// a chain of operators (`a or b or …`) is as deep as it is long.
const MAX_TREE_DEPTH: usize = 256;

/// How deep the parser follows text (parentheses, operands of operators
/// that bind tighter): deeper text is refused, not followed down the stack.
/// Above the tree's limit, for parentheses the text need not have: a tree
/// within its limit prints as text that parses back.
const MAX_TEXT_DEPTH: usize = 4 * MAX_TREE_DEPTH;

struct Parser {
    tokens: Vec<Token>,
    pos: usize,
    /// The expressions being read inside one another.
    depth: usize,
}

impl Parser {
    fn peek(&self) -> &Token {
        &self.tokens[self.pos]
    }

    fn peek_at(&self, ahead: usize) -> &Tok {
        let last = self.tokens.len() - 1;
        &self.tokens[(self.pos + ahead).min(last)].tok
    }

    fn next(&mut self) -> Token {
        let t = self.tokens[self.pos].clone();
        if self.pos + 1 < self.tokens.len() {
            self.pos += 1;
        }
        t
    }

    fn error_at(token: &Token, message: impl Into<String>) -> ParseError {
        ParseError::at(token.line, token.col, message.into())
    }

    fn unexpected(&self, expected: &str) -> ParseError {
        let t = self.peek();
        Self::error_at(
            t,
            format!(
                "syntax error: unexpected {}, expected {expected}",
                t.tok.describe()
            ),
        )
    }

    fn is_sym(&self, sym: &str) -> bool {
        matches!(&self.peek().tok, Tok::Sym(s) if *s == sym)
    }

    fn is_ident(&self, word: &str) -> bool {
        matches!(&self.peek().tok, Tok::Ident(s) if s == word)
    }

    fn eat_sym(&mut self, sym: &str) -> bool {
        let found = self.is_sym(sym);
        if found {
            self.next();
        }
        found
    }

    fn expect_sym(&mut self, sym: &str) -> Result<Token, ParseError> {
        if self.is_sym(sym) {
            Ok(self.next())
        } else {
            Err(self.unexpected(sym))
        }
    }

    fn expect_eof(&self) -> Result<(), ParseError> {
        match self.peek().tok {
            Tok::Eof => Ok(()),
            _ => Err(self.unexpected("end of query")),
        }
    }

    fn is_metrics_function(&self) -> bool {
        matches!(&self.peek().tok, Tok::Ident(s) if METRICS_FUNCTIONS.contains(&s.as_str()))
            && matches!(self.peek_at(1), Tok::Sym("("))
    }

    /// A search, or a metrics query when a metrics function ends the
    /// pipeline.
    fn body(&mut self) -> Result<Body, ParseError> {
        let mut stages = Vec::new();
        loop {
            if !stages.is_empty() && self.is_metrics_function() {
                let spans = pipeline(stages);
                return Ok(Body::Metrics(self.metrics(spans)?));
            }
            self.stage(&mut stages)?;
            if !self.eat_sym("|") {
                return Ok(Body::Search(pipeline(stages)));
            }
        }
    }

    /// A pipeline in parentheses, after its `(`.
    fn parenthesized(&mut self) -> Result<Spanset, ParseError> {
        let mut stages = Vec::new();
        loop {
            if self.is_metrics_function() {
                return Err(Self::error_at(
                    self.peek(),
                    "a metrics function must end the query, outside parentheses",
                ));
            }
            self.stage(&mut stages)?;
            if !self.eat_sym("|") {
                break;
            }
        }
        self.expect_sym(")")?;
        Ok(pipeline(stages))
    }

    /// One stage of a pipeline, appended to `stages` (a pipeline's own
    /// stages are appended one by one).
    fn stage(&mut self, stages: &mut Vec<Stage>) -> Result<(), ParseError> {
        let start = self.peek().clone();
        let word = match &start.tok {
            Tok::Ident(w) if matches!(self.peek_at(1), Tok::Sym("(")) => w.clone(),
            _ => {
                match self.spanset(1)? {
                    Spanset::Pipeline(inner) => stages.extend(inner),
                    other => stages.push(Stage::Spanset(other)),
                }
                return Ok(());
            }
        };
        let stage = match word.as_str() {
            "by" => {
                self.next();
                self.next();
                let expr = self.expr(1)?;
                if !refers_to_span(&expr) {
                    return Err(Self::error_at(
                        &start,
                        format!("grouping field expressions must refer to the span: by({expr})"),
                    ));
                }
                self.expect_sym(")")?;
                Stage::By(expr)
            }
            "coalesce" => {
                if stages.is_empty() {
                    return Err(Self::error_at(&start, "coalesce() cannot start a pipeline"));
                }
                self.next();
                self.next();
                self.expect_sym(")")?;
                Stage::Coalesce
            }
            "select" => {
                self.next();
                self.next();
                let fields = self.fields()?;
                self.expect_sym(")")?;
                Stage::Select(fields)
            }
            "count" | "avg" | "min" | "max" | "sum" => {
                let aggregate = self.aggregate()?;
                let op = match &self.peek().tok {
                    Tok::Sym("=") => BinaryOp::Eq,
                    Tok::Sym("!=") => BinaryOp::Neq,
                    Tok::Sym("<") => BinaryOp::Lt,
                    Tok::Sym("<=") => BinaryOp::Lte,
                    Tok::Sym(">") => BinaryOp::Gt,
                    Tok::Sym(">=") => BinaryOp::Gte,
                    _ => return Err(self.unexpected("a comparison after the aggregate")),
                };
                self.next();
                let value = self.number_static()?;
                Stage::Scalar(ScalarFilter {
                    aggregate,
                    op,
                    value,
                })
            }
            _ if METRICS_FUNCTIONS.contains(&word.as_str()) => {
                return Err(Self::error_at(
                    &start,
                    format!("{word}() needs spans before it: {{ … }} | {word}(…)"),
                ));
            }
            _ => return Err(self.unexpected("{ or (")),
        };
        stages.push(stage);
        Ok(())
    }

    /// `count()`, `avg(expr)`, …
    fn aggregate(&mut self) -> Result<Aggregate, ParseError> {
        let Tok::Ident(word) = self.next().tok else {
            unreachable!("called at a word")
        };
        let open = self.expect_sym("(")?;
        if word == "count" {
            self.expect_sym(")")?;
            return Ok(Aggregate::Count);
        }
        let expr = self.expr(1)?;
        match type_of(&expr) {
            t if t.is_numeric() || t == Type::Any => {}
            _ => {
                return Err(Self::error_at(
                    &open,
                    format!("aggregate field expressions must resolve to a number: {word}({expr})"),
                ));
            }
        }
        if !refers_to_span(&expr) {
            return Err(Self::error_at(
                &open,
                format!("aggregate field expressions must refer to the span: {word}({expr})"),
            ));
        }
        self.expect_sym(")")?;
        Ok(match word.as_str() {
            "avg" => Aggregate::Avg(expr),
            "min" => Aggregate::Min(expr),
            "max" => Aggregate::Max(expr),
            _ => Aggregate::Sum(expr),
        })
    }

    /// A number, duration or `-` and one (a scalar filter's value, a
    /// hint's).
    fn number_static(&mut self) -> Result<Static, ParseError> {
        let negative = self.eat_sym("-");
        let t = self.next();
        let value = match t.tok {
            Tok::Int(i) => integer(i, negative).map(Static::Int),
            Tok::Float(v) => Some(Static::Float(if negative { -v } else { v })),
            Tok::Duration(ns) => Some(Static::Duration(if negative { -ns } else { ns })),
            _ => {
                self.pos -= 1;
                return Err(self.unexpected("a number"));
            }
        };
        value.ok_or_else(|| Self::error_at(&t, "integer out of range"))
    }

    /// A spanset expression: operands joined by spanset operators binding
    /// at least `min`.
    fn spanset(&mut self, min: u8) -> Result<Spanset, ParseError> {
        self.nested(|p| p.spanset_at(min))
    }

    /// Runs `read` one level deeper, refusing to go past [`MAX_TEXT_DEPTH`].
    fn nested<T>(
        &mut self,
        read: impl FnOnce(&mut Self) -> Result<T, ParseError>,
    ) -> Result<T, ParseError> {
        if self.depth == MAX_TEXT_DEPTH {
            return Err(Self::error_at(
                self.peek(),
                format!("the query nests deeper than {MAX_TEXT_DEPTH} levels"),
            ));
        }
        self.depth += 1;
        // Frames are big in unoptimized builds: the stack grows as needed.
        let read = stacker::maybe_grow(64 * 1024, 1024 * 1024, || read(self));
        self.depth -= 1;
        read
    }

    fn spanset_at(&mut self, min: u8) -> Result<Spanset, ParseError> {
        let mut lhs = self.spanset_operand()?;
        while let Some(op) = self.spanset_op() {
            if op.precedence() < min {
                break;
            }
            self.next();
            let rhs = self.spanset(op.precedence() + 1)?;
            lhs = Spanset::Binary(op, Box::new(lhs), Box::new(rhs));
        }
        Ok(lhs)
    }

    fn spanset_op(&self) -> Option<SpansetOp> {
        let Tok::Sym(s) = self.peek().tok else {
            return None;
        };
        Some(match s {
            "&&" => SpansetOp::And,
            "||" => SpansetOp::Or,
            ">" => SpansetOp::Child,
            "<" => SpansetOp::Parent,
            ">>" => SpansetOp::Descendant,
            "<<" => SpansetOp::Ancestor,
            "~" => SpansetOp::Sibling,
            "!>" => SpansetOp::NotChild,
            "!<" => SpansetOp::NotParent,
            "!>>" => SpansetOp::NotDescendant,
            "!<<" => SpansetOp::NotAncestor,
            "!~" => SpansetOp::NotSibling,
            "&>" => SpansetOp::UnionChild,
            "&<" => SpansetOp::UnionParent,
            "&>>" => SpansetOp::UnionDescendant,
            "&<<" => SpansetOp::UnionAncestor,
            "&~" => SpansetOp::UnionSibling,
            _ => return None,
        })
    }

    fn spanset_operand(&mut self) -> Result<Spanset, ParseError> {
        if self.eat_sym("{") {
            return Ok(Spanset::Filter(self.filter_body()?));
        }
        if self.eat_sym("(") {
            return self.parenthesized();
        }
        Err(self.unexpected("{ or ("))
    }

    /// A filter's expression and its `}`, after its `{`: `{}` is every span.
    fn filter_body(&mut self) -> Result<Expr, ParseError> {
        if self.eat_sym("}") {
            return Ok(Expr::Static(Static::Bool(true)));
        }
        let start = self.peek().clone();
        let expr = self.expr(1)?;
        if !matches!(type_of(&expr), Type::Bool | Type::Any) {
            return Err(Self::error_at(
                &start,
                format!("span filter field expressions must resolve to a boolean: {{ {expr} }}"),
            ));
        }
        self.expect_sym("}")?;
        Ok(expr)
    }

    fn binary_op(&self) -> Option<BinaryOp> {
        let Tok::Sym(s) = self.peek().tok else {
            return None;
        };
        Some(match s {
            "&&" => BinaryOp::And,
            "||" => BinaryOp::Or,
            "=" => BinaryOp::Eq,
            "!=" => BinaryOp::Neq,
            "<" => BinaryOp::Lt,
            "<=" => BinaryOp::Lte,
            ">" => BinaryOp::Gt,
            ">=" => BinaryOp::Gte,
            "=~" => BinaryOp::Regex,
            "!~" => BinaryOp::NotRegex,
            "+" => BinaryOp::Add,
            "-" => BinaryOp::Sub,
            "*" => BinaryOp::Mul,
            "/" => BinaryOp::Div,
            "%" => BinaryOp::Mod,
            "^" => BinaryOp::Pow,
            _ => return None,
        })
    }

    /// A field expression of operators binding at least `min`.
    fn expr(&mut self, min: u8) -> Result<Expr, ParseError> {
        self.nested(|p| p.expr_at(min))
    }

    fn expr_at(&mut self, min: u8) -> Result<Expr, ParseError> {
        let mut lhs = self.unary()?;
        while let Some(op) = self.binary_op() {
            let precedence = op.precedence();
            if precedence < min {
                break;
            }
            let at = self.next();
            if matches!(op, BinaryOp::Eq | BinaryOp::Neq) && self.is_ident("nil") {
                self.next();
                lhs = nil_test(op, lhs);
                continue;
            }
            // `^` binds right to left, the others left to right.
            let rhs_min = if op == BinaryOp::Pow {
                precedence
            } else {
                precedence + 1
            };
            let rhs = self.expr(rhs_min)?;
            lhs = binary(&at, op, lhs, rhs)?;
        }
        Ok(lhs)
    }

    /// A value, possibly after `-` or `!`. The operand of `-` takes every
    /// operator above `+ -`, that of `!` those above it, as in Tempo.
    fn unary(&mut self) -> Result<Expr, ParseError> {
        let t = self.peek().clone();
        match &t.tok {
            Tok::Sym("-") => {
                self.next();
                let operand = self.expr(4)?;
                negate(&t, operand)
            }
            Tok::Sym("!") => {
                self.next();
                let operand = self.expr(5)?;
                if !matches!(type_of(&operand), Type::Bool | Type::Any) {
                    return Err(Self::error_at(&t, format!("! needs a boolean: !{operand}")));
                }
                Ok(Expr::Not(Box::new(operand)))
            }
            Tok::Sym("(") => {
                self.next();
                let e = self.expr(1)?;
                self.expect_sym(")")?;
                Ok(e)
            }
            Tok::Ident(w) if w == "nil" => {
                self.next();
                let op = match self.peek().tok {
                    Tok::Sym("=") => BinaryOp::Eq,
                    Tok::Sym("!=") => BinaryOp::Neq,
                    _ => return Err(self.unexpected("= or != after nil")),
                };
                self.next();
                if self.is_ident("nil") {
                    return Err(self.unexpected("a field to compare with nil"));
                }
                let operand = self.expr(3)?;
                Ok(nil_test(op, operand))
            }
            _ => self.primary(),
        }
    }

    fn primary(&mut self) -> Result<Expr, ParseError> {
        let t = self.next();
        Ok(match t.tok {
            Tok::Str(s) => Expr::Static(Static::Str(s)),
            Tok::Int(i) => Expr::Static(Static::Int(
                integer(i, false).ok_or_else(|| Self::error_at(&t, "integer out of range"))?,
            )),
            Tok::Float(v) => Expr::Static(Static::Float(v)),
            Tok::Duration(ns) => Expr::Static(Static::Duration(ns)),
            Tok::Attribute(scope, name) => Expr::Field(Field::Attribute(scope, name)),
            Tok::Scoped(i) => Expr::Field(Field::Intrinsic(i)),
            Tok::Ident(ref w) => match word_value(w) {
                Some(e) => e,
                None => {
                    self.pos -= 1;
                    return Err(self.unexpected("a value, an attribute or an intrinsic"));
                }
            },
            _ => {
                self.pos -= 1;
                return Err(self.unexpected("a value, an attribute or an intrinsic"));
            }
        })
    }

    /// An attribute or intrinsic (`select`, metrics functions and `by`).
    fn field(&mut self) -> Result<Field, ParseError> {
        let t = self.next();
        match t.tok {
            Tok::Attribute(scope, name) => Ok(Field::Attribute(scope, name)),
            Tok::Scoped(i) => Ok(Field::Intrinsic(i)),
            Tok::Ident(ref w) if Intrinsic::unscoped(w).is_some() => Ok(Field::Intrinsic(
                Intrinsic::unscoped(w).expect("an intrinsic"),
            )),
            _ => {
                self.pos -= 1;
                Err(self.unexpected("an attribute or an intrinsic"))
            }
        }
    }

    /// One or more fields, comma-separated.
    fn fields(&mut self) -> Result<Vec<Field>, ParseError> {
        let mut fields = vec![self.field()?];
        while self.eat_sym(",") {
            fields.push(self.field()?);
        }
        Ok(fields)
    }

    /// The metrics function ending a query, its `by` and what follows.
    fn metrics(&mut self, spans: Spanset) -> Result<Metrics, ParseError> {
        let start = self.next();
        let Tok::Ident(name) = &start.tok else {
            unreachable!("called at a metrics function")
        };
        self.expect_sym("(")?;
        let function = match name.as_str() {
            "rate" => Function::Rate,
            "count_over_time" => Function::CountOverTime,
            "min_over_time" => Function::MinOverTime(self.field()?),
            "max_over_time" => Function::MaxOverTime(self.field()?),
            "sum_over_time" => Function::SumOverTime(self.field()?),
            "avg_over_time" => Function::AvgOverTime(self.field()?),
            "histogram_over_time" => Function::HistogramOverTime(self.field()?),
            "quantile_over_time" => {
                let field = self.field()?;
                let mut qs = Vec::new();
                while self.eat_sym(",") {
                    let t = self.peek().clone();
                    let q = match self.number_static()? {
                        Static::Int(i) => i as f64,
                        Static::Float(v) => v,
                        _ => return Err(Self::error_at(&t, "a quantile is a number")),
                    };
                    if !(0.0..=1.0).contains(&q) {
                        return Err(Self::error_at(
                            &t,
                            format!("quantile must be between 0 and 1: {q}"),
                        ));
                    }
                    qs.push(q);
                }
                if qs.is_empty() {
                    return Err(self.unexpected(", and a quantile"));
                }
                Function::QuantileOverTime(field, qs)
            }
            _ => self.compare()?,
        };
        self.expect_sym(")")?;
        let mut by = Vec::new();
        if self.is_ident("by") {
            let at = self.next();
            self.expect_sym("(")?;
            by = self.fields()?;
            self.expect_sym(")")?;
            let most = match function {
                Function::QuantileOverTime(..) | Function::HistogramOverTime(_) => MAX_GROUP_BY - 1,
                _ => MAX_GROUP_BY,
            };
            if by.len() > most {
                return Err(Self::error_at(
                    &at,
                    format!(
                        "{}() groups by at most {most} fields, not {}",
                        function.name(),
                        by.len()
                    ),
                ));
            }
        }
        let mut then = Vec::new();
        loop {
            if self.eat_sym("|") {
                let t = self.next();
                let (Tok::Ident(word), true) = (&t.tok, self.is_sym("(")) else {
                    self.pos -= 1;
                    return Err(self.unexpected("topk or bottomk"));
                };
                if word != "topk" && word != "bottomk" {
                    self.pos -= 1;
                    return Err(self.unexpected("topk or bottomk"));
                }
                self.expect_sym("(")?;
                let k = self.next();
                let Tok::Int(k) = k.tok else {
                    self.pos -= 1;
                    return Err(self.unexpected("a whole number"));
                };
                let k = u32::try_from(k)
                    .ok()
                    .filter(|k| *k > 0)
                    .ok_or_else(|| Self::error_at(&t, "k must be a positive whole number"))?;
                self.expect_sym(")")?;
                then.push(if word == "topk" {
                    SecondStage::TopK(k)
                } else {
                    SecondStage::BottomK(k)
                });
                continue;
            }
            let op = match self.peek().tok {
                Tok::Sym("=") => BinaryOp::Eq,
                Tok::Sym("!=") => BinaryOp::Neq,
                Tok::Sym("<") => BinaryOp::Lt,
                Tok::Sym("<=") => BinaryOp::Lte,
                Tok::Sym(">") => BinaryOp::Gt,
                Tok::Sym(">=") => BinaryOp::Gte,
                _ => break,
            };
            self.next();
            let value = match self.number_static()? {
                Static::Int(i) => i as f64,
                Static::Float(v) => v,
                // Durations compare with series of seconds.
                Static::Duration(ns) => ns as f64 / 1e9,
                _ => unreachable!("numbers only"),
            };
            then.push(SecondStage::Filter(op, value));
        }
        Ok(Metrics {
            spans,
            function,
            by,
            then,
        })
    }

    /// `compare`'s arguments: a filter, then the number of values per
    /// attribute, then a window (unix nanoseconds).
    fn compare(&mut self) -> Result<Function, ParseError> {
        self.expect_sym("{")?;
        let selection = self.filter_body()?;
        let mut top = 10;
        let mut window = None;
        if self.eat_sym(",") {
            let t = self.next();
            top = match t.tok {
                Tok::Int(k) => u32::try_from(k).ok().filter(|k| *k > 0),
                _ => None,
            }
            .ok_or_else(|| {
                Self::error_at(
                    &t,
                    "compare() top number of values must be integer greater than 0",
                )
            })?;
            if self.eat_sym(",") {
                let mut times = [0i64; 2];
                for (i, time) in times.iter_mut().enumerate() {
                    if i == 1 {
                        self.expect_sym(",")?;
                    }
                    let t = self.next();
                    *time = match t.tok {
                        Tok::Int(ns) => i64::try_from(ns).ok().filter(|ns| *ns > 0),
                        _ => None,
                    }
                    .ok_or_else(|| {
                        Self::error_at(
                            &t,
                            "compare() timestamps must be positive integer unix nanoseconds",
                        )
                    })?;
                }
                if times[1] <= times[0] {
                    return Err(
                        self.unexpected("an end timestamp greater than the start (compare())")
                    );
                }
                window = Some((times[0], times[1]));
            }
        }
        Ok(Function::Compare {
            selection,
            top,
            window,
        })
    }

    /// `with(name=value, …)`.
    fn hints(&mut self, hints: &mut Vec<(String, Static)>) -> Result<(), ParseError> {
        self.next();
        self.expect_sym("(")?;
        loop {
            let t = self.next();
            let Tok::Ident(name) = t.tok else {
                self.pos -= 1;
                return Err(self.unexpected("a hint's name"));
            };
            self.expect_sym("=")?;
            let value = match &self.peek().tok {
                Tok::Str(s) => {
                    let s = s.clone();
                    self.next();
                    Static::Str(s)
                }
                Tok::Ident(w) if w == "true" || w == "false" => {
                    let b = w == "true";
                    self.next();
                    Static::Bool(b)
                }
                _ => self.number_static()?,
            };
            hints.retain(|(n, _)| *n != name);
            hints.push((name, value));
            if !self.eat_sym(",") {
                break;
            }
        }
        self.expect_sym(")")?;
        Ok(())
    }
}

/// The stages as one spanset expression: a lone spanset expression is
/// itself.
fn pipeline(mut stages: Vec<Stage>) -> Spanset {
    if stages.len() == 1 && matches!(stages[0], Stage::Spanset(_)) {
        let Some(Stage::Spanset(s)) = stages.pop() else {
            unreachable!("checked")
        };
        return s;
    }
    Spanset::Pipeline(stages)
}

/// An integer literal, negated when `negative`.
fn integer(value: u64, negative: bool) -> Option<i64> {
    if negative {
        0i64.checked_sub_unsigned(value)
    } else {
        i64::try_from(value).ok()
    }
}

/// The value a word stands for in an expression: a literal or an intrinsic.
fn word_value(word: &str) -> Option<Expr> {
    let s = match word {
        "true" => Static::Bool(true),
        "false" => Static::Bool(false),
        "minInt" => Static::Int(i64::MIN),
        "maxInt" => Static::Int(i64::MAX),
        "ok" => Static::Status(Status::Ok),
        "error" => Static::Status(Status::Error),
        "unset" => Static::Status(Status::Unset),
        "unspecified" => Static::Kind(Kind::Unspecified),
        "internal" => Static::Kind(Kind::Internal),
        "server" => Static::Kind(Kind::Server),
        "client" => Static::Kind(Kind::Client),
        "producer" => Static::Kind(Kind::Producer),
        "consumer" => Static::Kind(Kind::Consumer),
        _ => return Intrinsic::unscoped(word).map(|i| Expr::Field(Field::Intrinsic(i))),
    };
    Some(Expr::Static(s))
}

fn nil_test(op: BinaryOp, operand: Expr) -> Expr {
    if op == BinaryOp::Eq {
        Expr::Missing(Box::new(operand))
    } else {
        Expr::Exists(Box::new(operand))
    }
}

/// `-x`: a literal negated as it is read.
fn negate(at: &Token, operand: Expr) -> Result<Expr, ParseError> {
    let folded = match &operand {
        Expr::Static(Static::Int(i)) => i.checked_neg().map(Static::Int),
        Expr::Static(Static::Float(v)) => Some(Static::Float(-v)),
        Expr::Static(Static::Duration(ns)) => ns.checked_neg().map(Static::Duration),
        _ => None,
    };
    if let Some(s) = folded {
        return Ok(Expr::Static(s));
    }
    if !matches!(type_of(&operand), t if t.is_numeric() || t == Type::Any) {
        return Err(Parser::error_at(
            at,
            format!("- needs a number: -{operand}"),
        ));
    }
    Ok(Expr::Negate(Box::new(operand)))
}

/// A binary operation whose operands' types can meet under it.
fn binary(at: &Token, op: BinaryOp, lhs: Expr, rhs: Expr) -> Result<Expr, ParseError> {
    let (l, r) = (type_of(&lhs), type_of(&rhs));
    let expr = Expr::Binary(op, Box::new(lhs), Box::new(rhs));
    let fail = |why: &str| Err(Parser::error_at(at, format!("{why}: {expr}")));
    let any = l == Type::Any || r == Type::Any;
    let numbers = (l.is_numeric() || l == Type::Any) && (r.is_numeric() || r == Type::Any);
    let same = l == r || l.is_numeric() && r.is_numeric();
    match op {
        BinaryOp::And | BinaryOp::Or => {
            if !matches!(l, Type::Bool | Type::Any) || !matches!(r, Type::Bool | Type::Any) {
                return fail("illegal operation for the given types");
            }
        }
        BinaryOp::Eq | BinaryOp::Neq => {
            let status_code = matches!(
                (l, r),
                (Type::Status, Type::Int) | (Type::Int, Type::Status)
            );
            if !(any || same || status_code) {
                return fail("binary operations must operate on the same type");
            }
        }
        BinaryOp::Lt | BinaryOp::Lte | BinaryOp::Gt | BinaryOp::Gte => {
            let strings = matches!(l, Type::Str | Type::Any) && matches!(r, Type::Str | Type::Any);
            if !(numbers || strings) {
                return fail("illegal operation for the given types");
            }
        }
        BinaryOp::Regex | BinaryOp::NotRegex => {
            let Expr::Binary(_, _, rhs) = &expr else {
                unreachable!("built above")
            };
            match rhs.as_ref() {
                Expr::Static(Static::Str(pattern)) => {
                    if let Err(e) = anchored(pattern) {
                        return fail(&format!("invalid regex: {e}"));
                    }
                }
                _ => return fail("the right side of =~ and !~ must be a string"),
            }
            if !matches!(l, Type::Str | Type::Any) {
                return fail("illegal operation for the given types");
            }
        }
        _ => {
            if !numbers {
                return fail("illegal operation for the given types");
            }
        }
    }
    Ok(expr)
}

/// A regular expression as TraceQL matches it: the whole value, `.`
/// matching line breaks too.
pub fn anchored(pattern: &str) -> Result<regex::Regex, regex::Error> {
    regex::Regex::new(&format!("^(?s:{pattern})$"))
}

/// The type of an expression's values, as far as its text tells.
pub fn type_of(expr: &Expr) -> Type {
    match expr {
        Expr::Static(s) => match s {
            Static::Str(_) => Type::Str,
            Static::Int(_) => Type::Int,
            Static::Float(_) => Type::Float,
            Static::Duration(_) => Type::Duration,
            Static::Bool(_) => Type::Bool,
            Static::Status(_) => Type::Status,
            Static::Kind(_) => Type::Kind,
        },
        Expr::Field(Field::Attribute(..)) => Type::Any,
        Expr::Field(Field::Intrinsic(i)) => i.value_type(),
        Expr::Binary(op, lhs, rhs) => {
            if !op.is_arithmetic() {
                return Type::Bool;
            }
            match (type_of(lhs), type_of(rhs)) {
                (Type::Any, _) | (_, Type::Any) => Type::Any,
                (Type::Int, Type::Int) => Type::Int,
                (Type::Duration, Type::Duration | Type::Int) | (Type::Int, Type::Duration) => {
                    Type::Duration
                }
                _ => Type::Float,
            }
        }
        Expr::Negate(e) => type_of(e),
        Expr::Not(_) | Expr::Exists(_) | Expr::Missing(_) => Type::Bool,
    }
}

/// Whether an expression reads anything of a span.
fn refers_to_span(expr: &Expr) -> bool {
    match expr {
        Expr::Static(_) => false,
        Expr::Field(_) => true,
        Expr::Binary(_, l, r) => refers_to_span(l) || refers_to_span(r),
        Expr::Negate(e) | Expr::Not(e) | Expr::Exists(e) | Expr::Missing(e) => refers_to_span(e),
    }
}
