//! Running a log pipeline over lines: line filters, parsers, label filters,
//! formatting and label stages, as Loki does line by line. The query side
//! feeds it the lines a scan found (after the filters it could push down)
//! with their labels.

mod json;
mod labels;
mod parsers;
mod template;

use std::collections::BTreeSet;

use regex::Regex;

pub use self::json::JSON_ERROR;
pub use self::labels::{Category, ERROR, ERROR_DETAILS, Label, Labels, sanitize};
pub use self::parsers::{LOGFMT_ERROR, Pattern};
pub use self::template::{Scope, Template, format_time, printf};
use crate::ast::{
    CmpOp, Conversion, Extraction, LabelFilter, LabelFormat, LabelSelector, LineOp, MatchOp,
    Matcher, Stage, Unwrap,
};

/// Set when a label filter cannot read a label as a number, duration or size.
pub const LABEL_FILTER_ERROR: &str = "LabelFilterErr";
/// Set when `unwrap` cannot read its label.
pub const SAMPLE_ERROR: &str = "SampleExtractionErr";
/// Set when a template fails on a line.
pub const TEMPLATE_ERROR: &str = "TemplateFormatErr";

/// One log line going through a pipeline.
#[derive(Debug, Clone)]
pub struct Row {
    /// Nanoseconds since the epoch.
    pub time: i64,
    pub line: String,
    pub labels: Labels,
}

/// A matcher on a label value, compiled.
#[derive(Debug, Clone)]
pub struct ValueMatcher {
    op: MatchOp,
    value: String,
    re: Option<Regex>,
}

impl ValueMatcher {
    pub fn new(op: MatchOp, value: &str) -> Result<Self, String> {
        let re = match op {
            MatchOp::Re | MatchOp::Nre => Some(anchored(value)?),
            _ => None,
        };
        Ok(ValueMatcher {
            op,
            value: value.to_owned(),
            re,
        })
    }

    /// Whether a label value (empty when the label is absent) matches.
    pub fn matches(&self, value: &str) -> bool {
        match (self.op, &self.re) {
            (MatchOp::Eq, _) => value == self.value,
            (MatchOp::Neq, _) => value != self.value,
            (MatchOp::Re, Some(re)) => re.is_match(value),
            (MatchOp::Nre, Some(re)) => !re.is_match(value),
            _ => false,
        }
    }

    /// A matcher's text, when it matches exactly one value.
    pub fn equals(&self) -> Option<&str> {
        (self.op == MatchOp::Eq).then_some(self.value.as_str())
    }
}

/// A regular expression that must match a whole value, as label matchers do.
pub fn anchored(re: &str) -> Result<Regex, String> {
    Regex::new(&format!("^(?s:{re})$")).map_err(|e| e.to_string())
}

/// A stream selector's matchers, compiled: a label set matches when every
/// matcher does.
#[derive(Debug, Clone)]
pub struct Selector {
    matchers: Vec<(String, ValueMatcher)>,
}

impl Selector {
    pub fn new(matchers: &[Matcher]) -> Result<Self, String> {
        Ok(Selector {
            matchers: matchers
                .iter()
                .map(|m| Ok((m.name.clone(), ValueMatcher::new(m.op, &m.value)?)))
                .collect::<Result<_, String>>()?,
        })
    }

    pub fn matches(&self, labels: &Labels) -> bool {
        self.matchers
            .iter()
            .all(|(name, m)| m.matches(labels.get(name).unwrap_or("")))
    }

    /// The label names the selector reads.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.matchers.iter().map(|(n, _)| n.as_str())
    }
}

/// A compiled log pipeline.
#[derive(Debug, Clone)]
pub struct Pipeline {
    stages: Vec<Compiled>,
    /// The labels read after the parsers, when only those matter.
    hints: Option<parsers::Hints>,
}

#[derive(Debug, Clone)]
enum LineMatch {
    Text(String),
    Regex(Regex),
    Pattern(Pattern),
}

impl LineMatch {
    fn matches(&self, line: &str) -> bool {
        match self {
            LineMatch::Text(t) => line.contains(t.as_str()),
            LineMatch::Regex(re) => re.is_match(line),
            LineMatch::Pattern(p) => p.matches(line),
        }
    }
}

#[derive(Debug, Clone)]
enum Compiled {
    Line {
        negated: bool,
        any: Vec<LineMatch>,
    },
    Json(Vec<Extraction>),
    Logfmt {
        strict: bool,
        keep_empty: bool,
        extractions: Vec<Extraction>,
    },
    Regexp(Regex),
    Pattern(Pattern),
    Unpack,
    LineFormat(Template),
    LabelFormat(Vec<(String, Format)>),
    Filter(Filter),
    Drop(Vec<(String, Option<ValueMatcher>)>),
    Keep(Vec<(String, Option<ValueMatcher>)>),
    Decolorize,
}

#[derive(Debug, Clone)]
enum Format {
    Rename(String),
    Template(Template),
}

/// A compiled label filter.
#[derive(Debug, Clone)]
pub struct Filter(FilterNode);

#[derive(Debug, Clone)]
enum FilterNode {
    And(Box<FilterNode>, Box<FilterNode>),
    Or(Box<FilterNode>, Box<FilterNode>),
    Str(String, ValueMatcher),
    Num(String, CmpOp, f64, Conversion),
}

impl Filter {
    pub fn new(filter: &LabelFilter) -> Result<Self, String> {
        Ok(Filter(compile_filter(filter)?))
    }

    /// Whether a line passes; a value that does not convert sets
    /// `__error__` and lets the line pass, as Loki does.
    pub fn keep(&self, labels: &mut Labels) -> bool {
        eval_filter(&self.0, labels)
    }
}

fn compile_filter(filter: &LabelFilter) -> Result<FilterNode, String> {
    Ok(match filter {
        LabelFilter::And(a, b) => {
            FilterNode::And(Box::new(compile_filter(a)?), Box::new(compile_filter(b)?))
        }
        LabelFilter::Or(a, b) => {
            FilterNode::Or(Box::new(compile_filter(a)?), Box::new(compile_filter(b)?))
        }
        LabelFilter::String(m) => {
            FilterNode::Str(m.name.clone(), ValueMatcher::new(m.op, &m.value)?)
        }
        LabelFilter::Number { name, op, value } => {
            FilterNode::Num(name.clone(), *op, *value, Conversion::Number)
        }
        LabelFilter::Duration { name, op, value } => {
            FilterNode::Num(name.clone(), *op, *value as f64, Conversion::Duration)
        }
        LabelFilter::Bytes { name, op, value } => {
            FilterNode::Num(name.clone(), *op, *value as f64, Conversion::Bytes)
        }
    })
}

fn compare(op: CmpOp, a: f64, b: f64) -> bool {
    match op {
        CmpOp::Eq => a == b,
        CmpOp::Neq => a != b,
        CmpOp::Gt => a > b,
        CmpOp::Ge => a >= b,
        CmpOp::Lt => a < b,
        CmpOp::Le => a <= b,
    }
}

/// A label value as a number: plain, a Go duration (in nanoseconds) or a
/// byte size.
fn convert(value: &str, conversion: Conversion) -> Result<f64, String> {
    match conversion {
        Conversion::Number => value
            .trim()
            .parse::<f64>()
            .map_err(|_| format!("strconv.ParseFloat: parsing {value:?}: invalid syntax")),
        Conversion::Duration => crate::units::parse_duration(value.trim())
            .map(|ns| ns as f64)
            .ok_or_else(|| format!("time: invalid duration {value:?}")),
        Conversion::Bytes => crate::units::parse_bytes(value)
            .map(|b| b as f64)
            .ok_or_else(|| format!("invalid byte size {value:?}")),
    }
}

fn eval_filter(node: &FilterNode, labels: &mut Labels) -> bool {
    match node {
        FilterNode::And(a, b) => eval_filter(a, labels) && eval_filter(b, labels),
        FilterNode::Or(a, b) => eval_filter(a, labels) || eval_filter(b, labels),
        FilterNode::Str(name, m) => m.matches(labels.get(name).unwrap_or("")),
        FilterNode::Num(name, op, value, conversion) => {
            let Some(text) = labels.get(name) else {
                return false;
            };
            match convert(text, *conversion) {
                Ok(v) => compare(*op, v, *value),
                Err(e) => {
                    labels.set_error(LABEL_FILTER_ERROR, e);
                    true
                }
            }
        }
    }
}

fn selectors(list: &[LabelSelector]) -> Result<Vec<(String, Option<ValueMatcher>)>, String> {
    list.iter()
        .map(|s| {
            let m = match &s.matcher {
                Some((op, v)) => Some(ValueMatcher::new(*op, v)?),
                None => None,
            };
            Ok((s.name.clone(), m))
        })
        .collect()
}

fn selected(list: &[(String, Option<ValueMatcher>)], label: &Label) -> bool {
    list.iter()
        .any(|(name, m)| *name == label.name && m.as_ref().is_none_or(|m| m.matches(&label.value)))
}

impl Pipeline {
    /// Compiles stages (regular expressions, patterns, templates).
    pub fn new(stages: &[Stage]) -> Result<Self, String> {
        let stages = stages
            .iter()
            .map(|stage| {
                Ok(match stage {
                    Stage::LineFilter { op, patterns } => {
                        let any = patterns
                            .iter()
                            .map(|p| {
                                Ok(match op {
                                    LineOp::Contains | LineOp::NotContains => {
                                        LineMatch::Text(p.clone())
                                    }
                                    LineOp::Regex | LineOp::NotRegex => {
                                        LineMatch::Regex(Regex::new(p).map_err(|e| e.to_string())?)
                                    }
                                    LineOp::Pattern | LineOp::NotPattern => {
                                        LineMatch::Pattern(Pattern::new(p)?)
                                    }
                                })
                            })
                            .collect::<Result<_, String>>()?;
                        let negated = matches!(
                            op,
                            LineOp::NotContains | LineOp::NotRegex | LineOp::NotPattern
                        );
                        Compiled::Line { negated, any }
                    }
                    Stage::Json(e) => Compiled::Json(e.clone()),
                    Stage::Logfmt {
                        strict,
                        keep_empty,
                        extractions,
                    } => Compiled::Logfmt {
                        strict: *strict,
                        keep_empty: *keep_empty,
                        extractions: extractions.clone(),
                    },
                    Stage::Regexp(re) => {
                        Compiled::Regexp(Regex::new(re).map_err(|e| e.to_string())?)
                    }
                    Stage::Pattern(p) => Compiled::Pattern(Pattern::new(p)?),
                    Stage::Unpack => Compiled::Unpack,
                    Stage::LineFormat(t) => Compiled::LineFormat(Template::new(t)?),
                    Stage::LabelFormat(formats) => Compiled::LabelFormat(
                        formats
                            .iter()
                            .map(|f| {
                                Ok(match f {
                                    LabelFormat::Rename { to, from } => {
                                        (to.clone(), Format::Rename(from.clone()))
                                    }
                                    LabelFormat::Template { to, template } => {
                                        (to.clone(), Format::Template(Template::new(template)?))
                                    }
                                })
                            })
                            .collect::<Result<_, String>>()?,
                    ),
                    Stage::LabelFilter(f) => Compiled::Filter(Filter::new(f)?),
                    Stage::Drop(list) => Compiled::Drop(selectors(list)?),
                    Stage::Keep(list) => Compiled::Keep(selectors(list)?),
                    Stage::Decolorize => Compiled::Decolorize,
                })
            })
            .collect::<Result<_, String>>()?;
        Ok(Pipeline {
            stages,
            hints: None,
        })
    }

    /// Runs a line through the stages; false when a filter drops it.
    pub fn process(&self, row: &mut Row) -> bool {
        for stage in &self.stages {
            match stage {
                Compiled::Line { negated, any } => {
                    if any.iter().any(|m| m.matches(&row.line)) == *negated {
                        return false;
                    }
                }
                Compiled::Json(e) => {
                    json::parse(&row.line, e, &mut row.labels, self.hints.as_ref())
                }
                Compiled::Logfmt {
                    strict,
                    keep_empty,
                    extractions,
                } => parsers::logfmt(
                    &row.line,
                    *strict,
                    *keep_empty,
                    extractions,
                    &mut row.labels,
                    self.hints.as_ref(),
                ),
                Compiled::Regexp(re) => parsers::regexp(re, &row.line, &mut row.labels),
                Compiled::Pattern(p) => parsers::pattern(p, &row.line, &mut row.labels),
                Compiled::Unpack => json::unpack(&mut row.line, &mut row.labels),
                Compiled::LineFormat(t) => {
                    let scope = Scope {
                        labels: &row.labels,
                        line: &row.line,
                        time: row.time,
                    };
                    match t.render(&scope) {
                        Ok(line) => row.line = line,
                        Err(e) => row.labels.set_error(TEMPLATE_ERROR, e),
                    }
                }
                Compiled::LabelFormat(formats) => {
                    let before = row.labels.clone();
                    for (to, format) in formats {
                        match format {
                            Format::Rename(from) => {
                                if let Some(value) = before.get(from) {
                                    let value = value.to_owned();
                                    row.labels.remove(from);
                                    row.labels.set(Category::Parsed, to, value);
                                }
                            }
                            Format::Template(t) => {
                                let scope = Scope {
                                    labels: &before,
                                    line: &row.line,
                                    time: row.time,
                                };
                                match t.render(&scope) {
                                    Ok(v) => row.labels.set(Category::Parsed, to, v),
                                    Err(e) => row.labels.set_error(TEMPLATE_ERROR, e),
                                }
                            }
                        }
                    }
                }
                Compiled::Filter(f) => {
                    if !f.keep(&mut row.labels) {
                        return false;
                    }
                }
                Compiled::Drop(list) => row.labels.retain(|l| !selected(list, l)),
                Compiled::Keep(list) => row.labels.retain(|l| selected(list, l)),
                Compiled::Decolorize => row.line = decolorize(&row.line),
            }
        }
        true
    }

    pub fn is_empty(&self) -> bool {
        self.stages.is_empty()
    }

    /// The same pipeline with its `json` and `logfmt` stages extracting
    /// only these labels (and their errors): for a query that reads no other
    /// label after them, and whose answer keeps no other (an aggregation
    /// `by` some labels, or of everything).
    pub fn with_hints(mut self, hints: BTreeSet<String>) -> Self {
        self.hints = Some(parsers::Hints::new(&hints));
        self
    }

    /// The labels the stages read (label filters, templates, renames); `None`
    /// when a template reads every label. Parsers read only stream labels.
    pub fn reads(&self) -> Option<BTreeSet<String>> {
        let mut names = BTreeSet::new();
        for stage in &self.stages {
            match stage {
                Compiled::Filter(f) => filter_names(&f.0, &mut names),
                Compiled::LineFormat(t) => names.extend(t.fields()?),
                Compiled::LabelFormat(formats) => {
                    for (_, format) in formats {
                        match format {
                            Format::Rename(from) => {
                                names.insert(from.clone());
                            }
                            Format::Template(t) => names.extend(t.fields()?),
                        }
                    }
                }
                _ => {}
            }
        }
        Some(names)
    }
}

impl Pipeline {
    /// Whether a label of this name is set by a parser before any stage
    /// reads it (and no `label_format` may set it otherwise): then a line
    /// whose parsers set it reads the same whatever structured metadata of
    /// that name the line has, since the parsed value replaces it.
    pub fn parsed_first(&self, name: &str) -> bool {
        let extracts = |e: &[Extraction]| e.is_empty() || e.iter().any(|e| e.label == name);
        if self
            .stages
            .iter()
            .any(|s| matches!(s, Compiled::LabelFormat(_)))
        {
            return false;
        }
        for stage in &self.stages {
            match stage {
                Compiled::Line { .. } | Compiled::Decolorize => {}
                Compiled::Json(e) | Compiled::Logfmt { extractions: e, .. } if extracts(e) => {
                    return true;
                }
                Compiled::Json(_) | Compiled::Logfmt { .. } => {}
                Compiled::Regexp(re) => {
                    if re.capture_names().flatten().any(|n| n == name) {
                        return true;
                    }
                }
                Compiled::Pattern(p) => {
                    if p.captures_name(name) {
                        return true;
                    }
                }
                Compiled::Unpack => return true,
                // Any other stage reads or removes labels first.
                _ => return false,
            }
        }
        false
    }
}

fn filter_names(node: &FilterNode, names: &mut BTreeSet<String>) {
    match node {
        FilterNode::And(a, b) | FilterNode::Or(a, b) => {
            filter_names(a, names);
            filter_names(b, names);
        }
        FilterNode::Str(name, _) | FilterNode::Num(name, ..) => {
            names.insert(name.clone());
        }
    }
}

/// The line without ANSI escape sequences (colours, cursor moves).
pub fn decolorize(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' && chars.peek() == Some(&'[') {
            chars.next();
            while let Some(&n) = chars.peek() {
                chars.next();
                if ('@'..='~').contains(&n) {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The fields of a logfmt line (as `| logfmt` extracts them, malformed
/// pairs skipped).
pub fn logfmt_fields(line: &str) -> Labels {
    let mut labels = Labels::default();
    parsers::logfmt(line, false, false, &[], &mut labels, None);
    labels
}

/// `unwrap` compiled: the label a range aggregation reads its values from.
#[derive(Debug, Clone)]
pub struct Unwrapper {
    label: String,
    conversion: Conversion,
    filters: Vec<Filter>,
}

impl Unwrapper {
    /// The labels `unwrap` and the filters after it read.
    pub fn reads(&self) -> BTreeSet<String> {
        let mut names = BTreeSet::from([self.label.clone()]);
        for f in &self.filters {
            filter_names(&f.0, &mut names);
        }
        names
    }

    pub fn new(unwrap: &Unwrap) -> Result<Self, String> {
        Ok(Unwrapper {
            label: unwrap.label.clone(),
            conversion: unwrap.conversion,
            filters: unwrap
                .filters
                .iter()
                .map(Filter::new)
                .collect::<Result<_, _>>()?,
        })
    }

    /// The sample of a line, its label removed from the labels: `None` when
    /// the line lacks the label or a filter after `unwrap` drops it. A
    /// value that does not convert sets `__error__` (and counts as 0).
    pub fn sample(&self, labels: &mut Labels) -> Option<f64> {
        let text = labels.get(&self.label).filter(|t| !t.is_empty())?;
        let value = match convert(text, self.conversion) {
            Ok(v) if self.conversion == Conversion::Duration => v / 1e9,
            Ok(v) => v,
            Err(e) => {
                labels.set_error(SAMPLE_ERROR, e);
                0.0
            }
        };
        labels.remove(&self.label);
        for f in &self.filters {
            if !f.keep(labels) {
                return None;
            }
        }
        Some(value)
    }
}

/// Loki's level names.
const LEVELS: [&str; 7] = [
    "trace", "debug", "info", "warn", "error", "critical", "fatal",
];

/// A level as Loki names it (`WARNING` → `warn`, `err` → `error`, …);
/// `unknown` when it is none.
pub fn normalize_level(level: &str) -> &'static str {
    match level.trim().to_ascii_lowercase().as_str() {
        "trace" | "trc" => "trace",
        "debug" | "dbg" | "dbug" => "debug",
        "info" | "inf" | "information" | "informational" | "notice" => "info",
        "warn" | "warning" | "wrn" => "warn",
        "error" | "err" | "eror" => "error",
        "critical" | "crit" | "alert" | "emerg" | "emergency" => "critical",
        "fatal" | "panic" => "fatal",
        _ => "unknown",
    }
}

/// The labels a level is read from, as Loki 3 looks for them.
pub const LEVEL_LABELS: [&str; 9] = [
    "level", "LEVEL", "Level", "severity", "SEVERITY", "Severity", "lvl", "LVL", "Lvl",
];

/// The level of an OpenTelemetry severity number (1–24).
pub fn severity_level(number: i32) -> &'static str {
    match number {
        1..=4 => "trace",
        5..=8 => "debug",
        9..=12 => "info",
        13..=16 => "warn",
        17..=20 => "error",
        21..=24 => "fatal",
        _ => "unknown",
    }
}

/// The level Loki 3 detects in a line that carries none: a `level` field
/// of a JSON or logfmt line, else a level word in it; `unknown` otherwise.
pub fn detect_level(line: &str) -> &'static str {
    let trimmed = line.trim_start();
    let mut field = Labels::default();
    if trimmed.starts_with('{') {
        json::parse(trimmed, &[], &mut field, None);
    } else if trimmed.contains('=') {
        parsers::logfmt(trimmed, false, false, &[], &mut field, None);
    }
    if let Some(level) = LEVEL_LABELS.iter().find_map(|l| field.get(l)) {
        let level = normalize_level(level);
        if level != "unknown" {
            return level;
        }
    }
    let words = [
        ("trace", "trace"),
        ("debug", "debug"),
        ("info", "info"),
        ("warn", "warn"),
        ("error", "error"),
        ("err:", "error"),
        ("critical", "critical"),
        ("fatal", "fatal"),
    ];
    let lower = line.to_ascii_lowercase();
    let mut best: Option<(usize, &'static str)> = None;
    for (word, level) in words {
        if let Some(at) = find_word(&lower, word).filter(|at| best.is_none_or(|(b, _)| *at < b)) {
            best = Some((at, level));
        }
    }
    best.map_or("unknown", |(_, l)| {
        debug_assert!(LEVELS.contains(&l));
        l
    })
}

/// The first place `word` stands as a word (not inside a longer one).
fn find_word(text: &str, word: &str) -> Option<usize> {
    let bytes = text.as_bytes();
    let mut from = 0;
    while let Some(i) = text[from..].find(word) {
        let at = from + i;
        let end = at + word.len();
        let before = at == 0 || !bytes[at - 1].is_ascii_alphanumeric();
        let after =
            end >= bytes.len() || !bytes[end].is_ascii_alphanumeric() || word.ends_with(':');
        if before && after {
            return Some(at);
        }
        from = at + 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Expr, parse};

    fn pipeline(query: &str) -> Pipeline {
        let Expr::Log(log) = parse(query).expect("the test query is valid") else {
            panic!("not a log query")
        };
        Pipeline::new(&log.pipeline).expect("the test query is valid")
    }

    fn run(query: &str, line: &str) -> Option<(String, Vec<(String, String)>)> {
        let mut row = Row {
            time: 0,
            line: line.to_owned(),
            labels: Labels::stream([("app", "a")]),
        };
        pipeline(query)
            .process(&mut row)
            .then(|| (row.line, row.labels.sorted()))
    }

    #[test]
    fn line_filters_chain_and_or() {
        assert!(run(r#"{app="a"} |= "x" or "y" != "z""#, "ay").is_some());
        assert!(run(r#"{app="a"} |= "x" or "y" != "z""#, "ayz").is_none());
        assert!(run(r#"{app="a"} |~ "a.c""#, "xabcx").is_some());
        assert!(run(r#"{app="a"} !~ "a.c""#, "xabcx").is_none());
        assert!(run(r#"{app="a"} |> "<_> GET <_>""#, "1 GET /").is_some());
        assert!(run(r#"{app="a"} !> "<_> GET <_>""#, "1 GET /").is_none());
    }

    #[test]
    fn label_filters_convert_and_flag_errors() {
        let q = r#"{app="a"} | logfmt | status >= 500 and dur > 1s or size > 1KB"#;
        assert!(run(q, "status=503 dur=2s").is_some());
        assert!(run(q, "status=503 dur=500ms").is_none());
        assert!(run(q, "status=200 size=2KB").is_some());
        let (_, labels) = run(q, "status=abc dur=2s").expect("the test query is valid");
        assert!(labels.contains(&("__error__".into(), LABEL_FILTER_ERROR.into())));
        assert!(run(r#"{app="a"} | logfmt | status >= 500"#, "x=1").is_none());
        assert!(run(r#"{app="a"} | logfmt | missing="""#, "x=1").is_some());
    }

    #[test]
    fn formats_and_label_stages() {
        let (line, labels) = run(
            r#"{app="a"} | logfmt | line_format "{{.msg | ToUpper}} ({{.app}})" | label_format who=user, n="{{.msg}}!" | drop level | keep app, who, n"#,
            r#"msg="hi there" user=bob level=info"#,
        )
        .expect("the test query is valid");
        assert_eq!(line, "HI THERE (a)");
        let expected: Vec<(String, String)> = [("app", "a"), ("n", "hi there!"), ("who", "bob")]
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        assert_eq!(labels, expected);
        let (line, _) = run(r#"{app="a"} | decolorize"#, "\u{1b}[31mred\u{1b}[0m")
            .expect("the test query is valid");
        assert_eq!(line, "red");
    }

    #[test]
    fn trace_to_logs_query_of_grafana() {
        let q = r#"{app="a"} | label_format log_line_contains_trace_id=`{{ contains "abc" __line__  }}` | log_line_contains_trace_id="true" or trace_id="abc""#;
        assert!(run(q, "see abc here").is_some());
        assert!(run(q, "nothing").is_none());
    }

    #[test]
    fn levels_as_loki_detects_them() {
        assert_eq!(detect_level(r#"{"level":"WARNING","msg":"x"}"#), "warn");
        assert_eq!(detect_level("level=err msg=x"), "error");
        assert_eq!(detect_level("2024 ERROR something failed"), "error");
        assert_eq!(detect_level("all good"), "unknown");
        assert_eq!(detect_level("information only"), "unknown");
        assert_eq!(severity_level(17), "error");
        assert_eq!(normalize_level("Warning"), "warn");
    }

    #[test]
    fn labels_a_parser_sets_before_they_are_read() {
        let p = pipeline(r#"{a="b"} |= "x" | logfmt | took > 5s | line_format "{{.took}}""#);
        assert!(p.parsed_first("took"));
        assert!(!pipeline(r#"{a="b"} | took > 5s | logfmt"#).parsed_first("took"));
        assert!(!pipeline(r#"{a="b"} | logfmt | label_format took=x"#).parsed_first("took"));
        assert!(!pipeline(r#"{a="b"} | logfmt user | took > 5s"#).parsed_first("took"));
        assert!(pipeline(r#"{a="b"} | regexp "took=(?P<took>\\S+)""#).parsed_first("took"));
        assert!(pipeline(r#"{a="b"} | pattern "<_> took=<took>""#).parsed_first("took"));
        assert!(!pipeline(r#"{a="b"} | pattern "<_> took=<t>""#).parsed_first("took"));
        assert!(!pipeline(r#"{a="b"}"#).parsed_first("took"));
    }

    #[test]
    fn unwrap_reads_and_removes_its_label() {
        let unwrap = Unwrap {
            label: "dur".into(),
            conversion: Conversion::Duration,
            filters: Vec::new(),
        };
        let u = Unwrapper::new(&unwrap).expect("the test query is valid");
        let mut labels = Labels::stream([("dur", "1500ms"), ("app", "a")]);
        assert_eq!(u.sample(&mut labels), Some(1.5));
        assert_eq!(labels.get("dur"), None);
        let mut labels = Labels::stream([("dur", "x")]);
        assert_eq!(u.sample(&mut labels), Some(0.0));
        assert_eq!(labels.error(), Some(SAMPLE_ERROR));
        assert_eq!(u.sample(&mut Labels::default()), None);
    }
}
