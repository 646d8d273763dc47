//! SQL functions over typed attribute maps (`attributes`, `resource_attributes`, …):
//!
//! - `attr(attributes, 'key')`: the value as text (strings as they are,
//!   numbers and booleans printed, bytes as hex, arrays and maps as JSON),
//!   NULL when the key is absent.
//! - `attr_int(attributes, 'key')`: an integer value as BIGINT, else NULL.
//! - `attr_double(attributes, 'key')`: a double or integer value as DOUBLE, else NULL.
//! - `attr_bool(attributes, 'key')`: a boolean value, else NULL.
//! - `attributes_json(attributes)`: the whole map as a JSON object.
//!
//! Map access works too: `attributes['key']` is the typed value, a struct
//! with one field set among `str`, `int`, `double`, `bool`, `bytes`, `json`.

use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, BooleanBuilder, Float64Builder, Int64Builder, MapArray,
    StringBuilder, StructArray,
};
use arrow::datatypes::{DataType, Float64Type, Int64Type};
use datafusion::common::{ScalarValue, exec_err, plan_err};
use datafusion::error::Result;
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use datafusion::prelude::SessionContext;

/// Registers the functions with a session.
pub(crate) fn register(ctx: &SessionContext) {
    for output in [Output::Text, Output::Int, Output::Double, Output::Bool] {
        ctx.register_udf(ScalarUDF::from(Attr::new(output)));
    }
    ctx.register_udf(ScalarUDF::from(AttributesJson::new()));
}

/// What `attr*` returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Output {
    Text,
    Int,
    Double,
    Bool,
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct Attr {
    output: Output,
    signature: Signature,
}

impl Attr {
    fn new(output: Output) -> Self {
        Attr {
            output,
            signature: Signature::any(2, Volatility::Immutable),
        }
    }
}

/// The typed value columns of a map's entries, by field name.
struct Values<'a> {
    values: &'a StructArray,
}

impl Values<'_> {
    fn column(&self, name: &str) -> Option<&ArrayRef> {
        self.values.column_by_name(name)
    }

    fn text(&self, i: usize) -> Option<String> {
        for name in ["str", "json"] {
            if let Some(c) = self.column(name).filter(|c| c.is_valid(i)) {
                return Some(c.as_string::<i32>().value(i).to_owned());
            }
        }
        if let Some(c) = self.column("bytes").filter(|c| c.is_valid(i)) {
            return Some(
                c.as_binary::<i32>()
                    .value(i)
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect(),
            );
        }
        for name in ["int", "double", "bool"] {
            if let Some(c) = self.column(name).filter(|c| c.is_valid(i)) {
                return arrow::util::display::array_value_to_string(c, i).ok();
            }
        }
        None
    }

    fn int(&self, i: usize) -> Option<i64> {
        let c = self.column("int").filter(|c| c.is_valid(i))?;
        Some(c.as_primitive::<Int64Type>().value(i))
    }

    fn double(&self, i: usize) -> Option<f64> {
        if let Some(c) = self.column("double").filter(|c| c.is_valid(i)) {
            return Some(c.as_primitive::<Float64Type>().value(i));
        }
        self.int(i).map(|v| v as f64)
    }

    fn bool(&self, i: usize) -> Option<bool> {
        let c = self.column("bool").filter(|c| c.is_valid(i))?;
        Some(c.as_boolean().value(i))
    }
}

/// The attribute maps of the first argument, checked to be ours.
fn maps(arg: &ColumnarValue, rows: usize) -> Result<(ArrayRef, bool)> {
    let is_scalar = matches!(arg, ColumnarValue::Scalar(_));
    let array = arg.to_array(rows)?;
    let ok = match array.data_type() {
        DataType::Map(entries, _) => match entries.data_type() {
            DataType::Struct(fields) => fields
                .get(1)
                .is_some_and(|f| matches!(f.data_type(), DataType::Struct(_))),
            _ => false,
        },
        DataType::Null => true,
        _ => false,
    };
    if !ok {
        return exec_err!(
            "expected an attributes column (a map of typed values), got {}",
            array.data_type()
        );
    }
    Ok((array, is_scalar))
}

fn check_map(name: &str, t: &DataType) -> Result<()> {
    match t {
        DataType::Map(..) | DataType::Null => Ok(()),
        other => plan_err!("{name}: the first argument must be an attributes column, got {other}"),
    }
}

impl ScalarUDFImpl for Attr {
    fn name(&self) -> &str {
        match self.output {
            Output::Text => "attr",
            Output::Int => "attr_int",
            Output::Double => "attr_double",
            Output::Bool => "attr_bool",
        }
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, args: &[DataType]) -> Result<DataType> {
        check_map(self.name(), &args[0])?;
        if !matches!(
            args[1],
            DataType::Utf8 | DataType::Utf8View | DataType::LargeUtf8
        ) {
            return plan_err!("{}: the key must be a string, got {}", self.name(), args[1]);
        }
        Ok(match self.output {
            Output::Text => DataType::Utf8,
            Output::Int => DataType::Int64,
            Output::Double => DataType::Float64,
            Output::Bool => DataType::Boolean,
        })
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let key = match &args.args[1] {
            ColumnarValue::Scalar(
                ScalarValue::Utf8(k) | ScalarValue::Utf8View(k) | ScalarValue::LargeUtf8(k),
            ) => k.clone(),
            _ => return exec_err!("{}: the key must be a constant string", self.name()),
        };
        let (array, is_scalar) = maps(&args.args[0], args.number_rows)?;
        let rows = array.len();
        let map = array.as_any().downcast_ref::<MapArray>();
        // For each row, the index of the key's entry in the map's entries.
        let found: Vec<Option<usize>> = (0..rows)
            .map(|row| {
                let (map, key) = (map?, key.as_deref()?);
                if map.is_null(row) {
                    return None;
                }
                let keys = map.keys().as_string::<i32>();
                let offsets = map.value_offsets();
                (offsets[row] as usize..offsets[row + 1] as usize).find(|&i| keys.value(i) == key)
            })
            .collect();
        let values = map.map(|m| Values {
            values: m.values().as_struct(),
        });
        let result: ArrayRef = match self.output {
            Output::Text => {
                let mut b = StringBuilder::new();
                for i in &found {
                    b.append_option(i.zip(values.as_ref()).and_then(|(i, v)| v.text(i)));
                }
                Arc::new(b.finish())
            }
            Output::Int => {
                let mut b = Int64Builder::new();
                for i in &found {
                    b.append_option(i.zip(values.as_ref()).and_then(|(i, v)| v.int(i)));
                }
                Arc::new(b.finish())
            }
            Output::Double => {
                let mut b = Float64Builder::new();
                for i in &found {
                    b.append_option(i.zip(values.as_ref()).and_then(|(i, v)| v.double(i)));
                }
                Arc::new(b.finish())
            }
            Output::Bool => {
                let mut b = BooleanBuilder::new();
                for i in &found {
                    b.append_option(i.zip(values.as_ref()).and_then(|(i, v)| v.bool(i)));
                }
                Arc::new(b.finish())
            }
        };
        if is_scalar {
            Ok(ColumnarValue::Scalar(ScalarValue::try_from_array(
                &result, 0,
            )?))
        } else {
            Ok(ColumnarValue::Array(result))
        }
    }
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct AttributesJson {
    signature: Signature,
}

impl AttributesJson {
    fn new() -> Self {
        AttributesJson {
            signature: Signature::any(1, Volatility::Immutable),
        }
    }
}

/// One typed value as JSON.
fn value_json(v: &Values<'_>, i: usize) -> serde_json::Value {
    use serde_json::Value as Json;
    if let Some(c) = v.column("str").filter(|c| c.is_valid(i)) {
        return Json::String(c.as_string::<i32>().value(i).to_owned());
    }
    if let Some(c) = v.column("json").filter(|c| c.is_valid(i)) {
        let text = c.as_string::<i32>().value(i);
        return serde_json::from_str(text).unwrap_or_else(|_| Json::String(text.to_owned()));
    }
    if let Some(n) = v.int(i) {
        return Json::from(n);
    }
    if let Some(d) = v.double(i) {
        return serde_json::Number::from_f64(d)
            .map_or_else(|| Json::String(d.to_string()), Json::Number);
    }
    if let Some(b) = v.bool(i) {
        return Json::Bool(b);
    }
    v.text(i).map_or(Json::Null, Json::String)
}

/// One row of an attributes map as a JSON object of plain values.
pub(crate) fn map_json(map: &MapArray, row: usize) -> serde_json::Value {
    let keys = map.keys().as_string::<i32>();
    let values = Values {
        values: map.values().as_struct(),
    };
    let offsets = map.value_offsets();
    let object: serde_json::Map<String, serde_json::Value> = (offsets[row] as usize
        ..offsets[row + 1] as usize)
        .map(|i| (keys.value(i).to_owned(), value_json(&values, i)))
        .collect();
    serde_json::Value::Object(object)
}

/// The entries of one row of an attributes map whose key `keep` takes, as
/// (key, value as text) pairs, values as `attr` reads them.
pub(crate) fn map_texts_where(
    map: &MapArray,
    row: usize,
    keep: impl Fn(&str) -> bool,
) -> Vec<(String, String)> {
    let keys = map.keys().as_string::<i32>();
    let values = Values {
        values: map.values().as_struct(),
    };
    let offsets = map.value_offsets();
    (offsets[row] as usize..offsets[row + 1] as usize)
        .filter(|i| keep(keys.value(*i)))
        .filter_map(|i| Some((keys.value(i).to_owned(), values.text(i)?)))
        .collect()
}

/// Whether a type is that of an attributes map (key -> typed value struct).
pub(crate) fn is_attributes(t: &DataType) -> bool {
    match t {
        DataType::Map(entries, _) => match entries.data_type() {
            DataType::Struct(fields) => {
                fields.len() == 2
                    && fields[0].data_type() == &DataType::Utf8
                    && matches!(fields[1].data_type(), DataType::Struct(v) if v.find("str").is_some() && v.find("json").is_some())
            }
            _ => false,
        },
        _ => false,
    }
}

impl ScalarUDFImpl for AttributesJson {
    fn name(&self) -> &str {
        "attributes_json"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, args: &[DataType]) -> Result<DataType> {
        check_map(self.name(), &args[0])?;
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let (array, is_scalar) = maps(&args.args[0], args.number_rows)?;
        let mut b = StringBuilder::new();
        match array.as_any().downcast_ref::<MapArray>() {
            None => (0..array.len()).for_each(|_| b.append_null()),
            Some(map) => {
                for row in 0..map.len() {
                    if map.is_null(row) {
                        b.append_null();
                    } else {
                        b.append_value(map_json(map, row).to_string());
                    }
                }
            }
        }
        let result: ArrayRef = Arc::new(b.finish());
        if is_scalar {
            Ok(ColumnarValue::Scalar(ScalarValue::try_from_array(
                &result, 0,
            )?))
        } else {
            Ok(ColumnarValue::Array(result))
        }
    }
}
