//! The native wire format, version 1 (`docs/native-format.md`): processes,
//! streams and blocks of fixed-layout little-endian events. Encoding for the
//! SDK, strict decoding for the receiver and the query side.

/// Magic of a process message.
pub const PROCESS_MAGIC: [u8; 4] = *b"FLNP";
/// Magic of a stream message.
pub const STREAM_MAGIC: [u8; 4] = *b"FLNS";
/// Magic of a block message.
pub const BLOCK_MAGIC: [u8; 4] = *b"FLNB";
/// The version this crate writes and reads.
pub const VERSION: u16 = 1;
/// Most events or descriptors one block may hold.
pub const MAX_BLOCK_ITEMS: usize = 1 << 20;
/// Deepest span nesting a block may hold.
pub const MAX_DEPTH: usize = 1024;
/// Largest uncompressed payload a block may declare.
pub const MAX_PAYLOAD: usize = 64 << 20;

/// Event kinds: the low 3 bits of an event's first word.
pub mod kind {
    pub const SPAN_BEGIN: u64 = 0;
    pub const SPAN_END: u64 = 1;
    pub const FRAME: u64 = 2;
    pub const METRIC_INT: u64 = 3;
    pub const METRIC_FLOAT: u64 = 4;
    pub const LOG: u64 = 5;
    pub const INSTANT: u64 = 6;
    pub const EXTENSION: u64 = 7;
}

/// Why bytes are not a valid message, naming what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what}: {reason}")]
pub struct FormatError {
    /// The message part or field at fault, e.g. `block payload event 12`.
    pub what: String,
    pub reason: String,
}

fn error(what: impl Into<String>, reason: impl Into<String>) -> FormatError {
    FormatError {
        what: what.into(),
        reason: reason.into(),
    }
}

/// A 16-byte process or stream id.
pub type Id = [u8; 16];

/// A process: sent once, before its streams.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Process {
    pub process_id: Id,
    /// All zero when none.
    pub parent_process_id: Id,
    /// Unix nanoseconds when `start_ticks` was read.
    pub start_time: i64,
    pub start_ticks: i64,
    /// Ticks per second; 0 when unknown (the server estimates it).
    pub tick_frequency: u64,
    pub exe: String,
    pub username: String,
    pub computer: String,
    pub distro: String,
    pub cpu_brand: String,
    pub properties: Vec<(String, String)>,
}

/// What a stream carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StreamKind {
    /// A thread's CPU spans, frame markers and instants.
    Thread = 1,
    Log = 2,
    Metric = 3,
}

impl StreamKind {
    pub fn of(code: u16) -> Option<Self> {
        match code {
            1 => Some(StreamKind::Thread),
            2 => Some(StreamKind::Log),
            3 => Some(StreamKind::Metric),
            _ => None,
        }
    }
}

/// A process's clock: ticks to Unix nanoseconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Clock {
    pub start_time: i64,
    pub start_ticks: i64,
    /// Ticks per second; 0 when neither the SDK nor a calibration knows.
    pub frequency: f64,
}

impl Clock {
    /// The process's own frequency, else one estimated from a calibration
    /// point (a block's: ticks and nanoseconds elapsed since the start).
    pub fn of(process: &Process, calibration_ticks: i64, calibration_time: i64) -> Clock {
        let frequency = if process.tick_frequency > 0 {
            process.tick_frequency as f64
        } else {
            let (ticks, nanos) = (
                calibration_ticks.saturating_sub(process.start_ticks),
                calibration_time.saturating_sub(process.start_time),
            );
            if ticks > 0 && nanos > 0 {
                ticks as f64 * 1e9 / nanos as f64
            } else {
                0.0
            }
        };
        Clock {
            start_time: process.start_time,
            start_ticks: process.start_ticks,
            frequency,
        }
    }

    /// Unix nanoseconds at `ticks` (the start when the frequency is unknown).
    pub fn time(&self, ticks: i64) -> i64 {
        if self.frequency <= 0.0 {
            return self.start_time;
        }
        let elapsed = ticks.saturating_sub(self.start_ticks) as f64 * 1e9 / self.frequency;
        self.start_time.saturating_add(elapsed as i64)
    }
}

/// A stream of a process: one per instrumented thread, one for logs, one for metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stream {
    pub kind: StreamKind,
    pub stream_id: Id,
    pub process_id: Id,
    /// The OS thread id; 0 for log and metric streams.
    pub thread_id: u64,
    pub name: String,
    pub properties: Vec<(String, String)>,
}

/// How a block's payload is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    None = 0,
    /// LZ4 block format, no frame.
    Lz4 = 1,
}

/// A block's header: everything but its payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockHeader {
    pub codec: Codec,
    pub stream_id: Id,
    pub process_id: Id,
    /// The block's number in its stream, from 0 (gaps are dropped blocks).
    pub sequence: u64,
    pub begin_ticks: i64,
    pub end_ticks: i64,
    /// The tick counter read when the block was cut, and the Unix
    /// nanoseconds read right after: a point to estimate the tick frequency.
    pub calibration_ticks: i64,
    pub calibration_time: i64,
    pub event_count: u32,
}

/// Size of a block message's header, before its payload.
pub const BLOCK_HEADER_LEN: usize = 4 + 2 + 2 + 16 + 16 + 8 * 5 + 4 * 3;

/// What a descriptor describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DescriptorKind {
    Span = 1,
    Log = 2,
    Metric = 3,
    Instant = 4,
}

impl DescriptorKind {
    fn of(code: u8) -> Option<Self> {
        match code {
            1 => Some(DescriptorKind::Span),
            2 => Some(DescriptorKind::Log),
            3 => Some(DescriptorKind::Metric),
            4 => Some(DescriptorKind::Instant),
            _ => None,
        }
    }
}

/// The static part of events: name, place in the source, level or unit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Descriptor {
    /// Non-zero, low 3 bits zero, unique in the process.
    pub id: u64,
    pub kind: DescriptorKind,
    /// Logs: 1 error, 2 warn, 3 info, 4 debug, 5 trace; 0 otherwise.
    pub level: u8,
    pub line: u32,
    pub name: String,
    pub target: String,
    pub file: String,
    pub unit: String,
}

/// One decoded event.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Event<'a> {
    SpanBegin {
        descriptor: u64,
        ticks: i64,
    },
    SpanEnd {
        descriptor: u64,
        ticks: i64,
    },
    Frame {
        number: u64,
        ticks: i64,
    },
    MetricInt {
        descriptor: u64,
        ticks: i64,
        value: i64,
    },
    MetricFloat {
        descriptor: u64,
        ticks: i64,
        value: f64,
    },
    Log {
        descriptor: u64,
        ticks: i64,
        message: &'a str,
    },
    Instant {
        descriptor: u64,
        ticks: i64,
    },
    /// An extension this version does not know: skipped.
    Extension {
        kind: u64,
        bytes: &'a [u8],
    },
}

/// Appends an event's bytes (the layout the SDK's threads write).
pub fn encode_event(event: &Event<'_>, out: &mut Vec<u8>) {
    let mut words = |w: &[u64]| {
        for w in w {
            out.extend_from_slice(&w.to_le_bytes());
        }
    };
    match *event {
        Event::SpanBegin { descriptor, ticks } => {
            words(&[descriptor | kind::SPAN_BEGIN, ticks as u64])
        }
        Event::SpanEnd { descriptor, ticks } => words(&[descriptor | kind::SPAN_END, ticks as u64]),
        Event::Frame { number, ticks } => words(&[number << 3 | kind::FRAME, ticks as u64]),
        Event::MetricInt {
            descriptor,
            ticks,
            value,
        } => words(&[descriptor | kind::METRIC_INT, ticks as u64, value as u64]),
        Event::MetricFloat {
            descriptor,
            ticks,
            value,
        } => words(&[
            descriptor | kind::METRIC_FLOAT,
            ticks as u64,
            value.to_bits(),
        ]),
        Event::Instant { descriptor, ticks } => words(&[descriptor | kind::INSTANT, ticks as u64]),
        Event::Log {
            descriptor,
            ticks,
            message,
        } => {
            words(&[descriptor | kind::LOG, ticks as u64, message.len() as u64]);
            padded(message.as_bytes(), out);
        }
        Event::Extension { kind: k, bytes } => {
            words(&[k << 3 | kind::EXTENSION, bytes.len() as u64]);
            padded(bytes, out);
        }
    }
}

fn padded(bytes: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(bytes);
    out.resize(out.len() + padding(bytes.len()), 0);
}

/// Zero bytes after `len` bytes up to a multiple of 8.
pub const fn padding(len: usize) -> usize {
    (8 - len % 8) % 8
}

// ---------------------------------------------------------------- encoding

fn put_str(s: &str, out: &mut Vec<u8>) {
    out.extend_from_slice(&(s.len() as u32).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn put_props(props: &[(String, String)], out: &mut Vec<u8>) {
    out.extend_from_slice(&(props.len() as u32).to_le_bytes());
    for (k, v) in props {
        put_str(k, out);
        put_str(v, out);
    }
}

impl Process {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(128);
        out.extend_from_slice(&PROCESS_MAGIC);
        out.extend_from_slice(&VERSION.to_le_bytes());
        out.extend_from_slice(&0u16.to_le_bytes());
        out.extend_from_slice(&self.process_id);
        out.extend_from_slice(&self.parent_process_id);
        out.extend_from_slice(&self.start_time.to_le_bytes());
        out.extend_from_slice(&self.start_ticks.to_le_bytes());
        out.extend_from_slice(&self.tick_frequency.to_le_bytes());
        for s in [
            &self.exe,
            &self.username,
            &self.computer,
            &self.distro,
            &self.cpu_brand,
        ] {
            put_str(s, &mut out);
        }
        put_props(&self.properties, &mut out);
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, FormatError> {
        let mut r = Reader::new(bytes, "process");
        r.magic(PROCESS_MAGIC)?;
        r.version()?;
        r.u16("reserved")?;
        let process = Process {
            process_id: r.id("process_id")?,
            parent_process_id: r.id("parent_process_id")?,
            start_time: r.i64("start_time")?,
            start_ticks: r.i64("start_ticks")?,
            tick_frequency: r.u64("tick_frequency")?,
            exe: r.string("exe")?,
            username: r.string("username")?,
            computer: r.string("computer")?,
            distro: r.string("distro")?,
            cpu_brand: r.string("cpu_brand")?,
            properties: r.props()?,
        };
        r.end()?;
        Ok(process)
    }
}

impl Stream {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64);
        out.extend_from_slice(&STREAM_MAGIC);
        out.extend_from_slice(&VERSION.to_le_bytes());
        out.extend_from_slice(&(self.kind as u16).to_le_bytes());
        out.extend_from_slice(&self.stream_id);
        out.extend_from_slice(&self.process_id);
        out.extend_from_slice(&self.thread_id.to_le_bytes());
        put_str(&self.name, &mut out);
        put_props(&self.properties, &mut out);
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, FormatError> {
        let mut r = Reader::new(bytes, "stream");
        r.magic(STREAM_MAGIC)?;
        r.version()?;
        let code = r.u16("kind")?;
        let kind = StreamKind::of(code)
            .ok_or_else(|| error("stream kind", format!("unknown kind {code}")))?;
        let stream = Stream {
            kind,
            stream_id: r.id("stream_id")?,
            process_id: r.id("process_id")?,
            thread_id: r.u64("thread_id")?,
            name: r.string("name")?,
            properties: r.props()?,
        };
        r.end()?;
        Ok(stream)
    }
}

/// The uncompressed payload of a block: its descriptors, the spans open at
/// its start, and its events' bytes.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PayloadParts<'a> {
    pub descriptors: Vec<Descriptor>,
    /// (descriptor id, begin ticks), outermost first.
    pub open_spans: Vec<(u64, i64)>,
    /// Events, encoded (see [`encode_event`]).
    pub events: &'a [u8],
}

impl PayloadParts<'_> {
    /// The payload's bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.events.len() + 64 * self.descriptors.len() + 16);
        out.extend_from_slice(&(self.descriptors.len() as u32).to_le_bytes());
        for d in &self.descriptors {
            out.extend_from_slice(&d.id.to_le_bytes());
            out.push(d.kind as u8);
            out.push(d.level);
            out.extend_from_slice(&0u16.to_le_bytes());
            out.extend_from_slice(&d.line.to_le_bytes());
            for s in [&d.name, &d.target, &d.file, &d.unit] {
                put_str(s, &mut out);
            }
        }
        out.extend_from_slice(&(self.open_spans.len() as u32).to_le_bytes());
        for (id, ticks) in &self.open_spans {
            out.extend_from_slice(&id.to_le_bytes());
            out.extend_from_slice(&ticks.to_le_bytes());
        }
        out.extend_from_slice(self.events);
        out
    }
}

/// Encodes a block message: `header` (its `codec` says how to compress;
/// the lengths are computed) and its uncompressed `payload`.
pub fn encode_block(header: &BlockHeader, payload: &[u8]) -> Vec<u8> {
    let compressed;
    let body: &[u8] = match header.codec {
        Codec::None => payload,
        Codec::Lz4 => {
            compressed = lz4_flex::block::compress(payload);
            &compressed
        }
    };
    let mut out = Vec::with_capacity(BLOCK_HEADER_LEN + body.len());
    out.extend_from_slice(&BLOCK_MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&(header.codec as u16).to_le_bytes());
    out.extend_from_slice(&header.stream_id);
    out.extend_from_slice(&header.process_id);
    for v in [
        header.sequence as i64,
        header.begin_ticks,
        header.end_ticks,
        header.calibration_ticks,
        header.calibration_time,
    ] {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out.extend_from_slice(&header.event_count.to_le_bytes());
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(body);
    out
}

// ---------------------------------------------------------------- decoding

/// Reads a block message's header and inflates its payload, checking every
/// length.
pub fn decode_block(bytes: &[u8]) -> Result<(BlockHeader, Vec<u8>), FormatError> {
    let mut r = Reader::new(bytes, "block");
    r.magic(BLOCK_MAGIC)?;
    r.version()?;
    let codec = match r.u16("codec")? {
        0 => Codec::None,
        1 => Codec::Lz4,
        other => return Err(error("block codec", format!("unknown codec {other}"))),
    };
    let header = BlockHeader {
        codec,
        stream_id: r.id("stream_id")?,
        process_id: r.id("process_id")?,
        sequence: r.u64("sequence")?,
        begin_ticks: r.i64("begin_ticks")?,
        end_ticks: r.i64("end_ticks")?,
        calibration_ticks: r.i64("calibration_ticks")?,
        calibration_time: r.i64("calibration_time")?,
        event_count: r.u32("event_count")?,
    };
    let uncompressed = r.u32("uncompressed_length")? as usize;
    let length = r.u32("payload_length")? as usize;
    let body = r.bytes(length, "payload")?;
    r.end()?;
    if uncompressed > MAX_PAYLOAD {
        return Err(error(
            "block uncompressed_length",
            format!("{uncompressed} bytes is more than the {MAX_PAYLOAD} a block may hold"),
        ));
    }
    // LZ4 inflates 255 times at most: a block claiming more is refused
    // before its buffer is allocated (a few bytes must not cost 64 MiB).
    if codec == Codec::Lz4 && uncompressed > length.saturating_mul(255).saturating_add(64) {
        return Err(error(
            "block uncompressed_length",
            format!("{uncompressed} bytes cannot inflate from {length} bytes of LZ4"),
        ));
    }
    if header.end_ticks < header.begin_ticks {
        return Err(error("block end_ticks", "before begin_ticks"));
    }
    let payload = match codec {
        Codec::None if length != uncompressed => {
            return Err(error(
                "block payload",
                format!("{length} bytes, uncompressed_length says {uncompressed}"),
            ));
        }
        Codec::None => body.to_vec(),
        Codec::Lz4 => {
            let mut out = vec![0; uncompressed];
            match lz4_flex::block::decompress_into(body, &mut out) {
                Ok(n) if n == uncompressed => out,
                Ok(n) => {
                    return Err(error(
                        "block payload",
                        format!("inflates to {n} bytes, uncompressed_length says {uncompressed}"),
                    ));
                }
                Err(e) => return Err(error("block payload", format!("not LZ4: {e}"))),
            }
        }
    };
    Ok((header, payload))
}

/// A block's descriptors, by id: sorted, looked up by binary search (a
/// block names a few dozen; no hashing per event, and no input makes a
/// lookup slow).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Descriptors(Vec<Descriptor>);

impl Descriptors {
    /// Refuses two descriptors with one id.
    fn new(mut descriptors: Vec<Descriptor>) -> Result<Self, FormatError> {
        descriptors.sort_unstable_by_key(|d| d.id);
        if let Some(w) = descriptors.windows(2).find(|w| w[0].id == w[1].id) {
            return Err(error(
                "block payload descriptors",
                format!("id {:#x} twice", w[0].id),
            ));
        }
        Ok(Descriptors(descriptors))
    }

    /// Where a descriptor is in [`Descriptors::values`].
    pub fn position(&self, id: u64) -> Option<usize> {
        self.0.binary_search_by_key(&id, |d| d.id).ok()
    }

    pub fn get(&self, id: &u64) -> Option<&Descriptor> {
        self.position(*id).map(|i| &self.0[i])
    }

    /// The descriptors, by id.
    pub fn values(&self) -> std::slice::Iter<'_, Descriptor> {
        self.0.iter()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl std::ops::Index<&u64> for Descriptors {
    type Output = Descriptor;

    /// The descriptor of an id an event of the checked payload names.
    fn index(&self, id: &u64) -> &Descriptor {
        self.get(id)
            .expect("a checked payload names only its descriptors")
    }
}

/// A block's payload, checked: every event whole and of a known layout,
/// every descriptor an event names present and of the right kind, span
/// begins and ends well nested from the open spans.
#[derive(Debug, Clone)]
pub struct Payload<'a> {
    pub descriptors: Descriptors,
    pub open_spans: Vec<(u64, i64)>,
    events: &'a [u8],
    pub event_count: usize,
}

impl<'a> Payload<'a> {
    pub fn parse(bytes: &'a [u8]) -> Result<Self, FormatError> {
        let mut r = Reader::new(bytes, "block payload");
        let count = r.count("descriptor count")?;
        let mut descriptors = Vec::with_capacity(count);
        for i in 0..count {
            let id = r.u64("descriptor id")?;
            let code = r.u8("descriptor kind")?;
            let kind = DescriptorKind::of(code)
                .ok_or_else(|| error(format!("descriptor {i}"), format!("unknown kind {code}")))?;
            let level = r.u8("descriptor level")?;
            r.u16("descriptor reserved")?;
            let d = Descriptor {
                id,
                kind,
                level,
                line: r.u32("descriptor line")?,
                name: r.string("descriptor name")?,
                target: r.string("descriptor target")?,
                file: r.string("descriptor file")?,
                unit: r.string("descriptor unit")?,
            };
            if id == 0 || id & 7 != 0 {
                return Err(error(
                    format!("descriptor {i}"),
                    format!("id {id:#x} is zero or has its low 3 bits set"),
                ));
            }
            descriptors.push(d);
        }
        let descriptors = Descriptors::new(descriptors)?;
        let open = r.count("open span count")?;
        if open > MAX_DEPTH {
            return Err(error(
                "open spans",
                format!("{open} nest deeper than {MAX_DEPTH}"),
            ));
        }
        let mut open_spans = Vec::with_capacity(open);
        for _ in 0..open {
            open_spans.push((r.u64("open span descriptor")?, r.i64("open span begin")?));
        }
        let events = r.rest();
        let mut payload = Payload {
            descriptors,
            open_spans,
            events,
            event_count: 0,
        };
        for (id, _) in &payload.open_spans {
            payload.expect(*id, DescriptorKind::Span, || "an open span".to_owned())?;
        }
        // Check the whole sequence once, so that readers need not.
        let mut depth = payload.open_spans.clone();
        for event in payload.events() {
            let event = event?;
            let n = payload.event_count;
            let at = || format!("block payload event {n}");
            match event {
                Event::SpanBegin { descriptor, ticks } => {
                    payload.expect(descriptor, DescriptorKind::Span, at)?;
                    if depth.len() == MAX_DEPTH {
                        return Err(error(at(), format!("spans nest deeper than {MAX_DEPTH}")));
                    }
                    depth.push((descriptor, ticks));
                }
                Event::SpanEnd { descriptor, .. } => match depth.pop() {
                    Some((open, _)) if open == descriptor => {}
                    Some((open, _)) => {
                        return Err(error(
                            at(),
                            format!("ends span {descriptor:#x} but {open:#x} is the innermost"),
                        ));
                    }
                    None => return Err(error(at(), "ends a span when none is open")),
                },
                Event::MetricInt { descriptor, .. } | Event::MetricFloat { descriptor, .. } => {
                    payload.expect(descriptor, DescriptorKind::Metric, at)?;
                }
                Event::Log { descriptor, .. } => {
                    payload.expect(descriptor, DescriptorKind::Log, at)?;
                }
                Event::Instant { descriptor, .. } => {
                    payload.expect(descriptor, DescriptorKind::Instant, at)?;
                }
                Event::Frame { .. } | Event::Extension { .. } => {}
            }
            payload.event_count += 1;
            if payload.event_count > MAX_BLOCK_ITEMS {
                return Err(error(
                    "block payload",
                    format!("more than {MAX_BLOCK_ITEMS} events"),
                ));
            }
        }
        Ok(payload)
    }

    fn expect(
        &self,
        id: u64,
        kind: DescriptorKind,
        what: impl FnOnce() -> String,
    ) -> Result<(), FormatError> {
        match self.descriptors.get(&id) {
            Some(d) if d.kind == kind => Ok(()),
            Some(d) => Err(error(
                what(),
                format!("descriptor {id:#x} is a {:?}, not a {kind:?}", d.kind),
            )),
            None => Err(error(
                what(),
                format!("descriptor {id:#x} is not in the block"),
            )),
        }
    }

    /// The events, in order.
    pub fn events(&self) -> Events<'a> {
        Events {
            bytes: self.events,
            pos: 0,
        }
    }
}

/// An iterator over encoded events; an error ends it.
#[derive(Debug, Clone)]
pub struct Events<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Events<'a> {
    pub fn new(bytes: &'a [u8]) -> Self {
        Events { bytes, pos: 0 }
    }

    fn word(&mut self) -> Option<u64> {
        let w = self.bytes.get(self.pos..self.pos + 8)?;
        self.pos += 8;
        Some(u64::from_le_bytes(w.try_into().ok()?))
    }

    fn padded(&mut self, len: u64) -> Option<&'a [u8]> {
        let len = usize::try_from(len).ok()?;
        let end = self.pos.checked_add(len)?;
        let bytes = self.bytes.get(self.pos..end)?;
        let padded = end.checked_add(padding(len))?;
        self.bytes.get(end..padded)?;
        self.pos = padded;
        Some(bytes)
    }

    fn next_event(&mut self) -> Result<Event<'a>, String> {
        let short = || "cut short".to_owned();
        let w0 = self.word().ok_or_else(short)?;
        let id = w0 & !7;
        let mut ticks = || self.word().map(|t| t as i64).ok_or_else(short);
        Ok(match w0 & 7 {
            kind::SPAN_BEGIN => Event::SpanBegin {
                descriptor: id,
                ticks: ticks()?,
            },
            kind::SPAN_END => Event::SpanEnd {
                descriptor: id,
                ticks: ticks()?,
            },
            kind::FRAME => Event::Frame {
                number: w0 >> 3,
                ticks: ticks()?,
            },
            kind::INSTANT => Event::Instant {
                descriptor: id,
                ticks: ticks()?,
            },
            kind::METRIC_INT => {
                let ticks = ticks()?;
                Event::MetricInt {
                    descriptor: id,
                    ticks,
                    value: self.word().ok_or_else(short)? as i64,
                }
            }
            kind::METRIC_FLOAT => {
                let ticks = ticks()?;
                Event::MetricFloat {
                    descriptor: id,
                    ticks,
                    value: f64::from_bits(self.word().ok_or_else(short)?),
                }
            }
            kind::LOG => {
                let ticks = ticks()?;
                let len = self.word().ok_or_else(short)?;
                let bytes = self.padded(len).ok_or_else(short)?;
                let message = std::str::from_utf8(bytes)
                    .map_err(|e| format!("log message is not UTF-8: {e}"))?;
                Event::Log {
                    descriptor: id,
                    ticks,
                    message,
                }
            }
            _ => {
                let len = self.word().ok_or_else(short)?;
                Event::Extension {
                    kind: w0 >> 3,
                    bytes: self.padded(len).ok_or_else(short)?,
                }
            }
        })
    }
}

impl<'a> Iterator for Events<'a> {
    type Item = Result<Event<'a>, FormatError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.pos >= self.bytes.len() {
            return None;
        }
        let at = self.pos;
        match self.next_event() {
            Ok(event) => Some(Ok(event)),
            Err(reason) => {
                self.pos = self.bytes.len();
                Some(Err(error(
                    format!("block payload event at byte {at}"),
                    reason,
                )))
            }
        }
    }
}

/// A cursor over a message's fields.
struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
    message: &'static str,
}

impl<'a> Reader<'a> {
    fn new(bytes: &'a [u8], message: &'static str) -> Self {
        Reader {
            bytes,
            pos: 0,
            message,
        }
    }

    fn bytes(&mut self, n: usize, field: &str) -> Result<&'a [u8], FormatError> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.bytes.len());
        let Some(end) = end else {
            return Err(error(
                format!("{} {field}", self.message),
                format!(
                    "needs {n} bytes at byte {}, {} left",
                    self.pos,
                    self.bytes.len() - self.pos
                ),
            ));
        };
        let b = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(b)
    }

    fn array<const N: usize>(&mut self, field: &str) -> Result<[u8; N], FormatError> {
        let b = self.bytes(N, field)?;
        Ok(b.try_into().unwrap_or([0; N]))
    }

    fn u8(&mut self, field: &str) -> Result<u8, FormatError> {
        Ok(self.array::<1>(field)?[0])
    }

    fn u16(&mut self, field: &str) -> Result<u16, FormatError> {
        Ok(u16::from_le_bytes(self.array(field)?))
    }

    fn u32(&mut self, field: &str) -> Result<u32, FormatError> {
        Ok(u32::from_le_bytes(self.array(field)?))
    }

    fn u64(&mut self, field: &str) -> Result<u64, FormatError> {
        Ok(u64::from_le_bytes(self.array(field)?))
    }

    fn i64(&mut self, field: &str) -> Result<i64, FormatError> {
        Ok(i64::from_le_bytes(self.array(field)?))
    }

    fn id(&mut self, field: &str) -> Result<Id, FormatError> {
        self.array(field)
    }

    /// A count of items, each at least one byte, bounded.
    fn count(&mut self, field: &str) -> Result<usize, FormatError> {
        let n = self.u32(field)? as usize;
        if n > MAX_BLOCK_ITEMS || n > self.bytes.len() - self.pos {
            return Err(error(
                format!("{} {field}", self.message),
                format!("{n} is more than the bytes left could hold"),
            ));
        }
        Ok(n)
    }

    fn string(&mut self, field: &str) -> Result<String, FormatError> {
        let len = self.u32(field)? as usize;
        let b = self.bytes(len, field)?;
        std::str::from_utf8(b).map(str::to_owned).map_err(|e| {
            error(
                format!("{} {field}", self.message),
                format!("not UTF-8: {e}"),
            )
        })
    }

    fn props(&mut self) -> Result<Vec<(String, String)>, FormatError> {
        let n = self.count("property count")?;
        (0..n)
            .map(|_| Ok((self.string("property key")?, self.string("property value")?)))
            .collect()
    }

    fn magic(&mut self, magic: [u8; 4]) -> Result<(), FormatError> {
        let got: [u8; 4] = self.array("magic")?;
        if got != magic {
            return Err(error(
                format!("{} magic", self.message),
                format!(
                    "{:?}, expected {:?}",
                    String::from_utf8_lossy(&got),
                    String::from_utf8_lossy(&magic)
                ),
            ));
        }
        Ok(())
    }

    fn version(&mut self) -> Result<(), FormatError> {
        let v = self.u16("version")?;
        if v != VERSION {
            return Err(error(
                format!("{} version", self.message),
                format!("{v}; this server reads version {VERSION}"),
            ));
        }
        Ok(())
    }

    fn rest(&mut self) -> &'a [u8] {
        let b = &self.bytes[self.pos..];
        self.pos = self.bytes.len();
        b
    }

    fn end(&self) -> Result<(), FormatError> {
        if self.pos != self.bytes.len() {
            return Err(error(
                self.message,
                format!("{} bytes after its last field", self.bytes.len() - self.pos),
            ));
        }
        Ok(())
    }
}
