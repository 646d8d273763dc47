//! LogQL's tokens, each with where it starts.

use crate::parser::ParseError;
use crate::units::{parse_bytes, parse_duration, parse_range};

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Tok {
    /// A name: label, keyword or function (`service_name`, `by`, `rate`).
    Ident(String),
    /// A string, from double quotes (escapes read) or backticks (raw).
    Str(String),
    /// A number (`2`, `0.99`, `1e3`).
    Number(f64),
    /// Digits with a unit (`5m`, `1h30m`, `250ms`, `20MB`): the text as written.
    Unit(String),
    /// Punctuation and operators, as written (`{`, `|=`, `=~`, `>=`, …).
    Sym(&'static str),
    Eof,
}

impl Tok {
    /// How an error message names it.
    pub(crate) fn describe(&self) -> String {
        match self {
            Tok::Ident(s) => format!("identifier {s:?}"),
            Tok::Str(s) => format!("string {s:?}"),
            Tok::Number(n) => format!("number {n}"),
            Tok::Unit(u) => format!("{u:?}"),
            Tok::Sym(s) => format!("{s:?}"),
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

impl Token {
    /// A duration literal (label filters, `duration()`), in nanoseconds.
    pub(crate) fn duration(&self) -> Option<i64> {
        match &self.tok {
            Tok::Unit(u) => parse_duration(u),
            _ => None,
        }
    }

    /// A range or offset literal, in nanoseconds.
    pub(crate) fn range(&self) -> Option<i64> {
        match &self.tok {
            Tok::Unit(u) => parse_range(u),
            _ => None,
        }
    }

    /// A byte-size literal.
    pub(crate) fn bytes(&self) -> Option<u64> {
        match &self.tok {
            Tok::Unit(u) => parse_bytes(u),
            _ => None,
        }
    }
}

/// Longest first, so that `|=` is not read as `|` then `=`.
const SYMBOLS: [&str; 27] = [
    "|=", "|~", "|>", "!=", "!~", "!>", "=~", "==", ">=", "<=", "{", "}", "(", ")", "[", "]", ",",
    "=", "|", ">", "<", "+", "-", "*", "/", "%", "^",
];

pub(crate) fn tokens(query: &str) -> Result<Vec<Token>, ParseError> {
    let chars: Vec<char> = query.chars().collect();
    let mut out = Vec::new();
    let (mut i, mut line, mut col) = (0, 1, 1);
    let advance = |i: &mut usize, line: &mut usize, col: &mut usize, n: usize| {
        for _ in 0..n {
            if chars[*i] == '\n' {
                *line += 1;
                *col = 1;
            } else {
                *col += 1;
            }
            *i += 1;
        }
    };
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            advance(&mut i, &mut line, &mut col, 1);
            continue;
        }
        if c == '#' {
            // A comment, to the end of the line.
            while i < chars.len() && chars[i] != '\n' {
                advance(&mut i, &mut line, &mut col, 1);
            }
            continue;
        }
        let (start_line, start_col) = (line, col);
        let error = |message: String| ParseError::at(start_line, start_col, message);
        let tok = if c == '"' {
            let mut s = String::new();
            let mut j = i + 1;
            loop {
                match chars.get(j) {
                    None => return Err(error("unterminated string".to_owned())),
                    Some('"') => break,
                    Some('\\') => {
                        let escaped = chars
                            .get(j + 1)
                            .ok_or_else(|| error("unterminated string".to_owned()))?;
                        let unescaped = match escaped {
                            'n' => '\n',
                            't' => '\t',
                            'r' => '\r',
                            '\\' => '\\',
                            '"' => '"',
                            '\'' => '\'',
                            'a' => '\u{7}',
                            'b' => '\u{8}',
                            'f' => '\u{c}',
                            'v' => '\u{b}',
                            other => {
                                // Unknown escapes are kept as written (regular
                                // expressions use `\d`, `\.`, …).
                                s.push('\\');
                                *other
                            }
                        };
                        s.push(unescaped);
                        j += 2;
                    }
                    Some(c) => {
                        s.push(*c);
                        j += 1;
                    }
                }
            }
            let n = j + 1 - i;
            advance(&mut i, &mut line, &mut col, n);
            Tok::Str(s)
        } else if c == '`' {
            let end = chars[i + 1..]
                .iter()
                .position(|c| *c == '`')
                .ok_or_else(|| error("unterminated raw string".to_owned()))?;
            let s: String = chars[i + 1..i + 1 + end].iter().collect();
            advance(&mut i, &mut line, &mut col, end + 2);
            Tok::Str(s)
        } else if c.is_ascii_alphabetic() || c == '_' {
            let len = chars[i..]
                .iter()
                .position(|c| !(c.is_ascii_alphanumeric() || *c == '_'))
                .unwrap_or(chars.len() - i);
            let s: String = chars[i..i + len].iter().collect();
            advance(&mut i, &mut line, &mut col, len);
            Tok::Ident(s)
        } else if c.is_ascii_digit()
            || (c == '.' && chars.get(i + 1).is_some_and(char::is_ascii_digit))
        {
            // Digits, then either an exponent (a number) or units (a duration
            // or a byte size, possibly several: `1h30m`).
            let mut j = i;
            let mut units = false;
            loop {
                while j < chars.len() && (chars[j].is_ascii_digit() || chars[j] == '.') {
                    j += 1;
                }
                let exponent = !units
                    && matches!(chars.get(j), Some('e' | 'E'))
                    && chars
                        .get(j + 1)
                        .is_some_and(|c| c.is_ascii_digit() || *c == '-' || *c == '+');
                if exponent {
                    j += 2;
                    while j < chars.len() && chars[j].is_ascii_digit() {
                        j += 1;
                    }
                    break;
                }
                let unit_start = j;
                while j < chars.len() && (chars[j].is_alphabetic() || chars[j] == 'µ') {
                    j += 1;
                }
                if j == unit_start {
                    break;
                }
                units = true;
                if !chars.get(j).is_some_and(char::is_ascii_digit) {
                    break;
                }
            }
            let s: String = chars[i..j].iter().collect();
            let n = j - i;
            advance(&mut i, &mut line, &mut col, n);
            if units {
                Tok::Unit(s)
            } else {
                Tok::Number(
                    s.parse::<f64>()
                        .ok()
                        .filter(|n| n.is_finite())
                        .ok_or_else(|| error(format!("invalid number {s:?}")))?,
                )
            }
        } else if let Some(sym) = SYMBOLS.iter().find(|s| {
            let s: Vec<char> = s.chars().collect();
            chars[i..].starts_with(&s)
        }) {
            advance(&mut i, &mut line, &mut col, sym.chars().count());
            Tok::Sym(sym)
        } else {
            return Err(error(format!("unexpected character {c:?}")));
        };
        out.push(Token {
            tok,
            line: start_line,
            col: start_col,
        });
    }
    out.push(Token {
        tok: Tok::Eof,
        line,
        col,
    });
    Ok(out)
}
