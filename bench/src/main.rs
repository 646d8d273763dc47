//! `framelake-bench`: framelake measured, each figure beside a reference
//! measured in the same run on the same host (plain prost decode of the same
//! requests, plain DataFusion over the same Parquet files), with the host's
//! CPU model printed above every table.

mod clock;
mod loadgen;
mod nativebench;
mod querybench;
mod tailbench;

use clap::{Parser, Subcommand};

/// The server's allocator, so that the in-process references decode as the
/// server does (mimalloc: see the product binary).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// framelake's benchmarks: write path, read path, native CPU traces.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Drives a server (started with --spawn, or running) with OTLP load and prints a table.
    Loadgen(loadgen::Args),
    /// Measures the read path (materialization, bytes at rest, queries, freshness) and prints tables.
    Querybench(querybench::Args),
    /// Measures the native CPU-trace path (decode, store, bytes at rest) and prints tables.
    Nativebench(nativebench::Args),
    /// Measures Loki's live tail: acknowledgement to delivery over the WebSocket.
    Tailbench(tailbench::Args),
}

fn main() -> anyhow::Result<()> {
    framelake_lake::host::disable_transparent_huge_pages();
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        match cli.command {
            Command::Loadgen(args) => loadgen::run(args).await,
            Command::Querybench(args) => querybench::run(args).await,
            Command::Nativebench(args) => nativebench::run(args).await,
            Command::Tailbench(args) => tailbench::run(args).await,
        }
    })
}
