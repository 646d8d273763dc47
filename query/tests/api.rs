//! The HTTP SQL API: tenancy, formats, and clear errors for bad queries.

use std::time::Duration;

use framelake_lake::tenancy::Tenancy;
use framelake_query::QueryLimits;
use serde_json::json;

use crate::data::{T0, logs_at};
use crate::{Stack, TOKENS};

#[tokio::test(flavor = "multi_thread")]
async fn tenants_see_only_their_rows() {
    let tenancy = Tenancy::from_toml(TOKENS).expect("token file");
    let stack = Stack::embedded(tenancy, QueryLimits::default()).await;
    let send = |token: &'static str, body: Vec<u8>| {
        let request = stack
            .client
            .post(format!("{}/v1/logs", stack.ingest_url))
            .header("content-type", "application/x-protobuf")
            .bearer_auth(token)
            .body(body);
        async move {
            let response = request.send().await.expect("receiver answers");
            assert_eq!(response.status(), 200);
        }
    };
    send("writer-a", logs_at(T0)).await;
    send("both-b", logs_at(T0 + 3_600_000_000_000)).await;

    let sql = "SELECT count(*) AS n, min(time) AS first FROM log_entries";
    let (status, body) = stack
        .query(sql, &[("authorization", "Bearer reader-a")])
        .await;
    assert_eq!(status, 200);
    let rows: serde_json::Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(rows, json!([{ "n": 4, "first": "2026-01-01T00:00:00Z" }]));
    let (status, body) = stack
        .query(sql, &[("authorization", "Bearer both-b")])
        .await;
    assert_eq!(status, 200);
    let rows: serde_json::Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(rows, json!([{ "n": 4, "first": "2026-01-01T01:00:00Z" }]));
    // The catalog views are scoped the same way.
    let (_, body) = stack
        .query(
            "SELECT count(*) AS n FROM processes",
            &[("authorization", "Bearer reader-a")],
        )
        .await;
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&body).expect("json"),
        json!([{ "n": 2 }])
    );

    let (status, body) = stack
        .query(
            sql,
            &[("authorization", "Bearer reader-a"), ("x-scope-orgid", "b")],
        )
        .await;
    assert_eq!(status, 403, "{}", String::from_utf8_lossy(&body));
    let (status, _) = stack
        .query(sql, &[("authorization", "Bearer writer-a")])
        .await;
    assert_eq!(status, 403, "a write-only token cannot read");
    let (status, _) = stack.query(sql, &[]).await;
    assert_eq!(status, 401);
    let (status, _) = stack.query(sql, &[("authorization", "Bearer nope")]).await;
    assert_eq!(status, 401);
}

fn error_of(body: &[u8]) -> String {
    let value: serde_json::Value = serde_json::from_slice(body).expect("JSON error body");
    value["error"].as_str().expect("error message").to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_queries_get_clear_errors() {
    // The memory case gets the default time limit, so that a slow host
    // cannot turn it into a timeout; the time limit is checked on its own.
    let limits = QueryLimits {
        memory_bytes: 4 << 20,
        ..QueryLimits::default()
    };
    let stack = Stack::embedded(Tenancy::open(), limits).await;
    stack.send("default", "logs", logs_at(T0)).await;
    let cases: &[(&str, u16, &str)] = &[
        ("SELEC 1", 400, "SQL error"),
        ("SELECT * FROM nope", 400, "not found"),
        ("SELECT nope FROM log_entries", 400, "nope"),
        (
            "SELECT CAST(body AS INT) FROM log_entries",
            400,
            "Cannot cast",
        ),
        ("CREATE TABLE t AS SELECT 1", 400, "read-only"),
        (
            "CREATE EXTERNAL TABLE t STORED AS CSV LOCATION '/etc/passwd'",
            400,
            "read-only",
        ),
        (
            "INSERT INTO log_entries SELECT * FROM log_entries",
            400,
            "read-only",
        ),
        (
            "COPY (SELECT 1) TO '/tmp/framelake-copy.csv'",
            400,
            "read-only",
        ),
        ("SET datafusion.execution.batch_size = 1", 400, "read-only"),
        ("DROP VIEW spans", 400, "read-only"),
        (
            "SELECT v, count(*) FROM generate_series(1, 20000000) AS t(v) GROUP BY v ORDER BY 2 DESC LIMIT 1",
            422,
            "more memory",
        ),
    ];
    for (sql, status, message) in cases {
        let (got, body) = stack.query(sql, &[]).await;
        let error = error_of(&body);
        assert_eq!(got, *status, "{sql}: {error}");
        assert!(
            error.contains(message),
            "{sql}: {error:?} lacks {message:?}"
        );
    }
    let hasty = Stack::embedded(
        Tenancy::open(),
        QueryLimits {
            timeout: Duration::from_millis(1500),
            ..QueryLimits::default()
        },
    )
    .await;
    let (got, body) = hasty
        .query(
            "SELECT sum(value % 7) FROM generate_series(1, 100000000000)",
            &[],
        )
        .await;
    let error = error_of(&body);
    assert_eq!(got, 504, "{error}");
    assert!(error.contains("time limit"), "{error:?}");
    assert!(
        !std::path::Path::new("/tmp/framelake-copy.csv").exists(),
        "COPY wrote a file"
    );
    // The server still answers after all that.
    assert_eq!(
        stack.rows("SELECT count(*) AS n FROM log_entries").await,
        vec![json!({ "n": 4 })]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn results_come_in_the_format_asked() {
    let stack = Stack::embedded(Tenancy::open(), QueryLimits::default()).await;
    stack.send("default", "logs", logs_at(T0)).await;
    let sql = "SELECT severity_text, body, trace_id FROM log_entries WHERE service_name = 'checkout' ORDER BY time";

    // Attribute maps are JSON objects of plain values.
    assert_eq!(
        stack
            .rows("SELECT attributes FROM log_entries WHERE body = 'order placed'")
            .await,
        vec![json!({ "attributes": { "order.id": 1001, "amount": 12.5 } })]
    );

    let (status, body) = stack
        .query(sql, &[("accept", "application/x-ndjson")])
        .await;
    assert_eq!(status, 200);
    let lines: Vec<serde_json::Value> = body
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_slice(l).expect("a JSON line"))
        .collect();
    assert_eq!(lines.len(), 3);
    assert_eq!(
        lines[2],
        json!({
            "severity_text": "ERROR",
            "body": "payment declined",
            "trace_id": "0102030405060708090a0b0c0d0e0f10",
        })
    );
    assert_eq!(lines[0]["trace_id"], serde_json::Value::Null);

    let (status, body) = stack.query(sql, &[("accept", "text/csv")]).await;
    assert_eq!(status, 200);
    assert_eq!(
        String::from_utf8_lossy(&body),
        "severity_text,body,trace_id\nINFO,order placed,\nWARN,slow payment provider,\nERROR,payment declined,0102030405060708090a0b0c0d0e0f10\n"
    );
    let (_, body) = stack
        .query(
            "SELECT body FROM log_entries WHERE false",
            &[("accept", "text/csv")],
        )
        .await;
    assert_eq!(
        String::from_utf8_lossy(&body),
        "body\n",
        "an empty result keeps its header"
    );
    let (_, body) = stack
        .query("SELECT body FROM log_entries WHERE false", &[])
        .await;
    assert_eq!(String::from_utf8_lossy(&body), "[]");

    let (status, body) = stack
        .query(sql, &[("accept", "application/vnd.apache.arrow.stream")])
        .await;
    assert_eq!(status, 200);
    let reader = arrow::ipc::reader::StreamReader::try_new(std::io::Cursor::new(body), None)
        .expect("an Arrow stream");
    let batches: Vec<_> = reader.map(|b| b.expect("batch")).collect();
    assert_eq!(batches.iter().map(|b| b.num_rows()).sum::<usize>(), 3);
    assert_eq!(
        batches[0].schema().field(2).data_type(),
        &arrow::datatypes::DataType::FixedSizeBinary(16)
    );

    let (status, body) = stack.query(sql, &[("accept", "application/xml")]).await;
    assert_eq!(status, 406, "{}", error_of(&body));
    let response = stack
        .client
        .post(format!("{}/api/v1/sql", stack.query_url))
        .header("content-type", "application/xml")
        .body("<sql/>")
        .send()
        .await
        .expect("answers");
    assert_eq!(response.status(), 415);
    let response = stack
        .client
        .post(format!("{}/api/v1/sql", stack.query_url))
        .header("content-type", "application/sql")
        .body("SELECT count(*) AS n FROM log_entries")
        .send()
        .await
        .expect("answers");
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.expect("body"), r#"[{"n":4}]"#);
}
