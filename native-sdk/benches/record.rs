//! The calling thread's cost per event, beside the floor it cannot beat:
//! two tick reads and a thread-local push of two 16-byte events. Events
//! are recorded in batches of 10 000 and collected between batches
//! (untimed), so chunk renewals are in the figures and nothing is dropped.

use std::cell::RefCell;
use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use framelake_native_format::Process;
use framelake_sdk::collect::Collector;
use framelake_sdk::{Descriptor, DescriptorKind};

static SPAN: Descriptor = Descriptor {
    kind: DescriptorKind::Span,
    level: 0,
    line: 1,
    name: "span",
    target: "bench",
    file: "record.rs",
    unit: "",
};
static LOG: Descriptor = Descriptor {
    kind: DescriptorKind::Log,
    level: 3,
    line: 2,
    name: "frame {} took {} us",
    target: "bench",
    file: "record.rs",
    unit: "",
};
static METRIC: Descriptor = Descriptor {
    kind: DescriptorKind::Metric,
    level: 0,
    line: 3,
    name: "frame_time",
    target: "bench",
    file: "record.rs",
    unit: "us",
};

thread_local! {
    static FLOOR: RefCell<Vec<[u64; 2]>> = RefCell::new(Vec::with_capacity(1 << 16));
}

/// Two tick reads and two 16-byte pushes into a thread-local vector.
#[inline(never)]
fn floor_scope() {
    let begin = framelake_sdk::ticks::now();
    FLOOR.with(|f| {
        let mut f = f.borrow_mut();
        if f.len() + 2 > f.capacity() {
            f.clear();
        }
        f.push([0x1000, begin as u64]);
        let end = framelake_sdk::ticks::now();
        f.push([0x1001, end as u64]);
    });
}

#[inline(never)]
fn span_scope() {
    let _guard = framelake_sdk::SpanGuard::begin(&SPAN);
}

/// Times `events` calls of `f`, then takes what they recorded (untimed), as
/// the SDK's collector does between the game's frames.
fn timed(collector: &mut Collector, iterations: u64, mut f: impl FnMut()) -> std::time::Duration {
    const BATCH: u64 = 10_000;
    let mut total = std::time::Duration::ZERO;
    let mut left = iterations;
    while left > 0 {
        let n = left.min(BATCH);
        let started = std::time::Instant::now();
        for _ in 0..n {
            f();
        }
        total += started.elapsed();
        black_box(collector.collect());
        left -= n;
    }
    total
}

/// Spans fastrace hands to its reporter: dropped.
struct Discard;

impl fastrace::collector::Reporter for Discard {
    fn report(&mut self, spans: Vec<fastrace::collector::SpanRecord>) {
        black_box(spans);
    }
}

fn record(c: &mut Criterion) {
    let mut collector = Collector::new(Process::default());
    // micromegas-tracing recording (CPU tracing on), its blocks dropped.
    micromegas_tracing::dispatch::init_event_dispatch(
        10 << 20,
        1 << 20,
        10 << 20,
        std::sync::Arc::new(micromegas_tracing::event::NullEventSink {}),
        std::collections::HashMap::new(),
        true,
    )
    .expect("micromegas dispatch");
    micromegas_tracing::dispatch::init_thread_stream();
    fastrace::set_reporter(Discard, fastrace::collector::Config::default());
    let _registry = tracing::subscriber::set_default(tracing_subscriber::registry());
    let mut group = c.benchmark_group("calling thread, per event");
    group.bench_function("floor: 2 tick reads + 2 thread-local pushes", |b| {
        b.iter(floor_scope)
    });
    group.bench_function("two tick reads", |b| {
        b.iter(|| {
            black_box(framelake_sdk::ticks::now());
            black_box(framelake_sdk::ticks::now());
        })
    });
    group.bench_function("framelake span scope (begin + end)", |b| {
        b.iter_custom(|n| timed(&mut collector, n, span_scope))
    });
    group.bench_function("framelake span scope, disabled at run time", |b| {
        framelake_sdk::set_enabled(false);
        b.iter(span_scope);
        framelake_sdk::set_enabled(true);
    });
    group.bench_function("micromegas-tracing span scope", |b| {
        b.iter(|| {
            micromegas_tracing::span_scope!("span");
        })
    });
    group.bench_function("tracing span (registry) entered + dropped", |b| {
        b.iter(|| {
            let _span = tracing::info_span!("span").entered();
        })
    });
    group.bench_function("fastrace local span", |b| {
        b.iter_custom(|n| {
            const BATCH: u64 = 10_000;
            let mut total = std::time::Duration::ZERO;
            let mut left = n;
            while left > 0 {
                let root =
                    fastrace::Span::root("frame", fastrace::collector::SpanContext::random());
                let guard = root.set_local_parent();
                let batch = left.min(BATCH);
                let started = std::time::Instant::now();
                for _ in 0..batch {
                    let _span = fastrace::local::LocalSpan::enter_with_local_parent("span");
                }
                total += started.elapsed();
                drop(guard);
                drop(root);
                left -= batch;
            }
            fastrace::flush();
            total
        })
    });
    group.bench_function("framelake float metric", |b| {
        b.iter_custom(|n| {
            timed(&mut collector, n, || {
                framelake_sdk::float_metric(&METRIC, black_box(16.6))
            })
        })
    });
    group.bench_function("framelake log, static message", |b| {
        b.iter_custom(|n| {
            timed(&mut collector, n, || {
                framelake_sdk::log(&LOG, format_args!("frame done"))
            })
        })
    });
    group.bench_function("framelake log, formatted (2 integers)", |b| {
        b.iter_custom(|n| {
            timed(&mut collector, n, || {
                framelake_sdk::log(
                    &LOG,
                    format_args!("frame {} took {} us", black_box(1234), black_box(16_600)),
                )
            })
        })
    });
    group.bench_function("tracing span through the framelake layer", |b| {
        use tracing_subscriber::layer::SubscriberExt;
        let layer = framelake_sdk::tracing_bridge::Layer::new();
        let subscriber = tracing_subscriber::registry().with(layer);
        tracing::subscriber::with_default(subscriber, || {
            b.iter_custom(|n| {
                timed(&mut collector, n, || {
                    let _span = tracing::info_span!("span").entered();
                })
            })
        })
    });
    framelake_sdk::log_bridge::init(log::LevelFilter::Info).expect("the only logger");
    group.bench_function(
        "log record through the framelake logger (2 integers)",
        |b| {
            b.iter_custom(|n| {
                timed(&mut collector, n, || {
                    log::info!("frame {} took {} us", black_box(1234), black_box(16_600))
                })
            })
        },
    );
    group.finish();
    assert_eq!(
        framelake_sdk::dropped_events(),
        0,
        "events were taken between batches: nothing was dropped"
    );
}

criterion_group!(benches, record);
criterion_main!(benches);
