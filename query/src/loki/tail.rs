//! Live tail: the lines of a log query as they are acknowledged.
//!
//! A tail first sends the newest lines before it began (up to its limit,
//! oldest first), then polls the catalog for log blocks committed since,
//! reads those of the streams its selector matches and sends the lines that
//! pass its pipeline. Every acknowledged line is in a committed block, so
//! every line acknowledged after the tail began arrives, once (blocks are
//! remembered by id), in order within a block's stream. A tail reads the
//! catalog and the store like any query and never waits on ingestion; a
//! reader slower than the lines fills a bounded buffer, past which lines
//! are dropped and reported as `dropped_entries`.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use framelake_lake::catalog::BlockFilter;
use framelake_lake::host::now_nanos;
use framelake_lake::ids::{BlockId, ProcessId, TenantId};
use framelake_lake::view::View;
use framelake_logql::LogExpr;
use framelake_logql::eval::{Pipeline, Row, Selector};
use tokio::sync::mpsc;

use super::streams::{LineBatch, Stream};
use super::{Direction, LogLine, Loki, bad};
use crate::QueryError;

/// How often the catalog is asked for new blocks.
pub const POLL: Duration = Duration::from_millis(100);
/// How far back of the newest insert time seen each poll looks again: a
/// block's insert time is taken before its commit ends.
const MARGIN: i64 = 10_000_000_000;
/// Messages a subscriber may have waiting before lines are dropped.
pub const BUFFER: usize = 64;
/// Dropped lines reported per message, at most.
const MAX_DROPPED: usize = 1_000;

/// A message of a tail: lines, and those dropped since the last message.
#[derive(Debug, Default)]
pub struct Message {
    pub lines: Vec<LogLine>,
    /// (labels, time) of lines the reader was too slow for.
    pub dropped: Vec<(String, i64)>,
}

/// What a tail follows.
pub struct TailQuery {
    pub expr: LogExpr,
    /// Lines before the tail began are sent from here on.
    pub start: i64,
    /// At most this many of them.
    pub limit: usize,
    /// How long after its commit a block is read (Loki's `delay_for`).
    pub delay: Duration,
}

/// Follows a query until the receiver of `out` is dropped; errors end it.
pub async fn follow(
    loki: Loki,
    tenant: TenantId,
    query: TailQuery,
    out: mpsc::Sender<Message>,
) -> Result<(), QueryError> {
    let selector = Selector::new(&query.expr.selector).map_err(bad)?;
    let pipeline = Pipeline::new(&query.expr.pipeline).map_err(bad)?;
    let catalog = Arc::clone(&loki.engine().lake().catalog);
    let began = now_nanos();
    let recent = |after: i64| BlockFilter {
        kinds: View::LogEntries.kinds().to_vec(),
        inserted_after: Some(after),
        ..BlockFilter::default()
    };
    // Blocks committed before the history is read are the history's.
    let mut seen: HashMap<BlockId, i64> = catalog
        .blocks(&tenant, &recent(began - MARGIN))
        .await?
        .into_iter()
        .map(|b| (b.block_id, b.insert_time))
        .collect();
    let mut history = loki
        .select(
            &tenant,
            &query.expr,
            query.start,
            began,
            query.limit,
            Direction::Backward,
        )
        .await?;
    history.reverse();
    // A block committed while the history was read may hold its lines too.
    let sent: HashSet<(ProcessId, i64, String)> = history
        .iter()
        .map(|l| (l.stream.process_id, l.time, l.line.clone()))
        .collect();
    let mut sink = Sink {
        out,
        dropped: VecDeque::new(),
    };
    if !history.is_empty() && !sink.send(history) {
        return Ok(());
    }
    let mut streams: HashMap<ProcessId, Option<Arc<Stream>>> = HashMap::new();
    let mut newest = began;
    loop {
        tokio::time::sleep(POLL).await;
        if sink.out.is_closed() {
            return Ok(());
        }
        let ready = now_nanos() - query.delay.as_nanos() as i64;
        let mut blocks: Vec<_> = catalog
            .blocks(&tenant, &recent(newest - MARGIN))
            .await?
            .into_iter()
            .filter(|b| !seen.contains_key(&b.block_id) && b.insert_time <= ready)
            .collect();
        blocks.sort_by_key(|b| (b.insert_time, b.min_time));
        let mut lines = Vec::new();
        for block in blocks {
            seen.insert(block.block_id, block.insert_time);
            newest = newest.max(block.insert_time);
            let stream = match streams.get(&block.process_id) {
                Some(s) => s.clone(),
                None => {
                    let stream = match catalog.process(&tenant, &block.process_id).await? {
                        Some(record) => {
                            let stream = loki.mapping.stream(&record)?;
                            selector.matches(&stream.labels).then(|| Arc::new(stream))
                        }
                        None => None,
                    };
                    streams.insert(block.process_id, stream.clone());
                    stream
                }
            };
            let Some(stream) = stream else {
                continue;
            };
            if block.quarantine.is_some() {
                continue;
            }
            let decoded = loki.engine().lake().decode_block(&tenant, &block).await?;
            let schema = crate::table::query_schema(&View::LogEntries.schema());
            let batch = LineBatch::new(&crate::table::cast_to(&schema, decoded)?)?;
            let mut block_lines = Vec::new();
            for i in 0..batch.len {
                let time = batch.time(i);
                let mut row = Row {
                    time,
                    line: batch.line(i).to_owned(),
                    labels: batch.labels(i, &stream),
                };
                if pipeline.process(&mut row)
                    && !sent.contains(&(stream.process_id, time, row.line.clone()))
                {
                    block_lines.push(LogLine {
                        stream: Arc::clone(&stream),
                        time,
                        line: row.line,
                        labels: row.labels,
                    });
                }
            }
            block_lines.sort_by_key(|l| l.time);
            lines.extend(block_lines);
        }
        seen.retain(|_, inserted| *inserted > newest - 2 * MARGIN);
        if !lines.is_empty() && !sink.send(lines) {
            return Ok(());
        }
    }
}

/// The bounded way to a subscriber.
struct Sink {
    out: mpsc::Sender<Message>,
    dropped: VecDeque<(String, i64)>,
}

impl Sink {
    /// Sends lines, or counts them dropped when the reader is behind;
    /// false once the reader is gone.
    fn send(&mut self, lines: Vec<LogLine>) -> bool {
        let message = Message {
            dropped: self.dropped.iter().cloned().collect(),
            lines,
        };
        match self.out.try_send(message) {
            Ok(()) => {
                self.dropped.clear();
                true
            }
            Err(mpsc::error::TrySendError::Full(message)) => {
                for line in message.lines {
                    if self.dropped.len() == MAX_DROPPED {
                        self.dropped.pop_front();
                    }
                    let labels = super::metric::labels_text(&line.labels.sorted());
                    self.dropped.push_back((labels, line.time));
                }
                true
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }
}
