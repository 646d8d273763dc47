//! The PostgreSQL catalog, for clusters: several receivers, query nodes and
//! maintainers share one database.

use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, PgPool, Postgres};

use super::sql::impl_sql_catalog;
use crate::Result;

/// A catalog in PostgreSQL.
#[derive(Debug, Clone)]
pub struct PostgresCatalog {
    pool: PgPool,
    /// The writer's commits share the pool.
    commits: PgPool,
}

impl PostgresCatalog {
    /// Connects and applies pending migrations.
    pub async fn connect(url: &str) -> Result<Self> {
        let options: PgConnectOptions = url
            .parse::<PgConnectOptions>()?
            .log_statements(tracing::log::LevelFilter::Trace);
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(Duration::from_secs(5))
            .connect_with(options)
            .await?;
        sqlx::migrate!("./migrations/postgres").run(&pool).await?;
        Ok(PostgresCatalog {
            commits: pool.clone(),
            pool,
        })
    }
}

// Claims lock their blocks (skipping those another maintainer holds); a view
// snapshot reads partitions and pending blocks as of one moment.
impl_sql_catalog!(
    PostgresCatalog,
    Postgres,
    claim_lock: " FOR UPDATE SKIP LOCKED",
    snapshot: Some("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
);
