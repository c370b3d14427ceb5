//! What `import-worker` does with each task: list a page, or copy a file into storage.
//!
//! Crash safety comes from the order of things. A listing page's items and child pages
//! commit in one transaction *before* their tasks are enqueued and *before* the listing
//! task is acknowledged; a worker that dies in between leaves the task unacknowledged,
//! it comes back, finds the page done and enqueues what is still due. A file is claimed
//! (`pending`/`importing` → `importing`), streamed into storage under an idempotency key
//! made of the seller's source file and its checksum (so a second try, or a second
//! worker, gets the same image back, never a second one), and recorded `imported` with
//! its catalog row in one transaction, which on the SQL queue also acks the task.
//!
//! After a file, the job is checked for completion by a [`CompletionChecks`]: one check
//! per job at a time, coalescing the files that finish meanwhile, instead of one per file.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use rand::Rng;
use sha2::{Digest, Sha256};
use task_queue::sql::SqlLease;
use task_queue::{Outcome, SharedQueue, TaskInfo};

use crate::config::PipelineSettings;
use crate::db::{
    Claim, ImportRepo, JobRow, JobState, ListingRow, PageRecorded, PageResult, SkippedEntry,
    StoredFile,
};
use crate::providers::{Entry, ListingPosition, Provider, ProviderClient, ProviderError, Retry};
use crate::storage_client::{IngestError, IngestRequest, StorageClient, INGEST_IN_PROGRESS};
use crate::tasks::{FileTask, ListingTask, QueueNames};

/// Both provider clients.
#[derive(Clone)]
pub struct Providers {
    pub google_drive: Arc<dyn ProviderClient>,
    pub dropbox: Arc<dyn ProviderClient>,
}

impl Providers {
    pub fn get(&self, provider: Provider) -> &Arc<dyn ProviderClient> {
        match provider {
            Provider::GoogleDrive => &self.google_drive,
            Provider::Dropbox => &self.dropbox,
        }
    }
}

/// Everything a worker's task handlers share.
pub struct Pipeline {
    pub repo: ImportRepo,
    pub queue: SharedQueue,
    pub queues: QueueNames,
    pub providers: Providers,
    pub storage: StorageClient,
    pub settings: PipelineSettings,
    /// Jobs by id, for file tasks: a job's provider, folder and owner never change (its
    /// state and name do: nothing here reads those from the cache).
    jobs: Mutex<HashMap<String, Arc<JobRow>>>,
    completion: CompletionChecks,
}

/// Completion checks after files, at most one running per job: the files finishing while
/// their job's check runs share one more run right after it, so the last file of a job
/// is always followed by a check, and the job completes within about two checks of its
/// last file (progress events rarely show "all imported" while it still runs). A check
/// that fails is left to the job sweep of `run_worker`.
#[derive(Clone)]
struct CompletionChecks {
    repo: ImportRepo,
    /// Jobs with a check running → whether another was asked for meanwhile.
    running: Arc<Mutex<HashMap<String, bool>>>,
}

impl CompletionChecks {
    fn new(repo: ImportRepo) -> Self {
        CompletionChecks {
            repo,
            running: Arc::default(),
        }
    }

    /// Asks for a check of `job_id` (runs in the background).
    fn request(&self, job_id: &str) {
        {
            let mut running = self.running.lock().expect("completion checks");
            if let Some(again) = running.get_mut(job_id) {
                *again = true;
                return;
            }
            running.insert(job_id.to_owned(), false);
        }
        tokio::spawn(self.clone().run(job_id.to_owned()));
    }

    async fn run(self, job_id: String) {
        loop {
            if let Err(e) = self.repo.complete_job_if_done(&job_id).await {
                tracing::warn!(job = %job_id, error = %e, "job completion check failed; the job sweep will retry");
            }
            let mut running = self.running.lock().expect("completion checks");
            let again = running.get_mut(&job_id).is_some_and(std::mem::take);
            if !again {
                running.remove(&job_id);
                return;
            }
        }
    }
}

/// Jobs kept in [`Pipeline::jobs`] before it is cleared.
const JOB_CACHE_MAX: usize = 1024;

/// Where a failure came from (the metric it is counted in).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FailureSource {
    Provider,
    Storage,
    /// Our own rules (size limit) or our own database.
    Vitrine,
}

/// A stable failure: the code recorded on the item or page, and a message for people.
struct Failure {
    code: String,
    message: String,
    retry: Retry,
    source: FailureSource,
}

impl From<ProviderError> for Failure {
    fn from(e: ProviderError) -> Self {
        Failure {
            code: e.reason.to_owned(),
            message: e.to_string(),
            retry: e.retry,
            source: FailureSource::Provider,
        }
    }
}

impl From<IngestError> for Failure {
    fn from(e: IngestError) -> Self {
        Failure {
            code: e.code().to_owned(),
            message: e.to_string(),
            retry: if e.is_permanent() {
                Retry::Permanent
            } else {
                Retry::Transient { after: None }
            },
            source: FailureSource::Storage,
        }
    }
}

impl Failure {
    fn permanent(code: &str, message: impl Into<String>) -> Self {
        Failure {
            code: code.to_owned(),
            message: message.into(),
            retry: Retry::Permanent,
            source: FailureSource::Vitrine,
        }
    }

    fn internal(what: &str, e: impl std::fmt::Display) -> Self {
        Failure {
            code: "internal-error".to_owned(),
            message: format!("{what}: {e}"),
            retry: Retry::Transient { after: None },
            source: FailureSource::Vitrine,
        }
    }

    /// Counts it: `import_provider_errors_total{provider, reason}` or
    /// `import_storage_errors_total{reason}`.
    fn count(&self, provider: Provider) {
        match self.source {
            FailureSource::Provider => metrics::counter!(
                "import_provider_errors_total",
                "provider" => provider.as_str(),
                "reason" => self.code.clone()
            )
            .increment(1),
            FailureSource::Storage => {
                metrics::counter!("import_storage_errors_total", "reason" => self.code.clone())
                    .increment(1)
            }
            FailureSource::Vitrine => {}
        }
    }
}

/// Code recorded on a file or page whose task came back more often than
/// `IMPORT_MAX_ATTEMPTS` without an answer (its worker died each time).
pub const TOO_MANY_ATTEMPTS: &str = "too-many-attempts";

/// The idempotency key storage keeps an ingested file under: one image per seller,
/// source file and content, however many times (or by however many workers) it is sent.
pub fn ingest_key(source: Provider, source_id: &str, checksum: &str) -> String {
    let digest = Sha256::digest(format!("{source}\n{source_id}\n{checksum}"));
    format!("{}:{}", source.as_str(), hex::encode(digest))
}

/// Storage's name for a source.
fn storage_source(provider: Provider) -> &'static str {
    match provider {
        Provider::GoogleDrive => "google-drive",
        Provider::Dropbox => "dropbox",
    }
}

impl Pipeline {
    pub fn new(
        repo: ImportRepo,
        queue: SharedQueue,
        queues: QueueNames,
        providers: Providers,
        storage: StorageClient,
        settings: PipelineSettings,
    ) -> Self {
        Pipeline {
            completion: CompletionChecks::new(repo.clone()),
            repo,
            queue,
            queues,
            providers,
            storage,
            settings,
            jobs: Mutex::new(HashMap::new()),
        }
    }

    /// See [`backoff_for`].
    pub fn backoff(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        backoff_for(&self.settings, attempt, retry_after)
    }

    async fn job(&self, job_id: &str) -> Result<Option<Arc<JobRow>>, sqlx::Error> {
        if let Some(job) = self.jobs.lock().expect("job cache").get(job_id) {
            return Ok(Some(job.clone()));
        }
        let Some(job) = self.repo.job_by_id(job_id).await? else {
            return Ok(None);
        };
        let job = Arc::new(job);
        let mut cache = self.jobs.lock().expect("job cache");
        if cache.len() >= JOB_CACHE_MAX {
            cache.clear();
        }
        cache.insert(job_id.to_owned(), job.clone());
        Ok(Some(job))
    }

    // ------------------------------------------------------------ listing

    /// Lists one page; see the module docs for how a crash in between is recovered.
    pub async fn handle_listing(&self, task: ListingTask, _info: TaskInfo) -> Outcome {
        match self.list_page(&task.listing_id).await {
            Ok(outcome) => outcome,
            Err(e) => {
                tracing::warn!(listing = %task.listing_id, error = %e, "listing task: database error; retrying");
                Outcome::Retry {
                    after: self.backoff(1, None),
                    error: e.to_string(),
                }
            }
        }
    }

    async fn list_page(&self, listing_id: &str) -> Result<Outcome, sqlx::Error> {
        let Some(listing) = self.repo.listing(listing_id).await? else {
            return Ok(Outcome::Done);
        };
        match listing.state.as_str() {
            "pending" => {}
            "done" => {
                // Recorded by an earlier delivery that may have died before enqueueing
                // what it found, or before completing the job.
                let due = self.repo.due_from_listing(&listing.id).await?;
                let outcome = self.enqueue(&due).await;
                self.repo.complete_job_if_done(&listing.job_id).await?;
                return Ok(outcome);
            }
            _ => {
                // Failed: an earlier delivery may have died before settling the job.
                self.settle_job_after_failed_listing(&listing).await?;
                return Ok(Outcome::Done);
            }
        }
        // Read fresh, not from the cache: "retry failed" can revive a failed job.
        let Some(job) = self.repo.job_by_id(&listing.job_id).await? else {
            return Ok(Outcome::Done);
        };
        if job.state == JobState::Failed {
            return Ok(Outcome::Done);
        }
        let Some(attempt) = self.repo.start_listing_attempt(&listing.id).await? else {
            return Ok(Outcome::Done);
        };
        if attempt as u32 > self.settings.max_attempts {
            tracing::warn!(job = %job.id, listing = %listing.id, attempt, "listing page given up: its worker died on every attempt");
            self.repo
                .listing_failed(
                    &listing.id,
                    TOO_MANY_ATTEMPTS,
                    "the worker stopped while listing this page on every attempt",
                )
                .await?;
            self.settle_job_after_failed_listing(&listing).await?;
            return Ok(Outcome::Done);
        }
        let client = self.providers.get(job.provider);
        match self.fetch_page(client.as_ref(), &job, &listing).await {
            Ok(page) => {
                let recorded = self
                    .repo
                    .record_page(&listing, &job.seller_id, job.provider, &page)
                    .await?;
                let due = match recorded {
                    PageRecorded::Recorded(due) => {
                        metrics::counter!("import_items_discovered_total")
                            .increment((page.files.len() + page.skipped.len()) as u64);
                        due
                    }
                    PageRecorded::AlreadyRecorded(due) => due,
                };
                let outcome = self.enqueue(&due).await;
                if due.is_empty() {
                    self.repo.complete_job_if_done(&job.id).await?;
                }
                Ok(outcome)
            }
            Err(failure) => {
                failure.count(job.provider);
                let retryable = matches!(failure.retry, Retry::Transient { .. })
                    && (attempt as u32) < self.settings.max_attempts;
                if let (true, Retry::Transient { after }) = (retryable, failure.retry) {
                    self.repo
                        .listing_will_retry(&listing.id, &failure.code, &failure.message)
                        .await?;
                    return Ok(Outcome::Retry {
                        after: self.backoff(attempt as u32, after),
                        error: failure.message,
                    });
                }
                tracing::warn!(job = %job.id, listing = %listing.id, code = %failure.code, error = %failure.message, "listing page failed");
                self.repo
                    .listing_failed(&listing.id, &failure.code, &failure.message)
                    .await?;
                self.settle_job_after_failed_listing(&listing).await?;
                Ok(Outcome::Done)
            }
        }
    }

    /// After a page failed for good: the root page failing fails the job (nothing was
    /// listed); any other page leaves the job to complete with what was found.
    async fn settle_job_after_failed_listing(
        &self,
        listing: &ListingRow,
    ) -> Result<(), sqlx::Error> {
        if listing.is_root {
            let (code, message) = self.repo.listing_error(&listing.id).await?;
            self.repo.fail_job(&listing.job_id, &code, &message).await
        } else {
            self.repo
                .complete_job_if_done(&listing.job_id)
                .await
                .map(drop)
        }
    }

    async fn fetch_page(
        &self,
        client: &dyn ProviderClient,
        job: &JobRow,
        listing: &ListingRow,
    ) -> Result<PageResult, Failure> {
        if listing.is_root && listing.position.page_token.is_none() {
            // A private or missing folder is an error, not an empty import.
            let info = client.open_folder(&job.folder).await?;
            if job.folder_name.as_deref() != Some(info.name.as_str()) {
                self.repo
                    .set_folder_name(&job.id, &info.name)
                    .await
                    .map_err(|e| Failure::internal("set folder name", e))?;
            }
        }
        let page = client.list_page(&job.folder, &listing.position).await?;
        Ok(page_result(page.entries, page.next, &listing.position))
    }

    /// Enqueues due tasks; a failure retries the task (the rows are committed, so the
    /// next delivery enqueues them).
    async fn enqueue(&self, due: &crate::db::DueTasks) -> Outcome {
        match self.queues.enqueue_due(&self.queue, due).await {
            Ok(()) => Outcome::Done,
            Err(e) => {
                tracing::warn!(error = %e, "cannot enqueue follow-up tasks; retrying the listing task");
                Outcome::Retry {
                    after: self.backoff(2, None),
                    error: format!("enqueue follow-up tasks: {e}"),
                }
            }
        }
    }

    // --------------------------------------------------------------- files

    /// Copies one file into storage.
    pub async fn handle_file(&self, task: FileTask, info: TaskInfo) -> Outcome {
        match self
            .import_file(&task.item_id, info.sql_lease.as_ref())
            .await
        {
            Ok(outcome) => outcome,
            Err(e) => {
                tracing::warn!(item = %task.item_id, error = %e, "file task: database error; retrying");
                Outcome::Retry {
                    after: self.backoff(1, None),
                    error: e.to_string(),
                }
            }
        }
    }

    /// `lease`: the task's SQL lease, to ack it with the "imported" write (the SQL queue
    /// is always in the import database).
    async fn import_file(
        &self,
        item_id: &str,
        lease: Option<&SqlLease>,
    ) -> Result<Outcome, sqlx::Error> {
        let item = match self.repo.claim_item(item_id).await? {
            Claim::Claimed(item) => item,
            // Settled by an earlier delivery, which may have died before completing the
            // job: check now.
            Claim::Settled { job_id } => {
                self.completion.request(&job_id);
                return Ok(Outcome::Done);
            }
            Claim::Missing => return Ok(Outcome::Done),
        };
        let Some(job) = self.job(&item.job_id).await? else {
            return Ok(Outcome::Done);
        };
        let attempt = item.attempts.max(1) as u32;
        let result = if attempt > self.settings.max_attempts {
            tracing::warn!(job = %job.id, item = %item.id, attempt, "file given up: its worker died on every attempt");
            Err(Failure::permanent(
                TOO_MANY_ATTEMPTS,
                "the worker stopped while copying this file on every attempt",
            ))
        } else {
            self.copy_to_storage(&job, &item).await
        };
        let mut outcome = Outcome::Done;
        match result {
            Ok(stored) => {
                if self
                    .repo
                    .item_imported(&item, job.provider, &stored, lease)
                    .await?
                {
                    outcome = Outcome::Acked;
                }
                metrics::counter!("import_items_finished_total", "state" => "imported")
                    .increment(1);
            }
            Err(failure) => {
                failure.count(job.provider);
                if let Retry::Transient { after } = failure.retry {
                    // Storage is still storing this very file (or will take over a write
                    // a dead storage left): not a failed attempt, so not one of the
                    // file's IMPORT_MAX_ATTEMPTS. Storage resolves it within a minute.
                    let uncounted = failure.code == INGEST_IN_PROGRESS;
                    if uncounted || attempt < self.settings.max_attempts {
                        self.repo
                            .item_will_retry(&item.id, &failure.code, &failure.message, uncounted)
                            .await?;
                        return Ok(Outcome::Retry {
                            after: self.backoff(attempt, after),
                            error: failure.message,
                        });
                    }
                }
                tracing::info!(job = %job.id, item = %item.id, code = %failure.code, error = %failure.message, "file failed");
                self.repo
                    .item_failed(&item.id, &failure.code, &failure.message)
                    .await?;
                metrics::counter!("import_items_finished_total", "state" => "failed").increment(1);
            }
        }
        self.completion.request(&job.id);
        Ok(outcome)
    }

    /// Streams the file from the provider straight into storage (no copy in memory or
    /// on disk beyond the chunk in flight).
    async fn copy_to_storage(
        &self,
        job: &JobRow,
        item: &crate::db::ClaimedItem,
    ) -> Result<StoredFile, Failure> {
        let file = &item.file;
        if let Some(size) = file.size.filter(|s| *s > self.settings.max_file_bytes) {
            return Err(Failure::permanent(
                "file-too-large",
                format!(
                    "{size} bytes is over the {} byte limit",
                    self.settings.max_file_bytes
                ),
            ));
        }
        let client = self.providers.get(job.provider);
        let download = client.download(&job.folder, file).await?;
        let Some(size) = file.size.or(download.length) else {
            return Err(Failure::permanent(
                "size-unknown",
                "the provider gave no size for this file",
            ));
        };
        if size > self.settings.max_file_bytes {
            return Err(Failure::permanent(
                "file-too-large",
                format!(
                    "{size} bytes is over the {} byte limit",
                    self.settings.max_file_bytes
                ),
            ));
        }
        // A provider error mid-stream is kept here, so that the failure is reported as
        // the provider's (e.g. `stream-cut`, retried) and not as storage's.
        let stream_error: Arc<Mutex<Option<ProviderError>>> = Arc::new(Mutex::new(None));
        let slot = stream_error.clone();
        let body = reqwest::Body::wrap_stream(download.bytes.map(move |chunk| {
            chunk.map_err(|e| {
                let message = e.to_string();
                *slot.lock().expect("stream error slot") = Some(e);
                std::io::Error::other(message)
            })
        }));
        let key = ingest_key(job.provider, &item.source_id, &item.checksum);
        let request = IngestRequest {
            owner_id: &item.seller_id,
            content_type: file.image_type.mime(),
            size,
            sha256: file.sha256.as_deref(),
            md5: file.md5.as_deref(),
            filename: &file.name,
            source: storage_source(job.provider),
            source_ref: Some(&item.source_id),
            idempotency_key: &key,
        };
        let result = self.storage.ingest(&request, body).await;
        if let Some(e) = stream_error.lock().expect("stream error slot").take() {
            if result.is_err() {
                return Err(e.into());
            }
        }
        let image = result?;
        Ok(StoredFile {
            image_id: image.image_id,
            storage_path: image.storage_path,
            mime_type: image.content_type,
            size: image.size as i64,
            width: image.width as i32,
            height: image.height as i32,
            sha256: image.sha256,
        })
    }
}

/// Exponential backoff (`retry_base` × 2^(attempt−1), capped at `retry_max`) with
/// jitter (50–100 % of it, so that tasks failing together do not retry together). With
/// a `Retry-After`, never sooner than it asks, and only a little later.
pub fn backoff_for(
    settings: &PipelineSettings,
    attempt: u32,
    retry_after: Option<Duration>,
) -> Duration {
    let exp = attempt.saturating_sub(1).min(20);
    let cap = settings
        .retry_base
        .saturating_mul(1 << exp)
        .min(settings.retry_max);
    let jittered = cap.mul_f64(rand::thread_rng().gen_range(0.5..=1.0));
    match retry_after {
        Some(after) => after.max(jittered.min(after + settings.retry_base)),
        None => jittered,
    }
}

/// Sorts a provider page into files, skipped entries and further pages.
fn page_result(
    entries: Vec<Entry>,
    next: Option<ListingPosition>,
    at: &ListingPosition,
) -> PageResult {
    let mut page = PageResult::default();
    for entry in entries {
        match entry {
            Entry::File(file) => page.files.push(file),
            Entry::Folder(position) => page.listings.push(position),
            Entry::Skipped {
                source_id,
                name,
                reason,
                detail,
            } => page.skipped.push(SkippedEntry {
                source_id,
                name,
                path: at.display_path.clone(),
                mime_type: detail.clone(),
                reason: reason.as_str(),
                detail,
            }),
        }
    }
    page.listings.extend(next);
    page
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> PipelineSettings {
        PipelineSettings {
            retry_base: Duration::from_millis(100),
            retry_max: Duration::from_secs(5),
            ..PipelineSettings::default()
        }
    }

    fn backoff(attempt: u32, retry_after: Option<Duration>) -> Duration {
        backoff_for(&settings(), attempt, retry_after)
    }

    #[test]
    fn backoff_grows_is_capped_and_jittered() {
        for attempt in 1..=12 {
            let cap = Duration::from_millis(100)
                .saturating_mul(1 << (attempt - 1))
                .min(Duration::from_secs(5));
            for _ in 0..50 {
                let d = backoff(attempt, None);
                assert!(d <= cap, "attempt {attempt}: {d:?} > {cap:?}");
                assert!(d >= cap / 2, "attempt {attempt}: {d:?} < half of {cap:?}");
            }
        }
    }

    #[test]
    fn backoff_never_sooner_than_retry_after() {
        for attempt in 1..=6 {
            let d = backoff(attempt, Some(Duration::from_secs(7)));
            assert!(d >= Duration::from_secs(7), "{d:?}");
            assert!(
                d <= Duration::from_secs(7) + Duration::from_millis(100),
                "{d:?}"
            );
        }
        // A long exponential wait is not shortened by a short Retry-After.
        let d = backoff(10, Some(Duration::from_millis(1)));
        assert!(d >= Duration::from_millis(1), "{d:?}");
    }

    #[test]
    fn ingest_key_is_stable_and_distinguishes_content() {
        let a = ingest_key(Provider::GoogleDrive, "file-1", "md5-a");
        assert_eq!(a, ingest_key(Provider::GoogleDrive, "file-1", "md5-a"));
        assert_ne!(a, ingest_key(Provider::GoogleDrive, "file-1", "md5-b"));
        assert_ne!(a, ingest_key(Provider::Dropbox, "file-1", "md5-a"));
        assert_ne!(a, ingest_key(Provider::GoogleDrive, "file-2", "md5-a"));
        assert!(a.len() <= 200, "storage takes keys up to 200 characters");
    }

    #[test]
    fn a_page_sorts_files_folders_skips_and_the_next_page() {
        let at = ListingPosition {
            location: "root".into(),
            resource_key: None,
            page_token: None,
            display_path: "Shoes".into(),
        };
        let sub = ListingPosition {
            location: "sub".into(),
            ..at.clone()
        };
        let next = ListingPosition {
            page_token: Some("p2".into()),
            ..at.clone()
        };
        let page = page_result(
            vec![
                Entry::Folder(sub.clone()),
                Entry::Skipped {
                    source_id: "doc".into(),
                    name: "Notes".into(),
                    reason: crate::providers::SkipReason::GoogleNative,
                    detail: Some("application/vnd.google-apps.document".into()),
                },
            ],
            Some(next.clone()),
            &at,
        );
        assert!(page.files.is_empty());
        assert_eq!(page.listings, vec![sub, next]);
        assert_eq!(page.skipped.len(), 1);
        assert_eq!(page.skipped[0].reason, "google-native");
        assert_eq!(page.skipped[0].path, "Shoes");
    }
}
