//! Dropbox API v2 client for shared-link folders.
//!
//! Calls (RPC endpoints at `DROPBOX_API_BASE`, default `https://api.dropboxapi.com`;
//! content at `DROPBOX_CONTENT_BASE`, default `https://content.dropboxapi.com`):
//! - `POST /2/sharing/get_shared_link_metadata` with `{"url"}` when an import starts:
//!   the link is a readable folder, and its name;
//! - `POST /2/files/list_folder` with `{"path", "shared_link": {"url"}}`, then
//!   `POST /2/files/list_folder/continue` with `{"cursor"}` while `has_more`;
//! - `POST /2/sharing/get_shared_link_file` with the `Dropbox-API-Arg` header
//!   (`{"url", "path"}`, HTTP-header-safe JSON): the bytes, streamed.
//!
//! Authentication: `Authorization: Bearer DROPBOX_ACCESS_TOKEN`, or app
//! authentication (`Basic` of `DROPBOX_APP_KEY:DROPBOX_APP_SECRET`). Route errors are
//! `409` with `error_summary` (e.g. `shared_link_not_found/…`), classified in
//! [`classify`].

use std::num::NonZeroU32;
use std::time::Duration;

use async_trait::async_trait;
use base64::Engine;
use reqwest::header::HeaderMap;
use reqwest::{Response, StatusCode};
use serde::Deserialize;
use serde_json::json;

use super::{
    check_status, image_type_of_name, retry_after, Download, Entry, FolderInfo, FolderRef,
    ListingPage, ListingPosition, Provider, ProviderClient, ProviderError, RemoteFile, RequestPace,
    SkipReason,
};

const P: Provider = Provider::Dropbox;

/// How the client authenticates.
#[derive(Clone)]
pub enum DropboxAuth {
    /// A user or team access token.
    AccessToken(String),
    /// App key and secret (app authentication).
    App { key: String, secret: String },
}

impl std::fmt::Debug for DropboxAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DropboxAuth::AccessToken(_) => f.write_str("AccessToken(***)"),
            DropboxAuth::App { key, .. } => write!(f, "App {{ key: {key}, secret: *** }}"),
        }
    }
}

impl DropboxAuth {
    fn header_value(&self) -> String {
        match self {
            DropboxAuth::AccessToken(token) => format!("Bearer {token}"),
            DropboxAuth::App { key, secret } => format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{key}:{secret}"))
            ),
        }
    }
}

/// Settings of the Dropbox client.
#[derive(Debug, Clone)]
pub struct DropboxSettings {
    pub api_base: url::Url,
    pub content_base: url::Url,
    pub auth: DropboxAuth,
    /// Entries per listing page (1–2000).
    pub page_size: u32,
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
    pub read_timeout: Duration,
    /// Requests per second from this process, every kind of call together.
    pub requests_per_second: NonZeroU32,
}

pub struct Dropbox {
    settings: DropboxSettings,
    pace: RequestPace,
    http: reqwest::Client,
}

#[derive(Debug, Deserialize)]
struct ListFolderResult {
    #[serde(default)]
    entries: Vec<Metadata>,
    #[serde(default)]
    cursor: String,
    #[serde(default)]
    has_more: bool,
}

#[derive(Debug, Deserialize)]
#[serde(tag = ".tag", rename_all = "snake_case")]
enum Metadata {
    File {
        name: String,
        id: String,
        size: Option<u64>,
        content_hash: Option<String>,
        #[serde(default = "yes")]
        is_downloadable: bool,
    },
    Folder {
        name: String,
    },
    /// `deleted` (only in incremental listings) or a tag added later: nothing to import.
    #[serde(other)]
    Other,
}

fn yes() -> bool {
    true
}

/// `sharing/get_shared_link_metadata`'s answer, the parts read here.
#[derive(Debug, Deserialize)]
struct SharedLinkMetadata {
    /// `folder` or `file`.
    #[serde(rename = ".tag")]
    tag: String,
    name: String,
}

#[derive(Debug, Deserialize)]
struct RouteError {
    #[serde(default)]
    error_summary: String,
    #[serde(default)]
    error: Option<serde_json::Value>,
}

/// Which kind of call failed: the same route error means different things.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Call {
    Listing,
    /// `get_shared_link_file`: its only "missing" error is `shared_link_not_found`,
    /// which, for a link that just listed fine, means the file is gone.
    Download,
}

/// Maps a non-success Dropbox answer to a classified error.
pub fn classify(
    status: StatusCode,
    headers: &HeaderMap,
    body: &[u8],
    what: &str,
    call: Call,
) -> ProviderError {
    let route = serde_json::from_slice::<RouteError>(body).ok();
    let summary = route
        .as_ref()
        .map(|r| r.error_summary.as_str())
        .unwrap_or("");
    let detail = if summary.is_empty() {
        let text = String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned();
        format!("{what}: HTTP {status} {}", text.trim())
    } else {
        format!("{what}: {summary} (HTTP {status})")
    };
    match status.as_u16() {
        429 => {
            // `error.retry_after` (seconds) when the header is missing.
            let body_wait = route
                .as_ref()
                .and_then(|r| r.error.as_ref())
                .and_then(|e| e.get("retry_after"))
                .and_then(serde_json::Value::as_u64)
                .map(Duration::from_secs);
            ProviderError::transient(
                P,
                "rate-limited",
                retry_after(headers).or(body_wait),
                detail,
            )
        }
        409 => {
            let tag = summary.split('/').next().unwrap_or("");
            let reason = match tag {
                "shared_link_not_found" if call == Call::Download => "not-found",
                "shared_link_not_found"
                | "shared_link_access_denied"
                | "email_not_verified"
                | "unsupported_link_type"
                | "shared_link_is_directory" => "not-public",
                "path" | "path_lookup" => "not-found",
                "reset" => "listing-reset",
                _ => "bad-response",
            };
            // `path/not_found/` on a file download: the file is gone.
            ProviderError::permanent(P, reason, detail)
        }
        401 => ProviderError::permanent(P, "provider-auth-failed", detail),
        500..=599 | 408 => {
            ProviderError::transient(P, "provider-unavailable", retry_after(headers), detail)
        }
        _ => ProviderError::permanent(P, "bad-response", detail),
    }
}

/// JSON safe to send in an HTTP header: every non-ASCII character (and DEL) escaped
/// as `\uXXXX`, as Dropbox requires for `Dropbox-API-Arg`.
pub fn header_safe_json(value: &serde_json::Value) -> String {
    let text = value.to_string();
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_ascii() && c != '\u{7f}' {
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

fn join(parent: &str, name: &str) -> String {
    format!("{}/{}", parent.trim_end_matches('/'), name)
}

fn display_join(parent: &str, name: &str) -> String {
    if parent.is_empty() {
        name.to_owned()
    } else {
        format!("{parent}/{name}")
    }
}

async fn check(response: Response, what: &str, call: Call) -> Result<Response, ProviderError> {
    check_status(response, |status, headers, body| {
        classify(status, headers, body, what, call)
    })
    .await
}

impl Dropbox {
    pub fn new(settings: DropboxSettings) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .connect_timeout(settings.connect_timeout)
            .read_timeout(settings.read_timeout)
            .user_agent(concat!("vitrine-import/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Dropbox {
            pace: RequestPace::per_second(settings.requests_per_second),
            settings,
            http,
        })
    }

    fn link(folder: &FolderRef) -> Result<&str, ProviderError> {
        match folder {
            FolderRef::Dropbox { shared_link } => Ok(shared_link),
            _ => Err(ProviderError::permanent(
                P,
                "bad-response",
                "not a Dropbox folder",
            )),
        }
    }

    async fn rpc<T: serde::de::DeserializeOwned>(
        &self,
        route: &str,
        body: serde_json::Value,
        what: &str,
    ) -> Result<T, ProviderError> {
        self.pace.wait().await;
        let url = self.settings.api_base.join(route).map_err(|e| {
            ProviderError::permanent(P, "bad-response", format!("bad API URL: {e}"))
        })?;
        let response = self
            .http
            .post(url)
            .header(
                reqwest::header::AUTHORIZATION,
                self.settings.auth.header_value(),
            )
            .json(&body)
            .timeout(self.settings.request_timeout)
            .send()
            .await
            .map_err(|e| ProviderError::from_transport(P, &e, what))?;
        let response = check(response, what, Call::Listing).await?;
        let bytes = response
            .bytes()
            .await
            .map_err(|e| ProviderError::from_transport(P, &e, what))?;
        serde_json::from_slice(&bytes).map_err(|e| {
            ProviderError::transient(
                P,
                "bad-response",
                None,
                format!("{what}: unexpected JSON: {e}"),
            )
        })
    }

    fn page(&self, result: ListFolderResult, position: &ListingPosition) -> ListingPage {
        let mut entries = Vec::with_capacity(result.entries.len());
        for entry in result.entries {
            match entry {
                Metadata::Folder { name, .. } => entries.push(Entry::Folder(ListingPosition {
                    location: join(&position.location, &name),
                    resource_key: None,
                    page_token: None,
                    display_path: display_join(&position.display_path, &name),
                })),
                Metadata::File {
                    name,
                    id,
                    size,
                    content_hash,
                    is_downloadable,
                } => {
                    let kind = image_type_of_name(&name).unwrap_or(Err(SkipReason::NotAnImage));
                    match kind {
                        Ok(image_type) if is_downloadable => {
                            entries.push(Entry::File(RemoteFile {
                                source_id: id,
                                download_ref: join(&position.location, &name),
                                path: position.display_path.clone(),
                                name,
                                image_type,
                                size,
                                md5: None,
                                sha256: None,
                                content_hash: content_hash.map(|h| h.to_ascii_lowercase()),
                                resource_key: None,
                            }))
                        }
                        Ok(_) => entries.push(Entry::Skipped {
                            source_id: id,
                            name,
                            reason: SkipReason::NotDownloadable,
                            detail: Some("not downloadable (e.g. a Dropbox Paper doc)".into()),
                        }),
                        Err(reason) => entries.push(Entry::Skipped {
                            source_id: id,
                            name,
                            reason,
                            detail: None,
                        }),
                    }
                }
                Metadata::Other => {}
            }
        }
        let next = (result.has_more && !result.cursor.is_empty()).then(|| ListingPosition {
            page_token: Some(result.cursor),
            ..position.clone()
        });
        ListingPage { entries, next }
    }
}

#[async_trait]
impl ProviderClient for Dropbox {
    fn provider(&self) -> Provider {
        P
    }

    async fn open_folder(&self, folder: &FolderRef) -> Result<FolderInfo, ProviderError> {
        // Proves the link is a readable folder, and gives its name.
        let link = Self::link(folder)?;
        let shared: SharedLinkMetadata = self
            .rpc(
                "2/sharing/get_shared_link_metadata",
                json!({ "url": link }),
                "opening the shared folder",
            )
            .await?;
        if shared.tag != "folder" {
            return Err(ProviderError::permanent(
                P,
                "not-a-folder",
                format!("the link points at a {}, not a folder", shared.tag),
            ));
        }
        Ok(FolderInfo { name: shared.name })
    }

    async fn list_page(
        &self,
        folder: &FolderRef,
        position: &ListingPosition,
    ) -> Result<ListingPage, ProviderError> {
        let link = Self::link(folder)?;
        let what = format!(
            "listing {:?}",
            if position.location.is_empty() {
                "/"
            } else {
                &position.location
            }
        );
        let result = match &position.page_token {
            Some(cursor) => {
                self.rpc(
                    "2/files/list_folder/continue",
                    json!({ "cursor": cursor }),
                    &what,
                )
                .await?
            }
            None => {
                let limit = self.settings.page_size.clamp(1, 2000);
                self.rpc(
                    "2/files/list_folder",
                    json!({ "path": position.location, "shared_link": { "url": link }, "limit": limit }),
                    &what,
                )
                .await?
            }
        };
        Ok(self.page(result, position))
    }

    async fn download(
        &self,
        folder: &FolderRef,
        file: &RemoteFile,
    ) -> Result<Download, ProviderError> {
        let link = Self::link(folder)?;
        let what = format!("downloading {}", file.download_ref);
        self.pace.wait().await;
        let url = self
            .settings
            .content_base
            .join("2/sharing/get_shared_link_file")
            .map_err(|e| {
                ProviderError::permanent(P, "bad-response", format!("bad API URL: {e}"))
            })?;
        let arg = header_safe_json(&json!({ "url": link, "path": file.download_ref }));
        let response = self
            .http
            .post(url)
            .header(
                reqwest::header::AUTHORIZATION,
                self.settings.auth.header_value(),
            )
            .header("Dropbox-API-Arg", arg)
            .send()
            .await
            .map_err(|e| ProviderError::from_transport(P, &e, &what))?;
        let response = check(response, &what, Call::Download).await?;
        Ok(Download::from_response(P, response, what))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A Dropbox whose `get_shared_link_metadata` answers `answer`.
    async fn dropbox_answering(answer: serde_json::Value) -> Dropbox {
        let app = axum::Router::new().route(
            "/2/sharing/get_shared_link_metadata",
            axum::routing::post(move || async move { axum::Json(answer) }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let base: url::Url = format!("http://{}", listener.local_addr().expect("addr"))
            .parse()
            .expect("url");
        tokio::spawn(async move { axum::serve(listener, app).await });
        Dropbox::new(DropboxSettings {
            api_base: base.clone(),
            content_base: base,
            auth: DropboxAuth::AccessToken("t".into()),
            page_size: 500,
            connect_timeout: Duration::from_secs(2),
            request_timeout: Duration::from_secs(5),
            read_timeout: Duration::from_secs(5),
            requests_per_second: NonZeroU32::MAX,
        })
        .expect("client")
    }

    #[tokio::test]
    async fn opening_a_folder_link_gives_the_folders_name_and_a_file_link_is_refused() {
        let link = FolderRef::Dropbox {
            shared_link: "https://www.dropbox.com/scl/fo/abc/h?rlkey=k".into(),
        };
        let folder =
            dropbox_answering(json!({".tag": "folder", "name": "Spring catalog", "url": "u"}))
                .await
                .open_folder(&link)
                .await
                .expect("a folder");
        assert_eq!(folder.name, "Spring catalog");

        let err = dropbox_answering(json!({".tag": "file", "name": "shoe.jpg", "url": "u"}))
            .await
            .open_folder(&link)
            .await
            .expect_err("a file");
        assert_eq!(
            (err.reason, err.retry),
            ("not-a-folder", crate::providers::Retry::Permanent),
            "{err}"
        );
    }

    #[test]
    fn listing_entries_of_every_tag_parse() {
        let page: ListFolderResult = serde_json::from_value(json!({
            "entries": [
                {".tag": "file", "name": "a.jpg", "id": "id:1", "size": 10, "content_hash": "AB", "rev": "1", "server_modified": "2026-01-01T00:00:00Z"},
                {".tag": "folder", "name": "sub", "id": "id:2"},
                {".tag": "deleted", "name": "gone.jpg"},
                {".tag": "something_new", "name": "x"}
            ],
            "cursor": "c", "has_more": true
        }))
        .unwrap();
        assert_eq!(page.entries.len(), 4);
        assert!(matches!(page.entries[3], Metadata::Other));
    }

    #[test]
    fn dropbox_api_arg_is_header_safe() {
        let arg = header_safe_json(&json!({"path": "/Fotos/café 📷.jpg"}));
        assert!(arg.is_ascii(), "{arg}");
        assert_eq!(arg, r#"{"path":"/Fotos/caf\u00e9 \ud83d\udcf7.jpg"}"#);
        let back: serde_json::Value = serde_json::from_str(&arg).unwrap();
        assert_eq!(back["path"], "/Fotos/café 📷.jpg");
    }

    #[test]
    fn route_errors_are_classified() {
        let headers = HeaderMap::new();
        let cases = [
            (
                409,
                r#"{"error_summary":"shared_link_not_found/..","error":{".tag":"shared_link_not_found"}}"#,
                "not-public",
                false,
            ),
            (
                409,
                r#"{"error_summary":"path/not_found/...","error":{".tag":"path"}}"#,
                "not-found",
                false,
            ),
            (
                429,
                r#"{"error_summary":"too_many_requests/..","error":{"reason":{".tag":"too_many_requests"},"retry_after":3}}"#,
                "rate-limited",
                true,
            ),
            (503, "<html>busy</html>", "provider-unavailable", true),
            (
                401,
                r#"{"error_summary":"invalid_access_token/..","error":{".tag":"invalid_access_token"}}"#,
                "provider-auth-failed",
                false,
            ),
            (400, "Error in call to API function", "bad-response", false),
        ];
        for (status, body, reason, transient) in cases {
            let e = classify(
                StatusCode::from_u16(status).unwrap(),
                &headers,
                body.as_bytes(),
                "t",
                Call::Listing,
            );
            assert_eq!(
                (e.reason, e.is_transient()),
                (reason, transient),
                "{status} {body}"
            );
        }
        let gone = classify(
            StatusCode::CONFLICT,
            &headers,
            cases[0].1.as_bytes(),
            "t",
            Call::Download,
        );
        assert_eq!(gone.reason, "not-found");
        let e = classify(
            StatusCode::TOO_MANY_REQUESTS,
            &headers,
            cases[2].1.as_bytes(),
            "t",
            Call::Listing,
        );
        assert_eq!(
            e.retry,
            super::super::Retry::Transient {
                after: Some(Duration::from_secs(3))
            }
        );
    }
}
