//! `sharing/get_shared_link_metadata`: what a shared link points at (its name above
//! all), as a client asks before listing.

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::Extension;
use bytes::Bytes;
use serde::Deserialize;
use serde_json::json;

use super::{admit_listing, bad_input, finish, link_id_of, link_not_found, resolve_link};
use crate::serve::ConnKiller;
use crate::FakeProviders;

#[derive(Deserialize)]
struct GetSharedLinkMetadataArg {
    url: String,
    /// A file or sub-folder inside the linked folder: not emulated.
    path: Option<String>,
    /// Password-protected links: not emulated.
    link_password: Option<String>,
}

/// Answers with the link's `FolderLinkMetadata`. Counted and faulted as a listing of the
/// link's root, like the `files/list_folder` call a client could make instead.
pub(super) async fn get_shared_link_metadata(
    State(app): State<FakeProviders>,
    headers: HeaderMap,
    killer: Option<Extension<ConnKiller>>,
    body: Bytes,
) -> Response {
    const FUNCTION: &str = "sharing/get_shared_link_metadata";
    let arg: Result<GetSharedLinkMetadataArg, _> = serde_json::from_slice(&body);
    let link_key = arg.as_ref().map(|a| link_id_of(&a.url)).unwrap_or_default();
    let (arg, passed) = match admit_listing(
        &app,
        &headers,
        killer.as_deref(),
        FUNCTION,
        (&link_key, ""),
        arg,
    )
    .await
    {
        Ok(admitted) => admitted,
        Err(refused) => return refused,
    };
    if arg.path.is_some_and(|p| !p.is_empty()) || arg.link_password.is_some() {
        return bad_input(
            FUNCTION,
            "the emulator answers for a link's own folder only: no \"path\" or \"link_password\"",
        );
    }
    let Some(link) = resolve_link(&app, &arg.url) else {
        return link_not_found();
    };
    let root = &app.0.catalog.nodes[app.0.catalog.dropbox_links[link].root];
    let body = json!({
        ".tag": "folder",
        "url": arg.url,
        "id": root.dropbox_id,
        "name": root.name,
        "link_permissions": {
            "can_revoke": false,
            "resolved_visibility": {".tag": "public"},
            "revoke_failure_reason": {".tag": "owner_only"},
        },
    });
    finish(axum::Json(body).into_response(), &passed)
}
