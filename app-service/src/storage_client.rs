//! The Storage Service's internal API, as the App Service calls it.
//!
//! Every call is a signed request (`shared-signing`, the app↔storage key ring, sent by
//! [`service_kit::internal_client::SignedClient`]) with a connect timeout and a
//! whole-call timeout. Only connection failures are retried (the request never reached
//! storage, so a retry cannot do anything twice); a timeout or a 5xx is reported as
//! `storage-unavailable` at once, because the seller's client will retry on 503 anyway
//! and retrying here would only stack up waiting requests.
//!
//! Upload URLs are asked for in batches: concurrent `POST /uploads` requests are
//! coalesced into one `POST /internal/presign/batch` (one signed call, one database
//! write in storage for all of them). Nothing waits on a timer to fill a batch: a
//! request goes out as soon as a call slot is free, and requests that arrive while all
//! [`PRESIGN_CALLS_IN_FLIGHT`] slots are busy ride together on the next call. When the
//! previous batch had company (load), a batch lingers for up to
//! [`PRESIGN_LINGER_YIELDS`] scheduler yields, as long as each brings more requests:
//! requests whose handlers are already running join it instead of starting the next
//! one. Under light load every batch has one upload and goes out at once; under heavy
//! load the per-upload cost of the internal hop falls with the batch size
//! (docs/benchmarks.md).
//!
//! The response types below are this service's view of storage's contract
//! (`docs/openapi/storage-service.json`); they carry only the fields the app uses.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::{Method, StatusCode};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use service_kit::download_urls::DownloadUrl;
use service_kit::internal_client::{Answer, CallError, SignedClient};
use shared_signing::KeyRing;
use std::collections::BTreeMap;
use utoipa::ToSchema;
use uuid::Uuid;

use tokio::sync::{mpsc, oneshot, Semaphore};

use crate::error::{AppError, AppResult};

/// What one upload's batch result means for the seller.
fn item_result(item: BatchItem) -> AppResult<UploadTicket> {
    match item {
        BatchItem::Upload(ticket) => Ok(ticket),
        // Storage's own cap is lower than ours: the seller's file is too big.
        BatchItem::Error(e) if e.code == "size-limit-exceeded" => {
            Err(AppError::invalid("size-limit-exceeded", e.message))
        }
        BatchItem::Error(e) if e.status >= 500 => Err(AppError::StorageUnavailable(format!(
            "presign: {} {}: {}",
            e.status, e.code, e.message
        ))),
        // We validated the metadata with the same rules storage applies, so any other
        // refusal means the two services disagree: a deployment fault.
        BatchItem::Error(e) => Err(AppError::StorageFault(format!(
            "presign: storage answered {} {}: {}",
            e.status, e.code, e.message
        ))),
    }
}

/// Most uploads in one batch call (storage accepts up to 100).
pub const PRESIGN_BATCH_MAX: usize = 64;
/// Batch calls to storage in flight at once; more requests wait for the next batch.
pub const PRESIGN_CALLS_IN_FLIGHT: usize = 2;
/// A batch lingers only when the previous one had at least this many uploads (load).
pub const PRESIGN_LINGER_AFTER: usize = 2;
/// Most scheduler yields a lingering batch waits; it stops at the first that adds nothing.
pub const PRESIGN_LINGER_YIELDS: usize = 3;

/// `POST /internal/presign` answer; returned to the seller unchanged.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct UploadTicket {
    /// Id of the pending upload (not the image id: that comes back from the PUT).
    pub upload_id: String,
    /// Absolute URL to send the bytes to; the token in it is the only credential.
    pub upload_url: String,
    /// Always `PUT`.
    pub method: String,
    /// Headers the upload must carry (`Content-Type`).
    pub headers: BTreeMap<String, String>,
    pub expires_at: DateTime<Utc>,
}

/// The parts of storage's image record the app checks.
#[derive(Debug, Clone, Deserialize)]
pub struct StoredImage {
    pub image_id: String,
    /// `complete`, or `committing` while its bytes are being made visible.
    pub state: String,
    pub owner_id: String,
}

#[derive(Debug, Deserialize)]
struct DownloadUrlsResponse {
    urls: Vec<DownloadUrl>,
}

/// What storage's answers mean for the app.
trait StorageAnswer {
    /// The body as `T`, or a fault.
    fn parse<T: serde::de::DeserializeOwned>(&self, call: &str) -> AppResult<T>;
    /// Any answer a call did not expect: [`Self::common_failure`], or else a fault.
    fn failure(&self, call: &str) -> AppError;
    /// Maps the answers every call treats alike: 5xx → unavailable, 401/403 → fault.
    fn common_failure(&self, call: &str) -> Option<AppError>;
}

impl StorageAnswer for Answer {
    fn parse<T: serde::de::DeserializeOwned>(&self, call: &str) -> AppResult<T> {
        self.json()
            .map_err(|e| AppError::StorageFault(format!("{call}: unexpected response body: {e}")))
    }

    fn failure(&self, call: &str) -> AppError {
        self.common_failure(call).unwrap_or_else(|| {
            let (code, message) = self.error_code();
            AppError::StorageFault(format!(
                "{call}: storage answered {} {code}: {message}",
                self.status
            ))
        })
    }

    fn common_failure(&self, call: &str) -> Option<AppError> {
        let (code, message) = self.error_code();
        if self.status.is_server_error() {
            return Some(AppError::StorageUnavailable(format!(
                "{call}: storage answered {} {code}: {message}",
                self.status
            )));
        }
        if matches!(
            self.status,
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN
        ) {
            return Some(AppError::StorageFault(format!(
                "{call}: storage refused our signature ({} {code}: {message}); check that APP_STORAGE_KEYS match",
                self.status
            )));
        }
        None
    }
}

/// Signed client for storage's internal API. Cheap to clone.
///
/// Must be created inside a tokio runtime (it starts the presign batcher).
#[derive(Clone)]
pub struct StorageClient {
    signed: SignedHttp,
    presign_queue: mpsc::Sender<PresignJob>,
}

/// The signed client for storage, plus how the app reads a failed call and times it.
#[derive(Clone)]
struct SignedHttp {
    client: SignedClient,
}

/// One `POST /uploads` waiting for its URL.
struct PresignJob {
    metadata_token: String,
    reply: oneshot::Sender<AppResult<UploadTicket>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "snake_case")]
enum BatchItem {
    Upload(UploadTicket),
    Error(BatchItemError),
}

#[derive(Debug, Deserialize)]
struct BatchItemError {
    status: u16,
    code: String,
    message: String,
}

#[derive(Debug, Deserialize)]
struct BatchResponse {
    results: Vec<BatchItem>,
}

impl StorageClient {
    pub fn new(
        base: url::Url,
        keys: KeyRing,
        connect_timeout: Duration,
        timeout: Duration,
    ) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .connect_timeout(connect_timeout)
            .timeout(timeout)
            .pool_idle_timeout(Duration::from_secs(60))
            .tcp_nodelay(true)
            .user_agent(concat!("vitrine-app-service/", env!("CARGO_PKG_VERSION")))
            .build()?;
        let signed = SignedHttp {
            client: SignedClient::new(base, keys, http),
        };
        let (presign_queue, jobs) = mpsc::channel(1024);
        tokio::runtime::Handle::try_current()
            .map_err(|_| anyhow::anyhow!("StorageClient::new needs a tokio runtime"))?
            .spawn(run_presign_batcher(signed.clone(), jobs));
        Ok(StorageClient {
            signed,
            presign_queue,
        })
    }

    /// Asks storage for a pre-signed upload URL for the signed metadata (batched with
    /// concurrent requests; see the module docs).
    pub async fn presign(&self, metadata_token: &str) -> AppResult<UploadTicket> {
        let (reply, answer) = oneshot::channel();
        let job = PresignJob {
            metadata_token: metadata_token.to_owned(),
            reply,
        };
        self.presign_queue
            .send(job)
            .await
            .map_err(|_| AppError::StorageFault("the presign batcher stopped".into()))?;
        answer
            .await
            .map_err(|_| AppError::StorageFault("the presign batch was dropped".into()))?
    }

    /// Storage's record of an image, or `None` if there is no such image.
    pub async fn image(&self, image_id: &Uuid) -> AppResult<Option<StoredImage>> {
        const CALL: &str = "get-image";
        let path = format!("/internal/images/{image_id}");
        let answer = self.call(CALL, Method::GET, &path, None).await?;
        match answer.status {
            StatusCode::OK => answer.parse(CALL).map(Some),
            StatusCode::NOT_FOUND => Ok(None),
            _ => Err(answer.failure(CALL)),
        }
    }

    /// Short-lived download URLs for `image_ids` (unknown ids are left out).
    pub async fn download_urls(&self, image_ids: &[String]) -> AppResult<Vec<DownloadUrl>> {
        const CALL: &str = "download-urls";
        if image_ids.is_empty() {
            return Ok(Vec::new());
        }
        let body = serde_json::to_vec(&serde_json::json!({ "image_ids": image_ids }))
            .map_err(|e| AppError::StorageFault(e.to_string()))?;
        let answer = self
            .call(CALL, Method::POST, "/internal/download-urls", Some(body))
            .await?;
        if answer.status == StatusCode::OK {
            return answer.parse::<DownloadUrlsResponse>(CALL).map(|r| r.urls);
        }
        Err(answer.failure(CALL))
    }

    async fn call(
        &self,
        call: &'static str,
        method: Method,
        path_and_query: &str,
        body: Option<Vec<u8>>,
    ) -> AppResult<Answer> {
        self.signed.call(call, method, path_and_query, body).await
    }
}

/// Takes waiting presign jobs and sends them to storage in batches, with at most
/// [`PRESIGN_CALLS_IN_FLIGHT`] calls at once. Ends when every client is dropped.
async fn run_presign_batcher(signed: SignedHttp, mut jobs: mpsc::Receiver<PresignJob>) {
    let slots = Arc::new(Semaphore::new(PRESIGN_CALLS_IN_FLIGHT));
    let mut last_batch = 0;
    while let Some(first) = jobs.recv().await {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        // Everything that queued up while the slots were busy goes in this batch.
        let mut batch = vec![first];
        take_queued(&mut jobs, &mut batch);
        // Under load, let the requests the runtime is already handling join this batch:
        // a yield runs the tasks that are ready, which is where they would queue from.
        if last_batch >= PRESIGN_LINGER_AFTER {
            for _ in 0..PRESIGN_LINGER_YIELDS {
                if batch.len() >= PRESIGN_BATCH_MAX {
                    break;
                }
                let before = batch.len();
                tokio::task::yield_now().await;
                take_queued(&mut jobs, &mut batch);
                if batch.len() == before {
                    break;
                }
            }
        }
        last_batch = batch.len();
        let signed = signed.clone();
        tokio::spawn(async move {
            signed.presign_batch(batch).await;
            drop(slot);
        });
    }
}

/// Moves queued jobs into `batch`, up to [`PRESIGN_BATCH_MAX`].
fn take_queued(jobs: &mut mpsc::Receiver<PresignJob>, batch: &mut Vec<PresignJob>) {
    while batch.len() < PRESIGN_BATCH_MAX {
        match jobs.try_recv() {
            Ok(job) => batch.push(job),
            Err(_) => break,
        }
    }
}

/// A copy of a failure for every upload of a failed batch call.
fn same_failure(e: &AppError) -> AppError {
    match e {
        AppError::StorageUnavailable(d) => AppError::StorageUnavailable(d.clone()),
        other => AppError::StorageFault(other.to_string()),
    }
}

impl SignedHttp {
    /// One `POST /internal/presign/batch` for `batch`; every job gets its own answer.
    async fn presign_batch(&self, batch: Vec<PresignJob>) {
        const CALL: &str = "presign-batch";
        metrics::histogram!("app_presign_batch_size").record(batch.len() as f64);
        let tokens: Vec<&str> = batch.iter().map(|j| j.metadata_token.as_str()).collect();
        let result = self.presign_call(&tokens).await;
        match result {
            Ok(items) if items.len() == batch.len() => {
                for (job, item) in batch.into_iter().zip(items) {
                    let _ = job.reply.send(item_result(item));
                }
            }
            Ok(items) => {
                let e = AppError::StorageFault(format!(
                    "{CALL}: {} results for {} uploads",
                    items.len(),
                    batch.len()
                ));
                for job in batch {
                    let _ = job.reply.send(Err(same_failure(&e)));
                }
            }
            Err(e) => {
                for job in batch {
                    let _ = job.reply.send(Err(same_failure(&e)));
                }
            }
        }
    }

    async fn presign_call(&self, tokens: &[&str]) -> AppResult<Vec<BatchItem>> {
        const CALL: &str = "presign-batch";
        let body = serde_json::to_vec(&serde_json::json!({ "metadata_tokens": tokens }))
            .map_err(|e| AppError::StorageFault(e.to_string()))?;
        let answer = self
            .call(CALL, Method::POST, "/internal/presign/batch", Some(body))
            .await?;
        if answer.status == StatusCode::OK {
            return answer.parse::<BatchResponse>(CALL).map(|r| r.results);
        }
        Err(answer.failure(CALL))
    }

    /// Sends one signed request (connection failures are retried by [`SignedClient`])
    /// and records how long it took and how it ended.
    async fn call(
        &self,
        call: &'static str,
        method: Method,
        path_and_query: &str,
        body: Option<Vec<u8>>,
    ) -> AppResult<Answer> {
        let started = Instant::now();
        let result = self
            .client
            .call(call, method, path_and_query, body)
            .await
            .map_err(|e| match e {
                CallError::Invalid(detail) => AppError::StorageFault(detail),
                CallError::Connect(detail)
                | CallError::Timeout(detail)
                | CallError::Transport(detail) => AppError::StorageUnavailable(detail),
            });
        let outcome = match &result {
            Ok(answer) if answer.status.is_server_error() => "server-error",
            Ok(_) => "answered",
            Err(_) => "unavailable",
        };
        metrics::histogram!("app_storage_call_seconds", "call" => call, "outcome" => outcome)
            .record(started.elapsed().as_secs_f64());
        result
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use axum::routing::post;
    use axum::{Json, Router};
    use shared_signing::KeyId;

    use super::*;

    /// A storage stand-in whose batch endpoint answers each token with an upload whose
    /// id is the token, and records the size of every batch.
    async fn fake_storage() -> (url::Url, Arc<Mutex<Vec<usize>>>) {
        let sizes = Arc::new(Mutex::new(Vec::new()));
        let seen = sizes.clone();
        let router = Router::new().route(
            "/internal/presign/batch",
            post(move |Json(body): Json<serde_json::Value>| {
                let seen = seen.clone();
                async move {
                    let tokens = body["metadata_tokens"].as_array().cloned().unwrap();
                    seen.lock().unwrap().push(tokens.len());
                    let results: Vec<_> = tokens
                        .iter()
                        .map(|t| {
                            serde_json::json!({ "upload": {
                                "upload_id": t, "upload_url": "http://s/u", "method": "PUT",
                                "headers": {}, "expires_at": "2030-01-01T00:00:00Z",
                            }})
                        })
                        .collect();
                    Json(serde_json::json!({ "results": results }))
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
        (base.parse().unwrap(), sizes)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_upload_gets_its_own_answer_alone_or_batched() {
        let (base, sizes) = fake_storage().await;
        let keys = KeyRing::generate(KeyId::new("app1").unwrap());
        let client =
            StorageClient::new(base, keys, Duration::from_secs(2), Duration::from_secs(10))
                .unwrap();
        // Light load: a lone request goes out at once, alone.
        assert_eq!(client.presign("lone").await.unwrap().upload_id, "lone");
        assert_eq!(*sizes.lock().unwrap(), vec![1]);
        // Load: batches form (and may linger), and no request is lost or mixed up.
        let calls = (0..300).map(|i| {
            let client = client.clone();
            tokio::spawn(async move { (i, client.presign(&format!("t{i}")).await) })
        });
        for call in calls.collect::<Vec<_>>() {
            let (i, ticket) = call.await.unwrap();
            assert_eq!(ticket.unwrap().upload_id, format!("t{i}"));
        }
        let sizes = sizes.lock().unwrap();
        assert_eq!(sizes.iter().sum::<usize>(), 301);
        assert!(sizes.iter().all(|n| (1..=PRESIGN_BATCH_MAX).contains(n)));
        assert!(sizes.len() < 301, "no batch formed: {sizes:?}");
    }
}
