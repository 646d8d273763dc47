//! The receivers in process, over real sockets: OTLP/HTTP and OTLP/gRPC against
//! a real lake (SQLite and local files, or PostgreSQL and an S3-compatible server).

mod grpc;
mod http;
mod loki;
mod native;
mod recovery;
mod unavailable;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use framelake_lake::catalog::BlockFilter;
use framelake_lake::ids::{BlockKind, TenantId};
use framelake_lake::segment::Compression;
use framelake_lake::tenancy::Tenancy;
use framelake_lake::writer::{Writer, WriterConfig};
use framelake_lake::{Lake, LakeConfig};
use framelake_receiver::{Ingest, Limits};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use prost::Message;

/// Receivers on ephemeral ports, over a lake.
pub(crate) struct TestServer {
    pub(crate) http: SocketAddr,
    pub(crate) grpc: SocketAddr,
    pub(crate) lake: Arc<Lake>,
    _dir: Option<tempfile::TempDir>,
}

pub(crate) struct Options {
    pub(crate) tenancy: Tenancy,
    pub(crate) limits: Limits,
    pub(crate) lake: Option<LakeConfig>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            tenancy: Tenancy::open(),
            limits: Limits::default(),
            lake: None,
        }
    }
}

impl TestServer {
    pub(crate) async fn start() -> Self {
        Self::with(Options::default()).await
    }

    pub(crate) async fn with(options: Options) -> Self {
        let (config, dir) = match options.lake {
            Some(config) => (config, None),
            None => {
                let dir = tempfile::tempdir().expect("temp dir");
                (LakeConfig::embedded(dir.path()), Some(dir))
            }
        };
        let lake = Arc::new(Lake::open(&config).await.expect("lake opens"));
        let writer_config = WriterConfig {
            flush_interval: Duration::from_millis(20),
            ..WriterConfig::default()
        };
        let writer = Arc::new(Writer::start(Arc::clone(&lake), writer_config));
        let ingest = Arc::new(Ingest::new(
            Arc::clone(&lake),
            writer,
            options.tenancy,
            options.limits,
            Compression::Zstd { level: 3 },
        ));
        let http_listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let http = http_listener.local_addr().expect("addr");
        let router = framelake_receiver::http::router(Arc::clone(&ingest));
        tokio::spawn(async move { axum::serve(http_listener, router).await });
        let grpc_listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let grpc = grpc_listener.local_addr().expect("addr");
        let routes = framelake_receiver::grpc::routes(ingest);
        tokio::spawn(async move {
            tonic::transport::Server::builder()
                .add_routes(routes)
                .serve_with_incoming(tonic::transport::server::TcpIncoming::from(grpc_listener))
                .await
        });
        TestServer {
            http,
            grpc,
            lake,
            _dir: dir,
        }
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.http)
    }

    /// Every stored request of a tenant and kind, decoded.
    pub(crate) async fn stored<M: Message + Default>(
        &self,
        tenant: &str,
        kind: BlockKind,
    ) -> Vec<M> {
        let tenant: TenantId = tenant.parse().expect("tenant");
        let filter = BlockFilter {
            kinds: vec![kind],
            ..BlockFilter::default()
        };
        let blocks = self
            .lake
            .catalog
            .blocks(&tenant, &filter)
            .await
            .expect("catalog answers");
        let mut out = Vec::new();
        for block in blocks {
            let payload = self
                .lake
                .read_block(&tenant, &block)
                .await
                .expect("block reads");
            out.push(M::decode(payload.as_ref()).expect("stored payload decodes"));
        }
        out
    }

    /// Every block a tenant's catalog lists.
    pub(crate) async fn blocks(&self, tenant: &str) -> Vec<framelake_lake::catalog::BlockRecord> {
        let tenant: TenantId = tenant.parse().expect("tenant");
        self.lake
            .catalog
            .blocks(&tenant, &BlockFilter::default())
            .await
            .expect("catalog answers")
    }

    pub(crate) async fn block_count(&self, tenant: &str) -> usize {
        self.blocks(tenant).await.len()
    }
}

/// A traces request of one resource with `n` spans, unique per `seed`.
pub(crate) fn traces(seed: u8, n: usize) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![KeyValue {
                    key: "service.name".to_owned(),
                    value: Some(AnyValue {
                        value: Some(any_value::Value::StringValue("svc".to_owned())),
                    }),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                spans: (0..n)
                    .map(|i| Span {
                        trace_id: vec![seed.max(1); 16],
                        span_id: (i as u64 + 1).to_le_bytes().to_vec(),
                        name: format!("op-{i}"),
                        start_time_unix_nano: 1_700_000_000_000_000_000 + i as u64,
                        end_time_unix_nano: 1_700_000_000_000_001_000 + i as u64,
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

pub(crate) fn encode(request: &impl Message) -> Bytes {
    request.encode_to_vec().into()
}

pub(crate) const TOKENS: &str = r#"
[[tokens]]
token = "token-a"
tenant = "a"
roles = ["write"]

[[tokens]]
token = "reader-a"
tenant = "a"
roles = ["read"]
"#;
