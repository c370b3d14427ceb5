//! `PUT /uploads/{upload_id}?token=…`: the seller's bytes, through the verified write path.

use std::sync::Arc;

use audit_events::EventType;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use futures::FutureExt;
use serde::Deserialize;
use service_kit::media::ImageType;
use service_kit::AppQuery;
use shared_signing::Purpose;
use utoipa::IntoParams;

use super::UploadUrlClaims;
use crate::db::{Claim, Repo};
use crate::domain::{new_image_id, unix_now, ImageSource, Sha256Hex};
use crate::error::{StorageError, StorageResult};
use crate::images::ImageSummary;
use crate::state::AppState;
use crate::write_path::{self, Committed, Expectation, Origin};

/// A claim whose PUT has not sent a byte for this long may be taken over.
pub const CLAIM_STALE_AFTER_SECS: i64 = 90;

#[derive(Debug, Deserialize, IntoParams)]
pub struct UploadQuery {
    /// The token from the pre-signed URL.
    pub token: Option<String>,
}

/// Gives the claim back if the PUT ends without storing (error or dropped connection).
struct ClaimGuard {
    repo: Repo,
    upload_id: String,
    claim_id: String,
    armed: bool,
}

impl ClaimGuard {
    async fn release_now(mut self) {
        self.armed = false;
        if let Err(e) = self.repo.release(&self.upload_id, &self.claim_id).await {
            tracing::warn!(error = %e, upload_id = %self.upload_id, "could not release upload claim; it expires on its own");
        }
    }
}

impl Drop for ClaimGuard {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let (repo, id, claim) = (
            self.repo.clone(),
            self.upload_id.clone(),
            self.claim_id.clone(),
        );
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn(async move {
                let _ = repo.release(&id, &claim).await;
            });
        }
    }
}

/// Checks the `Content-Type` header against the signed type.
pub fn check_content_type_header(headers: &HeaderMap, signed: ImageType) -> StorageResult<()> {
    let header = headers
        .get(http::header::CONTENT_TYPE)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    match header.as_deref().and_then(ImageType::from_mime) {
        Some(t) if t == signed => Ok(()),
        _ => Err(StorageError::ContentTypeHeaderMismatch {
            header: header.unwrap_or_else(|| "none".to_owned()),
            signed: signed.mime().to_owned(),
        }),
    }
}

/// Rejects a body whose `Content-Length` already contradicts the declared size.
pub fn check_content_length(headers: &HeaderMap, declared: u64) -> StorageResult<()> {
    let Some(length) = headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
    else {
        return Ok(());
    };
    if length > declared {
        Err(StorageError::BodyLargerThanDeclared { declared })
    } else if length == 0 {
        Err(StorageError::EmptyBody)
    } else if length < declared {
        Err(StorageError::BodyShorterThanDeclared {
            received: length,
            declared,
        })
    } else {
        Ok(())
    }
}

/// Receives the bytes of a pre-signed upload.
#[utoipa::path(
    put,
    path = "/uploads/{upload_id}",
    tag = "uploads",
    params(("upload_id" = String, Path, description = "Upload id from the pre-signed URL"), UploadQuery),
    request_body(content = Vec<u8>, content_type = "image/*", description = "The image bytes, exactly as declared"),
    responses(
        (status = 201, description = "Stored", body = ImageSummary),
        (status = 400, description = "Body shorter than declared, empty or unreadable; a repeated `token` (`invalid-query`)", body = service_kit::ErrorEnvelope),
        (status = 403, description = "Token invalid, expired, or for another upload", body = service_kit::ErrorEnvelope),
        (status = 404, description = "Upload unknown or expired", body = service_kit::ErrorEnvelope),
        (status = 409, description = "URL already used, or in use by another PUT", body = service_kit::ErrorEnvelope),
        (status = 413, description = "Body longer than declared", body = service_kit::ErrorEnvelope),
        (status = 415, description = "Content-Type or content differs from the signed type", body = service_kit::ErrorEnvelope),
        (status = 422, description = "SHA-256 mismatch, truncated image, too many pixels", body = service_kit::ErrorEnvelope),
        (status = 503, description = "Storage temporarily unavailable; nothing stored", body = service_kit::ErrorEnvelope),
    )
)]
pub async fn put_upload(
    State(state): State<AppState>,
    Path(upload_id): Path<String>,
    AppQuery(query): AppQuery<UploadQuery>,
    headers: HeaderMap,
    body: Body,
) -> StorageResult<(StatusCode, Json<ImageSummary>)> {
    // Filled in once the token verifies: a refused token names no seller.
    let mut owner = None;
    let result = receive_upload(&state, &upload_id, query, &headers, body, &mut owner).await;
    let event = match &result {
        Ok((_, Json(image))) => state
            .audit
            .event(EventType::UploadAccepted)
            .detail("image_id", image.image_id.to_string()),
        Err(e) => state
            .audit
            .event(EventType::UploadRejected)
            .reason(e.code()),
    };
    let event = event
        .seller_opt(owner)
        .request(audit_events::request_id(&headers))
        .subject(upload_id);
    state.audit.record(event).await;
    result
}

async fn receive_upload(
    state: &AppState,
    upload_id: &str,
    query: UploadQuery,
    headers: &HeaderMap,
    body: Body,
    owner: &mut Option<String>,
) -> StorageResult<(StatusCode, Json<ImageSummary>)> {
    let upload_id = upload_id.to_owned();
    let now = unix_now();
    let token = query.token.ok_or(StorageError::UrlToken(
        shared_signing::TokenError::Malformed,
    ))?;
    let claims = state
        .config
        .url_keys
        .verify_json::<UploadUrlClaims>(
            Purpose::UPLOAD_URL,
            &token,
            now,
            &state.upload_token_policy(),
        )
        .map_err(StorageError::UrlToken)?
        .claims;
    if claims.u != upload_id {
        return Err(StorageError::TokenUploadMismatch);
    }
    *owner = Some(claims.o.clone());
    let image_type = ImageType::from_mime(&claims.t)
        .ok_or_else(|| StorageError::Internal("token with unknown type".into()))?;
    check_content_type_header(headers, image_type)?;
    check_content_length(headers, claims.s)?;

    let claim_id = uuid::Uuid::new_v4().to_string();
    let pending = match state
        .repo
        .claim(&upload_id, &claim_id, now, now - CLAIM_STALE_AFTER_SECS)
        .await?
    {
        Claim::Taken(p) => p,
        Claim::NotFound => return Err(StorageError::UploadNotFound),
        Claim::AlreadyCompleted => return Err(StorageError::UploadAlreadyCompleted),
        Claim::InProgress => return Err(StorageError::UploadInProgress),
    };
    let guard = ClaimGuard {
        repo: state.repo.clone(),
        upload_id: upload_id.clone(),
        claim_id: claim_id.clone(),
        armed: true,
    };
    if pending.owner_id != claims.o
        || pending.size as u64 != claims.s
        || pending.sha256 != claims.h
        || pending.content_type != claims.t
    {
        guard.release_now().await;
        return Err(StorageError::TokenUploadMismatch);
    }
    let sha256 = Sha256Hex::parse(&pending.sha256).map_err(StorageError::Internal)?;

    let image_id = new_image_id();
    let key = write_path::image_key(&image_id)?;
    let expect = Expectation {
        image_type,
        size: claims.s,
        sha256: Some(sha256),
        md5: None,
        max_pixels: state.config.max_image_pixels,
        idle_timeout: state.config.body_idle_timeout,
    };
    let beat_repo = state.repo.clone();
    let (beat_id, beat_claim) = (Arc::new(upload_id.clone()), Arc::new(claim_id.clone()));
    let heartbeat = move || {
        let (repo, id, claim) = (beat_repo.clone(), beat_id.clone(), beat_claim.clone());
        async move {
            let _ = repo.heartbeat(&id, &claim, unix_now()).await;
        }
        .boxed()
    };
    let verified = match write_path::receive(
        state.blobs.as_ref(),
        &key,
        &expect,
        body,
        Some(&heartbeat),
    )
    .await
    {
        Ok(v) => v,
        Err(e) => {
            tracing::info!(%upload_id, code = e.code(), reason = %e, "upload rejected");
            guard.release_now().await;
            return Err(e);
        }
    };
    let origin = Origin {
        owner_id: pending.owner_id.clone(),
        source: ImageSource::Upload,
        source_ref: None,
        ingest_key: None,
        upload_id: Some(upload_id.clone()),
        filename: pending.filename.clone(),
    };
    let row = verified.row(&image_id, &key, &expect, origin, now);
    match write_path::commit(
        &state.repo,
        state.blobs.as_ref(),
        verified,
        row,
        Some((&upload_id, &claim_id)),
    )
    .await
    {
        Ok(Committed::Stored(row)) | Ok(Committed::Duplicate(row)) => {
            let mut guard = guard;
            guard.armed = false;
            tracing::info!(%upload_id, image_id = %row.id, size = row.size, "upload accepted");
            Ok((
                StatusCode::CREATED,
                Json(ImageSummary::from_row(&row, state.blobs.as_ref())),
            ))
        }
        Err(e) => {
            guard.release_now().await;
            Err(e)
        }
    }
}
