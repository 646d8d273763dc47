//! Real dependencies for framelake's integration tests, started by the test
//! process itself.
//!
//! * [`postgres()`] — a throwaway PostgreSQL cluster (one per test process),
//!   initialised with `initdb` in a private temp dir and listening on a free
//!   port on `127.0.0.1`. [`PostgresServer::create_database`] hands every test
//!   its own fresh database. Set `FRAMELAKE_TEST_DATABASE_URL` (an admin URL)
//!   to use an existing server instead.
//! * [`s3()`] — moto's S3-compatible server (`moto_server`, one per test
//!   process) from the workspace's Python venv, on a free port on
//!   `127.0.0.1`. [`S3Server::create_bucket`] hands out fresh buckets.
//!
//! Both are started lazily on first use and are shared by all tests of the
//! process. They never outlive it: Rust does not run destructors of statics,
//! so each server gets a *watchdog* shell process (see `process.rs`) that
//! notices when the test process is gone (it is re-parented), kills the
//! server and deletes its temp dir within about a second.
//!
//! Missing tools are a hard failure, never a silent skip: the panic message
//! says what to install; `scripts/test` at the workspace root installs
//! everything (PostgreSQL server binaries and the Python venv with
//! `moto[server]`).
//!
//! `stop()`/`start()` on either server affect every test in the process:
//! tests that use them should serialise with the other tests that use the
//! same server (e.g. a `static tokio::sync::Mutex`) or live in their own test
//! binary.

mod cluster;
mod postgres;
mod process;
mod s3;

use std::net::TcpListener;
use std::path::{Path, PathBuf};

pub use postgres::{PostgresServer, postgres};
pub use s3::{S3Server, s3};

/// Root of the framelake Cargo workspace: the nearest folder holding
/// `Cargo.lock` above the running test's package. Read at run time (cargo
/// sets `CARGO_MANIFEST_DIR` for every test it runs), so that a target
/// directory shared between checkouts never points a test at another checkout.
pub fn workspace_root() -> PathBuf {
    let package = std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")));
    package
        .ancestors()
        .find(|dir| dir.join("Cargo.lock").is_file())
        .map(Path::to_path_buf)
        .unwrap_or(package)
}

/// The Python virtualenv used by tests: `$FRAMELAKE_TEST_VENV` if set,
/// otherwise `<workspace root>/.venv`.
pub fn venv_dir() -> PathBuf {
    match std::env::var_os("FRAMELAKE_TEST_VENV") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => workspace_root().join(".venv"),
    }
}

/// The venv's Python interpreter (`<venv>/bin/python`). Not checked for
/// existence.
pub fn venv_python() -> PathBuf {
    venv_dir().join("bin").join("python")
}

/// A TCP port on `127.0.0.1` that was free a moment ago (bound to port 0,
/// then released), and never handed out before in this process: the kernel
/// may give a just-released port again, and a test that asks for several
/// ports (one per listener) must get distinct ones. Another process may grab
/// it in between; that is rare enough for tests.
pub fn free_port() -> u16 {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    loop {
        let listener =
            TcpListener::bind(("127.0.0.1", 0)).expect("bind 127.0.0.1:0 to pick a free port");
        let port = listener
            .local_addr()
            .expect("local address of a freshly bound listener")
            .port();
        let mut given = GIVEN
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if !given.contains(&port) {
            given.push(port);
            return port;
        }
    }
}

/// `prefix` reduced to `[a-z0-9]` plus `sep`, at most `max` chars, never
/// starting or ending with `sep`; `fallback` if nothing is left.
pub(crate) fn sanitize_name(prefix: &str, sep: char, max: usize, fallback: &str) -> String {
    let mut out = String::new();
    for c in prefix.chars() {
        let c = c.to_ascii_lowercase();
        let c = if c.is_ascii_lowercase() || c.is_ascii_digit() {
            c
        } else {
            sep
        };
        if !(c == sep && (out.is_empty() || out.ends_with(sep))) {
            out.push(c);
        }
        if out.len() >= max {
            break;
        }
    }
    while out.ends_with(sep) {
        out.pop();
    }
    if out.is_empty() {
        fallback.to_owned()
    } else {
        out
    }
}

/// A process-wide counter so names handed out by this process are unique.
pub(crate) fn next_serial() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static SERIAL: AtomicU64 = AtomicU64::new(0);
    SERIAL.fetch_add(1, Ordering::Relaxed)
}

/// Message appended to every "dependency missing" panic.
pub(crate) const INSTALL_HINT: &str = "run `scripts/test` at the workspace root: it installs \
     every test dependency (PostgreSQL server binaries and the Python venv with moto[server]) \
     and runs the tests";

#[cfg(test)]
mod tests {
    use super::sanitize_name;

    #[test]
    fn sanitize_name_keeps_identifiers_safe() {
        assert_eq!(
            sanitize_name("Lake::Catalog test", '_', 30, "db"),
            "lake_catalog_test"
        );
        assert_eq!(sanitize_name("__", '-', 30, "bucket"), "bucket");
        assert_eq!(sanitize_name("abcdef", '-', 3, "x"), "abc");
        assert_eq!(sanitize_name("a_b-", '-', 30, "x"), "a-b");
    }
}
