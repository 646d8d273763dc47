//! The OTLP messages as the wire validator sees them: every field of every
//! message an export request can hold, by number and kind. A test checks these
//! tables against the descriptors `opentelemetry-proto` was generated from.
//!
//! Fields the scanner reads itself (the path from a request down to spans, log
//! records and data points) are [`Kind::Visit`]; everything below them is
//! validated as a whole.

use super::wire::Kind::{
    self, Bytes, I32, I64, Msg, RepeatedI64, RepeatedVarint, Str, Varint, Visit,
};
use super::wire::Schema;

const fn schema(name: &'static str, fields: &[(u32, Kind)]) -> Schema {
    Schema::new(name, fields)
}

// common.v1 and resource.v1
pub(crate) static ANY_VALUE: Schema = schema(
    "opentelemetry.proto.common.v1.AnyValue",
    &[
        (1, Str),
        (2, Varint),
        (3, Varint),
        (4, I64),
        (5, Msg(&ARRAY_VALUE)),
        (6, Msg(&KEY_VALUE_LIST)),
        (7, Bytes),
        (8, Varint),
    ],
);
static ARRAY_VALUE: Schema = schema(
    "opentelemetry.proto.common.v1.ArrayValue",
    &[(1, Msg(&ANY_VALUE))],
);
static KEY_VALUE_LIST: Schema = schema(
    "opentelemetry.proto.common.v1.KeyValueList",
    &[(1, Msg(&KEY_VALUE))],
);
static KEY_VALUE: Schema = schema(
    "opentelemetry.proto.common.v1.KeyValue",
    &[(1, Str), (2, Msg(&ANY_VALUE)), (3, Varint)],
);
pub(crate) static SCOPE: Schema = schema(
    "opentelemetry.proto.common.v1.InstrumentationScope",
    &[(1, Str), (2, Str), (3, Msg(&KEY_VALUE)), (4, Varint)],
);
static ENTITY_REF: Schema = schema(
    "opentelemetry.proto.common.v1.EntityRef",
    &[(1, Str), (2, Str), (3, Str), (4, Str)],
);
pub(crate) static RESOURCE: Schema = schema(
    "opentelemetry.proto.resource.v1.Resource",
    &[(1, Msg(&KEY_VALUE)), (2, Varint), (3, Msg(&ENTITY_REF))],
);

// trace.v1
pub(crate) static TRACES_REQUEST: Schema = schema(
    "opentelemetry.proto.collector.trace.v1.ExportTraceServiceRequest",
    &[(1, Visit(&RESOURCE_SPANS))],
);
pub(crate) static RESOURCE_SPANS: Schema = schema(
    "opentelemetry.proto.trace.v1.ResourceSpans",
    &[(1, Visit(&RESOURCE)), (2, Visit(&SCOPE_SPANS)), (3, Str)],
);
pub(crate) static SCOPE_SPANS: Schema = schema(
    "opentelemetry.proto.trace.v1.ScopeSpans",
    &[(1, Msg(&SCOPE)), (2, Visit(&SPAN)), (3, Str)],
);
pub(crate) static SPAN: Schema = schema(
    "opentelemetry.proto.trace.v1.Span",
    &[
        (1, Bytes),
        (2, Bytes),
        (3, Str),
        (4, Bytes),
        (5, Str),
        (6, Varint),
        (7, I64),
        (8, I64),
        (9, Msg(&KEY_VALUE)),
        (10, Varint),
        (11, Msg(&SPAN_EVENT)),
        (12, Varint),
        (13, Msg(&SPAN_LINK)),
        (14, Varint),
        (15, Msg(&STATUS)),
        (16, I32),
    ],
);
static SPAN_EVENT: Schema = schema(
    "opentelemetry.proto.trace.v1.Span.Event",
    &[(1, I64), (2, Str), (3, Msg(&KEY_VALUE)), (4, Varint)],
);
static SPAN_LINK: Schema = schema(
    "opentelemetry.proto.trace.v1.Span.Link",
    &[
        (1, Bytes),
        (2, Bytes),
        (3, Str),
        (4, Msg(&KEY_VALUE)),
        (5, Varint),
        (6, I32),
    ],
);
static STATUS: Schema = schema(
    "opentelemetry.proto.trace.v1.Status",
    &[(2, Str), (3, Varint)],
);

// logs.v1
pub(crate) static LOGS_REQUEST: Schema = schema(
    "opentelemetry.proto.collector.logs.v1.ExportLogsServiceRequest",
    &[(1, Visit(&RESOURCE_LOGS))],
);
pub(crate) static RESOURCE_LOGS: Schema = schema(
    "opentelemetry.proto.logs.v1.ResourceLogs",
    &[(1, Visit(&RESOURCE)), (2, Visit(&SCOPE_LOGS)), (3, Str)],
);
pub(crate) static SCOPE_LOGS: Schema = schema(
    "opentelemetry.proto.logs.v1.ScopeLogs",
    &[(1, Msg(&SCOPE)), (2, Visit(&LOG_RECORD)), (3, Str)],
);
pub(crate) static LOG_RECORD: Schema = schema(
    "opentelemetry.proto.logs.v1.LogRecord",
    &[
        (1, I64),
        (2, Varint),
        (3, Str),
        (5, Msg(&ANY_VALUE)),
        (6, Msg(&KEY_VALUE)),
        (7, Varint),
        (8, I32),
        (9, Bytes),
        (10, Bytes),
        (11, I64),
        (12, Str),
    ],
);

// metrics.v1
pub(crate) static METRICS_REQUEST: Schema = schema(
    "opentelemetry.proto.collector.metrics.v1.ExportMetricsServiceRequest",
    &[(1, Visit(&RESOURCE_METRICS))],
);
pub(crate) static RESOURCE_METRICS: Schema = schema(
    "opentelemetry.proto.metrics.v1.ResourceMetrics",
    &[(1, Visit(&RESOURCE)), (2, Visit(&SCOPE_METRICS)), (3, Str)],
);
pub(crate) static SCOPE_METRICS: Schema = schema(
    "opentelemetry.proto.metrics.v1.ScopeMetrics",
    &[(1, Msg(&SCOPE)), (2, Visit(&METRIC)), (3, Str)],
);
pub(crate) static METRIC: Schema = schema(
    "opentelemetry.proto.metrics.v1.Metric",
    &[
        (1, Str),
        (2, Str),
        (3, Str),
        (5, Visit(&GAUGE)),
        (7, Visit(&SUM)),
        (9, Visit(&HISTOGRAM)),
        (10, Visit(&EXPONENTIAL_HISTOGRAM)),
        (11, Visit(&SUMMARY)),
        (12, Msg(&KEY_VALUE)),
    ],
);
pub(crate) static GAUGE: Schema = schema(
    "opentelemetry.proto.metrics.v1.Gauge",
    &[(1, Visit(&NUMBER_POINT))],
);
pub(crate) static SUM: Schema = schema(
    "opentelemetry.proto.metrics.v1.Sum",
    &[(1, Visit(&NUMBER_POINT)), (2, Varint), (3, Varint)],
);
pub(crate) static HISTOGRAM: Schema = schema(
    "opentelemetry.proto.metrics.v1.Histogram",
    &[(1, Visit(&HISTOGRAM_POINT)), (2, Varint)],
);
pub(crate) static EXPONENTIAL_HISTOGRAM: Schema = schema(
    "opentelemetry.proto.metrics.v1.ExponentialHistogram",
    &[(1, Visit(&EXPONENTIAL_HISTOGRAM_POINT)), (2, Varint)],
);
pub(crate) static SUMMARY: Schema = schema(
    "opentelemetry.proto.metrics.v1.Summary",
    &[(1, Visit(&SUMMARY_POINT))],
);
pub(crate) static NUMBER_POINT: Schema = schema(
    "opentelemetry.proto.metrics.v1.NumberDataPoint",
    &[
        (2, I64),
        (3, I64),
        (4, I64),
        (5, Msg(&EXEMPLAR)),
        (6, I64),
        (7, Msg(&KEY_VALUE)),
        (8, Varint),
    ],
);
pub(crate) static HISTOGRAM_POINT: Schema = schema(
    "opentelemetry.proto.metrics.v1.HistogramDataPoint",
    &[
        (2, I64),
        (3, I64),
        (4, I64),
        (5, I64),
        (6, RepeatedI64),
        (7, RepeatedI64),
        (8, Msg(&EXEMPLAR)),
        (9, Msg(&KEY_VALUE)),
        (10, Varint),
        (11, I64),
        (12, I64),
    ],
);
pub(crate) static EXPONENTIAL_HISTOGRAM_POINT: Schema = schema(
    "opentelemetry.proto.metrics.v1.ExponentialHistogramDataPoint",
    &[
        (1, Msg(&KEY_VALUE)),
        (2, I64),
        (3, I64),
        (4, I64),
        (5, I64),
        (6, Varint),
        (7, I64),
        (8, Msg(&BUCKETS)),
        (9, Msg(&BUCKETS)),
        (10, Varint),
        (11, Msg(&EXEMPLAR)),
        (12, I64),
        (13, I64),
        (14, I64),
    ],
);
static BUCKETS: Schema = schema(
    "opentelemetry.proto.metrics.v1.ExponentialHistogramDataPoint.Buckets",
    &[(1, Varint), (2, RepeatedVarint)],
);
pub(crate) static SUMMARY_POINT: Schema = schema(
    "opentelemetry.proto.metrics.v1.SummaryDataPoint",
    &[
        (2, I64),
        (3, I64),
        (4, I64),
        (5, I64),
        (6, Msg(&QUANTILE)),
        (7, Msg(&KEY_VALUE)),
        (8, Varint),
    ],
);
static QUANTILE: Schema = schema(
    "opentelemetry.proto.metrics.v1.SummaryDataPoint.ValueAtQuantile",
    &[(1, I64), (2, I64)],
);
static EXEMPLAR: Schema = schema(
    "opentelemetry.proto.metrics.v1.Exemplar",
    &[
        (2, I64),
        (3, I64),
        (4, Bytes),
        (5, Bytes),
        (6, I64),
        (7, Msg(&KEY_VALUE)),
    ],
);
