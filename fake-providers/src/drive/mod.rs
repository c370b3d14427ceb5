//! Google Drive API v3: `files.list`, `files.get`, `alt=media` downloads.
//!
//! - `error.rs` — Google's error JSON, and how injected faults look on Drive.
//! - `fields.rs` — `fields` partial responses: parsing, validation, filtering.
//! - `list.rs` — `GET /drive/v3/files` (`q`, `pageSize`, page tokens).
//! - `get.rs` — `GET /drive/v3/files/{id}`, metadata or `alt=media` bytes.
//! - `mod.rs` — routes, identity (`key`), visibility (private folders,
//!   resource keys), the File resource.

// Errors here are whole HTTP responses, made at most once per request: boxing
// them would only add an allocation.
#![allow(clippy::result_large_err)]

mod error;
mod fields;
mod get;
mod list;

use std::collections::BTreeMap;

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde_json::{json, Value};

use crate::catalog::Kind;
use crate::respond;
use crate::FakeProviders;
use error::GoogleError;
use fields::Selection;

pub fn routes() -> Router<FakeProviders> {
    Router::new()
        .route("/drive/v3/files", get(list::list))
        .route("/drive/v3/files/{id}", get(get::get_file))
}

type Params = BTreeMap<String, String>;

fn params(raw: Option<String>) -> Params {
    url::form_urlencoded::parse(raw.unwrap_or_default().as_bytes())
        .into_owned()
        .collect()
}

/// `key`, `X-Goog-Api-Key`, or an OAuth bearer token.
fn check_identity(
    app: &FakeProviders,
    params: &Params,
    headers: &HeaderMap,
) -> Result<(), GoogleError> {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("Bearer ") && v.len() > 7);
    let key = params.get("key").cloned().or_else(|| {
        headers
            .get("x-goog-api-key")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    });
    match key {
        None if bearer => Ok(()),
        None => Err(GoogleError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "Method doesn't allow unregistered callers (callers without established identity). \
             Please use API Key or other form of API consumer identity to call this API.",
        )),
        Some(key) if key.is_empty() || app.0.drive_api_key.as_ref().is_some_and(|k| *k != key) => {
            let mut e = GoogleError::new(
                StatusCode::BAD_REQUEST,
                "badRequest",
                "API key not valid. Please pass a valid API key.",
            );
            e.details = Some(json!([{
                "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                "reason": "API_KEY_INVALID",
                "domain": "googleapis.com",
                "metadata": {"service": "drive.googleapis.com"}
            }]));
            Err(e)
        }
        Some(_) => Ok(()),
    }
}

/// The `fileId/resourceKey` pairs of `X-Goog-Drive-Resource-Keys`.
fn resource_keys(headers: &HeaderMap) -> Vec<(String, String)> {
    headers
        .get_all("x-goog-drive-resource-keys")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|pair| {
            let (id, key) = pair.trim().split_once('/')?;
            Some((id.to_owned(), key.to_owned()))
        })
        .collect()
}

/// Whether the caller may see `node`: its root folder is shared, and when the
/// node *is* a root with a resource key, the caller sent that key.
fn visible(app: &FakeProviders, node: usize, headers: &HeaderMap) -> bool {
    let catalog = &app.0.catalog;
    let mut root = node;
    while let Some(p) = catalog.nodes[root].parent {
        root = p;
    }
    if let Kind::Folder {
        private,
        resource_key,
        ..
    } = &catalog.nodes[root].kind
    {
        if *private {
            return false;
        }
        if let (Some(key), true) = (resource_key, root == node) {
            let id = &catalog.nodes[root].drive_id;
            return resource_keys(headers)
                .iter()
                .any(|(i, k)| i == id && k == key);
        }
    }
    true
}

/// The full File resource for a node (digests only if cached).
fn file_json(app: &FakeProviders, node: usize) -> Value {
    let catalog = &app.0.catalog;
    let n = &catalog.nodes[node];
    let time = n.modified.format("%Y-%m-%dT%H:%M:%S.000Z").to_string();
    let mut v = json!({
        "kind": "drive#file",
        "id": n.drive_id,
        "name": n.name,
        "mimeType": n.mime(),
        "trashed": false,
        "explicitlyTrashed": false,
        "modifiedTime": time,
        "createdTime": time,
        "spaces": ["drive"],
        "starred": false,
        "shared": true,
        "ownedByMe": false,
    });
    let obj = v.as_object_mut().expect("object literal");
    if let Some(p) = n.parent {
        obj.insert("parents".into(), json!([catalog.nodes[p].drive_id]));
    }
    match &n.kind {
        Kind::Folder { resource_key, .. } => {
            obj.insert(
                "webViewLink".into(),
                json!(format!(
                    "https://drive.google.com/drive/folders/{}",
                    n.drive_id
                )),
            );
            if let Some(key) = resource_key {
                obj.insert("resourceKey".into(), json!(key));
            }
        }
        Kind::File { content, .. } => {
            obj.insert(
                "webViewLink".into(),
                json!(format!(
                    "https://drive.google.com/file/d/{}/view?usp=drivesdk",
                    n.drive_id
                )),
            );
            obj.insert("originalFilename".into(), json!(n.name));
            if let Some((_, ext)) = n.name.rsplit_once('.') {
                obj.insert("fileExtension".into(), json!(ext));
                obj.insert("fullFileExtension".into(), json!(ext));
            }
            let size = n
                .cached_digests()
                .map(|d| d.size)
                .or_else(|| content.known_size());
            if let Some(size) = size {
                obj.insert("size".into(), json!(size.to_string()));
                obj.insert("quotaBytesUsed".into(), json!(size.to_string()));
            }
            if let Some(d) = n.cached_digests() {
                obj.insert("md5Checksum".into(), json!(d.md5));
                obj.insert("sha256Checksum".into(), json!(d.sha256));
            }
            if let Some((w, h)) = n.dimensions {
                obj.insert(
                    "imageMediaMetadata".into(),
                    json!({"width": w, "height": h}),
                );
            }
        }
        Kind::GoogleDoc => {
            obj.insert(
                "webViewLink".into(),
                json!(format!(
                    "https://docs.google.com/document/d/{}/edit?usp=drivesdk",
                    n.drive_id
                )),
            );
        }
        Kind::Shortcut { target } => {
            let t = &catalog.nodes[*target];
            obj.insert(
                "shortcutDetails".into(),
                json!({"targetId": t.drive_id, "targetMimeType": t.mime()}),
            );
        }
    }
    v
}

fn needs_digests(sel: &Selection, prefix: &[&str]) -> bool {
    ["size", "md5Checksum", "sha256Checksum", "quotaBytesUsed"]
        .iter()
        .any(|f| {
            let mut path = prefix.to_vec();
            path.push(f);
            sel.wants(&path)
        })
}

fn json_response(value: Value) -> Response {
    let mut response = axum::Json(value).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=UTF-8"),
    );
    response
}

fn internal(e: std::io::Error) -> Response {
    tracing::error!(error = %e, "cannot read file content");
    GoogleError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internalError",
        "Internal Error",
    )
    .into_response()
}

fn finish(response: Response, passed: &crate::Passed) -> Response {
    match passed.truncate {
        Some(after) => respond::truncate(response, after),
        None => response,
    }
}
