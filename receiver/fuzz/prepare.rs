//! The targets' shared body: a request body as each signal, prepared as the
//! receiver prepares what it is sent. It must return, never panic, and what
//! it would store must be a request prost reads back.

use bytes::Bytes;
use framelake_lake::ids::TenantId;
use framelake_lake::segment::Compression;
use framelake_receiver::otlp::{self, Encoding, RecordLimits, Signal};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;

pub(crate) fn prepare_every_signal(data: &[u8], encoding: Encoding) {
    let tenant: TenantId = "fuzz".parse().expect("a valid tenant");
    // Limits small enough for the fuzzer to reach them.
    let limits = RecordLimits {
        max_bytes: 4096,
        max_values: 64,
    };
    for signal in [Signal::Logs, Signal::Traces, Signal::Metrics] {
        let body = Bytes::copy_from_slice(data);
        let Ok(prepared) = otlp::prepare(&tenant, signal, encoding, body, Compression::None, limits)
        else {
            continue;
        };
        for block in prepared.batch.iter().flat_map(|b| &b.blocks) {
            let payload = block.block.data.as_ref();
            let decodes = match signal {
                Signal::Logs => ExportLogsServiceRequest::decode(payload).is_ok(),
                Signal::Traces => ExportTraceServiceRequest::decode(payload).is_ok(),
                Signal::Metrics => ExportMetricsServiceRequest::decode(payload).is_ok(),
            };
            assert!(decodes, "a stored {signal:?} block that prost cannot read");
        }
    }
}
