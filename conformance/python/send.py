"""Send a deterministic OTLP scenario with the real OpenTelemetry Python SDK.

Usage:
    python send.py --endpoint URL --protocol grpc|http --out FILE
                   [--header K=V ...] [--run-id ID]

The scenario (3 spans, 3 log records, 5 metrics) is exported to URL with the
OTLP/gRPC or OTLP/HTTP (protobuf) exporters. Every batch handed to an OTLP
exporter is also kept, so FILE describes exactly what was sent (ids,
timestamps, typed attributes, final metric points with their exemplars) in the same JSON shape as
conformance/js/send.mjs.

Exits 1 when any export failed (non-success export result, or an ERROR logged
by the SDK/exporters), so a server that rejects data fails the test. FILE is
written in both cases.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
import time
import uuid
from collections.abc import Sequence

from opentelemetry._logs import SeverityNumber
from opentelemetry.context import Context, get_current
from opentelemetry.sdk._logs import LoggerProvider, ReadableLogRecord
from opentelemetry.sdk._logs.export import (
    BatchLogRecordProcessor,
    LogRecordExporter,
    LogRecordExportResult,
)
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    ExponentialHistogram,
    Gauge,
    Histogram,
    MetricExporter,
    MetricExportResult,
    MetricsData,
    PeriodicExportingMetricReader,
    Sum,
)
from opentelemetry.sdk.metrics.view import (
    ExponentialBucketHistogramAggregation,
    View,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    SpanExporter,
    SpanExportResult,
)
from opentelemetry.trace import Link, SpanKind, Status, StatusCode

EXPORT_TIMEOUT_S = 10
SCOPE_NAME = "conformance"
SCOPE_VERSION = "0.1.0"

# OTLP enums are offset by one from the Python SDK's SpanKind values.
OTLP_SPAN_KIND = {
    SpanKind.INTERNAL: 1,
    SpanKind.SERVER: 2,
    SpanKind.CLIENT: 3,
    SpanKind.PRODUCER: 4,
    SpanKind.CONSUMER: 5,
}
OTLP_STATUS_CODE = {StatusCode.UNSET: 0, StatusCode.OK: 1, StatusCode.ERROR: 2}


class Failures(logging.Handler):
    """Collects export failures: non-success results and SDK ERROR logs.

    The SDK processors swallow exporter exceptions and only log them, so the
    ERROR records of the "opentelemetry" loggers are the only trace of those.
    """

    def __init__(self) -> None:
        super().__init__(level=logging.ERROR)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(f"{record.name}: {record.getMessage()}")

    def result(self, signal: str, ok: bool) -> None:
        if not ok:
            self.messages.append(f"{signal}: exporter returned a failure result")


class TeeSpanExporter(SpanExporter):
    """Forwards to the OTLP exporter and keeps every span it was given."""

    def __init__(self, inner: SpanExporter, failures: Failures) -> None:
        self.inner, self.failures, self.sent = inner, failures, []

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.sent.extend(spans)
        result = self.inner.export(spans)
        self.failures.result("traces", result == SpanExportResult.SUCCESS)
        return result

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.inner.force_flush(timeout_millis)

    def shutdown(self) -> None:
        self.inner.shutdown()


class TeeLogExporter(LogRecordExporter):
    """Forwards to the OTLP exporter and keeps every log record it was given."""

    def __init__(self, inner: LogRecordExporter, failures: Failures) -> None:
        self.inner, self.failures, self.sent = inner, failures, []

    def export(self, batch: Sequence[ReadableLogRecord]) -> LogRecordExportResult:
        self.sent.extend(batch)
        result = self.inner.export(batch)
        self.failures.result("logs", result == LogRecordExportResult.SUCCESS)
        return result

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.inner.force_flush(timeout_millis)

    def shutdown(self) -> None:
        self.inner.shutdown()


class TeeMetricExporter(MetricExporter):
    """Forwards to the OTLP exporter and keeps every MetricsData it was given."""

    def __init__(self, inner: MetricExporter, failures: Failures) -> None:
        # The reader takes temporality/aggregation preferences from its
        # exporter, so mirror the OTLP exporter's.
        super().__init__(
            preferred_temporality=inner._preferred_temporality,
            preferred_aggregation=inner._preferred_aggregation,
        )
        self.inner, self.failures, self.sent = inner, failures, []

    def export(self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs) -> MetricExportResult:
        self.sent.append(metrics_data)
        result = self.inner.export(metrics_data, timeout_millis=timeout_millis, **kwargs)
        self.failures.result("metrics", result == MetricExportResult.SUCCESS)
        return result

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return self.inner.force_flush(timeout_millis)

    def shutdown(self, timeout_millis: float = 30_000, **kwargs) -> None:
        self.inner.shutdown(timeout_millis=timeout_millis, **kwargs)


def make_exporters(protocol: str, endpoint: str, headers: dict[str, str]):
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        # gRPC metadata keys must be lowercase.
        kwargs = dict(
            endpoint=endpoint,
            insecure=True,
            headers={k.lower(): v for k, v in headers.items()},
            timeout=EXPORT_TIMEOUT_S,
        )
        return OTLPSpanExporter(**kwargs), OTLPLogExporter(**kwargs), OTLPMetricExporter(**kwargs)

    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    base = endpoint.rstrip("/")
    kwargs = dict(headers=headers, timeout=EXPORT_TIMEOUT_S)
    return (
        OTLPSpanExporter(endpoint=f"{base}/v1/traces", **kwargs),
        OTLPLogExporter(endpoint=f"{base}/v1/logs", **kwargs),
        OTLPMetricExporter(endpoint=f"{base}/v1/metrics", **kwargs),
    )


def run_traces(tracer, logger) -> Context:
    """The spans, and a log record inside one; returns the context of that span."""
    # A span in its own trace, only referenced through the child's link.
    linked = tracer.start_span("linked-op")
    linked.end()

    with tracer.start_as_current_span("root-op", kind=SpanKind.SERVER) as root:
        with tracer.start_as_current_span(
            "child-op",
            kind=SpanKind.CLIENT,
            links=[Link(linked.get_span_context(), {"link.kind": "follows"})],
            attributes={
                "attr.string": "value",
                "attr.int": 123,
                "attr.double": 3.25,
                "attr.bool": True,
                "attr.string_array": ["x", "y", "z"],
                "attr.int_array": [10, 20, 30],
                "attr.double_array": [1.5, 2.5],
                "attr.bool_array": [True, False],
            },
        ) as child:
            child.add_event("checkpoint", {"event.n": 7})
            # No explicit context: the SDK takes the current one (child-op).
            logger.emit(
                timestamp=time.time_ns(),
                severity_number=SeverityNumber.INFO,
                severity_text="INFO",
                body="hello from python",
                attributes={"user.id": 1234, "flag": True},
            )
            child.set_status(Status(StatusCode.ERROR, "boom"))
            traced = get_current()
        root.set_status(Status(StatusCode.OK))
    return traced


def run_logs(logger) -> None:
    """The log records emitted outside any span."""
    logger.emit(
        timestamp=time.time_ns(),
        severity_number=SeverityNumber.WARN,
        severity_text="WARNING",
        body="disk almost full",
    )
    try:
        raise ValueError("something went wrong")
    except ValueError as exc:
        # The SDK adds exception.type/.message/.stacktrace attributes.
        logger.emit(
            timestamp=time.time_ns(),
            severity_number=SeverityNumber.ERROR,
            severity_text="ERROR",
            body="operation failed",
            exception=exc,
        )


def run_metrics(meter, traced: Context) -> None:
    """The metrics. Measurements made in `traced` (a sampled span) become
    exemplars: the SDK's default filter keeps those of sampled spans."""

    requests = meter.create_counter("requests", unit="1", description="requests served")
    for n in (1, 2):
        requests.add(n, {"route": "/a"})
    requests.add(3, {"route": "/a"}, context=traced)

    queue = meter.create_up_down_counter("queue.size", unit="1")
    queue.add(5)
    queue.add(-2)

    meter.create_gauge("temperature", unit="Cel").set(21.5)

    latency = meter.create_histogram("latency", unit="ms", explicit_bucket_boundaries_advisory=[0, 10, 100, 1000])
    for v in (1, 5, 500, 5000):
        latency.record(v, {"route": "/a"})
    # The view keeps `route` only: `user.id` stays with the exemplar, as a filtered attribute.
    latency.record(50.5, {"route": "/a", "user.id": 7}, context=traced)

    latency_exp = meter.create_histogram("latency.exp", unit="ms")
    for v in (1, 2, 4, 8, 1000):
        latency_exp.record(v)


def hex_or_empty(value: int | None, width: int) -> str:
    return format(value, f"0{width}x") if value else ""


def attrs(attributes) -> dict:
    # Sequences come back as tuples; json writes them as arrays.
    return {k: list(v) if isinstance(v, tuple) else v for k, v in (attributes or {}).items()}


def scope_json(scope) -> dict:
    return {"name": scope.name, "version": scope.version or ""}


def span_json(span: ReadableSpan) -> dict:
    ctx = span.get_span_context()
    return {
        "trace_id": hex_or_empty(ctx.trace_id, 32),
        "span_id": hex_or_empty(ctx.span_id, 16),
        "parent_span_id": hex_or_empty(span.parent.span_id if span.parent else None, 16),
        "name": span.name,
        "kind": OTLP_SPAN_KIND[span.kind],
        "scope": scope_json(span.instrumentation_scope),
        "start_time_unix_nano": span.start_time,
        "end_time_unix_nano": span.end_time,
        "attributes": attrs(span.attributes),
        "events": [
            {"name": e.name, "time_unix_nano": e.timestamp, "attributes": attrs(e.attributes)} for e in span.events
        ],
        "links": [
            {
                "trace_id": hex_or_empty(link.context.trace_id, 32),
                "span_id": hex_or_empty(link.context.span_id, 16),
                "attributes": attrs(link.attributes),
            }
            for link in span.links
        ],
        "status": {"code": OTLP_STATUS_CODE[span.status.status_code], "message": span.status.description or ""},
    }


def log_json(readable: ReadableLogRecord) -> dict:
    record = readable.log_record
    return {
        "time_unix_nano": record.timestamp,
        "observed_time_unix_nano": record.observed_timestamp,
        "severity_number": record.severity_number.value,
        "severity_text": record.severity_text,
        "body": record.body,
        "attributes": attrs(record.attributes),
        "trace_id": hex_or_empty(record.trace_id, 32),
        "span_id": hex_or_empty(record.span_id, 16),
        "scope": scope_json(readable.instrumentation_scope),
    }


def point_json(kind: str, point) -> dict:
    out = {
        "attributes": attrs(point.attributes),
        # Gauge points carry no start time; OTLP (proto3) then has 0.
        "start_time_unix_nano": point.start_time_unix_nano or 0,
        "time_unix_nano": point.time_unix_nano,
    }
    out["exemplars"] = [
        {
            "time_unix_nano": e.time_unix_nano,
            "value_type": "int" if isinstance(e.value, int) else "double",
            "value": e.value,
            "trace_id": hex_or_empty(e.trace_id, 32),
            "span_id": hex_or_empty(e.span_id, 16),
            "filtered_attributes": attrs(e.filtered_attributes),
        }
        for e in point.exemplars
    ]
    if kind in ("sum", "gauge"):
        # Python ints are sent as as_int, floats as as_double.
        out["value_type"] = "int" if isinstance(point.value, int) else "double"
        out["value"] = point.value
    elif kind == "histogram":
        out |= {
            "count": point.count,
            "sum": point.sum,
            "min": point.min,
            "max": point.max,
            "bucket_counts": list(point.bucket_counts),
            "explicit_bounds": list(point.explicit_bounds),
        }
    else:
        out |= {
            "count": point.count,
            "sum": point.sum,
            "min": point.min,
            "max": point.max,
            "scale": point.scale,
            "zero_count": point.zero_count,
            "positive": {"offset": point.positive.offset, "bucket_counts": list(point.positive.bucket_counts)},
            "negative": {"offset": point.negative.offset, "bucket_counts": list(point.negative.bucket_counts)},
        }
    return out


def metric_points(exports: list[MetricsData]) -> dict:
    """Data points of every export, by metric name: what the lake must hold, once each."""
    counts = {}
    for export in exports:
        for rm in export.resource_metrics:
            for sm in rm.scope_metrics:
                for metric in sm.metrics:
                    counts[metric.name] = counts.get(metric.name, 0) + len(metric.data.data_points)
    return counts


METRIC_KINDS = {Sum: "sum", Gauge: "gauge", Histogram: "histogram", ExponentialHistogram: "exponential_histogram"}


def metrics_json(exports: list[MetricsData]) -> list[dict]:
    """Metrics of the last export (temporality is cumulative, so it holds the final values)."""
    if not exports:
        return []
    out = []
    for rm in exports[-1].resource_metrics:
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                kind = METRIC_KINDS[type(metric.data)]
                entry = {
                    "name": metric.name,
                    "description": metric.description or "",
                    "unit": metric.unit or "",
                    "type": kind,
                    "scope": scope_json(sm.scope),
                }
                if kind != "gauge":
                    # OTLP AggregationTemporality: DELTA=1, CUMULATIVE=2 (same values in the SDK).
                    entry["aggregation_temporality"] = metric.data.aggregation_temporality.value
                if kind == "sum":
                    entry["is_monotonic"] = metric.data.is_monotonic
                entry["points"] = [point_json(kind, p) for p in metric.data.data_points]
                out.append(entry)
    return out


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--endpoint", required=True, help="grpc: http://host:4317, http: base URL http://host:4318")
    parser.add_argument("--protocol", required=True, choices=["grpc", "http"])
    parser.add_argument("--out", required=True, help="where to write the JSON description of what was sent")
    parser.add_argument("--header", action="append", default=[], metavar="K=V", help="extra request header")
    parser.add_argument("--run-id", default=None, help="value of the test.run_id resource attribute")
    args = parser.parse_args()
    for header in args.header:
        if "=" not in header:
            parser.error(f"--header expects K=V, got {header!r}")
    return args


def main() -> int:
    args = parse_args()
    headers = dict(h.split("=", 1) for h in args.header)
    run_id = args.run_id or uuid.uuid4().hex

    failures = Failures()
    logging.getLogger("opentelemetry").addHandler(failures)

    service_name = f"conformance-py-{args.protocol}"
    resource = Resource.create(
        {
            "service.name": service_name,
            "service.version": "1.2.3",
            "test.run_id": run_id,
            "test.int": 42,
            "test.double": 2.5,
            "test.bool": True,
            "test.str_array": ["a", "b"],
            "test.int_array": [1, 2, 3],
        }
    )
    span_otlp, log_otlp, metric_otlp = make_exporters(args.protocol, args.endpoint, headers)
    spans = TeeSpanExporter(span_otlp, failures)
    logs = TeeLogExporter(log_otlp, failures)
    metrics = TeeMetricExporter(metric_otlp, failures)

    tracer_provider = TracerProvider(resource=resource)
    tracer_provider.add_span_processor(BatchSpanProcessor(spans, export_timeout_millis=EXPORT_TIMEOUT_S * 1000))
    logger_provider = LoggerProvider(resource=resource)
    logger_provider.add_log_record_processor(
        BatchLogRecordProcessor(logs, export_timeout_millis=EXPORT_TIMEOUT_S * 1000)
    )
    # With an infinite interval the reader never exports on its own (nor on
    # shutdown): the single export is the force_flush() below.
    reader = PeriodicExportingMetricReader(metrics, export_interval_millis=math.inf)
    meter_provider = MeterProvider(
        resource=resource,
        metric_readers=[reader],
        views=[
            View(instrument_name="latency", attribute_keys={"route"}),
            View(instrument_name="latency.exp", aggregation=ExponentialBucketHistogramAggregation()),
        ],
    )
    logger = logger_provider.get_logger(SCOPE_NAME, SCOPE_VERSION)

    traced = run_traces(tracer_provider.get_tracer(SCOPE_NAME, SCOPE_VERSION), logger)
    run_logs(logger)
    run_metrics(meter_provider.get_meter(SCOPE_NAME, SCOPE_VERSION), traced)

    meter_provider.force_flush()
    for provider in (tracer_provider, logger_provider, meter_provider):
        provider.shutdown()

    report = {
        "service_name": service_name,
        "protocol": args.protocol,
        "run_id": run_id,
        "resource": attrs(resource.attributes),
        "spans": sorted((span_json(s) for s in spans.sent), key=lambda s: s["start_time_unix_nano"]),
        "logs": [log_json(r) for r in logs.sent],
        "metric_exports": len(metrics.sent),
        "metrics": metrics_json(metrics.sent),
        "metric_points": metric_points(metrics.sent),
    }
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump(report, f, indent=2)
        f.write("\n")

    if failures.messages:
        print("export failed:", *failures.messages, sep="\n  ", file=sys.stderr)
        return 1
    counts = (len(report["spans"]), len(report["logs"]), len(report["metrics"]))
    if counts != (3, 3, 5):
        print(f"unexpected counts sent (spans, logs, metrics) = {counts}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
