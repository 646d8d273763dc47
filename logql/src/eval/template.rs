//! The Go text/template subset that `line_format` and `label_format` use:
//! `{{.label}}`, pipelines (`{{ .a | ToUpper }}`), function calls
//! (`{{ printf "%s-%d" .a 3 }}`), parentheses, `if`/`else if`/`else`/`end`,
//! trim markers (`{{-`, `-}}`), comments, and the functions Loki adds to Go's
//! and Sprig's (`__line__`, `__timestamp__`, `ToLower`, `contains`,
//! `regexReplaceAll`, `default`, `date`, arithmetic, comparisons, …). A
//! missing label reads as the empty string.

use std::fmt::Write as _;

use super::labels::Labels;

/// A parsed template.
#[derive(Debug, Clone)]
pub struct Template {
    nodes: Vec<Node>,
}

#[derive(Debug, Clone)]
enum Node {
    Text(String),
    Action(Pipeline),
    If {
        branches: Vec<(Pipeline, Vec<Node>)>,
        otherwise: Vec<Node>,
    },
}

type Pipeline = Vec<Command>;
type Command = Vec<Operand>;

#[derive(Debug, Clone)]
enum Operand {
    Field(String),
    Dot,
    Value(Value),
    Func(String),
    Sub(Pipeline),
}

/// A value templates compute with.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
    /// Nanoseconds since the epoch.
    Time(i64),
    Nil,
}

impl Value {
    fn truthy(&self) -> bool {
        match self {
            Value::Str(s) => !s.is_empty(),
            Value::Int(i) => *i != 0,
            Value::Float(f) => *f != 0.0,
            Value::Bool(b) => *b,
            Value::Time(_) => true,
            Value::Nil => false,
        }
    }

    fn text(&self) -> String {
        match self {
            Value::Str(s) => s.clone(),
            Value::Int(i) => i.to_string(),
            Value::Float(f) => go_float(*f),
            Value::Bool(b) => b.to_string(),
            Value::Time(ns) => format_time(*ns, "2006-01-02 15:04:05.999999999 -0700 MST"),
            Value::Nil => "<no value>".to_owned(),
        }
    }

    fn float(&self) -> Result<f64, String> {
        match self {
            Value::Int(i) => Ok(*i as f64),
            Value::Float(f) => Ok(*f),
            Value::Bool(b) => Ok(f64::from(u8::from(*b))),
            Value::Str(s) => s
                .trim()
                .parse()
                .map_err(|_| format!("{s:?} is not a number")),
            Value::Time(ns) => Ok(*ns as f64),
            Value::Nil => Ok(0.0),
        }
    }

    fn int(&self) -> Result<i64, String> {
        match self {
            Value::Int(i) => Ok(*i),
            Value::Float(f) => Ok(*f as i64),
            Value::Str(s) => {
                let s = s.trim();
                s.parse::<i64>()
                    .or_else(|_| s.parse::<f64>().map(|f| f as i64))
                    .map_err(|_| format!("{s:?} is not a number"))
            }
            other => other.float().map(|f| f as i64),
        }
    }
}

/// Go's `%v` of a float64 (`strconv.FormatFloat(f, 'g', -1, 64)` with Go's
/// exponent thresholds).
fn go_float(f: f64) -> String {
    if f.is_nan() {
        return "NaN".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "+Inf" } else { "-Inf" }.into();
    }
    let abs = f.abs();
    if abs != 0.0 && !(1e-4..1e21).contains(&abs) {
        let s = format!("{f:e}");
        let (mantissa, exp) = s.split_once('e').unwrap_or((&s, "0"));
        let exp: i32 = exp.parse().unwrap_or(0);
        return format!(
            "{mantissa}e{}{:02}",
            if exp < 0 { '-' } else { '+' },
            exp.abs()
        );
    }
    format!("{f}")
}

/// What a template renders from: the line's labels, line and time.
pub struct Scope<'a> {
    pub labels: &'a Labels,
    pub line: &'a str,
    pub time: i64,
}

impl Template {
    /// Parses a template; errors say what is wrong.
    pub fn new(text: &str) -> Result<Self, String> {
        let mut parser = TemplateParser {
            chunks: split(text)?,
            pos: 0,
        };
        let (nodes, end) = parser.nodes()?;
        if let Some(end) = end {
            return Err(format!("unexpected {{{{{end}}}}}"));
        }
        Ok(Template { nodes })
    }

    /// The labels the template reads; `None` when it reads them all (`{{.}}`).
    pub fn fields(&self) -> Option<std::collections::BTreeSet<String>> {
        let mut fields = std::collections::BTreeSet::new();
        node_fields(&self.nodes, &mut fields).then_some(fields)
    }

    /// The template's output.
    pub fn render(&self, scope: &Scope<'_>) -> Result<String, String> {
        let mut out = String::new();
        render(&self.nodes, scope, &mut out)?;
        Ok(out)
    }
}

/// Adds the labels nodes read to `fields`; false when they read them all.
fn node_fields(nodes: &[Node], fields: &mut std::collections::BTreeSet<String>) -> bool {
    nodes.iter().all(|node| match node {
        Node::Text(_) => true,
        Node::Action(p) => pipeline_fields(p, fields),
        Node::If {
            branches,
            otherwise,
        } => {
            branches
                .iter()
                .all(|(c, body)| pipeline_fields(c, fields) && node_fields(body, fields))
                && node_fields(otherwise, fields)
        }
    })
}

fn pipeline_fields(p: &Pipeline, fields: &mut std::collections::BTreeSet<String>) -> bool {
    p.iter().flatten().all(|operand| match operand {
        Operand::Field(name) => {
            fields.insert(name.clone());
            true
        }
        Operand::Dot => false,
        Operand::Sub(inner) => pipeline_fields(inner, fields),
        Operand::Value(_) | Operand::Func(_) => true,
    })
}

fn render(nodes: &[Node], scope: &Scope<'_>, out: &mut String) -> Result<(), String> {
    for node in nodes {
        match node {
            Node::Text(t) => out.push_str(t),
            Node::Action(p) => out.push_str(&pipeline(p, scope)?.text()),
            Node::If {
                branches,
                otherwise,
            } => {
                let mut taken = false;
                for (condition, body) in branches {
                    if pipeline(condition, scope)?.truthy() {
                        render(body, scope, out)?;
                        taken = true;
                        break;
                    }
                }
                if !taken {
                    render(otherwise, scope, out)?;
                }
            }
        }
    }
    Ok(())
}

/// A template's text and actions, trim markers applied.
enum Chunk {
    Text(String),
    Action(String),
}

fn split(text: &str) -> Result<Vec<Chunk>, String> {
    let mut chunks = Vec::new();
    let mut rest = text;
    let mut trim_next = false;
    while let Some(open) = rest.find("{{") {
        let mut before = &rest[..open];
        if trim_next {
            before = before.trim_start();
        }
        let mut inner = &rest[open + 2..];
        if let Some(r) = inner.strip_prefix("- ") {
            before = before.trim_end();
            inner = r;
        }
        if !before.is_empty() {
            chunks.push(Chunk::Text(before.to_owned()));
        }
        let close = find_close(inner).ok_or("unclosed action: missing }}")?;
        let mut action = &inner[..close];
        trim_next = false;
        if let Some(a) = action.strip_suffix(" -") {
            action = a;
            trim_next = true;
        }
        let action = action.trim();
        if !(action.starts_with("/*") && action.ends_with("*/")) {
            chunks.push(Chunk::Action(action.to_owned()));
        }
        rest = &inner[close + 2..];
    }
    let rest = if trim_next { rest.trim_start() } else { rest };
    if !rest.is_empty() {
        chunks.push(Chunk::Text(rest.to_owned()));
    }
    Ok(chunks)
}

/// Where an action's `}}` is, skipping strings.
fn find_close(inner: &str) -> Option<usize> {
    let bytes = inner.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'"' => {
                i += 1;
                while i < bytes.len() && bytes[i] != b'"' {
                    i += if bytes[i] == b'\\' { 2 } else { 1 };
                }
            }
            b'`' => {
                i += 1;
                while i < bytes.len() && bytes[i] != b'`' {
                    i += 1;
                }
            }
            b'}' if bytes.get(i + 1) == Some(&b'}') => return Some(i),
            _ => {}
        }
        i += 1;
    }
    None
}

struct TemplateParser {
    chunks: Vec<Chunk>,
    pos: usize,
}

impl TemplateParser {
    /// Nodes up to an `else…` or `end` action (returned) or the end.
    fn nodes(&mut self) -> Result<(Vec<Node>, Option<String>), String> {
        let mut nodes = Vec::new();
        while self.pos < self.chunks.len() {
            let i = self.pos;
            self.pos += 1;
            match &self.chunks[i] {
                Chunk::Text(t) => nodes.push(Node::Text(t.clone())),
                Chunk::Action(a) => {
                    let a = a.clone();
                    if a == "end" || a == "else" || a.starts_with("else ") {
                        return Ok((nodes, Some(a)));
                    }
                    if let Some(condition) = a.strip_prefix("if ") {
                        nodes.push(self.if_node(condition)?);
                    } else if a.starts_with("range ") || a.starts_with("with ") {
                        return Err(format!("{{{{{a}}}}} is not supported here"));
                    } else {
                        nodes.push(Node::Action(parse_pipeline(&a)?));
                    }
                }
            }
        }
        Ok((nodes, None))
    }

    fn if_node(&mut self, condition: &str) -> Result<Node, String> {
        let mut branches = Vec::new();
        let mut condition = parse_pipeline(condition)?;
        loop {
            let (body, end) = self.nodes()?;
            branches.push((condition, body));
            match end.as_deref() {
                Some("end") => {
                    return Ok(Node::If {
                        branches,
                        otherwise: Vec::new(),
                    });
                }
                Some("else") => {
                    let (otherwise, end) = self.nodes()?;
                    if end.as_deref() != Some("end") {
                        return Err("{{else}} without {{end}}".into());
                    }
                    return Ok(Node::If {
                        branches,
                        otherwise,
                    });
                }
                Some(e) if e.starts_with("else if ") => {
                    condition = parse_pipeline(&e["else if ".len()..])?;
                }
                _ => return Err("{{if}} without {{end}}".into()),
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Field(String),
    Dot,
    Str(String),
    Num(String),
    Ident(String),
    Pipe,
    Open,
    Close,
}

fn lex(text: &str) -> Result<Vec<Tok>, String> {
    let mut toks = Vec::new();
    let chars: Vec<char> = text.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            c if c.is_whitespace() => i += 1,
            '|' => {
                toks.push(Tok::Pipe);
                i += 1;
            }
            '(' => {
                toks.push(Tok::Open);
                i += 1;
            }
            ')' => {
                toks.push(Tok::Close);
                i += 1;
            }
            '"' => {
                let mut s = String::new();
                i += 1;
                loop {
                    match chars.get(i) {
                        None => return Err("unterminated string".into()),
                        Some('"') => break,
                        Some('\\') => {
                            i += 1;
                            match chars.get(i) {
                                Some('n') => s.push('\n'),
                                Some('t') => s.push('\t'),
                                Some('r') => s.push('\r'),
                                Some(&other) => s.push(other),
                                None => return Err("unterminated string".into()),
                            }
                        }
                        Some(&c) => s.push(c),
                    }
                    i += 1;
                }
                i += 1;
                toks.push(Tok::Str(s));
            }
            '`' => {
                let start = i + 1;
                let end = chars[start..]
                    .iter()
                    .position(|&c| c == '`')
                    .ok_or("unterminated raw string")?;
                toks.push(Tok::Str(chars[start..start + end].iter().collect()));
                i = start + end + 1;
            }
            '.' => {
                let start = i + 1;
                let mut end = start;
                while end < chars.len() && (chars[end].is_alphanumeric() || chars[end] == '_') {
                    end += 1;
                }
                if end == start {
                    toks.push(Tok::Dot);
                } else {
                    toks.push(Tok::Field(chars[start..end].iter().collect()));
                }
                i = end;
            }
            c if c.is_ascii_digit() || c == '-' || c == '+' => {
                let start = i;
                i += 1;
                while i < chars.len()
                    && (chars[i].is_ascii_alphanumeric() || chars[i] == '.' || chars[i] == '_')
                {
                    i += 1;
                }
                toks.push(Tok::Num(chars[start..i].iter().collect()));
            }
            c if c.is_alphabetic() || c == '_' => {
                let start = i;
                while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                    i += 1;
                }
                toks.push(Tok::Ident(chars[start..i].iter().collect()));
            }
            other => return Err(format!("unexpected {other:?} in an action")),
        }
    }
    Ok(toks)
}

fn parse_pipeline(text: &str) -> Result<Pipeline, String> {
    let toks = lex(text)?;
    let mut pos = 0;
    let p = pipeline_of(&toks, &mut pos)?;
    if pos != toks.len() {
        return Err(format!("unexpected {:?} in {text:?}", toks[pos]));
    }
    Ok(p)
}

fn pipeline_of(toks: &[Tok], pos: &mut usize) -> Result<Pipeline, String> {
    let mut commands = Vec::new();
    loop {
        let mut command = Vec::new();
        while let Some(t) = toks.get(*pos) {
            let operand = match t {
                Tok::Pipe | Tok::Close => break,
                Tok::Field(f) => Operand::Field(f.clone()),
                Tok::Dot => Operand::Dot,
                Tok::Str(s) => Operand::Value(Value::Str(s.clone())),
                Tok::Num(n) => Operand::Value(number(n)?),
                Tok::Ident(name) => match name.as_str() {
                    "true" => Operand::Value(Value::Bool(true)),
                    "false" => Operand::Value(Value::Bool(false)),
                    "nil" => Operand::Value(Value::Nil),
                    _ if FUNCTIONS.contains(&name.as_str()) => Operand::Func(name.clone()),
                    _ => return Err(format!("function {name:?} not defined")),
                },
                Tok::Open => {
                    *pos += 1;
                    let inner = pipeline_of(toks, pos)?;
                    if toks.get(*pos) != Some(&Tok::Close) {
                        return Err("unclosed parenthesis".into());
                    }
                    Operand::Sub(inner)
                }
            };
            command.push(operand);
            *pos += 1;
        }
        if command.is_empty() {
            return Err("missing value in a pipeline".into());
        }
        if command.len() > 1 && !matches!(command[0], Operand::Func(_)) {
            return Err("only a function takes arguments".into());
        }
        commands.push(command);
        if toks.get(*pos) == Some(&Tok::Pipe) {
            *pos += 1;
        } else {
            return Ok(commands);
        }
    }
}

fn number(text: &str) -> Result<Value, String> {
    let clean = text.replace('_', "");
    if let Ok(i) = clean.parse::<i64>() {
        return Ok(Value::Int(i));
    }
    if let Some(i) = clean
        .strip_prefix("0x")
        .and_then(|hex| i64::from_str_radix(hex, 16).ok())
    {
        return Ok(Value::Int(i));
    }
    clean
        .parse::<f64>()
        .map(Value::Float)
        .map_err(|_| format!("bad number {text:?}"))
}

fn pipeline(p: &Pipeline, scope: &Scope<'_>) -> Result<Value, String> {
    let mut piped: Option<Value> = None;
    for command in p {
        let mut values = Vec::with_capacity(command.len());
        for operand in &command[1..] {
            values.push(operand_value(operand, scope)?);
        }
        let value = match &command[0] {
            Operand::Func(name) => {
                values.extend(piped.take());
                call(name, values, scope)?
            }
            first => {
                if piped.is_some() {
                    return Err("a pipeline's later commands must be functions".into());
                }
                operand_value(first, scope)?
            }
        };
        piped = Some(value);
    }
    Ok(piped.unwrap_or(Value::Nil))
}

fn operand_value(operand: &Operand, scope: &Scope<'_>) -> Result<Value, String> {
    Ok(match operand {
        Operand::Field(name) => Value::Str(scope.labels.get(name).unwrap_or("").to_owned()),
        Operand::Dot => Value::Str(format!("{:?}", scope.labels.map())),
        Operand::Value(v) => v.clone(),
        Operand::Func(name) => call(name, Vec::new(), scope)?,
        Operand::Sub(p) => pipeline(p, scope)?,
    })
}

const FUNCTIONS: &[&str] = &[
    "__line__",
    "__timestamp__",
    "ToLower",
    "ToUpper",
    "Title",
    "lower",
    "upper",
    "title",
    "Replace",
    "replace",
    "Trim",
    "TrimLeft",
    "TrimRight",
    "TrimPrefix",
    "TrimSuffix",
    "TrimSpace",
    "trim",
    "trimAll",
    "trimPrefix",
    "trimSuffix",
    "contains",
    "hasPrefix",
    "hasSuffix",
    "regexReplaceAll",
    "regexReplaceAllLiteral",
    "trunc",
    "substr",
    "repeat",
    "indent",
    "nindent",
    "default",
    "printf",
    "len",
    "int",
    "float64",
    "add",
    "sub",
    "mul",
    "div",
    "mod",
    "addf",
    "subf",
    "mulf",
    "divf",
    "max",
    "min",
    "maxf",
    "minf",
    "ceil",
    "floor",
    "round",
    "eq",
    "ne",
    "lt",
    "le",
    "gt",
    "ge",
    "and",
    "or",
    "not",
    "unixEpoch",
    "unixEpochMillis",
    "unixEpochNanos",
    "unixToTime",
    "toDate",
    "date",
    "now",
    "alignLeft",
    "alignRight",
    "b64enc",
    "b64dec",
    "urlencode",
    "urldecode",
];

fn arity(name: &str, args: &[Value], n: usize) -> Result<(), String> {
    if args.len() == n {
        Ok(())
    } else {
        Err(format!("{name} takes {n} arguments, not {}", args.len()))
    }
}

fn call(name: &str, args: Vec<Value>, scope: &Scope<'_>) -> Result<Value, String> {
    let s = |i: usize| args[i].text();
    let text = |v: String| Ok(Value::Str(v));
    let fixed = |n: usize| arity(name, &args, n);
    match name {
        "__line__" => {
            fixed(0)?;
            text(scope.line.to_owned())
        }
        "__timestamp__" => {
            fixed(0)?;
            Ok(Value::Time(scope.time))
        }
        "now" => {
            fixed(0)?;
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as i64);
            Ok(Value::Time(now))
        }
        "ToLower" | "lower" => {
            fixed(1)?;
            text(s(0).to_lowercase())
        }
        "ToUpper" | "upper" => {
            fixed(1)?;
            text(s(0).to_uppercase())
        }
        "Title" | "title" => {
            fixed(1)?;
            let mut out = String::new();
            let mut start = true;
            for c in s(0).chars() {
                if start && c.is_alphabetic() {
                    out.extend(c.to_uppercase());
                } else {
                    out.push(c);
                }
                start = !c.is_alphanumeric();
            }
            text(out)
        }
        "Replace" => {
            fixed(4)?;
            let n = args[3].int()?;
            text(if n < 0 {
                s(0).replace(&s(1), &s(2))
            } else {
                s(0).replacen(&s(1), &s(2), n as usize)
            })
        }
        "replace" => {
            fixed(3)?;
            text(s(2).replace(&s(0), &s(1)))
        }
        "Trim" => {
            fixed(2)?;
            let cut = s(1);
            text(s(0).trim_matches(|c| cut.contains(c)).to_owned())
        }
        "TrimLeft" => {
            fixed(2)?;
            let cut = s(1);
            text(s(0).trim_start_matches(|c| cut.contains(c)).to_owned())
        }
        "TrimRight" => {
            fixed(2)?;
            let cut = s(1);
            text(s(0).trim_end_matches(|c| cut.contains(c)).to_owned())
        }
        "trimAll" => {
            fixed(2)?;
            let cut = s(0);
            text(s(1).trim_matches(|c| cut.contains(c)).to_owned())
        }
        "TrimPrefix" | "trimPrefix" | "TrimSuffix" | "trimSuffix" => {
            fixed(2)?;
            let (value, affix) = if name.starts_with('T') {
                (s(0), s(1))
            } else {
                (s(1), s(0))
            };
            text(if name.ends_with("refix") {
                value.strip_prefix(&affix).unwrap_or(&value).to_owned()
            } else {
                value.strip_suffix(&affix).unwrap_or(&value).to_owned()
            })
        }
        "TrimSpace" | "trim" => {
            fixed(1)?;
            text(s(0).trim().to_owned())
        }
        "contains" => {
            fixed(2)?;
            Ok(Value::Bool(s(1).contains(&s(0))))
        }
        "hasPrefix" => {
            fixed(2)?;
            Ok(Value::Bool(s(1).starts_with(&s(0))))
        }
        "hasSuffix" => {
            fixed(2)?;
            Ok(Value::Bool(s(1).ends_with(&s(0))))
        }
        "regexReplaceAll" | "regexReplaceAllLiteral" => {
            fixed(3)?;
            let re = regex::Regex::new(&s(0)).map_err(|e| e.to_string())?;
            let (value, replacement) = (s(1), s(2));
            text(if name == "regexReplaceAll" {
                re.replace_all(&value, replacement.as_str()).into_owned()
            } else {
                re.replace_all(&value, regex::NoExpand(&replacement))
                    .into_owned()
            })
        }
        "trunc" => {
            fixed(2)?;
            let (n, value) = (args[0].int()?, s(1));
            let chars: Vec<char> = value.chars().collect();
            let len = chars.len() as i64;
            text(if n >= 0 {
                chars[..n.min(len) as usize].iter().collect()
            } else {
                chars[(len + n).max(0) as usize..].iter().collect()
            })
        }
        "substr" => {
            fixed(3)?;
            let chars: Vec<char> = s(2).chars().collect();
            let len = chars.len() as i64;
            let start = args[0].int()?.clamp(0, len) as usize;
            let end = args[1].int()?;
            let end = if end < 0 { len } else { end.min(len) } as usize;
            text(chars[start..end.max(start)].iter().collect())
        }
        "repeat" => {
            fixed(2)?;
            let n = args[0].int()?.clamp(0, 10_000) as usize;
            text(s(1).repeat(n))
        }
        "indent" | "nindent" => {
            fixed(2)?;
            let pad = " ".repeat(args[0].int()?.clamp(0, 1000) as usize);
            let body = s(1)
                .split('\n')
                .map(|l| format!("{pad}{l}"))
                .collect::<Vec<_>>()
                .join("\n");
            text(if name == "nindent" {
                format!("\n{body}")
            } else {
                body
            })
        }
        "default" => {
            fixed(2)?;
            Ok(if args[1].truthy() {
                args[1].clone()
            } else {
                args[0].clone()
            })
        }
        "printf" => {
            if args.is_empty() {
                return Err("printf needs a format".into());
            }
            text(printf(&s(0), &args[1..]))
        }
        "len" => {
            fixed(1)?;
            Ok(Value::Int(s(0).chars().count() as i64))
        }
        "int" => {
            fixed(1)?;
            Ok(Value::Int(args[0].int().unwrap_or(0)))
        }
        "float64" => {
            fixed(1)?;
            Ok(Value::Float(args[0].float().unwrap_or(0.0)))
        }
        "add" | "sub" | "mul" | "div" | "mod" | "max" | "min" => {
            if args.len() < 2 {
                return Err(format!("{name} takes at least 2 arguments"));
            }
            let mut acc = args[0].int()?;
            for v in &args[1..] {
                let v = v.int()?;
                acc = match name {
                    "add" => acc.wrapping_add(v),
                    "sub" => acc.wrapping_sub(v),
                    "mul" => acc.wrapping_mul(v),
                    "div" | "mod" if v == 0 => return Err("integer divide by zero".into()),
                    "div" => acc / v,
                    "mod" => acc % v,
                    "max" => acc.max(v),
                    _ => acc.min(v),
                };
            }
            Ok(Value::Int(acc))
        }
        "addf" | "subf" | "mulf" | "divf" | "maxf" | "minf" => {
            if args.len() < 2 {
                return Err(format!("{name} takes at least 2 arguments"));
            }
            let mut acc = args[0].float()?;
            for v in &args[1..] {
                let v = v.float()?;
                acc = match name {
                    "addf" => acc + v,
                    "subf" => acc - v,
                    "mulf" => acc * v,
                    "divf" => acc / v,
                    "maxf" => acc.max(v),
                    _ => acc.min(v),
                };
            }
            Ok(Value::Float(acc))
        }
        "ceil" | "floor" => {
            fixed(1)?;
            let v = args[0].float()?;
            Ok(Value::Float(if name == "ceil" {
                v.ceil()
            } else {
                v.floor()
            }))
        }
        "round" => {
            if args.is_empty() || args.len() > 2 {
                return Err("round takes a value and an optional precision".into());
            }
            let p = 10f64.powi(args.get(1).map_or(Ok(0), Value::int)? as i32);
            Ok(Value::Float((args[0].float()? * p).round() / p))
        }
        "eq" | "ne" | "lt" | "le" | "gt" | "ge" => {
            fixed(2)?;
            let ordering = compare(&args[0], &args[1]);
            Ok(Value::Bool(match name {
                "eq" => ordering == Some(std::cmp::Ordering::Equal),
                "ne" => ordering != Some(std::cmp::Ordering::Equal),
                "lt" => ordering == Some(std::cmp::Ordering::Less),
                "le" => ordering.is_some_and(|o| o.is_le()),
                "gt" => ordering == Some(std::cmp::Ordering::Greater),
                _ => ordering.is_some_and(|o| o.is_ge()),
            }))
        }
        "and" => Ok(args
            .iter()
            .find(|v| !v.truthy())
            .or(args.last())
            .cloned()
            .unwrap_or(Value::Nil)),
        "or" => Ok(args
            .iter()
            .find(|v| v.truthy())
            .or(args.last())
            .cloned()
            .unwrap_or(Value::Nil)),
        "not" => {
            fixed(1)?;
            Ok(Value::Bool(!args[0].truthy()))
        }
        "unixEpoch" | "unixEpochMillis" | "unixEpochNanos" => {
            fixed(1)?;
            let ns = time_of(&args[0])?;
            Ok(Value::Int(match name {
                "unixEpoch" => ns.div_euclid(1_000_000_000),
                "unixEpochMillis" => ns.div_euclid(1_000_000),
                _ => ns,
            }))
        }
        "unixToTime" => {
            fixed(1)?;
            let v = s(0);
            let n: i64 = v
                .trim()
                .parse()
                .map_err(|_| format!("{v:?} is not an epoch"))?;
            // Seconds, milliseconds, microseconds or nanoseconds by size.
            let digits = v.trim().trim_start_matches('-').len();
            Ok(Value::Time(match digits {
                0..=10 => n.saturating_mul(1_000_000_000),
                11..=13 => n.saturating_mul(1_000_000),
                14..=16 => n.saturating_mul(1_000),
                _ => n,
            }))
        }
        "toDate" => {
            fixed(2)?;
            parse_time(&s(0), &s(1)).map(Value::Time)
        }
        "date" => {
            fixed(2)?;
            text(format_time(time_of(&args[1])?, &s(0)))
        }
        "alignLeft" | "alignRight" => {
            fixed(2)?;
            let n = args[0].int()?.clamp(0, 10_000) as usize;
            let value: Vec<char> = s(1).chars().collect();
            text(if value.len() >= n {
                value[..n].iter().collect()
            } else if name == "alignLeft" {
                format!(
                    "{}{}",
                    value.iter().collect::<String>(),
                    " ".repeat(n - value.len())
                )
            } else {
                format!(
                    "{}{}",
                    " ".repeat(n - value.len()),
                    value.iter().collect::<String>()
                )
            })
        }
        "b64enc" => {
            fixed(1)?;
            text(base64_encode(s(0).as_bytes()))
        }
        "b64dec" => {
            fixed(1)?;
            text(
                base64_decode(&s(0))
                    .map(|b| String::from_utf8_lossy(&b).into_owned())
                    .unwrap_or_default(),
            )
        }
        "urlencode" => {
            fixed(1)?;
            let mut out = String::new();
            for b in s(0).bytes() {
                match b {
                    b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                        out.push(b as char)
                    }
                    b' ' => out.push('+'),
                    b => {
                        let _ = write!(out, "%{b:02X}");
                    }
                }
            }
            text(out)
        }
        "urldecode" => {
            fixed(1)?;
            let v = s(0);
            let bytes = v.as_bytes();
            let mut out = Vec::with_capacity(bytes.len());
            let mut i = 0;
            while i < bytes.len() {
                match bytes[i] {
                    b'+' => out.push(b' '),
                    b'%' if i + 2 < bytes.len() => {
                        let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                        match u8::from_str_radix(hex, 16) {
                            Ok(b) => {
                                out.push(b);
                                i += 2;
                            }
                            Err(_) => out.push(b'%'),
                        }
                    }
                    b => out.push(b),
                }
                i += 1;
            }
            text(String::from_utf8_lossy(&out).into_owned())
        }
        other => Err(format!("function {other:?} not defined")),
    }
}

fn compare(a: &Value, b: &Value) -> Option<std::cmp::Ordering> {
    match (a, b) {
        (Value::Str(x), Value::Str(y)) => Some(x.cmp(y)),
        (Value::Bool(x), Value::Bool(y)) => Some(x.cmp(y)),
        (Value::Int(x), Value::Int(y)) => Some(x.cmp(y)),
        _ => a.float().ok()?.partial_cmp(&b.float().ok()?),
    }
}

fn time_of(v: &Value) -> Result<i64, String> {
    match v {
        Value::Time(ns) => Ok(*ns),
        other => Err(format!("{} is not a time", other.text())),
    }
}

/// Go's `fmt.Sprintf` for the verbs templates use: `%s %v %d %f %e %g %q
/// %x %X %t %%`, with flags (`-`, `0`, `+`, space), width and precision.
pub fn printf(format: &str, args: &[Value]) -> String {
    let mut out = String::new();
    let mut chars = format.chars().peekable();
    let mut next = args.iter();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let (mut minus, mut zero, mut plus, mut space) = (false, false, false, false);
        while let Some(&f) = chars.peek() {
            match f {
                '-' => minus = true,
                '0' => zero = true,
                '+' => plus = true,
                ' ' => space = true,
                _ => break,
            }
            chars.next();
        }
        let mut width = String::new();
        while let Some(&d) = chars.peek().filter(|d| d.is_ascii_digit()) {
            width.push(d);
            chars.next();
        }
        let mut precision: Option<usize> = None;
        if chars.peek() == Some(&'.') {
            chars.next();
            let mut p = String::new();
            while let Some(&d) = chars.peek().filter(|d| d.is_ascii_digit()) {
                p.push(d);
                chars.next();
            }
            precision = Some(p.parse().unwrap_or(0));
        }
        let Some(verb) = chars.next() else {
            out.push_str("%!(NOVERB)");
            break;
        };
        if verb == '%' {
            out.push('%');
            continue;
        }
        let Some(arg) = next.next() else {
            let _ = write!(out, "%!{verb}(MISSING)");
            continue;
        };
        let mut body = match verb {
            's' | 'v' => {
                let t = arg.text();
                match precision {
                    Some(p) => t.chars().take(p).collect(),
                    None => t,
                }
            }
            'd' => match arg.int() {
                Ok(i) => i.to_string(),
                Err(_) => format!("%!d(string={})", arg.text()),
            },
            'f' | 'F' => format!(
                "{:.*}",
                precision.unwrap_or(6),
                arg.float().unwrap_or(f64::NAN)
            ),
            'e' => format!(
                "{:.*e}",
                precision.unwrap_or(6),
                arg.float().unwrap_or(f64::NAN)
            ),
            'g' => go_float(arg.float().unwrap_or(f64::NAN)),
            'q' => format!("{:?}", arg.text()),
            't' => arg.truthy().to_string(),
            'x' | 'X' => {
                let hex = match arg {
                    Value::Int(i) => format!("{i:x}"),
                    other => other.text().bytes().map(|b| format!("{b:02x}")).collect(),
                };
                if verb == 'X' { hex.to_uppercase() } else { hex }
            }
            other => format!("%!{other}({})", arg.text()),
        };
        let numeric = matches!(verb, 'd' | 'f' | 'F' | 'e' | 'g');
        if numeric && !body.starts_with('-') {
            if plus {
                body.insert(0, '+');
            } else if space {
                body.insert(0, ' ');
            }
        }
        let width: usize = width.parse().unwrap_or(0);
        let len = body.chars().count();
        if len < width {
            let pad = width - len;
            if minus {
                body.push_str(&" ".repeat(pad));
            } else if zero && numeric {
                let sign = body.starts_with(['-', '+', ' ']);
                let at = usize::from(sign);
                body.insert_str(at, &"0".repeat(pad));
            } else {
                body.insert_str(0, &" ".repeat(pad));
            }
        }
        out.push_str(&body);
    }
    for extra in next {
        let _ = write!(out, "%!(EXTRA {})", extra.text());
    }
    out
}

const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
const DAYS: [&str; 7] = [
    "Thursday",
    "Friday",
    "Saturday",
    "Sunday",
    "Monday",
    "Tuesday",
    "Wednesday",
];

/// Days since the epoch as (year, month 1–12, day 1–31).
pub(crate) fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// Days since the epoch of a date.
pub(crate) fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// A time in UTC by a Go layout (`2006-01-02T15:04:05.000Z07:00`).
pub fn format_time(ns: i64, layout: &str) -> String {
    let secs = ns.div_euclid(1_000_000_000);
    let nanos = ns.rem_euclid(1_000_000_000);
    let days = secs.div_euclid(86_400);
    let tod = secs.rem_euclid(86_400);
    let (y, mo, d) = civil(days);
    let (h, mi, s) = (tod / 3600, tod / 60 % 60, tod % 60);
    let weekday = DAYS[days.rem_euclid(7) as usize];
    let mut out = String::new();
    let mut rest = layout;
    while !rest.is_empty() {
        let tokens: [(&str, String); 24] = [
            ("January", MONTHS[mo as usize - 1].to_owned()),
            ("Monday", weekday.to_owned()),
            ("2006", format!("{y:04}")),
            ("-07:00", "+00:00".to_owned()),
            ("Z07:00", "Z".to_owned()),
            ("-0700", "+0000".to_owned()),
            ("Z0700", "Z".to_owned()),
            ("Jan", MONTHS[mo as usize - 1][..3].to_owned()),
            ("Mon", weekday[..3].to_owned()),
            ("MST", "UTC".to_owned()),
            ("01", format!("{mo:02}")),
            ("02", format!("{d:02}")),
            ("_2", format!("{d:>2}")),
            ("15", format!("{h:02}")),
            ("03", format!("{:02}", (h + 11) % 12 + 1)),
            ("04", format!("{mi:02}")),
            ("05", format!("{s:02}")),
            ("06", format!("{:02}", y % 100)),
            ("PM", if h >= 12 { "PM" } else { "AM" }.to_owned()),
            ("pm", if h >= 12 { "pm" } else { "am" }.to_owned()),
            ("-07", "+00".to_owned()),
            ("1", mo.to_string()),
            ("2", d.to_string()),
            ("3", ((h + 11) % 12 + 1).to_string()),
        ];
        if let Some(frac) = rest
            .strip_prefix(".0")
            .or_else(|| rest.strip_prefix(",0"))
            .map(|_| '0')
            .or_else(|| {
                rest.strip_prefix(".9")
                    .or_else(|| rest.strip_prefix(",9"))
                    .map(|_| '9')
            })
        {
            let digits = rest[1..].chars().take_while(|&c| c == frac).count();
            let text = format!("{nanos:09}");
            let mut part = text[..digits.min(9)].to_owned();
            if frac == '9' {
                part = part.trim_end_matches('0').to_owned();
            }
            if !part.is_empty() {
                out.push_str(&rest[..1]);
                out.push_str(&part);
            }
            rest = &rest[1 + digits..];
            continue;
        }
        if let Some((token, value)) = tokens.iter().find(|(t, _)| rest.starts_with(t)) {
            out.push_str(value);
            rest = &rest[token.len()..];
        } else {
            let c = rest.chars().next().unwrap_or(' ');
            out.push(c);
            rest = &rest[c.len_utf8()..];
        }
    }
    out
}

/// A time read by a Go layout (the numeric layouts: years, months, days,
/// hours, minutes, seconds, fractions, `Z`/offsets).
fn parse_time(layout: &str, value: &str) -> Result<i64, String> {
    let bad = || format!("cannot parse {value:?} as {layout:?}");
    let (mut y, mut mo, mut d, mut h, mut mi, mut s, mut nanos, mut offset) =
        (1i64, 1u32, 1u32, 0i64, 0i64, 0i64, 0i64, 0i64);
    let mut l = layout;
    let mut v = value;
    let number = |v: &mut &str, n: usize| -> Result<i64, String> {
        let digits = v.chars().take(n).take_while(char::is_ascii_digit).count();
        if digits == 0 {
            return Err(bad());
        }
        let x = v[..digits].parse().map_err(|_| bad())?;
        *v = &v[digits..];
        Ok(x)
    };
    while !l.is_empty() {
        if let Some(r) = l.strip_prefix("2006") {
            y = number(&mut v, 4)?;
            l = r;
        } else if let Some(r) = l.strip_prefix("01") {
            mo = number(&mut v, 2)? as u32;
            l = r;
        } else if let Some(r) = l.strip_prefix("02") {
            d = number(&mut v, 2)? as u32;
            l = r;
        } else if let Some(r) = l.strip_prefix("15") {
            h = number(&mut v, 2)?;
            l = r;
        } else if let Some(r) = l.strip_prefix("04") {
            mi = number(&mut v, 2)?;
            l = r;
        } else if let Some(r) = l.strip_prefix("05") {
            s = number(&mut v, 2)?;
            l = r;
            if let Some(frac) = v.strip_prefix('.') {
                let digits = frac.chars().take_while(char::is_ascii_digit).count();
                let text = format!("{:0<9}", &frac[..digits.min(9)]);
                nanos = text.parse().map_err(|_| bad())?;
                v = &frac[digits..];
                l = l.trim_start_matches(['.', '0', '9']);
            }
        } else if let Some(r) = l
            .strip_prefix("Z07:00")
            .or_else(|| l.strip_prefix("-07:00"))
        {
            if let Some(rest) = v.strip_prefix('Z') {
                v = rest;
            } else {
                let sign = if v.starts_with('-') { -1 } else { 1 };
                v = v.get(1..).ok_or_else(bad)?;
                let oh = number(&mut v, 2)?;
                v = v.strip_prefix(':').ok_or_else(bad)?;
                let om = number(&mut v, 2)?;
                offset = sign * (oh * 3600 + om * 60);
            }
            l = r;
        } else {
            let c = l.chars().next().unwrap_or(' ');
            v = v.strip_prefix(c).ok_or_else(bad)?;
            l = &l[c.len_utf8()..];
        }
    }
    if !v.is_empty() {
        return Err(bad());
    }
    let secs = days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + s - offset;
    Ok(secs * 1_000_000_000 + nanos)
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

fn base64_encode(bytes: &[u8]) -> String {
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(B64[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let (mut acc, mut bits) = (0u32, 0);
    for c in text.bytes().filter(|c| *c != b'=') {
        let v = B64.iter().position(|b| *b == c)? as u32;
        acc = acc << 6 | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(template: &str, labels: &[(&str, &str)], line: &str) -> String {
        let labels = Labels::stream(labels.iter().copied());
        Template::new(template)
            .expect("the template renders")
            .render(&Scope {
                labels: &labels,
                line,
                time: 1_700_000_000_123_000_000,
            })
            .expect("the template renders")
    }

    #[test]
    fn labels_pipelines_and_functions() {
        let l = [("app", "Web"), ("status", "404"), ("dur", "1.5")];
        assert_eq!(render("{{.app}} {{.missing}}|", &l, ""), "Web |");
        assert_eq!(render("{{ .app | ToLower }}", &l, ""), "web");
        assert_eq!(render("{{ToUpper .app}}", &l, ""), "WEB");
        assert_eq!(
            render(r#"{{ contains "abc" __line__ }}"#, &l, "xxabcxx"),
            "true"
        );
        assert_eq!(
            render(r#"{{ regexReplaceAll "(\\d+)" .status "<$1>" }}"#, &l, ""),
            "<404>"
        );
        assert_eq!(
            render(r#"{{ printf "%s-%05d-%.2f" .app .status .dur }}"#, &l, ""),
            "Web-00404-1.50"
        );
        assert_eq!(
            render(
                r#"{{ if eq .status "404" }}missing{{ else }}ok{{ end }}"#,
                &l,
                ""
            ),
            "missing"
        );
        assert_eq!(
            render(
                r#"{{ if gt (int .status) 500 }}a{{ else if ge (int .status) 400 }}b{{ end }}"#,
                &l,
                ""
            ),
            "b"
        );
        assert_eq!(render("a  {{- .app -}}  b", &l, ""), "aWebb");
        assert_eq!(render("{{/* note */}}x", &l, ""), "x");
        assert_eq!(
            render(
                r#"{{ __timestamp__ | date "2006-01-02T15:04:05.000Z07:00" }}"#,
                &l,
                ""
            ),
            "2023-11-14T22:13:20.123Z"
        );
        assert_eq!(
            render("{{ __timestamp__ | unixEpoch }}", &l, ""),
            "1700000000"
        );
        assert_eq!(render(r#"{{ default "none" .missing }}"#, &l, ""), "none");
        assert_eq!(render(r#"{{ "hi" | b64enc }}"#, &l, ""), "aGk=");
        assert_eq!(render(r#"{{ "aGk=" | b64dec }}"#, &l, ""), "hi");
        assert_eq!(render(r#"{{ addf .dur 1 }}"#, &l, ""), "2.5");
        assert_eq!(
            render(
                r#"{{ toDate "2006-01-02" "2024-03-01" | unixEpoch }}"#,
                &l,
                ""
            ),
            "1709251200"
        );
    }

    #[test]
    fn bad_templates_say_why() {
        assert!(Template::new("{{ .a ").is_err());
        assert!(Template::new("{{ nope .a }}").is_err_and(|e| e.contains("nope")));
        assert!(Template::new("{{ if .a }}x").is_err());
        assert!(Template::new("{{ end }}").is_err());
    }
}
