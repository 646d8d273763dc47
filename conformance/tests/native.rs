//! The native path end to end: `framelake demo` (a program instrumented with
//! the Rust SDK) sends to `framelake serve`; `thread_spans`, `frames`,
//! `log_entries` and `measures` return what it recorded, and the trace
//! `framelake perfetto` writes decodes, with Perfetto's own protos, to the
//! same slices.

use std::collections::BTreeMap;
use std::process::Command;

use serde_json::{Value, json};

use crate::Server;

fn framelake(args: &[&str]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_framelake"))
        .args(args)
        .output()
        .expect("framelake runs");
    assert!(
        output.status.success(),
        "framelake {args:?}: {}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_game_instrumented_with_the_sdk_reads_back_exactly_and_opens_in_perfetto() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = Server::serve_in(dir.path()).await;
    let summary_file = dir.path().join("summary.json");
    framelake(&[
        "demo",
        "--endpoint",
        &server.http_url(),
        "--frames",
        "90",
        "--fps",
        "240",
        "--hitch-every",
        "40",
        "--sampling",
        "all",
        "--summary",
        summary_file.to_str().expect("utf-8 path"),
    ]);
    let summary: Value =
        serde_json::from_slice(&std::fs::read(&summary_file).expect("summary")).expect("JSON");
    let process = summary["process_id"].as_str().expect("process id");
    let of_process = format!("process_id = X'{process}'");

    // Every span, by thread, parent and name: the counts and depths the game
    // recorded, each at least as long as the sleeps inside it.
    let spans = server
        .sql(
            "default",
            &format!(
                "SELECT c.thread_name || '/' || coalesce(p.name, '') || '/' || c.name AS key, \
                 min(c.depth) AS depth, max(c.depth) AS max_depth, count(*) AS count, \
                 min(c.duration_ns) AS min_ns \
                 FROM thread_spans c LEFT JOIN thread_spans p \
                 ON c.parent = p.id AND c.stream_id = p.stream_id AND p.{of_process} \
                 WHERE c.{of_process} GROUP BY 1 ORDER BY 1"
            ),
        )
        .await;
    let recorded = summary["spans"].as_object().expect("spans");
    let got: BTreeMap<String, &Value> = spans
        .iter()
        .map(|r| (r["key"].as_str().expect("key").to_owned(), r))
        .collect();
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        recorded.keys().collect::<Vec<_>>(),
        "thread/parent/name of every span"
    );
    for (key, want) in recorded {
        let row = got[key];
        assert_eq!(row["count"], want["count"], "{key}");
        assert_eq!(row["depth"], want["depth"], "{key}");
        assert_eq!(row["max_depth"], want["depth"], "{key}");
        assert!(
            row["min_ns"].as_u64() >= want["min_ns"].as_u64(),
            "{key}: {row} lasts at least {want}"
        );
    }
    assert_eq!(
        recorded["main//frame"]["count"], 90,
        "the summary counts frames"
    );

    // Frames: all of them, the hitches the slowest.
    let frames = server
        .sql(
            "default",
            &format!(
                "SELECT count(*) AS n, min(duration_ns) AS fastest FROM frames WHERE {of_process}"
            ),
        )
        .await;
    assert_eq!(frames[0]["n"], 90, "{frames:?}");
    let slowest = server
        .sql(
            "default",
            &format!(
                "SELECT duration_ns FROM frames WHERE {of_process} ORDER BY duration_ns DESC LIMIT 2"
            ),
        )
        .await;
    let hitches = summary["hitches"].as_array().expect("hitches");
    assert_eq!(hitches.len(), 2);
    for f in &slowest {
        assert!(f["duration_ns"].as_i64() > Some(50_000_000), "{slowest:?}");
    }

    // Logs and metric values, exactly.
    let mut logs: Vec<Value> = server
        .sql(
            "default",
            &format!("SELECT body FROM log_entries WHERE {of_process}"),
        )
        .await
        .into_iter()
        .map(|r| r["body"].clone())
        .collect();
    let mut want_logs = summary["logs"].as_array().expect("logs").clone();
    logs.sort_by_key(|v| v.to_string());
    want_logs.sort_by_key(|v| v.to_string());
    assert_eq!(logs, want_logs);
    for name in ["frame_time", "entities"] {
        let values: Vec<Value> = server
            .sql(
                "default",
                &format!(
                    "SELECT value FROM measures WHERE {of_process} AND name = '{name}' ORDER BY time"
                ),
            )
            .await
            .into_iter()
            .map(|r| r["value"].clone())
            .collect();
        assert_eq!(Value::from(values), summary["metrics"][name], "{name}");
    }

    // The Perfetto trace: the same slices on each thread's track.
    let trace_file = dir.path().join("game.perfetto-trace");
    framelake(&[
        "perfetto",
        "--url",
        &format!("http://127.0.0.1:{}", server.query_port),
        "--process-id",
        process,
        "--output",
        trace_file.to_str().expect("utf-8 path"),
    ]);
    let decoded = Command::new(framelake_testkit::venv_python())
        .arg(framelake_testkit::workspace_root().join("conformance/python/perfetto_slices.py"))
        .arg(&trace_file)
        .output()
        .expect("python runs (scripts/test makes the venv)");
    assert!(
        decoded.status.success(),
        "{}",
        String::from_utf8_lossy(&decoded.stderr)
    );
    let trace: Value = serde_json::from_slice(&decoded.stdout).expect("JSON");
    assert_eq!(trace["errors"], json!([]));
    let threads: Vec<&Value> = trace["tracks"]
        .as_array()
        .expect("tracks")
        .iter()
        .filter(|t| t["kind"] == "thread")
        .collect();
    assert_eq!(threads.len(), 3, "main and two workers");
    for track in threads {
        let thread = track["name"].as_str().expect("thread name");
        let rows = server
            .sql(
                "default",
                &format!(
                    "SELECT name, arrow_cast(begin, 'Int64') AS ts, duration_ns AS dur, depth \
                     FROM thread_spans WHERE {of_process} AND thread_name = '{thread}' \
                     ORDER BY begin, depth"
                ),
            )
            .await;
        let slices: Vec<Value> = track["slices"]
            .as_array()
            .expect("slices")
            .iter()
            .map(
                |s| json!({"name": s["name"], "ts": s["ts"], "dur": s["dur"], "depth": s["depth"]}),
            )
            .collect();
        assert_eq!(slices, rows, "{thread}");
    }
    // Anchored to what the game recorded, not only to the views (which share
    // the export's decoder): each thread's slices, keyed by thread, parent
    // and name, are the spans of the demo's summary.
    let mut from_trace: BTreeMap<String, (u64, i64, i64, i64)> = BTreeMap::new();
    for track in trace["tracks"]
        .as_array()
        .expect("tracks")
        .iter()
        .filter(|t| t["kind"] == "thread")
    {
        let thread = track["name"].as_str().expect("thread name");
        let mut slices: Vec<(i64, i64, i64, &str)> = track["slices"]
            .as_array()
            .expect("slices")
            .iter()
            .map(|s| {
                let int = |k: &str| s[k].as_i64().unwrap_or_else(|| panic!("{k}: {s}"));
                (
                    int("ts"),
                    int("depth"),
                    int("dur"),
                    s["name"].as_str().expect("name"),
                )
            })
            .collect();
        slices.sort();
        // The open slices by depth: a slice's parent is the last one a level up.
        let mut open: Vec<&str> = Vec::new();
        for (_, depth, dur, name) in slices {
            open.truncate(depth as usize);
            let key = format!("{thread}/{}/{name}", open.last().copied().unwrap_or(""));
            open.push(name);
            let entry = from_trace.entry(key).or_insert((0, depth, depth, dur));
            *entry = (
                entry.0 + 1,
                entry.1.min(depth),
                entry.2.max(depth),
                entry.3.min(dur),
            );
        }
    }
    assert_eq!(
        from_trace.keys().collect::<Vec<_>>(),
        recorded.keys().collect::<Vec<_>>(),
        "thread/parent/name of every slice"
    );
    for (key, want) in recorded {
        let (count, depth, max_depth, min_dur) = from_trace[key];
        assert_eq!(Some(count), want["count"].as_u64(), "{key}");
        assert_eq!(
            (Some(depth), Some(max_depth)),
            (want["depth"].as_i64(), want["depth"].as_i64()),
            "{key}"
        );
        assert!(
            Some(min_dur) >= want["min_ns"].as_i64(),
            "{key}: {min_dur} ns lasts at least {want}"
        );
    }
    let track = |name: &str| {
        trace["tracks"]
            .as_array()
            .expect("tracks")
            .iter()
            .find(|t| t["name"] == name)
            .unwrap_or_else(|| panic!("track {name}"))
            .clone()
    };
    assert_eq!(track("framelake-demo")["kind"], "process");
    assert_eq!(track("Frames")["slices"].as_array().map(Vec::len), Some(90));
    assert_eq!(
        track("Logs")["instants"].as_array().map(Vec::len),
        Some(want_logs.len())
    );
    assert_eq!(
        track("frame_time (ms)")["counters"]
            .as_array()
            .map(Vec::len),
        Some(90)
    );
}
