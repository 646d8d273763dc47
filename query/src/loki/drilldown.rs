//! What Grafana's query editor and Logs Drilldown ask besides queries: the
//! fields of sampled lines (`detected_fields`), the label cardinalities of
//! streams (`detected_labels`) and the patterns of lines (`patterns`).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use framelake_logql::eval::Category;
use framelake_logql::{parse_bytes, parse_duration};

use super::LogLine;
use super::streams::Stream;

/// A field found in lines: its values and where it came from.
#[derive(Debug, Default)]
pub struct Field {
    pub values: BTreeSet<String>,
    /// `json` or `logfmt` when a parser finds it in the line; none for
    /// structured metadata and labels the query parsed.
    pub parsers: BTreeSet<&'static str>,
    /// The path of a JSON field (`["req", "path"]` for `req_path`).
    pub json_path: Option<Vec<String>>,
}

impl Field {
    /// Loki's field type: what every value reads as.
    pub fn kind(&self) -> &'static str {
        let all = |f: &dyn Fn(&str) -> bool| self.values.iter().all(|v| f(v));
        if all(&|v| v.parse::<i64>().is_ok()) {
            "int"
        } else if all(&|v| v.parse::<f64>().is_ok()) {
            "float"
        } else if all(&|v| v == "true" || v == "false") {
            "boolean"
        } else if all(&|v| {
            parse_duration(v).is_some() && v.ends_with(|c: char| c.is_ascii_alphabetic())
        }) {
            "duration"
        } else if all(&|v| parse_bytes(v).is_some() && v.ends_with(['B', 'b'])) {
            "bytes"
        } else {
            "string"
        }
    }
}

/// The fields of lines: their structured metadata and parsed labels, and
/// the fields of JSON and logfmt lines, stream labels aside.
pub fn detect_fields(lines: &[LogLine]) -> BTreeMap<String, Field> {
    let mut fields: BTreeMap<String, Field> = BTreeMap::new();
    for line in lines {
        for label in line.labels.iter() {
            if label.category != Category::Stream && !label.name.starts_with("__") {
                fields
                    .entry(label.name.clone())
                    .or_default()
                    .values
                    .insert(label.value.clone());
            }
        }
        let trimmed = line.line.trim_start();
        if trimmed.starts_with('{') {
            if let Ok(serde_json::Value::Object(map)) = serde_json::from_str(trimmed) {
                json_fields(&map, &mut Vec::new(), &mut fields);
            }
        } else if trimmed.contains('=') {
            for label in framelake_logql::eval::logfmt_fields(trimmed).iter() {
                let field = fields.entry(label.name.clone()).or_default();
                field.values.insert(label.value.clone());
                field.parsers.insert("logfmt");
            }
        }
    }
    fields
}

fn json_fields(
    map: &serde_json::Map<String, serde_json::Value>,
    path: &mut Vec<String>,
    fields: &mut BTreeMap<String, Field>,
) {
    for (key, value) in map {
        path.push(key.clone());
        match value {
            serde_json::Value::Object(inner) => json_fields(inner, path, fields),
            serde_json::Value::Array(_) => {}
            other => {
                let name = path
                    .iter()
                    .map(|p| framelake_logql::eval::sanitize(p))
                    .collect::<Vec<_>>()
                    .join("_");
                let field = fields.entry(name).or_default();
                field.values.insert(match other {
                    serde_json::Value::String(s) => s.clone(),
                    serde_json::Value::Null => String::new(),
                    v => v.to_string(),
                });
                field.parsers.insert("json");
                field.json_path = Some(path.clone());
            }
        }
        path.pop();
    }
}

/// Whether every value of a label looks like an id (numbers, UUIDs, long
/// hex): such labels are no use to browse by, and Loki leaves them out.
fn ids_only(values: &BTreeSet<&str>) -> bool {
    values.len() > 1
        && values.iter().all(|v| {
            v.parse::<f64>().is_ok()
                || (v.len() >= 16 && v.chars().all(|c| c.is_ascii_hexdigit() || c == '-'))
        })
}

/// The stream labels of streams and how many values each has.
pub fn detect_labels<'a>(streams: impl Iterator<Item = &'a Stream>) -> Vec<(String, usize)> {
    let mut values: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for s in streams {
        for l in s.labels.iter() {
            values.entry(&l.name).or_default().insert(&l.value);
        }
    }
    values
        .into_iter()
        .filter(|(_, v)| !ids_only(v))
        .map(|(name, v)| (name.to_owned(), v.len()))
        .collect()
}

/// A pattern of lines: its text (variable tokens as `<_>`), level and count per step.
#[derive(Debug)]
pub struct Pattern {
    pub pattern: String,
    pub level: String,
    pub samples: BTreeMap<i64, u64>,
    pub total: u64,
}

/// Whether a token varies from line to line: it holds a digit, or is a
/// long hexadecimal or quoted value.
fn variable(token: &str) -> bool {
    token.chars().any(|c| c.is_ascii_digit())
        || (token.len() >= 8 && token.chars().all(|c| c.is_ascii_hexdigit()))
}

/// A line's pattern: words kept, variable tokens (and the values of
/// `key=value` pairs that vary) as `<_>`, runs of them merged.
pub fn pattern_of(line: &str) -> String {
    let mut out: Vec<String> = Vec::new();
    for token in line.split_whitespace() {
        let replaced = match token.split_once('=') {
            Some((key, value)) if !key.is_empty() && variable(value) => format!("{key}=<_>"),
            _ if variable(token) => "<_>".to_owned(),
            _ => token.to_owned(),
        };
        if replaced == "<_>" && out.last().is_some_and(|l| l == "<_>") {
            continue;
        }
        out.push(replaced);
    }
    out.join(" ")
}

/// The patterns of lines, counted per step (a line at `t` counts for the
/// step bucket `start + k·step` at or before it), most frequent first.
pub fn patterns(lines: &[LogLine], start: i64, step: i64, limit: usize) -> Vec<Pattern> {
    let mut found: HashMap<(String, String), Pattern> = HashMap::new();
    for line in lines {
        let level = line
            .labels
            .get(super::streams::DETECTED_LEVEL)
            .unwrap_or("unknown")
            .to_owned();
        let text = pattern_of(&line.line);
        let bucket = start + (line.time - start).div_euclid(step) * step;
        let p = found
            .entry((text.clone(), level.clone()))
            .or_insert_with(|| Pattern {
                pattern: text,
                level,
                samples: BTreeMap::new(),
                total: 0,
            });
        *p.samples.entry(bucket).or_default() += 1;
        p.total += 1;
    }
    let mut all: Vec<Pattern> = found.into_values().collect();
    all.sort_by(|a, b| {
        b.total
            .cmp(&a.total)
            .then_with(|| a.pattern.cmp(&b.pattern))
    });
    all.truncate(limit);
    all
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_hide_what_varies() {
        assert_eq!(
            pattern_of("GET /api/users/42 took 15ms status=200 user=bob"),
            "GET <_> took <_> status=<_> user=bob"
        );
        assert_eq!(pattern_of("retry 1 2 3 done"), "retry <_> done");
    }

    #[test]
    fn field_types_follow_every_value() {
        let field = |values: &[&str]| Field {
            values: values.iter().map(|v| v.to_string()).collect(),
            ..Field::default()
        };
        assert_eq!(field(&["1", "20"]).kind(), "int");
        assert_eq!(field(&["1.5", "2"]).kind(), "float");
        assert_eq!(field(&["true", "false"]).kind(), "boolean");
        assert_eq!(field(&["15ms", "1.5s"]).kind(), "duration");
        assert_eq!(field(&["1KB", "512B"]).kind(), "bytes");
        assert_eq!(field(&["GET", "1"]).kind(), "string");
    }
}
