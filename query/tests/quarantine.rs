//! A stored block whose bytes no longer read back (one flipped byte) is
//! quarantined: materialization goes on with the rest of the view, the
//! `blocks` view names it with the error, and queries over its range answer
//! with the other events and a warning, never a 500.

use std::io::{Read, Seek, SeekFrom, Write};

use framelake_lake::catalog::{BlockFilter, BlockRecord};
use framelake_lake::ids::TenantId;
use framelake_lake::paths::SegmentPath;
use object_store::ObjectStoreExt;
use object_store::path::Path;

use crate::Stack;
use crate::data::{T0, logs_over_a_day};
use crate::sql::materializer;

/// Log records per request: three services (resources) of 20 records, each
/// service's a block of its own.
const PER_REQUEST: u64 = 60;
const PER_BLOCK: u64 = 20;

/// Where a block's bytes start: its object and the offset in it.
fn location(tenant: &TenantId, block: &BlockRecord) -> (Path, u64) {
    match &block.segment_log {
        Some(log) => (Path::from(log.object.as_str()), log.offset + block.offset),
        None => (
            SegmentPath::new(tenant.clone(), block.segment_id).to_object_path(),
            block.offset,
        ),
    }
}

/// Flips one byte in the middle of a stored block: in place for local files
/// (the writer may still append to a log object), by rewriting the object in
/// S3.
async fn flip_a_byte(stack: &Stack, tenant: &TenantId, block: &BlockRecord) {
    let (path, start) = location(tenant, block);
    let at = start + u64::from(block.length) / 2;
    match stack.local_dir() {
        Some(dir) => {
            let file = dir.join("objects").join(path.as_ref());
            let mut f = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open(&file)
                .expect("the block's object is a local file");
            let mut byte = [0u8];
            f.seek(SeekFrom::Start(at)).expect("seek");
            f.read_exact(&mut byte).expect("read");
            f.seek(SeekFrom::Start(at)).expect("seek");
            f.write_all(&[byte[0] ^ 0x5a]).expect("write");
            f.sync_all().expect("sync");
        }
        None => {
            let store = stack.lake.store.object_store();
            let mut bytes = store
                .get(&path)
                .await
                .expect("object")
                .bytes()
                .await
                .expect("bytes")
                .to_vec();
            bytes[at as usize] ^= 0x5a;
            store.put(&path, bytes.into()).await.expect("rewritten");
        }
    }
}

/// The tenant's blocks, oldest first.
async fn blocks(stack: &Stack, tenant: &TenantId) -> Vec<BlockRecord> {
    stack
        .lake
        .catalog
        .blocks(tenant, &BlockFilter::default())
        .await
        .expect("blocks")
}

/// `SELECT count(*)` of the log entries, with the answer's warnings.
async fn count_logs(stack: &Stack) -> (u64, Vec<String>) {
    let (rows, warnings) = stack
        .rows_and_warnings("SELECT count(*) AS n FROM log_entries", &[])
        .await;
    (rows[0]["n"].as_u64().expect("a count"), warnings)
}

async fn quarantined(stack: &Stack) -> Vec<serde_json::Value> {
    stack
        .rows(
            "SELECT kind, event_count, quarantine_error FROM blocks \
             WHERE quarantine_error IS NOT NULL ORDER BY insert_time",
        )
        .await
}

async fn corrupt_blocks_are_quarantined(stack: &Stack) {
    let tenant = TenantId::default_tenant();
    for i in 0..3 {
        stack
            .send("default", "logs", logs_over_a_day(i + 1, PER_REQUEST, T0))
            .await;
    }
    let stored = blocks(stack, &tenant).await;
    assert_eq!(stored.len(), 9, "a block per request and service");

    // Materialization quarantines the first two and goes on with the third.
    flip_a_byte(stack, &tenant, &stored[0]).await;
    flip_a_byte(stack, &tenant, &stored[1]).await;
    let done = materializer(stack).pass().await.expect("the pass succeeds");
    assert_eq!((done.quarantined, done.blocks), (2, 7), "{done:?}");
    let again = materializer(stack).pass().await.expect("nothing left");
    assert_eq!((again.quarantined, again.blocks), (0, 0), "{again:?}");

    let listed = quarantined(stack).await;
    assert_eq!(listed.len(), 2, "{listed:?}");
    for row in &listed {
        assert_eq!(row["kind"], "otlp.logs");
        assert_eq!(row["event_count"], PER_BLOCK);
        let error = row["quarantine_error"].as_str().expect("an error");
        assert!(error.contains("checksum mismatch"), "{error}");
    }

    // The rest of the data, and a warning saying what is left out.
    let (n, warnings) = count_logs(stack).await;
    assert_eq!(n, 3 * PER_REQUEST - 2 * PER_BLOCK);
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].starts_with("2 quarantined block(s) of log_entries")
            && warnings[0].contains(&format!("({} events)", 2 * PER_BLOCK)),
        "{}",
        warnings[0]
    );

    // A block a query meets before materialization is left out of that
    // answer too, and quarantined there and then.
    stack
        .send("default", "logs", logs_over_a_day(9, PER_REQUEST, T0))
        .await;
    let newest = blocks(stack, &tenant).await.pop().expect("the new block");
    flip_a_byte(stack, &tenant, &newest).await;
    let (n, warnings) = count_logs(stack).await;
    assert_eq!(n, 4 * PER_REQUEST - 3 * PER_BLOCK);
    assert!(
        warnings
            .iter()
            .any(|w| w.starts_with("1 quarantined block(s) of log_entries")),
        "{warnings:?}"
    );
    assert_eq!(quarantined(stack).await.len(), 3);
    let (n, warnings) = count_logs(stack).await;
    assert_eq!(n, 4 * PER_REQUEST - 3 * PER_BLOCK);
    assert!(
        warnings
            .iter()
            .any(|w| w.starts_with("3 quarantined block(s) of log_entries")),
        "{warnings:?}"
    );
    let done = materializer(stack).pass().await.expect("the pass succeeds");
    assert_eq!((done.quarantined, done.blocks), (0, 2), "{done:?}");
    assert_eq!(count_logs(stack).await.0, 4 * PER_REQUEST - 3 * PER_BLOCK);
}

#[tokio::test]
async fn embedded() {
    let stack = Stack::embedded(
        framelake_lake::tenancy::Tenancy::open(),
        framelake_query::QueryLimits::default(),
    )
    .await;
    corrupt_blocks_are_quarantined(&stack).await;
}

#[tokio::test]
async fn cluster() {
    let stack = Stack::cluster("quarantine").await;
    corrupt_blocks_are_quarantined(&stack).await;
}
