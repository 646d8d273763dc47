//! Loki's query API over known lines, each answer worked out by hand: lines
//! pushed through Loki's push API and sent over OTLP, read back with LogQL
//! through `/loki/api/v1/…`.

use framelake_lake::tenancy::Tenancy;
use framelake_query::QueryLimits;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, any_value::Value};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message;
use serde_json::{Value as Json, json};

use crate::Stack;
use crate::data::kv;

/// The lines' base time, in seconds.
const T0: i64 = 1_700_000_000;

fn ns(seconds: f64) -> i64 {
    T0 * 1_000_000_000 + (seconds * 1e9) as i64
}

/// `web`: logfmt lines; `api`: JSON lines (the last one not JSON, with a
/// trace id as structured metadata); `checkout`: two OTLP records.
async fn lines() -> Stack {
    let stack = Stack::embedded(Tenancy::open(), QueryLimits::default()).await;
    let web = [
        (
            1.0,
            r#"level=info msg="GET /a" status=200 dur=15ms size=1KB"#,
        ),
        (
            2.0,
            r#"level=error msg="GET /b" status=500 dur=1.5s size=3KB"#,
        ),
        (
            3.0,
            r#"level=warn msg="GET /c" status=404 dur=250ms size=512B"#,
        ),
    ];
    let api = [
        (
            1.5,
            r#"{"level":"info","status":200,"req":{"path":"/x","ms":12}}"#,
        ),
        (
            2.5,
            r#"{"level":"error","status":502,"req":{"path":"/y","ms":340}}"#,
        ),
    ];
    let values = |lines: &[(f64, &str)]| -> Vec<Json> {
        lines
            .iter()
            .map(|(t, l)| json!([ns(*t).to_string(), l]))
            .collect()
    };
    let mut api_values = values(&api);
    api_values.push(json!([ns(3.5).to_string(), "not json at all", {"trace_id": "abc"}]));
    let body = json!({"streams": [
        {"stream": {"app": "web", "env": "prod"}, "values": values(&web)},
        {"stream": {"app": "api", "env": "dev"}, "values": api_values},
    ]});
    push(&stack, &body).await;

    let record = |t: f64, severity: i32, text: &str, body: &str| LogRecord {
        time_unix_nano: ns(t) as u64,
        severity_number: severity,
        severity_text: text.into(),
        body: Some(AnyValue {
            value: Some(Value::StringValue(body.into())),
        }),
        attributes: vec![kv("user", Value::StringValue("alice".into()))],
        trace_id: vec![0xab; 16],
        ..LogRecord::default()
    };
    let otlp = ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: Some(Resource {
                attributes: vec![
                    kv("service.name", Value::StringValue("checkout".into())),
                    kv("k8s.pod.name", Value::StringValue("pod-1".into())),
                    kv("host.name", Value::StringValue("h1".into())),
                ],
                ..Resource::default()
            }),
            scope_logs: vec![ScopeLogs {
                log_records: vec![
                    record(1.0, 9, "INFO", "order placed"),
                    record(5.0, 17, "ERROR", "payment failed"),
                ],
                ..ScopeLogs::default()
            }],
            ..ResourceLogs::default()
        }],
    };
    stack.send("default", "logs", otlp.encode_to_vec()).await;
    stack
}

/// A Loki GET: status and body.
async fn get(
    stack: &Stack,
    path: &str,
    params: &[(&str, String)],
    categorize: bool,
) -> (u16, String) {
    let mut request = stack
        .client
        .get(format!("{}/loki/api/v1/{path}", stack.query_url))
        .query(params);
    if categorize {
        request = request.header("X-Loki-Response-Encoding-Flags", "categorize-labels");
    }
    let response = request.send().await.expect("query listener answers");
    let status = response.status().as_u16();
    (status, response.text().await.expect("body"))
}

/// A successful answer's `data`.
async fn data(stack: &Stack, path: &str, params: &[(&str, String)], categorize: bool) -> Json {
    let (status, body) = get(stack, path, params, categorize).await;
    assert_eq!(status, 200, "{path} {params:?}: {body}");
    let answer: Json = serde_json::from_str(&body).expect("JSON");
    assert_eq!(answer["status"], "success", "{body}");
    answer["data"].clone()
}

fn range(
    query: &str,
    from: f64,
    to: f64,
    extra: &[(&'static str, &str)],
) -> Vec<(&'static str, String)> {
    let mut params = vec![
        ("query", query.to_owned()),
        ("start", ns(from).to_string()),
        ("end", ns(to).to_string()),
    ];
    params.extend(extra.iter().map(|(k, v)| (*k, (*v).to_owned())));
    params
}

fn instant(query: &str, at: f64) -> Vec<(&'static str, String)> {
    vec![("query", query.to_owned()), ("time", ns(at).to_string())]
}

/// A streams answer as (stream labels, [(time, line)]) in order.
fn streams(data: &Json) -> Vec<(Json, Vec<(String, String)>)> {
    assert_eq!(data["resultType"], "streams");
    data["result"]
        .as_array()
        .expect("result")
        .iter()
        .map(|s| {
            let values = s["values"]
                .as_array()
                .expect("values")
                .iter()
                .map(|v| {
                    (
                        v[0].as_str().expect("ns string").to_owned(),
                        v[1].as_str().expect("line").to_owned(),
                    )
                })
                .collect();
            (s["stream"].clone(), values)
        })
        .collect()
}

/// A matrix or vector answer as (labels, [(seconds after T0, value)]).
fn samples(data: &Json) -> Vec<(Json, Vec<(f64, String)>)> {
    let point = |p: &Json| {
        (
            p[0].as_f64().expect("a number of seconds") - T0 as f64,
            p[1].as_str().expect("a string value").to_owned(),
        )
    };
    data["result"]
        .as_array()
        .expect("result")
        .iter()
        .map(|s| {
            let points = match data["resultType"].as_str() {
                Some("matrix") => s["values"]
                    .as_array()
                    .expect("values")
                    .iter()
                    .map(point)
                    .collect(),
                Some("vector") => vec![point(&s["value"])],
                other => panic!("not a metric answer: {other:?}"),
            };
            (s["metric"].clone(), points)
        })
        .collect()
}

fn at(points: &[(f64, &str)]) -> Vec<(f64, String)> {
    points.iter().map(|(t, v)| (*t, (*v).to_owned())).collect()
}

#[tokio::test]
async fn log_queries_filter_parse_format_and_order_as_loki() {
    let stack = lines().await;
    let web = json!({"app": "web", "env": "prod", "service_name": "web"});

    // Line filter pushed into the scan, logfmt, a numeric label filter; oldest first.
    let query = r#"{app="web"} |= "GET" | logfmt | status >= 400"#;
    let d = data(
        &stack,
        "query_range",
        &range(
            query,
            0.0,
            10.0,
            &[("direction", "forward"), ("limit", "10")],
        ),
        false,
    )
    .await;
    let got = streams(&d);
    assert_eq!(
        got.len(),
        2,
        "one stream per label set (parsed labels included): {d}"
    );
    assert_eq!(
        got[0].1,
        vec![(
            ns(2.0).to_string(),
            r#"level=error msg="GET /b" status=500 dur=1.5s size=3KB"#.to_owned()
        )]
    );
    assert_eq!(got[0].0["status"], "500");
    assert_eq!(
        got[0].0["detected_level"], "error",
        "structured metadata merged without the flag"
    );
    assert_eq!(got[1].0["msg"], "GET /c");
    assert!(d.get("encodingFlags").is_none());

    // Categorized: the stream holds its labels only; parsed and metadata per entry.
    let d = data(
        &stack,
        "query_range",
        &range(query, 0.0, 10.0, &[("direction", "forward")]),
        true,
    )
    .await;
    assert_eq!(d["encodingFlags"], json!(["categorize-labels"]));
    assert_eq!(d["result"].as_array().map(Vec::len), Some(1));
    assert_eq!(d["result"][0]["stream"], web);
    let entry = &d["result"][0]["values"][1];
    assert_eq!(entry.as_array().map(Vec::len), Some(3));
    assert_eq!(entry[2]["parsed"]["status"], "404");
    assert_eq!(entry[2]["parsed"]["dur"], "250ms");
    assert_eq!(
        entry[2]["structuredMetadata"],
        json!({"detected_level": "warn"})
    );

    // Newest first, the limit over all streams; end is exclusive.
    let d = data(
        &stack,
        "query_range",
        &range(r#"{env=~"prod|dev"}"#, 0.0, 10.0, &[("limit", "2")]),
        false,
    )
    .await;
    let times: Vec<String> = streams(&d)
        .iter()
        .flat_map(|(_, v)| v.iter().map(|(t, _)| t.clone()))
        .collect();
    assert_eq!(times, vec![ns(3.5).to_string(), ns(3.0).to_string()]);
    let d = data(
        &stack,
        "query_range",
        &range(r#"{app="web"}"#, 1.0, 3.0, &[]),
        false,
    )
    .await;
    let times: Vec<String> = streams(&d)
        .iter()
        .flat_map(|(_, v)| v.iter().map(|(t, _)| t.clone()))
        .collect();
    assert_eq!(
        times,
        vec![ns(2.0).to_string(), ns(1.0).to_string()],
        "start inclusive, end exclusive"
    );

    // JSON parser, error filter, line_format.
    let query = r#"{app="api"} | json | __error__="" | line_format "{{.req_path}} {{.status}} {{ .level | ToUpper }}""#;
    let d = data(
        &stack,
        "query_range",
        &range(query, 0.0, 10.0, &[("direction", "forward")]),
        false,
    )
    .await;
    let lines: Vec<String> = streams(&d)
        .iter()
        .flat_map(|(_, v)| v.iter().map(|(_, l)| l.clone()))
        .collect();
    assert_eq!(lines, vec!["/x 200 INFO", "/y 502 ERROR"]);
    // The line that is not JSON carries the parser's error.
    let d = data(
        &stack,
        "query_range",
        &range(r#"{app="api"} | json | __error__!="""#, 0.0, 10.0, &[]),
        true,
    )
    .await;
    let entry = &d["result"][0]["values"][0];
    assert_eq!(entry[1], "not json at all");
    assert_eq!(entry[2]["parsed"]["__error__"], "JSONParserErr");
    assert_eq!(
        entry[2]["structuredMetadata"]["trace_id"], "abc",
        "pushed structured metadata"
    );

    // Grafana's trace-to-logs query: label_format with contains and `or`.
    let query = r#"{app=~".+"} | label_format log_line_contains_trace_id=`{{ contains "GET /b" __line__  }}` | log_line_contains_trace_id="true" or trace_id="abc""#;
    let d = data(
        &stack,
        "query_range",
        &range(query, 0.0, 10.0, &[("direction", "forward")]),
        true,
    )
    .await;
    let lines: Vec<String> = streams(&d)
        .iter()
        .flat_map(|(_, v)| v.iter().map(|(_, l)| l.clone()))
        .collect();
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(lines.contains(&"not json at all".to_owned()));

    // OTLP: promoted resource attributes are the stream, the rest metadata.
    let d = data(
        &stack,
        "query_range",
        &range(
            r#"{service_name="checkout"}"#,
            0.0,
            10.0,
            &[("direction", "forward")],
        ),
        true,
    )
    .await;
    assert_eq!(
        d["result"][0]["stream"],
        json!({"k8s_pod_name": "pod-1", "service_name": "checkout"})
    );
    let metadata = &d["result"][0]["values"][0][2]["structuredMetadata"];
    assert_eq!(metadata["host_name"], "h1");
    assert_eq!(metadata["user"], "alice");
    assert_eq!(metadata["severity_text"], "INFO");
    assert_eq!(metadata["severity_number"], "9");
    assert_eq!(metadata["detected_level"], "info");
    assert_eq!(metadata["trace_id"], "ab".repeat(16));
    assert_eq!(d["result"][0]["values"][1][1], "payment failed");
}

#[tokio::test]
async fn log_queries_find_the_newest_and_oldest_lines_window_by_window() {
    let stack = Stack::embedded(Tenancy::open(), QueryLimits::default()).await;
    // A line a second for 100 s, every tenth one marked: a query's first
    // window (a few times its limit of lines) holds fewer marked lines than
    // asked, and the next windows find the rest, in order.
    let values: Vec<Json> = (0..100)
        .map(|i| {
            let t = ns(f64::from(i)).to_string();
            match i % 10 {
                0 => json!([t, format!("marked line {i}"), {"kind": "mark"}]),
                _ => json!([t, format!("plain line {i}")]),
            }
        })
        .collect();
    let body = json!({"streams": [{"stream": {"app": "many"}, "values": values}]});
    push(&stack, &body).await;
    let query = r#"{app="many"} |= "marked""#;
    for (direction, limit, expected) in [
        ("backward", "3", vec![90, 80, 70]),
        ("forward", "4", vec![0, 10, 20, 30]),
        ("backward", "20", (0..10).rev().map(|i| i * 10).collect()),
    ] {
        let d = data(
            &stack,
            "query_range",
            &range(
                query,
                0.0,
                100.0,
                &[("direction", direction), ("limit", limit)],
            ),
            false,
        )
        .await;
        // One stream: every line found has its structured metadata,
        // whichever window found it.
        let found = streams(&d);
        assert_eq!(found.len(), 1, "{d}");
        assert_eq!(found[0].0["kind"], "mark", "{d}");
        let got: Vec<String> = found
            .into_iter()
            .flat_map(|(_, lines)| lines.into_iter().map(|(_, line)| line))
            .collect();
        let expected: Vec<String> = expected
            .iter()
            .map(|i| format!("marked line {i}"))
            .collect();
        assert_eq!(got, expected, "{direction} limit {limit}");
    }
}

#[tokio::test]
async fn metric_queries_window_aggregate_and_combine_as_loki() {
    let stack = lines().await;
    let web = json!({"app": "web", "env": "prod", "service_name": "web"});
    let step = [("step", "1s")];

    // Windows (t - 2s, t] at t = 1..4 s: {1}, {1, 2}, {2, 3}, {3}.
    let d = data(
        &stack,
        "query_range",
        &range(r#"count_over_time({app="web"}[2s])"#, 1.0, 4.0, &step),
        false,
    )
    .await;
    assert_eq!(d["resultType"], "matrix");
    assert_eq!(
        samples(&d),
        vec![(
            web.clone(),
            at(&[(1.0, "1"), (2.0, "2"), (3.0, "2"), (4.0, "1")])
        )]
    );
    // The same with the step as Grafana writes it, and as a number.
    for step in ["1000ms", "1"] {
        let d2 = data(
            &stack,
            "query_range",
            &range(
                r#"count_over_time({app="web"}[2s])"#,
                1.0,
                4.0,
                &[("step", step)],
            ),
            false,
        )
        .await;
        assert_eq!(d2, d, "step {step}");
    }

    // A range that is not a multiple of the step: (t - 3s, t] at t = 0, 2, 4 s.
    let d = data(
        &stack,
        "query_range",
        &range(
            r#"count_over_time({app="web"}[3s])"#,
            0.0,
            4.0,
            &[("step", "2s")],
        ),
        false,
    )
    .await;
    assert_eq!(
        samples(&d),
        vec![(web.clone(), at(&[(2.0, "2"), (4.0, "2")]))]
    );
    // offset: the window (t - 1s - 2s, t - 1s] at t = 4 s holds the lines at 2 and 3 s.
    let d = data(
        &stack,
        "query",
        &instant(r#"count_over_time({app="web"}[2s] offset 1s)"#, 4.0),
        false,
    )
    .await;
    assert_eq!(samples(&d), vec![(web.clone(), at(&[(4.0, "2")]))]);
    // The same windows counted line by line (a stage that keeps every line).
    let d = data(
        &stack,
        "query_range",
        &range(
            r#"count_over_time({app="web"} | label_format x="y" [3s])"#,
            0.0,
            4.0,
            &[("step", "2s")],
        ),
        false,
    )
    .await;
    let mut labelled = web.clone();
    labelled["x"] = json!("y");
    assert_eq!(samples(&d), vec![(labelled, at(&[(2.0, "2"), (4.0, "2")]))]);
    let d = data(
        &stack,
        "query_range",
        &range(
            r#"sum(count_over_time({app="web"} | label_format x="y" [3s]))"#,
            0.0,
            4.0,
            &[("step", "2s")],
        ),
        false,
    )
    .await;
    assert_eq!(
        samples(&d),
        vec![(json!({}), at(&[(2.0, "2"), (4.0, "2")]))]
    );
    let d = data(
        &stack,
        "query_range",
        &range(
            r#"bytes_over_time({app="web"}[3s])"#,
            0.0,
            4.0,
            &[("step", "2s")],
        ),
        false,
    )
    .await;
    let line = |s: &str| s.len();
    let two = line(r#"level=info msg="GET /a" status=200 dur=15ms size=1KB"#)
        + line(r#"level=error msg="GET /b" status=500 dur=1.5s size=3KB"#);
    let four = line(r#"level=error msg="GET /b" status=500 dur=1.5s size=3KB"#)
        + line(r#"level=warn msg="GET /c" status=404 dur=250ms size=512B"#);
    assert_eq!(
        samples(&d),
        vec![(
            web.clone(),
            at(&[(2.0, &two.to_string()), (4.0, &four.to_string())])
        )]
    );

    // The log-volume query Grafana sends: by detected_level (metadata).
    let query =
        r#"sum by (level, detected_level) (count_over_time({app="web"} | drop __error__[10s]))"#;
    let d = data(&stack, "query", &instant(query, 4.0), false).await;
    let mut got = samples(&d);
    got.sort_by_key(|(m, _)| m.to_string());
    assert_eq!(
        got,
        vec![
            (json!({"detected_level": "error"}), at(&[(4.0, "1")])),
            (json!({"detected_level": "info"}), at(&[(4.0, "1")])),
            (json!({"detected_level": "warn"}), at(&[(4.0, "1")])),
        ]
    );

    // unwrap with conversions: durations in seconds, sizes in bytes.
    let d = data(
        &stack,
        "query",
        &instant(
            r#"avg_over_time({app="web"} | logfmt | unwrap duration(dur) [10s]) by (env)"#,
            4.0,
        ),
        false,
    )
    .await;
    let value: f64 = samples(&d)[0].1[0].1.parse().expect("a number");
    assert!((value - (0.015 + 1.5 + 0.25) / 3.0).abs() < 1e-9, "{value}");
    assert_eq!(samples(&d)[0].0, json!({"env": "prod"}));
    let d = data(
        &stack,
        "query",
        &instant(
            r#"sum(sum_over_time({app="web"} | logfmt | unwrap bytes(size) [10s]))"#,
            4.0,
        ),
        false,
    )
    .await;
    assert_eq!(samples(&d), vec![(json!({}), at(&[(4.0, "4512")]))]);
    let d = data(
        &stack,
        "query",
        &instant(
            r#"max(max_over_time({app="web"} | logfmt | status >= 400 | unwrap status [10s]))"#,
            4.0,
        ),
        false,
    )
    .await;
    assert_eq!(samples(&d)[0].1, at(&[(4.0, "500")]));

    // Aggregations over a parser's series, accumulated per group; structured
    // metadata read by filters and templates.
    let d = data(
        &stack,
        "query",
        &instant(
            r#"sum by (level) (count_over_time({app="web"} | logfmt [10s]))"#,
            4.0,
        ),
        false,
    )
    .await;
    let mut got = samples(&d);
    got.sort_by_key(|(m, _)| m.to_string());
    assert_eq!(
        got,
        vec![
            (json!({"level": "error"}), at(&[(4.0, "1")])),
            (json!({"level": "info"}), at(&[(4.0, "1")])),
            (json!({"level": "warn"}), at(&[(4.0, "1")])),
        ]
    );
    let d = data(
        &stack,
        "query",
        &instant(
            r#"min(min_over_time({app="web"} | logfmt | unwrap status [10s]))"#,
            4.0,
        ),
        false,
    )
    .await;
    assert_eq!(samples(&d), vec![(json!({}), at(&[(4.0, "200")]))]);
    let d = data(
        &stack,
        "query",
        &instant(
            r#"sum(count_over_time({service_name="checkout"} | user="alice" [10s]))"#,
            6.0,
        ),
        false,
    )
    .await;
    assert_eq!(samples(&d), vec![(json!({}), at(&[(6.0, "2")]))]);
    let d = data(&stack, "query", &instant(r#"sum(count_over_time({service_name="checkout"} | label_format u="{{.severity_text}}" | u="ERROR" [10s]))"#, 6.0), false).await;
    assert_eq!(samples(&d), vec![(json!({}), at(&[(6.0, "1")]))]);

    // A parser error left in a metric query fails it, as in Loki.
    let (status, body) = get(
        &stack,
        "query",
        &instant(r#"count_over_time({app="api"} | json [10s])"#, 4.0),
        false,
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("pipeline error: 'JSONParserErr'"), "{body}");
    let d = data(
        &stack,
        "query",
        &instant(
            r#"sum(count_over_time({app="api"} | json | __error__="" [10s]))"#,
            4.0,
        ),
        false,
    )
    .await;
    assert_eq!(samples(&d)[0].1, at(&[(4.0, "2")]));

    // A label every line's parser sets (status: 500 and 404 are >= 400);
    // and one no line holds, which structured metadata then gives
    // (user="alice" on both checkout lines).
    for (query, count) in [
        (
            r#"sum(count_over_time({app="web"} | logfmt | status >= 400 [10s]))"#,
            "2",
        ),
        (
            r#"sum(count_over_time({service_name="checkout"} | logfmt | user="alice" [10s]))"#,
            "2",
        ),
    ] {
        let d = data(&stack, "query", &instant(query, 6.0), false).await;
        assert_eq!(samples(&d)[0].1, at(&[(6.0, count)]), "{query}");
    }

    // Binary operators, vector(), topk, rates, absent_over_time.
    let d = data(
        &stack,
        "query",
        &instant(
            r#"sum(count_over_time({app="web"}[10s])) / sum(count_over_time({env=~".+"}[10s]))"#,
            4.0,
        ),
        false,
    )
    .await;
    assert_eq!(samples(&d)[0].1, at(&[(4.0, "0.5")]));
    let d = data(&stack, "query", &instant("vector(1)+vector(1)", 4.0), true).await;
    assert_eq!(samples(&d), vec![(json!({}), at(&[(4.0, "2")]))]);
    let d = data(
        &stack,
        "query",
        &instant(
            r#"topk(1, sum by (app) (count_over_time({env=~".+"} |= "GET" [10s])))"#,
            4.0,
        ),
        false,
    )
    .await;
    assert_eq!(
        samples(&d),
        vec![(json!({"app": "web"}), at(&[(4.0, "3")]))]
    );
    let d = data(
        &stack,
        "query",
        &instant(
            r#"sum by (service_name) (rate({service_name="checkout"}[10s]))"#,
            5.0,
        ),
        false,
    )
    .await;
    assert_eq!(
        samples(&d),
        vec![(json!({"service_name": "checkout"}), at(&[(5.0, "0.2")]))]
    );
    let d = data(
        &stack,
        "query_range",
        &range(r#"absent_over_time({app="nope"}[1s])"#, 1.0, 2.0, &step),
        false,
    )
    .await;
    assert_eq!(
        samples(&d),
        vec![(json!({"app": "nope"}), at(&[(1.0, "1"), (2.0, "1")]))]
    );
    let d = data(
        &stack,
        "query",
        &instant(r#"sum(count_over_time({app="web"}[10s])) > bool 5"#, 4.0),
        false,
    )
    .await;
    assert_eq!(samples(&d)[0].1, at(&[(4.0, "0")]));
    let d = data(
        &stack,
        "query",
        &instant(r#"sum(count_over_time({app="web"}[10s])) > 5"#, 4.0),
        false,
    )
    .await;
    assert_eq!(d["result"], json!([]), "an empty result is [], never null");
    // Pure scalars answer a scalar.
    let d = data(&stack, "query", &instant("1 + 2 * 3", 4.0), false).await;
    assert_eq!(d, json!({"resultType": "scalar", "result": [T0 + 4, "7"]}));
}

#[tokio::test]
async fn metadata_endpoints_and_errors() {
    let stack = lines().await;
    let window = vec![
        ("start", ns(0.0).to_string()),
        ("end", ns(10.0).to_string()),
    ];
    let d = data(&stack, "labels", &window, false).await;
    assert_eq!(d, json!(["app", "env", "k8s_pod_name", "service_name"]));
    let mut with_query = window.clone();
    with_query.push(("query", r#"{app="web"}"#.into()));
    assert_eq!(
        data(&stack, "labels", &with_query, false).await,
        json!(["app", "env", "service_name"])
    );
    assert_eq!(
        data(&stack, "label/app/values", &window, false).await,
        json!(["api", "web"])
    );
    assert_eq!(
        data(&stack, "label/service_name/values", &with_query, false).await,
        json!(["web"])
    );
    let mut series = window.clone();
    series.push(("match[]", r#"{app="web"}"#.into()));
    series.push(("match[]", r#"{service_name="checkout"}"#.into()));
    assert_eq!(
        data(&stack, "series", &series, false).await,
        json!([
            {"app": "web", "env": "prod", "service_name": "web"},
            {"k8s_pod_name": "pod-1", "service_name": "checkout"},
        ])
    );
    // RFC 3339 times, as Logs Drilldown sends them; a range without lines.
    let rfc = vec![
        ("start", "2023-11-14T22:13:00Z".to_owned()),
        ("end", "2023-11-14T22:14:00Z".to_owned()),
    ];
    assert_eq!(
        data(&stack, "labels", &rfc, false)
            .await
            .as_array()
            .map(Vec::len),
        Some(4)
    );
    let before = vec![("start", "1000".to_owned()), ("end", "2000".to_owned())];
    assert_eq!(data(&stack, "labels", &before, false).await, json!([]));

    // What the editor and Logs Drilldown ask.
    let web_bytes: usize = [
        r#"level=info msg="GET /a" status=200 dur=15ms size=1KB"#,
        r#"level=error msg="GET /b" status=500 dur=1.5s size=3KB"#,
        r#"level=warn msg="GET /c" status=404 dur=250ms size=512B"#,
    ]
    .iter()
    .map(|l| l.len())
    .sum();
    let api_bytes = [
        r#"{"level":"info","status":200,"req":{"path":"/x","ms":12}}"#,
        r#"{"level":"error","status":502,"req":{"path":"/y","ms":340}}"#,
        "not json at all",
    ]
    .iter()
    .map(|l| l.len())
    .sum::<usize>();
    let mut web = window.clone();
    web.push(("query", r#"{app="web"}"#.into()));
    let (status, body) = get(&stack, "index/stats", &web, false).await;
    assert_eq!(status, 200, "{body}");
    let stats: Json = serde_json::from_str(&body).expect("JSON");
    assert_eq!(stats["streams"], 1);
    assert_eq!(stats["entries"], 3);
    assert_eq!(stats["bytes"], web_bytes);
    assert!(stats["chunks"].as_u64().is_some_and(|c| c >= 1), "{stats}");
    let mut all = window.clone();
    all.push(("query", r#"{env=~".+"}"#.into()));
    let d = data(&stack, "index/volume", &all, false).await;
    assert_eq!(d["resultType"], "vector");
    let expected = {
        let mut v = vec![
            (json!({"env": "prod"}), web_bytes),
            (json!({"env": "dev"}), api_bytes),
        ];
        v.sort_by_key(|x| std::cmp::Reverse(x.1));
        v.into_iter()
            .map(|(m, b)| (m, at(&[(10.0, &b.to_string())])))
            .collect::<Vec<_>>()
    };
    assert_eq!(samples(&d), expected, "largest first");
    let mut ranged = all.clone();
    ranged.push(("step", "2s".into()));
    ranged.push(("targetLabels", "app".into()));
    let d = data(&stack, "index/volume_range", &ranged, false).await;
    assert_eq!(d["resultType"], "matrix");
    let web_line = |i: usize| {
        [
            r#"level=info msg="GET /a" status=200 dur=15ms size=1KB"#,
            r#"level=error msg="GET /b" status=500 dur=1.5s size=3KB"#,
            r#"level=warn msg="GET /c" status=404 dur=250ms size=512B"#,
        ][i]
            .len()
            .to_string()
    };
    let got = samples(&d);
    let web_series = got
        .iter()
        .find(|(m, _)| m == &json!({"app": "web"}))
        .expect("web");
    // Steps at 0, 2, 4 … s; lines at 1 s → step 2, 2 s → step 2, 3 s → step 4.
    let two = (web_line(0).parse::<usize>().expect("n") + web_line(1).parse::<usize>().expect("n"))
        .to_string();
    assert_eq!(web_series.1, at(&[(2.0, &two), (4.0, &web_line(2))]));

    let (status, body) = get(&stack, "detected_fields", &web, false).await;
    assert_eq!(status, 200, "{body}");
    let fields: Json = serde_json::from_str(&body).expect("JSON");
    assert_eq!(fields["limit"], 1000);
    let field = |name: &str| {
        fields["fields"]
            .as_array()
            .expect("fields")
            .iter()
            .find(|f| f["label"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("no field {name}: {fields}"))
    };
    assert_eq!(
        field("status"),
        json!({"label": "status", "type": "int", "cardinality": 3, "parsers": ["logfmt"]})
    );
    assert_eq!(field("dur")["type"], "duration");
    assert_eq!(field("size")["type"], "bytes");
    assert_eq!(field("msg")["type"], "string");
    assert_eq!(field("detected_level")["parsers"], Json::Null);
    let mut api = window.clone();
    api.push(("query", r#"{app="api"}"#.into()));
    let (_, body) = get(&stack, "detected_fields", &api, false).await;
    let api_fields: Json = serde_json::from_str(&body).expect("JSON");
    let path = api_fields["fields"]
        .as_array()
        .expect("fields")
        .iter()
        .find(|f| f["label"] == "req_path")
        .cloned()
        .expect("req_path");
    assert_eq!(path["jsonPath"], json!(["req", "path"]));
    assert_eq!(path["parsers"], json!(["json"]));
    let (_, body) = get(&stack, "detected_field/status/values", &web, false).await;
    assert_eq!(
        serde_json::from_str::<Json>(&body).expect("JSON"),
        json!({"values": ["200", "404", "500"], "limit": 1000})
    );
    let (_, body) = get(&stack, "detected_labels", &all, false).await;
    assert_eq!(
        serde_json::from_str::<Json>(&body).expect("JSON"),
        json!({"detectedLabels": [
            {"label": "app", "cardinality": 2},
            {"label": "env", "cardinality": 2},
            {"label": "service_name", "cardinality": 2},
        ]})
    );
    let mut patterns = web.clone();
    patterns.push(("step", "10s".into()));
    let d = data(&stack, "patterns", &patterns, false).await;
    let found: Vec<(String, String, Json)> = d
        .as_array()
        .expect("patterns")
        .iter()
        .map(|p| {
            (
                p["pattern"].as_str().expect("text").to_owned(),
                p["level"].as_str().expect("level").to_owned(),
                p["samples"].clone(),
            )
        })
        .collect();
    assert_eq!(found.len(), 3, "{d}");
    assert!(
        found.contains(&(
            r#"level=error msg="GET /b" status=<_> dur=<_> size=<_>"#.to_owned(),
            "error".to_owned(),
            json!([[T0, 1]])
        )),
        "{d}"
    );

    // Errors: text with the reason and Loki's status.
    for (path, params, words) in [
        (
            "query_range",
            range(r#"{app="web"} |= "#, 0.0, 10.0, &[]),
            "parse error at line 1, col 16",
        ),
        (
            "query_range",
            range(r#"{app=~".*"}"#, 0.0, 10.0, &[]),
            "at least one",
        ),
        (
            "query",
            instant(r#"{app="web"}"#, 4.0),
            "instant query type",
        ),
        (
            "query_range",
            range(r#"rate({app="web"}[1s])"#, 10.0, 0.0, &[]),
            "end timestamp",
        ),
        (
            "query_range",
            range(r#"rate({app="web"}[1s])"#, 0.0, 10.0, &[("step", "0")]),
            "zero or negative",
        ),
        (
            "query_range",
            range(
                r#"rate({app="web"}[1s])"#,
                0.0,
                100_000.0,
                &[("step", "1ms")],
            ),
            "11,000 points",
        ),
        (
            "query_range",
            range(r#"{app="web"}"#, 0.0, 10.0, &[("limit", "-1")]),
            "limit",
        ),
        (
            "query_range",
            vec![("query", r#"{app="web"}"#.into()), ("start", "soon".into())],
            "invalid start",
        ),
    ] {
        let (status, body) = get(&stack, path, &params, false).await;
        assert_eq!(status, 400, "{path} {params:?}: {body}");
        assert!(body.contains(words), "{path} {params:?}: {body}");
    }
}

/// The next text message of a WebSocket, as JSON (within a few seconds).
async fn next_message<S>(socket: &mut S) -> Json
where
    S: futures::Stream<
            Item = Result<
                tokio_tungstenite::tungstenite::Message,
                tokio_tungstenite::tungstenite::Error,
            >,
        > + Unpin,
{
    use futures::StreamExt;
    loop {
        let message = tokio::time::timeout(std::time::Duration::from_secs(10), socket.next())
            .await
            .expect("a message within 10 s")
            .expect("the socket is open")
            .expect("a frame");
        if let tokio_tungstenite::tungstenite::Message::Text(text) = message {
            return serde_json::from_str(&text).expect("JSON");
        }
    }
}

fn lines_of(message: &Json) -> Vec<String> {
    message["streams"]
        .as_array()
        .expect("streams")
        .iter()
        .flat_map(|s| s["values"].as_array().expect("values").iter())
        .map(|v| v[1].as_str().expect("line").to_owned())
        .collect()
}

/// A Loki push (JSON), acknowledged.
async fn push(stack: &Stack, body: &Json) {
    let response = stack
        .client
        .post(format!("{}/loki/api/v1/push", stack.ingest_url))
        .json(body)
        .send()
        .await
        .expect("push answered");
    assert_eq!(response.status(), 204);
}

async fn push_line(stack: &Stack, app: &str, line: &str) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_nanos();
    let body = json!({"streams": [{"stream": {"app": app}, "values": [[now.to_string(), line]]}]});
    push(stack, &body).await;
}

#[tokio::test]
async fn tail_sends_the_recent_lines_then_each_new_one_once() {
    let stack = lines().await;
    push_line(&stack, "live", "before the tail").await;
    let url = format!(
        "{}/loki/api/v1/tail?query={}",
        stack.query_url.replacen("http", "ws", 1),
        urlencode(r#"{app="live"} != "skip""#)
    );
    let (mut socket, _) = tokio_tungstenite::connect_async(&url)
        .await
        .expect("upgrade");
    let first = next_message(&mut socket).await;
    assert_eq!(lines_of(&first), vec!["before the tail"]);
    assert_eq!(first["streams"][0]["stream"]["app"], "live");
    for line in ["one", "skip this", "two"] {
        push_line(&stack, "live", line).await;
        push_line(&stack, "other", line).await;
    }
    let mut got = Vec::new();
    while got.len() < 2 {
        got.extend(lines_of(&next_message(&mut socket).await));
    }
    assert_eq!(got, vec!["one", "two"]);
    push_line(&stack, "live", "three").await;
    assert_eq!(
        lines_of(&next_message(&mut socket).await),
        vec!["three"],
        "each line once"
    );

    // A query that does not parse is refused at the handshake.
    let bad = format!(
        "{}/loki/api/v1/tail?query={}",
        stack.query_url.replacen("http", "ws", 1),
        urlencode("{app=")
    );
    match tokio_tungstenite::connect_async(&bad).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 400);
        }
        other => panic!("the handshake is refused: {:?}", other.map(|_| ())),
    }
}

fn urlencode(text: &str) -> String {
    form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

#[tokio::test]
async fn a_slow_tail_reader_drops_lines_and_never_holds_up_pushes() {
    let stack = lines().await;
    let framelake_logql::Expr::Log(expr) =
        framelake_logql::parse(r#"{app="slow"}"#).expect("parses")
    else {
        panic!("a log query")
    };
    let loki = framelake_query::loki::Loki::new(
        stack.engine.clone(),
        framelake_query::loki::streams::LabelMapping::default(),
    );
    // A reader that takes one message and then nothing.
    let (out, mut messages) = tokio::sync::mpsc::channel(1);
    let query = framelake_query::loki::tail::TailQuery {
        expr,
        start: 0,
        limit: 10,
        delay: std::time::Duration::ZERO,
    };
    let tail = tokio::spawn(framelake_query::loki::tail::follow(
        loki,
        framelake_lake::ids::TenantId::default_tenant(),
        query,
        out,
    ));
    // Pushes are acknowledged while the reader reads nothing.
    for i in 0..6 {
        push_line(&stack, "slow", &format!("line {i}")).await;
        tokio::time::sleep(framelake_query::loki::tail::POLL * 3).await;
    }
    let rows = stack
        .rows(
            "SELECT count(*) AS n FROM log_entries WHERE attr(resource_attributes, 'app') = 'slow'",
        )
        .await;
    assert_eq!(rows[0]["n"], 6);
    let first = messages.recv().await.expect("a message");
    assert!(first.dropped.is_empty());
    // What did not fit was dropped, and is reported with the next message.
    push_line(&stack, "slow", "last").await;
    let next = tokio::time::timeout(std::time::Duration::from_secs(10), messages.recv())
        .await
        .expect("a message within 10 s")
        .expect("the tail runs");
    assert!(!next.dropped.is_empty(), "dropped lines are reported");
    let delivered = first.lines.len() + next.lines.len() + next.dropped.len();
    assert!(
        delivered >= 6,
        "every line is delivered or reported dropped: {delivered}"
    );
    drop(messages);
    tokio::time::timeout(std::time::Duration::from_secs(5), tail)
        .await
        .expect("the tail ends when its reader goes")
        .expect("no panic")
        .expect("no error");
}
