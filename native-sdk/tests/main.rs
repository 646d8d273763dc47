//! The SDK's integration tests: the wire format against its golden vectors,
//! and events recorded by threads as the collector encodes them.

mod format;
mod record;
