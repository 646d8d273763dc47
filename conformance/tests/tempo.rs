//! Grafana's Tempo datasource against the real binary: traces sent by the
//! OpenTelemetry Python SDK (and as OTLP/JSON, for ids of a short form) read
//! back by id as Tempo's protobuf messages, decoded with `tempopb`'s field
//! numbers, and as OTLP JSON.

use std::collections::BTreeMap;

use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::trace::v1::{Span, TracesData};
use prost::Message;
use serde_json::Value;

use crate::Server;
use crate::sdk::{node, python, send};

/// `tempopb.TraceByIDResponse`, from Tempo's `tempo.proto`.
#[derive(Clone, PartialEq, Message)]
struct TraceByIdResponse {
    #[prost(message, optional, tag = "1")]
    trace: Option<TracesData>,
    #[prost(message, optional, tag = "2")]
    metrics: Option<TraceByIdMetrics>,
    #[prost(int32, tag = "3")]
    status: i32,
    #[prost(string, tag = "4")]
    message: String,
}

#[derive(Clone, PartialEq, Message)]
struct TraceByIdMetrics {
    #[prost(uint64, tag = "1")]
    inspected_bytes: u64,
}

async fn get(server: &Server, path: &str, accept: &str) -> (u16, String, Vec<u8>) {
    get_as(server, path, accept, "default").await
}

/// A GET as a tenant.
async fn get_as(server: &Server, path: &str, accept: &str, tenant: &str) -> (u16, String, Vec<u8>) {
    let response = reqwest::Client::new()
        .get(format!("{}{path}", server.query_url()))
        .header("accept", accept)
        .header("x-scope-orgid", tenant)
        .send()
        .await
        .unwrap_or_else(|e| panic!("query listener: {e}; log:\n{}", server.log_text()));
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    (
        status,
        content_type,
        response.bytes().await.expect("body").to_vec(),
    )
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The spans of a trace, by span id.
fn spans(trace: &TracesData) -> Vec<(&Span, Vec<KeyValue>, String)> {
    let mut out = Vec::new();
    for rs in &trace.resource_spans {
        let resource = rs
            .resource
            .clone()
            .map(|r| r.attributes)
            .unwrap_or_default();
        for ss in &rs.scope_spans {
            let scope = ss
                .scope
                .as_ref()
                .map(|s| s.name.clone())
                .unwrap_or_default();
            for span in &ss.spans {
                out.push((span, resource.clone(), scope.clone()));
            }
        }
    }
    out.sort_by_key(|(s, ..)| s.start_time_unix_nano);
    out
}

/// An OTLP value as the sender's JSON writes it.
fn as_json(value: Option<&AnyValue>) -> Value {
    match value.and_then(|v| v.value.as_ref()) {
        None => Value::Null,
        Some(any_value::Value::StringValue(s)) => Value::from(s.clone()),
        Some(any_value::Value::IntValue(i)) => Value::from(*i),
        Some(any_value::Value::DoubleValue(d)) => Value::from(*d),
        Some(any_value::Value::BoolValue(b)) => Value::from(*b),
        Some(any_value::Value::ArrayValue(a)) => {
            Value::Array(a.values.iter().map(|v| as_json(Some(v))).collect())
        }
        Some(other) => panic!("an unexpected value {other:?}"),
    }
}

fn attributes_json(attributes: &[KeyValue]) -> Value {
    Value::Object(
        attributes
            .iter()
            .map(|kv| (kv.key.clone(), as_json(kv.value.as_ref())))
            .collect(),
    )
}

/// The spans read back are the spans sent, field by field.
fn assert_same(trace: &TracesData, sent: &[&Value], service: &str) {
    let got = spans(trace);
    assert_eq!(got.len(), sent.len(), "spans of the trace: {trace:?}");
    for ((span, resource, scope), expected) in got.iter().zip(sent) {
        let what = expected["name"].as_str().expect("a name");
        assert_eq!(span.trace_id.len(), 16, "{what}");
        assert_eq!(span.span_id.len(), 8, "{what}");
        assert_eq!(hex(&span.trace_id), expected["trace_id"], "{what}");
        assert_eq!(hex(&span.span_id), expected["span_id"], "{what}");
        assert_eq!(
            hex(&span.parent_span_id),
            expected["parent_span_id"],
            "{what}"
        );
        assert_eq!(span.name, what);
        assert_eq!(span.kind, expected["kind"], "{what}");
        assert_eq!(
            span.start_time_unix_nano, expected["start_time_unix_nano"],
            "{what}"
        );
        assert_eq!(
            span.end_time_unix_nano, expected["end_time_unix_nano"],
            "{what}"
        );
        let status = span.status.clone().unwrap_or_default();
        assert_eq!(status.code, expected["status"]["code"], "{what}");
        assert_eq!(status.message, expected["status"]["message"], "{what}");
        assert_eq!(
            attributes_json(&span.attributes),
            expected["attributes"],
            "{what}"
        );
        assert_eq!(*scope, expected["scope"]["name"], "{what}");
        let names: Vec<&str> = span.events.iter().map(|e| e.name.as_str()).collect();
        let sent_names: Vec<&str> = expected["events"]
            .as_array()
            .expect("events")
            .iter()
            .map(|e| e["name"].as_str().expect("a name"))
            .collect();
        assert_eq!(names, sent_names, "{what}");
        for (event, sent) in span
            .events
            .iter()
            .zip(expected["events"].as_array().expect("events"))
        {
            assert_eq!(event.time_unix_nano, sent["time_unix_nano"], "{what}");
            assert_eq!(
                attributes_json(&event.attributes),
                sent["attributes"],
                "{what}"
            );
        }
        let links = expected["links"].as_array().expect("links");
        assert_eq!(span.links.len(), links.len(), "{what}");
        for (link, sent) in span.links.iter().zip(links) {
            assert_eq!(hex(&link.trace_id), sent["trace_id"], "{what}");
            assert_eq!(hex(&link.span_id), sent["span_id"], "{what}");
            assert_eq!(
                attributes_json(&link.attributes),
                sent["attributes"],
                "{what}"
            );
        }
        let service_name = resource
            .iter()
            .find(|kv| kv.key == "service.name")
            .map(|kv| as_json(kv.value.as_ref()));
        assert_eq!(service_name, Some(Value::from(service)), "{what}");
    }
}

/// Checks that a search answer holds only the fields Grafana's strict
/// decoder of Tempo's `SearchResponse` (pinned version) knows, with their
/// JSON types.
fn assert_strict(answer: &Value) {
    fn keys(value: &Value, allowed: &[&str], what: &str) {
        let object = value
            .as_object()
            .unwrap_or_else(|| panic!("{what}: an object, got {value}"));
        for key in object.keys() {
            assert!(
                allowed.contains(&key.as_str()),
                "{what}: unknown field {key:?} in {value}"
            );
        }
    }
    fn attributes(list: &Value) {
        for kv in list.as_array().expect("attributes") {
            keys(kv, &["key", "value"], "KeyValue");
            keys(
                &kv["value"],
                &[
                    "stringValue",
                    "intValue",
                    "doubleValue",
                    "boolValue",
                    "arrayValue",
                    "kvlistValue",
                    "bytesValue",
                ],
                "AnyValue",
            );
        }
    }
    keys(answer, &["traces", "metrics"], "SearchResponse");
    keys(
        &answer["metrics"],
        &[
            "inspectedTraces",
            "inspectedBytes",
            "totalBlocks",
            "completedJobs",
            "totalJobs",
            "totalBlockBytes",
            "inspectedSpans",
        ],
        "SearchMetrics",
    );
    for trace in answer["traces"].as_array().expect("traces") {
        keys(
            trace,
            &[
                "traceID",
                "rootServiceName",
                "rootTraceName",
                "startTimeUnixNano",
                "durationMs",
                "spanSet",
                "spanSets",
                "serviceStats",
            ],
            "TraceSearchMetadata",
        );
        assert!(
            trace["traceID"]
                .as_str()
                .is_some_and(|id| id.chars().all(|c| c.is_ascii_hexdigit()))
        );
        assert!(trace["startTimeUnixNano"].is_string(), "{trace}");
        assert!(trace.get("durationMs").is_none_or(Value::is_u64), "{trace}");
        for (_, stats) in trace["serviceStats"].as_object().expect("serviceStats") {
            keys(stats, &["spanCount", "errorCount"], "ServiceStats");
        }
        let sets = trace["spanSets"].as_array().expect("spanSets");
        for set in sets.iter().chain([&trace["spanSet"]]) {
            keys(set, &["spans", "matched", "attributes"], "SpanSet");
            assert!(set["matched"].is_u64(), "{set}");
            for span in set["spans"].as_array().expect("spans") {
                keys(
                    span,
                    &[
                        "spanID",
                        "name",
                        "startTimeUnixNano",
                        "durationNanos",
                        "attributes",
                    ],
                    "Span",
                );
                assert!(span["startTimeUnixNano"].is_string() && span["durationNanos"].is_string());
                if let Some(list) = span.get("attributes") {
                    attributes(list);
                }
            }
        }
    }
}

#[tokio::test]
async fn trace_by_id_as_grafana_reads_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = Server::serve_in(dir.path()).await;
    let sent = send(
        &python(),
        "conformance/python/send.py",
        &["--endpoint", &server.http_url(), "--protocol", "http"],
        &dir.path().join("http.json"),
    )
    .await;
    let service = sent["service_name"].as_str().expect("a service");
    let all: Vec<&Value> = sent["spans"].as_array().expect("spans").iter().collect();
    let root = all
        .iter()
        .find(|s| s["name"] == "root-op")
        .expect("the scenario's root span");
    let id = root["trace_id"].as_str().expect("an id").to_owned();
    let of_trace: Vec<&Value> = all
        .iter()
        .copied()
        .filter(|s| s["trace_id"] == root["trace_id"])
        .collect();
    assert_eq!(of_trace.len(), 2, "root-op and child-op");

    // Save & test.
    let (status, _, body) = get(&server, "/api/echo", "*/*").await;
    assert_eq!((status, body.as_slice()), (200, b"echo".as_slice()));
    let (status, content_type, body) = get(&server, "/api/status/buildinfo", "*/*").await;
    assert_eq!((status, content_type.as_str()), (200, "application/json"));
    let info: Value = serde_json::from_slice(&body).expect("JSON");
    assert!(info["version"].is_string(), "{info}");

    // The v2 form as Grafana asks it: a TraceByIDResponse, whatever the
    // case of the id, with or without a time range around it.
    let start = root["start_time_unix_nano"].as_u64().expect("a start") / 1_000_000_000;
    for path in [
        format!("/api/v2/traces/{id}"),
        format!("/api/v2/traces/{}", id.to_uppercase()),
        format!(
            "/api/v2/traces/{id}?start={}&end={}",
            start - 60,
            start + 60
        ),
    ] {
        let (status, content_type, body) = get(&server, &path, "application/protobuf").await;
        assert_eq!(
            (status, content_type.as_str()),
            (200, "application/protobuf"),
            "{path}: {}",
            String::from_utf8_lossy(&body)
        );
        let response = TraceByIdResponse::decode(body.as_slice()).expect("a TraceByIDResponse");
        assert_eq!(response.status, 0, "complete");
        assert_same(&response.trace.expect("a trace"), &of_trace, service);
    }
    // Grafana's fallback: the first version, a bare Trace.
    let (status, _, body) = get(
        &server,
        &format!("/api/traces/{id}"),
        "application/protobuf",
    )
    .await;
    assert_eq!(status, 200);
    assert_same(
        &TracesData::decode(body.as_slice()).expect("a Trace"),
        &of_trace,
        service,
    );
    // OTLP JSON otherwise.
    let (status, content_type, body) = get(&server, &format!("/api/v2/traces/{id}"), "*/*").await;
    assert_eq!((status, content_type.as_str()), (200, "application/json"));
    let json: Value = serde_json::from_slice(&body).expect("JSON");
    let trace: TracesData = serde_json::from_value(json["trace"].clone()).expect("OTLP JSON");
    assert_same(&trace, &of_trace, service);
    let (_, _, body) = get(&server, &format!("/api/traces/{id}"), "application/json").await;
    let json: Value = serde_json::from_slice(&body).expect("JSON");
    assert_eq!(json["batches"].as_array().map(Vec::len), Some(1), "{json}");

    // A short id is left-padded: a trace whose id's first half is zeros.
    let short = "00000000000000000123456789abcdef";
    let export = serde_json::json!({"resourceSpans": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "short"}}]},
        "scopeSpans": [{"scope": {"name": "s"}, "spans": [{
            "traceId": short, "spanId": "0102030405060708", "name": "padded",
            "kind": 2, "startTimeUnixNano": "1700000000000000000",
            "endTimeUnixNano": "1700000000500000000"}]}]}]});
    let response = reqwest::Client::new()
        .post(format!("{}/v1/traces", server.http_url()))
        .header("content-type", "application/json")
        .body(export.to_string())
        .send()
        .await
        .expect("the receiver answers");
    assert_eq!(response.status().as_u16(), 200);
    for id in ["123456789abcdef", "0123456789ABCDEF", short] {
        let (status, _, body) = get(
            &server,
            &format!("/api/v2/traces/{id}"),
            "application/protobuf",
        )
        .await;
        assert_eq!(status, 200, "{id}");
        let trace = TraceByIdResponse::decode(body.as_slice())
            .expect("a TraceByIDResponse")
            .trace
            .expect("a trace");
        let got = spans(&trace);
        assert_eq!(got.len(), 1, "{id}");
        assert_eq!(hex(&got[0].0.trace_id), short);
        assert_eq!(got[0].0.name, "padded");
    }

    // Tag discovery: names by scope, values typed, narrowed by a filter.
    let json = |path: String| {
        let server = &server;
        async move {
            let (status, content_type, body) = get(server, &path, "application/json").await;
            assert_eq!(
                (status, content_type.as_str()),
                (200, "application/json"),
                "{path}: {}",
                String::from_utf8_lossy(&body)
            );
            serde_json::from_slice::<Value>(&body).expect("JSON")
        }
    };
    let tags = json("/api/v2/search/tags?limit=5000".to_owned()).await;
    let scope = |name: &str| -> Vec<String> {
        tags["scopes"]
            .as_array()
            .expect("scopes")
            .iter()
            .find(|s| s["name"] == name)
            .unwrap_or_else(|| panic!("scope {name} in {tags}"))["tags"]
            .as_array()
            .expect("tags")
            .iter()
            .map(|t| t.as_str().expect("a name").to_owned())
            .collect()
    };
    assert!(
        scope("resource").contains(&"service.name".to_owned()),
        "{tags}"
    );
    for name in ["attr.string", "attr.int", "attr.double_array"] {
        assert!(scope("span").contains(&name.to_owned()), "{tags}");
    }
    assert_eq!(scope("event"), ["event.n"]);
    assert_eq!(scope("link"), ["link.kind"]);
    for name in [
        "duration",
        "kind",
        "name",
        "status",
        "rootServiceName",
        "span:name",
    ] {
        assert!(scope("intrinsic").contains(&name.to_owned()), "{tags}");
    }
    let values = json(
        "/api/v2/search/tag/resource.service.name/values?limit=5000&tag=resource.service.name"
            .to_owned(),
    )
    .await;
    assert_eq!(
        values["tagValues"],
        serde_json::json!([{"type": "string", "value": service}])
    );
    let values = json("/api/v2/search/tag/span.attr.int/values".to_owned()).await;
    assert_eq!(
        values["tagValues"],
        serde_json::json!([{"type": "int", "value": "123"}])
    );
    let values = json("/api/v2/search/tag/status/values".to_owned()).await;
    let keywords: Vec<&Value> = values["tagValues"]
        .as_array()
        .expect("values")
        .iter()
        .collect();
    assert_eq!(keywords.len(), 3);
    assert!(keywords.iter().all(|v| v["type"] == "keyword"), "{values}");
    let names = |q: &'static str| {
        let json = &json;
        async move {
            let q: String = form_urlencoded::byte_serialize(q.as_bytes()).collect();
            let values = json(format!("/api/v2/search/tag/name/values?q={q}")).await;
            values["tagValues"]
                .as_array()
                .expect("values")
                .iter()
                .map(|v| {
                    assert_eq!(v["type"], "string");
                    v["value"].as_str().expect("a value").to_owned()
                })
                .collect::<Vec<String>>()
        }
    };
    let all = ["child-op", "linked-op", "root-op"];
    for (q, expected) in [
        ("{}", all.as_slice()),
        (r#"{ span.attr.string = "value" }"#, &["child-op"]),
        (r#"{ span.attr.string != "other" }"#, &["child-op"]),
        ("{ span.attr.int > 100 }", &["child-op"]),
        ("{ span.attr.int > 200 }", &[]),
        (
            "{ span.attr.double = 3.25 && span.attr.bool = true }",
            &["child-op"],
        ),
        ("{ span.attr.bool }", &["child-op"]),
        (r#"{ span.attr.int = "123" }"#, &[]),
        ("{ status = error }", &["child-op"]),
        ("{ status = ok }", &["root-op"]),
        ("{ kind = server }", &["root-op"]),
        (r#"{ name =~ "root.*" }"#, &["root-op"]),
        (r#"{ name =~ "root" }"#, &[]),
        (r#"{ name !~ "root.*" }"#, &["child-op", "linked-op"]),
        ("{ span.attr.int != nil }", &["child-op"]),
        ("{ span.nope = nil && duration > 0ms }", all.as_slice()),
        (
            r#"{ span.attr.string = "value" || kind = server }"#,
            &["child-op", "root-op"],
        ),
        (
            "{ !(kind = server) && statusMessage = \"boom\" }",
            &["child-op"],
        ),
        // A filter that does not parse narrows nothing, as in Tempo.
        ("{ name = ", all.as_slice()),
    ] {
        assert_eq!(names(q).await, expected, "{q}");
    }
    for tag in ["nope", "span:nope", "span."] {
        let (status, _, body) =
            get(&server, &format!("/api/v2/search/tag/{tag}/values"), "*/*").await;
        assert_eq!(status, 400, "{tag}");
        assert!(
            String::from_utf8_lossy(&body).contains("invalid tag"),
            "{tag}"
        );
    }
    // The first versions.
    let v1 = json("/api/search/tags".to_owned()).await;
    let v1_names = v1["tagNames"].as_array().expect("names");
    for name in ["service.name", "attr.string"] {
        assert!(v1_names.contains(&Value::from(name)), "{v1}");
    }
    let v1 = json("/api/search/tag/service.name/values".to_owned()).await;
    assert_eq!(v1["tagValues"], serde_json::json!([service]));

    // Search.
    let search = |q: &str, extra: &str| {
        let q: String = form_urlencoded::byte_serialize(q.as_bytes()).collect();
        let path = format!("/api/search?q={q}{extra}");
        let json = &json;
        async move {
            let answer = json(path).await;
            assert_strict(&answer);
            answer
        }
    };
    let window = format!("&limit=20&spss=3&start={}&end={}", start - 60, start + 60);
    let everything = search("{}", &window).await;
    let traces = everything["traces"].as_array().expect("traces");
    assert_eq!(traces.len(), 2, "the scenario's two traces: {everything}");
    let first = &traces[0];
    assert_eq!(first["traceID"], id.trim_start_matches('0'));
    assert_eq!(first["rootServiceName"], service);
    assert_eq!(first["rootTraceName"], "root-op");
    assert_eq!(first["spanSet"], first["spanSets"][0]);
    assert_eq!(first["spanSet"]["matched"], 2);
    assert_eq!(
        first["serviceStats"][service],
        serde_json::json!({"spanCount": 2, "errorCount": 1})
    );
    assert_eq!(
        first["startTimeUnixNano"],
        root["start_time_unix_nano"].to_string()
    );
    assert!(
        traces[0]["startTimeUnixNano"]
            .as_str()
            .expect("a time")
            .parse::<u64>()
            .expect("a number")
            >= traces[1]["startTimeUnixNano"]
                .as_str()
                .expect("a time")
                .parse::<u64>()
                .expect("a number"),
        "newest first"
    );
    let names = |answer: &Value| -> Vec<Vec<String>> {
        answer["traces"]
            .as_array()
            .expect("traces")
            .iter()
            .map(|t| {
                t["spanSet"]["spans"]
                    .as_array()
                    .expect("spans")
                    .iter()
                    .map(|s| s["name"].as_str().expect("a name").to_owned())
                    .collect()
            })
            .collect()
    };
    let q = format!(r#"{{ resource.service.name = "{service}" && status = error }}"#);
    let errors = search(&q, "").await;
    assert_eq!(names(&errors), [["child-op"]]);
    let attributes = &errors["traces"][0]["spanSet"]["spans"][0]["attributes"];
    assert!(
        attributes
            .as_array()
            .expect("attributes")
            .contains(&serde_json::json!({"key": "status", "value": {"stringValue": "error"}})),
        "{attributes}"
    );
    for (q, expected) in [
        (
            r#"{ name = "root-op" } >> { name = "child-op" }"#,
            vec![vec!["child-op"]],
        ),
        (
            r#"{ name = "root-op" } > { name = "child-op" }"#,
            vec![vec!["child-op"]],
        ),
        (r#"{ name = "child-op" } < { }"#, vec![vec!["root-op"]]),
        (r#"{ name = "child-op" } >> { }"#, vec![]),
        ("{ } !< { }", vec![vec!["child-op"], vec!["linked-op"]]),
        (
            r#"{ name = "root-op" } &> { }"#,
            vec![vec!["root-op", "child-op"]],
        ),
        (
            r#"{ kind = server } && { kind = client }"#,
            vec![vec!["root-op", "child-op"]],
        ),
        (r#"{ kind = server } && { kind = producer }"#, vec![]),
        (
            r#"{ kind = internal } || { status = error }"#,
            vec![vec!["child-op"], vec!["linked-op"]],
        ),
        ("{ } | count() > 1", vec![vec!["root-op", "child-op"]]),
        ("{ } | count() = 1", vec![vec!["linked-op"]]),
        (r#"{ } | { name = "child-op" }"#, vec![vec!["child-op"]]),
        (
            "{ } | max(duration) > 0s",
            vec![vec!["root-op", "child-op"], vec!["linked-op"]],
        ),
        // Roots, as Traces Drilldown finds them.
        (
            "{ nestedSetParent < 0 && true }",
            vec![vec!["root-op"], vec!["linked-op"]],
        ),
        // The trace's intrinsics.
        (
            r#"{ rootName = "root-op" }"#,
            vec![vec!["root-op", "child-op"]],
        ),
        (r#"{ !(rootName = "root-op") }"#, vec![vec!["linked-op"]]),
        (
            r#"{ trace:rootName = "root-op" && kind = client }"#,
            vec![vec!["child-op"]],
        ),
        (
            r#"{ rootServiceName =~ "conformance-.*" && status = error }"#,
            vec![vec!["child-op"]],
        ),
        (
            r#"{ "root-op" = rootName && status = ok }"#,
            vec![vec!["root-op"]],
        ),
        ("{ traceDuration > 1h }", vec![]),
        (
            r#"{ traceDuration >= 0ms && name = "linked-op" }"#,
            vec![vec!["linked-op"]],
        ),
    ] {
        let answer = search(q, "").await;
        let got = names(&answer);
        assert_eq!(got, expected, "{q}: {answer}");
    }
    let selected = search(
        r#"{ status = error } | select(span.attr.string, span.attr.int)"#,
        "",
    )
    .await;
    let attributes = &selected["traces"][0]["spanSet"]["spans"][0]["attributes"];
    for kv in [
        serde_json::json!({"key": "attr.string", "value": {"stringValue": "value"}}),
        serde_json::json!({"key": "attr.int", "value": {"intValue": "123"}}),
    ] {
        assert!(
            attributes.as_array().expect("attributes").contains(&kv),
            "{attributes}"
        );
    }
    let one = search("{}", "&limit=1&spss=1").await;
    assert_eq!(one["traces"].as_array().map(Vec::len), Some(1));
    assert_eq!(
        one["traces"][0]["spanSet"]["spans"]
            .as_array()
            .map(Vec::len),
        Some(1)
    );
    assert_eq!(one["traces"][0]["spanSet"]["matched"], 2);
    for (q, message) in [
        ("{ name = ", "invalid TraceQL query"),
        ("{ } | rate()", "invalid TraceQL query"),
        ("{ } | by(name)", "not supported"),
    ] {
        let encoded: String = form_urlencoded::byte_serialize(q.as_bytes()).collect();
        let (status, content_type, body) = get(
            &server,
            &format!("/api/search?q={encoded}"),
            "application/json",
        )
        .await;
        assert_eq!(status, 400, "{q}");
        assert!(content_type.starts_with("text/plain"), "{q}");
        assert!(
            String::from_utf8_lossy(&body).contains(message),
            "{q}: {}",
            String::from_utf8_lossy(&body)
        );
    }

    // The first version's parameters: tags and trace durations.
    let legacy = |params: String| {
        let json = &json;
        async move {
            let answer = json(format!("/api/search?{params}")).await;
            assert_strict(&answer);
            answer["traces"].as_array().expect("traces").len()
        }
    };
    let service_tag: String =
        form_urlencoded::byte_serialize(format!("service.name={service}").as_bytes()).collect();
    assert_eq!(legacy(format!("tags={service_tag}")).await, 2);
    assert_eq!(legacy("tags=attr.string%3Dvalue".to_owned()).await, 1);
    assert_eq!(legacy("tags=attr.string%3Dother".to_owned()).await, 0);
    assert_eq!(legacy("minDuration=1h".to_owned()).await, 0);
    assert_eq!(legacy("minDuration=0ms&maxDuration=1h".to_owned()).await, 2);
    for params in [
        "tags=a%3Db&q=%7B%7D",
        "minDuration=2s&maxDuration=1s",
        "maxDuration=soon",
        "tags=novalue",
    ] {
        let (status, ..) = get(&server, &format!("/api/search?{params}"), "*/*").await;
        assert_eq!(status, 400, "{params}");
    }

    // TraceQL metrics over the two minutes around the traces.
    let encode = |q: &str| -> String { form_urlencoded::byte_serialize(q.as_bytes()).collect() };
    let window = format!("&start={}&end={}", start - 60, start + 60);
    let range = |q: &str| {
        json(format!(
            "/api/metrics/query_range?q={}{window}&step=60s",
            encode(q)
        ))
    };
    let total = |series: &Value| -> f64 {
        series["samples"]
            .as_array()
            .expect("samples")
            .iter()
            .map(|s| {
                assert!(s["timestampMs"].is_string(), "{s}");
                s["value"].as_f64().expect("a value")
            })
            .sum()
    };
    let rate = range("{} | rate()").await;
    let series = rate["series"].as_array().expect("series");
    assert_eq!(series.len(), 1, "{rate}");
    assert_eq!(
        series[0]["labels"],
        serde_json::json!([{"key": "__name__", "value": {"stringValue": "rate"}}])
    );
    assert!(
        (total(&series[0]) * 60.0 - 3.0).abs() < 1e-9,
        "3 spans: {rate}"
    );
    for sample in series[0]["samples"].as_array().expect("samples") {
        let ms: i64 = sample["timestampMs"]
            .as_str()
            .expect("ms")
            .parse()
            .expect("a number");
        assert_eq!(
            ms % 60_000,
            0,
            "steps end on multiples of the step: {sample}"
        );
    }
    let roots = range("{ nestedSetParent < 0 && true } | rate() by (resource.service.name)").await;
    let series = roots["series"].as_array().expect("series");
    assert!(
        (total(&series[0]) * 60.0 - 2.0).abs() < 1e-9,
        "two roots: {roots}"
    );
    let by_service = range("{} | rate() by (resource.service.name)").await;
    let series = by_service["series"].as_array().expect("series");
    assert_eq!(series.len(), 1, "{by_service}");
    assert_eq!(
        series[0]["labels"],
        serde_json::json!([{"key": "resource.service.name", "value": {"stringValue": service}}])
    );
    let by_name = range("{} | count_over_time() by (name)").await;
    let mut names: Vec<(String, f64)> = by_name["series"]
        .as_array()
        .expect("series")
        .iter()
        .map(|s| {
            (
                s["labels"][0]["value"]["stringValue"]
                    .as_str()
                    .expect("a name")
                    .to_owned(),
                total(s),
            )
        })
        .collect();
    names.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        names,
        [
            ("child-op".to_owned(), 1.0),
            ("linked-op".to_owned(), 1.0),
            ("root-op".to_owned(), 1.0)
        ]
    );
    let errors = range("{ status = error } | count_over_time() by (status)").await;
    let series = errors["series"].as_array().expect("series");
    assert_eq!(series.len(), 1, "{errors}");
    assert_eq!(series[0]["labels"][0]["value"]["stringValue"], "error");
    assert_eq!(total(&series[0]), 1.0);
    let quantiles = range("{} | quantile_over_time(duration, 0.5, 0.99)").await;
    let series = quantiles["series"].as_array().expect("series");
    assert_eq!(series.len(), 2, "{quantiles}");
    assert_eq!(series[0]["labels"][0]["key"], "p");
    let histogram = range("{} | histogram_over_time(duration)").await;
    let counted: f64 = histogram["series"]
        .as_array()
        .expect("series")
        .iter()
        .map(total)
        .sum();
    assert_eq!(counted, 3.0, "{histogram}");
    let top = range("{} | count_over_time() by (name) | topk(1)").await;
    let mut per_step: BTreeMap<String, usize> = BTreeMap::new();
    for series in top["series"].as_array().expect("series") {
        for sample in series["samples"].as_array().expect("samples") {
            *per_step
                .entry(sample["timestampMs"].to_string())
                .or_default() += 1;
        }
    }
    assert!(per_step.values().all(|n| *n == 1), "{top}");
    let none = range("{} | count_over_time() by (name) > 5").await;
    assert_eq!(none["series"], serde_json::json!([]));
    // The instant form, which Grafana decodes strictly.
    let instant = json(format!(
        "/api/metrics/query?q={}{window}",
        encode("{} | count_over_time()")
    ))
    .await;
    assert_eq!(
        instant,
        serde_json::json!({"series": [{"labels": [{"key": "__name__", "value": {"stringValue": "count_over_time"}}], "value": 3.0}], "metrics": {}})
    );
    for path in [
        format!("/api/metrics/query_range?q={}{window}", encode("{}")),
        format!(
            "/api/metrics/query_range?q={}{window}&step=soon",
            encode("{} | rate()")
        ),
        format!(
            "/api/metrics/query?q={}&start=20&end=10",
            encode("{} | rate()")
        ),
        format!(
            "/api/metrics/query?q={}",
            encode("{} | compare({status=error})")
        ),
    ] {
        let (status, ..) = get(&server, &path, "application/json").await;
        assert_eq!(status, 400, "{path}");
    }

    // Another tenant does not see it.
    let response = reqwest::Client::new()
        .get(format!("{}/api/v2/traces/{id}", server.query_url()))
        .header("accept", "application/protobuf")
        .header("x-scope-orgid", "someone-else")
        .send()
        .await
        .expect("the query listener answers");
    assert_eq!(response.status().as_u16(), 404);

    // Unknown ids, outside the range, and bad requests.
    let unknown = "ffffffffffffffffffffffffffffffff";
    for path in [
        format!("/api/v2/traces/{unknown}"),
        format!("/api/traces/{unknown}"),
        format!("/api/v2/traces/{id}?start=1000&end=2000"),
    ] {
        let (status, ..) = get(&server, &path, "application/protobuf").await;
        assert_eq!(status, 404, "{path}");
    }
    for (path, message) in [
        ("/api/v2/traces/xyz".to_owned(), "hex characters"),
        (format!("/api/v2/traces/{}", "1".repeat(33)), "128 bits"),
        (
            format!("/api/v2/traces/{id}?start=2000&end=1000"),
            "start must be before end",
        ),
        (format!("/api/v2/traces/{id}?start=soon"), "invalid start"),
    ] {
        let (status, content_type, body) = get(&server, &path, "application/protobuf").await;
        assert_eq!(status, 400, "{path}");
        assert!(content_type.starts_with("text/plain"), "{path}");
        let body = String::from_utf8_lossy(&body);
        assert!(body.contains(message), "{path}: {body}");
    }
    assert!(server.terminate().success(), "a clean shutdown exits 0");
}

#[tokio::test]
async fn the_js_sdk_traces_read_back_by_id_and_are_found() {
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
    let service = sent["service_name"].as_str().expect("a service");
    let all: Vec<&Value> = sent["spans"].as_array().expect("spans").iter().collect();
    let mut ids: Vec<&str> = all
        .iter()
        .map(|s| s["trace_id"].as_str().expect("an id"))
        .collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 2, "the scenario's two traces");
    for id in &ids {
        let of_trace: Vec<&Value> = all
            .iter()
            .copied()
            .filter(|s| s["trace_id"] == *id)
            .collect();
        let path = format!("/api/v2/traces/{id}");
        let (status, _, body) = get_as(&server, &path, "application/protobuf", "js-team").await;
        assert_eq!(status, 200, "{path}");
        let response = TraceByIdResponse::decode(body.as_slice()).expect("a TraceByIDResponse");
        assert_same(&response.trace.expect("a trace"), &of_trace, service);
        // Not the default tenant's.
        let (status, ..) = get(&server, &path, "application/protobuf").await;
        assert_eq!(status, 404);
    }
    let q: String = form_urlencoded::byte_serialize(
        format!(r#"{{ resource.service.name = "{service}" }}"#).as_bytes(),
    )
    .collect();
    let (status, _, body) = get_as(
        &server,
        &format!("/api/search?q={q}"),
        "application/json",
        "js-team",
    )
    .await;
    assert_eq!(status, 200);
    let answer: Value = serde_json::from_slice(&body).expect("JSON");
    assert_strict(&answer);
    assert_eq!(
        answer["traces"].as_array().map(Vec::len),
        Some(2),
        "{answer}"
    );
    assert!(server.terminate().success(), "a clean shutdown exits 0");
}
