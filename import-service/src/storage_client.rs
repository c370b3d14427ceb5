//! The Storage Service's internal API, as the Import Service calls it.
//!
//! Two calls, both signed with the import↔storage key ring (`IMPORT_STORAGE_KEYS`, the
//! same ring on both sides) through [`SignedClient`]:
//! - [`StorageClient::ingest`]: `POST /internal/ingest`, one file streamed from a provider.
//!   Size, type, digests, owner, source and idempotency key travel in the signed query;
//!   the body streams unsigned (`UNSIGNED-PAYLOAD`) and storage checks it against the
//!   query. Never retried here (the body cannot be replayed): the worker retries the item.
//! - [`StorageClient::download_urls`]: `POST /internal/download-urls`, short-lived URLs for
//!   stored images, asked for at most [`DOWNLOAD_URLS_MAX_IDS`] at a time.
//!
//! Timeouts: a connect timeout, and an idle timeout instead of a whole-call timeout, so
//! that a large file streaming steadily is never cut off while a stalled one, or a
//! storage that never answers, is (see [`SignedClient::with_idle_timeout`]).
//!
//! The types below are this service's view of storage's contract
//! (`docs/openapi/storage-service.json`); they carry only the fields the import uses.

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde::{Deserialize, Serialize};
use service_kit::download_urls::DownloadUrl;
use service_kit::internal_client::{Answer, CallError, SignedClient};
use shared_signing::KeyRing;

/// Storage's limit of image ids per `POST /internal/download-urls`.
pub const DOWNLOAD_URLS_MAX_IDS: usize = 1000;

/// Signed client for storage's internal API. Cheap to clone.
#[derive(Clone, Debug)]
pub struct StorageClient {
    signed: SignedClient,
}

/// What the import knows about one file before it is streamed.
#[derive(Debug, Clone)]
pub struct IngestRequest<'a> {
    /// The seller who owns the import.
    pub owner_id: &'a str,
    /// MIME type the provider reports (storage checks the bytes against it).
    pub content_type: &'a str,
    /// Exact size in bytes; also sent as `Content-Length`.
    pub size: u64,
    /// Expected SHA-256 (hex), when the provider reports one.
    pub sha256: Option<&'a str>,
    /// Expected MD5 (hex), e.g. Google Drive's `md5Checksum`.
    pub md5: Option<&'a str>,
    /// The provider's file name (storage sanitises it).
    pub filename: &'a str,
    /// `google-drive` or `dropbox`.
    pub source: &'a str,
    /// The provider's file id.
    pub source_ref: Option<&'a str>,
    /// Same key → same image: a retried ingest returns the first one (1–200 characters).
    pub idempotency_key: &'a str,
}

/// A stored image, as storage describes it after an ingest.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct IngestedImage {
    pub image_id: String,
    /// Where the bytes live, e.g. `s3://bucket/images/ab/<id>`.
    pub storage_path: String,
    pub content_type: String,
    pub size: u64,
    /// SHA-256 of the stored bytes, hex.
    pub sha256: String,
    pub width: u32,
    pub height: u32,
    /// `true` for a new image (201), `false` when this idempotency key or these exact
    /// bytes were already stored (200).
    #[serde(skip)]
    pub newly_stored: bool,
}

#[derive(Serialize)]
struct DownloadUrlsRequest<'a> {
    image_ids: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    ttl_seconds: Option<u64>,
}

#[derive(Deserialize)]
struct DownloadUrlsResponse {
    urls: Vec<DownloadUrl>,
}

/// Why a storage call did not give what was asked for.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IngestError {
    /// Storage refused the file itself (413, 415, 422): permanent for this item. `code` is
    /// storage's stable code, e.g. `sha256-mismatch`, `md5-mismatch`, `not-an-image`,
    /// `content-type-mismatch`, `image-truncated`, `image-too-many-pixels`,
    /// `size-limit-exceeded`, `body-larger-than-declared`, `invalid-ingest-parameters`.
    #[error("storage rejected the file ({status} {code}): {message}")]
    Rejected {
        status: u16,
        code: String,
        message: String,
    },
    /// Try again later: 5xx, 429, 408, a body cut short on the way, no connection, a
    /// timeout, a transport error.
    #[error("storage is unavailable: {message}")]
    Unavailable { message: String },
    /// 503 `ingest-in-progress`: storage holds an unfinished write of this very file
    /// (another attempt's, or one abandoned by a storage that died or lost its database,
    /// which storage takes over after `COMMIT_TAKEOVER_AFTER_SECS`). Try again later; not
    /// a failed attempt.
    #[error("storage is still storing this file: {message}")]
    InProgress { message: String },
    /// 401/403 (our keys do not match storage's `IMPORT_STORAGE_KEYS`; the message says
    /// so) or an answer the contract does not have. Treated as transient, but it will not
    /// heal by itself: log it loudly.
    #[error("storage call misconfigured: {message}")]
    Misconfigured { message: String },
}

impl IngestError {
    /// Only [`IngestError::Rejected`]: retrying the same file cannot succeed.
    pub fn is_permanent(&self) -> bool {
        matches!(self, IngestError::Rejected { .. })
    }

    /// The stable reason recorded on an item: storage's code for a rejection,
    /// `storage-unavailable` or `storage-misconfigured` otherwise.
    pub fn code(&self) -> &str {
        match self {
            IngestError::Rejected { code, .. } => code,
            IngestError::Unavailable { .. } => "storage-unavailable",
            IngestError::InProgress { .. } => INGEST_IN_PROGRESS,
            IngestError::Misconfigured { .. } => "storage-misconfigured",
        }
    }
}

impl StorageClient {
    /// A client for storage at `base`. `read_timeout` is how long a call may go without
    /// progress (no body chunk sent, no answer), not a cap on the whole call: an ingest
    /// streams for as long as the file takes.
    pub fn new(
        base: url::Url,
        keys: KeyRing,
        connect_timeout: Duration,
        read_timeout: Duration,
    ) -> anyhow::Result<Self> {
        // No reqwest `read_timeout`/`timeout`: both would cap a whole upload (reqwest 0.12
        // does not reset `read_timeout` while the request body is sent).
        let http = reqwest::Client::builder()
            .connect_timeout(connect_timeout)
            .pool_idle_timeout(Duration::from_secs(60))
            .tcp_nodelay(true)
            .user_agent(concat!(
                "vitrine-import-service/",
                env!("CARGO_PKG_VERSION")
            ))
            .build()?;
        Ok(StorageClient {
            signed: SignedClient::new(base, keys, http).with_idle_timeout(read_timeout),
        })
    }

    pub fn base(&self) -> &url::Url {
        self.signed.base()
    }

    /// Streams one file into storage (`POST /internal/ingest`). `body` must yield exactly
    /// `request.size` bytes.
    pub async fn ingest(
        &self,
        request: &IngestRequest<'_>,
        body: reqwest::Body,
    ) -> Result<IngestedImage, IngestError> {
        const CALL: &str = "ingest";
        let path = format!("/internal/ingest?{}", ingest_query(request));
        let started = Instant::now();
        let result = self
            .signed
            .call_streamed(
                CALL,
                Method::POST,
                &path,
                request.content_type,
                request.size,
                body,
            )
            .await;
        record(CALL, started, &result);
        let answer = result.map_err(call_failed)?;
        match answer.status {
            StatusCode::CREATED | StatusCode::OK => {
                let mut image: IngestedImage = parse(CALL, &answer)?;
                image.newly_stored = answer.status == StatusCode::CREATED;
                Ok(image)
            }
            _ => Err(ingest_failure(&answer)),
        }
    }

    /// Short-lived download URLs for `image_ids` (ids storage has no complete image for
    /// are left out), valid for `ttl` in whole seconds (1 s to 24 h; storage's default
    /// when `None`). More than [`DOWNLOAD_URLS_MAX_IDS`] ids take several calls. Never
    /// [`IngestError::Rejected`].
    pub async fn download_urls(
        &self,
        image_ids: &[String],
        ttl: Option<Duration>,
    ) -> Result<Vec<DownloadUrl>, IngestError> {
        const CALL: &str = "download-urls";
        let mut urls = Vec::with_capacity(image_ids.len());
        for chunk in image_ids.chunks(DOWNLOAD_URLS_MAX_IDS) {
            let request = DownloadUrlsRequest {
                image_ids: chunk,
                ttl_seconds: ttl.map(|t| t.as_secs()),
            };
            let body = serde_json::to_vec(&request).map_err(|e| IngestError::Misconfigured {
                message: format!("{CALL}: {e}"),
            })?;
            let started = Instant::now();
            let result = self
                .signed
                .call(CALL, Method::POST, "/internal/download-urls", Some(body))
                .await;
            record(CALL, started, &result);
            let answer = result.map_err(call_failed)?;
            if answer.status != StatusCode::OK {
                return Err(common_failure(CALL, &answer));
            }
            urls.extend(parse::<DownloadUrlsResponse>(CALL, &answer)?.urls);
        }
        Ok(urls)
    }
}

/// The ingest query, form-encoded; `None` fields are left out.
fn ingest_query(r: &IngestRequest<'_>) -> String {
    let size = r.size.to_string();
    let mut query = url::form_urlencoded::Serializer::new(String::new());
    query
        .append_pair("owner_id", r.owner_id)
        .append_pair("content_type", r.content_type)
        .append_pair("size", &size);
    if let Some(sha256) = r.sha256 {
        query.append_pair("sha256", sha256);
    }
    if let Some(md5) = r.md5 {
        query.append_pair("md5", md5);
    }
    query
        .append_pair("filename", r.filename)
        .append_pair("source", r.source);
    if let Some(source_ref) = r.source_ref {
        query.append_pair("source_ref", source_ref);
    }
    query.append_pair("idempotency_key", r.idempotency_key);
    query.finish()
}

/// [`IngestError::InProgress`]'s code (storage's).
pub const INGEST_IN_PROGRESS: &str = "ingest-in-progress";

/// What an ingest answer other than 200/201 means for the item.
fn ingest_failure(answer: &Answer) -> IngestError {
    let (code, message) = answer.error_code();
    match answer.status.as_u16() {
        503 if code == INGEST_IN_PROGRESS => IngestError::InProgress { message },
        413 | 415 | 422 => IngestError::Rejected {
            status: answer.status.as_u16(),
            code,
            message,
        },
        // The body storage received ended early or failed: the stream was cut on the way
        // (a provider hiccup), not a property of the file. Sending it again can work.
        400 if matches!(
            code.as_str(),
            "body-shorter-than-declared" | "body-read-failed" | "empty-body"
        ) =>
        {
            IngestError::Unavailable {
                message: format!(
                    "ingest: the upload was cut short ({} {code}: {message})",
                    answer.status
                ),
            }
        }
        // 408 body-timeout: our stream stalled (the provider), storage gave up waiting.
        408 => IngestError::Unavailable {
            message: format!(
                "ingest: storage answered {} {code}: {message}",
                answer.status
            ),
        },
        _ => common_failure("ingest", answer),
    }
}

/// The answers every call treats alike: 5xx/429 → unavailable, 401/403 → our keys,
/// anything else → an answer the contract does not have.
fn common_failure(call: &str, answer: &Answer) -> IngestError {
    let (code, message) = answer.error_code();
    let status = answer.status;
    if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
        return IngestError::Unavailable {
            message: format!("{call}: storage answered {status} {code}: {message}"),
        };
    }
    if matches!(status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN) {
        return IngestError::Misconfigured {
            message: format!(
                "{call}: storage refused our signature ({status} {code}: {message}); check that \
                 IMPORT_STORAGE_KEYS here matches IMPORT_STORAGE_KEYS in the Storage Service"
            ),
        };
    }
    IngestError::Misconfigured {
        message: format!("{call}: unexpected answer from storage: {status} {code}: {message}"),
    }
}

fn parse<T: serde::de::DeserializeOwned>(call: &str, answer: &Answer) -> Result<T, IngestError> {
    answer.json().map_err(|e| IngestError::Misconfigured {
        message: format!(
            "{call}: unexpected {} body from storage: {e}",
            answer.status
        ),
    })
}

/// No answer at all: storage is unreachable or the call broke, except for a request we
/// could not even build (our bug).
fn call_failed(e: CallError) -> IngestError {
    match e {
        CallError::Invalid(message) => IngestError::Misconfigured { message },
        CallError::Connect(message)
        | CallError::Timeout(message)
        | CallError::Transport(message) => IngestError::Unavailable { message },
    }
}

/// `import_storage_call_seconds{call, outcome}`.
fn record(call: &'static str, started: Instant, result: &Result<Answer, CallError>) {
    let outcome = match result {
        Ok(answer) if answer.status.is_server_error() => "server-error",
        Ok(_) => "answered",
        Err(_) => "unavailable",
    };
    metrics::histogram!("import_storage_call_seconds", "call" => call, "outcome" => outcome)
        .record(started.elapsed().as_secs_f64());
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex};

    use axum::extract::{Request, State};
    use axum::http::HeaderMap;
    use axum::response::{IntoResponse, Response};
    use axum::routing::post;
    use axum::Router;
    use bytes::Bytes;
    use shared_signing::{unix_now, BodyDigest, MemoryNonceStore, RequestVerifier};

    const KEYS: &str = "imp1:MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";
    const OTHER_KEYS: &str = "imp1:ZmVkY2JhOTg3NjU0MzIxMGZlZGNiYTk4NzY1NDMyMTA=";
    const SHA: &str = "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";

    /// One request as the stub storage received it (after checking its signature).
    #[derive(Debug, Clone)]
    struct Received {
        query: HashMap<String, String>,
        raw_query: String,
        content_type: Option<String>,
        content_length: Option<String>,
        body: Bytes,
        json: Option<serde_json::Value>,
    }

    #[derive(Clone)]
    struct Stub {
        verifier: RequestVerifier,
        received: Arc<Mutex<Vec<Received>>>,
    }

    fn header(headers: &HeaderMap, name: http::HeaderName) -> Option<String> {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    }

    fn error(status: StatusCode, code: &str) -> Response {
        let body = serde_json::json!({ "error": { "code": code, "message": format!("stub says {code}") } });
        (status, axum::Json(body)).into_response()
    }

    /// Verifies the signature as storage's `internal_auth` does (streamed: the body must
    /// be `UNSIGNED-PAYLOAD`; buffered: it must match its digest), records the request.
    async fn verify(stub: &Stub, request: Request, streamed: bool) -> Result<Received, Response> {
        let (parts, body) = request.into_parts();
        let verified = stub
            .verifier
            .verify(&parts.method, &parts.uri, &parts.headers, unix_now())
            .await
            .map_err(|e| error(StatusCode::UNAUTHORIZED, e.code()))?;
        let body = axum::body::to_bytes(body, 1 << 20)
            .await
            .map_err(|_| error(StatusCode::BAD_REQUEST, "body-read-failed"))?;
        match (streamed, verified.streamed_body_allowed()) {
            (true, BodyDigest::Unsigned) => {}
            (false, BodyDigest::Sha256(_)) => verified
                .check_body(&body)
                .map_err(|e| error(StatusCode::UNAUTHORIZED, e.code()))?,
            _ => return Err(error(StatusCode::UNAUTHORIZED, "body-digest-mismatch")),
        }
        let raw_query = parts.uri.query().unwrap_or_default().to_owned();
        let received = Received {
            query: url::form_urlencoded::parse(raw_query.as_bytes())
                .into_owned()
                .collect(),
            raw_query,
            content_type: header(&parts.headers, http::header::CONTENT_TYPE),
            content_length: header(&parts.headers, http::header::CONTENT_LENGTH),
            json: serde_json::from_slice(&body).ok(),
            body,
        };
        stub.received.lock().expect("lock").push(received.clone());
        Ok(received)
    }

    /// Storage's ingest, with the answer chosen by the idempotency key.
    async fn ingest(State(stub): State<Stub>, request: Request) -> Response {
        let received = match verify(&stub, request, true).await {
            Ok(r) => r,
            Err(refused) => return refused,
        };
        let summary = |id: &str| {
            axum::Json(serde_json::json!({
                "image_id": id,
                "filename": received.query["filename"],
                "content_type": received.query["content_type"],
                "size": received.body.len(),
                "sha256": SHA,
                "width": 640,
                "height": 480,
                "storage_path": format!("file:///blobs/images/{id}"),
                "created_at": "2025-01-02T03:04:05Z",
            }))
        };
        match received.query["idempotency_key"].as_str() {
            "new" => (StatusCode::CREATED, summary("img-new")).into_response(),
            "again" => (StatusCode::OK, summary("img-old")).into_response(),
            "bad-digest" => error(StatusCode::UNPROCESSABLE_ENTITY, "sha256-mismatch"),
            "not-image" => error(StatusCode::UNSUPPORTED_MEDIA_TYPE, "not-an-image"),
            "cut" => error(StatusCode::BAD_REQUEST, "body-shorter-than-declared"),
            "down" => error(StatusCode::SERVICE_UNAVAILABLE, "blob-store-unavailable"),
            "busy" => error(StatusCode::TOO_MANY_REQUESTS, "rate-limited"),
            "gone" => error(StatusCode::NOT_FOUND, "not-found"),
            "garbage" => (StatusCode::CREATED, "not json").into_response(),
            _ => error(StatusCode::INTERNAL_SERVER_ERROR, "unknown-scenario"),
        }
    }

    /// Storage's download URLs: a URL for every id except those starting with `missing`.
    async fn download_urls(State(stub): State<Stub>, request: Request) -> Response {
        let received = match verify(&stub, request, false).await {
            Ok(r) => r,
            Err(refused) => return refused,
        };
        let json = received.json.unwrap_or_default();
        let ids = json["image_ids"].as_array().cloned().unwrap_or_default();
        if ids.len() > DOWNLOAD_URLS_MAX_IDS {
            return error(StatusCode::BAD_REQUEST, "invalid-request");
        }
        let urls: Vec<_> = ids
            .iter()
            .filter_map(|id| id.as_str())
            .filter(|id| !id.starts_with("missing"))
            .map(|id| {
                serde_json::json!({
                    "image_id": id,
                    "url": format!("http://storage/images/{id}/content?token=t"),
                    "expires_at": "2030-01-01T00:00:00Z",
                })
            })
            .collect();
        axum::Json(serde_json::json!({ "urls": urls, "missing": [] })).into_response()
    }

    async fn spawn_storage() -> (url::Url, Arc<Mutex<Vec<Received>>>) {
        let keys = KeyRing::parse(KEYS).expect("keys");
        let stub = Stub {
            verifier: RequestVerifier::new(keys, Arc::new(MemoryNonceStore::new())),
            received: Arc::default(),
        };
        let received = stub.received.clone();
        let app = Router::new()
            .route("/internal/ingest", post(ingest))
            .route("/internal/download-urls", post(download_urls))
            .with_state(stub);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move { axum::serve(listener, app).await });
        let base = url::Url::parse(&format!("http://{addr}")).expect("url");
        (base, received)
    }

    fn client(base: url::Url, keys: &str) -> StorageClient {
        StorageClient::new(
            base,
            KeyRing::parse(keys).expect("keys"),
            Duration::from_secs(2),
            Duration::from_secs(5),
        )
        .expect("client")
    }

    fn request(idempotency_key: &str) -> IngestRequest<'_> {
        IngestRequest {
            owner_id: "seller-1",
            content_type: "image/png",
            size: 11,
            sha256: Some(SHA),
            md5: None,
            filename: "Été 2024 & co/=+?.png",
            source: "google-drive",
            source_ref: Some("file id/1"),
            idempotency_key,
        }
    }

    /// The file's bytes in two chunks, as a provider download would arrive.
    fn body() -> reqwest::Body {
        let chunks: Vec<Result<Bytes, std::io::Error>> = vec![
            Ok(Bytes::from_static(b"hello ")),
            Ok(Bytes::from_static(b"world")),
        ];
        reqwest::Body::wrap_stream(futures::stream::iter(chunks))
    }

    #[tokio::test]
    async fn ingest_streams_the_file_with_a_signed_query() {
        let (base, received) = spawn_storage().await;
        let storage = client(base, KEYS);

        let image = storage
            .ingest(&request("new"), body())
            .await
            .expect("stored");

        assert_eq!(
            image,
            IngestedImage {
                image_id: "img-new".into(),
                storage_path: "file:///blobs/images/img-new".into(),
                content_type: "image/png".into(),
                size: 11,
                sha256: SHA.into(),
                width: 640,
                height: 480,
                newly_stored: true,
            }
        );
        let received = received.lock().expect("lock");
        let r = &received[0];
        assert_eq!(&r.body[..], b"hello world");
        assert_eq!(r.content_type.as_deref(), Some("image/png"));
        assert_eq!(r.content_length.as_deref(), Some("11"));
        let expected: HashMap<String, String> = [
            ("owner_id", "seller-1"),
            ("content_type", "image/png"),
            ("size", "11"),
            ("sha256", SHA),
            ("filename", "Été 2024 & co/=+?.png"),
            ("source", "google-drive"),
            ("source_ref", "file id/1"),
            ("idempotency_key", "new"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        assert_eq!(r.query, expected, "md5 (None) is left out");
        assert!(!r.raw_query.contains(' ') && !r.raw_query.contains('/'));
    }

    #[tokio::test]
    async fn ingest_of_a_file_already_stored_is_not_new() {
        let (base, _) = spawn_storage().await;
        let image = client(base, KEYS)
            .ingest(&request("again"), body())
            .await
            .expect("stored");
        assert_eq!(image.image_id, "img-old");
        assert!(!image.newly_stored);
    }

    #[tokio::test]
    async fn a_refused_file_is_a_permanent_rejection_with_storages_code() {
        let (base, _) = spawn_storage().await;
        let storage = client(base, KEYS);
        for (key, status, code) in [
            ("bad-digest", 422, "sha256-mismatch"),
            ("not-image", 415, "not-an-image"),
        ] {
            let err = storage
                .ingest(&request(key), body())
                .await
                .expect_err("rejected");
            assert!(err.is_permanent(), "{err}");
            assert_eq!(err.code(), code);
            assert!(
                matches!(&err, IngestError::Rejected { status: s, message, .. } if *s == status && message.contains(code)),
                "{err:?}"
            );
        }
    }

    #[tokio::test]
    async fn outages_and_cut_streams_are_worth_retrying() {
        let (base, _) = spawn_storage().await;
        let storage = client(base, KEYS);
        for key in ["down", "busy", "cut"] {
            let err = storage
                .ingest(&request(key), body())
                .await
                .expect_err("unavailable");
            assert!(
                matches!(err, IngestError::Unavailable { .. }),
                "{key}: {err:?}"
            );
            assert!(!err.is_permanent());
            assert_eq!(err.code(), "storage-unavailable");
        }
    }

    #[tokio::test]
    async fn a_key_mismatch_is_a_misconfiguration_naming_the_keys() {
        let (base, received) = spawn_storage().await;
        let storage = client(base, OTHER_KEYS);

        let err = storage
            .ingest(&request("new"), body())
            .await
            .expect_err("refused");
        assert!(matches!(err, IngestError::Misconfigured { .. }), "{err:?}");
        assert!(!err.is_permanent());
        assert_eq!(err.code(), "storage-misconfigured");
        let text = err.to_string();
        assert!(
            text.contains("401") && text.contains("signature-invalid"),
            "{text}"
        );
        assert!(text.contains("IMPORT_STORAGE_KEYS"), "{text}");

        let err = storage
            .download_urls(&["a".to_owned()], None)
            .await
            .expect_err("refused");
        assert_eq!(err.code(), "storage-misconfigured");
        assert!(received.lock().expect("lock").is_empty());
    }

    #[tokio::test]
    async fn answers_outside_the_contract_are_misconfigurations() {
        let (base, _) = spawn_storage().await;
        let storage = client(base, KEYS);
        for key in ["gone", "garbage"] {
            let err = storage
                .ingest(&request(key), body())
                .await
                .expect_err("unexpected");
            assert!(
                matches!(err, IngestError::Misconfigured { .. }),
                "{key}: {err:?}"
            );
        }
    }

    #[tokio::test]
    async fn no_storage_listening_is_unavailable() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let base = url::Url::parse(&format!("http://{}", listener.local_addr().expect("addr")))
            .expect("url");
        drop(listener);
        let storage = client(base, KEYS);

        let err = storage
            .ingest(&request("new"), body())
            .await
            .expect_err("refused");
        assert!(matches!(err, IngestError::Unavailable { .. }), "{err:?}");
        assert!(err.to_string().contains("ingest: cannot connect"), "{err}");

        let err = storage
            .download_urls(&["a".to_owned()], None)
            .await
            .expect_err("refused");
        assert!(matches!(err, IngestError::Unavailable { .. }), "{err:?}");
        assert!(
            err.to_string()
                .contains("download-urls: cannot connect after 3 attempt(s)"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn download_urls_are_asked_for_in_chunks_of_storages_limit() {
        let (base, received) = spawn_storage().await;
        let storage = client(base, KEYS);
        let mut ids: Vec<String> = (0..2100).map(|i| format!("img-{i}")).collect();
        ids[5] = "missing-5".into();

        let urls = storage
            .download_urls(&ids, Some(Duration::from_secs(600)))
            .await
            .expect("urls");

        assert_eq!(urls.len(), 2099, "the missing id is left out");
        assert_eq!(urls[0].image_id, "img-0");
        assert_eq!(urls[2098].image_id, "img-2099");
        assert_eq!(urls[0].url, "http://storage/images/img-0/content?token=t");
        assert_eq!(urls[0].expires_at.to_rfc3339(), "2030-01-01T00:00:00+00:00");
        let received = received.lock().expect("lock");
        let sizes: Vec<usize> = received
            .iter()
            .map(|r| {
                let json = r.json.as_ref().expect("json body");
                assert_eq!(json["ttl_seconds"], 600);
                json["image_ids"].as_array().expect("ids").len()
            })
            .collect();
        assert_eq!(sizes, [1000, 1000, 100]);
    }

    #[tokio::test]
    async fn no_ids_no_call_and_no_ttl_no_field() {
        let (base, received) = spawn_storage().await;
        let storage = client(base, KEYS);
        assert!(storage
            .download_urls(&[], None)
            .await
            .expect("ok")
            .is_empty());
        assert!(received.lock().expect("lock").is_empty());

        storage
            .download_urls(&["a".to_owned()], None)
            .await
            .expect("urls");
        let received = received.lock().expect("lock");
        let json = received[0].json.as_ref().expect("json");
        assert!(json.get("ttl_seconds").is_none(), "{json}");
    }

    #[test]
    fn error_codes() {
        let rejected = IngestError::Rejected {
            status: 413,
            code: "size-limit-exceeded".into(),
            message: "too big".into(),
        };
        assert!(rejected.is_permanent());
        assert_eq!(rejected.code(), "size-limit-exceeded");
        assert_eq!(
            rejected.to_string(),
            "storage rejected the file (413 size-limit-exceeded): too big"
        );
    }
}
