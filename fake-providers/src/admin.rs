//! `/_fake/…`: change faults and read statistics while the emulator runs.
//! Never subject to faults or latency.
//!
//! - `GET /_fake/faults` → the [`FaultConfig`] in force
//! - `POST /_fake/faults` with a [`FaultConfig`] → replaces it (counters restart)
//! - `POST /_fake/faults/rules` with a [`Rule`] → appends it
//! - `DELETE /_fake/faults` → no latency, no rules
//! - `GET /_fake/stats` → [`crate::Stats`]
//! - `POST /_fake/reset` → clears faults and statistics
//! - `GET /_fake/folders` → the shared folders and their URLs

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;
use service_kit::AppJson;

use crate::faults::{FaultConfig, Rule};
use crate::FakeProviders;

pub fn routes() -> Router<FakeProviders> {
    Router::new()
        .route(
            "/_fake/faults",
            get(get_faults).post(set_faults).delete(clear_faults),
        )
        .route("/_fake/faults/rules", post(add_rule))
        .route("/_fake/stats", get(stats))
        .route("/_fake/reset", post(reset))
        .route("/_fake/folders", get(folders))
}

async fn get_faults(State(app): State<FakeProviders>) -> Json<FaultConfig> {
    Json(app.faults().config())
}

async fn set_faults(
    State(app): State<FakeProviders>,
    AppJson(config): AppJson<FaultConfig>,
) -> Json<FaultConfig> {
    app.faults().set(config);
    Json(app.faults().config())
}

async fn add_rule(
    State(app): State<FakeProviders>,
    AppJson(rule): AppJson<Rule>,
) -> Json<FaultConfig> {
    app.faults().add(rule);
    Json(app.faults().config())
}

async fn clear_faults(State(app): State<FakeProviders>) -> Json<FaultConfig> {
    app.faults().clear();
    Json(app.faults().config())
}

async fn stats(State(app): State<FakeProviders>) -> Response {
    Json(app.stats()).into_response()
}

async fn reset(State(app): State<FakeProviders>) -> StatusCode {
    app.reset();
    StatusCode::NO_CONTENT
}

async fn folders(State(app): State<FakeProviders>) -> Response {
    let drive: Vec<_> = app
        .drive_folders()
        .iter()
        .map(|f| json!({"id": f.id, "url": f.url, "resource_key": f.resource_key}))
        .collect();
    let dropbox: Vec<_> = app
        .dropbox_links()
        .iter()
        .map(|l| json!({"url": l.url}))
        .collect();
    Json(json!({"google_drive": drive, "dropbox": dropbox})).into_response()
}
