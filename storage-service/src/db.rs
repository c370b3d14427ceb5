//! The Storage Service's SQL: pending uploads, image records and request nonces.
//!
//! Portable SQL over `sqlx::AnyPool` (SQLite or PostgreSQL); every state change that
//! must be atomic is a single conditional `UPDATE` or one transaction. Reads use the
//! pool, writes the [`Writer`] (on SQLite one connection that writes in turn).

use async_trait::async_trait;
use service_kit::db::{Database, DbError, Writer};
use shared_signing::{NonceStore, NonceStoreError};
use sqlx::any::AnyRow;
use sqlx::{AnyPool, Connection, Row};

use crate::error::StorageResult;

pub static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
pub static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

pub fn migrations() -> service_kit::db::Migrations {
    service_kit::db::Migrations {
        sqlite: &SQLITE_MIGRATIONS,
        postgres: &POSTGRES_MIGRATIONS,
    }
}

/// An upload announced through `/internal/presign`.
#[derive(Debug, Clone)]
pub struct PendingUpload {
    pub id: String,
    pub owner_id: String,
    pub filename: String,
    pub content_type: String,
    pub size: i64,
    pub sha256: String,
    pub state: String,
    pub created_at: i64,
    pub expires_at: i64,
}

/// A stored image.
#[derive(Debug, Clone)]
pub struct ImageRow {
    pub id: String,
    pub owner_id: String,
    pub state: String,
    pub source: String,
    pub source_ref: Option<String>,
    pub ingest_key: Option<String>,
    pub upload_id: Option<String>,
    pub filename: String,
    pub content_type: String,
    pub size: i64,
    pub sha256: String,
    pub md5: Option<String>,
    pub width: i64,
    pub height: i64,
    pub storage_key: String,
    pub created_at: i64,
    pub completed_at: Option<i64>,
}

/// What happened when a PUT tried to take an upload.
#[derive(Debug)]
pub enum Claim {
    Taken(PendingUpload),
    NotFound,
    AlreadyCompleted,
    InProgress,
}

#[derive(Clone, Debug)]
pub struct Repo {
    /// Reads.
    pool: AnyPool,
    /// Writes (on SQLite one connection of their own, see [`Writer`]).
    writer: Writer,
}

const IMAGE_COLUMNS: &str =
    "id, owner_id, state, source, source_ref, ingest_key, upload_id, filename, \
     content_type, size, sha256, md5, width, height, storage_key, created_at, completed_at";

fn image_from_row(row: &AnyRow) -> Result<ImageRow, sqlx::Error> {
    Ok(ImageRow {
        id: row.try_get("id")?,
        owner_id: row.try_get("owner_id")?,
        state: row.try_get("state")?,
        source: row.try_get("source")?,
        source_ref: row.try_get("source_ref")?,
        ingest_key: row.try_get("ingest_key")?,
        upload_id: row.try_get("upload_id")?,
        filename: row.try_get("filename")?,
        content_type: row.try_get("content_type")?,
        size: row.try_get("size")?,
        sha256: row.try_get("sha256")?,
        md5: row.try_get("md5")?,
        width: row.try_get("width")?,
        height: row.try_get("height")?,
        storage_key: row.try_get("storage_key")?,
        created_at: row.try_get("created_at")?,
        completed_at: row.try_get("completed_at")?,
    })
}

fn pending_from_row(row: &AnyRow) -> Result<PendingUpload, sqlx::Error> {
    Ok(PendingUpload {
        id: row.try_get("id")?,
        owner_id: row.try_get("owner_id")?,
        filename: row.try_get("filename")?,
        content_type: row.try_get("content_type")?,
        size: row.try_get("size")?,
        sha256: row.try_get("sha256")?,
        state: row.try_get("state")?,
        created_at: row.try_get("created_at")?,
        expires_at: row.try_get("expires_at")?,
    })
}

impl Repo {
    /// The repository of a connected, migrated database.
    pub async fn open(db: &Database) -> Result<Self, DbError> {
        Ok(Repo {
            pool: db.pool.clone(),
            writer: Writer::open(db).await?,
        })
    }

    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    pub async fn insert_pending(&self, upload: &PendingUpload) -> StorageResult<()> {
        let mut conn = self.writer.acquire().await?;
        sqlx::query(
            "INSERT INTO pending_uploads (id, owner_id, filename, content_type, size, sha256, state, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6, 'pending', $7, $8)",
        )
        .bind(&upload.id)
        .bind(&upload.owner_id)
        .bind(&upload.filename)
        .bind(&upload.content_type)
        .bind(upload.size)
        .bind(&upload.sha256)
        .bind(upload.created_at)
        .bind(upload.expires_at)
        .execute(&mut *conn)
        .await?;
        Ok(())
    }

    /// Records several pending uploads in one statement (one transaction).
    pub async fn insert_pending_many(&self, uploads: &[&PendingUpload]) -> StorageResult<()> {
        if uploads.is_empty() {
            return Ok(());
        }
        let mut sql = String::from(
            "INSERT INTO pending_uploads (id, owner_id, filename, content_type, size, sha256, state, created_at, expires_at) VALUES ",
        );
        for i in 0..uploads.len() {
            let b = i * 8;
            if i > 0 {
                sql.push_str(", ");
            }
            sql.push_str(&format!(
                "(${}, ${}, ${}, ${}, ${}, ${}, 'pending', ${}, ${})",
                b + 1,
                b + 2,
                b + 3,
                b + 4,
                b + 5,
                b + 6,
                b + 7,
                b + 8
            ));
        }
        let mut query = sqlx::query(&sql);
        for upload in uploads {
            query = query
                .bind(&upload.id)
                .bind(&upload.owner_id)
                .bind(&upload.filename)
                .bind(&upload.content_type)
                .bind(upload.size)
                .bind(&upload.sha256)
                .bind(upload.created_at)
                .bind(upload.expires_at);
        }
        let mut conn = self.writer.acquire().await?;
        query.execute(&mut *conn).await?;
        Ok(())
    }

    pub async fn pending(&self, id: &str) -> StorageResult<Option<PendingUpload>> {
        let row = sqlx::query(
            "SELECT id, owner_id, filename, content_type, size, sha256, state, created_at, expires_at \
             FROM pending_uploads WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.as_ref().map(pending_from_row).transpose()?)
    }

    /// Takes the upload for one PUT. Exactly one concurrent caller wins; a claim whose
    /// heartbeat is older than `stale_before` (its holder died) can be taken over.
    pub async fn claim(
        &self,
        id: &str,
        claim_id: &str,
        now: i64,
        stale_before: i64,
    ) -> StorageResult<Claim> {
        let mut conn = self.writer.acquire().await?;
        let updated = sqlx::query(
            "UPDATE pending_uploads SET state = 'receiving', claim_id = $2, claimed_at = $3 \
             WHERE id = $1 AND (state = 'pending' OR (state = 'receiving' AND claimed_at < $4))",
        )
        .bind(id)
        .bind(claim_id)
        .bind(now)
        .bind(stale_before)
        .execute(&mut *conn)
        .await?
        .rows_affected();
        drop(conn);
        let current = self.pending(id).await?;
        Ok(match current {
            None => Claim::NotFound,
            Some(upload) if updated == 1 => Claim::Taken(upload),
            Some(upload) if upload.state == "completed" => Claim::AlreadyCompleted,
            Some(_) => Claim::InProgress,
        })
    }

    /// Keeps a claim alive during a long upload.
    pub async fn heartbeat(&self, id: &str, claim_id: &str, now: i64) -> StorageResult<()> {
        let mut conn = self.writer.acquire().await?;
        sqlx::query(
            "UPDATE pending_uploads SET claimed_at = $3 WHERE id = $1 AND claim_id = $2 AND state = 'receiving'",
        )
        .bind(id)
        .bind(claim_id)
        .bind(now)
        .execute(&mut *conn)
        .await?;
        Ok(())
    }

    /// Gives a claim back after a failed PUT, so the URL can be retried until it expires.
    pub async fn release(&self, id: &str, claim_id: &str) -> StorageResult<()> {
        let mut conn = self.writer.acquire().await?;
        sqlx::query(
            "UPDATE pending_uploads SET state = 'pending', claim_id = NULL, claimed_at = NULL \
             WHERE id = $1 AND claim_id = $2 AND state = 'receiving'",
        )
        .bind(id)
        .bind(claim_id)
        .execute(&mut *conn)
        .await?;
        Ok(())
    }

    /// Records an image whose object is about to be committed.
    pub async fn insert_committing(
        &self,
        image: &ImageRow,
    ) -> StorageResult<Result<(), sqlx::Error>> {
        let mut conn = self.writer.acquire().await?;
        let result = sqlx::query(
            "INSERT INTO images (id, owner_id, state, source, source_ref, ingest_key, upload_id, filename, content_type, \
             size, sha256, md5, width, height, storage_key, created_at) \
             VALUES ($1, $2, 'committing', $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)",
        )
        .bind(&image.id)
        .bind(&image.owner_id)
        .bind(&image.source)
        .bind(&image.source_ref)
        .bind(&image.ingest_key)
        .bind(&image.upload_id)
        .bind(&image.filename)
        .bind(&image.content_type)
        .bind(image.size)
        .bind(&image.sha256)
        .bind(&image.md5)
        .bind(image.width)
        .bind(image.height)
        .bind(&image.storage_key)
        .bind(image.created_at)
        .execute(&mut *conn)
        .await;
        match result {
            Ok(_) => Ok(Ok(())),
            Err(e) if service_kit::db::is_unique_violation(&e) => Ok(Err(e)),
            Err(e) => Err(e.into()),
        }
    }

    /// Marks the image complete and, for an upload, the pending upload completed, in one
    /// transaction. Returns false if the upload's claim was lost meanwhile.
    pub async fn complete(
        &self,
        image_id: &str,
        upload: Option<(&str, &str)>,
        now: i64,
    ) -> StorageResult<bool> {
        let mut conn = self.writer.acquire().await?;
        let mut tx = conn.begin().await?;
        if let Some((upload_id, claim_id)) = upload {
            let done = sqlx::query(
                "UPDATE pending_uploads SET state = 'completed', image_id = $3, claim_id = NULL \
                 WHERE id = $1 AND claim_id = $2 AND state = 'receiving'",
            )
            .bind(upload_id)
            .bind(claim_id)
            .bind(image_id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if done != 1 {
                tx.rollback().await?;
                return Ok(false);
            }
        }
        sqlx::query("UPDATE images SET state = 'complete', completed_at = $2 WHERE id = $1")
            .bind(image_id)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Deletes an image row only while it is still 'committing'; true if it did.
    pub async fn delete_committing(&self, image_id: &str) -> StorageResult<bool> {
        let mut conn = self.writer.acquire().await?;
        let done = sqlx::query("DELETE FROM images WHERE id = $1 AND state = 'committing'")
            .bind(image_id)
            .execute(&mut *conn)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    pub async fn delete_image(&self, image_id: &str) -> StorageResult<()> {
        let mut conn = self.writer.acquire().await?;
        sqlx::query("DELETE FROM images WHERE id = $1")
            .bind(image_id)
            .execute(&mut *conn)
            .await?;
        Ok(())
    }

    pub async fn image(&self, id: &str) -> StorageResult<Option<ImageRow>> {
        let row = sqlx::query(&format!("SELECT {IMAGE_COLUMNS} FROM images WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.as_ref().map(image_from_row).transpose()?)
    }

    pub async fn image_by_ingest_key(
        &self,
        owner_id: &str,
        key: &str,
    ) -> StorageResult<Option<ImageRow>> {
        let row = sqlx::query(&format!(
            "SELECT {IMAGE_COLUMNS} FROM images WHERE owner_id = $1 AND ingest_key = $2"
        ))
        .bind(owner_id)
        .bind(key)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.as_ref().map(image_from_row).transpose()?)
    }

    /// Owners of the complete images among `ids` (for download URLs), as
    /// `(image id, owner id)`.
    pub async fn complete_image_owners(
        &self,
        ids: &[String],
    ) -> StorageResult<Vec<(String, String)>> {
        let mut out = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(200) {
            let placeholders: Vec<String> = (1..=chunk.len()).map(|i| format!("${i}")).collect();
            // By primary key only, the state checked here: with `state = 'complete'` in
            // the WHERE clause SQLite walks `images_state_created_at`, every complete
            // image, for each call.
            let sql = format!(
                "SELECT id, owner_id, state FROM images WHERE id IN ({})",
                placeholders.join(", ")
            );
            let mut query = sqlx::query(&sql);
            for id in chunk {
                query = query.bind(id);
            }
            for row in query.fetch_all(&self.pool).await? {
                let state: String = row.try_get("state")?;
                if state == "complete" {
                    out.push((row.try_get("id")?, row.try_get("owner_id")?));
                }
            }
        }
        Ok(out)
    }

    /// Rows left 'committing' before `before` (their writer died).
    pub async fn stale_committing(&self, before: i64, limit: i64) -> StorageResult<Vec<ImageRow>> {
        let rows = sqlx::query(&format!(
            "SELECT {IMAGE_COLUMNS} FROM images WHERE state = 'committing' AND created_at < $1 LIMIT $2"
        ))
        .bind(before)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(image_from_row).collect::<Result<_, _>>()?)
    }

    /// Housekeeping: forget expired nonces and long-expired pending uploads; free dead claims.
    pub async fn sweep(
        &self,
        now: i64,
        stale_claim_before: i64,
        keep_expired_for: i64,
    ) -> StorageResult<u64> {
        let mut changed = 0;
        changed += sqlx::query("DELETE FROM request_nonces WHERE expires_at < $1")
            .bind(now)
            .execute(&mut *self.writer.acquire().await?)
            .await?
            .rows_affected();
        changed += sqlx::query(
            "DELETE FROM pending_uploads WHERE state <> 'receiving' AND expires_at < $1",
        )
        .bind(now - keep_expired_for)
        .execute(&mut *self.writer.acquire().await?)
        .await?
        .rows_affected();
        changed += sqlx::query(
            "UPDATE pending_uploads SET state = 'pending', claim_id = NULL, claimed_at = NULL \
             WHERE state = 'receiving' AND claimed_at < $1",
        )
        .bind(stale_claim_before)
        .execute(&mut *self.writer.acquire().await?)
        .await?
        .rows_affected();
        Ok(changed)
    }

    pub async fn count_images(&self) -> StorageResult<i64> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM images")
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get("n")?)
    }
}

/// Nonces in SQL, so every replica of the service refuses a replay.
pub struct SqlNonceStore(pub Repo);

#[async_trait]
impl NonceStore for SqlNonceStore {
    async fn remember(
        &self,
        key_id: &str,
        nonce: &str,
        expires_at: i64,
    ) -> Result<bool, NonceStoreError> {
        let unavailable = |e: sqlx::Error| NonceStoreError::new(service_kit::db::short_error(&e));
        let mut conn = self.0.writer.acquire().await.map_err(unavailable)?;
        let inserted = sqlx::query(
            "INSERT INTO request_nonces (key_id, nonce, expires_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
        )
        .bind(key_id)
        .bind(nonce)
        .bind(expires_at)
        .execute(&mut *conn)
        .await
        .map_err(unavailable)?
        .rows_affected();
        Ok(inserted == 1)
    }
}
