//! The fuzz target's body, shared with the stable test that runs it over
//! the golden vectors (`tests/main.rs`): untrusted bytes decoded every way
//! the server decodes them. It must return, never panic.

use framelake_native_format::{self as format, FormatError, Payload, Process, Stream};

/// What each decoder made of the bytes.
pub(crate) struct Outcomes {
    /// Read as a block message: its events (as text), or why not.
    pub(crate) block: Result<Vec<String>, FormatError>,
    /// Read as a bare block payload: its events, or why not.
    pub(crate) payload: Result<Vec<String>, FormatError>,
    pub(crate) process: Result<Process, FormatError>,
    pub(crate) stream: Result<Stream, FormatError>,
}

fn events(payload: &[u8]) -> Result<Vec<String>, FormatError> {
    let parsed = Payload::parse(payload)?;
    parsed
        .events()
        .map(|e| e.map(|e| format!("{e:?}")))
        .collect()
}

pub(crate) fn decode(data: &[u8]) -> Outcomes {
    Outcomes {
        block: format::decode_block(data).and_then(|(_, payload)| events(&payload)),
        payload: events(data),
        process: Process::decode(data),
        stream: Stream::decode(data),
    }
}
