//! The contract Grafana's Loki datasource holds a server to (the checks of
//! its query, metadata, tail and push calls, numbered as in the contract),
//! against the real binary, over logs sent by the OpenTelemetry SDKs
//! (Python over HTTP protobuf, JavaScript over HTTP JSON), the native SDK
//! (`framelake demo`), Loki clients (`python-logging-loki`, `winston-loki`)
//! and raw Loki pushes. Each answer is compared field by field with what
//! was sent.

use std::time::{SystemTime, UNIX_EPOCH};

use futures::StreamExt;
use serde_json::{Value, json};

use crate::Server;
use crate::sdk::{node, python, send};

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_nanos() as i64
}

const CATEGORIZE: (&str, &str) = ("X-Loki-Response-Encoding-Flags", "categorize-labels");

struct Loki<'a> {
    server: &'a Server,
    client: reqwest::Client,
    /// The range every query covers: the whole test.
    start: i64,
    end: i64,
}

impl Loki<'_> {
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        params: &[(&str, String)],
        headers: &[(&str, &str)],
    ) -> (u16, String) {
        let url = format!("{}/loki/api/v1/{path}", self.server.query_url());
        let mut request = self.client.request(method.clone(), url);
        request = if method == reqwest::Method::POST {
            let body: String = form_urlencoded::Serializer::new(String::new())
                .extend_pairs(params)
                .finish();
            request
                .header("content-type", "application/x-www-form-urlencoded")
                .body(body)
        } else {
            request.query(params)
        };
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        let response = request.send().await.expect("the query listener answers");
        let status = response.status().as_u16();
        (status, response.text().await.expect("body"))
    }

    async fn get(&self, path: &str, params: &[(&str, String)], headers: &[(&str, &str)]) -> Value {
        let (status, body) = self.call(reqwest::Method::GET, path, params, headers).await;
        assert_eq!(status, 200, "{path} {params:?}: {body}");
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: {e}: {body}"))
    }

    /// `start`/`end` of the whole test as nanoseconds, with `query`.
    fn window(&self, query: &str) -> Vec<(&'static str, String)> {
        vec![
            ("query", query.to_owned()),
            ("start", self.start.to_string()),
            ("end", self.end.to_string()),
        ]
    }

    async fn range(&self, query: &str, extra: &[(&'static str, &str)], categorize: bool) -> Value {
        let mut params = self.window(query);
        params.extend(extra.iter().map(|(k, v)| (*k, (*v).to_owned())));
        let headers: &[(&str, &str)] = if categorize { &[CATEGORIZE] } else { &[] };
        self.get("query_range", &params, headers).await
    }
}

/// Every entry of a streams answer: (stream, entry), in answer order.
fn entries(answer: &Value) -> Vec<(Value, Value)> {
    assert_eq!(answer["status"], "success");
    assert_eq!(answer["data"]["resultType"], "streams", "{answer}");
    answer["data"]["result"]
        .as_array()
        .expect("result")
        .iter()
        .flat_map(|s| {
            s["values"]
                .as_array()
                .expect("values")
                .iter()
                .map(|e| (s["stream"].clone(), e.clone()))
                .collect::<Vec<_>>()
        })
        .collect()
}

/// A sent attribute value as Loki's label value.
fn label_value(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn sanitize(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// What an OpenTelemetry SDK sent comes back, line by line, with the stream
/// labels and structured metadata of Loki 3's OTLP mapping.
async fn assert_sdk_logs(loki: &Loki<'_>, sent: &Value) {
    let service = sent["service_name"].as_str().expect("service name");
    let answer = loki
        .range(
            &format!(r#"{{service_name="{service}"}}"#),
            &[("direction", "forward"), ("limit", "1000")],
            true,
        )
        .await;
    let got = entries(&answer);
    let logs = sent["logs"].as_array().expect("logs");
    assert_eq!(got.len(), logs.len(), "{service}: {answer}");
    assert_sdk_entries(sent, service, got, logs);
}

/// The level Loki 3 gives an OpenTelemetry severity.
fn level(n: i64) -> &'static str {
    match n {
        1..=4 => "trace",
        5..=8 => "debug",
        9..=12 => "info",
        13..=16 => "warn",
        17..=20 => "error",
        _ => "fatal",
    }
}

/// Each entry of an SDK's service against the record it sent.
fn assert_sdk_entries(sent: &Value, service: &str, got: Vec<(Value, Value)>, logs: &[Value]) {
    let mut labels = serde_json::Map::new();
    for (k, v) in sent["resource"].as_object().expect("resource") {
        if framelake_query::loki::streams::DEFAULT_PROMOTED.contains(&k.as_str()) {
            labels.insert(sanitize(k), json!(label_value(v)));
        }
    }
    for (stream, entry) in got {
        assert_eq!(
            stream,
            Value::Object(labels.clone()),
            "only promoted attributes are stream labels"
        );
        let log = logs
            .iter()
            .find(|l| l["body"] == entry[1])
            .unwrap_or_else(|| panic!("{service}: {entry} was sent"));
        assert_eq!(
            entry[0],
            json!(log["time_unix_nano"].as_i64().expect("time").to_string())
        );
        let mut expected = serde_json::Map::new();
        for (k, v) in sent["resource"].as_object().expect("resource") {
            if !framelake_query::loki::streams::DEFAULT_PROMOTED.contains(&k.as_str()) {
                expected.insert(sanitize(k), json!(label_value(v)));
            }
        }
        for (k, v) in log["attributes"].as_object().into_iter().flatten() {
            expected.insert(sanitize(k), json!(label_value(v)));
        }
        let scope = &log["scope"];
        expected.insert("scope_name".into(), scope["name"].clone());
        if scope["version"] != "" {
            expected.insert("scope_version".into(), scope["version"].clone());
        }
        let severity = log["severity_number"].as_i64().expect("severity");
        expected.insert("severity_number".into(), json!(severity.to_string()));
        expected.insert("severity_text".into(), log["severity_text"].clone());
        expected.insert("detected_level".into(), json!(level(severity)));
        for id in ["trace_id", "span_id"] {
            if log[id] != "" {
                expected.insert(id.into(), log[id].clone());
            }
        }
        if let Some(observed) = log["observed_time_unix_nano"].as_i64().filter(|o| *o != 0) {
            expected.insert("observed_timestamp".into(), json!(observed.to_string()));
        }
        if log["trace_id"] != "" {
            // The trace flags the SDKs copy from the span (which the senders
            // do not report): sampled, and maybe W3C's random bit.
            let flags = &entry[2]["structuredMetadata"]["flags"];
            let n: u32 = flags.as_str().and_then(|f| f.parse().ok()).expect("flags");
            assert_eq!(n & 1, 1, "sampled: {flags}");
            expected.insert("flags".into(), flags.clone());
        }
        expected.retain(|_, v| !v.is_null());
        assert_eq!(
            entry[2],
            json!({"structuredMetadata": expected}),
            "{service}: {}",
            entry[1]
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn grafana_loki_datasource_contract() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = Server::serve_in(dir.path()).await;
    let began = now();

    // The OpenTelemetry SDKs.
    let py = send(
        &python(),
        "conformance/python/send.py",
        &["--endpoint", &server.http_url(), "--protocol", "http"],
        &dir.path().join("py.json"),
    )
    .await;
    let js = send(
        &node(),
        "conformance/js/send.mjs",
        &["--endpoint", &server.http_url()],
        &dir.path().join("js.json"),
    )
    .await;
    // The native SDK.
    let demo = std::process::Command::new(env!("CARGO_BIN_EXE_framelake"))
        .args([
            "demo",
            "--endpoint",
            &server.http_url(),
            "--frames",
            "60",
            "--fps",
            "240",
            "--hitch-every",
            "20",
        ])
        .output()
        .expect("demo runs");
    assert!(
        demo.status.success(),
        "{}",
        String::from_utf8_lossy(&demo.stderr)
    );
    // Loki pushes: (F40) JSON with string times and (F42) structured metadata.
    let t = |i: i64| (began + i * 1_000_000).to_string();
    let push = json!({"streams": [
        {"stream": {"app": "shop", "env": "prod"}, "values": [
            [t(1), "level=info msg=\"order placed\" status=200 trace_id=aaaa"],
            [t(2), "level=error msg=\"payment failed\" status=502", {"trace_id": "bbbb", "user": "u1"}],
            [t(3), "{\"level\":\"warn\",\"status\":404,\"trace_id\":\"cccc\"}"],
        ]},
        {"stream": {"app": "cart", "env": "dev"}, "values": [[t(4), "cart emptied"]]},
    ]});
    let client = reqwest::Client::new();
    let pushed = client
        .post(format!("{}/loki/api/v1/push", server.query_url()))
        .json(&push)
        .send()
        .await
        .expect("push answered");
    assert_eq!(pushed.status(), 204, "F40");
    let loki = Loki {
        server: &server,
        client,
        start: began - 60_000_000_000,
        end: now() + 60_000_000_000,
    };

    // The SDKs' records, field by field.
    assert_sdk_logs(&loki, &py).await;
    assert_sdk_logs(&loki, &js).await;
    // The native SDK's logs: the lines the lake holds, levels from the SDK's.
    let sql = server
        .sql("default", "SELECT body, severity_number FROM log_entries WHERE service_name = 'framelake-demo' ORDER BY time")
        .await;
    let answer = loki
        .range(
            r#"{service_name="framelake-demo"}"#,
            &[("direction", "forward"), ("limit", "5000")],
            true,
        )
        .await;
    let native = entries(&answer);
    assert!(!native.is_empty());
    assert_eq!(native.len(), sql.len());
    for ((_, entry), row) in native.iter().zip(&sql) {
        assert_eq!(entry[1], row["body"]);
        let severity = row["severity_number"].as_i64().expect("severity");
        assert_eq!(
            entry[2]["structuredMetadata"]["detected_level"],
            level(severity),
            "{entry}"
        );
    }

    // F1: Save & test.
    let (status, body) = loki
        .call(
            reqwest::Method::GET,
            "query",
            &[
                ("direction", "backward".into()),
                ("query", "vector(1)+vector(1)".into()),
                ("time", "4000000000".into()),
            ],
            &[CATEGORIZE],
        )
        .await;
    assert_eq!(status, 200);
    let a: Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(a["data"]["resultType"], "vector");
    assert_eq!(
        a["data"]["result"],
        json!([{"metric": {}, "value": [4_000_000_000i64, "2"]}])
    );

    // F2, F3: a log query with Grafana's parameters; times are ns strings.
    let shop = r#"{app="shop"}"#;
    let a = loki
        .range(
            shop,
            &[
                ("step", "15000ms"),
                ("limit", "1000"),
                ("direction", "backward"),
            ],
            false,
        )
        .await;
    let got = entries(&a);
    assert_eq!(got.len(), 3);
    for (_, e) in &got {
        assert!(
            e[0].as_str().is_some_and(|t| t.parse::<i64>().is_ok()),
            "F3: {e}"
        );
        assert!(e[1].is_string());
        // F4: two elements without the flag; metadata merged into the stream.
        assert_eq!(e.as_array().map(Vec::len), Some(2), "F4");
    }
    assert!(a["data"].get("encodingFlags").is_none(), "F4");
    // F7 (no flag): pushed metadata in the stream.
    assert!(
        got.iter()
            .any(|(s, _)| s["trace_id"] == "bbbb" && s["user"] == "u1"),
        "F7: {a}"
    );
    // F9: newest first.
    assert_eq!(got[0].1[0], json!(t(3)));
    // F5, F6, F7: with the flag.
    let a = loki.range(shop, &[("direction", "forward")], true).await;
    assert_eq!(
        a["data"]["encodingFlags"],
        json!(["categorize-labels"]),
        "F5"
    );
    let got = entries(&a);
    for (s, e) in &got {
        assert_eq!(
            s,
            &json!({"app": "shop", "env": "prod", "service_name": "shop"}),
            "F6"
        );
        assert_eq!(e.as_array().map(Vec::len), Some(3), "F5");
        for (k, v) in e[2].as_object().expect("an object") {
            assert!(k == "structuredMetadata" || k == "parsed", "F6: {k}");
            assert!(
                v.as_object()
                    .expect("an object")
                    .values()
                    .all(Value::is_string),
                "F6"
            );
        }
    }
    assert_eq!(got[1].1[2]["structuredMetadata"]["trace_id"], "bbbb", "F7");
    // F9: forward is oldest first.
    assert_eq!(
        got.iter().map(|(_, e)| e[0].clone()).collect::<Vec<_>>(),
        vec![json!(t(1)), json!(t(2)), json!(t(3))]
    );
    // F8: logfmt keys come back as parsed.
    let a = loki
        .range(
            &format!("{shop} | logfmt"),
            &[("direction", "forward")],
            true,
        )
        .await;
    assert_eq!(entries(&a)[0].1[2]["parsed"]["msg"], "order placed", "F8");
    // F10: the limit over all streams.
    let a = loki
        .range(r#"{env=~"prod|dev"}"#, &[("limit", "2")], false)
        .await;
    assert_eq!(entries(&a).len(), 2, "F10");
    // F11: start inclusive, end exclusive.
    let a = loki
        .get(
            "query_range",
            &[("query", shop.into()), ("start", t(1)), ("end", t(3))],
            &[],
        )
        .await;
    let times: Vec<Value> = entries(&a).iter().map(|(_, e)| e[0].clone()).collect();
    assert_eq!(times, vec![json!(t(2)), json!(t(1))], "F11");
    // F12: ns, float seconds and RFC 3339 name the same range.
    let seconds = |ns: i64| {
        format!(
            "{}.{:03}",
            ns / 1_000_000_000,
            ns % 1_000_000_000 / 1_000_000
        )
    };
    let rfc =
        |ns: i64| framelake_logql::eval::format_time(ns, "2006-01-02T15:04:05.000000000Z07:00");
    let (s, e) = (loki.start, loki.end - loki.end % 1_000_000);
    let mut answers = Vec::new();
    for (start, end) in [
        (s.to_string(), e.to_string()),
        (seconds(s), seconds(e)),
        (rfc(s), rfc(e)),
    ] {
        answers.push(
            loki.get(
                "query_range",
                &[("query", shop.into()), ("start", start), ("end", end)],
                &[],
            )
            .await,
        );
    }
    assert_eq!(answers[0], answers[1], "F12 float seconds");
    assert_eq!(answers[0], answers[2], "F12 RFC 3339");

    // F13, F14: a metric range query; the step forms agree; steps aligned.
    let metric = r#"sum by (app) (count_over_time({env=~".+"}[1m]))"#;
    let mut matrices = Vec::new();
    for step in ["60000ms", "1m", "60"] {
        matrices.push(loki.range(metric, &[("step", step)], false).await);
    }
    assert_eq!(matrices[0], matrices[1], "F13");
    assert_eq!(matrices[0], matrices[2], "F13");
    let m = &matrices[0]["data"];
    assert_eq!(m["resultType"], "matrix", "F14");
    for series in m["result"].as_array().expect("result") {
        let values = series["values"].as_array().expect("values");
        let mut last = f64::MIN;
        for v in values {
            let t = v[0].as_f64().expect("F14: a number");
            assert!(t > last, "F14: ascending");
            last = t;
            assert!(v[1].is_string(), "F14");
            let offset = (t * 1000.0).round() as i64 - loki.start / 1_000_000;
            assert_eq!(offset % 60_000, 0, "F14: aligned to start + k·step");
        }
    }
    // F15: an instant metric query.
    let at = loki.end / 1_000_000_000;
    let a = loki
        .get(
            "query",
            &[
                ("query", metric.replace("[1m]", "[1h]")),
                ("time", at.to_string()),
            ],
            &[],
        )
        .await;
    assert_eq!(a["data"]["resultType"], "vector", "F15");
    assert_eq!(a["data"]["result"][0]["value"][0], json!(at), "F15");
    // F16: the log-volume histogram.
    let volume =
        format!("sum by (level, detected_level) (count_over_time({shop} | drop __error__[15s]))");
    let a = loki.range(&volume, &[("step", "15000ms")], true).await;
    assert_eq!(a["data"]["resultType"], "matrix", "F16");
    let mut levels: Vec<String> = a["data"]["result"]
        .as_array()
        .expect("result")
        .iter()
        .map(|s| {
            s["metric"]["detected_level"]
                .as_str()
                .expect("level")
                .to_owned()
        })
        .collect();
    levels.sort();
    assert_eq!(levels, vec!["error", "info", "warn"], "F16");
    // F17: trace to logs, the legacy form.
    let trace = py["logs"][0]["trace_id"].as_str().expect("a traced record");
    let q = format!(
        r#"{{service_name=~".+"}} | label_format log_line_contains_trace_id=`{{{{ contains "{trace}" __line__  }}}}` | log_line_contains_trace_id="true" or trace_id="{trace}""#
    );
    let got = entries(&loki.range(&q, &[], true).await);
    assert_eq!(got.len(), 1, "F17");
    assert_eq!(got[0].1[1], py["logs"][0]["body"], "F17");
    // F18: the dynamic form.
    let q =
        format!(r#"{{service_name=~".+"}} | logfmt | json | drop __error__ | trace_id="{trace}""#);
    assert_eq!(entries(&loki.range(&q, &[], true).await).len(), 1, "F18");
    let q = r#"{app=~".+"} |= "aaaa""#;
    assert_eq!(
        entries(&loki.range(q, &[], true).await).len(),
        1,
        "F18 line filter"
    );
    // F19, F20: errors as text.
    for (path, query) in [("query_range", r#"{app="shop""#), ("query", shop)] {
        let mut params = loki.window(query);
        params.push(("time", loki.end.to_string()));
        let (status, body) = loki.call(reqwest::Method::GET, path, &params, &[]).await;
        assert_eq!(status, 400, "F19/F20 {path}: {body}");
        assert!(!body.trim().is_empty());
    }
    // F21: warnings, when present, are strings.
    assert!(
        a.get("warnings")
            .is_none_or(|w| w.as_array().is_some_and(|w| w.iter().all(Value::is_string)))
    );
    // F22: NaN and infinities as strings.
    let a = loki
        .get(
            "query",
            &[
                ("query", format!("sum(count_over_time({shop}[1h])) / 0")),
                ("time", at.to_string()),
            ],
            &[],
        )
        .await;
    assert_eq!(a["data"]["result"][0]["value"][1], "+Inf", "F22");
    let a = loki
        .get(
            "query",
            &[("query", "vector(0) / 0".into()), ("time", at.to_string())],
            &[],
        )
        .await;
    assert_eq!(a["data"]["result"][0]["value"][1], "NaN", "F22");
    // F23: empty results.
    let a = loki.range(r#"{app="nothing"}"#, &[], true).await;
    assert_eq!(a["data"]["result"], json!([]), "F23");
    // F24: what Grafana adds besides.
    let mut params = loki.window(shop);
    params.push(("interval", "1s".into()));
    let (_, with_extras) = loki
        .call(
            reqwest::Method::GET,
            "query_range",
            &params,
            &[
                ("X-Query-Tags", "Source=logsample"),
                ("X-Loki-Query-Limits-Context", r#"{"Expr":"x"}"#),
            ],
        )
        .await;
    let (_, plain) = loki
        .call(reqwest::Method::GET, "query_range", &loki.window(shop), &[])
        .await;
    assert_eq!(with_extras, plain, "F24");

    // F25–F29: labels, values, series.
    let window = |q: Option<&str>| {
        let mut p = vec![
            ("start", loki.start.to_string()),
            ("end", loki.end.to_string()),
        ];
        if let Some(q) = q {
            p.push(("query", q.to_owned()));
        }
        p
    };
    let labels = loki.get("labels", &window(None), &[]).await;
    assert_eq!(labels["status"], "success");
    let names: Vec<String> = serde_json::from_value(labels["data"].clone()).expect("F25: strings");
    let mut sorted = names.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(names, sorted, "F25: sorted, unique");
    assert!(names.contains(&"service_name".to_owned()) && names.contains(&"app".to_owned()));
    let labels = loki.get("labels", &window(Some(shop)), &[]).await;
    assert_eq!(labels["data"], json!(["app", "env", "service_name"]), "F26");
    let values = loki
        .get("label/env/values", &window(Some(r#"{app=~".+"}"#)), &[])
        .await;
    assert_eq!(values["data"], json!(["dev", "prod"]), "F27");
    let (status, _) = loki
        .call(
            reqwest::Method::GET,
            "label/%2Fweird/values",
            &window(None),
            &[],
        )
        .await;
    assert_eq!(status, 200, "F28");
    let mut series = window(None);
    series.push(("match[]", shop.into()));
    series.push(("match[]", r#"{app="cart"}"#.into()));
    let expected = json!([
        {"app": "cart", "env": "dev", "service_name": "cart"},
        {"app": "shop", "env": "prod", "service_name": "shop"},
    ]);
    assert_eq!(
        loki.get("series", &series, &[]).await["data"],
        expected,
        "F29"
    );
    let (status, body) = loki
        .call(reqwest::Method::POST, "series", &series, &[])
        .await;
    assert_eq!(
        (
            status,
            serde_json::from_str::<Value>(&body).expect("JSON")["data"].clone()
        ),
        (200, expected),
        "F29 POST"
    );

    // F30–F37: index stats and volumes, detected fields and labels, patterns; RFC 3339 times.
    let stats = loki.get("index/stats", &window(Some(shop)), &[]).await;
    for key in ["streams", "chunks", "bytes", "entries"] {
        assert!(stats[key].is_u64(), "F30: {key} in {stats}");
    }
    assert_eq!(stats["entries"], 3);
    let rfc_window = |q: &str| {
        vec![
            ("query", q.to_owned()),
            ("start", rfc(loki.start)),
            ("end", rfc(loki.end)),
            ("limit", "5000".to_owned()),
        ]
    };
    let v = loki
        .get("index/volume", &rfc_window(r#"{service_name=~".+"}"#), &[])
        .await;
    assert_eq!(v["data"]["resultType"], "vector", "F31");
    let bytes: Vec<f64> = v["data"]["result"]
        .as_array()
        .expect("result")
        .iter()
        .map(|r| {
            assert!(
                r["metric"]
                    .as_object()
                    .is_some_and(|m| m.keys().eq(["service_name"])),
                "F31: {r}"
            );
            r["value"][1]
                .as_str()
                .expect("F31: a string")
                .parse()
                .expect("a number")
        })
        .collect();
    assert!(bytes.windows(2).all(|w| w[0] >= w[1]), "F31: largest first");
    assert!(bytes.len() >= 5, "F31: py, js, demo, shop, cart: {v}");
    let mut ranged = rfc_window(r#"{app=~".+"}"#);
    ranged.push(("step", "1m".into()));
    assert_eq!(
        loki.get("index/volume_range", &ranged, &[]).await["data"]["resultType"],
        "matrix",
        "F32"
    );
    let mut detect = rfc_window(shop);
    detect.retain(|(k, _)| *k != "limit");
    detect.push(("limit", "1000".into()));
    let fields = loki.get("detected_fields", &detect, &[]).await;
    assert_eq!(fields["limit"], 1000, "F33");
    for f in fields["fields"].as_array().expect("F33: fields") {
        assert!(
            f["label"].is_string() && f["cardinality"].is_u64(),
            "F33: {f}"
        );
        assert!(
            ["string", "int", "float", "boolean", "duration", "bytes"]
                .contains(&f["type"].as_str().expect("type")),
            "F33"
        );
        assert!(f["parsers"].is_null() || f["parsers"].is_array(), "F33");
    }
    let status_field = fields["fields"]
        .as_array()
        .expect("fields")
        .iter()
        .find(|f| f["label"] == "status")
        .expect("status");
    assert_eq!(
        (
            status_field["type"].clone(),
            status_field["cardinality"].clone()
        ),
        (json!("int"), json!(3))
    );
    let level = loki.get("detected_field/level/values", &detect, &[]).await;
    let mut got: Vec<String> = serde_json::from_value(level["values"].clone()).expect("F34");
    got.sort();
    assert_eq!(got, vec!["error", "info", "warn"], "F34");
    let detected = loki
        .get("detected_labels", &rfc_window(r#"{app=~".+"}"#), &[])
        .await;
    assert!(
        detected["detectedLabels"]
            .as_array()
            .expect("F35")
            .contains(&json!({"label": "env", "cardinality": 2})),
        "F35: {detected}"
    );
    let mut patterns = rfc_window(shop);
    patterns.push(("step", "1m".into()));
    let p = loki.get("patterns", &patterns, &[]).await;
    for pattern in p["data"].as_array().expect("F36: data") {
        assert!(pattern["pattern"].is_string(), "F36");
        for s in pattern["samples"].as_array().expect("F36: samples") {
            assert!(s[0].is_i64() && s[1].is_u64(), "F36: {s}");
        }
    }
    assert!(
        loki.get("labels", &rfc_window(shop)[1..3], &[]).await["data"]
            .as_array()
            .is_some_and(|l| !l.is_empty()),
        "F37"
    );

    // F38, F39: live tail with the query only.
    let ws = server.query_url().replacen("http", "ws", 1);
    let url = format!(
        "{ws}/loki/api/v1/tail?query={}",
        urlencode(r#"{app="live"}"#)
    );
    let (mut socket, _) = tokio_tungstenite::connect_async(&url)
        .await
        .expect("F38: upgrade");
    let line = json!({"streams": [{"stream": {"app": "live"}, "values": [[now().to_string(), "tailed line"]]}]});
    let response = loki
        .client
        .post(format!("{}/loki/api/v1/push", server.http_url()))
        .json(&line)
        .send()
        .await
        .expect("push");
    assert_eq!(response.status(), 204);
    let message = loop {
        let frame = tokio::time::timeout(std::time::Duration::from_secs(10), socket.next())
            .await
            .expect("F38: a message within seconds")
            .expect("open")
            .expect("a frame");
        if let tokio_tungstenite::tungstenite::Message::Text(text) = frame {
            break serde_json::from_str::<Value>(&text).expect("JSON");
        }
    };
    assert_eq!(message["streams"][0]["stream"]["app"], "live", "F38");
    assert_eq!(message["streams"][0]["values"][0][1], "tailed line", "F38");
    assert!(message["streams"][0]["values"][0][0].is_string(), "F38");
    let bad = format!("{ws}/loki/api/v1/tail?query={}", urlencode("{app="));
    assert!(
        matches!(tokio_tungstenite::connect_async(&bad).await, Err(tokio_tungstenite::tungstenite::Error::Http(r)) if r.status() == 400),
        "F39"
    );

    // F41, F44, F45: bad pushes.
    let push = |body: &'static str, encoding: Option<&'static str>| {
        let mut r = loki
            .client
            .post(format!("{}/loki/api/v1/push", server.http_url()))
            .header("content-type", "application/json")
            .body(body);
        if let Some(e) = encoding {
            r = r.header("content-encoding", e);
        }
        async move { r.send().await.expect("answers").status().as_u16() }
    };
    assert_eq!(
        push(
            r#"{"streams":[{"stream":{"a":"b"},"values":[[1700000000000000000,"x"]]}]}"#,
            None
        )
        .await,
        400,
        "F41"
    );
    assert_eq!(push(r#"{"streams":[]}"#, Some("br")).await, 400, "F44");
    let gz = {
        use std::io::Write;
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(
            format!(
                r#"{{"streams":[{{"stream":{{"app":"gz"}},"values":[["{}","zipped"]]}}]}}"#,
                now()
            )
            .as_bytes(),
        )
        .expect("gzip");
        e.finish().expect("gzip")
    };
    let status = loki
        .client
        .post(format!("{}/loki/api/v1/push", server.http_url()))
        .header("content-type", "application/json")
        .header("content-encoding", "gzip")
        .body(gz)
        .send()
        .await
        .expect("answers")
        .status();
    assert_eq!(status, 204, "F44 gzip");
    assert_eq!(
        entries(&loki.range(r#"{app="gz"}"#, &[], false).await)[0].1[1],
        "zipped",
        "F44"
    );

    // F43 and the Loki clients: python-logging-loki (JSON) and winston-loki
    // (snappy protobuf with structured metadata), read back through the Loki API.
    let sent = send(
        &python(),
        "conformance/python/loki_push.py",
        &["--url", &server.http_url(), "--org-id", "default"],
        &dir.path().join("pyloki.json"),
    )
    .await;
    for line in sent["lines"].as_array().expect("lines") {
        let app = line["labels"]["application"].as_str().expect("application");
        let q = format!(r#"{{application="{app}"}} |= {}"#, line["line"]);
        let got = entries(&loki.range(&q, &[], false).await);
        assert_eq!(got.len(), 1, "{q}");
        for (k, v) in line["labels"].as_object().expect("labels") {
            assert_eq!(&got[0].0[k], v, "{k} of {}", line["line"]);
        }
    }
    let sent = send(
        &node(),
        "conformance/js/loki_push.mjs",
        &["--url", &server.query_url(), "--org-id", "default"],
        &dir.path().join("jsloki.json"),
    )
    .await;
    for line in sent["lines"].as_array().expect("lines") {
        let app = line["labels"]["app"].as_str().expect("app");
        let q = format!(r#"{{app="{app}"}} |= {}"#, line["line"]);
        // Sent with times of their own, in 2023.
        let t: i64 = line["time_unix_nano"]
            .as_str()
            .and_then(|t| t.parse().ok())
            .expect("time");
        let params = [
            ("query", q.clone()),
            ("start", t.to_string()),
            ("end", (t + 1).to_string()),
        ];
        let got = entries(&loki.get("query_range", &params, &[]).await);
        assert_eq!(got.len(), 1, "{q}");
        assert_eq!(got[0].1[0], line["time_unix_nano"], "F43");
        for (k, v) in line["labels"].as_object().expect("labels") {
            assert_eq!(&got[0].0[k], v, "{k}");
        }
    }

    // The terminal form of the tail.
    let mut tail = tokio::process::Command::new(env!("CARGO_BIN_EXE_framelake"))
        .args([
            "tail",
            "--raw",
            "--url",
            &server.query_url(),
            r#"{app="terminal"}"#,
        ])
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("framelake tail runs");
    let stdout = tail.stdout.take().expect("stdout");
    let mut lines = tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(stdout));
    let pushed = async {
        // Until the tail is connected, a line may land before it: push until one arrives.
        loop {
            let line = json!({"streams": [{"stream": {"app": "terminal"}, "values": [[now().to_string(), "to the terminal"]]}]});
            loki.client
                .post(format!("{}/loki/api/v1/push", server.http_url()))
                .json(&line)
                .send()
                .await
                .expect("push");
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        }
    };
    let printed = tokio::select! {
        line = tokio::time::timeout(std::time::Duration::from_secs(15), lines.next_line()) => line,
        _ = pushed => unreachable!(),
    };
    assert_eq!(
        printed
            .expect("a line within 15 s")
            .expect("stdout")
            .as_deref(),
        Some("to the terminal")
    );
    assert!(server.terminate().success());
}

fn urlencode(text: &str) -> String {
    form_urlencoded::byte_serialize(text.as_bytes()).collect()
}
