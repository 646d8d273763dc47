//! Black-box conformance helpers.
