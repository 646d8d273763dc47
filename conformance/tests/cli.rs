//! `framelake sql` against a running `framelake serve`.

use std::process::Command;

use crate::{Server, data_dir_args};

fn sql(server: &Server, args: &[&str]) -> (bool, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_framelake"))
        .arg("sql")
        .arg("--url")
        .arg(format!("http://127.0.0.1:{}", server.query_port))
        .args(args)
        .output()
        .expect("framelake sql runs");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test]
async fn sql_command_prints_tables_csv_and_errors() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = Server::serve_in(dir.path()).await;
    let logs = serde_json::json!({"resourceLogs": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "shop"}}]},
        "scopeLogs": [{"logRecords": [{
            "timeUnixNano": "1767225600000000000",
            "severityText": "INFO",
            "body": {"stringValue": "hello, world"}
        }]}]
    }]});
    for tenant in ["team-a", "team-b"] {
        let response = reqwest::Client::new()
            .post(format!("{}/v1/logs", server.http_url()))
            .header("x-scope-orgid", tenant)
            .json(&logs)
            .send()
            .await
            .expect("receiver answers");
        assert_eq!(response.status(), 200);
    }
    let query = "SELECT time, service_name, body FROM log_entries";

    let (ok, out, err) = sql(&server, &["--tenant", "team-a", query]);
    assert!(ok, "{err}");
    assert_eq!(
        out,
        "+----------------------+--------------+--------------+\n\
         | time                 | service_name | body         |\n\
         +----------------------+--------------+--------------+\n\
         | 2026-01-01T00:00:00Z | shop         | hello, world |\n\
         +----------------------+--------------+--------------+\n\
         1 row\n"
    );
    let (ok, out, _) = sql(&server, &["--tenant", "team-a", "--format", "csv", query]);
    assert!(ok);
    assert_eq!(
        out,
        "time,service_name,body\n2026-01-01T00:00:00Z,shop,\"hello, world\"\n"
    );
    let (ok, out, _) = sql(&server, &["--tenant", "team-c", "--format", "json", query]);
    assert!(ok);
    assert_eq!(out.trim(), "[]", "another tenant sees nothing");

    let (ok, out, err) = sql(&server, &["--tenant", "team-a", "SELECT * FROM nope"]);
    assert!(!ok, "a failed query exits non-zero");
    assert!(out.is_empty());
    assert!(
        err.starts_with("framelake sql: 400 Bad Request: ") && err.contains("nope"),
        "{err}"
    );
}

/// Aggregate views from the configuration file are queryable; a definition
/// that cannot work stops the server before it listens, saying why.
#[tokio::test]
async fn configured_aggregates_are_queryable_and_broken_ones_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("framelake.toml");
    std::fs::write(
        &config,
        r#"
[[aggregates]]
name = "bodies"
source = "log_entries"
transform = "SELECT date_bin(INTERVAL '1 minute', time) AS time, body, count(*) AS n FROM log_entries GROUP BY 1, 2"
merge = "SELECT time, body, sum(n) AS n FROM bodies GROUP BY 1, 2"
"#,
    )
    .expect("config written");
    let mut args = data_dir_args(&dir.path().join("data"));
    args.push(format!("--config={}", config.display()));
    let server = Server::start("serve", &args, &dir.path().join("log")).await;
    let logs = serde_json::json!({"resourceLogs": [{"scopeLogs": [{"logRecords": [
        {"timeUnixNano": "1767225600000000000", "body": {"stringValue": "hello"}},
        {"timeUnixNano": "1767225601000000000", "body": {"stringValue": "hello"}}
    ]}]}]});
    let response = reqwest::Client::new()
        .post(format!("{}/v1/logs", server.http_url()))
        .json(&logs)
        .send()
        .await
        .expect("receiver answers");
    assert_eq!(response.status(), 200);
    let (ok, out, err) = sql(
        &server,
        &["--format", "csv", "SELECT time, body, n FROM bodies"],
    );
    assert!(ok, "{err}");
    assert_eq!(out, "time,body,n\n2026-01-01T00:00:00Z,hello,2\n");
    drop(server);

    std::fs::write(
        &config,
        "[[aggregates]]\nname = \"broken\"\nsource = \"log_entries\"\n\
         transform = \"SELECT count(*) AS n FROM log_entries\"\nmerge = \"SELECT sum(n) AS n FROM broken\"\n",
    )
    .expect("config written");
    let output = Command::new(env!("CARGO_BIN_EXE_framelake"))
        .arg("serve")
        .args(&args)
        .output()
        .expect("framelake runs");
    assert!(!output.status.success());
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(
        err.contains("aggregate \"broken\"") && err.contains("timestamp column `time`"),
        "{err}"
    );
}
