//! The messages of Tempo's API (`tempopb`) that framelake answers with,
//! wire-compatible: a `tempopb.Trace` is OTLP's `TracesData`.

pub use opentelemetry_proto::tonic::trace::v1::TracesData as Trace;

/// `tempopb.TraceByIDResponse`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TraceByIdResponse {
    #[prost(message, optional, tag = "1")]
    pub trace: Option<Trace>,
    #[prost(message, optional, tag = "2")]
    pub metrics: Option<TraceByIdMetrics>,
    /// `tempopb.PartialStatus`: 0 complete, 1 partial.
    #[prost(int32, tag = "3")]
    pub status: i32,
    #[prost(string, tag = "4")]
    pub message: String,
}

/// `tempopb.TraceByIDMetrics`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TraceByIdMetrics {
    #[prost(uint64, tag = "1")]
    pub inspected_bytes: u64,
}
