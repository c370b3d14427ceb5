//! `GET /drive/v3/files/{id}`: metadata, or the bytes with `alt=media`.

use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Extension;

use super::error::{fault_response, GoogleError};
use super::fields::{selection, DEFAULT_FILE};
use super::{
    check_identity, file_json, finish, internal, json_response, needs_digests, params, visible,
};
use crate::faults::Route;
use crate::respond::{self, ByteRange};
use crate::serve::ConnKiller;
use crate::FakeProviders;

pub(super) async fn get_file(
    State(app): State<FakeProviders>,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
    killer: Option<Extension<ConnKiller>>,
) -> Response {
    let params = params(raw);
    let media = params.get("alt").is_some_and(|a| a == "media");
    let route = if media {
        Route::DriveDownload
    } else {
        Route::DriveGet
    };
    let node = app.0.catalog.drive_node(&id);
    let name = node.map_or("", |n| app.0.catalog.nodes[n].name.as_str());
    if media {
        app.0.stats.download(&id);
    }
    let passed = match app.admit(route, &[&id, name], killer.as_deref()).await {
        Ok(p) => p,
        Err(fault) => return fault_response(fault, &id),
    };
    if let Err(e) = check_identity(&app, &params, &headers) {
        return e.into_response();
    }
    let Some(node) = node.filter(|&n| visible(&app, n, &headers)) else {
        return GoogleError::not_found(&id).into_response();
    };
    if media {
        let response = finish(download(&app, node, &headers).await, &passed);
        if !response.status().is_success() {
            return response;
        }
        let stats = app.0.stats.clone();
        return respond::track_completion(response, move || stats.completed(&id));
    }
    let sel = match selection(&params, DEFAULT_FILE, false) {
        Ok(s) => s,
        Err(e) => return e.into_response(),
    };
    if needs_digests(&sel, &[]) {
        if let Err(e) = app.digests_of(vec![node]).await {
            return internal(e);
        }
    }
    finish(json_response(sel.apply(&file_json(&app, node))), &passed)
}

async fn download(app: &FakeProviders, node: usize, headers: &HeaderMap) -> Response {
    let n = &app.0.catalog.nodes[node];
    let Some(content) = n.content() else {
        return GoogleError::new(
            StatusCode::FORBIDDEN,
            "fileNotDownloadable",
            "Only files with binary content can be downloaded. Use Export with Docs Editors files.",
        )
        .at("alt")
        .into_response();
    };
    let size = match app.file_size(node).await {
        Ok(s) => s,
        Err(e) => return internal(e),
    };
    let range = respond::parse_range(headers, size);
    let (start, len) = match range {
        ByteRange::Full => (0, size),
        ByteRange::Partial { start, len } => (start, len),
        ByteRange::Unsatisfiable => return respond::unsatisfiable(size),
    };
    let body = match content.stream_range(start, len).await {
        Ok(b) => b,
        Err(e) => return internal(e),
    };
    respond::file_response(StatusCode::OK, n.mime(), size, range, body)
}
