//! `GET /drive/v3/files`: the children of one folder, a page at a time.

use axum::extract::{RawQuery, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::Extension;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde_json::json;

use super::error::{fault_response, GoogleError};
use super::fields::{selection, DEFAULT_LIST};
use super::{
    check_identity, file_json, finish, internal, json_response, needs_digests, params, visible,
    Params,
};
use crate::catalog::Kind;
use crate::faults::Route;
use crate::serve::ConnKiller;
use crate::FakeProviders;

/// The supported `q`: `'<id>' in parents` and `trashed = …` / `mimeType =|!= '…'`
/// terms joined by `and`.
#[derive(Debug, Default)]
struct Query {
    parent: String,
    trashed: Option<bool>,
    mime_eq: Vec<String>,
    mime_ne: Vec<String>,
}

fn unquote(s: &str) -> Option<String> {
    let s = s.trim();
    let inner = s.strip_prefix('\'')?.strip_suffix('\'')?;
    Some(inner.replace("\\'", "'").replace("\\\\", "\\"))
}

fn parse_query(q: &str) -> Option<Query> {
    let mut query = Query::default();
    let mut parents = 0;
    let lower = q.to_ascii_lowercase();
    let mut terms = Vec::new();
    let mut start = 0;
    while let Some(pos) = lower[start..].find(" and ") {
        terms.push(&q[start..start + pos]);
        start += pos + 5;
    }
    terms.push(&q[start..]);
    for term in terms {
        let term = term.trim();
        let compact: String = term.chars().filter(|c| !c.is_whitespace()).collect();
        if let Some(id) = term.strip_suffix("in parents") {
            query.parent = unquote(id)?;
            parents += 1;
        } else if compact == "trashed=false" {
            query.trashed = Some(false);
        } else if compact == "trashed=true" {
            query.trashed = Some(true);
        } else if let Some(rest) = term.strip_prefix("mimeType") {
            let rest = rest.trim();
            if let Some(v) = rest.strip_prefix("!=") {
                query.mime_ne.push(unquote(v)?);
            } else if let Some(v) = rest.strip_prefix('=') {
                query.mime_eq.push(unquote(v)?);
            } else {
                return None;
            }
        } else {
            return None;
        }
    }
    (parents == 1).then_some(query)
}

fn encode_token(parent: &str, offset: usize) -> String {
    URL_SAFE_NO_PAD.encode(format!("v1|{parent}|{offset}"))
}

fn decode_token(token: &str, parent: &str) -> Option<usize> {
    let raw = String::from_utf8(URL_SAFE_NO_PAD.decode(token).ok()?).ok()?;
    let mut parts = raw.split('|');
    (parts.next()? == "v1" && parts.next()? == parent)
        .then(|| parts.next()?.parse().ok())
        .flatten()
}

pub(super) async fn list(
    State(app): State<FakeProviders>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
    killer: Option<Extension<ConnKiller>>,
) -> Response {
    let params = params(raw);
    let query = params.get("q").and_then(|q| parse_query(q));
    let parent = query.as_ref().map_or("", |q| q.parent.as_str()).to_owned();
    app.0.stats.listing(&parent);
    let passed = match app
        .admit(Route::DriveList, &[&parent], killer.as_deref())
        .await
    {
        Ok(p) => p,
        Err(fault) => return fault_response(fault, &parent),
    };
    match list_page(&app, &params, query, &headers, passed.empty_listing).await {
        Ok(response) => finish(response, &passed),
        Err(response) => response,
    }
}

async fn list_page(
    app: &FakeProviders,
    params: &Params,
    query: Option<Query>,
    headers: &HeaderMap,
    empty: bool,
) -> Result<Response, Response> {
    check_identity(app, params, headers).map_err(IntoResponse::into_response)?;
    let Some(query) = query else {
        return Err(GoogleError::invalid(
            "q",
            "Invalid Value (the emulator supports `'<folderId>' in parents` \
             [and trashed = false] [and mimeType = / != '<type>'])",
        )
        .into_response());
    };
    let page_size = match params.get("pageSize") {
        None => 100,
        Some(v) => match v.parse::<usize>() {
            Ok(n) if (1..=1000).contains(&n) => n,
            _ => {
                return Err(GoogleError::invalid(
                    "pageSize",
                    format!("Invalid value '{v}'. Values must be within the range: [1, 1000]"),
                )
                .into_response())
            }
        },
    };
    let sel = selection(params, DEFAULT_LIST, true).map_err(IntoResponse::into_response)?;
    let catalog = &app.0.catalog;
    let folder = catalog
        .drive_node(&query.parent)
        .filter(|&n| visible(app, n, headers))
        .ok_or_else(|| GoogleError::not_found(&query.parent).into_response())?;
    let offset = match params.get("pageToken").filter(|t| !t.is_empty()) {
        None => 0,
        Some(token) => decode_token(token, &query.parent)
            .ok_or_else(|| GoogleError::invalid("pageToken", "Invalid Value").into_response())?,
    };
    let children: Vec<usize> = match &catalog.nodes[folder].kind {
        Kind::Folder { children, .. } if !empty && query.trashed != Some(true) => children
            .iter()
            .copied()
            .filter(|&c| {
                let mime = catalog.nodes[c].mime();
                query.mime_eq.iter().all(|m| m == mime) && query.mime_ne.iter().all(|m| m != mime)
            })
            .collect(),
        _ => Vec::new(),
    };
    let end = (offset + page_size).min(children.len());
    let page = children.get(offset..end).unwrap_or_default().to_vec();
    if needs_digests(&sel, &["files"]) {
        app.digests_of(page.clone()).await.map_err(internal)?;
    }
    let mut doc = json!({
        "kind": "drive#fileList",
        "incompleteSearch": false,
        "files": page.iter().map(|&n| file_json(app, n)).collect::<Vec<_>>(),
    });
    if end < children.len() {
        doc["nextPageToken"] = json!(encode_token(&query.parent, end));
    }
    Ok(json_response(sel.apply(&doc)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries() {
        let q = parse_query("'abc' in parents and trashed=false").unwrap();
        assert_eq!(q.parent, "abc");
        assert_eq!(q.trashed, Some(false));
        let q = parse_query(
            "'a\\'b' in parents AND mimeType != 'application/vnd.google-apps.folder' and trashed = false",
        )
        .unwrap();
        assert_eq!(q.parent, "a'b");
        assert_eq!(q.mime_ne, ["application/vnd.google-apps.folder"]);
        assert!(parse_query("name contains 'x'").is_none());
        assert!(parse_query("trashed=false").is_none());
    }

    #[test]
    fn page_tokens() {
        let t = encode_token("abc", 1000);
        assert_eq!(decode_token(&t, "abc"), Some(1000));
        assert_eq!(decode_token(&t, "other"), None);
        assert_eq!(decode_token("garbage!", "abc"), None);
    }
}
