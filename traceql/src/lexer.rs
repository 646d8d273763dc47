//! TraceQL's tokens, each with where it starts. Attribute names are read
//! as TraceQL reads them: up to whitespace or one of `{}()=~!<>&|^,`, with
//! quoted parts (`span."a b".c`).

use crate::ast::{Intrinsic, Scope};
use crate::parser::ParseError;

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Tok {
    /// A word: keyword, intrinsic or hint name.
    Ident(String),
    /// `.name`, `span.name`, `resource."a b"`, …
    Attribute(Scope, String),
    /// `span:id`, `trace:rootService`, …
    Scoped(Intrinsic),
    Str(String),
    Int(u64),
    Float(f64),
    /// Nanoseconds.
    Duration(i64),
    Sym(&'static str),
    Eof,
}

impl Tok {
    /// How an error message names it.
    pub(crate) fn describe(&self) -> String {
        match self {
            Tok::Ident(s) => s.clone(),
            Tok::Attribute(scope, name) => format!("attribute {}{name}", scope.prefix()),
            Tok::Scoped(i) => i.name().to_owned(),
            Tok::Str(s) => format!("string {s:?}"),
            Tok::Int(i) => format!("number {i}"),
            Tok::Float(v) => format!("number {v}"),
            Tok::Duration(ns) => format!("duration {}", crate::ast::duration_text(*ns)),
            Tok::Sym(s) => (*s).to_owned(),
            Tok::Eof => "end of query".to_owned(),
        }
    }
}

/// A token and its position (1-based line and column, in characters).
#[derive(Debug, Clone)]
pub(crate) struct Token {
    pub(crate) tok: Tok,
    pub(crate) line: usize,
    pub(crate) col: usize,
}

/// Longest first, so that `!>>` is not read as `!>` then `>`.
const SYMBOLS: [&str; 35] = [
    "!>>", "!<<", "&>>", "&<<", "&&", "||", "!=", "=~", "!~", ">=", "<=", ">>", "<<", "!>", "!<",
    "&>", "&<", "&~", "{", "}", "(", ")", ",", "|", "=", ">", "<", "~", "!", "+", "-", "*", "/",
    "%", "^",
];

/// Characters that end an attribute's name (besides whitespace).
const NAME_ENDS: &str = "{}()=~!<>&|^,";

/// The words that, followed by `.`, scope an attribute.
fn attribute_scope(word: &str) -> Option<Scope> {
    Some(match word {
        "span" => Scope::Span,
        "resource" => Scope::Resource,
        "event" => Scope::Event,
        "link" => Scope::Link,
        "instrumentation" => Scope::Instrumentation,
        _ => return None,
    })
}

struct Lexer {
    chars: Vec<char>,
    i: usize,
    line: usize,
    col: usize,
}

impl Lexer {
    fn peek(&self, ahead: usize) -> Option<char> {
        self.chars.get(self.i + ahead).copied()
    }

    fn advance(&mut self, n: usize) {
        for _ in 0..n {
            if self.chars[self.i] == '\n' {
                self.line += 1;
                self.col = 1;
            } else {
                self.col += 1;
            }
            self.i += 1;
        }
    }

    fn error(&self, message: impl Into<String>) -> ParseError {
        ParseError::at(self.line, self.col, message.into())
    }

    /// Skips whitespace and comments (`// …`, `/* … */`).
    fn skip(&mut self) -> Result<(), ParseError> {
        loop {
            match (self.peek(0), self.peek(1)) {
                (Some(c), _) if c.is_whitespace() => self.advance(1),
                (Some('/'), Some('/')) => {
                    while self.peek(0).is_some_and(|c| c != '\n') {
                        self.advance(1);
                    }
                }
                (Some('/'), Some('*')) => {
                    let error = self.error("unterminated comment");
                    self.advance(2);
                    loop {
                        match (self.peek(0), self.peek(1)) {
                            (Some('*'), Some('/')) => {
                                self.advance(2);
                                break;
                            }
                            (Some(_), _) => self.advance(1),
                            (None, _) => return Err(error),
                        }
                    }
                }
                _ => return Ok(()),
            }
        }
    }

    /// A string after its opening quote, Go's escapes read.
    fn string(&mut self) -> Result<String, ParseError> {
        let mut s = String::new();
        loop {
            let Some(c) = self.peek(0) else {
                return Err(self.error("unterminated string"));
            };
            let (line, col) = (self.line, self.col);
            self.advance(1);
            match c {
                '"' => return Ok(s),
                '\n' => return Err(self.error("a string cannot hold a line break")),
                // An escape's error points at its backslash.
                '\\' => s.push(
                    self.escape()
                        .map_err(|e| ParseError::at(line, col, e.message))?,
                ),
                c => s.push(c),
            }
        }
    }

    /// The character of an escape, after its backslash.
    fn escape(&mut self) -> Result<char, ParseError> {
        let Some(c) = self.peek(0) else {
            return Err(self.error("unterminated string"));
        };
        let simple = match c {
            'a' => Some('\u{7}'),
            'b' => Some('\u{8}'),
            'f' => Some('\u{c}'),
            'n' => Some('\n'),
            'r' => Some('\r'),
            't' => Some('\t'),
            'v' => Some('\u{b}'),
            '\\' => Some('\\'),
            '"' => Some('"'),
            '\'' => Some('\''),
            _ => None,
        };
        if let Some(simple) = simple {
            self.advance(1);
            return Ok(simple);
        }
        let (digits, radix) = match c {
            'x' => (2, 16),
            'u' => (4, 16),
            'U' => (8, 16),
            '0'..='7' => (3, 8),
            _ => return Err(self.error(format!("invalid escape \\{c}"))),
        };
        let skip = usize::from(radix == 16);
        let text: String = (0..digits).filter_map(|k| self.peek(skip + k)).collect();
        let code = (text.chars().count() == digits)
            .then(|| u32::from_str_radix(&text, radix).ok())
            .flatten()
            .and_then(char::from_u32)
            .ok_or_else(|| self.error(format!("invalid escape \\{c}{text}")))?;
        self.advance(skip + digits);
        Ok(code)
    }

    /// An attribute's name, from after its scope's dot: bare parts and
    /// quoted ones (`\"` and `\\` escaped), read to a character that ends it.
    fn name(&mut self) -> Result<String, ParseError> {
        let mut name = String::new();
        loop {
            match self.peek(0) {
                Some('"') => {
                    self.advance(1);
                    loop {
                        match self.peek(0) {
                            None => return Err(self.error("unterminated quoted attribute name")),
                            Some('"') => {
                                self.advance(1);
                                break;
                            }
                            Some('\\') => {
                                match self.peek(1) {
                                    Some(c @ ('"' | '\\')) => name.push(c),
                                    _ => {
                                        return Err(self.error(
                                            "invalid escape in an attribute name: only \\\" and \\\\",
                                        ));
                                    }
                                }
                                self.advance(2);
                            }
                            Some(c) => {
                                name.push(c);
                                self.advance(1);
                            }
                        }
                    }
                }
                Some(c) if !c.is_whitespace() && !NAME_ENDS.contains(c) => {
                    name.push(c);
                    self.advance(1);
                }
                _ => break,
            }
        }
        if name.is_empty() {
            return Err(self.error("an attribute needs a name after its scope"));
        }
        Ok(name)
    }

    /// A number, or a duration when units follow its digits (`250ms`,
    /// `1h30m`).
    fn number(&mut self) -> Result<Tok, ParseError> {
        let start = self.i;
        let mut j = self.i;
        let digits = |j: &mut usize, chars: &[char]| {
            while chars.get(*j).is_some_and(char::is_ascii_digit) {
                *j += 1;
            }
        };
        digits(&mut j, &self.chars);
        let mut float = false;
        if self.chars.get(j) == Some(&'.') {
            float = true;
            j += 1;
            digits(&mut j, &self.chars);
        }
        if matches!(self.chars.get(j), Some('e' | 'E')) {
            let mut k = j + 1;
            if matches!(self.chars.get(k), Some('+' | '-')) {
                k += 1;
            }
            if self.chars.get(k).is_some_and(char::is_ascii_digit) {
                float = true;
                j = k;
                digits(&mut j, &self.chars);
            }
        }
        // Units right after the digits make a duration, if it reads as one.
        let mut end = j;
        while self
            .chars
            .get(end)
            .is_some_and(|c| c.is_ascii_digit() || "nsuµmhdwy.".contains(*c))
        {
            end += 1;
        }
        if end > j {
            let text: String = self.chars[start..end].iter().collect();
            if let Some(ns) = duration(&text) {
                self.advance(end - start);
                return Ok(Tok::Duration(ns));
            }
        }
        let text: String = self.chars[start..j].iter().collect();
        let tok = if float {
            text.parse::<f64>()
                .ok()
                .filter(|v| v.is_finite())
                .map(Tok::Float)
        } else {
            text.parse::<u64>().ok().map(Tok::Int)
        };
        let tok = tok.ok_or_else(|| self.error(format!("invalid number {text}")))?;
        self.advance(j - start);
        Ok(tok)
    }
}

/// A duration (`1h30m`, `1.5s`, `250ms`, `2d`, `1w`), in nanoseconds.
pub(crate) fn duration(text: &str) -> Option<i64> {
    const UNITS: [(&str, f64); 10] = [
        ("ns", 1.0),
        ("us", 1e3),
        ("µs", 1e3),
        ("ms", 1e6),
        ("s", 1e9),
        ("m", 60e9),
        ("h", 3600e9),
        ("d", 86400e9),
        ("w", 604800e9),
        ("y", 31536000e9),
    ];
    let mut rest = text;
    let mut total = 0f64;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .unwrap_or(rest.len());
        let value: f64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let (unit, size) = UNITS
            .iter()
            .filter(|(u, _)| rest.starts_with(u))
            .max_by_key(|(u, _)| u.len())?;
        rest = &rest[unit.len()..];
        total += value * size;
    }
    (total.is_finite() && total < 9.2e18).then_some(total.round() as i64)
}

pub(crate) fn tokens(query: &str) -> Result<Vec<Token>, ParseError> {
    let mut lx = Lexer {
        chars: query.chars().collect(),
        i: 0,
        line: 1,
        col: 1,
    };
    let mut out = Vec::new();
    loop {
        lx.skip()?;
        let (line, col) = (lx.line, lx.col);
        let Some(c) = lx.peek(0) else {
            out.push(Token {
                tok: Tok::Eof,
                line,
                col,
            });
            return Ok(out);
        };
        let tok = if c == '"' {
            lx.advance(1);
            Tok::Str(lx.string()?)
        } else if c == '`' {
            lx.advance(1);
            let end = lx.chars[lx.i..]
                .iter()
                .position(|c| *c == '`')
                .ok_or_else(|| lx.error("unterminated raw string"))?;
            let s: String = lx.chars[lx.i..lx.i + end].iter().collect();
            lx.advance(end + 1);
            Tok::Str(s)
        } else if c.is_ascii_digit() || c == '.' && lx.peek(1).is_some_and(|d| d.is_ascii_digit()) {
            lx.number()?
        } else if c == '.' {
            lx.advance(1);
            Tok::Attribute(Scope::Any, lx.name()?)
        } else if c.is_alphabetic() || c == '_' {
            let len = lx.chars[lx.i..]
                .iter()
                .position(|c| !(c.is_alphanumeric() || *c == '_'))
                .unwrap_or(lx.chars.len() - lx.i);
            let word: String = lx.chars[lx.i..lx.i + len].iter().collect();
            lx.advance(len);
            match lx.peek(0) {
                Some('.') if word == "parent" => {
                    return Err(ParseError::at(
                        line,
                        col,
                        "parent. attributes are not supported".to_owned(),
                    ));
                }
                Some('.') if attribute_scope(&word).is_some() => {
                    lx.advance(1);
                    let scope = attribute_scope(&word).expect("a scope");
                    Tok::Attribute(scope, lx.name()?)
                }
                Some(':')
                    if matches!(
                        word.as_str(),
                        "span" | "trace" | "event" | "link" | "instrumentation"
                    ) =>
                {
                    lx.advance(1);
                    let len = lx.chars[lx.i..]
                        .iter()
                        .position(|c| !(c.is_alphanumeric() || *c == '_'))
                        .unwrap_or(lx.chars.len() - lx.i);
                    let name: String = lx.chars[lx.i..lx.i + len].iter().collect();
                    let intrinsic = Intrinsic::scoped(&word, &name).ok_or_else(|| {
                        ParseError::at(line, col, format!("unknown intrinsic {word}:{name}"))
                    })?;
                    lx.advance(len);
                    Tok::Scoped(intrinsic)
                }
                _ => Tok::Ident(word),
            }
        } else if let Some(sym) = SYMBOLS.iter().find(|s| {
            let s: Vec<char> = s.chars().collect();
            lx.chars[lx.i..].starts_with(&s)
        }) {
            lx.advance(sym.chars().count());
            Tok::Sym(sym)
        } else {
            return Err(lx.error(format!("unexpected character {c:?}")));
        };
        out.push(Token { tok, line, col });
    }
}
