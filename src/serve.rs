//! Runs the roles: binds listeners, serves until SIGINT/SIGTERM, then stops
//! listeners, lets in-flight writes commit and flushes the writer.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use framelake_lake::Lake;
use framelake_lake::compact::{CompactConfig, Compactor, EventRewrite};
use framelake_lake::materialize::Materializer;
use framelake_lake::tenancy::Tenancy;
use framelake_lake::writer::Writer;
use framelake_query::Engine;
use framelake_query::aggregate::{self, AggregateRewrite, Reducer};
use framelake_query::flight::FlightSql;
use framelake_query::http::QueryService;
use framelake_receiver::Ingest;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::settings::Settings;

/// How long listeners may take to finish in-flight requests at shutdown.
const GRACE: Duration = Duration::from_secs(30);

/// How long to wait before retrying a failed startup recovery.
const RECOVERY_RETRY: Duration = Duration::from_secs(30);

/// Records stored segments the catalog lacks (`framelake_receiver::recovery`).
async fn recover(lake: &Lake) -> framelake_lake::Result<()> {
    let recovered = framelake_receiver::recovery::recover(lake).await?;
    tracing::info!(
        checked = recovered.checked,
        recorded = recovered.recorded,
        "segments checked against the catalog"
    );
    Ok(())
}

/// Which roles a process runs.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Roles {
    /// OTLP gRPC and HTTP ingestion, with the writer.
    pub(crate) receiver: bool,
    /// SQL over HTTP and FlightSQL.
    pub(crate) query: bool,
    /// Materialization of blocks into Parquet partitions, compaction,
    /// reduction into aggregate views, retention.
    pub(crate) maintain: bool,
}

/// Runs the roles until a shutdown signal.
pub(crate) async fn run(settings: Settings, roles: Roles) -> anyhow::Result<()> {
    let lake_config = settings.lake();
    let lake = Arc::new(Lake::open(&lake_config).await.context("opening the lake")?);
    tracing::info!(catalog = %redact(&lake_config.database_url), objects = %lake.store.url(), "lake open");
    let tenancy = match &settings.auth_file {
        Some(path) => Tenancy::from_file(path)?,
        None => Tenancy::open(),
    };
    if !tenancy.is_enabled() {
        tracing::warn!(
            "authentication is off: any client may read and write any tenant (use --auth-file)"
        );
    }
    // Planned first: an aggregate definition that cannot work stops the
    // process before it listens.
    let engine = Engine::new(
        Arc::clone(&lake),
        settings.query_limits(),
        settings.aggregates(),
    )
    .await
    .context("the aggregate views")?;
    let stop = CancellationToken::new();
    let tracker = TaskTracker::new();
    let receiver = if roles.receiver {
        Some(start_receiver(&settings, &lake, &tenancy, &stop, &tracker).await?)
    } else {
        None
    };
    if roles.query {
        let engine = engine.clone();
        let flight = FlightSql::new(engine.clone(), tenancy.clone()).into_server();
        let listener = bind("flightsql", settings.flight_addr()).await?;
        let stopped = stop.clone().cancelled_owned();
        tracker.spawn(async move {
            let incoming =
                tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
            let server = tonic::transport::Server::builder().add_service(flight);
            if let Err(e) = server.serve_with_incoming_shutdown(incoming, stopped).await {
                tracing::error!(error = %e, "flightsql listener failed");
            }
        });
        let service = Arc::new(QueryService {
            engine,
            tenancy,
            labels: settings.loki_labels(),
        });
        let listener = bind("query-http", settings.query_addr()).await?;
        let mut router = framelake_query::http::router(service);
        router = match &receiver {
            // Loki clients push and read at one URL.
            Some((_, _, ingest)) => {
                router.merge(framelake_receiver::http::loki_router(Arc::clone(ingest)))
            }
            None => router.merge(crate::forward::loki_push(
                settings.receiver_url.clone(),
                settings.limits().max_body_bytes,
            )),
        };
        let stopped = stop.clone().cancelled_owned();
        tracker.spawn(async move {
            if let Err(e) = axum::serve(listener, router)
                .with_graceful_shutdown(stopped)
                .await
            {
                tracing::error!(error = %e, "query-http listener failed");
            }
        });
    }
    // `serve --materialize-interval-ms 0` leaves materialization and
    // compaction to `framelake maintain`.
    let materialize = !roles.receiver || settings.materialize_interval_ms != Some(0);
    if roles.maintain && materialize {
        let materializer = Materializer::new(Arc::clone(&lake), settings.materialize());
        let stopped = stop.clone();
        tracker.spawn(async move { materializer.run(stopped).await });
        let compact = CompactConfig {
            reduced_first: aggregate::reduced_first(&engine),
            ..settings.compact()
        };
        let events = Arc::new(EventRewrite::new(Arc::clone(&lake)));
        let compactor = Compactor::new(Arc::clone(&lake), events, compact.clone());
        let stopped = stop.clone();
        tracker.spawn(async move { compactor.run(stopped).await });
        let aggregates = Arc::new(AggregateRewrite::new(engine.clone()));
        let compactor = Compactor::new(Arc::clone(&lake), aggregates, compact.clone());
        let stopped = stop.clone();
        tracker.spawn(async move { compactor.run(stopped).await });
        let reducer = Reducer::new(engine.clone());
        let stopped = stop.clone();
        tracker.spawn(async move { reducer.run(compact.interval, stopped).await });
    }
    if roles.maintain {
        let (lake, retention, stopped) = (Arc::clone(&lake), settings.retention()?, stop.clone());
        tracker.spawn(framelake_lake::retention::run(lake, retention, stopped));
    }
    tracker.close();

    shutdown_signal().await;
    tracing::info!("shutting down: finishing in-flight requests");
    // Requests waiting for their group commit get it now, not at the end of
    // the flush interval: the listeners drain within the grace period.
    if let Some((writer, _, _)) = &receiver {
        writer.drain();
    }
    stop.cancel();
    if tokio::time::timeout(GRACE, tracker.wait()).await.is_err() {
        tracing::warn!("listeners did not finish within {GRACE:?}");
    }
    if let Some((writer, runtime, _)) = receiver {
        writer.shutdown().await;
        // Its listeners and the writer are done: nothing is left to wait for.
        drop(runtime);
    }
    tracing::info!("stopped");
    Ok(())
}

/// Recovers stored segments, then starts the writer and the OTLP and native
/// listeners on a runtime of their own, returned with the writer.
///
/// Ingest has its own threads so that queries and maintenance (DataFusion
/// plans, Parquet encoding) never hold up an acknowledgement, and so that a
/// request, its group commit and its answer stay on few threads: with the
/// whole server on one runtime, each burst of requests woke every worker and
/// cost 6-10% more CPU per event (README, write path).
async fn start_receiver(
    settings: &Settings,
    lake: &Arc<Lake>,
    tenancy: &Tenancy,
    stop: &CancellationToken,
    tracker: &TaskTracker,
) -> anyhow::Result<(Arc<Writer>, IngestRuntime, Arc<Ingest>)> {
    // Before taking writes: stored segments whose commit was lost are recorded.
    // If the store or the database does not answer, the receiver starts anyway
    // (writes are refused, retryably, until they do) and tries again in the background.
    if let Err(e) = recover(lake).await {
        tracing::error!(error = %e, "recovering stored segments failed; retrying in the background");
        let lake = Arc::clone(lake);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(RECOVERY_RETRY).await;
                match recover(&lake).await {
                    Ok(()) => break,
                    Err(e) => tracing::warn!(error = %e, "recovering stored segments failed again"),
                }
            }
        });
    }
    let runtime = IngestRuntime(Some(
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(settings.ingest_threads())
            .thread_name("framelake-ingest")
            .enable_all()
            .build()
            .context("starting the ingest runtime")?,
    ));
    let writer = {
        let _entered = runtime.enter();
        Arc::new(Writer::start(Arc::clone(lake), settings.writer()))
    };
    let ingest = Arc::new(Ingest::new(
        Arc::clone(lake),
        Arc::clone(&writer),
        tenancy.clone(),
        settings.limits(),
        settings.compression()?,
    ));

    let http = bind_on(&runtime, "otlp-http", settings.ingest_addr()).await?;
    let router = framelake_receiver::http::router(Arc::clone(&ingest));
    let stopped = stop.clone().cancelled_owned();
    tracker.spawn(runtime.spawn(async move {
        if let Err(e) = axum::serve(http, router)
            .with_graceful_shutdown(stopped)
            .await
        {
            tracing::error!(error = %e, "otlp-http listener failed");
        }
    }));

    let grpc = bind_on(&runtime, "otlp-grpc", settings.otlp_grpc_addr()).await?;
    let routes = framelake_receiver::grpc::routes(Arc::clone(&ingest));
    let stopped = stop.clone().cancelled_owned();
    tracker.spawn(runtime.spawn(async move {
        let incoming = tonic::transport::server::TcpIncoming::from(grpc).with_nodelay(Some(true));
        // OTLP requests are often larger than HTTP/2's 64 KiB default window and
        // 16 KiB frames: larger ones spare a client round trips and the server
        // per-frame work.
        let server = tonic::transport::Server::builder()
            .initial_stream_window_size(Some(4 << 20))
            .initial_connection_window_size(Some(16 << 20))
            .max_frame_size(Some(1 << 20))
            .add_routes(routes);
        if let Err(e) = server.serve_with_incoming_shutdown(incoming, stopped).await {
            tracing::error!(error = %e, "otlp-grpc listener failed");
        }
    }));
    Ok((writer, runtime, ingest))
}

async fn bind(role: &str, addr: std::net::SocketAddr) -> anyhow::Result<TcpListener> {
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("{role}: binding {addr}"))?;
    tracing::info!(role, addr = %listener.local_addr()?, "listening");
    Ok(listener)
}

/// The ingest runtime. Dropped from async code (the server's end, or a failed
/// start), where waiting for its threads is not allowed: they are let go.
struct IngestRuntime(Option<tokio::runtime::Runtime>);

impl std::ops::Deref for IngestRuntime {
    type Target = tokio::runtime::Runtime;

    fn deref(&self) -> &Self::Target {
        self.0
            .as_ref()
            .expect("the ingest runtime lives until dropped")
    }
}

impl Drop for IngestRuntime {
    fn drop(&mut self) {
        if let Some(runtime) = self.0.take() {
            runtime.shutdown_background();
        }
    }
}

/// Binds a listener on `runtime`: its sockets are polled by that runtime's threads.
async fn bind_on(
    runtime: &tokio::runtime::Runtime,
    role: &'static str,
    addr: std::net::SocketAddr,
) -> anyhow::Result<TcpListener> {
    runtime.spawn(async move { bind(role, addr).await }).await?
}

async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("installing a SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

/// A database URL without its password, for logs.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            let user = userinfo.split(':').next().unwrap_or("");
            format!("{}{user}:***{}", &url[..scheme + 3], &url[at..])
        }
        _ => url.to_owned(),
    }
}
