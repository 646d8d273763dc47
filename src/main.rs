//! The `framelake` binary: one process per role, or every role at once.

mod client;
mod demo;
mod forward;
mod perfetto;
mod serve;
mod settings;
mod sql;
mod tail;

use std::io::IsTerminal;

use clap::{Parser, Subcommand};

use crate::serve::Roles;
use crate::settings::Settings;

/// mimalloc: decoding OTLP/JSON allocates many small strings and vectors per
/// request, where the system allocator costs a fifth of the receiver's CPU.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// framelake: an OpenTelemetry-compatible observability lake.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    #[command(flatten)]
    settings: Settings,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Runs every role in one process: embedded SQLite catalog and local files by default.
    Serve,
    /// Runs the receiver role (OTLP gRPC and HTTP) against --database-url and --object-store-url.
    Receiver,
    /// Runs the query role (SQL over HTTP, FlightSQL) against --database-url and --object-store-url.
    Query,
    /// Runs maintenance (blocks into Parquet partitions) against --database-url and --object-store-url.
    Maintain,
    /// Runs a SQL query on a running server and prints the result.
    Sql(sql::Args),
    /// Plays a simulated 60 fps game instrumented with the native SDK, sending to a running server.
    Demo(demo::Args),
    /// Writes a native process's Perfetto trace from a running server to a file.
    Perfetto(perfetto::Args),
    /// Follows a LogQL query on a running server, printing lines as they arrive.
    Tail(tail::Args),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let settings = cli.settings.resolve()?;
    init_logs(settings.log_format.as_deref());
    framelake_lake::host::disable_transparent_huge_pages();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        match cli.command {
            Command::Serve => {
                let all = Roles {
                    receiver: true,
                    query: true,
                    maintain: true,
                };
                serve::run(settings, all).await
            }
            Command::Receiver | Command::Query | Command::Maintain => {
                let (role, roles) = match cli.command {
                    Command::Receiver => ("receiver", Roles { receiver: true, query: false, maintain: false }),
                    Command::Query => ("query", Roles { receiver: false, query: true, maintain: false }),
                    _ => ("maintain", Roles { receiver: false, query: false, maintain: true }),
                };
                anyhow::ensure!(
                    settings.database_url.is_some() && settings.object_store_url.is_some(),
                    "the {role} role needs --database-url and --object-store-url (use `serve` for the embedded default)"
                );
                serve::run(settings, roles).await
            }
            Command::Sql(args) => {
                // A query's error is the user's to read, without a backtrace.
                if let Err(e) = sql::run(args).await {
                    eprintln!("framelake sql: {e:#}");
                    std::process::exit(1);
                }
                Ok(())
            }
            Command::Demo(args) => tokio::task::spawn_blocking(move || demo::run(args)).await?,
            Command::Tail(args) => {
                if let Err(e) = tail::run(args).await {
                    eprintln!("framelake tail: {e:#}");
                    std::process::exit(1);
                }
                Ok(())
            }
            Command::Perfetto(args) => {
                if let Err(e) = perfetto::run(args).await {
                    eprintln!("framelake perfetto: {e:#}");
                    std::process::exit(1);
                }
                Ok(())
            }
        }
    })
}

fn init_logs(format: Option<&str>) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("FRAMELAKE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colour only for a person at a terminal, not in files and pipes.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    if format == Some("json") {
        builder.json().flatten_event(true).init();
    } else {
        builder.init();
    }
}
