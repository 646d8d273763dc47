//! Loki push through the binary: on the ingest listener and on the query
//! listener (Loki clients push and read at one URL), from real Loki clients
//! (`python-logging-loki`: JSON; `winston-loki`: snappy protobuf), read back
//! over SQL.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::Server;
use crate::sdk::{node, python, send};

/// The lines of a tenant over SQL, oldest first: line, labels (the resource's
/// attributes, `service.name` as `service_name`, without the push marker) and time.
async fn lines(server: &Server, tenant: &str) -> Vec<Value> {
    server
        .sql(
            tenant,
            "SELECT body, attributes_json(resource_attributes) AS labels, \
             arrow_cast(time, 'Int64') AS time FROM log_entries ORDER BY time",
        )
        .await
        .into_iter()
        .map(|r| {
            let mut labels: serde_json::Map<String, Value> =
                serde_json::from_str(r["labels"].as_str().expect("labels")).expect("JSON labels");
            let service = labels.remove("service.name").expect("a service name");
            labels.insert("service_name".into(), service);
            assert_eq!(
                labels.remove("framelake.loki.push"),
                Some(json!(true)),
                "a pushed stream is marked"
            );
            json!({ "line": r["body"], "labels": labels, "time_unix_nano": r["time"] })
        })
        .collect()
}

#[tokio::test]
async fn python_logging_loki_and_winston_loki_push_and_read_back() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = Server::serve_in(dir.path()).await;
    let query_url = server.query_url();

    // python-logging-loki: JSON, one push per line, times taken by the handler.
    let sent = send(
        &python(),
        "conformance/python/loki_push.py",
        &["--url", &server.http_url(), "--org-id", "py"],
        &dir.path().join("py.json"),
    )
    .await;
    let stored = lines(&server, "py").await;
    let sent = sent["lines"].as_array().expect("lines");
    assert_eq!(stored.len(), sent.len(), "{stored:?}");
    for (stored, sent) in stored.iter().zip(sent) {
        assert_eq!(stored["line"], sent["line"]);
        let mut labels = sent["labels"].clone();
        // Loki 3's service name rule: from `application`.
        labels["service_name"] = json!("py-loki");
        labels
            .as_object_mut()
            .expect("labels")
            .remove("application");
        let mut stored_labels = stored["labels"].clone();
        assert_eq!(stored_labels["application"], json!("py-loki"));
        stored_labels
            .as_object_mut()
            .expect("labels")
            .remove("application");
        assert_eq!(stored_labels, labels, "labels of {}", sent["line"]);
    }

    // winston-loki: one snappy protobuf batch, explicit times, on the query listener.
    let sent = send(
        &node(),
        "conformance/js/loki_push.mjs",
        &["--url", &query_url, "--org-id", "js"],
        &dir.path().join("js.json"),
    )
    .await;
    let expected: Vec<Value> = sent["lines"]
        .as_array()
        .expect("lines")
        .iter()
        .map(|l| {
            let mut labels = l["labels"].clone();
            labels["service_name"] = labels["app"].clone();
            json!({
                "line": l["line"],
                "labels": labels,
                "time_unix_nano": l["time_unix_nano"].as_str().expect("time").parse::<u64>().expect("ns"),
            })
        })
        .collect();
    assert_eq!(lines(&server, "js").await, expected);
    assert!(server.terminate().success(), "a clean shutdown exits 0");
}

#[tokio::test]
async fn pushes_on_both_listeners_are_queryable() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = Server::serve_in(dir.path()).await;
    let query_url = server.query_url();
    for (n, base) in [server.http_url(), query_url].into_iter().enumerate() {
        let body = format!(
            r#"{{"streams":[{{"stream":{{"app":"shop","listener":"{n}"}},"values":[["{}","line {n}",{{"trace_id":"t{n}"}}]]}}]}}"#,
            1_700_000_000_000_000_000u64 + n as u64
        );
        let response = reqwest::Client::new()
            .post(format!("{base}/loki/api/v1/push"))
            .header("content-type", "application/json")
            .header("x-scope-orgid", "loki-team")
            .body(body)
            .send()
            .await
            .expect("answers");
        assert_eq!(response.status(), StatusCode::NO_CONTENT, "{base}");
    }
    let rows = server
        .sql(
            "loki-team",
            "SELECT service_name, attr(resource_attributes, 'listener') AS listener, body, \
             attr(attributes, 'trace_id') AS trace_id, arrow_cast(time, 'Int64') AS time \
             FROM log_entries ORDER BY time",
        )
        .await;
    assert_eq!(
        rows,
        vec![
            serde_json::json!({"service_name": "shop", "listener": "0", "body": "line 0",
                "trace_id": "t0", "time": 1_700_000_000_000_000_000u64}),
            serde_json::json!({"service_name": "shop", "listener": "1", "body": "line 1",
                "trace_id": "t1", "time": 1_700_000_000_000_000_001u64}),
        ]
    );
    assert!(server.terminate().success(), "a clean shutdown exits 0");
}
