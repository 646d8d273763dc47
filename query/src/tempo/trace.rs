//! A trace read back from `spans` as OTLP: its spans grouped by resource
//! (the process that sent them) and instrumentation scope, with their
//! attributes, events, links and status as they were sent.

use std::collections::BTreeMap;

use arrow::array::{
    Array, ArrayRef, AsArray, FixedSizeBinaryArray, Int32Array, ListArray, MapArray, RecordBatch,
    StructArray, TimestampNanosecondArray, UInt32Array,
};
use arrow::compute::cast;
use arrow::datatypes::DataType;
use opentelemetry_proto::tonic::common::v1::{
    AnyValue, ArrayValue, InstrumentationScope, KeyValue, KeyValueList, any_value,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::span::{Event, Link};
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};

use crate::QueryError;

/// The `spans` columns a trace is made of.
pub(super) const COLUMNS: [&str; 22] = [
    "process_id",
    "resource_attributes",
    "scope_name",
    "scope_version",
    "scope_attributes",
    "trace_id",
    "span_id",
    "parent_span_id",
    "trace_state",
    "flags",
    "name",
    "kind",
    "start_time",
    "end_time",
    "status_code",
    "status_message",
    "attributes",
    "dropped_attributes_count",
    "events",
    "dropped_events_count",
    "links",
    "dropped_links_count",
];

fn column<'a>(batch: &'a RecordBatch, name: &str) -> Result<&'a ArrayRef, QueryError> {
    batch
        .column_by_name(name)
        .ok_or_else(|| QueryError::Internal(format!("spans lack column {name}")))
}

fn typed<'a, T: 'static>(batch: &'a RecordBatch, name: &str) -> Result<&'a T, QueryError> {
    column(batch, name)?
        .as_any()
        .downcast_ref::<T>()
        .ok_or_else(|| QueryError::Internal(format!("spans column {name} has another type")))
}

/// A column of text as `Utf8` (views and large strings are cast).
fn text(array: &ArrayRef) -> Result<ArrayRef, QueryError> {
    match array.data_type() {
        DataType::Utf8 => Ok(std::sync::Arc::clone(array)),
        _ => Ok(cast(array, &DataType::Utf8)?),
    }
}

fn str_at(array: &ArrayRef, i: usize) -> &str {
    if array.is_null(i) {
        ""
    } else {
        array.as_string::<i32>().value(i)
    }
}

fn bytes_at(array: &FixedSizeBinaryArray, i: usize) -> Vec<u8> {
    if array.is_null(i) {
        Vec::new()
    } else {
        array.value(i).to_vec()
    }
}

/// A JSON value (arrays and maps are kept as JSON) as an OTLP value.
fn from_json(value: serde_json::Value) -> Option<any_value::Value> {
    use serde_json::Value as Json;
    Some(match value {
        Json::Null => return None,
        Json::Bool(b) => any_value::Value::BoolValue(b),
        Json::Number(n) => match n.as_i64() {
            Some(i) => any_value::Value::IntValue(i),
            None => any_value::Value::DoubleValue(n.as_f64().unwrap_or(f64::NAN)),
        },
        Json::String(s) => any_value::Value::StringValue(s),
        Json::Array(items) => any_value::Value::ArrayValue(ArrayValue {
            values: items
                .into_iter()
                .map(|v| AnyValue {
                    value: from_json(v),
                })
                .collect(),
        }),
        Json::Object(fields) => any_value::Value::KvlistValue(KeyValueList {
            values: fields
                .into_iter()
                .map(|(key, v)| KeyValue {
                    key,
                    value: Some(AnyValue {
                        value: from_json(v),
                    }),
                    ..Default::default()
                })
                .collect(),
        }),
    })
}

/// The attributes of one row of a map column.
fn attributes(map: &MapArray, row: usize) -> Result<Vec<KeyValue>, QueryError> {
    if map.is_null(row) {
        return Ok(Vec::new());
    }
    let entries = map.value(row);
    let keys = text(entries.column(0))?;
    let values = entries.column(1).as_struct();
    let field = |name: &str| -> Result<ArrayRef, QueryError> {
        values
            .column_by_name(name)
            .cloned()
            .ok_or_else(|| QueryError::Internal(format!("attribute values lack {name}")))
    };
    let (strs, jsons) = (text(&field("str")?)?, text(&field("json")?)?);
    let ints = field("int")?;
    let ints = ints.as_primitive::<arrow::datatypes::Int64Type>();
    let doubles = field("double")?;
    let doubles = doubles.as_primitive::<arrow::datatypes::Float64Type>();
    let bools = field("bool")?;
    let bools = bools.as_boolean();
    let bytes = field("bytes")?;
    let bytes = cast(&bytes, &DataType::Binary)?;
    let bytes = bytes.as_binary::<i32>();
    let mut out = Vec::with_capacity(entries.len());
    for i in 0..entries.len() {
        let value = if values.is_null(i) {
            None
        } else if !strs.is_null(i) {
            Some(any_value::Value::StringValue(str_at(&strs, i).to_owned()))
        } else if !ints.is_null(i) {
            Some(any_value::Value::IntValue(ints.value(i)))
        } else if !doubles.is_null(i) {
            Some(any_value::Value::DoubleValue(doubles.value(i)))
        } else if !bools.is_null(i) {
            Some(any_value::Value::BoolValue(bools.value(i)))
        } else if !bytes.is_null(i) {
            Some(any_value::Value::BytesValue(bytes.value(i).to_vec()))
        } else if !jsons.is_null(i) {
            serde_json::from_str(str_at(&jsons, i))
                .ok()
                .and_then(from_json)
        } else {
            None
        };
        out.push(KeyValue {
            key: str_at(&keys, i).to_owned(),
            value: Some(AnyValue { value }),
            ..Default::default()
        });
    }
    Ok(out)
}

fn events(list: &ListArray, row: usize) -> Result<Vec<Event>, QueryError> {
    if list.is_null(row) {
        return Ok(Vec::new());
    }
    let items = list.value(row);
    let items: &StructArray = items.as_struct();
    let column = |name: &str| {
        items
            .column_by_name(name)
            .cloned()
            .ok_or_else(|| QueryError::Internal(format!("events lack {name}")))
    };
    let times = column("time")?;
    let times = times
        .as_any()
        .downcast_ref::<TimestampNanosecondArray>()
        .ok_or_else(|| QueryError::Internal("event times".into()))?;
    let names = text(&column("name")?)?;
    let maps = column("attributes")?;
    let maps = maps.as_map();
    let dropped = column("dropped_attributes_count")?;
    let dropped = dropped.as_primitive::<arrow::datatypes::UInt32Type>();
    (0..items.len())
        .map(|i| {
            Ok(Event {
                time_unix_nano: times.value(i) as u64,
                name: str_at(&names, i).to_owned(),
                attributes: attributes(maps, i)?,
                dropped_attributes_count: dropped.value(i),
            })
        })
        .collect()
}

fn links(list: &ListArray, row: usize) -> Result<Vec<Link>, QueryError> {
    if list.is_null(row) {
        return Ok(Vec::new());
    }
    let items = list.value(row);
    let items: &StructArray = items.as_struct();
    let column = |name: &str| {
        items
            .column_by_name(name)
            .cloned()
            .ok_or_else(|| QueryError::Internal(format!("links lack {name}")))
    };
    let traces = column("trace_id")?;
    let traces = traces.as_fixed_size_binary();
    let spans = column("span_id")?;
    let spans = spans.as_fixed_size_binary();
    let states = text(&column("trace_state")?)?;
    let maps = column("attributes")?;
    let maps = maps.as_map();
    let dropped = column("dropped_attributes_count")?;
    let dropped = dropped.as_primitive::<arrow::datatypes::UInt32Type>();
    let flags = column("flags")?;
    let flags = flags.as_primitive::<arrow::datatypes::UInt32Type>();
    (0..items.len())
        .map(|i| {
            Ok(Link {
                trace_id: bytes_at(traces, i),
                span_id: bytes_at(spans, i),
                trace_state: str_at(&states, i).to_owned(),
                attributes: attributes(maps, i)?,
                dropped_attributes_count: dropped.value(i),
                flags: flags.value(i),
            })
        })
        .collect()
}

/// The spans of a resource and scope, in the order they are gathered.
#[derive(Default)]
struct Gathered {
    resource: Vec<KeyValue>,
    scopes: BTreeMap<(String, String), (Vec<KeyValue>, Vec<Span>)>,
}

/// Gathers rows of `spans` into a trace's resource spans.
#[derive(Default)]
pub(super) struct TraceBuilder {
    resources: BTreeMap<Vec<u8>, Gathered>,
    spans: usize,
}

impl TraceBuilder {
    pub(super) fn add(&mut self, batch: &RecordBatch) -> Result<(), QueryError> {
        let process: &FixedSizeBinaryArray = typed(batch, "process_id")?;
        let resource_maps: &MapArray = typed(batch, "resource_attributes")?;
        let scope_names = text(column(batch, "scope_name")?)?;
        let scope_versions = text(column(batch, "scope_version")?)?;
        let scope_maps: &MapArray = typed(batch, "scope_attributes")?;
        let trace_ids: &FixedSizeBinaryArray = typed(batch, "trace_id")?;
        let span_ids: &FixedSizeBinaryArray = typed(batch, "span_id")?;
        let parents: &FixedSizeBinaryArray = typed(batch, "parent_span_id")?;
        let states = text(column(batch, "trace_state")?)?;
        let flags: &UInt32Array = typed(batch, "flags")?;
        let names = text(column(batch, "name")?)?;
        let kinds: &Int32Array = typed(batch, "kind")?;
        let starts: &TimestampNanosecondArray = typed(batch, "start_time")?;
        let ends: &TimestampNanosecondArray = typed(batch, "end_time")?;
        let codes: &Int32Array = typed(batch, "status_code")?;
        let messages = text(column(batch, "status_message")?)?;
        let span_maps: &MapArray = typed(batch, "attributes")?;
        let dropped_attributes: &UInt32Array = typed(batch, "dropped_attributes_count")?;
        let event_lists: &ListArray = typed(batch, "events")?;
        let dropped_events: &UInt32Array = typed(batch, "dropped_events_count")?;
        let link_lists: &ListArray = typed(batch, "links")?;
        let dropped_links: &UInt32Array = typed(batch, "dropped_links_count")?;
        for i in 0..batch.num_rows() {
            let gathered = self.resources.entry(bytes_at(process, i)).or_default();
            if gathered.scopes.is_empty() {
                gathered.resource = attributes(resource_maps, i)?;
            }
            let scope = (
                str_at(&scope_names, i).to_owned(),
                str_at(&scope_versions, i).to_owned(),
            );
            let scope = match gathered.scopes.entry(scope) {
                std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
                std::collections::btree_map::Entry::Vacant(e) => {
                    e.insert((attributes(scope_maps, i)?, Vec::new()))
                }
            };
            scope.1.push(Span {
                trace_id: bytes_at(trace_ids, i),
                span_id: bytes_at(span_ids, i),
                trace_state: str_at(&states, i).to_owned(),
                parent_span_id: bytes_at(parents, i),
                flags: flags.value(i),
                name: str_at(&names, i).to_owned(),
                kind: kinds.value(i),
                start_time_unix_nano: starts.value(i) as u64,
                end_time_unix_nano: ends.value(i) as u64,
                attributes: attributes(span_maps, i)?,
                dropped_attributes_count: dropped_attributes.value(i),
                events: events(event_lists, i)?,
                dropped_events_count: dropped_events.value(i),
                links: links(link_lists, i)?,
                dropped_links_count: dropped_links.value(i),
                status: Some(Status {
                    message: str_at(&messages, i).to_owned(),
                    code: codes.value(i),
                }),
            });
            self.spans += 1;
        }
        Ok(())
    }

    /// The trace, or `None` when no span was found.
    pub(super) fn finish(self) -> Option<Vec<ResourceSpans>> {
        if self.spans == 0 {
            return None;
        }
        Some(
            self.resources
                .into_values()
                .map(|gathered| ResourceSpans {
                    resource: Some(Resource {
                        attributes: gathered.resource,
                        dropped_attributes_count: 0,
                        entity_refs: Vec::new(),
                    }),
                    scope_spans: gathered
                        .scopes
                        .into_iter()
                        .map(|((name, version), (attributes, mut spans))| {
                            spans.sort_by_key(|s| s.start_time_unix_nano);
                            ScopeSpans {
                                scope: Some(InstrumentationScope {
                                    name,
                                    version,
                                    attributes,
                                    dropped_attributes_count: 0,
                                }),
                                spans,
                                schema_url: String::new(),
                            }
                        })
                        .collect(),
                    schema_url: String::new(),
                })
                .collect(),
        )
    }
}

/// A trace id as Tempo takes it: hex, any case, left-padded to 16 bytes.
pub fn parse_trace_id(text: &str) -> Result<[u8; 16], String> {
    if let Some((at, c)) = text.char_indices().find(|(_, c)| !c.is_ascii_hexdigit()) {
        return Err(format!(
            "trace IDs can only contain hex characters: invalid character {c:?} at position {}",
            at + 1
        ));
    }
    if text.is_empty() {
        return Err("a trace ID needs hex characters".to_owned());
    }
    let digits = text.trim_start_matches('0');
    if digits.len() > 32 {
        return Err("trace IDs can't be larger than 128 bits".to_owned());
    }
    let value = u128::from_str_radix(if digits.is_empty() { "0" } else { digits }, 16)
        .map_err(|e| e.to_string())?;
    Ok(value.to_be_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trace_ids_are_hex_of_any_case_left_padded() {
        let full = parse_trace_id("0123456789ABCDEF0123456789abcdef").expect("an id");
        assert_eq!(
            full,
            [
                0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef, 0x01, 0x23, 0x45, 0x67, 0x89, 0xab,
                0xcd, 0xef
            ]
        );
        let short = parse_trace_id("89abcdef01234567").expect("an id");
        assert_eq!(&short[..8], &[0; 8]);
        assert_eq!(&short[8..], &full[4..12]);
        assert_eq!(parse_trace_id("abc").expect("an id")[14..], [0x0a, 0xbc]);
        assert_eq!(
            parse_trace_id(&format!("0000{}", "f".repeat(32))).expect("an id"),
            [0xff; 16]
        );
        assert!(
            parse_trace_id("xyz")
                .expect_err("not hex")
                .contains("position 1")
        );
        assert!(
            parse_trace_id(&"1".repeat(33))
                .expect_err("too long")
                .contains("128 bits")
        );
        assert!(parse_trace_id("").is_err());
    }

    #[test]
    fn json_attribute_values_become_otlp_values() {
        let value = serde_json::json!({"a": [1, 2.5, "x", true, null], "b": {"c": "d"}});
        let Some(any_value::Value::KvlistValue(list)) = from_json(value) else {
            panic!("a key-value list")
        };
        assert_eq!(list.values[0].key, "a");
        let Some(any_value::Value::ArrayValue(items)) =
            list.values[0].value.as_ref().and_then(|v| v.value.clone())
        else {
            panic!("an array")
        };
        let kinds: Vec<_> = items.values.iter().map(|v| v.value.clone()).collect();
        assert_eq!(
            kinds,
            vec![
                Some(any_value::Value::IntValue(1)),
                Some(any_value::Value::DoubleValue(2.5)),
                Some(any_value::Value::StringValue("x".into())),
                Some(any_value::Value::BoolValue(true)),
                None,
            ]
        );
    }
}
