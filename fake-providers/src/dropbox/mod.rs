//! Dropbox API v2: shared-link listing and shared-link file download.
//!
//! Real Dropbox serves the RPC routes (`/2/files/…`) on `api.dropboxapi.com` and
//! the content route (`/2/sharing/get_shared_link_file`) on
//! `content.dropboxapi.com`; here both are on the one base URL.
//!
//! - `list.rs` — `files/list_folder` and `files/list_folder/continue`.
//! - `download.rs` — `sharing/get_shared_link_file`.
//! - `metadata.rs` — `sharing/get_shared_link_metadata` (a link's folder and its name).
//! - `mod.rs` — routes, route errors (409), auth, shared-link resolution,
//!   metadata entries, and how injected faults look on Dropbox.

// Errors here are whole HTTP responses, made at most once per request: boxing
// them would only add an allocation.
#![allow(clippy::result_large_err)]

mod download;
mod list;
mod metadata;

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::catalog::{Kind, Node};
use crate::faults::{Fault, Route};
use crate::respond;
use crate::serve::ConnKiller;
use crate::FakeProviders;

pub fn routes() -> Router<FakeProviders> {
    Router::new()
        .route("/2/files/list_folder", post(list::list_folder))
        .route(
            "/2/files/list_folder/continue",
            post(list::list_folder_continue),
        )
        .route(
            "/2/sharing/get_shared_link_file",
            post(download::get_shared_link_file),
        )
        .route(
            "/2/sharing/get_shared_link_metadata",
            post(metadata::get_shared_link_metadata),
        )
}

/// A 409 route error: `{"error_summary": "tag/..", "error": {...}}`.
fn route_error(summary: &str, error: Value) -> Response {
    let body = json!({"error_summary": format!("{summary}/.."), "error": error});
    (StatusCode::CONFLICT, axum::Json(body)).into_response()
}

fn link_not_found() -> Response {
    route_error(
        "shared_link_not_found",
        json!({".tag": "shared_link_not_found"}),
    )
}

fn path_not_found() -> Response {
    route_error(
        "path/not_found",
        json!({".tag": "path", "path": {".tag": "not_found"}}),
    )
}

/// A 400 "bad input" answer: plain text, as Dropbox sends it.
fn bad_input(function: &str, detail: &str) -> Response {
    let mut response = (
        StatusCode::BAD_REQUEST,
        format!("Error in call to API function \"{function}\": {detail}"),
    )
        .into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

fn invalid_token() -> Response {
    let body = json!({
        "error_summary": "invalid_access_token/..",
        "error": {".tag": "invalid_access_token"}
    });
    let mut response = (StatusCode::UNAUTHORIZED, axum::Json(body)).into_response();
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"Dropbox-API\""),
    );
    response
}

/// A user token (`Bearer`), or, when the fake was not given a token to insist on, app
/// authentication (`Basic` base64 of `key:secret`), as Dropbox accepts for shared links.
fn check_token(app: &FakeProviders, headers: &HeaderMap) -> Result<(), Response> {
    let authorization = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let token = authorization
        .strip_prefix("Bearer ")
        .map(str::trim)
        .filter(|t| !t.is_empty());
    let app_auth = authorization
        .strip_prefix("Basic ")
        .map(str::trim)
        .filter(|t| !t.is_empty());
    match (token, app_auth, &app.0.dropbox_token) {
        (Some(t), _, Some(want)) if t == want => Ok(()),
        (Some(_), _, None) | (None, Some(_), None) => Ok(()),
        _ => Err(invalid_token()),
    }
}

fn check_json_content_type(headers: &HeaderMap, function: &str) -> Result<(), Response> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let essence = ct.split(';').next().unwrap_or("").trim();
    if essence.eq_ignore_ascii_case("application/json") {
        return Ok(());
    }
    Err(bad_input(
        function,
        &format!(
            "Bad HTTP \"Content-Type\" header: \"{ct}\".  Expecting one of \"application/json\", \
             \"application/json; charset=utf-8\", \"text/plain; charset=dropbox-cors-hack\"."
        ),
    ))
}

/// What every listing RPC does first, in Dropbox's order: counts a listing of
/// `link_key` + `path`, applies the fault rules, checks the token and the content type,
/// and then that the body decoded as `arg`.
async fn admit_listing<T>(
    app: &FakeProviders,
    headers: &HeaderMap,
    killer: Option<&ConnKiller>,
    function: &str,
    (link_key, path): (&str, &str),
    arg: Result<T, serde_json::Error>,
) -> Result<(T, crate::Passed), Response> {
    app.0.stats.listing(&format!("{link_key}{path}"));
    let passed = app
        .admit(Route::DropboxList, &[link_key, path], killer)
        .await
        .map_err(|fault| fault_response(fault, Route::DropboxList))?;
    check_token(app, headers)?;
    check_json_content_type(headers, function)?;
    let arg = arg.map_err(|e| {
        bad_input(
            function,
            &format!("request body: could not decode input as JSON: {e}"),
        )
    })?;
    Ok((arg, passed))
}

fn text(status: StatusCode, body: &'static str) -> Response {
    (status, body).into_response()
}

/// How Dropbox shows an injected fault on `route`.
fn fault_response(fault: Fault, route: Route) -> Response {
    match fault {
        Fault::RateLimited { retry_after, .. } => {
            let mut error = json!({"reason": {".tag": "too_many_requests"}});
            if let Some(secs) = retry_after {
                error["retry_after"] = json!(secs);
            }
            let body = json!({"error_summary": "too_many_requests/..", "error": error});
            let mut response = (StatusCode::TOO_MANY_REQUESTS, axum::Json(body)).into_response();
            if let Some(secs) = retry_after {
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(secs));
            }
            response
        }
        Fault::Html429 { retry_after } => {
            respond::html_error(StatusCode::TOO_MANY_REQUESTS, retry_after)
        }
        Fault::ServerError { status: 500 } => {
            text(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error")
        }
        Fault::ServerError { status: 503 } => {
            text(StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable")
        }
        Fault::ServerError { status } => respond::html_error(
            StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY),
            None,
        ),
        Fault::DownloadQuotaExceeded => route_error(
            "shared_link_access_denied",
            json!({".tag": "shared_link_access_denied"}),
        ),
        Fault::PrivateFolder => link_not_found(),
        Fault::NotFound if route == Route::DropboxList => path_not_found(),
        Fault::NotFound => link_not_found(),
        Fault::ConnectionReset => respond::broken_response(),
        Fault::Delay { .. } | Fault::TruncatedBody { .. } | Fault::EmptyListing => {
            StatusCode::OK.into_response()
        }
    }
}

#[derive(Deserialize)]
struct SharedLink {
    url: String,
}

/// The link index for a pasted URL: host `www.dropbox.com`, path
/// `/scl/fo/<id>/…`, matching `rlkey`; private links are not found.
fn resolve_link(app: &FakeProviders, url: &str) -> Option<usize> {
    let parsed = url::Url::parse(url).ok()?;
    if !matches!(parsed.host_str(), Some("www.dropbox.com" | "dropbox.com")) {
        return None;
    }
    let mut segments = parsed.path_segments()?;
    if segments.next()? != "scl" || segments.next()? != "fo" {
        return None;
    }
    let link_id = segments.next()?;
    let rlkey = parsed
        .query_pairs()
        .find(|(k, _)| k == "rlkey")
        .map(|(_, v)| v.into_owned());
    app.0
        .catalog
        .dropbox_links
        .iter()
        .position(|l| l.link_id == link_id && rlkey.as_deref() == Some(&l.rlkey) && !l.private)
}

fn link_id_of(url: &str) -> String {
    url::Url::parse(url)
        .ok()
        .and_then(|u| {
            u.path_segments()
                .and_then(|mut s| s.nth(2).map(str::to_owned))
        })
        .unwrap_or_default()
}

fn time(node: &Node) -> String {
    node.modified.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// A `files/list_folder` entry.
fn entry(node: &Node) -> Value {
    match &node.kind {
        Kind::Folder { .. } => json!({
            ".tag": "folder",
            "name": node.name,
            "id": node.dropbox_id,
            "path_lower": node.path.to_lowercase(),
            "path_display": node.path,
        }),
        _ => {
            let d = node.cached_digests();
            json!({
                ".tag": "file",
                "name": node.name,
                "id": node.dropbox_id,
                "client_modified": time(node),
                "server_modified": time(node),
                "rev": node.rev,
                "size": d.map_or(0, |d| d.size),
                "path_lower": node.path.to_lowercase(),
                "path_display": node.path,
                "is_downloadable": true,
                "content_hash": d.map(|d| d.content_hash.clone()),
            })
        }
    }
}

fn finish(response: Response, passed: &crate::Passed) -> Response {
    match passed.truncate {
        Some(after) => respond::truncate(response, after),
        None => response,
    }
}
