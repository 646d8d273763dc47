//! Native SDK logs and metrics in `log_entries` and `measures`, next to OTLP
//! ones: sent by the SDK's own thread to the real receiver, read pending
//! (decoded on the fly) and materialized.

use std::sync::Arc;
use std::time::{Duration, Instant};

use framelake_lake::materialize::{MaterializeConfig, Materializer};
use framelake_lake::tenancy::Tenancy;
use framelake_query::QueryLimits;
use framelake_sdk::{Descriptor, DescriptorKind};
use serde_json::json;

use crate::Stack;

static LOADED: Descriptor = Descriptor {
    kind: DescriptorKind::Log,
    level: 2,
    line: 42,
    name: "level {} loaded in {} ms",
    target: "game::levels",
    file: "src/levels.rs",
    unit: "",
};

static FRAME_TIME: Descriptor = Descriptor {
    kind: DescriptorKind::Metric,
    level: 0,
    line: 7,
    name: "frame_time",
    target: "game::loop",
    file: "src/loop.rs",
    unit: "ms",
};

static ENTITIES: Descriptor = Descriptor {
    kind: DescriptorKind::Metric,
    level: 0,
    line: 8,
    name: "entities",
    target: "game::loop",
    file: "src/loop.rs",
    unit: "{entity}",
};

#[tokio::test(flavor = "multi_thread")]
async fn native_logs_and_metrics_are_rows_of_the_event_views() {
    let stack = Stack::embedded(Tenancy::open(), QueryLimits::default()).await;
    let before = framelake_lake::writer::now_nanos();
    let telemetry = framelake_sdk::send::Telemetry::start(
        framelake_sdk::send::this_process(vec![("service.name".into(), "space-game".into())]),
        framelake_sdk::send::Config {
            endpoint: stack.ingest_url.clone(),
            interval: Duration::from_millis(20),
            ..Default::default()
        },
    );
    std::thread::spawn(|| {
        framelake_sdk::log(&LOADED, format_args!("level {} loaded in {} ms", 3, 250));
        framelake_sdk::float_metric(&FRAME_TIME, 16.5);
        framelake_sdk::int_metric(&ENTITIES, 1200);
    })
    .join()
    .expect("game thread");
    let logs = "SELECT service_name, severity_number, severity_text, body, scope_name, \
                attr(attributes, 'code.file.path') AS file, attr_int(attributes, 'code.line.number') AS line, \
                attr(resource_attributes, 'service.name') AS service, arrow_cast(time, 'Int64') AS time_ns FROM log_entries";
    let started = Instant::now();
    while stack.rows(logs).await.is_empty() {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the log arrived"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let measures =
        "SELECT name, unit, type, value, int_value, scope_name FROM measures ORDER BY name";
    while stack.rows(measures).await.len() < 2 {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the metrics arrived"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(telemetry);
    let after = framelake_lake::writer::now_nanos();

    let check = |stage: &str, log: &[serde_json::Value], metrics: &[serde_json::Value]| {
        assert_eq!(log.len(), 1, "{stage}: {log:?}");
        let row = &log[0];
        assert_eq!(row["service_name"], "space-game", "{stage}");
        assert_eq!(row["severity_number"], 13, "{stage}: warn");
        assert_eq!(row["severity_text"], "WARN", "{stage}");
        assert_eq!(row["body"], "level 3 loaded in 250 ms", "{stage}");
        assert_eq!(row["scope_name"], "game::levels", "{stage}");
        assert_eq!(row["file"], "src/levels.rs", "{stage}");
        assert_eq!(row["line"], 42, "{stage}");
        assert_eq!(row["service"], "space-game", "{stage}");
        assert_eq!(
            metrics,
            [
                json!({"name": "entities", "unit": "{entity}", "type": "gauge", "value": 1200.0, "int_value": 1200, "scope_name": "game::loop"}),
                json!({"name": "frame_time", "unit": "ms", "type": "gauge", "value": 16.5, "int_value": null, "scope_name": "game::loop"}),
            ],
            "{stage}"
        );
    };
    let (log, metrics) = (stack.rows(logs).await, stack.rows(measures).await);
    check("pending", &log, &metrics);
    // Its time, from ticks by the process's clock: within the test's run.
    let time = log[0]["time_ns"].as_i64().expect("nanoseconds");
    assert!(
        before <= time && time <= after,
        "{before} <= {time} <= {after}"
    );

    let done = Materializer::new(Arc::clone(&stack.lake), MaterializeConfig::default())
        .pass()
        .await
        .expect("materializes");
    assert!(done.rows >= 3, "{done:?}");
    check(
        "materialized",
        &stack.rows(logs).await,
        &stack.rows(measures).await,
    );
}
