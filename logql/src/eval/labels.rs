//! The labels of one log line, each with where it came from.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::Arc;

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
///
/// A stream's labels are shared by its lines: [`Labels::freeze`] puts them
/// behind an `Arc`, so a line starts from its stream's labels with a
/// reference count, and only what stages change is the line's own.
#[derive(Debug, Clone, Default)]
pub struct Labels {
    /// Shared labels (a stream's), less those `hidden` marks.
    base: Option<Arc<[Label]>>,
    /// Bit `i` set: `base[i]` was replaced or removed.
    hidden: u64,
    /// The line's own labels (names unique, and none visible in `base`).
    items: Vec<Label>,
    /// Labels of earlier lines, their strings' memory reused by the next
    /// ones (see [`Labels::reset`]).
    spare: Vec<Label>,
}

/// The most labels [`Labels::freeze`] shares (one bit each in `hidden`).
const SHARED: usize = 64;

/// The label that a failing stage sets (`JSONParserErr`, `LabelFilterErr`, …).
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

    /// Stream labels only, shared by clones.
    pub fn stream<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        let mut labels = Labels::new(pairs.into_iter().map(|(name, value)| Label {
            name: name.to_owned(),
            value: value.to_owned(),
            category: Category::Stream,
        }));
        labels.freeze();
        labels
    }

    /// Makes these labels shared: clones then cost a reference count.
    pub fn freeze(&mut self) {
        if self.len() > SHARED {
            return;
        }
        let all: Vec<Label> = self.iter().cloned().collect();
        *self = Labels {
            base: Some(all.into()),
            hidden: 0,
            items: Vec::new(),
            spare: Vec::new(),
        };
    }

    /// Makes these labels a copy of `other` (frozen, usually: a stream's),
    /// keeping their memory for the labels set next.
    pub fn reset(&mut self, other: &Labels) {
        // Lines come in runs of one stream: its labels' reference count is
        // touched (by every thread reading them) only when the stream changes.
        let same = match (&self.base, &other.base) {
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            (None, None) => true,
            _ => false,
        };
        if !same {
            self.base.clone_from(&other.base);
        }
        self.hidden = other.hidden;
        self.spare.append(&mut self.items);
        self.items.extend(other.items.iter().cloned());
    }

    /// The visible shared labels, with their positions.
    fn shared(&self) -> impl Iterator<Item = (usize, &Label)> {
        let hidden = self.hidden;
        self.base
            .iter()
            .flat_map(|b| b.iter().enumerate())
            .filter(move |(i, _)| hidden & (1 << i) == 0)
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.label(name).map(|l| l.value.as_str())
    }

    /// The label of this name, with its category.
    pub fn label(&self, name: &str) -> Option<&Label> {
        self.items
            .iter()
            .find(|l| l.name == name)
            .or_else(|| self.shared().map(|(_, l)| l).find(|l| l.name == name))
    }

    /// Whether a stream label has this name (parsers then name what they
    /// extract `<name>_extracted`, as Loki does).
    pub fn is_stream(&self, name: &str) -> bool {
        self.label(name)
            .is_some_and(|l| l.category == Category::Stream)
    }

    /// Sets a label, replacing any of the same name.
    pub fn set(&mut self, category: Category, name: &str, value: String) {
        self.set_with(category, name, |v| *v = value);
    }

    /// Sets a label whose value `write` writes into an empty string (the
    /// memory of an earlier line's label, when there is one).
    pub fn set_with(&mut self, category: Category, name: &str, write: impl FnOnce(&mut String)) {
        if let Some(label) = self.items.iter_mut().find(|l| l.name == name) {
            label.value.clear();
            write(&mut label.value);
            label.category = category;
            return;
        }
        self.hide(|l| l.name == name);
        let mut label = self.spare.pop().unwrap_or_else(|| Label {
            name: String::new(),
            value: String::new(),
            category,
        });
        label.name.clear();
        label.name.push_str(name);
        label.value.clear();
        write(&mut label.value);
        label.category = category;
        self.items.push(label);
    }

    /// Hides the shared labels that `matches` picks.
    fn hide(&mut self, mut matches: impl FnMut(&Label) -> bool) {
        let hidden: u64 = self
            .shared()
            .filter(|(_, l)| matches(l))
            .fold(0, |bits, (i, _)| bits | (1 << i));
        self.hidden |= hidden;
    }

    pub fn remove(&mut self, name: &str) {
        self.items.retain(|l| l.name != name);
        self.hide(|l| l.name == name);
    }

    pub fn retain(&mut self, mut keep: impl FnMut(&Label) -> bool) {
        self.items.retain(&mut keep);
        self.hide(|l| !keep(l));
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

    /// Shared labels first, then the line's own.
    pub fn iter(&self) -> impl Iterator<Item = &Label> {
        self.shared().map(|(_, l)| l).chain(self.items.iter())
    }

    pub fn len(&self) -> usize {
        self.shared().count() + self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every label by name, whatever its category.
    pub fn map(&self) -> BTreeMap<String, String> {
        self.iter()
            .map(|l| (l.name.clone(), l.value.clone()))
            .collect()
    }

    /// The labels of one category by name.
    pub fn of(&self, category: Category) -> BTreeMap<String, String> {
        self.iter()
            .filter(|l| l.category == category)
            .map(|l| (l.name.clone(), l.value.clone()))
            .collect()
    }

    /// Sorted by name: a key equal for equal label sets.
    pub fn sorted(&self) -> Vec<(String, String)> {
        self.map().into_iter().collect()
    }
}

/// Equal when the same labels are visible, whatever is shared.
impl PartialEq for Labels {
    fn eq(&self, other: &Self) -> bool {
        fn sorted(l: &Labels) -> Vec<&Label> {
            let mut all: Vec<&Label> = l.iter().collect();
            all.sort();
            all
        }
        sorted(self) == sorted(other)
    }
}

impl Eq for Labels {}

/// A name made a valid label name: characters other than ASCII letters,
/// digits and `_` become `_` (`service.name` is `service_name`), and a
/// leading digit gets a `_` before it.
pub fn sanitize(name: &str) -> String {
    sanitized(name).into_owned()
}

/// [`sanitize`], borrowing the name when it is valid already.
pub(super) fn sanitized(name: &str) -> Cow<'_, str> {
    let valid = |c: char| c.is_ascii_alphanumeric() || c == '_';
    if !name.starts_with(|c: char| c.is_ascii_digit())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
    {
        return Cow::Borrowed(name);
    }
    let mut out = String::with_capacity(name.len() + 1);
    if name.starts_with(|c: char| c.is_ascii_digit()) {
        out.push('_');
    }
    out.extend(name.chars().map(|c| if valid(c) { c } else { '_' }));
    Cow::Owned(out)
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
        assert!(matches!(sanitized("took_ms"), Cow::Borrowed("took_ms")));
    }

    #[test]
    fn shared_labels_are_replaced_and_removed_per_line() {
        let stream = Labels::stream([("app", "a"), ("env", "prod"), ("level", "info")]);
        let mut line = stream.clone();
        line.set(Category::Parsed, "level", "error".into());
        line.remove("env");
        line.set(Category::Metadata, "trace_id", "ab".into());
        assert_eq!(
            line.sorted(),
            [("app", "a"), ("level", "error"), ("trace_id", "ab")]
                .map(|(n, v)| (n.to_owned(), v.to_owned()))
        );
        assert_eq!(line.len(), 3);
        assert!(line.is_stream("app") && !line.is_stream("level"));
        line.retain(|l| l.category != Category::Stream);
        assert_eq!(line.get("app"), None);
        assert_eq!(line.len(), 2);
        // The stream's own labels are untouched.
        assert_eq!(stream.get("env"), Some("prod"));
        assert_eq!(stream.get("level"), Some("info"));
        let mut same = Labels::default();
        let mut all: Vec<&Label> = line.iter().collect();
        all.reverse();
        for l in all {
            same.set(l.category, &l.name, l.value.clone());
        }
        assert_eq!(same, line);
    }
}
