//! `sharing/get_shared_link_file`: a file's bytes, its metadata in
//! `Dropbox-API-Result`.

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use axum::Extension;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{
    bad_input, check_token, fault_response, finish, link_not_found, resolve_link, route_error,
    text, time,
};
use crate::faults::Route;
use crate::respond::{self, ByteRange};
use crate::serve::ConnKiller;
use crate::FakeProviders;

#[derive(Deserialize)]
struct GetSharedLinkFileArg {
    url: String,
    path: Option<String>,
}

/// JSON with every non-ASCII character escaped, as HTTP headers need.
fn ascii_json(value: &Value) -> String {
    let text = value.to_string();
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_ascii() {
            out.push(c);
        } else {
            let mut units = [0u16; 2];
            for unit in c.encode_utf16(&mut units) {
                out.push_str(&format!("\\u{unit:04x}"));
            }
        }
    }
    out
}

pub(super) async fn get_shared_link_file(
    State(app): State<FakeProviders>,
    headers: HeaderMap,
    killer: Option<Extension<ConnKiller>>,
) -> Response {
    const FUNCTION: &str = "sharing/get_shared_link_file";
    let arg: Option<Result<GetSharedLinkFileArg, _>> = headers
        .get("dropbox-api-arg")
        .map(|v| serde_json::from_slice(v.as_bytes()));
    let link = arg
        .as_ref()
        .and_then(|a| a.as_ref().ok())
        .and_then(|a| resolve_link(&app, &a.url));
    let node = match (&arg, link) {
        (Some(Ok(a)), Some(link)) => a
            .path
            .as_deref()
            .and_then(|p| app.0.catalog.dropbox_node(link, p)),
        _ => None,
    };
    let (id, path, name) = node.map_or((String::new(), String::new(), String::new()), |n| {
        let n = &app.0.catalog.nodes[n];
        (n.dropbox_id.clone(), n.path.clone(), n.name.clone())
    });
    let requested_path = arg
        .as_ref()
        .and_then(|a| a.as_ref().ok())
        .and_then(|a| a.path.clone())
        .unwrap_or_default();
    let keys = [
        id.as_str(),
        path.as_str(),
        name.as_str(),
        requested_path.as_str(),
    ];
    app.0
        .stats
        .download(if id.is_empty() { &requested_path } else { &id });
    let passed = match app
        .admit(Route::DropboxDownload, &keys, killer.as_deref())
        .await
    {
        Ok(p) => p,
        Err(fault) => return fault_response(fault, Route::DropboxDownload),
    };
    if let Err(r) = check_token(&app, &headers) {
        return r;
    }
    let arg = match arg {
        None => {
            return bad_input(
                FUNCTION,
                "Must provide HTTP header \"Dropbox-API-Arg\" or URL parameter \"arg\".",
            )
        }
        Some(Err(e)) => {
            return bad_input(
                FUNCTION,
                &format!("HTTP header \"Dropbox-API-Arg\": could not decode input as JSON: {e}"),
            )
        }
        Some(Ok(a)) => a,
    };
    let Some(link) = link else {
        return link_not_found();
    };
    let Some(node) = node else {
        return match arg.path {
            None => route_error(
                "shared_link_is_directory",
                json!({".tag": "shared_link_is_directory"}),
            ),
            Some(_) => link_not_found(),
        };
    };
    let n = &app.0.catalog.nodes[node];
    let Some(content) = n.content() else {
        return route_error(
            "shared_link_is_directory",
            json!({".tag": "shared_link_is_directory"}),
        );
    };
    let size = match app.file_size(node).await {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot read file content");
            return text(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error");
        }
    };
    let range = respond::parse_range(&headers, size);
    let (start, len) = match range {
        ByteRange::Full => (0, size),
        ByteRange::Partial { start, len } => (start, len),
        ByteRange::Unsatisfiable => return respond::unsatisfiable(size),
    };
    let body = match content.stream_range(start, len).await {
        Ok(b) => b,
        Err(e) => {
            tracing::error!(error = %e, "cannot read file content");
            return text(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error");
        }
    };
    let result = json!({
        ".tag": "file",
        "url": app.0.catalog.dropbox_links[link].url,
        "id": n.dropbox_id,
        "name": n.name,
        "path_lower": n.path.to_lowercase(),
        "link_permissions": {"can_revoke": false, "resolved_visibility": {".tag": "public"}},
        "client_modified": time(n),
        "server_modified": time(n),
        "rev": n.rev,
        "size": size,
    });
    let mut response = respond::file_response(
        StatusCode::OK,
        "application/octet-stream",
        size,
        range,
        body,
    );
    if let Ok(v) = HeaderValue::from_str(&ascii_json(&result)) {
        response.headers_mut().insert("dropbox-api-result", v);
    }
    let stats = app.0.stats.clone();
    let file_id = n.dropbox_id.clone();
    respond::track_completion(finish(response, &passed), move || stats.completed(&file_id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_json_is_ascii() {
        let v = json!({"name": "café 😀.jpg"});
        let s = ascii_json(&v);
        assert!(s.is_ascii());
        let back: Value = serde_json::from_str(&s).unwrap();
        assert_eq!(back, v);
    }
}
