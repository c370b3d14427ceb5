//! The one verified write path: uploads and ingests both come through [`receive`].
//!
//! The body streams through, chunk by chunk, into a blob writer that makes nothing
//! visible until commit, while it is counted (reading stops at declared size + 1 byte),
//! hashed (SHA-256, and MD5 when one was declared) and inspected (magic bytes,
//! dimensions and pixel cap, structural completeness). Only when every check passed is
//! the caller handed a [`Verified`] body whose object it may commit; on any failure the
//! writer is aborted (and dropping it — a client that disconnected — aborts too).

use std::time::{Duration, Instant};

use axum::body::Body;
use futures::StreamExt;
use md5::Md5;
use service_kit::media::ImageType;
use sha2::{Digest, Sha256};

use crate::blobs::{BlobKey, BlobStore, BlobWriter};
use crate::domain::{Md5Hex, Sha256Hex};
use crate::error::{StorageError, StorageResult};
use crate::inspect::ImageInspector;

/// What the body must be.
#[derive(Debug, Clone)]
pub struct Expectation {
    pub image_type: ImageType,
    pub size: u64,
    pub sha256: Option<Sha256Hex>,
    pub md5: Option<Md5Hex>,
    pub max_pixels: u64,
    pub idle_timeout: Duration,
}

/// A body that passed every check; its object is written but not yet visible.
pub struct Verified {
    pub writer: Box<dyn BlobWriter>,
    pub sha256: Sha256Hex,
    pub md5: Option<Md5Hex>,
    pub width: u32,
    pub height: u32,
}

/// Called now and then during a long body (e.g. to keep an upload claim alive).
pub type Heartbeat<'a> = &'a (dyn Fn() -> futures::future::BoxFuture<'static, ()> + Send + Sync);

const HEARTBEAT_EVERY: Duration = Duration::from_secs(20);

/// Streams `body` into `key` on `store`, verifying it against `expect`.
pub async fn receive(
    store: &dyn BlobStore,
    key: &BlobKey,
    expect: &Expectation,
    body: Body,
    heartbeat: Option<Heartbeat<'_>>,
) -> StorageResult<Verified> {
    let writer = store.begin_write(key).await?;
    let mut guard = AbortOnError(Some(writer));
    let outcome = stream_and_check(&mut guard, expect, body, heartbeat).await;
    match outcome {
        Ok(checks) => {
            let writer = guard
                .0
                .take()
                .ok_or_else(|| StorageError::Internal("writer lost".into()))?;
            Ok(Verified {
                writer,
                sha256: checks.0,
                md5: checks.1,
                width: checks.2,
                height: checks.3,
            })
        }
        Err(e) => {
            if let Some(writer) = guard.0.take() {
                if let Err(abort_err) = writer.abort().await {
                    tracing::warn!(error = %abort_err, "could not abort a rejected write; the blob store sweeper will remove it");
                }
            }
            Err(e)
        }
    }
}

/// Holds the writer so that a dropped request future still aborts it (via the writer's Drop).
struct AbortOnError(Option<Box<dyn BlobWriter>>);

async fn stream_and_check(
    guard: &mut AbortOnError,
    expect: &Expectation,
    body: Body,
    heartbeat: Option<Heartbeat<'_>>,
) -> StorageResult<(Sha256Hex, Option<Md5Hex>, u32, u32)> {
    let writer = guard
        .0
        .as_mut()
        .ok_or_else(|| StorageError::Internal("writer missing".into()))?;
    let mut stream = body.into_data_stream();
    let mut sha = Sha256::new();
    let mut md5 = expect.md5.map(|_| Md5::new());
    let mut inspector = ImageInspector::new(expect.image_type, expect.max_pixels);
    let mut received: u64 = 0;
    let mut last_beat = Instant::now();
    loop {
        let next = tokio::time::timeout(expect.idle_timeout, stream.next())
            .await
            .map_err(|_| StorageError::BodyIdleTimeout(expect.idle_timeout.as_secs()))?;
        let Some(chunk) = next else { break };
        let chunk = chunk.map_err(|e| StorageError::BodyRead(e.to_string()))?;
        if chunk.is_empty() {
            continue;
        }
        received += chunk.len() as u64;
        if received > expect.size {
            return Err(StorageError::BodyLargerThanDeclared {
                declared: expect.size,
            });
        }
        metrics::counter!("storage_body_bytes_received_total").increment(chunk.len() as u64);
        sha.update(&chunk);
        if let Some(m) = md5.as_mut() {
            m.update(&chunk);
        }
        inspector.update(&chunk)?;
        writer.write(chunk).await?;
        if let Some(beat) = heartbeat {
            if last_beat.elapsed() >= HEARTBEAT_EVERY {
                beat().await;
                last_beat = Instant::now();
            }
        }
    }
    if received == 0 {
        return Err(StorageError::EmptyBody);
    }
    if received < expect.size {
        return Err(StorageError::BodyShorterThanDeclared {
            received,
            declared: expect.size,
        });
    }
    let actual = Sha256Hex(sha.finalize().into());
    if let Some(expected) = expect.sha256 {
        if expected != actual {
            return Err(StorageError::Sha256Mismatch {
                expected: expected.to_hex(),
                actual: actual.to_hex(),
            });
        }
    }
    let actual_md5 = md5.map(|m| Md5Hex(m.finalize().into()));
    if let (Some(expected), Some(actual)) = (expect.md5, actual_md5) {
        if expected != actual {
            return Err(StorageError::Md5Mismatch {
                expected: expected.to_hex(),
                actual: actual.to_hex(),
            });
        }
    }
    let info = inspector.finish()?;
    Ok((actual, actual_md5, info.width, info.height))
}

/// The object key for an image id: `images/<first two hex digits>/<id>`.
pub fn image_key(image_id: &uuid::Uuid) -> StorageResult<BlobKey> {
    let simple = image_id.simple().to_string();
    let shard = &simple[simple.len() - 2..];
    BlobKey::new(format!("images/{shard}/{image_id}"))
        .map_err(|e| StorageError::Internal(format!("bad generated key: {e}")))
}

/// What an image's row says that is not learned from its bytes: who owns it and where
/// it came from.
pub struct Origin {
    pub owner_id: String,
    pub source: crate::domain::ImageSource,
    pub source_ref: Option<String>,
    pub ingest_key: Option<String>,
    pub upload_id: Option<String>,
    pub filename: String,
}

impl Verified {
    /// The 'committing' row for this body, stored under `key`.
    pub fn row(
        &self,
        image_id: &uuid::Uuid,
        key: &BlobKey,
        expect: &Expectation,
        origin: Origin,
        now: i64,
    ) -> crate::db::ImageRow {
        crate::db::ImageRow {
            id: image_id.to_string(),
            owner_id: origin.owner_id,
            state: "committing".into(),
            source: origin.source.as_str().into(),
            source_ref: origin.source_ref,
            ingest_key: origin.ingest_key,
            upload_id: origin.upload_id,
            filename: origin.filename,
            content_type: expect.image_type.mime().into(),
            size: i64::try_from(expect.size).unwrap_or(i64::MAX),
            sha256: self.sha256.to_hex(),
            md5: self.md5.map(|m| m.to_hex()),
            width: i64::from(self.width),
            height: i64::from(self.height),
            storage_key: key.as_str().to_owned(),
            created_at: now,
            completed_at: None,
        }
    }
}

/// How committing a verified body ended.
pub enum Committed {
    /// The object is visible and the image row complete.
    Stored(crate::db::ImageRow),
    /// An image with the same ingest key already exists; the new bytes were discarded.
    Duplicate(crate::db::ImageRow),
}

/// How old a 'committing' row of the same ingest key must be before a new write of that
/// key replaces it (see [`commit`]); storage's own commits take seconds.
pub const COMMIT_TAKEOVER_AFTER_SECS: i64 = 45;

/// [`commit`] on a task of its own, so that it runs to its end even when the request
/// that asked for it goes away: hyper drops a handler's future when its client
/// disconnects, and a commit dropped between its steps would leave a 'committing' row
/// (and maybe its object) that a retry of the same ingest key then collides with.
pub async fn commit_detached(
    repo: crate::db::Repo,
    store: std::sync::Arc<dyn BlobStore>,
    verified: Verified,
    row: crate::db::ImageRow,
) -> StorageResult<Committed> {
    tokio::spawn(async move { commit(&repo, store.as_ref(), verified, row, None).await })
        .await
        .map_err(|e| StorageError::Internal(format!("commit task: {e}")))?
}

/// Makes a verified body visible and its record complete, in crash-safe order:
/// row 'committing' → object commit → row 'complete' (with the upload, if any, marked
/// completed in the same transaction). A crash in between leaves a 'committing' row that
/// the sweeper removes together with its object, so nothing is ever half-written.
pub async fn commit(
    repo: &crate::db::Repo,
    store: &dyn BlobStore,
    verified: Verified,
    mut row: crate::db::ImageRow,
    upload_claim: Option<(&str, &str)>,
) -> StorageResult<Committed> {
    let Verified { writer, .. } = verified;
    let mut taken_over = false;
    while let Err(duplicate) = repo.insert_committing(&row).await? {
        let existing = match (row.ingest_key.as_deref(), row.owner_id.as_str()) {
            (Some(key), owner) => repo.image_by_ingest_key(owner, key).await?,
            _ => None,
        };
        let Some(existing) = existing else {
            let _ = writer.abort().await;
            return Err(StorageError::Internal(format!(
                "unexpected duplicate image: {duplicate}"
            )));
        };
        if existing.state == "complete" {
            let _ = writer.abort().await;
            return Ok(Committed::Duplicate(existing));
        }
        // A 'committing' row is another request's commit in progress: its object may
        // not exist yet, and it may still fail. Not a result to hand out. A commit takes
        // seconds; one older than COMMIT_TAKEOVER_AFTER_SECS belongs to a writer that
        // died (storage killed, or its database gone mid-commit): this write takes over
        // (the row and its object go, as the sweeper would remove them later), rather
        // than have the key refused until the sweeper runs. Otherwise the caller is told
        // when to try again.
        let age = crate::domain::unix_now() - existing.created_at;
        if age < COMMIT_TAKEOVER_AFTER_SECS || taken_over {
            let _ = writer.abort().await;
            return Err(StorageError::IngestInProgress {
                retry_after_secs: (COMMIT_TAKEOVER_AFTER_SECS - age)
                    .clamp(1, COMMIT_TAKEOVER_AFTER_SECS) as u64,
            });
        }
        if repo.delete_committing(&existing.id).await? {
            if let Ok(key) = BlobKey::new(existing.storage_key.clone()) {
                store.delete(&key).await?;
            }
            tracing::warn!(image_id = %existing.id, age, "took over an ingest abandoned while committing");
        }
        taken_over = true;
    }
    if let Err(e) = writer.commit().await {
        let _ = repo.delete_image(&row.id).await;
        return Err(e.into());
    }
    let now = crate::domain::unix_now();
    let completed = match repo.complete(&row.id, upload_claim, now).await {
        Ok(done) => done,
        Err(e) => {
            // The row stays 'committing'; the sweeper deletes it and the object.
            return Err(e);
        }
    };
    if !completed {
        // The claim was taken over (this PUT stalled past the claim timeout): undo.
        if let Ok(key) = BlobKey::new(row.storage_key.clone()) {
            let _ = store.delete(&key).await;
        }
        let _ = repo.delete_image(&row.id).await;
        return Err(StorageError::UploadInProgress);
    }
    row.state = "complete".to_owned();
    row.completed_at = Some(now);
    Ok(Committed::Stored(row))
}
