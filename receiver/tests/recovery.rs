//! Segments stored but not recorded in the catalog are recorded at startup.

use framelake_lake::LakeConfig;
use framelake_lake::catalog::BlockFilter;
use framelake_lake::ids::{BlockKind, TenantId};
use framelake_receiver::recovery::{Recovered, recover};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;

use crate::{Options, TestServer, encode, traces};

async fn export(server: &TestServer, tenant: &str, seed: u8) {
    let response = reqwest::Client::new()
        .post(server.url("/v1/traces"))
        .header("content-type", "application/x-protobuf")
        .header("x-scope-orgid", tenant)
        .body(encode(&traces(seed, 20)))
        .send()
        .await
        .expect("request");
    assert!(response.status().is_success(), "{}", response.status());
}

#[tokio::test]
async fn segments_the_catalog_lost_are_recorded_again_from_the_store() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = TestServer::with(Options {
        lake: Some(LakeConfig::embedded(dir.path())),
        ..Options::default()
    })
    .await;
    for seed in 1..=3 {
        export(&server, "acme", seed).await;
    }
    export(&server, "other", 9).await;
    let acme: TenantId = "acme".parse().expect("tenant");
    let catalog = &server.lake.catalog;
    let before = catalog
        .blocks(&acme, &BlockFilter::default())
        .await
        .expect("blocks");
    let processes_before = catalog.processes(&acme).await.expect("processes");
    let streams_before = catalog.streams(&acme).await.expect("streams");
    let segments_before = catalog.segments(&acme).await.expect("segments");
    let payloads_before: Vec<ExportTraceServiceRequest> =
        server.stored("acme", BlockKind::OtlpSpans).await;
    assert_eq!(before.len(), 3);
    assert_eq!(payloads_before.len(), 3);

    // The commits of tenant acme are lost (as a crash before a synced
    // checkpoint would lose them); its segments are still stored.
    let db = sqlx::SqlitePool::connect(&format!(
        "sqlite://{}",
        dir.path().join("catalog.sqlite").display()
    ))
    .await
    .expect("catalog file opens");
    for delete in [
        "DELETE FROM blocks WHERE tenant = 'acme'",
        "DELETE FROM segments WHERE tenant = 'acme'",
        "DELETE FROM streams WHERE tenant = 'acme'",
        "DELETE FROM processes WHERE tenant = 'acme'",
    ] {
        sqlx::query(delete).execute(&db).await.expect("delete");
    }
    assert!(
        catalog
            .blocks(&acme, &BlockFilter::default())
            .await
            .expect("blocks")
            .is_empty()
    );

    let recovered = recover(&server.lake).await.expect("recovers");
    assert_eq!(recovered.recorded, segments_before.len(), "{recovered:?}");
    assert_eq!(recovered.new_blocks, 3);
    assert_eq!(
        recovered.checked,
        segments_before.len() + 1,
        "acme's and other's"
    );

    let without_time = |mut blocks: Vec<framelake_lake::catalog::BlockRecord>| {
        blocks.iter_mut().for_each(|b| b.insert_time = 0);
        blocks.sort_by_key(|b| b.block_id);
        blocks
    };
    let after = catalog
        .blocks(&acme, &BlockFilter::default())
        .await
        .expect("blocks");
    assert_eq!(without_time(after), without_time(before));
    let mut processes = catalog.processes(&acme).await.expect("processes");
    processes.iter_mut().for_each(|p| p.insert_time = 0);
    let mut expected = processes_before;
    expected.iter_mut().for_each(|p| p.insert_time = 0);
    assert_eq!(processes, expected);
    let streams: Vec<_> = catalog
        .streams(&acme)
        .await
        .expect("streams")
        .into_iter()
        .map(|s| (s.stream_id, s.process_id, s.kind, s.name))
        .collect();
    let expected: Vec<_> = streams_before
        .into_iter()
        .map(|s| (s.stream_id, s.process_id, s.kind, s.name))
        .collect();
    assert_eq!(streams, expected);
    let mut payloads: Vec<ExportTraceServiceRequest> =
        server.stored("acme", BlockKind::OtlpSpans).await;
    let mut payloads_before = payloads_before;
    let key =
        |r: &ExportTraceServiceRequest| r.resource_spans[0].scope_spans[0].spans[0].span_id.clone();
    payloads.sort_by_key(key);
    payloads_before.sort_by_key(key);
    assert_eq!(payloads, payloads_before, "the same spans read back");

    // A second pass finds nothing to do; the other tenant was never touched.
    let again = recover(&server.lake).await.expect("recovers");
    assert_eq!(
        again,
        Recovered {
            checked: recovered.checked,
            recorded: 0,
            new_blocks: 0
        }
    );
    assert_eq!(server.block_count("other").await, 1);
}
