//! `framelake demo`: a simulated 60 fps game instrumented with the native SDK
//! (a main thread and workers, nested spans, occasional hitches, logs and
//! metrics) sending to a running server, so that a newcomer sees the whole
//! flow: find the slow frames with SQL, open them in Perfetto.
//!
//! With `--summary FILE` it also writes what it recorded (spans by thread,
//! name and depth, logs, metric values): the end-to-end tests compare the
//! server's answers with it.

use std::collections::BTreeMap;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::Context;
use framelake_sdk::collect::{FramePolicy, Sampling};
use framelake_sdk::send::{Config, Telemetry};
use framelake_sdk::{fmetric, imetric, info, span_fn, span_scope, warn};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum SamplingArg {
    /// Send every frame's CPU trace.
    All,
    /// Send the slow frames' CPU traces (and 1% of the others); logs and metrics always.
    Frames,
}

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The server's ingest listener (OTLP/HTTP and native).
    #[arg(
        long,
        env = "FRAMELAKE_INGEST_URL",
        default_value = "http://127.0.0.1:4318"
    )]
    endpoint: String,
    /// Frames to play (60 s at 60 fps by default).
    #[arg(long, default_value_t = 3600)]
    frames: u64,
    /// Frames per second.
    #[arg(long, default_value_t = 60)]
    fps: u32,
    /// Worker threads beside the main thread.
    #[arg(long, default_value_t = 2)]
    workers: usize,
    /// Every this many frames, one frame hitches (a level streams in: +50 ms).
    #[arg(long, default_value_t = 300)]
    hitch_every: u64,
    #[arg(long, value_enum, default_value_t = SamplingArg::Frames)]
    sampling: SamplingArg,
    /// Tenant (`X-Scope-OrgID`).
    #[arg(long, env = "FRAMELAKE_TENANT")]
    tenant: Option<String>,
    /// Bearer token (when the server has an auth file).
    #[arg(long, env = "FRAMELAKE_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Writes what was recorded to this file, as JSON.
    #[arg(long)]
    summary: Option<std::path::PathBuf>,
}

/// What the game recorded.
#[derive(Debug, Default, serde::Serialize)]
struct Summary {
    process_id: String,
    frames: u64,
    /// "thread/parent/name" → (depth, count, least duration in ns that its
    /// sleeps guarantee).
    spans: BTreeMap<String, SpanCount>,
    logs: Vec<String>,
    /// Metric name → values, in order.
    metrics: BTreeMap<String, Vec<f64>>,
    hitches: Vec<u64>,
}

#[derive(Debug, Default, Clone, serde::Serialize)]
struct SpanCount {
    depth: u32,
    count: u64,
    min_ns: u64,
}

/// A thread's record of its spans, for the summary.
#[derive(Default)]
struct Tally(BTreeMap<String, SpanCount>);

impl Tally {
    fn span(&mut self, thread: &str, path: &[&str], min: Duration) {
        let (name, parents) = path.split_last().expect("a span has a name");
        let key = format!("{thread}/{}/{name}", parents.last().copied().unwrap_or(""));
        let c = self.0.entry(key).or_default();
        c.depth = parents.len() as u32;
        c.count += 1;
        c.min_ns = if c.count == 1 {
            min.as_nanos() as u64
        } else {
            c.min_ns.min(min.as_nanos() as u64)
        };
    }
}

fn work(d: Duration) {
    std::thread::sleep(d);
}

#[span_fn]
fn physics(hitch: bool) {
    work(Duration::from_micros(800));
    if hitch {
        span_scope!("stream_level");
        work(Duration::from_millis(50));
    }
}

#[span_fn]
fn ai() {
    work(Duration::from_micros(400));
}

/// A worker: runs the jobs the main thread sends until it closes the channel.
fn worker(jobs: mpsc::Receiver<u64>, name: String) -> Tally {
    let mut tally = Tally::default();
    for _job in jobs {
        span_scope!("job");
        {
            span_scope!("simulate");
            work(Duration::from_micros(300));
        }
        tally.span(&name, &["job", "simulate"], Duration::from_micros(300));
        tally.span(&name, &["job"], Duration::from_micros(300));
    }
    tally
}

pub(crate) fn run(args: Args) -> anyhow::Result<()> {
    let process = framelake_sdk::send::this_process(vec![
        ("service.name".into(), "framelake-demo".into()),
        ("game.build".into(), env!("CARGO_PKG_VERSION").into()),
    ]);
    let process_id: String = process
        .process_id
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let sampling = match args.sampling {
        SamplingArg::All => Sampling::All,
        SamplingArg::Frames => Sampling::Frames(FramePolicy::default()),
    };
    let telemetry = Telemetry::start(
        process,
        Config {
            endpoint: args.endpoint.clone(),
            token: args.token.clone(),
            tenant: args.tenant.clone(),
            sampling,
            ..Config::default()
        },
    );
    println!(
        "framelake demo: process {process_id}, {} frames at {} fps to {}",
        args.frames, args.fps, args.endpoint
    );
    let mut summary = Summary {
        process_id: process_id.clone(),
        frames: args.frames,
        ..Summary::default()
    };
    let (senders, workers): (Vec<_>, Vec<_>) = (0..args.workers)
        .map(|i| {
            let (send, receive) = mpsc::channel();
            let name = format!("worker-{i}");
            let thread = std::thread::Builder::new()
                .name(name.clone())
                .spawn(move || worker(receive, name))
                .expect("spawning a worker");
            (send, thread)
        })
        .unzip();
    let main = std::thread::Builder::new()
        .name("main".to_owned())
        .spawn(move || {
            let mut tally = Tally::default();
            let period = Duration::from_secs_f64(1.0 / f64::from(args.fps.max(1)));
            let started = Instant::now();
            let mut entities = 1_000i64;
            for n in 0..args.frames {
                framelake_sdk::frame(n);
                let frame_start = Instant::now();
                let hitch = args.hitch_every > 0 && n % args.hitch_every == args.hitch_every - 1;
                {
                    span_scope!("frame");
                    {
                        span_scope!("update");
                        physics(hitch);
                        ai();
                        for s in &senders {
                            let _ = s.send(n);
                        }
                    }
                    {
                        span_scope!("render");
                        work(Duration::from_millis(2));
                    }
                }
                let physics_min = Duration::from_micros(800)
                    + if hitch {
                        Duration::from_millis(50)
                    } else {
                        Duration::ZERO
                    };
                tally.span("main", &["frame"], Duration::from_micros(3200));
                tally.span("main", &["frame", "update"], Duration::from_micros(1200));
                tally.span("main", &["frame", "update", "physics"], physics_min);
                if hitch {
                    tally.span(
                        "main",
                        &["frame", "update", "physics", "stream_level"],
                        Duration::from_millis(50),
                    );
                }
                tally.span(
                    "main",
                    &["frame", "update", "ai"],
                    Duration::from_micros(400),
                );
                tally.span("main", &["frame", "render"], Duration::from_millis(2));
                entities += (n % 7) as i64 - 3;
                let frame_ms = frame_start.elapsed().as_secs_f64() * 1e3;
                fmetric!("frame_time", "ms", frame_ms);
                imetric!("entities", "{entity}", entities);
                summary
                    .metrics
                    .entry("frame_time".into())
                    .or_default()
                    .push(frame_ms);
                summary
                    .metrics
                    .entry("entities".into())
                    .or_default()
                    .push(entities as f64);
                if hitch {
                    warn!("hitch: frame {n} took {frame_ms:.1} ms (streaming a level)");
                    summary.logs.push(format!(
                        "hitch: frame {n} took {frame_ms:.1} ms (streaming a level)"
                    ));
                    summary.hitches.push(n);
                }
                if n % 60 == 0 {
                    info!("frame {n}: {entities} entities");
                    summary.logs.push(format!("frame {n}: {entities} entities"));
                }
                let next = started + period * (n as u32 + 1);
                if let Some(rest) = next.checked_duration_since(Instant::now()) {
                    std::thread::sleep(rest);
                }
            }
            // The last frame's end, so that its duration is measured too.
            framelake_sdk::frame(args.frames);
            drop(senders);
            (tally, summary)
        })
        .context("spawning the main thread")?;
    let (mut tally, mut summary) = main
        .join()
        .map_err(|_| anyhow::anyhow!("the main thread panicked"))?;
    for w in workers {
        let t = w.join().map_err(|_| anyhow::anyhow!("a worker panicked"))?;
        tally.0.extend(t.0);
    }
    summary.spans = tally.0;
    let stats = telemetry.shutdown();
    println!(
        "sent {} messages ({} retries, {} frames' CPU traces sampled out, {} dropped)",
        stats.sent,
        stats.retries,
        stats.sampled_out_blocks,
        stats.dropped_blocks + stats.ring_dropped_blocks
    );
    if let Some(path) = &args.summary {
        std::fs::write(path, serde_json::to_vec_pretty(&summary)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    println!();
    println!("The slowest frames:");
    println!(
        "  framelake sql \"SELECT begin, duration_ns / 1e6 AS ms FROM frames WHERE process_id = X'{process_id}' ORDER BY duration_ns DESC LIMIT 5\""
    );
    println!("What ran in them:");
    println!(
        "  framelake sql \"SELECT thread_name, name, depth, duration_ns / 1e6 AS ms FROM thread_spans WHERE process_id = X'{process_id}' ORDER BY duration_ns DESC LIMIT 10\""
    );
    println!("In Perfetto (then open the file in https://ui.perfetto.dev):");
    println!("  framelake perfetto --process-id {process_id}");
    Ok(())
}
