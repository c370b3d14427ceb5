//! The Storage Service's error type: one variant per thing that can go wrong, each
//! with a stable code, converted into the shared JSON envelope.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use service_kit::ApiError;
use shared_signing::{RequestAuthError, TokenError};

use crate::blobs::BlobError;
use crate::inspect::InspectError;

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    // --- URL tokens (upload and download URLs) ---
    #[error("the URL token is not valid: {0}")]
    UrlToken(TokenError),
    #[error("this URL was issued for another upload")]
    TokenUploadMismatch,
    #[error("this URL was issued for another image")]
    TokenImageMismatch,

    // --- service-to-service authentication ---
    #[error("{0}")]
    Signature(RequestAuthError),
    #[error("this caller may not use this endpoint")]
    CallerNotAllowed,
    #[error("the upload metadata token is not valid: {0}")]
    MetadataToken(TokenError),
    #[error("invalid upload metadata: {0}")]
    InvalidMetadata(String),
    #[error("invalid ingest parameters: {0}")]
    InvalidIngest(String),
    #[error("invalid request: {0}")]
    InvalidRequest(String),

    // --- upload lifecycle ---
    #[error("no such upload (it may have expired)")]
    UploadNotFound,
    #[error("this upload URL has already been used")]
    UploadAlreadyCompleted,
    #[error("another upload with this URL is in progress")]
    UploadInProgress,
    #[error("a file with this idempotency key is being stored right now; try again in {retry_after_secs} s")]
    IngestInProgress { retry_after_secs: u64 },
    #[error("declared size {size} bytes exceeds the limit of {limit} bytes")]
    SizeLimitExceeded { size: u64, limit: u64 },

    // --- the body and its verification ---
    #[error("the body is longer than the declared {declared} bytes")]
    BodyLargerThanDeclared { declared: u64 },
    #[error("the body ended after {received} of the declared {declared} bytes")]
    BodyShorterThanDeclared { received: u64, declared: u64 },
    #[error("the body is empty")]
    EmptyBody,
    #[error("the body's SHA-256 is {actual}, not the declared {expected}")]
    Sha256Mismatch { expected: String, actual: String },
    #[error("the body's MD5 is {actual}, not the declared {expected}")]
    Md5Mismatch { expected: String, actual: String },
    #[error("the Content-Type header ({header}) does not match the signed type {signed}")]
    ContentTypeHeaderMismatch {
        /// The header as sent, or `none`.
        header: String,
        signed: String,
    },
    #[error(transparent)]
    Inspect(#[from] InspectError),
    #[error("no body data arrived for {0} s")]
    BodyIdleTimeout(u64),
    #[error("the request body could not be read: {0}")]
    BodyRead(String),

    // --- images ---
    #[error("no such image")]
    ImageNotFound,
    #[error("the requested range is not satisfiable")]
    RangeNotSatisfiable { size: u64 },

    // --- dependencies ---
    #[error("object storage is unavailable: {0}")]
    BlobUnavailable(String),
    #[error("the database is unavailable: {0}")]
    DatabaseUnavailable(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl StorageError {
    /// The stable code clients branch on.
    pub fn code(&self) -> &'static str {
        use StorageError::*;
        match self {
            UrlToken(e) => e.code(),
            TokenUploadMismatch => "token-upload-mismatch",
            TokenImageMismatch => "token-image-mismatch",
            Signature(e) => e.code(),
            CallerNotAllowed => "caller-not-allowed",
            MetadataToken(TokenError::Expired) => "metadata-token-expired",
            MetadataToken(TokenError::NotYetValid) => "metadata-token-not-yet-valid",
            MetadataToken(_) => "metadata-token-invalid",
            InvalidMetadata(_) => "invalid-metadata",
            InvalidIngest(_) => "invalid-ingest-parameters",
            InvalidRequest(_) => "invalid-request",
            UploadNotFound => "upload-not-found",
            UploadAlreadyCompleted => "upload-already-completed",
            UploadInProgress => "upload-in-progress",
            IngestInProgress { .. } => "ingest-in-progress",
            SizeLimitExceeded { .. } => "size-limit-exceeded",
            BodyLargerThanDeclared { .. } => "body-larger-than-declared",
            BodyShorterThanDeclared { .. } => "body-shorter-than-declared",
            EmptyBody => "empty-body",
            Sha256Mismatch { .. } => "sha256-mismatch",
            Md5Mismatch { .. } => "md5-mismatch",
            ContentTypeHeaderMismatch { .. } => "content-type-header-mismatch",
            Inspect(e) => e.code(),
            BodyIdleTimeout(_) => "body-timeout",
            BodyRead(_) => "body-read-failed",
            ImageNotFound => "image-not-found",
            RangeNotSatisfiable { .. } => "range-not-satisfiable",
            BlobUnavailable(_) => "blob-store-unavailable",
            DatabaseUnavailable(_) => "database-unavailable",
            Internal(_) => "internal-error",
        }
    }

    pub fn status(&self) -> StatusCode {
        use StorageError::*;
        match self {
            UrlToken(_) | TokenUploadMismatch | TokenImageMismatch => StatusCode::FORBIDDEN,
            Signature(RequestAuthError::NonceStoreUnavailable(_)) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            Signature(_) | MetadataToken(_) => StatusCode::UNAUTHORIZED,
            CallerNotAllowed => StatusCode::FORBIDDEN,
            InvalidMetadata(_) | InvalidIngest(_) => StatusCode::UNPROCESSABLE_ENTITY,
            InvalidRequest(_) => StatusCode::BAD_REQUEST,
            UploadNotFound | ImageNotFound => StatusCode::NOT_FOUND,
            UploadAlreadyCompleted | UploadInProgress => StatusCode::CONFLICT,
            SizeLimitExceeded { .. } | BodyLargerThanDeclared { .. } => {
                StatusCode::PAYLOAD_TOO_LARGE
            }
            BodyShorterThanDeclared { .. } | EmptyBody | BodyRead(_) => StatusCode::BAD_REQUEST,
            Sha256Mismatch { .. } | Md5Mismatch { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            ContentTypeHeaderMismatch { .. } => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Inspect(e) => match e {
                InspectError::NotAnImage { .. } | InspectError::TypeMismatch { .. } => {
                    StatusCode::UNSUPPORTED_MEDIA_TYPE
                }
                InspectError::Empty => StatusCode::BAD_REQUEST,
                _ => StatusCode::UNPROCESSABLE_ENTITY,
            },
            BodyIdleTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            RangeNotSatisfiable { .. } => StatusCode::RANGE_NOT_SATISFIABLE,
            BlobUnavailable(_) | DatabaseUnavailable(_) | IngestInProgress { .. } => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl From<StorageError> for ApiError {
    fn from(err: StorageError) -> ApiError {
        match &err {
            StorageError::Internal(detail) => ApiError::internal(detail),
            StorageError::BlobUnavailable(detail) => ApiError::unavailable(
                err.code(),
                "object storage is temporarily unavailable; nothing was stored, try again",
                detail,
            ),
            StorageError::DatabaseUnavailable(detail) => ApiError::unavailable(
                err.code(),
                "the database is temporarily unavailable; nothing was stored, try again",
                detail,
            ),
            StorageError::Signature(RequestAuthError::NonceStoreUnavailable(detail)) => {
                ApiError::unavailable(
                    err.code(),
                    "request verification is temporarily unavailable",
                    detail,
                )
            }
            StorageError::IngestInProgress { retry_after_secs } => {
                ApiError::new(err.status(), err.code(), err.to_string()).with_header(
                    http::header::RETRY_AFTER,
                    http::HeaderValue::from(*retry_after_secs),
                )
            }
            StorageError::RangeNotSatisfiable { size } => {
                let value = http::HeaderValue::from_str(&format!("bytes */{size}"))
                    .unwrap_or(http::HeaderValue::from_static("bytes */0"));
                ApiError::new(err.status(), err.code(), err.to_string())
                    .with_header(http::header::CONTENT_RANGE, value)
            }
            _ => ApiError::new(err.status(), err.code(), err.to_string()),
        }
    }
}

impl IntoResponse for StorageError {
    fn into_response(self) -> Response {
        ApiError::from(self).into_response()
    }
}

impl From<sqlx::Error> for StorageError {
    fn from(e: sqlx::Error) -> Self {
        if service_kit::db::is_unavailable(&e) {
            StorageError::DatabaseUnavailable(service_kit::db::short_error(&e))
        } else {
            StorageError::Internal(format!("database: {e}"))
        }
    }
}

impl From<BlobError> for StorageError {
    fn from(e: BlobError) -> Self {
        if e.is_unavailable() {
            StorageError::BlobUnavailable(e.to_string())
        } else if matches!(e, BlobError::NotFound) {
            StorageError::ImageNotFound
        } else {
            StorageError::Internal(format!("blob store: {e}"))
        }
    }
}

impl From<RequestAuthError> for StorageError {
    fn from(e: RequestAuthError) -> Self {
        StorageError::Signature(e)
    }
}

pub type StorageResult<T> = Result<T, StorageError>;
