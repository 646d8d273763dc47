//! framelake's native SDK: spans, logs, metrics and frames at a few
//! nanoseconds each in the calling thread, sent in the native wire format
//! (`framelake-native-format`, `docs/native-format.md`).
//!
//! The calling thread appends fixed-layout events to a buffer of its own
//! (`buffer`); a [`collect::Collector`] takes what every thread published
//! and encodes the messages for the server; [`send::Telemetry`] sends them.
//!
//! A game's CPU trace can be sampled by frame ([`collect::Sampling`]): the
//! program marks frames with [`frame`] on one thread, and only the blocks of
//! interesting frames are sent (slow ones, against the moving average of
//! recent frames; those holding an [`instant`]; a small random share), the
//! others being dropped and counted (`send::Stats::sampled_out_blocks`).
//! Logs and metrics are always sent. Sampling is off by default.
//!
//! Features: `enabled` (default; without it every recording function and
//! macro compiles to nothing; at run time see [`set_enabled`]), `send`
//! (default: the sending thread), `macros` (default: `#[span_fn]`),
//! `tracing` (`tracing_bridge`: a `tracing_subscriber` layer) and `log`
//! (`log_bridge`: a `log` logger).
//!
//! ```
//! use framelake_sdk::{fmetric, info, span_fn, span_scope};
//! fn update(frame: u64) {
//!     span_scope!("update");
//!     info!("frame {frame} updated");
//!     fmetric!("frame_time", "ms", 16.6);
//! }
//! #[span_fn]
//! fn load_level(level: u32) -> u32 {
//!     level + 1
//! }
//! #[span_fn("fetch asset")]
//! async fn fetch(name: &str) -> usize {
//!     name.len()
//! }
//! update(1);
//! load_level(3);
//! ```

mod buffer;
#[cfg(any(feature = "tracing", feature = "log"))]
mod callsite;
pub mod collect;
mod ids;
mod instrument;
#[cfg(feature = "log")]
pub mod log_bridge;
mod sample;
#[cfg(feature = "send")]
pub mod send;
pub mod ticks;
#[cfg(feature = "tracing")]
pub mod tracing_bridge;

pub use buffer::{Descriptor, dropped_events, set_memory_limit};
pub use framelake_native_format::DescriptorKind;
#[cfg(feature = "macros")]
pub use framelake_sdk_macros::span_fn;
pub use instrument::Instrumented;

use std::sync::atomic::{AtomicBool, Ordering};

use framelake_native_format::kind;

static ENABLED: AtomicBool = AtomicBool::new(true);

#[cfg(any(feature = "send", feature = "tracing", feature = "log"))]
thread_local! {
    /// Set on the SDK's own threads: what their dependencies log through
    /// the bridges is not recorded (it would be sent, and logged again).
    static OWN_THREAD: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

#[cfg(feature = "send")]
pub(crate) fn mark_own_thread() {
    OWN_THREAD.with(|own| own.set(true));
}

#[cfg(any(feature = "tracing", feature = "log"))]
pub(crate) fn on_own_thread() -> bool {
    OWN_THREAD.with(std::cell::Cell::get)
}

/// Switches recording on or off while the program runs (on at start).
/// Off, each recording call costs one relaxed load; spans begun before
/// still end (their guards remember), so nesting stays whole.
pub fn set_enabled(on: bool) {
    ENABLED.store(on, Ordering::Relaxed);
}

/// Whether recording is on (never without the `enabled` feature, which
/// compiles every recording call out).
#[inline(always)]
pub fn is_enabled() -> bool {
    cfg!(feature = "enabled") && ENABLED.load(Ordering::Relaxed)
}

/// Begins a span of `descriptor` (ended by [`span_end`] on the same thread).
#[inline(always)]
pub fn span_begin(descriptor: &'static Descriptor) {
    if is_enabled() {
        buffer::push2(descriptor.id() | kind::SPAN_BEGIN, ticks::now() as u64);
    }
}

/// Ends the innermost span, which must be of `descriptor`. (When recording
/// was switched off and on between a begin and its end, the collector
/// keeps the thread's spans well nested.)
#[inline(always)]
pub fn span_end(descriptor: &'static Descriptor) {
    if is_enabled() {
        buffer::push2(descriptor.id() | kind::SPAN_END, ticks::now() as u64);
    }
}

/// A span from its creation to its drop (when recording was on at its
/// creation).
#[must_use = "the span ends when this is dropped"]
pub struct SpanGuard(Option<&'static Descriptor>);

impl SpanGuard {
    #[inline(always)]
    pub fn begin(descriptor: &'static Descriptor) -> Self {
        if !is_enabled() {
            return SpanGuard(None);
        }
        buffer::push2(descriptor.id() | kind::SPAN_BEGIN, ticks::now() as u64);
        SpanGuard(Some(descriptor))
    }
}

impl Drop for SpanGuard {
    #[inline(always)]
    fn drop(&mut self) {
        if let Some(descriptor) = self.0 {
            buffer::push2(descriptor.id() | kind::SPAN_END, ticks::now() as u64);
        }
    }
}

/// Marks the start of frame `number` (and the end of the one before).
#[inline(always)]
pub fn frame(number: u64) {
    if is_enabled() {
        buffer::push2(number << 3 | kind::FRAME, ticks::now() as u64);
    }
}

/// A user-marked moment: the sampler keeps the CPU trace of its frame.
#[inline(always)]
pub fn instant(descriptor: &'static Descriptor) {
    if is_enabled() {
        buffer::push2(descriptor.id() | kind::INSTANT, ticks::now() as u64);
    }
}

/// An integer metric value.
#[inline(always)]
pub fn int_metric(descriptor: &'static Descriptor, value: i64) {
    if is_enabled() {
        let id = descriptor.id() | kind::METRIC_INT;
        buffer::push3(id, ticks::now() as u64, value as u64);
    }
}

/// A float metric value.
#[inline(always)]
pub fn float_metric(descriptor: &'static Descriptor, value: f64) {
    if is_enabled() {
        let id = descriptor.id() | kind::METRIC_FLOAT;
        buffer::push3(id, ticks::now() as u64, value.to_bits());
    }
}

/// A log record; its message is formatted in the thread's buffer.
#[inline]
pub fn log(descriptor: &'static Descriptor, args: std::fmt::Arguments<'_>) {
    if is_enabled() {
        buffer::push_log(descriptor, ticks::now(), args);
    }
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

/// A log record at a level (1 error … 5 trace): the macros' common part.
#[doc(hidden)]
#[macro_export]
macro_rules! __framelake_log {
    ($level:expr, $fmt:literal $($args:tt)*) => {{
        static __FRAMELAKE_LOG: $crate::Descriptor = $crate::Descriptor {
            kind: $crate::DescriptorKind::Log,
            level: $level,
            line: line!(),
            name: $fmt,
            target: module_path!(),
            file: file!(),
            unit: "",
        };
        $crate::log(&__FRAMELAKE_LOG, format_args!($fmt $($args)*));
    }};
}

/// An error log record, formatted: `error!("lost {n} packets")`.
#[macro_export]
macro_rules! error {
    ($($t:tt)+) => { $crate::__framelake_log!(1, $($t)+) };
}

/// A warning log record, formatted.
#[macro_export]
macro_rules! warn {
    ($($t:tt)+) => { $crate::__framelake_log!(2, $($t)+) };
}

/// An info log record, formatted.
#[macro_export]
macro_rules! info {
    ($($t:tt)+) => { $crate::__framelake_log!(3, $($t)+) };
}

/// A debug log record, formatted.
#[macro_export]
macro_rules! debug {
    ($($t:tt)+) => { $crate::__framelake_log!(4, $($t)+) };
}

/// A trace log record, formatted.
#[macro_export]
macro_rules! trace {
    ($($t:tt)+) => { $crate::__framelake_log!(5, $($t)+) };
}

/// A metric descriptor: the macros' common part.
#[doc(hidden)]
#[macro_export]
macro_rules! __framelake_metric {
    ($name:expr, $unit:expr) => {{
        static __FRAMELAKE_METRIC: $crate::Descriptor = $crate::Descriptor {
            kind: $crate::DescriptorKind::Metric,
            level: 0,
            line: line!(),
            name: $name,
            target: module_path!(),
            file: file!(),
            unit: $unit,
        };
        &__FRAMELAKE_METRIC
    }};
}

/// An integer metric value: `imetric!("entities", "{entity}", n)`.
#[macro_export]
macro_rules! imetric {
    ($name:expr, $unit:expr, $value:expr) => {
        $crate::int_metric($crate::__framelake_metric!($name, $unit), $value)
    };
}

/// A float metric value: `fmetric!("frame_time", "ms", t)`.
#[macro_export]
macro_rules! fmetric {
    ($name:expr, $unit:expr, $value:expr) => {
        $crate::float_metric($crate::__framelake_metric!($name, $unit), $value)
    };
}
