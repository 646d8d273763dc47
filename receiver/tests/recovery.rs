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

/// Deletes tenant acme's catalog rows, as a crash before a synced checkpoint
/// would lose its last commits; its segments stay stored.
async fn forget_acme(database_url: &str) {
    const DELETES: [&str; 4] = [
        "DELETE FROM blocks WHERE tenant = 'acme'",
        "DELETE FROM segments WHERE tenant = 'acme'",
        "DELETE FROM streams WHERE tenant = 'acme'",
        "DELETE FROM processes WHERE tenant = 'acme'",
    ];
    if database_url.starts_with("postgres") {
        let db = sqlx::PgPool::connect(database_url).await.expect("connects");
        for delete in DELETES {
            sqlx::query(delete).execute(&db).await.expect("delete");
        }
    } else {
        let db = sqlx::SqlitePool::connect(database_url)
            .await
            .expect("catalog file opens");
        for delete in DELETES {
            sqlx::query(delete).execute(&db).await.expect("delete");
        }
    }
}

#[tokio::test]
async fn lost_commits_are_recorded_again_on_sqlite_and_local_files() {
    let dir = tempfile::tempdir().expect("temp dir");
    lost_commits_come_back(LakeConfig::embedded(dir.path())).await;
}

#[tokio::test]
async fn lost_commits_are_recorded_again_on_postgres_and_s3() {
    let s3 = framelake_testkit::s3();
    let bucket = s3.create_bucket("recovery").await;
    let config = LakeConfig {
        database_url: framelake_testkit::postgres()
            .create_database("recovery")
            .await,
        object_store_url: format!("s3://{bucket}/lake"),
        s3: framelake_lake::store::S3Options {
            endpoint: Some(s3.endpoint()),
            region: Some(s3.region().to_owned()),
            access_key_id: Some(s3.access_key_id().to_owned()),
            secret_access_key: Some(s3.secret_access_key().to_owned()),
        },
    };
    lost_commits_come_back(config).await;
}

/// A server on `config` that stored three requests of tenant acme, and its catalog's URL.
async fn serve_with_acme(config: LakeConfig) -> (TestServer, String) {
    let database_url = config.database_url.clone();
    let server = TestServer::with(Options {
        lake: Some(config),
        ..Options::default()
    })
    .await;
    for seed in 1..=3 {
        export(&server, "acme", seed).await;
    }
    (server, database_url)
}

async fn lost_commits_come_back(config: LakeConfig) {
    let (server, database_url) = serve_with_acme(config).await;
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

    forget_acme(&database_url).await;
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

/// A crash in the middle of a flush leaves its record of the log torn (its
/// requests were never acknowledged): recovery records every whole record
/// before it and stops there.
#[tokio::test]
async fn a_torn_last_record_of_a_log_is_left() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = LakeConfig::embedded(dir.path());
    let (server, database_url) = serve_with_acme(config).await;
    let acme: TenantId = "acme".parse().expect("tenant");
    let segments = server.lake.catalog.segments(&acme).await.expect("segments");
    assert_eq!(segments.len(), 3);
    let last = segments[2]
        .log
        .clone()
        .expect("local files keep segments in logs");
    assert!(
        segments
            .iter()
            .all(|s| s.log.as_ref().map(|l| &l.object) == Some(&last.object)),
        "one log: {segments:?}"
    );
    let file = dir.path().join("objects").join(&last.object);
    let log = std::fs::OpenOptions::new()
        .write(true)
        .open(&file)
        .expect("log");
    log.set_len(last.offset + segments[2].size / 2)
        .expect("truncates");

    forget_acme(&database_url).await;
    let recovered = recover(&server.lake).await.expect("recovers");
    assert_eq!(
        (recovered.checked, recovered.recorded),
        (2, 2),
        "{recovered:?}"
    );
    let mut after = server.lake.catalog.segments(&acme).await.expect("segments");
    after.iter_mut().for_each(|s| s.insert_time = 0);
    let mut whole = segments[..2].to_vec();
    whole.iter_mut().for_each(|s| s.insert_time = 0);
    assert_eq!(after, whole, "the whole records, where they lie");
    assert_eq!(server.block_count("acme").await, 2);
}
