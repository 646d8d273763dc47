//! The sending thread: every interval it takes what the threads recorded
//! (the [`Collector`]) and posts the messages to the server in order, with
//! retries. Memory stays bounded when the server is down: beyond the queue's
//! budget the oldest blocks are dropped and counted. Registrations (the
//! process and its streams) are never dropped, and are sent again when the
//! server answers that it does not know them.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use crate::buffer::lock;
use crate::collect::{Collector, Message, Sampling};
use framelake_native_format::Process;

/// Where and how to send.
#[derive(Debug, Clone)]
pub struct Config {
    /// The ingest listener, e.g. `http://127.0.0.1:4318`.
    pub endpoint: String,
    /// A bearer token, when the server checks them.
    pub token: Option<String>,
    /// `X-Scope-OrgID`, when the server is multi-tenant without tokens.
    pub tenant: Option<String>,
    /// How often recorded events are taken and sent.
    pub interval: Duration,
    /// Most bytes of messages waiting to be sent.
    pub queue_bytes: usize,
    /// How long the last flush may take at shutdown.
    pub shutdown_timeout: Duration,
    /// Which CPU trace blocks are sent (all by default).
    pub sampling: Sampling,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            endpoint: "http://127.0.0.1:4318".to_owned(),
            token: None,
            tenant: None,
            interval: Duration::from_millis(100),
            queue_bytes: 32 << 20,
            shutdown_timeout: Duration::from_secs(3),
            sampling: Sampling::All,
        }
    }
}

/// What the sender did so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Messages the server stored.
    pub sent: u64,
    /// Blocks dropped because the queue was full (server down or slow).
    pub dropped_blocks: u64,
    /// CPU trace blocks of frames the sampler judged uninteresting.
    pub sampled_out_blocks: u64,
    /// CPU trace blocks dropped undecided: the sampler's ring was full.
    pub ring_dropped_blocks: u64,
    /// Messages the server refused as malformed (a bug: never retried).
    pub refused: u64,
    /// Requests that failed and were retried.
    pub retries: u64,
}

#[derive(Default)]
struct Counters {
    sent: AtomicU64,
    dropped_blocks: AtomicU64,
    sampled_out_blocks: AtomicU64,
    ring_dropped_blocks: AtomicU64,
    refused: AtomicU64,
    retries: AtomicU64,
}

/// The running sender; dropping it flushes what was recorded and stops.
pub struct Telemetry {
    stop: Arc<(Mutex<bool>, Condvar)>,
    counters: Arc<Counters>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Telemetry {
    /// Starts sending what this process records, as `process`.
    pub fn start(process: Process, config: Config) -> Telemetry {
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let counters = Arc::new(Counters::default());
        let thread = {
            let (stop, counters) = (Arc::clone(&stop), Arc::clone(&counters));
            std::thread::Builder::new()
                .name("framelake-sdk".to_owned())
                .spawn(move || {
                    crate::mark_own_thread();
                    let collector = Collector::with_sampling(process, config.sampling);
                    run(collector, &config, &stop, &counters)
                })
                .expect("spawning the sender thread")
        };
        Telemetry {
            stop,
            counters,
            thread: Some(thread),
        }
    }

    pub fn stats(&self) -> Stats {
        let c = &self.counters;
        Stats {
            sent: c.sent.load(Ordering::Relaxed),
            dropped_blocks: c.dropped_blocks.load(Ordering::Relaxed),
            sampled_out_blocks: c.sampled_out_blocks.load(Ordering::Relaxed),
            ring_dropped_blocks: c.ring_dropped_blocks.load(Ordering::Relaxed),
            refused: c.refused.load(Ordering::Relaxed),
            retries: c.retries.load(Ordering::Relaxed),
        }
    }
}

impl Telemetry {
    /// Flushes what was recorded, stops, and says what was done in all
    /// (as dropping does, with the final figures).
    pub fn shutdown(mut self) -> Stats {
        self.stop();
        self.stats()
    }

    fn stop(&mut self) {
        *lock(&self.stop.0) = true;
        self.stop.1.notify_all();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        self.stop();
    }
}

/// How a post ended.
enum Outcome {
    Stored,
    /// Malformed: dropping it is all there is to do.
    Refused,
    /// The server does not know the process or stream: register again.
    Unknown,
    /// Try again later.
    Retry,
}

fn run(mut collector: Collector, config: &Config, stop: &(Mutex<bool>, Condvar), c: &Counters) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .into();
    let mut queue: VecDeque<Message> = VecDeque::new();
    let mut queued = 0usize;
    let mut registrations: Vec<Message> = Vec::new();
    let mut backoff = Duration::ZERO;
    let mut retry_at = Instant::now();
    loop {
        let stopping = {
            let guard = lock(&stop.0);
            let wait = config
                .interval
                .max(retry_at.saturating_duration_since(Instant::now()));
            let (guard, _) = stop
                .1
                .wait_timeout_while(guard, wait, |stopped| !*stopped)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            *guard
        };
        let messages = if stopping {
            collector.finish()
        } else {
            collector.collect()
        };
        let dropped = collector.dropped();
        c.sampled_out_blocks
            .store(dropped.sampled_out, Ordering::Relaxed);
        c.ring_dropped_blocks
            .store(dropped.ring_full, Ordering::Relaxed);
        for m in messages {
            if !matches!(m, Message::Block(_)) {
                registrations.push(m.clone());
            }
            queued += m.body().len();
            queue.push_back(m);
        }
        // Bounded: the oldest blocks go first, registrations stay.
        while queued > config.queue_bytes {
            let Some(i) = queue.iter().position(|m| matches!(m, Message::Block(_))) else {
                break;
            };
            if let Some(m) = queue.remove(i) {
                queued -= m.body().len();
                c.dropped_blocks.fetch_add(1, Ordering::Relaxed);
            }
        }
        let deadline = stopping.then(|| Instant::now() + config.shutdown_timeout);
        loop {
            if Instant::now() < retry_at && deadline.is_none() {
                break;
            }
            let Some(m) = queue.front() else { break };
            match post(&agent, config, m) {
                Outcome::Stored => {
                    c.sent.fetch_add(1, Ordering::Relaxed);
                    backoff = Duration::ZERO;
                    if let Some(m) = queue.pop_front() {
                        queued -= m.body().len();
                    }
                }
                Outcome::Refused => {
                    c.refused.fetch_add(1, Ordering::Relaxed);
                    if let Some(m) = queue.pop_front() {
                        queued -= m.body().len();
                    }
                }
                Outcome::Unknown => {
                    c.retries.fetch_add(1, Ordering::Relaxed);
                    for r in registrations.iter().rev() {
                        queued += r.body().len();
                        queue.push_front(r.clone());
                    }
                }
                Outcome::Retry => {
                    c.retries.fetch_add(1, Ordering::Relaxed);
                    backoff =
                        (backoff * 2).clamp(Duration::from_millis(100), Duration::from_secs(5));
                    retry_at = Instant::now() + backoff;
                    if deadline.is_some_and(|d| retry_at > d) {
                        break;
                    }
                    if deadline.is_some() {
                        std::thread::sleep(backoff);
                    }
                }
            }
            if deadline.is_some_and(|d| Instant::now() > d) {
                break;
            }
        }
        if stopping {
            return;
        }
    }
}

fn post(agent: &ureq::Agent, config: &Config, m: &Message) -> Outcome {
    let url = format!("{}{}", config.endpoint.trim_end_matches('/'), m.path());
    let mut request = agent
        .post(&url)
        .header("content-type", "application/x-framelake-native");
    if let Some(token) = &config.token {
        request = request.header("authorization", &format!("Bearer {token}"));
    }
    if let Some(tenant) = &config.tenant {
        request = request.header("x-scope-orgid", tenant);
    }
    match request.send(m.body()) {
        Ok(response) => match response.status().as_u16() {
            200..=299 => Outcome::Stored,
            404 => Outcome::Unknown,
            408 | 429 | 500..=599 => Outcome::Retry,
            // 401/403 may be fixed by an operator; other 4xx never will.
            401 | 403 => Outcome::Retry,
            _ => Outcome::Refused,
        },
        Err(_) => Outcome::Retry,
    }
}

/// This process, as the server will know it: a fresh id, the clock's
/// mapping, and what the OS says of the program and the machine.
pub fn this_process(properties: Vec<(String, String)>) -> Process {
    let start_ticks = crate::ticks::now();
    let start_time = crate::ticks::wall_nanos();
    let env = |k: &str| std::env::var(k).unwrap_or_default();
    Process {
        process_id: crate::ids::random_id(),
        parent_process_id: [0; 16],
        start_time,
        start_ticks,
        tick_frequency: crate::ticks::frequency(),
        exe: std::env::current_exe()
            .map(|p| p.display().to_string())
            .unwrap_or_default(),
        username: [env("USER"), env("USERNAME")].concat(),
        computer: std::fs::read_to_string("/etc/hostname")
            .map(|h| h.trim().to_owned())
            .unwrap_or_else(|_| env("COMPUTERNAME")),
        distro: std::env::consts::OS.to_owned(),
        cpu_brand: cpu_brand(),
        properties,
    }
}

fn cpu_brand() -> String {
    #[cfg(target_arch = "x86_64")]
    {
        use core::arch::x86_64::__cpuid;
        if __cpuid(0x8000_0000).eax >= 0x8000_0004 {
            let mut bytes = Vec::with_capacity(48);
            for leaf in 0x8000_0002..=0x8000_0004 {
                let r = __cpuid(leaf);
                for word in [r.eax, r.ebx, r.ecx, r.edx] {
                    bytes.extend_from_slice(&word.to_le_bytes());
                }
            }
            return String::from_utf8_lossy(&bytes)
                .trim_matches(char::from(0))
                .trim()
                .to_owned();
        }
        String::new()
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        String::new()
    }
}
