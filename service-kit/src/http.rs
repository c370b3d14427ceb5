//! The HTTP stack every service shares: layers, timeouts, serving and shutdown.
//!
//! [`standard_layers`] wraps a router, outermost first, with: request id (set from the
//! caller's `x-request-id` or a new UUID, echoed on the response), a trace span per
//! request, the trace context, metrics, internal-error logging, panic → 500 envelope,
//! and CORS from configuration. Timeouts and body limits differ per route group (a
//! 1 GiB upload is not a JSON call), so services apply [`timeout`] and
//! `axum::extract::DefaultBodyLimit` to the groups that want them. (tower-http's own
//! timeout layer answers with an empty body; [`timeout`] answers in the JSON envelope.)
//! Credentials (`Authorization`, cookies, request signatures) are marked sensitive so no
//! layer logs them.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use axum::extract::Request;
use axum::http::{HeaderName, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::Router;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::cors::{AllowOrigin, Any, CorsLayer};
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::sensitive_headers::SetSensitiveRequestHeadersLayer;
use tower_http::trace::TraceLayer;

use crate::config::{ConfigError, Env};
use crate::error::{log_internal_errors, ApiError};
use crate::telemetry::REQUEST_ID;

/// HTTP settings common to every service.
#[derive(Debug, Clone)]
pub struct HttpSettings {
    /// Address to bind, e.g. `127.0.0.1:8082`.
    pub bind: SocketAddr,
    /// Origins allowed by CORS (`CORS_ALLOWED_ORIGINS`, comma separated; `*` for any).
    pub cors_allowed_origins: Vec<String>,
    /// Timeout for ordinary (non-streaming) requests.
    pub request_timeout: Duration,
}

impl HttpSettings {
    /// Reads `{PREFIX}_BIND` (or `BIND`), `CORS_ALLOWED_ORIGINS`, `REQUEST_TIMEOUT_SECS`.
    pub fn from_env(env: &Env, bind_var: &str, default_bind: &str) -> Result<Self, ConfigError> {
        let bind_raw = env.string_or(bind_var, default_bind);
        let bind = bind_raw.parse().map_err(|e| {
            ConfigError::new(
                bind_var,
                format!("`{bind_raw}` is not an address like 127.0.0.1:8082: {e}"),
            )
        })?;
        Ok(HttpSettings {
            bind,
            cors_allowed_origins: env.list("CORS_ALLOWED_ORIGINS"),
            request_timeout: env.seconds_or(
                "REQUEST_TIMEOUT_SECS",
                Duration::from_secs(30),
                Duration::from_secs(1),
                Duration::from_secs(600),
            )?,
        })
    }
}

/// Wraps `router` in the layers every service uses.
pub fn standard_layers(router: Router, service: &'static str, settings: &HttpSettings) -> Router {
    router
        .fallback(crate::error::not_found_fallback)
        .layer(cors_layer(&settings.cors_allowed_origins))
        .layer(CatchPanicLayer::custom(
            |_panic: Box<dyn std::any::Any + Send>| {
                ApiError::internal("handler panicked").into_response()
            },
        ))
        .layer(middleware::from_fn(log_internal_errors))
        .layer(middleware::from_fn(move |req: Request, next: Next| {
            crate::metrics::track(service, req, next)
        }))
        .layer(middleware::from_fn(crate::telemetry::trace_context))
        .layer(
            TraceLayer::new_for_http().make_span_with(move |request: &Request| {
                let request_id = request
                    .headers()
                    .get(REQUEST_ID)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("-");
                tracing::info_span!(
                    "request",
                    service,
                    method = %request.method(),
                    path = %request.uri().path(),
                    request_id,
                    trace_id = tracing::field::Empty,
                )
            }),
        )
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
        .layer(SetSensitiveRequestHeadersLayer::new([
            http::header::AUTHORIZATION,
            http::header::COOKIE,
            shared_signing::request::HEADER_SIGNATURE,
        ]))
}

fn cors_layer(origins: &[String]) -> CorsLayer {
    let base = CorsLayer::new()
        .allow_methods([
            Method::GET,
            Method::POST,
            Method::PUT,
            Method::DELETE,
            Method::OPTIONS,
        ])
        .allow_headers(Any)
        .expose_headers([
            REQUEST_ID,
            http::header::ETAG,
            http::header::CONTENT_RANGE,
            http::header::RETRY_AFTER,
            // `202`/`201` answers point at what they made; a replayed product says so.
            http::header::LOCATION,
            HeaderName::from_static("idempotent-replayed"),
        ])
        .max_age(Duration::from_secs(600));
    if origins.iter().any(|o| o == "*") {
        return base.allow_origin(Any);
    }
    let list: Vec<HeaderValue> = origins
        .iter()
        .filter_map(|o| HeaderValue::from_str(o).ok())
        .collect();
    base.allow_origin(AllowOrigin::list(list))
}

/// Middleware factory: fails a request that takes longer than `limit` with a
/// `504 request-timeout` envelope.
pub async fn timeout(limit: Duration, request: Request, next: Next) -> Response {
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => ApiError::new(
            StatusCode::GATEWAY_TIMEOUT,
            "request-timeout",
            format!("the request did not complete within {} s", limit.as_secs()),
        )
        .into_response(),
    }
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
    tracing::info!("shutdown signal received; finishing requests in flight");
}

/// Serves `router` on `listener` until `shutdown` resolves, then drains in-flight requests.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(
        listener,
        router.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
}

/// Binds `addr`, with an error that names the variable to change when the port is taken.
pub async fn bind(addr: SocketAddr, var: &str) -> Result<tokio::net::TcpListener, ConfigError> {
    tokio::net::TcpListener::bind(addr).await.map_err(|e| {
        let why = if e.kind() == std::io::ErrorKind::AddrInUse {
            "the address is already in use; stop the other program or set another port".to_owned()
        } else {
            format!("cannot bind: {e}")
        };
        ConfigError::new(var, format!("{addr}: {why}"))
    })
}
