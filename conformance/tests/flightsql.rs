//! Arrow FlightSQL with the clients Python users have: the ADBC FlightSQL
//! driver and pyarrow.flight, over data the OpenTelemetry Python SDK sent.

use serde_json::{Value, json};

use crate::sdk::{python, send};
use crate::{Server, data_dir_args};

fn sorted(values: &Value) -> Vec<Value> {
    let mut v = values.as_array().expect("a list").clone();
    v.sort_by_key(|v| v.to_string());
    v
}

/// The ids of the spans an SDK sender reported, sorted.
fn sent_span_ids(sent: &Value) -> Vec<Value> {
    let ids = sent["spans"]
        .as_array()
        .expect("spans")
        .iter()
        .map(|s| s["span_id"].clone())
        .collect();
    sorted(&Value::Array(ids))
}

#[tokio::test]
async fn adbc_and_pyarrow_flight_read_what_the_sdk_sent() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = Server::serve_in(dir.path()).await;
    let sent = send(
        &python(),
        "conformance/python/send.py",
        &["--endpoint", &server.http_url(), "--protocol", "http"],
        &dir.path().join("sent.json"),
    )
    .await;
    let service = sent["service_name"].as_str().expect("service_name");
    let uri = format!("grpc://127.0.0.1:{}", server.flight_port);
    let read = |tenant: &'static str, out: &'static str| {
        let args = ["--uri", &uri, "--tenant", tenant, "--service", service];
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let out = dir.path().join(out);
        async move {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            send(&python(), "conformance/python/flightsql.py", &args, &out).await
        }
    };
    let got = read("default", "default.json").await;

    let span_ids = sent_span_ids(&sent);
    assert_eq!(sorted(&got["spans"]), span_ids, "ADBC statement");
    assert_eq!(sorted(&got["pyarrow_spans"]), span_ids, "pyarrow.flight");
    assert_eq!(got["span_id_type"], "fixed_size_binary[8]");
    let bodies: Vec<Value> = sent["logs"]
        .as_array()
        .expect("logs")
        .iter()
        .map(|l| l["body"].clone())
        .collect();
    assert_eq!(
        got["logs"],
        json!(sorted(&Value::Array(bodies))),
        "prepared statement with a parameter"
    );

    assert_eq!(got["catalogs"], json!(["framelake"]));
    assert_eq!(
        got["tables"],
        json!([
            "blocks",
            "frames",
            "log_entries",
            "log_stats",
            "measures",
            "processes",
            "span_stats",
            "spans",
            "streams",
            "thread_spans"
        ])
    );
    let columns = got["spans_columns"].as_array().expect("columns");
    for column in [
        "trace_id",
        "span_id",
        "name",
        "start_time",
        "attributes",
        "events",
    ] {
        assert!(
            columns.contains(&json!(column)),
            "spans lacks {column}: {columns:?}"
        );
    }
    assert_eq!(got["vendor_name"], "framelake");
    let errors = &got["errors"];
    for (case, needle) in [
        ("syntax", "SQL error"),
        ("unknown_table", "not found"),
        ("write", "read-only"),
    ] {
        let error = errors[case]
            .as_str()
            .unwrap_or_else(|| panic!("{case}: no error"));
        assert!(error.contains("INVALID_ARGUMENT"), "{case}: {error}");
        assert!(error.contains(needle), "{case}: {error}");
    }

    let other = read("other", "other.json").await;
    assert_eq!(other["spans"], json!([]), "another tenant sees nothing");
    assert_eq!(other["pyarrow_spans"], json!([]));
    assert_eq!(other["logs"], json!([]));
}

/// With an auth file, ADBC and pyarrow.flight read with a reader's bearer
/// token; without a token ADBC gets UNAUTHENTICATED.
#[tokio::test]
async fn adbc_and_pyarrow_flight_with_a_bearer_token() {
    let dir = tempfile::tempdir().expect("temp dir");
    let tokens = dir.path().join("tokens.toml");
    std::fs::write(
        &tokens,
        "[[tokens]]\ntoken = \"w-token\"\ntenant = \"studio\"\nroles = [\"write\"]\n\
         [[tokens]]\ntoken = \"r-token\"\ntenant = \"studio\"\nroles = [\"read\"]\n",
    )
    .expect("tokens");
    let mut args = data_dir_args(&dir.path().join("data"));
    args.extend(["--auth-file".to_owned(), tokens.display().to_string()]);
    let server = Server::start("serve", &args, &dir.path().join("log")).await;
    let sent = send(
        &python(),
        "conformance/python/send.py",
        &[
            "--endpoint",
            &server.http_url(),
            "--protocol",
            "http",
            "--header",
            "Authorization=Bearer w-token",
        ],
        &dir.path().join("sent.json"),
    )
    .await;
    let service = sent["service_name"].as_str().expect("service_name");
    let uri = format!("grpc://127.0.0.1:{}", server.flight_port);
    let got = send(
        &python(),
        "conformance/python/flightsql.py",
        &[
            "--uri",
            &uri,
            "--tenant",
            "studio",
            "--service",
            service,
            "--token",
            "r-token",
        ],
        &dir.path().join("got.json"),
    )
    .await;
    let span_ids = sent_span_ids(&sent);
    assert!(!span_ids.is_empty());
    assert_eq!(sorted(&got["spans"]), span_ids, "ADBC with the token");
    assert_eq!(
        sorted(&got["pyarrow_spans"]),
        span_ids,
        "pyarrow.flight with the token"
    );
    let without = got["without_token"]
        .as_str()
        .expect("refused without a token");
    assert!(without.contains("UNAUTHENTICATED"), "{without}");
    assert!(server.terminate().success());
}
