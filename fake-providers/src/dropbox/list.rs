//! `files/list_folder` and `files/list_folder/continue` on a shared link.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{
    admit_listing, bad_input, entry, finish, link_id_of, link_not_found, path_not_found,
    resolve_link, route_error, text, SharedLink,
};
use crate::catalog::Kind;
use crate::serve::ConnKiller;
use crate::FakeProviders;

const MAX_LIMIT: usize = 2000;

#[derive(Deserialize)]
struct ListFolderArg {
    #[serde(default)]
    path: String,
    shared_link: Option<SharedLink>,
    #[serde(default)]
    recursive: bool,
    limit: Option<usize>,
}

#[derive(Serialize, Deserialize)]
struct Cursor {
    link: usize,
    path: String,
    offset: usize,
    limit: usize,
}

pub(super) async fn list_folder(
    State(app): State<FakeProviders>,
    headers: HeaderMap,
    killer: Option<Extension<ConnKiller>>,
    body: Bytes,
) -> Response {
    const FUNCTION: &str = "files/list_folder";
    let arg: Result<ListFolderArg, _> = serde_json::from_slice(&body);
    let (link_key, path) = match &arg {
        Ok(a) => (
            a.shared_link
                .as_ref()
                .map(|l| link_id_of(&l.url))
                .unwrap_or_default(),
            a.path.clone(),
        ),
        Err(_) => (String::new(), String::new()),
    };
    let (arg, passed) = match admit_listing(
        &app,
        &headers,
        killer.as_deref(),
        FUNCTION,
        (&link_key, &path),
        arg,
    )
    .await
    {
        Ok(admitted) => admitted,
        Err(refused) => return refused,
    };
    if !(arg.path.is_empty() || arg.path.starts_with('/')) {
        return bad_input(
            FUNCTION,
            &format!("request body: path: '{}' did not match pattern '(/(.|[\\r\\n])*)?|id:.*|(ns:[0-9]+(/.*)?)'", arg.path),
        );
    }
    let limit = match arg.limit {
        None => MAX_LIMIT,
        Some(n) if (1..=MAX_LIMIT).contains(&n) => n,
        Some(n) => {
            return bad_input(
                FUNCTION,
                &format!("request body: limit: {n} is not within range [1, 2000]"),
            )
        }
    };
    let Some(shared) = arg.shared_link else {
        return bad_input(
            FUNCTION,
            "the emulator lists shared links only: send \"shared_link\": {\"url\": …}",
        );
    };
    if arg.recursive {
        return route_error(
            "path/unsupported_content_type",
            json!({".tag": "path", "path": {".tag": "unsupported_content_type"}}),
        );
    }
    let Some(link) = resolve_link(&app, &shared.url) else {
        return link_not_found();
    };
    let cursor = Cursor {
        link,
        path: arg.path,
        offset: 0,
        limit,
    };
    let response = page(&app, cursor, passed.empty_listing).await;
    finish(response, &passed)
}

#[derive(Deserialize)]
struct ContinueArg {
    cursor: String,
}

fn decode_cursor(text: &str) -> Option<Cursor> {
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(text.strip_prefix("AAF")?).ok()?).ok()
}

fn encode_cursor(cursor: &Cursor) -> String {
    let json = serde_json::to_vec(cursor).unwrap_or_default();
    format!("AAF{}", URL_SAFE_NO_PAD.encode(json))
}

pub(super) async fn list_folder_continue(
    State(app): State<FakeProviders>,
    headers: HeaderMap,
    killer: Option<Extension<ConnKiller>>,
    body: Bytes,
) -> Response {
    const FUNCTION: &str = "files/list_folder/continue";
    let arg: Result<ContinueArg, _> = serde_json::from_slice(&body);
    let cursor = arg.as_ref().ok().and_then(|a| decode_cursor(&a.cursor));
    let (link_key, path) = cursor
        .as_ref()
        .and_then(|c| {
            let l = app.0.catalog.dropbox_links.get(c.link)?;
            Some((l.link_id.clone(), c.path.clone()))
        })
        .unwrap_or_default();
    let passed = match admit_listing(
        &app,
        &headers,
        killer.as_deref(),
        FUNCTION,
        (&link_key, &path),
        arg,
    )
    .await
    {
        Ok((_, passed)) => passed,
        Err(refused) => return refused,
    };
    let Some(cursor) = cursor else {
        return bad_input(
            FUNCTION,
            "Invalid \"cursor\" parameter: the cursor is malformed",
        );
    };
    if app
        .0
        .catalog
        .dropbox_links
        .get(cursor.link)
        .is_none_or(|l| l.private)
    {
        return link_not_found();
    }
    let response = page(&app, cursor, passed.empty_listing).await;
    finish(response, &passed)
}

async fn page(app: &FakeProviders, cursor: Cursor, empty: bool) -> Response {
    let catalog = &app.0.catalog;
    let Some(folder) = catalog.dropbox_node(cursor.link, &cursor.path) else {
        return path_not_found();
    };
    let Kind::Folder { children, .. } = &catalog.nodes[folder].kind else {
        return route_error(
            "path/not_folder",
            json!({".tag": "path", "path": {".tag": "not_folder"}}),
        );
    };
    let children: &[usize] = if empty { &[] } else { children };
    let end = (cursor.offset + cursor.limit).min(children.len());
    let page = children
        .get(cursor.offset..end)
        .unwrap_or_default()
        .to_vec();
    if let Err(e) = app.digests_of(page.clone()).await {
        tracing::error!(error = %e, "cannot read file content");
        return text(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error");
    }
    let next = Cursor {
        offset: end,
        ..cursor
    };
    let body = json!({
        "entries": page.iter().map(|&n| entry(&catalog.nodes[n])).collect::<Vec<_>>(),
        "cursor": encode_cursor(&next),
        "has_more": end < children.len(),
    });
    axum::Json(body).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip() {
        let c = Cursor {
            link: 2,
            path: "/a b".into(),
            offset: 10,
            limit: 5,
        };
        let d = decode_cursor(&encode_cursor(&c)).unwrap();
        assert_eq!(
            (d.link, d.path.as_str(), d.offset, d.limit),
            (2, "/a b", 10, 5)
        );
        assert!(decode_cursor("nope").is_none());
    }
}
