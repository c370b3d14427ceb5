//! Vitrine App Service: the seller-facing side of the pre-signed upload flow.
//!
//! A seller (JWT) asks for an upload URL, sends the bytes straight to the Storage
//! Service, then creates a product that points at the stored image.
//!
//! # Layout
//! - [`config`]: settings from the environment ([`config::AppConfig`]).
//! - [`state`]: [`state::AppState`], the one handle every handler gets.
//! - [`error`]: [`error::AppError`], one stable code per failure.
//! - [`dev_login`]: `POST /auth/token`, the dev issuer (off unless `AUTH_DEV_LOGIN`).
//! - [`uploads`]: `POST /uploads`: validate, sign the metadata, ask storage to presign.
//! - [`rate_limit`]: the per-seller limit on `POST /uploads`.
//! - [`products`]: `POST /product`, `GET /products`, `GET /products/{id}` and their SQL.
//! - [`storage_client`]: signed calls to the Storage Service's internal API.
//! - [`openapi`]: the generated OpenAPI document.
//!
//! Seller tokens are verified by [`service_kit::auth`] (shared with the Import Service).

pub mod config;
pub mod dev_login;
pub mod error;
pub mod openapi;
pub mod products;
pub mod rate_limit;
pub mod state;
pub mod storage_client;
pub mod uploads;

use std::sync::Arc;
use std::time::Duration;

use audit_events::{Audit, CancellationToken};
use axum::extract::DefaultBodyLimit;
use axum::middleware;
use axum::Router;
use service_kit::auth::SellerAuth;
use service_kit::db::{Database, DatabaseCheck, PoolSettings};
use service_kit::download_urls::ReusedUrls;
use service_kit::health::{Health, ReadinessCheck};
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use utoipa_swagger_ui::SwaggerUi;

use crate::config::AppConfig;
use crate::products::repo::ProductRepo;
use crate::rate_limit::UploadRateLimiter;
use crate::state::{App, AppState};
use crate::storage_client::StorageClient;

pub const SERVICE_NAME: &str = "app-service";

fn api_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .routes(routes!(dev_login::issue_dev_token))
        .routes(routes!(uploads::create_upload))
        .routes(routes!(products::create_product))
        .routes(routes!(products::list_products))
        .routes(routes!(products::get_product))
}

/// The routes and their OpenAPI description, without the shared layers.
pub fn api_router(state: AppState) -> (Router, utoipa::openapi::OpenApi) {
    let timeout = state.config.http.request_timeout;
    let audit = state.audit.clone();
    let (router, api) = api_routes()
        .layer(DefaultBodyLimit::max(state.config.max_json_bytes))
        .layer(middleware::from_fn_with_state(
            audit,
            audit_events::middleware::record_auth_failures,
        ))
        .layer(middleware::from_fn(move |req, next| {
            service_kit::http::timeout(timeout, req, next)
        }))
        .split_for_parts();
    (router.with_state(state), api)
}

/// The OpenAPI document alone (for the committed spec and its staleness test).
pub fn openapi_document() -> utoipa::openapi::OpenApi {
    api_routes().split_for_parts().1
}

/// The whole service: API, docs, health, and the shared layers.
pub fn router(state: AppState) -> Router {
    let settings = state.config.http.clone();
    let health = Health::new(
        SERVICE_NAME,
        vec![Arc::new(DatabaseCheck(state.products.pool().clone())) as Arc<dyn ReadinessCheck>],
    );
    let (api, doc) = api_router(state);
    let app = api
        .merge(SwaggerUi::new("/docs").url("/openapi.json", doc))
        .merge(health.routes());
    service_kit::http::standard_layers(app, SERVICE_NAME, &settings)
}

/// Connects the database and builds the state.
pub async fn build_state(config: AppConfig) -> anyhow::Result<AppState> {
    let db = Database::connect(
        config::vars::DATABASE_URL,
        &config.database_url,
        products::repo::migrations(),
        &PoolSettings::default(),
    )
    .await?;
    let audit = Audit::open(SERVICE_NAME, config.audit.clone(), &db.pool).await?;
    state_from_parts(config, ProductRepo::new(db.pool), audit)
}

/// Builds the state around an already-open product store.
pub fn state_from_parts(
    config: AppConfig,
    products: ProductRepo,
    audit: Audit,
) -> anyhow::Result<AppState> {
    let storage = StorageClient::new(
        config.storage_url.clone(),
        config.storage_keys.clone(),
        config.storage_connect_timeout,
        config.storage_timeout,
    )?;
    let identity_http = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(10))
        .build()?;
    let auth = SellerAuth::new(config.auth.clone(), identity_http);
    let upload_limiter = Arc::new(UploadRateLimiter::new(
        config.uploads_per_minute,
        config.uploads_burst,
    ));
    Ok(AppState(Arc::new(App {
        audit,
        config,
        auth,
        storage,
        image_urls: ReusedUrls::default(),
        products,
        upload_limiter,
    })))
}

/// Runs the service until Ctrl-C or SIGTERM.
pub async fn run(config: AppConfig) -> anyhow::Result<()> {
    let bind = config.http.bind;
    let listener = service_kit::http::bind(bind, config::vars::BIND).await?;
    let state = build_state(config).await?;
    let stop_relay = CancellationToken::new();
    let relay = state.audit.spawn_relay(stop_relay.clone());
    let housekeeping = tokio::spawn(
        state
            .upload_limiter
            .clone()
            .run_housekeeping(Duration::from_secs(60)),
    );
    tracing::info!(
        %bind,
        storage = %state.config.storage_url,
        dev_login = state.auth.dev_issuer().is_some(),
        "app-service listening"
    );
    let result = service_kit::http::serve(
        listener,
        router(state),
        service_kit::http::shutdown_signal(),
    )
    .await;
    housekeeping.abort();
    stop_relay.cancel();
    if let Some(relay) = relay {
        let _ = relay.await;
    }
    result?;
    tracing::info!("app-service stopped");
    Ok(())
}
