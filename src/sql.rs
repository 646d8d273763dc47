//! `framelake sql "SELECT …"`: runs a query on a running server's HTTP SQL API
//! and prints the result as a table, CSV or JSON.

use std::io::Write;

use anyhow::Context;
use futures::StreamExt;

/// How `framelake sql` prints rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum OutputFormat {
    /// An aligned table (the whole result is read first).
    Table,
    /// CSV with a header line, streamed.
    Csv,
    /// A JSON array of row objects, streamed.
    Json,
    /// One JSON object per line, streamed.
    Ndjson,
}

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The query.
    sql: String,
    #[command(flatten)]
    connection: crate::client::Connection,
    #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
    format: OutputFormat,
}

pub(crate) async fn run(args: Args) -> anyhow::Result<()> {
    let accept = match args.format {
        OutputFormat::Table => "application/vnd.apache.arrow.stream",
        OutputFormat::Csv => "text/csv",
        OutputFormat::Json => "application/json",
        OutputFormat::Ndjson => "application/x-ndjson",
    };
    let response = args
        .connection
        .send(reqwest::Method::POST, "/api/v1/sql", |r| {
            r.header("accept", accept)
                .json(&serde_json::json!({ "sql": args.sql }))
        })
        .await?;
    let mut stdout = std::io::stdout().lock();
    if args.format == OutputFormat::Table {
        let body = response.bytes().await.context("reading the result")?;
        let reader = arrow::ipc::reader::StreamReader::try_new(std::io::Cursor::new(body), None)
            .context("reading the result")?;
        let schema = reader.schema();
        let batches = reader
            .collect::<Result<Vec<_>, _>>()
            .context("reading the result")?;
        let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
        writeln!(
            stdout,
            "{}",
            arrow::util::pretty::pretty_format_batches_with_schema(schema, &batches)?
        )?;
        writeln!(stdout, "{rows} row{}", if rows == 1 { "" } else { "s" })?;
    } else {
        let mut body = response.bytes_stream();
        while let Some(chunk) = body.next().await {
            stdout.write_all(&chunk.context("reading the result")?)?;
        }
        if args.format == OutputFormat::Json {
            writeln!(stdout)?;
        }
    }
    stdout.flush()?;
    Ok(())
}
