//! `POST /internal/ingest`: an import worker streams one file from a provider.
//!
//! The expected size, type, digests, owner and source travel in the (signed) query;
//! the body streams unsigned and goes through the same verified write path as an upload.
//! Idempotent: a retried ingest with the same `idempotency_key` returns the first image.

use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::{Extension, Json};
use serde::Deserialize;
use service_kit::media::ImageType;
use utoipa::IntoParams;

use crate::domain::{new_image_id, unix_now, FileName, ImageSource, Md5Hex, OwnerId, Sha256Hex};
use crate::error::{StorageError, StorageResult};
use crate::images::ImageSummary;
use crate::internal_auth::Caller;
use crate::state::AppState;
use crate::uploads::put::{check_content_length, check_content_type_header};
use crate::write_path::{self, Committed, Expectation, Origin};

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct IngestParams {
    /// Seller who owns the import.
    pub owner_id: String,
    /// Declared MIME type (from the provider).
    pub content_type: String,
    /// Exact size in bytes (from the provider).
    pub size: u64,
    /// Expected SHA-256, hex, when the provider reports one.
    pub sha256: Option<String>,
    /// Expected MD5, hex (Google Drive's `md5Checksum`).
    pub md5: Option<String>,
    /// Original file name (kept as sanitised metadata).
    pub filename: String,
    /// `google-drive` or `dropbox`.
    pub source: String,
    /// The provider's file id.
    pub source_ref: Option<String>,
    /// Same key → same image (e.g. `<job id>:<file id>`), 1–200 characters.
    pub idempotency_key: String,
}

struct ValidIngest {
    owner: OwnerId,
    image_type: ImageType,
    size: u64,
    sha256: Option<Sha256Hex>,
    md5: Option<Md5Hex>,
    filename: FileName,
    source: ImageSource,
    source_ref: Option<String>,
    idempotency_key: String,
}

fn validate(p: IngestParams, max_size: u64) -> StorageResult<ValidIngest> {
    let bad = StorageError::InvalidIngest;
    let owner = OwnerId::parse(&p.owner_id).map_err(bad)?;
    let image_type = ImageType::from_mime(&p.content_type).ok_or_else(|| {
        bad(format!(
            "content_type `{}` is not accepted; accepted: {}",
            p.content_type,
            ImageType::accepted_list()
        ))
    })?;
    if p.size == 0 {
        return Err(bad("size must be at least 1 byte".into()));
    }
    if p.size > max_size {
        return Err(StorageError::SizeLimitExceeded {
            size: p.size,
            limit: max_size,
        });
    }
    let sha256 = p
        .sha256
        .as_deref()
        .map(Sha256Hex::parse)
        .transpose()
        .map_err(bad)?;
    let md5 = p
        .md5
        .as_deref()
        .map(Md5Hex::parse)
        .transpose()
        .map_err(bad)?;
    let source = match ImageSource::parse(&p.source) {
        Some(s @ (ImageSource::GoogleDrive | ImageSource::Dropbox)) => s,
        _ => return Err(bad("source must be google-drive or dropbox".into())),
    };
    if p.idempotency_key.is_empty() || p.idempotency_key.chars().count() > 200 {
        return Err(bad("idempotency_key must be 1–200 characters".into()));
    }
    if p.source_ref
        .as_ref()
        .is_some_and(|r| r.is_empty() || r.len() > 512)
    {
        return Err(bad("source_ref must be 1–512 characters".into()));
    }
    Ok(ValidIngest {
        owner,
        filename: FileName::sanitise(&p.filename, image_type.extension()),
        image_type,
        size: p.size,
        sha256,
        md5,
        source,
        source_ref: p.source_ref,
        idempotency_key: p.idempotency_key,
    })
}

/// Stores one imported file.
#[utoipa::path(
    post,
    path = "/internal/ingest",
    tag = "internal",
    params(IngestParams),
    request_body(content = Vec<u8>, content_type = "image/*", description = "The file's bytes, streamed; sign with x-vitrine-content-sha256: UNSIGNED-PAYLOAD"),
    security(("service_signature" = [])),
    responses(
        (status = 201, description = "Stored", body = ImageSummary),
        (status = 200, description = "Already stored under this idempotency key", body = ImageSummary),
        (status = 401, description = "Bad request signature", body = service_kit::ErrorEnvelope),
        (status = 403, description = "Caller is not an import worker", body = service_kit::ErrorEnvelope),
        (status = 413, description = "Larger than declared or than the limit", body = service_kit::ErrorEnvelope),
        (status = 415, description = "Not an image of the declared type", body = service_kit::ErrorEnvelope),
        (status = 422, description = "Digest mismatch, truncated, too many pixels, bad or missing parameters (`invalid-ingest-parameters`)", body = service_kit::ErrorEnvelope),
        (status = 503, description = "Storage temporarily unavailable; nothing stored (`blob-store-unavailable`, `database-unavailable`); or a write of this idempotency key is still committing (`ingest-in-progress`, `Retry-After` = seconds until a write left by a dead storage is taken over, at most 45)", body = service_kit::ErrorEnvelope),
    )
)]
pub async fn ingest(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    params: Result<Query<IngestParams>, QueryRejection>,
    headers: HeaderMap,
    body: Body,
) -> StorageResult<(StatusCode, Json<ImageSummary>)> {
    caller.require(&[Caller::Import])?;
    // A missing or unparsable parameter (e.g. `size=-1`) is a 422 with the JSON envelope,
    // not axum's plain-text 400.
    let Query(params) = params.map_err(|e| StorageError::InvalidIngest(e.body_text()))?;
    let v = validate(params, state.config.max_upload_bytes)?;
    if let Some(existing) = state
        .repo
        .image_by_ingest_key(v.owner.as_str(), &v.idempotency_key)
        .await?
        .filter(|r| r.state == "complete")
    {
        return Ok((
            StatusCode::OK,
            Json(ImageSummary::from_row(&existing, state.blobs.as_ref())),
        ));
    }
    check_content_type_header(&headers, v.image_type)?;
    check_content_length(&headers, v.size)?;

    let image_id = new_image_id();
    let key = write_path::image_key(&image_id)?;
    let expect = Expectation {
        image_type: v.image_type,
        size: v.size,
        sha256: v.sha256,
        md5: v.md5,
        max_pixels: state.config.max_image_pixels,
        idle_timeout: state.config.body_idle_timeout,
    };
    let verified = write_path::receive(state.blobs.as_ref(), &key, &expect, body, None).await?;
    let origin = Origin {
        owner_id: v.owner.to_string(),
        source: v.source,
        source_ref: v.source_ref,
        ingest_key: Some(v.idempotency_key),
        upload_id: None,
        filename: v.filename.as_str().to_owned(),
    };
    let row = verified.row(&image_id, &key, &expect, origin, unix_now());
    match write_path::commit_detached(state.repo.clone(), state.blobs.clone(), verified, row)
        .await?
    {
        Committed::Stored(row) => Ok((
            StatusCode::CREATED,
            Json(ImageSummary::from_row(&row, state.blobs.as_ref())),
        )),
        Committed::Duplicate(row) => Ok((
            StatusCode::OK,
            Json(ImageSummary::from_row(&row, state.blobs.as_ref())),
        )),
    }
}
