//! `framelake-bench tailbench`: how long Loki's live tail takes to deliver a
//! line after the push that carried it was acknowledged, against a
//! `framelake serve` it starts.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use futures::StreamExt;

use crate::clock;
use crate::loadgen::measure::free_ports;

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The `framelake` binary [default: next to this one].
    #[arg(long)]
    server_bin: Option<PathBuf>,
    /// Lines pushed, one push at a time.
    #[arg(long, default_value_t = 100)]
    lines: usize,
    /// The server's group commit interval.
    #[arg(long, default_value_t = 250)]
    flush_interval_ms: u64,
}

pub(crate) async fn run(args: Args) -> anyhow::Result<()> {
    let server_bin = match &args.server_bin {
        Some(path) => path.clone(),
        None => std::env::current_exe()?.with_file_name("framelake"),
    };
    let dir = tempfile::tempdir()?;
    let [ingest, grpc, query, flight] = free_ports()?;
    let mut server = std::process::Command::new(&server_bin)
        .arg("serve")
        .arg("--data-dir")
        .arg(dir.path())
        .arg(format!("--ingest-addr=127.0.0.1:{ingest}"))
        .arg(format!("--otlp-grpc-addr=127.0.0.1:{grpc}"))
        .arg(format!("--query-addr=127.0.0.1:{query}"))
        .arg(format!("--flight-addr=127.0.0.1:{flight}"))
        .arg(format!("--flush-interval-ms={}", args.flush_interval_ms))
        .env("FRAMELAKE_LOG", "warn")
        .spawn()
        .with_context(|| format!("starting {} serve", server_bin.display()))?;
    let result = measure(&args, ingest, query).await;
    let _ = server.kill();
    let _ = server.wait();
    result
}

async fn measure(args: &Args, ingest: u16, query: u16) -> anyhow::Result<()> {
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !client
        .get(format!("http://127.0.0.1:{query}/ready"))
        .send()
        .await
        .is_ok_and(|r| r.status().is_success())
    {
        anyhow::ensure!(
            Instant::now() < deadline,
            "the server did not start in 30 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let url = format!("ws://127.0.0.1:{query}/loki/api/v1/tail?query=%7Bapp%3D%22tailbench%22%7D");
    let (mut socket, _) = tokio_tungstenite::connect_async(&url).await?;
    let (mut after_ack, mut acks) = (Vec::new(), Vec::new());
    for i in 0..args.lines {
        let line = format!("tailbench line {i}");
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?;
        let body = serde_json::json!({"streams": [{"stream": {"app": "tailbench"},
            "values": [[now.as_nanos().to_string(), line]]}]});
        let sent = Instant::now();
        let response = client
            .post(format!("http://127.0.0.1:{ingest}/loki/api/v1/push"))
            .json(&body)
            .send()
            .await?;
        anyhow::ensure!(
            response.status().as_u16() == 204,
            "push: {}",
            response.status()
        );
        let acked = Instant::now();
        acks.push((acked - sent).as_secs_f64());
        let delivered = loop {
            let message = tokio::time::timeout(Duration::from_secs(10), socket.next())
                .await
                .context("no line within 10 s")?
                .context("the tail closed")??;
            if let tokio_tungstenite::tungstenite::Message::Text(text) = message
                && text.contains(&format!("\"{line}\""))
            {
                break Instant::now();
            }
        };
        // A line can arrive before its acknowledgement does (the block is
        // committed first): that counts as 0.
        after_ack.push(delivered.saturating_duration_since(acked).as_secs_f64());
    }
    let p99 = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[(v.len() * 99 / 100).min(v.len() - 1)]
    };
    println!("host CPU: {}", clock::cpu_model());
    println!();
    println!(
        "| Loki live tail, {} lines pushed one at a time | p50 ms | p99 ms |",
        args.lines
    );
    println!("|---|---:|---:|");
    println!(
        "| push → acknowledged (group commit every {} ms) | {:.0} | {:.0} |",
        args.flush_interval_ms,
        clock::median(acks.clone()) * 1e3,
        p99(acks) * 1e3
    );
    println!(
        "| acknowledged → delivered over the WebSocket | {:.0} | {:.0} |",
        clock::median(after_ack.clone()) * 1e3,
        p99(after_ack) * 1e3
    );
    Ok(())
}
