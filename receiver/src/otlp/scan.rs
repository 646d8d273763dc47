//! The fast path for protobuf requests: one pass over the bytes as received
//! that validates the whole request (see [`wire`](super::wire)) and indexes
//! each resource (events, time range, where it lies), building nothing.
//!
//! It answers `None` whenever prost must decide instead: malformed or unusual
//! bytes (a repeated `resource`, a metric with two kinds of data), and any
//! invalid item, since dropping items means encoding the resource anew.

use super::schema::{
    EXPONENTIAL_HISTOGRAM, EXPONENTIAL_HISTOGRAM_POINT, GAUGE, HISTOGRAM, HISTOGRAM_POINT,
    LOG_RECORD, LOGS_REQUEST, METRIC, METRICS_REQUEST, NUMBER_POINT, RESOURCE, RESOURCE_LOGS,
    RESOURCE_METRICS, RESOURCE_SPANS, SCOPE_LOGS, SCOPE_METRICS, SCOPE_SPANS, SPAN, SUM, SUMMARY,
    SUMMARY_POINT, TRACES_REQUEST,
};
use super::signals::{Summary, log_time, valid_id};
use super::wire::{MAX_DEPTH, Schema, validate, walk};

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
    /// Checks and indexes one item (span, log record, metric); `now` stands in
    /// for missing log timestamps.
    item: fn(&[u8], &mut Summary, u64) -> Option<()>,
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

/// Validates and indexes a request; `None` when prost must decide (see the module docs).
pub(crate) fn scan<'a>(shape: &Shape, body: &'a [u8], now: u64) -> Option<Vec<Scanned<'a>>> {
    let mut resources = Vec::new();
    walk(body, shape.request, MAX_DEPTH, |number, value, range| {
        if number == 1 {
            resources.push(resource(shape, &body[range], value.bytes(), now)?);
        }
        Some(())
    })?;
    Some(resources)
}

fn resource<'a>(shape: &Shape, entry: &'a [u8], msg: &'a [u8], now: u64) -> Option<Scanned<'a>> {
    let mut resource = None;
    let mut summary = Summary::default();
    walk(msg, shape.resource, MAX_DEPTH - 1, |number, value, _| {
        match number {
            1 => {
                // prost merges a repeated `resource`; leave that to prost.
                if resource.replace(value.bytes()).is_some() {
                    return None;
                }
                validate(value.bytes(), &RESOURCE, MAX_DEPTH - 2)?;
            }
            2 => walk(
                value.bytes(),
                shape.scope,
                MAX_DEPTH - 2,
                |number, value, _| {
                    if number == 2 {
                        (shape.item)(value.bytes(), &mut summary, now)?;
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

fn span(buf: &[u8], summary: &mut Summary, _now: u64) -> Option<()> {
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
        && valid_id(parent_id, 8, true);
    valid.then_some(())?;
    summary.time(start);
    summary.time(end.max(start));
    summary.events += 1;
    Some(())
}

fn log_record(buf: &[u8], summary: &mut Summary, now: u64) -> Option<()> {
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
    (valid_id(trace_id, 16, true) && valid_id(span_id, 8, true)).then_some(())?;
    summary.time(log_time(time, observed, now));
    summary.events += 1;
    Some(())
}

fn metric(buf: &[u8], summary: &mut Summary, _now: u64) -> Option<()> {
    let mut named = false;
    let mut data = None;
    walk(buf, &METRIC, ITEM_DEPTH, |number, value, _| {
        match number {
            1 => named = !value.bytes().is_empty(),
            // prost merges or replaces a repeated `data`; leave that to prost.
            5 | 7 | 9 | 10 | 11 => data
                .replace((number, value.bytes()))
                .is_none()
                .then_some(())?,
            _ => {}
        }
        Some(())
    })?;
    named.then_some(())?;
    let Some((number, data)) = data else {
        return Some(());
    };
    let (container, point): (&Schema, &Schema) = match number {
        5 => (&GAUGE, &NUMBER_POINT),
        7 => (&SUM, &NUMBER_POINT),
        9 => (&HISTOGRAM, &HISTOGRAM_POINT),
        10 => (&EXPONENTIAL_HISTOGRAM, &EXPONENTIAL_HISTOGRAM_POINT),
        _ => (&SUMMARY, &SUMMARY_POINT),
    };
    walk(data, container, ITEM_DEPTH - 1, |number, value, _| {
        if number == 1 {
            let mut time = 0;
            walk(value.bytes(), point, ITEM_DEPTH - 2, |number, value, _| {
                if number == 3 {
                    time = value.u64();
                }
                Some(())
            })?;
            summary.time(time);
            summary.events += 1;
        }
        Some(())
    })
}

#[cfg(test)]
mod tests;
