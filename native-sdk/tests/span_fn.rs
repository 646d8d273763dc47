//! `#[span_fn]`: a span per call of a function, per poll of an async one.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use framelake_native_format::Process;
use framelake_sdk::collect::Collector;
use framelake_sdk::span_fn;

use crate::record::{Decoded, decode, stepwise, thread_blocks};

#[span_fn]
fn load_level(level: u32) -> u32 {
    if level == 0 {
        return 0;
    }
    unpack(level) + 1
}

#[span_fn("unpack assets")]
fn unpack(level: u32) -> u32 {
    level * 2
}

/// Pending at its first poll, ready at the second.
#[derive(Default)]
struct YieldOnce(bool);

impl Future for YieldOnce {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<()> {
        if std::mem::replace(&mut self.0, true) {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}

#[span_fn]
async fn fetch(name: &str, extra: u32) -> Result<u32, std::num::ParseIntError> {
    YieldOnce::default().await;
    let n: u32 = name.parse()?;
    Ok(n + extra)
}

/// Methods, generics and `mut` arguments keep working under the attribute.
struct Level(u32);

impl Level {
    #[span_fn]
    fn grow(&mut self, by: impl Into<u32>) -> &mut Self {
        self.0 += by.into();
        self
    }

    #[span_fn]
    async fn size<T: Into<u32>>(&self, extra: T, mut times: u32) -> u32 {
        let mut total = extra.into();
        while times > 0 {
            times -= 1;
            total += self.0;
        }
        total
    }
}

/// The line of `fn <name>(` in this file.
fn line_of(name: &str) -> u32 {
    let source = include_str!("span_fn.rs");
    let at = source
        .lines()
        .position(|l| l.contains(&format!("fn {name}(")))
        .expect("in this file");
    at as u32 + 1
}

fn owned(events: &[&str]) -> Vec<String> {
    events.iter().map(|s| s.to_string()).collect()
}

#[test]
fn a_function_is_a_span_named_after_it_with_its_place_in_the_source() {
    let _one = super::recording();
    let mut collector = Collector::new(Process::default());
    let (blocks, decoded) = stepwise(
        &mut collector,
        "span_fn",
        vec![|| {
            assert_eq!(load_level(3), 7);
            assert_eq!(load_level(0), 0, "an early return ends the span too");
            let mut level = Level(1);
            let size = std::pin::pin!(level.grow(2u8).size(3u16, 2));
            let ready = size.poll(&mut Context::from_waker(Waker::noop()));
            assert_eq!(ready, Poll::Ready(9));
        }],
    );
    let events: Vec<String> = blocks.into_iter().flat_map(|(.., e)| e).collect();
    assert_eq!(
        events,
        owned(&[
            "begin load_level",
            "begin unpack assets",
            "end unpack assets",
            "end load_level",
            "begin load_level",
            "end load_level",
            "begin grow",
            "end grow",
            "begin size",
            "end size",
        ])
    );
    let load = decoded.named("load_level");
    assert_eq!(load.target, module_path!());
    assert_eq!(load.file, file!());
    assert_eq!(load.line, line_of("load_level"));
    assert_eq!(decoded.named("unpack assets").line, line_of("unpack"));
}

#[test]
fn an_async_function_is_a_span_per_poll_on_the_thread_polling() {
    let _one = super::recording();
    let mut collector = Collector::new(Process::default());
    let mut future = Box::pin(fetch("41", 1));
    // The first poll on one thread, the second on another: each thread
    // sees a whole span, none is left open.
    let first = std::thread::Builder::new()
        .name("poll-1".into())
        .spawn(move || {
            let mut cx = Context::from_waker(Waker::noop());
            assert!(future.as_mut().poll(&mut cx).is_pending());
            future
        })
        .expect("spawn")
        .join()
        .expect("first poll");
    let mut future = first;
    std::thread::Builder::new()
        .name("poll-2".into())
        .spawn(move || {
            let mut cx = Context::from_waker(Waker::noop());
            assert_eq!(future.as_mut().poll(&mut cx), Poll::Ready(Ok(42)));
            // On one thread: two polls, two spans.
            let mut again = Box::pin(fetch("x", 0));
            assert!(again.as_mut().poll(&mut cx).is_pending());
            assert!(matches!(again.as_mut().poll(&mut cx), Poll::Ready(Err(_))));
        })
        .expect("spawn")
        .join()
        .expect("second poll");
    let mut decoded = Decoded::default();
    decode(&collector.collect(), &mut decoded);
    let events = |thread| -> Vec<String> {
        thread_blocks(&decoded, thread)
            .into_iter()
            .flat_map(|(_, open, e)| {
                assert!(open.is_empty());
                e
            })
            .collect()
    };
    let pair = ["begin fetch", "end fetch"];
    assert_eq!(events("poll-1"), owned(&pair));
    assert_eq!(events("poll-2"), owned(&[pair, pair, pair].concat()));
}
