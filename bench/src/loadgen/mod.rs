//! `framelake-bench loadgen`: drives a server with OTLP load over gRPC and HTTP, from
//! concurrent exporters sending unique requests, and prints a table: events/s
//! accepted, server CPU per event, acknowledgement latency, bytes at rest, and
//! beside them the host CPU and a reference (plain prost decode of the same
//! kind of requests, per core) measured two ways: in slices all through each
//! phase, and continuously just before and just after it.

pub(crate) mod generate;
pub(crate) mod measure;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use framelake_lake::segment::Compression;
use prost::Message;

use self::generate::Generator;
use self::measure::{Phase, References, ServerProbe};

/// Load generator options.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Start `framelake serve` on a fresh data dir and measure it (else drive --http/--grpc).
    #[arg(long)]
    spawn: bool,
    /// The `framelake` binary --spawn starts (by default the one next to this binary).
    #[arg(long)]
    server_bin: Option<PathBuf>,
    /// The server's block compression (`lz4`, `zstd:LEVEL`, `none`), for the
    /// receiver-prepare reference and, with --spawn, the server.
    #[arg(long, default_value = "lz4")]
    block_compression: Compression,
    /// Flags for the spawned server's write path, after `--` (e.g.
    /// `-- --flush-interval-ms=100 --max-pending-bytes=1000000`).
    #[arg(last = true)]
    server_args: Vec<String>,
    /// OTLP/HTTP base URL of a running server.
    #[arg(long, default_value = "http://127.0.0.1:4318")]
    http: String,
    /// OTLP/gRPC URL of a running server.
    #[arg(long, default_value = "http://127.0.0.1:4317")]
    grpc: String,
    /// Server process ids whose CPU time to count (with a running server); repeatable.
    #[arg(long = "server-pid")]
    server_pids: Vec<u32>,
    /// Data dir of a running server, to measure bytes at rest.
    #[arg(long = "server-data-dir")]
    server_data_dir: Option<PathBuf>,
    /// Transports to test: grpc, http, or both.
    #[arg(long, default_value = "both")]
    protocol: String,
    /// Signals to test: traces, logs, or both (OTLP); or loki (Loki push: snappy
    /// protobuf over HTTP, the same log records).
    #[arg(long, default_value = "both")]
    signal: String,
    /// Concurrent exporters.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// Events per request.
    #[arg(long, default_value_t = 512)]
    batch: usize,
    /// Seconds per phase.
    #[arg(long, default_value_t = 20)]
    duration: u64,
    /// Seconds of unmeasured load before each phase (the server's caches, WAL,
    /// threads and connections settle).
    #[arg(long, default_value_t = 5)]
    warmup: u64,
    /// Times to measure every phase, one after another on the same server, each
    /// beside its own references; a summary gives the median ratios (run-to-run
    /// spread on a small VM is about ±10%).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    repeat: u32,
    /// Print only the in-process references (prost decode, receiver prepare) and exit.
    #[arg(long)]
    references_only: bool,
    /// Tenant to send as (X-Scope-OrgID).
    #[arg(long, default_value = "loadgen")]
    tenant: String,
}

/// Runs the load.
pub(crate) async fn run(args: Args) -> anyhow::Result<()> {
    let compression = args.block_compression;
    let signals: Vec<&str> = match args.signal.as_str() {
        "both" => vec!["traces", "logs"],
        s @ ("traces" | "logs" | "loki") => vec![s],
        other => anyhow::bail!("--signal {other:?}: use traces, logs, both or loki"),
    };
    if args.references_only {
        println!("host CPU: {}", crate::clock::cpu_model());
        println!(
            "| signal | prost decode events/s/core | receiver prepare events/s/core | ratio |"
        );
        println!("|---|---:|---:|---:|");
        for signal in &signals {
            let rates =
                References::measure_for(signal, args.batch, compression, Duration::from_secs(4))
                    .await;
            println!(
                "| {signal} | {:.0} | {:.0} | {:.2} |",
                rates.prost,
                rates.prepare,
                rates.prepare / rates.prost
            );
        }
        return Ok(());
    }
    let (mut probe, _server) = if args.spawn {
        let server_bin = match &args.server_bin {
            Some(path) => path.clone(),
            None => std::env::current_exe()?.with_file_name("framelake"),
        };
        let mut server_args = args.server_args.clone();
        server_args.push(format!("--block-compression={compression}"));
        let (probe, server) = ServerProbe::spawn(&server_bin, &server_args).await?;
        (probe, Some(server))
    } else {
        (
            ServerProbe::attach(
                &args.http,
                &args.grpc,
                &args.server_pids,
                args.server_data_dir.clone(),
            ),
            None,
        )
    };
    let protocols: Vec<&str> = match args.protocol.as_str() {
        "both" => vec!["grpc", "http"],
        p @ ("grpc" | "http") => vec![p],
        other => anyhow::bail!("--protocol {other:?}: use grpc, http or both"),
    };
    println!("host CPU: {}", crate::clock::cpu_model());
    println!(
        "load: {} exporters, {} events per request, {} s per phase, every request unique",
        args.concurrency, args.batch, args.duration
    );
    println!("each phase after {} s of unmeasured load", args.warmup);
    let mut rows = Vec::new();
    for signal in &signals {
        // Loki pushes are HTTP only.
        for protocol in protocols
            .iter()
            .filter(|p| *signal != "loki" || **p == "http")
        {
            let phase = |seconds| Phase {
                signal,
                protocol,
                concurrency: args.concurrency,
                batch: args.batch,
                duration: Duration::from_secs(seconds),
            };
            for _ in 0..args.repeat {
                if args.warmup > 0 {
                    probe
                        .measure(&phase(args.warmup), &args.tenant, None)
                        .await
                        .with_context(|| format!("warming up {signal} over {protocol}"))?;
                }
                let row = probe
                    .measure(&phase(args.duration), &args.tenant, Some(compression))
                    .await
                    .with_context(|| format!("{signal} over {protocol}"))?;
                rows.push(row);
            }
        }
    }
    measure::print_table(&rows);
    if args.repeat > 1 {
        measure::print_summary(&rows);
    }
    Ok(())
}

/// One encoded request of a signal.
pub(crate) fn encode(generator: &mut Generator, signal: &str, batch: usize) -> Bytes {
    match signal {
        "traces" => generator.spans(batch).encode_to_vec().into(),
        "loki" => generator.loki_push(batch).into(),
        _ => generator.logs(batch).encode_to_vec().into(),
    }
}

/// Elapsed seconds, for rates.
pub(crate) fn secs(since: Instant) -> f64 {
    since.elapsed().as_secs_f64()
}
