//! `POST /auth/token`: the built-in dev issuer, for local use and demos.
//!
//! Enabled only with `AUTH_DEV_LOGIN=true` (the embedded stack turns it on; the
//! compose production profile leaves it off). Anyone who can reach it can act as any
//! seller, so it must never be on where real sellers are.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use service_kit::auth::SellerId;
use service_kit::{ApiError, AppJson};
use utoipa::ToSchema;

use crate::state::AppState;

/// Body of `POST /auth/token`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DevTokenRequest {
    /// 1–128 characters of letters, digits and `. _ : @ -`.
    #[schema(example = "seller-42")]
    pub seller_id: String,
}

/// A seller token (HS256 JWT) to send as `Authorization: Bearer …`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct DevTokenResponse {
    pub access_token: String,
    /// Always `Bearer`.
    pub token_type: String,
    /// Seconds until the token expires.
    pub expires_in: u64,
    pub expires_at: DateTime<Utc>,
}

/// Issues a seller token (development only).
#[utoipa::path(
    post,
    path = "/auth/token",
    tag = "auth",
    request_body = DevTokenRequest,
    responses(
        (status = 201, description = "A seller token", body = DevTokenResponse),
        (status = 400, description = "`invalid-json`", body = service_kit::ErrorEnvelope),
        (status = 404, description = "Dev login is off (`dev-login-disabled`)", body = service_kit::ErrorEnvelope),
        (status = 413, description = "Body over the JSON limit (`body-too-large`)", body = service_kit::ErrorEnvelope),
        (status = 415, description = "Not JSON (`json-content-type-required`)", body = service_kit::ErrorEnvelope),
        (status = 422, description = "`invalid-seller-id`, `invalid-request-body`", body = service_kit::ErrorEnvelope),
    )
)]
pub async fn issue_dev_token(
    State(state): State<AppState>,
    AppJson(request): AppJson<DevTokenRequest>,
) -> Result<(StatusCode, Json<DevTokenResponse>), ApiError> {
    let issuer = state.auth.dev_issuer().ok_or_else(|| {
        ApiError::not_found(
            "dev-login-disabled",
            "dev login is off; set AUTH_DEV_LOGIN=true (development only) or use your identity provider's tokens",
        )
    })?;
    let seller = SellerId::parse(&request.seller_id).map_err(|e| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-seller-id",
            e.to_string(),
        )
    })?;
    let token = issuer.mint(&seller);
    let expires_at = DateTime::<Utc>::from_timestamp(token.expires_at as i64, 0)
        .ok_or_else(|| ApiError::internal("token expiry out of range"))?;
    tracing::info!(seller = %seller, "dev token issued");
    Ok((
        StatusCode::CREATED,
        Json(DevTokenResponse {
            access_token: token.access_token,
            token_type: token.token_type,
            expires_in: token.expires_in,
            expires_at,
        }),
    ))
}
