//! Settings: command-line flags, each with a `FRAMELAKE_*` environment variable,
//! over an optional TOML file (`--config`), over defaults.
//! Precedence: flag, then environment, then file, then default.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use framelake_lake::LakeConfig;
use framelake_lake::compact::CompactConfig;
use framelake_lake::materialize::MaterializeConfig;
use framelake_lake::retention::Retention;
use framelake_lake::segment::Compression;
use framelake_lake::store::S3Options;
use framelake_lake::writer::WriterConfig;
use framelake_query::QueryLimits;
use framelake_query::aggregate::{self, AggregateDefinition};
use framelake_query::loki::streams::LabelMapping;
use framelake_query::parse::SqlBounds;
use framelake_receiver::Limits;
use framelake_receiver::otlp::RecordLimits;
use serde::Deserialize;

/// Declares the settings once, for clap, serde and merging.
macro_rules! settings {
    ($($(#[doc = $doc:literal])* $name:ident: $ty:ty = $env:literal;)*) => {
        /// Every setting; `None` where neither flag, environment nor file gave one.
        #[derive(Debug, Clone, Default, Args, Deserialize)]
        #[serde(deny_unknown_fields)]
        pub(crate) struct Settings {
            /// TOML file with any of these settings (keys as the flags, with '_' for '-').
            #[arg(long, env = "FRAMELAKE_CONFIG", global = true)]
            #[serde(skip)]
            pub(crate) config: Option<PathBuf>,
            /// Aggregate views besides the shipped ones: `[[aggregates]]` tables
            /// of the config file (name, source, bin_seconds, transform, merge).
            #[arg(skip)]
            #[serde(default)]
            pub(crate) aggregates: Vec<AggregateDefinition>,
            $(
                $(#[doc = $doc])*
                #[arg(long, env = $env, global = true, allow_negative_numbers = true)]
                pub(crate) $name: Option<$ty>,
            )*
        }

        impl Settings {
            /// Fills what is unset from `file`.
            fn or(self, file: Settings) -> Settings {
                let mut aggregates = self.aggregates;
                aggregates.extend(file.aggregates);
                Settings { config: self.config, aggregates, $($name: self.$name.or(file.$name),)* }
            }
        }
    };
}

settings! {
    /// Folder of the embedded catalog and objects [default: ./framelake-data].
    data_dir: PathBuf = "FRAMELAKE_DATA_DIR";
    /// Catalog database: postgres://… or sqlite://path [default: SQLite in the data dir].
    database_url: String = "FRAMELAKE_DATABASE_URL";
    /// Object store: s3://bucket/prefix, file://path or memory:// [default: files in the data dir].
    object_store_url: String = "FRAMELAKE_OBJECT_STORE_URL";
    /// Endpoint of an S3-compatible server (MinIO, moto, R2, …); empty for AWS.
    s3_endpoint: String = "FRAMELAKE_S3_ENDPOINT";
    /// S3 region.
    s3_region: String = "FRAMELAKE_S3_REGION";
    /// S3 access key id (else the AWS environment).
    s3_access_key_id: String = "FRAMELAKE_S3_ACCESS_KEY_ID";
    /// S3 secret access key (else the AWS environment).
    s3_secret_access_key: String = "FRAMELAKE_S3_SECRET_ACCESS_KEY";
    /// OTLP/gRPC listener [default: 127.0.0.1:4317].
    otlp_grpc_addr: SocketAddr = "FRAMELAKE_OTLP_GRPC_ADDR";
    /// HTTP ingest listener: OTLP/HTTP [default: 127.0.0.1:4318].
    ingest_addr: SocketAddr = "FRAMELAKE_INGEST_ADDR";
    /// HTTP query listener: SQL [default: 127.0.0.1:8080].
    query_addr: SocketAddr = "FRAMELAKE_QUERY_ADDR";
    /// Ingest listener of a receiver (http://host:4318) that a query process without
    /// one forwards Loki pushes to: Loki clients push and read at one URL.
    receiver_url: String = "FRAMELAKE_RECEIVER_URL";
    /// Arrow FlightSQL listener [default: 127.0.0.1:50051].
    flight_addr: SocketAddr = "FRAMELAKE_FLIGHT_ADDR";
    /// Token file (TOML): with it, every request needs a bearer token bound to a tenant.
    auth_file: PathBuf = "FRAMELAKE_AUTH_FILE";
    /// Threads of the ingest runtime (OTLP and native receivers, group commit), kept apart
    /// from queries and maintenance [default: half the cores, at least 1].
    ingest_threads: usize = "FRAMELAKE_INGEST_THREADS";
    /// Longest wait of a write for its group commit, in ms [default: 250].
    flush_interval_ms: u64 = "FRAMELAKE_FLUSH_INTERVAL_MS";
    /// Pending bytes that trigger a flush early [default: 8 MiB].
    flush_bytes: usize = "FRAMELAKE_FLUSH_BYTES";
    /// Memory the writer may hold before refusing writes (retryable) [default: 256 MiB].
    max_pending_bytes: usize = "FRAMELAKE_MAX_PENDING_BYTES";
    /// Largest request body on the wire [default: 16 MiB].
    max_body_bytes: usize = "FRAMELAKE_MAX_BODY_BYTES";
    /// Largest request body once decompressed [default: 64 MiB].
    max_decoded_bytes: usize = "FRAMELAKE_MAX_DECODED_BYTES";
    /// Bytes of request bodies the receiver holds at once, as received and as decompressed
    /// and decoded; past it requests get 429 / RESOURCE_EXHAUSTED with a retry delay
    /// [default: 512 MiB].
    max_inflight_bytes: usize = "FRAMELAKE_MAX_INFLIGHT_BYTES";
    /// Largest span, log record or metric data point, encoded; a request holding a larger
    /// one is refused with 413 [default: 1 MiB].
    max_record_bytes: usize = "FRAMELAKE_MAX_RECORD_BYTES";
    /// Most attributes and other nested values (their values, array and map entries,
    /// events, links) one span, log record or data point may carry; a request holding
    /// one with more is refused with 413 [default: 10000].
    max_record_values: u32 = "FRAMELAKE_MAX_RECORD_VALUES";
    /// Compression of stored blocks: lz4, zstd (level 3), zstd:LEVEL (-7 to 22; negative levels are zstd's fast ones) or none [default: lz4].
    block_compression: String = "FRAMELAKE_BLOCK_COMPRESSION";
    /// Pause between materialization passes (blocks into Parquet), in ms; 0 leaves
    /// materialization to a separate `framelake maintain` [default: 1000].
    materialize_interval_ms: u64 = "FRAMELAKE_MATERIALIZE_INTERVAL_MS";
    /// Days data is kept [default: 90].
    retention_days: u32 = "FRAMELAKE_RETENTION_DAYS";
    /// Days kept for some tenants, as `tenant=days,tenant=days`.
    retention_days_per_tenant: String = "FRAMELAKE_RETENTION_DAYS_PER_TENANT";
    /// Memory one query may use for sorts, joins and aggregations [default: 1 GiB].
    query_memory_bytes: usize = "FRAMELAKE_QUERY_MEMORY_BYTES";
    /// What one call of a SQL function may build, one batch of its output: past it
    /// the query fails with 422 [default: 256 MiB].
    query_function_bytes: usize = "FRAMELAKE_QUERY_FUNCTION_BYTES";
    /// Longest SQL text a query may be; longer ones get 400 [default: 1 MiB].
    query_max_sql_bytes: usize = "FRAMELAKE_QUERY_MAX_SQL_BYTES";
    /// How deep a query's expressions may nest (operators, function calls, subqueries);
    /// deeper ones get 400 [default: 1000].
    query_max_nesting: usize = "FRAMELAKE_QUERY_MAX_NESTING";
    /// Longest a query may run, in seconds [default: 60].
    query_timeout_s: f64 = "FRAMELAKE_QUERY_TIMEOUT_S";
    /// Resource attributes that are Loki stream labels besides Loki 3's defaults
    /// (`service.name`, `k8s.pod.name`, …), comma-separated: `team,host.name`.
    loki_labels: String = "FRAMELAKE_LOKI_LABELS";
    /// Log format: text or json [default: text].
    log_format: String = "FRAMELAKE_LOG_FORMAT";
}

impl Settings {
    /// Merges in the `--config` file, if any.
    pub(crate) fn resolve(self) -> anyhow::Result<Settings> {
        let Some(path) = self.config.clone() else {
            return Ok(self);
        };
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading config {}", path.display()))?;
        let file: Settings =
            toml::from_str(&text).with_context(|| format!("config {}", path.display()))?;
        Ok(self.or(file))
    }

    pub(crate) fn data_dir(&self) -> &Path {
        self.data_dir
            .as_deref()
            .unwrap_or(Path::new("./framelake-data"))
    }

    /// The lake: flags where given, else the embedded default under the data dir.
    pub(crate) fn lake(&self) -> LakeConfig {
        let embedded = LakeConfig::embedded(self.data_dir());
        LakeConfig {
            database_url: self.database_url.clone().unwrap_or(embedded.database_url),
            object_store_url: self
                .object_store_url
                .clone()
                .unwrap_or(embedded.object_store_url),
            s3: S3Options {
                endpoint: self.s3_endpoint.clone(),
                region: self.s3_region.clone(),
                access_key_id: self.s3_access_key_id.clone(),
                secret_access_key: self.s3_secret_access_key.clone(),
            },
        }
    }

    /// Threads of the ingest runtime: as set, else half the cores (at least one).
    pub(crate) fn ingest_threads(&self) -> usize {
        self.ingest_threads.filter(|&n| n > 0).unwrap_or_else(|| {
            std::thread::available_parallelism().map_or(1, |n| (n.get() / 2).max(1))
        })
    }

    pub(crate) fn writer(&self) -> WriterConfig {
        let d = WriterConfig::default();
        WriterConfig {
            flush_interval: self
                .flush_interval_ms
                .map(Duration::from_millis)
                .unwrap_or(d.flush_interval),
            flush_bytes: self.flush_bytes.unwrap_or(d.flush_bytes),
            max_pending_bytes: self.max_pending_bytes.unwrap_or(d.max_pending_bytes),
            max_concurrent_flushes: d.max_concurrent_flushes,
        }
    }

    pub(crate) fn limits(&self) -> Limits {
        let d = Limits::default();
        Limits {
            max_body_bytes: self.max_body_bytes.unwrap_or(d.max_body_bytes),
            max_decoded_bytes: self.max_decoded_bytes.unwrap_or(d.max_decoded_bytes),
            max_inflight_bytes: self.max_inflight_bytes.unwrap_or(d.max_inflight_bytes),
            record: RecordLimits {
                max_bytes: self.max_record_bytes.unwrap_or(d.record.max_bytes),
                max_values: self.max_record_values.unwrap_or(d.record.max_values),
            },
        }
    }

    pub(crate) fn otlp_grpc_addr(&self) -> SocketAddr {
        self.otlp_grpc_addr
            .unwrap_or(SocketAddr::from(([127, 0, 0, 1], 4317)))
    }

    pub(crate) fn query_addr(&self) -> SocketAddr {
        self.query_addr
            .unwrap_or(SocketAddr::from(([127, 0, 0, 1], 8080)))
    }

    pub(crate) fn flight_addr(&self) -> SocketAddr {
        self.flight_addr
            .unwrap_or(SocketAddr::from(([127, 0, 0, 1], 50051)))
    }

    pub(crate) fn materialize(&self) -> MaterializeConfig {
        let d = MaterializeConfig::default();
        MaterializeConfig {
            interval: self
                .materialize_interval_ms
                .map_or(d.interval, |ms| Duration::from_millis(ms.max(10))),
            ..d
        }
    }

    /// The aggregate views: the shipped ones and the configured ones.
    pub(crate) fn aggregates(&self) -> Vec<AggregateDefinition> {
        let mut all = aggregate::shipped();
        all.extend(self.aggregates.iter().cloned());
        all
    }

    /// Compaction; replaced objects stay readable for twice the query timeout
    /// (at least ten minutes), so a query that listed them can finish.
    pub(crate) fn compact(&self) -> CompactConfig {
        let d = CompactConfig::default();
        CompactConfig {
            delete_delay: d.delete_delay.max(self.query_limits().timeout * 2),
            ..d
        }
    }

    pub(crate) fn retention(&self) -> anyhow::Result<Retention> {
        let d = Retention::default();
        Ok(Retention {
            default_days: self.retention_days.unwrap_or(d.default_days),
            per_tenant: match &self.retention_days_per_tenant {
                Some(text) => Retention::parse_per_tenant(text)?,
                None => d.per_tenant,
            },
            ..d
        })
    }

    pub(crate) fn query_limits(&self) -> QueryLimits {
        let d = QueryLimits::default();
        QueryLimits {
            memory_bytes: self.query_memory_bytes.unwrap_or(d.memory_bytes),
            sql: SqlBounds {
                max_bytes: self.query_max_sql_bytes.unwrap_or(d.sql.max_bytes),
                max_nesting: self.query_max_nesting.unwrap_or(d.sql.max_nesting),
            },
            function_bytes: self.query_function_bytes.unwrap_or(d.function_bytes),
            timeout: self
                .query_timeout_s
                .map_or(d.timeout, Duration::from_secs_f64),
            ..d
        }
    }

    /// How logs look to Loki's API: the configured extra stream labels.
    pub(crate) fn loki_labels(&self) -> LabelMapping {
        let extra: Vec<String> = self
            .loki_labels
            .as_deref()
            .unwrap_or("")
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect();
        LabelMapping::new(&extra)
    }

    pub(crate) fn ingest_addr(&self) -> SocketAddr {
        self.ingest_addr
            .unwrap_or(SocketAddr::from(([127, 0, 0, 1], 4318)))
    }

    pub(crate) fn compression(&self) -> anyhow::Result<Compression> {
        Ok(match &self.block_compression {
            Some(text) => text.parse()?,
            None => Compression::default(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_win_over_the_file_and_the_file_over_defaults() {
        let file: Settings = toml::from_str(
            "data_dir = \"/from/file\"\nflush_interval_ms = 100\nblock_compression = \"zstd:5\"",
        )
        .expect("valid toml");
        let flags = Settings {
            block_compression: Some("zstd:1".to_owned()),
            ..Settings::default()
        };
        let merged = flags.or(file);
        assert_eq!(merged.data_dir(), Path::new("/from/file"));
        assert_eq!(merged.writer().flush_interval, Duration::from_millis(100));
        assert_eq!(
            merged.compression().expect("valid"),
            Compression::Zstd { level: 1 }
        );
        assert_eq!(merged.ingest_addr().port(), 4318);
        assert!(
            merged
                .lake()
                .database_url
                .starts_with("sqlite:///from/file/")
        );
    }

    #[test]
    fn aggregates_come_from_the_file_after_the_shipped_ones() {
        let file: Settings = toml::from_str(
            "[[aggregates]]\nname = \"errors\"\nsource = \"log_entries\"\n\
             transform = \"SELECT 1\"\nmerge = \"SELECT 1\"\n",
        )
        .expect("valid toml");
        let merged = Settings::default().or(file);
        let names: Vec<String> = merged.aggregates().into_iter().map(|a| a.name).collect();
        assert_eq!(names, ["log_stats", "span_stats", "errors"]);
        assert_eq!(merged.aggregates()[2].bin_seconds, 60);
        assert!(toml::from_str::<Settings>("[[aggregates]]\nname = \"x\"").is_err());
    }

    #[test]
    fn unknown_file_keys_are_refused() {
        assert!(toml::from_str::<Settings>("flush_intervl_ms = 1").is_err());
    }
}
