//! Measuring a phase: server CPU from /proc, latency percentiles, bytes at rest,
//! and the references, prost decode and the receiver's own request preparation
//! (no I/O), measured on one thread in slices all through the phase; prost
//! decode also continuously, just before and just after it.
//!
//! Why both: on a shared VM the host's speed moves by ±20% from one
//! few-second window to the next, so a reference measured beside the phase
//! (before, after) can differ from the host the phase ran on by that much,
//! while slices spread over the phase see the same host as the server. And a
//! thread that runs without pause decodes 11–16% faster on such a VM than one
//! that runs in slices (measured alternately on the idle 2-core host), as the
//! server does, idle most of the time at the benchmark's load: the continuous
//! figure is the harder comparison, printed beside.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use framelake_lake::ids::TenantId;
use framelake_lake::segment::Compression;
use framelake_receiver::otlp::{Encoding, Signal, prepare};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;

use super::generate::Generator;
use super::{encode, secs};
use crate::clock;

/// A load phase: one signal over one transport.
#[derive(Debug)]
pub(crate) struct Phase<'a> {
    pub(crate) signal: &'a str,
    pub(crate) protocol: &'a str,
    pub(crate) concurrency: usize,
    pub(crate) batch: usize,
    pub(crate) duration: Duration,
}

/// What a phase measured.
#[derive(Debug)]
pub(crate) struct Row {
    signal: String,
    protocol: String,
    events_per_sec: f64,
    server_cpu_per_event: Option<f64>,
    /// Prost decode, sampled all through the phase.
    reference_per_core: f64,
    /// Prost decode run continuously, the mean of just before and just after.
    continuous_per_core: f64,
    prepare_per_core: f64,
    p50_ms: f64,
    p99_ms: f64,
    segment_bytes_per_event: Option<f64>,
    catalog_bytes_per_event: Option<f64>,
    failures: u64,
}

/// The server under test.
#[derive(Debug)]
pub(crate) struct ServerProbe {
    http: String,
    grpc: String,
    pids: Vec<u32>,
    data_dir: Option<PathBuf>,
}

/// A server this run started; stopped (SIGTERM) when dropped.
#[derive(Debug)]
pub(crate) struct SpawnedServer {
    child: std::process::Child,
    _dir: tempfile::TempDir,
}

impl Drop for SpawnedServer {
    fn drop(&mut self) {
        // SAFETY: signalling our own child process by pid.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let _ = self.child.wait();
    }
}

/// `N` distinct ports on 127.0.0.1 that were free a moment ago: all bound at
/// once, so the kernel cannot hand the same one out twice, then released.
pub(crate) fn free_ports<const N: usize>() -> anyhow::Result<[u16; N]> {
    let listeners = (0..N)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0"))
        .collect::<std::io::Result<Vec<_>>>()?;
    let mut ports = [0; N];
    for (port, listener) in ports.iter_mut().zip(&listeners) {
        *port = listener.local_addr()?.port();
    }
    Ok(ports)
}

impl ServerProbe {
    pub(crate) fn attach(http: &str, grpc: &str, pids: &[u32], data_dir: Option<PathBuf>) -> Self {
        ServerProbe {
            http: http.trim_end_matches('/').to_owned(),
            grpc: grpc.to_owned(),
            pids: pids.to_vec(),
            data_dir,
        }
    }

    /// Starts `framelake serve` (the binary at `server_bin`) on a fresh data
    /// dir and free ports, with the write-path flags this run was given.
    pub(crate) async fn spawn(
        server_bin: &Path,
        server_args: &[String],
    ) -> anyhow::Result<(Self, SpawnedServer)> {
        let dir = tempfile::tempdir()?;
        let [http_port, grpc_port, query_port, flight_port] = free_ports()?;
        let child = std::process::Command::new(server_bin)
            .arg("serve")
            .arg("--data-dir")
            .arg(dir.path())
            .arg(format!("--ingest-addr=127.0.0.1:{http_port}"))
            .arg(format!("--otlp-grpc-addr=127.0.0.1:{grpc_port}"))
            .arg(format!("--query-addr=127.0.0.1:{query_port}"))
            .arg(format!("--flight-addr=127.0.0.1:{flight_port}"))
            // The write path alone: materialization is measured by `querybench`.
            .arg("--materialize-interval-ms=0")
            .args(server_args)
            .env("FRAMELAKE_LOG", "warn")
            .spawn()
            .with_context(|| format!("starting {} serve", server_bin.display()))?;
        let probe = ServerProbe {
            http: format!("http://127.0.0.1:{http_port}"),
            grpc: format!("http://127.0.0.1:{grpc_port}"),
            pids: vec![child.id()],
            data_dir: Some(dir.path().to_owned()),
        };
        let server = SpawnedServer { child, _dir: dir };
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ready = client.get(format!("{}/ready", probe.http)).send().await;
            if ready.is_ok_and(|r| r.status().is_success()) {
                break;
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "the spawned server did not become ready in 30 s"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok((probe, server))
    }

    /// CPU seconds the server processes have used (every thread, user and
    /// kernel): from each process's CPU-time clock, to the nanosecond, else from
    /// `/proc/PID/stat` in clock ticks (10 ms: 4% of a 20 s phase at this load).
    fn cpu_seconds(&self) -> Option<f64> {
        if self.pids.is_empty() {
            return None;
        }
        self.pids
            .iter()
            .map(|&pid| clock::process_seconds_of(pid))
            .sum()
    }

    fn stored_bytes(&self) -> Option<(u64, u64)> {
        let dir = self.data_dir.as_ref()?;
        let objects = dir_size(&dir.join("objects"));
        let catalog = dir_size(dir) - objects;
        Some((objects, catalog))
    }

    pub(crate) async fn measure(
        &mut self,
        phase: &Phase<'_>,
        tenant: &str,
        references: Option<Compression>,
    ) -> anyhow::Result<Row> {
        // The continuous reference alone, just before and just after the
        // phase; the sampled one on its own thread all through it.
        let continuous = async |compression| match compression {
            Some(c) => {
                Some(References::measure_for(phase.signal, phase.batch, c, REFERENCE_TIME).await)
            }
            None => None,
        };
        let before = continuous(references).await;
        let sampled =
            references.map(|c| References::start(phase.signal, phase.batch, c, DURING_PHASE));
        let stored_before = self.stored_bytes();
        let cpu_before = self.cpu_seconds();
        let started = Instant::now();
        let deadline = started + phase.duration;
        let mut workers = Vec::new();
        for worker in 0..phase.concurrency {
            let sender =
                Sender::new(phase.protocol, &self.http, &self.grpc, phase.signal, tenant).await?;
            let (signal, batch) = (phase.signal.to_owned(), phase.batch);
            workers.push(tokio::spawn(async move {
                let mut generator =
                    Generator::new(worker as u64 + 1 + started.elapsed().as_nanos() as u64);
                let (mut latencies, mut failures, mut events) = (Vec::new(), 0u64, 0u64);
                while Instant::now() < deadline {
                    let body = encode(&mut generator, &signal, batch);
                    let sent = Instant::now();
                    match sender.send(body).await {
                        Ok(()) => {
                            latencies.push(sent.elapsed());
                            events += batch as u64;
                        }
                        Err(e) => {
                            failures += 1;
                            if failures == 1 {
                                eprintln!("loadgen: request failed: {e:#}");
                            }
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                    }
                }
                (latencies, failures, events)
            }));
        }
        let (mut latencies, mut failures, mut events) = (Vec::new(), 0, 0);
        for worker in workers {
            let (l, f, e) = worker.await?;
            latencies.extend(l);
            failures += f;
            events += e;
        }
        let wall = secs(started);
        let cpu = match (cpu_before, self.cpu_seconds()) {
            (Some(before), Some(after)) => Some(after - before),
            _ => None,
        };
        let during = sampled.map(References::finish);
        let after = continuous(references).await;
        // Let the writer's last flush land before measuring the disk.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let stored = match (stored_before, self.stored_bytes()) {
            (Some((o1, c1)), Some((o2, c2))) => Some(((o2 - o1) as f64, c2 as f64 - c1 as f64)),
            _ => None,
        };
        latencies.sort();
        let pct = |p: f64| {
            latencies
                .get(((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1)))
                .map(|d| d.as_secs_f64() * 1e3)
                .unwrap_or(f64::NAN)
        };
        let per_event = |v: f64| (events > 0).then(|| v / events as f64);
        Ok(Row {
            signal: phase.signal.to_owned(),
            protocol: phase.protocol.to_owned(),
            events_per_sec: events as f64 / wall,
            server_cpu_per_event: cpu.and_then(per_event),
            reference_per_core: during.map_or(f64::NAN, |r| r.prost),
            continuous_per_core: match (before, after) {
                (Some(before), Some(after)) => (before.prost + after.prost) / 2.0,
                _ => f64::NAN,
            },
            prepare_per_core: during.map_or(f64::NAN, |r| r.prepare),
            p50_ms: pct(0.50),
            p99_ms: pct(0.99),
            segment_bytes_per_event: stored.and_then(|(o, _)| per_event(o)),
            catalog_bytes_per_event: stored.and_then(|(_, c)| per_event(c)),
            failures,
        })
    }
}

pub(crate) fn dir_size(path: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(path) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_size(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

/// One exporter's connection.
enum Sender {
    Http {
        client: reqwest::Client,
        url: String,
        tenant: String,
    },
    Grpc {
        client: tonic::client::Grpc<tonic::transport::Channel>,
        path: http::uri::PathAndQuery,
        tenant: tonic::metadata::MetadataValue<tonic::metadata::Ascii>,
    },
}

impl Sender {
    async fn new(
        protocol: &str,
        http: &str,
        grpc: &str,
        signal: &str,
        tenant: &str,
    ) -> anyhow::Result<Self> {
        Ok(if protocol == "http" {
            let url = if signal == "loki" {
                format!("{http}/loki/api/v1/push")
            } else {
                format!("{http}/v1/{signal}")
            };
            Sender::Http {
                client: reqwest::Client::new(),
                url,
                tenant: tenant.to_owned(),
            }
        } else {
            let channel = tonic::transport::Endpoint::from_shared(grpc.to_owned())?
                .connect()
                .await
                .with_context(|| format!("connecting to {grpc}"))?;
            let path = match signal {
                "traces" => "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
                _ => "/opentelemetry.proto.collector.logs.v1.LogsService/Export",
            };
            Sender::Grpc {
                client: tonic::client::Grpc::new(channel),
                path: http::uri::PathAndQuery::from_static(path),
                tenant: tenant.parse()?,
            }
        })
    }

    async fn send(&self, body: Bytes) -> anyhow::Result<()> {
        match self {
            Sender::Http {
                client,
                url,
                tenant,
            } => {
                let response = client
                    .post(url)
                    .header("content-type", "application/x-protobuf")
                    .header("x-scope-orgid", tenant)
                    .body(body)
                    .send()
                    .await?;
                anyhow::ensure!(response.status().is_success(), "HTTP {}", response.status());
                Ok(())
            }
            Sender::Grpc {
                client,
                path,
                tenant,
            } => {
                let mut client = client.clone();
                client.ready().await?;
                let mut request = tonic::Request::new(body);
                request
                    .metadata_mut()
                    .insert("x-scope-orgid", tenant.clone());
                client
                    .unary::<Bytes, Bytes, _>(
                        request,
                        path.clone(),
                        framelake_receiver::grpc::RawCodec,
                    )
                    .await?;
                Ok(())
            }
        }
    }
}

/// The same-run references, in events per second of one core's CPU time.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Rates {
    /// Plain prost decode of the same kind of requests.
    pub(crate) prost: f64,
    /// The receiver's own preparation of them (validate, index, compress; no I/O).
    pub(crate) prepare: f64,
}

/// How the reference thread uses its core.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Pace {
    /// Without a pause: the references alone.
    Continuous,
    /// `slice` of the thread's CPU time in every `every` of wall time: beside a
    /// phase's load, sampling the host all through the phase.
    Sampled { slice: Duration, every: Duration },
}

/// How long the continuous reference runs just before and just after each phase.
const REFERENCE_TIME: Duration = Duration::from_secs(2);

/// The references' pace during a phase: a tenth of one core, in slices long
/// enough to warm the caches (tens of turns) and often enough (20 per 20 s
/// phase) to follow the host, whose speed on a shared VM moves by ±20% from
/// one few-second window to the next.
const DURING_PHASE: Pace = Pace::Sampled {
    slice: Duration::from_millis(100),
    every: Duration::from_secs(1),
};

/// The references, measured on a thread of their own. Prost decode and
/// preparation take turns over the same 64 requests (four requests of each
/// per turn), each rated by the thread's own CPU time, so that both see the
/// same host.
#[derive(Debug)]
pub(crate) struct References {
    /// Dropped to stop the thread (which also wakes it from a pause).
    stop: std::sync::mpsc::Sender<()>,
    thread: std::thread::JoinHandle<Rates>,
}

impl References {
    pub(crate) fn start(signal: &str, batch: usize, compression: Compression, pace: Pace) -> Self {
        let (stop, stopped) = std::sync::mpsc::channel();
        let signal = signal.to_owned();
        let thread = std::thread::Builder::new()
            .name("loadgen-references".to_owned())
            .spawn(move || measure_references(&signal, batch, compression, pace, &stopped))
            .expect("starting the reference thread");
        References { stop, thread }
    }

    pub(crate) fn finish(self) -> Rates {
        drop(self.stop);
        self.thread
            .join()
            .expect("the reference thread does not panic")
    }

    /// The references alone, measured for `duration`.
    pub(crate) async fn measure_for(
        signal: &str,
        batch: usize,
        compression: Compression,
        duration: Duration,
    ) -> Rates {
        let references = References::start(signal, batch, compression, Pace::Continuous);
        tokio::time::sleep(duration).await;
        references.finish()
    }
}

fn measure_references(
    signal: &str,
    batch: usize,
    compression: Compression,
    pace: Pace,
    stopped: &std::sync::mpsc::Receiver<()>,
) -> Rates {
    use std::sync::mpsc::{RecvTimeoutError, TryRecvError};
    let mut generator = Generator::new(42);
    let requests: Vec<Bytes> = (0..64)
        .map(|_| encode(&mut generator, signal, batch))
        .collect();
    let tenant: TenantId = "loadgen".parse().expect("a valid tenant");
    let kind = if signal == "traces" {
        Signal::Traces
    } else {
        Signal::Logs
    };
    let decode = |r: &Bytes| {
        match signal {
            "traces" => ExportTraceServiceRequest::decode(r.as_ref())
                .map(|m| m.resource_spans[0].scope_spans[0].spans.len()),
            // What Loki does first with a push: snappy, then prost.
            "loki" => {
                let raw = snap::raw::Decoder::new()
                    .decompress_vec(r)
                    .expect("generated pushes decompress");
                framelake_receiver::loki::PushRequest::decode(raw.as_slice())
                    .map(|m| m.streams[0].entries.len())
            }
            _ => ExportLogsServiceRequest::decode(r.as_ref())
                .map(|m| m.resource_logs[0].scope_logs[0].log_records.len()),
        }
        .expect("generated requests decode") as u64
    };
    let prepare = |r: &Bytes| {
        // A Loki push is turned into the OTLP request it stands for first.
        let otlp = if signal == "loki" {
            framelake_receiver::loki::to_otlp(Encoding::Protobuf, r, 64 << 20)
                .expect("generated pushes are valid")
        } else {
            r.clone()
        };
        prepare(
            &tenant,
            kind,
            Encoding::Protobuf,
            otlp,
            compression,
            Default::default(),
        )
        .expect("generated requests are valid")
        .events
    };
    // (events, CPU seconds) of prost decode and of preparation.
    let (mut prost, mut prepared) = ((0u64, 0f64), (0u64, 0f64));
    let timed = |f: &dyn Fn(&Bytes) -> u64, turn: &[Bytes], total: &mut (u64, f64)| {
        let started = clock::thread_seconds();
        total.0 += turn.iter().map(f).sum::<u64>();
        total.1 += clock::thread_seconds() - started;
    };
    let mut turns = requests.chunks(4).cycle();
    'measuring: loop {
        let period = Instant::now();
        let slice = clock::thread_seconds();
        loop {
            let turn = turns.next().expect("the requests cycle");
            timed(&decode, turn, &mut prost);
            timed(&prepare, turn, &mut prepared);
            if let Err(TryRecvError::Disconnected) = stopped.try_recv() {
                break 'measuring;
            }
            if let Pace::Sampled { slice: length, .. } = pace
                && clock::thread_seconds() - slice >= length.as_secs_f64()
            {
                break;
            }
        }
        if let Pace::Sampled { every, .. } = pace {
            let pause = every.saturating_sub(period.elapsed());
            if let Err(RecvTimeoutError::Disconnected) = stopped.recv_timeout(pause) {
                break;
            }
        }
    }
    Rates {
        prost: prost.0 as f64 / prost.1,
        prepare: prepared.0 as f64 / prepared.1,
    }
}

pub(crate) fn print_table(rows: &[Row]) {
    let opt = |v: Option<f64>, scale: f64, digits: usize| {
        v.map(|v| format!("{:.*}", digits, v * scale))
            .unwrap_or_else(|| "n/a".to_owned())
    };
    println!();
    println!(
        "| signal | transport | events/s accepted | server CPU-s per 1M events | events per server CPU-s | prost decode events/s/core, sampled through the phase | ratio to prost | prost decode events/s/core, continuous before and after | ratio to it | receiver prepare events/s/core, sampled | ack p50 ms | ack p99 ms | segment B/event | catalog B/event | failed requests |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for r in rows {
        let per_cpu = r.server_cpu_per_event.map(|c| 1.0 / c);
        println!(
            "| {} | {} | {:.0} | {} | {} | {:.0} | {} | {:.0} | {} | {:.0} | {:.1} | {:.1} | {} | {} | {} |",
            r.signal,
            r.protocol,
            r.events_per_sec,
            opt(r.server_cpu_per_event, 1e6, 2),
            opt(per_cpu, 1.0, 0),
            r.reference_per_core,
            opt(per_cpu.map(|p| p / r.reference_per_core), 1.0, 2),
            r.continuous_per_core,
            opt(per_cpu.map(|p| p / r.continuous_per_core), 1.0, 2),
            r.prepare_per_core,
            r.p50_ms,
            r.p99_ms,
            opt(r.segment_bytes_per_event, 1.0, 1),
            opt(r.catalog_bytes_per_event, 1.0, 1),
            r.failures,
        );
    }
}

/// Per signal and transport over repeated phases: the median, lowest and
/// highest ratio to each prost reference, and the median events per server
/// CPU-second.
pub(crate) fn print_summary(rows: &[Row]) {
    println!();
    println!(
        "| signal | transport | phases | ratio to prost sampled through the phase: median | min | max | ratio to prost continuous: median | min | max | events per server CPU-s: median |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    /// One signal and transport: per phase, the events per server CPU-s and
    /// both references.
    struct Group<'a> {
        signal: &'a str,
        protocol: &'a str,
        phases: Vec<(f64, f64, f64)>,
    }
    let mut groups: Vec<Group<'_>> = Vec::new();
    for r in rows {
        let Some(cpu) = r.server_cpu_per_event else {
            continue;
        };
        let phase = (1.0 / cpu, r.reference_per_core, r.continuous_per_core);
        match groups
            .iter_mut()
            .find(|g| g.signal == r.signal && g.protocol == r.protocol)
        {
            Some(g) => g.phases.push(phase),
            None => groups.push(Group {
                signal: &r.signal,
                protocol: &r.protocol,
                phases: vec![phase],
            }),
        }
    }
    let spread = |ratios: Vec<f64>| {
        let (min, max) = ratios
            .iter()
            .fold((f64::MAX, f64::MIN), |(lo, hi), &r| (lo.min(r), hi.max(r)));
        format!("{:.2} | {min:.2} | {max:.2}", clock::median(ratios))
    };
    for Group {
        signal,
        protocol,
        phases,
    } in groups
    {
        println!(
            "| {signal} | {protocol} | {} | {} | {} | {:.0} |",
            phases.len(),
            spread(phases.iter().map(|p| p.0 / p.1).collect()),
            spread(phases.iter().map(|p| p.0 / p.2).collect()),
            clock::median(phases.iter().map(|p| p.0).collect()),
        );
    }
}

/// The middle value (the mean of the two middle ones for an even count).
#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn both_references_are_measured_in_turns_until_stopped() {
        let rates = super::References::measure_for(
            "logs",
            16,
            framelake_lake::segment::Compression::Lz4,
            std::time::Duration::from_millis(200),
        )
        .await;
        // Decoding 16-record requests runs at well over 10k records per
        // second of CPU on any machine, and never at an infinite rate.
        for rate in [rates.prost, rates.prepare] {
            assert!(rate.is_finite() && rate > 10_000.0, "{rates:?}");
        }
    }

    #[tokio::test]
    async fn a_sampled_reference_takes_its_share_of_a_core_and_stops_in_a_pause() {
        use super::{Pace, References};
        use framelake_lake::segment::Compression;
        use std::time::{Duration, Instant};
        // 20 ms of CPU in every 200 ms, for a second: five slices.
        let pace = Pace::Sampled {
            slice: Duration::from_millis(20),
            every: Duration::from_millis(200),
        };
        let references = References::start("logs", 16, Compression::Lz4, pace);
        tokio::time::sleep(Duration::from_millis(1000)).await;
        let cpu_seconds = thread_cpu_seconds(&references.thread);
        let rates = references.finish();
        assert!(
            rates.prost.is_finite() && rates.prost > 10_000.0,
            "{rates:?}"
        );
        assert!(
            rates.prepare.is_finite() && rates.prepare > 10_000.0,
            "{rates:?}"
        );
        // At least one slice, each overshooting by at most one turn (8 requests
        // of 16 records); far from the whole second a continuous pace takes.
        assert!(
            (0.015..0.5).contains(&cpu_seconds),
            "five 20 ms slices took {cpu_seconds} s of CPU"
        );
        // Stopped while paused for a minute: the pause ends at once.
        let pace = Pace::Sampled {
            slice: Duration::from_millis(1),
            every: Duration::from_secs(60),
        };
        let references = References::start("logs", 16, Compression::Lz4, pace);
        tokio::time::sleep(Duration::from_millis(200)).await;
        let stopping = Instant::now();
        let rates = references.finish();
        assert!(
            stopping.elapsed() < Duration::from_secs(30),
            "{:?}",
            stopping.elapsed()
        );
        assert!(rates.prost.is_finite(), "{rates:?}");
    }

    /// CPU time of a running thread, in seconds.
    fn thread_cpu_seconds<T>(thread: &std::thread::JoinHandle<T>) -> f64 {
        use std::os::unix::thread::JoinHandleExt;
        let mut clock: libc::clockid_t = 0;
        // SAFETY: the thread is running (not joined), and `clock` is a valid
        // place for its clock's id.
        let found = unsafe { libc::pthread_getcpuclockid(thread.as_pthread_t(), &mut clock) };
        assert_eq!(found, 0, "the reference thread's CPU clock");
        crate::clock::clock_seconds(clock).expect("the reference thread's CPU time")
    }
}
