//! The `log` bridge (feature `log`): a [`log::Log`] that records each
//! record as a framelake log record of its level, target, file and line.
//!
//! ```
//! framelake_sdk::log_bridge::init(log::LevelFilter::Info).expect("the first logger");
//! log::info!("level {} loaded", 3);
//! ```

use std::cell::RefCell;
use std::collections::HashMap;
use std::hash::Hasher;
use std::sync::Mutex;

use log::{Level, LevelFilter, Metadata, Record, SetLoggerError};

use crate::buffer::lock;
use crate::callsite::{self, Fx, FxMap};
use crate::{Descriptor, DescriptorKind};

/// Records `log` records as framelake logs (what [`init`] installs; usable
/// inside a logger of one's own).
#[derive(Debug, Default, Clone, Copy)]
pub struct Logger;

/// Installs [`Logger`] as the `log` crate's logger, passing records up to
/// `max_level`. Fails when a logger was installed already.
pub fn init(max_level: LevelFilter) -> Result<(), SetLoggerError> {
    static LOGGER: Logger = Logger;
    log::set_logger(&LOGGER)?;
    log::set_max_level(max_level);
    Ok(())
}

impl log::Log for Logger {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        crate::is_enabled() && !crate::on_own_thread()
    }

    fn log(&self, record: &Record<'_>) {
        if self.enabled(record.metadata()) {
            crate::log(descriptor(record), *record.args());
        }
    }

    fn flush(&self) {}
}

/// What tells call sites apart (`log` has no call site identity).
#[derive(Hash, PartialEq, Eq)]
struct Key {
    file: String,
    line: u32,
    target: String,
    level: u8,
}

/// Distinct call sites kept at most: beyond, records share a descriptor per
/// level (targets made at run time must not leak memory without end).
const MAX_CALLSITES: usize = 4096;

static CALLSITES: Mutex<Option<HashMap<Key, &'static Descriptor>>> = Mutex::new(None);

thread_local! {
    /// This thread's view of [`CALLSITES`], by a hash of the key's
    /// addresses (checked against the descriptor found).
    static CACHE: RefCell<FxMap<u64, &'static Descriptor>> = RefCell::default();
}

fn descriptor(record: &Record<'_>) -> &'static Descriptor {
    let (file, line, target) = (
        record.file().unwrap_or(""),
        record.line().unwrap_or(0),
        record.target(),
    );
    let level = level(record.level());
    // Call sites' strings are mostly `'static`: their addresses tell them
    // apart cheaply (the descriptor found is checked by content).
    let hash = {
        let mut h = Fx::default();
        for word in [
            file.as_ptr() as usize,
            file.len(),
            target.as_ptr() as usize,
            target.len(),
        ] {
            h.write_usize(word);
        }
        h.write_u64(u64::from(line) << 8 | u64::from(level));
        h.finish()
    };
    let same =
        |d: &Descriptor| d.line == line && d.level == level && d.file == file && d.target == target;
    let cached = CACHE.with(|cache| cache.try_borrow().ok()?.get(&hash).copied());
    if let Some(descriptor) = cached.filter(|d| same(d)) {
        return descriptor;
    }
    let key = Key {
        file: file.to_owned(),
        line,
        target: target.to_owned(),
        level,
    };
    let mut callsites = lock(&CALLSITES);
    let callsites = callsites.get_or_insert_with(HashMap::new);
    let descriptor = match callsites.get(&key) {
        Some(descriptor) => *descriptor,
        None if callsites.len() >= MAX_CALLSITES => return overflow(level),
        None => {
            let file = record.file_static().unwrap_or_else(|| callsite::leak(file));
            let descriptor = callsite::descriptor(
                DescriptorKind::Log,
                level,
                "log",
                callsite::leak(target),
                file,
                line,
            );
            callsites.insert(key, descriptor);
            descriptor
        }
    };
    CACHE.with(|cache| {
        if let Ok(mut cache) = cache.try_borrow_mut() {
            cache.insert(hash, descriptor);
        }
    });
    descriptor
}

/// The descriptor records share once [`MAX_CALLSITES`] were seen.
fn overflow(level: u8) -> &'static Descriptor {
    const fn shared(level: u8) -> Descriptor {
        Descriptor {
            kind: DescriptorKind::Log,
            level,
            line: 0,
            name: "log",
            target: "log",
            file: "",
            unit: "",
        }
    }
    static SHARED: [Descriptor; 5] = [shared(1), shared(2), shared(3), shared(4), shared(5)];
    &SHARED[usize::from(level.clamp(1, 5) - 1)]
}

fn level(level: Level) -> u8 {
    match level {
        Level::Error => 1,
        Level::Warn => 2,
        Level::Info => 3,
        Level::Debug => 4,
        Level::Trace => 5,
    }
}
