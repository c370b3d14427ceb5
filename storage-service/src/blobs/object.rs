//! `object_store` backend: in-memory (`memory://`) and S3-compatible (`s3://`).
//!
//! Nothing is visible under a key before commit. A writer buffers up to
//! [`PART_SIZE`] bytes; if commit comes first, the object is one `PUT`. Beyond that it
//! starts a multipart upload and sends parts of exactly [`PART_SIZE`] (S3 wants at
//! least 5 MiB except for the last part), at most [`PARTS_IN_FLIGHT`] at a time, so
//! one upload holds at most about `(1 + PARTS_IN_FLIGHT) * PART_SIZE` bytes. Commit
//! sends the rest and completes the upload; abort, a failed commit or dropping the
//! writer aborts it (from `Drop`, as a task spawned on the current tokio runtime).
//! With no runtime left (process shutdown) the upload is orphaned: give the bucket
//! a lifecycle rule that aborts incomplete multipart uploads after a day.

use std::collections::VecDeque;
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::memory::InMemory;
use object_store::path::Path as ObjectPath;
use object_store::{
    BackoffConfig, ClientOptions, GetOptions, GetRange, MultipartUpload, ObjectStore, PutPayload,
    RetryConfig,
};
use tokio::task::JoinSet;

use super::{BlobError, BlobKey, BlobStore, BlobStream, BlobWriter, S3Settings};

/// Size of every multipart part but the last; also the single-`PUT` threshold.
pub const PART_SIZE: usize = 8 * 1024 * 1024;
/// Parts of one upload sent concurrently.
pub const PARTS_IN_FLIGHT: usize = 2;
/// S3: time to open a connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// S3: time for one request (a part is at most 8 MiB), or until a GET's body starts.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// S3: longest pause allowed inside a GET's body.
const READ_IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// Blobs in any `object_store`, under an optional key prefix.
#[derive(Debug, Clone)]
pub struct ObjectBlobStore {
    /// Writes, HEAD, DELETE: each request bounded by [`REQUEST_TIMEOUT`].
    store: Arc<dyn ObjectStore>,
    /// GET: no overall timeout (a slow client may take minutes to download); the
    /// response must start within [`REQUEST_TIMEOUT`] and never stall for longer than
    /// [`READ_IDLE_TIMEOUT`].
    reader: Arc<dyn ObjectStore>,
    /// Short timeouts and no retries, for [`BlobStore::check`].
    probe: Arc<dyn ObjectStore>,
    /// Without leading or trailing `/`.
    prefix: Option<String>,
    description: String,
}

impl ObjectBlobStore {
    /// A fresh, empty in-memory store.
    pub fn in_memory() -> Self {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        Self {
            reader: store.clone(),
            probe: store.clone(),
            store,
            prefix: None,
            description: "memory://".to_owned(),
        }
    }

    /// Wraps any object store (tests, other clouds). `prefix` is applied to every key.
    pub fn from_store(
        store: Arc<dyn ObjectStore>,
        prefix: Option<String>,
        description: impl Into<String>,
    ) -> Result<Self, BlobError> {
        let prefix = prefix
            .as_deref()
            .map(validate_prefix)
            .transpose()?
            .flatten();
        Ok(Self {
            reader: store.clone(),
            probe: store.clone(),
            store,
            prefix,
            description: description.into(),
        })
    }

    /// An S3-compatible store. Requests are retried a few times on connection errors,
    /// timeouts and 5xx (about a second in all), then fail as [`BlobError::Unavailable`].
    pub fn s3(settings: S3Settings) -> Result<Self, BlobError> {
        if settings.bucket.is_empty() {
            return Err(BlobError::Config("S3 bucket is empty".to_owned()));
        }
        let prefix = settings
            .prefix
            .as_deref()
            .map(validate_prefix)
            .transpose()?
            .flatten();
        let build = |retry: RetryConfig, client: ClientOptions| {
            let mut builder = AmazonS3Builder::new()
                .with_bucket_name(&settings.bucket)
                .with_region(&settings.region)
                .with_allow_http(settings.allow_http)
                .with_virtual_hosted_style_request(settings.virtual_hosted_style)
                .with_retry(retry)
                .with_client_options(client.with_allow_http(settings.allow_http));
            if let Some(endpoint) = &settings.endpoint {
                builder = builder.with_endpoint(endpoint);
            }
            match (&settings.access_key_id, &settings.secret_access_key) {
                (Some(id), Some(secret)) => {
                    builder = builder
                        .with_access_key_id(id)
                        .with_secret_access_key(secret);
                }
                (None, None) => {}
                _ => {
                    return Err(BlobError::Config(
                        "S3 access key id and secret access key go together".to_owned(),
                    ))
                }
            }
            builder
                .build()
                .map_err(|e| BlobError::Config(format!("S3 settings: {e}")))
        };
        let retry = RetryConfig {
            backoff: BackoffConfig {
                init_backoff: Duration::from_millis(100),
                max_backoff: Duration::from_secs(2),
                base: 2.0,
            },
            max_retries: 3,
            retry_timeout: Duration::from_secs(30),
        };
        let client = ClientOptions::new().with_connect_timeout(CONNECT_TIMEOUT);
        let store = build(retry.clone(), client.clone().with_timeout(REQUEST_TIMEOUT))?;
        let reader = build(retry, client.with_timeout_disabled())?;
        let probe = build(
            RetryConfig {
                max_retries: 0,
                ..RetryConfig::default()
            },
            ClientOptions::new()
                .with_connect_timeout(Duration::from_secs(2))
                .with_timeout(Duration::from_secs(3)),
        )?;
        let mut description = format!("s3://{}", settings.bucket);
        if let Some(prefix) = &prefix {
            description.push('/');
            description.push_str(prefix);
        }
        if let Some(endpoint) = &settings.endpoint {
            description.push_str(&format!(" at {}", redact_url(endpoint)));
        }
        Ok(Self {
            store: Arc::new(store),
            reader: Arc::new(reader),
            probe: Arc::new(probe),
            prefix,
            description,
        })
    }

    /// The underlying store (tests, maintenance tools).
    pub fn inner(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    fn path_of(&self, key: &BlobKey) -> ObjectPath {
        match &self.prefix {
            Some(prefix) => ObjectPath::from(format!("{prefix}/{key}")),
            None => ObjectPath::from(key.as_str()),
        }
    }
}

fn validate_prefix(prefix: &str) -> Result<Option<String>, BlobError> {
    let prefix = prefix.trim_matches('/');
    if prefix.is_empty() {
        return Ok(None);
    }
    let parsed = ObjectPath::parse(prefix)
        .map_err(|e| BlobError::Config(format!("S3 prefix {prefix:?}: {e}")))?;
    Ok(Some(parsed.to_string()))
}

#[async_trait]
impl BlobStore for ObjectBlobStore {
    fn describe(&self) -> String {
        self.description.clone()
    }

    async fn begin_write(&self, key: &BlobKey) -> Result<Box<dyn BlobWriter>, BlobError> {
        Ok(Box::new(ObjectWriter {
            store: self.store.clone(),
            path: self.path_of(key),
            buffer: VecDeque::new(),
            buffered: 0,
            upload: None,
            in_flight: JoinSet::new(),
            failed: false,
            finished: false,
        }))
    }

    async fn read(
        &self,
        key: &BlobKey,
        range: Option<Range<u64>>,
    ) -> Result<BlobStream, BlobError> {
        let path = self.path_of(key);
        let range = match range {
            // S3 rejects empty ranges; the caller validated the range, so only say
            // whether the object exists.
            Some(range) if range.start >= range.end => {
                self.store.head(&path).await.map_err(map_error)?;
                return Ok(futures::stream::empty().boxed());
            }
            Some(range) => Some(GetRange::Bounded(range)),
            None => None,
        };
        let options = GetOptions {
            range,
            ..GetOptions::default()
        };
        let result = tokio::time::timeout(REQUEST_TIMEOUT, self.reader.get_opts(&path, options))
            .await
            .map_err(|_| timed_out("GET", &path))?
            .map_err(map_error)?;
        Ok(with_idle_timeout(
            result.into_stream(),
            path,
            READ_IDLE_TIMEOUT,
        ))
    }

    async fn size(&self, key: &BlobKey) -> Result<Option<u64>, BlobError> {
        match self.store.head(&self.path_of(key)).await {
            Ok(meta) => Ok(Some(meta.size)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(map_error(e)),
        }
    }

    async fn delete(&self, key: &BlobKey) -> Result<(), BlobError> {
        match self.store.delete(&self.path_of(key)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(map_error(e)),
        }
    }

    async fn check(&self) -> Result<(), BlobError> {
        // The first page of a listing under a name no key can take: one cheap request
        // that proves the endpoint answers, the bucket exists and the credentials
        // are accepted. (A HEAD would not do: 404 cannot tell a missing bucket.)
        let probe = match &self.prefix {
            Some(prefix) => ObjectPath::from(format!("{prefix}/.readyz-probe")),
            None => ObjectPath::from(".readyz-probe"),
        };
        match self.probe.list(Some(&probe)).next().await {
            None | Some(Ok(_)) => Ok(()),
            Some(Err(object_store::Error::NotFound { .. })) => Err(BlobError::Backend(format!(
                "{}: bucket not found",
                self.description
            ))),
            Some(Err(e)) => Err(map_error(e)),
        }
    }
}

struct ObjectWriter {
    store: Arc<dyn ObjectStore>,
    path: ObjectPath,
    /// Bytes not yet handed to a part (or to the single `PUT`).
    buffer: VecDeque<Bytes>,
    buffered: usize,
    /// Started once more than [`PART_SIZE`] bytes were written.
    upload: Option<Box<dyn MultipartUpload>>,
    in_flight: JoinSet<Result<(), object_store::Error>>,
    /// A write failed (a part may be missing): the upload must never be completed.
    failed: bool,
    /// Completed or aborted: nothing for `Drop` to do.
    finished: bool,
}

impl ObjectWriter {
    /// Takes exactly `len` bytes from the front of the buffer without copying.
    fn take_part(&mut self, len: usize) -> PutPayload {
        let mut part = Vec::new();
        let mut needed = len;
        while needed > 0 {
            let Some(front) = self.buffer.front_mut() else {
                break;
            };
            if front.len() <= needed {
                needed -= front.len();
                part.extend(self.buffer.pop_front());
            } else {
                part.push(front.split_to(needed));
                needed = 0;
            }
        }
        self.buffered -= len - needed;
        part.into_iter().collect()
    }

    async fn send_part(&mut self, payload: PutPayload) -> Result<(), BlobError> {
        while self.in_flight.len() >= PARTS_IN_FLIGHT {
            self.join_one().await?;
        }
        let upload = self
            .upload
            .as_mut()
            .ok_or_else(|| BlobError::Backend("multipart upload not started".to_owned()))?;
        self.in_flight.spawn(upload.put_part(payload));
        Ok(())
    }

    async fn write_inner(&mut self, chunk: Bytes) -> Result<(), BlobError> {
        self.buffered += chunk.len();
        self.buffer.push_back(chunk);
        // Strictly more than one part: an object of exactly PART_SIZE stays one PUT,
        // and the last part is never empty.
        while self.buffered > PART_SIZE {
            if self.upload.is_none() {
                let upload = self.store.put_multipart(&self.path).await;
                self.upload = Some(upload.map_err(map_error)?);
            }
            let part = self.take_part(PART_SIZE);
            self.send_part(part).await?;
        }
        Ok(())
    }

    async fn join_one(&mut self) -> Result<(), BlobError> {
        match self.in_flight.join_next().await {
            None => Ok(()),
            Some(Ok(result)) => result.map_err(map_error),
            Some(Err(join)) => Err(BlobError::Backend(format!("part upload task: {join}"))),
        }
    }
}

#[async_trait]
impl BlobWriter for ObjectWriter {
    async fn write(&mut self, chunk: Bytes) -> Result<(), BlobError> {
        if self.failed {
            return Err(failed_error());
        }
        if chunk.is_empty() {
            return Ok(());
        }
        let result = self.write_inner(chunk).await;
        self.failed = result.is_err();
        result
    }

    async fn commit(mut self: Box<Self>) -> Result<(), BlobError> {
        if self.failed {
            return Err(failed_error()); // `Drop` aborts the upload.
        }
        if self.upload.is_none() {
            let payload: PutPayload = std::mem::take(&mut self.buffer).into_iter().collect();
            self.store
                .put(&self.path, payload)
                .await
                .map_err(map_error)?;
            self.finished = true;
            return Ok(());
        }
        let rest = self.buffered;
        if rest > 0 {
            let part = self.take_part(rest);
            self.send_part(part).await?;
        }
        while !self.in_flight.is_empty() {
            self.join_one().await?;
        }
        if let Some(upload) = self.upload.as_mut() {
            // On error, `Drop` aborts the upload.
            upload.complete().await.map_err(map_error)?;
        }
        self.finished = true;
        Ok(())
    }

    async fn abort(mut self: Box<Self>) -> Result<(), BlobError> {
        self.finished = true;
        // S3 frees a part only if it is not being uploaded when the upload is aborted.
        self.in_flight.shutdown().await;
        match self.upload.take() {
            Some(mut upload) => upload.abort().await.map_err(map_error),
            None => Ok(()),
        }
    }
}

impl Drop for ObjectWriter {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        let Some(mut upload) = self.upload.take() else {
            return; // Nothing was sent.
        };
        let mut in_flight = std::mem::take(&mut self.in_flight);
        let path = self.path.to_string();
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(async move {
                    in_flight.shutdown().await;
                    if let Err(e) = upload.abort().await {
                        tracing::warn!(%path, error = %e, "cannot abort abandoned multipart upload");
                    }
                });
            }
            Err(_) => {
                tracing::warn!(%path, "no tokio runtime to abort an abandoned multipart upload")
            }
        }
    }
}

fn failed_error() -> BlobError {
    BlobError::Backend("an earlier write of this blob failed".to_owned())
}

/// Ends `body` with [`BlobError::Unavailable`] when no chunk arrives for `idle`.
fn with_idle_timeout(
    body: futures::stream::BoxStream<'static, object_store::Result<Bytes>>,
    path: ObjectPath,
    idle: Duration,
) -> BlobStream {
    futures::stream::unfold(Some(body), move |state| {
        let path = path.clone();
        async move {
            let mut body = state?;
            match tokio::time::timeout(idle, body.next()).await {
                Ok(Some(Ok(chunk))) => Some((Ok(chunk), Some(body))),
                Ok(Some(Err(e))) => Some((Err(map_error(e)), None)),
                Ok(None) => None,
                Err(_) => Some((Err(timed_out("GET body", &path)), None)),
            }
        }
    })
    .boxed()
}

fn timed_out(what: &str, path: &ObjectPath) -> BlobError {
    BlobError::Unavailable(format!("{what} {path} timed out"))
}

/// Maps an `object_store` error: missing → [`BlobError::NotFound`]; connection
/// failures, timeouts, HTTP 5xx and 429 → [`BlobError::Unavailable`]; the rest →
/// [`BlobError::Backend`].
pub(crate) fn map_error(err: object_store::Error) -> BlobError {
    match err {
        object_store::Error::NotFound { .. } => BlobError::NotFound,
        other if is_transient(&other) => BlobError::Unavailable(error_chain(&other)),
        other => BlobError::Backend(error_chain(&other)),
    }
}

/// The error and its sources, e.g. "… error sending request: … Connection refused".
fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(e) = source {
        let more = e.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = e.source();
    }
    text
}

fn is_transient(err: &(dyn std::error::Error + 'static)) -> bool {
    use object_store::client::{HttpError, HttpErrorKind};
    use std::io::ErrorKind;
    let mut current = Some(err);
    while let Some(e) = current {
        if let Some(http) = e.downcast_ref::<HttpError>() {
            if matches!(
                http.kind(),
                HttpErrorKind::Connect
                    | HttpErrorKind::Request
                    | HttpErrorKind::Timeout
                    | HttpErrorKind::Interrupted
            ) {
                return true;
            }
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            if matches!(
                io.kind(),
                ErrorKind::ConnectionRefused
                    | ErrorKind::ConnectionReset
                    | ErrorKind::ConnectionAborted
                    | ErrorKind::NotConnected
                    | ErrorKind::TimedOut
                    | ErrorKind::BrokenPipe
                    | ErrorKind::UnexpectedEof
            ) {
                return true;
            }
        }
        // object_store's retry error type is private; its status shows in its
        // Display ("status code: 503 …") or Debug ("status: 503").
        if [e.to_string(), format!("{e:?}")]
            .iter()
            .any(|text| has_unavailable_status(text))
        {
            return true;
        }
        current = e.source();
    }
    false
}

fn has_unavailable_status(text: &str) -> bool {
    ["status code: ", "status: "].iter().any(|marker| {
        text.match_indices(marker).any(|(at, _)| {
            let code = &text[at + marker.len()..];
            let digits: String = code.chars().take_while(char::is_ascii_digit).collect();
            digits.len() == 3 && (digits.starts_with('5') || digits == "429")
        })
    })
}

/// `scheme://host[:port]/path` without user name, password, query or fragment.
pub(crate) fn redact_url(raw: &str) -> String {
    match url::Url::parse(raw) {
        Ok(mut url) => {
            let _ = url.set_username("");
            let _ = url.set_password(None);
            url.set_query(None);
            url.set_fragment(None);
            url.to_string().trim_end_matches('/').to_owned()
        }
        Err(_) => "<unparsable URL>".to_owned(),
    }
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn status_detection() {
        assert!(has_unavailable_status(
            "Server returned non-2xx status code: 503 Service Unavailable: "
        ));
        assert!(has_unavailable_status("Status { status: 500, body: None }"));
        assert!(has_unavailable_status("status code: 429 Too Many Requests"));
        assert!(!has_unavailable_status("status code: 403 Forbidden"));
        assert!(!has_unavailable_status("status: 5000"));
    }

    #[tokio::test]
    async fn stalled_read_ends_as_unavailable() {
        let body = futures::stream::iter([Ok(Bytes::from_static(b"abc"))])
            .chain(futures::stream::pending())
            .boxed();
        let mut stream = with_idle_timeout(body, ObjectPath::from("k"), Duration::from_millis(50));
        assert_eq!(
            stream.next().await.and_then(Result::ok),
            Some(Bytes::from_static(b"abc"))
        );
        let err = stream
            .next()
            .await
            .and_then(Result::err)
            .expect("timeout error");
        assert!(err.is_unavailable(), "{err:?}");
        assert!(
            stream.next().await.is_none(),
            "the stream ends after the error"
        );
    }

    #[test]
    fn redacts_credentials_in_urls() {
        assert_eq!(
            redact_url("http://user:pw@127.0.0.1:3900/?token=x"),
            "http://127.0.0.1:3900"
        );
    }
}
