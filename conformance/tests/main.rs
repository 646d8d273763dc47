//! Black-box conformance: the real `framelake` binary, real OpenTelemetry SDKs
//! (Python and JavaScript) as clients, and the lake read back field by field.

mod cli;
mod durability;
mod flightsql;
mod hostile;
mod loki;
mod loki_contract;
mod native;
mod render;
mod sdk;
mod tempo;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use framelake_lake::catalog::BlockFilter;
use framelake_lake::ids::{BlockKind, TenantId};
use framelake_lake::{Lake, LakeConfig};
use prost::Message;

/// A `framelake` process.
pub(crate) struct Server {
    child: Child,
    pub(crate) http_port: u16,
    pub(crate) grpc_port: u16,
    pub(crate) query_port: u16,
    pub(crate) flight_port: u16,
    log: PathBuf,
}

impl Server {
    /// `framelake <role> <args…>` on free ports; returns once `/ready` answers.
    pub(crate) async fn start(role: &str, args: &[String], log: &Path) -> Server {
        let (http_port, grpc_port) = (
            framelake_testkit::free_port(),
            framelake_testkit::free_port(),
        );
        let (query_port, flight_port) = (
            framelake_testkit::free_port(),
            framelake_testkit::free_port(),
        );
        let log_file = std::fs::File::create(log).expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_framelake"))
            .arg(role)
            .args(args)
            // Addresses through the environment, as deployments often do.
            .env("FRAMELAKE_INGEST_ADDR", format!("127.0.0.1:{http_port}"))
            .env("FRAMELAKE_OTLP_GRPC_ADDR", format!("127.0.0.1:{grpc_port}"))
            .env("FRAMELAKE_QUERY_ADDR", format!("127.0.0.1:{query_port}"))
            .env("FRAMELAKE_FLIGHT_ADDR", format!("127.0.0.1:{flight_port}"))
            .env("FRAMELAKE_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .expect("framelake starts");
        let mut server = Server {
            child,
            http_port,
            grpc_port,
            query_port,
            flight_port,
            log: log.to_owned(),
        };
        server.wait_ready(role).await;
        server
    }

    async fn wait_ready(&mut self, role: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        // Every HTTP listener the role serves: they bind one after the other.
        let ports = match role {
            "serve" => vec![self.http_port, self.query_port],
            "query" => vec![self.query_port],
            // No listener: started is ready.
            "maintain" => vec![],
            _ => vec![self.http_port],
        };
        loop {
            let mut ready = true;
            for port in &ports {
                let url = format!("http://127.0.0.1:{port}/ready");
                ready &= matches!(reqwest::get(&url).await, Ok(r) if r.status().is_success());
            }
            if ready {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("framelake exited with {status}; log:\n{}", self.log_text());
            }
            assert!(
                Instant::now() < deadline,
                "framelake not ready in 30 s; log:\n{}",
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// `framelake serve` on the embedded default, its data and log under `dir`.
    pub(crate) async fn serve_in(dir: &Path) -> Server {
        Server::start("serve", &data_dir_args(&dir.join("data")), &dir.join("log")).await
    }

    pub(crate) fn query_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.query_port)
    }

    pub(crate) fn http_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.http_port)
    }

    pub(crate) fn grpc_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.grpc_port)
    }

    /// Rows of a SQL query of a tenant, over the HTTP SQL API.
    pub(crate) async fn sql(&self, tenant: &str, sql: &str) -> Vec<serde_json::Value> {
        let response = reqwest::Client::new()
            .post(format!("http://127.0.0.1:{}/api/v1/sql", self.query_port))
            .header("x-scope-orgid", tenant)
            .json(&serde_json::json!({ "sql": sql }))
            .send()
            .await
            .expect("the query listener answers");
        let status = response.status();
        let body = response.text().await.expect("body");
        assert!(status.is_success(), "{sql}: {status} {body}");
        serde_json::from_str(&body).expect("JSON rows")
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    pub(crate) fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn signal(&self, signal: i32) {
        // SAFETY: signalling our own child process by pid.
        unsafe { libc::kill(self.child.id() as i32, signal) };
    }

    /// SIGKILL: no flush, no cleanup.
    pub(crate) fn kill(mut self) {
        self.signal(libc::SIGKILL);
        let _ = self.child.wait();
    }

    /// SIGTERM, and the exit status once it stopped.
    pub(crate) fn terminate(mut self) -> ExitStatus {
        self.signal(libc::SIGTERM);
        self.child.wait().expect("framelake exits")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Every stored request of one kind for a tenant, decoded.
pub(crate) async fn stored<M: Message + Default>(
    lake: &Lake,
    tenant: &str,
    kind: BlockKind,
) -> Vec<M> {
    let tenant: TenantId = tenant.parse().expect("tenant");
    let filter = BlockFilter {
        kinds: vec![kind],
        ..BlockFilter::default()
    };
    let mut out = Vec::new();
    for block in lake
        .catalog
        .blocks(&tenant, &filter)
        .await
        .expect("catalog answers")
    {
        let payload = lake.read_block(&tenant, &block).await.expect("block reads");
        out.push(M::decode(payload.as_ref()).expect("stored payload decodes"));
    }
    out
}

pub(crate) async fn embedded_lake(dir: &Path) -> Lake {
    Lake::open(&LakeConfig::embedded(dir))
        .await
        .expect("lake opens")
}

pub(crate) fn data_dir_args(dir: &Path) -> Vec<String> {
    vec!["--data-dir".to_owned(), dir.display().to_string()]
}
