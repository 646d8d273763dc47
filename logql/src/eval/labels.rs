//! The labels of one log line, each with where it came from.

use std::collections::BTreeMap;

/// Where a label comes from, as Loki's `categorize-labels` encoding tells.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Category {
    /// A stream label (indexed).
    Stream,
    /// Structured metadata stored with the line.
    Metadata,
    /// Extracted by the query (parsers, `label_format`, errors).
    Parsed,
}

/// One label.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Label {
    pub name: String,
    pub value: String,
    pub category: Category,
}

/// A line's labels: one value per name.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Labels {
    items: Vec<Label>,
}

/// The label a failing stage sets (`JSONParserErr`, `LabelFilterErr`, …).
pub const ERROR: &str = "__error__";
/// What went wrong, beside [`ERROR`].
pub const ERROR_DETAILS: &str = "__error_details__";

impl Labels {
    /// Labels of these categories and values (names unique; later wins).
    pub fn new(items: impl IntoIterator<Item = Label>) -> Self {
        let mut labels = Labels::default();
        for label in items {
            labels.set(label.category, &label.name, label.value);
        }
        labels
    }

    /// Stream labels only.
    pub fn stream<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        Labels::new(pairs.into_iter().map(|(name, value)| Label {
            name: name.to_owned(),
            value: value.to_owned(),
            category: Category::Stream,
        }))
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.items
            .iter()
            .find(|l| l.name == name)
            .map(|l| l.value.as_str())
    }

    /// The label of this name, with its category.
    pub fn label(&self, name: &str) -> Option<&Label> {
        self.items.iter().find(|l| l.name == name)
    }

    /// Whether a stream label has this name (parsers then name what they
    /// extract `<name>_extracted`, as Loki does).
    pub fn is_stream(&self, name: &str) -> bool {
        self.label(name)
            .is_some_and(|l| l.category == Category::Stream)
    }

    /// Sets a label, replacing any of the same name.
    pub fn set(&mut self, category: Category, name: &str, value: String) {
        match self.items.iter_mut().find(|l| l.name == name) {
            Some(label) => {
                label.value = value;
                label.category = category;
            }
            None => self.items.push(Label {
                name: name.to_owned(),
                value,
                category,
            }),
        }
    }

    pub fn remove(&mut self, name: &str) {
        self.items.retain(|l| l.name != name);
    }

    pub fn retain(&mut self, keep: impl FnMut(&Label) -> bool) {
        self.items.retain(keep);
    }

    /// Sets the error labels, unless an earlier stage already failed.
    pub fn set_error(&mut self, error: &str, details: impl Into<String>) {
        if self.get(ERROR).is_none() {
            self.set(Category::Parsed, ERROR, error.to_owned());
            let details = details.into();
            if !details.is_empty() {
                self.set(Category::Parsed, ERROR_DETAILS, details);
            }
        }
    }

    pub fn error(&self) -> Option<&str> {
        self.get(ERROR)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Label> {
        self.items.iter()
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Every label by name, whatever its category.
    pub fn map(&self) -> BTreeMap<String, String> {
        self.items
            .iter()
            .map(|l| (l.name.clone(), l.value.clone()))
            .collect()
    }

    /// The labels of one category by name.
    pub fn of(&self, category: Category) -> BTreeMap<String, String> {
        self.items
            .iter()
            .filter(|l| l.category == category)
            .map(|l| (l.name.clone(), l.value.clone()))
            .collect()
    }

    /// Sorted by name: a key equal for equal label sets.
    pub fn sorted(&self) -> Vec<(String, String)> {
        self.map().into_iter().collect()
    }
}

/// A name made a valid label name: characters other than ASCII letters,
/// digits and `_` become `_` (`service.name` is `service_name`), and a
/// leading digit gets a `_` before it.
pub fn sanitize(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 1);
    if name.starts_with(|c: char| c.is_ascii_digit()) {
        out.push('_');
    }
    out.extend(name.chars().map(|c| {
        if c.is_ascii_alphanumeric() || c == '_' {
            c
        } else {
            '_'
        }
    }));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_value_per_name_and_the_first_error_stays() {
        let mut labels = Labels::stream([("app", "a"), ("level", "info")]);
        labels.set(Category::Parsed, "level", "error".into());
        assert_eq!(labels.get("level"), Some("error"));
        assert_eq!(labels.len(), 2);
        assert!(!labels.is_stream("level"));
        labels.set_error("JSONParserErr", "bad");
        labels.set_error("LogfmtParserErr", "");
        assert_eq!(labels.error(), Some("JSONParserErr"));
        assert_eq!(labels.get(ERROR_DETAILS), Some("bad"));
        assert_eq!(sanitize("k8s.pod.name"), "k8s_pod_name");
        assert_eq!(sanitize("1a-b"), "_1a_b");
    }
}
