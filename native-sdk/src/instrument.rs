//! Spans over futures: each poll is a span, so that a future moving between
//! threads never leaves a span open on the thread it left.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use crate::{Descriptor, SpanGuard};

/// A future whose every poll is a span of `descriptor` (what
/// `#[span_fn]` wraps an `async fn`'s body in).
#[must_use = "futures do nothing unless polled"]
pub struct Instrumented<F> {
    future: F,
    descriptor: &'static Descriptor,
}

impl<F> Instrumented<F> {
    pub fn new(future: F, descriptor: &'static Descriptor) -> Self {
        Instrumented { future, descriptor }
    }
}

impl<F: Future> Future for Instrumented<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let _span = SpanGuard::begin(self.descriptor);
        // SAFETY: `future` is pinned structurally: nothing moves it out of
        // a pinned `Instrumented` (no method hands it out, no `Drop` impl),
        // and `Instrumented` is `Unpin` only when `F` is (the auto impl).
        let future = unsafe { self.map_unchecked_mut(|s| &mut s.future) };
        future.poll(cx)
    }
}
