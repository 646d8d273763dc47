//! The sending thread against a local HTTP listener that answers as the
//! server's endpoints do (the receiver's own test drives the real server):
//! order, retries, re-registration, bounded memory with the server down.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use framelake_native_format::{self as format, Process, Stream};
use framelake_sdk::send::{Config, Telemetry, this_process};
use framelake_sdk::{Descriptor, DescriptorKind};

static WORK: Descriptor = Descriptor {
    kind: DescriptorKind::Span,
    level: 0,
    line: 1,
    name: "work",
    target: "send",
    file: "send.rs",
    unit: "",
};

/// Requests stored (path, body).
pub(crate) type Seen = Arc<Mutex<Vec<(String, Vec<u8>)>>>;

/// A listener answering each request with `answer(path)`; 200s are stored.
pub(crate) fn listener(answer: impl FnMut(&str) -> u16 + Send + 'static) -> (String, Seen) {
    let socket = TcpListener::bind("127.0.0.1:0").expect("bind");
    let address = format!("http://{}", socket.local_addr().expect("address"));
    let received = Arc::new(Mutex::new(Vec::new()));
    let answers = Arc::new(Mutex::new(answer));
    let seen = Arc::clone(&received);
    std::thread::spawn(move || {
        for connection in socket.incoming() {
            let Ok(connection) = connection else { return };
            let (seen, answers) = (Arc::clone(&seen), Arc::clone(&answers));
            std::thread::spawn(move || {
                let mut reader = BufReader::new(connection.try_clone().expect("clone"));
                let mut writer = connection;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    let path = line.split(' ').nth(1).unwrap_or("").to_owned();
                    let mut length = 0;
                    loop {
                        let mut header = String::new();
                        reader.read_line(&mut header).expect("header");
                        if header.trim().is_empty() {
                            break;
                        }
                        if let Some(v) = header.to_ascii_lowercase().strip_prefix("content-length:")
                        {
                            length = v.trim().parse().expect("length");
                        }
                    }
                    let mut body = vec![0; length];
                    reader.read_exact(&mut body).expect("body");
                    let status = (answers.lock().expect("answers"))(&path);
                    if status == 200 {
                        seen.lock().expect("seen").push((path, body));
                    }
                    let reply = format!("HTTP/1.1 {status} X\r\ncontent-length: 0\r\n\r\n");
                    writer.write_all(reply.as_bytes()).expect("reply");
                }
            });
        }
    });
    (address, received)
}

pub(crate) fn config(endpoint: String) -> Config {
    Config {
        endpoint,
        interval: Duration::from_millis(20),
        ..Config::default()
    }
}

pub(crate) fn sender_sends_in_order_retries_and_registers_again() {
    // 503 first (retried later), then 404 on the first block (registrations
    // are sent again, then the block).
    let (mut first, mut first_block) = (true, true);
    let (endpoint, received) = listener(move |path| {
        if std::mem::take(&mut first) {
            503
        } else if path == "/v1/native/block" && std::mem::take(&mut first_block) {
            404
        } else {
            200
        }
    });
    let telemetry = Telemetry::start(this_process(vec![]), config(endpoint));
    std::thread::spawn(|| {
        framelake_sdk::span_begin(&WORK);
        framelake_sdk::span_end(&WORK);
    })
    .join()
    .expect("worker");
    let started = Instant::now();
    while !received
        .lock()
        .expect("seen")
        .iter()
        .any(|(p, _)| p == "/v1/native/block")
    {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "no block arrived"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let stats = telemetry.stats();
    drop(telemetry);
    let seen = received.lock().expect("seen").clone();
    let paths: Vec<&str> = seen.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(paths[0], "/v1/native/process", "{paths:?}");
    Process::decode(&seen[0].1).expect("a process message");
    let first_block = paths
        .iter()
        .position(|p| *p == "/v1/native/block")
        .expect("block");
    let (header, payload) = format::decode_block(&seen[first_block].1).expect("a block");
    let stream = seen[..first_block]
        .iter()
        .filter(|(p, _)| p == "/v1/native/stream")
        .map(|(_, b)| Stream::decode(b).expect("a stream"))
        .find(|s| s.stream_id == header.stream_id);
    assert!(
        stream.is_some(),
        "the block's stream was registered before it"
    );
    assert_eq!(
        format::Payload::parse(&payload).expect("valid").event_count,
        2
    );
    assert!(stats.retries >= 2, "a 503 and a 404: {stats:?}");
    let processes = paths.iter().filter(|p| **p == "/v1/native/process").count();
    assert_eq!(processes, 2, "registered again after the 404: {paths:?}");
}

pub(crate) fn memory_stays_bounded_when_the_server_is_down() {
    // A port nothing listens on.
    let endpoint = {
        let socket = TcpListener::bind("127.0.0.1:0").expect("bind");
        format!("http://{}", socket.local_addr().expect("address"))
    };
    let telemetry = Telemetry::start(
        this_process(vec![]),
        Config {
            queue_bytes: 64 << 10,
            shutdown_timeout: Duration::from_millis(200),
            ..config(endpoint)
        },
    );
    let started = Instant::now();
    std::thread::spawn(|| {
        for _ in 0..50 {
            for _ in 0..2_000 {
                framelake_sdk::span_begin(&WORK);
                framelake_sdk::span_end(&WORK);
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    })
    .join()
    .expect("the program is unaffected");
    assert!(started.elapsed() < Duration::from_secs(10));
    let stats = telemetry.stats();
    drop(telemetry);
    assert_eq!(stats.sent, 0);
    assert!(stats.dropped_blocks > 0, "{stats:?}");
}
