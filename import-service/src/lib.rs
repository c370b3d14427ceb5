//! Vitrine Import Service: copies every image of a public Google Drive or Dropbox
//! folder into storage (Flow 2 of the design).
//!
//! Two binaries that scale independently and meet only in SQL and on the task queue:
//! `import-api` (HTTP: start and follow imports, list images) and `import-worker`
//! (lists folders a page at a time and streams files into storage).
//!
//! # Layout
//! - [`providers`]: Google Drive and Dropbox: the folder-URL parser
//!   ([`providers::folder_url`], the only place a user-supplied URL is read: parsed, never
//!   fetched), the [`providers::ProviderClient`] trait, both clients, each provider's
//!   request budget ([`providers::RequestPace`]), and the transient/permanent
//!   classification of every failure.
//! - [`config`]: settings from the environment ([`config::ImportConfig`]).
//! - [`db`]: jobs, listing pages, items and the image catalog in SQL.
//! - [`tasks`]: the two queues (`import.listing`, `import.file`) and their payloads.
//! - [`pipeline`]: what the worker does with a task: list a page, copy a file; retries
//!   and backoff.
//! - [`storage_client`]: signed calls to the Storage Service (streamed ingest, URLs).
//! - [`api`], [`state`], [`error`], [`openapi`]: `import-api`'s endpoints.
//!
//! [`run_api`] and [`run_worker`] are what the binaries (and the `vitrine` launcher) run.

pub mod api;
pub mod config;
pub mod db;
pub mod error;
pub mod openapi;
pub mod pipeline;
pub mod providers;
pub mod state;
pub mod storage_client;
pub mod tasks;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::middleware;
use axum::Router;
use service_kit::auth::SellerAuth;
use service_kit::db::{Database, DatabaseCheck, Dialect, PoolSettings};
use service_kit::download_urls::ReusedUrls;
use service_kit::health::{Health, ReadinessCheck};
use task_queue::sql::SqlQueue;
use task_queue::{QueueUrl, SharedQueue, Worker};
use tokio_util::sync::CancellationToken;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use utoipa_swagger_ui::SwaggerUi;

use crate::config::ImportConfig;
use crate::db::ImportRepo;
use crate::pipeline::{Pipeline, Providers};
use crate::providers::dropbox::Dropbox;
use crate::providers::google_drive::GoogleDrive;
use crate::state::{ApiState, ImportApi};
use crate::storage_client::StorageClient;

pub const API_SERVICE_NAME: &str = "import-api";
pub const WORKER_SERVICE_NAME: &str = "import-worker";
/// `service` of this crate's audit events (both binaries: they share one outbox).
pub const AUDIT_SERVICE_NAME: &str = "import-service";

/// How often a worker settles jobs that a stopped worker left running.
const JOB_SWEEP_EVERY: Duration = Duration::from_secs(30);

/// SQLite: how often each process checkpoints the import database's WAL itself, so that
/// no commit of a task has to ([`SQLITE_WAL_AUTOCHECKPOINT`]).
const SQLITE_CHECKPOINT_EVERY: Duration = Duration::from_millis(500);

/// SQLite: WAL pages after which a commit checkpoints anyway (about 80 MiB): only
/// reached when [`SQLITE_CHECKPOINT_EVERY`] cannot keep up. With SQLite's default
/// (1,000), the commits of file tasks ran the checkpoints, fsyncs included: 5–14 % of a
/// worker's CPU in the profiles of `docs/benchmarks.md`.
const SQLITE_WAL_AUTOCHECKPOINT: u32 = 20_000;

fn api_routes() -> OpenApiRouter<ApiState> {
    OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .routes(routes!(api::import_google_drive))
        .routes(routes!(api::import_dropbox))
        .routes(routes!(api::list_imports))
        .routes(routes!(api::get_import))
        .routes(routes!(api::list_items))
        .routes(routes!(api::retry_failed))
        .routes(routes!(api::list_images))
        .routes(routes!(api::get_image))
}

/// The OpenAPI document alone (for the committed spec and its staleness test).
pub fn openapi_document() -> utoipa::openapi::OpenApi {
    let (_, mut doc) = api_routes()
        .routes(routes!(api::import_events))
        .split_for_parts();
    doc.info.version = env!("CARGO_PKG_VERSION").to_owned();
    doc
}

/// `import-api`: endpoints, docs, health and the shared layers.
pub fn api_router(state: ApiState) -> Router {
    let settings = state.config.http.clone();
    let timeout = settings.request_timeout;
    let health = Health::new(
        API_SERVICE_NAME,
        vec![Arc::new(DatabaseCheck(state.repo.pool().clone())) as Arc<dyn ReadinessCheck>],
    );
    // The event stream is long-lived: it gets no request timeout.
    let (events, _) = OpenApiRouter::new()
        .routes(routes!(api::import_events))
        .split_for_parts();
    let (api, _) = api_routes()
        .layer(middleware::from_fn(move |req, next| {
            service_kit::http::timeout(timeout, req, next)
        }))
        .split_for_parts();
    let app = api
        .merge(events)
        .layer(middleware::from_fn_with_state(
            state.repo.audit().clone(),
            audit_events::middleware::record_auth_failures,
        ))
        .layer(DefaultBodyLimit::max(state.config.max_json_bytes))
        .with_state(state)
        .merge(SwaggerUi::new("/docs").url("/openapi.json", openapi_document()))
        .merge(health.routes());
    service_kit::http::standard_layers(app, API_SERVICE_NAME, &settings)
}

/// The database, queue, storage client and providers both binaries use.
pub struct Shared {
    pub db: Database,
    pub repo: ImportRepo,
    pub queue: SharedQueue,
    pub sql_queue: Option<Arc<SqlQueue>>,
    pub storage: StorageClient,
    pub providers: Providers,
}

/// Opens everything in [`Shared`] and declares the queues.
pub async fn connect(config: &ImportConfig) -> anyhow::Result<Shared> {
    let db = Database::connect(
        config::vars::DATABASE_URL,
        &config.database_url,
        db::migrations(),
        &PoolSettings {
            sqlite_wal_autocheckpoint: SQLITE_WAL_AUTOCHECKPOINT,
            ..PoolSettings::default()
        },
    )
    .await?;
    let audit =
        audit_events::Audit::open(AUDIT_SERVICE_NAME, config.audit.clone(), &db.pool).await?;
    let repo = ImportRepo::new(db.pool.clone(), db.dialect).with_audit(audit);
    let (queue, sql_queue): (SharedQueue, Option<Arc<SqlQueue>>) = match &config.queue.url {
        QueueUrl::Sql => {
            let sql = Arc::new(SqlQueue::new(&db, config.queue.sql.clone()).await?);
            (sql.clone(), Some(sql))
        }
        QueueUrl::Amqp(_) => (task_queue::open(&config.queue, Some(&db)).await?, None),
    };
    config.queues.declare(&queue).await?;
    let storage = StorageClient::new(
        config.storage_url.clone(),
        config.storage_keys.clone(),
        config.storage_connect_timeout,
        config.storage_read_timeout,
    )?;
    let providers = Providers {
        google_drive: Arc::new(GoogleDrive::new(config.drive.clone())?),
        dropbox: Arc::new(Dropbox::new(config.dropbox.clone())?),
    };
    Ok(Shared {
        db,
        repo,
        queue,
        sql_queue,
        storage,
        providers,
    })
}

/// Builds `import-api`'s state around [`Shared`].
pub fn api_state(config: ImportConfig, shared: &Shared) -> anyhow::Result<ApiState> {
    let identity_http = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(10))
        .build()?;
    let auth = SellerAuth::new(config.require_auth()?.clone(), identity_http);
    Ok(ApiState(Arc::new(ImportApi {
        auth,
        repo: shared.repo.clone(),
        queue: shared.queue.clone(),
        sql_queue: shared.sql_queue.clone(),
        providers: shared.providers.clone(),
        storage: shared.storage.clone(),
        image_urls: ReusedUrls::default(),
        config,
    })))
}

/// Every 15 s: items per state (all jobs) and queue depths, for `/metrics`.
fn spawn_gauges(
    repo: ImportRepo,
    queue: SharedQueue,
    queues: &tasks::QueueNames,
    stop: CancellationToken,
) {
    task_queue::metrics::spawn_reporter(
        queue,
        queues.both(),
        Duration::from_secs(15),
        stop.clone(),
    );
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(15));
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.cancelled() => return,
            }
            match repo.items_per_state().await {
                Ok(counts) => {
                    for state in ["pending", "importing", "imported", "skipped", "failed"] {
                        let n = counts
                            .iter()
                            .find(|(s, _)| s == state)
                            .map_or(0, |(_, n)| *n);
                        metrics::gauge!("import_items", "state" => state).set(n as f64);
                    }
                }
                Err(e) => tracing::warn!(error = %e, "cannot count items for metrics"),
            }
        }
    });
}

/// SQLite: checkpoints the WAL every [`SQLITE_CHECKPOINT_EVERY`] until `stop` (nothing
/// on PostgreSQL).
fn spawn_checkpointer(repo: ImportRepo, stop: CancellationToken) {
    if repo.dialect() != Dialect::Sqlite {
        return;
    }
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(SQLITE_CHECKPOINT_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.cancelled() => return,
            }
            if let Err(e) = repo.checkpoint_wal().await {
                tracing::debug!(error = %e, "WAL checkpoint failed; next one soon");
            }
        }
    });
}

/// Runs `import-api` until Ctrl-C or SIGTERM.
pub async fn run_api(config: ImportConfig) -> anyhow::Result<()> {
    let bind = config.http.bind;
    let listener = service_kit::http::bind(bind, config::vars::BIND).await?;
    let shared = connect(&config).await?;
    let stop = CancellationToken::new();
    spawn_gauges(
        shared.repo.clone(),
        shared.queue.clone(),
        &config.queues,
        stop.clone(),
    );
    spawn_checkpointer(shared.repo.clone(), stop.clone());
    let relay_stop = CancellationToken::new();
    let relay = shared.repo.audit().spawn_relay(relay_stop.clone());
    let state = api_state(config, &shared)?;
    tracing::info!(%bind, queue = shared.queue.kind().as_str(), "import-api listening");
    let result = service_kit::http::serve(
        listener,
        api_router(state),
        service_kit::http::shutdown_signal(),
    )
    .await;
    stop.cancel();
    shared.queue.close().await;
    relay_stop.cancel();
    if let Some(relay) = relay {
        let _ = relay.await;
    }
    result?;
    tracing::info!("import-api stopped");
    Ok(())
}

/// Runs `import-worker` until `shutdown` resolves: both task loops, and `/metrics` +
/// health on `IMPORT_WORKER_METRICS_BIND` when set. Tasks in hand are finished first.
pub async fn run_worker(
    config: ImportConfig,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let shared = connect(&config).await?;
    let stop = CancellationToken::new();
    spawn_checkpointer(shared.repo.clone(), stop.clone());
    // Stopped last: the events of the tasks finished during shutdown go too.
    let relay_stop = CancellationToken::new();
    let relay = shared.repo.audit().spawn_relay(relay_stop.clone());
    if let Some(bind) = config.worker_metrics_bind {
        let listener = service_kit::http::bind(bind, config::vars::WORKER_METRICS_BIND).await?;
        let health = Health::new(
            WORKER_SERVICE_NAME,
            vec![Arc::new(DatabaseCheck(shared.repo.pool().clone())) as Arc<dyn ReadinessCheck>],
        );
        let app =
            service_kit::http::standard_layers(health.routes(), WORKER_SERVICE_NAME, &config.http);
        let until = stop.clone();
        tokio::spawn(async move {
            let _ = service_kit::http::serve(listener, app, async move { until.cancelled().await })
                .await;
        });
        spawn_gauges(
            shared.repo.clone(),
            shared.queue.clone(),
            &config.queues,
            stop.clone(),
        );
    }
    let settings = config.pipeline.clone();
    let pipeline = Arc::new(Pipeline::new(
        shared.repo.clone(),
        shared.queue.clone(),
        config.queues.clone(),
        shared.providers.clone(),
        shared.storage.clone(),
        settings.clone(),
    ));
    tracing::info!(
        queue = shared.queue.kind().as_str(),
        files = settings.file_concurrency,
        listings = settings.listing_concurrency,
        "import-worker started"
    );
    let on_listing = pipeline.clone();
    let listings = Worker::new(shared.queue.clone(), config.queues.listing.clone())
        .concurrency(settings.listing_concurrency)
        .run(stop.clone(), move |task, info| {
            let p = on_listing.clone();
            async move { p.handle_listing(task, info).await }
        });
    let on_file = pipeline.clone();
    let files = Worker::new(shared.queue.clone(), config.queues.file.clone())
        .concurrency(settings.file_concurrency)
        .prefetch(u16::try_from(settings.file_concurrency).unwrap_or(u16::MAX))
        .run(stop.clone(), move |task, info| {
            let p = on_file.clone();
            async move { p.handle_file(task, info).await }
        });
    // Safety net: settle jobs whose last task's worker died before checking the job.
    let sweep_repo = shared.repo.clone();
    let sweep_stop = stop.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(JOB_SWEEP_EVERY);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = sweep_stop.cancelled() => return,
            }
            match sweep_repo.complete_finished_jobs().await {
                Ok(0) => {}
                Ok(n) => tracing::info!(jobs = n, "settled jobs left running by a stopped worker"),
                Err(e) => tracing::warn!(error = %e, "job sweep failed"),
            }
        }
    });
    let trigger = stop.clone();
    tokio::spawn(async move {
        shutdown.await;
        tracing::info!("import-worker stopping: finishing tasks in hand");
        trigger.cancel();
    });
    let (listings, files) = tokio::join!(listings, files);
    stop.cancel();
    shared.queue.close().await;
    relay_stop.cancel();
    if let Some(relay) = relay {
        let _ = relay.await;
    }
    let (listings, files) = (listings?, files?);
    tracing::info!(?listings, ?files, "import-worker stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    /// Both binaries' futures can be spawned (a harness or launcher runs them on a
    /// multi-threaded runtime): a compile-time check.
    #[allow(dead_code)]
    fn run_futures_are_send(config: crate::config::ImportConfig) {
        fn is_send<T: Send>(_: &T) {}
        is_send(&crate::connect(&config));
        is_send(&crate::run_api(config.clone()));
        is_send(&crate::run_worker(config, async {}));
    }
}
