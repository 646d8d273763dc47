//! The collector: takes what every thread published (idle threads
//! included), splits logs and metrics from CPU events, keeps each thread's
//! open spans so that every block decodes on its own, samples the CPU trace
//! by frame ([`Sampling`]), measures the frames (the `frame.duration`
//! metric, in ticks) and encodes the messages to send
//! (`docs/native-format.md`).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use crate::buffer::{Descriptor, THREADS, ThreadEvents, lock};
pub use crate::sample::{FramePolicy, Sampling};
use crate::sample::{Frames, Place};
use crate::ticks;
use framelake_native_format::{
    self as format, BlockHeader, Codec, Event, Events, Id, MAX_DEPTH, PayloadParts, Process,
    Stream, StreamKind,
};

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

/// CPU trace blocks the collector dropped so far, by reason.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Dropped {
    /// Blocks of frames the sampler judged uninteresting.
    pub sampled_out: u64,
    /// Blocks dropped undecided because the sampler's ring was full.
    pub ring_full: u64,
}

/// A stream's events since its last block, and what it carries over.
struct Pending {
    stream: Stream,
    sequence: u64,
    /// Spans open at the start of the pending events, outermost first.
    open_at_start: Vec<(u64, i64)>,
    /// Spans open after them.
    open: Vec<(u64, i64)>,
    events: Vec<u8>,
    count: u32,
    descriptors: BTreeSet<u64>,
    /// The earliest and latest ticks of the events (threads' logs and
    /// metrics are appended thread by thread, not in time order).
    ticks: Option<(i64, i64)>,
}

impl Pending {
    fn new(stream: Stream) -> Self {
        Pending {
            stream,
            sequence: 0,
            open_at_start: Vec::new(),
            open: Vec::new(),
            events: Vec::new(),
            count: 0,
            descriptors: BTreeSet::new(),
            ticks: None,
        }
    }

    /// Adds an event, keeping span begins and ends well nested whatever the
    /// program did: an end closes the spans left open inside its own (spans
    /// begun while recording was being switched on or off), an end without
    /// an open span of its descriptor is dropped, and so are begins beyond
    /// the deepest nesting a block may hold.
    fn push(&mut self, event: &Event<'_>) {
        match *event {
            Event::SpanBegin { descriptor, ticks } => {
                if self.open.len() == MAX_DEPTH {
                    return;
                }
                self.open.push((descriptor, ticks));
            }
            Event::SpanEnd { descriptor, ticks } => {
                let Some(at) = self.open.iter().rposition(|&(d, _)| d == descriptor) else {
                    return;
                };
                while self.open.len() > at + 1 {
                    if let Some((inner, _)) = self.open.pop() {
                        self.append(&Event::SpanEnd {
                            descriptor: inner,
                            ticks,
                        });
                    }
                }
                self.open.pop();
            }
            _ => {}
        }
        self.append(event);
    }

    fn append(&mut self, event: &Event<'_>) {
        format::encode_event(event, &mut self.events);
        self.count += 1;
        self.descriptors.extend(descriptor_of(event));
        let t = ticks_of(event);
        let (first, last) = self.ticks.get_or_insert((t, t));
        (*first, *last) = ((*first).min(t), (*last).max(t));
    }

    /// The pending events as a block, if there are any.
    fn block(&mut self, process_id: Id) -> Option<Message> {
        let (first, last) = self.ticks?;
        // The open spans' descriptors travel too: the block decodes alone.
        let ids = self.open_at_start.iter().map(|&(id, _)| id);
        self.descriptors.extend(ids);
        let descriptors = self
            .descriptors
            .iter()
            // SAFETY: the ids in the buffers are `Descriptor::id`s.
            .map(|&id| wire_descriptor(id, unsafe { Descriptor::of(id) }))
            .collect();
        // The block begins at its first event or at the oldest span it
        // carries open (reported by this block if it ends here).
        let begin = self
            .open_at_start
            .first()
            .map_or(first, |&(_, t)| t.min(first));
        let payload = PayloadParts {
            descriptors,
            open_spans: std::mem::take(&mut self.open_at_start),
            events: &self.events,
        }
        .encode();
        let header = BlockHeader {
            codec: Codec::Lz4,
            stream_id: self.stream.stream_id,
            process_id,
            sequence: self.sequence,
            begin_ticks: begin,
            end_ticks: last.max(begin),
            calibration_ticks: ticks::now(),
            calibration_time: ticks::wall_nanos(),
            event_count: self.count,
        };
        let message = Message::Block(format::encode_block(&header, &payload));
        self.next();
        Some(message)
    }

    /// Drops the pending events as a block (its sequence number is a gap);
    /// whether there were any.
    fn discard(&mut self) -> bool {
        if self.ticks.is_none() {
            return false;
        }
        self.next();
        true
    }

    fn next(&mut self) {
        self.sequence += 1;
        self.open_at_start = self.open.clone();
        self.events.clear();
        self.count = 0;
        self.descriptors.clear();
        self.ticks = None;
    }
}

fn descriptor_of(event: &Event<'_>) -> Option<u64> {
    match *event {
        Event::SpanBegin { descriptor, .. }
        | Event::SpanEnd { descriptor, .. }
        | Event::Instant { descriptor, .. }
        | Event::Log { descriptor, .. }
        | Event::MetricInt { descriptor, .. }
        | Event::MetricFloat { descriptor, .. } => Some(descriptor),
        Event::Frame { .. } | Event::Extension { .. } => None,
    }
}

fn ticks_of(event: &Event<'_>) -> i64 {
    match *event {
        Event::SpanBegin { ticks, .. }
        | Event::SpanEnd { ticks, .. }
        | Event::Frame { ticks, .. }
        | Event::Instant { ticks, .. }
        | Event::Log { ticks, .. }
        | Event::MetricInt { ticks, .. }
        | Event::MetricFloat { ticks, .. } => ticks,
        Event::Extension { .. } => 0,
    }
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

/// Each frame's duration, in the metric stream (always sent, sampling or
/// not): at the frame's first tick, its length in ticks.
static FRAME_DURATION: Descriptor = Descriptor {
    kind: crate::DescriptorKind::Metric,
    level: 0,
    line: line!(),
    name: "frame.duration",
    target: module_path!(),
    file: file!(),
    unit: "ticks",
};

/// A thread as the collector follows it.
struct Thread {
    events: Arc<ThreadEvents>,
    pending: Pending,
    /// Sampling: CPU events of frames in progress (16 bytes each, as the
    /// thread wrote them), cut into blocks once their frame is judged.
    waiting: Vec<u8>,
}

impl Thread {
    /// Moves the waiting events before `until` (all when `None`) into
    /// blocks of one frame each: kept ones are sent, the others dropped.
    /// `full` drops them all as the ring's overflow.
    fn settle(
        &mut self,
        frames: &Frames,
        until: Option<i64>,
        full: bool,
        process_id: Id,
        out: &mut Vec<Message>,
        dropped: &mut Dropped,
    ) {
        let mut place = None;
        let mut used = 0;
        let mut cut = |pending: &mut Pending, place: Place| {
            if !full && frames.keep(place) {
                out.extend(pending.block(process_id));
            } else if pending.discard() {
                let count = if full {
                    &mut dropped.ring_full
                } else {
                    &mut dropped.sampled_out
                };
                *count += 1;
            }
        };
        for event in Events::new(&self.waiting) {
            // The bytes are this process's own: always well formed.
            let Ok(event) = event else { break };
            let ticks = ticks_of(&event);
            if until.is_some_and(|until| ticks >= until) {
                break;
            }
            let here = frames.place(ticks);
            if let Some(before) = place.filter(|&p| p != here) {
                cut(&mut self.pending, before);
            }
            place = Some(here);
            self.pending.push(&event);
            used += 16;
        }
        if let Some(last) = place {
            cut(&mut self.pending, last);
        }
        self.waiting.drain(..used);
    }

    /// The ticks of its newest waiting event (each is 16 bytes, ticks last).
    fn newest_waiting(&self) -> Option<i64> {
        let at = self.waiting.len().checked_sub(8)?;
        let ticks = self.waiting[at..].try_into().ok()?;
        Some(i64::from_le_bytes(ticks))
    }

    /// The ticks of its oldest waiting event.
    fn oldest_waiting(&self) -> Option<i64> {
        Events::new(&self.waiting)
            .next()
            .and_then(Result::ok)
            .map(|e| ticks_of(&e))
    }
}

/// Turns what threads recorded into messages.
pub struct Collector {
    process: Process,
    announced: bool,
    threads: Vec<Thread>,
    logs: Pending,
    metrics: Pending,
    scratch: Vec<u8>,
    /// The thread marking frames, and the start of its frame in progress.
    frame_thread: Option<Id>,
    frame_start: Option<i64>,
    /// When sampling by frame: the frames and their verdicts.
    frames: Option<Frames>,
    instants: Vec<i64>,
    dropped: Dropped,
}

impl Collector {
    /// A collector that sends everything ([`Sampling::All`]).
    pub fn new(process: Process) -> Self {
        Self::with_sampling(process, Sampling::All)
    }

    pub fn with_sampling(process: Process, sampling: Sampling) -> Self {
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
            frames: match sampling {
                Sampling::All => None,
                Sampling::Frames(policy) => Some(Frames::new(policy)),
            },
            frame_thread: None,
            frame_start: None,
            instants: Vec::new(),
            dropped: Dropped::default(),
        }
    }

    pub fn process(&self) -> &Process {
        &self.process
    }

    /// CPU trace blocks dropped so far by sampling.
    pub fn dropped(&self) -> Dropped {
        self.dropped
    }

    /// Takes everything published since the last call: the messages to
    /// send, in order (the process and streams before their blocks). When
    /// sampling, the events of the frame in progress wait for its end.
    pub fn collect(&mut self) -> Vec<Message> {
        self.run(false)
    }

    /// The last collection, at shutdown: the frame in progress ends now and
    /// is judged like the others, so that nothing is left waiting.
    pub fn finish(&mut self) -> Vec<Message> {
        self.run(true)
    }

    fn run(&mut self, closing: bool) -> Vec<Message> {
        let mut out = Vec::new();
        if !self.announced {
            out.push(Message::Process(self.process.encode()));
            out.push(Message::Stream(self.logs.stream.encode()));
            out.push(Message::Stream(self.metrics.stream.encode()));
            self.announced = true;
        }
        self.register_threads(&mut out);
        // The frame thread first: what other threads recorded before its
        // latest marker is then published, and lands in its frame.
        let first = self
            .frame_thread
            .and_then(|id| self.threads.iter().position(|t| t.events.stream_id == id));
        let order = first
            .into_iter()
            .chain((0..self.threads.len()).filter(|&i| Some(i) != first));
        let process_id = self.process.process_id;
        for i in order.collect::<Vec<_>>() {
            self.take(i);
        }
        match &mut self.frames {
            None => {
                for thread in &mut self.threads {
                    out.extend(thread.pending.block(process_id));
                }
            }
            Some(frames) => {
                for ticks in self.instants.drain(..) {
                    frames.instant(ticks);
                }
                // Frames end with the frame thread, or at shutdown.
                let ended = self.frame_thread.and_then(|id| {
                    let t = self.threads.iter().find(|t| t.events.stream_id == id)?;
                    let ended =
                        t.events.ended.load(Ordering::Acquire) && lock(&t.events.chunks).is_empty();
                    ended.then(|| t.newest_waiting().map_or_else(ticks::now, |t| t + 1))
                });
                if let Some(end) = ended.or(closing.then(ticks::now)) {
                    frames.end(end);
                }
                frames.judge();
                let until = frames.complete_before();
                for thread in &mut self.threads {
                    thread.settle(
                        frames,
                        until,
                        false,
                        process_id,
                        &mut out,
                        &mut self.dropped,
                    );
                }
                // Bounded: beyond the ring's budget, the oldest waiting
                // events are dropped undecided.
                let mut held: usize = self.threads.iter().map(|t| t.waiting.len()).sum();
                while held > frames.policy().ring_bytes {
                    let Some(oldest) = self
                        .threads
                        .iter_mut()
                        .filter(|t| !t.waiting.is_empty())
                        .min_by_key(|t| t.oldest_waiting())
                    else {
                        break;
                    };
                    held -= oldest.waiting.len();
                    oldest.settle(frames, None, true, process_id, &mut out, &mut self.dropped);
                }
            }
        }
        out.extend(self.logs.block(process_id));
        out.extend(self.metrics.block(process_id));
        self.forget_ended_threads();
        out
    }

    fn register_threads(&mut self, out: &mut Vec<Message>) {
        for thread in lock(&THREADS).iter() {
            if self
                .threads
                .iter()
                .any(|t| t.events.stream_id == thread.stream_id)
            {
                continue;
            }
            let stream = Stream {
                kind: StreamKind::Thread,
                stream_id: thread.stream_id,
                process_id: self.process.process_id,
                thread_id: thread.thread_id,
                name: thread.name.clone(),
                properties: Vec::new(),
            };
            out.push(Message::Stream(stream.encode()));
            self.threads.push(Thread {
                events: Arc::clone(thread),
                pending: Pending::new(stream),
                waiting: Vec::new(),
            });
        }
    }

    /// Takes what thread `i` published: logs and metrics to their streams,
    /// CPU events to the thread's block (or to wait for their frame).
    fn take(&mut self, i: usize) {
        let thread = &mut self.threads[i];
        self.scratch.clear();
        {
            let mut chunks = lock(&thread.events.chunks);
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
                Event::Log { .. } => self.logs.push(&event),
                Event::MetricInt { .. } | Event::MetricFloat { .. } => self.metrics.push(&event),
                Event::Extension { .. } => {}
                Event::SpanBegin { .. }
                | Event::SpanEnd { .. }
                | Event::Frame { .. }
                | Event::Instant { .. } => {
                    let id = thread.events.stream_id;
                    match event {
                        Event::Frame { ticks, .. }
                            if *self.frame_thread.get_or_insert(id) == id =>
                        {
                            if let Some(start) = self.frame_start.filter(|&s| s < ticks) {
                                self.metrics.push(&Event::MetricInt {
                                    descriptor: FRAME_DURATION.id(),
                                    ticks: start,
                                    value: ticks - start,
                                });
                            }
                            self.frame_start = Some(ticks);
                            if let Some(frames) = &mut self.frames {
                                frames.begin(ticks);
                            }
                        }
                        Event::Instant { ticks, .. } if self.frames.is_some() => {
                            self.instants.push(ticks);
                        }
                        _ => {}
                    }
                    match self.frames {
                        Some(_) => format::encode_event(&event, &mut thread.waiting),
                        None => thread.pending.push(&event),
                    }
                }
            }
        }
    }

    /// Threads that ended and were taken whole are done.
    fn forget_ended_threads(&mut self) {
        let (frame_thread, frame_start) = (&mut self.frame_thread, &mut self.frame_start);
        self.threads.retain(|thread| {
            let events = &thread.events;
            let gone = events.ended.load(Ordering::Acquire)
                && thread.waiting.is_empty()
                && lock(&events.chunks).is_empty();
            if gone {
                lock(&THREADS).retain(|t| !Arc::ptr_eq(t, events));
                // Another thread may mark frames from now on.
                if *frame_thread == Some(events.stream_id) {
                    (*frame_thread, *frame_start) = (None, None);
                }
            }
            !gone
        });
    }
}
