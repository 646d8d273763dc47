//! `framelake perfetto`: writes a native process's Perfetto trace (from a
//! running server's `GET /api/v1/perfetto`) to a file ui.perfetto.dev opens.

use std::io::Write;

use anyhow::Context;
use futures::StreamExt;

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The process (32 hex digits, as `processes.process_id` shows it).
    #[arg(long)]
    process_id: String,
    /// From (Unix nanoseconds or RFC 3339); the process's start by default.
    #[arg(long)]
    begin: Option<String>,
    /// Until (Unix nanoseconds or RFC 3339); now by default.
    #[arg(long)]
    end: Option<String>,
    /// The file written; `<process_id>.perfetto-trace` by default.
    #[arg(long, short)]
    output: Option<std::path::PathBuf>,
    #[command(flatten)]
    connection: crate::client::Connection,
}

pub(crate) async fn run(args: Args) -> anyhow::Result<()> {
    let mut query = vec![("process_id", args.process_id.as_str())];
    query.extend(args.begin.as_deref().map(|b| ("begin", b)));
    query.extend(args.end.as_deref().map(|e| ("end", e)));
    let response = args
        .connection
        .send(reqwest::Method::GET, "/api/v1/perfetto", |r| {
            r.query(&query)
        })
        .await?;
    let path = args
        .output
        .unwrap_or_else(|| format!("{}.perfetto-trace", args.process_id).into());
    let mut file = std::io::BufWriter::new(
        std::fs::File::create(&path).with_context(|| format!("creating {}", path.display()))?,
    );
    let mut bytes = 0usize;
    let mut body = response.bytes_stream();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.context("reading the trace")?;
        bytes += chunk.len();
        file.write_all(&chunk)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    file.flush()
        .with_context(|| format!("writing {}", path.display()))?;
    println!(
        "{} ({bytes} bytes): open it in https://ui.perfetto.dev",
        path.display()
    );
    Ok(())
}
