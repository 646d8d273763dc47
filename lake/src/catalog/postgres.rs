//! The PostgreSQL catalog, for clusters: several receivers, query nodes and
//! maintainers share one database.

use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions, PgQueryResult};
use sqlx::{ConnectOptions, PgPool, Postgres, QueryBuilder};

use super::sql::{
    Backend, INSERT_BLOCKS, INSERT_CHUNK, INSERT_PROCESSES, INSERT_SEGMENTS, INSERT_STREAMS,
    SqlCatalog,
};
use super::{BlockingCommits, TenantCommit};
use crate::Result;

/// A catalog in PostgreSQL.
pub type PostgresCatalog = SqlCatalog<Postgres>;

impl SqlCatalog<Postgres> {
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
        Ok(SqlCatalog::new(pool, ()))
    }
}

// Claims lock their rows (skipping those another maintainer holds); a view
// snapshot reads partitions and pending blocks as of one moment. Commits go
// over the network, through the pool.
impl Backend for Postgres {
    const CLAIM_LOCK: &'static str = " FOR UPDATE SKIP LOCKED";
    const SNAPSHOT: Option<&'static str> =
        Some("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY");
    type Commits = ();

    /// Records a flush's segments, processes, streams and blocks in one transaction.
    async fn commit(pool: &PgPool, (): &(), commits: &[TenantCommit]) -> Result<u64> {
        let mut tx = pool.begin().await?;
        let mut new_blocks = 0;
        for c in commits {
            let tenant = c.tenant.as_str();
            for chunk in c.processes.chunks(INSERT_CHUNK) {
                let mut q = QueryBuilder::<Postgres>::new(format!("{INSERT_PROCESSES} "));
                q.push_values(chunk, |mut b, p| {
                    b.push_bind(tenant)
                        .push_bind(p.process_id.as_bytes().as_slice())
                        .push_bind(p.source as i16)
                        .push_bind(p.service_name.as_str())
                        .push_bind(p.properties.as_ref())
                        .push_bind(p.insert_time);
                });
                q.push(" ON CONFLICT DO NOTHING");
                q.build().execute(&mut *tx).await?;
            }
            for chunk in c.streams.chunks(INSERT_CHUNK) {
                let mut q = QueryBuilder::<Postgres>::new(format!("{INSERT_STREAMS} "));
                q.push_values(chunk, |mut b, s| {
                    b.push_bind(tenant)
                        .push_bind(s.stream_id.as_bytes().as_slice())
                        .push_bind(s.process_id.as_bytes().as_slice())
                        .push_bind(s.kind.code())
                        .push_bind(s.name.as_str())
                        .push_bind(s.insert_time);
                });
                q.push(" ON CONFLICT DO NOTHING");
                q.build().execute(&mut *tx).await?;
            }
            let s = &c.segment;
            let mut q = QueryBuilder::<Postgres>::new(format!("{INSERT_SEGMENTS} "));
            q.push_values([s], |mut b, s| {
                b.push_bind(tenant)
                    .push_bind(s.segment_id.as_bytes().as_slice())
                    .push_bind(s.size as i64)
                    .push_bind(s.block_count as i32)
                    .push_bind(s.insert_time)
                    .push_bind(s.log.as_ref().map(|l| l.object.as_str()))
                    .push_bind(s.log.as_ref().map_or(0, |l| l.offset as i64));
            });
            q.build().execute(&mut *tx).await?;
            for chunk in c.blocks.chunks(INSERT_CHUNK) {
                let mut q = QueryBuilder::<Postgres>::new(format!("{INSERT_BLOCKS} "));
                q.push_values(chunk, |mut b, r| {
                    b.push_bind(tenant)
                        .push_bind(r.block_id.as_bytes().as_slice())
                        .push_bind(r.kind.code())
                        .push_bind(r.format)
                        .push_bind(r.process_id.as_bytes().as_slice())
                        .push_bind(r.stream_id.as_bytes().as_slice())
                        .push_bind(r.segment_id.as_bytes().as_slice())
                        .push_bind(r.offset as i64)
                        .push_bind(i64::from(r.length))
                        .push_bind(i64::from(r.uncompressed_length))
                        .push_bind(i16::from(r.codec.code()))
                        .push_bind(r.checksum as i64)
                        .push_bind(i64::from(r.event_count))
                        .push_bind(r.min_time)
                        .push_bind(r.max_time)
                        .push_bind(r.insert_time);
                });
                q.push(" ON CONFLICT DO NOTHING");
                new_blocks += q.build().execute(&mut *tx).await?.rows_affected();
            }
        }
        tx.commit().await?;
        Ok(new_blocks)
    }

    fn blocking_commits((): &()) -> Option<Arc<dyn BlockingCommits>> {
        None
    }

    fn rows_affected(result: &PgQueryResult) -> u64 {
        result.rows_affected()
    }
}
