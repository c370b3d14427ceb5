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
        (status = 401, description = "Bad request signature or metadata token", body = service_kit::ErrorEnvelope),
        (status = 403, description = "Caller is not the App Service", body = service_kit::ErrorEnvelope),
        (status = 413, description = "Declared size over the limit", body = service_kit::ErrorEnvelope),
        (status = 422, description = "Invalid metadata", body = service_kit::ErrorEnvelope),
    )
)]
pub async fn presign(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    AppJson(request): AppJson<PresignRequest>,
) -> StorageResult<(StatusCode, Json<PresignResponse>)> {
    caller.require(&[Caller::App])?;
    let now = unix_now();
    let verified = state
        .config
        .app_keys
        .verify_json::<UploadMetadata>(
            Purpose::UPLOAD_METADATA,
            &request.metadata_token,
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
    let ttl = state.config.upload_url_ttl;
    let expires_at = now + ttl.as_secs() as i64;
    state
        .repo
        .insert_pending(&PendingUpload {
            id: upload_id.clone(),
            owner_id: meta.owner.to_string(),
            filename: meta.filename.as_str().to_owned(),
            content_type: meta.image_type.mime().to_owned(),
            size: meta.size as i64,
            sha256: meta.sha256.to_hex(),
            state: "pending".into(),
            created_at: now,
            expires_at,
        })
        .await?;
    let claims = UploadUrlClaims {
        u: upload_id.clone(),
        o: meta.owner.to_string(),
        s: meta.size,
        h: meta.sha256.to_hex(),
        t: meta.image_type.mime().to_owned(),
    };
    let token = state
        .config
        .url_keys
        .mint_json(Purpose::UPLOAD_URL, &claims, now, ttl)
        .map_err(|e| StorageError::Internal(format!("minting upload token: {e}")))?;
    let upload_url = format!(
        "{}/uploads/{upload_id}?token={token}",
        state.config.public_url
    );
    tracing::info!(%upload_id, owner = %meta.owner, size = meta.size, content_type = %meta.image_type, "upload URL issued");
    Ok((
        StatusCode::CREATED,
        Json(PresignResponse {
            upload_id,
            upload_url,
            method: "PUT".into(),
            headers: BTreeMap::from([(
                "Content-Type".to_owned(),
                meta.image_type.mime().to_owned(),
            )]),
            expires_at: DateTime::from_timestamp(expires_at, 0).unwrap_or_else(Utc::now),
        }),
    ))
}
