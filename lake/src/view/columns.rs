//! Column builders shared by the views: OTLP attributes as typed maps, ids,
//! timestamps.

use std::sync::{Arc, LazyLock};

use arrow::array::{
    ArrayBuilder, ArrayRef, BinaryBuilder, BooleanBuilder, FixedSizeBinaryBuilder, Float64Builder,
    Int64Builder, ListArray, MapArray, StringBuilder, StructArray, TimestampNanosecondBuilder,
};
use arrow::buffer::OffsetBuffer;
use arrow::datatypes::{DataType, Field, FieldRef, Fields, TimeUnit};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};

/// Timestamps: nanoseconds since the Unix epoch, UTC.
pub fn timestamp_type() -> DataType {
    DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into()))
}

/// The fields of an attribute value: exactly one is set (none for an empty value).
/// Arrays and maps are in `json`, bytes in `bytes`.
pub static VALUE_FIELDS: LazyLock<Fields> = LazyLock::new(|| {
    Fields::from(vec![
        Field::new("str", DataType::Utf8, true),
        Field::new("int", DataType::Int64, true),
        Field::new("double", DataType::Float64, true),
        Field::new("bool", DataType::Boolean, true),
        Field::new("bytes", DataType::Binary, true),
        Field::new("json", DataType::Utf8, true),
    ])
});

static ENTRIES_FIELD: LazyLock<FieldRef> = LazyLock::new(|| {
    Arc::new(Field::new(
        "entries",
        DataType::Struct(Fields::from(vec![
            Field::new("key", DataType::Utf8, false),
            Field::new("value", DataType::Struct(VALUE_FIELDS.clone()), true),
        ])),
        false,
    ))
});

/// The type of an attributes column: a map from key to typed value.
pub fn attributes_type() -> DataType {
    DataType::Map(Arc::clone(&ENTRIES_FIELD), false)
}

/// A column of attribute lists.
#[derive(Debug)]
pub(crate) struct Attributes {
    offsets: Vec<i32>,
    keys: StringBuilder,
    values: Values,
}

impl Default for Attributes {
    fn default() -> Self {
        Attributes {
            offsets: vec![0],
            keys: StringBuilder::new(),
            values: Values::default(),
        }
    }
}

impl Attributes {
    pub(crate) fn append(&mut self, attributes: &[KeyValue]) {
        for kv in attributes {
            self.keys.append_value(&kv.key);
            self.values.append(kv.value.as_ref());
        }
        self.offsets.push(self.keys.len() as i32);
    }

    pub(crate) fn finish(&mut self) -> ArrayRef {
        let DataType::Struct(entry_fields) = ENTRIES_FIELD.data_type() else {
            unreachable!("entries are a struct")
        };
        let entries = StructArray::new(
            entry_fields.clone(),
            vec![Arc::new(self.keys.finish()), self.values.finish()],
            None,
        );
        let offsets = OffsetBuffer::new(std::mem::replace(&mut self.offsets, vec![0]).into());
        Arc::new(MapArray::new(
            Arc::clone(&ENTRIES_FIELD),
            offsets,
            entries,
            None,
            false,
        ))
    }
}

/// Typed attribute values, one child column per OTLP value type.
#[derive(Debug, Default)]
struct Values {
    str: StringBuilder,
    int: Int64Builder,
    double: Float64Builder,
    bool: BooleanBuilder,
    bytes: BinaryBuilder,
    json: StringBuilder,
}

impl Values {
    fn append(&mut self, value: Option<&AnyValue>) {
        use any_value::Value;
        let value = value.and_then(|v| v.value.as_ref());
        match value {
            Some(Value::StringValue(s)) => self.str.append_value(s),
            _ => self.str.append_null(),
        }
        match value {
            Some(Value::IntValue(i)) => self.int.append_value(*i),
            _ => self.int.append_null(),
        }
        match value {
            Some(Value::DoubleValue(d)) => self.double.append_value(*d),
            _ => self.double.append_null(),
        }
        match value {
            Some(Value::BoolValue(b)) => self.bool.append_value(*b),
            _ => self.bool.append_null(),
        }
        match value {
            Some(Value::BytesValue(b)) => self.bytes.append_value(b),
            _ => self.bytes.append_null(),
        }
        match value {
            Some(Value::ArrayValue(_) | Value::KvlistValue(_)) => {
                self.json.append_value(any_json(value).to_string());
            }
            _ => self.json.append_null(),
        }
    }

    fn finish(&mut self) -> ArrayRef {
        Arc::new(StructArray::new(
            VALUE_FIELDS.clone(),
            vec![
                Arc::new(self.str.finish()),
                Arc::new(self.int.finish()),
                Arc::new(self.double.finish()),
                Arc::new(self.bool.finish()),
                Arc::new(self.bytes.finish()),
                Arc::new(self.json.finish()),
            ],
            None,
        ))
    }
}

/// An OTLP value as JSON: strings, numbers and booleans as themselves, bytes as
/// lowercase hex, arrays as arrays and key-value lists as objects.
pub(crate) fn any_json(value: Option<&any_value::Value>) -> serde_json::Value {
    use any_value::Value;
    use serde_json::Value as Json;
    match value {
        None => Json::Null,
        Some(Value::StringValue(s)) => Json::String(s.clone()),
        Some(Value::BoolValue(b)) => Json::Bool(*b),
        Some(Value::IntValue(i)) => Json::from(*i),
        Some(Value::DoubleValue(d)) => serde_json::Number::from_f64(*d)
            .map(Json::Number)
            .unwrap_or_else(|| Json::String(d.to_string())),
        Some(Value::BytesValue(b)) => Json::String(hex(b)),
        Some(Value::ArrayValue(a)) => Json::Array(
            a.values
                .iter()
                .map(|v| any_json(v.value.as_ref()))
                .collect(),
        ),
        Some(Value::KvlistValue(kv)) => Json::Object(
            kv.values
                .iter()
                .map(|kv| {
                    let value = kv.value.as_ref().and_then(|v| v.value.as_ref());
                    (kv.key.clone(), any_json(value))
                })
                .collect(),
        ),
        Some(Value::StringValueStrindex(i)) => Json::from(*i),
    }
}

/// A log body or other single value as text: strings as they are, anything
/// else as JSON; `None` when there is no value.
pub(crate) fn any_text(value: Option<&AnyValue>) -> Option<String> {
    match value?.value.as_ref()? {
        any_value::Value::StringValue(s) => Some(s.clone()),
        other => Some(any_json(Some(other)).to_string()),
    }
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// A column of optional fixed-size ids: an empty or all-zero id is null.
#[derive(Debug)]
pub(crate) struct Ids(FixedSizeBinaryBuilder, usize);

impl Ids {
    pub(crate) fn new(len: usize) -> Self {
        Ids(FixedSizeBinaryBuilder::new(len as i32), len)
    }

    pub(crate) fn append(&mut self, id: &[u8]) {
        if id.len() == self.1 && id.iter().any(|&b| b != 0) {
            self.0.append_value(id).expect("length checked");
        } else {
            self.0.append_null();
        }
    }

    pub(crate) fn finish(&mut self) -> ArrayRef {
        Arc::new(self.0.finish())
    }
}

/// A column of timestamps.
#[derive(Debug)]
pub(crate) struct Times(TimestampNanosecondBuilder);

impl Default for Times {
    fn default() -> Self {
        Times(TimestampNanosecondBuilder::new().with_timezone("UTC"))
    }
}

impl Times {
    pub(crate) fn append(&mut self, nanos: u64) {
        self.0.append_value(clamp(nanos));
    }

    /// Zero (OTLP's "unset") as null.
    pub(crate) fn append_optional(&mut self, nanos: u64) {
        if nanos == 0 {
            self.0.append_null();
        } else {
            self.append(nanos);
        }
    }

    pub(crate) fn finish(&mut self) -> ArrayRef {
        Arc::new(self.0.finish())
    }
}

/// OTLP's unsigned nanoseconds as Arrow's signed ones (saturating, as the
/// catalog's time ranges do).
pub(crate) fn clamp(nanos: u64) -> i64 {
    i64::try_from(nanos).unwrap_or(i64::MAX)
}

/// The item field of a list of structs.
pub(crate) fn item_field(fields: &Fields) -> FieldRef {
    Arc::new(Field::new("item", DataType::Struct(fields.clone()), false))
}

/// A list-of-structs column from its offsets (taken, left at `[0]`) and the
/// structs' child columns.
pub(crate) fn struct_list(
    fields: &Fields,
    offsets: &mut Vec<i32>,
    children: Vec<ArrayRef>,
) -> ArrayRef {
    let items = StructArray::new(fields.clone(), children, None);
    let offsets = OffsetBuffer::new(std::mem::replace(offsets, vec![0]).into());
    Arc::new(ListArray::new(
        item_field(fields),
        offsets,
        Arc::new(items),
        None,
    ))
}
