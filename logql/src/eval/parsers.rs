//! The parser stages `logfmt`, `regexp` and `pattern`, and what every parser
//! shares (`json` and `unpack` are in `json.rs`). What they extract becomes
//! parsed labels; a name that is already a stream label gets `_extracted`
//! after it; a line a parser cannot read gets the `__error__` label
//! (`JSONParserErr`, `LogfmtParserErr`).

use std::borrow::Cow;

use super::labels::{Category, Labels, sanitized};
use crate::ast::Extraction;

pub const LOGFMT_ERROR: &str = "LogfmtParserErr";

/// Sets a parsed label under its name, or `<name>_extracted` when a stream
/// label has the name; with hints, only a label they name (and nothing is
/// copied otherwise).
/// Returns the bit of the hint it set (none without hints): a parser stops
/// once every hinted label is set, as Loki's do.
pub(super) fn extracted(
    labels: &mut Labels,
    name: &str,
    value: Cow<'_, str>,
    hints: Option<&Hints>,
) -> u64 {
    // With hints, most names are not wanted under either name: that is
    // found before looking at the line's labels.
    let (plain, renamed) = match hints {
        None => (true, true),
        Some(h) => (
            h.names.iter().any(|n| n == name),
            h.renamed.iter().any(|n| n == name),
        ),
    };
    if !plain && !renamed {
        return 0;
    }
    let name = if labels.is_stream(name) {
        if !renamed {
            return 0;
        }
        Cow::Owned(format!("{name}_extracted"))
    } else if plain {
        Cow::Borrowed(name)
    } else {
        return 0;
    };
    match value {
        Cow::Borrowed(v) => labels.set_with(Category::Parsed, &name, |s| s.push_str(v)),
        Cow::Owned(v) => labels.set(Category::Parsed, &name, v),
    }
    hints.map_or(0, |h| h.bit(&name))
}

/// The labels a query reads after a parser, when it says: the parser
/// extracts only those (Loki's parser hints).
#[derive(Debug, Clone)]
pub(super) struct Hints {
    names: Vec<String>,
    /// The names before `_extracted` of those that end with it.
    renamed: Vec<String>,
    /// Bit `b` set: one of these starts with the ASCII byte `b`.
    firsts: u128,
}

impl Hints {
    pub(super) fn new(names: &std::collections::BTreeSet<String>) -> Self {
        let renamed: Vec<String> = names
            .iter()
            .filter_map(|n| n.strip_suffix("_extracted"))
            .map(str::to_owned)
            .collect();
        let firsts = names
            .iter()
            .chain(&renamed)
            .filter_map(|n| n.bytes().next())
            .fold(0u128, |bits, b| {
                bits | 1u128.checked_shl(u32::from(b)).unwrap_or(0)
            });
        Hints {
            names: names.iter().cloned().collect(),
            renamed,
            firsts,
        }
    }

    /// False when no name of a key (a logfmt key, a JSON object's outermost)
    /// can start one of these: its first character, sanitized, starts none.
    pub(super) fn may_start(&self, key: &str) -> bool {
        let first = match key.bytes().next() {
            Some(b) if b.is_ascii_alphabetic() || b == b'_' => b,
            Some(b) if b.is_ascii() => b'_',
            _ => return true,
        };
        self.firsts & (1 << first) != 0
    }

    /// The bit of a name, for [`Hints::all`].
    pub(super) fn bit(&self, name: &str) -> u64 {
        self.names
            .iter()
            .position(|n| n == name)
            .and_then(|i| 1u64.checked_shl(i as u32))
            .unwrap_or(0)
    }

    /// Whether these bits are every name's (never with more than 64).
    pub(super) fn all(&self, found: u64) -> bool {
        match self.names.len() {
            n @ 1..=64 => found == u64::MAX >> (64 - n),
            _ => false,
        }
    }

    /// Whether a JSON field of this (flattened) name, or one nested in it,
    /// may be named as one of these.
    pub(super) fn may_lead_to(&self, prefix: &str) -> bool {
        self.names
            .iter()
            .chain(&self.renamed)
            .any(|n| n.starts_with(prefix))
    }
}

/// `| logfmt`: `key=value` pairs (values bare or double-quoted). Without
/// `--strict` a malformed pair is skipped; with it, parsing stops there with
/// an error. A key without a value, or with an empty one, is kept only with
/// `--keep-empty`.
pub(super) fn logfmt(
    line: &str,
    strict: bool,
    keep_empty: bool,
    extractions: &[Extraction],
    labels: &mut Labels,
    hints: Option<&Hints>,
) {
    let mut pairs = LogfmtPairs { rest: line };
    let mut found = 0;
    while let Some(pair) = pairs.next() {
        let (key, value) = match pair {
            Ok(pair) => pair,
            Err(message) if strict => {
                labels.set_error(LOGFMT_ERROR, message);
                return;
            }
            Err(_) => continue,
        };
        if extractions.is_empty() {
            if value.is_empty() && !keep_empty || hints.is_some_and(|h| !h.may_start(key)) {
                continue;
            }
            found |= extracted(labels, &sanitized(key), value, hints);
            if hints.is_some_and(|h| h.all(found)) {
                return;
            }
        } else {
            for e in extractions {
                if e.expression.as_deref().unwrap_or(&e.label) == key {
                    labels.set(Category::Parsed, &e.label, value.clone().into_owned());
                }
            }
        }
    }
}

/// The pairs of a logfmt line. Keys and bare values end at a space or a
/// control character (bytes up to `b' '`, as Go's logfmt reads them); the
/// delimiters are ASCII, so the line is scanned as bytes and values are
/// borrowed from it unless they hold escapes.
struct LogfmtPairs<'a> {
    rest: &'a str,
}

fn is_space(b: u8) -> bool {
    b <= b' '
}

/// The position of the first byte `stop` takes, or the end.
fn until(text: &str, stop: impl Fn(u8) -> bool) -> usize {
    text.bytes().position(stop).unwrap_or(text.len())
}

impl<'a> LogfmtPairs<'a> {
    fn next(&mut self) -> Option<Result<(&'a str, Cow<'a, str>), String>> {
        let rest = &self.rest[until(self.rest, |b| !is_space(b))..];
        if rest.is_empty() {
            self.rest = rest;
            return None;
        }
        let key_end = until(rest, |b| b == b'=' || b == b'"' || is_space(b));
        let (key, after) = rest.split_at(key_end);
        if key.is_empty() {
            // `=value` or a stray quote: skip the token.
            let end = until(rest, is_space);
            self.rest = &rest[end..];
            let bad = &rest[..end];
            return Some(Err(format!("unexpected {bad:?}: a key must come first")));
        }
        match after.as_bytes().first() {
            Some(b'=') => {}
            Some(b'"') => {
                let end = until(after, is_space);
                self.rest = &after[end..];
                return Some(Err(format!("unexpected quote after key {key:?}")));
            }
            _ => {
                self.rest = after;
                return Some(Ok((key, Cow::Borrowed(""))));
            }
        }
        let value_text = &after[1..];
        if let Some(quoted) = value_text.strip_prefix('"') {
            let end = until(quoted, |b| b == b'"' || b == b'\\');
            if quoted.as_bytes().get(end) == Some(&b'"') {
                // Without escapes, the value is borrowed from the line.
                self.rest = &quoted[end + 1..];
                return Some(Ok((key, Cow::Borrowed(&quoted[..end]))));
            }
            let mut value = String::from(&quoted[..end]);
            let mut chars = quoted[end..].char_indices();
            while let Some((i, c)) = chars.next() {
                match c {
                    '"' => {
                        self.rest = &quoted[end + i + 1..];
                        return Some(Ok((key, Cow::Owned(value))));
                    }
                    '\\' => match chars.next() {
                        Some((_, 'n')) => value.push('\n'),
                        Some((_, 't')) => value.push('\t'),
                        Some((_, 'r')) => value.push('\r'),
                        Some((_, other)) => value.push(other),
                        None => break,
                    },
                    c => value.push(c),
                }
            }
            self.rest = "";
            return Some(Err(format!("unterminated quoted value of {key:?}")));
        }
        let end = until(value_text, |b| b == b'"' || is_space(b));
        if value_text.as_bytes().get(end) == Some(&b'"') {
            let stop = until(value_text, is_space);
            self.rest = &value_text[stop..];
            return Some(Err(format!("unexpected quote in the value of {key:?}")));
        }
        self.rest = &value_text[end..];
        Some(Ok((key, Cow::Borrowed(&value_text[..end]))))
    }
}

/// `| regexp "…"`: the named groups of the first match.
pub(super) fn regexp(re: &regex::Regex, line: &str, labels: &mut Labels) {
    let Some(captures) = re.captures(line) else {
        return;
    };
    for name in re.capture_names().flatten() {
        if let Some(m) = captures.name(name) {
            extracted(labels, name, m.as_str().into(), None);
        }
    }
}

/// A compiled `pattern` expression: literals and captures (`<name>`, `<_>`).
#[derive(Debug, Clone, PartialEq)]
pub struct Pattern {
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq)]
enum Part {
    Literal(String),
    Capture(Option<String>),
}

impl Pattern {
    /// Compiles a pattern; it needs a capture, and two captures need a
    /// literal between them.
    pub fn new(text: &str) -> Result<Self, String> {
        let mut parts = Vec::new();
        let mut literal = String::new();
        let mut rest = text;
        while let Some(open) = rest.find('<') {
            let after = &rest[open + 1..];
            let name = after.split_once('>').map(|(n, _)| n).filter(|n| {
                !n.is_empty()
                    && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                    && !n.starts_with(|c: char| c.is_ascii_digit())
            });
            literal.push_str(&rest[..open]);
            match name {
                Some(name) => {
                    if !literal.is_empty() {
                        parts.push(Part::Literal(std::mem::take(&mut literal)));
                    }
                    if matches!(parts.last(), Some(Part::Capture(_))) {
                        return Err(format!(
                            "pattern {text:?}: two captures need text between them"
                        ));
                    }
                    parts.push(Part::Capture((name != "_").then(|| name.to_owned())));
                    rest = &after[name.len() + 1..];
                }
                None => {
                    literal.push('<');
                    rest = after;
                }
            }
        }
        literal.push_str(rest);
        if !literal.is_empty() {
            parts.push(Part::Literal(literal));
        }
        if !parts.iter().any(|p| matches!(p, Part::Capture(_))) {
            return Err(format!("pattern {text:?} has no capture"));
        }
        Ok(Pattern { parts })
    }

    /// The captures of a line, from its start; `None` when it does not match.
    pub fn captures<'a>(&'a self, line: &'a str) -> Option<Vec<(&'a str, &'a str)>> {
        let mut out = Vec::new();
        let mut pos = 0;
        let mut i = 0;
        while i < self.parts.len() {
            match &self.parts[i] {
                Part::Literal(l) => {
                    if !line[pos..].starts_with(l.as_str()) {
                        return None;
                    }
                    pos += l.len();
                }
                Part::Capture(name) => {
                    let end = match self.parts.get(i + 1) {
                        Some(Part::Literal(l)) => {
                            let at = pos + line[pos..].find(l.as_str())?;
                            i += 1;
                            let value = &line[pos..at];
                            pos = at + l.len();
                            if let Some(name) = name {
                                out.push((name.as_str(), value));
                            }
                            i += 1;
                            continue;
                        }
                        _ => line.len(),
                    };
                    if let Some(name) = name {
                        out.push((name.as_str(), &line[pos..end]));
                    }
                    pos = end;
                }
            }
            i += 1;
        }
        Some(out)
    }

    /// Whether the whole line fits the pattern (the `|>` line filter).
    pub fn matches(&self, line: &str) -> bool {
        self.captures(line).is_some()
    }

    /// Whether a capture has this name.
    pub fn captures_name(&self, name: &str) -> bool {
        self.parts
            .iter()
            .any(|p| matches!(p, Part::Capture(Some(n)) if n == name))
    }
}

/// `| pattern "…"`.
pub(super) fn pattern(p: &Pattern, line: &str, labels: &mut Labels) {
    if let Some(captures) = p.captures(line) {
        for (name, value) in captures {
            extracted(labels, name, value.into(), None);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(f: impl FnOnce(&mut Labels)) -> Vec<(String, String)> {
        let mut labels = Labels::stream([("app", "a")]);
        f(&mut labels);
        labels.sorted()
    }

    fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
        items
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn logfmt_reads_bare_and_quoted_values() {
        let line = r#"level=info msg="hello \"you\"" empty= flag app=y =bad"#;
        let got = run(|l| logfmt(line, false, false, &[], l, None));
        assert_eq!(
            got,
            pairs(&[
                ("app", "a"),
                ("app_extracted", "y"),
                ("level", "info"),
                ("msg", "hello \"you\""),
            ])
        );
        let got = run(|l| logfmt(line, false, true, &[], l, None));
        assert!(got.contains(&("flag".into(), "".into())));
        assert!(got.contains(&("empty".into(), "".into())));
        let got = run(|l| logfmt(line, true, false, &[], l, None));
        assert!(got.contains(&("__error__".into(), LOGFMT_ERROR.into())));
        let other = "a=\"plain\"\tb=ünï c=\"x\\ty\" d=q\"uote e=1";
        assert_eq!(
            run(|l| logfmt(other, false, false, &[], l, None)),
            pairs(&[
                ("a", "plain"),
                ("app", "a"),
                ("b", "ünï"),
                ("c", "x\ty"),
                ("e", "1")
            ])
        );
        // With hints, only what the query reads.
        let hints =
            std::collections::BTreeSet::from(["level".to_owned(), "app_extracted".to_owned()]);
        let got = run(|l| logfmt(line, false, false, &[], l, Some(&Hints::new(&hints))));
        assert_eq!(
            got,
            pairs(&[("app", "a"), ("app_extracted", "y"), ("level", "info")])
        );
        // Keys are matched to hints as they are named (sanitized).
        let hints = std::collections::BTreeSet::from(["a_b".to_owned(), "_1x".to_owned()]);
        let got = run(|l| {
            logfmt(
                "a.b=1 1x=2 ab=3 a_bc=4",
                false,
                false,
                &[],
                l,
                Some(&Hints::new(&hints)),
            )
        });
        assert_eq!(got, pairs(&[("_1x", "2"), ("a_b", "1"), ("app", "a")]));
        // It stops once every hinted label is set (as Loki's does).
        let hints = Hints::new(&std::collections::BTreeSet::from(["status".to_owned()]));
        let line = "status=500 status=404 x=\"";
        let got = run(|l| logfmt(line, true, false, &[], l, Some(&hints)));
        assert_eq!(got, pairs(&[("app", "a"), ("status", "500")]));
    }

    #[test]
    fn patterns_capture_up_to_the_next_literal() {
        let p = Pattern::new(r#"<ip> - <_> [<_>] "<method> <path> <_>" <status>"#)
            .expect("the pattern compiles");
        let line = r#"10.0.0.1 - - [10/Oct/2000:13:55:36] "GET /a HTTP/1.0" 200 2326"#;
        assert_eq!(
            p.captures(line).expect("the pattern compiles"),
            vec![
                ("ip", "10.0.0.1"),
                ("method", "GET"),
                ("path", "/a"),
                ("status", "200 2326")
            ]
        );
        assert!(p.captures("nothing like it").is_none());
        assert!(Pattern::new("<a><b>").is_err());
        assert!(Pattern::new("no captures").is_err());
    }
}
