//! Native blocks (`docs/native-format.md`) as rows of the event views: a
//! native process is a resource (its attributes: what it says of itself), a
//! descriptor's target is the scope, ticks become times by the process's clock.

use framelake_native_format::{self as format, Clock, Payload};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value::Value};
use opentelemetry_proto::tonic::resource::v1::Resource;

use super::{BlockSource, NativeProcess};

/// A native block opened: its process, clock and checked payload.
pub(super) struct Opened<'a> {
    pub(super) process: &'a NativeProcess,
    pub(super) clock: Clock,
    pub(super) resource: Resource,
    pub(super) payload: Vec<u8>,
}

/// Inflates and checks a stored native block (a block message as sent).
pub(super) fn open<'a>(payload: &[u8], source: &'a BlockSource) -> Result<Opened<'a>, String> {
    let process = source
        .native
        .as_deref()
        .ok_or("a native block is decoded with its process")?;
    let (header, payload) = format::decode_block(payload).map_err(|e| e.to_string())?;
    Ok(Opened {
        process,
        clock: Clock::of(
            &process.process,
            header.calibration_ticks,
            header.calibration_time,
        ),
        resource: Resource {
            attributes: attributes(&process.process),
            ..Default::default()
        },
        payload,
    })
}

impl Opened<'_> {
    /// The payload, checked whole (so appending its rows cannot fail midway).
    pub(super) fn parse(&self) -> Result<Payload<'_>, String> {
        Payload::parse(&self.payload).map_err(|e| e.to_string())
    }
}

pub(super) fn kv(key: &str, value: Value) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue { value: Some(value) }),
        ..Default::default()
    }
}

/// What a native process says of itself, as resource attributes.
pub(crate) fn attributes(p: &format::Process) -> Vec<KeyValue> {
    let text = |key: &str, value: &str| kv(key, Value::StringValue(value.to_owned()));
    let mut attributes = vec![
        text("process.executable.path", &p.exe),
        text("process.owner", &p.username),
        text("host.name", &p.computer),
        text("os.type", &p.distro),
        text("host.cpu.model.name", &p.cpu_brand),
        kv(
            "tick_frequency",
            Value::IntValue(i64::try_from(p.tick_frequency).unwrap_or(i64::MAX)),
        ),
    ];
    attributes.extend(p.properties.iter().map(|(k, v)| text(k, v)));
    attributes
}

/// OTLP's severity number and text of a native log level.
pub(super) fn severity(level: u8) -> (i32, &'static str) {
    match level {
        1 => (17, "ERROR"),
        2 => (13, "WARN"),
        3 => (9, "INFO"),
        4 => (5, "DEBUG"),
        5 => (1, "TRACE"),
        _ => (0, ""),
    }
}
