//! `/healthz` (the process is up), `/readyz` (its dependencies answer) and `/metrics`.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use utoipa::ToSchema;

/// Something `/readyz` asks before it says the service can take traffic.
#[async_trait]
pub trait ReadinessCheck: Send + Sync + 'static {
    /// Short name shown in the report, e.g. `database`.
    fn name(&self) -> &'static str;
    /// `Err` with a short reason (no secrets) when the dependency is not usable.
    async fn check(&self) -> Result<(), String>;
}

/// Health endpoints of one service.
#[derive(Clone)]
pub struct Health {
    service: &'static str,
    checks: Arc<Vec<Arc<dyn ReadinessCheck>>>,
    timeout: Duration,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct HealthReport {
    pub service: String,
    pub version: String,
    pub status: String,
    pub checks: Vec<CheckReport>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CheckReport {
    pub name: String,
    pub ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Health {
    pub fn new(service: &'static str, checks: Vec<Arc<dyn ReadinessCheck>>) -> Self {
        Health {
            service,
            checks: Arc::new(checks),
            timeout: Duration::from_secs(3),
        }
    }

    /// Runs every check concurrently, each bounded by a timeout.
    pub async fn readiness(&self) -> HealthReport {
        let results = futures::future::join_all(self.checks.iter().map(|check| async move {
            let outcome = tokio::time::timeout(self.timeout, check.check()).await;
            let error = match outcome {
                Ok(Ok(())) => None,
                Ok(Err(e)) => Some(e),
                Err(_) => Some(format!("no answer within {:?}", self.timeout)),
            };
            CheckReport {
                name: check.name().to_owned(),
                ok: error.is_none(),
                error,
            }
        }))
        .await;
        let ok = results.iter().all(|c| c.ok);
        HealthReport {
            service: self.service.to_owned(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            status: if ok { "ready" } else { "not-ready" }.to_owned(),
            checks: results,
        }
    }

    /// Router with `/healthz`, `/readyz` and `/metrics`.
    pub fn routes<S: Clone + Send + Sync + 'static>(self) -> Router<S> {
        let metrics = crate::metrics::prometheus();
        Router::new()
            .route("/healthz", get(healthz).with_state(self.clone()))
            .route("/readyz", get(readyz).with_state(self))
            .route(
                "/metrics",
                get(move || {
                    let handle = metrics.clone();
                    async move {
                        (
                            [(
                                http::header::CONTENT_TYPE,
                                "text/plain; version=0.0.4; charset=utf-8",
                            )],
                            handle.render(),
                        )
                    }
                }),
            )
    }
}

async fn healthz(State(health): State<Health>) -> Json<HealthReport> {
    Json(HealthReport {
        service: health.service.to_owned(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        status: "alive".to_owned(),
        checks: Vec::new(),
    })
}

async fn readyz(State(health): State<Health>) -> Response {
    let report = health.readiness().await;
    let status = if report.status == "ready" {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(report)).into_response()
}
