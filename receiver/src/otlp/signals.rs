//! Per-signal validation and indexing of OTLP requests.
//!
//! Each signal drops the items OTLP calls invalid (bad trace or span ids,
//! unnamed metrics) and reports them as rejected; everything else is kept as sent.

use framelake_lake::ids::BlockKind;
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsPartialSuccess, ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsPartialSuccess, ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::logs::v1::ResourceLogs;
use opentelemetry_proto::tonic::metrics::v1::{ResourceMetrics, metric};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::ResourceSpans;

use super::scan::{self, Shape};

/// What indexing learnt of one resource's items.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Summary {
    /// Items kept (spans, log records or metric data points).
    pub(crate) events: u64,
    /// Items dropped as invalid.
    pub(crate) rejected: u64,
    /// The items' time range (for a log record with no time, its arrival).
    pub(crate) min_time: i64,
    pub(crate) max_time: i64,
    /// Whether a time was seen (an item may give several).
    timed: bool,
    /// The earliest time the items carry themselves; arrival times are not
    /// content, so a retry must not change what identifies its blocks.
    sent_min_time: Option<i64>,
}

impl Summary {
    /// A time an item carries.
    pub(crate) fn time(&mut self, t: u64) {
        let t = i64::try_from(t).unwrap_or(i64::MAX);
        self.sent_min_time = Some(self.sent_min_time.map_or(t, |m| m.min(t)));
        self.range(t);
    }

    /// The arrival time of an item that carries none.
    pub(crate) fn arrived(&mut self, now: u64) {
        self.range(i64::try_from(now).unwrap_or(i64::MAX));
    }

    fn range(&mut self, t: i64) {
        if !self.timed || t < self.min_time {
            self.min_time = t;
        }
        if !self.timed || t > self.max_time {
            self.max_time = t;
        }
        self.timed = true;
    }

    /// The time that orders the items' block id: the earliest they carry,
    /// else the epoch (derived from the content alone either way).
    pub(crate) fn id_time(&self) -> i64 {
        self.sent_min_time.unwrap_or(0)
    }

    /// Counts a log record, with its time, else its observed time, else its arrival.
    pub(crate) fn log_record(&mut self, time: u64, observed: u64, now: u64) {
        match (time, observed) {
            (0, 0) => self.arrived(now),
            (0, observed) => self.time(observed),
            (time, _) => self.time(time),
        }
        self.events += 1;
    }
}

/// One OTLP export request type.
pub(crate) trait OtlpRequest:
    prost::Message + Default + serde::de::DeserializeOwned + Send + 'static
{
    type ResourceItems: prost::Message + Send;
    type Response: prost::Message + serde::Serialize;
    const KIND: BlockKind;
    /// How the protobuf fast path walks the request.
    const SHAPE: &'static Shape;
    /// The word OTLP uses in partial success (`rejected_spans`, …), for messages.
    const ITEMS: &'static str;
    fn into_resources(self) -> Vec<Self::ResourceItems>;
    fn from_resource(r: Self::ResourceItems) -> Self;
    fn resource(r: &Self::ResourceItems) -> Option<&Resource>;
    /// Drops invalid items in place and summarizes the rest; `now` stands in for
    /// missing log timestamps.
    fn index(r: &mut Self::ResourceItems, now: u64) -> Summary;
    fn response(rejected: u64, message: String) -> Self::Response;
}

pub(crate) fn valid_id(id: &[u8], len: usize, optional: bool) -> bool {
    (optional && id.is_empty()) || (id.len() == len && id.iter().any(|&b| b != 0))
}

/// Whether a time (Unix nanoseconds) is one the lake stores: up to 2262-04-11,
/// the last signed 64-bit nanosecond.
pub(crate) fn valid_time(t: u64) -> bool {
    i64::try_from(t).is_ok()
}

/// Whether a span's times are ones the lake stores, its end not before its start.
pub(crate) fn valid_span_times(start: u64, end: u64) -> bool {
    valid_time(end) && start <= end
}

impl OtlpRequest for ExportTraceServiceRequest {
    type ResourceItems = ResourceSpans;
    type Response = ExportTraceServiceResponse;
    const KIND: BlockKind = BlockKind::OtlpSpans;
    const SHAPE: &'static Shape = &scan::TRACES;
    const ITEMS: &'static str = "spans";

    fn into_resources(self) -> Vec<ResourceSpans> {
        self.resource_spans
    }
    fn from_resource(r: ResourceSpans) -> Self {
        ExportTraceServiceRequest {
            resource_spans: vec![r],
        }
    }
    fn resource(r: &ResourceSpans) -> Option<&Resource> {
        r.resource.as_ref()
    }
    fn index(r: &mut ResourceSpans, _now: u64) -> Summary {
        let mut s = Summary::default();
        for scope in &mut r.scope_spans {
            let before = scope.spans.len();
            scope.spans.retain(|span| {
                valid_id(&span.trace_id, 16, false)
                    && valid_id(&span.span_id, 8, false)
                    && valid_id(&span.parent_span_id, 8, true)
                    && valid_span_times(span.start_time_unix_nano, span.end_time_unix_nano)
            });
            s.rejected += (before - scope.spans.len()) as u64;
            for span in &scope.spans {
                s.time(span.start_time_unix_nano);
                s.time(span.end_time_unix_nano);
                s.events += 1;
            }
        }
        s
    }
    fn response(rejected: u64, error_message: String) -> ExportTraceServiceResponse {
        ExportTraceServiceResponse {
            partial_success: (rejected > 0).then_some(ExportTracePartialSuccess {
                rejected_spans: rejected as i64,
                error_message,
            }),
        }
    }
}

impl OtlpRequest for ExportLogsServiceRequest {
    type ResourceItems = ResourceLogs;
    type Response = ExportLogsServiceResponse;
    const KIND: BlockKind = BlockKind::OtlpLogs;
    const SHAPE: &'static Shape = &scan::LOGS;
    const ITEMS: &'static str = "log records";

    fn into_resources(self) -> Vec<ResourceLogs> {
        self.resource_logs
    }
    fn from_resource(r: ResourceLogs) -> Self {
        ExportLogsServiceRequest {
            resource_logs: vec![r],
        }
    }
    fn resource(r: &ResourceLogs) -> Option<&Resource> {
        r.resource.as_ref()
    }
    fn index(r: &mut ResourceLogs, now: u64) -> Summary {
        let mut s = Summary::default();
        for scope in &mut r.scope_logs {
            let before = scope.log_records.len();
            scope.log_records.retain(|log| {
                valid_id(&log.trace_id, 16, true)
                    && valid_id(&log.span_id, 8, true)
                    && valid_time(log.time_unix_nano)
                    && valid_time(log.observed_time_unix_nano)
            });
            s.rejected += (before - scope.log_records.len()) as u64;
            for log in &scope.log_records {
                s.log_record(log.time_unix_nano, log.observed_time_unix_nano, now);
            }
        }
        s
    }
    fn response(rejected: u64, error_message: String) -> ExportLogsServiceResponse {
        ExportLogsServiceResponse {
            partial_success: (rejected > 0).then_some(ExportLogsPartialSuccess {
                rejected_log_records: rejected as i64,
                error_message,
            }),
        }
    }
}

impl OtlpRequest for ExportMetricsServiceRequest {
    type ResourceItems = ResourceMetrics;
    type Response = ExportMetricsServiceResponse;
    const KIND: BlockKind = BlockKind::OtlpMetrics;
    const SHAPE: &'static Shape = &scan::METRICS;
    const ITEMS: &'static str = "data points";

    fn into_resources(self) -> Vec<ResourceMetrics> {
        self.resource_metrics
    }
    fn from_resource(r: ResourceMetrics) -> Self {
        ExportMetricsServiceRequest {
            resource_metrics: vec![r],
        }
    }
    fn resource(r: &ResourceMetrics) -> Option<&Resource> {
        r.resource.as_ref()
    }
    fn index(r: &mut ResourceMetrics, _now: u64) -> Summary {
        let mut s = Summary::default();
        for scope in &mut r.scope_metrics {
            scope.metrics.retain(|m| {
                let times = point_times(m.data.as_ref());
                if m.name.is_empty() || !times.iter().all(|&t| valid_time(t)) {
                    s.rejected += times.len() as u64;
                    return false;
                }
                for t in times {
                    s.time(t);
                    s.events += 1;
                }
                true
            });
        }
        s
    }
    fn response(rejected: u64, error_message: String) -> ExportMetricsServiceResponse {
        ExportMetricsServiceResponse {
            partial_success: (rejected > 0).then_some(ExportMetricsPartialSuccess {
                rejected_data_points: rejected as i64,
                error_message,
            }),
        }
    }
}

fn point_times(data: Option<&metric::Data>) -> Vec<u64> {
    match data {
        None => Vec::new(),
        Some(metric::Data::Gauge(g)) => g.data_points.iter().map(|p| p.time_unix_nano).collect(),
        Some(metric::Data::Sum(g)) => g.data_points.iter().map(|p| p.time_unix_nano).collect(),
        Some(metric::Data::Histogram(g)) => {
            g.data_points.iter().map(|p| p.time_unix_nano).collect()
        }
        Some(metric::Data::ExponentialHistogram(g)) => {
            g.data_points.iter().map(|p| p.time_unix_nano).collect()
        }
        Some(metric::Data::Summary(g)) => g.data_points.iter().map(|p| p.time_unix_nano).collect(),
    }
}
