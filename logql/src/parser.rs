//! A recursive-descent parser for LogQL, with Loki's checks.

use crate::ast::*;
use crate::lexer::{Tok, Token, tokens};

/// Why a query does not parse, and where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("parse error at line {line}, col {col}: {message}")]
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

/// Parses a LogQL query.
pub fn parse(query: &str) -> Result<Expr, ParseError> {
    let mut p = Parser {
        tokens: tokens(query)?,
        pos: 0,
        depth: 0,
    };
    let expr = match p.operand(0)? {
        Operand::Log(log) => Expr::Log(log),
        Operand::Metric(m) => Expr::Metric(m),
    };
    p.expect_eof()?;
    let depth = match &expr {
        Expr::Log(log) => log_depth(log),
        Expr::Metric(m) => metric_depth(m),
    };
    if depth > MAX_TREE_DEPTH {
        return Err(ParseError::at(
            1,
            1,
            format!("the query holds more than {MAX_TREE_DEPTH} operations inside one another"),
        ));
    }
    Ok(expr)
}

/// How deep a query's tree may be: every operation holds its operands, so
/// a chain of operators (`a or b or …`) is as deep as it is long.
const MAX_TREE_DEPTH: usize = 256;

/// How deep the parser follows text (parentheses, operands of operators
/// that bind tighter): deeper text is refused, not followed down the stack.
/// Above the tree's limit, for parentheses the text need not have: a tree
/// within its limit prints as text that parses back.
const MAX_TEXT_DEPTH: usize = 4 * MAX_TREE_DEPTH;

fn metric_depth(m: &MetricExpr) -> usize {
    1 + match m {
        MetricExpr::Range { range, .. } => log_depth(&range.log).max(
            range
                .unwrap
                .iter()
                .flat_map(|u| &u.filters)
                .map(filter_depth)
                .max()
                .unwrap_or(0),
        ),
        MetricExpr::Vector { inner, .. } | MetricExpr::LabelReplace { inner, .. } => {
            metric_depth(inner)
        }
        MetricExpr::Binary { lhs, rhs, .. } => metric_depth(lhs).max(metric_depth(rhs)),
        MetricExpr::Literal(_) | MetricExpr::Vector1(_) => 0,
    }
}

fn log_depth(log: &LogExpr) -> usize {
    1 + log
        .pipeline
        .iter()
        .map(|stage| match stage {
            Stage::LabelFilter(f) => filter_depth(f),
            _ => 1,
        })
        .max()
        .unwrap_or(0)
}

fn filter_depth(f: &LabelFilter) -> usize {
    1 + match f {
        LabelFilter::And(l, r) | LabelFilter::Or(l, r) => filter_depth(l).max(filter_depth(r)),
        _ => 0,
    }
}

/// A label set as Loki's push protocol writes a stream's labels:
/// `{a="b", c="d"}` (names unique, values Go-quoted strings).
pub fn parse_labels(text: &str) -> Result<Vec<(String, String)>, ParseError> {
    let mut p = Parser {
        tokens: tokens(text)?,
        pos: 0,
        depth: 0,
    };
    p.expect_sym("{")?;
    let mut labels: Vec<(String, String)> = Vec::new();
    while !p.is_sym("}") {
        let at = p.peek().clone();
        let name = p.ident("a label name")?;
        p.expect_sym("=")?;
        let value = p.string("a string")?;
        if labels.iter().any(|(n, _)| *n == name) {
            return Err(p.error_at(&at, format!("duplicate label name {name:?}")));
        }
        labels.push((name, value));
        if !p.eat_sym(",") {
            break;
        }
    }
    p.expect_sym("}")?;
    p.expect_eof()?;
    Ok(labels)
}

/// The error of a log query beside a binary operator.
fn log_operand(p: &Parser, at: &Token, op: BinOp) -> ParseError {
    p.error_at(
        at,
        format!(
            "syntax error: a log query cannot be an operand of {:?}",
            op.symbol()
        ),
    )
}

/// The message of a selector that would match every stream.
const EMPTY_SELECTOR: &str = "queries require at least one regexp or equality matcher that does \
     not have an empty-compatible value. For instance, app=~\".*\" does not meet this \
     requirement, but app=~\".+\" will";

/// The capture names of a pattern (`<ip> - <_>`: `ip`, `_`).
fn captures(pattern: &str) -> impl Iterator<Item = &str> {
    pattern.split('<').skip(1).filter_map(|rest| {
        let (name, _) = rest.split_once('>')?;
        let identifier = !name.is_empty()
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            && !name.starts_with(|c: char| c.is_ascii_digit());
        identifier.then_some(name)
    })
}

/// What an operand of the expression grammar turned out to be: a log query
/// may stand alone (in parentheses too), never beside an operator.
enum Operand {
    Log(LogExpr),
    Metric(MetricExpr),
}

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

    fn peek_at(&self, n: usize) -> &Tok {
        &self.tokens[(self.pos + n).min(self.tokens.len() - 1)].tok
    }

    fn next(&mut self) -> Token {
        let t = self.tokens[self.pos].clone();
        if self.pos + 1 < self.tokens.len() {
            self.pos += 1;
        }
        t
    }

    fn error_at(&self, token: &Token, message: impl Into<String>) -> ParseError {
        ParseError::at(token.line, token.col, message.into())
    }

    fn unexpected(&self, expected: &str) -> ParseError {
        let t = self.peek();
        self.error_at(
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

    fn eat_ident(&mut self, word: &str) -> bool {
        let found = self.is_ident(word);
        if found {
            self.next();
        }
        found
    }

    fn expect_sym(&mut self, sym: &str) -> Result<Token, ParseError> {
        if self.is_sym(sym) {
            Ok(self.next())
        } else {
            Err(self.unexpected(&format!("{sym:?}")))
        }
    }

    fn expect_eof(&self) -> Result<(), ParseError> {
        match self.peek().tok {
            Tok::Eof => Ok(()),
            _ => Err(self.unexpected("end of query")),
        }
    }

    fn ident(&mut self, what: &str) -> Result<String, ParseError> {
        self.take(what, |t| match t {
            Tok::Ident(s) => Some(s.clone()),
            _ => None,
        })
    }

    fn string(&mut self, what: &str) -> Result<String, ParseError> {
        self.take(what, |t| match t {
            Tok::Str(s) => Some(s.clone()),
            _ => None,
        })
    }

    /// The next token's value if `read` takes it, else an error expecting `what`.
    fn take<T>(&mut self, what: &str, read: impl Fn(&Tok) -> Option<T>) -> Result<T, ParseError> {
        let value = read(&self.peek().tok).ok_or_else(|| self.unexpected(what))?;
        self.next();
        Ok(value)
    }

    fn number(&mut self, what: &str) -> Result<f64, ParseError> {
        let negative = self.eat_sym("-");
        match self.peek().tok {
            Tok::Number(n) => {
                self.next();
                Ok(if negative { -n } else { n })
            }
            _ => Err(self.unexpected(what)),
        }
    }

    fn regex(&self, token: &Token, pattern: &str, anchored: bool) -> Result<(), ParseError> {
        let pattern = if anchored {
            format!("^(?:{pattern})$")
        } else {
            pattern.to_owned()
        };
        regex::Regex::new(&pattern)
            .map(|_| ())
            .map_err(|e| self.error_at(token, format!("invalid regular expression: {e}")))
    }

    // ---- Metric expressions: operators by precedence climbing.

    /// Runs `read` one level deeper, refusing to go past [`MAX_TEXT_DEPTH`].
    fn nested<T>(
        &mut self,
        read: impl FnOnce(&mut Self) -> Result<T, ParseError>,
    ) -> Result<T, ParseError> {
        if self.depth == MAX_TEXT_DEPTH {
            return Err(self.error_at(
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

    fn operand(&mut self, min_precedence: u8) -> Result<Operand, ParseError> {
        self.nested(|p| p.operand_at(min_precedence))
    }

    fn operand_at(&mut self, min_precedence: u8) -> Result<Operand, ParseError> {
        let mut lhs = self.unary()?;
        while let Some(op) = self.binary_op() {
            if op.precedence() < min_precedence {
                break;
            }
            let op_token = self.next();
            let lhs_metric = match lhs {
                Operand::Metric(m) => m,
                Operand::Log(_) => return Err(log_operand(self, &op_token, op)),
            };
            let modifier = self.modifier(op)?;
            // `^` is right-associative; the others left.
            let next_min = if op == BinOp::Pow {
                op.precedence()
            } else {
                op.precedence() + 1
            };
            let rhs = match self.operand(next_min)? {
                Operand::Metric(m) => m,
                Operand::Log(_) => return Err(log_operand(self, &op_token, op)),
            };
            if modifier.return_bool && !op.is_comparison() {
                return Err(self.error_at(
                    &op_token,
                    "bool modifier can only be used on comparison operators",
                ));
            }
            if op.is_set()
                && (matches!(lhs_metric, MetricExpr::Literal(_))
                    || matches!(rhs, MetricExpr::Literal(_)))
            {
                return Err(self.error_at(
                    &op_token,
                    format!(
                        "set operator {:?} not allowed in binary scalar expression",
                        op.symbol()
                    ),
                ));
            }
            lhs = Operand::Metric(MetricExpr::Binary {
                op,
                lhs: Box::new(lhs_metric),
                rhs: Box::new(rhs),
                modifier,
            });
        }
        Ok(lhs)
    }

    fn binary_op(&self) -> Option<BinOp> {
        Some(match &self.peek().tok {
            Tok::Ident(w) if w == "or" => BinOp::Or,
            Tok::Ident(w) if w == "and" => BinOp::And,
            Tok::Ident(w) if w == "unless" => BinOp::Unless,
            Tok::Sym("==") => BinOp::Eq,
            Tok::Sym("!=") => BinOp::Neq,
            Tok::Sym(">") => BinOp::Gt,
            Tok::Sym(">=") => BinOp::Ge,
            Tok::Sym("<") => BinOp::Lt,
            Tok::Sym("<=") => BinOp::Le,
            Tok::Sym("+") => BinOp::Add,
            Tok::Sym("-") => BinOp::Sub,
            Tok::Sym("*") => BinOp::Mul,
            Tok::Sym("/") => BinOp::Div,
            Tok::Sym("%") => BinOp::Mod,
            Tok::Sym("^") => BinOp::Pow,
            _ => return None,
        })
    }

    fn modifier(&mut self, op: BinOp) -> Result<BinModifier, ParseError> {
        let mut m = BinModifier {
            return_bool: self.eat_ident("bool"),
            ..BinModifier::default()
        };
        for (word, on) in [("on", true), ("ignoring", false)] {
            if self.eat_ident(word) {
                m.matching = Some(VectorMatching {
                    on,
                    labels: self.label_list()?,
                });
            }
        }
        for (word, left) in [("group_left", true), ("group_right", false)] {
            if self.is_ident(word) {
                let t = self.next();
                if m.matching.is_none() || op.is_set() {
                    return Err(self.error_at(
                        &t,
                        format!(
                            "{word} needs on or ignoring and an arithmetic or comparison operator"
                        ),
                    ));
                }
                let include = if self.is_sym("(") {
                    self.label_list()?
                } else {
                    Vec::new()
                };
                m.group = Some(GroupSide { left, include });
            }
        }
        Ok(m)
    }

    fn label_list(&mut self) -> Result<Vec<String>, ParseError> {
        self.expect_sym("(")?;
        let mut labels = Vec::new();
        while !self.is_sym(")") {
            labels.push(self.ident("a label name")?);
            if !self.eat_sym(",") {
                break;
            }
        }
        self.expect_sym(")")?;
        Ok(labels)
    }

    fn unary(&mut self) -> Result<Operand, ParseError> {
        if self.is_sym("-") || self.is_sym("+") {
            let t = self.next();
            let negative = t.tok == Tok::Sym("-");
            return match self.nested(Self::unary)? {
                Operand::Metric(MetricExpr::Literal(v)) => {
                    Ok(Operand::Metric(MetricExpr::Literal(if negative {
                        -v
                    } else {
                        v
                    })))
                }
                Operand::Metric(m) if negative => Ok(Operand::Metric(MetricExpr::Binary {
                    op: BinOp::Mul,
                    lhs: Box::new(MetricExpr::Literal(-1.0)),
                    rhs: Box::new(m),
                    modifier: BinModifier::default(),
                })),
                Operand::Metric(m) => Ok(Operand::Metric(m)),
                Operand::Log(_) => {
                    Err(self.error_at(&t, "syntax error: a log query cannot be negated"))
                }
            };
        }
        self.primary()
    }

    fn primary(&mut self) -> Result<Operand, ParseError> {
        let t = self.peek().clone();
        match &t.tok {
            Tok::Number(n) => {
                self.next();
                Ok(Operand::Metric(MetricExpr::Literal(*n)))
            }
            Tok::Sym("{") => Ok(Operand::Log(self.log_expr()?)),
            Tok::Sym("(") => {
                self.next();
                let inner = self.operand(0)?;
                self.expect_sym(")")?;
                Ok(inner)
            }
            Tok::Ident(name) => {
                if let Some(op) = RangeOp::ALL.into_iter().find(|o| o.name() == name) {
                    self.next();
                    return Ok(Operand::Metric(self.range_agg(op, &t)?));
                }
                if let Some(op) = VectorOp::ALL.into_iter().find(|o| o.name() == name) {
                    self.next();
                    return Ok(Operand::Metric(self.vector_agg(op, &t)?));
                }
                match name.as_str() {
                    "vector" => {
                        self.next();
                        self.expect_sym("(")?;
                        let v = self.number("a number")?;
                        self.expect_sym(")")?;
                        Ok(Operand::Metric(MetricExpr::Vector1(v)))
                    }
                    "label_replace" => {
                        self.next();
                        Ok(Operand::Metric(self.label_replace()?))
                    }
                    _ => Err(self.unexpected("a stream selector, a number or a function")),
                }
            }
            _ => Err(self.unexpected("a stream selector, a number or a function")),
        }
    }

    fn metric(&mut self) -> Result<MetricExpr, ParseError> {
        let t = self.peek().clone();
        match self.operand(0)? {
            Operand::Metric(m) => Ok(m),
            Operand::Log(_) => Err(self.error_at(
                &t,
                "syntax error: expected a metric expression, found a log query (a range aggregation such as count_over_time({…}[5m]) makes one)",
            )),
        }
    }

    fn label_replace(&mut self) -> Result<MetricExpr, ParseError> {
        self.expect_sym("(")?;
        let inner = self.metric()?;
        let mut args = Vec::new();
        for _ in 0..4 {
            self.expect_sym(",")?;
            let t = self.peek().clone();
            args.push((t, self.string("a string")?));
        }
        self.expect_sym(")")?;
        let (re_token, regex) = &args[3];
        self.regex(re_token, regex, true)?;
        Ok(MetricExpr::LabelReplace {
            inner: Box::new(inner),
            dst: args[0].1.clone(),
            replacement: args[1].1.clone(),
            src: args[2].1.clone(),
            regex: regex.clone(),
        })
    }

    fn grouping(&mut self) -> Result<Option<Grouping>, ParseError> {
        for (word, without) in [("by", false), ("without", true)] {
            if self.eat_ident(word) {
                return Ok(Some(Grouping {
                    without,
                    labels: self.label_list()?,
                }));
            }
        }
        Ok(None)
    }

    fn vector_agg(&mut self, op: VectorOp, at: &Token) -> Result<MetricExpr, ParseError> {
        let mut grouping = self.grouping()?;
        self.expect_sym("(")?;
        let param = if matches!(op, VectorOp::Topk | VectorOp::Bottomk) {
            let t = self.peek().clone();
            let k = self.number("the number of series to keep")?;
            if k < 1.0 || k.fract() != 0.0 {
                return Err(self.error_at(
                    &t,
                    format!(
                        "invalid parameter for {}: {k} is not a positive integer",
                        op.name()
                    ),
                ));
            }
            self.expect_sym(",")?;
            Some(k)
        } else {
            None
        };
        let inner = self.metric()?;
        self.expect_sym(")")?;
        if let Some(after) = self.grouping()? {
            if grouping.is_some() {
                return Err(self.error_at(at, "syntax error: grouping given twice"));
            }
            grouping = Some(after);
        }
        if matches!(op, VectorOp::Sort | VectorOp::SortDesc) && grouping.is_some() {
            return Err(self.error_at(at, format!("{} does not take a grouping", op.name())));
        }
        Ok(MetricExpr::Vector {
            op,
            param,
            inner: Box::new(inner),
            grouping,
        })
    }

    fn range_agg(&mut self, op: RangeOp, at: &Token) -> Result<MetricExpr, ParseError> {
        self.expect_sym("(")?;
        let param = if op == RangeOp::QuantileOverTime {
            let t = self.peek().clone();
            let q = self.number("the quantile")?;
            if !(0.0..=1.0).contains(&q) {
                return Err(self.error_at(
                    &t,
                    format!("invalid quantile {q}: expected a number from 0 to 1"),
                ));
            }
            self.expect_sym(",")?;
            Some(q)
        } else {
            None
        };
        let range = self.log_range()?;
        self.expect_sym(")")?;
        let grouping = self.grouping()?;
        match (op.unwrap(), &range.unwrap) {
            (Some(true), None) => {
                return Err(self.error_at(
                    at,
                    format!("invalid aggregation {} without unwrap", op.name()),
                ));
            }
            (Some(false), Some(_)) => {
                return Err(
                    self.error_at(at, format!("invalid aggregation {} with unwrap", op.name()))
                );
            }
            _ => {}
        }
        let groupable = range.unwrap.is_some()
            && !matches!(
                op,
                RangeOp::SumOverTime | RangeOp::Rate | RangeOp::RateCounter
            );
        if grouping.is_some() && !groupable {
            return Err(self.error_at(
                at,
                format!("grouping not allowed for {} aggregation", op.name()),
            ));
        }
        Ok(MetricExpr::Range {
            op,
            param,
            range: Box::new(range),
            grouping,
        })
    }

    /// `{…} | stages [5m] offset 1h | stages`, or the same in parentheses
    /// before the range.
    fn log_range(&mut self) -> Result<LogRange, ParseError> {
        let (mut log, mut unwrap) = if self.eat_sym("(") {
            let inner = self.log_expr_stages(true)?;
            self.expect_sym(")")?;
            inner
        } else {
            self.log_expr_stages(true)?
        };
        self.expect_sym("[")?;
        let t = self.peek().clone();
        let range = t.range().filter(|r| *r > 0).ok_or_else(|| {
            self.error_at(
                &t,
                format!(
                    "invalid range {}: expected a duration such as 5m",
                    t.tok.describe()
                ),
            )
        })?;
        self.next();
        self.expect_sym("]")?;
        let mut offset = 0;
        if self.eat_ident("offset") {
            let t = self.peek().clone();
            offset = t.range().ok_or_else(|| {
                self.error_at(
                    &t,
                    format!("invalid offset {}: expected a duration", t.tok.describe()),
                )
            })?;
            self.next();
        }
        if self.is_sym("|") || self.is_line_filter() {
            let (stages, more_unwrap) = self.stages(true)?;
            if unwrap.is_some() && (more_unwrap.is_some() || !stages.is_empty()) {
                return Err(self.unexpected("\")\" after unwrap"));
            }
            log.pipeline.extend(stages);
            unwrap = unwrap.or(more_unwrap);
        }
        Ok(LogRange {
            log,
            range,
            offset,
            unwrap,
        })
    }

    // ---- Log expressions.

    fn log_expr(&mut self) -> Result<LogExpr, ParseError> {
        let (log, unwrap) = self.log_expr_stages(false)?;
        debug_assert!(unwrap.is_none());
        Ok(log)
    }

    fn log_expr_stages(
        &mut self,
        allow_unwrap: bool,
    ) -> Result<(LogExpr, Option<Unwrap>), ParseError> {
        let selector = self.selector()?;
        let (pipeline, unwrap) = self.stages(allow_unwrap)?;
        Ok((LogExpr { selector, pipeline }, unwrap))
    }

    fn selector(&mut self) -> Result<Vec<Matcher>, ParseError> {
        let open = self.expect_sym("{")?;
        let mut matchers = Vec::new();
        while !self.is_sym("}") {
            let name = self.ident("a label name")?;
            let t = self.peek().clone();
            let op = match t.tok {
                Tok::Sym("=") => MatchOp::Eq,
                Tok::Sym("!=") => MatchOp::Neq,
                Tok::Sym("=~") => MatchOp::Re,
                Tok::Sym("!~") => MatchOp::Nre,
                _ => return Err(self.unexpected("=, !=, =~ or !~")),
            };
            self.next();
            let value_token = self.peek().clone();
            let value = self.string("a string")?;
            if matches!(op, MatchOp::Re | MatchOp::Nre) {
                self.regex(&value_token, &value, true)?;
            }
            matchers.push(Matcher { name, op, value });
            if !self.eat_sym(",") {
                break;
            }
        }
        self.expect_sym("}")?;
        let selects = matchers.iter().any(|m| match m.op {
            MatchOp::Eq => !m.value.is_empty(),
            MatchOp::Re => {
                regex::Regex::new(&format!("^(?:{})$", m.value)).is_ok_and(|re| !re.is_match(""))
            }
            _ => false,
        });
        if !selects {
            return Err(self.error_at(&open, EMPTY_SELECTOR));
        }
        Ok(matchers)
    }

    fn is_line_filter(&self) -> bool {
        matches!(
            self.peek().tok,
            Tok::Sym("|=" | "!=" | "|~" | "!~" | "|>" | "!>")
        )
    }

    /// Stages until something else; with `allow_unwrap`, an `unwrap` and the
    /// label filters after it end them.
    fn stages(&mut self, allow_unwrap: bool) -> Result<(Vec<Stage>, Option<Unwrap>), ParseError> {
        let mut stages = Vec::new();
        loop {
            if self.is_line_filter() {
                stages.push(self.line_filter()?);
                continue;
            }
            if !self.is_sym("|") {
                return Ok((stages, None));
            }
            let bar = self.next();
            if self.is_ident("unwrap") {
                if !allow_unwrap {
                    return Err(
                        self.error_at(&bar, "unwrap is only allowed in a range aggregation")
                    );
                }
                self.next();
                let unwrap = self.unwrap()?;
                return Ok((stages, Some(unwrap)));
            }
            stages.push(self.stage()?);
        }
    }

    fn line_filter(&mut self) -> Result<Stage, ParseError> {
        let t = self.next();
        let op = match t.tok {
            Tok::Sym("|=") => LineOp::Contains,
            Tok::Sym("!=") => LineOp::NotContains,
            Tok::Sym("|~") => LineOp::Regex,
            Tok::Sym("!~") => LineOp::NotRegex,
            Tok::Sym("|>") => LineOp::Pattern,
            _ => LineOp::NotPattern,
        };
        let mut patterns = Vec::new();
        loop {
            let pt = self.peek().clone();
            let pattern = self.string("a string")?;
            match op {
                LineOp::Regex | LineOp::NotRegex => self.regex(&pt, &pattern, false)?,
                LineOp::Pattern | LineOp::NotPattern
                    if captures(&pattern).any(|name| name != "_") =>
                {
                    // Named captures are for `| pattern`; a line filter uses `<_>`.
                    return Err(self.error_at(&pt, "a pattern line filter takes only <_> captures"));
                }
                _ => {}
            }
            patterns.push(pattern);
            if !self.eat_ident("or") {
                break;
            }
        }
        Ok(Stage::LineFilter { op, patterns })
    }

    fn stage(&mut self) -> Result<Stage, ParseError> {
        let t = self.peek().clone();
        let word = match &t.tok {
            Tok::Ident(w) => w.clone(),
            Tok::Sym("(") => return Ok(Stage::LabelFilter(self.label_filter()?)),
            _ => return Err(self.unexpected("a parser, a formatter or a label filter")),
        };
        // A label named like a stage keyword is a label filter when an operator follows.
        let is_filter = matches!(
            self.peek_at(1),
            Tok::Sym("=" | "==" | "!=" | "=~" | "!~" | ">" | ">=" | "<" | "<=")
        );
        if is_filter {
            return Ok(Stage::LabelFilter(self.label_filter()?));
        }
        self.next();
        Ok(match word.as_str() {
            "json" => Stage::Json(self.extractions()?),
            "logfmt" => {
                let (mut strict, mut keep_empty) = (false, false);
                while self.is_sym("-") && self.peek_at(1) == &Tok::Sym("-") {
                    self.next();
                    self.next();
                    let flag = self.peek().clone();
                    match self.ident("a flag")?.as_str() {
                        "strict" => strict = true,
                        "keep_empty" => keep_empty = true,
                        "keep" if self.eat_sym("-") && self.eat_ident("empty") => keep_empty = true,
                        other => {
                            return Err(
                                self.error_at(&flag, format!("unknown logfmt flag --{other}"))
                            );
                        }
                    }
                }
                Stage::Logfmt {
                    strict,
                    keep_empty,
                    extractions: self.extractions()?,
                }
            }
            "regexp" => {
                let rt = self.peek().clone();
                let re = self.string("a regular expression")?;
                self.regex(&rt, &re, false)?;
                let named = regex::Regex::new(&re)
                    .map(|r| r.capture_names().flatten().count() > 0)
                    .unwrap_or(false);
                if !named {
                    return Err(self.error_at(&rt, "at least one named capture must be supplied"));
                }
                Stage::Regexp(re)
            }
            "pattern" => {
                let pt = self.peek().clone();
                let p = self.string("a pattern")?;
                let named = captures(&p).any(|name| name != "_");
                if !named {
                    return Err(self.error_at(&pt, "at least one capture is required"));
                }
                Stage::Pattern(p)
            }
            "unpack" => Stage::Unpack,
            "line_format" => Stage::LineFormat(self.string("a template")?),
            "label_format" => {
                let mut items = Vec::new();
                loop {
                    let to = self.ident("a label name")?;
                    self.expect_sym("=")?;
                    items.push(match self.peek().tok.clone() {
                        Tok::Str(template) => {
                            self.next();
                            LabelFormat::Template { to, template }
                        }
                        Tok::Ident(from) => {
                            self.next();
                            LabelFormat::Rename { to, from }
                        }
                        _ => return Err(self.unexpected("a label name or a template")),
                    });
                    if !self.eat_sym(",") {
                        break;
                    }
                }
                Stage::LabelFormat(items)
            }
            "drop" => Stage::Drop(self.label_selectors()?),
            "keep" => Stage::Keep(self.label_selectors()?),
            "decolorize" => Stage::Decolorize,
            _ => {
                return Err(self.error_at(
                    &t,
                    format!("syntax error: unexpected identifier {word:?}: expected a parser, a formatter or a label filter"),
                ));
            }
        })
    }

    /// `a="x.y", b` after `json` or `logfmt` (none: every field).
    fn extractions(&mut self) -> Result<Vec<Extraction>, ParseError> {
        let mut out = Vec::new();
        while let Tok::Ident(label) = self.peek().tok.clone() {
            if self.binary_op().is_some() {
                break; // `or`/`and` cannot start an extraction
            }
            self.next();
            let expression = if self.eat_sym("=") {
                Some(self.string("an expression string")?)
            } else {
                None
            };
            out.push(Extraction { label, expression });
            if !self.eat_sym(",") {
                break;
            }
        }
        Ok(out)
    }

    fn label_selectors(&mut self) -> Result<Vec<LabelSelector>, ParseError> {
        let mut out = Vec::new();
        loop {
            let name = self.ident("a label name")?;
            let op = match self.peek().tok {
                Tok::Sym("=") => Some(MatchOp::Eq),
                Tok::Sym("!=") => Some(MatchOp::Neq),
                Tok::Sym("=~") => Some(MatchOp::Re),
                Tok::Sym("!~") => Some(MatchOp::Nre),
                _ => None,
            };
            let matcher = match op {
                Some(op) => {
                    self.next();
                    let vt = self.peek().clone();
                    let value = self.string("a string")?;
                    if matches!(op, MatchOp::Re | MatchOp::Nre) {
                        self.regex(&vt, &value, true)?;
                    }
                    Some((op, value))
                }
                None => None,
            };
            out.push(LabelSelector { name, matcher });
            if !self.eat_sym(",") {
                return Ok(out);
            }
        }
    }

    fn unwrap(&mut self) -> Result<Unwrap, ParseError> {
        let first = self.ident("a label name or a conversion")?;
        let (label, conversion) = if self.eat_sym("(") {
            let conversion = match first.as_str() {
                "duration" | "duration_seconds" => Conversion::Duration,
                "bytes" => Conversion::Bytes,
                other => {
                    return Err(self.unexpected(&format!(
                        "a conversion (duration, duration_seconds or bytes), not {other}"
                    )));
                }
            };
            let label = self.ident("a label name")?;
            self.expect_sym(")")?;
            (label, conversion)
        } else {
            (first, Conversion::Number)
        };
        let mut filters = Vec::new();
        while self.is_sym("|") {
            self.next();
            filters.push(self.label_filter()?);
        }
        Ok(Unwrap {
            label,
            conversion,
            filters,
        })
    }

    // ---- Label filters: `or` over `and` (`and`, `,` or juxtaposition).

    fn label_filter(&mut self) -> Result<LabelFilter, ParseError> {
        self.nested(Self::label_filter_at)
    }

    fn label_filter_at(&mut self) -> Result<LabelFilter, ParseError> {
        let mut lhs = self.label_filter_and()?;
        while self.eat_ident("or") {
            let rhs = self.label_filter_and()?;
            lhs = LabelFilter::Or(Box::new(lhs), Box::new(rhs));
        }
        Ok(lhs)
    }

    fn label_filter_and(&mut self) -> Result<LabelFilter, ParseError> {
        let mut lhs = self.label_filter_atom()?;
        loop {
            if self.eat_ident("and") || self.eat_sym(",") {
            } else if self.is_sym("(")
                || (matches!(self.peek().tok, Tok::Ident(ref w) if w != "or" && w != "and")
                    && matches!(
                        self.peek_at(1),
                        Tok::Sym("=" | "==" | "!=" | "=~" | "!~" | ">" | ">=" | "<" | "<=")
                    ))
            {
                // Juxtaposition means `and`.
            } else {
                return Ok(lhs);
            }
            let rhs = self.label_filter_atom()?;
            lhs = LabelFilter::And(Box::new(lhs), Box::new(rhs));
        }
    }

    fn label_filter_atom(&mut self) -> Result<LabelFilter, ParseError> {
        if self.eat_sym("(") {
            let inner = self.label_filter()?;
            self.expect_sym(")")?;
            return Ok(inner);
        }
        let name = self.ident("a label name")?;
        let op_token = self.next();
        let value = self.peek().clone();
        let cmp = |op: &str| match op {
            "==" | "=" => Some(CmpOp::Eq),
            "!=" => Some(CmpOp::Neq),
            ">" => Some(CmpOp::Gt),
            ">=" => Some(CmpOp::Ge),
            "<" => Some(CmpOp::Lt),
            "<=" => Some(CmpOp::Le),
            _ => None,
        };
        let Tok::Sym(op) = op_token.tok else {
            return Err(self.error_at(
                &op_token,
                format!(
                    "syntax error: unexpected {}, expected a comparison",
                    op_token.tok.describe()
                ),
            ));
        };
        match &value.tok {
            Tok::Str(s) => {
                let op = match op {
                    "=" | "==" => MatchOp::Eq,
                    "!=" => MatchOp::Neq,
                    "=~" => MatchOp::Re,
                    "!~" => MatchOp::Nre,
                    _ => {
                        return Err(self.error_at(
                            &op_token,
                            format!("syntax error: {op} cannot compare with a string"),
                        ));
                    }
                };
                if matches!(op, MatchOp::Re | MatchOp::Nre) {
                    self.regex(&value, s, true)?;
                }
                self.next();
                Ok(LabelFilter::String(Matcher {
                    name,
                    op,
                    value: s.clone(),
                }))
            }
            Tok::Number(_) | Tok::Sym("-") => {
                let op = cmp(op).ok_or_else(|| {
                    self.error_at(
                        &op_token,
                        format!("syntax error: {op} cannot compare with a number"),
                    )
                })?;
                let value = self.number("a number")?;
                Ok(LabelFilter::Number { name, op, value })
            }
            Tok::Unit(_) => {
                let op = cmp(op).ok_or_else(|| {
                    self.error_at(
                        &op_token,
                        format!("syntax error: {op} cannot compare with a duration or a size"),
                    )
                })?;
                let filter = if let Some(ns) = value.duration() {
                    LabelFilter::Duration {
                        name,
                        op,
                        value: ns,
                    }
                } else if let Some(bytes) = value.bytes() {
                    LabelFilter::Bytes {
                        name,
                        op,
                        value: bytes,
                    }
                } else {
                    return Err(self.error_at(
                        &value,
                        format!("invalid duration or byte size {}", value.tok.describe()),
                    ));
                };
                self.next();
                Ok(filter)
            }
            _ => Err(self.unexpected("a string, a number, a duration or a byte size")),
        }
    }
}
