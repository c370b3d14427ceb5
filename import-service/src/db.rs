//! Jobs, listing pages, items and the image catalog in SQL (SQLite or PostgreSQL through
//! `sqlx::AnyPool`, portable SQL; schema in `migrations/`).
//!
//! Every state change a task makes is one statement or one transaction, and each is
//! guarded by the state it expects (`… WHERE state = 'pending'`), so a task delivered
//! twice, or twice at once, changes nothing the second time.

use std::collections::HashMap;

use audit_events::{Audit, EventType};
use service_kit::db::Dialect;
use sqlx::any::AnyRow;
use sqlx::{Any, AnyPool, Row, Transaction};
use task_queue::sql::SqlLease;
use uuid::Uuid;

use crate::providers::{FolderRef, ListingPosition, Provider, RemoteFile};

pub static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
pub static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

pub fn migrations() -> service_kit::db::Migrations {
    service_kit::db::Migrations {
        sqlite: &SQLITE_MIGRATIONS,
        postgres: &POSTGRES_MIGRATIONS,
    }
}

pub type DbResult<T> = Result<T, sqlx::Error>;

/// Milliseconds since the epoch (how times are stored).
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn decode_err(column: &str, e: impl std::fmt::Display) -> sqlx::Error {
    sqlx::Error::ColumnDecode {
        index: column.to_owned(),
        source: e.to_string().into(),
    }
}

fn json_column<T: serde::de::DeserializeOwned>(row: &AnyRow, column: &str) -> DbResult<T> {
    let raw: String = row.try_get(column)?;
    serde_json::from_str(&raw).map_err(|e| decode_err(column, e))
}

fn to_json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).expect("plain data serializes")
}

/// A job's stored state. `running` covers listing and importing (see [`JobCounts`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobState {
    Running,
    Completed,
    Failed,
}

impl JobState {
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Running => "running",
            JobState::Completed => "completed",
            JobState::Failed => "failed",
        }
    }

    fn parse(raw: &str) -> DbResult<JobState> {
        match raw {
            "running" => Ok(JobState::Running),
            "completed" => Ok(JobState::Completed),
            "failed" => Ok(JobState::Failed),
            other => Err(decode_err("state", format!("unknown job state `{other}`"))),
        }
    }
}

#[derive(Debug, Clone)]
pub struct JobRow {
    pub id: String,
    pub seller_id: String,
    pub provider: Provider,
    pub folder_url: String,
    pub folder: FolderRef,
    pub folder_name: Option<String>,
    pub state: JobState,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
    pub finished_at: Option<i64>,
}

const JOB_COLUMNS: &str = "id, seller_id, provider, folder_url, folder, folder_name, state, \
     error_code, error_message, created_at, updated_at, finished_at";

fn provider_of(raw: &str) -> DbResult<Provider> {
    match raw {
        "google_drive" => Ok(Provider::GoogleDrive),
        "dropbox" => Ok(Provider::Dropbox),
        other => Err(decode_err(
            "provider",
            format!("unknown provider `{other}`"),
        )),
    }
}

fn job_from_row(row: &AnyRow) -> DbResult<JobRow> {
    Ok(JobRow {
        id: row.try_get("id")?,
        seller_id: row.try_get("seller_id")?,
        provider: provider_of(&row.try_get::<String, _>("provider")?)?,
        folder_url: row.try_get("folder_url")?,
        folder: json_column(row, "folder")?,
        folder_name: row.try_get("folder_name")?,
        state: JobState::parse(&row.try_get::<String, _>("state")?)?,
        error_code: row.try_get("error_code")?,
        error_message: row.try_get("error_message")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
        finished_at: row.try_get("finished_at")?,
    })
}

/// Progress of one job, counted from its items and listing pages.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JobCounts {
    /// Every listed entry (files to import and entries skipped at listing).
    pub discovered: i64,
    pub imported: i64,
    pub skipped: i64,
    pub failed: i64,
    /// Waiting for a worker or being imported now.
    pub in_progress: i64,
    pub pages_pending: i64,
    pub pages_done: i64,
    pub pages_failed: i64,
}

/// A listing page and the job it belongs to, as a listing task needs them.
#[derive(Debug, Clone)]
pub struct ListingRow {
    pub id: String,
    pub job_id: String,
    pub position: ListingPosition,
    pub state: String,
    pub attempts: i32,
    pub round: i32,
    /// The job's first page (no parent): its failure fails the job.
    pub is_root: bool,
}

/// What a listing task found on one page.
#[derive(Debug, Default)]
pub struct PageResult {
    pub files: Vec<RemoteFile>,
    /// Entries not imported: (source id, name, path, reason, detail).
    pub skipped: Vec<SkippedEntry>,
    /// Subfolders and the next page.
    pub listings: Vec<ListingPosition>,
}

#[derive(Debug, Clone)]
pub struct SkippedEntry {
    pub source_id: String,
    pub name: String,
    pub path: String,
    pub mime_type: Option<String>,
    pub reason: &'static str,
    pub detail: Option<String>,
}

/// Tasks a transaction made due: what the caller enqueues after commit.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct DueTasks {
    /// (listing id, round)
    pub listings: Vec<(String, i32)>,
    /// (item id, round)
    pub items: Vec<(String, i32)>,
}

impl DueTasks {
    pub fn is_empty(&self) -> bool {
        self.listings.is_empty() && self.items.is_empty()
    }
}

/// `(id, round)` of each row: the tasks rows make due.
fn id_rounds(rows: &[AnyRow]) -> DbResult<Vec<(String, i32)>> {
    rows.iter()
        .map(|r| Ok((r.try_get("id")?, r.try_get("round")?)))
        .collect()
}

/// Outcome of recording a listed page.
#[derive(Debug)]
pub enum PageRecorded {
    /// Recorded now; enqueue these.
    Recorded(DueTasks),
    /// Another delivery recorded it first; these are still due (enqueue again: the
    /// queue's dedup key, or the item's state guard, drops what is already there).
    AlreadyRecorded(DueTasks),
}

/// An item a file task claimed, with what it needs to import it.
#[derive(Debug, Clone)]
pub struct ClaimedItem {
    pub id: String,
    pub job_id: String,
    pub seller_id: String,
    pub source_id: String,
    pub name: String,
    pub checksum: String,
    pub file: RemoteFile,
    /// This claim's attempt number (1 on the first).
    pub attempts: i32,
}

/// What [`ImportRepo::claim_item`] found.
#[derive(Debug, Clone)]
pub enum Claim {
    Claimed(Box<ClaimedItem>),
    /// Already imported, skipped or failed.
    Settled {
        job_id: String,
    },
    /// No such item (its job was removed).
    Missing,
}

/// One item as `GET /imports/{id}/items` shows it.
#[derive(Debug, Clone)]
pub struct ItemRow {
    pub id: String,
    pub source_id: String,
    pub name: String,
    pub path: String,
    pub mime_type: Option<String>,
    pub size: Option<i64>,
    pub state: String,
    pub reason: Option<String>,
    pub detail: Option<String>,
    pub attempts: i32,
    pub image_id: Option<String>,
    pub storage_path: Option<String>,
    pub updated_at: i64,
}

const ITEM_COLUMNS: &str = "id, source_id, name, path, mime_type, size, state, reason, detail, \
     attempts, image_id, storage_path, updated_at";

fn item_from_row(row: &AnyRow) -> DbResult<ItemRow> {
    Ok(ItemRow {
        id: row.try_get("id")?,
        source_id: row.try_get("source_id")?,
        name: row.try_get("name")?,
        path: row.try_get("path")?,
        mime_type: row.try_get("mime_type")?,
        size: row.try_get("size")?,
        state: row.try_get("state")?,
        reason: row.try_get("reason")?,
        detail: row.try_get("detail")?,
        attempts: row.try_get("attempts")?,
        image_id: row.try_get("image_id")?,
        storage_path: row.try_get("storage_path")?,
        updated_at: row.try_get("updated_at")?,
    })
}

/// What storage said about an imported file.
#[derive(Debug, Clone)]
pub struct StoredFile {
    pub image_id: String,
    pub storage_path: String,
    pub mime_type: String,
    pub size: i64,
    pub width: i32,
    pub height: i32,
    pub sha256: String,
}

/// One image of the catalog (`GET /images`).
#[derive(Debug, Clone)]
pub struct ImageRow {
    pub image_id: String,
    pub seller_id: String,
    pub source: Provider,
    pub source_id: String,
    pub name: String,
    pub size: i64,
    pub mime_type: String,
    pub width: i32,
    pub height: i32,
    pub sha256: String,
    pub storage_path: String,
    pub job_id: String,
    pub imported_at: i64,
}

const IMAGE_COLUMNS: &str = "image_id, seller_id, source, source_id, name, size, mime_type, \
     width, height, sha256, storage_path, job_id, imported_at";

fn image_from_row(row: &AnyRow) -> DbResult<ImageRow> {
    Ok(ImageRow {
        image_id: row.try_get("image_id")?,
        seller_id: row.try_get("seller_id")?,
        source: provider_of(&row.try_get::<String, _>("source")?)?,
        source_id: row.try_get("source_id")?,
        name: row.try_get("name")?,
        size: row.try_get("size")?,
        mime_type: row.try_get("mime_type")?,
        width: row.try_get("width")?,
        height: row.try_get("height")?,
        sha256: row.try_get("sha256")?,
        storage_path: row.try_get("storage_path")?,
        job_id: row.try_get("job_id")?,
        imported_at: row.try_get("imported_at")?,
    })
}

/// The checksum an item is known by: the provider's, or the size when it gives none.
pub fn checksum_of(file: &RemoteFile) -> String {
    match (file.checksum(), file.size) {
        (Some(sum), _) => sum.to_owned(),
        (None, Some(size)) => format!("size:{size}"),
        (None, None) => "unknown".to_owned(),
    }
}

/// Rows per multi-row INSERT (PostgreSQL allows 65,535 parameters; SQLite 32,766).
/// Their placeholders come from [`Dialect::placeholder`]: never `$n` on SQLite.
const INSERT_CHUNK: usize = 200;

#[derive(Clone, Debug)]
pub struct ImportRepo {
    pool: AnyPool,
    dialect: Dialect,
    /// Job endings and failed items are recorded in the transaction that makes them.
    audit: Audit,
}

impl ImportRepo {
    /// A repository whose audit events go to the log only (see [`ImportRepo::with_audit`]).
    pub fn new(pool: AnyPool, dialect: Dialect) -> Self {
        ImportRepo {
            pool,
            dialect,
            audit: Audit::log_only(crate::AUDIT_SERVICE_NAME),
        }
    }

    pub fn with_audit(mut self, audit: Audit) -> Self {
        self.audit = audit;
        self
    }

    pub fn audit(&self) -> &Audit {
        &self.audit
    }

    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    /// SQLite: copies what the WAL holds into the database file, without waiting for
    /// readers or writers (`PASSIVE`).
    pub async fn checkpoint_wal(&self) -> DbResult<()> {
        sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
            .execute(&self.pool)
            .await
            .map(drop)
    }

    pub async fn begin(&self) -> DbResult<Transaction<'static, Any>> {
        self.pool.begin().await
    }

    // ------------------------------------------------------------------ jobs

    /// Inserts a job and its root listing page; returns the root listing's id.
    pub async fn insert_job(
        tx: &mut Transaction<'_, Any>,
        job: &JobRow,
        root: &ListingPosition,
    ) -> DbResult<String> {
        sqlx::query(&format!(
            "INSERT INTO import_jobs ({JOB_COLUMNS}) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"
        ))
        .bind(&job.id)
        .bind(&job.seller_id)
        .bind(job.provider.as_str())
        .bind(&job.folder_url)
        .bind(to_json(&job.folder))
        .bind(&job.folder_name)
        .bind(job.state.as_str())
        .bind(&job.error_code)
        .bind(&job.error_message)
        .bind(job.created_at)
        .bind(job.updated_at)
        .bind(job.finished_at)
        .execute(&mut **tx)
        .await?;
        let listing_id = Uuid::now_v7().to_string();
        sqlx::query(
            "INSERT INTO import_listings (id, job_id, parent_id, position, state, created_at, updated_at) \
             VALUES ($1, $2, NULL, $3, 'pending', $4, $4)",
        )
        .bind(&listing_id)
        .bind(&job.id)
        .bind(to_json(root))
        .bind(job.created_at)
        .execute(&mut **tx)
        .await?;
        Ok(listing_id)
    }

    /// Removes a job that never started (its first task could not be enqueued).
    pub async fn delete_unstarted_job(&self, job_id: &str) -> DbResult<()> {
        let mut tx = self.begin().await?;
        sqlx::query("DELETE FROM import_listings WHERE job_id = $1")
            .bind(job_id)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM import_jobs WHERE id = $1")
            .bind(job_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await
    }

    /// One of the seller's jobs (another seller's is `None`).
    pub async fn job(&self, seller_id: &str, job_id: &str) -> DbResult<Option<JobRow>> {
        sqlx::query(&format!(
            "SELECT {JOB_COLUMNS} FROM import_jobs WHERE id = $1 AND seller_id = $2"
        ))
        .bind(job_id)
        .bind(seller_id)
        .fetch_optional(&self.pool)
        .await?
        .as_ref()
        .map(job_from_row)
        .transpose()
    }

    pub async fn job_by_id(&self, job_id: &str) -> DbResult<Option<JobRow>> {
        sqlx::query(&format!(
            "SELECT {JOB_COLUMNS} FROM import_jobs WHERE id = $1"
        ))
        .bind(job_id)
        .fetch_optional(&self.pool)
        .await?
        .as_ref()
        .map(job_from_row)
        .transpose()
    }

    /// Up to `limit` of the seller's jobs, newest first, older than `before`.
    pub async fn jobs(
        &self,
        seller_id: &str,
        before: Option<&str>,
        limit: u32,
    ) -> DbResult<Vec<JobRow>> {
        let rows = sqlx::query(&format!(
            "SELECT {JOB_COLUMNS} FROM import_jobs WHERE seller_id = $1 AND (CAST($2 AS TEXT) IS NULL OR id < $2) \
             ORDER BY id DESC LIMIT $3"
        ))
        .bind(seller_id)
        .bind(before)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(job_from_row).collect()
    }

    pub async fn counts(&self, job_id: &str) -> DbResult<JobCounts> {
        let mut counts = JobCounts::default();
        let rows = sqlx::query(
            "SELECT state, COUNT(*) AS n FROM import_items WHERE job_id = $1 GROUP BY state",
        )
        .bind(job_id)
        .fetch_all(&self.pool)
        .await?;
        for row in rows {
            let state: String = row.try_get("state")?;
            let n: i64 = row.try_get("n")?;
            counts.discovered += n;
            match state.as_str() {
                "imported" => counts.imported += n,
                "skipped" => counts.skipped += n,
                "failed" => counts.failed += n,
                _ => counts.in_progress += n,
            }
        }
        let rows = sqlx::query(
            "SELECT state, COUNT(*) AS n FROM import_listings WHERE job_id = $1 GROUP BY state",
        )
        .bind(job_id)
        .fetch_all(&self.pool)
        .await?;
        for row in rows {
            let state: String = row.try_get("state")?;
            let n: i64 = row.try_get("n")?;
            match state.as_str() {
                "done" => counts.pages_done += n,
                "failed" => counts.pages_failed += n,
                _ => counts.pages_pending += n,
            }
        }
        Ok(counts)
    }

    /// How many of the seller's jobs are running.
    pub async fn running_jobs(&self, seller_id: &str) -> DbResult<i64> {
        sqlx::query(
            "SELECT COUNT(*) AS n FROM import_jobs WHERE seller_id = $1 AND state = 'running'",
        )
        .bind(seller_id)
        .fetch_one(&self.pool)
        .await?
        .try_get("n")
    }

    /// Marks a running job failed as a whole (e.g. its folder is not public).
    pub async fn fail_job(&self, job_id: &str, code: &str, message: &str) -> DbResult<()> {
        let now = now_ms();
        let mut tx = self.pool.begin().await?;
        let failed = sqlx::query(
            "UPDATE import_jobs SET state = 'failed', error_code = $2, error_message = $3, \
             updated_at = $4, finished_at = $4 WHERE id = $1 AND state = 'running' RETURNING seller_id",
        )
        .bind(job_id)
        .bind(code)
        .bind(message)
        .bind(now)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(row) = failed {
            self.record_finished(&mut tx, job_id, &row, code).await?;
        }
        tx.commit().await
    }

    /// Completes a running job when nothing is left to list or import. Returns whether
    /// this call completed it.
    pub async fn complete_job_if_done(&self, job_id: &str) -> DbResult<bool> {
        // A read first: every finished file asks, and almost always the answer is "not
        // yet"; a read takes no write lock (SQLite) and no row lock (PostgreSQL).
        let open_work = sqlx::query(
            "SELECT 1 AS open FROM import_items WHERE job_id = $1 AND state IN ('pending', 'importing') \
             UNION ALL SELECT 1 AS open FROM import_listings WHERE job_id = $1 AND state = 'pending' \
             LIMIT 1",
        )
        .bind(job_id)
        .fetch_optional(&self.pool)
        .await?;
        if open_work.is_some() {
            return Ok(false);
        }
        let now = now_ms();
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query(
            "UPDATE import_jobs SET state = 'completed', updated_at = $2, finished_at = $2 \
             WHERE id = $1 AND state = 'running' \
             AND NOT EXISTS (SELECT 1 FROM import_listings WHERE job_id = $1 \
                 AND (state = 'pending' OR (state = 'failed' AND parent_id IS NULL))) \
             AND NOT EXISTS (SELECT 1 FROM import_items WHERE job_id = $1 AND state IN ('pending', 'importing')) \
             RETURNING seller_id",
        )
        .bind(job_id)
        .bind(now)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = done else {
            return Ok(false);
        };
        self.record_finished(&mut tx, job_id, &row, "completed")
            .await?;
        tx.commit().await?;
        Ok(true)
    }

    /// `import.finished` for a job this transaction just ended (`row` has `seller_id`).
    async fn record_finished(
        &self,
        tx: &mut Transaction<'static, Any>,
        job_id: &str,
        row: &AnyRow,
        how: &str,
    ) -> DbResult<()> {
        let event = self
            .audit
            .event(EventType::ImportFinished)
            .seller(row.try_get::<String, _>("seller_id")?)
            .subject(job_id)
            .reason(how);
        self.audit.record_in(tx, &event).await
    }

    pub async fn set_folder_name(&self, job_id: &str, name: &str) -> DbResult<()> {
        sqlx::query("UPDATE import_jobs SET folder_name = $2 WHERE id = $1")
            .bind(job_id)
            .bind(name)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Puts a job's failed items and listing pages back in line ("retry failed").
    /// Returns the tasks to enqueue; nothing when there was nothing to retry.
    pub async fn retry_failed(&self, job_id: &str) -> DbResult<DueTasks> {
        let now = now_ms();
        let mut tx = self.begin().await?;
        let items = sqlx::query(
            "UPDATE import_items SET state = 'pending', attempts = 0, round = round + 1, \
             reason = NULL, detail = NULL, updated_at = $2 \
             WHERE job_id = $1 AND state = 'failed' AND file IS NOT NULL RETURNING id, round",
        )
        .bind(job_id)
        .bind(now)
        .fetch_all(&mut *tx)
        .await?;
        let listings = sqlx::query(
            "UPDATE import_listings SET state = 'pending', attempts = 0, round = round + 1, \
             error_code = NULL, error_message = NULL, updated_at = $2 \
             WHERE job_id = $1 AND state = 'failed' RETURNING id, round",
        )
        .bind(job_id)
        .bind(now)
        .fetch_all(&mut *tx)
        .await?;
        let due = DueTasks {
            listings: id_rounds(&listings)?,
            items: id_rounds(&items)?,
        };
        if !due.is_empty() {
            sqlx::query(
                "UPDATE import_jobs SET state = 'running', error_code = NULL, error_message = NULL, \
                 finished_at = NULL, updated_at = $2 WHERE id = $1",
            )
            .bind(job_id)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(due)
    }

    // -------------------------------------------------------------- listings

    pub async fn listing(&self, listing_id: &str) -> DbResult<Option<ListingRow>> {
        let Some(row) = sqlx::query(
            "SELECT id, job_id, parent_id, position, state, attempts, round FROM import_listings WHERE id = $1",
        )
        .bind(listing_id)
        .fetch_optional(&self.pool)
        .await?
        else {
            return Ok(None);
        };
        Ok(Some(ListingRow {
            id: row.try_get("id")?,
            job_id: row.try_get("job_id")?,
            position: json_column(&row, "position")?,
            state: row.try_get("state")?,
            attempts: row.try_get("attempts")?,
            round: row.try_get("round")?,
            is_root: row.try_get::<Option<String>, _>("parent_id")?.is_none(),
        }))
    }

    /// Counts one more attempt at a pending listing page; returns the attempt number,
    /// or `None` when the page is no longer pending.
    pub async fn start_listing_attempt(&self, listing_id: &str) -> DbResult<Option<i32>> {
        let row = sqlx::query(
            "UPDATE import_listings SET attempts = attempts + 1, updated_at = $2 \
             WHERE id = $1 AND state = 'pending' RETURNING attempts",
        )
        .bind(listing_id)
        .bind(now_ms())
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| r.try_get("attempts")).transpose()
    }

    /// Notes a transient listing failure (the task is retried).
    pub async fn listing_will_retry(
        &self,
        listing_id: &str,
        code: &str,
        message: &str,
    ) -> DbResult<()> {
        self.set_reason(
            "UPDATE import_listings SET error_code = $2, error_message = $3, updated_at = $4 \
             WHERE id = $1 AND state = 'pending'",
            listing_id,
            code,
            message,
        )
        .await
    }

    /// The code and message a failed listing page recorded.
    pub async fn listing_error(&self, listing_id: &str) -> DbResult<(String, String)> {
        let row =
            sqlx::query("SELECT error_code, error_message FROM import_listings WHERE id = $1")
                .bind(listing_id)
                .fetch_one(&self.pool)
                .await?;
        Ok((
            row.try_get::<Option<String>, _>("error_code")?
                .unwrap_or_else(|| "listing-failed".to_owned()),
            row.try_get::<Option<String>, _>("error_message")?
                .unwrap_or_default(),
        ))
    }

    /// Settles running jobs with nothing left to do: completed, or failed when their
    /// root page failed (a safety net for a worker that died between its last commit
    /// and the job check). Returns how many it settled.
    pub async fn complete_finished_jobs(&self) -> DbResult<u64> {
        let running = sqlx::query("SELECT id FROM import_jobs WHERE state = 'running'")
            .fetch_all(&self.pool)
            .await?;
        let mut settled = 0;
        for row in running {
            let id: String = row.try_get("id")?;
            let failed_root = sqlx::query(
                "SELECT id FROM import_listings WHERE job_id = $1 AND parent_id IS NULL AND state = 'failed'",
            )
            .bind(&id)
            .fetch_optional(&self.pool)
            .await?;
            if let Some(root) = failed_root {
                let (code, message) = self
                    .listing_error(&root.try_get::<String, _>("id")?)
                    .await?;
                self.fail_job(&id, &code, &message).await?;
                settled += 1;
            } else if self.complete_job_if_done(&id).await? {
                settled += 1;
            }
        }
        Ok(settled)
    }

    /// Records a listing page as failed for good.
    pub async fn listing_failed(
        &self,
        listing_id: &str,
        code: &str,
        message: &str,
    ) -> DbResult<()> {
        self.set_reason(
            "UPDATE import_listings SET state = 'failed', error_code = $2, error_message = $3, \
             updated_at = $4 WHERE id = $1 AND state = 'pending'",
            listing_id,
            code,
            message,
        )
        .await
    }

    /// Which of these (source id, checksum) pairs the seller already has in the catalog:
    /// source id → image id.
    pub async fn already_imported(
        &self,
        seller_id: &str,
        source: Provider,
        files: &[(&str, &str)],
    ) -> DbResult<HashMap<String, (String, String)>> {
        let mut found = HashMap::new();
        for chunk in files.chunks(INSERT_CHUNK) {
            let mut sql = String::from(
                "SELECT source_id, checksum, image_id, storage_path FROM images WHERE ",
            );
            let p = |n| self.dialect.placeholder(n);
            sql.push_str(&format!(
                "seller_id = {} AND source = {} AND source_id IN (",
                p(1),
                p(2)
            ));
            for i in 0..chunk.len() {
                if i > 0 {
                    sql.push_str(", ");
                }
                sql.push_str(&p(i + 3));
            }
            sql.push(')');
            let mut query = sqlx::query(&sql).bind(seller_id).bind(source.as_str());
            for (source_id, _) in chunk {
                query = query.bind(*source_id);
            }
            let wanted: HashMap<&str, &str> = chunk.iter().copied().collect();
            for row in query.fetch_all(&self.pool).await? {
                let source_id: String = row.try_get("source_id")?;
                let checksum: String = row.try_get("checksum")?;
                if wanted.get(source_id.as_str()) == Some(&checksum.as_str()) {
                    found.insert(
                        source_id,
                        (row.try_get("image_id")?, row.try_get("storage_path")?),
                    );
                }
            }
        }
        Ok(found)
    }

    /// Records what one listing page held, in one transaction: marks the page done,
    /// adds its files as pending items (or skipped: already imported, not an image…),
    /// and its subfolders and next page as pending listings.
    pub async fn record_page(
        &self,
        listing: &ListingRow,
        seller_id: &str,
        source: Provider,
        page: &PageResult,
    ) -> DbResult<PageRecorded> {
        let pairs: Vec<(&str, String)> = page
            .files
            .iter()
            .map(|f| (f.source_id.as_str(), checksum_of(f)))
            .collect();
        let lookup: Vec<(&str, &str)> = pairs.iter().map(|(s, c)| (*s, c.as_str())).collect();
        let known = self.already_imported(seller_id, source, &lookup).await?;

        let now = now_ms();
        let mut tx = self.begin().await?;
        let claimed = sqlx::query(
            "UPDATE import_listings SET state = 'done', error_code = NULL, error_message = NULL, \
             updated_at = $2 WHERE id = $1 AND state = 'pending'",
        )
        .bind(&listing.id)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        if claimed.rows_affected() == 0 {
            tx.rollback().await?;
            return Ok(PageRecorded::AlreadyRecorded(
                self.due_from_listing(&listing.id).await?,
            ));
        }

        struct NewItem<'a> {
            source_id: &'a str,
            name: &'a str,
            path: &'a str,
            mime_type: Option<&'a str>,
            size: Option<i64>,
            checksum: String,
            file: Option<String>,
            state: &'static str,
            reason: Option<&'a str>,
            detail: Option<String>,
            image_id: Option<String>,
            storage_path: Option<String>,
        }
        let mut rows: Vec<NewItem<'_>> = Vec::with_capacity(page.files.len() + page.skipped.len());
        for (file, (_, checksum)) in page.files.iter().zip(&pairs) {
            let known = known.get(&file.source_id);
            rows.push(NewItem {
                source_id: &file.source_id,
                name: &file.name,
                path: &file.path,
                mime_type: Some(file.image_type.mime()),
                size: file.size.map(|s| s as i64),
                checksum: checksum.clone(),
                file: Some(to_json(file)),
                state: if known.is_some() {
                    "skipped"
                } else {
                    "pending"
                },
                reason: known.map(|_| "already-imported"),
                detail: known.map(|_| "imported before with the same checksum".to_owned()),
                image_id: known.map(|(id, _)| id.clone()),
                storage_path: known.map(|(_, p)| p.clone()),
            });
        }
        for s in &page.skipped {
            rows.push(NewItem {
                source_id: &s.source_id,
                name: &s.name,
                path: &s.path,
                mime_type: s.mime_type.as_deref(),
                size: None,
                checksum: String::new(),
                file: None,
                state: "skipped",
                reason: Some(s.reason),
                detail: s.detail.clone(),
                image_id: None,
                storage_path: None,
            });
        }
        for chunk in rows.chunks(INSERT_CHUNK) {
            const COLS: usize = 18;
            let mut sql = String::from(
                "INSERT INTO import_items (id, job_id, listing_id, seller_id, source_id, name, path, \
                 mime_type, size, checksum, file, state, reason, detail, image_id, storage_path, \
                 created_at, updated_at) VALUES ",
            );
            for i in 0..chunk.len() {
                if i > 0 {
                    sql.push_str(", ");
                }
                sql.push('(');
                for c in 0..COLS {
                    if c > 0 {
                        sql.push_str(", ");
                    }
                    sql.push_str(&self.dialect.placeholder(i * COLS + c + 1));
                }
                sql.push(')');
            }
            sql.push_str(" ON CONFLICT (job_id, source_id) DO NOTHING");
            let mut query = sqlx::query(&sql);
            for item in chunk {
                query = query
                    .bind(Uuid::now_v7().to_string())
                    .bind(&listing.job_id)
                    .bind(&listing.id)
                    .bind(seller_id)
                    .bind(item.source_id)
                    .bind(item.name)
                    .bind(item.path)
                    .bind(item.mime_type)
                    .bind(item.size)
                    .bind(&item.checksum)
                    .bind(&item.file)
                    .bind(item.state)
                    .bind(item.reason)
                    .bind(&item.detail)
                    .bind(&item.image_id)
                    .bind(&item.storage_path)
                    .bind(now)
                    .bind(now);
            }
            query.execute(&mut *tx).await?;
        }
        for position in &page.listings {
            sqlx::query(
                "INSERT INTO import_listings (id, job_id, parent_id, position, state, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, 'pending', $5, $5)",
            )
            .bind(Uuid::now_v7().to_string())
            .bind(&listing.job_id)
            .bind(&listing.id)
            .bind(to_json(position))
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(PageRecorded::Recorded(
            self.due_from_listing(&listing.id).await?,
        ))
    }

    /// The pending work a recorded listing page created.
    pub async fn due_from_listing(&self, listing_id: &str) -> DbResult<DueTasks> {
        let items = sqlx::query(
            "SELECT id, round FROM import_items WHERE listing_id = $1 AND state IN ('pending', 'importing')",
        )
        .bind(listing_id)
        .fetch_all(&self.pool)
        .await?;
        let listings = sqlx::query(
            "SELECT id, round FROM import_listings WHERE parent_id = $1 AND state = 'pending'",
        )
        .bind(listing_id)
        .fetch_all(&self.pool)
        .await?;
        Ok(DueTasks {
            listings: id_rounds(&listings)?,
            items: id_rounds(&items)?,
        })
    }

    /// Runs one of the reason-recording updates: `$1` id, `$2` code, `$3` message,
    /// `$4` now.
    async fn set_reason(&self, sql: &str, id: &str, code: &str, message: &str) -> DbResult<()> {
        sqlx::query(sql)
            .bind(id)
            .bind(code)
            .bind(message)
            .bind(now_ms())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    // ----------------------------------------------------------------- items

    /// Takes an item to import: `pending`, or `importing` left by a worker that died
    /// (its task came back). `None` when it is already imported, skipped or failed.
    pub async fn claim_item(&self, item_id: &str) -> DbResult<Claim> {
        let Some(row) = sqlx::query(
            "UPDATE import_items SET state = 'importing', attempts = attempts + 1, updated_at = $2 \
             WHERE id = $1 AND state IN ('pending', 'importing') AND file IS NOT NULL \
             RETURNING id, job_id, seller_id, source_id, name, checksum, file, attempts",
        )
        .bind(item_id)
        .bind(now_ms())
        .fetch_optional(&self.pool)
        .await?
        else {
            let job = sqlx::query("SELECT job_id FROM import_items WHERE id = $1")
                .bind(item_id)
                .fetch_optional(&self.pool)
                .await?;
            return Ok(match job {
                Some(row) => Claim::Settled {
                    job_id: row.try_get("job_id")?,
                },
                None => Claim::Missing,
            });
        };
        Ok(Claim::Claimed(Box::new(ClaimedItem {
            id: row.try_get("id")?,
            job_id: row.try_get("job_id")?,
            seller_id: row.try_get("seller_id")?,
            source_id: row.try_get("source_id")?,
            name: row.try_get("name")?,
            checksum: row.try_get("checksum")?,
            file: json_column(&row, "file")?,
            attempts: row.try_get("attempts")?,
        })))
    }

    /// Records an imported item and adds it to the seller's catalog, in one transaction,
    /// which also acks the file task when its SQL `lease` is given (the queue is in this
    /// database). An item no longer `pending`/`importing` (settled by another delivery)
    /// is left as it is and gets no catalog row. Returns whether the task was acked.
    pub async fn item_imported(
        &self,
        item: &ClaimedItem,
        source: Provider,
        stored: &StoredFile,
        lease: Option<&SqlLease>,
    ) -> DbResult<bool> {
        let now = now_ms();
        let mut tx = self.begin().await?;
        let recorded = sqlx::query(
            "UPDATE import_items SET state = 'imported', image_id = $2, storage_path = $3, \
             size = $4, mime_type = $5, reason = NULL, detail = NULL, updated_at = $6 \
             WHERE id = $1 AND state IN ('pending', 'importing')",
        )
        .bind(&item.id)
        .bind(&stored.image_id)
        .bind(&stored.storage_path)
        .bind(stored.size)
        .bind(&stored.mime_type)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        if recorded.rows_affected() > 0 {
            sqlx::query(
                "INSERT INTO images (image_id, seller_id, source, source_id, checksum, name, size, \
                 mime_type, width, height, sha256, storage_path, job_id, item_id, imported_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15) \
                 ON CONFLICT DO NOTHING",
            )
            .bind(&stored.image_id)
            .bind(&item.seller_id)
            .bind(source.as_str())
            .bind(&item.source_id)
            .bind(&item.checksum)
            .bind(&item.name)
            .bind(stored.size)
            .bind(&stored.mime_type)
            .bind(stored.width)
            .bind(stored.height)
            .bind(&stored.sha256)
            .bind(&stored.storage_path)
            .bind(&item.job_id)
            .bind(&item.id)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        let acked = match lease {
            Some(lease) => lease.ack_in(&mut tx).await?,
            None => false,
        };
        tx.commit().await?;
        Ok(acked)
    }

    /// Puts an item back to `pending` after a transient failure (its task is retried).
    /// `uncounted`: the attempt just made is given back (it was not the file's failure).
    pub async fn item_will_retry(
        &self,
        item_id: &str,
        code: &str,
        detail: &str,
        uncounted: bool,
    ) -> DbResult<()> {
        self.set_reason(
            if uncounted {
                "UPDATE import_items SET state = 'pending', reason = $2, detail = $3, updated_at = $4, \
                 attempts = attempts - 1 WHERE id = $1 AND state = 'importing'"
            } else {
                "UPDATE import_items SET state = 'pending', reason = $2, detail = $3, updated_at = $4 \
                 WHERE id = $1 AND state = 'importing'"
            },
            item_id,
            code,
            detail,
        )
        .await
    }

    /// Records an item as failed for good, with a stable reason.
    /// The item and its `import.item_failed` event commit together.
    pub async fn item_failed(&self, item_id: &str, code: &str, detail: &str) -> DbResult<()> {
        let mut tx = self.pool.begin().await?;
        let failed = sqlx::query(
            "UPDATE import_items SET state = 'failed', reason = $2, detail = $3, updated_at = $4 \
             WHERE id = $1 AND state IN ('pending', 'importing') RETURNING job_id, seller_id, source_id",
        )
        .bind(item_id)
        .bind(code)
        .bind(detail)
        .bind(now_ms())
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(row) = failed {
            let event = self
                .audit
                .event(EventType::ImportItemFailed)
                .seller(row.try_get::<String, _>("seller_id")?)
                .subject(item_id)
                .reason(code)
                .detail("job_id", row.try_get::<String, _>("job_id")?)
                .detail("source_id", row.try_get::<String, _>("source_id")?);
            self.audit.record_in(&mut tx, &event).await?;
        }
        tx.commit().await
    }

    /// A job's items in id order after `after`, optionally of one state.
    pub async fn items(
        &self,
        job_id: &str,
        state: Option<&str>,
        after: Option<&str>,
        limit: u32,
    ) -> DbResult<Vec<ItemRow>> {
        let rows = sqlx::query(&format!(
            "SELECT {ITEM_COLUMNS} FROM import_items WHERE job_id = $1 \
             AND (CAST($2 AS TEXT) IS NULL OR state = $2) AND (CAST($3 AS TEXT) IS NULL OR id > $3) ORDER BY id LIMIT $4"
        ))
        .bind(job_id)
        .bind(state)
        .bind(after)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(item_from_row).collect()
    }

    /// Items per state across all jobs (the metrics gauge).
    pub async fn items_per_state(&self) -> DbResult<Vec<(String, i64)>> {
        let rows = sqlx::query("SELECT state, COUNT(*) AS n FROM import_items GROUP BY state")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("state")?, r.try_get("n")?)))
            .collect()
    }

    // ---------------------------------------------------------------- images

    /// Up to `limit` of the seller's images, newest first, older than `before`.
    pub async fn images(
        &self,
        seller_id: &str,
        source: Option<Provider>,
        before: Option<&str>,
        limit: u32,
    ) -> DbResult<Vec<ImageRow>> {
        // One statement per shape, each a plain range over `images_by_seller` or
        // `images_by_seller_source`: an `($n IS NULL OR …)` condition is not used as an
        // index bound, so a deep cursor would scan every newer row.
        let mut conditions = String::new();
        let mut next_param = 3;
        if source.is_some() {
            conditions.push_str(&format!(" AND source = ${next_param}"));
            next_param += 1;
        }
        if before.is_some() {
            conditions.push_str(&format!(" AND image_id < ${next_param}"));
        }
        let sql = format!(
            "SELECT {IMAGE_COLUMNS} FROM images WHERE seller_id = $1{conditions} \
             ORDER BY image_id DESC LIMIT $2"
        );
        let mut query = sqlx::query(&sql).bind(seller_id).bind(i64::from(limit));
        if let Some(source) = source {
            query = query.bind(source.as_str());
        }
        if let Some(before) = before {
            query = query.bind(before);
        }
        let rows = query.fetch_all(&self.pool).await?;
        rows.iter().map(image_from_row).collect()
    }

    /// One of the seller's images (another seller's is `None`).
    pub async fn image(&self, seller_id: &str, image_id: &str) -> DbResult<Option<ImageRow>> {
        sqlx::query(&format!(
            "SELECT {IMAGE_COLUMNS} FROM images WHERE seller_id = $1 AND image_id = $2"
        ))
        .bind(seller_id)
        .bind(image_id)
        .fetch_optional(&self.pool)
        .await?
        .as_ref()
        .map(image_from_row)
        .transpose()
    }
}
