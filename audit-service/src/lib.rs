//! Vitrine audit service (binary `audit`): stores every service's audit events once
//! each, writes each new one as a log line (JSON with `LOG_FORMAT=json`), and lists
//! them to operators at `GET /audit`.
//!
//! Events arrive from the RabbitMQ `audit` exchange (queue `audit.store`, when
//! `AUDIT_AMQP_URL` is set) and/or as signed HTTP deliveries from the services'
//! outboxes (`POST /internal/events`, when `AUDIT_KEYS` is set: the embedded stack).
//!
//! # Layout
//! - [`config`]: settings from the environment ([`config::AuditConfig`]).
//! - [`state`]: [`state::AuditState`], the one handle every handler gets.
//! - [`error`]: [`error::AuditError`], one stable code per failure.
//! - [`store`]: the `audit_events` table; inserts skip ids already stored.
//! - [`ingest`]: `POST /internal/events` (signed deliveries).
//! - [`query`]: `GET /audit` and the operator token.
//! - [`consumer`]: the RabbitMQ consumer.
//! - [`openapi`]: the generated OpenAPI document.

pub mod config;
pub mod consumer;
pub mod error;
pub mod ingest;
pub mod openapi;
pub mod query;
pub mod state;
pub mod store;

use std::sync::Arc;

use axum::Router;
use service_kit::db::{Database, DatabaseCheck, PoolSettings};
use service_kit::health::{Health, ReadinessCheck};
use shared_signing::{MemoryNonceStore, RequestVerifier};
use tokio_util::sync::CancellationToken;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use utoipa_swagger_ui::SwaggerUi;

use crate::config::AuditConfig;
use crate::state::{AuditApp, AuditState};
use crate::store::Store;

pub const SERVICE_NAME: &str = "audit";

fn api_routes() -> OpenApiRouter<AuditState> {
    OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .routes(routes!(query::list_events))
        .routes(routes!(ingest::ingest))
}

/// The OpenAPI document alone (for the committed spec and its staleness test).
pub fn openapi_document() -> utoipa::openapi::OpenApi {
    api_routes().split_for_parts().1
}

/// The whole service: API, docs, health, and the shared layers.
pub fn router(state: AuditState) -> Router {
    let settings = state.config.http.clone();
    let timeout = settings.request_timeout;
    let health = Health::new(
        SERVICE_NAME,
        vec![Arc::new(DatabaseCheck(state.store.pool().clone())) as Arc<dyn ReadinessCheck>],
    );
    let (api, doc) = api_routes()
        .layer(axum::middleware::from_fn(move |req, next| {
            service_kit::http::timeout(timeout, req, next)
        }))
        .split_for_parts();
    let app = api
        .with_state(state)
        .merge(SwaggerUi::new("/docs").url("/openapi.json", doc))
        .merge(health.routes());
    service_kit::http::standard_layers(app, SERVICE_NAME, &settings)
}

/// Connects the database and builds the state.
pub async fn build_state(config: AuditConfig) -> anyhow::Result<AuditState> {
    let db = Database::connect(
        config::vars::DATABASE_URL,
        &config.database_url,
        store::migrations(),
        &PoolSettings::default(),
    )
    .await?;
    let ingest = config
        .ingest_keys
        .clone()
        .map(|keys| RequestVerifier::new(keys, Arc::new(MemoryNonceStore::new())));
    Ok(AuditState(Arc::new(AuditApp {
        config,
        store: Store::new(db.pool),
        ingest,
    })))
}

/// Runs the service until Ctrl-C or SIGTERM.
pub async fn run(config: AuditConfig) -> anyhow::Result<()> {
    let bind = config.http.bind;
    let listener = service_kit::http::bind(bind, config::vars::BIND).await?;
    let state = build_state(config).await?;
    let stop = CancellationToken::new();
    let consumer = state
        .config
        .amqp_url
        .clone()
        .map(|url| tokio::spawn(consumer::run(url, state.store.clone(), stop.clone())));
    tracing::info!(
        %bind,
        amqp = state.config.amqp_url.is_some(),
        http_ingest = state.ingest.is_some(),
        "audit listening"
    );
    let result = service_kit::http::serve(
        listener,
        router(state),
        service_kit::http::shutdown_signal(),
    )
    .await;
    stop.cancel();
    if let Some(consumer) = consumer {
        let _ = consumer.await;
    }
    result?;
    tracing::info!("audit stopped");
    Ok(())
}
