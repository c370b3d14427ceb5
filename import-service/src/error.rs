//! [`ImportError`]: every way an Import Service request can fail, one stable code each.
//!
//! Seller-token failures come from [`service_kit::auth::AuthError`] and keep its codes;
//! malformed JSON bodies are answered by [`service_kit::AppJson`] (`invalid-json`,
//! `invalid-request-body`, `json-content-type-required`, `body-too-large`).

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use service_kit::auth::AuthError;
use service_kit::ApiError;

pub type ImportResult<T> = Result<T, ImportError>;

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error(transparent)]
    Auth(#[from] AuthError),
    /// The pasted folder link is not one we import (`invalid-folder-url`).
    #[error("{0}")]
    InvalidFolderUrl(String),
    /// The provider says the folder does not exist (or is not shared by link).
    #[error("{0}")]
    FolderNotFound(String),
    /// The folder exists but is not public ("anyone with the link").
    #[error("{0}")]
    FolderNotPublic(String),
    /// The provider refused our own credentials or answered nonsense.
    #[error("{0}")]
    ProviderError(String),
    /// A path or query parameter is malformed.
    #[error("{message}")]
    BadRequest { code: &'static str, message: String },
    #[error("you already have {0} imports running; start another when one finishes")]
    TooManyImports(u32),
    #[error("no such import")]
    ImportNotFound,
    #[error("no such image")]
    ImageNotFound,
    #[error("the task queue is unavailable: {0}")]
    QueueUnavailable(String),
    #[error("database unavailable: {0}")]
    DatabaseUnavailable(String),
    #[error("database error: {0}")]
    Database(String),
}

impl ImportError {
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        ImportError::BadRequest {
            code,
            message: message.into(),
        }
    }
}

impl From<sqlx::Error> for ImportError {
    fn from(e: sqlx::Error) -> Self {
        let detail = service_kit::db::short_error(&e);
        if service_kit::db::is_unavailable(&e) {
            ImportError::DatabaseUnavailable(detail)
        } else {
            ImportError::Database(detail)
        }
    }
}

impl From<ImportError> for ApiError {
    fn from(e: ImportError) -> Self {
        let message = e.to_string();
        let unprocessable = StatusCode::UNPROCESSABLE_ENTITY;
        match e {
            ImportError::Auth(auth) => auth.into(),
            ImportError::InvalidFolderUrl(_) => {
                ApiError::new(unprocessable, "invalid-folder-url", message)
            }
            ImportError::FolderNotFound(_) => {
                ApiError::new(unprocessable, "folder-not-found", message)
            }
            ImportError::FolderNotPublic(_) => {
                ApiError::new(unprocessable, "folder-not-public", message)
            }
            ImportError::ProviderError(detail) => {
                tracing::error!(error = %detail, "provider refused the import service");
                ApiError::new(
                    StatusCode::BAD_GATEWAY,
                    "provider-error",
                    format!("the provider refused the request: {detail}"),
                )
            }
            ImportError::BadRequest { code, message } => ApiError::bad_request(code, message),
            ImportError::TooManyImports(_) => {
                ApiError::new(StatusCode::TOO_MANY_REQUESTS, "too-many-imports", message)
                    .with_header(header::RETRY_AFTER, HeaderValue::from_static("30"))
            }
            ImportError::ImportNotFound => ApiError::not_found("import-not-found", message),
            ImportError::ImageNotFound => ApiError::not_found("image-not-found", message),
            ImportError::QueueUnavailable(detail) => ApiError::unavailable(
                "queue-unavailable",
                "the task queue is unavailable; nothing was started, retry shortly",
                detail,
            ),
            ImportError::DatabaseUnavailable(detail) => ApiError::unavailable(
                "database-unavailable",
                "the database is unavailable; retry shortly",
                detail,
            ),
            ImportError::Database(detail) => ApiError::internal(detail),
        }
    }
}

impl IntoResponse for ImportError {
    fn into_response(self) -> Response {
        ApiError::from(self).into_response()
    }
}
