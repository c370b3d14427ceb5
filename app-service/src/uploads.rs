//! `POST /uploads`: a seller asks for a pre-signed upload URL.
//!
//! The request is checked here with the same rules storage applies (so a seller gets
//! the precise error, and storage is not asked for what it would refuse), the
//! metadata is signed (purpose `upload-metadata`, the app↔storage key), and storage's
//! `POST /internal/presign/batch` (concurrent requests coalesced into one call, see
//! `storage_client`) records the pending upload and mints the URL.

use audit_events::EventType;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use serde::{Deserialize, Serialize};
use service_kit::auth::{Seller, SellerId};
use service_kit::media::ImageType;
use service_kit::AppJson;
use shared_signing::{unix_now, Purpose};
use utoipa::ToSchema;

use crate::error::{AppError, AppResult};
use crate::state::AppState;
use crate::storage_client::UploadTicket;

/// Longest file name accepted, in characters.
pub const MAX_FILENAME_CHARS: usize = 255;

/// Body of `POST /uploads`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateUploadRequest {
    /// The file's name, 1–255 characters, no path separators or control characters.
    #[schema(example = "red-shoe.jpg")]
    pub filename: String,
    /// One of `image/jpeg`, `image/png`, `image/webp`, `image/gif`, `image/avif`.
    #[schema(example = "image/jpeg")]
    pub content_type: String,
    /// Exact size in bytes (at least 1, at most the configured cap).
    #[schema(example = 482113)]
    pub size: u64,
    /// SHA-256 of the bytes, 64 hex characters.
    #[schema(example = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08")]
    pub sha256: String,
}

/// What the App Service vouches for to storage (storage's `UploadMetadata`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UploadMetadata {
    pub seller_id: String,
    pub filename: String,
    pub content_type: String,
    pub size: u64,
    pub sha256: String,
}

/// Checks a request and turns it into the metadata storage will be given.
pub fn validate(
    seller: &SellerId,
    request: CreateUploadRequest,
    max_size: u64,
) -> AppResult<UploadMetadata> {
    let filename = validate_filename(&request.filename)?;
    let image_type = ImageType::from_mime(&request.content_type).ok_or_else(|| {
        AppError::invalid(
            "unsupported-content-type",
            format!(
                "content_type `{}` is not an accepted image type; accepted: {}",
                request.content_type.chars().take(100).collect::<String>(),
                ImageType::accepted_list()
            ),
        )
    })?;
    if request.size == 0 {
        return Err(AppError::invalid(
            "invalid-size",
            "size must be at least 1 byte",
        ));
    }
    if request.size > max_size {
        return Err(AppError::UploadTooLarge {
            size: request.size,
            limit: max_size,
        });
    }
    let sha256 = request.sha256.trim();
    if sha256.len() != 64 || !sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(AppError::invalid(
            "invalid-sha256",
            "sha256 must be the 64 hex characters of the file's SHA-256 digest",
        ));
    }
    Ok(UploadMetadata {
        seller_id: seller.as_str().to_owned(),
        filename,
        content_type: image_type.mime().to_owned(),
        size: request.size,
        sha256: sha256.to_ascii_lowercase(),
    })
}

/// A file name as sellers see it: no directories, no control characters, no
/// characters that break downloads on common systems.
fn validate_filename(raw: &str) -> AppResult<String> {
    let name = raw.trim();
    let chars = name.chars().count();
    let refuse = |problem: String| {
        Err(AppError::invalid(
            "invalid-filename",
            format!("filename {problem}"),
        ))
    };
    if name.is_empty() {
        return refuse("must not be empty".to_owned());
    }
    if chars > MAX_FILENAME_CHARS {
        return refuse(format!(
            "is {chars} characters long; the limit is {MAX_FILENAME_CHARS}"
        ));
    }
    if name == "." || name == ".." {
        return refuse("must name a file".to_owned());
    }
    let forbidden = |c: &char| {
        c.is_control() || matches!(c, '/' | '\\' | '<' | '>' | ':' | '"' | '|' | '?' | '*')
    };
    if let Some(bad) = name.chars().find(forbidden) {
        return refuse(format!(
            "contains the character {bad:?}; file names may not contain control characters or / \\ < > : \" | ? *"
        ));
    }
    Ok(name.to_owned())
}

/// Asks for a pre-signed upload URL.
///
/// `PUT` the bytes to `upload_url` with the `headers` given, before `expires_at`.
/// The URL works once; the answer to the `PUT` carries the `image_id` to use in
/// `POST /product`.
#[utoipa::path(
    post,
    path = "/uploads",
    tag = "uploads",
    request_body = CreateUploadRequest,
    security(("bearer" = [])),
    responses(
        (status = 201, description = "The pre-signed upload URL", body = UploadTicket),
        (status = 400, description = "`invalid-json`", body = service_kit::ErrorEnvelope),
        (status = 401, description = "No valid seller token (`missing-token`, `malformed-token`, `invalid-signature`, `token-expired`, …)", body = service_kit::ErrorEnvelope),
        (status = 413, description = "Body over the JSON limit (`body-too-large`)", body = service_kit::ErrorEnvelope),
        (status = 415, description = "Not JSON (`json-content-type-required`)", body = service_kit::ErrorEnvelope),
        (status = 422, description = "Invalid field: `invalid-filename`, `unsupported-content-type`, `invalid-size`, `size-limit-exceeded`, `invalid-sha256`, `invalid-request-body`", body = service_kit::ErrorEnvelope),
        (status = 429, description = "Too many upload requests (`rate-limited`, see `Retry-After`)", body = service_kit::ErrorEnvelope),
        (status = 503, description = "Storage unavailable (`storage-unavailable`, see `Retry-After`)", body = service_kit::ErrorEnvelope),
    )
)]
pub async fn create_upload(
    State(state): State<AppState>,
    Seller(seller): Seller,
    headers: HeaderMap,
    AppJson(request): AppJson<CreateUploadRequest>,
) -> AppResult<(StatusCode, Json<UploadTicket>)> {
    state.upload_limiter.check(&seller)?;
    let metadata = validate(&seller, request, state.config.max_upload_bytes)?;
    let token = state
        .config
        .storage_keys
        .mint_json(
            Purpose::UPLOAD_METADATA,
            &metadata,
            unix_now(),
            state.config.upload_metadata_ttl,
        )
        .map_err(|e| AppError::StorageFault(format!("signing upload metadata: {e}")))?;
    let ticket = state.storage.presign(&token).await?;
    metrics::counter!("app_upload_urls_issued_total").increment(1);
    // At debug: the audit event below records the same fact (seller, upload id, size, type,
    // request id), and at info this line cost about 5 % of the upload benchmark's CPU
    // (docs/benchmarks.md, `POST /uploads`, *Fifth look*). The upload's outcome is logged
    // at info by storage ("upload accepted" / "upload rejected").
    tracing::debug!(seller = %seller, upload_id = %ticket.upload_id, size = metadata.size, "upload URL issued");
    let event = state
        .audit
        .event(EventType::UploadUrlIssued)
        .seller(seller.as_str())
        .request(audit_events::request_id(&headers))
        .subject(ticket.upload_id.to_string())
        .detail("content_type", metadata.content_type.clone())
        .detail("size", metadata.size.to_string());
    state.audit.record(event).await;
    Ok((StatusCode::CREATED, Json(ticket)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(filename: &str, content_type: &str, size: u64, sha256: &str) -> CreateUploadRequest {
        CreateUploadRequest {
            filename: filename.to_owned(),
            content_type: content_type.to_owned(),
            size,
            sha256: sha256.to_owned(),
        }
    }

    const SHA: &str = "9F86D081884C7D659A2FEAA0C55AD015A3BF4F1B2B0B822CD15D6C15B0F00A08";

    fn code(result: AppResult<UploadMetadata>) -> &'static str {
        match result {
            Err(AppError::Invalid { code, .. }) => code,
            Err(AppError::UploadTooLarge { .. }) => "size-limit-exceeded",
            other => panic!("expected a validation error, got {other:?}"),
        }
    }

    #[test]
    fn valid_requests_are_normalised() {
        let seller = SellerId::parse("seller-1").unwrap();
        let meta = validate(&seller, request(" shoe.JPG ", "image/jpg", 10, SHA), 100).unwrap();
        assert_eq!(meta.filename, "shoe.JPG");
        assert_eq!(meta.content_type, "image/jpeg");
        assert_eq!(meta.sha256, SHA.to_ascii_lowercase());
        assert_eq!(meta.seller_id, "seller-1");
        // Non-ASCII names are fine; the limit counts characters, not bytes.
        let name = "é".repeat(MAX_FILENAME_CHARS);
        assert!(validate(&seller, request(&name, "image/png", 1, SHA), 100).is_ok());
    }

    #[test]
    fn each_bad_field_has_its_code() {
        let seller = SellerId::parse("seller-1").unwrap();
        let cases = [
            (request("", "image/png", 1, SHA), "invalid-filename"),
            (request("   ", "image/png", 1, SHA), "invalid-filename"),
            (
                request(&"a".repeat(256), "image/png", 1, SHA),
                "invalid-filename",
            ),
            (
                request("../etc/passwd", "image/png", 1, SHA),
                "invalid-filename",
            ),
            (request("a\\b.png", "image/png", 1, SHA), "invalid-filename"),
            (
                request("a\u{0}b.png", "image/png", 1, SHA),
                "invalid-filename",
            ),
            (request("..", "image/png", 1, SHA), "invalid-filename"),
            (
                request("a.pdf", "application/pdf", 1, SHA),
                "unsupported-content-type",
            ),
            (
                request("a.svg", "image/svg+xml", 1, SHA),
                "unsupported-content-type",
            ),
            (request("a.png", "image/png", 0, SHA), "invalid-size"),
            (
                request("a.png", "image/png", 101, SHA),
                "size-limit-exceeded",
            ),
            (request("a.png", "image/png", 1, "abc"), "invalid-sha256"),
            (
                request("a.png", "image/png", 1, &"g".repeat(64)),
                "invalid-sha256",
            ),
            (
                request("a.png", "image/png", 1, &"a".repeat(65)),
                "invalid-sha256",
            ),
        ];
        for (req, expected) in cases {
            let shown = format!("{req:?}");
            assert_eq!(code(validate(&seller, req, 100)), expected, "{shown}");
        }
    }
}
