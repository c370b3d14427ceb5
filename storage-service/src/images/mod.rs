//! Image records and their bytes: `GET /internal/images/{id}`,
//! `POST /internal/download-urls` and `GET /images/{id}/content?token=…`.

pub mod content;
pub mod download_urls;
pub mod record;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::blobs::BlobStore;
use crate::db::ImageRow;

/// What an upload or ingest answers when the image is stored.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ImageSummary {
    pub image_id: String,
    pub filename: String,
    pub content_type: String,
    pub size: u64,
    pub sha256: String,
    pub width: u32,
    pub height: u32,
    /// Where the bytes live, e.g. `s3://bucket/images/ab/<id>`.
    pub storage_path: String,
    pub created_at: DateTime<Utc>,
}

impl ImageSummary {
    pub fn from_row(row: &ImageRow, store: &dyn BlobStore) -> Self {
        ImageSummary {
            image_id: row.id.clone(),
            filename: row.filename.clone(),
            content_type: row.content_type.clone(),
            size: row.size.max(0) as u64,
            sha256: row.sha256.clone(),
            width: u32::try_from(row.width).unwrap_or(0),
            height: u32::try_from(row.height).unwrap_or(0),
            storage_path: storage_path(store, &row.storage_key),
            created_at: DateTime::from_timestamp(row.created_at, 0).unwrap_or_default(),
        }
    }
}

/// `<store description>/<key>`, e.g. `file:///srv/data/blobs/images/ab/<id>`.
pub fn storage_path(store: &dyn BlobStore, key: &str) -> String {
    format!("{}/{}", store.describe().trim_end_matches('/'), key)
}
