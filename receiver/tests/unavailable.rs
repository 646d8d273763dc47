//! When the object store or the database is down: a retryable error, nothing
//! acknowledged, nothing indexed; and recovery once it is back.

use std::time::Duration;

use framelake_lake::LakeConfig;
use framelake_lake::store::S3Options;
use framelake_testkit::{PostgresServer, S3Server};
use reqwest::StatusCode;
use tonic::Code;

use crate::grpc::{Call, TRACES};
use crate::{Options, TestServer, encode, traces};

async fn post(server: &TestServer, seed: u8) -> reqwest::Response {
    reqwest::Client::new()
        .post(server.url("/v1/traces"))
        .header("content-type", "application/x-protobuf")
        .body(encode(&traces(seed, 3)))
        .send()
        .await
        .expect("server answers")
}

async fn grpc(server: &TestServer, seed: u8) -> Result<(), tonic::Status> {
    Call::new(TRACES, encode(&traces(seed, 3)))
        .send(server)
        .await
        .map(|_| ())
}

async fn cluster_lake(s3: &S3Server, database_url: String) -> (LakeConfig, String) {
    let bucket = s3.create_bucket("receiver").await;
    let config = LakeConfig {
        database_url,
        object_store_url: format!("s3://{bucket}/lake"),
        s3: S3Options {
            endpoint: Some(s3.endpoint()),
            region: Some(s3.region().to_owned()),
            access_key_id: Some(s3.access_key_id().to_owned()),
            secret_access_key: Some(s3.secret_access_key().to_owned()),
        },
    };
    (config, bucket)
}

#[tokio::test]
async fn object_store_down_is_retryable_and_recovers() {
    let s3 = S3Server::private();
    let database_url = framelake_testkit::postgres()
        .create_database("recv_s3")
        .await;
    let (config, bucket) = cluster_lake(&s3, database_url).await;
    let server = TestServer::with(Options {
        lake: Some(config),
        ..Options::default()
    })
    .await;
    assert_eq!(post(&server, 1).await.status(), StatusCode::OK);

    s3.stop();
    let response = post(&server, 2).await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        response.headers().contains_key("retry-after"),
        "OTLP clients wait Retry-After before retrying"
    );
    let err = grpc(&server, 3).await.expect_err("store down");
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    assert_eq!(
        server.block_count("default").await,
        1,
        "nothing unacknowledged was indexed"
    );

    s3.start();
    s3.create_bucket_named(&bucket).await;
    assert_eq!(
        post(&server, 2).await.status(),
        StatusCode::OK,
        "the retry succeeds"
    );
    grpc(&server, 3).await.expect("the gRPC retry succeeds");
    assert_eq!(server.block_count("default").await, 3);
}

#[tokio::test]
async fn database_down_is_retryable_and_recovers() {
    let postgres = PostgresServer::private();
    let database_url = postgres.create_database("recv_pg").await;
    let (config, _) = cluster_lake(framelake_testkit::s3(), database_url).await;
    let server = TestServer::with(Options {
        lake: Some(config),
        ..Options::default()
    })
    .await;
    assert_eq!(post(&server, 1).await.status(), StatusCode::OK);

    postgres.stop();
    let response = post(&server, 2).await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(response.headers().contains_key("retry-after"));
    let err = grpc(&server, 3).await.expect_err("database down");
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    let ready = reqwest::get(server.url("/ready")).await.expect("answers");
    assert_eq!(
        ready.status(),
        StatusCode::SERVICE_UNAVAILABLE,
        "not ready without a catalog"
    );

    postgres.start();
    // The pool reconnects on its own; give it a moment.
    let mut status = post(&server, 2).await.status();
    for _ in 0..20 {
        if status == StatusCode::OK {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
        status = post(&server, 2).await.status();
    }
    assert_eq!(
        status,
        StatusCode::OK,
        "the retry succeeds once the database is back"
    );
    grpc(&server, 3).await.expect("the gRPC retry succeeds");
    assert_eq!(server.block_count("default").await, 3);
}

/// A request stored while the database was down was never acknowledged (the
/// client got 503). After a crash, the restarted receiver records its stored
/// segment (recovery), and the client's retry of the same request is then
/// stored once, not twice.
#[tokio::test]
async fn a_stored_but_unacknowledged_request_resent_after_a_restart_is_stored_once() {
    use framelake_lake::ids::BlockKind;
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use prost::Message;

    let postgres = PostgresServer::private();
    let database_url = postgres.create_database("recv_resend").await;
    let (config, _) = cluster_lake(framelake_testkit::s3(), database_url).await;
    let server = TestServer::with(Options {
        lake: Some(config.clone()),
        ..Options::default()
    })
    .await;
    assert_eq!(post(&server, 1).await.status(), StatusCode::OK);
    postgres.stop();
    // Stored in S3, not committed, not acknowledged.
    assert_eq!(
        post(&server, 2).await.status(),
        StatusCode::SERVICE_UNAVAILABLE
    );
    // The receiver goes away; the database comes back; a receiver starts
    // over the same lake and recovers what was stored.
    drop(server);
    postgres.start();
    let restarted = TestServer::with(Options {
        lake: Some(config),
        ..Options::default()
    })
    .await;
    let recovered = framelake_receiver::recovery::recover(&restarted.lake)
        .await
        .expect("recovery");
    assert_eq!(recovered.new_blocks, 1, "{recovered:?}");
    // The client retries the request it never saw acknowledged.
    assert_eq!(post(&restarted, 2).await.status(), StatusCode::OK);
    let mut stored: Vec<Vec<u8>> = restarted
        .stored::<ExportTraceServiceRequest>("default", BlockKind::OtlpSpans)
        .await
        .iter()
        .map(Message::encode_to_vec)
        .collect();
    stored.sort();
    let mut sent = vec![traces(1, 3).encode_to_vec(), traces(2, 3).encode_to_vec()];
    sent.sort();
    assert_eq!(stored, sent, "each request once");
}
