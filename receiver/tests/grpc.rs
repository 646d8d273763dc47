//! OTLP/gRPC: the three services, compression, status codes and tokens.

use bytes::Bytes;
use framelake_lake::ids::BlockKind;
use framelake_lake::tenancy::Tenancy;
use framelake_receiver::Limits;
use framelake_receiver::grpc::RawCodec;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::metrics::v1::{
    Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum, metric,
};
use prost::Message;
use tonic::Code;
use tonic::codec::CompressionEncoding;

use crate::{Options, TOKENS, TestServer, encode, traces};

pub(crate) const TRACES: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";
const LOGS: &str = "/opentelemetry.proto.collector.logs.v1.LogsService/Export";
const METRICS: &str = "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export";

/// One unary call to a receiver's OTLP gRPC service.
pub(crate) struct Call<'a> {
    path: &'static str,
    body: Bytes,
    gzip: bool,
    metadata: Vec<(&'static str, &'a str)>,
}

impl<'a> Call<'a> {
    pub(crate) fn new(path: &'static str, body: Bytes) -> Self {
        Call {
            path,
            body,
            gzip: false,
            metadata: Vec::new(),
        }
    }

    pub(crate) async fn send(self, server: &TestServer) -> Result<Bytes, tonic::Status> {
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", server.grpc))
            .expect("endpoint")
            .connect()
            .await
            .expect("connects");
        let mut client = tonic::client::Grpc::new(channel);
        if self.gzip {
            client = client.send_compressed(CompressionEncoding::Gzip);
        }
        client.ready().await.expect("ready");
        let mut request = tonic::Request::new(self.body);
        for (key, value) in self.metadata {
            request
                .metadata_mut()
                .insert(key, value.parse().expect("ascii metadata"));
        }
        let path = http::uri::PathAndQuery::from_static(self.path);
        client
            .unary::<Bytes, Bytes, _>(request, path, RawCodec)
            .await
            .map(|r| r.into_inner())
    }
}

#[tokio::test]
async fn all_three_services_store_what_they_receive() {
    let server = TestServer::start().await;
    let spans = traces(1, 4);
    let response = Call::new(TRACES, encode(&spans))
        .send(&server)
        .await
        .expect("traces accepted");
    assert_eq!(
        ExportTraceServiceResponse::decode(response)
            .expect("response")
            .partial_success,
        None
    );

    let logs = ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            scope_logs: vec![ScopeLogs {
                log_records: vec![LogRecord {
                    time_unix_nano: 5,
                    severity_number: 9,
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    Call::new(LOGS, encode(&logs))
        .send(&server)
        .await
        .expect("logs accepted");

    let metrics = ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            scope_metrics: vec![ScopeMetrics {
                metrics: vec![Metric {
                    name: "requests".to_owned(),
                    data: Some(metric::Data::Sum(Sum {
                        data_points: vec![NumberDataPoint {
                            time_unix_nano: 9,
                            ..Default::default()
                        }],
                        aggregation_temporality: 2,
                        is_monotonic: true,
                    })),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    Call::new(METRICS, encode(&metrics))
        .send(&server)
        .await
        .expect("metrics accepted");

    assert_eq!(
        server
            .stored::<ExportTraceServiceRequest>("default", BlockKind::OtlpSpans)
            .await,
        vec![spans]
    );
    assert_eq!(
        server
            .stored::<ExportLogsServiceRequest>("default", BlockKind::OtlpLogs)
            .await,
        vec![logs]
    );
    assert_eq!(
        server
            .stored::<ExportMetricsServiceRequest>("default", BlockKind::OtlpMetrics)
            .await,
        vec![metrics]
    );
}

#[tokio::test]
async fn gzip_requests_and_tenant_metadata_are_honoured() {
    let server = TestServer::start().await;
    let call = Call {
        gzip: true,
        metadata: vec![("x-scope-orgid", "acme")],
        ..Call::new(TRACES, encode(&traces(2, 50)))
    };
    call.send(&server).await.expect("accepted");
    assert_eq!(
        server
            .stored::<ExportTraceServiceRequest>("acme", BlockKind::OtlpSpans)
            .await,
        vec![traces(2, 50)],
        "stored as sent, once inflated, for the tenant the metadata names"
    );
}

#[tokio::test]
async fn bad_input_gets_the_grpc_status_otlp_expects() {
    let limits = Limits {
        max_body_bytes: 64 << 10,
        max_decoded_bytes: 64 << 10,
        ..Limits::default()
    };
    let server = TestServer::with(Options {
        limits,
        ..Options::default()
    })
    .await;

    let err = Call::new(TRACES, Bytes::from_static(b"\x0a\xff\xff\xff\x0f\x01"))
        .send(&server)
        .await
        .expect_err("malformed");
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");

    let err = Call::new(TRACES, encode(&traces(1, 2000)))
        .send(&server)
        .await
        .expect_err("oversized");
    assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");

    // Small on the wire, far over the limit once decompressed.
    let mut bomb = traces(1, 1);
    bomb.resource_spans[0].schema_url = "x".repeat(8 << 20);
    let err = Call {
        gzip: true,
        ..Call::new(TRACES, encode(&bomb))
    }
    .send(&server)
    .await
    .expect_err("bomb");
    assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");

    let mut bad = traces(1, 1);
    bad.resource_spans[0].scope_spans[0].spans[0]
        .span_id
        .clear();
    let err = Call::new(TRACES, encode(&bad))
        .send(&server)
        .await
        .expect_err("invalid ids");
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");

    assert_eq!(server.block_count("default").await, 0);
}

#[tokio::test]
async fn tokens_are_checked_and_bound_to_their_tenant() {
    let tenancy = Tenancy::from_toml(TOKENS).expect("tokens");
    let server = TestServer::with(Options {
        tenancy,
        ..Options::default()
    })
    .await;
    let body = encode(&traces(5, 1));
    let call = |metadata: Vec<(&'static str, &'static str)>| Call {
        metadata,
        ..Call::new(TRACES, body.clone())
    };

    let err = call(vec![]).send(&server).await.expect_err("no token");
    assert_eq!(err.code(), Code::Unauthenticated);
    let err = call(vec![("authorization", "Bearer nope")])
        .send(&server)
        .await
        .expect_err("unknown token");
    assert_eq!(err.code(), Code::Unauthenticated);
    let err = call(vec![
        ("authorization", "Bearer token-a"),
        ("x-scope-orgid", "b"),
    ])
    .send(&server)
    .await
    .expect_err("foreign");
    assert_eq!(err.code(), Code::PermissionDenied);
    call(vec![("authorization", "Bearer token-a")])
        .send(&server)
        .await
        .expect("accepted");
    assert_eq!(server.block_count("a").await, 1);
    assert_eq!(server.block_count("b").await, 0);
}
