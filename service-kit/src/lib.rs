//! What every Vitrine service does the same way.
//!
//! # Layout
//! - [`auth`]: seller JWT verification (HS256 secret and/or an identity provider's JWKS),
//!   the `Seller` extractor, and the development token issuer.
//! - [`config`]: typed configuration from environment variables; errors name the variable.
//! - [`error`]: the JSON error envelope, [`error::ApiError`], the `AppJson` and `AppQuery` extractors,
//!   and the middleware that logs internal errors once.
//! - [`telemetry`]: tracing (pretty or JSON), request ids and W3C `traceparent`.
//! - [`metrics`]: the Prometheus recorder and HTTP request metrics.
//! - [`health`]: `/healthz`, `/readyz` (readiness checks) and `/metrics`.
//! - [`http`]: the shared tower/axum layers, per-group timeouts, binding, serving, shutdown.
//! - [`internal_client`]: signed service-to-service calls ([`internal_client::SignedClient`]):
//!   signing, trace headers, connection retries, streamed bodies, idle timeout.
//! - [`db`]: SQLite/PostgreSQL pools through `sqlx::AnyPool`, migrations, DB readiness.
//! - [`download_urls`]: storage's signed download URLs, reused while at least half their
//!   lifetime is left ([`download_urls::ReusedUrls`]).
//! - [`media`]: the image types Vitrine accepts, and [`media::synthetic`] images for tests
//!   and benchmarks.
//! - [`testing`]: helpers for tests that need a real backend (skip or fail).
//! - [`allocator`]: the global allocator every Vitrine program declares (mimalloc, or the
//!   system allocator where `VITRINE_ALLOCATOR=system`, as in import workers).

pub mod allocator;
pub mod auth;
pub mod config;
pub mod db;
pub mod download_urls;
pub mod error;
pub mod health;
pub mod http;
pub mod internal_client;
pub mod media;
pub mod metrics;
pub mod telemetry;
pub mod testing;

pub use config::{ConfigError, Env};

pub use allocator::Allocator;
pub use error::{ApiError, AppJson, AppQuery, ErrorEnvelope};
