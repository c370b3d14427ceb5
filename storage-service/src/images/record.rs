//! `GET /internal/images/{id}`: does an image exist, is it complete, whose is it.

use axum::extract::{Path, State};
use axum::{Extension, Json};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::storage_path;
use crate::error::{StorageError, StorageResult};
use crate::internal_auth::Caller;
use crate::state::AppState;

/// Everything the other services may know about an image.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ImageRecord {
    pub image_id: String,
    /// `complete`, or `committing` while its bytes are being made visible.
    pub state: String,
    pub owner_id: String,
    /// `upload`, `google-drive` or `dropbox`.
    pub source: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_ref: Option<String>,
    pub filename: String,
    pub content_type: String,
    pub size: u64,
    pub sha256: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub md5: Option<String>,
    pub width: u32,
    pub height: u32,
    pub storage_path: String,
    pub created_at: DateTime<Utc>,
}

/// Looks up one image.
#[utoipa::path(
    get,
    path = "/internal/images/{image_id}",
    tag = "internal",
    params(("image_id" = String, Path, description = "Image id")),
    security(("service_signature" = [])),
    responses(
        (status = 200, description = "The image record", body = ImageRecord),
        (status = 401, description = "Bad request signature", body = service_kit::ErrorEnvelope),
        (status = 404, description = "No such image", body = service_kit::ErrorEnvelope),
    )
)]
pub async fn get_image(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(image_id): Path<String>,
) -> StorageResult<Json<ImageRecord>> {
    caller.require(&[Caller::App, Caller::Import])?;
    if uuid::Uuid::parse_str(&image_id).is_err() {
        return Err(StorageError::ImageNotFound);
    }
    let row = state
        .repo
        .image(&image_id)
        .await?
        .ok_or(StorageError::ImageNotFound)?;
    Ok(Json(ImageRecord {
        image_id: row.id.clone(),
        state: row.state.clone(),
        owner_id: row.owner_id.clone(),
        source: row.source.clone(),
        source_ref: row.source_ref.clone(),
        filename: row.filename.clone(),
        content_type: row.content_type.clone(),
        size: row.size.max(0) as u64,
        sha256: row.sha256.clone(),
        md5: row.md5.clone(),
        width: u32::try_from(row.width).unwrap_or(0),
        height: u32::try_from(row.height).unwrap_or(0),
        storage_path: storage_path(state.blobs.as_ref(), &row.storage_key),
        created_at: DateTime::from_timestamp(row.created_at, 0).unwrap_or_default(),
    }))
}
