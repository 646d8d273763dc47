//! framelake's native SDK: instrumentation at a few nanoseconds per event,
//! and the native wire format it sends (`docs/native-format.md`).

pub mod format;
