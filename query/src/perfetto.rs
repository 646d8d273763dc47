//! Perfetto traces of native processes: `GET /api/v1/perfetto` and
//! `framelake perfetto`.
//!
//! A trace is a Perfetto `Trace` protobuf (the file ui.perfetto.dev opens):
//! a process track, a thread track per thread with its spans as nested
//! slices, a frames track, a logs track (instants) and a counter track per
//! metric. It is written as it is read, window by window of time, so a
//! long trace never sits whole in memory: each window's spans are sorted
//! by the query engine, and a stack per thread carries the spans still
//! open into the next window.

use std::collections::{HashMap, HashSet};

use arrow::array::{
    AsArray, FixedSizeBinaryArray, Float64Array, Int64Array, RecordBatch, StringArray, UInt32Array,
};
use arrow::datatypes::DataType;
use bytes::{BufMut, Bytes, BytesMut};
use framelake_lake::catalog::{BlockFilter, Source};
use framelake_lake::ids::{ProcessId, TenantId};
use futures::StreamExt;

use crate::{Engine, QueryError};

/// Spans, logs and metrics are read this much time at once.
const WINDOW_NANOS: i64 = 10_000_000_000;

/// Packets are sent in chunks of about this many bytes.
const CHUNK_BYTES: usize = 256 << 10;

/// What to export: a native process over a time range (Unix nanoseconds,
/// inclusive).
#[derive(Debug, Clone, Copy)]
pub struct TraceRequest {
    pub process_id: ProcessId,
    pub begin: i64,
    pub end: i64,
}

/// Perfetto's protobuf field numbers (`protos/perfetto/trace/*.proto`).
mod field {
    pub(super) const TRACE_PACKET: u32 = 1;
    // TracePacket
    pub(super) const TIMESTAMP: u32 = 8;
    pub(super) const TRUSTED_PACKET_SEQUENCE_ID: u32 = 10;
    pub(super) const TRACK_EVENT: u32 = 11;
    pub(super) const SEQUENCE_FLAGS: u32 = 13;
    pub(super) const TRACK_DESCRIPTOR: u32 = 60;
    // TrackDescriptor
    pub(super) const UUID: u32 = 1;
    pub(super) const NAME: u32 = 2;
    pub(super) const PROCESS: u32 = 3;
    pub(super) const THREAD: u32 = 4;
    pub(super) const PARENT_UUID: u32 = 5;
    pub(super) const COUNTER: u32 = 8;
    // ProcessDescriptor, ThreadDescriptor
    pub(super) const PID: u32 = 1;
    pub(super) const TID: u32 = 2;
    pub(super) const PROCESS_NAME: u32 = 6;
    pub(super) const THREAD_NAME: u32 = 5;
    // TrackEvent
    pub(super) const DEBUG_ANNOTATIONS: u32 = 4;
    pub(super) const TYPE: u32 = 9;
    pub(super) const TRACK_UUID: u32 = 11;
    pub(super) const EVENT_NAME: u32 = 23;
    pub(super) const DOUBLE_COUNTER_VALUE: u32 = 44;
    // DebugAnnotation
    pub(super) const ANNOTATION_NAME: u32 = 10;
    pub(super) const STRING_VALUE: u32 = 6;
}

/// TrackEvent.Type.
#[derive(Clone, Copy)]
enum EventType {
    SliceBegin = 1,
    SliceEnd = 2,
    Instant = 3,
    Counter = 4,
}

/// TracePacket.sequence_flags: SEQ_INCREMENTAL_STATE_CLEARED.
const SEQ_INCREMENTAL_STATE_CLEARED: u64 = 1;

/// The one packet sequence of an export.
const SEQUENCE_ID: u64 = 1;

/// A protobuf message being written: fields appended in order.
#[derive(Default)]
struct Message(Vec<u8>);

impl Message {
    fn varint(out: &mut Vec<u8>, mut v: u64) {
        while v >= 0x80 {
            out.push(v as u8 | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }

    fn key(&mut self, field: u32, wire: u8) {
        Self::varint(&mut self.0, u64::from(field) << 3 | u64::from(wire));
    }

    fn uint(mut self, field: u32, v: u64) -> Self {
        self.key(field, 0);
        Self::varint(&mut self.0, v);
        self
    }

    fn int(self, field: u32, v: i64) -> Self {
        self.uint(field, v as u64)
    }

    fn double(mut self, field: u32, v: f64) -> Self {
        self.key(field, 1);
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }

    fn bytes(mut self, field: u32, v: &[u8]) -> Self {
        self.key(field, 2);
        Self::varint(&mut self.0, v.len() as u64);
        self.0.extend_from_slice(v);
        self
    }

    fn text(self, field: u32, v: &str) -> Self {
        self.bytes(field, v.as_bytes())
    }

    fn message(self, field: u32, m: Message) -> Self {
        self.bytes(field, &m.0)
    }
}

/// A stable Perfetto uuid or pid/tid for one of our ids.
fn uuid(parts: &[&[u8]]) -> u64 {
    let mut hasher = xxhash_rust::xxh3::Xxh3::new();
    for p in parts {
        hasher.update(p);
    }
    hasher.digest()
}

fn small_id(uuid: u64) -> i64 {
    (uuid & 0x3fff_ffff) as i64 + 1
}

/// The packets of a trace, encoded as parts of a `Trace` message.
struct Writer {
    out: BytesMut,
    first: bool,
}

impl Writer {
    fn packet(&mut self, timestamp: Option<i64>, field: u32, body: Message) {
        let mut packet = Message::default();
        if let Some(t) = timestamp {
            packet = packet.uint(field::TIMESTAMP, t.max(0) as u64);
        }
        packet = packet.uint(field::TRUSTED_PACKET_SEQUENCE_ID, SEQUENCE_ID);
        if std::mem::take(&mut self.first) {
            packet = packet.uint(field::SEQUENCE_FLAGS, SEQ_INCREMENTAL_STATE_CLEARED);
        }
        let packet = packet.message(field, body);
        let mut framed = Message::default().bytes(field::TRACE_PACKET, &packet.0);
        self.out.put_slice(&std::mem::take(&mut framed.0));
    }

    fn track(&mut self, descriptor: Message) {
        self.packet(None, field::TRACK_DESCRIPTOR, descriptor);
    }

    fn event(&mut self, time: i64, track: u64, kind: EventType, event: Message) {
        let event = event
            .uint(field::TYPE, kind as u64)
            .uint(field::TRACK_UUID, track);
        self.packet(Some(time), field::TRACK_EVENT, event);
    }

    fn take(&mut self) -> Bytes {
        self.out.split().freeze()
    }
}

/// A thread's spans still open where the export has read to.
#[derive(Default)]
struct Thread {
    /// End times of the open slices, outermost first.
    open: Vec<i64>,
}

impl Thread {
    /// Ends the open slices that end before `time`.
    fn close_until(&mut self, time: i64, track: u64, w: &mut Writer) {
        while let Some(&end) = self.open.last() {
            if end > time {
                break;
            }
            self.open.pop();
            w.event(end, track, EventType::SliceEnd, Message::default());
        }
    }

    /// Makes room for a slice at `depth` beginning at `begin`: the slices that
    /// ended before it end, then those that the thread's own nesting says are
    /// over (ending at `begin`). Nesting by time alone would put a span inside
    /// its previous sibling when their times cross a little, as times of
    /// blocks converted with different clock estimates can (`docs/native-format.md`).
    fn open_at(&mut self, begin: i64, depth: usize, track: u64, w: &mut Writer) {
        self.close_until(begin, track, w);
        while self.open.len() > depth {
            self.open.pop();
            w.event(begin, track, EventType::SliceEnd, Message::default());
        }
    }
}

/// The times the process's stored blocks cover within the request's range
/// (`None`: none): the export walks these, not the whole range, which a
/// process that says it started in 1970 makes 56 years long.
async fn data_range(
    engine: &Engine,
    tenant: &TenantId,
    request: &TraceRequest,
) -> Result<Option<(i64, i64)>, QueryError> {
    let filter = BlockFilter {
        processes: vec![request.process_id],
        time_range: Some((request.begin, request.end)),
        ..BlockFilter::default()
    };
    let blocks = engine
        .lake()
        .catalog
        .blocks(tenant, &filter)
        .await
        .map_err(|e| QueryError::Unavailable(e.to_string()))?;
    Ok(blocks.iter().fold(None, |range, b| {
        let (min, max) = range.unwrap_or((b.min_time, b.max_time));
        Some((min.min(b.min_time), max.max(b.max_time)))
    }))
}

/// Streams a native process's trace: the chunks of the `Trace` message, or
/// the error that stopped it. Fails before the first chunk when the process
/// is unknown (or not native) or the range is empty.
pub async fn export(
    engine: &Engine,
    tenant: &TenantId,
    request: TraceRequest,
) -> Result<impl futures::Stream<Item = Result<Bytes, QueryError>> + Send + 'static, QueryError> {
    if request.begin > request.end {
        return Err(QueryError::BadQuery(format!(
            "begin ({}) is after end ({})",
            request.begin, request.end
        )));
    }
    let process = engine
        .lake()
        .catalog
        .process(tenant, &request.process_id)
        .await
        .map_err(|e| QueryError::Unavailable(e.to_string()))?
        .filter(|p| p.source == Source::Native)
        .ok_or_else(|| QueryError::NotFound(format!("no native process {}", request.process_id)))?;
    let data = data_range(engine, tenant, &request).await?;
    let (chunks, received) = tokio::sync::mpsc::channel(4);
    let (engine, tenant) = (engine.clone(), tenant.clone());
    tokio::spawn(async move {
        let mut export = Export {
            engine,
            tenant,
            request,
            data,
            process_track: uuid(&[request.process_id.as_bytes()]),
            writer: Writer {
                out: BytesMut::new(),
                first: true,
            },
            threads: HashMap::new(),
            tracks: HashSet::new(),
            chunks,
        };
        // Like a query, an export ends at the time limit, whatever its range.
        let limit = export.engine.limits().timeout;
        let done = tokio::time::timeout(limit, export.run(&process.service_name))
            .await
            .unwrap_or(Err(QueryError::Timeout(limit)));
        if let Err(e) = done {
            tracing::warn!(error = %e, "perfetto export failed");
            let _ = export.chunks.send(Err(e)).await;
        }
    });
    Ok(tokio_stream(received))
}

fn tokio_stream<T: Send + 'static>(
    mut received: tokio::sync::mpsc::Receiver<T>,
) -> impl futures::Stream<Item = T> + Send + 'static {
    futures::stream::poll_fn(move |cx| received.poll_recv(cx))
}

struct Export {
    engine: Engine,
    tenant: TenantId,
    request: TraceRequest,
    /// What [`data_range`] found.
    data: Option<(i64, i64)>,
    process_track: u64,
    writer: Writer,
    threads: HashMap<[u8; 16], (u64, Thread)>,
    /// Tracks described so far (thread, logs, frames and counter tracks).
    tracks: HashSet<u64>,
    chunks: tokio::sync::mpsc::Sender<Result<Bytes, QueryError>>,
}

/// A timestamp literal for SQL.
fn at(nanos: i64) -> String {
    format!("arrow_cast({nanos}, 'Timestamp(Nanosecond, Some(\"UTC\"))')")
}

impl Export {
    async fn run(&mut self, service: &str) -> Result<(), QueryError> {
        let pid = small_id(self.process_track);
        self.writer.track(
            Message::default()
                .uint(field::UUID, self.process_track)
                .message(
                    field::PROCESS,
                    Message::default()
                        .int(field::PID, pid)
                        .text(field::PROCESS_NAME, service),
                ),
        );
        let process = format!("X'{}'", self.request.process_id);
        let (begin, end) = (self.request.begin, self.request.end);
        // The spans open at the range's start, then every span beginning in
        // it, a window at a time, each thread's in begin order.
        let spans = |filter: String| {
            format!(
                "SELECT stream_id, arrow_cast(thread_name, 'Utf8') AS thread, \
                 arrow_cast(name, 'Utf8') AS name, arrow_cast(target, 'Utf8') AS target, \
                 arrow_cast(begin, 'Int64') AS b, arrow_cast(\"end\", 'Int64') AS e, depth \
                 FROM thread_spans WHERE process_id = {process} AND {filter} \
                 ORDER BY stream_id, begin, depth"
            )
        };
        self.spans(&spans(format!(
            "begin < {} AND \"end\" >= {}",
            at(begin),
            at(begin)
        )))
        .await?;
        // Windows over the stored data only.
        let (mut window, end) = match self.data {
            // A window of margin: the blocks' times and their events' come from
            // clock estimates that may differ a little.
            Some((first, last)) => (
                begin.max(first.saturating_sub(WINDOW_NANOS)),
                end.min(last.saturating_add(WINDOW_NANOS)),
            ),
            None => (1, 0),
        };
        while window <= end {
            // Empty windows send nothing: without this, a client that left
            // would be noticed only at the next chunk.
            if self.chunks.is_closed() {
                return Err(QueryError::Internal("the client went away".to_owned()));
            }
            let last = window.saturating_add(WINDOW_NANOS - 1).min(end);
            self.spans(&spans(format!(
                "begin >= {} AND begin <= {}",
                at(window),
                at(last)
            )))
            .await?;
            let range = format!("BETWEEN {} AND {}", at(window), at(last));
            self.frames(&format!(
                "SELECT arrow_cast(begin, 'Int64') AS b, arrow_cast(\"end\", 'Int64') AS e \
                 FROM frames WHERE process_id = {process} AND begin {range} ORDER BY begin"
            ))
            .await?;
            self.logs(&format!(
                "SELECT arrow_cast(time, 'Int64') AS t, arrow_cast(body, 'Utf8') AS body, \
                 arrow_cast(severity_text, 'Utf8') AS severity, arrow_cast(scope_name, 'Utf8') AS target \
                 FROM log_entries WHERE process_id = {process} AND time {range} ORDER BY time"
            ))
            .await?;
            self.metrics(&format!(
                "SELECT arrow_cast(name, 'Utf8') AS name, arrow_cast(unit, 'Utf8') AS unit, \
                 arrow_cast(time, 'Int64') AS t, value FROM measures \
                 WHERE process_id = {process} AND time {range} AND name <> 'frame.duration' \
                 AND value IS NOT NULL ORDER BY name, time"
            ))
            .await?;
            self.flush(false).await?;
            window = match last.checked_add(1) {
                Some(next) => next,
                None => break,
            };
        }
        let mut threads: Vec<_> = std::mem::take(&mut self.threads).into_values().collect();
        for (track, thread) in &mut threads {
            thread.close_until(i64::MAX, *track, &mut self.writer);
        }
        self.flush(true).await
    }

    /// Sends what was written, once there is enough (or `all`).
    async fn flush(&mut self, all: bool) -> Result<(), QueryError> {
        if self.writer.out.len() >= CHUNK_BYTES || (all && !self.writer.out.is_empty()) {
            let chunk = self.writer.take();
            self.chunks
                .send(Ok(chunk))
                .await
                .map_err(|_| QueryError::Internal("the client went away".to_owned()))?;
        }
        Ok(())
    }

    /// Runs a query, handing each batch to `each` and sending as it goes.
    async fn each(
        &mut self,
        sql: &str,
        mut each: impl FnMut(&mut Self, &RecordBatch) -> Result<(), QueryError>,
    ) -> Result<(), QueryError> {
        let mut rows = self.engine.sql(&self.tenant, sql).await?;
        while let Some(batch) = rows.stream.next().await {
            each(self, &batch?)?;
            self.flush(false).await?;
        }
        Ok(())
    }

    async fn spans(&mut self, sql: &str) -> Result<(), QueryError> {
        self.each(sql, |this, batch| {
            let streams = column::<FixedSizeBinaryArray>(batch, "stream_id")?;
            let threads = text(batch, "thread")?;
            let names = text(batch, "name")?;
            let targets = text(batch, "target")?;
            let begins = column::<Int64Array>(batch, "b")?;
            let ends = column::<Int64Array>(batch, "e")?;
            let depths = column::<UInt32Array>(batch, "depth")?;
            for row in 0..batch.num_rows() {
                let stream: [u8; 16] = streams.value(row).try_into().unwrap_or_default();
                let (track, thread) = thread(
                    &mut this.threads,
                    &mut this.writer,
                    this.process_track,
                    stream,
                    threads.value(row),
                );
                let (begin, end) = (begins.value(row), ends.value(row));
                let depth = depths.value(row) as usize;
                thread.open_at(begin, depth, track, &mut this.writer);
                let event = Message::default()
                    .text(field::EVENT_NAME, names.value(row))
                    .message(
                        field::DEBUG_ANNOTATIONS,
                        annotation("target", targets.value(row)),
                    );
                this.writer
                    .event(begin, track, EventType::SliceBegin, event);
                // A span outliving its parent (clock rounding) ends with it.
                let end = thread.open.last().map_or(end, |&outer| end.min(outer));
                thread.open.push(end);
            }
            Ok(())
        })
        .await
    }

    /// A child track of the process (described the first time).
    fn child_track(&mut self, name: &str, counter: bool) -> u64 {
        let track = uuid(&[self.request.process_id.as_bytes(), name.as_bytes()]);
        if self.tracks.insert(track) {
            let mut descriptor = Message::default()
                .uint(field::UUID, track)
                .uint(field::PARENT_UUID, self.process_track)
                .text(field::NAME, name);
            if counter {
                descriptor = descriptor.message(field::COUNTER, Message::default());
            }
            self.writer.track(descriptor);
        }
        track
    }

    async fn frames(&mut self, sql: &str) -> Result<(), QueryError> {
        self.each(sql, |this, batch| {
            let begins = column::<Int64Array>(batch, "b")?;
            let ends = column::<Int64Array>(batch, "e")?;
            let track = this.child_track("Frames", false);
            for row in 0..batch.num_rows() {
                let name = Message::default().text(field::EVENT_NAME, "frame");
                this.writer
                    .event(begins.value(row), track, EventType::SliceBegin, name);
                this.writer.event(
                    ends.value(row),
                    track,
                    EventType::SliceEnd,
                    Message::default(),
                );
            }
            Ok(())
        })
        .await
    }

    async fn logs(&mut self, sql: &str) -> Result<(), QueryError> {
        self.each(sql, |this, batch| {
            let times = column::<Int64Array>(batch, "t")?;
            let bodies = text(batch, "body")?;
            let severities = text(batch, "severity")?;
            let targets = text(batch, "target")?;
            let track = this.child_track("Logs", false);
            for row in 0..batch.num_rows() {
                let event = Message::default()
                    .text(field::EVENT_NAME, bodies.value(row))
                    .message(
                        field::DEBUG_ANNOTATIONS,
                        annotation("severity", severities.value(row)),
                    )
                    .message(
                        field::DEBUG_ANNOTATIONS,
                        annotation("target", targets.value(row)),
                    );
                this.writer
                    .event(times.value(row), track, EventType::Instant, event);
            }
            Ok(())
        })
        .await
    }

    async fn metrics(&mut self, sql: &str) -> Result<(), QueryError> {
        self.each(sql, |this, batch| {
            let names = text(batch, "name")?;
            let units = text(batch, "unit")?;
            let times = column::<Int64Array>(batch, "t")?;
            let values = column::<Float64Array>(batch, "value")?;
            for row in 0..batch.num_rows() {
                let name = match units.value(row) {
                    "" => names.value(row).to_owned(),
                    unit => format!("{} ({unit})", names.value(row)),
                };
                let track = this.child_track(&name, true);
                let event =
                    Message::default().double(field::DOUBLE_COUNTER_VALUE, values.value(row));
                this.writer
                    .event(times.value(row), track, EventType::Counter, event);
            }
            Ok(())
        })
        .await
    }
}

/// A thread's track (described the first time) and open slices.
fn thread<'a>(
    threads: &'a mut HashMap<[u8; 16], (u64, Thread)>,
    writer: &mut Writer,
    process_track: u64,
    stream: [u8; 16],
    name: &str,
) -> (u64, &'a mut Thread) {
    let (track, thread) = threads.entry(stream).or_insert_with(|| {
        let track = uuid(&[&stream]);
        writer.track(
            Message::default()
                .uint(field::UUID, track)
                .uint(field::PARENT_UUID, process_track)
                .message(
                    field::THREAD,
                    Message::default()
                        .int(field::PID, small_id(process_track))
                        .int(field::TID, small_id(track))
                        .text(field::THREAD_NAME, name),
                ),
        );
        (track, Thread::default())
    });
    (*track, thread)
}

fn annotation(name: &str, value: &str) -> Message {
    Message::default()
        .text(field::ANNOTATION_NAME, name)
        .text(field::STRING_VALUE, value)
}

fn column<'a, T: 'static>(batch: &'a RecordBatch, name: &str) -> Result<&'a T, QueryError> {
    batch
        .column_by_name(name)
        .and_then(|c| c.as_any().downcast_ref::<T>())
        .ok_or_else(|| QueryError::Internal(format!("column {name} of the export's query")))
}

fn text<'a>(batch: &'a RecordBatch, name: &str) -> Result<&'a StringArray, QueryError> {
    let c = batch
        .column_by_name(name)
        .ok_or_else(|| QueryError::Internal(format!("column {name} of the export's query")))?;
    match c.data_type() {
        DataType::Utf8 => Ok(c.as_string::<i32>()),
        other => Err(QueryError::Internal(format!(
            "column {name} of the export's query is {other}"
        ))),
    }
}
