//! The `tracing` bridge (feature `tracing`): a [`Layer`] that records what
//! `tracing` sees as framelake events. Entering a span begins a framelake
//! span of its name and leaving it ends it (so a span entered on each poll
//! of a future is a span per poll, as with `#[span_fn]`); an event is a log
//! record at its level, its message followed by its other fields
//! (`"missing textures count=3"`). Span fields are not recorded.
//!
//! ```
//! use tracing_subscriber::layer::SubscriberExt;
//! let subscriber = tracing_subscriber::registry().with(framelake_sdk::tracing_bridge::Layer::new());
//! tracing::subscriber::with_default(subscriber, || {
//!     let _load = tracing::info_span!("load").entered();
//!     tracing::warn!(count = 3, "missing textures");
//! });
//! ```

use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt::Write;
use std::sync::Mutex;

use tracing_core::field::{Field, Visit};
use tracing_core::span::Id;
use tracing_core::{Event, Level, Metadata, Subscriber};
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;

use crate::buffer::lock;
use crate::callsite::{self, FxMap};
use crate::{Descriptor, DescriptorKind};

/// Records `tracing` spans and events as framelake spans and logs; needs a
/// subscriber that looks spans up (`tracing_subscriber::registry()`).
#[derive(Debug, Default, Clone, Copy)]
pub struct Layer {
    _private: (),
}

impl Layer {
    pub fn new() -> Self {
        Layer::default()
    }
}

impl<S> tracing_subscriber::Layer<S> for Layer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_enter(&self, id: &Id, ctx: Context<'_, S>) {
        if crate::is_enabled()
            && let Some(metadata) = ctx.metadata(id)
        {
            crate::span_begin(descriptor(metadata));
        }
    }

    fn on_exit(&self, id: &Id, ctx: Context<'_, S>) {
        if crate::is_enabled()
            && let Some(metadata) = ctx.metadata(id)
        {
            crate::span_end(descriptor(metadata));
        }
    }

    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        if !crate::is_enabled() || crate::on_own_thread() {
            return;
        }
        let descriptor = descriptor(event.metadata());
        // Formatting may run user code that logs through `tracing` again:
        // the nested event then formats into buffers of its own.
        let record = |text: &mut Text| {
            text.message.clear();
            text.fields.clear();
            event.record(text);
            let (message, fields) = (&text.message, &text.fields);
            let space = if message.is_empty() || fields.is_empty() {
                ""
            } else {
                " "
            };
            crate::log(descriptor, format_args!("{message}{space}{fields}"));
        };
        let reused = TEXT.with(|text| match text.try_borrow_mut() {
            Ok(mut text) => {
                record(&mut text);
                true
            }
            Err(_) => false,
        });
        if !reused {
            record(&mut Text::default());
        }
    }
}

/// An event's message and its other fields, formatted.
#[derive(Default)]
struct Text {
    message: String,
    fields: String,
}

impl Visit for Text {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message.push_str(value);
        } else {
            self.record_debug(field, &value);
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        let _ = if field.name() == "message" {
            write!(self.message, "{value:?}")
        } else {
            let space = if self.fields.is_empty() { "" } else { " " };
            write!(self.fields, "{space}{}={value:?}", field.name())
        };
    }
}

thread_local! {
    static TEXT: RefCell<Text> = RefCell::default();
    /// This thread's view of [`CALLSITES`], by the metadata's address.
    static CACHE: RefCell<FxMap<usize, &'static Descriptor>> = RefCell::default();
}

/// One descriptor per call site (metadata is `'static`, one per call site).
static CALLSITES: Mutex<Option<HashMap<usize, &'static Descriptor>>> = Mutex::new(None);

fn descriptor(metadata: &'static Metadata<'static>) -> &'static Descriptor {
    let key = metadata as *const Metadata<'static> as usize;
    let cached = CACHE.with(|cache| cache.try_borrow().ok()?.get(&key).copied());
    if let Some(descriptor) = cached {
        return descriptor;
    }
    let descriptor = *lock(&CALLSITES)
        .get_or_insert_with(HashMap::new)
        .entry(key)
        .or_insert_with(|| {
            let (kind, level) = if metadata.is_span() {
                (DescriptorKind::Span, 0)
            } else {
                (DescriptorKind::Log, level(metadata.level()))
            };
            callsite::descriptor(
                kind,
                level,
                metadata.name(),
                metadata.target(),
                metadata.file().unwrap_or(""),
                metadata.line().unwrap_or(0),
            )
        });
    CACHE.with(|cache| {
        if let Ok(mut cache) = cache.try_borrow_mut() {
            cache.insert(key, descriptor);
        }
    });
    descriptor
}

fn level(level: &Level) -> u8 {
    match *level {
        Level::ERROR => 1,
        Level::WARN => 2,
        Level::INFO => 3,
        Level::DEBUG => 4,
        Level::TRACE => 5,
    }
}
