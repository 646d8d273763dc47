//! framelake's native SDK: spans, logs, metrics and frames at a few
//! nanoseconds each in the calling thread, and the native wire format it
//! sends (`docs/native-format.md`).
//!
//! The calling thread appends fixed-layout events to a buffer of its own
//! ([`buffer`]); a [`collect::Collector`] takes what every thread published
//! and encodes the messages for the server.

mod buffer;
pub mod collect;
pub mod format;
mod ids;
#[cfg(feature = "send")]
pub mod send;
pub mod ticks;

pub use buffer::{Descriptor, dropped_events, set_memory_limit};
pub use format::DescriptorKind;

use format::kind;

/// Begins a span of `descriptor` (ended by [`span_end`] on the same thread).
#[inline(always)]
pub fn span_begin(descriptor: &'static Descriptor) {
    buffer::push2(descriptor.id() | kind::SPAN_BEGIN, ticks::now() as u64);
}

/// Ends the innermost span, which must be of `descriptor`.
#[inline(always)]
pub fn span_end(descriptor: &'static Descriptor) {
    buffer::push2(descriptor.id() | kind::SPAN_END, ticks::now() as u64);
}

/// A span from its creation to its drop.
#[must_use = "the span ends when this is dropped"]
pub struct SpanGuard(&'static Descriptor);

impl SpanGuard {
    #[inline(always)]
    pub fn begin(descriptor: &'static Descriptor) -> Self {
        span_begin(descriptor);
        SpanGuard(descriptor)
    }
}

impl Drop for SpanGuard {
    #[inline(always)]
    fn drop(&mut self) {
        span_end(self.0);
    }
}

/// Marks the start of frame `number` (and the end of the one before).
#[inline(always)]
pub fn frame(number: u64) {
    buffer::push2(number << 3 | kind::FRAME, ticks::now() as u64);
}

/// A user-marked moment: the sampler keeps the CPU trace of its frame.
#[inline(always)]
pub fn instant(descriptor: &'static Descriptor) {
    buffer::push2(descriptor.id() | kind::INSTANT, ticks::now() as u64);
}

/// An integer metric value.
#[inline(always)]
pub fn int_metric(descriptor: &'static Descriptor, value: i64) {
    buffer::push3(
        descriptor.id() | kind::METRIC_INT,
        ticks::now() as u64,
        value as u64,
    );
}

/// A float metric value.
#[inline(always)]
pub fn float_metric(descriptor: &'static Descriptor, value: f64) {
    buffer::push3(
        descriptor.id() | kind::METRIC_FLOAT,
        ticks::now() as u64,
        value.to_bits(),
    );
}

/// A log record; its message is formatted in the thread's buffer.
#[inline]
pub fn log(descriptor: &'static Descriptor, args: std::fmt::Arguments<'_>) {
    buffer::push_log(descriptor, ticks::now(), args);
}

/// A span over the rest of the enclosing block: `span_scope!("update")`.
#[macro_export]
macro_rules! span_scope {
    ($name:expr) => {
        static __FRAMELAKE_SPAN: $crate::Descriptor = $crate::Descriptor {
            kind: $crate::DescriptorKind::Span,
            level: 0,
            line: line!(),
            name: $name,
            target: module_path!(),
            file: file!(),
            unit: "",
        };
        let _framelake_span = $crate::SpanGuard::begin(&__FRAMELAKE_SPAN);
    };
}
