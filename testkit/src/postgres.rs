//! A throwaway PostgreSQL cluster per test process.

use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

use sqlx::{AssertSqlSafe, Connection, PgConnection};

use crate::cluster::Cluster;
use crate::{next_serial, sanitize_name};

/// Env var: admin URL of an existing server to use instead of starting one.
const EXTERNAL_URL_VAR: &str = "FRAMELAKE_TEST_DATABASE_URL";

/// The PostgreSQL server shared by all tests of this process, started on
/// first use (or the server named by `FRAMELAKE_TEST_DATABASE_URL`).
///
/// Panics if PostgreSQL's server binaries are not installed.
pub fn postgres() -> &'static PostgresServer {
    static SERVER: OnceLock<PostgresServer> = OnceLock::new();
    SERVER.get_or_init(PostgresServer::launch)
}

/// A PostgreSQL server for tests; see [`postgres()`].
#[derive(Debug)]
pub struct PostgresServer {
    inner: Inner,
}

#[derive(Debug)]
enum Inner {
    External { admin_url: String },
    Local(Cluster),
}

impl PostgresServer {
    /// A cluster of the calling test's own, stopped when dropped: for tests that
    /// stop and start it, which must not disturb the shared one. Always local.
    pub fn private() -> Self {
        let cluster = Cluster::create();
        cluster.start();
        Self {
            inner: Inner::Local(cluster),
        }
    }

    fn launch() -> Self {
        if let Some(url) = std::env::var(EXTERNAL_URL_VAR)
            .ok()
            .filter(|u| !u.is_empty())
        {
            return Self {
                inner: Inner::External { admin_url: url },
            };
        }
        let cluster = Cluster::create();
        cluster.start();
        Self {
            inner: Inner::Local(cluster),
        }
    }

    /// URL of the `postgres` database as superuser `postgres`, e.g.
    /// `postgres://postgres@127.0.0.1:PORT/postgres`.
    pub fn admin_url(&self) -> String {
        match &self.inner {
            Inner::External { admin_url } => admin_url.clone(),
            Inner::Local(c) => format!("postgres://postgres@127.0.0.1:{}/postgres", c.port()),
        }
    }

    /// Whether [`stop`](Self::stop)/[`start`](Self::start) are supported
    /// (false when `FRAMELAKE_TEST_DATABASE_URL` is set).
    pub fn can_restart(&self) -> bool {
        matches!(self.inner, Inner::Local(_))
    }

    /// Creates a fresh, uniquely named database (name starts with the
    /// sanitised `prefix`) and returns its URL, e.g.
    /// `postgres://postgres@127.0.0.1:PORT/<name>`. Opens its own connection,
    /// so it works from any tokio runtime. Panics if the server is down.
    pub async fn create_database(&self, prefix: &str) -> String {
        let millis = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        let name = format!(
            "{}_{}_{millis}_{}",
            sanitize_name(prefix, '_', 30, "db"),
            std::process::id(),
            next_serial()
        );
        let admin_url = self.admin_url();
        let mut conn = PgConnection::connect(&admin_url)
            .await
            .unwrap_or_else(|e| panic!("framelake-testkit: connect to {admin_url}: {e}"));
        sqlx::query(AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
            .execute(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("framelake-testkit: CREATE DATABASE {name}: {e}"));
        let _ = conn.close().await;
        with_database(&admin_url, &name)
    }

    /// Stops the server (`pg_ctl stop -m fast`, waits until it is down).
    /// No-op if already stopped. Affects every test in this process.
    ///
    /// Panics when `FRAMELAKE_TEST_DATABASE_URL` is set.
    pub fn stop(&self) {
        self.cluster("stop").stop();
    }

    /// Starts the server again on the same port with the same data dir and
    /// waits until it accepts connections. No-op if running.
    ///
    /// Panics when `FRAMELAKE_TEST_DATABASE_URL` is set.
    pub fn start(&self) {
        self.cluster("start").start();
    }

    fn cluster(&self, op: &str) -> &Cluster {
        match &self.inner {
            Inner::Local(c) => c,
            Inner::External { .. } => panic!(
                "framelake-testkit: PostgresServer::{op}() is not supported when \
                 {EXTERNAL_URL_VAR} is set (that server is not ours to stop or start); \
                 unset it to let the harness run its own cluster, or check can_restart()"
            ),
        }
    }
}

/// `url` with its database (path) replaced by `db`, query string kept.
fn with_database(url: &str, db: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let host_start = base.find("://").map_or(0, |i| i + 3);
    let path_start = base[host_start..]
        .find('/')
        .map_or(base.len(), |i| host_start + i);
    let mut out = format!("{}/{db}", &base[..path_start]);
    if let Some(query) = query {
        out.push('?');
        out.push_str(query);
    }
    out
}

impl Drop for PostgresServer {
    fn drop(&mut self) {
        if let Inner::Local(cluster) = &self.inner {
            cluster.stop();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::with_database;

    #[test]
    fn with_database_replaces_the_path() {
        assert_eq!(
            with_database("postgres://u@h:1/postgres", "x"),
            "postgres://u@h:1/x"
        );
        assert_eq!(
            with_database("postgres://u:p@h:1", "x"),
            "postgres://u:p@h:1/x"
        );
        assert_eq!(
            with_database("postgres://h/a?sslmode=disable", "x"),
            "postgres://h/x?sslmode=disable"
        );
    }
}
