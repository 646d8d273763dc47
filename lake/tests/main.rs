//! The lake's integration tests: every suite runs against each backend, real
//! ones included (a throwaway PostgreSQL cluster and an S3-compatible server
//! that the harness starts).

mod catalog;
mod store;
mod writer;

use std::sync::Arc;

use bytes::Bytes;
use framelake_lake::catalog::{
    BlockRecord, ProcessRecord, SegmentRecord, Source, StreamRecord, TenantCommit,
};
use framelake_lake::ids::{BlockId, BlockKind, ProcessId, SegmentId, StreamId, TenantId};
use framelake_lake::segment::Codec;

pub(crate) fn tenant(name: &str) -> TenantId {
    name.parse().expect("valid tenant")
}

/// A commit of `blocks` blocks of `kind` for one process, with event times
/// starting at `t0` (one second apart).
pub(crate) fn sample_commit(
    tenant_name: &str,
    kind: BlockKind,
    blocks: usize,
    t0: i64,
) -> TenantCommit {
    let process_id = ProcessId::of(&[tenant_name.as_bytes(), b"proc"]);
    let stream_id = StreamId::of(&[process_id.as_bytes(), &kind.code().to_le_bytes()]);
    let segment_id = SegmentId::new();
    let blocks = (0..blocks)
        .map(|i| BlockRecord {
            block_id: BlockId::of(&[
                tenant_name.as_bytes(),
                &(i as u64).to_le_bytes(),
                &t0.to_le_bytes(),
                &kind.code().to_le_bytes(),
            ]),
            kind,
            format: 1,
            process_id,
            stream_id,
            segment_id,
            offset: 16 + 100 * i as u64,
            length: 100,
            uncompressed_length: 300,
            codec: Codec::Zstd,
            checksum: u64::MAX - i as u64,
            event_count: 10,
            min_time: t0 + i as i64 * 1_000_000_000,
            max_time: t0 + i as i64 * 1_000_000_000 + 500_000_000,
            insert_time: 42,
            segment_log: None,
            quarantine: None,
        })
        .collect::<Vec<_>>();
    TenantCommit {
        tenant: tenant(tenant_name),
        segment: SegmentRecord {
            segment_id,
            size: 16 + 100 * blocks.len() as u64 + 32,
            block_count: blocks.len() as u32,
            insert_time: 42,
            log: None,
        },
        processes: vec![ProcessRecord {
            process_id,
            source: Source::Otlp,
            service_name: format!("svc-{tenant_name}"),
            properties: Bytes::from_static(b"\x0a\x00"),
            insert_time: 42,
        }],
        streams: vec![StreamRecord {
            stream_id,
            process_id,
            kind,
            name: kind.name().to_owned(),
            insert_time: 42,
        }],
        blocks,
    }
}

/// The embedded catalog in a fresh folder.
pub(crate) async fn sqlite_catalog()
-> (Arc<dyn framelake_lake::catalog::Catalog>, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}", dir.path().join("catalog.sqlite").display());
    (
        framelake_lake::catalog::open(&url)
            .await
            .expect("sqlite catalog opens"),
        dir,
    )
}

/// A catalog in a fresh database of the throwaway PostgreSQL cluster.
pub(crate) async fn postgres_catalog() -> (Arc<dyn framelake_lake::catalog::Catalog>, ()) {
    let url = framelake_testkit::postgres().create_database("lake").await;
    (
        framelake_lake::catalog::open(&url)
            .await
            .expect("postgres catalog opens"),
        (),
    )
}
