//! Why a seller token was refused: one variant per reason, each with a stable code.
//!
//! | code | status |
//! |---|---|
//! | `missing-token` | 401, `WWW-Authenticate: Bearer` |
//! | `malformed-token`, `unsupported-algorithm`, `invalid-signature`, `token-expired`, `token-not-yet-valid`, `invalid-audience`, `invalid-issuer`, `unknown-key`, `invalid-subject` | 401, `WWW-Authenticate: Bearer error="invalid_token"` |
//! | `identity-provider-unavailable` | 503, `Retry-After` |
//!
//! A missing claim is reported with the code of that claim: no `aud` is
//! `invalid-audience`, no `iss` is `invalid-issuer`, no `sub` is `invalid-subject`,
//! no (or a non-numeric) `exp` is `malformed-token`.
//!
//! Messages explain the reason but never contain the token.

use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode};

use crate::error::ApiError;

/// A refused seller token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// No `Authorization` header, a blank one, or a scheme other than `Bearer`.
    #[error("this endpoint needs a seller token: send `Authorization: Bearer <token>`")]
    MissingToken,
    /// Not a compact JWS with a JSON header and payload, or a claim of the wrong type.
    #[error("the bearer token is malformed: {0}")]
    MalformedToken(&'static str),
    /// `alg: none`, an algorithm other than HS256/RS256/ES256, or one that is not
    /// the algorithm pinned to the token's key.
    #[error("the token's algorithm is not accepted: {0}")]
    UnsupportedAlgorithm(&'static str),
    /// The signature does not match (this covers a tampered header or payload).
    #[error("the token's signature is invalid")]
    InvalidSignature,
    #[error("the token has expired; sign in again")]
    TokenExpired,
    #[error("the token is not valid yet (`nbf` is in the future)")]
    TokenNotYetValid,
    #[error("the token is not meant for this service: {0}")]
    InvalidAudience(&'static str),
    #[error("the token is not from the trusted issuer: {0}")]
    InvalidIssuer(&'static str),
    /// The token names a key (`kid`) that is not configured, or names none and no
    /// HS256 secret is configured.
    #[error("the token was signed with a key this service does not know")]
    UnknownKey,
    /// `sub` is missing or not a valid seller id.
    #[error("the token's subject is not a valid seller id: {0}")]
    InvalidSubject(&'static str),
    /// The JWKS was needed but could not be fetched or parsed. `detail` is logged,
    /// never sent to the client.
    #[error("the identity provider cannot be reached to check the token's key; try again shortly")]
    IdentityProviderUnavailable { detail: String },
}

impl AuthError {
    /// The stable, machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            AuthError::MissingToken => "missing-token",
            AuthError::MalformedToken(_) => "malformed-token",
            AuthError::UnsupportedAlgorithm(_) => "unsupported-algorithm",
            AuthError::InvalidSignature => "invalid-signature",
            AuthError::TokenExpired => "token-expired",
            AuthError::TokenNotYetValid => "token-not-yet-valid",
            AuthError::InvalidAudience(_) => "invalid-audience",
            AuthError::InvalidIssuer(_) => "invalid-issuer",
            AuthError::UnknownKey => "unknown-key",
            AuthError::InvalidSubject(_) => "invalid-subject",
            AuthError::IdentityProviderUnavailable { .. } => "identity-provider-unavailable",
        }
    }

    /// 503 for an unreachable identity provider, 401 for everything else.
    pub fn status(&self) -> StatusCode {
        match self {
            AuthError::IdentityProviderUnavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::UNAUTHORIZED,
        }
    }
}

impl From<AuthError> for ApiError {
    fn from(err: AuthError) -> Self {
        let message = err.to_string();
        match err {
            AuthError::IdentityProviderUnavailable { detail } => {
                ApiError::unavailable("identity-provider-unavailable", message, detail)
            }
            // RFC 6750 §3.1: no error code when the request carried no credentials.
            AuthError::MissingToken => ApiError::new(StatusCode::UNAUTHORIZED, err.code(), message)
                .with_header(
                    http::header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer"),
                ),
            other => ApiError::new(StatusCode::UNAUTHORIZED, other.code(), message).with_header(
                http::header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer error=\"invalid_token\""),
            ),
        }
    }
}

impl IntoResponse for AuthError {
    fn into_response(self) -> Response {
        ApiError::from(self).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges_and_statuses() {
        let missing = ApiError::from(AuthError::MissingToken);
        assert_eq!(missing.status, StatusCode::UNAUTHORIZED);
        assert_eq!(missing.code, "missing-token");
        assert_eq!(missing.headers[0].1, "Bearer");

        let expired = ApiError::from(AuthError::TokenExpired);
        assert_eq!(expired.code, "token-expired");
        assert_eq!(expired.headers[0].1, "Bearer error=\"invalid_token\"");

        let down = ApiError::from(AuthError::IdentityProviderUnavailable {
            detail: "connection refused".into(),
        });
        assert_eq!(down.status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(down
            .headers
            .iter()
            .any(|(name, _)| name == http::header::RETRY_AFTER));
        assert!(!down.message.contains("connection refused"));
    }
}
