//! The OpenTelemetry Python SDK (gRPC and HTTP/protobuf exporters) and JS SDK
//! (HTTP/JSON exporters) send traces, logs and metrics; the lake holds every
//! field they sent.

use std::path::Path;

use framelake_lake::ids::BlockKind;
use framelake_lake::store::S3Options;
use framelake_lake::{Lake, LakeConfig};
use serde_json::Value;

use crate::render::{self, assert_matches};
use crate::{Server, data_dir_args, embedded_lake, stored};

/// Runs a sender script and returns what it says it sent.
pub(crate) async fn send(program: &Path, script: &str, args: &[&str], out: &Path) -> Value {
    let root = framelake_testkit::workspace_root();
    let output = tokio::process::Command::new(program)
        .arg(root.join(script))
        .args(args)
        .arg("--out")
        .arg(out)
        .output()
        .await
        .unwrap_or_else(|e| {
            panic!(
                "running {} (scripts/test installs it): {e}",
                program.display()
            )
        });
    assert!(
        output.status.success(),
        "{script} {args:?} failed ({}):\n{}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&std::fs::read(out).expect("sender output"))
        .expect("sender output is JSON")
}

pub(crate) fn python() -> std::path::PathBuf {
    let python = framelake_testkit::venv_python();
    assert!(
        python.is_file(),
        "{} is missing: run scripts/test, which creates the venv",
        python.display()
    );
    python
}

fn node() -> std::path::PathBuf {
    let modules = framelake_testkit::workspace_root().join("conformance/js/node_modules");
    assert!(
        modules.is_dir(),
        "{} is missing: run scripts/test (npm ci in conformance/js)",
        modules.display()
    );
    "node".into()
}

/// Checks that `stored` (resource, item) pairs are exactly the items `sent[list]`
/// describes, matched by `key`, each under the resource that was sent.
fn assert_items(sent: &Value, stored: Vec<(Value, Value)>, list: &str, key: &str) {
    let service = &sent["service_name"];
    let expected_items = sent[list].as_array().expect("a list of sent items");
    assert_eq!(
        stored.len(),
        expected_items.len(),
        "{service}: every one of {list} stored once"
    );
    for expected in expected_items {
        let (resource, item) = stored
            .iter()
            .find(|(_, item)| item[key] == expected[key])
            .unwrap_or_else(|| panic!("{service}: {list} item {} not stored", expected[key]));
        assert_matches(&sent["resource"], resource, &format!("{service}.resource"));
        assert_matches(
            expected,
            item,
            &format!("{service}.{list}[{}]", expected[key]),
        );
    }
}

/// Checks that the lake holds, for `tenant`, exactly what `sent` describes.
async fn assert_stored(lake: &Lake, tenant: &str, sent: &Value) {
    let service = sent["service_name"].as_str().expect("service_name");
    let ours = |(resource, _): &(Value, Value)| resource["service.name"] == service;

    let spans = render::spans(&stored(lake, tenant, BlockKind::OtlpSpans).await);
    assert_items(
        sent,
        spans.into_iter().filter(ours).collect(),
        "spans",
        "span_id",
    );
    let logs = render::logs(&stored(lake, tenant, BlockKind::OtlpLogs).await);
    assert_items(
        sent,
        logs.into_iter().filter(ours).collect(),
        "logs",
        "body",
    );

    let metrics: Vec<_> = render::metrics(&stored(lake, tenant, BlockKind::OtlpMetrics).await)
        .into_iter()
        .filter(ours)
        .collect();
    for expected in sent["metrics"].as_array().expect("metrics") {
        let name = &expected["name"];
        let (_, metric) = metrics
            .iter()
            .rev()
            .find(|(_, m)| &m["name"] == name)
            .unwrap_or_else(|| panic!("{service}: metric {name} not stored"));
        assert_matches(expected, metric, &format!("{service}.metric[{name}]"));
    }
}

/// Checks that SQL returns, for `tenant`, the spans and log records `sent` describes.
async fn assert_queryable(server: &Server, tenant: &str, sent: &Value) {
    let service = sent["service_name"].as_str().expect("service_name");
    let sorted = |mut v: Vec<Value>| {
        v.sort_by_key(|v| v.to_string());
        v
    };
    let sent_of = |list: &str, key: &str| {
        sorted(
            sent[list]
                .as_array()
                .expect("list")
                .iter()
                .map(|item| item[key].clone())
                .collect(),
        )
    };
    let column =
        |rows: Vec<Value>, key: &str| sorted(rows.iter().map(|r| r[key].clone()).collect());
    let spans = server
        .sql(
            tenant,
            &format!("SELECT span_id FROM spans WHERE service_name = '{service}'"),
        )
        .await;
    assert_eq!(
        column(spans, "span_id"),
        sent_of("spans", "span_id"),
        "{service}: spans in SQL"
    );
    let logs = server
        .sql(
            tenant,
            &format!("SELECT body FROM log_entries WHERE service_name = '{service}'"),
        )
        .await;
    assert_eq!(
        column(logs, "body"),
        sent_of("logs", "body"),
        "{service}: logs in SQL"
    );
}

#[tokio::test]
async fn python_sdk_over_grpc_and_http_protobuf() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = Server::start(
        "serve",
        &data_dir_args(&dir.path().join("data")),
        &dir.path().join("log"),
    )
    .await;
    let grpc = send(
        &python(),
        "conformance/python/send.py",
        &["--endpoint", &server.grpc_url(), "--protocol", "grpc"],
        &dir.path().join("grpc.json"),
    )
    .await;
    let http = send(
        &python(),
        "conformance/python/send.py",
        &["--endpoint", &server.http_url(), "--protocol", "http"],
        &dir.path().join("http.json"),
    )
    .await;
    let lake = embedded_lake(&dir.path().join("data")).await;
    assert_stored(&lake, "default", &grpc).await;
    assert_stored(&lake, "default", &http).await;
    assert_queryable(&server, "default", &grpc).await;
    assert_queryable(&server, "default", &http).await;
    assert!(server.terminate().success(), "a clean shutdown exits 0");
}

#[tokio::test]
async fn js_sdk_over_http_json() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = Server::start(
        "serve",
        &data_dir_args(&dir.path().join("data")),
        &dir.path().join("log"),
    )
    .await;
    let args = [
        "--endpoint",
        &server.http_url(),
        "--header",
        "X-Scope-OrgID=js-team",
    ];
    let sent = send(
        &node(),
        "conformance/js/send.mjs",
        &args,
        &dir.path().join("js.json"),
    )
    .await;
    let lake = embedded_lake(&dir.path().join("data")).await;
    assert_stored(&lake, "js-team", &sent).await;
    assert_queryable(&server, "js-team", &sent).await;
    assert!(
        stored::<opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest>(
            &lake,
            "default",
            BlockKind::OtlpSpans
        )
        .await
        .is_empty()
    );
}

/// The cluster shape: `framelake receiver` on PostgreSQL and an S3-compatible
/// server, configured by a TOML file, with bearer tokens.
#[tokio::test]
async fn receiver_role_on_postgres_and_s3_with_tokens() {
    let dir = tempfile::tempdir().expect("temp dir");
    let s3 = framelake_testkit::s3();
    let bucket = s3.create_bucket("conformance").await;
    let database_url = framelake_testkit::postgres()
        .create_database("conformance")
        .await;
    let tokens = dir.path().join("tokens.toml");
    std::fs::write(
        &tokens,
        "[[tokens]]\ntoken = \"sekret\"\ntenant = \"studio\"\nroles = [\"write\"]\n",
    )
    .expect("tokens");
    let config = dir.path().join("framelake.toml");
    std::fs::write(
        &config,
        format!(
            "database_url = \"{database_url}\"\nobject_store_url = \"s3://{bucket}/lake\"\ns3_endpoint = \"{}\"\n\
             s3_region = \"{}\"\ns3_access_key_id = \"test\"\ns3_secret_access_key = \"test\"\nauth_file = \"{}\"\n",
            s3.endpoint(),
            s3.region(),
            tokens.display()
        ),
    )
    .expect("config");
    let args = vec!["--config".to_owned(), config.display().to_string()];
    let server = Server::start("receiver", &args, &dir.path().join("log")).await;

    let python = python();
    let unauthorized = tokio::process::Command::new(&python)
        .arg(framelake_testkit::workspace_root().join("conformance/python/send.py"))
        .args([
            "--endpoint",
            &server.http_url(),
            "--protocol",
            "http",
            "--out",
        ])
        .arg(dir.path().join("denied.json"))
        .output()
        .await
        .expect("runs");
    assert!(
        !unauthorized.status.success(),
        "without a token the SDK's exports fail"
    );

    let auth = "Authorization=Bearer sekret";
    let sent = send(
        &python,
        "conformance/python/send.py",
        &[
            "--endpoint",
            &server.http_url(),
            "--protocol",
            "http",
            "--header",
            auth,
        ],
        &dir.path().join("http.json"),
    )
    .await;
    let lake = Lake::open(&LakeConfig {
        database_url,
        object_store_url: format!("s3://{bucket}/lake"),
        s3: S3Options {
            endpoint: Some(s3.endpoint()),
            region: Some(s3.region().to_owned()),
            access_key_id: Some("test".to_owned()),
            secret_access_key: Some("test".to_owned()),
        },
    })
    .await
    .expect("lake opens");
    assert_stored(&lake, "studio", &sent).await;
    assert!(server.terminate().success());
}
