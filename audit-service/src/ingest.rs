//! `POST /internal/events`: a batch of events relayed by a service's outbox (the
//! embedded stack's transport), signed with `AUDIT_KEYS`.

use audit_events::EventBatch;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

use crate::error::{AuditError, AuditResult};
use crate::state::AuditState;

/// Largest delivery accepted (a relay sends at most 100 events).
pub const MAX_BATCH_BYTES: usize = 4 << 20;

#[derive(Debug, Serialize, ToSchema)]
pub struct Stored {
    /// Events in the batch.
    pub received: usize,
    /// Of those, events not seen before (the others were already stored).
    pub stored: usize,
}

/// Stores a batch of audit events (each id once).
#[utoipa::path(
    post,
    path = "/internal/events",
    tag = "internal",
    request_body = EventBatch,
    security(("service_signature" = [])),
    responses(
        (status = 200, description = "Stored (repeated ids are skipped)", body = Stored),
        (status = 400, description = "`invalid-request-body`", body = service_kit::ErrorEnvelope),
        (status = 401, description = "Bad request signature (`signature-*`, `body-digest-mismatch`)", body = service_kit::ErrorEnvelope),
        (status = 404, description = "`ingest-disabled`: AUDIT_KEYS is not set", body = service_kit::ErrorEnvelope),
        (status = 413, description = "`body-too-large`", body = service_kit::ErrorEnvelope),
        (status = 503, description = "`database-unavailable`", body = service_kit::ErrorEnvelope),
    )
)]
pub async fn ingest(
    State(state): State<AuditState>,
    request: Request,
) -> AuditResult<Json<Stored>> {
    let verifier = state.ingest.as_ref().ok_or(AuditError::IngestDisabled)?;
    let (parts, body): (_, Body) = request.into_parts();
    let verified = verifier
        .verify(
            &parts.method,
            &parts.uri,
            &parts.headers,
            shared_signing::unix_now(),
        )
        .await
        .map_err(AuditError::Signature)?;
    let bytes = axum::body::to_bytes(body, MAX_BATCH_BYTES)
        .await
        .map_err(|_| AuditError::BodyTooLarge(MAX_BATCH_BYTES))?;
    verified.check_body(&bytes).map_err(AuditError::Signature)?;
    let batch: EventBatch =
        serde_json::from_slice(&bytes).map_err(|e| AuditError::InvalidBody(e.to_string()))?;
    let new = state.store.insert(&batch.events).await?;
    for event in &new {
        audit_events::log_event(event);
    }
    Ok(Json(Stored {
        received: batch.events.len(),
        stored: new.len(),
    }))
}
