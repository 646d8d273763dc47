//! Recovery of segments the catalog does not record: a flush whose segment was
//! stored but whose transaction failed (its writes were refused, and a retry
//! may come), or was lost with the machine. At startup, the newest segments of
//! every tenant are checked against the catalog and the missing ones recorded
//! from the segments themselves: block rows from the segment index, processes
//! and streams from the payloads (an OTLP block is an export request of one
//! resource). Block ids derive from the content, so a block both recovered and
//! retried is indexed once.
//!
//! With local files, segments are records of logs (`seglog.rs`): recovery reads
//! the record headers of the newest hours' logs and stops at the first that
//! does not check; a record whose segment does not read back whole is a torn
//! last record, whose flush was never acknowledged.

use std::collections::BTreeMap;

use framelake_lake::Lake;
use framelake_lake::catalog::{BlockRecord, LogLocation, SegmentRecord, TenantCommit};
use framelake_lake::ids::{ProcessId, SegmentId, StreamId, TenantId};
use framelake_lake::paths::SegmentPath;
use framelake_lake::{Error, Result};
use framelake_lake::{seglog, segment};
use futures::TryStreamExt;
use object_store::path::Path;

use crate::otlp::{OTLP_PAYLOAD_FORMAT, block_resource, process_and_stream};

/// Hour folders per tenant checked, newest first: a crash loses at most the
/// last seconds of commits, and the hour may have just turned.
const HOURS_CHECKED: usize = 2;

/// Tenants recovered at once.
const TENANTS_AT_ONCE: usize = 16;

/// What a recovery did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Recovered {
    /// Segments checked against the catalog.
    pub checked: usize,
    /// Segments recorded in the catalog now.
    pub recorded: usize,
    /// Blocks of those segments new to the catalog.
    pub new_blocks: u64,
}

/// Records in the catalog every segment of the newest hours that it lacks.
/// Segments that do not read back whole (for a segment this code wrote: the
/// torn last record of a log, whose flush was never acknowledged) are reported
/// and left.
pub async fn recover(lake: &Lake) -> Result<Recovered> {
    use futures::StreamExt;
    let tenants: Vec<TenantId> = folders(lake.store.object_store(), &Path::from("tenants"))
        .await?
        .iter()
        .filter_map(|dir| dir.filename()?.parse().ok())
        .collect();
    // Tenants side by side: on S3 each costs a few listings.
    let mut per_tenant = futures::stream::iter(tenants)
        .map(|tenant| async move { recover_tenant(lake, tenant).await })
        .buffer_unordered(TENANTS_AT_ONCE);
    let mut recovered = Recovered::default();
    while let Some(tenant) = per_tenant.next().await {
        let tenant = tenant?;
        recovered.checked += tenant.checked;
        recovered.recorded += tenant.recorded;
        recovered.new_blocks += tenant.new_blocks;
    }
    if recovered.recorded > 0 {
        tracing::warn!(
            recorded = recovered.recorded,
            new_blocks = recovered.new_blocks,
            "recorded stored segments the catalog lacked"
        );
    }
    Ok(recovered)
}

/// Where a stored segment lies.
#[derive(Debug, Clone)]
enum Stored {
    /// An object of its own ([`SegmentPath`]).
    Own,
    /// A record of a log: where the segment starts, and its length.
    InLog(LogLocation, u64),
}

/// The objects of the newest hour folders under `tenants/{tenant}/{kind}`.
async fn newest_objects(
    store: &dyn object_store::ObjectStore,
    tenant: &TenantId,
    kind: &str,
) -> Result<Vec<object_store::ObjectMeta>> {
    let dir = Path::from("tenants").join(tenant.as_str()).join(kind);
    let mut hours = Vec::new();
    for date in newest(folders(store, &dir).await?, HOURS_CHECKED) {
        hours.extend(folders(store, &date).await?);
    }
    let mut objects = Vec::new();
    for hour in newest(hours, HOURS_CHECKED) {
        objects.extend(store.list(Some(&hour)).try_collect::<Vec<_>>().await?);
    }
    Ok(objects)
}

/// The records of a log, from header to header, up to the first header that
/// does not check or lies past the end.
async fn log_records(
    store: &framelake_lake::store::Store,
    log: &object_store::ObjectMeta,
) -> Result<Vec<seglog::Record>> {
    let mut records = Vec::new();
    let mut at = 0;
    while at + seglog::HEADER_LEN <= log.size {
        let header = store
            .get_range(&log.location, at..at + seglog::HEADER_LEN)
            .await?;
        match seglog::read_header(&header, at) {
            Some(record) if record.offset + record.length <= log.size => {
                at = record.end();
                records.push(record);
            }
            _ => break,
        }
    }
    Ok(records)
}

/// Recovers the newest segments of one tenant.
async fn recover_tenant(lake: &Lake, tenant: TenantId) -> Result<Recovered> {
    let store = lake.store.object_store();
    let mut stored = BTreeMap::new();
    for object in newest_objects(store.as_ref(), &tenant, "segments").await? {
        if let Ok(path) = object.location.as_ref().parse::<SegmentPath>()
            && path.tenant() == &tenant
        {
            stored.insert(path.segment(), Stored::Own);
        }
    }
    for log in newest_objects(store.as_ref(), &tenant, "logs").await? {
        for record in log_records(&lake.store, &log).await? {
            let location = LogLocation {
                object: log.location.to_string(),
                offset: record.offset,
            };
            stored.insert(record.segment, Stored::InLog(location, record.length));
        }
    }
    let ids: Vec<SegmentId> = stored.keys().copied().collect();
    let mut recovered = Recovered {
        checked: ids.len(),
        ..Recovered::default()
    };
    let known = lake.catalog.known_segments(&tenant, &ids).await?;
    for (id, where_) in stored.into_iter().filter(|(id, _)| !known.contains(id)) {
        match record(lake, &tenant, id, where_).await {
            Ok(new_blocks) => {
                recovered.recorded += 1;
                recovered.new_blocks += new_blocks;
            }
            // Recorded meanwhile by the receiver that wrote it (several
            // receivers share a PostgreSQL catalog): nothing to do.
            Err(_) if is_known(lake, &tenant, id).await? => {}
            Err(e @ Error::Corrupt { .. }) => {
                tracing::error!(error = %e, "a stored segment does not read back; left unrecorded");
            }
            Err(e) => return Err(e),
        }
    }
    Ok(recovered)
}

/// Records one segment: its blocks, and the processes and streams they belong to.
async fn record(lake: &Lake, tenant: &TenantId, id: SegmentId, stored: Stored) -> Result<u64> {
    let path = SegmentPath::new(tenant.clone(), id);
    let (location, data, log) = match stored {
        Stored::Own => (
            path.to_string(),
            lake.store.get(&path.to_object_path()).await?,
            None,
        ),
        Stored::InLog(log, length) => (
            format!("{}@{}", log.object, log.offset),
            lake.store
                .get_range(
                    &Path::from(log.object.as_str()),
                    log.offset..log.offset + length,
                )
                .await?,
            Some(log),
        ),
    };
    let commit = tokio::task::spawn_blocking(move || -> Result<TenantCommit> {
        let entries = segment::read_index(&location, &data)?;
        let insert_time = i64::try_from(id.unix_millis())
            .unwrap_or(i64::MAX)
            .saturating_mul(1_000_000);
        let corrupt = |reason: String| Error::Corrupt {
            location: location.clone(),
            reason,
        };
        let mut commit = TenantCommit {
            tenant: path.tenant().clone(),
            segment: SegmentRecord {
                segment_id: id,
                size: data.len() as u64,
                block_count: entries.len() as u32,
                insert_time,
                log,
            },
            processes: Vec::new(),
            streams: Vec::new(),
            blocks: Vec::new(),
        };
        for e in entries {
            let start = usize::try_from(e.offset).map_err(|_| corrupt("offset".to_owned()))?;
            let stored = data
                .get(start..start + e.length as usize)
                .ok_or_else(|| corrupt(format!("block at {start} is out of the object")))?;
            let payload = segment::decode_block(
                &location,
                stored,
                e.codec,
                e.checksum,
                e.uncompressed_length as usize,
            )?;
            let resource = block_resource(e.kind, &payload)
                .map_err(|err| corrupt(format!("block at {start} is not OTLP: {err}")))?;
            let Some(resource) = resource else {
                // A native block: its process and stream were registered
                // (and committed) before it was accepted; its header names them.
                let (header, _) = framelake_native_format::decode_block(&payload)
                    .map_err(|err| corrupt(format!("native block at {start}: {err}")))?;
                commit.blocks.push(BlockRecord::of_entry(
                    &e,
                    id,
                    crate::native::NATIVE_PAYLOAD_FORMAT,
                    ProcessId(header.process_id),
                    StreamId(header.stream_id),
                    insert_time,
                ));
                continue;
            };
            let (mut process, mut stream) = process_and_stream(&resource, e.kind);
            (process.insert_time, stream.insert_time) = (insert_time, insert_time);
            commit.blocks.push(BlockRecord::of_entry(
                &e,
                id,
                OTLP_PAYLOAD_FORMAT,
                process.process_id,
                stream.stream_id,
                insert_time,
            ));
            if !commit
                .processes
                .iter()
                .any(|p| p.process_id == process.process_id)
            {
                commit.processes.push(process);
            }
            if !commit
                .streams
                .iter()
                .any(|s| s.stream_id == stream.stream_id)
            {
                commit.streams.push(stream);
            }
        }
        Ok(commit)
    })
    .await
    .map_err(|e| Error::task("recovery", e))??;
    lake.catalog.commit(&[commit]).await
}

async fn is_known(lake: &Lake, tenant: &TenantId, id: SegmentId) -> Result<bool> {
    Ok(lake
        .catalog
        .known_segments(tenant, &[id])
        .await?
        .contains(&id))
}

/// The folders directly under `dir`.
async fn folders(store: &dyn object_store::ObjectStore, dir: &Path) -> Result<Vec<Path>> {
    Ok(store.list_with_delimiter(Some(dir)).await?.common_prefixes)
}

/// The last `n` of `paths` in name order (dates and hours sort as text).
fn newest(mut paths: Vec<Path>, n: usize) -> Vec<Path> {
    paths.sort_by(|a, b| a.as_ref().cmp(b.as_ref()));
    let skip = paths.len().saturating_sub(n);
    paths.split_off(skip)
}
