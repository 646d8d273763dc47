//! The `json` and `unpack` stages, over a JSON reader of their own: one pass
//! over the line that checks all of it (RFC 8259), borrows strings that hold
//! no escape, keeps numbers as written (as Loki does) and skips, without
//! decoding, what no hinted label comes from.

use std::borrow::Cow;

use super::labels::{Category, Labels, sanitized};
use super::parsers::{Hints, extracted};
use crate::ast::Extraction;

pub const JSON_ERROR: &str = "JSONParserErr";

/// How deep objects and arrays may nest.
const MAX_DEPTH: usize = 128;

/// `| json`: every field of a JSON object, nested ones joined with `_`
/// (arrays are not extracted); or, with extractions, the fields they name.
/// A line that is not a JSON object gets the `__error__` label.
pub(super) fn parse(
    line: &str,
    extractions: &[Extraction],
    labels: &mut Labels,
    hints: Option<&Hints>,
) {
    let mut reader = Reader::new(line);
    let read = if extractions.is_empty() {
        let mut sink = Sink {
            labels: &mut *labels,
            hints,
            found: 0,
        };
        reader.line(|r| r.fields(&mut String::new(), &mut sink))
    } else {
        reader.line(|r| r.members(|r, _| r.skip_value()))
    };
    if let Err(e) = read {
        labels.set_error(JSON_ERROR, e);
        return;
    }
    for e in extractions {
        let path = e.expression.as_deref().unwrap_or(&e.label);
        let value = json_path(path)
            .and_then(|steps| Reader::new(line).find(&steps).ok().flatten())
            .unwrap_or_default();
        labels.set_with(Category::Parsed, &e.label, |v| v.push_str(&value));
    }
}

/// `| unpack`: the string fields of a JSON object (as Promtail's `pack`
/// stage writes them); the `_entry` field becomes the line.
pub(super) fn unpack(line: &mut String, labels: &mut Labels) {
    let mut fields = Vec::new();
    let read = Reader::new(line).line(|r| {
        r.members(|r, key| {
            r.skip_ws();
            if r.peek() == Some(b'"') {
                fields.push((key, r.scalar()?));
                Ok(())
            } else {
                r.skip_value()
            }
        })
    });
    if let Err(e) = read {
        labels.set_error(JSON_ERROR, e);
        return;
    }
    let mut entry = None;
    for (key, value) in fields {
        if key == "_entry" {
            entry = Some(value.into_owned());
        } else {
            extracted(labels, &sanitized(&key), value, None);
        }
    }
    if let Some(entry) = entry {
        *line = entry;
    }
}

/// Where the labels a line's fields give go.
struct Sink<'l, 'h> {
    labels: &'l mut Labels,
    hints: Option<&'h Hints>,
    /// The bits of the hinted labels set.
    found: u64,
}

type Read<T> = Result<T, String>;

/// A JSON text read from its start, byte by byte.
struct Reader<'a> {
    text: &'a str,
    pos: usize,
    /// The objects and arrays the reader is in.
    depth: usize,
}

impl<'a> Reader<'a> {
    fn new(text: &'a str) -> Self {
        Reader {
            text,
            pos: 0,
            depth: 0,
        }
    }

    fn peek(&self) -> Option<u8> {
        self.text.as_bytes().get(self.pos).copied()
    }

    fn skip_ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.pos += 1;
        }
    }

    /// What was expected where the reader is, and what it found.
    fn error(&self, expected: &str) -> String {
        let column = self.text[..self.pos].chars().count() + 1;
        match self.text[self.pos..].chars().next() {
            None => format!("expected {expected} at the end of the line"),
            Some(c) => format!("expected {expected} at column {column}, found {c:?}"),
        }
    }

    /// Moves past `byte` (after any whitespace), or fails with `expected`.
    fn eat(&mut self, byte: u8, expected: &str) -> Read<()> {
        self.skip_ws();
        if self.peek() != Some(byte) {
            return Err(self.error(expected));
        }
        self.pos += 1;
        Ok(())
    }

    /// The whole text as one object, `body` reading its members.
    fn line(&mut self, body: impl FnOnce(&mut Self) -> Read<()>) -> Read<()> {
        self.eat(b'{', "a JSON object")?;
        body(self)?;
        self.skip_ws();
        match self.peek() {
            None => Ok(()),
            Some(_) => Err(self.error("the end of the line after the object")),
        }
    }

    fn enter(&mut self) -> Read<()> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(format!("objects and arrays nest deeper than {MAX_DEPTH}"));
        }
        Ok(())
    }

    /// Reads an object's members, the reader after its `{`: `member` gets
    /// each key with the reader before its value, and reads the value.
    fn members(&mut self, mut member: impl FnMut(&mut Self, Cow<'a, str>) -> Read<()>) -> Read<()> {
        self.enter()?;
        self.skip_ws();
        if self.peek() == Some(b'}') {
            self.pos += 1;
            self.depth -= 1;
            return Ok(());
        }
        loop {
            self.eat(b'"', "a key")?;
            let key = self.string()?;
            self.eat(b':', "':'")?;
            member(self, key)?;
            self.skip_ws();
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b'}') => {
                    self.pos += 1;
                    self.depth -= 1;
                    return Ok(());
                }
                _ => return Err(self.error("',' or '}'")),
            }
        }
    }

    /// Reads an array's elements, the reader after its `[`: `element` gets
    /// each index with the reader before the element, and reads it.
    fn elements(&mut self, mut element: impl FnMut(&mut Self, usize) -> Read<()>) -> Read<()> {
        self.enter()?;
        self.skip_ws();
        if self.peek() == Some(b']') {
            self.pos += 1;
            self.depth -= 1;
            return Ok(());
        }
        for index in 0.. {
            element(self, index)?;
            self.skip_ws();
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b']') => break,
                _ => return Err(self.error("',' or ']'")),
            }
        }
        self.pos += 1;
        self.depth -= 1;
        Ok(())
    }

    /// Checks a value and moves past it.
    fn skip_value(&mut self) -> Read<()> {
        self.skip_ws();
        match self.peek() {
            Some(b'{') => {
                self.pos += 1;
                self.members(|r, _| r.skip_value())
            }
            Some(b'[') => {
                self.pos += 1;
                self.elements(|r, _| r.skip_value())
            }
            Some(b'"') => {
                self.pos += 1;
                self.skip_string()
            }
            _ => self.scalar().map(drop),
        }
    }

    /// A value as a label's text, the reader before it: strings decoded,
    /// numbers and booleans as written, `null` empty, objects and arrays as
    /// written.
    fn label_text(&mut self) -> Read<Cow<'a, str>> {
        self.skip_ws();
        let start = self.pos;
        if let Some(b'{' | b'[') = self.peek() {
            self.skip_value()?;
            return Ok(Cow::Borrowed(&self.text[start..self.pos]));
        }
        self.scalar()
    }

    /// A string, number, boolean or `null` as a label's text, the reader
    /// before it (after any whitespace).
    fn scalar(&mut self) -> Read<Cow<'a, str>> {
        let literal = |r: &mut Self, word: &'static str, text: &'static str| {
            if r.text.as_bytes()[r.pos..].starts_with(word.as_bytes()) {
                r.pos += word.len();
                Ok(Cow::Borrowed(text))
            } else {
                Err(r.error("a JSON value"))
            }
        };
        match self.peek() {
            Some(b'"') => {
                self.pos += 1;
                self.string()
            }
            Some(b't') => literal(self, "true", "true"),
            Some(b'f') => literal(self, "false", "false"),
            Some(b'n') => literal(self, "null", ""),
            Some(b'-' | b'0'..=b'9') => self.number().map(Cow::Borrowed),
            _ => Err(self.error("a JSON value")),
        }
    }

    /// A number as written, the reader at its first byte.
    fn number(&mut self) -> Read<&'a str> {
        let start = self.pos;
        if self.peek() == Some(b'-') {
            self.pos += 1;
        }
        match self.peek() {
            Some(b'0') => self.pos += 1,
            Some(b'1'..=b'9') => self.digits(),
            _ => return Err(self.error("a digit")),
        }
        if self.peek() == Some(b'.') {
            self.pos += 1;
            self.some_digits()?;
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.pos += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.pos += 1;
            }
            self.some_digits()?;
        }
        Ok(&self.text[start..self.pos])
    }

    fn digits(&mut self) {
        while let Some(b'0'..=b'9') = self.peek() {
            self.pos += 1;
        }
    }

    fn some_digits(&mut self) -> Read<()> {
        if !matches!(self.peek(), Some(b'0'..=b'9')) {
            return Err(self.error("a digit"));
        }
        self.digits();
        Ok(())
    }

    /// A string, decoded, the reader after its opening quote; borrowed
    /// from the text unless it holds escapes.
    fn string(&mut self) -> Read<Cow<'a, str>> {
        let start = self.pos;
        self.pos += plain(&self.text.as_bytes()[start..]);
        if self.peek() == Some(b'"') {
            self.pos += 1;
            return Ok(Cow::Borrowed(&self.text[start..self.pos - 1]));
        }
        let mut out = String::from(&self.text[start..self.pos]);
        loop {
            match self.peek() {
                Some(b'"') => {
                    self.pos += 1;
                    return Ok(Cow::Owned(out));
                }
                Some(b'\\') => out.push(self.escape()?),
                _ => return Err(self.error("a closing quote")),
            }
            let from = self.pos;
            self.pos += plain(&self.text.as_bytes()[from..]);
            out.push_str(&self.text[from..self.pos]);
        }
    }

    /// Checks a string and moves past it, the reader after its opening
    /// quote.
    fn skip_string(&mut self) -> Read<()> {
        loop {
            self.pos += plain(&self.text.as_bytes()[self.pos..]);
            match self.peek() {
                Some(b'"') => {
                    self.pos += 1;
                    return Ok(());
                }
                Some(b'\\') => drop(self.escape()?),
                _ => return Err(self.error("a closing quote")),
            }
        }
    }

    /// The character an escape stands for, the reader at its backslash.
    fn escape(&mut self) -> Read<char> {
        self.pos += 1;
        let c = match self.peek() {
            Some(b'"') => '"',
            Some(b'\\') => '\\',
            Some(b'/') => '/',
            Some(b'b') => '\u{8}',
            Some(b'f') => '\u{c}',
            Some(b'n') => '\n',
            Some(b'r') => '\r',
            Some(b't') => '\t',
            Some(b'u') => {
                self.pos += 1;
                let unit = self.hex()?;
                let code = match unit {
                    0xD800..0xDC00 => {
                        if !self.text.as_bytes()[self.pos..].starts_with(b"\\u") {
                            return Err(self.error("the low half of a surrogate pair"));
                        }
                        self.pos += 2;
                        let low = self.hex()?;
                        if !(0xDC00..0xE000).contains(&low) {
                            return Err(format!(
                                "{low:04x} is not the low half of a surrogate pair"
                            ));
                        }
                        0x10000 + ((unit - 0xD800) << 10) + (low - 0xDC00)
                    }
                    other => other,
                };
                return char::from_u32(code).ok_or_else(|| format!("lone surrogate {code:04x}"));
            }
            _ => return Err(self.error("an escape")),
        };
        self.pos += 1;
        Ok(c)
    }

    /// Four hexadecimal digits.
    fn hex(&mut self) -> Read<u32> {
        let digits = self.text.as_bytes().get(self.pos..self.pos + 4);
        let value = digits
            .and_then(|d| std::str::from_utf8(d).ok())
            .filter(|d| d.bytes().all(|b| b.is_ascii_hexdigit()))
            .and_then(|d| u32::from_str_radix(d, 16).ok());
        let Some(value) = value else {
            return Err(self.error("four hexadecimal digits"));
        };
        self.pos += 4;
        Ok(value)
    }

    /// The members of an object as labels, the reader after its `{`: each
    /// scalar under its name, nested objects' with their names joined by `_`
    /// (`prefix`: the names of the enclosing objects).
    fn fields(&mut self, prefix: &mut String, sink: &mut Sink) -> Read<()> {
        self.members(|r, key| {
            // Once every hinted label is set, the rest is only checked.
            let skip = |h: &Hints| h.all(sink.found) || prefix.is_empty() && !h.may_start(&key);
            if sink.hints.is_some_and(skip) {
                return r.skip_value();
            }
            let len = prefix.len();
            if !prefix.is_empty() {
                prefix.push('_');
            }
            prefix.push_str(&sanitized(&key));
            let read = if sink.hints.is_none_or(|h| h.may_lead_to(prefix)) {
                r.field(prefix, sink)
            } else {
                r.skip_value()
            };
            prefix.truncate(len);
            read
        })
    }

    /// A member's value as labels named by `prefix`: a scalar's label, an
    /// object's fields, nothing for an array.
    fn field(&mut self, prefix: &mut String, sink: &mut Sink) -> Read<()> {
        self.skip_ws();
        match self.peek() {
            Some(b'{') => {
                self.pos += 1;
                self.fields(prefix, sink)
            }
            Some(b'[') => self.skip_value(),
            _ => {
                let value = self.scalar()?;
                sink.found |= extracted(sink.labels, prefix, value, sink.hints);
                Ok(())
            }
        }
    }

    /// The label text of the value a path leads to (the first member of a
    /// name when there are several); `None` when there is none.
    fn find(&mut self, steps: &[Step]) -> Read<Option<Cow<'a, str>>> {
        let Some((step, rest)) = steps.split_first() else {
            return self.label_text().map(Some);
        };
        self.skip_ws();
        let mut found = None;
        let mut matched = false;
        match (step, self.peek()) {
            (Step::Field(name), Some(b'{')) => {
                self.pos += 1;
                self.members(|r, key| {
                    if matched || key != name.as_str() {
                        return r.skip_value();
                    }
                    matched = true;
                    found = r.find(rest)?;
                    Ok(())
                })?;
            }
            (Step::Index(i), Some(b'[')) => {
                self.pos += 1;
                self.elements(|r, index| {
                    if index != *i {
                        return r.skip_value();
                    }
                    found = r.find(rest)?;
                    Ok(())
                })?;
            }
            _ => self.skip_value()?,
        }
        Ok(found)
    }
}

/// How many bytes from the start a string holds as they are: up to a
/// quote, a backslash or a control character. Eight bytes at a time: a
/// byte's high bit is set in each test below where the byte is one of
/// these, and wrongly only above a byte that rightly is.
fn plain(bytes: &[u8]) -> usize {
    const ONES: u64 = u64::from_ne_bytes([1; 8]);
    const HIGH: u64 = ONES << 7;
    let mut at = 0;
    while let Some(chunk) = bytes.get(at..at + 8) {
        let word = u64::from_le_bytes(chunk.try_into().expect("8 bytes"));
        let quote = word ^ (ONES * u64::from(b'"'));
        let backslash = word ^ (ONES * u64::from(b'\\'));
        let stops = (quote.wrapping_sub(ONES) & !quote)
            | (backslash.wrapping_sub(ONES) & !backslash)
            | (word.wrapping_sub(ONES * 0x20) & !word);
        let stops = stops & HIGH;
        if stops != 0 {
            return at + (stops.trailing_zeros() / 8) as usize;
        }
        at += 8;
    }
    let rest = &bytes[at..];
    at + rest
        .iter()
        .position(|&b| b == b'"' || b == b'\\' || b < 0x20)
        .unwrap_or(rest.len())
}

/// One step of a JSON path: a field or an array index.
#[derive(Debug, PartialEq)]
enum Step {
    Field(String),
    Index(usize),
}

/// `a.b[0]["c d"]` as steps; `None` when it is not a path.
fn json_path(path: &str) -> Option<Vec<Step>> {
    let mut steps = Vec::new();
    let mut rest = path.trim();
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix('[') {
            let (inside, after) = r.split_once(']')?;
            let inside = inside.trim();
            if let Some(quoted) = inside
                .strip_prefix('"')
                .and_then(|s| s.strip_suffix('"'))
                .or_else(|| inside.strip_prefix('\'').and_then(|s| s.strip_suffix('\'')))
            {
                steps.push(Step::Field(quoted.replace("\\\"", "\"")));
            } else {
                steps.push(Step::Index(inside.parse().ok()?));
            }
            rest = after;
        } else {
            let r = rest.strip_prefix('.').unwrap_or(rest);
            let end = r.find(['.', '[']).unwrap_or(r.len());
            if end == 0 {
                return None;
            }
            steps.push(Step::Field(r[..end].to_owned()));
            rest = &r[end..];
        }
    }
    (!steps.is_empty()).then_some(steps)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

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

    fn json(line: &str) -> Vec<(String, String)> {
        run(|l| parse(line, &[], l, None))
    }

    fn failed(labels: &[(String, String)]) -> bool {
        labels.contains(&("__error__".into(), JSON_ERROR.into()))
    }

    #[test]
    fn fields_are_flattened_and_arrays_skipped() {
        let got = json(
            r#"{"app":"x","req":{"method":"GET","status":500},"tags":[1],"ok":true,"n":null}"#,
        );
        assert_eq!(
            got,
            pairs(&[
                ("app", "a"),
                ("app_extracted", "x"),
                ("n", ""),
                ("ok", "true"),
                ("req_method", "GET"),
                ("req_status", "500"),
            ])
        );
        // Numbers as written, strings decoded, the last of a name kept,
        // whitespace anywhere between tokens.
        let got = json(
            r#"  { "n" : 1.50 , "big":18446744073709551616000, "neg":-0, "e":1E+3,
                "s":"q\"b\\s\/\b\f\n\r\t\u00e9\ud83d\ude00", "k\u0031":"first", "k1":"second",
                "x":{}, "y":[ 1 , {"z":2} ], "o":{"p":{"q":"r"}} }  "#,
        );
        assert_eq!(
            got,
            pairs(&[
                ("app", "a"),
                ("big", "18446744073709551616000"),
                ("e", "1E+3"),
                ("k1", "second"),
                ("n", "1.50"),
                ("neg", "-0"),
                ("o_p_q", "r"),
                ("s", "q\"b\\s/\u{8}\u{c}\n\r\té😀"),
            ])
        );
    }

    #[test]
    fn what_is_not_a_json_object_is_an_error() {
        let deep = |n: usize| format!(r#"{{"a":{}1{}}}"#, "[".repeat(n), "]".repeat(n));
        for line in [
            "",
            "not json",
            "[1]",
            r#"{"a":}"#,
            r#"{"a":1,}"#,
            r#"{"a":01}"#,
            r#"{"a":1.}"#,
            r#"{"a":-}"#,
            r#"{"a":1e}"#,
            r#"{"a":"x"#,
            r#"{"a":"\x"}"#,
            r#"{"a":"\u12"}"#,
            r#"{"a":"\ud800"}"#,
            r#"{"a":"\ud800\u0041"}"#,
            r#"{"a":"\udc00"}"#,
            "{\"a\":\"tab\there\"}",
            r#"{"a":tru}"#,
            r#"{"a":[1 2]}"#,
            r#"{a:1}"#,
            r#"{"a" 1}"#,
            r#"{"a":1} x"#,
            r#"{"a":1}{}"#,
            &deep(MAX_DEPTH),
        ] {
            let got = json(line);
            assert!(failed(&got), "{line:?}: {got:?}");
            let details = got.iter().find(|(n, _)| n == "__error_details__");
            assert!(details.is_some_and(|(_, d)| !d.is_empty()), "{line:?}");
        }
        assert_eq!(json(deep(MAX_DEPTH - 2).as_str()), pairs(&[("app", "a")]));
        let got = json(r#"{"a":"b" "c":1}"#);
        assert!(
            got.contains(&(
                "__error_details__".into(),
                r#"expected ',' or '}' at column 10, found '"'"#.into()
            )),
            "{got:?}"
        );
    }

    /// serde_json is the reference for which texts are JSON objects: byte
    /// changes to JSON lines are read alike by both.
    #[test]
    fn the_same_lines_are_json_as_for_serde_json() {
        let seeds = [
            r#"{"msg":"ok","user":12,"status":500,"took_ms":1.5e-3,"route":"/a\"b"}"#,
            r#"{"a":{"b":[true,false,null,{"c":"\u00e9\ud83d\ude00"}]},"d":-0.25E+2}"#,
        ];
        let alphabet = br#"{}[]:,"\ 0123456789-+.eEtrufalsn/bu"#;
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut both = [0; 2];
        for i in 0..20_000 {
            let mut line = seeds[i % seeds.len()].as_bytes().to_vec();
            for _ in 0..=next() % 3 {
                let at = (next() % line.len() as u64) as usize;
                let byte = alphabet[(next() % alphabet.len() as u64) as usize];
                match next() % 3 {
                    0 => line[at] = byte,
                    1 => line.insert(at, byte),
                    _ => drop(line.remove(at)),
                }
            }
            let Ok(line) = String::from_utf8(line) else {
                continue;
            };
            let serde = serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(&line);
            let ours = !failed(&json(&line));
            assert_eq!(ours, serde.is_ok(), "{line}");
            both[usize::from(ours)] += 1;
        }
        assert!(both[0] > 1000 && both[1] > 1000, "{both:?}");
    }

    #[test]
    fn strings_stop_at_quotes_backslashes_and_control_characters() {
        for len in 0..20 {
            for stop in ["\"", "\\", "\n", "\u{1f}"] {
                for filler in ["a", "é", "\u{7f}", " "] {
                    let text = format!("{}{stop}rest", filler.repeat(len));
                    assert_eq!(plain(text.as_bytes()), filler.len() * len, "{text:?}");
                }
            }
            let text = "ü".repeat(len);
            assert_eq!(plain(text.as_bytes()), text.len());
        }
    }

    #[test]
    fn hints_skip_what_they_do_not_name_but_check_it() {
        let hints = Hints::new(&BTreeSet::from(["status".to_owned()]));
        for line in [
            r#"{"req":{"a":},"status":500}"#,
            r#"{"status":500,"req":{"a":}}"#,
            r#"{"status":500,"req":"\q"}"#,
            r#"{"status":500} x"#,
        ] {
            let got = run(|l| parse(line, &[], l, Some(&hints)));
            assert!(failed(&got), "{line}: {got:?}");
        }
        let got = run(|l| parse(r#"{"req":{"a":1},"status":503}"#, &[], l, Some(&hints)));
        assert_eq!(got, pairs(&[("app", "a"), ("status", "503")]));
        let hints = Hints::new(&BTreeSet::from([
            "_1x".to_owned(),
            "a_b_c".to_owned(),
            "app_extracted".to_owned(),
        ]));
        let line = r#"{"1x":2,"a.b":{"c":3,"d":4},"b":5,"app":"x"}"#;
        let got = run(|l| parse(line, &[], l, Some(&hints)));
        assert_eq!(
            got,
            pairs(&[
                ("_1x", "2"),
                ("a_b_c", "3"),
                ("app", "a"),
                ("app_extracted", "x")
            ])
        );
    }

    #[test]
    fn extractions_follow_paths() {
        let e = |label: &str, expr: &str| Extraction {
            label: label.into(),
            expression: Some(expr.into()),
        };
        let line = r#"{"servers":["a","b"],"request":{"headers":{"User-Agent":"curl"}},
            "n":1.50,"k":"first","k":"second","esc":"a\tb"}"#;
        let got = run(|l| {
            parse(
                line,
                &[
                    e("first", "servers[1]"),
                    e("ua", r#"request.headers["User-Agent"]"#),
                    e("req", "request"),
                    e("none", "missing.x"),
                    e("n", "n"),
                    e("k", "k"),
                    e("esc", "esc"),
                ],
                l,
                None,
            )
        });
        assert_eq!(
            got,
            pairs(&[
                ("app", "a"),
                ("esc", "a\tb"),
                ("first", "b"),
                ("k", "first"),
                ("n", "1.50"),
                ("none", ""),
                ("req", r#"{"headers":{"User-Agent":"curl"}}"#),
                ("ua", "curl"),
            ])
        );
        let got = run(|l| parse(r#"{"n":1,}"#, &[e("n", "n")], l, None));
        assert!(
            failed(&got) && !got.iter().any(|(n, _)| n == "n"),
            "{got:?}"
        );
    }

    #[test]
    fn unpack_takes_string_fields_and_the_entry() {
        let mut line = r#"{"_entry":"the line","pod":"p1","n":3,"o":{"x":"y"}}"#.to_owned();
        let mut labels = Labels::default();
        unpack(&mut line, &mut labels);
        assert_eq!(line, "the line");
        assert_eq!(labels.sorted(), pairs(&[("pod", "p1")]));
        // A line that is not JSON stays, with an error and nothing else.
        let bad = r#"{"_entry":"x","pod":"p1",}"#;
        let mut line = bad.to_owned();
        let mut labels = Labels::default();
        unpack(&mut line, &mut labels);
        assert_eq!(line, bad);
        assert_eq!(labels.get("pod"), None);
        assert_eq!(labels.error(), Some(JSON_ERROR));
    }
}
