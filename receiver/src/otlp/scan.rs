//! The fast path for protobuf requests: one pass over the bytes as received
//! that validates the whole request (see [`wire`](super::wire)) and indexes
//! each resource (events, time range, where it lies), building nothing.
//!
//! It answers `None` whenever prost must decide instead: malformed or unusual
//! bytes (a repeated `resource`, a metric with two kinds of data), and any
//! invalid item, since dropping items means encoding the resource anew.

use std::cell::Cell;

use super::schema::{
    EXPONENTIAL_HISTOGRAM, EXPONENTIAL_HISTOGRAM_POINT, GAUGE, HISTOGRAM, HISTOGRAM_POINT,
    LOG_RECORD, LOGS_REQUEST, METRIC, METRICS_REQUEST, NUMBER_POINT, RESOURCE, RESOURCE_LOGS,
    RESOURCE_METRICS, RESOURCE_SPANS, SCOPE, SCOPE_LOGS, SCOPE_METRICS, SCOPE_SPANS, SPAN, SUM,
    SUMMARY, SUMMARY_POINT, TRACES_REQUEST,
};
use super::signals::{Summary, valid_id, valid_span_times, valid_time};
use super::wire::{MAX_DEPTH, Schema, nested_messages, validate, walk};
use crate::error::IngestError;

/// One resource of a request, indexed.
#[derive(Debug)]
pub(crate) struct Scanned<'a> {
    /// The whole entry in the request (key and length included): on its own, a
    /// request holding just this resource.
    pub(crate) entry: &'a [u8],
    /// The encoded `Resource`, when sent.
    pub(crate) resource: Option<&'a [u8]>,
    pub(crate) summary: Summary,
}

/// The path from an export request down to its items, for one signal.
#[derive(Debug)]
pub(crate) struct Shape {
    request: &'static Schema,
    resource: &'static Schema,
    scope: &'static Schema,
    /// Checks and indexes one item (span, log record, metric).
    item: fn(&[u8], &mut Summary, &Context) -> Option<()>,
}

pub(crate) static TRACES: Shape = Shape {
    request: &TRACES_REQUEST,
    resource: &RESOURCE_SPANS,
    scope: &SCOPE_SPANS,
    item: span,
};
pub(crate) static LOGS: Shape = Shape {
    request: &LOGS_REQUEST,
    resource: &RESOURCE_LOGS,
    scope: &SCOPE_LOGS,
    item: log_record,
};
pub(crate) static METRICS: Shape = Shape {
    request: &METRICS_REQUEST,
    resource: &RESOURCE_METRICS,
    scope: &SCOPE_METRICS,
    item: metric,
};

/// Depth of the items below the request: request, resource, scope, item.
const ITEM_DEPTH: u32 = MAX_DEPTH - 3;

/// What one record (a span, a log record, a metric data point) may carry.
/// Decoding builds a value for every nested message, dozens of bytes for
/// two on the wire: without a bound, one small record of empty attributes
/// decodes to gigabytes.
#[derive(Debug, Clone, Copy)]
pub struct RecordLimits {
    /// Encoded bytes of one record.
    pub max_bytes: usize,
    /// Nested values of one record: attributes, their values, array and map
    /// entries, events, links (each one).
    pub max_values: u32,
}

impl Default for RecordLimits {
    fn default() -> Self {
        RecordLimits {
            max_bytes: 1 << 20,
            max_values: 10_000,
        }
    }
}

/// What the item walkers share.
pub(crate) struct Context {
    /// Stands in for missing log timestamps.
    now: u64,
    limits: RecordLimits,
    /// Only check the limits, without validating or indexing.
    limits_only: bool,
    /// The first record found over a limit.
    over: Cell<Option<String>>,
}

impl Context {
    /// Checks one record against the limits; `None` (and why, in `over`) when over.
    fn record(&self, record: &[u8], schema: &Schema, what: &str) -> Option<()> {
        let max_bytes = self.limits.max_bytes;
        if record.len() > max_bytes {
            self.over.set(Some(format!(
                "a {what} of {} bytes, more than the {max_bytes} one may be (--max-record-bytes)",
                record.len()
            )));
            return None;
        }
        self.values(record, schema, what)
    }

    /// Checks the nested values of one record (or of a metric's own fields).
    fn values(&self, record: &[u8], schema: &Schema, what: &str) -> Option<()> {
        let max = self.limits.max_values;
        if record.len() > 2 * max as usize && nested_messages(record, schema, max) > max {
            self.over.set(Some(format!(
                "a {what} with more than the {max} attributes and other nested values \
                 one may carry (--max-record-values)"
            )));
            return None;
        }
        Some(())
    }

    fn refusal(self) -> Result<(), IngestError> {
        match self.over.into_inner() {
            Some(what) => Err(IngestError::RecordTooLarge(format!(
                "refused: the request holds {what}"
            ))),
            None => Ok(()),
        }
    }
}

/// Validates and indexes a request; `Ok(None)` when prost must decide (see
/// the module docs), an error when a record is over its limits.
pub(crate) fn scan<'a>(
    shape: &Shape,
    body: &'a [u8],
    now: u64,
    limits: RecordLimits,
) -> Result<Option<Vec<Scanned<'a>>>, IngestError> {
    let ctx = Context {
        now,
        limits,
        limits_only: false,
        over: Cell::new(None),
    };
    let scanned = walk_resources(shape, body, &ctx);
    ctx.refusal()?;
    Ok(scanned)
}

/// Checks every record of a request against the limits, as far as its bytes
/// are well-formed: what must hold before anything decodes it.
pub(crate) fn check_records(
    shape: &Shape,
    body: &[u8],
    limits: RecordLimits,
) -> Result<(), IngestError> {
    let ctx = Context {
        now: 0,
        limits,
        limits_only: true,
        over: Cell::new(None),
    };
    walk_resources(shape, body, &ctx);
    ctx.refusal()
}

fn walk_resources<'a>(shape: &Shape, body: &'a [u8], ctx: &Context) -> Option<Vec<Scanned<'a>>> {
    let mut resources = Vec::new();
    walk(body, shape.request, MAX_DEPTH, |number, value, range| {
        if number == 1 {
            resources.push(resource(shape, &body[range], value.bytes(), ctx)?);
        }
        Some(())
    })?;
    Some(resources)
}

fn resource<'a>(
    shape: &Shape,
    entry: &'a [u8],
    msg: &'a [u8],
    ctx: &Context,
) -> Option<Scanned<'a>> {
    let mut resource = None;
    let mut summary = Summary::default();
    walk(msg, shape.resource, MAX_DEPTH - 1, |number, value, _| {
        match number {
            1 => {
                ctx.values(value.bytes(), &RESOURCE, "resource")?;
                // prost merges a repeated `resource`; leave that to prost.
                if resource.replace(value.bytes()).is_some() && !ctx.limits_only {
                    return None;
                }
                validate(value.bytes(), &RESOURCE, MAX_DEPTH - 2)?;
            }
            2 => walk(
                value.bytes(),
                shape.scope,
                MAX_DEPTH - 2,
                |number, value, _| {
                    match number {
                        1 => ctx.values(value.bytes(), &SCOPE, "scope")?,
                        2 => (shape.item)(value.bytes(), &mut summary, ctx)?,
                        _ => {}
                    }
                    Some(())
                },
            )?,
            _ => {}
        }
        Some(())
    })?;
    Some(Scanned {
        entry,
        resource,
        summary,
    })
}

fn span(buf: &[u8], summary: &mut Summary, ctx: &Context) -> Option<()> {
    ctx.record(buf, &SPAN, "span")?;
    if ctx.limits_only {
        return Some(());
    }
    let (mut trace_id, mut span_id, mut parent_id): (&[u8], &[u8], &[u8]) = (&[], &[], &[]);
    let (mut start, mut end) = (0, 0);
    walk(buf, &SPAN, ITEM_DEPTH, |number, value, _| {
        match number {
            1 => trace_id = value.bytes(),
            2 => span_id = value.bytes(),
            4 => parent_id = value.bytes(),
            7 => start = value.u64(),
            8 => end = value.u64(),
            _ => {}
        }
        Some(())
    })?;
    let valid = valid_id(trace_id, 16, false)
        && valid_id(span_id, 8, false)
        && valid_id(parent_id, 8, true)
        && valid_span_times(start, end);
    valid.then_some(())?;
    summary.time(start);
    summary.time(end);
    summary.events += 1;
    Some(())
}

fn log_record(buf: &[u8], summary: &mut Summary, ctx: &Context) -> Option<()> {
    ctx.record(buf, &LOG_RECORD, "log record")?;
    if ctx.limits_only {
        return Some(());
    }
    let (mut trace_id, mut span_id): (&[u8], &[u8]) = (&[], &[]);
    let (mut time, mut observed) = (0, 0);
    walk(buf, &LOG_RECORD, ITEM_DEPTH, |number, value, _| {
        match number {
            1 => time = value.u64(),
            11 => observed = value.u64(),
            9 => trace_id = value.bytes(),
            10 => span_id = value.bytes(),
            _ => {}
        }
        Some(())
    })?;
    let valid = valid_id(trace_id, 16, true)
        && valid_id(span_id, 8, true)
        && valid_time(time)
        && valid_time(observed);
    valid.then_some(())?;
    summary.log_record(time, observed, ctx.now);
    Some(())
}

fn metric(buf: &[u8], summary: &mut Summary, ctx: &Context) -> Option<()> {
    // The metric's own values (its metadata); its points are records of their own.
    ctx.values(buf, &METRIC, "metric")?;
    let mut named = false;
    let mut data = None;
    walk(buf, &METRIC, ITEM_DEPTH, |number, value, _| {
        match number {
            1 => named = !value.bytes().is_empty(),
            // prost merges or replaces a repeated `data`: every one is checked,
            // the indexing of such a metric is left to prost.
            5 | 7 | 9 | 10 | 11 if ctx.limits_only => points(number, value.bytes(), summary, ctx)?,
            5 | 7 | 9 | 10 | 11 => data
                .replace((number, value.bytes()))
                .is_none()
                .then_some(())?,
            _ => {}
        }
        Some(())
    })?;
    if ctx.limits_only {
        return Some(());
    }
    named.then_some(())?;
    match data {
        Some((number, data)) => points(number, data, summary, ctx),
        None => Some(()),
    }
}

/// The data points of a metric's `data` (field `number`): checked, timed, counted.
fn points(number: u32, data: &[u8], summary: &mut Summary, ctx: &Context) -> Option<()> {
    let (container, point): (&Schema, &Schema) = match number {
        5 => (&GAUGE, &NUMBER_POINT),
        7 => (&SUM, &NUMBER_POINT),
        9 => (&HISTOGRAM, &HISTOGRAM_POINT),
        10 => (&EXPONENTIAL_HISTOGRAM, &EXPONENTIAL_HISTOGRAM_POINT),
        _ => (&SUMMARY, &SUMMARY_POINT),
    };
    walk(data, container, ITEM_DEPTH - 1, |number, value, _| {
        if number == 1 {
            ctx.record(value.bytes(), point, "data point")?;
            if ctx.limits_only {
                return Some(());
            }
            let mut time = 0;
            walk(value.bytes(), point, ITEM_DEPTH - 2, |number, value, _| {
                if number == 3 {
                    time = value.u64();
                }
                Some(())
            })?;
            valid_time(time).then_some(())?;
            summary.time(time);
            summary.events += 1;
        }
        Some(())
    })
}

#[cfg(test)]
mod tests;
