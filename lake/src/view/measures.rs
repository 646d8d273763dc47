//! `measures`: one row per OTLP metric data point. Number points carry a
//! `value` (and `int_value` when sent as an integer); histograms keep their
//! buckets, exponential histograms their scale and both bucket ranges,
//! summaries their quantiles; every point keeps its exemplars.

use std::sync::{Arc, LazyLock};

use arrow::array::{
    ArrayBuilder, ArrayRef, BooleanBuilder, Float64Builder, Int32Builder, Int64Builder,
    ListBuilder, StringBuilder, UInt32Builder, UInt64Builder,
};
use arrow::datatypes::{DataType, Field, Fields, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::metrics::v1::exponential_histogram_data_point::Buckets;
use opentelemetry_proto::tonic::metrics::v1::summary_data_point::ValueAtQuantile;
use opentelemetry_proto::tonic::metrics::v1::{
    Exemplar, Metric, exemplar, metric, number_data_point,
};
use prost::Message;

use super::columns::{Attributes, Ids, Times, item_field, struct_list};
use super::{
    BlockSource, Common, Origin, attributes_type, batch, common_fields, native, timestamp_type,
};

static QUANTILE_FIELDS: LazyLock<Fields> = LazyLock::new(|| {
    Fields::from(vec![
        Field::new("quantile", DataType::Float64, false),
        Field::new("value", DataType::Float64, false),
    ])
});

static EXEMPLAR_FIELDS: LazyLock<Fields> = LazyLock::new(|| {
    Fields::from(vec![
        Field::new("time", timestamp_type(), true),
        Field::new("value", DataType::Float64, true),
        Field::new("int_value", DataType::Int64, true),
        Field::new("trace_id", DataType::FixedSizeBinary(16), true),
        Field::new("span_id", DataType::FixedSizeBinary(8), true),
        Field::new("filtered_attributes", attributes_type(), false),
    ])
});

fn list_of(name: &str, item: DataType) -> Field {
    Field::new_list(name, Field::new_list_field(item, true), true)
}

pub(super) static SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    let mut fields = common_fields();
    fields.extend([
        Field::new("name", DataType::Utf8, false),
        Field::new("description", DataType::Utf8, false),
        Field::new("unit", DataType::Utf8, false),
        Field::new("metadata", attributes_type(), false),
        // gauge, sum, histogram, exponential_histogram or summary.
        Field::new("type", DataType::Utf8, false),
        // OTLP's AggregationTemporality: 0 unspecified (gauges, summaries), 1 delta, 2 cumulative.
        Field::new("aggregation_temporality", DataType::Int32, false),
        Field::new("is_monotonic", DataType::Boolean, true),
        Field::new("start_time", timestamp_type(), true),
        Field::new("time", timestamp_type(), false),
        Field::new("attributes", attributes_type(), false),
        Field::new("flags", DataType::UInt32, false),
        Field::new("value", DataType::Float64, true),
        Field::new("int_value", DataType::Int64, true),
        Field::new("count", DataType::UInt64, true),
        Field::new("sum", DataType::Float64, true),
        Field::new("min", DataType::Float64, true),
        Field::new("max", DataType::Float64, true),
        list_of("bucket_counts", DataType::UInt64),
        list_of("explicit_bounds", DataType::Float64),
        Field::new("scale", DataType::Int32, true),
        Field::new("zero_count", DataType::UInt64, true),
        Field::new("zero_threshold", DataType::Float64, true),
        Field::new("positive_offset", DataType::Int32, true),
        list_of("positive_bucket_counts", DataType::UInt64),
        Field::new("negative_offset", DataType::Int32, true),
        list_of("negative_bucket_counts", DataType::UInt64),
        Field::new(
            "quantiles",
            DataType::List(item_field(&QUANTILE_FIELDS)),
            false,
        ),
        Field::new(
            "exemplars",
            DataType::List(item_field(&EXEMPLAR_FIELDS)),
            false,
        ),
    ]);
    Arc::new(Schema::new(fields))
});

/// One data point, whatever its type, as the columns see it.
#[derive(Default)]
struct Point<'a> {
    start: u64,
    time: u64,
    attributes: &'a [KeyValue],
    flags: u32,
    exemplars: &'a [Exemplar],
    value: Option<f64>,
    int_value: Option<i64>,
    count: Option<u64>,
    sum: Option<f64>,
    min: Option<f64>,
    max: Option<f64>,
    bucket_counts: Option<&'a [u64]>,
    explicit_bounds: Option<&'a [f64]>,
    scale: Option<i32>,
    zero_count: Option<u64>,
    zero_threshold: Option<f64>,
    positive: Option<&'a Buckets>,
    negative: Option<&'a Buckets>,
    quantiles: &'a [ValueAtQuantile],
}

/// What a metric's points share.
struct Series<'a> {
    metric: &'a Metric,
    kind: &'static str,
    temporality: i32,
    is_monotonic: Option<bool>,
}

impl MeasureRows {
    pub(super) fn append_request(
        &mut self,
        payload: &[u8],
        source: &BlockSource,
    ) -> Result<(), prost::DecodeError> {
        let request = ExportMetricsServiceRequest::decode(payload)?;
        for (origin, metrics) in self.common.scoped(source, &request.resource_metrics) {
            for m in metrics {
                self.append_metric(origin, m);
            }
        }
        Ok(())
    }

    /// Appends a native metric block's values as gauges. An integer metric
    /// of unit `ticks` (a duration on the process's tick clock, such as the
    /// SDK's `frame.duration`) is converted to nanoseconds.
    pub(super) fn append_native(
        &mut self,
        payload: &[u8],
        source: &BlockSource,
    ) -> Result<(), String> {
        use framelake_native_format::Event;
        use opentelemetry_proto::tonic::common::v1::InstrumentationScope;
        let opened = native::open(payload, source)?;
        let parsed = opened.parse()?;
        let mut series = std::collections::HashMap::new();
        for event in parsed.events() {
            let (descriptor, ticks, value, int_value) = match event {
                Ok(Event::MetricFloat {
                    descriptor,
                    ticks,
                    value,
                }) => (descriptor, ticks, value, None),
                Ok(Event::MetricInt {
                    descriptor,
                    ticks,
                    value,
                }) => (descriptor, ticks, value as f64, Some(value)),
                _ => continue,
            };
            let (origin, metric) = series.entry(descriptor).or_insert_with(|| {
                let d = &parsed.descriptors[&descriptor];
                let origin = self.common.origin(&Origin {
                    source,
                    service_name: &opened.process.service_name,
                    resource: &opened.resource,
                    scope: &InstrumentationScope {
                        name: d.target.clone(),
                        ..Default::default()
                    },
                });
                // A duration in ticks is shown in nanoseconds.
                let unit = if d.unit == TICKS { "ns" } else { &d.unit };
                let metric = Metric {
                    name: d.name.clone(),
                    unit: unit.to_owned(),
                    ..Default::default()
                };
                (origin, metric)
            });
            let (value, int_value) = match int_value {
                Some(elapsed) if parsed.descriptors[&descriptor].unit == TICKS => {
                    let nanos =
                        opened.clock.time(ticks.saturating_add(elapsed)) - opened.clock.time(ticks);
                    (nanos as f64, Some(nanos))
                }
                _ => (value, int_value),
            };
            let s = Series {
                metric,
                kind: "gauge",
                temporality: 0,
                is_monotonic: None,
            };
            let point = Point {
                time: opened.clock.time(ticks).max(0) as u64,
                value: Some(value),
                int_value,
                ..Point::default()
            };
            self.append(*origin, &s, point);
        }
        Ok(())
    }

    pub(super) fn len(&self) -> usize {
        self.flags.len()
    }
}

/// The unit of a native integer metric counted in the process's ticks.
const TICKS: &str = "ticks";

/// Builders of `measures` rows.
#[derive(Debug, Default)]
pub(super) struct MeasureRows {
    common: Common,
    name: StringBuilder,
    description: StringBuilder,
    unit: StringBuilder,
    metadata: Attributes,
    kind: StringBuilder,
    temporality: Int32Builder,
    is_monotonic: BooleanBuilder,
    start: Times,
    time: Times,
    attributes: Attributes,
    flags: UInt32Builder,
    value: Float64Builder,
    int_value: Int64Builder,
    count: UInt64Builder,
    sum: Float64Builder,
    min: Float64Builder,
    max: Float64Builder,
    bucket_counts: ListBuilder<UInt64Builder>,
    explicit_bounds: ListBuilder<Float64Builder>,
    scale: Int32Builder,
    zero_count: UInt64Builder,
    zero_threshold: Float64Builder,
    positive_offset: Int32Builder,
    positive_counts: ListBuilder<UInt64Builder>,
    negative_offset: Int32Builder,
    negative_counts: ListBuilder<UInt64Builder>,
    quantiles: Quantiles,
    exemplars: Exemplars,
}

impl MeasureRows {
    fn append_metric(&mut self, origin: u32, m: &Metric) {
        let series = |kind, temporality, is_monotonic| Series {
            metric: m,
            kind,
            temporality,
            is_monotonic,
        };
        match &m.data {
            None => {}
            Some(metric::Data::Gauge(g)) => {
                let s = series("gauge", 0, None);
                for p in &g.data_points {
                    self.append(origin, &s, number(p));
                }
            }
            Some(metric::Data::Sum(sum)) => {
                let s = series("sum", sum.aggregation_temporality, Some(sum.is_monotonic));
                for p in &sum.data_points {
                    self.append(origin, &s, number(p));
                }
            }
            Some(metric::Data::Histogram(h)) => {
                let s = series("histogram", h.aggregation_temporality, None);
                for p in &h.data_points {
                    let point = Point {
                        start: p.start_time_unix_nano,
                        time: p.time_unix_nano,
                        attributes: &p.attributes,
                        flags: p.flags,
                        exemplars: &p.exemplars,
                        count: Some(p.count),
                        sum: p.sum,
                        min: p.min,
                        max: p.max,
                        bucket_counts: Some(&p.bucket_counts),
                        explicit_bounds: Some(&p.explicit_bounds),
                        ..Point::default()
                    };
                    self.append(origin, &s, point);
                }
            }
            Some(metric::Data::ExponentialHistogram(h)) => {
                let s = series("exponential_histogram", h.aggregation_temporality, None);
                for p in &h.data_points {
                    let point = Point {
                        start: p.start_time_unix_nano,
                        time: p.time_unix_nano,
                        attributes: &p.attributes,
                        flags: p.flags,
                        exemplars: &p.exemplars,
                        count: Some(p.count),
                        sum: p.sum,
                        min: p.min,
                        max: p.max,
                        scale: Some(p.scale),
                        zero_count: Some(p.zero_count),
                        zero_threshold: Some(p.zero_threshold),
                        positive: p.positive.as_ref(),
                        negative: p.negative.as_ref(),
                        ..Point::default()
                    };
                    self.append(origin, &s, point);
                }
            }
            Some(metric::Data::Summary(summary)) => {
                let s = series("summary", 0, None);
                for p in &summary.data_points {
                    let point = Point {
                        start: p.start_time_unix_nano,
                        time: p.time_unix_nano,
                        attributes: &p.attributes,
                        flags: p.flags,
                        count: Some(p.count),
                        sum: Some(p.sum),
                        quantiles: &p.quantile_values,
                        ..Point::default()
                    };
                    self.append(origin, &s, point);
                }
            }
        }
    }

    fn append(&mut self, origin: u32, s: &Series<'_>, p: Point<'_>) {
        self.common.append(origin);
        self.name.append_value(&s.metric.name);
        self.description.append_value(&s.metric.description);
        self.unit.append_value(&s.metric.unit);
        self.metadata.append(&s.metric.metadata);
        self.kind.append_value(s.kind);
        self.temporality.append_value(s.temporality);
        self.is_monotonic.append_option(s.is_monotonic);
        self.start.append_optional(p.start);
        self.time.append(p.time);
        self.attributes.append(p.attributes);
        self.flags.append_value(p.flags);
        self.value.append_option(p.value);
        self.int_value.append_option(p.int_value);
        self.count.append_option(p.count);
        self.sum.append_option(p.sum);
        self.min.append_option(p.min);
        self.max.append_option(p.max);
        append_list(&mut self.bucket_counts, p.bucket_counts);
        append_list(&mut self.explicit_bounds, p.explicit_bounds);
        self.scale.append_option(p.scale);
        self.zero_count.append_option(p.zero_count);
        self.zero_threshold.append_option(p.zero_threshold);
        // An exponential histogram without a bucket range has an empty one.
        let empty = Buckets::default();
        let range = |b: Option<&'_ Buckets>| p.scale.map(|_| b.unwrap_or(&empty).clone());
        let (positive, negative) = (range(p.positive), range(p.negative));
        self.positive_offset
            .append_option(positive.as_ref().map(|b| b.offset));
        append_list(
            &mut self.positive_counts,
            positive.as_ref().map(|b| &b.bucket_counts[..]),
        );
        self.negative_offset
            .append_option(negative.as_ref().map(|b| b.offset));
        append_list(
            &mut self.negative_counts,
            negative.as_ref().map(|b| &b.bucket_counts[..]),
        );
        self.quantiles.append(p.quantiles);
        self.exemplars.append(p.exemplars);
    }

    pub(super) fn finish(&mut self) -> RecordBatch {
        let mut columns = self.common.finish();
        columns.extend([
            Arc::new(self.name.finish()) as ArrayRef,
            Arc::new(self.description.finish()),
            Arc::new(self.unit.finish()),
            self.metadata.finish(),
            Arc::new(self.kind.finish()),
            Arc::new(self.temporality.finish()),
            Arc::new(self.is_monotonic.finish()),
            self.start.finish(),
            self.time.finish(),
            self.attributes.finish(),
            Arc::new(self.flags.finish()),
            Arc::new(self.value.finish()),
            Arc::new(self.int_value.finish()),
            Arc::new(self.count.finish()),
            Arc::new(self.sum.finish()),
            Arc::new(self.min.finish()),
            Arc::new(self.max.finish()),
            Arc::new(self.bucket_counts.finish()),
            Arc::new(self.explicit_bounds.finish()),
            Arc::new(self.scale.finish()),
            Arc::new(self.zero_count.finish()),
            Arc::new(self.zero_threshold.finish()),
            Arc::new(self.positive_offset.finish()),
            Arc::new(self.positive_counts.finish()),
            Arc::new(self.negative_offset.finish()),
            Arc::new(self.negative_counts.finish()),
            self.quantiles.finish(),
            self.exemplars.finish(),
        ]);
        batch(&SCHEMA, columns)
    }
}

fn number(p: &opentelemetry_proto::tonic::metrics::v1::NumberDataPoint) -> Point<'_> {
    let (value, int_value) = match p.value {
        Some(number_data_point::Value::AsDouble(d)) => (Some(d), None),
        Some(number_data_point::Value::AsInt(i)) => (Some(i as f64), Some(i)),
        None => (None, None),
    };
    Point {
        start: p.start_time_unix_nano,
        time: p.time_unix_nano,
        attributes: &p.attributes,
        flags: p.flags,
        exemplars: &p.exemplars,
        value,
        int_value,
        ..Point::default()
    }
}

fn append_list<B, T>(builder: &mut ListBuilder<B>, values: Option<&[T]>)
where
    B: arrow::array::ArrayBuilder + Extend<Option<T>>,
    T: Copy,
{
    match values {
        Some(values) => {
            builder.values().extend(values.iter().map(|&v| Some(v)));
            builder.append(true);
        }
        None => builder.append(false),
    }
}

/// The `quantiles` column.
#[derive(Debug)]
struct Quantiles {
    offsets: Vec<i32>,
    quantile: Float64Builder,
    value: Float64Builder,
}

impl Default for Quantiles {
    fn default() -> Self {
        Quantiles {
            offsets: vec![0],
            quantile: Float64Builder::new(),
            value: Float64Builder::new(),
        }
    }
}

impl Quantiles {
    fn append(&mut self, quantiles: &[ValueAtQuantile]) {
        for q in quantiles {
            self.quantile.append_value(q.quantile);
            self.value.append_value(q.value);
        }
        self.offsets.push(self.quantile.len() as i32);
    }

    fn finish(&mut self) -> ArrayRef {
        let children = vec![
            Arc::new(self.quantile.finish()) as ArrayRef,
            Arc::new(self.value.finish()),
        ];
        struct_list(&QUANTILE_FIELDS, &mut self.offsets, children)
    }
}

/// The `exemplars` column.
#[derive(Debug)]
struct Exemplars {
    offsets: Vec<i32>,
    time: Times,
    value: Float64Builder,
    int_value: Int64Builder,
    trace_id: Ids,
    span_id: Ids,
    attributes: Attributes,
}

impl Default for Exemplars {
    fn default() -> Self {
        Exemplars {
            offsets: vec![0],
            time: Times::default(),
            value: Float64Builder::new(),
            int_value: Int64Builder::new(),
            trace_id: Ids::new(16),
            span_id: Ids::new(8),
            attributes: Attributes::default(),
        }
    }
}

impl Exemplars {
    fn append(&mut self, exemplars: &[Exemplar]) {
        for e in exemplars {
            self.time.append_optional(e.time_unix_nano);
            let (value, int_value) = match e.value {
                Some(exemplar::Value::AsDouble(d)) => (Some(d), None),
                Some(exemplar::Value::AsInt(i)) => (Some(i as f64), Some(i)),
                None => (None, None),
            };
            self.value.append_option(value);
            self.int_value.append_option(int_value);
            self.trace_id.append(&e.trace_id);
            self.span_id.append(&e.span_id);
            self.attributes.append(&e.filtered_attributes);
        }
        self.offsets.push(self.value.len() as i32);
    }

    fn finish(&mut self) -> ArrayRef {
        let children = vec![
            self.time.finish(),
            Arc::new(self.value.finish()) as ArrayRef,
            Arc::new(self.int_value.finish()),
            self.trace_id.finish(),
            self.span_id.finish(),
            self.attributes.finish(),
        ];
        struct_list(&EXEMPLAR_FIELDS, &mut self.offsets, children)
    }
}
