//! [`AppError`]: every way an App Service request can fail, one stable code each.
//!
//! Seller-token failures come from [`service_kit::auth::AuthError`] and keep its codes;
//! malformed JSON bodies are answered by [`service_kit::AppJson`] (`invalid-json`,
//! `invalid-request-body`, `json-content-type-required`, `body-too-large`).

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use service_kit::auth::AuthError;
use service_kit::ApiError;

pub type AppResult<T> = Result<T, AppError>;

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(transparent)]
    Auth(#[from] AuthError),
    /// A request field failed validation; `code` names the rule (e.g. `invalid-price`).
    #[error("{message}")]
    Invalid { code: &'static str, message: String },
    /// A header, path or query parameter is malformed.
    #[error("{message}")]
    BadRequest { code: &'static str, message: String },
    #[error("size {size} is over the {limit}-byte upload limit")]
    UploadTooLarge { size: u64, limit: u64 },
    #[error("too many upload requests; retry in {retry_after_secs}s")]
    RateLimited { retry_after_secs: u64 },
    #[error("there is no image {0} of yours")]
    ImageNotFound(String),
    #[error("image {0} is still being stored; retry shortly")]
    ImageNotReady(String),
    #[error("no such product")]
    ProductNotFound,
    #[error("this Idempotency-Key was already used with a different request body")]
    IdempotencyKeyReused,
    /// Storage could not be reached, timed out, or failed on its side.
    #[error("the storage service is unavailable: {0}")]
    StorageUnavailable(String),
    /// Storage refused our credentials or answered something we did not expect: a
    /// deployment fault (e.g. mismatched keys), never the seller's.
    #[error("storage call failed: {0}")]
    StorageFault(String),
    #[error("database unavailable: {0}")]
    DatabaseUnavailable(String),
    #[error("database error: {0}")]
    Database(String),
}

impl AppError {
    pub fn invalid(code: &'static str, message: impl Into<String>) -> Self {
        AppError::Invalid {
            code,
            message: message.into(),
        }
    }
}

impl From<sqlx::Error> for AppError {
    fn from(e: sqlx::Error) -> Self {
        let detail = service_kit::db::short_error(&e);
        if service_kit::db::is_unavailable(&e) {
            AppError::DatabaseUnavailable(detail)
        } else {
            AppError::Database(detail)
        }
    }
}

impl From<AppError> for ApiError {
    fn from(e: AppError) -> Self {
        let message = e.to_string();
        match e {
            AppError::Auth(auth) => auth.into(),
            AppError::Invalid { code, message } => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, code, message)
            }
            AppError::BadRequest { code, message } => ApiError::bad_request(code, message),
            AppError::UploadTooLarge { .. } => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "size-limit-exceeded",
                message,
            ),
            AppError::RateLimited { retry_after_secs } => {
                ApiError::new(StatusCode::TOO_MANY_REQUESTS, "rate-limited", message).with_header(
                    http::header::RETRY_AFTER,
                    HeaderValue::from(retry_after_secs),
                )
            }
            AppError::ImageNotFound(_) => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "image-not-found", message)
            }
            AppError::ImageNotReady(_) => {
                ApiError::new(StatusCode::CONFLICT, "image-not-ready", message)
            }
            AppError::ProductNotFound => ApiError::not_found("product-not-found", message),
            AppError::IdempotencyKeyReused => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "idempotency-key-reused",
                message,
            ),
            AppError::StorageUnavailable(detail) => ApiError::unavailable(
                "storage-unavailable",
                "the storage service is unavailable; retry shortly",
                detail,
            ),
            AppError::StorageFault(detail) => {
                tracing::error!(error = %detail, "storage call failed");
                ApiError::new(
                    StatusCode::BAD_GATEWAY,
                    "storage-error",
                    "the storage service answered unexpectedly; this has been logged",
                )
            }
            AppError::DatabaseUnavailable(detail) => ApiError::unavailable(
                "database-unavailable",
                "the database is unavailable; retry shortly",
                detail,
            ),
            AppError::Database(detail) => ApiError::internal(detail),
        }
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        ApiError::from(self).into_response()
    }
}
