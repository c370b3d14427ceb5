//! Vitrine Storage Service: where every image lands, by seller upload or bulk import.
//!
//! # Layout
//! - [`config`]: settings from the environment ([`config::StorageConfig`]).
//! - [`state`]: [`state::AppState`], the one handle every handler gets.
//! - [`domain`]: parsed edge types (owner ids, digests, sanitised file names).
//! - [`error`]: [`error::StorageError`], one stable code per failure.
//! - [`internal_auth`]: signed service-to-service requests, and who the caller is.
//! - [`uploads`]: `POST /internal/presign` (and its batch form) and `PUT /uploads/{id}`.
//! - [`ingest`]: `POST /internal/ingest` for import workers.
//! - [`images`]: image records, download URLs, and the bytes.
//! - [`write_path`]: the one verified write path both uploads and ingests use.
//! - [`inspect`]: streaming image inspection (type, dimensions, completeness).
//! - [`blobs`]: object storage behind one trait (local disk, memory, S3).
//! - [`db`]: SQL for pending uploads, images and nonces (SQLite or PostgreSQL).
//! - [`sweeper`]: periodic clean-up of leftovers.
//! - [`openapi`]: the generated OpenAPI document.

pub mod blobs;
pub mod config;
pub mod db;
pub mod domain;
pub mod error;
pub mod images;
pub mod ingest;
pub mod inspect;
pub mod internal_auth;
pub mod openapi;
pub mod state;
pub mod sweeper;
pub mod uploads;
pub mod write_path;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use audit_events::{Audit, CancellationToken};
use axum::extract::DefaultBodyLimit;
use axum::middleware;
use axum::Router;
use service_kit::db::{Database, DatabaseCheck, PoolSettings};
use service_kit::health::{Health, ReadinessCheck};
use shared_signing::RequestVerifier;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use utoipa_swagger_ui::SwaggerUi;

use crate::blobs::BlobStore;
use crate::config::StorageConfig;
use crate::db::{Repo, SqlNonceStore};
use crate::state::{App, AppState};

pub const SERVICE_NAME: &str = "storage-service";

/// The routes and their OpenAPI description, without the shared layers.
pub fn api_router(state: AppState) -> (Router, utoipa::openapi::OpenApi) {
    let timeout = state.config.http.request_timeout;
    let json_internal = OpenApiRouter::new()
        .routes(routes!(uploads::presign::presign))
        .routes(routes!(uploads::presign::presign_batch))
        .routes(routes!(images::record::get_image))
        .routes(routes!(images::download_urls::download_urls))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            internal_auth::buffered,
        ))
        .layer(middleware::from_fn(move |req, next| {
            service_kit::http::timeout(timeout, req, next)
        }));
    let streamed_internal = OpenApiRouter::new()
        .routes(routes!(ingest::ingest))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            internal_auth::streamed,
        ))
        .route_layer(middleware::map_response(close_after_refusal));
    let uploads = OpenApiRouter::new()
        .routes(routes!(uploads::put::put_upload))
        .route_layer(middleware::map_response(close_after_refusal));
    let public = OpenApiRouter::new().routes(routes!(images::content::get_content));
    let (router, api) = OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .merge(json_internal)
        .merge(streamed_internal)
        .merge(uploads)
        .merge(public)
        .layer(DefaultBodyLimit::max(internal_auth::MAX_INTERNAL_JSON))
        .split_for_parts();
    (router.with_state(state), api)
}

/// A streamed upload refused before its body was read (bad token, used URL, wrong
/// type…) says that its connection ends (`Connection: close`; hyper does not read an
/// unread body to keep the connection), so a client still sending a large body can stop
/// and take the answer instead of writing into a connection nobody reads.
async fn close_after_refusal(mut response: axum::response::Response) -> axum::response::Response {
    if response.status().is_client_error() || response.status().is_server_error() {
        response.headers_mut().insert(
            http::header::CONNECTION,
            http::HeaderValue::from_static("close"),
        );
    }
    response
}

/// The OpenAPI document alone (for the committed spec and its staleness test).
pub fn openapi_document() -> utoipa::openapi::OpenApi {
    let mut api = openapi::ApiDoc::openapi();
    let (_, paths) = OpenApiRouter::<AppState>::with_openapi(openapi::ApiDoc::openapi())
        .routes(routes!(uploads::presign::presign))
        .routes(routes!(uploads::presign::presign_batch))
        .routes(routes!(images::record::get_image))
        .routes(routes!(images::download_urls::download_urls))
        .routes(routes!(ingest::ingest))
        .routes(routes!(uploads::put::put_upload))
        .routes(routes!(images::content::get_content))
        .split_for_parts();
    api.merge(paths);
    api
}

/// The whole service: API, docs, health, and the shared layers.
pub fn router(state: AppState) -> Router {
    let settings = state.config.http.clone();
    let health = Health::new(
        SERVICE_NAME,
        vec![
            Arc::new(DatabaseCheck(state.repo.pool().clone())) as Arc<dyn ReadinessCheck>,
            Arc::new(BlobStoreCheck(state.blobs.clone())),
        ],
    );
    let (api, doc) = api_router(state);
    let app = api
        .merge(SwaggerUi::new("/docs").url("/openapi.json", doc))
        .merge(health.routes());
    service_kit::http::standard_layers(app, SERVICE_NAME, &settings)
}

/// Readiness: the blob store answers.
struct BlobStoreCheck(Arc<dyn BlobStore>);

#[async_trait]
impl ReadinessCheck for BlobStoreCheck {
    fn name(&self) -> &'static str {
        "blob-store"
    }

    async fn check(&self) -> Result<(), String> {
        self.0.check().await.map_err(|e| e.to_string())
    }
}

/// Connects the database and blob store and builds the state.
pub async fn build_state(config: StorageConfig) -> anyhow::Result<AppState> {
    let db = Database::connect(
        config::vars::DATABASE_URL,
        &config.database_url,
        db::migrations(),
        &PoolSettings::default(),
    )
    .await?;
    let blobs = blobs::open_blob_store(&config.blob_store_url, config.s3.clone())
        .map_err(|e| anyhow::anyhow!("{}: {e}", config::vars::BLOB_STORE))?;
    let audit = Audit::open(SERVICE_NAME, config.audit.clone(), &db.pool).await?;
    let repo = Repo::open(&db).await?;
    Ok(state_from_parts(config, repo, blobs, audit))
}

/// Builds the state from already-open parts (tests use in-memory ones).
pub fn state_from_parts(
    config: StorageConfig,
    repo: Repo,
    blobs: Arc<dyn BlobStore>,
    audit: Audit,
) -> AppState {
    let nonces = Arc::new(SqlNonceStore(repo.clone()));
    let app_requests = RequestVerifier::new(config.app_keys.clone(), nonces.clone());
    let import_requests = RequestVerifier::new(config.import_keys.clone(), nonces);
    AppState(Arc::new(App {
        audit,
        config,
        repo,
        blobs,
        app_requests,
        import_requests,
    }))
}

/// Runs the service until Ctrl-C or SIGTERM.
pub async fn run(config: StorageConfig) -> anyhow::Result<()> {
    let bind = config.http.bind;
    let listener = service_kit::http::bind(bind, config::vars::BIND).await?;
    let state = build_state(config).await?;
    if let Err(e) = sweeper::sweep_once(&state).await {
        tracing::warn!(error = %e, "initial sweep failed");
    }
    let sweeper = tokio::spawn(sweeper::run(state.clone(), Duration::from_secs(60)));
    let stop_relay = CancellationToken::new();
    let relay = state.audit.spawn_relay(stop_relay.clone());
    tracing::info!(%bind, blob_store = %state.blobs.describe(), public_url = %state.config.public_url, "storage-service listening");
    let result = service_kit::http::serve(
        listener,
        router(state),
        service_kit::http::shutdown_signal(),
    )
    .await;
    sweeper.abort();
    stop_relay.cancel();
    if let Some(relay) = relay {
        let _ = relay.await;
    }
    result?;
    tracing::info!("storage-service stopped");
    Ok(())
}
