//! The SDK's integration tests: events recorded by threads as the collector
//! encodes them, sampling, sending and the bridges.

mod bridge;
mod record;
mod sample;
mod send;
mod span_fn;

use std::sync::Mutex;

/// The threads' buffers are the process's: one test at a time takes them.
static RECORDING: Mutex<()> = Mutex::new(());

fn recording() -> std::sync::MutexGuard<'static, ()> {
    RECORDING
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[test]
fn sender_sends_in_order_retries_and_registers_again() {
    let _one = recording();
    send::sender_sends_in_order_retries_and_registers_again();
}

#[test]
fn memory_stays_bounded_when_the_server_is_down() {
    let _one = recording();
    send::memory_stays_bounded_when_the_server_is_down();
}
