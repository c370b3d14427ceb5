//! `GET /audit?seller_id=&type=&since=&limit=&cursor=`: events for operators, oldest
//! first, behind an operator token.
//!
//! The token is a `shared-signing` token with purpose `audit-read`, signed with a key of
//! `AUDIT_ADMIN_KEYS` (held by the audit service and whoever mints tokens:
//! `vitrine token --audit`). A refused token is itself recorded as `auth.failed`.

use std::time::Duration;

use audit_events::{AuditEvent, EventType};
use axum::extract::{RawQuery, State};
use axum::Json;
use chrono::DateTime;
use http::HeaderMap;
use serde::{Deserialize, Serialize};
use shared_signing::{Purpose, TokenPolicy};
use utoipa::{IntoParams, ToSchema};

use crate::error::{AuditError, AuditResult};
use crate::state::AuditState;
use crate::store::Filter;

/// Purpose of operator tokens (domain separation from every other token).
pub const ADMIN_PURPOSE: Purpose = Purpose::new("audit-read");
/// Longest operator token accepted.
pub const MAX_ADMIN_TOKEN_TTL: Duration = Duration::from_secs(24 * 3600);
pub const DEFAULT_LIMIT: i64 = 100;
pub const MAX_LIMIT: i64 = 1000;

/// Claims of an operator token.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AdminClaims {
    /// Who the token was made for (free text, logged with each read).
    pub sub: String,
}

/// Mints an operator token (what `vitrine token --audit` prints).
pub fn mint_admin_token(
    keys: &shared_signing::KeyRing,
    operator: &str,
    ttl: Duration,
) -> Result<String, shared_signing::TokenError> {
    keys.mint_json(
        ADMIN_PURPOSE,
        &AdminClaims {
            sub: operator.to_owned(),
        },
        shared_signing::unix_now(),
        ttl,
    )
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)] // Documents the parameters; they are parsed from the raw query.
pub struct AuditQuery {
    /// Only this seller's events.
    seller_id: Option<String>,
    /// Only events of this type, e.g. `upload.rejected`.
    #[serde(rename = "type")]
    #[param(rename = "type")]
    kind: Option<String>,
    /// Only events at or after this time (RFC 3339, e.g. `2026-12-01T00:00:00Z`).
    since: Option<String>,
    /// Events per page, 1–1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<i64>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AuditPage {
    pub events: Vec<AuditEvent>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

fn verify_admin(state: &AuditState, headers: &HeaderMap) -> AuditResult<AdminClaims> {
    let token = service_kit::auth::bearer_token(headers).map_err(|_| AuditError::MissingToken)?;
    state
        .config
        .admin_keys
        .verify_json::<AdminClaims>(
            ADMIN_PURPOSE,
            token,
            shared_signing::unix_now(),
            &TokenPolicy::new(MAX_ADMIN_TOKEN_TTL),
        )
        .map(|v| v.claims)
        .map_err(AuditError::AdminToken)
}

fn parse_filter(raw: Option<&str>) -> AuditResult<Filter> {
    let mut filter = Filter {
        limit: DEFAULT_LIMIT,
        ..Filter::default()
    };
    let mut seen = std::collections::BTreeSet::new();
    for (name, value) in url::form_urlencoded::parse(raw.unwrap_or_default().as_bytes()) {
        if !seen.insert(name.to_string()) {
            return Err(AuditError::invalid(
                "repeated-parameter",
                format!("`{name}` is given more than once"),
            ));
        }
        match name.as_ref() {
            "seller_id" => {
                let seller = service_kit::auth::SellerId::parse(&value).map_err(|e| {
                    AuditError::invalid("invalid-seller-id", format!("seller_id: {e}"))
                })?;
                filter.seller_id = Some(seller.as_str().to_owned());
            }
            "type" => {
                let kind = EventType::parse(&value).ok_or_else(|| {
                    let known: Vec<&str> = EventType::ALL.iter().map(|t| t.as_str()).collect();
                    AuditError::invalid(
                        "invalid-type",
                        format!("type must be one of {}", known.join(", ")),
                    )
                })?;
                filter.kind = Some(kind.as_str().to_owned());
            }
            "since" => {
                let since = DateTime::parse_from_rfc3339(&value).map_err(|_| {
                    AuditError::invalid(
                        "invalid-since",
                        "since must be an RFC 3339 time, e.g. 2026-12-01T00:00:00Z",
                    )
                })?;
                filter.since_ms = Some(since.timestamp_millis());
            }
            "limit" => {
                filter.limit = value
                    .parse::<i64>()
                    .ok()
                    .filter(|n| (1..=MAX_LIMIT).contains(n))
                    .ok_or_else(|| {
                        AuditError::invalid(
                            "invalid-limit",
                            format!("limit must be a whole number from 1 to {MAX_LIMIT}"),
                        )
                    })?;
            }
            "cursor" => filter.after = Some(parse_cursor(&value)?),
            other => {
                return Err(AuditError::invalid(
                    "unknown-parameter",
                    format!(
                        "unknown query parameter `{other}`; known: seller_id, type, since, limit, cursor"
                    ),
                ))
            }
        }
    }
    Ok(filter)
}

fn cursor_of(time_ms: i64, event: &AuditEvent) -> String {
    format!("{time_ms}.{}", event.id)
}

fn parse_cursor(raw: &str) -> AuditResult<(i64, String)> {
    let bad = || {
        AuditError::invalid(
            "invalid-cursor",
            "cursor must be a `next_cursor` from a previous page",
        )
    };
    let (time, id) = raw.split_once('.').ok_or_else(bad)?;
    let time = time.parse::<i64>().map_err(|_| bad())?;
    let id = uuid::Uuid::parse_str(id).map_err(|_| bad())?;
    Ok((time, id.to_string()))
}

/// Lists audit events, oldest first.
#[utoipa::path(
    get,
    path = "/audit",
    tag = "audit",
    params(AuditQuery),
    security(("operator_token" = [])),
    responses(
        (status = 200, description = "One page of events", body = AuditPage),
        (status = 400, description = "`invalid-seller-id`, `invalid-type`, `invalid-since`, `invalid-limit`, `invalid-cursor`, `unknown-parameter`, `repeated-parameter`", body = service_kit::ErrorEnvelope),
        (status = 401, description = "`missing-token`, or the token's refusal (`token-expired`, `token-invalid-signature`, `token-malformed`, `token-unknown-key`, …)", body = service_kit::ErrorEnvelope),
        (status = 503, description = "`database-unavailable`", body = service_kit::ErrorEnvelope),
    )
)]
pub async fn list_events(
    State(state): State<AuditState>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> AuditResult<Json<AuditPage>> {
    let operator = match verify_admin(&state, &headers) {
        Ok(claims) => claims,
        Err(e) => {
            record_refusal(&state, &headers, e.code()).await;
            return Err(e);
        }
    };
    let filter = parse_filter(raw.as_deref())?;
    tracing::info!(operator = %operator.sub, ?filter, "audit read");
    let rows = state.store.query(&filter).await?;
    let next_cursor = if rows.len() as i64 == filter.limit {
        rows.last().map(|(time, event)| cursor_of(*time, event))
    } else {
        None
    };
    Ok(Json(AuditPage {
        events: rows.into_iter().map(|(_, event)| event).collect(),
        next_cursor,
    }))
}

/// A refused operator token is an `auth.failed` event of this service.
async fn record_refusal(state: &AuditState, headers: &HeaderMap, code: &str) {
    let event = AuditEvent::new(crate::SERVICE_NAME, EventType::AuthFailed)
        .request(audit_events::request_id(headers))
        .reason(code)
        .detail("method", "GET")
        .detail("path", "/audit");
    match state.store.insert(std::slice::from_ref(&event)).await {
        Ok(_) => audit_events::log_event(&event),
        Err(e) => tracing::error!(error = %e, "could not store an auth.failed event"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_parse_and_bad_ones_have_codes() {
        let f = parse_filter(Some(
            "seller_id=s1&type=upload.accepted&since=2026-01-01T00:00:00Z&limit=5",
        ))
        .unwrap();
        assert_eq!(f.seller_id.as_deref(), Some("s1"));
        assert_eq!(f.kind.as_deref(), Some("upload.accepted"));
        assert_eq!(f.limit, 5);
        assert!(f.since_ms.is_some());
        for (query, code) in [
            ("type=nope", "invalid-type"),
            ("since=yesterday", "invalid-since"),
            ("limit=0", "invalid-limit"),
            ("limit=1001", "invalid-limit"),
            ("cursor=abc", "invalid-cursor"),
            ("seller=s1", "unknown-parameter"),
            ("type=auth.failed&type=auth.failed", "repeated-parameter"),
        ] {
            assert_eq!(
                parse_filter(Some(query)).unwrap_err().code(),
                code,
                "{query}"
            );
        }
    }

    #[test]
    fn cursors_round_trip() {
        let event = AuditEvent::new("x", EventType::AuthFailed);
        let cursor = cursor_of(42, &event);
        assert_eq!(parse_cursor(&cursor).unwrap(), (42, event.id.to_string()));
    }
}
