//! [`AuditError`]: one stable code per failure, in the shared JSON envelope.

use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode};
use service_kit::ApiError;
use shared_signing::{RequestAuthError, TokenError};

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// `GET /audit` without `Authorization: Bearer <token>`.
    #[error("this endpoint needs an operator token: send `Authorization: Bearer <token>` (`vitrine token --audit`)")]
    MissingToken,
    /// The operator token does not verify (code from `shared-signing`, e.g. `token-expired`).
    #[error("the operator token was refused: {0}")]
    AdminToken(TokenError),
    /// A delivery's request signature does not verify.
    #[error("the request signature was refused: {0}")]
    Signature(RequestAuthError),
    /// `POST /internal/events` while `AUDIT_KEYS` is unset.
    #[error("this audit service takes no HTTP deliveries (AUDIT_KEYS is not set)")]
    IngestDisabled,
    /// A query parameter that is not valid; `code` names it.
    #[error("{message}")]
    InvalidParameter { code: &'static str, message: String },
    #[error("the request body is not a batch of audit events: {0}")]
    InvalidBody(String),
    #[error("the request body is larger than {0} bytes")]
    BodyTooLarge(usize),
    #[error("the audit database is unavailable")]
    Database(String),
}

impl AuditError {
    pub fn invalid(code: &'static str, message: impl Into<String>) -> Self {
        AuditError::InvalidParameter {
            code,
            message: message.into(),
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            AuditError::MissingToken => "missing-token",
            AuditError::AdminToken(e) => e.code(),
            AuditError::Signature(e) => e.code(),
            AuditError::IngestDisabled => "ingest-disabled",
            AuditError::InvalidParameter { code, .. } => code,
            AuditError::InvalidBody(_) => "invalid-request-body",
            AuditError::BodyTooLarge(_) => "body-too-large",
            AuditError::Database(_) => "database-unavailable",
        }
    }
}

impl From<sqlx::Error> for AuditError {
    fn from(e: sqlx::Error) -> Self {
        AuditError::Database(e.to_string())
    }
}

impl From<AuditError> for ApiError {
    fn from(err: AuditError) -> Self {
        let message = err.to_string();
        let code = err.code();
        match err {
            AuditError::MissingToken => ApiError::new(StatusCode::UNAUTHORIZED, code, message)
                .with_header(
                    http::header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer"),
                ),
            AuditError::AdminToken(_) => ApiError::new(StatusCode::UNAUTHORIZED, code, message)
                .with_header(
                    http::header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer error=\"invalid_token\""),
                ),
            AuditError::Signature(RequestAuthError::NonceStoreUnavailable(detail)) => {
                ApiError::unavailable(
                    code,
                    "request signatures cannot be checked right now",
                    detail,
                )
            }
            AuditError::Signature(_) => ApiError::new(StatusCode::UNAUTHORIZED, code, message),
            AuditError::IngestDisabled => ApiError::new(StatusCode::NOT_FOUND, code, message),
            AuditError::InvalidParameter { .. } | AuditError::InvalidBody(_) => {
                ApiError::bad_request(code, message)
            }
            AuditError::BodyTooLarge(_) => {
                ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, code, message)
            }
            AuditError::Database(detail) => ApiError::unavailable(code, message, detail),
        }
    }
}

impl IntoResponse for AuditError {
    fn into_response(self) -> Response {
        ApiError::from(self).into_response()
    }
}

pub type AuditResult<T> = Result<T, AuditError>;
