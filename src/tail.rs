//! `framelake tail '{app="web"} |= "error"'`: follows a LogQL query on a
//! running server (Loki's live tail) and prints each line as it is
//! acknowledged.

use futures::StreamExt;
use tokio_tungstenite::tungstenite::Message;

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The LogQL log query to follow.
    query: String,
    #[command(flatten)]
    connection: crate::client::Connection,
    /// How far back to start with the newest lines already stored (`5m`, `1h`).
    #[arg(long, default_value = "1h")]
    since: String,
    /// How many of those lines, at most.
    #[arg(long, default_value_t = 100)]
    limit: u32,
    /// Print the lines only, without their time and labels.
    #[arg(long)]
    raw: bool,
}

pub(crate) async fn run(args: Args) -> anyhow::Result<()> {
    let since = framelake_logql::parse_range(&args.since)
        .ok_or_else(|| anyhow::anyhow!("--since {:?} is not a duration (5m, 1h)", args.since))?;
    let start = framelake_lake::host::now_nanos() - since;
    let query: String = form_urlencoded::Serializer::new(String::new())
        .append_pair("query", &args.query)
        .append_pair("start", &start.to_string())
        .append_pair("limit", &args.limit.to_string())
        .finish();
    let mut socket = args
        .connection
        .websocket(&format!("/loki/api/v1/tail?{query}"))
        .await?;
    while let Some(message) = socket.next().await {
        match message? {
            Message::Text(text) => print(&serde_json::from_str(&text)?, args.raw),
            Message::Close(frame) => {
                if let Some(frame) = frame.filter(|f| !f.reason.is_empty()) {
                    anyhow::bail!("the server ended the tail: {}", frame.reason);
                }
                return Ok(());
            }
            _ => {}
        }
    }
    Ok(())
}

/// Prints a tail message's lines, oldest first: time, labels, line.
fn print(message: &serde_json::Value, raw: bool) {
    let mut lines: Vec<(i64, String, &str)> = Vec::new();
    for stream in message["streams"].as_array().into_iter().flatten() {
        let labels = stream["stream"]
            .as_object()
            .map(|m| {
                let inner: Vec<String> = m.iter().map(|(k, v)| format!("{k}={v}")).collect();
                format!("{{{}}}", inner.join(", "))
            })
            .unwrap_or_default();
        for value in stream["values"].as_array().into_iter().flatten() {
            let time = value[0].as_str().and_then(|t| t.parse().ok()).unwrap_or(0);
            lines.push((time, labels.clone(), value[1].as_str().unwrap_or("")));
        }
    }
    lines.sort_by_key(|(t, _, _)| *t);
    for (time, labels, line) in lines {
        if raw {
            println!("{line}");
        } else {
            println!("{} {labels} {line}", rfc3339(time));
        }
    }
    if let Some(dropped) = message["dropped_entries"].as_array() {
        eprintln!(
            "framelake tail: {} lines dropped (reading too slowly)",
            dropped.len()
        );
    }
}

fn rfc3339(ns: i64) -> String {
    framelake_logql::eval::format_time(ns, "2006-01-02T15:04:05.000000000Z07:00")
}
