// Send a deterministic OTLP scenario with the real OpenTelemetry JS SDK.
//
// Usage:
//   node send.mjs --endpoint http://127.0.0.1:4318 --out FILE
//                 [--header K=V ...] [--run-id ID]
//
// The scenario (3 spans, 3 log records, 5 metrics) is exported with the
// OTLP/HTTP exporters, which send JSON (content-type application/json) to
// ENDPOINT/v1/{traces,logs,metrics}. Every batch handed to an OTLP exporter is
// also kept, so FILE describes exactly what was sent, in the same JSON shape
// as conformance/python/send.py.
//
// Exits 1 when any export failed (non-success export result, or an error
// reported through the OpenTelemetry diag logger), so a server that rejects
// data fails the test. FILE is written in both cases.

import { randomUUID } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';

import {
  context,
  diag,
  DiagLogLevel,
  SpanKind,
  SpanStatusCode,
  trace,
  ValueType,
} from '@opentelemetry/api';
import { SeverityNumber } from '@opentelemetry/api-logs';
import { ExportResultCode } from '@opentelemetry/core';
import { OTLPLogExporter } from '@opentelemetry/exporter-logs-otlp-http';
import { OTLPMetricExporter } from '@opentelemetry/exporter-metrics-otlp-http';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-http';
import { defaultResource, resourceFromAttributes } from '@opentelemetry/resources';
import { BatchLogRecordProcessor, LoggerProvider } from '@opentelemetry/sdk-logs';
import {
  AggregationTemporality,
  AggregationType,
  DataPointType,
  MeterProvider,
  PeriodicExportingMetricReader,
} from '@opentelemetry/sdk-metrics';
import { BatchSpanProcessor, TracerProvider } from '@opentelemetry/sdk-trace';

const EXPORT_TIMEOUT_MS = 10_000;
const SCOPE_NAME = 'conformance';
const SCOPE_VERSION = '0.1.0';

// OTLP enums differ from the JS SDK's.
const OTLP_SPAN_KIND = {
  [SpanKind.INTERNAL]: 1,
  [SpanKind.SERVER]: 2,
  [SpanKind.CLIENT]: 3,
  [SpanKind.PRODUCER]: 4,
  [SpanKind.CONSUMER]: 5,
};
const OTLP_STATUS_CODE = {
  [SpanStatusCode.UNSET]: 0,
  [SpanStatusCode.OK]: 1,
  [SpanStatusCode.ERROR]: 2,
};
const OTLP_TEMPORALITY = {
  [AggregationTemporality.DELTA]: 1,
  [AggregationTemporality.CUMULATIVE]: 2,
};
const METRIC_TYPE = {
  [DataPointType.SUM]: 'sum',
  [DataPointType.GAUGE]: 'gauge',
  [DataPointType.HISTOGRAM]: 'histogram',
  [DataPointType.EXPONENTIAL_HISTOGRAM]: 'exponential_histogram',
};

function parseCli() {
  const { values } = parseArgs({
    options: {
      endpoint: { type: 'string' },
      out: { type: 'string' },
      header: { type: 'string', multiple: true, default: [] },
      'run-id': { type: 'string' },
    },
  });
  const usage = problem => {
    console.error(`${problem}\nusage: node send.mjs --endpoint URL --out FILE [--header K=V ...] [--run-id ID]`);
    process.exit(2);
  };
  if (!values.endpoint || !values.out) usage('--endpoint and --out are required');
  const headers = {};
  for (const header of values.header) {
    const eq = header.indexOf('=');
    if (eq < 1) usage(`--header expects K=V, got ${JSON.stringify(header)}`);
    headers[header.slice(0, eq)] = header.slice(eq + 1);
  }
  return {
    endpoint: values.endpoint.replace(/\/+$/, ''),
    out: values.out,
    headers,
    runId: values['run-id'] ?? randomUUID().replaceAll('-', ''),
  };
}

// Export failures: non-success results and errors the SDK only reports via
// diag (processors and readers swallow exporter errors).
const failures = [];
const noop = () => {};
// The SDK hands errors to diag as JSON-serialized objects; keep their message.
const describe = arg => {
  try {
    return JSON.parse(arg).message ?? String(arg);
  } catch {
    return String(arg);
  }
};
diag.setLogger(
  {
    error: (...args) => failures.push(`diag: ${args.map(describe).join(' ')}`),
    warn: noop,
    info: noop,
    debug: noop,
    verbose: noop,
  },
  DiagLogLevel.ERROR,
);

/** Wraps an OTLP exporter: keeps every batch it is given and checks results. */
function tee(signal, inner) {
  const sent = [];
  const exporter = {
    export(batch, resultCallback) {
      sent.push(batch);
      inner.export(batch, result => {
        if (result.code !== ExportResultCode.SUCCESS) {
          failures.push(`${signal}: export failed: ${result.error?.message ?? 'unknown error'}`);
        }
        resultCallback(result);
      });
    },
    forceFlush: () => inner.forceFlush(),
    shutdown: () => inner.shutdown(),
    // Metric readers take temporality/aggregation preferences from their exporter.
    selectAggregationTemporality: inner.selectAggregationTemporality?.bind(inner),
    selectAggregation: inner.selectAggregation?.bind(inner),
  };
  return { exporter, sent };
}

function runTraces(tracer, logger) {
  // A span in its own trace, only referenced through the child's link.
  const linked = tracer.startSpan('linked-op');
  linked.end();

  // No context manager is registered, so parents are passed explicitly.
  const root = tracer.startSpan('root-op', { kind: SpanKind.SERVER });
  const rootCtx = trace.setSpan(context.active(), root);
  const child = tracer.startSpan(
    'child-op',
    {
      kind: SpanKind.CLIENT,
      links: [{ context: linked.spanContext(), attributes: { 'link.kind': 'follows' } }],
      attributes: {
        'attr.string': 'value',
        'attr.int': 123,
        'attr.double': 3.25,
        'attr.bool': true,
        'attr.string_array': ['x', 'y', 'z'],
        'attr.int_array': [10, 20, 30],
        'attr.double_array': [1.5, 2.5],
        'attr.bool_array': [true, false],
      },
    },
    rootCtx,
  );
  child.addEvent('checkpoint', { 'event.n': 7 });
  logger.emit({
    context: trace.setSpan(rootCtx, child),
    severityNumber: SeverityNumber.INFO,
    severityText: 'INFO',
    body: 'hello from js',
    attributes: { 'user.id': 1234, flag: true },
  });
  child.setStatus({ code: SpanStatusCode.ERROR, message: 'boom' });
  child.end();
  root.setStatus({ code: SpanStatusCode.OK });
  root.end();
}

/** The log records emitted outside any span. */
function runLogs(logger) {
  logger.emit({
    severityNumber: SeverityNumber.WARN,
    severityText: 'WARNING',
    body: 'disk almost full',
  });
  // The SDK adds exception.type/.message/.stacktrace attributes.
  logger.emit({
    severityNumber: SeverityNumber.ERROR,
    severityText: 'ERROR',
    body: 'operation failed',
    exception: new Error('something went wrong'),
  });
}

function runMetrics(meter) {
  const requests = meter.createCounter('requests', {
    unit: '1',
    description: 'requests served',
    valueType: ValueType.INT,
  });
  for (const n of [1, 2, 3]) requests.add(n, { route: '/a' });

  const queue = meter.createUpDownCounter('queue.size', { unit: '1', valueType: ValueType.INT });
  queue.add(5);
  queue.add(-2);

  meter.createGauge('temperature', { unit: 'Cel' }).record(21.5);

  const latency = meter.createHistogram('latency', {
    unit: 'ms',
    advice: { explicitBucketBoundaries: [0, 10, 100, 1000] },
  });
  for (const v of [1, 5, 50, 500, 5000]) latency.record(v);

  const latencyExp = meter.createHistogram('latency.exp', { unit: 'ms' });
  for (const v of [1, 2, 4, 8, 1000]) latencyExp.record(v);
}

// HrTime [seconds, nanos] -> exact nanoseconds (too large for a double).
const nanos = ([s, ns]) => BigInt(s) * 1_000_000_000n + BigInt(ns);
const scopeJson = scope => ({ name: scope.name, version: scope.version ?? '' });
const hexOrEmpty = id => (id && !/^0+$/.test(id) ? id : '');

function spanJson(span) {
  const ctx = span.spanContext();
  return {
    trace_id: ctx.traceId,
    span_id: ctx.spanId,
    parent_span_id: hexOrEmpty(span.parentSpanContext?.spanId),
    name: span.name,
    kind: OTLP_SPAN_KIND[span.kind],
    scope: scopeJson(span.instrumentationScope),
    start_time_unix_nano: nanos(span.startTime),
    end_time_unix_nano: nanos(span.endTime),
    attributes: span.attributes,
    events: span.events.map(e => ({
      name: e.name,
      time_unix_nano: nanos(e.time),
      attributes: e.attributes ?? {},
    })),
    links: span.links.map(l => ({
      trace_id: l.context.traceId,
      span_id: l.context.spanId,
      attributes: l.attributes ?? {},
    })),
    status: { code: OTLP_STATUS_CODE[span.status.code], message: span.status.message ?? '' },
  };
}

function logJson(record) {
  return {
    time_unix_nano: nanos(record.hrTime),
    observed_time_unix_nano: nanos(record.hrTimeObserved),
    severity_number: record.severityNumber,
    severity_text: record.severityText,
    body: record.body,
    attributes: record.attributes,
    trace_id: hexOrEmpty(record.spanContext?.traceId),
    span_id: hexOrEmpty(record.spanContext?.spanId),
    scope: scopeJson(record.instrumentationScope),
  };
}

function pointJson(type, valueType, point) {
  const out = {
    attributes: point.attributes,
    start_time_unix_nano: nanos(point.startTime),
    time_unix_nano: nanos(point.endTime),
    // The JS SDK records no exemplars (its OTLP exporter sends none).
    exemplars: [],
  };
  const v = point.value;
  switch (type) {
    case 'sum':
    case 'gauge':
      return { ...out, value_type: valueType === ValueType.INT ? 'int' : 'double', value: v };
    case 'histogram':
      return {
        ...out,
        count: v.count,
        sum: v.sum,
        min: v.min,
        max: v.max,
        bucket_counts: v.buckets.counts,
        explicit_bounds: v.buckets.boundaries,
      };
    default:
      return {
        ...out,
        count: v.count,
        sum: v.sum,
        min: v.min,
        max: v.max,
        scale: v.scale,
        zero_count: v.zeroCount,
        positive: { offset: v.positive.offset, bucket_counts: v.positive.bucketCounts },
        negative: { offset: v.negative.offset, bucket_counts: v.negative.bucketCounts },
      };
  }
}

/** Metrics of the last export (temporality is cumulative, so it holds the final values). */
function metricsJson(exports) {
  const last = exports.at(-1);
  if (!last) return [];
  return last.scopeMetrics.flatMap(sm =>
    sm.metrics.map(metric => {
      const type = METRIC_TYPE[metric.dataPointType];
      const entry = {
        name: metric.descriptor.name,
        description: metric.descriptor.description,
        unit: metric.descriptor.unit,
        type,
        scope: scopeJson(sm.scope),
      };
      if (type !== 'gauge') entry.aggregation_temporality = OTLP_TEMPORALITY[metric.aggregationTemporality];
      if (type === 'sum') entry.is_monotonic = metric.isMonotonic;
      entry.points = metric.dataPoints.map(p => pointJson(type, metric.descriptor.valueType, p));
      return entry;
    }),
  );
}

/** Data points of every export, by metric name: what the lake must hold, once each. */
function metricPoints(exports) {
  const counts = {};
  for (const e of exports)
    for (const sm of e.scopeMetrics)
      for (const m of sm.metrics)
        counts[m.descriptor.name] = (counts[m.descriptor.name] ?? 0) + m.dataPoints.length;
  return counts;
}

// BigInt-safe comparison; ties keep export order.
const byStartTime = (a, b) =>
  (a.start_time_unix_nano > b.start_time_unix_nano) - (a.start_time_unix_nano < b.start_time_unix_nano);

/** JSON.stringify that writes BigInt nanosecond times as plain JSON integers. */
function stringify(value) {
  const text = JSON.stringify(value, (_, v) => (typeof v === 'bigint' ? `__bigint__${v}` : v), 2);
  return text.replace(/"__bigint__(-?\d+)"/g, '$1');
}

async function main() {
  const args = parseCli();
  const serviceName = 'conformance-js';
  const resource = defaultResource().merge(
    resourceFromAttributes({
      'service.name': serviceName,
      'service.version': '1.2.3',
      'test.run_id': args.runId,
      'test.int': 42,
      'test.double': 2.5,
      'test.bool': true,
      'test.str_array': ['a', 'b'],
      'test.int_array': [1, 2, 3],
    }),
  );
  const config = path => ({
    url: `${args.endpoint}/v1/${path}`,
    headers: args.headers,
    timeoutMillis: EXPORT_TIMEOUT_MS,
  });
  const spans = tee('traces', new OTLPTraceExporter(config('traces')));
  const logs = tee('logs', new OTLPLogExporter(config('logs')));
  const metrics = tee('metrics', new OTLPMetricExporter(config('metrics')));

  const tracerProvider = new TracerProvider({
    resource,
    spanProcessors: [new BatchSpanProcessor({ exporter: spans.exporter, exportTimeoutMillis: EXPORT_TIMEOUT_MS })],
  });
  const loggerProvider = new LoggerProvider({
    resource,
    processors: [new BatchLogRecordProcessor({ exporter: logs.exporter, exportTimeoutMillis: EXPORT_TIMEOUT_MS })],
  });
  // The interval never elapses during the run: the single export is the one
  // the reader does on shutdown.
  const meterProvider = new MeterProvider({
    resource,
    readers: [
      new PeriodicExportingMetricReader({
        exporter: metrics.exporter,
        exportIntervalMillis: 3_600_000,
        exportTimeoutMillis: EXPORT_TIMEOUT_MS,
      }),
    ],
    views: [{ instrumentName: 'latency.exp', aggregation: { type: AggregationType.EXPONENTIAL_HISTOGRAM } }],
  });

  const logger = loggerProvider.getLogger(SCOPE_NAME, SCOPE_VERSION);
  runTraces(tracerProvider.getTracer(SCOPE_NAME, SCOPE_VERSION), logger);
  runLogs(logger);
  runMetrics(meterProvider.getMeter(SCOPE_NAME, SCOPE_VERSION));

  // Shutdown flushes the batch processors and does the metric export; it
  // rejects when those exports fail.
  const providers = { traces: tracerProvider, logs: loggerProvider, metrics: meterProvider };
  const shutdowns = await Promise.allSettled(Object.values(providers).map(p => p.shutdown()));
  Object.keys(providers).forEach((signal, i) => {
    if (shutdowns[i].status === 'rejected') failures.push(`${signal}: shutdown failed: ${shutdowns[i].reason}`);
  });

  const report = {
    service_name: serviceName,
    protocol: 'http/json',
    run_id: args.runId,
    resource: resource.attributes,
    spans: spans.sent
      .flat()
      .map(spanJson)
      .sort(byStartTime),
    logs: logs.sent.flat().map(logJson),
    metric_exports: metrics.sent.length,
    metrics: metricsJson(metrics.sent),
    metric_points: metricPoints(metrics.sent),
  };
  writeFileSync(args.out, `${stringify(report)}\n`);

  if (failures.length > 0) {
    console.error(['export failed:', ...failures].join('\n  '));
    return 1;
  }
  const counts = [report.spans.length, report.logs.length, report.metrics.length];
  if (counts.join() !== '3,3,5') {
    console.error(`unexpected counts sent (spans, logs, metrics) = ${counts}`);
    return 1;
  }
  return 0;
}

process.exitCode = await main();
