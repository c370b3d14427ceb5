//! `POST /internal/download-urls`: short-lived signed URLs for image bytes.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use audit_events::EventType;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::{Extension, Json};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use service_kit::AppJson;
use shared_signing::Purpose;
use utoipa::ToSchema;

use crate::domain::unix_now;
use crate::error::{StorageError, StorageResult};
use crate::internal_auth::Caller;
use crate::state::{AppState, MAX_DOWNLOAD_TTL};

/// At most this many ids per call.
pub const MAX_IDS_PER_CALL: usize = 1000;

#[derive(Debug, Deserialize, ToSchema)]
pub struct DownloadUrlsRequest {
    /// Image ids (at most 1000).
    pub image_ids: Vec<String>,
    /// Lifetime of the URLs; defaults to `DOWNLOAD_URL_TTL_SECS`, at most 24 h.
    pub ttl_seconds: Option<u64>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct DownloadUrl {
    pub image_id: String,
    pub url: String,
    pub expires_at: DateTime<Utc>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct DownloadUrlsResponse {
    pub urls: Vec<DownloadUrl>,
    /// Requested ids with no complete image.
    pub missing: Vec<String>,
}

/// Claims inside a download URL token (purpose `download-url`, URL key).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DownloadUrlClaims {
    /// Image id.
    pub i: String,
}

/// Mints download URLs for existing images.
#[utoipa::path(
    post,
    path = "/internal/download-urls",
    tag = "internal",
    request_body = DownloadUrlsRequest,
    security(("service_signature" = [])),
    responses(
        (status = 200, description = "URLs for the images that exist", body = DownloadUrlsResponse),
        (status = 400, description = "Body not valid JSON (`invalid-json`)", body = service_kit::ErrorEnvelope),
        (status = 401, description = "Bad request signature", body = service_kit::ErrorEnvelope),
        (status = 413, description = "Body over the JSON limit (`body-too-large`)", body = service_kit::ErrorEnvelope),
        (status = 415, description = "Not JSON (`json-content-type-required`)", body = service_kit::ErrorEnvelope),
        (status = 422, description = "Too many ids or a bad lifetime, or a body of the wrong shape (`invalid-request-body`)", body = service_kit::ErrorEnvelope),
    )
)]
pub async fn download_urls(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    AppJson(request): AppJson<DownloadUrlsRequest>,
) -> StorageResult<Json<DownloadUrlsResponse>> {
    caller.require(&[Caller::App, Caller::Import])?;
    if request.image_ids.len() > MAX_IDS_PER_CALL {
        return Err(StorageError::InvalidRequest(format!(
            "at most {MAX_IDS_PER_CALL} image ids per call"
        )));
    }
    let ttl = match request.ttl_seconds {
        None => state.config.download_url_ttl,
        Some(s) if s >= 1 && s <= MAX_DOWNLOAD_TTL.as_secs() => Duration::from_secs(s),
        Some(_) => {
            return Err(StorageError::InvalidRequest(format!(
                "ttl_seconds must be between 1 and {}",
                MAX_DOWNLOAD_TTL.as_secs()
            )))
        }
    };
    let valid_ids: Vec<String> = request
        .image_ids
        .iter()
        .filter(|id| uuid::Uuid::parse_str(id).is_ok())
        .cloned()
        .collect();
    let rows = state.repo.complete_image_owners(&valid_ids).await?;
    let now = unix_now();
    let expires_at = DateTime::from_timestamp(now + ttl.as_secs() as i64, 0).unwrap_or_default();
    let mut urls = Vec::with_capacity(rows.len());
    for (id, _) in &rows {
        let token = state
            .config
            .url_keys
            .mint_json(
                Purpose::DOWNLOAD_URL,
                &DownloadUrlClaims { i: id.clone() },
                now,
                ttl,
            )
            .map_err(|e| StorageError::Internal(format!("minting download token: {e}")))?;
        urls.push(DownloadUrl {
            image_id: id.clone(),
            url: format!(
                "{}/images/{id}/content?token={token}",
                state.config.public_url
            ),
            expires_at,
        });
    }
    let request_id = audit_events::request_id(&headers);
    let caller_name = match caller {
        Caller::App => "app-service",
        Caller::Import => "import-service",
    };
    // One event per seller per call, not per image: a gallery page is 50 URLs, and an
    // event per URL made the audit trail 50 rows per page read (at 500 pages/s the relay
    // fell behind by 400,000 events in 25 s; docs/reliability.md).
    let mut by_seller: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (id, owner) in &rows {
        by_seller
            .entry(owner.as_str())
            .or_default()
            .push(id.as_str());
    }
    let events = by_seller
        .into_iter()
        .map(|(seller, ids)| {
            let event = state
                .audit
                .event(EventType::DownloadUrlIssued)
                .seller(seller)
                .request(request_id.clone())
                .detail("caller", caller_name)
                .detail("ttl_seconds", ttl.as_secs().to_string())
                .detail("count", ids.len().to_string())
                .detail("image_ids", ids.join(" "));
            match ids.as_slice() {
                [only] => event.subject(*only),
                _ => event,
            }
        })
        .collect();
    state.audit.record_all(events).await;
    let found: HashSet<&str> = rows.iter().map(|(id, _)| id.as_str()).collect();
    let missing = request
        .image_ids
        .iter()
        .filter(|id| !found.contains(id.as_str()))
        .cloned()
        .collect();
    Ok(Json(DownloadUrlsResponse { urls, missing }))
}
