//! Vitrine web UI: the browser front end of both flows, served as plain files.
//!
//! The UI is HTML, CSS and ES modules committed under `web/static/` (no build step, no
//! Node.js at run time). This crate serves them and tells the page where the APIs are.
//!
//! # Layout
//! - [`WebConfig`]: settings from the environment (`WEB_*`, see [`vars`]).
//! - [`router`]: `/` (the page), `/assets/…` (CSS, ES modules, icons), `/config.json`
//!   (the API base URLs the page calls), `/healthz`, `/readyz`, `/metrics`; every answer
//!   carries a Content-Security-Policy that allows scripts only from this origin and
//!   network calls only to the configured services.
//! - `static/index.html` and `static/assets/js/`: the UI itself; `main.js` is the entry
//!   point and its `//` header says what each module does.
//!
//! The page talks to the App Service (sign in, upload URLs, products), the Import Service
//! (imports, images) and the Storage Service (the upload `PUT`, image URLs) directly from
//! the browser, so those services must list this origin in `CORS_ALLOWED_ORIGINS` (the
//! launcher does).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use axum::handler::HandlerWithoutStateExt;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use http::header::{self, HeaderName, HeaderValue};
use serde::Serialize;
use service_kit::config::{ConfigError, Env};
use service_kit::health::{Health, ReadinessCheck};
use service_kit::http::HttpSettings;
use tower_http::services::{ServeDir, ServeFile};
use tower_http::set_header::SetResponseHeaderLayer;

pub const SERVICE_NAME: &str = "web";

/// The variables this service reads (besides `CORS_ALLOWED_ORIGINS` and
/// `REQUEST_TIMEOUT_SECS`, common to every service).
pub mod vars {
    /// Listener address (default `127.0.0.1:8080`).
    pub const BIND: &str = "WEB_BIND";
    /// The App Service as the browser reaches it (default `http://127.0.0.1:8081`).
    pub const APP_API_URL: &str = "WEB_APP_API_URL";
    /// The Import Service API as the browser reaches it (default `http://127.0.0.1:8083`).
    pub const IMPORT_API_URL: &str = "WEB_IMPORT_API_URL";
    /// The Storage Service's public URL (uploads and image URLs point there; default
    /// `http://127.0.0.1:8082`). Only used in the Content-Security-Policy.
    pub const STORAGE_PUBLIC_URL: &str = "WEB_STORAGE_PUBLIC_URL";
    /// Directory holding `index.html` and `assets/` (default: this crate's `static/`).
    pub const ASSETS_DIR: &str = "WEB_ASSETS_DIR";
}

pub const DEFAULT_BIND: &str = "127.0.0.1:8080";

/// Everything the web service needs, read once at start-up.
#[derive(Debug, Clone)]
pub struct WebConfig {
    pub http: HttpSettings,
    pub app_api_url: url::Url,
    pub import_api_url: url::Url,
    pub storage_public_url: url::Url,
    pub assets_dir: PathBuf,
}

impl WebConfig {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let assets_dir = PathBuf::from(env.string_or(
            vars::ASSETS_DIR,
            concat!(env!("CARGO_MANIFEST_DIR"), "/static"),
        ));
        if !assets_dir.join("index.html").is_file() {
            return Err(ConfigError::new(
                vars::ASSETS_DIR,
                format!(
                    "`{}` has no index.html; point it at the web UI's static/ directory",
                    assets_dir.display()
                ),
            ));
        }
        Ok(WebConfig {
            http: HttpSettings::from_env(env, vars::BIND, DEFAULT_BIND)?,
            app_api_url: env.http_url_or(vars::APP_API_URL, "http://127.0.0.1:8081")?,
            import_api_url: env.http_url_or(vars::IMPORT_API_URL, "http://127.0.0.1:8083")?,
            storage_public_url: env
                .http_url_or(vars::STORAGE_PUBLIC_URL, "http://127.0.0.1:8082")?,
            assets_dir,
        })
    }
}

/// What `/config.json` tells the page: where each API is (no trailing slash).
#[derive(Debug, Clone, Serialize)]
pub struct ClientConfig {
    pub app_api_url: String,
    pub import_api_url: String,
    pub storage_url: String,
}

impl ClientConfig {
    fn of(config: &WebConfig) -> Self {
        let base = |u: &url::Url| u.as_str().trim_end_matches('/').to_owned();
        ClientConfig {
            app_api_url: base(&config.app_api_url),
            import_api_url: base(&config.import_api_url),
            storage_url: base(&config.storage_public_url),
        }
    }
}

/// The Content-Security-Policy: scripts, styles and fonts from this origin only; network
/// calls to the three services; images from storage (signed URLs) and local previews.
pub fn content_security_policy(config: &WebConfig) -> String {
    let origin = |u: &url::Url| u.origin().ascii_serialization();
    let storage = origin(&config.storage_public_url);
    let connect = [
        origin(&config.app_api_url),
        origin(&config.import_api_url),
        storage.clone(),
    ]
    .join(" ");
    format!(
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob: {storage}; \
         connect-src 'self' {connect}; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; \
         object-src 'none'"
    )
}

/// `/readyz` passes while the page can be served.
struct AssetsCheck(PathBuf);

#[async_trait]
impl ReadinessCheck for AssetsCheck {
    fn name(&self) -> &'static str {
        "assets"
    }

    async fn check(&self) -> Result<(), String> {
        let index = self.0.join("index.html");
        tokio::fs::metadata(&index)
            .await
            .map(|_| ())
            .map_err(|e| format!("{} is not readable: {e}", index.display()))
    }
}

/// The whole service: page, assets, `/config.json`, health, and the shared layers.
pub fn router(config: &WebConfig) -> Router {
    let client_config = ClientConfig::of(config);
    let assets: &Path = &config.assets_dir;
    let not_found = service_kit::error::not_found_fallback.into_service();
    let health = Health::new(
        SERVICE_NAME,
        vec![Arc::new(AssetsCheck(assets.to_owned())) as Arc<dyn ReadinessCheck>],
    );
    let app = Router::new()
        .route_service("/", ServeFile::new(assets.join("index.html")))
        .route_service("/index.html", ServeFile::new(assets.join("index.html")))
        .nest_service(
            "/assets",
            ServeDir::new(assets.join("assets")).not_found_service(not_found),
        )
        .route(
            "/config.json",
            get(move || {
                let body = client_config.clone();
                async move { Json(body).into_response() }
            }),
        )
        .merge(health.routes());
    // Outside the shared layers, so that every answer (a 404 too) carries these headers.
    service_kit::http::standard_layers(app, SERVICE_NAME, &config.http)
        .layer(SetResponseHeaderLayer::overriding(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_str(&content_security_policy(config))
                .expect("URLs and fixed text make a valid header value"),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::X_FRAME_OPTIONS,
            HeaderValue::from_static("DENY"),
        ))
        // Files change with the checkout: revalidate (ETag / Last-Modified) every time.
        .layer(SetResponseHeaderLayer::if_not_present(
            header::CACHE_CONTROL,
            HeaderValue::from_static("no-cache"),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            HeaderName::from_static("cross-origin-opener-policy"),
            HeaderValue::from_static("same-origin"),
        ))
}

/// Serves the UI until Ctrl-C or SIGTERM.
pub async fn run(config: WebConfig) -> anyhow::Result<()> {
    let listener = service_kit::http::bind(config.http.bind, vars::BIND).await?;
    tracing::info!(
        bind = %config.http.bind,
        assets = %config.assets_dir.display(),
        app_api = %config.app_api_url,
        import_api = %config.import_api_url,
        "web UI listening"
    );
    service_kit::http::serve(
        listener,
        router(&config),
        service_kit::http::shutdown_signal(),
    )
    .await?;
    Ok(())
}
