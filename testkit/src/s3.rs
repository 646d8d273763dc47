//! moto's S3-compatible server per test process.

use std::fs::OpenOptions;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::Duration;

use crate::process;
use crate::{INSTALL_HINT, free_port, next_serial, sanitize_name, venv_dir};

/// The S3 server shared by all tests of this process, started on first use.
///
/// Panics if `moto_server` is not installed in the venv (see
/// [`venv_dir`](crate::venv_dir)).
pub fn s3() -> &'static S3Server {
    static SERVER: OnceLock<S3Server> = OnceLock::new();
    SERVER.get_or_init(S3Server::launch)
}

/// A moto S3 server for tests; see [`s3()`]. It accepts any credentials and
/// never verifies signatures; use path-style addressing
/// (`http://127.0.0.1:PORT/<bucket>/<key>`).
///
/// Plain (unsigned) HTTP requests work, with one catch: moto treats a request
/// *without* an `Authorization` header as anonymous, and an anonymous `GET`
/// of a private object is answered `403`. Send
/// [`dummy_authorization`](Self::dummy_authorization) as the `Authorization`
/// header to act as the account owner.
///
/// All state is in memory: [`stop`](Self::stop) + [`start`](Self::start)
/// give back an *empty* server on the same port (all buckets are gone).
#[derive(Debug)]
pub struct S3Server {
    program: PathBuf,
    log: PathBuf,
    pid_file: PathBuf,
    port: u16,
    child: Mutex<Option<Child>>,
    _watchdog: Child,
}

impl S3Server {
    /// A server of the calling test's own, stopped when dropped: for tests that
    /// stop and start it, which must not disturb the shared one.
    pub fn private() -> Self {
        Self::launch()
    }

    fn launch() -> Self {
        let program = venv_dir().join("bin").join("moto_server");
        if !program.is_file() {
            panic!(
                "framelake-testkit: {} not found. Install moto's server into the test venv \
                 (`python3 -m venv .venv && .venv/bin/pip install 'moto[server]'` at the \
                 workspace root, or set FRAMELAKE_TEST_VENV to a venv that has it), or \
                 {INSTALL_HINT}.",
                program.display()
            );
        }
        let root = tempfile::Builder::new()
            .prefix("framelake-s3-")
            .tempdir()
            .expect("create a temp dir for the S3 server")
            .keep();
        let pid_file = root.join("moto.pid");
        let watchdog = process::spawn_watchdog(&root, &pid_file, "TERM");
        let server = Self {
            program,
            log: root.join("moto.log"),
            pid_file,
            port: free_port(),
            child: Mutex::new(None),
            _watchdog: watchdog,
        };
        server.start();
        server
    }

    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Always `us-east-1`.
    pub fn region(&self) -> &str {
        "us-east-1"
    }

    /// Access key id to configure clients with (moto accepts anything).
    pub fn access_key_id(&self) -> &str {
        "test"
    }

    /// Secret access key to configure clients with (moto accepts anything).
    pub fn secret_access_key(&self) -> &str {
        "test"
    }

    /// An `Authorization` header value that moto accepts as the owner of
    /// every bucket (it is not a valid signature; moto does not check).
    pub fn dummy_authorization(&self) -> &str {
        "AWS4-HMAC-SHA256 Credential=test/20250101/us-east-1/s3/aws4_request, \
         SignedHeaders=host, Signature=0"
    }

    /// Creates a uniquely named bucket (name starts with the sanitised
    /// `prefix`) with an unsigned `PUT /<bucket>` and returns its name.
    /// Panics if the server is down or refuses.
    pub async fn create_bucket(&self, prefix: &str) -> String {
        let name = format!(
            "{}-{}-{}",
            sanitize_name(prefix, '-', 40, "bucket"),
            std::process::id(),
            next_serial()
        );
        self.create_bucket_named(&name).await;
        name
    }

    /// Creates the bucket `name` (for example again, after a restart emptied the server).
    pub async fn create_bucket_named(&self, name: &str) {
        let url = format!("{}/{name}", self.endpoint());
        let response = reqwest::Client::new()
            .put(&url)
            .header("authorization", self.dummy_authorization())
            .send()
            .await
            .unwrap_or_else(|e| panic!("framelake-testkit: PUT {url}: {e}"));
        let status = response.status();
        if !status.is_success() {
            let body = response.text().await.unwrap_or_default();
            panic!("framelake-testkit: PUT {url} answered {status}: {body}");
        }
    }

    /// Kills the server and waits for it to exit. No-op if stopped. All
    /// buckets and objects are lost. Affects every test in this process.
    pub fn stop(&self) {
        let mut child = self.child.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(mut running) = child.take() {
            let _ = running.kill();
            let _ = running.wait();
            let _ = std::fs::remove_file(&self.pid_file);
            let _ = process::wait_until(Duration::from_secs(10), || !process::port_open(self.port));
        }
    }

    /// (Re)starts the server on the same port, empty, and waits until it
    /// answers HTTP. No-op if running.
    pub fn start(&self) {
        let mut child = self.child.lock().unwrap_or_else(PoisonError::into_inner);
        if child.is_some() {
            return;
        }
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("open the moto log file");
        let log_err = log.try_clone().expect("clone the moto log file handle");
        let mut running = Command::new(&self.program)
            .args(["-H", "127.0.0.1", "-p", &self.port.to_string()])
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .spawn()
            .unwrap_or_else(|e| panic!("framelake-testkit: spawn {}: {e}", self.program.display()));
        std::fs::write(&self.pid_file, format!("{}\n", running.id()))
            .expect("write the moto pid file for the watchdog");
        let mut exited = None;
        let ready = process::wait_until(Duration::from_secs(60), || {
            if let Ok(Some(status)) = running.try_wait() {
                exited = Some(status);
                return true;
            }
            process::http_answers(self.port)
        });
        if !ready || exited.is_some() {
            let _ = running.kill();
            let _ = running.wait();
            panic!(
                "framelake-testkit: moto_server on port {} did not become ready ({}); log:\n{}",
                self.port,
                exited.map_or_else(|| "timed out after 60 s".to_owned(), |s| s.to_string()),
                process::log_tail(&self.log, 4000)
            );
        }
        *child = Some(running);
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.stop();
    }
}
