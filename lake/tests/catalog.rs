//! One catalog suite, run on SQLite and on PostgreSQL.

use framelake_lake::catalog::BlockFilter;
use framelake_lake::ids::{BlockKind, ProcessId};

use crate::{sample_commit, tenant};

macro_rules! catalog_suite {
    ($backend:ident, $open:path) => {
        mod $backend {
            use super::*;

            #[tokio::test]
            async fn commits_are_listed_per_tenant() {
                let (catalog, _guard) = $open().await;
                let a = sample_commit("a", BlockKind::OtlpSpans, 3, 1_000);
                let b = sample_commit("b", BlockKind::OtlpLogs, 2, 1_000);
                assert_eq!(
                    catalog
                        .commit(&[a.clone(), b.clone()])
                        .await
                        .expect("commit"),
                    5
                );

                let blocks_a = catalog
                    .blocks(&tenant("a"), &BlockFilter::default())
                    .await
                    .expect("list");
                assert_eq!(blocks_a, a.blocks, "tenant a reads back exactly its blocks");
                let blocks_b = catalog
                    .blocks(&tenant("b"), &BlockFilter::default())
                    .await
                    .expect("list");
                assert_eq!(blocks_b.len(), 2);
                assert!(
                    catalog
                        .blocks(&tenant("c"), &BlockFilter::default())
                        .await
                        .expect("list")
                        .is_empty()
                );

                assert_eq!(
                    catalog.processes(&tenant("a")).await.expect("processes"),
                    a.processes
                );
                assert_eq!(
                    catalog.streams(&tenant("b")).await.expect("streams"),
                    b.streams
                );
                // Those with blocks of a kind in a time range (block i of
                // `a` spans t0 + i s .. + 0.5 s).
                let active = |kinds: &'static [BlockKind], range| {
                    let catalog = &catalog;
                    async move {
                        catalog
                            .active_processes(&tenant("a"), kinds, range)
                            .await
                            .expect("active processes")
                    }
                };
                assert_eq!(
                    active(&[BlockKind::OtlpSpans], (0, 1_000)).await,
                    a.processes
                );
                assert_eq!(
                    active(&[], (2_000_001_000, 2_000_001_000)).await,
                    a.processes
                );
                assert!(active(&[BlockKind::OtlpSpans], (0, 999)).await.is_empty());
                assert!(
                    active(&[BlockKind::OtlpLogs], (0, i64::MAX))
                        .await
                        .is_empty()
                );
                assert!(
                    active(&[], (1_500_001_001, 2_000_000_999)).await.is_empty(),
                    "between blocks"
                );
                // One by id, within its tenant only.
                let (p, s) = (&a.processes[0], &b.streams[0]);
                assert_eq!(
                    catalog
                        .process(&tenant("a"), &p.process_id)
                        .await
                        .expect("process"),
                    Some(p.clone())
                );
                assert_eq!(
                    catalog
                        .process(&tenant("b"), &p.process_id)
                        .await
                        .expect("process"),
                    None,
                    "another tenant's process is not found"
                );
                assert_eq!(
                    catalog
                        .stream(&tenant("b"), &s.stream_id)
                        .await
                        .expect("stream"),
                    Some(s.clone())
                );
                assert_eq!(
                    catalog
                        .stream(&tenant("a"), &s.stream_id)
                        .await
                        .expect("stream"),
                    None
                );
                assert_eq!(
                    catalog.segments(&tenant("a")).await.expect("segments"),
                    vec![a.segment.clone()]
                );
            }

            #[tokio::test]
            async fn a_segment_in_a_log_keeps_its_location() {
                let (catalog, _guard) = $open().await;
                let own = sample_commit("a", BlockKind::OtlpLogs, 1, 1_000);
                let mut logged = sample_commit("a", BlockKind::OtlpSpans, 2, 2_000);
                logged.segment.log = Some(framelake_lake::catalog::LogLocation {
                    object: "tenants/a/logs/2026-12-06/04/x.fllog".to_owned(),
                    offset: 3 * 4096 + 64,
                });
                catalog
                    .commit(std::slice::from_ref(&own))
                    .await
                    .expect("commit");
                // The writer's path, where the backend has one.
                match catalog.blocking_commits() {
                    Some(commits) => commits
                        .commit(std::slice::from_ref(&logged))
                        .map(drop)
                        .expect("commit"),
                    None => catalog
                        .commit(std::slice::from_ref(&logged))
                        .await
                        .map(drop)
                        .expect("commit"),
                }
                assert_eq!(
                    catalog.segments(&tenant("a")).await.expect("segments"),
                    vec![own.segment.clone(), logged.segment.clone()]
                );
                // Readers find each block's bytes where its segment lies.
                let blocks = catalog
                    .blocks(&tenant("a"), &BlockFilter::default())
                    .await
                    .expect("blocks");
                assert_eq!(blocks.len(), 3);
                for block in blocks {
                    let segment = if block.segment_id == own.segment.segment_id {
                        &own
                    } else {
                        &logged
                    };
                    assert_eq!(block.segment_log, segment.segment.log, "{block:?}");
                }
            }

            #[tokio::test]
            async fn known_segments_are_told_apart_per_tenant() {
                let (catalog, _guard) = $open().await;
                let a = sample_commit("a", BlockKind::OtlpLogs, 1, 1_000);
                catalog
                    .commit(std::slice::from_ref(&a))
                    .await
                    .expect("commit");
                let other = framelake_lake::ids::SegmentId::new();
                let known = catalog
                    .known_segments(&tenant("a"), &[a.segment.segment_id, other])
                    .await
                    .expect("known");
                assert_eq!(known, [a.segment.segment_id].into_iter().collect());
                assert!(
                    catalog
                        .known_segments(&tenant("b"), &[a.segment.segment_id])
                        .await
                        .expect("known")
                        .is_empty(),
                    "another tenant's segment is not known to b"
                );
            }

            #[tokio::test]
            async fn a_retried_commit_indexes_nothing_twice() {
                let (catalog, _guard) = $open().await;
                let first = sample_commit("a", BlockKind::OtlpSpans, 4, 1_000);
                assert_eq!(
                    catalog
                        .commit(std::slice::from_ref(&first))
                        .await
                        .expect("commit"),
                    4
                );
                // The same blocks again, as a retried request lands in a new segment.
                let mut retry = first.clone();
                retry.segment.segment_id = framelake_lake::ids::SegmentId::new();
                assert_eq!(catalog.commit(&[retry]).await.expect("commit"), 0);
                assert_eq!(
                    catalog
                        .blocks(&tenant("a"), &BlockFilter::default())
                        .await
                        .expect("list")
                        .len(),
                    4
                );
                assert_eq!(
                    catalog
                        .processes(&tenant("a"))
                        .await
                        .expect("processes")
                        .len(),
                    1
                );
            }

            #[tokio::test]
            async fn blocks_filter_by_kind_and_time_overlap() {
                let (catalog, _guard) = $open().await;
                let second = 1_000_000_000;
                // Blocks at [k s, k s + 0.5 s] for k = 0..5.
                let spans = sample_commit("a", BlockKind::OtlpSpans, 5, 0);
                let logs = sample_commit("a", BlockKind::OtlpLogs, 5, 0);
                catalog.commit(&[spans, logs]).await.expect("commit");
                let filter = |kinds: Vec<BlockKind>, range| BlockFilter {
                    kinds,
                    time_range: range,
                    ..BlockFilter::default()
                };
                let list = |f: BlockFilter| {
                    let catalog = std::sync::Arc::clone(&catalog);
                    async move { catalog.blocks(&tenant("a"), &f).await.expect("list") }
                };
                assert_eq!(list(filter(vec![BlockKind::OtlpLogs], None)).await.len(), 5);
                assert_eq!(list(filter(vec![], None)).await.len(), 10);
                let of = |processes| BlockFilter {
                    processes,
                    ..BlockFilter::default()
                };
                let process = ProcessId::of(&[b"a", b"proc"]);
                assert_eq!(list(of(vec![process])).await.len(), 10);
                // By insert time (sample commits insert at 42).
                let after = |t| BlockFilter {
                    inserted_after: Some(t),
                    ..BlockFilter::default()
                };
                assert_eq!(list(after(41)).await.len(), 10);
                assert!(list(after(42)).await.is_empty());
                let other = ProcessId::of(&[b"b", b"proc"]);
                assert!(list(of(vec![other])).await.is_empty());
                assert_eq!(list(of(vec![other, process])).await.len(), 10);
                let overlapping = list(filter(
                    vec![BlockKind::OtlpSpans],
                    Some((2 * second + second / 4, 3 * second)),
                ))
                .await;
                let starts: Vec<i64> = overlapping.iter().map(|b| b.min_time / second).collect();
                assert_eq!(
                    starts,
                    vec![2, 3],
                    "blocks 2 (ends after 2.25 s) and 3 (starts at 3 s) overlap"
                );
                assert!(
                    list(filter(
                        vec![BlockKind::OtlpSpans],
                        Some((10 * second, 11 * second))
                    ))
                    .await
                    .is_empty()
                );
                assert!(
                    list(filter(vec![BlockKind::OtlpMetrics], None))
                        .await
                        .is_empty()
                );
            }

            #[tokio::test]
            async fn a_commit_is_all_or_nothing() {
                let (catalog, _guard) = $open().await;
                let good = sample_commit("a", BlockKind::OtlpSpans, 2, 0);
                // The same segment twice violates the segments key: the whole commit fails.
                let mut clash = sample_commit("a", BlockKind::OtlpLogs, 2, 5);
                clash.segment.segment_id = good.segment.segment_id;
                assert!(catalog.commit(&[good, clash]).await.is_err());
                assert!(
                    catalog
                        .blocks(&tenant("a"), &BlockFilter::default())
                        .await
                        .expect("list")
                        .is_empty()
                );
                assert!(
                    catalog
                        .segments(&tenant("a"))
                        .await
                        .expect("segments")
                        .is_empty()
                );
            }
        }
    };
}

catalog_suite!(sqlite, crate::sqlite_catalog);
catalog_suite!(postgres, crate::postgres_catalog);

#[tokio::test]
async fn reopening_applies_no_migration_twice() {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}", dir.path().join("c.sqlite").display());
    let first = framelake_lake::catalog::open(&url).await.expect("opens");
    first
        .commit(&[sample_commit("a", BlockKind::OtlpSpans, 1, 0)])
        .await
        .expect("commit");
    drop(first);
    let again = framelake_lake::catalog::open(&url).await.expect("reopens");
    assert_eq!(
        again
            .blocks(&tenant("a"), &BlockFilter::default())
            .await
            .expect("list")
            .len(),
        1
    );

    let pg = framelake_testkit::postgres()
        .create_database("reopen")
        .await;
    framelake_lake::catalog::open(&pg).await.expect("opens");
    framelake_lake::catalog::open(&pg).await.expect("reopens");
}

#[tokio::test]
async fn unknown_database_urls_are_refused() {
    let err = framelake_lake::catalog::open("mysql://x")
        .await
        .expect_err("refused");
    assert!(err.to_string().contains("expected postgres://"), "{err}");
}
