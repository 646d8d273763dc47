//! `thread_spans`: one row per CPU span of a native thread stream, decoded
//! from its blocks on demand (they are the bulk of native data).
//!
//! A span is the row of the block holding its end; the spans open at a
//! block's start travel in the block (`docs/native-format.md`), so every
//! block gives its rows alone, with their depth and parent.
//!
//! A span's `id` is a function of its begin ticks and depth: unique within
//! its thread (two spans of one thread can share both only if one begins at
//! the very tick its sibling begins, which a tick counter does not allow),
//! and the same in every block that mentions it, so `parent` is the parent's
//! `id` whichever block reported it.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock};

use arrow::array::{
    ArrayBuilder, ArrayRef, DictionaryArray, FixedSizeBinaryBuilder, Int64Builder, StringBuilder,
    UInt32Builder, UInt64Builder,
};
use arrow::datatypes::{DataType, Field, Int32Type, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use framelake_native_format::Event;

use super::columns::Times;
use super::{BlockSource, batch, native, timestamp_type};

/// Text columns with few distinct values: dictionary-encoded in memory
/// (one key per row) as in Parquet.
fn dictionary() -> DataType {
    DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8))
}

pub(super) static SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    Arc::new(Schema::new(vec![
        Field::new("process_id", DataType::FixedSizeBinary(16), false),
        Field::new("stream_id", DataType::FixedSizeBinary(16), false),
        Field::new("service_name", dictionary(), false),
        Field::new("thread_name", dictionary(), false),
        Field::new("id", DataType::UInt64, false),
        // The enclosing span's id; null at depth 0.
        Field::new("parent", DataType::UInt64, true),
        Field::new("depth", DataType::UInt32, false),
        Field::new("begin", timestamp_type(), false),
        Field::new("end", timestamp_type(), false),
        Field::new("duration_ns", DataType::Int64, false),
        Field::new("name", dictionary(), false),
        Field::new("target", dictionary(), false),
        Field::new("file", dictionary(), false),
        Field::new("line", DataType::UInt32, false),
    ]))
});

/// A span's id: its begin ticks and depth, mixed (splitmix64's finalizer).
pub fn span_id(begin_ticks: i64, depth: u32) -> u64 {
    let mut z = (begin_ticks as u64) ^ u64::from(depth).rotate_right(8);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A dictionary column being built: each distinct text once, a key per row.
#[derive(Debug, Default)]
struct Dictionary {
    keys: Vec<i32>,
    values: StringBuilder,
    index: HashMap<String, i32>,
}

impl Dictionary {
    fn key(&mut self, text: &str) -> i32 {
        if let Some(&key) = self.index.get(text) {
            return key;
        }
        let key = self.index.len() as i32;
        self.values.append_value(text);
        self.index.insert(text.to_owned(), key);
        key
    }

    fn finish(&mut self) -> ArrayRef {
        let keys = std::mem::take(&mut self.keys).into();
        let values = Arc::new(self.values.finish());
        self.index.clear();
        Arc::new(DictionaryArray::<Int32Type>::try_new(keys, values).expect("keys index values"))
    }
}

/// A descriptor's keys in the dictionaries.
#[derive(Clone, Copy)]
struct Keys {
    name: i32,
    target: i32,
    file: i32,
    line: u32,
}

/// Builders of `thread_spans` rows.
#[derive(Debug)]
pub(super) struct ThreadSpanRows {
    process_id: FixedSizeBinaryBuilder,
    stream_id: FixedSizeBinaryBuilder,
    service_name: Dictionary,
    thread_name: Dictionary,
    id: UInt64Builder,
    parent: UInt64Builder,
    depth: UInt32Builder,
    begin: Times,
    end: Times,
    duration: Int64Builder,
    name: Dictionary,
    target: Dictionary,
    file: Dictionary,
    line: UInt32Builder,
}

impl Default for ThreadSpanRows {
    fn default() -> Self {
        ThreadSpanRows {
            process_id: FixedSizeBinaryBuilder::new(16),
            stream_id: FixedSizeBinaryBuilder::new(16),
            service_name: Dictionary::default(),
            thread_name: Dictionary::default(),
            id: UInt64Builder::new(),
            parent: UInt64Builder::new(),
            depth: UInt32Builder::new(),
            begin: Times::default(),
            end: Times::default(),
            duration: Int64Builder::new(),
            name: Dictionary::default(),
            target: Dictionary::default(),
            file: Dictionary::default(),
            line: UInt32Builder::new(),
        }
    }
}

impl ThreadSpanRows {
    /// Appends the spans a thread block holds the end of.
    pub(super) fn append_native(
        &mut self,
        payload: &[u8],
        source: &BlockSource,
    ) -> Result<(), String> {
        let opened = native::open(payload, source)?;
        let parsed = opened.parse()?;
        // Each descriptor's keys, in the order of `parsed.descriptors`.
        let keys: Vec<Keys> = parsed
            .descriptors
            .values()
            .map(|d| Keys {
                name: self.name.key(&d.name),
                target: self.target.key(&d.target),
                file: self.file.key(&d.file),
                line: d.line,
            })
            .collect();
        let position = |id: u64| parsed.descriptors.position(id).unwrap_or_default();
        let service = self.service_name.key(&opened.process.service_name);
        let thread = self
            .thread_name
            .key(source.thread_name.as_deref().unwrap_or_default());
        let (process_id, stream_id) = (source.process_id.as_bytes(), source.stream_id.as_bytes());
        let clock = &opened.clock;
        // (begin ticks, id, descriptor position) of the open spans,
        // outermost first.
        let mut open: Vec<(i64, u64, usize)> = parsed
            .open_spans
            .iter()
            .enumerate()
            .map(|(depth, &(d, ticks))| (ticks, span_id(ticks, depth as u32), position(d)))
            .collect();
        for event in parsed.events() {
            match event {
                Ok(Event::SpanBegin { descriptor, ticks }) => {
                    let depth = open.len() as u32;
                    open.push((ticks, span_id(ticks, depth), position(descriptor)));
                }
                Ok(Event::SpanEnd { ticks, .. }) => {
                    // The payload was checked whole: ends match begins.
                    let Some((begin_ticks, id, d)) = open.pop() else {
                        continue;
                    };
                    let k = keys[d];
                    let (begin, end) = (clock.time(begin_ticks), clock.time(ticks));
                    self.process_id.append_value(process_id).expect("16 bytes");
                    self.stream_id.append_value(stream_id).expect("16 bytes");
                    self.service_name.keys.push(service);
                    self.thread_name.keys.push(thread);
                    self.id.append_value(id);
                    self.parent.append_option(open.last().map(|&(_, id, _)| id));
                    self.depth.append_value(open.len() as u32);
                    self.begin.append(begin.max(0) as u64);
                    self.end.append(end.max(0) as u64);
                    self.duration.append_value(end - begin);
                    self.name.keys.push(k.name);
                    self.target.keys.push(k.target);
                    self.file.keys.push(k.file);
                    self.line.append_value(k.line);
                }
                Ok(_) => {}
                Err(e) => return Err(e.to_string()),
            }
        }
        Ok(())
    }

    pub(super) fn len(&self) -> usize {
        self.id.len()
    }

    pub(super) fn finish(&mut self) -> RecordBatch {
        let columns: Vec<ArrayRef> = vec![
            Arc::new(self.process_id.finish()),
            Arc::new(self.stream_id.finish()),
            self.service_name.finish(),
            self.thread_name.finish(),
            Arc::new(self.id.finish()),
            Arc::new(self.parent.finish()),
            Arc::new(self.depth.finish()),
            self.begin.finish(),
            self.end.finish(),
            Arc::new(self.duration.finish()),
            self.name.finish(),
            self.target.finish(),
            self.file.finish(),
            Arc::new(self.line.finish()),
        ];
        batch(&SCHEMA, columns)
    }
}
