//! Group commit: requests are collected per tenant and flushed as one segment
//! object per tenant plus one catalog transaction, every flush interval or when
//! the pending bytes reach a threshold, whichever comes first. A write returns
//! only after both succeeded, so an acknowledged request is durable.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::Lake;
use crate::catalog::{
    BlockRecord, BlockingCommits, ProcessRecord, SegmentRecord, StreamRecord, TenantCommit,
};
use crate::host::now_nanos;
use crate::ids::{ProcessId, SegmentId, StreamId, TenantId};
use crate::paths::SegmentPath;
use crate::segment::{EncodedBlock, Segment, SegmentBuilder};
use crate::store::SegmentLogs;
use crate::{Error, Result};

/// When the writer flushes and how much it may hold.
#[derive(Debug, Clone)]
pub struct WriterConfig {
    /// Longest time a write waits for its flush.
    pub flush_interval: Duration,
    /// Pending bytes that trigger a flush before the interval ends.
    pub flush_bytes: usize,
    /// Bytes the writer may hold in memory (pending and flushing); writes beyond
    /// are refused with [`Error::Overloaded`], a retryable error.
    pub max_pending_bytes: usize,
    /// Flushes that may upload and commit at once.
    pub max_concurrent_flushes: usize,
}

impl Default for WriterConfig {
    fn default() -> Self {
        WriterConfig {
            flush_interval: Duration::from_millis(250),
            flush_bytes: 8 << 20,
            max_pending_bytes: 256 << 20,
            max_concurrent_flushes: 4,
        }
    }
}

/// A block with what the catalog needs to place it.
#[derive(Debug, Clone)]
pub struct PendingBlock {
    pub block: EncodedBlock,
    /// Version of the payload format for this kind.
    pub format: i16,
    pub process_id: ProcessId,
    pub stream_id: StreamId,
}

/// What one request writes for one tenant. `insert_time` fields are set by the writer.
#[derive(Debug, Clone)]
pub struct WriteBatch {
    pub tenant: TenantId,
    pub processes: Vec<ProcessRecord>,
    pub streams: Vec<StreamRecord>,
    pub blocks: Vec<PendingBlock>,
}

impl WriteBatch {
    fn byte_size(&self) -> usize {
        let blocks: usize = self.blocks.iter().map(|b| b.block.data.len() + 128).sum();
        let processes: usize = self
            .processes
            .iter()
            .map(|p| p.properties.len() + 128)
            .sum();
        blocks + processes + self.streams.len() * 128
    }
}

struct Pending {
    batch: WriteBatch,
    bytes: usize,
    done: oneshot::Sender<Result<()>>,
    _permit: OwnedSemaphorePermit,
}

/// The group-commit writer. Cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct Writer {
    tx: mpsc::UnboundedSender<Pending>,
    budget: Arc<Semaphore>,
    budget_bytes: usize,
    drain: CancellationToken,
    stop: CancellationToken,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for Pending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pending")
            .field("tenant", &self.batch.tenant)
            .field("bytes", &self.bytes)
            .finish()
    }
}

impl Writer {
    /// Starts the writer's flush task on the current runtime.
    pub fn start(lake: Arc<Lake>, config: WriterConfig) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        let budget_bytes = config.max_pending_bytes.min(Semaphore::MAX_PERMITS);
        let (drain, stop) = (CancellationToken::new(), CancellationToken::new());
        let route = Route {
            logs: lake.store.segment_logs(),
            commits: lake.catalog.blocking_commits(),
        };
        let task = tokio::spawn(run(lake, route, config, rx, drain.clone(), stop.clone()));
        Writer {
            tx,
            budget: Arc::new(Semaphore::new(budget_bytes)),
            budget_bytes,
            drain,
            stop,
            task: Mutex::new(Some(task)),
        }
    }

    /// Writes a batch durably: returns once its segment is stored and its rows committed.
    pub async fn write(&self, batch: WriteBatch) -> Result<()> {
        let bytes = batch.byte_size().clamp(1, self.budget_bytes);
        let permit = Arc::clone(&self.budget)
            .try_acquire_many_owned(bytes as u32)
            .map_err(|e| match e {
                tokio::sync::TryAcquireError::Closed => Error::ShuttingDown,
                tokio::sync::TryAcquireError::NoPermits => Error::Overloaded {
                    pending_bytes: self.budget_bytes - self.budget.available_permits(),
                    budget_bytes: self.budget_bytes,
                },
            })?;
        let (done, wait) = oneshot::channel();
        self.tx
            .send(Pending {
                batch,
                bytes,
                done,
                _permit: permit,
            })
            .map_err(|_| Error::ShuttingDown)?;
        wait.await.map_err(|_| Error::FlushFailed {
            reason: "the writer stopped before the flush".to_owned(),
            retryable: true,
        })?
    }

    /// Flushes what is pending now, and from then on every write as soon as
    /// it arrives, without waiting for the flush interval: what a server
    /// stopping calls first, so that the requests in flight are acknowledged
    /// while its listeners drain.
    pub fn drain(&self) {
        self.drain.cancel();
    }

    /// Stops taking writes, flushes and commits everything pending, and waits for it.
    pub async fn shutdown(&self) {
        self.budget.close();
        let task = self.task.lock().expect("writer task lock").take();
        self.stop.cancel();
        if let Some(task) = task
            && let Err(e) = task.await
        {
            tracing::error!(error = %e, "writer task failed");
        }
    }
}

/// Where a flush stores and commits in the thread that built its segments,
/// chosen once at start: local segment logs, an embedded catalog.
#[derive(Debug, Clone)]
struct Route {
    logs: Option<SegmentLogs>,
    commits: Option<Arc<dyn BlockingCommits>>,
}

async fn run(
    lake: Arc<Lake>,
    route: Route,
    config: WriterConfig,
    mut rx: mpsc::UnboundedReceiver<Pending>,
    drain: CancellationToken,
    stop: CancellationToken,
) {
    let slots = Arc::new(Semaphore::new(config.max_concurrent_flushes.max(1)));
    let known = Arc::new(Known::default());
    let tracker = TaskTracker::new();
    let mut pending: Vec<Pending> = Vec::new();
    let mut pending_bytes = 0usize;
    let mut deadline = Instant::now();
    let mut stopping = false;
    let mut draining = false;
    loop {
        let timer = tokio::time::sleep_until(deadline);
        tokio::select! {
            // Flush now, and each write as it comes.
            () = drain.cancelled(), if !draining => {
                draining = true;
                if pending.is_empty() {
                    continue;
                }
            }
            // Stop taking writes; what is queued is still received, then `recv` ends.
            () = stop.cancelled(), if !stopping => {
                stopping = true;
                rx.close();
                continue;
            }
            msg = rx.recv() => match msg {
                Some(p) => {
                    if pending.is_empty() {
                        deadline = Instant::now() + config.flush_interval;
                    }
                    pending_bytes += p.bytes;
                    pending.push(p);
                    if pending_bytes < config.flush_bytes && !draining {
                        continue;
                    }
                }
                None => break,
            },
            () = timer, if !pending.is_empty() => {}
        }
        let slot = Arc::clone(&slots)
            .acquire_owned()
            .await
            .expect("flush slots are never closed");
        let batch = std::mem::take(&mut pending);
        pending_bytes = 0;
        let (lake, route, known) = (Arc::clone(&lake), route.clone(), Arc::clone(&known));
        tracker.spawn(async move {
            flush(&lake, &route, &known, batch).await;
            drop(slot);
        });
    }
    if !pending.is_empty() {
        flush(&lake, &route, &known, pending).await;
    }
    tracker.close();
    tracker.wait().await;
}

/// Writes one segment per tenant, commits them in one transaction and answers every waiter.
async fn flush(lake: &Lake, route: &Route, known: &Arc<Known>, batch: Vec<Pending>) {
    let waiters = batch.len();
    let started = std::time::Instant::now();
    let (route, known_now) = (route.clone(), Arc::clone(known));
    // Local files and an embedded catalog are written in the thread that built
    // the segments: one hand-off to the blocking pool per flush, not one per step.
    let built = tokio::task::spawn_blocking(move || {
        let (mut built, done) = build_segments(batch, &known_now);
        let Some(logs) = &route.logs else {
            return (Step::Store(built), done);
        };
        let stored = built.iter_mut().try_for_each(|(path, data, commit)| {
            let location = logs.append(path.tenant(), path.segment(), data.parts())?;
            commit.segment.log = Some(location);
            Ok::<_, Error>(())
        });
        let step = match (stored, &route.commits) {
            (Err(e), _) => Step::Done(Err(e)),
            (Ok(()), None) => Step::Commit(into_commits(built)),
            (Ok(()), Some(catalog)) => {
                let commits = into_commits(built);
                let committed = catalog.commit(&commits);
                if committed.is_ok() {
                    known_now.remember(&commits);
                }
                Step::Done(committed)
            }
        };
        (step, done)
    })
    .await;
    let (step, done) = match built {
        Ok(built) => built,
        Err(e) => {
            tracing::error!(error = %e, "building segments panicked");
            return;
        }
    };
    let result = match step {
        Step::Done(result) => result,
        Step::Commit(commits) => commit(lake, known, commits).await,
        Step::Store(built) => store_and_commit(lake, known, built).await,
    };
    let outcome = match &result {
        Ok(new_blocks) => {
            tracing::debug!(
                waiters,
                new_blocks,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "flushed"
            );
            Ok(())
        }
        Err(e) => {
            tracing::warn!(waiters, error = %e, "flush failed; its writes are not acknowledged");
            Err((e.to_string(), e.is_retryable()))
        }
    };
    for d in done {
        let _ = d.send(
            outcome
                .clone()
                .map_err(|(reason, retryable)| Error::FlushFailed { reason, retryable }),
        );
    }
}

/// Where a flush's blocking part left it.
enum Step {
    /// Stored and committed, or failed: the outcome.
    Done(Result<u64>),
    /// Stored; the catalog is remote: commit these.
    Commit(Vec<TenantCommit>),
    /// Built; the store is remote: upload and commit these.
    Store(Vec<(SegmentPath, Segment, TenantCommit)>),
}

type Built = (
    Vec<(SegmentPath, Segment, TenantCommit)>,
    Vec<oneshot::Sender<Result<()>>>,
);

fn build_segments(batch: Vec<Pending>, known: &Known) -> Built {
    let insert_time = now_nanos();
    let mut by_tenant: BTreeMap<TenantId, Vec<WriteBatch>> = BTreeMap::new();
    let mut done = Vec::with_capacity(batch.len());
    for p in batch {
        by_tenant
            .entry(p.batch.tenant.clone())
            .or_default()
            .push(p.batch);
        done.push(p.done);
    }
    let commits = by_tenant
        .into_iter()
        .map(|(tenant, batches)| {
            let segment_id = SegmentId::new();
            let block_count = batches.iter().map(|b| b.blocks.len()).sum();
            let mut builder = SegmentBuilder::with_capacity(block_count);
            let (mut seen_blocks, mut seen_processes, mut seen_streams) =
                (HashSet::new(), HashSet::new(), HashSet::new());
            let (mut blocks, mut processes, mut streams) = (Vec::new(), Vec::new(), Vec::new());
            for b in batches {
                for mut p in b.processes {
                    if seen_processes.insert(p.process_id)
                        && !known.has_process(&tenant, &p.process_id)
                    {
                        p.insert_time = insert_time;
                        processes.push(p);
                    }
                }
                for mut s in b.streams {
                    if seen_streams.insert(s.stream_id) && !known.has_stream(&tenant, &s.stream_id)
                    {
                        s.insert_time = insert_time;
                        streams.push(s);
                    }
                }
                for pb in b.blocks {
                    // A retry in the same flush: store and index the block once.
                    if !seen_blocks.insert(pb.block.block_id) {
                        continue;
                    }
                    let entry = builder
                        .push(&pb.block)
                        .expect("blocks are bounded by the request size limit");
                    blocks.push(BlockRecord::of_entry(
                        entry,
                        segment_id,
                        pb.format,
                        pb.process_id,
                        pb.stream_id,
                        insert_time,
                    ));
                }
            }
            let (data, _) = builder.finish();
            let segment = SegmentRecord {
                segment_id,
                size: data.len(),
                block_count: blocks.len() as u32,
                insert_time,
                log: None,
            };
            let path = SegmentPath::new(tenant.clone(), segment_id);
            (
                path,
                data,
                TenantCommit {
                    tenant,
                    segment,
                    processes,
                    streams,
                    blocks,
                },
            )
        })
        .collect();
    (commits, done)
}

/// Uploads the segments (remote stores) and commits their rows.
async fn store_and_commit(
    lake: &Lake,
    known: &Known,
    built: Vec<(SegmentPath, Segment, TenantCommit)>,
) -> Result<u64> {
    let uploads = built.iter().map(|(path, data, _)| {
        let (path, data) = (
            path.to_object_path(),
            data.parts()
                .iter()
                .cloned()
                .collect::<object_store::PutPayload>(),
        );
        async move { lake.store.put_durable(&path, data).await }
    });
    for result in futures::future::join_all(uploads).await {
        result?;
    }
    commit(lake, known, into_commits(built)).await
}

/// Commits the rows of a flush and remembers its processes and streams.
async fn commit(lake: &Lake, known: &Known, commits: Vec<TenantCommit>) -> Result<u64> {
    let new_blocks = lake.catalog.commit(&commits).await?;
    known.remember(&commits);
    Ok(new_blocks)
}

/// The processes and streams this writer has committed, so that later flushes
/// do not insert them again: each insert that finds its row still costs an
/// index lookup, a statement and a round trip to the database per flush. Only
/// what a committed transaction wrote is remembered; the catalog's
/// `ON CONFLICT DO NOTHING` keeps a repeat harmless (another receiver, or a
/// tenant forgotten because the memory was full). Whatever deletes processes
/// or streams from the catalog (retention) must forget them here.
#[derive(Debug, Default)]
struct Known {
    tenants: Mutex<HashMap<TenantId, KnownIds>>,
}

#[derive(Debug, Default)]
struct KnownIds {
    processes: HashSet<ProcessId>,
    streams: HashSet<StreamId>,
}

impl Known {
    /// Ids remembered at most; past it, the memory starts over.
    const LIMIT: usize = 1 << 20;

    fn has_process(&self, tenant: &TenantId, id: &ProcessId) -> bool {
        let tenants = self.tenants.lock().expect("known ids lock");
        tenants
            .get(tenant)
            .is_some_and(|t| t.processes.contains(id))
    }

    fn has_stream(&self, tenant: &TenantId, id: &StreamId) -> bool {
        let tenants = self.tenants.lock().expect("known ids lock");
        tenants.get(tenant).is_some_and(|t| t.streams.contains(id))
    }

    fn remember(&self, commits: &[TenantCommit]) {
        let mut tenants = self.tenants.lock().expect("known ids lock");
        let size: usize = tenants
            .values()
            .map(|t| t.processes.len() + t.streams.len())
            .sum();
        if size > Self::LIMIT {
            tenants.clear();
        }
        for c in commits {
            if c.processes.is_empty() && c.streams.is_empty() {
                continue;
            }
            let ids = tenants.entry(c.tenant.clone()).or_default();
            ids.processes
                .extend(c.processes.iter().map(|p| p.process_id));
            ids.streams.extend(c.streams.iter().map(|s| s.stream_id));
        }
    }
}

fn into_commits(built: Vec<(SegmentPath, Segment, TenantCommit)>) -> Vec<TenantCommit> {
    built.into_iter().map(|(_, _, c)| c).collect()
}
