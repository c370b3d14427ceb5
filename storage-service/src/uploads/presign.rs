//! `POST /internal/presign`: the App Service asks for an upload URL.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::StatusCode;
use axum::{Extension, Json};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use service_kit::media::ImageType;
use service_kit::AppJson;
use shared_signing::Purpose;
use utoipa::ToSchema;

use super::UploadUrlClaims;
use crate::db::PendingUpload;
use crate::domain::{new_upload_id, unix_now, FileName, OwnerId, Sha256Hex};
use crate::error::{StorageError, StorageResult};
use crate::internal_auth::Caller;
use crate::state::AppState;

/// Body of `POST /internal/presign`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct PresignRequest {
    /// Upload metadata signed by the App Service (purpose `upload-metadata`,
    /// app↔storage key); its JSON payload is [`UploadMetadata`].
    pub metadata_token: String,
}

/// What the App Service vouches for: who uploads what.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct UploadMetadata {
    pub seller_id: String,
    pub filename: String,
    pub content_type: String,
    pub size: u64,
    pub sha256: String,
}

/// The pre-signed upload URL.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct PresignResponse {
    pub upload_id: String,
    /// Absolute URL to `PUT` the bytes to; the token in it is the only credential.
    pub upload_url: String,
    /// Always `PUT`.
    pub method: String,
    /// Headers the upload must carry (`Content-Type`).
    pub headers: BTreeMap<String, String>,
    pub expires_at: DateTime<Utc>,
}

/// The metadata, parsed and checked.
struct ValidMetadata {
    owner: OwnerId,
    filename: FileName,
    image_type: ImageType,
    size: u64,
    sha256: Sha256Hex,
}

fn validate(meta: UploadMetadata, max_size: u64) -> StorageResult<ValidMetadata> {
    let owner = OwnerId::parse(&meta.seller_id).map_err(StorageError::InvalidMetadata)?;
    let image_type = ImageType::from_mime(&meta.content_type).ok_or_else(|| {
        StorageError::InvalidMetadata(format!(
            "content_type `{}` is not accepted; accepted: {}",
            meta.content_type,
            ImageType::accepted_list()
        ))
    })?;
    if meta.size == 0 {
        return Err(StorageError::InvalidMetadata(
            "size must be at least 1 byte".into(),
        ));
    }
    if meta.size > max_size {
        return Err(StorageError::SizeLimitExceeded {
            size: meta.size,
            limit: max_size,
        });
    }
    let sha256 = Sha256Hex::parse(&meta.sha256).map_err(StorageError::InvalidMetadata)?;
    Ok(ValidMetadata {
        owner,
        filename: FileName::sanitise(&meta.filename, image_type.extension()),
        image_type,
        size: meta.size,
        sha256,
    })
}

/// Announces an upload and returns its pre-signed URL.
#[utoipa::path(
    post,
    path = "/internal/presign",
    tag = "internal",
    request_body = PresignRequest,
    security(("service_signature" = [])),
    responses(
        (status = 201, description = "Upload URL minted", body = PresignResponse),
        (status = 400, description = "Body not valid JSON (`invalid-json`)", body = service_kit::ErrorEnvelope),
        (status = 401, description = "Bad request signature or metadata token", body = service_kit::ErrorEnvelope),
        (status = 403, description = "Caller is not the App Service", body = service_kit::ErrorEnvelope),
        (status = 413, description = "Declared size over the limit, or body over the JSON limit (`body-too-large`)", body = service_kit::ErrorEnvelope),
        (status = 415, description = "Not JSON (`json-content-type-required`)", body = service_kit::ErrorEnvelope),
        (status = 422, description = "Invalid metadata, or a body of the wrong shape (`invalid-request-body`)", body = service_kit::ErrorEnvelope),
    )
)]
pub async fn presign(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    AppJson(request): AppJson<PresignRequest>,
) -> StorageResult<(StatusCode, Json<PresignResponse>)> {
    caller.require(&[Caller::App])?;
    let now = unix_now();
    let prepared = prepare(&state, &request.metadata_token, now)?;
    state.repo.insert_pending(&prepared.pending).await?;
    Ok((StatusCode::CREATED, Json(finish(&state, prepared, now)?)))
}

/// An upload checked and ready to record: the row, and the URL token's claims.
struct Prepared {
    pending: PendingUpload,
    claims: UploadUrlClaims,
    image_type: ImageType,
}

/// Verifies the signed metadata and builds the pending-upload row.
fn prepare(state: &AppState, metadata_token: &str, now: i64) -> StorageResult<Prepared> {
    let verified = state
        .config
        .app_keys
        .verify_json::<UploadMetadata>(
            Purpose::UPLOAD_METADATA,
            metadata_token,
            now,
            &state.metadata_token_policy(),
        )
        .map_err(|e| match e {
            shared_signing::TokenError::PayloadInvalid => StorageError::InvalidMetadata(
                "the signed metadata is not an upload description".into(),
            ),
            other => StorageError::MetadataToken(other),
        })?;
    let meta = validate(verified.claims, state.config.max_upload_bytes)?;
    let upload_id = new_upload_id().to_string();
    let expires_at = now + state.config.upload_url_ttl.as_secs() as i64;
    let claims = UploadUrlClaims {
        u: upload_id.clone(),
        o: meta.owner.to_string(),
        s: meta.size,
        h: meta.sha256.to_hex(),
        t: meta.image_type.mime().to_owned(),
    };
    Ok(Prepared {
        pending: PendingUpload {
            id: upload_id,
            owner_id: meta.owner.to_string(),
            filename: meta.filename.as_str().to_owned(),
            content_type: meta.image_type.mime().to_owned(),
            size: meta.size as i64,
            sha256: meta.sha256.to_hex(),
            state: "pending".into(),
            created_at: now,
            expires_at,
        },
        claims,
        image_type: meta.image_type,
    })
}

/// Mints the URL of a recorded pending upload.
fn finish(state: &AppState, prepared: Prepared, now: i64) -> StorageResult<PresignResponse> {
    let ttl = state.config.upload_url_ttl;
    let token = state
        .config
        .url_keys
        .mint_json(Purpose::UPLOAD_URL, &prepared.claims, now, ttl)
        .map_err(|e| StorageError::Internal(format!("minting upload token: {e}")))?;
    let upload_id = prepared.pending.id;
    let upload_url = format!(
        "{}/uploads/{upload_id}?token={token}",
        state.config.public_url
    );
    // The App Service logs this event at info with the seller; at info here it would be
    // the same line twice per upload.
    tracing::debug!(%upload_id, owner = %prepared.pending.owner_id, size = prepared.pending.size, content_type = %prepared.image_type, "upload URL issued");
    Ok(PresignResponse {
        upload_id,
        upload_url,
        method: "PUT".into(),
        headers: BTreeMap::from([(
            "Content-Type".to_owned(),
            prepared.image_type.mime().to_owned(),
        )]),
        expires_at: DateTime::from_timestamp(prepared.pending.expires_at, 0)
            .unwrap_or_else(Utc::now),
    })
}

/// Most uploads in one `POST /internal/presign/batch`.
pub const MAX_PRESIGN_BATCH: usize = 100;

/// Body of `POST /internal/presign/batch`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct PresignBatchRequest {
    /// 1–100 signed upload descriptions (each as in `POST /internal/presign`).
    pub metadata_tokens: Vec<String>,
}

/// One answer of a batch, in request order: the upload URL, or why that one was refused.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PresignBatchItem {
    Upload(PresignResponse),
    Error(BatchItemError),
}

/// The error `POST /internal/presign` would have answered for this upload.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct BatchItemError {
    pub status: u16,
    pub code: String,
    pub message: String,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct PresignBatchResponse {
    pub results: Vec<PresignBatchItem>,
}

/// Announces several uploads in one call and one database write.
///
/// The App Service coalesces concurrent upload requests into one call (one request
/// signature, one transaction for all pending rows). Each upload is checked exactly as
/// by `POST /internal/presign`; one bad upload does not fail the others.
#[utoipa::path(
    post,
    path = "/internal/presign/batch",
    tag = "internal",
    request_body = PresignBatchRequest,
    security(("service_signature" = [])),
    responses(
        (status = 200, description = "One result per token, in order", body = PresignBatchResponse),
        (status = 401, description = "Bad request signature", body = service_kit::ErrorEnvelope),
        (status = 403, description = "Caller is not the App Service", body = service_kit::ErrorEnvelope),
        (status = 400, description = "No tokens, or more than 100 (`invalid-request`); body not valid JSON (`invalid-json`)", body = service_kit::ErrorEnvelope),
        (status = 413, description = "Body over the JSON limit (`body-too-large`)", body = service_kit::ErrorEnvelope),
        (status = 415, description = "Not JSON (`json-content-type-required`)", body = service_kit::ErrorEnvelope),
        (status = 422, description = "A body of the wrong shape (`invalid-request-body`)", body = service_kit::ErrorEnvelope),
    )
)]
pub async fn presign_batch(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    AppJson(request): AppJson<PresignBatchRequest>,
) -> StorageResult<Json<PresignBatchResponse>> {
    caller.require(&[Caller::App])?;
    let count = request.metadata_tokens.len();
    if count == 0 || count > MAX_PRESIGN_BATCH {
        return Err(StorageError::InvalidRequest(format!(
            "send 1 to {MAX_PRESIGN_BATCH} metadata tokens (got {count})"
        )));
    }
    let now = unix_now();
    let prepared: Vec<StorageResult<Prepared>> = request
        .metadata_tokens
        .iter()
        .map(|token| prepare(&state, token, now))
        .collect();
    let rows: Vec<&PendingUpload> = prepared
        .iter()
        .filter_map(|p| p.as_ref().ok().map(|p| &p.pending))
        .collect();
    state.repo.insert_pending_many(&rows).await?;
    let results = prepared
        .into_iter()
        .map(|p| match p.and_then(|p| finish(&state, p, now)) {
            Ok(upload) => PresignBatchItem::Upload(upload),
            Err(e) => {
                if e.status().is_server_error() {
                    // Not sent to the caller in detail; logged once here.
                    tracing::error!(error = %e, "presign batch item failed");
                }
                let api = service_kit::ApiError::from(e);
                PresignBatchItem::Error(BatchItemError {
                    status: api.status.as_u16(),
                    code: api.code.to_owned(),
                    message: api.message,
                })
            }
        })
        .collect();
    Ok(Json(PresignBatchResponse { results }))
}
