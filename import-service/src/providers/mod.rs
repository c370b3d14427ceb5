//! Google Drive and Dropbox, as the Import Service sees them.
//!
//! - [`folder_url`]: every folder-URL form users paste → a [`FolderRef`].
//! - [`ProviderClient`]: the one trait both clients implement: check a folder, list it a
//!   page at a time, stream a file.
//! - [`google_drive`], [`dropbox`]: the clients, speaking each provider's real wire
//!   format at a configurable base URL (the real API, or `fake-providers` in tests).
//! - [`RequestPace`]: a provider's request budget in one process, which each client
//!   takes before every call it makes.
//! - [`ProviderError`]: every failure classified as transient (retry, honouring
//!   `Retry-After`) or permanent (recorded on the item with a reason).

pub mod dropbox;
pub mod folder_url;
pub mod google_drive;

use std::num::NonZeroU32;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use serde::{Deserialize, Serialize};
use service_kit::media::ImageType;

pub use folder_url::{FolderRef, FolderUrlError, Provider};

/// One provider's request budget in this process (`PROVIDER_REQUESTS_PER_SECOND`): a
/// client waits for it before every call, whoever makes it (a folder check, a listing
/// page, each shortcut's target lookup inside a page, a download), so all of a worker's
/// tasks together stay under the rate.
pub struct RequestPace(governor::DefaultDirectRateLimiter);

impl RequestPace {
    pub fn per_second(requests: NonZeroU32) -> Self {
        RequestPace(governor::RateLimiter::direct(governor::Quota::per_second(
            requests,
        )))
    }

    /// Waits until one more request fits the budget.
    pub async fn wait(&self) {
        self.0.until_ready().await;
    }
}

/// Where a listing continues: a folder (Drive folder id, or a path inside a Dropbox
/// shared link) and the provider's page token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListingPosition {
    /// Drive: the folder id. Dropbox: the path inside the shared link (`""` = its root).
    pub location: String,
    /// Drive only: the folder's resource key, when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_key: Option<String>,
    /// Absent on the first page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub page_token: Option<String>,
    /// Folder names from the import root down to `location` (for display).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub display_path: String,
}

impl ListingPosition {
    /// The first page of an import's root folder.
    pub fn root(folder: &FolderRef) -> Self {
        match folder {
            FolderRef::GoogleDrive {
                folder_id,
                resource_key,
            } => ListingPosition {
                location: folder_id.clone(),
                resource_key: resource_key.clone(),
                page_token: None,
                display_path: String::new(),
            },
            FolderRef::Dropbox { .. } => ListingPosition {
                location: String::new(),
                resource_key: None,
                page_token: None,
                display_path: String::new(),
            },
        }
    }
}

/// A file to import, as listed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoteFile {
    /// The provider's stable id of the listed entry (Drive file id, or the shortcut's id
    /// for a shortcut; Dropbox `id:…`). Unique per import: an item per source id.
    pub source_id: String,
    pub name: String,
    /// Folder path from the import root (display only).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub path: String,
    /// The image type the provider reports (Drive `mimeType`) or the name implies
    /// (Dropbox); storage verifies the bytes anyway.
    pub image_type: ImageType,
    /// Size in bytes, when the provider says.
    pub size: Option<u64>,
    /// Checksums the provider gives (Drive `md5Checksum` / `sha256Checksum`, Dropbox
    /// `content_hash`), lower-case hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub md5: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_hash: Option<String>,
    /// What to download: Drive file id (a shortcut's target), or the Dropbox path.
    pub download_ref: String,
    /// Drive only: the resource key of `download_ref`, when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_key: Option<String>,
}

impl RemoteFile {
    /// A checksum that identifies the content, for "already imported?" checks.
    pub fn checksum(&self) -> Option<&str> {
        self.sha256
            .as_deref()
            .or(self.md5.as_deref())
            .or(self.content_hash.as_deref())
    }
}

/// Why a listed entry is not imported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SkipReason {
    /// Google Docs, Sheets, …: no bytes to download.
    GoogleNative,
    /// Not an image (by the provider's type or the file name).
    NotAnImage,
    /// An image type Vitrine does not store (e.g. HEIC, TIFF).
    UnsupportedImageType,
    /// A shortcut whose target is not an image file.
    ShortcutNotToImage,
    /// The provider will not hand out this file's bytes (e.g. a Dropbox Paper doc).
    NotDownloadable,
}

impl SkipReason {
    pub fn as_str(self) -> &'static str {
        match self {
            SkipReason::GoogleNative => "google-native",
            SkipReason::NotAnImage => "not-an-image",
            SkipReason::UnsupportedImageType => "unsupported-image-type",
            SkipReason::ShortcutNotToImage => "shortcut-not-to-image",
            SkipReason::NotDownloadable => "not-downloadable",
        }
    }
}

/// One entry of a listing page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    File(RemoteFile),
    /// A subfolder: list it too.
    Folder(ListingPosition),
    Skipped {
        source_id: String,
        name: String,
        reason: SkipReason,
        /// What the provider said it is.
        detail: Option<String>,
    },
}

/// One page of a folder listing.
#[derive(Debug, Clone, Default)]
pub struct ListingPage {
    pub entries: Vec<Entry>,
    /// Where to continue, if there is more.
    pub next: Option<ListingPosition>,
}

/// A file's bytes, streaming.
pub struct Download {
    pub bytes: BoxStream<'static, Result<Bytes, ProviderError>>,
    /// `Content-Length`, when the provider sent one.
    pub length: Option<u64>,
}

impl Download {
    /// Streams a successful response's body, classifying a broken-off stream.
    pub(crate) fn from_response(
        provider: Provider,
        response: reqwest::Response,
        what: String,
    ) -> Self {
        use futures::StreamExt;
        let length = response.content_length();
        let bytes = response
            .bytes_stream()
            .map(move |chunk| chunk.map_err(|e| ProviderError::from_transport(provider, &e, &what)))
            .boxed();
        Download { bytes, length }
    }
}

/// Passes a success through; reads the body of anything else and lets `classify` say
/// what went wrong.
pub(crate) async fn check_status(
    response: reqwest::Response,
    classify: impl FnOnce(reqwest::StatusCode, &reqwest::header::HeaderMap, &[u8]) -> ProviderError,
) -> Result<reqwest::Response, ProviderError> {
    if response.status().is_success() {
        return Ok(response);
    }
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.bytes().await.unwrap_or_default();
    Err(classify(status, &headers, &body))
}

/// Whether trying again can help.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// Try again later (after `Retry-After` when the provider gave one).
    Transient { after: Option<Duration> },
    /// Trying again will fail the same way.
    Permanent,
}

/// A provider call failed. `reason` is a stable code recorded on the item.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{provider}: {message}")]
pub struct ProviderError {
    pub provider: Provider,
    pub retry: Retry,
    /// `rate-limited`, `provider-unavailable`, `timeout`, `connection-failed`,
    /// `stream-cut`, `not-found`, `not-public`, `download-quota-exceeded`,
    /// `not-downloadable`, `provider-auth-failed`, `bad-response`.
    pub reason: &'static str,
    pub message: String,
}

impl ProviderError {
    pub fn transient(
        provider: Provider,
        reason: &'static str,
        after: Option<Duration>,
        message: impl Into<String>,
    ) -> Self {
        ProviderError {
            provider,
            retry: Retry::Transient { after },
            reason,
            message: message.into(),
        }
    }

    pub fn permanent(provider: Provider, reason: &'static str, message: impl Into<String>) -> Self {
        ProviderError {
            provider,
            retry: Retry::Permanent,
            reason,
            message: message.into(),
        }
    }

    pub fn is_transient(&self) -> bool {
        matches!(self.retry, Retry::Transient { .. })
    }

    /// Classifies a transport error (no HTTP answer, or a body that broke off).
    pub fn from_transport(provider: Provider, e: &reqwest::Error, during: &str) -> Self {
        let reason = if e.is_timeout() {
            "timeout"
        } else if e.is_connect() {
            "connection-failed"
        } else if e.is_body() || e.is_decode() {
            "stream-cut"
        } else {
            "connection-failed"
        };
        ProviderError::transient(
            provider,
            reason,
            None,
            format!("{during}: {}", without_query(e)),
        )
    }
}

/// `e` as text, with the query of its URL left out: reqwest names the URL in its errors,
/// and a Drive URL carries `key=GOOGLE_API_KEY`. The text becomes an item's `detail`,
/// which the seller sees, and a log line.
fn without_query(e: &reqwest::Error) -> String {
    let text = e.to_string();
    match e.url() {
        Some(url) if url.query().is_some() => {
            let mut shown = url.clone();
            shown.set_query(None);
            text.replace(url.as_str(), &format!("{shown}?…"))
        }
        _ => text,
    }
}

/// Facts about the folder being imported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FolderInfo {
    pub name: String,
}

/// One provider's API.
#[async_trait]
pub trait ProviderClient: Send + Sync {
    fn provider(&self) -> Provider;

    /// Checks that the folder exists and is readable with a public link; a private or
    /// missing folder is a permanent error, not an empty import.
    async fn open_folder(&self, folder: &FolderRef) -> Result<FolderInfo, ProviderError>;

    /// One page of entries at `position` (files, subfolders, skipped entries).
    async fn list_page(
        &self,
        folder: &FolderRef,
        position: &ListingPosition,
    ) -> Result<ListingPage, ProviderError>;

    /// Streams one file's bytes.
    async fn download(
        &self,
        folder: &FolderRef,
        file: &RemoteFile,
    ) -> Result<Download, ProviderError>;
}

/// Parses `Retry-After` (seconds, or an HTTP date), capped at 10 minutes.
pub fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let value = headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    let wait = match value.parse::<u64>() {
        Ok(secs) => Duration::from_secs(secs),
        Err(_) => {
            let at = httpdate::parse_http_date(value).ok()?;
            at.duration_since(std::time::SystemTime::now())
                .unwrap_or(Duration::ZERO)
        }
    };
    Some(wait.min(Duration::from_secs(600)))
}

/// The image type a file name implies (Dropbox lists no MIME types).
pub fn image_type_of_name(name: &str) -> Option<Result<ImageType, SkipReason>> {
    let ext = name.rsplit_once('.')?.1.to_ascii_lowercase();
    Some(match ext.as_str() {
        "jpg" | "jpeg" | "jpe" => Ok(ImageType::Jpeg),
        "png" => Ok(ImageType::Png),
        "webp" => Ok(ImageType::Webp),
        "gif" => Ok(ImageType::Gif),
        "avif" => Ok(ImageType::Avif),
        "heic" | "heif" | "tif" | "tiff" | "bmp" | "svg" | "ico" | "raw" | "cr2" | "nef"
        | "dng" | "psd" => Err(SkipReason::UnsupportedImageType),
        _ => Err(SkipReason::NotAnImage),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn transport_errors_never_show_the_query_and_its_api_key() {
        // A loopback port nobody listens on: the connection is refused.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let url = format!("http://127.0.0.1:{port}/drive/v3/files/abc?key=SECRET-KEY&alt=media");
        let e = reqwest::Client::new()
            .get(&url)
            .send()
            .await
            .expect_err("nothing listens there");
        assert!(
            e.to_string().contains("SECRET-KEY"),
            "reqwest shows the URL: {e}"
        );
        let error = ProviderError::from_transport(Provider::GoogleDrive, &e, "downloading abc");
        assert_eq!(error.reason, "connection-failed");
        assert!(!error.message.contains("SECRET-KEY"), "{}", error.message);
        assert!(
            error.message.contains("/drive/v3/files/abc?…"),
            "{}",
            error.message
        );
    }

    #[test]
    fn retry_after_seconds_and_dates() {
        let mut headers = reqwest::header::HeaderMap::new();
        assert_eq!(retry_after(&headers), None);
        headers.insert("retry-after", "7".parse().unwrap());
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(7)));
        headers.insert("retry-after", "999999".parse().unwrap());
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(600)));
        let soon = std::time::SystemTime::now() + Duration::from_secs(30);
        headers.insert(
            "retry-after",
            httpdate::fmt_http_date(soon).parse().unwrap(),
        );
        let wait = retry_after(&headers).unwrap();
        assert!(
            wait <= Duration::from_secs(30) && wait >= Duration::from_secs(28),
            "{wait:?}"
        );
        headers.insert("retry-after", "soon".parse().unwrap());
        assert_eq!(retry_after(&headers), None);
    }

    #[test]
    fn image_types_by_name() {
        assert_eq!(image_type_of_name("a.JPG"), Some(Ok(ImageType::Jpeg)));
        assert_eq!(image_type_of_name("x.y.webp"), Some(Ok(ImageType::Webp)));
        assert_eq!(
            image_type_of_name("IMG_1.HEIC"),
            Some(Err(SkipReason::UnsupportedImageType))
        );
        assert_eq!(
            image_type_of_name("notes.pdf"),
            Some(Err(SkipReason::NotAnImage))
        );
        assert_eq!(image_type_of_name("README"), None);
    }
}
