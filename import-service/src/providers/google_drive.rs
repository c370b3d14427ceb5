//! Google Drive API v3 client for public ("anyone with the link") folders.
//!
//! Calls, all with `key=GOOGLE_API_KEY` at `GOOGLE_DRIVE_API_BASE`
//! (default `https://www.googleapis.com`):
//! - `GET /drive/v3/files/{id}?fields=id,name,mimeType`: the folder exists and is public;
//! - `GET /drive/v3/files?q='{id}' in parents and trashed=false&pageSize=1000&pageToken=…`
//!   with a partial-response `fields` list: one page per call;
//! - `GET /drive/v3/files/{id}` for a shortcut's target (its size and checksums);
//! - `GET /drive/v3/files/{id}?alt=media`: the bytes, streamed.
//!
//! Resource keys (link-shared files created before 2021) travel in the
//! `X-Goog-Drive-Resource-Keys: {id}/{key}` header. Errors are Google's JSON
//! (`error.code`, `error.errors[].reason`), classified in [`classify`].

use std::num::NonZeroU32;
use std::time::Duration;

use async_trait::async_trait;
use reqwest::header::HeaderMap;
use reqwest::{Response, StatusCode};
use serde::Deserialize;
use service_kit::media::ImageType;

use super::{
    check_status, retry_after, Download, Entry, FolderInfo, FolderRef, ListingPage,
    ListingPosition, Provider, ProviderClient, ProviderError, RemoteFile, RequestPace, SkipReason,
};

const FOLDER_MIME: &str = "application/vnd.google-apps.folder";
const SHORTCUT_MIME: &str = "application/vnd.google-apps.shortcut";
const GOOGLE_NATIVE_PREFIX: &str = "application/vnd.google-apps.";
const RESOURCE_KEYS_HEADER: &str = "X-Goog-Drive-Resource-Keys";
const LIST_FIELDS: &str = "nextPageToken,incompleteSearch,files(id,name,mimeType,size,md5Checksum,sha256Checksum,resourceKey,shortcutDetails(targetId,targetMimeType,targetResourceKey))";
const FILE_FIELDS: &str = "id,name,mimeType,size,md5Checksum,sha256Checksum,resourceKey";
const P: Provider = Provider::GoogleDrive;

/// Settings of the Drive client.
#[derive(Debug, Clone)]
pub struct DriveSettings {
    /// `https://www.googleapis.com`, or an emulator.
    pub api_base: url::Url,
    pub api_key: String,
    /// Files per listing page (1–1000).
    pub page_size: u32,
    pub connect_timeout: Duration,
    /// Timeout of a metadata or listing call (downloads: per read, see `read_timeout`).
    pub request_timeout: Duration,
    /// A download that sends nothing for this long is abandoned.
    pub read_timeout: Duration,
    /// Requests per second from this process, every kind of call together.
    pub requests_per_second: NonZeroU32,
}

pub struct GoogleDrive {
    settings: DriveSettings,
    http: reqwest::Client,
    pace: RequestPace,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct DriveFile {
    id: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    mime_type: String,
    /// Drive sends sizes as strings.
    size: Option<String>,
    md5_checksum: Option<String>,
    sha256_checksum: Option<String>,
    resource_key: Option<String>,
    shortcut_details: Option<ShortcutDetails>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ShortcutDetails {
    target_id: String,
    #[serde(default)]
    target_mime_type: String,
    target_resource_key: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct FileList {
    next_page_token: Option<String>,
    #[serde(default)]
    files: Vec<DriveFile>,
}

#[derive(Debug, Deserialize)]
struct GoogleErrorEnvelope {
    error: GoogleError,
}

#[derive(Debug, Deserialize)]
struct GoogleError {
    #[serde(default)]
    message: String,
    #[serde(default)]
    errors: Vec<GoogleErrorItem>,
}

#[derive(Debug, Deserialize)]
struct GoogleErrorItem {
    #[serde(default)]
    reason: String,
}

/// Maps a non-success Drive answer to a classified error.
pub fn classify(status: StatusCode, headers: &HeaderMap, body: &[u8], what: &str) -> ProviderError {
    let parsed = serde_json::from_slice::<GoogleErrorEnvelope>(body).ok();
    let reason = parsed
        .as_ref()
        .and_then(|e| e.error.errors.first())
        .map(|e| e.reason.as_str())
        .unwrap_or("");
    let message = parsed
        .as_ref()
        .map(|e| e.error.message.clone())
        .filter(|m| !m.is_empty())
        .unwrap_or_else(|| format!("HTTP {status}"));
    let detail = format!(
        "{what}: {message} ({status}{})",
        if reason.is_empty() {
            String::new()
        } else {
            format!(", {reason}")
        }
    );
    match (status.as_u16(), reason) {
        (429, _) | (403, "rateLimitExceeded" | "userRateLimitExceeded" | "quotaExceeded") => {
            ProviderError::transient(P, "rate-limited", retry_after(headers), detail)
        }
        (403, "downloadQuotaExceeded") => {
            ProviderError::permanent(P, "download-quota-exceeded", detail)
        }
        (403, "fileNotDownloadable" | "cannotDownloadFile" | "cannotDownloadAbusiveFile") => {
            ProviderError::permanent(P, "not-downloadable", detail)
        }
        (404, _) => ProviderError::permanent(P, "not-found", detail),
        (
            400 | 401 | 403,
            "keyInvalid"
            | "keyExpired"
            | "badRequest"
            | "ipRefererBlocked"
            | "accessNotConfigured"
            | "forbidden",
        )
        | (401, _) => ProviderError::permanent(P, "provider-auth-failed", detail),
        (403, _) => ProviderError::permanent(P, "not-public", detail),
        (500..=599, _) | (408, _) => {
            ProviderError::transient(P, "provider-unavailable", retry_after(headers), detail)
        }
        _ => ProviderError::permanent(P, "bad-response", detail),
    }
}

impl GoogleDrive {
    pub fn new(settings: DriveSettings) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .connect_timeout(settings.connect_timeout)
            .read_timeout(settings.read_timeout)
            .user_agent(concat!("vitrine-import/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(GoogleDrive {
            pace: RequestPace::per_second(settings.requests_per_second),
            settings,
            http,
        })
    }

    fn url(&self, path: &str) -> Result<url::Url, ProviderError> {
        self.settings
            .api_base
            .join(path)
            .map_err(|e| ProviderError::permanent(P, "bad-response", format!("bad API URL: {e}")))
    }

    fn get(
        &self,
        path: &str,
        resource: Option<(&str, &str)>,
    ) -> Result<reqwest::RequestBuilder, ProviderError> {
        let mut request = self
            .http
            .get(self.url(path)?)
            .query(&[("key", self.settings.api_key.as_str())]);
        if let Some((id, key)) = resource {
            request = request.header(RESOURCE_KEYS_HEADER, format!("{id}/{key}"));
        }
        Ok(request)
    }

    /// Sends a metadata/listing call and decodes its JSON, classifying failures.
    async fn json<T: serde::de::DeserializeOwned>(
        &self,
        request: reqwest::RequestBuilder,
        what: &str,
    ) -> Result<T, ProviderError> {
        self.pace.wait().await;
        let response = request
            .timeout(self.settings.request_timeout)
            .send()
            .await
            .map_err(|e| ProviderError::from_transport(P, &e, what))?;
        let response = check(response, what).await?;
        let body = response
            .bytes()
            .await
            .map_err(|e| ProviderError::from_transport(P, &e, what))?;
        serde_json::from_slice(&body).map_err(|e| {
            ProviderError::transient(
                P,
                "bad-response",
                None,
                format!("{what}: unexpected JSON: {e}"),
            )
        })
    }

    async fn file(&self, id: &str, resource_key: Option<&str>) -> Result<DriveFile, ProviderError> {
        let request = self
            .get(
                &format!("drive/v3/files/{}", encode_path(id)),
                resource_key.map(|k| (id, k)),
            )?
            .query(&[("fields", FILE_FIELDS), ("supportsAllDrives", "true")]);
        self.json(request, &format!("file {id}")).await
    }

    /// Turns one listed Drive file into an entry, resolving shortcuts.
    async fn entry(
        &self,
        file: DriveFile,
        position: &ListingPosition,
    ) -> Result<Entry, ProviderError> {
        let path = position.display_path.clone();
        if file.mime_type == FOLDER_MIME {
            return Ok(Entry::Folder(ListingPosition {
                display_path: join_path(&path, &file.name),
                location: file.id,
                resource_key: file.resource_key,
                page_token: None,
            }));
        }
        if file.mime_type == SHORTCUT_MIME {
            let Some(details) = file.shortcut_details else {
                return Ok(skip(
                    file.id,
                    file.name,
                    SkipReason::ShortcutNotToImage,
                    None,
                ));
            };
            let Ok(_) = image_type_of_mime(&details.target_mime_type) else {
                return Ok(skip(
                    file.id,
                    file.name,
                    SkipReason::ShortcutNotToImage,
                    Some(details.target_mime_type),
                ));
            };
            // The shortcut's listing has no size or checksum: ask for the target's.
            let target = match self
                .file(&details.target_id, details.target_resource_key.as_deref())
                .await
            {
                Ok(target) => target,
                // A dangling or private target: nothing to import.
                Err(e) if !e.is_transient() => {
                    return Ok(skip(
                        file.id,
                        file.name,
                        SkipReason::ShortcutNotToImage,
                        Some(format!("target unavailable: {}", e.reason)),
                    ))
                }
                Err(e) => return Err(e),
            };
            return Ok(image_entry(
                file.id,
                file.name,
                path,
                target.id,
                target.resource_key.or(details.target_resource_key),
                &target.mime_type,
                target.size.as_deref(),
                target.md5_checksum,
                target.sha256_checksum,
            ));
        }
        Ok(image_entry(
            file.id.clone(),
            file.name,
            path,
            file.id,
            file.resource_key,
            &file.mime_type,
            file.size.as_deref(),
            file.md5_checksum,
            file.sha256_checksum,
        ))
    }
}

/// Ids go into a path segment: percent-encode anything unusual (ids are URL-safe
/// already; this is defence in depth).
fn encode_path(id: &str) -> String {
    percent_encoding::utf8_percent_encode(id, percent_encoding::NON_ALPHANUMERIC)
        .to_string()
        .replace("%2D", "-")
        .replace("%5F", "_")
}

fn join_path(parent: &str, name: &str) -> String {
    if parent.is_empty() {
        name.to_owned()
    } else {
        format!("{parent}/{name}")
    }
}

fn skip(source_id: String, name: String, reason: SkipReason, detail: Option<String>) -> Entry {
    Entry::Skipped {
        source_id,
        name,
        reason,
        detail,
    }
}

/// The image type Vitrine stores for `mime`, or why the file is skipped.
fn image_type_of_mime(mime: &str) -> Result<ImageType, SkipReason> {
    if mime.starts_with(GOOGLE_NATIVE_PREFIX) {
        return Err(SkipReason::GoogleNative);
    }
    match ImageType::from_mime(mime) {
        Some(t) => Ok(t),
        None if mime.starts_with("image/") => Err(SkipReason::UnsupportedImageType),
        None => Err(SkipReason::NotAnImage),
    }
}

#[allow(clippy::too_many_arguments)]
fn image_entry(
    source_id: String,
    name: String,
    path: String,
    download_id: String,
    resource_key: Option<String>,
    mime: &str,
    size: Option<&str>,
    md5: Option<String>,
    sha256: Option<String>,
) -> Entry {
    match image_type_of_mime(mime) {
        Ok(image_type) => Entry::File(RemoteFile {
            source_id,
            name,
            path,
            image_type,
            size: size.and_then(|s| s.parse().ok()),
            md5: md5.map(|s| s.to_ascii_lowercase()),
            sha256: sha256.map(|s| s.to_ascii_lowercase()),
            content_hash: None,
            download_ref: download_id,
            resource_key,
        }),
        Err(reason) => skip(source_id, name, reason, Some(mime.to_owned())),
    }
}

async fn check(response: Response, what: &str) -> Result<Response, ProviderError> {
    check_status(response, |status, headers, body| {
        classify(status, headers, body, what)
    })
    .await
}

#[async_trait]
impl ProviderClient for GoogleDrive {
    fn provider(&self) -> Provider {
        P
    }

    async fn open_folder(&self, folder: &FolderRef) -> Result<FolderInfo, ProviderError> {
        let FolderRef::GoogleDrive {
            folder_id,
            resource_key,
        } = folder
        else {
            return Err(ProviderError::permanent(
                P,
                "bad-response",
                "not a Google Drive folder",
            ));
        };
        let file = self
            .file(folder_id, resource_key.as_deref())
            .await
            .map_err(|e| {
                if e.reason == "not-found" {
                    ProviderError::permanent(
                        P,
                        "not-public",
                        "the folder does not exist or is not shared with \"Anyone with the link\"",
                    )
                } else {
                    e
                }
            })?;
        if file.mime_type != FOLDER_MIME {
            return Err(ProviderError::permanent(
                P,
                "not-a-folder",
                format!("the link points at a {} file, not a folder", file.mime_type),
            ));
        }
        Ok(FolderInfo { name: file.name })
    }

    async fn list_page(
        &self,
        _folder: &FolderRef,
        position: &ListingPosition,
    ) -> Result<ListingPage, ProviderError> {
        let query = format!(
            "'{}' in parents and trashed=false",
            position.location.replace('\\', "\\\\").replace('\'', "\\'")
        );
        let page_size = self.settings.page_size.clamp(1, 1000).to_string();
        let mut request = self
            .get(
                "drive/v3/files",
                position
                    .resource_key
                    .as_deref()
                    .map(|k| (position.location.as_str(), k)),
            )?
            .query(&[
                ("q", query.as_str()),
                ("fields", LIST_FIELDS),
                ("pageSize", page_size.as_str()),
                ("supportsAllDrives", "true"),
                ("includeItemsFromAllDrives", "true"),
            ]);
        if let Some(token) = &position.page_token {
            request = request.query(&[("pageToken", token.as_str())]);
        }
        let list: FileList = self
            .json(request, &format!("listing folder {}", position.location))
            .await?;
        let mut entries = Vec::with_capacity(list.files.len());
        for file in list.files {
            entries.push(self.entry(file, position).await?);
        }
        let next = list
            .next_page_token
            .filter(|t| !t.is_empty())
            .map(|token| ListingPosition {
                page_token: Some(token),
                ..position.clone()
            });
        Ok(ListingPage { entries, next })
    }

    async fn download(
        &self,
        _folder: &FolderRef,
        file: &RemoteFile,
    ) -> Result<Download, ProviderError> {
        let what = format!("downloading {}", file.source_id);
        self.pace.wait().await;
        let response = self
            .get(
                &format!("drive/v3/files/{}", encode_path(&file.download_ref)),
                file.resource_key
                    .as_deref()
                    .map(|k| (file.download_ref.as_str(), k)),
            )?
            .query(&[("alt", "media"), ("supportsAllDrives", "true")])
            .send()
            .await
            .map_err(|e| ProviderError::from_transport(P, &e, &what))?;
        let response = check(response, &what).await?;
        Ok(Download::from_response(P, response, what))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn google_error(code: u16, reason: &str) -> String {
        serde_json::json!({"error": {"code": code, "message": format!("{reason} happened"),
            "errors": [{"message": "m", "domain": "global", "reason": reason}]}})
        .to_string()
    }

    #[test]
    fn google_errors_are_classified() {
        let mut headers = HeaderMap::new();
        let cases = [
            (
                403,
                google_error(403, "rateLimitExceeded"),
                "rate-limited",
                true,
            ),
            (
                403,
                google_error(403, "userRateLimitExceeded"),
                "rate-limited",
                true,
            ),
            (
                429,
                google_error(429, "rateLimitExceeded"),
                "rate-limited",
                true,
            ),
            (
                429,
                "<html><body>Too many requests</body></html>".to_owned(),
                "rate-limited",
                true,
            ),
            (
                403,
                google_error(403, "downloadQuotaExceeded"),
                "download-quota-exceeded",
                false,
            ),
            (
                403,
                google_error(403, "fileNotDownloadable"),
                "not-downloadable",
                false,
            ),
            (404, google_error(404, "notFound"), "not-found", false),
            (
                400,
                google_error(400, "keyInvalid"),
                "provider-auth-failed",
                false,
            ),
            (
                403,
                google_error(403, "insufficientFilePermissions"),
                "not-public",
                false,
            ),
            (
                500,
                google_error(500, "backendError"),
                "provider-unavailable",
                true,
            ),
            (
                503,
                "Service Unavailable".to_owned(),
                "provider-unavailable",
                true,
            ),
        ];
        for (status, body, reason, transient) in &cases {
            let e = classify(
                StatusCode::from_u16(*status).unwrap(),
                &headers,
                body.as_bytes(),
                "t",
            );
            assert_eq!(
                (e.reason, e.is_transient()),
                (*reason, *transient),
                "{status} {body}"
            );
        }
        headers.insert("retry-after", "4".parse().unwrap());
        let e = classify(StatusCode::TOO_MANY_REQUESTS, &headers, b"", "t");
        assert_eq!(
            e.retry,
            super::super::Retry::Transient {
                after: Some(Duration::from_secs(4))
            }
        );
    }

    #[test]
    fn mime_types_decide_what_is_imported() {
        assert_eq!(image_type_of_mime("image/jpeg"), Ok(ImageType::Jpeg));
        assert_eq!(
            image_type_of_mime("image/heic"),
            Err(SkipReason::UnsupportedImageType)
        );
        assert_eq!(
            image_type_of_mime("application/pdf"),
            Err(SkipReason::NotAnImage)
        );
        assert_eq!(
            image_type_of_mime("application/vnd.google-apps.document"),
            Err(SkipReason::GoogleNative)
        );
    }
}
