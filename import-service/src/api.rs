//! `import-api`'s endpoints: start an import, follow it, retry its failures, and list
//! the seller's imported images.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use futures::Stream;
use serde::{Deserialize, Serialize};
use service_kit::auth::{Seller, SellerId};
use service_kit::{AppJson, AppQuery};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::db::{ImageRow, ItemRow, JobCounts, JobRow, JobState};
use crate::error::{ImportError, ImportResult};
use crate::providers::{folder_url, ListingPosition, Provider, Retry};
use crate::state::ApiState;

/// Page sizes of the list endpoints.
const DEFAULT_PAGE_SIZE: u32 = 50;
const MAX_PAGE_SIZE: u32 = 500;
/// How long `POST /import/*` waits for the provider to confirm the folder is public.
const FOLDER_CHECK_TIMEOUT: Duration = Duration::from_secs(10);
/// How often `GET /imports/{id}/events` looks for progress.
const EVENTS_POLL: Duration = Duration::from_millis(500);

fn time(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

// --------------------------------------------------------------------- shapes

#[derive(Debug, Deserialize, ToSchema)]
pub struct ImportRequest {
    /// The folder's share link, e.g. `https://drive.google.com/drive/folders/<id>?usp=sharing`
    /// or `https://www.dropbox.com/scl/fo/<id>/<key>?rlkey=<key>`. Never fetched: it is
    /// parsed, and the provider's API is asked about the folder it names.
    pub folder_url: String,
}

/// Progress of an import, counted over its items.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, ToSchema)]
pub struct ImportCounts {
    /// Every entry found so far (files to import and entries skipped at listing).
    pub discovered: i64,
    pub imported: i64,
    /// Not imported by design: already imported before, not an image, Google-native.
    pub skipped: i64,
    pub failed: i64,
    /// Waiting for a worker or being copied now.
    pub in_progress: i64,
}

/// Listing progress: one page of one folder each.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, ToSchema)]
pub struct ListingCounts {
    pub done: i64,
    pub pending: i64,
    pub failed: i64,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq, ToSchema)]
pub struct JobError {
    pub code: String,
    pub message: String,
}

/// One import job.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, ToSchema)]
pub struct ImportJob {
    pub id: String,
    /// `google_drive` or `dropbox`.
    pub provider: String,
    pub folder_url: String,
    pub folder_name: Option<String>,
    /// `listing` (pages still to list), `importing`, `completed` (every item imported,
    /// skipped or failed: see `counts`), or `failed` (the folder could not be listed).
    pub state: String,
    pub counts: ImportCounts,
    pub pages: ListingCounts,
    /// Why the job failed, when `state` is `failed`.
    pub error: Option<JobError>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
}

impl ImportJob {
    pub fn new(job: &JobRow, counts: JobCounts) -> Self {
        let state = match job.state {
            JobState::Running if counts.pages_pending > 0 => "listing",
            JobState::Running => "importing",
            JobState::Completed => "completed",
            JobState::Failed => "failed",
        };
        ImportJob {
            id: job.id.clone(),
            provider: job.provider.as_str().to_owned(),
            folder_url: job.folder_url.clone(),
            folder_name: job.folder_name.clone(),
            state: state.to_owned(),
            counts: ImportCounts {
                discovered: counts.discovered,
                imported: counts.imported,
                skipped: counts.skipped,
                failed: counts.failed,
                in_progress: counts.in_progress,
            },
            pages: ListingCounts {
                done: counts.pages_done,
                pending: counts.pages_pending,
                failed: counts.pages_failed,
            },
            error: job.error_code.as_ref().map(|code| JobError {
                code: code.clone(),
                message: job.error_message.clone().unwrap_or_default(),
            }),
            created_at: time(job.created_at),
            updated_at: time(job.updated_at),
            finished_at: job.finished_at.map(time),
        }
    }

    pub fn is_finished(&self) -> bool {
        matches!(self.state.as_str(), "completed" | "failed")
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ImportPage {
    pub items: Vec<ImportJob>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

/// One listed entry of an import.
#[derive(Debug, Serialize, ToSchema)]
pub struct ImportItem {
    pub id: String,
    /// The provider's file id.
    pub source_id: String,
    pub name: String,
    /// Folder path from the import's root folder.
    pub path: String,
    pub mime_type: Option<String>,
    pub size: Option<i64>,
    /// `pending`, `importing`, `imported`, `skipped` or `failed`.
    pub status: String,
    /// Stable code: why it was skipped or failed (or, while pending, why the last try
    /// failed), e.g. `already-imported`, `not-an-image`, `google-native`, `not-found`,
    /// `download-quota-exceeded`, `rate-limited`, `digest-mismatch`, `file-too-large`.
    pub reason: Option<String>,
    pub detail: Option<String>,
    pub attempts: i32,
    pub image_id: Option<String>,
    pub storage_path: Option<String>,
    pub updated_at: DateTime<Utc>,
}

impl From<ItemRow> for ImportItem {
    fn from(row: ItemRow) -> Self {
        ImportItem {
            id: row.id,
            source_id: row.source_id,
            name: row.name,
            path: row.path,
            mime_type: row.mime_type,
            size: row.size,
            status: row.state,
            reason: row.reason,
            detail: row.detail,
            attempts: row.attempts,
            image_id: row.image_id,
            storage_path: row.storage_path,
            updated_at: time(row.updated_at),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ItemPage {
    pub items: Vec<ImportItem>,
    pub next_cursor: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RetryResult {
    /// Failed files put back in line.
    pub retried_items: usize,
    /// Failed listing pages put back in line.
    pub retried_pages: usize,
    pub job: ImportJob,
}

/// One imported image.
#[derive(Debug, Serialize, ToSchema)]
pub struct Image {
    pub image_id: String,
    /// The file's name at the provider.
    pub name: String,
    /// `google_drive` or `dropbox`.
    pub source: String,
    /// The provider's file id.
    pub source_id: String,
    /// The Drive file id, for Drive images.
    pub google_drive_id: Option<String>,
    pub size: i64,
    pub mime_type: String,
    pub width: i32,
    pub height: i32,
    pub sha256: String,
    /// Where the bytes live, e.g. `s3://bucket/images/ab/<id>`.
    pub storage_path: String,
    /// The import that brought it in.
    pub import_id: String,
    pub imported_at: DateTime<Utc>,
    /// A short-lived signed download URL (absent when storage could not be asked).
    pub url: Option<String>,
}

impl Image {
    fn new(row: ImageRow) -> Self {
        Image {
            google_drive_id: (row.source == Provider::GoogleDrive).then(|| row.source_id.clone()),
            image_id: row.image_id,
            name: row.name,
            source: row.source.as_str().to_owned(),
            source_id: row.source_id,
            size: row.size,
            mime_type: row.mime_type,
            width: row.width,
            height: row.height,
            sha256: row.sha256,
            storage_path: row.storage_path,
            import_id: row.job_id,
            imported_at: time(row.imported_at),
            url: None,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ImagePage {
    pub items: Vec<Image>,
    pub next_cursor: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageParams {
    /// Page size, 1–500 (default 50).
    pub limit: Option<String>,
    /// `next_cursor` from the previous page.
    pub cursor: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ItemParams {
    /// Only items in this status: `pending`, `importing`, `imported`, `skipped`, `failed`.
    pub status: Option<String>,
    /// Page size, 1–500 (default 50).
    pub limit: Option<String>,
    /// `next_cursor` from the previous page.
    pub cursor: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ImageParams {
    /// Only images from `google_drive` or `dropbox`.
    pub source: Option<String>,
    /// Page size, 1–500 (default 50).
    pub limit: Option<String>,
    /// `next_cursor` from the previous page.
    pub cursor: Option<String>,
}

// -------------------------------------------------------------- validation

fn page_size(raw: Option<&str>) -> ImportResult<u32> {
    match raw {
        None => Ok(DEFAULT_PAGE_SIZE),
        Some(raw) => raw
            .parse::<u32>()
            .ok()
            .filter(|n| (1..=MAX_PAGE_SIZE).contains(n))
            .ok_or_else(|| {
                ImportError::bad_request(
                    "invalid-limit",
                    format!("limit must be a whole number from 1 to {MAX_PAGE_SIZE}"),
                )
            }),
    }
}

/// A UUID in canonical form (ids and cursors are UUIDv7 text).
fn uuid_text(raw: &str) -> Option<String> {
    Uuid::parse_str(raw)
        .ok()
        .map(|u| u.hyphenated().to_string())
}

fn cursor(raw: Option<&str>) -> ImportResult<Option<String>> {
    match raw {
        None | Some("") => Ok(None),
        Some(raw) => uuid_text(raw).map(Some).ok_or_else(|| {
            ImportError::bad_request(
                "invalid-cursor",
                "cursor must be the next_cursor of a previous page",
            )
        }),
    }
}

fn import_id(raw: &str) -> ImportResult<String> {
    uuid_text(raw)
        .ok_or_else(|| ImportError::bad_request("invalid-import-id", "an import id is a UUID"))
}

/// The page's items and the cursor after it, from `limit + 1` rows.
fn paged<T>(mut rows: Vec<T>, limit: u32, key: impl Fn(&T) -> String) -> (Vec<T>, Option<String>) {
    if rows.len() > limit as usize {
        rows.truncate(limit as usize);
        let next = rows.last().map(key);
        (rows, next)
    } else {
        (rows, None)
    }
}

async fn job_view(state: &ApiState, job: &JobRow) -> ImportResult<ImportJob> {
    Ok(ImportJob::new(job, state.repo.counts(&job.id).await?))
}

async fn own_job(state: &ApiState, seller: &SellerId, raw_id: &str) -> ImportResult<JobRow> {
    let id = import_id(raw_id)?;
    state
        .repo
        .job(seller.as_str(), &id)
        .await?
        .ok_or(ImportError::ImportNotFound)
}

// ----------------------------------------------------------------- starting

/// Starts importing a public Google Drive folder.
#[utoipa::path(
    post,
    path = "/import/google-drive",
    tag = "imports",
    request_body = ImportRequest,
    security(("bearer" = [])),
    responses(
        (status = 202, description = "Import started; follow it at `Location`", body = ImportJob,
            headers(("Location" = String, description = "`/imports/{id}`"))),
        (status = 400, description = "`invalid-json`", body = service_kit::ErrorEnvelope),
        (status = 401, description = "No valid seller token", body = service_kit::ErrorEnvelope),
        (status = 413, description = "`body-too-large`", body = service_kit::ErrorEnvelope),
        (status = 415, description = "`json-content-type-required`", body = service_kit::ErrorEnvelope),
        (status = 422, description = "`invalid-folder-url`, `folder-not-found`, `folder-not-public`, `invalid-request-body`", body = service_kit::ErrorEnvelope),
        (status = 429, description = "`too-many-imports`: wait for one of yours to finish", body = service_kit::ErrorEnvelope),
        (status = 502, description = "`provider-error`: the provider refused our credentials", body = service_kit::ErrorEnvelope),
        (status = 503, description = "`queue-unavailable`, `database-unavailable`; nothing started", body = service_kit::ErrorEnvelope),
    )
)]
pub async fn import_google_drive(
    State(state): State<ApiState>,
    Seller(seller): Seller,
    headers: HeaderMap,
    AppJson(request): AppJson<ImportRequest>,
) -> ImportResult<Response> {
    let request_id = audit_events::request_id(&headers);
    start_import(&state, &seller, Provider::GoogleDrive, request, request_id).await
}

/// Starts importing a public Dropbox shared folder.
#[utoipa::path(
    post,
    path = "/import/dropbox",
    tag = "imports",
    request_body = ImportRequest,
    security(("bearer" = [])),
    responses(
        (status = 202, description = "Import started; follow it at `Location`", body = ImportJob,
            headers(("Location" = String, description = "`/imports/{id}`"))),
        (status = 400, description = "`invalid-json`", body = service_kit::ErrorEnvelope),
        (status = 401, description = "No valid seller token", body = service_kit::ErrorEnvelope),
        (status = 413, description = "`body-too-large`", body = service_kit::ErrorEnvelope),
        (status = 415, description = "`json-content-type-required`", body = service_kit::ErrorEnvelope),
        (status = 422, description = "`invalid-folder-url`, `folder-not-found`, `folder-not-public`, `invalid-request-body`", body = service_kit::ErrorEnvelope),
        (status = 429, description = "`too-many-imports`: wait for one of yours to finish", body = service_kit::ErrorEnvelope),
        (status = 502, description = "`provider-error`: the provider refused our credentials", body = service_kit::ErrorEnvelope),
        (status = 503, description = "`queue-unavailable`, `database-unavailable`; nothing started", body = service_kit::ErrorEnvelope),
    )
)]
pub async fn import_dropbox(
    State(state): State<ApiState>,
    Seller(seller): Seller,
    headers: HeaderMap,
    AppJson(request): AppJson<ImportRequest>,
) -> ImportResult<Response> {
    let request_id = audit_events::request_id(&headers);
    start_import(&state, &seller, Provider::Dropbox, request, request_id).await
}

async fn start_import(
    state: &ApiState,
    seller: &SellerId,
    provider: Provider,
    request: ImportRequest,
    request_id: Option<String>,
) -> ImportResult<Response> {
    let folder = folder_url::parse_for(provider, &request.folder_url)
        .map_err(|e| ImportError::InvalidFolderUrl(e.to_string()))?;
    let limit = state.config.max_running_imports;
    if state.repo.running_jobs(seller.as_str()).await? >= i64::from(limit) {
        return Err(ImportError::TooManyImports(limit));
    }

    // Ask the provider now, so that a private or mistyped folder is an answer to this
    // request and not a failed job later. If the provider is slow or briefly failing,
    // start anyway: the worker checks again, with retries.
    let client = state.providers.get(provider);
    let folder_name =
        match tokio::time::timeout(FOLDER_CHECK_TIMEOUT, client.open_folder(&folder)).await {
            Ok(Ok(info)) => Some(info.name),
            Ok(Err(e)) if e.retry == Retry::Permanent => {
                return Err(match e.reason {
                    // The link names a file, not a folder.
                    "not-a-folder" => ImportError::InvalidFolderUrl(e.message),
                    "not-found" => ImportError::FolderNotFound(e.message),
                    "not-public" => ImportError::FolderNotPublic(e.message),
                    _ => ImportError::ProviderError(e.to_string()),
                });
            }
            Ok(Err(e)) => {
                tracing::info!(error = %e, "folder check failed for now; the worker will retry it");
                None
            }
            Err(_) => None,
        };

    let now = crate::db::now_ms();
    let job = JobRow {
        id: Uuid::now_v7().to_string(),
        seller_id: seller.as_str().to_owned(),
        provider,
        folder_url: request.folder_url.trim().to_owned(),
        folder_name,
        state: JobState::Running,
        error_code: None,
        error_message: None,
        created_at: now,
        updated_at: now,
        finished_at: None,
        folder: folder.clone(),
    };
    let root = ListingPosition::root(&folder);
    let mut tx = state.repo.begin().await?;
    let listing_id = crate::db::ImportRepo::insert_job(&mut tx, &job, &root).await?;
    // The job and its `import.started` event commit together.
    let audit = state.repo.audit();
    let event = audit
        .event(audit_events::EventType::ImportStarted)
        .seller(seller.as_str())
        .request(request_id)
        .subject(job.id.clone())
        .detail("provider", provider.as_str());
    audit.record_in(&mut tx, &event).await?;
    let due = crate::db::DueTasks {
        listings: vec![(listing_id, 0)],
        items: Vec::new(),
    };
    match &state.sql_queue {
        // The job and its first task commit together.
        Some(sql) => {
            let tasks = state
                .config
                .queues
                .new_tasks(&due)
                .map_err(|e| ImportError::QueueUnavailable(e.to_string()))?;
            sql.enqueue_in(&mut tx, &tasks)
                .await
                .map_err(|e| ImportError::QueueUnavailable(e.to_string()))?;
            tx.commit().await?;
        }
        // The job commits first; if its first task cannot be published it is removed
        // again, and the seller is told nothing started.
        None => {
            tx.commit().await?;
            if let Err(e) = state.config.queues.enqueue_due(&state.queue, &due).await {
                if let Err(cleanup) = state.repo.delete_unstarted_job(&job.id).await {
                    tracing::error!(job = %job.id, error = %cleanup, "cannot remove a job whose first task was not enqueued");
                }
                return Err(ImportError::QueueUnavailable(e.to_string()));
            }
        }
    }
    metrics::counter!("import_jobs_started_total", "provider" => provider.as_str()).increment(1);
    tracing::info!(job = %job.id, seller = %seller, %provider, "import started");
    let view = job_view(state, &job).await?;
    let location = HeaderValue::from_str(&format!("/imports/{}", job.id))
        .map_err(|e| ImportError::Database(e.to_string()))?;
    Ok((
        StatusCode::ACCEPTED,
        [(header::LOCATION, location)],
        Json(view),
    )
        .into_response())
}

// ---------------------------------------------------------------- following

/// Lists your imports, newest first.
#[utoipa::path(
    get,
    path = "/imports",
    tag = "imports",
    params(PageParams),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "One page of your imports", body = ImportPage),
        (status = 400, description = "`invalid-limit`, `invalid-cursor`, `invalid-query` (e.g. a repeated parameter)", body = service_kit::ErrorEnvelope),
        (status = 401, description = "No valid seller token", body = service_kit::ErrorEnvelope),
    )
)]
pub async fn list_imports(
    State(state): State<ApiState>,
    Seller(seller): Seller,
    AppQuery(params): AppQuery<PageParams>,
) -> ImportResult<Json<ImportPage>> {
    let limit = page_size(params.limit.as_deref())?;
    let before = cursor(params.cursor.as_deref())?;
    let rows = state
        .repo
        .jobs(seller.as_str(), before.as_deref(), limit + 1)
        .await?;
    let (rows, next_cursor) = paged(rows, limit, |j| j.id.clone());
    let mut items = Vec::with_capacity(rows.len());
    for job in &rows {
        items.push(job_view(&state, job).await?);
    }
    Ok(Json(ImportPage { items, next_cursor }))
}

/// One of your imports, with its counts. Another seller's is a 404.
#[utoipa::path(
    get,
    path = "/imports/{id}",
    tag = "imports",
    params(("id" = String, Path, description = "Import id")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The import", body = ImportJob),
        (status = 400, description = "`invalid-import-id`", body = service_kit::ErrorEnvelope),
        (status = 401, description = "No valid seller token", body = service_kit::ErrorEnvelope),
        (status = 404, description = "`import-not-found`", body = service_kit::ErrorEnvelope),
    )
)]
pub async fn get_import(
    State(state): State<ApiState>,
    Seller(seller): Seller,
    Path(id): Path<String>,
) -> ImportResult<Json<ImportJob>> {
    let job = own_job(&state, &seller, &id).await?;
    Ok(Json(job_view(&state, &job).await?))
}

/// Which event of `GET /imports/{id}/events` this is.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ImportEventKind {
    /// The import changed.
    Progress,
    /// The import finished; the last event of the stream.
    Done,
}

/// One server-sent event of `GET /imports/{id}/events` (only documented: the stream is
/// written by axum's `Event`).
#[derive(Debug, Serialize, ToSchema)]
pub struct ImportEvent {
    pub event: ImportEventKind,
    /// The import as JSON, as `GET /imports/{id}` returns it (an `ImportJob`).
    #[schema(content_media_type = "application/json")]
    pub data: String,
}

/// Progress as server-sent events: a `progress` event (the import, as in
/// `GET /imports/{id}`) whenever it changes, then one `done` event when it finishes.
#[utoipa::path(
    get,
    path = "/imports/{id}/events",
    tag = "imports",
    params(("id" = String, Path, description = "Import id")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "`text/event-stream` of `progress` and `done` events carrying an ImportJob", content_type = "text/event-stream", body = ImportEvent),
        (status = 400, description = "`invalid-import-id`", body = service_kit::ErrorEnvelope),
        (status = 401, description = "No valid seller token", body = service_kit::ErrorEnvelope),
        (status = 404, description = "`import-not-found`", body = service_kit::ErrorEnvelope),
    )
)]
pub async fn import_events(
    State(state): State<ApiState>,
    Seller(seller): Seller,
    Path(id): Path<String>,
) -> ImportResult<Sse<impl Stream<Item = Result<Event, Infallible>>>> {
    let job = own_job(&state, &seller, &id).await?;
    let first = job_view(&state, &job).await?;
    let seller_id = seller.as_str().to_owned();
    struct Follow {
        state: ApiState,
        seller_id: String,
        last: Option<ImportJob>,
        next: Option<ImportJob>,
        finished: bool,
    }
    let start = Follow {
        state,
        seller_id,
        last: None,
        next: Some(first),
        finished: false,
    };
    let stream = futures::stream::unfold(start, |mut f| async move {
        loop {
            if f.finished {
                return None;
            }
            if let Some(view) = f.next.take() {
                if f.last.as_ref() != Some(&view) {
                    let done = view.is_finished();
                    let event = Event::default()
                        .event(if done { "done" } else { "progress" })
                        .json_data(&view)
                        .unwrap_or_else(|_| Event::default().event("error"));
                    f.finished = done;
                    f.last = Some(view);
                    return Some((Ok(event), f));
                }
            }
            tokio::time::sleep(EVENTS_POLL).await;
            let id = f.last.as_ref().map(|j| j.id.clone()).unwrap_or_default();
            match f.state.repo.job(&f.seller_id, &id).await {
                Ok(Some(job)) => match f.state.repo.counts(&job.id).await {
                    Ok(counts) => f.next = Some(ImportJob::new(&job, counts)),
                    Err(e) => tracing::warn!(error = %e, "import events: cannot read counts"),
                },
                Ok(None) => return None,
                Err(e) => tracing::warn!(error = %e, "import events: cannot read the job"),
            }
        }
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

/// An import's items in discovery order, e.g. `?status=failed` for what went wrong.
#[utoipa::path(
    get,
    path = "/imports/{id}/items",
    tag = "imports",
    params(("id" = String, Path, description = "Import id"), ItemParams),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "One page of items", body = ItemPage),
        (status = 400, description = "`invalid-import-id`, `invalid-status`, `invalid-limit`, `invalid-cursor`, `invalid-query` (e.g. a repeated parameter)", body = service_kit::ErrorEnvelope),
        (status = 401, description = "No valid seller token", body = service_kit::ErrorEnvelope),
        (status = 404, description = "`import-not-found`", body = service_kit::ErrorEnvelope),
    )
)]
pub async fn list_items(
    State(state): State<ApiState>,
    Seller(seller): Seller,
    Path(id): Path<String>,
    AppQuery(params): AppQuery<ItemParams>,
) -> ImportResult<Json<ItemPage>> {
    let status = match params.status.as_deref() {
        None | Some("") => None,
        Some(s @ ("pending" | "importing" | "imported" | "skipped" | "failed")) => Some(s),
        Some(_) => {
            return Err(ImportError::bad_request(
                "invalid-status",
                "status must be one of pending, importing, imported, skipped, failed",
            ))
        }
    };
    let limit = page_size(params.limit.as_deref())?;
    let after = cursor(params.cursor.as_deref())?;
    let job = own_job(&state, &seller, &id).await?;
    let rows = state
        .repo
        .items(&job.id, status, after.as_deref(), limit + 1)
        .await?;
    let (rows, next_cursor) = paged(rows, limit, |i| i.id.clone());
    Ok(Json(ItemPage {
        items: rows.into_iter().map(ImportItem::from).collect(),
        next_cursor,
    }))
}

/// Puts every failed file (and failed listing page) of an import back in line.
#[utoipa::path(
    post,
    path = "/imports/{id}/retry",
    tag = "imports",
    params(("id" = String, Path, description = "Import id")),
    security(("bearer" = [])),
    responses(
        (status = 202, description = "Failed items queued again (0 when none had failed)", body = RetryResult),
        (status = 400, description = "`invalid-import-id`", body = service_kit::ErrorEnvelope),
        (status = 401, description = "No valid seller token", body = service_kit::ErrorEnvelope),
        (status = 404, description = "`import-not-found`", body = service_kit::ErrorEnvelope),
        (status = 503, description = "`queue-unavailable`: retry the call", body = service_kit::ErrorEnvelope),
    )
)]
pub async fn retry_failed(
    State(state): State<ApiState>,
    Seller(seller): Seller,
    Path(id): Path<String>,
) -> ImportResult<(StatusCode, Json<RetryResult>)> {
    let job = own_job(&state, &seller, &id).await?;
    let due = state.repo.retry_failed(&job.id).await?;
    // The rows are committed first; if enqueueing fails the items stay `pending` with
    // a new round, and calling again enqueues them (the dedup key drops repeats).
    state
        .config
        .queues
        .enqueue_due(&state.queue, &due)
        .await
        .map_err(|e| ImportError::QueueUnavailable(e.to_string()))?;
    let job = state
        .repo
        .job(seller.as_str(), &job.id)
        .await?
        .ok_or(ImportError::ImportNotFound)?;
    Ok((
        StatusCode::ACCEPTED,
        Json(RetryResult {
            retried_items: due.items.len(),
            retried_pages: due.listings.len(),
            job: job_view(&state, &job).await?,
        }),
    ))
}

// ------------------------------------------------------------------- images

/// Your imported images, newest first, each with a short-lived signed `url`.
#[utoipa::path(
    get,
    path = "/images",
    tag = "images",
    params(ImageParams),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "One page of your images", body = ImagePage),
        (status = 400, description = "`invalid-source`, `invalid-limit`, `invalid-cursor`, `invalid-query` (e.g. a repeated parameter)", body = service_kit::ErrorEnvelope),
        (status = 401, description = "No valid seller token", body = service_kit::ErrorEnvelope),
    )
)]
pub async fn list_images(
    State(state): State<ApiState>,
    Seller(seller): Seller,
    AppQuery(params): AppQuery<ImageParams>,
) -> ImportResult<Json<ImagePage>> {
    let source = match params.source.as_deref() {
        None | Some("") => None,
        Some("google_drive") => Some(Provider::GoogleDrive),
        Some("dropbox") => Some(Provider::Dropbox),
        Some(_) => {
            return Err(ImportError::bad_request(
                "invalid-source",
                "source must be google_drive or dropbox",
            ))
        }
    };
    let limit = page_size(params.limit.as_deref())?;
    let before = cursor(params.cursor.as_deref())?;
    let rows = state
        .repo
        .images(seller.as_str(), source, before.as_deref(), limit + 1)
        .await?;
    let (rows, next_cursor) = paged(rows, limit, |i| i.image_id.clone());
    let mut items: Vec<Image> = rows.into_iter().map(Image::new).collect();
    attach_urls(&state, &mut items).await;
    Ok(Json(ImagePage { items, next_cursor }))
}

/// One of your imported images. Another seller's is a 404.
#[utoipa::path(
    get,
    path = "/images/{id}",
    tag = "images",
    params(("id" = String, Path, description = "Image id")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The image", body = Image),
        (status = 400, description = "`invalid-image-id`", body = service_kit::ErrorEnvelope),
        (status = 401, description = "No valid seller token", body = service_kit::ErrorEnvelope),
        (status = 404, description = "`image-not-found`", body = service_kit::ErrorEnvelope),
    )
)]
pub async fn get_image(
    State(state): State<ApiState>,
    Seller(seller): Seller,
    Path(id): Path<String>,
) -> ImportResult<Json<Image>> {
    let id = uuid_text(&id)
        .ok_or_else(|| ImportError::bad_request("invalid-image-id", "an image id is a UUID"))?;
    let row = state
        .repo
        .image(seller.as_str(), &id)
        .await?
        .ok_or(ImportError::ImageNotFound)?;
    let mut items = vec![Image::new(row)];
    attach_urls(&state, &mut items).await;
    Ok(Json(items.remove(0)))
}

/// Fills in signed download URLs, reusing fresh ones ([`service_kit::download_urls`]);
/// without them if storage cannot be asked (the rest of the answer is still right, and
/// the next call tries again).
async fn attach_urls(state: &ApiState, images: &mut [Image]) {
    if images.is_empty() {
        return;
    }
    let ids: Vec<String> = images.iter().map(|i| i.image_id.clone()).collect();
    let signed = state.image_urls.urls(&ids, |to_sign| async move {
        state
            .storage
            .download_urls(&to_sign, Some(state.config.image_url_ttl))
            .await
    });
    match signed.await {
        Ok(mut urls) => {
            for image in images {
                image.url = urls.remove(&image.image_id);
            }
        }
        Err(e) => tracing::warn!(error = %e, "cannot get download URLs from storage"),
    }
}
