//! The OpenTelemetry Python SDK (gRPC and HTTP/protobuf exporters) and JS SDK
//! (HTTP/JSON exporters) send traces, logs and metrics; the lake holds every
//! field they sent.

use std::collections::BTreeMap;
use std::path::Path;

use framelake_lake::ids::BlockKind;
use framelake_lake::store::S3Options;
use framelake_lake::{Lake, LakeConfig};
use serde_json::{Value, json};

use crate::render::{self, assert_matches};
use crate::{Server, embedded_lake, stored};

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

pub(crate) fn node() -> std::path::PathBuf {
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

/// Checks that the views return, for `tenant`, the spans and log records
/// `sent` describes, column by column (typed and array attributes, events,
/// links, status, scope), and every metric point exported, once.
async fn assert_queryable(server: &Server, tenant: &str, sent: &Value) {
    let service = sent["service_name"].as_str().expect("service_name");
    let of_service = format!("service_name = '{service}'");
    // Ids as the SDKs print them: hex, "" when absent.
    let id = |v: &Value| if v.is_null() { json!("") } else { v.clone() };

    // Events and links by span, in the order they were recorded.
    let mut events: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for r in server
        .sql(
            tenant,
            &format!(
                "SELECT span_id, e['name'] AS name, arrow_cast(e['time'], 'Int64') AS time, \
                 e['attributes'] AS attributes \
                 FROM (SELECT span_id, unnest(events) AS e FROM spans WHERE {of_service}) \
                 ORDER BY span_id, time"
            ),
        )
        .await
    {
        events
            .entry(key_of(&r["span_id"]))
            .or_default()
            .push(json!({
                "name": r["name"], "time_unix_nano": r["time"], "attributes": r["attributes"],
            }));
    }
    let mut links: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for r in server
        .sql(
            tenant,
            &format!(
                "SELECT span_id, l['trace_id'] AS trace_id, l['span_id'] AS link_span_id, \
                 l['attributes'] AS attributes \
                 FROM (SELECT span_id, unnest(links) AS l FROM spans WHERE {of_service})"
            ),
        )
        .await
    {
        links.entry(key_of(&r["span_id"])).or_default().push(json!({
            "trace_id": id(&r["trace_id"]), "span_id": id(&r["link_span_id"]),
            "attributes": r["attributes"],
        }));
    }
    let spans: Vec<Value> = server
        .sql(
            tenant,
            &format!(
                "SELECT trace_id, span_id, parent_span_id, name, kind, scope_name, scope_version, \
                 arrow_cast(start_time, 'Int64') AS start, arrow_cast(end_time, 'Int64') AS end, \
                 attributes, status_code, status_message FROM spans WHERE {of_service}"
            ),
        )
        .await
        .into_iter()
        .map(|r| {
            let span = key_of(&r["span_id"]);
            json!({
                "trace_id": id(&r["trace_id"]),
                "span_id": id(&r["span_id"]),
                "parent_span_id": id(&r["parent_span_id"]),
                "name": r["name"],
                "kind": r["kind"],
                "scope": { "name": r["scope_name"], "version": r["scope_version"] },
                "start_time_unix_nano": r["start"],
                "end_time_unix_nano": r["end"],
                "attributes": r["attributes"],
                "events": events.get(&span).cloned().unwrap_or_default(),
                "links": links.get(&span).cloned().unwrap_or_default(),
                "status": { "code": r["status_code"], "message": r["status_message"] },
            })
        })
        .collect();
    let mut sent_spans = sent["spans"].as_array().expect("spans").clone();
    for span in &mut sent_spans {
        // Events of one span in time order, as the view query returns them.
        if let Some(list) = span["events"].as_array_mut() {
            list.sort_by_key(|e| e["time_unix_nano"].as_u64());
        }
    }
    assert_rows(
        &sent_spans,
        &spans,
        "span_id",
        &format!("{service}: spans in SQL"),
    );

    let logs: Vec<Value> = server
        .sql(
            tenant,
            &format!(
                "SELECT arrow_cast(time, 'Int64') AS time, \
                 arrow_cast(observed_time, 'Int64') AS observed, severity_number, severity_text, \
                 body, attributes, trace_id, span_id, scope_name, scope_version \
                 FROM log_entries WHERE {of_service}"
            ),
        )
        .await
        .into_iter()
        .map(|r| {
            json!({
                "time_unix_nano": r["time"],
                "observed_time_unix_nano": r["observed"],
                "severity_number": r["severity_number"],
                "severity_text": r["severity_text"],
                "body": r["body"],
                "attributes": r["attributes"],
                "trace_id": id(&r["trace_id"]),
                "span_id": id(&r["span_id"]),
                "scope": { "name": r["scope_name"], "version": r["scope_version"] },
            })
        })
        .collect();
    assert_rows(
        sent["logs"].as_array().expect("logs"),
        &logs,
        "body",
        &format!("{service}: logs in SQL"),
    );

    // Every point of every export, once: a point stored twice shows here.
    let counts: BTreeMap<String, Value> = server
        .sql(
            tenant,
            &format!("SELECT name, count(*) AS n FROM measures WHERE {of_service} GROUP BY name"),
        )
        .await
        .into_iter()
        .map(|r| (r["name"].as_str().expect("name").to_owned(), r["n"].clone()))
        .collect();
    let exported: BTreeMap<String, Value> = sent["metric_points"]
        .as_object()
        .expect("metric_points")
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    assert_eq!(counts, exported, "{service}: metric points in SQL");
    // Exemplars by their point (metric, time, attributes), in stored order.
    let point_key =
        |r: &Value, time: &str| format!("{} {} {}", r["name"], r[time], r["attributes"]);
    let mut exemplars: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for r in server
        .sql(
            tenant,
            &format!(
                "SELECT name, point_time, attributes, arrow_cast(e['time'], 'Int64') AS time, \
                 e['value'] AS value, e['int_value'] AS int_value, e['trace_id'] AS trace_id, \
                 e['span_id'] AS span_id, e['filtered_attributes'] AS filtered_attributes \
                 FROM (SELECT name, arrow_cast(time, 'Int64') AS point_time, attributes, \
                 unnest(exemplars) AS e FROM measures WHERE {of_service})"
            ),
        )
        .await
    {
        let (value_type, value) = match &r["int_value"] {
            Value::Null => ("double", &r["value"]),
            int => ("int", int),
        };
        exemplars
            .entry(point_key(&r, "point_time"))
            .or_default()
            .push(json!({
                "time_unix_nano": r["time"], "value_type": value_type, "value": value,
                "trace_id": id(&r["trace_id"]), "span_id": id(&r["span_id"]),
                "filtered_attributes": r["filtered_attributes"],
            }));
    }
    // The last export's points, column by column.
    let points = server
        .sql(
            tenant,
            &format!(
                "SELECT name, description, unit, type, aggregation_temporality, is_monotonic, \
                 scope_name, scope_version, attributes, \
                 coalesce(arrow_cast(start_time, 'Int64'), 0) AS start, \
                 arrow_cast(time, 'Int64') AS time, value, int_value, count, sum, min, max, \
                 bucket_counts, explicit_bounds, scale, zero_count, positive_offset, \
                 positive_bucket_counts, negative_offset, negative_bucket_counts \
                 FROM measures WHERE {of_service}"
            ),
        )
        .await;
    for expected in sent["metrics"].as_array().expect("metrics") {
        let name = &expected["name"];
        let rows: Vec<&Value> = points.iter().filter(|r| &r["name"] == name).collect();
        let last = rows.iter().filter_map(|r| r["time"].as_i64()).max();
        let rows: Vec<&Value> = rows
            .into_iter()
            .filter(|r| r["time"].as_i64() == last)
            .collect();
        let first = rows
            .first()
            .unwrap_or_else(|| panic!("{service}: {name} not in SQL"));
        let kind = first["type"].as_str().expect("type");
        let mut metric = json!({
            "name": name,
            "description": first["description"],
            "unit": first["unit"],
            "type": kind,
            "scope": { "name": first["scope_name"], "version": first["scope_version"] },
            "aggregation_temporality": first["aggregation_temporality"],
            "is_monotonic": first["is_monotonic"],
        });
        metric["points"] = rows
            .iter()
            .map(|r| {
                let mut point = json!({
                    "attributes": r["attributes"],
                    "start_time_unix_nano": r["start"],
                    "time_unix_nano": r["time"],
                    "exemplars": exemplars.get(&point_key(r, "time")).cloned().unwrap_or_default(),
                });
                let fields = match kind {
                    "sum" | "gauge" if r["int_value"].is_null() => {
                        json!({ "value_type": "double", "value": r["value"] })
                    }
                    "sum" | "gauge" => json!({ "value_type": "int", "value": r["int_value"] }),
                    "histogram" => json!({
                        "count": r["count"], "sum": r["sum"], "min": r["min"], "max": r["max"],
                        "bucket_counts": r["bucket_counts"], "explicit_bounds": r["explicit_bounds"],
                    }),
                    _ => json!({
                        "count": r["count"], "sum": r["sum"], "min": r["min"], "max": r["max"],
                        "scale": r["scale"], "zero_count": r["zero_count"],
                        "positive": {
                            "offset": r["positive_offset"],
                            "bucket_counts": r["positive_bucket_counts"],
                        },
                        "negative": {
                            "offset": r["negative_offset"],
                            "bucket_counts": r["negative_bucket_counts"],
                        },
                    }),
                };
                for (k, v) in fields.as_object().expect("fields") {
                    point[k] = v.clone();
                }
                point
            })
            .collect();
        // Points of one metric in the same order on both sides.
        let by_attributes = |points: &mut Value| {
            if let Some(list) = points.as_array_mut() {
                list.sort_by_key(|p| p["attributes"].to_string());
            }
        };
        let mut expected = expected.clone();
        by_attributes(&mut expected["points"]);
        by_attributes(&mut metric["points"]);
        assert_matches(
            &expected,
            &metric,
            &format!("{service}: metric {name} in SQL"),
        );
    }
}

/// A JSON value as a map key.
fn key_of(v: &Value) -> String {
    v.to_string()
}

/// Asserts that `rows` are exactly the `sent` items, matched by `key` (each
/// sent item's fields in its row, with the same values and types).
fn assert_rows(sent: &[Value], rows: &[Value], key: &str, what: &str) {
    assert_eq!(rows.len(), sent.len(), "{what}: every item once");
    for expected in sent {
        let row = rows
            .iter()
            .find(|r| r[key] == expected[key])
            .unwrap_or_else(|| panic!("{what}: {} is missing", expected[key]));
        assert_matches(expected, row, &format!("{what}[{}]", expected[key]));
    }
}

#[tokio::test]
async fn python_sdk_over_grpc_and_http_protobuf() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = Server::serve_in(dir.path()).await;
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
    for sent in [&grpc, &http] {
        // The counter's and the histogram's measurements made in a span.
        let exemplars: Vec<&Value> = sent["metrics"]
            .as_array()
            .expect("metrics")
            .iter()
            .flat_map(|m| m["points"].as_array().expect("points"))
            .flat_map(|p| p["exemplars"].as_array().expect("exemplars"))
            .collect();
        assert_eq!(
            exemplars.len(),
            2,
            "the scenario's exemplars: {exemplars:?}"
        );
    }
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
    let server = Server::serve_in(dir.path()).await;
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
        "[[tokens]]\ntoken = \"sekret\"\ntenant = \"studio\"\nroles = [\"write\"]\n\
         [[tokens]]\ntoken = \"reader\"\ntenant = \"studio\"\nroles = [\"read\"]\n",
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

    // The query role reads it with a reader's token, and only with one.
    let query = Server::start("query", &args, &dir.path().join("query.log")).await;
    let sql = |token: Option<&'static str>| {
        let mut request = reqwest::Client::new()
            .post(format!("http://127.0.0.1:{}/api/v1/sql", query.query_port))
            .header("content-type", "application/sql")
            .body("SELECT count(*) AS n FROM spans");
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        async move {
            let response = request.send().await.expect("the query role answers");
            let status = response.status().as_u16();
            let body = response.text().await.expect("body");
            (status, serde_json::from_str::<Value>(&body).ok())
        }
    };
    let spans = sent["spans"].as_array().expect("spans").len();
    let counted = Some(serde_json::json!([{ "n": spans }]));
    assert_eq!(sql(Some("reader")).await, (200, counted.clone()));
    assert_eq!(sql(None).await.0, 401);
    assert_eq!(
        sql(Some("sekret")).await.0,
        403,
        "a writer's token cannot read"
    );
    // Tempo's API, with the same tokens.
    let trace_id = sent["spans"][0]["trace_id"].as_str().expect("an id");
    for path in [
        format!("/api/v2/traces/{trace_id}"),
        "/api/echo".to_owned(),
        "/api/v2/search/tags".to_owned(),
        "/api/v2/search/tag/name/values".to_owned(),
        "/api/search/tags".to_owned(),
    ] {
        let tempo = |token: Option<&'static str>| {
            let mut request = reqwest::Client::new()
                .get(format!("{}{path}", query.query_url()))
                .header("accept", "application/protobuf");
            if let Some(token) = token {
                request = request.bearer_auth(token);
            }
            async move {
                let response = request.send().await.expect("the query role answers");
                response.status().as_u16()
            }
        };
        assert_eq!(tempo(Some("reader")).await, 200, "{path}");
        assert_eq!(tempo(None).await, 401, "{path}");
        assert_eq!(tempo(Some("sekret")).await, 403, "{path}");
    }
    // Without a receiver in the process, a Loki push is told where to go.
    let push = reqwest::Client::new()
        .post(format!("{}/loki/api/v1/push", query.query_url()))
        .header("content-type", "application/json")
        .body(r#"{"streams":[]}"#)
        .send()
        .await
        .expect("the query role answers");
    assert_eq!(push.status().as_u16(), 404);
    assert!(
        push.text()
            .await
            .expect("body")
            .contains("push to a receiver"),
        "the answer names the receiver"
    );
    // With --receiver-url, it forwards the push (token and all) and reads
    // it back through the Loki API.
    let mut forwarding_args = args.clone();
    forwarding_args.extend(["--receiver-url".to_owned(), server.http_url()]);
    let forwarding = Server::start(
        "query",
        &forwarding_args,
        &dir.path().join("query-forwarding.log"),
    )
    .await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_nanos();
    let body = serde_json::json!({"streams": [{"stream": {"app": "forwarded"},
        "values": [[now.to_string(), "through the query listener"]]}]})
    .to_string();
    let push = |token: &'static str| {
        reqwest::Client::new()
            .post(format!("{}/loki/api/v1/push", forwarding.query_url()))
            .header("content-type", "application/json")
            .bearer_auth(token)
            .body(body.clone())
            .send()
    };
    assert_eq!(
        push("reader").await.expect("answers").status().as_u16(),
        403,
        "the receiver's answer: a reader cannot write"
    );
    assert_eq!(
        push("sekret").await.expect("answers").status().as_u16(),
        204
    );
    let read = reqwest::Client::new()
        .get(format!(
            "{}/loki/api/v1/query_range",
            forwarding.query_url()
        ))
        .query(&[
            ("query", r#"{app="forwarded"}"#.to_owned()),
            ("start", (now - 1_000_000_000).to_string()),
            ("end", (now + 1_000_000_000).to_string()),
        ])
        .bearer_auth("reader")
        .send()
        .await
        .expect("answers")
        .json::<Value>()
        .await
        .expect("JSON");
    assert_eq!(
        read["data"]["result"][0]["values"][0][1],
        "through the query listener"
    );

    // The maintain role, with its flag, materializes what the receiver stored.
    let mut maintain_args = args.clone();
    maintain_args.extend(["--materialize-interval-ms".to_owned(), "100".to_owned()]);
    let maintain =
        Server::start("maintain", &maintain_args, &dir.path().join("maintain.log")).await;
    let studio: framelake_lake::ids::TenantId = "studio".parse().expect("tenant");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !lake
        .catalog
        .pending_tenants()
        .await
        .expect("catalog")
        .is_empty()
    {
        assert!(
            std::time::Instant::now() < deadline,
            "maintain did not materialize; log:\n{}",
            maintain.log_text()
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let partitions = lake
        .catalog
        .partitions(&studio, None)
        .await
        .expect("catalog");
    assert!(
        partitions.iter().any(|p| p.view == "spans"),
        "{partitions:?}"
    );
    assert_eq!(
        sql(Some("reader")).await,
        (200, counted),
        "read from Parquet"
    );
    for server in [server, query, maintain] {
        assert!(server.terminate().success());
    }
}
