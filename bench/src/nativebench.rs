//! `framelake-bench nativebench`: the native CPU-trace path measured on game-like
//! thread blocks, in this process (no network in the figures): blocks
//! decoded into `thread_spans` per core, beside the floor of reading them
//! (LZ4 inflate and a walk over the events); blocks stored through the
//! receiver's own path (checks, group commit, catalog); bytes at rest as
//! stored, as cached Parquet and after compaction.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use framelake_lake::compact::{CompactConfig, Compactor, EventRewrite};
use framelake_lake::ids::BlockKind;
use framelake_lake::materialize::{MaterializeConfig, Materializer};
use framelake_lake::tenancy::Tenancy;
use framelake_lake::view::{self, View};
use framelake_lake::writer::{Writer, WriterConfig};
use framelake_lake::{Lake, LakeConfig};
use framelake_native_format::{
    self as format, BlockHeader, Codec, Descriptor, DescriptorKind, Event, PayloadParts, Process,
    Stream, StreamKind,
};
use framelake_receiver::native::NativeMessage;
use framelake_receiver::{ContentEncoding, Ingest, Limits};
use futures::{StreamExt, TryStreamExt};

use crate::clock;

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Span events (begins and ends) to generate.
    #[arg(long, default_value_t = 20_000_000)]
    events: usize,
    /// Events per block (the SDK cuts a busy thread's block about every 100 ms).
    #[arg(long, default_value_t = 8192)]
    block_events: usize,
    /// Threads of the simulated game.
    #[arg(long, default_value_t = 8)]
    threads: usize,
    /// Times the decode figures are measured (the median is printed).
    #[arg(long, default_value_t = 5)]
    runs: usize,
}

/// Ticks per second of the simulated CPU.
const FREQUENCY: u64 = 3_000_000_000;

/// The spans of one frame of a game thread: (name, children).
const FRAME: &[(&str, &[&str])] = &[
    ("input", &[]),
    ("update", &["physics", "ai", "animation", "audio"]),
    (
        "render",
        &["cull", "draw_opaque", "draw_transparent", "post"],
    ),
    ("present", &[]),
];

/// A thread's blocks, generated as a game records them.
struct Game {
    process: Process,
    streams: Vec<Stream>,
    descriptors: Vec<Descriptor>,
    blocks: Vec<(usize, Vec<u8>)>,
    events: usize,
}

fn descriptor(id: usize, name: &str) -> Descriptor {
    Descriptor {
        id: 8 * (id as u64 + 1),
        kind: DescriptorKind::Span,
        level: 0,
        line: 100 + id as u32,
        name: name.to_owned(),
        target: "game::systems".to_owned(),
        file: "src/systems.rs".to_owned(),
        unit: String::new(),
    }
}

impl Game {
    fn generate(args: &Args) -> Game {
        let start_time = framelake_lake::host::now_nanos() - 3_600_000_000_000;
        let process = Process {
            process_id: *b"nativebench-game",
            parent_process_id: [0; 16],
            start_time,
            start_ticks: 0,
            tick_frequency: FREQUENCY,
            exe: "/opt/game/bin/game".into(),
            username: "player".into(),
            computer: "rig".into(),
            distro: "linux".into(),
            cpu_brand: clock::cpu_model(),
            properties: vec![("service.name".into(), "nativebench".into())],
        };
        let mut names = vec!["frame"];
        for (name, children) in FRAME {
            names.push(name);
            names.extend(children.iter());
        }
        let descriptors: Vec<Descriptor> = names
            .iter()
            .enumerate()
            .map(|(i, n)| descriptor(i, n))
            .collect();
        let id_of = |name: &str| descriptors[names.iter().position(|n| *n == name).unwrap_or(0)].id;
        let streams: Vec<Stream> = (0..args.threads)
            .map(|t| Stream {
                kind: StreamKind::Thread,
                stream_id: {
                    let mut id = *b"nativebench-th00";
                    id[14] = b'0' + (t / 10) as u8;
                    id[15] = b'0' + (t % 10) as u8;
                    id
                },
                process_id: process.process_id,
                thread_id: 1000 + t as u64,
                name: format!("worker-{t}"),
                properties: Vec::new(),
            })
            .collect();
        // A frame's events: nested spans with tick gaps of a few microseconds
        // (a pseudo-random walk, so that deltas vary as real ones do).
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut gap = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            3_000 + (seed % 30_000) as i64
        };
        let per_thread = args.events.div_ceil(args.threads);
        let mut blocks = Vec::new();
        let mut events_total = 0;
        for (t, stream) in streams.iter().enumerate() {
            let mut ticks = 1_000_000 + t as i64 * 777;
            let (mut events, mut bytes, mut count, mut sequence) = (0, Vec::new(), 0u32, 0u64);
            let mut block_begin = ticks;
            while events < per_thread {
                let mut push = |e: Event<'_>, bytes: &mut Vec<u8>| {
                    format::encode_event(&e, bytes);
                    count += 1;
                };
                push(
                    Event::SpanBegin {
                        descriptor: id_of("frame"),
                        ticks,
                    },
                    &mut bytes,
                );
                for (name, children) in FRAME {
                    ticks += gap();
                    push(
                        Event::SpanBegin {
                            descriptor: id_of(name),
                            ticks,
                        },
                        &mut bytes,
                    );
                    for child in *children {
                        ticks += gap();
                        let descriptor = id_of(child);
                        push(Event::SpanBegin { descriptor, ticks }, &mut bytes);
                        ticks += gap() * 4;
                        push(Event::SpanEnd { descriptor, ticks }, &mut bytes);
                    }
                    ticks += gap();
                    push(
                        Event::SpanEnd {
                            descriptor: id_of(name),
                            ticks,
                        },
                        &mut bytes,
                    );
                }
                ticks += gap();
                push(
                    Event::SpanEnd {
                        descriptor: id_of("frame"),
                        ticks,
                    },
                    &mut bytes,
                );
                ticks += gap() * 10;
                // Blocks are cut between frames here (the SDK cuts them
                // anywhere: the spans open then travel in the next block).
                if count as usize >= args.block_events || events + count as usize >= per_thread {
                    let header = BlockHeader {
                        codec: Codec::Lz4,
                        stream_id: stream.stream_id,
                        process_id: process.process_id,
                        sequence,
                        begin_ticks: block_begin,
                        end_ticks: ticks,
                        calibration_ticks: ticks,
                        calibration_time: start_time + ticks / 3,
                        event_count: count,
                    };
                    let payload = PayloadParts {
                        descriptors: descriptors.clone(),
                        open_spans: Vec::new(),
                        events: &bytes,
                    }
                    .encode();
                    blocks.push((t, format::encode_block(&header, &payload)));
                    events += count as usize;
                    events_total += count as usize;
                    (bytes, count, sequence, block_begin) = (Vec::new(), 0, sequence + 1, ticks);
                }
            }
        }
        Game {
            process,
            streams,
            descriptors,
            blocks,
            events: events_total,
        }
    }
}

pub(crate) async fn run(args: Args) -> anyhow::Result<()> {
    println!("host CPU: {}", clock::cpu_model());
    let game = Game::generate(&args);
    let stored: usize = game.blocks.iter().map(|(_, b)| b.len()).sum();
    println!(
        "{} span events in {} blocks of {} threads ({} descriptors), {:.2} B/event as sent (LZ4)",
        game.events,
        game.blocks.len(),
        game.streams.len(),
        game.descriptors.len(),
        stored as f64 / game.events as f64
    );

    // Decoding, one core: the floor (inflate, parse, walk) and thread_spans rows.
    let process = Arc::new(view::NativeProcess {
        process: game.process.clone(),
        service_name: "nativebench".into(),
    });
    let sources: Vec<view::BlockSource> = game
        .streams
        .iter()
        .map(|s| view::BlockSource {
            block_id: framelake_lake::ids::BlockId::of(&[&s.stream_id]),
            process_id: framelake_lake::ids::ProcessId(game.process.process_id),
            stream_id: framelake_lake::ids::StreamId(s.stream_id),
            max_time: 0,
            native: Some(Arc::clone(&process)),
            thread_name: Some(s.name.as_str().into()),
        })
        .collect();
    let blocks = game.blocks.clone();
    let events = game.events as f64;
    let runs = args.runs;
    let (floor, decode, rows) = tokio::task::spawn_blocking(move || {
        let (mut floor, mut decode, mut rows) = (Vec::new(), Vec::new(), 0);
        for _ in 0..runs {
            let started = Instant::now();
            let mut walked = 0usize;
            for (_, block) in &blocks {
                let (_, payload) = format::decode_block(block).expect("generated blocks decode");
                let parsed = format::Payload::parse(&payload).expect("generated payloads parse");
                walked += parsed.events().filter(|e| e.is_ok()).count();
            }
            floor.push(walked as f64 / started.elapsed().as_secs_f64());
            let started = Instant::now();
            rows = 0;
            for (t, block) in &blocks {
                let batch = view::decode(BlockKind::NativeThread, block, &sources[*t])
                    .expect("generated blocks decode");
                rows += batch.num_rows();
            }
            decode.push(events / started.elapsed().as_secs_f64());
        }
        (clock::median(floor), clock::median(decode), rows)
    })
    .await?;
    println!();
    println!(
        "| decode, one core | events/s | reference: inflate + walk, events/s | ratio | rows |"
    );
    println!("|---|---:|---:|---:|---:|");
    println!(
        "| blocks → thread_spans | {:.1} M | {:.1} M | {:.2} | {rows} |",
        decode / 1e6,
        floor / 1e6,
        decode / floor
    );

    // Storing, through the receiver's path, then caching and compacting.
    let temp = tempfile::tempdir()?;
    let lake = Arc::new(Lake::open(&LakeConfig::embedded(temp.path())).await?);
    let writer = Arc::new(Writer::start(Arc::clone(&lake), WriterConfig::default()));
    let ingest = Arc::new(Ingest::new(
        Arc::clone(&lake),
        Arc::clone(&writer),
        Tenancy::open(),
        Limits::default(),
        framelake_lake::segment::Compression::None,
    ));
    let tenant: framelake_lake::ids::TenantId = "default".parse()?;
    let send = |message, body: Vec<u8>| {
        let (ingest, tenant) = (Arc::clone(&ingest), tenant.clone());
        async move {
            let ticket = ingest
                .admit(body.len())
                .map_err(|e| anyhow::anyhow!("ingest: {e}"))?;
            ingest
                .native(
                    tenant,
                    message,
                    ContentEncoding::Identity,
                    Bytes::from(body),
                    ticket,
                )
                .await
                .map_err(|e| anyhow::anyhow!("ingest: {e}"))
        }
    };
    send(NativeMessage::Process, game.process.encode()).await?;
    for s in &game.streams {
        send(NativeMessage::Stream, s.encode()).await?;
    }
    let (cpu, wall) = (clock::process_seconds(), Instant::now());
    futures::stream::iter(game.blocks.iter().map(|(_, b)| b.clone()))
        .map(|b| send(NativeMessage::Block, b))
        .buffer_unordered(16)
        .try_collect::<Vec<_>>()
        .await?;
    let (store_cpu, store_wall) = (clock::process_seconds() - cpu, wall.elapsed().as_secs_f64());
    let segments = crate::loadgen::measure::dir_size(&temp.path().join("objects"));
    println!();
    println!(
        "| store (receiver path, this process) | events/s per CPU-s | wall s | B/event at rest |"
    );
    println!("|---|---:|---:|---:|");
    println!(
        "| thread blocks → segments + catalog | {:.1} M | {store_wall:.2} | {:.2} |",
        events / store_cpu / 1e6,
        segments as f64 / events
    );

    let (cpu, wall) = (clock::process_seconds(), Instant::now());
    let cached = Materializer::new(Arc::clone(&lake), MaterializeConfig::default())
        .cache(&tenant, View::ThreadSpans, &Default::default())
        .await?;
    let (cache_cpu, cache_wall) = (clock::process_seconds() - cpu, wall.elapsed().as_secs_f64());
    let partitions = lake
        .catalog
        .partitions(&tenant, Some(View::ThreadSpans.name()))
        .await?;
    let cached_bytes: u64 = partitions.iter().map(|p| p.size).sum();
    let compactor = Compactor::new(
        Arc::clone(&lake),
        Arc::new(EventRewrite::new(Arc::clone(&lake))),
        CompactConfig::default(),
    );
    let later = framelake_lake::host::now_nanos() + 2 * 86_400 * 1_000_000_000;
    let (cpu, wall) = (clock::process_seconds(), Instant::now());
    compactor.pass(later).await?;
    let (compact_cpu, compact_wall) =
        (clock::process_seconds() - cpu, wall.elapsed().as_secs_f64());
    let compacted: u64 = lake
        .catalog
        .partitions(&tenant, Some(View::ThreadSpans.name()))
        .await?
        .iter()
        .map(|p| p.size)
        .sum();
    println!();
    println!(
        "| thread_spans as Parquet | span rows | events/s per CPU-s | wall s | B/event | B/span |"
    );
    println!("|---|---:|---:|---:|---:|---:|");
    println!(
        "| cached (decode + Parquet, zstd 1) | {} | {:.1} M | {cache_wall:.2} | {:.2} | {:.2} |",
        cached.rows,
        events / cache_cpu / 1e6,
        cached_bytes as f64 / events,
        cached_bytes as f64 / cached.rows.max(1) as f64
    );
    println!(
        "| compacted (sorted, zstd 3) | {} | {:.1} M | {compact_wall:.2} | {:.2} | {:.2} |",
        cached.rows,
        events / compact_cpu / 1e6,
        compacted as f64 / events,
        compacted as f64 / cached.rows.max(1) as f64
    );
    writer.shutdown().await;
    Ok(())
}
