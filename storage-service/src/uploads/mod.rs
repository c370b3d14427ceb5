//! The pre-signed upload flow: `POST /internal/presign` (or `/internal/presign/batch`
//! for several at once) announces an upload and mints its URL;
//! `PUT /uploads/{upload_id}?token=…` receives the bytes.

pub mod presign;
pub mod put;

use serde::{Deserialize, Serialize};

/// Claims inside an upload URL token (purpose `upload-url`, URL key).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct UploadUrlClaims {
    /// Upload id.
    pub u: String,
    /// Owner (seller id).
    pub o: String,
    /// Exact size in bytes.
    pub s: u64,
    /// SHA-256, lowercase hex.
    pub h: String,
    /// Content type.
    pub t: String,
}
