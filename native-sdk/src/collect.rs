//! The collector: takes what every thread published (idle threads
//! included), splits logs and metrics from CPU events, keeps each thread's
//! open spans so that every block decodes on its own, and encodes the
//! messages to send (`docs/native-format.md`).

use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use crate::buffer::{Descriptor, THREADS, ThreadEvents, lock};
use crate::format::{
    self, BlockHeader, Codec, Event, Events, Id, PayloadParts, Process, Stream, StreamKind,
};
use crate::ticks;

/// A message for the server, encoded, with the endpoint it goes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    Process(Vec<u8>),
    Stream(Vec<u8>),
    Block(Vec<u8>),
}

impl Message {
    /// The path it is posted to.
    pub fn path(&self) -> &'static str {
        match self {
            Message::Process(_) => "/v1/native/process",
            Message::Stream(_) => "/v1/native/stream",
            Message::Block(_) => "/v1/native/block",
        }
    }

    pub fn body(&self) -> &[u8] {
        match self {
            Message::Process(b) | Message::Stream(b) | Message::Block(b) => b,
        }
    }
}

/// A stream's events since the last block, and what it carries over.
struct Pending {
    stream: Stream,
    announced: bool,
    sequence: u64,
    /// Spans open at the start of the pending events, outermost first.
    open_at_start: Vec<(u64, i64)>,
    /// Spans open after them.
    open: Vec<(u64, i64)>,
    events: Vec<u8>,
    count: u32,
    descriptors: BTreeSet<u64>,
    first_ticks: Option<i64>,
    last_ticks: i64,
}

impl Pending {
    fn new(stream: Stream) -> Self {
        Pending {
            stream,
            announced: false,
            sequence: 0,
            open_at_start: Vec::new(),
            open: Vec::new(),
            events: Vec::new(),
            count: 0,
            descriptors: BTreeSet::new(),
            first_ticks: None,
            last_ticks: 0,
        }
    }

    fn push(&mut self, event: &Event<'_>, descriptor: Option<u64>, ticks: i64) {
        format::encode_event(event, &mut self.events);
        self.count += 1;
        self.descriptors.extend(descriptor);
        self.first_ticks.get_or_insert(ticks);
        self.last_ticks = ticks;
        match *event {
            Event::SpanBegin { descriptor, ticks } => self.open.push((descriptor, ticks)),
            Event::SpanEnd { .. } => {
                self.open.pop();
            }
            _ => {}
        }
    }

    /// The stream's registration (first time) and its pending events as a block.
    fn take(&mut self, process_id: Id, out: &mut Vec<Message>) {
        if !self.announced {
            out.push(Message::Stream(self.stream.encode()));
            self.announced = true;
        }
        if self.count == 0 {
            return;
        }
        let descriptors = self
            .descriptors
            .iter()
            // SAFETY: the ids in the buffers are `Descriptor::id`s.
            .map(|&id| wire_descriptor(id, unsafe { Descriptor::of(id) }))
            .collect();
        let payload = PayloadParts {
            descriptors,
            open_spans: std::mem::take(&mut self.open_at_start),
            events: &self.events,
        }
        .encode();
        let first = self.first_ticks.take().unwrap_or(self.last_ticks);
        let begin = payload_begin(first, &self.open);
        let header = BlockHeader {
            codec: Codec::Lz4,
            stream_id: self.stream.stream_id,
            process_id,
            sequence: self.sequence,
            begin_ticks: begin,
            end_ticks: self.last_ticks.max(begin),
            calibration_ticks: ticks::now(),
            calibration_time: ticks::wall_nanos(),
            event_count: self.count,
        };
        out.push(Message::Block(format::encode_block(&header, &payload)));
        self.sequence += 1;
        self.open_at_start = self.open.clone();
        self.events.clear();
        self.count = 0;
        self.descriptors.clear();
    }
}

/// A block begins at its first event, or at the oldest span still open.
fn payload_begin(first: i64, open: &[(u64, i64)]) -> i64 {
    open.first().map_or(first, |&(_, t)| t.min(first))
}

fn wire_descriptor(id: u64, d: &Descriptor) -> format::Descriptor {
    format::Descriptor {
        id,
        kind: d.kind,
        level: d.level,
        line: d.line,
        name: d.name.to_owned(),
        target: d.target.to_owned(),
        file: d.file.to_owned(),
        unit: d.unit.to_owned(),
    }
}

/// Turns what threads recorded into messages.
pub struct Collector {
    process: Process,
    announced: bool,
    threads: Vec<(Arc<ThreadEvents>, Pending)>,
    logs: Pending,
    metrics: Pending,
    scratch: Vec<u8>,
}

impl Collector {
    pub fn new(process: Process) -> Self {
        let stream = |kind, name: &str| Stream {
            kind,
            stream_id: crate::ids::random_id(),
            process_id: process.process_id,
            thread_id: 0,
            name: name.to_owned(),
            properties: Vec::new(),
        };
        Collector {
            logs: Pending::new(stream(StreamKind::Log, "log")),
            metrics: Pending::new(stream(StreamKind::Metric, "metrics")),
            process,
            announced: false,
            threads: Vec::new(),
            scratch: Vec::new(),
        }
    }

    pub fn process(&self) -> &Process {
        &self.process
    }

    /// Takes everything published since the last call: the messages to
    /// send, in order (the process and streams before their blocks).
    pub fn collect(&mut self) -> Vec<Message> {
        let mut out = Vec::new();
        if !self.announced {
            out.push(Message::Process(self.process.encode()));
            self.announced = true;
        }
        let known: HashSet<Id> = self.threads.iter().map(|(t, _)| t.stream_id).collect();
        for thread in lock(&THREADS).iter() {
            if !known.contains(&thread.stream_id) {
                let stream = Stream {
                    kind: StreamKind::Thread,
                    stream_id: thread.stream_id,
                    process_id: self.process.process_id,
                    thread_id: thread.thread_id,
                    name: thread.name.clone(),
                    properties: Vec::new(),
                };
                self.threads
                    .push((Arc::clone(thread), Pending::new(stream)));
            }
        }
        let process_id = self.process.process_id;
        for (thread, pending) in &mut self.threads {
            self.scratch.clear();
            {
                let mut chunks = lock(&thread.chunks);
                while let Some(chunk) = chunks.front() {
                    let (bytes, done) = chunk.take();
                    self.scratch.extend_from_slice(bytes);
                    if !done {
                        break;
                    }
                    chunks.pop_front();
                }
            }
            for event in Events::new(&self.scratch) {
                // The bytes are this process's own: always well formed.
                let Ok(event) = event else { break };
                match event {
                    Event::SpanBegin { descriptor, ticks }
                    | Event::SpanEnd { descriptor, ticks }
                    | Event::Instant { descriptor, ticks } => {
                        pending.push(&event, Some(descriptor), ticks);
                    }
                    Event::Frame { ticks, .. } => pending.push(&event, None, ticks),
                    Event::Log {
                        descriptor, ticks, ..
                    } => {
                        self.logs.push(&event, Some(descriptor), ticks);
                    }
                    Event::MetricInt {
                        descriptor, ticks, ..
                    }
                    | Event::MetricFloat {
                        descriptor, ticks, ..
                    } => {
                        self.metrics.push(&event, Some(descriptor), ticks);
                    }
                    Event::Extension { .. } => {}
                }
            }
            pending.take(process_id, &mut out);
        }
        self.logs.take(process_id, &mut out);
        self.metrics.take(process_id, &mut out);
        // Threads that ended and were taken whole are done.
        self.threads.retain(|(thread, _)| {
            let gone = thread.ended.load(Ordering::Acquire) && lock(&thread.chunks).is_empty();
            if gone {
                lock(&THREADS).retain(|t| !Arc::ptr_eq(t, thread));
            }
            !gone
        });
        out
    }
}
