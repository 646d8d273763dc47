//! Group commit: many writes, one segment and one transaction per flush.

use std::sync::Arc;
use std::time::Duration;

use framelake_lake::catalog::{BlockFilter, ProcessRecord, Source, StreamRecord};
use framelake_lake::ids::{BlockId, BlockKind, ProcessId, StreamId};
use framelake_lake::segment::{Codec, Compression, EncodedBlock};
use framelake_lake::writer::{PendingBlock, WriteBatch, Writer, WriterConfig};
use framelake_lake::{Error, Lake, LakeConfig};

use crate::tenant;

fn batch(tenant_name: &str, payload: &[u8]) -> WriteBatch {
    let process_id = ProcessId::of(&[b"p"]);
    let stream_id = StreamId::of(&[b"s"]);
    let kind = BlockKind::OtlpLogs;
    WriteBatch {
        tenant: tenant(tenant_name),
        processes: vec![ProcessRecord {
            process_id,
            source: Source::Otlp,
            service_name: "svc".to_owned(),
            properties: Default::default(),
            insert_time: 0,
        }],
        streams: vec![StreamRecord {
            stream_id,
            process_id,
            kind,
            name: "s".to_owned(),
            insert_time: 0,
        }],
        blocks: vec![PendingBlock {
            block: EncodedBlock {
                block_id: BlockId::of(&[tenant_name.as_bytes(), payload]),
                kind,
                codec: Codec::Lz4,
                data: Compression::Lz4.compress(payload).expect("compresses"),
                uncompressed_length: payload.len() as u32,
                event_count: 1,
                min_time: 5,
                max_time: 6,
            },
            format: 1,
            process_id,
            stream_id,
        }],
    }
}

async fn lake() -> (Arc<Lake>, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let lake = Lake::open(&LakeConfig::embedded(dir.path()))
        .await
        .expect("lake opens");
    (Arc::new(lake), dir)
}

#[tokio::test]
async fn concurrent_writes_share_one_segment_per_tenant_and_read_back() {
    let (lake, _dir) = lake().await;
    let config = WriterConfig {
        flush_interval: Duration::from_millis(200),
        ..WriterConfig::default()
    };
    let writer = Arc::new(Writer::start(Arc::clone(&lake), config));
    let writes = (0..20).map(|i| {
        let writer = Arc::clone(&writer);
        let tenant_name = if i % 2 == 0 { "even" } else { "odd" };
        async move {
            writer
                .write(batch(tenant_name, format!("payload {i}").as_bytes()))
                .await
        }
    });
    for result in futures::future::join_all(writes).await {
        result.expect("write acknowledged");
    }
    for (tenant_name, parity) in [("even", 0), ("odd", 1)] {
        let t = tenant(tenant_name);
        assert_eq!(
            lake.catalog.segments(&t).await.expect("segments").len(),
            1,
            "one flush, one segment"
        );
        let blocks = lake
            .catalog
            .blocks(&t, &BlockFilter::default())
            .await
            .expect("blocks");
        assert_eq!(blocks.len(), 10);
        let mut payloads = Vec::new();
        for b in &blocks {
            payloads.push(
                String::from_utf8(lake.read_block(&t, b).await.expect("reads").to_vec())
                    .expect("utf8"),
            );
        }
        payloads.sort();
        let mut expected: Vec<String> = (0..20)
            .filter(|i| i % 2 == parity)
            .map(|i| format!("payload {i}"))
            .collect();
        expected.sort();
        assert_eq!(payloads, expected);
    }
    writer.shutdown().await;
}

#[tokio::test]
async fn duplicates_in_a_flush_and_across_flushes_are_indexed_once() {
    let (lake, _dir) = lake().await;
    let writer = Writer::start(
        Arc::clone(&lake),
        WriterConfig {
            flush_interval: Duration::from_millis(50),
            ..WriterConfig::default()
        },
    );
    let (a, b) = tokio::join!(
        writer.write(batch("t", b"same")),
        writer.write(batch("t", b"same"))
    );
    a.expect("first");
    b.expect("second");
    writer
        .write(batch("t", b"same"))
        .await
        .expect("later retry");
    let blocks = lake
        .catalog
        .blocks(&tenant("t"), &BlockFilter::default())
        .await
        .expect("blocks");
    assert_eq!(blocks.len(), 1);
    // The same process and stream sent by another tenant, after the first
    // tenant's were committed, are that tenant's too.
    writer
        .write(batch("other", b"same"))
        .await
        .expect("other tenant");
    for name in ["t", "other"] {
        let t = tenant(name);
        assert_eq!(
            lake.catalog.processes(&t).await.expect("processes").len(),
            1,
            "{name}"
        );
        assert_eq!(
            lake.catalog.streams(&t).await.expect("streams").len(),
            1,
            "{name}"
        );
    }
    writer.shutdown().await;
}

#[tokio::test]
async fn a_full_budget_refuses_with_a_retryable_error() {
    let (lake, _dir) = lake().await;
    let config = WriterConfig {
        flush_interval: Duration::from_secs(3600),
        max_pending_bytes: 600,
        ..WriterConfig::default()
    };
    let writer = Arc::new(Writer::start(Arc::clone(&lake), config));
    // The first write holds most of the budget until its (far) flush: it
    // takes its share when first polled, then waits for the flush.
    let mut pending = Box::pin(writer.write(batch("t", &[1u8; 300])));
    assert!(futures::poll!(&mut pending).is_pending());
    // Refused at once; accepted, it would wait for the flush an hour away.
    let err = tokio::time::timeout(
        Duration::from_secs(30),
        writer.write(batch("t", &[2u8; 300])),
    )
    .await
    .expect("refused at once, not queued")
    .expect_err("over budget");
    assert!(matches!(err, Error::Overloaded { .. }), "{err}");
    assert!(err.is_retryable());
    // Shutting down flushes what was accepted, so the first write is acknowledged.
    let ((), acknowledged) = tokio::join!(writer.shutdown(), pending);
    acknowledged.expect("first write acknowledged at shutdown");
    assert_eq!(
        lake.catalog
            .blocks(&tenant("t"), &BlockFilter::default())
            .await
            .expect("blocks")
            .len(),
        1
    );
    let err = writer
        .write(batch("t", b"late"))
        .await
        .expect_err("stopped");
    assert!(matches!(err, Error::ShuttingDown), "{err}");
}

#[tokio::test]
async fn a_failed_flush_acknowledges_nothing_and_the_writer_recovers() {
    // A server of this test's own, since it is stopped midway.
    let s3 = framelake_testkit::S3Server::private();
    let bucket = s3.create_bucket("writer").await;
    let dir = tempfile::tempdir().expect("temp dir");
    let config = LakeConfig {
        object_store_url: format!("s3://{bucket}"),
        s3: crate::store::s3_options(&s3),
        ..LakeConfig::embedded(dir.path())
    };
    let lake = Arc::new(Lake::open(&config).await.expect("lake opens"));
    let writer = Writer::start(
        Arc::clone(&lake),
        WriterConfig {
            flush_interval: Duration::from_millis(20),
            ..WriterConfig::default()
        },
    );
    writer.write(batch("t", b"before")).await.expect("stored");

    s3.stop();
    let err = writer
        .write(batch("t", b"during"))
        .await
        .expect_err("store is down");
    writer
        .write(batch("u", b"during"))
        .await
        .expect_err("store is down");
    s3.start();
    assert!(err.is_retryable(), "{err}");
    let blocks = lake
        .catalog
        .blocks(&tenant("t"), &BlockFilter::default())
        .await
        .expect("blocks");
    assert_eq!(blocks.len(), 1, "the failed write left no catalog rows");

    // moto keeps no state across restarts: the bucket comes back empty.
    s3.create_bucket_named(&bucket).await;
    writer
        .write(batch("t", b"after"))
        .await
        .expect("stored after recovery");
    assert_eq!(
        lake.catalog
            .blocks(&tenant("t"), &BlockFilter::default())
            .await
            .expect("blocks")
            .len(),
        2
    );
    // The processes and streams of a failed flush were not remembered as
    // committed: the next write of that tenant records them.
    writer
        .write(batch("u", b"after"))
        .await
        .expect("stored after recovery");
    let u = tenant("u");
    assert_eq!(
        lake.catalog.processes(&u).await.expect("processes").len(),
        1
    );
    assert_eq!(lake.catalog.streams(&u).await.expect("streams").len(), 1);
    writer.shutdown().await;
}

/// A writer told to drain flushes what waits now, and each later write as
/// it comes: a stopping server's requests are acknowledged without waiting
/// for the flush interval.
#[tokio::test]
async fn a_draining_writer_flushes_at_once() {
    let (lake, _dir) = lake().await;
    let config = WriterConfig {
        flush_interval: Duration::from_secs(3600),
        ..WriterConfig::default()
    };
    let writer = Writer::start(Arc::clone(&lake), config);
    let mut waiting = Box::pin(writer.write(batch("t", b"waiting")));
    assert!(futures::poll!(&mut waiting).is_pending());
    writer.drain();
    // Bounded: without the drain these wait an hour.
    let bound = Duration::from_secs(30);
    tokio::time::timeout(bound, waiting)
        .await
        .expect("flushed at once")
        .expect("acknowledged");
    tokio::time::timeout(bound, writer.write(batch("t", b"later")))
        .await
        .expect("flushed as it came")
        .expect("acknowledged");
    assert_eq!(
        lake.catalog
            .blocks(&tenant("t"), &BlockFilter::default())
            .await
            .expect("blocks")
            .len(),
        2
    );
    writer.shutdown().await;
}
