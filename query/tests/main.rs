//! The query side end to end: OTLP requests into a real receiver over HTTP,
//! SQL over HTTP back out, on SQLite + local files and PostgreSQL + S3.

mod aggregates;
mod api;
mod compaction;
mod data;
mod flight;
mod loki;
mod native;
mod quarantine;
mod sql;

use std::sync::Arc;
use std::time::Duration;

use framelake_lake::segment::Compression;
use framelake_lake::tenancy::Tenancy;
use framelake_lake::writer::{Writer, WriterConfig};
use framelake_lake::{Lake, LakeConfig};
use framelake_query::flight::FlightSql;
use framelake_query::http::QueryService;
use framelake_query::{Engine, QueryLimits};
use framelake_receiver::{Ingest, Limits};
use tokio::net::TcpListener;

/// Tokens of two tenants: `a` has a writer and a reader, `b` a reader and
/// a token that does both.
pub(crate) const TOKENS: &str = r#"
    [[tokens]]
    token = "writer-a"
    tenant = "a"
    roles = ["write"]

    [[tokens]]
    token = "reader-a"
    tenant = "a"
    roles = ["read"]

    [[tokens]]
    token = "reader-b"
    tenant = "b"
    roles = ["read"]

    [[tokens]]
    token = "both-b"
    tenant = "b"
    roles = ["read", "write"]
"#;

/// A receiver and a query listener in this process, on one lake.
pub(crate) struct Stack {
    pub(crate) lake: Arc<Lake>,
    pub(crate) engine: Engine,
    pub(crate) ingest_url: String,
    pub(crate) query_url: String,
    /// `http://host:port` of the FlightSQL listener.
    pub(crate) flight_url: String,
    pub(crate) client: reqwest::Client,
    _dir: Option<tempfile::TempDir>,
}

impl Stack {
    /// SQLite and local files in a fresh folder.
    pub(crate) async fn embedded(tenancy: Tenancy, limits: QueryLimits) -> Stack {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut stack = Stack::start(LakeConfig::embedded(dir.path()), tenancy, limits).await;
        stack._dir = Some(dir);
        stack
    }

    /// The folder of an embedded stack.
    pub(crate) fn data_dir(&self) -> &std::path::Path {
        self.local_dir().expect("an embedded stack")
    }

    /// The folder of an embedded stack; `None` for a cluster.
    pub(crate) fn local_dir(&self) -> Option<&std::path::Path> {
        self._dir.as_ref().map(|d| d.path())
    }

    /// PostgreSQL and the S3 server of the test harness.
    pub(crate) async fn cluster(name: &str) -> Stack {
        let s3 = framelake_testkit::s3();
        let bucket = s3.create_bucket(name).await;
        let config = LakeConfig {
            database_url: framelake_testkit::postgres().create_database(name).await,
            object_store_url: format!("s3://{bucket}/lake"),
            s3: framelake_lake::store::S3Options {
                endpoint: Some(s3.endpoint()),
                region: Some(s3.region().to_owned()),
                access_key_id: Some(s3.access_key_id().to_owned()),
                secret_access_key: Some(s3.secret_access_key().to_owned()),
            },
        };
        Stack::start(config, Tenancy::open(), QueryLimits::default()).await
    }

    async fn start(config: LakeConfig, tenancy: Tenancy, limits: QueryLimits) -> Stack {
        let lake = Arc::new(Lake::open(&config).await.expect("lake opens"));
        let writer_config = WriterConfig {
            flush_interval: Duration::from_millis(20),
            ..WriterConfig::default()
        };
        let ingest = Arc::new(Ingest::new(
            Arc::clone(&lake),
            Arc::new(Writer::start(Arc::clone(&lake), writer_config)),
            tenancy.clone(),
            Limits::default(),
            Compression::Lz4,
        ));
        let engine = Engine::new(
            Arc::clone(&lake),
            limits,
            framelake_query::aggregate::shipped(),
        )
        .await
        .expect("the shipped aggregates plan");
        let flight = FlightSql::new(engine.clone(), tenancy.clone()).into_server();
        let query = Arc::new(QueryService {
            engine: engine.clone(),
            tenancy,
            labels: framelake_query::loki::streams::LabelMapping::default(),
        });
        let ingest_url = serve(framelake_receiver::http::router(ingest)).await;
        let query_url = serve(framelake_query::http::router(query)).await;
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let flight_url = format!("http://{}", listener.local_addr().expect("address"));
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(flight)
                .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
        );
        Stack {
            lake,
            engine,
            ingest_url,
            query_url,
            flight_url,
            client: reqwest::Client::new(),
            _dir: None,
        }
    }

    /// Sends an OTLP/HTTP protobuf request to `/v1/{signal}` for a tenant; panics unless accepted.
    pub(crate) async fn send(&self, tenant: &str, signal: &str, body: Vec<u8>) {
        let response = self
            .client
            .post(format!("{}/v1/{signal}", self.ingest_url))
            .header("content-type", "application/x-protobuf")
            .header("x-scope-orgid", tenant)
            .body(body)
            .send()
            .await
            .expect("receiver answers");
        assert_eq!(response.status(), 200, "{:?}", response.text().await);
    }

    /// `POST /api/v1/sql` with the given headers, answered.
    async fn post_sql(&self, sql: &str, headers: &[(&str, &str)]) -> reqwest::Response {
        let mut request = self
            .client
            .post(format!("{}/api/v1/sql", self.query_url))
            .json(&serde_json::json!({ "sql": sql }));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        request.send().await.expect("query listener answers")
    }

    /// `POST /api/v1/sql` with the given headers; the status and the body.
    pub(crate) async fn query(&self, sql: &str, headers: &[(&str, &str)]) -> (u16, bytes::Bytes) {
        let response = self.post_sql(sql, headers).await;
        let status = response.status().as_u16();
        (status, response.bytes().await.expect("body"))
    }

    /// A query as JSON rows, with the answer's warnings
    /// (`Framelake-Warning`); panics unless it succeeds.
    pub(crate) async fn rows_and_warnings(
        &self,
        sql: &str,
        headers: &[(&str, &str)],
    ) -> (Vec<serde_json::Value>, Vec<String>) {
        let response = self.post_sql(sql, headers).await;
        assert_eq!(response.status(), 200, "{sql}");
        let warnings = response
            .headers()
            .get_all("framelake-warning")
            .iter()
            .map(|v| v.to_str().expect("visible ASCII").to_owned())
            .collect();
        (response.json().await.expect("JSON rows"), warnings)
    }

    /// A query of the default tenant as JSON rows; panics unless it succeeds.
    pub(crate) async fn rows(&self, sql: &str) -> Vec<serde_json::Value> {
        let (status, body) = self.query(sql, &[]).await;
        assert_eq!(status, 200, "{sql}: {}", String::from_utf8_lossy(&body));
        serde_json::from_slice(&body).expect("JSON rows")
    }
}

async fn serve(router: axum::Router) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("address");
    tokio::spawn(async move { axum::serve(listener, router).await });
    format!("http://{addr}")
}
