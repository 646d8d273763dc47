//! Loki push through the binary: on the ingest listener and on the query
//! listener (Loki clients push and read at one URL), read back over SQL.

use reqwest::StatusCode;

use crate::{Server, data_dir_args};

#[tokio::test]
async fn pushes_on_both_listeners_are_queryable() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = Server::start(
        "serve",
        &data_dir_args(&dir.path().join("data")),
        &dir.path().join("log"),
    )
    .await;
    let query_url = format!("http://127.0.0.1:{}", server.query_port);
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
