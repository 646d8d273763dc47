//! Acknowledged means durable: under load, SIGKILL loses nothing that was
//! acknowledged, and SIGTERM lets in-flight requests commit before exiting.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use framelake_lake::ids::BlockKind;
use framelake_receiver::grpc::RawCodec;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use prost::Message;

use crate::{Server, data_dir_args, embedded_lake, stored};

/// Concurrent senders of [`load`]: four over HTTP, two over gRPC.
const SENDERS: usize = 6;

/// A request whose spans all carry a trace id made from `seed`.
fn request(seed: u64) -> Bytes {
    request_with(seed, Vec::new)
}

/// A request of 64 spans whose trace id is made from `seed`, each with `attributes()`.
fn request_with(seed: u64, mut attributes: impl FnMut() -> Vec<KeyValue>) -> Bytes {
    let trace_id = [seed.to_le_bytes(), 0x5eed_u64.to_le_bytes()].concat();
    let spans = (1..=64u64)
        .map(|i| Span {
            trace_id: trace_id.clone(),
            span_id: i.to_le_bytes().to_vec(),
            name: format!("work-{i}"),
            start_time_unix_nano: 1_700_000_000_000_000_000 + seed * 1000 + i,
            end_time_unix_nano: 1_700_000_000_000_000_500 + seed * 1000 + i,
            attributes: attributes(),
            ..Default::default()
        })
        .collect();
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            scope_spans: vec![ScopeSpans {
                spans,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
    .encode_to_vec()
    .into()
}

/// Seeds of the requests sent and not yet answered.
type InFlight = Arc<Mutex<BTreeSet<u64>>>;

/// Senders over HTTP and gRPC until `stop` or the server goes away; returns
/// the seeds of acknowledged requests. `in_flight` holds, at any time, the
/// requests sent and not answered.
fn load(
    server: &Server,
    stop: Arc<AtomicBool>,
    in_flight: InFlight,
    first_seed: u64,
) -> Vec<tokio::task::JoinHandle<Vec<u64>>> {
    let next = Arc::new(AtomicU64::new(first_seed));
    let mut tasks = Vec::new();
    for worker in 0..SENDERS {
        let (stop, next, in_flight) =
            (Arc::clone(&stop), Arc::clone(&next), Arc::clone(&in_flight));
        let (http, grpc) = (server.http_url(), server.grpc_url());
        tasks.push(tokio::spawn(async move {
            let mut acked = Vec::new();
            let client = reqwest::Client::new();
            let mut grpc_client = None;
            while !stop.load(Ordering::Relaxed) {
                let seed = next.fetch_add(1, Ordering::Relaxed);
                in_flight.lock().expect("in flight").insert(seed);
                let ok = if worker < 4 {
                    let response = client
                        .post(format!("{http}/v1/traces"))
                        .header("content-type", "application/x-protobuf")
                        .body(request(seed))
                        .send()
                        .await;
                    match response {
                        Ok(r) => r.status().is_success(),
                        Err(_) => break,
                    }
                } else {
                    if grpc_client.is_none() {
                        match tonic::transport::Endpoint::from_shared(grpc.clone())
                            .expect("endpoint")
                            .connect()
                            .await
                        {
                            Ok(channel) => grpc_client = Some(tonic::client::Grpc::new(channel)),
                            Err(_) => break,
                        }
                    }
                    let client = grpc_client.as_mut().expect("connected");
                    if client.ready().await.is_err() {
                        break;
                    }
                    let path = http::uri::PathAndQuery::from_static(
                        "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
                    );
                    match client
                        .unary::<Bytes, Bytes, _>(
                            tonic::Request::new(request(seed)),
                            path,
                            RawCodec,
                        )
                        .await
                    {
                        Ok(_) => true,
                        Err(status) if status.code() == tonic::Code::Unavailable => break,
                        Err(_) => false,
                    }
                };
                in_flight.lock().expect("in flight").remove(&seed);
                if ok {
                    acked.push(seed);
                }
            }
            acked
        }));
    }
    tasks
}

async fn acked(tasks: Vec<tokio::task::JoinHandle<Vec<u64>>>) -> Vec<u64> {
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.expect("sender task"));
    }
    all
}

/// How many times each trace id's spans were stored, by seed.
async fn stored_seeds(dir: &std::path::Path) -> HashMap<u64, usize> {
    let lake = embedded_lake(dir).await;
    let mut seen = HashMap::new();
    for request in stored::<ExportTraceServiceRequest>(&lake, "default", BlockKind::OtlpSpans).await
    {
        for rs in request.resource_spans {
            for ss in rs.scope_spans {
                let first = ss.spans.first().expect("stored requests have spans");
                let seed = u64::from_le_bytes(first.trace_id[..8].try_into().expect("8 bytes"));
                assert_eq!(
                    ss.spans.len(),
                    64,
                    "a request is stored whole or not at all"
                );
                *seen.entry(seed).or_insert(0) += 1;
            }
        }
    }
    seen
}

/// `framelake serve` on `dir/data` with a flush interval, under load.
async fn serve_under_load(
    dir: &std::path::Path,
    flush_interval_ms: u64,
    in_flight: InFlight,
) -> (
    Server,
    Vec<String>,
    Arc<AtomicBool>,
    Vec<tokio::task::JoinHandle<Vec<u64>>>,
) {
    let mut args = data_dir_args(&dir.join("data"));
    args.extend([
        "--flush-interval-ms".to_owned(),
        flush_interval_ms.to_string(),
    ]);
    let server = Server::start("serve", &args, &dir.join("log")).await;
    let stop = Arc::new(AtomicBool::new(false));
    let tasks = load(&server, Arc::clone(&stop), in_flight, 1);
    (server, args, stop, tasks)
}

fn assert_none_lost(acked: &[u64], seen: &HashMap<u64, usize>) {
    let lost: Vec<_> = acked
        .iter()
        .filter(|seed| !seen.contains_key(seed))
        .collect();
    assert!(
        lost.is_empty(),
        "{} of {} acknowledged requests lost: {lost:?}",
        lost.len(),
        acked.len()
    );
}

#[tokio::test]
async fn sigkill_under_load_loses_no_acknowledged_request() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    let (mut server, args, _stop, mut tasks) =
        serve_under_load(dir.path(), 50, InFlight::default()).await;
    let mut acked_all = Vec::new();
    // Three kills under load, each restart on the same data taking load again.
    for cycle in 1..=3u64 {
        tokio::time::sleep(Duration::from_secs(2)).await;
        server.kill();
        let acked = acked(tasks).await;
        assert!(
            acked.len() >= 10,
            "cycle {cycle}: the load got going: {} acknowledged",
            acked.len()
        );
        acked_all.extend(acked);
        let log = dir.path().join(format!("log{cycle}"));
        server = Server::start("serve", &args, &log).await;
        tasks = load(
            &server,
            Arc::new(AtomicBool::new(false)),
            InFlight::default(),
            cycle << 32,
        );
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(server.terminate().success());
    acked_all.extend(acked(tasks).await);

    // Every acknowledged request is there, once.
    let seen = stored_seeds(&data).await;
    assert_none_lost(&acked_all, &seen);
    assert!(seen.values().all(|&n| n == 1), "no request stored twice");

    let restarted = Server::start("serve", &args, &dir.path().join("log-last")).await;
    let response = reqwest::Client::new()
        .post(format!("{}/v1/traces", restarted.http_url()))
        .header("content-type", "application/x-protobuf")
        .body(request(1 << 40))
        .send()
        .await
        .expect("answers");
    assert!(
        response.status().is_success(),
        "the restarted server takes writes"
    );
    assert!(restarted.terminate().success());
}

#[tokio::test]
async fn sigterm_commits_in_flight_requests_before_exiting() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    // A flush interval longer than the test: every sender's first request
    // waits for the flush that SIGTERM makes.
    let in_flight = InFlight::default();
    let (server, _, stop, tasks) =
        serve_under_load(dir.path(), 600_000, Arc::clone(&in_flight)).await;
    // Each sender sends one request, which waits; no sender sends another.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while in_flight.lock().expect("in flight").len() < SENDERS {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the senders started"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.store(true, Ordering::Relaxed);
    // Time for the requests to reach the server, where they wait.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let waiting = in_flight.lock().expect("in flight").clone();
    assert_eq!(
        waiting.len(),
        SENDERS,
        "one request per sender: {waiting:?}"
    );
    let log = dir.path().join("log");
    // Waited for off the test's runtime: the senders read their answers meanwhile.
    let status = tokio::task::spawn_blocking(move || server.terminate())
        .await
        .expect("terminated");
    let acked = acked(tasks).await;
    assert!(
        status.success(),
        "exit status {status}; log:\n{}",
        std::fs::read_to_string(log).unwrap_or_default()
    );
    // Each request in flight at SIGTERM was acknowledged, then stored.
    assert_eq!(
        acked.iter().copied().collect::<BTreeSet<u64>>(),
        waiting,
        "the requests in flight at SIGTERM are the acknowledged ones"
    );
    let seen = stored_seeds(&data).await;
    assert_none_lost(&acked, &seen);
}

#[tokio::test]
async fn a_receiver_starts_with_its_object_store_down_and_takes_writes_once_it_is_back() {
    let dir = tempfile::tempdir().expect("temp dir");
    let s3 = framelake_testkit::S3Server::private();
    let bucket = s3.create_bucket("down").await;
    s3.stop();
    let mut args = data_dir_args(dir.path());
    args.extend([
        format!("--object-store-url=s3://{bucket}/lake"),
        format!("--s3-endpoint={}", s3.endpoint()),
        format!("--s3-region={}", s3.region()),
        format!("--s3-access-key-id={}", s3.access_key_id()),
        format!("--s3-secret-access-key={}", s3.secret_access_key()),
    ]);
    // Starts although the startup recovery cannot list the store.
    let server = Server::start("serve", &args, &dir.path().join("log")).await;
    let send = || {
        reqwest::Client::new()
            .post(format!("{}/v1/traces", server.http_url()))
            .header("content-type", "application/x-protobuf")
            .body(request(7))
            .send()
    };
    let refused = send().await.expect("answers");
    assert_eq!(refused.status(), reqwest::StatusCode::SERVICE_UNAVAILABLE);
    assert!(refused.headers().contains_key("retry-after"));

    s3.start();
    // moto keeps no state across restarts: the bucket comes back empty.
    s3.create_bucket_named(&bucket).await;
    assert_eq!(
        send().await.expect("answers").status(),
        reqwest::StatusCode::OK
    );
    assert!(
        server
            .log_text()
            .contains("recovering stored segments failed; retrying in the background"),
        "{}",
        server.log_text()
    );
}

/// A request of 64 spans carrying 4 KiB each that does not compress.
fn incompressible_request(seed: u64) -> Bytes {
    let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    request_with(seed, move || {
        let noise = (0..4096)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect();
        vec![KeyValue {
            key: "noise".to_owned(),
            value: Some(AnyValue {
                value: Some(any_value::Value::BytesValue(noise)),
            }),
            ..Default::default()
        }]
    })
}

/// A tmpfs mounted on a folder for as long as it lives.
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    /// Mounts one of `size` (as mount(8) writes it) on `dir`; `None` when
    /// this process may not (not root).
    fn mount(dir: &std::path::Path, size: &str) -> Option<Tmpfs> {
        std::fs::create_dir_all(dir).expect("mount point");
        let status = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .status()
            .ok()?;
        status.success().then(|| Tmpfs(dir.to_owned()))
    }

    fn resize(&self, size: &str) {
        let status = std::process::Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(&self.0)
            .status()
            .expect("mount runs");
        assert!(status.success(), "remounting {}", self.0.display());
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

fn files_under(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir).map_or(0, |entries| {
        entries
            .flatten()
            .map(|e| match e.file_type() {
                Ok(t) if t.is_dir() => files_under(&e.path()),
                _ => 1,
            })
            .sum()
    })
}

#[tokio::test]
async fn a_full_disk_refuses_writes_retryably_and_recovers_losing_nothing() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    let Some(disk) = Tmpfs::mount(&data, "24m") else {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI runs as root: mounting a tmpfs must work there"
        );
        eprintln!("NOT RUN: mounting a tmpfs needs root; run the tests as root to fill a disk");
        return;
    };
    let mut args = data_dir_args(&data);
    args.extend(["--flush-interval-ms".to_owned(), "20".to_owned()]);
    let server = Server::start("serve", &args, &dir.path().join("log")).await;
    let client = reqwest::Client::new();
    let send = |seed: u64| {
        client
            .post(format!("{}/v1/traces", server.http_url()))
            .header("content-type", "application/x-protobuf")
            .body(incompressible_request(seed))
            .send()
    };
    let mut acked = Vec::new();
    let mut refused = None;
    for seed in 1..200u64 {
        let response = send(seed).await.expect("answers");
        match response.status().as_u16() {
            200 => acked.push(seed),
            503 => {
                assert!(response.headers().contains_key("retry-after"));
                refused = Some(seed);
                break;
            }
            other => panic!("{other}: {}", response.text().await.unwrap_or_default()),
        }
    }
    let refused = refused.expect("the disk fills up");
    assert!(
        acked.len() >= 5,
        "{} acknowledged before it was full",
        acked.len()
    );
    // Refused flushes leave nothing behind.
    let files = files_under(&data);
    for _ in 0..10 {
        assert_eq!(send(refused).await.expect("answers").status(), 503);
    }
    assert!(
        files_under(&data) <= files + 1,
        "{} files, then {}",
        files,
        files_under(&data)
    );

    disk.resize("512m");
    let mut retried = false;
    for _ in 0..50 {
        if send(refused).await.expect("answers").status() == 200 {
            retried = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(retried, "writes go through once there is room");
    acked.push(refused);
    assert!(server.terminate().success());
    let seen = stored_seeds(&data).await;
    assert_none_lost(&acked, &seen);
    assert!(seen.values().all(|&n| n == 1), "no request stored twice");
    assert_eq!(seen.len(), acked.len(), "nothing refused was stored");
}
