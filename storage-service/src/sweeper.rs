//! Housekeeping that keeps the store free of leftovers, run at start and every minute:
//! expired nonces and pending uploads are forgotten, claims of dead PUTs are freed, and
//! images left 'committing' by a crash are removed together with their objects.

use std::time::Duration;

use crate::blobs::BlobKey;
use crate::domain::unix_now;
use crate::error::StorageResult;
use crate::state::AppState;
use crate::uploads::put::CLAIM_STALE_AFTER_SECS;

/// A 'committing' row older than this belongs to a writer that died.
pub const COMMITTING_ABANDONED_AFTER_SECS: i64 = 600;
/// Expired pending uploads are kept this long (so a late PUT gets a clear error).
pub const KEEP_EXPIRED_UPLOADS_SECS: i64 = 3600;

/// One pass. Returns how many rows it changed.
pub async fn sweep_once(state: &AppState) -> StorageResult<u64> {
    let now = unix_now();
    let mut changed = state
        .repo
        .sweep(now, now - CLAIM_STALE_AFTER_SECS, KEEP_EXPIRED_UPLOADS_SECS)
        .await?;
    let abandoned = state
        .repo
        .stale_committing(now - COMMITTING_ABANDONED_AFTER_SECS, 500)
        .await?;
    for row in abandoned {
        if let Ok(key) = BlobKey::new(row.storage_key.clone()) {
            state.blobs.delete(&key).await?;
        }
        state.repo.delete_image(&row.id).await?;
        tracing::warn!(image_id = %row.id, "removed an image abandoned while committing");
        changed += 1;
    }
    Ok(changed)
}

/// Runs [`sweep_once`] every `period` until the task is dropped.
pub async fn run(state: AppState, period: Duration) {
    let mut ticker = tokio::time::interval(period);
    loop {
        ticker.tick().await;
        match sweep_once(&state).await {
            Ok(0) => {}
            Ok(n) => tracing::debug!(changed = n, "sweeper pass"),
            Err(e) => tracing::warn!(error = %e, "sweeper pass failed; retrying next period"),
        }
    }
}
